//! Restarting a complete 1 GiB torrent with valid resume data is instant: the
//! binary reads none of the data (its `/proc/PID/io` shows only the torrent and
//! the resume file were read) and is done in under 0.2 s. The first run, without
//! resume data, checks the data, and the same measure sees it read every byte,
//! so the measure can fail.

mod common;

use std::time::Duration;

use bitloop::storage::ResumeData;
use common::payload::big_content;
use common::procs::run_counting_reads;

const SIZE: u64 = 1 << 30;
const PIECE: u64 = 1 << 20;
/// What a restart may read besides the torrent file: the resume file (a few
/// hundred bytes), `/proc/self/limits`, the loader's ELF headers; far below a piece.
const READ_BUDGET: u64 = 64 << 10;
/// The bound on a restart's wall time.
const INSTANT: Duration = Duration::from_millis(200);
/// Restarts measured; the fastest must be instant (the others show the noise of
/// a shared machine), and every one must read nothing.
const RESTARTS: usize = 5;

#[test]
fn a_complete_gigabyte_with_resume_data_restarts_without_reading_it() {
    let content = big_content(SIZE, PIECE);
    let output = content.dir.path().join("out");
    std::fs::create_dir_all(&output).unwrap();
    // The download folder already holds the data (a link, not a copy).
    std::fs::hard_link(content.save_path.join("big.bin"), output.join("big.bin")).unwrap();
    let torrent = content.torrent_path.to_str().unwrap();
    let args = [
        "download",
        torrent,
        "-o",
        output.to_str().unwrap(),
        "--json",
        "-q",
    ];
    let counts_file = content.dir.path().join("io");
    let pieces = SIZE / PIECE;

    // First run: no resume data, so a full check, and resume data at completion.
    let (first, read) = run_counting_reads(&args, Duration::from_secs(120), &counts_file);
    first.assert_code(0);
    assert_eq!(first.figure("pieces"), pieces);
    assert_eq!(first.figure("downloaded"), 0);
    assert!(read.rchar >= SIZE, "a full check reads the data: {read:?}");
    let resume = ResumeData::path_in(&output.join(".bitloop"), &content.torrent.info_hash);
    let saved = ResumeData::load(&resume, &content.torrent).expect("resume data saved at completion");
    assert_eq!(saved.have().count() as u64, pieces);

    let budget = std::fs::metadata(&content.torrent_path).unwrap().len() + READ_BUDGET;
    let mut fastest = Duration::MAX;
    for restart in 0..RESTARTS {
        let (run, read) = run_counting_reads(&args, Duration::from_secs(30), &counts_file);
        run.assert_code(0);
        assert_eq!(run.figure("pieces"), pieces, "restart {restart}: complete");
        assert_eq!(run.figure("downloaded"), 0);
        assert!(
            read.rchar < budget,
            "restart {restart} read {} bytes (budget {budget}): it read data it had resume data for",
            read.rchar
        );
        assert!(read.read_bytes < PIECE, "restart {restart}: {read:?}");
        eprintln!(
            "restart {restart}: {:?} wall, {} bytes read ({} from the disk), run's own elapsed {}",
            run.wall,
            read.rchar,
            read.read_bytes,
            run.json()["elapsed"]
        );
        fastest = fastest.min(run.wall);
    }
    assert!(
        fastest < INSTANT,
        "the fastest of {RESTARTS} restarts took {fastest:?} (must be under {INSTANT:?})"
    );
}
