//! A full disk, end to end through the binary: the output folder is a small
//! tmpfs (mounted by the test, unmounted on every path) and the torrent is three
//! times its size. The download stops with a message naming the file and saying
//! there is no space left, tells its tracker `stopped`, exits 1 (no panic, and
//! not 70: the loop closed everything), and leaks nothing under valgrind. Once
//! the tmpfs has grown, a rerun completes and fetches only what is missing.
//! With `--preallocate` the same disk fails at start instead.
//!
//! Mounting needs root (CI runs as root): without it these tests fail, they
//! never skip.

mod common;

use std::process::Command;
use std::time::Duration;

use common::event_tracker::EventTracker;
use common::mounts::Tmpfs;
use common::payload::{big_content_with, same_bytes};
use common::procs::{download_args, Running, BIN};
use common::seeders::Seeder;

const MIB: u64 = 1 << 20;
const SIZE: u64 = 24 * MIB;
const PIECE: u64 = 256 << 10;
const DISK: u64 = 8 * MIB;
/// A rerun after room was made must fetch less than this share of the payload.
const RERUN_SHARE: f64 = 0.8;
/// valgrind's exit code for errors or leaks (bitloop's own codes are 0, 1, 2, 70, 130).
const VALGRIND_ERROR: i32 = 99;

fn valgrind() -> Command {
    let found = Command::new("valgrind").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "this test runs the binary under valgrind: install it (`apt-get install valgrind`; \
         scripts/test-all.sh does)"
    );
    let mut command = Command::new("valgrind");
    command.args([
        "-q",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite,indirect",
        &format!("--error-exitcode={VALGRIND_ERROR}"),
        BIN,
    ]);
    command
}

#[test]
fn a_full_disk_stops_clearly_without_leaks_and_a_rerun_after_room_is_made_fetches_the_rest() {
    let tracker = EventTracker::start();
    let content = big_content_with(SIZE, PIECE, vec![tracker.url.clone()]);
    // Limited to 4 MiB/s so that the disk fills seconds after the start, when the
    // tracker has answered `started` (a torrent stopped before that says nothing).
    let limit = (4 * MIB).to_string();
    let seeder = Seeder::start_with(
        &content.torrent_path,
        &content.save_path,
        &["--upload-limit", &limit],
    );
    let disk = Tmpfs::mount(DISK);
    let args = download_args(
        &content.torrent_path,
        disk.path(),
        seeder.addr(),
        &["--json", "-q"],
    );
    let file = disk.path().join("big.bin");

    let mut command = valgrind();
    command.args(&args);
    let full = Running::spawn_command(command, &[]).wait_exit(Duration::from_secs(300));
    assert_ne!(
        full.code,
        Some(VALGRIND_ERROR),
        "valgrind found errors or leaks:\n{}",
        full.stderr
    );
    assert_ne!(
        full.code,
        Some(70),
        "the loop did not close everything:\n{}",
        full.stderr
    );
    full.assert_code(1);
    let message = format!("{}: no space left on device", file.display());
    assert!(
        full.stderr
            .lines()
            .any(|l| l.starts_with("bitloop: big.bin: ") && l.contains(&message)),
        "a message naming the file and the full disk:\n{}",
        full.stderr
    );
    let torrent = full.torrent();
    assert_eq!(torrent["outcome"], "failed");
    assert!(torrent["error"].as_str().unwrap().contains(&message), "{torrent}");
    let events = tracker.events();
    assert_eq!(events.first().map(String::as_str), Some("started"), "{events:?}");
    assert_eq!(
        events.last().map(String::as_str),
        Some("stopped"),
        "told the tracker: {events:?}"
    );

    disk.resize(4 * SIZE);
    let rerun = Running::spawn(&args, &[]).wait_exit(Duration::from_secs(60));
    rerun.assert_code(0);
    assert!(
        same_bytes(&file, &content.save_path.join("big.bin")),
        "the data is right"
    );
    let downloaded = rerun.figure("downloaded");
    assert!(
        (downloaded as f64) < RERUN_SHARE * SIZE as f64,
        "the rerun fetched {downloaded} of {SIZE} bytes again"
    );
    eprintln!(
        "full disk: first run fetched {}, rerun {downloaded} of {SIZE}",
        full.figure("downloaded")
    );
}

#[test]
fn preallocating_on_a_full_disk_fails_at_start_naming_the_file() {
    let content = big_content_with(SIZE, PIECE, Vec::new());
    let disk = Tmpfs::mount(DISK);
    let args = [
        "download",
        content.torrent_path.to_str().unwrap(),
        "-o",
        disk.path().to_str().unwrap(),
        "--preallocate",
        "-q",
    ];
    // No peers and the default 300 s timeout: only a failure at start ends it soon.
    let run = Running::spawn(&args, &[]).wait_exit(Duration::from_secs(20));
    run.assert_code(1);
    let message = format!(
        "{}: no space left on device (while preallocating)",
        disk.path().join("big.bin").display()
    );
    assert!(run.stderr.contains(&message), "{}", run.stderr);
}

/// A failed save must not leave its temporary file behind on the full disk.
#[test]
fn a_resume_save_that_fails_leaves_no_temporary_file() {
    let content = big_content_with(SIZE, PIECE, Vec::new());
    let seeder = Seeder::start(&content.torrent_path, &content.save_path);
    let disk = Tmpfs::mount(DISK);
    let args = download_args(&content.torrent_path, disk.path(), seeder.addr(), &["-q"]);
    Running::spawn(&args, &[])
        .wait_exit(Duration::from_secs(60))
        .assert_code(1);
    let left: Vec<_> = std::fs::read_dir(disk.path().join(".bitloop"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
