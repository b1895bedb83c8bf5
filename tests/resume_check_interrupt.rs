//! Ctrl+C during the check of 1 GiB of data (present, no resume data) stops the
//! binary at once: the check runs in slices from the loop, so the signal is
//! served between two slices, and the process exits 130 within 1 s.

mod common;

use std::time::{Duration, Instant};

use common::payload::big_content;
use common::procs::Running;

const SIZE: u64 = 1 << 30;
const PIECE: u64 = 1 << 20;
/// The bound from Ctrl+C to exit.
const AT_ONCE: Duration = Duration::from_secs(1);

#[test]
fn ctrl_c_during_a_gigabyte_check_exits_130_within_a_second() {
    let content = big_content(SIZE, PIECE);
    let output = content.dir.path().join("out");
    std::fs::create_dir_all(&output).unwrap();
    std::fs::hard_link(content.save_path.join("big.bin"), output.join("big.bin")).unwrap();
    let args = [
        "download",
        content.torrent_path.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "-q",
    ];
    // At info level the binary says what it is about to check before the first slice.
    let mut run = Running::spawn(&args, &[("RUST_LOG", "bitloop=info")]);
    let plan = run.wait_for_line(Duration::from_secs(30), |l| l.contains("to check"));
    assert!(
        plan.contains(&format!("0 pieces trusted, {} to check", SIZE / PIECE)),
        "no resume data: everything is checked: {plan}"
    );
    let signalled = Instant::now();
    run.interrupt();
    let exit = run.wait_exit(Duration::from_secs(10));
    let took = signalled.elapsed();
    exit.assert_code(130);
    eprintln!("exited {took:?} after Ctrl+C");
    assert!(took < AT_ONCE, "exited {took:?} after Ctrl+C");
    assert!(
        !exit.stderr.contains("check done"),
        "the check had finished before Ctrl+C arrived, so this proves nothing:\n{}",
        exit.stderr
    );
    // Nothing was promised: no resume data claims what the cut check saw.
    let resume = bitloop::storage::ResumeData::path_in(&output.join(".bitloop"), &content.torrent.info_hash);
    if let Ok(saved) = bitloop::storage::ResumeData::load(&resume, &content.torrent) {
        assert!(
            u64::from(saved.have().count()) < SIZE / PIECE,
            "an interrupted check claims all"
        );
    }
}
