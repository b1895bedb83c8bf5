//! What gets into our pieces: only blocks we asked that peer for; blocks nobody
//! asked for are dropped and their sender closed, but blocks we cancelled are a
//! race, not a fault; a piece that fails its hash strikes its one contributor's
//! IP, and with several it is refetched whole from one peer (issue 16 fixes 1, 6).

use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::torrent::messages::MAX_UNREQUESTED;

fn ext_reqq(n: u32) -> Vec<u8> {
    format!("d4:reqqi{n}ee").into_bytes()
}

/// A peer that has everything and unchokes us, with `reqq` set.
fn seed_with_reqq(fx: &mut Fixture, host: u8, reqq: u32) -> (Peer, Vec<Sent>) {
    let peer = fx.outgoing(addr(host, 7000), FAST_EXT);
    let payload = ext_reqq(reqq);
    fx.send(
        &peer,
        &[
            Message::Extended {
                id: 0,
                payload: &payload,
            },
            Message::HaveAll,
            Message::Unchoke,
        ],
    );
    let sent = fx.recv(&peer);
    (peer, sent)
}

fn ip(host: u8) -> IpAddr {
    addr(host, 0).ip()
}

#[test]
fn a_block_nobody_asked_for_is_dropped_never_written_and_a_stream_of_them_closes_the_sender() {
    let (mut fx, a, sent) = with_seed(Setup::pieces(8, 2).config(|c| c.max_strikes = 1), FAST_ONLY);
    let at_a = requests(&sent);
    // B has everything but keeps us choked: we asked it for nothing.
    let b = fx.outgoing(addr(3, 7000), FAST_ONLY);
    fx.send(&b, &[Message::HaveAll]);
    assert!(requests(&fx.recv(&b)).is_empty());

    let first = at_a[0];
    fx.deliver(&b, first);
    assert_eq!(fx.on_disk(first), vec![0; first.length as usize], "not written");
    let stats = fx.torrent.stats();
    assert_eq!(
        (stats.unrequested_blocks, stats.wasted, stats.downloaded),
        (1, u64::from(first.length), 0)
    );
    fx.deliver(&a, first);
    assert_eq!(
        fx.on_disk(first),
        fx.bytes_of(first),
        "the peer we asked writes it"
    );

    for (n, &block) in at_a[1..=MAX_UNREQUESTED as usize].iter().enumerate() {
        assert!(!fx.closed(&b), "closed after only {} unrequested blocks", n + 1);
        fx.deliver_garbage(&b, block);
        assert_eq!(
            fx.on_disk(block),
            vec![0; block.length as usize],
            "block {n} not written"
        );
    }
    assert!(
        fx.closed(&b),
        "{} unrequested blocks close the sender",
        MAX_UNREQUESTED + 1
    );
    assert!(!fx.closed(&a));
    assert_eq!(fx.torrent.stats().violations, 1);
    // The strike is against B's address, not its IP.
    assert_eq!(fx.torrent.bans().banned_addrs(fx.now), [b.addr]);
    assert!(fx.torrent.banned(fx.now).is_empty());
    assert_eq!(fx.incoming(b.addr, FAST_ONLY), Err(Refusal::Banned));
    assert!(fx.incoming(addr(3, 7001), FAST_ONLY).is_ok());
}

#[test]
fn blocks_cancelled_by_a_request_timeout_are_not_held_against_the_peer() {
    // Twice the initial window in blocks: the first window's requests time out,
    // and their late arrival completes nothing.
    let pieces = (2 * crate::peer::pipeline::INITIAL_WINDOW / 4) as u32;
    let (mut fx, a, sent) = with_seed(Setup::pieces(pieces, 4), FAST_ONLY);
    let asked = requests(&sent);
    fx.run_until(Duration::from_secs(21));
    let sent = fx.recv(&a);
    let mut cancelled = cancels(&sent);
    cancelled.sort();
    let mut expected = asked.clone();
    expected.sort();
    assert_eq!(cancelled, expected, "every timed-out request is cancelled");
    let again = requests(&sent);
    assert_eq!(
        again.len(),
        1,
        "after a timeout, one request at a time: {again:?}"
    );
    // Now the slow peer delivers everything it was first asked for.
    for &block in &asked {
        fx.deliver(&a, block);
    }
    assert!(!fx.closed(&a));
    assert_eq!(fx.torrent.stats().violations, 0);
    assert_eq!(
        fx.on_disk(again[0]),
        fx.bytes_of(again[0]),
        "the re-request is taken"
    );
}

#[test]
fn blocks_cancelled_by_a_choke_without_fast_are_not_held_against_the_peer() {
    let (mut fx, a, sent) = with_seed(Setup::default(), PLAIN);
    let asked = requests(&sent);
    assert_eq!(asked.len(), 8);
    fx.send(&a, &[Message::Choke]);
    assert!(
        fx.recv(&a).is_empty(),
        "BEP 3: a choke discards requests, nothing to cancel"
    );
    assert_eq!(fx.in_flight(&a), 0);
    for &block in &asked {
        fx.deliver(&a, block);
        assert_eq!(
            fx.on_disk(block),
            vec![0; block.length as usize],
            "cancelled: not written"
        );
    }
    assert!(!fx.closed(&a));
    assert_eq!(fx.torrent.stats().unrequested_blocks, 8);
    fx.send(&a, &[Message::Unchoke]);
    assert_eq!(requests(&fx.recv(&a)).len(), 8, "asked again once unchoked");
}

#[test]
fn a_fast_peer_that_chokes_keeps_our_requests_until_it_rejects_them() {
    let (mut fx, a, sent) = with_seed(Setup::default(), FAST_ONLY);
    let asked = requests(&sent);
    fx.send(&a, &[Message::Choke]);
    assert_eq!(fx.in_flight(&a), 8, "BEP 6: requests stand after a choke");
    fx.deliver(&a, asked[0]);
    assert_eq!(fx.on_disk(asked[0]), fx.bytes_of(asked[0]));
    fx.send(&a, &[Message::Reject(asked[1])]);
    assert_eq!(fx.in_flight(&a), 6);
    assert_eq!(fx.torrent.stats().rejects, 1);
    assert!(!fx.closed(&a));
}

#[test]
fn a_piece_that_fails_with_one_contributor_strikes_its_ip_and_three_ban_it() {
    let (mut fx, a, sent) = with_seed(Setup::default(), FAST_ONLY);
    let other_port = fx.incoming(addr(2, 7001), FAST_ONLY).unwrap();
    let piece = requests(&sent)[0].index;
    for round in 1..=3 {
        assert!(!fx.closed(&a), "open before failure {round}");
        fx.deliver_garbage(&a, fx.block(piece, 0));
        fx.deliver_garbage(&a, fx.block(piece, 1));
        let stats = fx.torrent.stats();
        assert_eq!(stats.wasted, round * 2 * KIB16, "the whole piece is wasted");
        assert_eq!(stats.downloaded, 0, "failed pieces are not counted as downloaded");
        if round < 3 {
            let again = requests(&fx.recv(&a));
            assert!(
                again.contains(&fx.block(piece, 0)) && again.contains(&fx.block(piece, 1)),
                "the failed piece is asked for again: {again:?}"
            );
            assert!(fx.torrent.banned(fx.now).is_empty(), "struck, not banned");
        }
    }
    assert!(!fx.events().iter().any(|e| matches!(e, TorrentEvent::Verified(_))));
    assert_eq!(fx.torrent.banned(fx.now), [ip(2)]);
    assert!(
        fx.closed(&a) && fx.closed(&other_port),
        "every connection of that IP closes"
    );
    assert_eq!(fx.incoming(addr(2, 7002), FAST_ONLY), Err(Refusal::Banned));
    assert!(
        fx.incoming(addr(3, 7000), FAST_ONLY).is_ok(),
        "another IP is welcome"
    );
    assert_eq!(
        fx.torrent.stats().violations,
        0,
        "bad data is not a protocol violation"
    );
}

/// One piece split between A (127.0.0.2) and B (127.0.0.3), each with `reqq` 1;
/// A's blocks are wrong, so the piece fails with two contributors. Then each
/// gets a turn to ask for it again; returns the one that did (the holder of the
/// suspect piece), the other, and what the holder asked for.
fn failed_with_two_contributors(setup: Setup) -> (Fixture, Peer, Peer, Vec<BlockRef>) {
    let mut fx = setup.start();
    let (a, sent_a) = seed_with_reqq(&mut fx, 2, 1);
    let (b, sent_b) = seed_with_reqq(&mut fx, 3, 1);
    let (mut at_a, mut at_b) = (requests(&sent_a), requests(&sent_b));
    assert_eq!((at_a.len(), at_b.len()), (1, 1));
    assert_eq!(
        at_a[0].index, at_b[0].index,
        "the second peer continues the partial piece"
    );
    // Turns: A sends its oldest request (wrong), then B (right), and so on.
    for turn in 0.. {
        if fx.torrent.stats().wasted > 0 {
            break;
        }
        assert!(turn < 20, "the piece never finished");
        if turn % 2 == 0 && !at_a.is_empty() {
            fx.deliver_garbage(&a, at_a.remove(0));
        } else if turn % 2 == 1 && !at_b.is_empty() {
            fx.deliver(&b, at_b.remove(0));
        }
        for (peer, at) in [(a, &mut at_a), (b, &mut at_b)] {
            let sent = fx.recv(&peer);
            at.retain(|r| !cancels(&sent).contains(r));
            at.extend(requests(&sent));
        }
    }
    assert!(
        fx.torrent.banned(fx.now).is_empty(),
        "two contributors: nobody can be blamed yet"
    );
    assert!(!fx.closed(&a) && !fx.closed(&b));
    assert_eq!(fx.torrent.stats().wasted, fx.piece_size(0));
    // Whoever delivered last asked first; the other gets a turn too.
    let asked_a = at_a;
    let asked_b = at_b;
    fx.send(&a, &[Message::KeepAlive]);
    fx.send(&b, &[Message::KeepAlive]);
    let asked_a = [asked_a, requests(&fx.recv(&a))].concat();
    let asked_b = [asked_b, requests(&fx.recv(&b))].concat();
    match (asked_a.is_empty(), asked_b.is_empty()) {
        (false, true) => (fx, a, b, asked_a),
        (true, false) => (fx, b, a, asked_b),
        _ => panic!("one peer should hold the suspect piece: A asked {asked_a:?}, B {asked_b:?}"),
    }
}

/// Serves what `peer` asks for, one request at a time as its pipeline allows
/// (`garbage`: wrong bytes), until it asks for nothing more; returns the blocks.
fn serve_requests(fx: &mut Fixture, peer: &Peer, mut asked: Vec<BlockRef>, garbage: bool) -> Vec<BlockRef> {
    let mut served = Vec::new();
    while let Some(block) = asked.first().copied() {
        asked.remove(0);
        if garbage {
            fx.deliver_garbage(peer, block);
        } else {
            fx.deliver(peer, block);
        }
        served.push(block);
        asked.extend(requests(&fx.recv(peer)));
        assert!(served.len() < 100, "never ends");
    }
    served
}

#[test]
fn a_piece_with_several_contributors_is_refetched_whole_from_one_peer() {
    let (mut fx, holder, other, asked) = failed_with_two_contributors(Setup::pieces(1, 2));
    let served = serve_requests(&mut fx, &holder, asked, false);
    assert_eq!(
        served,
        [fx.block(0, 0), fx.block(0, 1)],
        "the whole piece from one peer"
    );
    assert!(
        requests(&fx.recv(&other)).is_empty(),
        "the other never asked for it"
    );
    assert!(fx.torrent.is_complete());
    assert_eq!(std::fs::read(&fx.file).unwrap(), fx.data);
    assert!(fx.torrent.banned(fx.now).is_empty());
}

#[test]
fn a_refetched_piece_that_fails_again_names_its_one_source() {
    let setup = Setup::pieces(1, 2).config(|c| c.max_strikes = 1);
    let (mut fx, holder, other, asked) = failed_with_two_contributors(setup);
    serve_requests(&mut fx, &holder, asked, true);
    assert_eq!(fx.torrent.banned(fx.now), [holder.addr.ip()]);
    assert!(fx.closed(&holder));
    assert!(!fx.closed(&other));
}

#[test]
fn a_refetched_suspect_piece_still_respects_the_peers_reqq() {
    let (fx, holder, _, asked) = failed_with_two_contributors(Setup::pieces(1, 4));
    assert_eq!(asked.len(), 1, "reqq 1, but asked for {asked:?}");
    assert!(fx.in_flight(&holder) <= 1);
}

#[test]
fn a_suspect_piece_restarted_when_its_peer_leaves_names_the_next_source_alone() {
    // Issue 16 fix 6: the holder sends half of the suspect piece and leaves; the
    // other peer then fetches it whole and lies: only that one is to blame.
    let setup = Setup::pieces(1, 2).config(|c| c.max_strikes = 1);
    let (mut fx, first, second, asked) = failed_with_two_contributors(setup);
    fx.deliver(&first, asked[0]);
    fx.disconnect(&first);
    let asked = requests(&fx.recv(&second));
    let served = serve_requests(&mut fx, &second, asked, true);
    assert_eq!(
        served,
        [fx.block(0, 0), fx.block(0, 1)],
        "restarted: whole from the other"
    );
    assert_eq!(fx.torrent.banned(fx.now), [second.addr.ip()]);
}

#[test]
fn a_suspect_piece_restarted_by_a_reject_names_the_next_source_alone() {
    let setup = Setup::pieces(1, 2).config(|c| c.max_strikes = 1);
    let (mut fx, first, second, asked) = failed_with_two_contributors(setup);
    fx.deliver(&first, asked[0]);
    let next = requests(&fx.recv(&first));
    assert_eq!(next.len(), 1, "the rest of its piece");
    fx.send(&first, &[Message::Reject(next[0]), Message::Choke]);
    fx.send(&second, &[Message::KeepAlive]);
    let asked = requests(&fx.recv(&second));
    let served = serve_requests(&mut fx, &second, asked, true);
    assert_eq!(
        served,
        [fx.block(0, 0), fx.block(0, 1)],
        "restarted: whole from the other"
    );
    assert_eq!(
        fx.torrent.banned(fx.now),
        [second.addr.ip()],
        "the one source is named"
    );
}
