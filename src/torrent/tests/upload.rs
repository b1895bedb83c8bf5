//! Uploads (issue 17): which requests we serve, which we refuse and how, the
//! serving budget and turns, back-pressure through `handle_sent`/`handle_drained`,
//! and `have` when a piece verifies.

use super::*;
use crate::peer::OUR_REQQ;
use crate::torrent::upload::{ServeBudget, MAX_UNSENT};

const PLENTY: ServeBudget = ServeBudget {
    blocks: 1000,
    bytes: u64::MAX,
};

/// 16 pieces of one block, all ours (more pieces than the allowed-fast set).
fn seeder() -> Fixture {
    Setup::pieces(16, 1).config(|c| c.seed = true).seeding().start()
}

/// An interested peer with nothing, unchoked by the next rechoke, and what it
/// was sent on the way.
fn leecher_sent(fx: &mut Fixture, host: u8, caps: Caps) -> (Peer, Vec<Sent>) {
    let peer = fx.incoming(addr(host, 7000), caps).unwrap();
    if caps.fast {
        fx.send(&peer, &[Message::HaveNone]);
    }
    fx.send(&peer, &[Message::Interested]);
    fx.timeout();
    let sent = fx.recv(&peer);
    assert!(sent.contains(&Sent::Unchoke), "unchoked at the next turn");
    (peer, sent)
}

fn leecher(fx: &mut Fixture, host: u8, caps: Caps) -> Peer {
    leecher_sent(fx, host, caps).0
}

/// The allowed-fast pieces we offered `peer`, from what it was sent.
fn offered(sent: &[Sent]) -> Vec<u32> {
    sent.iter()
        .filter_map(|m| match m {
            Sent::AllowedFast(p) => Some(*p),
            _ => None,
        })
        .collect()
}

fn serve(fx: &mut Fixture, mut budget: ServeBudget) -> (usize, ServeBudget) {
    let served = fx.torrent.serve(fx.now, &mut budget, &mut fx.out);
    fx.route();
    (served, budget)
}

#[test]
fn requests_are_served_from_disk_in_order() {
    let mut fx = seeder();
    let peer = leecher(&mut fx, 2, FAST_ONLY);
    let asked = [fx.block(3, 0), fx.block(0, 0), fx.block(15, 0)];
    let messages: Vec<Message> = asked.iter().map(|b| Message::Request(*b)).collect();
    fx.send(&peer, &messages);
    assert!(fx.torrent.wants_to_serve());
    assert!(fx.recv(&peer).is_empty(), "nothing is read before serve");
    let (served, left) = serve(&mut fx, PLENTY);
    assert_eq!((served, left.blocks), (3, 997));
    let sent = fx.recv(&peer);
    assert_eq!(pieces(&sent), asked);
    for (m, b) in sent.iter().zip(asked) {
        let Sent::Piece { data, .. } = m else {
            unreachable!()
        };
        assert_eq!(*data, fx.bytes_of(b));
    }
    assert_eq!(fx.torrent.stats().uploaded, 3 * KIB16);
    assert!(!fx.torrent.wants_to_serve());
}

#[test]
fn a_fast_peer_gets_a_reject_for_what_we_do_not_serve() {
    let mut fx = Setup {
        have: (0..8).collect(),
        ..Setup::pieces(16, 1)
    }
    .start();
    // A choked fast peer: it is not interested, so the choker leaves it choked.
    let choked = fx.incoming(addr(2, 7000), FAST_ONLY).unwrap();
    let fast_set = offered(&fx.recv(&choked));
    assert!(
        !fast_set.is_empty() && fast_set.iter().all(|&p| p < 8),
        "offered only what we have"
    );
    let outside = (0..8)
        .find(|p| !fast_set.contains(p))
        .expect("a piece outside the set");
    let lacking = fx.block(12, 0);
    fx.send(
        &choked,
        &[
            Message::Request(fx.block(outside, 0)),
            Message::Request(lacking),
            Message::Request(fx.block(fast_set[0], 0)),
        ],
    );
    assert_eq!(rejects(&fx.recv(&choked)), [fx.block(outside, 0), lacking]);
    serve(&mut fx, PLENTY);
    assert_eq!(
        pieces(&fx.recv(&choked)),
        [fx.block(fast_set[0], 0)],
        "allowed fast is served"
    );
    assert_eq!(fx.torrent.stats().refused_requests, 2);
    assert!(!fx.closed(&choked));
}

#[test]
fn requests_past_a_piece_or_over_16_kib_close_the_peer() {
    for (what, bad) in [
        (
            "past the end of the piece",
            BlockRef {
                index: 0,
                begin: 1,
                length: BLOCK,
            },
        ),
        (
            "past the last piece",
            BlockRef {
                index: 16,
                begin: 0,
                length: 1,
            },
        ),
        (
            "over 16 KiB",
            BlockRef {
                index: 0,
                begin: 0,
                length: BLOCK + 1,
            },
        ),
        (
            "empty",
            BlockRef {
                index: 0,
                begin: 0,
                length: 0,
            },
        ),
    ] {
        let mut fx = seeder();
        let peer = leecher(&mut fx, 2, FAST_ONLY);
        fx.send(&peer, &[Message::Request(bad)]);
        assert!(fx.closed(&peer), "{what}");
        assert_eq!(fx.torrent.stats().violations, 1, "{what}");
    }
}

/// `n` distinct valid requests: every length of the first blocks, so that a small
/// torrent has thousands.
fn many_requests(fx: &Fixture, n: usize) -> Vec<BlockRef> {
    (0..fx.piece_count())
        .flat_map(|p| {
            (1..=BLOCK).map(move |length| BlockRef {
                index: p,
                begin: 0,
                length,
            })
        })
        .take(n)
        .collect()
}

#[test]
fn ten_thousand_requests_from_a_fast_peer_queue_only_our_reqq_and_the_rest_are_rejected() {
    let mut fx = seeder();
    let peer = leecher(&mut fx, 2, FAST_ONLY);
    let flood = many_requests(&fx, 10_000);
    let messages: Vec<Message> = flood.iter().map(|b| Message::Request(*b)).collect();
    fx.send(&peer, &messages);
    assert!(!fx.closed(&peer), "Fast peers are told, not closed");
    assert_eq!(fx.torrent.pool().session(peer.key).unwrap().queue.len(), OUR_REQQ);
    assert_eq!(rejects(&fx.recv(&peer)), flood[OUR_REQQ..]);
    let mut served = 0;
    while fx.torrent.wants_to_serve() {
        served += serve(&mut fx, PLENTY).0;
        fx.torrent.handle_drained(peer.key, peer.conn);
    }
    assert_eq!(served, OUR_REQQ);
    assert_eq!(pieces(&fx.recv(&peer)), flood[..OUR_REQQ]);
}

#[test]
fn requests_a_plain_peer_may_not_make_are_dropped_and_a_flood_closes_it() {
    let mut fx = seeder();
    let peer = fx.incoming(addr(2, 7000), PLAIN).unwrap();
    fx.forget_sent(&peer);
    // Choked (it never said it is interested): every request is refused silently.
    let flood = many_requests(&fx, 2 * OUR_REQQ + 1);
    let messages: Vec<Message> = flood.iter().map(|b| Message::Request(*b)).collect();
    fx.send(&peer, &messages[..2 * OUR_REQQ]);
    assert!(fx.recv(&peer).is_empty(), "no reject without Fast");
    assert!(!fx.closed(&peer), "a few hundred may be a race with our choke");
    fx.send(&peer, &messages[2 * OUR_REQQ..]);
    assert!(fx.closed(&peer), "a flood is closed");
    assert_eq!(fx.torrent.stats().violations, 1);
}

#[test]
fn an_unchoked_plain_peer_over_our_reqq_has_the_extra_requests_dropped() {
    let mut fx = seeder();
    let peer = leecher(&mut fx, 2, PLAIN);
    let asks: Vec<Message> = many_requests(&fx, OUR_REQQ + 10)
        .into_iter()
        .map(Message::Request)
        .collect();
    fx.send(&peer, &asks);
    assert!(fx.recv(&peer).is_empty(), "dropped without a word");
    assert!(!fx.closed(&peer));
    assert_eq!(fx.torrent.pool().session(peer.key).unwrap().queue.len(), OUR_REQQ);
    assert_eq!(fx.torrent.stats().refused_requests, 10);
}

#[test]
fn a_cancel_removes_a_queued_request_and_a_cancel_storm_changes_nothing() {
    let mut fx = seeder();
    let peer = leecher(&mut fx, 2, FAST_ONLY);
    let [a, b, c] = [fx.block(1, 0), fx.block(2, 0), fx.block(3, 0)];
    fx.send(
        &peer,
        &[
            Message::Request(a),
            Message::Request(b),
            Message::Request(c),
            Message::Cancel(b),
        ],
    );
    let storm: Vec<Message> = many_requests(&fx, 10_000)
        .into_iter()
        .map(Message::Cancel)
        .collect();
    fx.send(&peer, &storm);
    assert!(!fx.closed(&peer));
    serve(&mut fx, PLENTY);
    let sent = fx.recv(&peer);
    assert_eq!(pieces(&sent), [a, c]);
    assert!(
        rejects(&sent).is_empty(),
        "a cancelled request is not rejected either"
    );
}

#[test]
fn serving_takes_turns_between_peers_and_stops_at_the_budget() {
    let mut fx = seeder();
    let a = leecher(&mut fx, 2, FAST_ONLY);
    let b = leecher(&mut fx, 3, FAST_ONLY);
    for peer in [a, b] {
        let asks: Vec<Message> = (0..3).map(|p| Message::Request(fx.block(p, 0))).collect();
        fx.send(&peer, &asks);
    }
    let mut budget = ServeBudget {
        blocks: 4,
        bytes: u64::MAX,
    };
    assert_eq!(fx.torrent.serve(fx.now, &mut budget, &mut fx.out), 4);
    let order: Vec<PeerKey> = fx
        .out
        .actions
        .iter()
        .filter_map(|x| match x {
            Action::Send { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect();
    assert_eq!(order, [a.key, b.key, a.key, b.key], "one block each in turn");
    assert_eq!(budget.blocks, 0);
    fx.route();
    // The rate limit allows one block and a bit: one is served, the rest waits.
    let (served, left) = serve(
        &mut fx,
        ServeBudget {
            blocks: 10,
            bytes: 20_000,
        },
    );
    assert_eq!((served, left.bytes), (1, 20_000 - KIB16));
    assert!(fx.torrent.wants_to_serve());
    assert_eq!(serve(&mut fx, PLENTY).0, 1);
    assert_eq!(pieces(&fx.recv(&a)).len() + pieces(&fx.recv(&b)).len(), 6);
}

#[test]
fn a_peer_whose_connection_holds_too_much_waits_for_drained() {
    let mut fx = seeder();
    let slow = leecher(&mut fx, 2, FAST_ONLY);
    let asks: Vec<Message> = (0..12).map(|p| Message::Request(fx.block(p, 0))).collect();
    fx.send(&slow, &asks);
    // Unreported, what we queued counts: four blocks fill MAX_UNSENT.
    assert_eq!(serve(&mut fx, PLENTY).0, MAX_UNSENT / (BLOCK as usize + 13));
    assert_eq!(
        serve(&mut fx, PLENTY).0,
        0,
        "nothing more until the connection drains"
    );
    fx.torrent.handle_sent(slow.key, slow.conn, MAX_UNSENT + 1);
    assert_eq!(
        serve(&mut fx, PLENTY).0,
        0,
        "the driver says it still holds too much"
    );
    fx.torrent.handle_drained(slow.key, slow.conn);
    assert_eq!(serve(&mut fx, PLENTY).0, 4);
    fx.torrent.handle_sent(slow.key, slow.conn, 100);
    assert_eq!(serve(&mut fx, PLENTY).0, 4, "checked before each block");
    let unsent = fx.torrent.pool().session(slow.key).unwrap().unsent;
    assert!(
        unsent < MAX_UNSENT + BLOCK as usize + 13,
        "at most one block past the bound"
    );
    assert_eq!(pieces(&fx.recv(&slow)).len(), 12);
}

#[test]
fn a_peer_that_stops_being_interested_is_choked_and_its_queue_rejected() {
    let mut fx = seeder();
    let (peer, sent) = leecher_sent(&mut fx, 2, FAST_ONLY);
    let fast_set = offered(&sent);
    let outside = (0..16).find(|p| !fast_set.contains(p)).unwrap();
    let inside = fast_set[0];
    fx.send(
        &peer,
        &[
            Message::Request(fx.block(outside, 0)),
            Message::Request(fx.block(inside, 0)),
            Message::NotInterested,
        ],
    );
    fx.timeout();
    let sent = fx.recv(&peer);
    assert_eq!(sent[0], Sent::Choke);
    assert_eq!(rejects(&sent), [fx.block(outside, 0)]);
    serve(&mut fx, PLENTY);
    assert_eq!(
        pieces(&fx.recv(&peer)),
        [fx.block(inside, 0)],
        "allowed fast survives a choke"
    );
}

#[test]
fn have_goes_to_the_peers_that_lack_a_piece_when_it_verifies() {
    let (mut fx, seed, sent) = with_seed(Setup::default(), FAST_ONLY);
    let empty = fx.incoming(addr(3, 7000), FAST_ONLY).unwrap();
    fx.send(&empty, &[Message::HaveNone]);
    let half = fx.incoming(addr(4, 7000), PLAIN).unwrap();
    fx.send(&half, &[Message::Bitfield(&[0b1100_0000])]);
    fx.forget_sent(&empty);
    fx.forget_sent(&half);
    for block in requests(&sent) {
        fx.deliver(&seed, block);
    }
    assert!(fx.torrent.is_complete());
    let haves = |sent: &[Sent]| -> Vec<u32> {
        let mut v: Vec<u32> = sent
            .iter()
            .filter_map(|m| match m {
                Sent::Have(p) => Some(*p),
                _ => None,
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(haves(&fx.recv(&empty)), [0, 1, 2, 3]);
    let to_half = fx.recv(&half);
    assert_eq!(haves(&to_half), [2, 3], "not what it has");
    assert!(
        to_half.contains(&Sent::NotInterested),
        "it has nothing more for us"
    );
    assert!(haves(&fx.recv(&seed)).is_empty(), "a seed hears nothing");
    // Complete: a new Fast peer gets the have-all shorthand.
    let late = fx.incoming(addr(5, 7000), FAST_ONLY).unwrap();
    assert_eq!(fx.recv(&late)[1], Sent::HaveAll);
}
