//! The check each fuzz target runs on one input, by target name. The targets in
//! `src/bin/` call these, and the normal suite replays `fuzz/regressions/<target>/`
//! through [`TARGETS`], so an input that once broke a parser is checked on every
//! `cargo test` exactly as the fuzzer checked it.
//!
//! Like `stream.rs`, this file uses std and bitloop only: the suite includes it by
//! path, next to `stream.rs`, `peer_stream.rs` and `http_stream.rs`.

use std::time::{Duration, Instant};

use bitloop::bencode::{self, Value};
use bitloop::dns::message::decode_answer;
use bitloop::metainfo::{InfoHash, Magnet, Metainfo};
use bitloop::tracker::udp::{parse_reply, Progress, Purpose, Reply, UdpTransaction, MAX_SCRAPE_HASHES};
use bitloop::tracker::url::TrackerUrl;
use bitloop::wire::{self, Message, MAX_EXTENDED};

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
    ("extension", extension),
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

/// The limits `torrent/messages.rs` reads a BEP 10 extension handshake with.
const HANDSHAKE_LIMITS: bencode::Limits = bencode::Limits {
    max_depth: 4,
    max_values: 1000,
};

/// Values in `value` and its nesting of lists and dictionaries (a top-level one is 1).
fn size_of(value: &Value<'_>) -> (usize, usize) {
    let children: Vec<(usize, usize)> = match value {
        Value::List(items) => items.iter().map(size_of).collect(),
        Value::Dict(dict) => dict.iter().map(|(_, v)| size_of(v)).collect(),
        Value::Integer(_) | Value::Bytes(_) => return (1, 0),
    };
    let values = 1 + children.iter().map(|c| c.0).sum::<usize>();
    let depth = 1 + children.iter().map(|c| c.1).max().unwrap_or(0);
    (values, depth)
}

/// A BEP 10 extension handshake as the torrent reads it (`extension_reqq` in
/// `src/torrent/messages.rs`, through the public bencode API): what decodes stays
/// within the handshake's limits and `reqq` is read as the torrent reads it. The
/// same bytes inside an extended message (id 20, extended id 0) come out of the
/// wire decoder unchanged, or are refused as too long, never cut.
pub fn extension(data: &[u8]) {
    if let Ok(value) = bencode::decode(data, HANDSHAKE_LIMITS) {
        let (values, depth) = size_of(&value);
        assert!(values <= HANDSHAKE_LIMITS.max_values, "{values} values");
        assert!(depth <= HANDSHAKE_LIMITS.max_depth, "depth {depth}");
        // The lookup the torrent makes (any i64 must be safe to look at).
        let reqq = value.as_dict().and_then(|d| d.int(b"reqq"));
        let _ = reqq
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=100_000).contains(n));
    }
    let mut message = ((data.len() + 2) as u32).to_be_bytes().to_vec();
    message.extend_from_slice(&[20, 0]);
    message.extend_from_slice(data);
    match wire::decode(&message, &wire::Limits::pieces(100)) {
        Ok(Some((Message::Extended { id: 0, payload }, used))) => {
            assert_eq!(payload, data);
            assert_eq!(used, message.len());
        }
        Err(_) => assert!(data.len() + 2 > MAX_EXTENDED, "{} bytes refused", data.len()),
        other => panic!("an extended message decoded as {other:?}"),
    }
}
