//! Dead peers (issue 19): connects in progress take no peer slot, and the connect
//! timeout follows the swarm's answers, so silent addresses cannot stall a torrent.

use std::io::ErrorKind;
use std::time::Duration;

use super::*;
use crate::swarm::connect_timeout::FLOOR;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn connects_in_progress_take_no_peer_slot_and_a_surplus_connect_is_kept_for_later() {
    let mut fx = Setup::default().config(|c| c.max_peers = 3).start();
    for host in 2..20 {
        fx.torrent.add_candidate(fx.now, addr(host, 7000));
    }
    // Three free slots: six connects at once.
    let mut dialed = Vec::new();
    while let Some(a) = fx.torrent.poll_connect(fx.now) {
        dialed.push(fx.dial(a));
    }
    assert_eq!(dialed.len(), 6);
    assert_eq!(fx.torrent.poll_connect(fx.now), None, "twice the free slots");
    // Two come up and handshake: one slot left, so two connects may be pending
    // and no more are started.
    for peer in &dialed[..2] {
        fx.connected(peer);
        fx.send_handshake(peer, FAST_ONLY);
    }
    assert_eq!(fx.torrent.peer_counts().connecting, 4);
    assert_eq!(fx.torrent.poll_connect(fx.now), None);
    fx.connected(&dialed[2]);
    fx.send_handshake(&dialed[2], FAST_ONLY);
    // Full: a connect that completes now is closed, its address kept.
    fx.connected(&dialed[3]);
    assert!(fx.closed(&dialed[3]));
    assert!(fx.torrent.pool().candidates.contains(&dialed[3].addr));
    assert_eq!(
        fx.incoming(addr(30, 50_000), FAST_ONLY).err(),
        Some(Refusal::Full)
    );
    // Two slots free: with two connects still pending, two more start.
    fx.disconnect(&dialed[0]);
    fx.disconnect(&dialed[1]);
    for _ in 0..2 {
        let next = fx.torrent.poll_connect(fx.now).expect("room for another connect");
        fx.dial(next);
    }
    assert_eq!(fx.torrent.poll_connect(fx.now), None);
}

#[test]
fn without_an_answer_a_connect_waits_the_configured_ceiling() {
    let mut fx = Setup::default().start();
    let silent = fx.dial(addr(2, 7000));
    assert_eq!(fx.torrent.connect_timeout(&silent.addr), Duration::from_secs(10));
    fx.run_until(ms(9_900));
    assert!(!fx.closed(&silent));
    fx.run_until(Duration::from_secs(10));
    assert!(fx.closed(&silent), "the 10 s ceiling");
}

#[test]
fn the_first_refusal_cuts_pending_connects_to_the_floor() {
    let mut fx = Setup::default().start();
    let silent: Vec<Peer> = (2..12).map(|host| fx.dial(addr(host, 7000))).collect();
    let closed_port = fx.dial(addr(12, 7000));
    fx.wait(ms(1));
    fx.connect_failed(&closed_port, ErrorKind::ConnectionRefused);
    assert_eq!(fx.torrent.connect_timeout(&addr(40, 7000)), FLOOR);
    fx.run_until(FLOOR - ms(10));
    assert!(silent.iter().all(|p| !fx.closed(p)));
    fx.run_until(FLOOR);
    assert!(
        silent.iter().all(|p| fx.closed(p)),
        "started under the ceiling, cut at the floor once an answer was seen"
    );
}

#[test]
fn timeouts_and_network_errors_teach_nothing() {
    let mut fx = Setup::default().start();
    for (host, kind) in [(2, ErrorKind::TimedOut), (3, ErrorKind::NetworkUnreachable)] {
        let peer = fx.dial(addr(host, 7000));
        fx.wait(ms(5));
        fx.connect_failed(&peer, kind);
        assert!(fx.closed(&peer));
    }
    assert_eq!(
        fx.torrent.connect_timeout(&addr(9, 7000)),
        Duration::from_secs(10),
        "no answer from a host yet"
    );
}

#[test]
fn an_address_that_timed_out_gets_twice_as_long_next_time() {
    let mut fx = Setup::default().start();
    let answer = fx.dial(addr(9, 7000));
    fx.connect_failed(&answer, ErrorKind::ConnectionRefused);
    let target = addr(2, 7000);
    fx.torrent.add_candidate(fx.now, target);
    let handed = fx.torrent.poll_connect(fx.now).expect("a candidate");
    let first = fx.dial(handed);
    fx.run_until(FLOOR);
    assert!(fx.closed(&first), "the floor");
    // Its retry comes after the 5 s backoff, with twice the timeout.
    let retry_at = FLOOR + Duration::from_secs(5);
    fx.run_until(retry_at);
    let due: Vec<_> = std::iter::from_fn(|| fx.torrent.poll_connect(fx.now)).collect();
    assert!(due.contains(&target), "{due:?}");
    assert_eq!(fx.torrent.connect_timeout(&target), 2 * FLOOR);
    let second = fx.dial(target);
    fx.run_until(retry_at + 2 * FLOOR - ms(10));
    assert!(!fx.closed(&second));
    fx.run_until(retry_at + 2 * FLOOR);
    assert!(fx.closed(&second));
}
