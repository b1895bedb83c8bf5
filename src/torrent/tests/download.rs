//! Downloading as a peer sees it: our handshake and first messages, interest,
//! requests only once unchoked (or allowed-fast), the pipeline and the peer's
//! `reqq`, a whole download, and endgame with its cancels.

use std::time::Duration;

use super::*;
use crate::peer::pipeline::INITIAL_WINDOW;
use crate::peer::OUR_REQQ;
use crate::wire::DHT;

/// An integer entry of a bencoded dictionary (an extension handshake).
fn dict_int(payload: &[u8], key: &[u8]) -> Option<i64> {
    use bendy::decoding::{Decoder, Object};
    let mut decoder = Decoder::new(payload);
    let Ok(Some(Object::Dict(mut dict))) = decoder.next_object() else {
        panic!("not a dictionary: {:?}", String::from_utf8_lossy(payload));
    };
    while let Some((k, v)) = dict.next_pair().expect("well-formed dictionary") {
        if k == key {
            if let Object::Integer(n) = v {
                return n.parse().ok();
            }
        }
    }
    None
}

#[test]
fn connecting_queues_our_handshake_and_nothing_else_until_the_peer_answers() {
    let mut fx = Setup::default().start();
    let peer = fx.dial(addr(2, 7000));
    let sent = fx.recv(&peer);
    let [Sent::Handshake(ours)] = sent.as_slice() else {
        panic!("expected our handshake alone, got {sent:?}");
    };
    assert_eq!(ours.info_hash, fx.meta.info_hash);
    assert_eq!(ours.peer_id, OUR_ID);
    assert!(ours.supports(FAST) && ours.supports(EXTENSION_PROTOCOL) && !ours.supports(DHT));
    fx.connected(&peer);
    assert!(
        fx.recv(&peer).is_empty(),
        "nothing more before the peer's handshake"
    );
    assert_eq!(fx.torrent.peer_counts().handshaking, 1);
}

#[test]
fn an_empty_torrent_sends_have_none_to_fast_peers_and_nothing_to_others() {
    let mut fx = Setup::default().start();
    let fast = fx.outgoing(addr(2, 7000), FAST_ONLY);
    assert_eq!(&fx.recv(&fast)[1..], [Sent::HaveNone]);
    let plain = fx.outgoing(addr(3, 7000), PLAIN);
    assert_eq!(&fx.recv(&plain)[1..], [], "no bitfield when we have nothing");
    assert_eq!(fx.torrent.peer_counts().active, 2);
}

#[test]
fn our_extension_handshake_goes_only_to_peers_with_the_extension_bit_and_names_reqq() {
    let mut fx = Setup::default().start();
    let ext = fx.outgoing(addr(2, 7000), FAST_EXT);
    let sent = fx.recv(&ext);
    assert_eq!(sent[1], Sent::HaveNone);
    let Sent::Extended { id: 0, payload } = &sent[2] else {
        panic!("expected the extension handshake after have-none, got {sent:?}");
    };
    assert_eq!(dict_int(payload, b"reqq"), Some(OUR_REQQ as i64));
    assert_eq!(dict_int(payload, b"p"), Some(i64::from(OUR_PORT)));
    assert_eq!(sent.len(), 3);
    let plain = fx.outgoing(addr(3, 7000), FAST_ONLY);
    assert!(
        !fx.recv(&plain).iter().any(|m| matches!(m, Sent::Extended { .. })),
        "no extension handshake without the bit"
    );
    let ext_only = fx.outgoing(addr(4, 7000), EXT_ONLY);
    assert!(matches!(&fx.recv(&ext_only)[1..], [Sent::Extended { id: 0, .. }]));
}

#[test]
fn a_partial_torrent_sends_its_bitfield_and_allowed_fast_for_pieces_it_has() {
    let mut fx = Setup {
        have: vec![1],
        ..Setup::default()
    }
    .start();
    let fast = fx.outgoing(addr(2, 7000), FAST_ONLY);
    // Four pieces: the allowed-fast set is all of them, and we offer the one we have.
    assert_eq!(
        &fx.recv(&fast)[1..],
        [Sent::Bitfield(vec![0b0100_0000]), Sent::AllowedFast(1)]
    );
    let plain = fx.outgoing(addr(3, 7000), PLAIN);
    assert_eq!(&fx.recv(&plain)[1..], [Sent::Bitfield(vec![0b0100_0000])]);
}

#[test]
fn a_complete_torrent_sends_have_all_to_fast_peers_and_a_full_bitfield_to_others() {
    let mut fx = Setup::default().config(|c| c.seed = true).seeding().start();
    let fast = fx.incoming(addr(2, 7000), FAST_ONLY).unwrap();
    let sent = fx.recv(&fast);
    assert_eq!(sent[1], Sent::HaveAll);
    let offered: Vec<u32> = sent[2..]
        .iter()
        .map(|m| match m {
            Sent::AllowedFast(p) => *p,
            other => panic!("expected allowed-fast, got {other:?}"),
        })
        .collect();
    assert_eq!(offered.len(), 4, "every piece of a 4-piece torrent");
    let plain = fx.incoming(addr(3, 7000), PLAIN).unwrap();
    assert_eq!(&fx.recv(&plain)[1..], [Sent::Bitfield(vec![0b1111_0000])]);
}

#[test]
fn we_get_interested_once_when_the_peer_has_something_we_lack() {
    let mut fx = Setup {
        have: vec![1],
        ..Setup::default()
    }
    .start();
    let peer = fx.outgoing(addr(2, 7000), PLAIN);
    fx.forget_sent(&peer);
    fx.send(&peer, &[Message::Bitfield(&[0b0100_0000])]);
    assert!(fx.recv(&peer).is_empty(), "it has only what we have");
    fx.send(&peer, &[Message::Have(1)]);
    assert!(fx.recv(&peer).is_empty());
    fx.send(&peer, &[Message::Have(2)]);
    assert_eq!(fx.recv(&peer), [Sent::Interested]);
    fx.send(&peer, &[Message::Have(3), Message::Have(0)]);
    assert!(fx.recv(&peer).is_empty(), "interested once");

    let none = fx.outgoing(addr(3, 7000), FAST_ONLY);
    fx.forget_sent(&none);
    fx.send(&none, &[Message::HaveNone, Message::Unchoke]);
    assert!(fx.recv(&none).is_empty(), "nothing to want, nothing to request");
}

#[test]
fn requests_go_out_only_after_unchoke() {
    let mut fx = Setup::default().start();
    let peer = fx.outgoing(addr(2, 7000), FAST_ONLY);
    fx.forget_sent(&peer);
    fx.send(&peer, &[Message::HaveAll]);
    assert_eq!(fx.recv(&peer), [Sent::Interested]);
    fx.tick(Duration::from_secs(5));
    assert!(requests(&fx.recv(&peer)).is_empty(), "choked: no requests");
    fx.send(&peer, &[Message::Unchoke]);
    let mut asked = requests(&fx.recv(&peer));
    asked.sort();
    assert_eq!(asked, fx.all_blocks(), "every block of the torrent, once each");
    assert_eq!(fx.torrent.unchoked_by(), 1);
}

#[test]
fn allowed_fast_pieces_are_requested_while_choked_and_nothing_else() {
    let mut fx = Setup::default().start();
    let peer = fx.outgoing(addr(2, 7000), FAST_ONLY);
    fx.send(&peer, &[Message::HaveAll, Message::AllowedFast(2)]);
    let mut asked = requests(&fx.recv(&peer));
    asked.sort();
    assert_eq!(asked, [fx.block(2, 0), fx.block(2, 1)]);
    assert_eq!(fx.torrent.stats().requests_while_choked, 2);
    assert_eq!(fx.torrent.stats().allowed_fast, 1);
}

#[test]
fn a_whole_download_keeps_within_the_pipeline_and_writes_the_file() {
    let (mut fx, seed, sent) = with_seed(Setup::pieces(16, 4), FAST_ONLY);
    let mut outstanding = requests(&sent);
    assert_eq!(outstanding.len(), INITIAL_WINDOW, "the initial window");
    let mut delivered = 0;
    while let Some(b) = outstanding.first().copied() {
        outstanding.remove(0);
        fx.wait(Duration::from_millis(2));
        fx.deliver(&seed, b);
        delivered += 1;
        if fx.closed(&seed) {
            break;
        }
        let before = outstanding.len();
        let new = requests(&fx.recv(&seed));
        outstanding.extend(&new);
        // A shrinking window lets requests in flight drain; it never adds past it.
        let target = fx.torrent.pool().session(seed.key).unwrap().pipeline_target();
        assert!(
            new.is_empty() || outstanding.len() <= target.max(before),
            "{} new requests made {} in flight, target {target}",
            new.len(),
            outstanding.len()
        );
        assert_eq!(outstanding.len(), fx.in_flight(&seed), "our books match the wire");
    }
    assert_eq!(delivered, 64);
    assert!(fx.torrent.is_complete());
    assert_eq!(std::fs::read(&fx.file).unwrap(), fx.data);
    let stats = fx.torrent.stats();
    assert_eq!((stats.downloaded, stats.wasted), (fx.data.len() as u64, 0));
    let events = fx.events();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, TorrentEvent::Verified(_)))
            .count(),
        16
    );
    assert!(events.contains(&TorrentEvent::Completed));
    assert!(fx.closed(&seed), "a complete download lets its seed go");
}

#[test]
fn the_peers_reqq_caps_requests_in_flight() {
    let mut fx = Setup::pieces(16, 4).start();
    let peer = fx.outgoing(addr(2, 7000), FAST_EXT);
    fx.send(
        &peer,
        &[
            Message::Extended {
                id: 0,
                payload: b"d1:md11:ut_metadatai1ee4:reqqi5ee",
            },
            Message::HaveAll,
            Message::Unchoke,
        ],
    );
    let mut outstanding = requests(&fx.recv(&peer));
    assert_eq!(outstanding.len(), 5);
    for _ in 0..20 {
        let b = outstanding.remove(0);
        fx.wait(Duration::from_millis(1));
        fx.deliver(&peer, b);
        outstanding.extend(requests(&fx.recv(&peer)));
        assert_eq!(
            outstanding.len(),
            5,
            "one more request per block, never past reqq"
        );
    }
}

#[test]
fn an_extension_handshake_with_unsorted_keys_still_gives_reqq() {
    let mut fx = Setup::pieces(16, 4).start();
    let peer = fx.outgoing(addr(2, 7000), FAST_EXT);
    fx.send(
        &peer,
        &[
            Message::Extended {
                id: 0,
                payload: b"d1:v4:test4:reqqi5ee",
            },
            Message::HaveAll,
            Message::Unchoke,
        ],
    );
    assert_eq!(requests(&fx.recv(&peer)).len(), 5);
}

#[test]
fn endgame_asks_a_second_peer_and_cancels_the_copy_that_lost() {
    let (mut fx, a, sent) = with_seed(Setup::default(), FAST_ONLY);
    let at_a = requests(&sent);
    assert_eq!(at_a.len(), 8, "the first seed has every block");
    let b = fx.outgoing(addr(3, 7000), FAST_ONLY);
    fx.send(&b, &[Message::HaveAll, Message::Unchoke]);
    let mut at_b = requests(&fx.recv(&b));
    at_b.sort();
    let mut expected = at_a.clone();
    expected.sort();
    assert_eq!(
        at_b, expected,
        "endgame: every outstanding block from the second seed too"
    );

    let won = at_a[0];
    fx.deliver(&a, won);
    assert_eq!(fx.recv(&b), [Sent::Cancel(won)], "the loser is cancelled");
    assert!(cancels(&fx.recv(&a)).is_empty());
    assert_eq!(fx.on_disk(won), fx.bytes_of(won));

    // The cancelled copy arrives anyway: a race, not held against B.
    fx.deliver(&b, won);
    assert!(!fx.closed(&b));
    let stats = fx.torrent.stats();
    assert_eq!(
        (stats.unrequested_blocks, stats.wasted),
        (1, u64::from(won.length))
    );
    assert_eq!(stats.violations, 0);

    // B wins the next one: A is cancelled.
    let next = at_a[1];
    fx.deliver(&b, next);
    assert_eq!(fx.recv(&a), [Sent::Cancel(next)]);
}
