//! bitloop as a seeder for python3-libtorrent: the real binary (`bitloop seed`)
//! serves a single-file and a multi-file torrent to libtorrent leechers that find
//! it through a real opentracker (HTTP and UDP) or are given its address, and
//! each copy is checked byte for byte (file compare, and libtorrent's own check).

#[path = "common/binary.rs"]
mod binary;
mod common;
#[path = "common/leechers.rs"]
mod leechers;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use binary::Bitloop;
use common::libtorrent::libtorrent;
use common::opentracker::OpenTracker;
use common::seeders::Content;
use leechers::Leecher;

const SIZE: usize = 6_000_000;
const PIECE: u64 = 32768;

/// How the leecher learns where the seeder is.
#[derive(Clone, Copy, Debug)]
enum Found {
    HttpTracker,
    UdpTracker,
    /// `connect_peer` with the seeder's address.
    Direct,
}

/// Seeds and leechers opentracker knows for `hash_hex`, from an HTTP scrape.
fn scrape(tracker: &OpenTracker, hash_hex: &str) -> (u64, u64) {
    let encoded: String = (0..20)
        .map(|i| format!("%{}", &hash_hex[2 * i..2 * i + 2]))
        .collect();
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", tracker.port)) else {
        return (0, 0);
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request =
        format!("GET /scrape?info_hash={encoded} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, 0);
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let figure = |key: &str| -> u64 {
        text.split(key)
            .nth(1)
            .and_then(|rest| rest.split('e').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (figure("8:completei"), figure("10:incompletei"))
}

/// Waits (bounded) until opentracker knows a peer for the torrent; returns the scrape.
fn wait_known(tracker: &OpenTracker, hash_hex: &str, wanted: impl Fn((u64, u64)) -> bool) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let figures = scrape(tracker, hash_hex);
        if wanted(figures) || Instant::now() >= deadline {
            return figures;
        }
        std::thread::sleep(Duration::from_millis(20)); // polling another process
    }
}

fn serve(multi: bool, found: Found) {
    let tracker = match found {
        Found::Direct => None,
        _ => {
            // The info hash does not depend on the trackers: start the tracker with
            // it first, then make the torrent that names the tracker.
            let probe = Content::make(multi, SIZE, PIECE, vec![]);
            Some(OpenTracker::start(&[probe.torrent.info_hash.to_hex()]))
        }
    };
    let urls = match (&tracker, found) {
        (Some(t), Found::HttpTracker) => vec![t.http_url()],
        (Some(t), Found::UdpTracker) => vec![t.udp_url()],
        _ => vec![],
    };
    let content = Content::make(multi, SIZE, PIECE, urls);
    let seeder = Bitloop::seed(&content.torrent_path, &content.save_path, &["--json"]);

    let leech_dir = content.dir.path().join("leech");
    let leecher = match &tracker {
        Some(tracker) => {
            // The seeder announced `started` (left=0) before the leecher asks.
            // (As a seed or, see the ignored test below, as a leecher.)
            let hash = content.torrent.info_hash.to_hex();
            let known = wait_known(tracker, &hash, |(seeds, leechers)| seeds + leechers > 0);
            assert!(known.0 + known.1 > 0, "the seeder never announced to opentracker");
            Leecher::start(
                &content.torrent_path,
                &leech_dir,
                &[],
                true,
                "leecher via the tracker",
            )
        }
        None => Leecher::start(
            &content.torrent_path,
            &leech_dir,
            &[seeder.addr()],
            false,
            "leecher",
        ),
    };
    leecher.wait_complete(Duration::from_secs(120));

    content.assert_identical(&leech_dir);
    let verified = libtorrent(&[
        "verify",
        content.torrent_path.to_str().unwrap(),
        leech_dir.to_str().unwrap(),
    ]);
    assert_eq!(verified["pieces_verified"], verified["piece_count"], "{verified}");
    assert_eq!(verified["seeding"], true, "{verified}");

    let exit = seeder.stop(Duration::from_secs(10));
    assert!(exit.status.success(), "bitloop seed after Ctrl+C: {:?}", exit);
    let summary = exit.json();
    let total = content.torrent.total_length();
    let torrent = &summary["torrents"][0];
    assert_eq!(torrent["outcome"], "completed", "{summary}");
    assert_eq!(torrent["downloaded"], 0, "a seeder downloads nothing: {summary}");
    assert!(
        torrent["uploaded"].as_u64().unwrap() >= total,
        "uploaded at least the torrent once: {summary}"
    );
    assert_eq!(torrent["violations"], 0, "{summary}");
    let peers = summary["peers"].as_array().unwrap();
    let leecher = peers
        .iter()
        .find(|p| p["peer_id"].as_str().unwrap().starts_with("-LT"))
        .unwrap_or_else(|| panic!("libtorrent among the peers: {summary}"));
    assert!(leecher["uploaded"].as_u64().unwrap() >= total, "{summary}");
}

#[test]
fn single_file_to_a_libtorrent_leecher_found_through_opentracker_over_http() {
    serve(false, Found::HttpTracker);
}

#[test]
fn multi_file_to_a_libtorrent_leecher_found_through_opentracker_over_udp() {
    serve(true, Found::UdpTracker);
}

#[test]
fn single_file_to_a_libtorrent_leecher_given_our_address() {
    serve(false, Found::Direct);
}

#[test]
fn multi_file_to_a_libtorrent_leecher_given_our_address() {
    serve(true, Found::Direct);
}

/// `bitloop seed` must announce `left=0` (issue 17), so that trackers count it as
/// a seed; opentracker's scrape shows which it was counted as.
#[test]
fn a_seeder_checking_fresh_data_is_announced_as_a_seed() {
    let probe = Content::make(false, SIZE, PIECE, vec![]);
    let tracker = OpenTracker::start(&[probe.torrent.info_hash.to_hex()]);
    let content = Content::make(false, SIZE, PIECE, vec![tracker.http_url()]);
    let seeder = Bitloop::seed(&content.torrent_path, &content.save_path, &[]);
    let hash = content.torrent.info_hash.to_hex();
    let (seeds, leechers) = wait_known(&tracker, &hash, |(seeds, _)| seeds > 0);
    assert_eq!(
        (seeds, leechers),
        (1, 0),
        "opentracker counts bitloop seed as a seed"
    );
    drop(seeder);
}
