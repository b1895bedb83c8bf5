//! The pool: who we connect to, who we turn away, reconnection backoff, and the
//! fixes for candidates that can never work (issue 16 fix 2) and for the busy
//! loop while the pool is full (fix 13).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::*;

fn far(i: u32) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + i), 6881))
}

#[test]
fn ten_thousand_connects_that_fail_at_once_leave_room_for_a_new_candidate() {
    let mut fx = Setup::default().start();
    let limit = fx.torrent.config().candidate_limit as u32;
    let failure = io::Error::from(io::ErrorKind::NetworkUnreachable);
    // Trackers hand out batches of unreachable peers (IPv6 on an IPv4-only host).
    for batch in 0..10_000 / limit {
        for i in 0..limit {
            assert!(
                fx.torrent.add_candidate(fx.now, far(batch * limit + i)),
                "batch {batch}: room"
            );
        }
        while let Some(addr) = fx.torrent.poll_connect(fx.now) {
            fx.torrent.handle_connect_error(addr, &failure);
        }
    }
    assert_eq!(fx.torrent.pool().candidates.known(), 0, "every failure forgotten");
    let live = addr(2, 7000);
    assert!(fx.torrent.add_candidate(fx.now, live));
    assert_eq!(fx.torrent.poll_connect(fx.now), Some(live));
}

#[test]
fn ten_thousand_banned_addresses_leave_room_for_a_new_candidate() {
    let mut fx = Setup::default().config(|c| c.max_strikes = 1).start();
    for i in 0..10_000 {
        assert!(fx.torrent.add_candidate(fx.now, far(i)), "room for address {i}");
        let addr = fx.torrent.poll_connect(fx.now).expect("handed out");
        let peer = fx.dial(addr);
        fx.connected(&peer);
        fx.send_raw(&peer, b"\x00garbage");
        assert!(fx.closed(&peer));
    }
    assert_eq!(fx.torrent.stats().violations, 10_000);
    assert_eq!(fx.torrent.pool().candidates.known(), 0);
    assert!(fx.torrent.bans().len() <= 4 * crate::torrent::bans::MAX_ENTRIES);
    let live = addr(2, 7000);
    assert!(fx.torrent.add_candidate(fx.now, live));
    assert_eq!(fx.torrent.poll_connect(fx.now), Some(live));
}

#[test]
fn candidates_of_an_ip_banned_while_they_waited_are_forgotten() {
    let mut fx = Setup::default().config(|c| c.max_strikes = 1).start();
    let limit = fx.torrent.config().candidate_limit as u16;
    for port in 1..=limit {
        assert!(fx.torrent.add_candidate(fx.now, addr(2, port)));
    }
    assert!(!fx.torrent.add_candidate(fx.now, addr(3, 1)), "the list is full");
    // A peer on that IP sends a bad piece: the IP is banned.
    let liar = fx.incoming(addr(2, 7000), FAST_ONLY).unwrap();
    fx.send(&liar, &[Message::HaveAll, Message::Unchoke]);
    let piece = requests(&fx.recv(&liar))[0].index;
    fx.deliver_garbage(&liar, fx.block(piece, 0));
    fx.deliver_garbage(&liar, fx.block(piece, 1));
    assert_eq!(fx.torrent.banned(fx.now), [addr(2, 0).ip()]);
    assert_eq!(
        fx.torrent.poll_connect(fx.now),
        None,
        "no banned address is handed out"
    );
    assert_eq!(fx.torrent.pool().candidates.known(), 0);
    assert!(fx.torrent.add_candidate(fx.now, addr(3, 1)));
    assert_eq!(fx.torrent.poll_connect(fx.now), Some(addr(3, 1)));
}

#[test]
fn a_full_pool_with_retries_due_sleeps_until_something_can_happen() {
    let mut fx = Setup::default().config(|c| c.max_peers = 3).start();
    // Two peers that dropped: their reconnections are due after 5 s.
    for host in [2, 3] {
        let peer = fx.outgoing(addr(host, 7000), FAST_ONLY);
        fx.disconnect(&peer);
    }
    // The slots fill with peers that stay.
    let full: Vec<Peer> = (4..7)
        .map(|host| fx.outgoing(addr(host, 7000), FAST_ONLY))
        .collect();
    assert_eq!(fx.torrent.poll_connect(fx.now), None, "full");
    fx.timeout(); // the choker's first round for the new peers
    let mut wakeups = 0;
    let end = fx.t0 + Duration::from_secs(19);
    while let Some(at) = fx.torrent.poll_timeout() {
        assert!(
            at > fx.now,
            "poll_timeout {:?} is not after now ({:?}): the loop would spin",
            at - fx.t0,
            fx.now - fx.t0
        );
        if at > end {
            break;
        }
        fx.now = at;
        fx.timeout();
        wakeups += 1;
        assert_eq!(fx.torrent.poll_connect(fx.now), None, "still full");
    }
    assert!(wakeups <= 4, "{wakeups} wake-ups in 19 s with nothing to do");
    // A slot frees: the retries that were due are tried.
    fx.disconnect(&full[0]);
    fx.timeout();
    let mut next: Vec<SocketAddr> = std::iter::from_fn(|| fx.torrent.poll_connect(fx.now)).collect();
    next.sort();
    assert_eq!(next, [addr(2, 7000), addr(3, 7000)]);
}

#[test]
fn a_dropped_outgoing_peer_is_retried_after_a_backoff_that_doubles() {
    let mut fx = Setup::default().start();
    let target = addr(2, 7000);
    let peer = fx.dial(target);
    fx.disconnect(&peer); // refused before the handshake
    fx.run_until(Duration::from_millis(4_900));
    assert_eq!(fx.torrent.poll_connect(fx.now), None, "not before 5 s");
    fx.run_until(Duration::from_secs(5));
    assert_eq!(fx.torrent.poll_connect(fx.now), Some(target));
    let again = fx.dial(target);
    fx.disconnect(&again);
    fx.run_until(Duration::from_secs(14));
    assert_eq!(fx.torrent.poll_connect(fx.now), None, "the second wait is 10 s");
    fx.run_until(Duration::from_secs(15));
    assert_eq!(fx.torrent.poll_connect(fx.now), Some(target));
    // Incoming peers have no listening address to retry.
    let incoming = fx.incoming(addr(3, 50_000), FAST_ONLY).unwrap();
    fx.disconnect(&incoming);
    fx.run_until(Duration::from_secs(120));
    assert_eq!(fx.torrent.poll_connect(fx.now), None);
}

#[test]
fn incoming_peers_are_turned_away_when_full_duplicate_or_ourselves() {
    let mut fx = Setup::default().config(|c| c.max_peers = 2).start();
    let first = fx.incoming(addr(2, 7000), FAST_ONLY).unwrap();
    assert_eq!(
        fx.incoming(addr(2, 7000), FAST_ONLY),
        Err(Refusal::Duplicate),
        "same address"
    );
    assert_eq!(
        fx.incoming_as(addr(2, 7001), first.id, FAST_ONLY),
        Err(Refusal::Duplicate),
        "same peer id"
    );
    assert_eq!(
        fx.incoming_as(addr(2, 7002), OUR_ID, FAST_ONLY),
        Err(Refusal::Ourselves)
    );
    fx.incoming(addr(3, 7000), FAST_ONLY).unwrap();
    assert_eq!(fx.incoming(addr(4, 7000), FAST_ONLY), Err(Refusal::Full));
    assert_eq!(fx.torrent.peer_counts().active, 2);
}

#[test]
fn an_outgoing_handshake_for_another_torrent_ourselves_or_a_known_peer_is_closed_without_a_strike() {
    let mut fx = Setup::default().start();
    let known = fx.outgoing(addr(2, 7000), FAST_ONLY);

    let wrong = fx.dial(addr(3, 7000));
    fx.connected(&wrong);
    let mut other = fx.handshake_of(wrong.id, FAST_ONLY);
    other.info_hash.0[0] ^= 1;
    let mut bytes = Vec::new();
    other.encode(&mut bytes);
    fx.send_raw(&wrong, &bytes);
    assert!(fx.closed(&wrong), "another torrent");

    let me = addr(4, 7000);
    let mirror = fx.dial(me);
    fx.connected(&mirror);
    let mut bytes = Vec::new();
    fx.handshake_of(OUR_ID, FAST_ONLY).encode(&mut bytes);
    fx.send_raw(&mirror, &bytes);
    assert!(fx.closed(&mirror), "ourselves");
    assert!(
        !fx.torrent.add_candidate(fx.now, me),
        "our own address is no candidate"
    );

    let twin = fx.dial(addr(5, 7000));
    fx.connected(&twin);
    let mut bytes = Vec::new();
    fx.handshake_of(known.id, FAST_ONLY).encode(&mut bytes);
    fx.send_raw(&twin, &bytes);
    assert!(fx.closed(&twin), "a second connection to a peer we have");

    assert!(!fx.closed(&known));
    assert_eq!(fx.torrent.stats().violations, 0);
    assert!(fx.torrent.bans().is_empty());
}
