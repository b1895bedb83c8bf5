//! The Fast extension (BEP 6) against libtorrent: a seeder says have-all, and a
//! seeder that never unchokes still lets us fetch exactly its allowed-fast set,
//! which we request while choked (the set matches our own BEP 6 computation).

mod common;

use std::time::Duration;

use bitloop::client::download::{run, DownloadOptions, Outcome};
use bitloop::wire::{allowed_fast_set, allowed_fast_set_for};
use common::seeders::{Content, Seeder};
use common::trackers::offline_resolver;

fn options(output: std::path::PathBuf, peer: std::net::SocketAddr, timeout: Duration) -> DownloadOptions {
    let mut options = DownloadOptions::new(output);
    options.listen = None;
    options.watch_signals = false;
    options.timeout = timeout;
    options.trackers.resolver = offline_resolver();
    options.peers = vec![peer];
    options
}

#[test]
fn a_libtorrent_seeder_sends_have_all() {
    let content = Content::make(false, 500_000, 16384, vec![]);
    let seeder = Seeder::start(&content.torrent_path, &content.save_path);
    let output = content.dir.path().join("download");
    let summary = run(
        &content.torrent,
        options(output.clone(), seeder.addr(), Duration::from_secs(30)),
    )
    .unwrap();
    assert_eq!(summary.outcome, Outcome::Completed);
    assert!(summary.fast.have_all >= 1, "{:?}", summary.fast);
    content.assert_identical(&output);
}

#[test]
fn allowed_fast_pieces_are_fetched_while_choked() {
    let _ = env_logger::builder().is_test(true).try_init();
    let content = Content::make(false, 2_000_000, 16384, vec![]);
    let seeder = Seeder::start_with(
        &content.torrent_path,
        &content.save_path,
        &["--never-unchoke", "--allowed-fast", "6"],
    );
    let output = content.dir.path().join("download");
    // The seeder never unchokes: the run ends by the no-progress timeout, with only
    // the allowed-fast pieces downloaded.
    let summary = run(
        &content.torrent,
        options(output, seeder.addr(), Duration::from_secs(3)),
    )
    .unwrap();
    assert!(
        matches!(summary.outcome, Outcome::Failed(ref why) if why.contains("no data")),
        "{:?}",
        summary.outcome
    );
    assert!(summary.report.is_ok());
    assert!(summary.fast.allowed_fast >= 6, "{:?}", summary.fast);
    assert!(summary.fast.requests_while_choked > 0, "{:?}", summary.fast);
    let count = content.torrent.info.pieces.len() as u32;
    // libtorrent does not apply BEP 6's /24 mask to peers on a local network, so
    // for us at 127.0.0.1 its set is the generator's output for the full address.
    let mut expected = allowed_fast_set_for(0x7f00_0001, &content.torrent.info_hash, count, 6);
    expected.sort();
    assert_eq!(
        summary.pieces, expected,
        "exactly the allowed-fast set libtorrent computed for us"
    );
    // For any other peer the mask applies: our set is not that one.
    let masked = allowed_fast_set("127.0.0.1".parse().unwrap(), &content.torrent.info_hash, count, 6);
    assert_eq!(
        masked,
        allowed_fast_set_for(0x7f00_0000, &content.torrent.info_hash, count, 6)
    );
}
