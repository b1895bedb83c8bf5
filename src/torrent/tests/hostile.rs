//! Peers that break the protocol: each violation closes that connection and
//! strikes that address (IP and port) alone, so an honest peer on the same IP is
//! still used (issue 16 fix 11); floods cost bounded work (fix 4).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;
use crate::metainfo::{FileEntry, Info, InfoHash};

/// Bytes that break the protocol, and whether the peer must support Fast.
fn violations() -> Vec<(&'static str, Caps, Vec<u8>)> {
    let enc = |messages: &[Message<'_>]| {
        let mut out = Vec::new();
        for m in messages {
            wire::encode(m, &mut out);
        }
        out
    };
    let mut too_long = 100u32.to_be_bytes().to_vec();
    too_long.push(4); // a `have` claiming 100 bytes
    let mut huge_piece = (1u32 << 20).to_be_bytes().to_vec();
    huge_piece.push(7); // a 1 MiB block: refused from its first five bytes
    vec![
        ("a `have` with a wrong length", FAST_ONLY, too_long),
        ("a block over 16 KiB", FAST_ONLY, huge_piece),
        ("a short `request`", FAST_ONLY, vec![0, 0, 0, 5, 6, 0, 0, 0, 0]),
        (
            "a bitfield of the wrong size",
            PLAIN,
            enc(&[Message::Bitfield(&[0xff, 0])]),
        ),
        (
            "a bitfield with spare bits set",
            PLAIN,
            enc(&[Message::Bitfield(&[0xff])]),
        ),
        (
            "a second bitfield",
            PLAIN,
            enc(&[Message::Bitfield(&[0x80]), Message::Bitfield(&[0x40])]),
        ),
        (
            "have-all twice",
            FAST_ONLY,
            enc(&[Message::HaveAll, Message::HaveAll]),
        ),
        (
            "a bitfield after have-none",
            FAST_ONLY,
            enc(&[Message::HaveNone, Message::Bitfield(&[0x80])]),
        ),
        ("have-all without Fast", PLAIN, enc(&[Message::HaveAll])),
        ("have-none without Fast", PLAIN, enc(&[Message::HaveNone])),
        (
            "allowed-fast without Fast",
            PLAIN,
            enc(&[Message::AllowedFast(0)]),
        ),
        (
            "reject without Fast",
            PLAIN,
            enc(&[Message::Reject(BlockRef {
                index: 0,
                begin: 0,
                length: BLOCK,
            })]),
        ),
        ("`have` past the last piece", PLAIN, enc(&[Message::Have(4)])),
        (
            "a request past the end of a piece",
            FAST_ONLY,
            enc(&[Message::Request(BlockRef {
                index: 0,
                begin: 2 * BLOCK - 1,
                length: 2,
            })]),
        ),
    ]
}

#[test]
fn each_violation_closes_that_connection_and_strikes_only_that_address() {
    for (what, caps, bytes) in violations() {
        let mut fx = Setup::default().start();
        let liar = fx.incoming(addr(2, 7000), caps).unwrap();
        fx.send_raw(&liar, &bytes);
        assert!(fx.closed(&liar), "{what}: closed");
        assert_eq!(fx.torrent.stats().violations, 1, "{what}: counted");
        assert_eq!(fx.torrent.peer_counts().total(), 0, "{what}: forgotten");
        // The same IP from another port is a different peer and gets used.
        let honest = fx.incoming(addr(2, 7001), FAST_ONLY).unwrap();
        fx.send(&honest, &[Message::HaveAll, Message::Unchoke]);
        assert_eq!(
            requests(&fx.recv(&honest)).len(),
            8,
            "{what}: the honest peer is used"
        );
        assert!(fx.torrent.banned(fx.now).is_empty(), "{what}: no IP ban");
        assert!(
            fx.torrent.bans().banned_addrs(fx.now).is_empty(),
            "{what}: one strike only"
        );
    }
}

#[test]
fn three_violations_ban_the_address_and_an_honest_seed_on_that_ip_still_completes_the_download() {
    let mut fx = Setup::default().start();
    let repeat = addr(1, 7001);
    for round in 0..3 {
        let liar = fx.incoming(repeat, FAST_ONLY).unwrap();
        fx.send(&liar, &[Message::HaveAll, Message::HaveAll]);
        assert!(fx.closed(&liar), "round {round}");
    }
    assert_eq!(fx.incoming(repeat, FAST_ONLY), Err(Refusal::Banned));
    assert!(
        !fx.torrent.add_candidate(fx.now, repeat),
        "a banned address is no candidate"
    );
    // Ten more liars on the same IP, one strike each.
    for port in 7002..7012 {
        let liar = fx.incoming(addr(1, port), PLAIN).unwrap();
        fx.send(&liar, &[Message::Have(99)]);
        assert!(fx.closed(&liar));
    }
    assert_eq!(fx.torrent.stats().violations, 13);
    assert_eq!(fx.torrent.bans().banned_addrs(fx.now), [repeat]);
    assert!(
        fx.torrent.banned(fx.now).is_empty(),
        "protocol errors never ban an IP"
    );

    let seed = fx.outgoing(addr(1, 7000), FAST_ONLY);
    fx.send(&seed, &[Message::HaveAll, Message::Unchoke]);
    for block in requests(&fx.recv(&seed)) {
        fx.deliver(&seed, block);
    }
    assert!(
        fx.torrent.is_complete(),
        "the honest seed on the liars' IP served us"
    );
    assert_eq!(std::fs::read(&fx.file).unwrap(), fx.data);
}

#[test]
fn an_outgoing_peer_that_answers_with_garbage_is_struck() {
    let mut fx = Setup::default().start();
    let peer = fx.dial(addr(2, 7000));
    fx.connected(&peer);
    fx.send_raw(&peer, b"GET / HTTP/1.1\r\n\r\n");
    assert!(fx.closed(&peer));
    assert_eq!(fx.torrent.stats().violations, 1);
}

#[test]
fn messages_split_across_reads_wait_for_their_end() {
    let (mut fx, seed, sent) = with_seed(Setup::default(), FAST_ONLY);
    let block = requests(&sent)[0];
    let mut bytes = Vec::new();
    let data = fx.bytes_of(block);
    wire::encode(
        &Message::Piece {
            index: block.index,
            begin: block.begin,
            data: &data,
        },
        &mut bytes,
    );
    for chunk in bytes.chunks(1000) {
        assert_eq!(fx.torrent.stats().downloaded, 0);
        fx.send_raw(&seed, chunk);
    }
    assert_eq!(fx.torrent.stats().downloaded, u64::from(block.length));
    assert_eq!(fx.on_disk(block), data);
    assert!(!fx.closed(&seed));
}

/// A torrent of 1,000,000 pieces of 16 KiB (a sparse 16 GB file), with made-up
/// hashes: nothing is ever verified, only announced.
fn huge() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().join("dl");
    let count = 1_000_000u64;
    let meta = Metainfo {
        info_hash: InfoHash([7; 20]),
        info: Info {
            name: "huge".into(),
            piece_length: KIB16,
            pieces: vec![[0; 20]; count as usize],
            files: vec![FileEntry {
                path: "huge".into(),
                length: count * KIB16,
                pad: false,
            }],
            single_file: true,
            private: false,
        },
        trackers: Vec::new(),
        url_list: Vec::new(),
        creation_date: None,
        comment: None,
        created_by: None,
    };
    Fixture::from_parts(
        dir,
        root,
        meta,
        Vec::new(),
        Vec::new(),
        TorrentConfig::default(),
        true,
    )
}

#[test]
fn ten_thousand_have_alls_on_a_million_pieces_cost_two_messages_and_close_the_peer() {
    let mut fx = huge();
    let mut flood = Vec::new();
    for _ in 0..10_000 {
        wire::encode(&Message::HaveAll, &mut flood);
    }
    let started = Instant::now();
    let mut liars = Vec::new();
    for port in 7000..7010 {
        let liar = fx.incoming(addr(2, port), FAST_ONLY).unwrap();
        let unread = fx.send_raw(&liar, &flood);
        assert_eq!(unread, flood.len() - 10, "nothing read past the second have-all");
        liars.push(liar);
    }
    let took = started.elapsed();
    assert!(liars.iter().all(|l| fx.closed(l)));
    assert_eq!(
        fx.torrent.stats().have_all,
        20,
        "two per peer handled, the rest never read"
    );
    assert_eq!(fx.torrent.stats().violations, 10);
    assert!(took < Duration::from_secs(5), "ten floods took {took:?}");
    // The seeds came and went in O(1) each: a new seed is still wanted.
    let seed = fx.incoming(addr(3, 7000), FAST_ONLY).unwrap();
    fx.forget_sent(&seed);
    fx.send(&seed, &[Message::HaveAll, Message::Unchoke]);
    let sent = fx.recv(&seed);
    assert_eq!(sent[0], Sent::Interested);
    assert_eq!(requests(&sent).len(), crate::peer::pipeline::INITIAL_WINDOW);
}

#[test]
fn have_floods_and_a_full_bitfield_on_a_million_pieces_stay_cheap() {
    let mut fx = huge();
    let started = Instant::now();
    let mut flood = Vec::new();
    for i in 0..10_000u32 {
        wire::encode(&Message::Have(i % 7), &mut flood);
    }
    let haves = fx.incoming(addr(2, 7000), FAST_ONLY).unwrap();
    assert_eq!(fx.send_raw(&haves, &flood), 0, "haves are legal, all read");
    assert!(!fx.closed(&haves));
    let full = Bitfield::full(1_000_000);
    let bits = fx.incoming(addr(2, 7001), PLAIN).unwrap();
    fx.send(&bits, &[Message::Bitfield(full.as_bytes())]);
    fx.disconnect(&bits);
    fx.disconnect(&haves);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(fx.torrent.stats().violations, 0);
}
