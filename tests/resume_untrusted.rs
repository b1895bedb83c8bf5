//! Resume data is trusted only where it still describes the files, end to end
//! through the binary: a file written since the save (a changed byte, a new
//! mtime) or of another size is checked again and its bad piece fetched again;
//! a resume file that is cut off, garbage, empty, of another torrent or of
//! another shape is ignored with a warning naming it, and everything is checked.
//!
//! Each test downloads a small multi-file torrent from a libtorrent seeder, then
//! changes the data behind the resume file's back and runs the binary again; the
//! `--json` `downloaded` figure says exactly which pieces it fetched again.

mod common;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bitloop::metainfo::Metainfo;
use bitloop::storage::ResumeData;
use common::payload::{assert_same_files, piece_bytes, same_bytes};
use common::procs::{download_args, Exit, Running};
use common::seeders::{Content, Seeder};
use sha1::{Digest, Sha1};

const SIZE: usize = 6 << 20;
const PIECE: u64 = 64 << 10;
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// A completed download with valid resume data, and its seeder still running.
struct Done {
    content: Content,
    seeder: Seeder,
    output: PathBuf,
}

impl Done {
    fn new() -> Done {
        let content = Content::make(true, SIZE, PIECE, vec![]);
        let seeder = Seeder::start(&content.torrent_path, &content.save_path);
        let output = content.dir.path().join("out");
        let done = Done {
            content,
            seeder,
            output,
        };
        let first = done.run("off");
        first.assert_code(0);
        assert_eq!(first.figure("downloaded"), done.content.torrent.total_length());
        ResumeData::load(&done.resume_path(), &done.content.torrent).expect("resume data at completion");
        done
    }

    fn torrent(&self) -> &Metainfo {
        &self.content.torrent
    }

    /// `bitloop download` again, with `RUST_LOG=log`.
    fn run(&self, log: &str) -> Exit {
        let args = download_args(
            &self.content.torrent_path,
            &self.output,
            self.seeder.addr(),
            &["--json", "-q"],
        );
        Running::spawn(&args, &[("RUST_LOG", log)]).wait_exit(RUN_LIMIT)
    }

    fn resume_path(&self) -> PathBuf {
        ResumeData::path_in(&self.output.join(".bitloop"), &self.torrent().info_hash)
    }

    /// The torrent's file whose path ends with `name`: its index and path on disk.
    fn file(&self, name: &str) -> (usize, PathBuf) {
        let files = &self.torrent().info.files;
        let index = files.iter().position(|f| f.path.ends_with(name)).expect(name);
        (index, self.output.join(&files[index].path))
    }

    /// The piece holding byte `at` of file `index`.
    fn piece_at(&self, index: usize, at: u64) -> u32 {
        let start: u64 = self.torrent().info.files[..index].iter().map(|f| f.length).sum();
        ((start + at) / PIECE) as u32
    }

    /// Flips the byte at `at` of `name`; the piece it is in.
    fn corrupt(&self, name: &str, at: u64, keep_mtime: bool) -> u32 {
        let (index, path) = self.file(name);
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let file = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, at).unwrap();
        file.write_all_at(&[!byte[0]], at).unwrap();
        set_mtime(&file, if keep_mtime { mtime } else { SystemTime::now() });
        self.piece_at(index, at)
    }

    /// A rerun fetched exactly `pieces` and left every file right.
    fn assert_fetched_only(&self, run: &Exit, pieces: &[u32]) {
        run.assert_code(0);
        assert_eq!(
            run.figure("downloaded"),
            piece_bytes(self.torrent(), pieces.iter().copied()),
            "fetched again exactly pieces {pieces:?}; stderr:\n{}",
            run.stderr
        );
        assert_same_files(&self.content, &self.output);
    }
}

fn set_mtime(file: &File, at: SystemTime) {
    file.set_modified(at).unwrap();
}

/// The pieces the torrent's file `index` touches.
fn pieces_of(torrent: &Metainfo, index: usize) -> std::ops::RangeInclusive<u32> {
    let start: u64 = torrent.info.files[..index].iter().map(|f| f.length).sum();
    let end = start + torrent.info.files[index].length;
    (start / PIECE) as u32..=((end - 1) / PIECE) as u32
}

#[test]
fn a_file_written_since_the_save_is_checked_and_its_bad_piece_fetched_again() {
    let done = Done::new();
    let piece = done.corrupt("a.bin", 1_000_003, false);
    let run = done.run("bitloop=info");
    done.assert_fetched_only(&run, &[piece]);
    let (index, path) = done.file("a.bin");
    assert!(
        run.stderr.contains(&format!(
            "{} was modified since resume data was saved",
            path.display()
        )),
        "{}",
        run.stderr
    );
    // Only that file's pieces were checked; the others were trusted, unread.
    let checked = pieces_of(done.torrent(), index).count();
    let trusted = done.torrent().info.pieces.len() - checked;
    assert!(
        run.stderr
            .contains(&format!("{trusted} pieces trusted, {checked} to check")),
        "{}",
        run.stderr
    );
}

#[test]
fn a_file_of_another_size_is_checked_even_with_its_saved_mtime() {
    let done = Done::new();
    let (index, path) = done.file("b.bin");
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    let meta = file.metadata().unwrap();
    let cut = 1000;
    file.set_len(meta.len() - cut).unwrap();
    set_mtime(&file, meta.modified().unwrap());
    drop(file);
    let run = done.run("bitloop=info");
    let lost: Vec<u32> =
        (done.piece_at(index, meta.len() - cut)..=done.piece_at(index, meta.len() - 1)).collect();
    done.assert_fetched_only(&run, &lost);
    assert!(
        run.stderr.contains(&format!(
            "{} changed size ({} → {} bytes)",
            path.display(),
            meta.len(),
            meta.len() - cut
        )),
        "{}",
        run.stderr
    );
}

/// Rewrites the resume file's info hash (or piece count) and its checksum, so
/// that it is a well-formed resume file of another torrent (or shape).
fn reforged(valid: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut forged = valid.to_vec();
    forged[at..at + bytes.len()].copy_from_slice(bytes);
    let body = forged.len() - 20;
    let sum = Sha1::digest(&forged[..body]);
    forged[body..].copy_from_slice(&sum);
    forged
}

#[test]
fn a_cut_garbage_or_foreign_resume_file_is_never_trusted() {
    let done = Done::new();
    let resume = done.resume_path();
    let valid = std::fs::read(&resume).unwrap();

    // The limit of the promise (docs/storage.md): a change that keeps the size and
    // the mtime to the nanosecond is not seen through valid resume data. So a
    // piece corrupted that way shows which runs checked the data and which did not.
    let piece = done.corrupt("b.bin", 77_777, true);
    let trusting = done.run("off");
    trusting.assert_code(0);
    assert_eq!(trusting.figure("downloaded"), 0, "valid resume data is trusted");
    let (index, b_bin) = done.file("b.bin");
    let original = done
        .content
        .save_path
        .join(&done.torrent().info.files[index].path);
    assert!(!same_bytes(&b_bin, &original), "the corruption stayed");

    let mut garbage = valid.clone();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for byte in &mut garbage {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    let mut flipped = valid.clone();
    flipped[48] ^= 0x80; // a claimed piece unclaimed: the checksum no longer matches
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("cut off", valid[..valid.len() / 2].to_vec()),
        ("header only", valid[..47].to_vec()),
        ("empty", Vec::new()),
        ("garbage", garbage),
        ("one bit flipped", flipped),
        ("another torrent", reforged(&valid, 12, &[0xab; 20])),
        (
            "another piece count",
            reforged(&valid, 40, &12345u32.to_le_bytes()),
        ),
    ];
    let mut corrupted = piece;
    for (case, bytes) in bad {
        std::fs::write(&resume, &bytes).unwrap();
        let run = done.run("bitloop=info");
        let warned = run.stderr.lines().any(|l| {
            l.contains(" WARN ")
                && l.contains(&resume.display().to_string())
                && l.contains("checking the files again")
        });
        assert!(
            warned,
            "{case}: a warning naming the resume file:\n{}",
            run.stderr
        );
        let all = done.torrent().info.pieces.len();
        assert!(
            run.stderr.contains(&format!("0 pieces trusted, {all} to check")),
            "{case}: a full check:\n{}",
            run.stderr
        );
        done.assert_fetched_only(&run, &[corrupted]);
        // Saved again at completion, valid: corrupt the next case's piece the same way.
        ResumeData::load(&resume, done.torrent()).unwrap_or_else(|e| panic!("{case}: {e}"));
        corrupted = done.corrupt("b.bin", 77_777, true);
    }
}

/// What a user sees without `RUST_LOG`: the warning that resume data is ignored.
#[test]
fn the_warning_about_an_unusable_resume_file_shows_without_rust_log() {
    let done = Done::new();
    std::fs::write(done.resume_path(), b"not a resume file").unwrap();
    let run = done.run_default_log();
    run.assert_code(0);
    assert!(
        run.stderr.contains(&done.resume_path().display().to_string()),
        "nothing said about the resume file:\n{}",
        run.stderr
    );
}

impl Done {
    /// A run with the environment a user has: no `RUST_LOG`, progress lines on.
    fn run_default_log(&self) -> Exit {
        let args = download_args(&self.content.torrent_path, &self.output, self.seeder.addr(), &[]);
        Running::spawn(&args, &[]).wait_exit(RUN_LIMIT)
    }
}
