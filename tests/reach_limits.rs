//! The limits of `docs/limits.md` that had no hostile test of their own, each hit
//! from just past it through the public API: the input is refused with an error
//! naming the limit, or (for tables) the extra entry is refused and room comes
//! back when an entry leaves.

use std::time::Instant;

use bitloop::dns::{Resolver, ResolverConfig, MAX_LOOKUPS};
use bitloop::metainfo::{Magnet, Metainfo, MAX_FILES, MAX_PIECE_LENGTH, MAX_TOTAL_LENGTH, MAX_TRACKERS};
use bitloop::storage::resume::MAX_RESUME_BYTES;
use bitloop::storage::ResumeData;
use bitloop::tracker::http::parse_announce;
use bitloop::tracker::udp::{parse_reply, MAX_DATAGRAM};

/// A bencoded byte string.
fn s(text: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", text.len()).into_bytes();
    out.extend_from_slice(text);
    out
}

/// A bencoded integer.
fn i(n: u64) -> Vec<u8> {
    format!("i{n}e").into_bytes()
}

/// A bencoded list.
fn l(items: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut out = vec![b'l'];
    items.into_iter().for_each(|item| out.extend(item));
    out.push(b'e');
    out
}

/// A bencoded dictionary; `entries` must come sorted by key (canonical form).
fn d(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    assert!(entries.windows(2).all(|w| w[0].0 < w[1].0), "keys sorted");
    let mut out = vec![b'd'];
    for (key, value) in entries {
        out.extend(s(key.as_bytes()));
        out.extend_from_slice(value);
    }
    out.push(b'e');
    out
}

/// A single-file torrent of `length` bytes in pieces of `piece_length`, with
/// `extra` top-level entries (sorted, all before `info`).
fn single(length: u64, piece_length: u64, extra: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let pieces = length.div_ceil(piece_length) as usize;
    let info = d(&[
        ("length", i(length)),
        ("name", s(b"x")),
        ("piece length", i(piece_length)),
        ("pieces", s(&vec![7u8; 20 * pieces])),
    ]);
    let mut entries: Vec<(&str, Vec<u8>)> = extra.to_vec();
    entries.push(("info", info));
    d(&entries)
}

fn refused(torrent: &[u8]) -> String {
    Metainfo::parse(torrent)
        .map(|_| ())
        .expect_err("the torrent is past a limit")
        .to_string()
}

#[test]
fn a_torrent_with_more_files_than_max_files_is_refused() {
    let file = |n: usize| d(&[("length", i(1)), ("path", l([s(format!("{n}").as_bytes())]))]);
    let torrent = |count: usize| {
        d(&[(
            "info",
            d(&[
                ("files", l((0..count).map(file))),
                ("name", s(b"many")),
                ("piece length", i(1 << 20)),
                (
                    "pieces",
                    s(&vec![7u8; 20 * (count as u64).div_ceil(1 << 20) as usize]),
                ),
            ]),
        )])
    };
    assert_eq!(
        Metainfo::parse(&torrent(MAX_FILES)).unwrap().info.files.len(),
        MAX_FILES
    );
    let why = refused(&torrent(MAX_FILES + 1));
    assert!(why.contains(&format!("more than {MAX_FILES} files")), "{why}");
}

#[test]
fn a_piece_length_past_max_piece_length_is_refused() {
    assert!(Metainfo::parse(&single(MAX_PIECE_LENGTH, MAX_PIECE_LENGTH, &[])).is_ok());
    let why = refused(&single(MAX_PIECE_LENGTH + 1, MAX_PIECE_LENGTH + 1, &[]));
    assert!(why.contains(&format!("1..={MAX_PIECE_LENGTH}")), "{why}");
}

#[test]
fn a_total_length_past_max_total_length_is_refused() {
    // One hash only: the total is checked before the hashes are counted.
    let one_file = d(&[(
        "info",
        d(&[
            ("length", i(MAX_TOTAL_LENGTH + 1)),
            ("name", s(b"huge")),
            ("piece length", i(MAX_PIECE_LENGTH)),
            ("pieces", s(&[7u8; 20])),
        ]),
    )]);
    let why = refused(&one_file);
    assert!(why.contains("over 1 PiB"), "{why}");
    let two_files = d(&[(
        "info",
        d(&[
            (
                "files",
                l([
                    d(&[("length", i(MAX_TOTAL_LENGTH)), ("path", l([s(b"a")]))]),
                    d(&[("length", i(1)), ("path", l([s(b"b")]))]),
                ]),
            ),
            ("name", s(b"huge")),
            ("piece length", i(MAX_PIECE_LENGTH)),
            ("pieces", s(&[7u8; 20])),
        ]),
    )]);
    let why = refused(&two_files);
    assert!(why.contains("over 1 PiB"), "{why}");
}

#[test]
fn more_trackers_than_max_trackers_are_refused() {
    let url = |n: usize| s(format!("http://t{n}.example/announce").as_bytes());
    let tiers = |count: usize| l((0..count).map(|n| l([url(n)])));
    let ok = single(1000, 16384, &[("announce-list", tiers(MAX_TRACKERS))]);
    assert_eq!(
        Metainfo::parse(&ok).unwrap().trackers.iter().flatten().count(),
        MAX_TRACKERS
    );
    let why = refused(&single(
        1000,
        16384,
        &[("announce-list", tiers(MAX_TRACKERS + 1))],
    ));
    assert!(
        why.contains(&format!("more than {MAX_TRACKERS} trackers")),
        "{why}"
    );
    // One tier holding them all is counted the same way.
    let one_tier = l([l((0..=MAX_TRACKERS).map(url))]);
    assert!(Metainfo::parse(&single(1000, 16384, &[("announce-list", one_tier)])).is_err());
}

#[test]
fn a_magnet_link_past_its_length_or_tracker_limit_is_refused() {
    let hash = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
    let long = format!("magnet:?xt=urn:btih:{hash}&dn={}", "x".repeat(64 * 1024));
    let why = Magnet::parse(&long).unwrap_err().to_string();
    assert!(why.contains("longer than 65536 bytes"), "{why}");
    let trackers: String = (0..=MAX_TRACKERS).map(|n| format!("&tr=udp://t{n}:1")).collect();
    let why = Magnet::parse(&format!("magnet:?xt=urn:btih:{hash}{trackers}"))
        .unwrap_err()
        .to_string();
    assert!(
        why.contains(&format!("more than {MAX_TRACKERS} trackers")),
        "{why}"
    );
}

#[test]
fn a_tracker_body_nested_past_its_depth_is_malformed_and_not_walked() {
    // Real announces are two levels deep (dictionary-model peers: three); the
    // limit is 8, the top-level dictionary included.
    let nested = |lists: usize| {
        let mut body = b"d8:intervali1800e5:peers0:1:x".to_vec();
        body.extend(std::iter::repeat_n(b'l', lists));
        body.extend(std::iter::repeat_n(b'e', lists));
        body.push(b'e');
        body
    };
    assert!(parse_announce(&nested(7)).is_ok());
    let error = parse_announce(&nested(8)).unwrap_err().to_string();
    assert!(error.contains("deep"), "{error}");
}

#[test]
fn a_udp_tracker_datagram_past_max_datagram_is_refused() {
    let mut huge = vec![0, 0, 0, 1, 1, 2, 3, 4];
    huge.extend_from_slice(&[0, 0, 7, 8, 0, 0, 0, 1, 0, 0, 0, 2]);
    huge.resize(MAX_DATAGRAM + 1, 1);
    assert!(parse_reply(&huge, false).is_err());
    huge.truncate(MAX_DATAGRAM - (MAX_DATAGRAM - 20) % 6);
    assert!(parse_reply(&huge, false).is_ok());
}

#[test]
fn lookups_past_max_lookups_are_refused_and_room_comes_back() {
    let config = ResolverConfig::from_texts("", "nameserver 127.0.0.1\n");
    let mut resolver = Resolver::new(config);
    let now = Instant::now();
    let mut ids = Vec::new();
    for n in 0..MAX_LOOKUPS {
        match resolver.resolve(now, &format!("t{n}.bitloop.test")).unwrap() {
            bitloop::dns::Start::Pending(id) => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    let why = resolver.resolve(now, "one-more.bitloop.test").unwrap_err();
    assert!(why.contains("too many name lookups"), "{why}");
    assert_eq!(resolver.in_progress(), MAX_LOOKUPS);
    resolver.cancel(ids.pop().unwrap());
    assert!(resolver.resolve(now, "one-more.bitloop.test").is_ok());
}

#[test]
fn a_resume_file_past_max_resume_bytes_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = Metainfo::parse(&single(1000, 16384, &[])).unwrap();
    let path = dir.path().join("huge.resume");
    // Sparse: 1 GiB that costs nothing on disk; only the limit's worth is read.
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(1 << 30).unwrap();
    let error = ResumeData::load(&path, &torrent).map(|_| ()).unwrap_err();
    assert!(
        error.to_string().contains("large") || format!("{error:?}").contains("TooLarge"),
        "{error:?}"
    );
    assert!(
        format!("{error:?}").contains(&format!("{}", MAX_RESUME_BYTES + 1)),
        "{error:?}"
    );
}
