//! `kill -9` a download at five points, restarting it each time: the final data
//! is right, resume data never claims a piece whose data is wrong, and each
//! restart fetches only what its last save did not claim (from the bytes the
//! seeder uploaded to it). Saves come within `RESUME_INTERVAL` of pieces
//! verifying, and the check at restart finds what was verified after the last
//! save, so all five kills together waste only the pieces that were in flight.
//!
//! The seeder is `bitloop seed --max-upload-rate`, restarted for every run so
//! that its `--json` `uploaded` is exactly what that run fetched. The download
//! is watched from outside: the resume file (replaced on each save) and the
//! bytes its sparse files have allocated.

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use bitloop::client::session::RESUME_INTERVAL;
use bitloop::metainfo::Metainfo;
use bitloop::storage::ResumeData;
use bitloop::swarm::Bitfield;
use common::payload::{assert_same_files, piece_bytes};
use common::procs::{allocated, download_args, BitloopSeeder, Running};
use common::seeders::Content;
use sha1::{Digest, Sha1};

const MIB: u64 = 1 << 20;
const SIZE: usize = 64 << 20;
const PIECE: u64 = 256 << 10;
/// The seeder's upload limit while the download is being killed.
const RATE: &str = "1M";
const RATE_BYTES: u64 = MIB;
/// How late a save may come on a loaded machine, beyond the interval.
const SAVE_SLACK: Duration = Duration::from_secs(3);
/// Bytes one kill may waste: the pieces in flight (a partly written piece is
/// fetched again) and what sat in the socket buffers, counted as uploaded by the
/// seeder but never read.
const WASTE_PER_KILL: u64 = MIB;

/// Where to kill a run.
#[derive(Clone, Copy, Debug)]
enum Point {
    /// Once this run has saved resume data `saves` times and then written `then`
    /// more bytes.
    AfterSave { saves: usize, then: u64 },
    /// After `written` bytes, before this run's first save.
    BeforeSave { written: u64 },
}

const POINTS: [Point; 5] = [
    Point::AfterSave { saves: 1, then: 0 },
    Point::AfterSave {
        saves: 1,
        then: 2 * MIB,
    },
    Point::BeforeSave { written: 2 * MIB },
    Point::AfterSave {
        saves: 1,
        then: 4 * MIB,
    },
    Point::AfterSave { saves: 2, then: MIB },
];

struct Download {
    content: Content,
    output: PathBuf,
    resume: PathBuf,
}

impl Download {
    fn torrent(&self) -> &Metainfo {
        &self.content.torrent
    }

    /// Bytes on disk in the download's files.
    fn written(&self) -> u64 {
        self.torrent()
            .info
            .files
            .iter()
            .map(|f| allocated(&self.output.join(&f.path)))
            .sum()
    }

    /// The pieces the resume file claims now (none without one).
    fn claims(&self) -> Bitfield {
        match ResumeData::load(&self.resume, self.torrent()) {
            Ok(resume) => resume.have().clone(),
            Err(_) => Bitfield::new(self.torrent().info.pieces.len() as u32),
        }
    }

    fn saved_at(&self) -> Option<SystemTime> {
        std::fs::metadata(&self.resume).and_then(|m| m.modified()).ok()
    }

    fn start(&self, seeder: &BitloopSeeder) -> Running {
        let args = download_args(
            &self.content.torrent_path,
            &self.output,
            seeder.addr(),
            &["--json", "-q"],
        );
        Running::spawn(&args, &[("RUST_LOG", "bitloop=info")])
    }

    /// Every piece resume data claims holds the right bytes.
    fn assert_claims_true(&self, claims: &Bitfield) {
        let torrent = self.torrent();
        for piece in claims.iter_ones() {
            let data = read_piece(&self.output, torrent, piece);
            assert!(
                Sha1::digest(&data)[..] == torrent.info.pieces[piece as usize],
                "resume data claims piece {piece}, whose data is wrong"
            );
        }
    }
}

/// Piece `piece`'s bytes, read across the files it spans.
fn read_piece(root: &Path, torrent: &Metainfo, piece: u32) -> Vec<u8> {
    let start = piece as u64 * torrent.info.piece_length;
    let end = (start + torrent.info.piece_length).min(torrent.total_length());
    let mut data = Vec::with_capacity((end - start) as usize);
    let mut offset = 0;
    for file in &torrent.info.files {
        let (from, to) = (start.max(offset), end.min(offset + file.length));
        if from < to {
            let mut part = vec![0u8; (to - from) as usize];
            File::open(root.join(&file.path))
                .and_then(|f| f.read_exact_at(&mut part, from - offset))
                .unwrap_or_else(|e| panic!("{}: {e}", file.path.display()));
            data.extend_from_slice(&part);
        }
        offset += file.length;
    }
    data
}

/// What a run had before fetching anything: "check done, X of P pieces
/// verified", "N pieces verified before, nothing to check", or nothing on disk.
fn had_at_start(run: &mut Running) -> u32 {
    run.wait_for_line(Duration::from_secs(30), |l| l.contains("added torrent"));
    let checking = run.lines.iter().any(|l| l.contains(" to check"));
    let line = if checking {
        run.wait_for_line(Duration::from_secs(30), |l| l.contains("check done,"))
    } else if let Some(line) = run.lines.iter().find(|l| l.contains("verified before")) {
        line.clone()
    } else {
        return 0; // nothing on disk yet
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let index = if checking {
        words.iter().position(|w| *w == "done,").map(|i| i + 1)
    } else {
        words.iter().position(|w| *w == "pieces").map(|i| i - 1)
    };
    index
        .and_then(|i| words.get(i)?.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"))
}

/// Polls `done` every 20 ms until it holds; panics after `limit`, naming `what`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20)); // polling files another process writes
    }
}

/// Counts the resume file's replacements (each save renames a new file over it).
struct Saves {
    last: Option<SystemTime>,
    count: usize,
}

impl Saves {
    fn poll(&mut self, download: &Download) -> usize {
        let now = download.saved_at();
        if now != self.last {
            self.last = now;
            self.count += 1;
        }
        self.count
    }
}

/// Runs until `point`; returns when it is time to kill.
fn run_to(download: &Download, run: &mut Running, point: Point) {
    let start = download.written();
    let mut saves = Saves {
        last: download.saved_at(),
        count: 0,
    };
    let limit = Duration::from_secs(60);
    let reach = |bytes: u64, saves: &mut Saves, run: &mut Running| {
        wait_until(limit, "the download to get that far", || {
            saves.poll(download);
            assert!(
                !run.has_exited(),
                "the download ended before its kill point {point:?}"
            );
            download.written() >= bytes
        });
    };
    match point {
        Point::BeforeSave { written } => reach(start + written, &mut saves, run),
        Point::AfterSave { saves: wanted, then } => {
            // Pieces have verified once 2 MiB are written: a save must follow
            // within the interval, and each further one within the next.
            reach(start + 2 * MIB, &mut saves, run);
            let verified = Instant::now();
            while saves.count < wanted {
                let before = saves.count;
                wait_until(RESUME_INTERVAL + SAVE_SLACK, "a resume save", || {
                    saves.poll(download) > before
                });
            }
            eprintln!(
                "save {wanted} came {:?} after 2 MiB were written",
                verified.elapsed()
            );
            reach(download.written() + then, &mut saves, run);
        }
    }
}

/// A restart that had `had` pieces after its check: at least what the last save
/// claimed, and the killed run's work that its saves did not cover (verified
/// after its last save, found again by the check) is at most a save interval's
/// worth at the seeder's rate.
fn assert_recovered(had: u32, claims: &Bitfield, had_before: Option<u32>) {
    assert!(
        had >= claims.count(),
        "the restart had {had} pieces at start; the last save claimed {}",
        claims.count()
    );
    let Some(before) = had_before else { return };
    let unsaved = had.saturating_sub(claims.count().max(before)) as u64 * PIECE;
    let allowed = (RESUME_INTERVAL + SAVE_SLACK).as_secs_f64() * RATE_BYTES as f64;
    assert!(
        unsaved as f64 <= allowed,
        "{unsaved} bytes were verified and not saved when the run was killed (allowed {allowed})"
    );
}

#[test]
fn kill_9_at_five_points_loses_only_what_was_not_saved() {
    let content = Content::make(true, SIZE, PIECE, vec![]);
    let output = content.dir.path().join("out");
    let resume = ResumeData::path_in(&output.join(".bitloop"), &content.torrent.info_hash);
    let download = Download {
        content,
        output,
        resume,
    };
    let torrent = download.torrent().clone();
    let total = torrent.total_length();
    let mut claims = Bitfield::new(torrent.info.pieces.len() as u32);
    let mut fetched = 0;
    // Pieces the killed run had at its start; set after each kill.
    let mut had_before = None;
    for (kill, point) in POINTS.iter().enumerate() {
        let seeder = BitloopSeeder::start(
            &download.content.torrent_path,
            &download.content.save_path,
            Some(RATE),
        );
        let mut run = download.start(&seeder);
        let had = had_at_start(&mut run);
        assert_recovered(had, &claims, had_before);
        run_to(&download, &mut run, *point);
        let exit = run.kill9();
        assert_eq!(exit.code, None, "killed by the signal:\n{}", exit.stderr);
        let uploaded = seeder.stop();
        let unclaimed = total - piece_bytes(&torrent, claims.iter_ones());
        eprintln!(
            "kill {kill} at {point:?}: had {had} pieces at start, fetched {} KiB, {} KiB unclaimed before",
            uploaded >> 10,
            unclaimed >> 10
        );
        assert!(
            uploaded <= unclaimed,
            "run {kill} fetched {uploaded} bytes; its last save left only {unclaimed} unclaimed"
        );
        fetched += uploaded;
        let now = download.claims();
        download.assert_claims_true(&now);
        for piece in claims.iter_ones() {
            assert!(now.get(piece), "piece {piece} was claimed, then no longer");
        }
        if matches!(point, Point::AfterSave { .. }) {
            assert!(
                now.count() > claims.count(),
                "the save of run {kill} claimed nothing new"
            );
        }
        claims = now;
        had_before = Some(had);
    }

    // The last run, at full speed: it completes, fetching only what was not claimed.
    let seeder = BitloopSeeder::start(&download.content.torrent_path, &download.content.save_path, None);
    let mut run = download.start(&seeder);
    let had = had_at_start(&mut run);
    assert_recovered(had, &claims, had_before);
    let exit = run.wait_exit(Duration::from_secs(120));
    exit.assert_code(0);
    let uploaded = seeder.stop();
    let unclaimed = total - piece_bytes(&torrent, claims.iter_ones());
    assert_eq!(
        exit.figure("downloaded"),
        uploaded,
        "both sides count the same bytes"
    );
    assert!(
        uploaded <= unclaimed,
        "the last run fetched {uploaded}, {unclaimed} unclaimed"
    );
    fetched += uploaded;
    assert_same_files(&download.content, &download.output);
    assert_eq!(download.claims().count() as usize, torrent.info.pieces.len());
    eprintln!(
        "fetched {} KiB in all for {} KiB ({} KiB more)",
        fetched >> 10,
        total >> 10,
        (fetched - total) >> 10
    );
    assert!(
        fetched <= total + POINTS.len() as u64 * WASTE_PER_KILL,
        "fetched {fetched} bytes in all for {total}: a restart fetched pieces verified before its kill"
    );
}
