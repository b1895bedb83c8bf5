//! Disks that change under the binary: a read-only output folder fails at start,
//! naming the folder, but a read-only folder can be seeded (resume data then goes
//! to the state folder); a file truncated or removed under a running download
//! stops it with a clear error naming the file (what the code does today: it
//! never reports the lost pieces as verified), and a rerun fetches what was lost.
//!
//! The read-only case mounts a tmpfs (root, as CI has; without it the test fails,
//! it never skips).

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use bitloop::metainfo::Metainfo;
use bitloop::storage::ResumeData;
use common::mounts::Tmpfs;
use common::payload::{big_content, same_bytes};
use common::procs::{allocated, download_args, BitloopSeeder, Running};
use sha1::{Digest, Sha1};

const MIB: u64 = 1 << 20;
const SIZE: u64 = 16 * MIB;
const PIECE: u64 = 256 << 10;

#[test]
fn a_read_only_output_folder_fails_at_start_naming_it() {
    let content = big_content(MIB, PIECE);
    let disk = Tmpfs::mount(4 * MIB);
    std::fs::create_dir(disk.path().join("existing")).unwrap();
    disk.make_read_only();
    for folder in [disk.path().join("existing"), disk.path().join("new")] {
        let args = [
            "download",
            content.torrent_path.to_str().unwrap(),
            "-o",
            folder.to_str().unwrap(),
            "-q",
        ];
        // No peers and the default 300 s timeout: only a failure at start ends it soon.
        let run = Running::spawn(&args, &[]).wait_exit(Duration::from_secs(20));
        run.assert_code(1);
        let named = run.stderr.contains(&format!("{}: ", folder.display()))
            || run
                .stderr
                .contains(&format!("{}: ", folder.join("big.bin").display()))
            || run
                .stderr
                .contains(&format!("{}: ", folder.join(".bitloop").display()));
        assert!(named, "the message names the folder:\n{}", run.stderr);
        assert!(
            run.stderr.to_lowercase().contains("read-only"),
            "the message says why:\n{}",
            run.stderr
        );
    }
}

#[test]
fn a_read_only_folder_is_seeded_with_its_resume_data_in_the_state_folder() {
    let content = big_content(4 * MIB, PIECE);
    let disk = Tmpfs::mount(8 * MIB);
    std::fs::copy(content.save_path.join("big.bin"), disk.path().join("big.bin")).unwrap();
    disk.make_read_only();
    let state = tempfile::tempdir().unwrap();
    let env = [("XDG_STATE_HOME", state.path().to_str().unwrap())];
    let seeder = BitloopSeeder::start_with(&content.torrent_path, disk.path(), None, &env);
    let out = tempfile::tempdir().unwrap();
    let args = download_args(&content.torrent_path, out.path(), seeder.addr(), &["--json"]);
    Running::spawn(&args, &[])
        .wait_exit(Duration::from_secs(60))
        .assert_code(0);
    assert!(same_bytes(
        &out.path().join("big.bin"),
        &content.save_path.join("big.bin")
    ));
    assert_eq!(seeder.stop(), 4 * MIB, "the seeder served the whole file");
    let resume = ResumeData::path_in(&state.path().join("bitloop"), &content.torrent.info_hash);
    let saved = ResumeData::load(&resume, &content.torrent).expect("resume data in the state folder");
    assert_eq!(saved.have().count(), saved.have().len(), "every piece verified");
    let names: Vec<_> = std::fs::read_dir(disk.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["big.bin"], "nothing written to the read-only folder");
}

#[test]
fn seeding_a_folder_without_the_data_fails_naming_the_file_and_creates_nothing() {
    let content = big_content(MIB, PIECE);
    let empty = tempfile::tempdir().unwrap();
    let args = [
        "seed",
        content.torrent_path.to_str().unwrap(),
        "-d",
        empty.path().to_str().unwrap(),
    ];
    let run = Running::spawn(&args, &[]).wait_exit(Duration::from_secs(20));
    run.assert_code(1);
    let file = empty.path().join("big.bin");
    assert!(
        run.stderr
            .contains(&format!("{}: no such file or directory", file.display())),
        "the message names the file and says why:\n{}",
        run.stderr
    );
    let made: Vec<_> = std::fs::read_dir(empty.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        made.is_empty(),
        "seeding made {made:?}: it never creates the data or a folder beside it"
    );
}

/// What happens to the file under the running download.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Truncated,
    Removed,
}

/// Every piece the resume file claims holds the right bytes (single file).
fn assert_claims_true(resume: &Path, torrent: &Metainfo, file: &Path) {
    let Ok(saved) = ResumeData::load(resume, torrent) else {
        return;
    };
    let data = File::open(file).ok();
    for piece in saved.have().iter_ones() {
        let start = piece as u64 * PIECE;
        let mut buf = vec![0u8; PIECE.min(torrent.total_length() - start) as usize];
        let right = data
            .as_ref()
            .is_some_and(|f| f.read_exact_at(&mut buf, start).is_ok())
            && Sha1::digest(&buf)[..] == torrent.info.pieces[piece as usize];
        assert!(right, "resume data claims piece {piece}, which was lost");
    }
}

fn fault_under_a_running_download(fault: Fault) {
    let content = big_content(SIZE, PIECE);
    let output = content.dir.path().join("out");
    let file = output.join("big.bin");
    let resume = ResumeData::path_in(&output.join(".bitloop"), &content.torrent.info_hash);
    let download = |seeder: &BitloopSeeder| {
        let args = download_args(&content.torrent_path, &output, seeder.addr(), &["--json", "-q"]);
        Running::spawn(&args, &[])
    };

    // Slow enough (4 MiB/s) that the fault comes in the middle.
    let seeder = BitloopSeeder::start(&content.torrent_path, &content.save_path, Some("4M"));
    let run = download(&seeder);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while allocated(&file) < SIZE / 4 {
        assert!(std::time::Instant::now() < deadline, "the download did not start");
        std::thread::sleep(Duration::from_millis(10)); // polling a file another process writes
    }
    match fault {
        Fault::Truncated => File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(0)
            .unwrap(),
        Fault::Removed => std::fs::remove_file(&file).unwrap(),
    }
    let faulted = run.wait_exit(Duration::from_secs(60));
    seeder.stop();
    assert!(!faulted.stderr.contains("panicked"), "{}", faulted.stderr);
    match faulted.code {
        // The lost pieces were fetched again within the run.
        Some(0) => assert!(
            same_bytes(&file, &content.save_path.join("big.bin")),
            "{fault:?}: wrong data"
        ),
        // Or a clear error naming the file.
        Some(1) => {
            let line = faulted
                .stderr
                .lines()
                .find(|l| l.starts_with("bitloop: big.bin: "));
            let line = line.unwrap_or_else(|| panic!("{fault:?}: no message:\n{}", faulted.stderr));
            assert!(
                line.contains(&file.display().to_string()),
                "{fault:?}: names the file: {line}"
            );
            let why = match fault {
                Fault::Truncated => "truncated",
                Fault::Removed => "removed",
            };
            assert!(line.contains(why), "{fault:?}: says what happened: {line}");
            eprintln!("{fault:?}: {line}");
        }
        other => panic!("{fault:?}: exit {other:?}:\n{}", faulted.stderr),
    }
    assert_claims_true(&resume, &content.torrent, &file);

    // A rerun checks what is left and fetches what was lost.
    let seeder = BitloopSeeder::start(&content.torrent_path, &content.save_path, None);
    let rerun = download(&seeder).wait_exit(Duration::from_secs(60));
    seeder.stop();
    rerun.assert_code(0);
    assert!(
        same_bytes(&file, &content.save_path.join("big.bin")),
        "{fault:?}: the data is right"
    );
    eprintln!(
        "{fault:?}: exit {:?}, then the rerun fetched {} of {SIZE}",
        faulted.code,
        rerun.figure("downloaded")
    );
}

#[test]
fn a_file_truncated_under_a_running_download_is_reported_and_fetched_again() {
    fault_under_a_running_download(Fault::Truncated);
}

#[test]
fn a_file_removed_under_a_running_download_is_reported_and_fetched_again() {
    fault_under_a_running_download(Fault::Removed);
}
