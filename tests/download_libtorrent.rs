//! Downloads from real libtorrent seeders found through a real opentracker, over
//! HTTP and UDP: single- and multi-file torrents, from one seeder and from three,
//! each verified byte for byte, each ending with a provably empty loop.

mod common;

use std::time::Duration;

use bitloop::client::download::{run, DownloadOptions, Outcome};
use common::opentracker::OpenTracker;
use common::seeders::{Content, Seeder};
use common::trackers::offline_resolver;

fn download(multi: bool, seeders: usize, udp: bool) {
    let _ = env_logger::builder().is_test(true).try_init();
    // The tracker is started first (it needs the info hash, which does not depend
    // on the trackers), so that the torrent can name it.
    let probe = Content::make(multi, 3_000_000, 32768, vec![]);
    let tracker = OpenTracker::start(&[probe.torrent.info_hash.to_hex()]);
    let url = if udp {
        tracker.udp_url()
    } else {
        tracker.http_url()
    };
    // Same data and piece length, now with the tracker: the info hash is unchanged.
    let content = Content::make(multi, 3_000_000, 32768, vec![url]);
    assert_eq!(content.torrent.info_hash, probe.torrent.info_hash);

    let seeders: Vec<Seeder> = (0..seeders)
        .map(|_| Seeder::start(&content.torrent_path, &content.save_path))
        .collect();
    let output = content.dir.path().join("download");
    let mut options = DownloadOptions::new(output.clone());
    options.listen = Some("127.0.0.1:0".parse().unwrap());
    options.watch_signals = false;
    options.timeout = Duration::from_secs(30);
    options.trackers.resolver = offline_resolver();
    options.trackers.udp_retry_base = Duration::from_millis(100);
    let summary = run(&content.torrent, options).unwrap();
    assert_eq!(summary.outcome, Outcome::Completed);
    let report = summary.report.unwrap_or_else(|busy| panic!("{busy}"));
    assert_eq!(report.opened, report.closed);
    content.assert_identical(&output);
    drop(seeders);
}

#[test]
fn single_file_from_one_seeder_over_http() {
    download(false, 1, false);
}

#[test]
fn single_file_from_three_seeders_over_udp() {
    download(false, 3, true);
}

#[test]
fn multi_file_from_one_seeder_over_udp() {
    download(true, 1, true);
}

#[test]
fn multi_file_from_three_seeders_over_http() {
    download(true, 3, false);
}
