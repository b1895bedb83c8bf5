//! Time and life: handshake, keep-alive, silence and request timeouts on the
//! virtual clock; a torrent that starts without its metadata; and `stop`.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;

fn keepalives(sent: &[Sent]) -> usize {
    sent.iter().filter(|m| **m == Sent::KeepAlive).count()
}

#[test]
fn a_connection_that_never_handshakes_is_dropped_after_the_handshake_timeout() {
    let mut fx = Setup::default().start();
    let silent = fx.dial(addr(2, 7000));
    let never_connects = fx.dial(addr(3, 7000));
    fx.wait(Duration::from_secs(1));
    fx.connected(&silent);
    // The one answer seen took 1 s: connects get 4 × that (swarm::connect_timeout).
    fx.run_until(Duration::from_millis(3_900));
    assert!(!fx.closed(&never_connects));
    fx.run_until(Duration::from_secs(4));
    assert!(fx.closed(&never_connects), "4 s: four times the answer seen");
    fx.run_until(Duration::from_millis(10_900));
    assert!(!fx.closed(&silent), "10 s from the connect are not over");
    fx.run_until(Duration::from_secs(11));
    assert!(fx.closed(&silent), "no handshake 10 s after connecting");
    assert_eq!(fx.torrent.peer_counts().total(), 0);
}

#[test]
fn we_send_a_keep_alive_after_two_minutes_of_saying_nothing() {
    let mut fx = Setup::default().start();
    let peer = fx.outgoing(addr(2, 7000), FAST_ONLY);
    fx.send(&peer, &[Message::HaveNone]);
    fx.forget_sent(&peer);
    for minute in 1..=5u64 {
        fx.run_until(Duration::from_secs(60 * minute));
        fx.send(&peer, &[Message::KeepAlive]); // the peer is not silent
        let sent = fx.recv(&peer);
        let expected = usize::from(minute % 2 == 0);
        assert_eq!(keepalives(&sent), expected, "minute {minute}: {sent:?}");
        assert_eq!(sent.len(), expected, "nothing else to say");
    }
    assert!(!fx.closed(&peer));
}

#[test]
fn a_silent_peer_is_dropped_after_three_minutes() {
    let mut fx = Setup::default().start();
    let peer = fx.outgoing(addr(2, 7000), FAST_ONLY);
    fx.send(&peer, &[Message::HaveNone]);
    fx.forget_sent(&peer);
    fx.run_until(Duration::from_secs(179));
    assert!(!fx.closed(&peer));
    assert_eq!(keepalives(&fx.recv(&peer)), 1, "we kept talking at 2 minutes");
    fx.run_until(Duration::from_secs(180));
    assert!(fx.closed(&peer), "3 minutes without a byte");
    assert!(fx
        .events()
        .iter()
        .any(|e| matches!(e, TorrentEvent::PeerGone { addr, .. } if *addr == peer.addr)));
}

#[test]
fn a_request_timeout_cancels_at_the_slow_peer_and_gives_the_blocks_to_another() {
    // Pieces of 2 blocks, more than one window: the slow peer gets the initial
    // window's requests (whole pieces), and some pieces are left for nobody yet.
    let window = crate::peer::pipeline::INITIAL_WINDOW;
    let pieces_total = (window / 2 + 4) as u32;
    let (mut fx, slow, sent) = with_seed(Setup::pieces(pieces_total, 2), FAST_ONLY);
    let asked = requests(&sent);
    assert_eq!(asked.len(), window);
    let pieces: BTreeSet<u32> = asked.iter().map(|b| b.index).collect();
    assert_eq!(pieces.len(), window / 2);
    // The other peer has exactly those pieces: nothing for it until they come back.
    let mut bits = Bitfield::new(pieces_total);
    for &p in &pieces {
        bits.set(p);
    }
    let other = fx.outgoing(addr(3, 7000), FAST_ONLY);
    fx.send(&other, &[Message::Bitfield(bits.as_bytes()), Message::Unchoke]);
    assert!(requests(&fx.recv(&other)).is_empty(), "nothing free that it has");
    fx.run_until(Duration::from_millis(19_900));
    assert!(cancels(&fx.recv(&slow)).is_empty(), "not yet");
    fx.run_until(Duration::from_secs(20));
    let at_slow = fx.recv(&slow);
    let mut cancelled = cancels(&at_slow);
    cancelled.sort();
    let mut expected = asked.clone();
    expected.sort();
    assert_eq!(
        cancelled, expected,
        "every late request is cancelled at the slow peer"
    );
    let at_other = requests(&fx.recv(&other));
    assert!(
        at_other.iter().all(|b| expected.contains(b)),
        "only blocks that came back"
    );
    let mut again = [at_other, requests(&at_slow)].concat();
    again.sort();
    assert!(
        expected.iter().all(|b| again.contains(b)),
        "every block that came back is asked again: {again:?}"
    );
    assert!(
        requests(&at_slow).len() <= 1,
        "one at a time from the peer that timed out"
    );
}

#[test]
fn a_torrent_without_metadata_keeps_what_peers_announce_and_checks_it_when_the_metadata_arrives() {
    let mut fx = Setup {
        metadata: false,
        ..Setup::default()
    }
    .start();
    assert!(!fx.torrent.has_metadata());
    let bits = fx.incoming(addr(2, 7000), FAST_EXT).unwrap();
    let sent = fx.recv(&bits);
    assert_eq!(sent[1], Sent::HaveNone);
    assert!(matches!(sent[2], Sent::Extended { id: 0, .. }));
    fx.send(&bits, &[Message::Bitfield(&[0b1010_0000])]);
    let haves = fx.incoming(addr(3, 7000), PLAIN).unwrap();
    fx.send(&haves, &[Message::Have(1), Message::Have(3)]);
    let seed = fx.incoming(addr(4, 7000), FAST_ONLY).unwrap();
    fx.send(&seed, &[Message::HaveAll]);
    let too_long = fx.incoming(addr(5, 7000), PLAIN).unwrap();
    fx.send(&too_long, &[Message::Bitfield(&[0xff, 0xff])]);
    let past_end = fx.incoming(addr(6, 7000), PLAIN).unwrap();
    fx.send(&past_end, &[Message::Have(12)]);
    let asks = fx.incoming(addr(7, 7000), FAST_ONLY).unwrap();
    let block = BlockRef {
        index: 0,
        begin: 0,
        length: BLOCK,
    };
    fx.send(&asks, &[Message::Request(block)]);
    assert_eq!(&fx.recv(&asks)[1..], [Sent::HaveNone, Sent::Reject(block)]);
    for peer in [bits, haves, seed, too_long, past_end] {
        assert!(
            !fx.recv(&peer).contains(&Sent::Interested),
            "nothing is wanted yet"
        );
        assert!(!fx.closed(&peer), "nothing can be checked yet");
    }

    fx.load_metadata();
    assert!(
        fx.closed(&too_long) && fx.closed(&past_end),
        "announcements that do not fit"
    );
    assert_eq!(fx.torrent.stats().violations, 2);
    for peer in [bits, haves, seed] {
        assert_eq!(fx.recv(&peer), [Sent::Interested]);
    }
    assert!(
        fx.recv(&asks).is_empty(),
        "a peer with nothing stays uninteresting"
    );
    fx.send(&bits, &[Message::Unchoke]);
    let pieces: BTreeSet<u32> = requests(&fx.recv(&bits)).iter().map(|b| b.index).collect();
    assert_eq!(
        pieces,
        BTreeSet::from([0, 2]),
        "only what its early bitfield said"
    );
}

#[test]
fn peers_that_came_before_the_metadata_learn_the_pieces_we_have() {
    let mut fx = Setup {
        metadata: false,
        have: vec![1, 2],
        ..Setup::default()
    }
    .start();
    let early = fx.incoming(addr(2, 7000), FAST_ONLY).unwrap();
    fx.send(&early, &[Message::HaveNone]);
    fx.forget_sent(&early);
    fx.load_metadata();
    let told: BTreeSet<u32> = fx
        .recv(&early)
        .iter()
        .filter_map(|m| match m {
            Sent::Have(p) => Some(*p),
            _ => None,
        })
        .collect();
    assert_eq!(told, BTreeSet::from([1, 2]));
}

#[test]
fn stop_closes_every_connection_once_and_empties_every_table() {
    let mut fx = Setup {
        have: vec![0, 1],
        ..Setup::default()
    }
    .start();
    let connecting = fx.dial(addr(2, 7000));
    let handshaking = fx.dial(addr(3, 7000));
    fx.connected(&handshaking);
    let seed = fx.outgoing(addr(4, 7000), FAST_ONLY);
    fx.send(&seed, &[Message::HaveAll, Message::Unchoke]);
    assert!(!requests(&fx.recv(&seed)).is_empty());
    let leecher = fx.incoming(addr(5, 7000), FAST_ONLY).unwrap();
    fx.send(&leecher, &[Message::HaveNone, Message::Interested]);
    fx.timeout(); // the choker unchokes it
    let block = fx.block(0, 0);
    fx.send(&leecher, &[Message::Request(block)]);
    assert!(fx.torrent.wants_to_serve(), "an upload is queued");
    let dropped = fx.outgoing(addr(6, 7000), PLAIN);
    fx.disconnect(&dropped); // a reconnection is scheduled
    fx.torrent.add_candidate(fx.now, addr(7, 7000));
    let liar = fx.incoming(addr(8, 7000), PLAIN).unwrap();
    fx.send(&liar, &[Message::HaveAll]); // a strike
    assert!(fx.torrent.table_sizes().iter().any(|&n| n > 0));

    fx.torrent.stop(fx.now, &mut fx.out);
    let closes = fx
        .out
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Close { .. }))
        .count();
    fx.route();
    assert_eq!(closes, 4, "one close per open connection");
    for peer in [connecting, handshaking, seed, leecher] {
        assert!(fx.closed(&peer));
    }
    assert_eq!(fx.torrent.table_sizes(), [0; 11]);
    assert!(fx.torrent.is_stopping());
    assert_eq!(fx.torrent.poll_timeout(), None);
    assert_eq!(fx.torrent.poll_connect(fx.now), None);
    assert!(!fx.torrent.add_candidate(fx.now, addr(9, 7000)));
    assert_eq!(fx.incoming(addr(9, 7000), FAST_ONLY), Err(Refusal::Stopping));
    // The driver reports the closes back: nothing more happens.
    fx.torrent.handle_closed(fx.now, seed.key, seed.conn, &mut fx.out);
    fx.disconnect(&leecher);
    fx.tick(Duration::from_secs(600));
    assert!(fx.out.is_empty());
    let gone = fx
        .events()
        .iter()
        .filter(|e| matches!(e, TorrentEvent::PeerGone { .. }))
        .count();
    assert_eq!(gone, 4, "the dropped peer, the liar, the seed and the leecher");
}
