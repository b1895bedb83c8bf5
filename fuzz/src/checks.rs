//! The check each fuzz target runs on one input, by target name. The targets in
//! `src/bin/` call these, and the normal suite replays `fuzz/regressions/<target>/`
//! through [`TARGETS`], so an input that once broke a parser is checked on every
//! `cargo test` exactly as the fuzzer checked it.
//!
//! Like `stream.rs`, this file uses std and bitloop only: the suite includes it by
//! path, next to `stream.rs`, `peer_stream.rs` and `http_stream.rs`.

use std::time::{Duration, Instant};

use bitloop::dns::message::decode_answer;
use bitloop::metainfo::{InfoHash, Magnet, Metainfo};
use bitloop::tracker::udp::{parse_reply, Progress, Purpose, Reply, UdpTransaction, MAX_SCRAPE_HASHES};
use bitloop::tracker::url::TrackerUrl;

use super::stream::StreamInput;
use super::{http_stream, peer_stream};

/// A target's check of one input: returns, or panics on a bug.
pub type Check = fn(&[u8]);

/// Every target with a shared check: (name of its file in `src/bin/`, check).
pub const TARGETS: &[(&str, Check)] = &[
    ("metainfo", metainfo),
    ("magnet", magnet),
    ("wire", wire),
    ("tracker", tracker),
    ("udp_tracker", udp_tracker),
    ("tracker_url", tracker_url),
    ("dns", dns),
];

/// The check for `target`, if it has a shared one.
pub fn for_target(target: &str) -> Option<Check> {
    TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, check)| *check)
}

/// Any bytes give a torrent or an error; a torrent's pieces cover its files exactly.
pub fn metainfo(data: &[u8]) {
    if let Ok(torrent) = Metainfo::parse(data) {
        let layout = torrent.layout();
        let mut covered = 0;
        for piece in 0..layout.piece_count() {
            covered += layout
                .piece_spans(piece)
                .expect("piece in range")
                .map(|s| s.len)
                .sum::<u64>();
        }
        assert_eq!(covered, torrent.total_length());
    }
}

/// Any text gives a link or an error; a parsed link survives printing and parsing.
pub fn magnet(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(magnet) = Magnet::parse(text) {
        let again = Magnet::parse(&magnet.to_uri()).expect("our own output parses");
        assert_eq!(again.info_hash, magnet.info_hash);
    }
}

/// The peer wire stream in a chunking (see [`peer_stream`]).
pub fn wire(data: &[u8]) {
    let _ = peer_stream::check(&StreamInput::parse(data));
}

/// An HTTP tracker response in a chunking (see [`http_stream`]).
pub fn tracker(data: &[u8]) {
    let _ = http_stream::check(&StreamInput::parse(data));
}

/// A BEP 15 datagram, decoded and fed to a transaction. The first byte chooses
/// IPv6 (bit 0), splicing in the transaction's own id (bit 1, so that the fuzzer
/// reaches the accepting paths it could not guess a random id for) and a cached
/// connection id (bit 2, which starts the transaction at its request step).
pub fn udp_tracker(data: &[u8]) {
    let Some((&flags, datagram)) = data.split_first() else {
        return;
    };
    let ipv6 = flags & 1 != 0;
    match parse_reply(datagram, ipv6) {
        Ok(Reply::Announce { response, .. }) => {
            let entry = if ipv6 { 18 } else { 6 };
            assert!(response.peers.len() <= (datagram.len() - 20) / entry);
            assert!(response
                .peers
                .iter()
                .all(|p| p.port() != 0 && p.is_ipv6() == ipv6));
        }
        Ok(Reply::Scrape { stats, .. }) => assert!(stats.len() <= MAX_SCRAPE_HASHES),
        _ => {}
    }
    let now = Instant::now();
    let cached = (flags & 4 != 0).then_some((7u64, now));
    let purpose = Purpose::Scrape(vec![InfoHash([1; 20])]);
    let mut transaction = UdpTransaction::new(now, purpose, ipv6, Duration::from_secs(15), cached);
    let mut datagram = datagram.to_vec();
    if flags & 2 != 0 && datagram.len() >= 8 {
        datagram[4..8].copy_from_slice(&transaction.transaction_id().to_be_bytes());
    }
    assert!(
        transaction.poll_transmit().is_some(),
        "a new transaction sends at once"
    );
    if let Progress::Connected { .. } = transaction.handle_datagram(now, &datagram) {
        assert!(
            transaction.poll_transmit().is_some(),
            "connected, so the request is due"
        );
    }
}

/// A URL bitloop would send a request to: a host, a port, and a request target
/// that starts with `/` and holds no spaces or control characters.
fn assert_usable(url: &TrackerUrl, from: &str) {
    assert!(!url.host.is_empty() && url.port != 0, "{from:?} gave {url:?}");
    assert!(url.target.starts_with('/'), "{from:?} gave {url:?}");
    assert!(
        !url.target.contains(|c: char| c.is_whitespace() || c.is_control()),
        "{from:?} gave a request target with spaces or control characters: {url:?}"
    );
}

/// Tracker URLs (from torrent files) and `Location` headers (from trackers).
pub fn tracker_url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(url) = TrackerUrl::parse(text) {
        assert_usable(&url, text);
        let _ = url.host_header();
    }
    let base = TrackerUrl::parse("http://127.0.0.1:6969/announce").expect("a valid URL");
    if let Ok(url) = base.redirect(text) {
        assert_usable(&url, text);
    }
}

/// A DNS answer: one that decodes carries the message's id and at most 64 addresses.
pub fn dns(data: &[u8]) {
    if let Ok(answer) = decode_answer(data) {
        assert_eq!(answer.id, u16::from_be_bytes([data[0], data[1]]));
        assert!(
            answer.addresses.len() <= 64,
            "{} addresses",
            answer.addresses.len()
        );
    }
}
