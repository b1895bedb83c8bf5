//! Choking through the torrent on the virtual clock: when peers get a slot, how
//! many may hold one, and who gets it while we download.

use std::collections::BTreeSet;
use std::time::Duration;

use super::*;

/// Whether `peer` is unchoked, from what it heard last.
fn track(fx: &mut Fixture, peer: &Peer, unchoked: &mut BTreeSet<PeerKey>) {
    for m in fx.recv(peer) {
        match m {
            Sent::Unchoke => assert!(unchoked.insert(peer.key), "unchoke twice"),
            Sent::Choke => assert!(unchoked.remove(&peer.key), "choke while choked"),
            _ => {}
        }
    }
}

fn seeder(slots: usize) -> Fixture {
    Setup::pieces(16, 1)
        .config(|c| {
            c.seed = true;
            c.upload_slots = slots;
        })
        .seeding()
        .start()
}

#[test]
fn a_newly_interested_peer_is_unchoked_at_the_next_timeout_not_the_next_round() {
    let mut fx = seeder(4);
    let peer = fx.incoming(addr(2, 7000), FAST_ONLY).unwrap();
    fx.send(&peer, &[Message::HaveNone]);
    fx.run_until(Duration::from_secs(3)); // the first rechoke finds nobody interested
    fx.forget_sent(&peer);
    fx.send(&peer, &[Message::Interested]);
    assert!(
        fx.recv(&peer).is_empty(),
        "decided on the next turn, not inside the read"
    );
    let at = fx.torrent.poll_timeout().expect("a turn is due");
    assert!(at <= fx.now, "due now, not at the 10 s round");
    fx.timeout();
    assert_eq!(fx.recv(&peer), [Sent::Unchoke]);
}

#[test]
fn at_most_upload_slots_plus_one_peers_are_unchoked_and_the_optimistic_slot_moves() {
    let mut fx = seeder(2);
    let peers: Vec<Peer> = (2..8)
        .map(|host| {
            let p = fx.incoming(addr(host, 7000), FAST_ONLY).unwrap();
            fx.send(&p, &[Message::HaveNone, Message::Interested]);
            p
        })
        .collect();
    let mut unchoked = BTreeSet::new();
    let mut ever = BTreeSet::new();
    for second in 0..=300 {
        fx.run_until(Duration::from_secs(second));
        for p in &peers {
            track(&mut fx, p, &mut unchoked);
            // Keep them alive: the silence timeout is not under test here.
            if second % 60 == 0 {
                fx.send(p, &[Message::KeepAlive]);
            }
        }
        assert!(unchoked.len() <= 3, "{} unchoked at {second} s", unchoked.len());
        ever.extend(unchoked.iter().copied());
    }
    assert_eq!(unchoked.len(), 3, "every slot is used while peers want one");
    assert!(ever.len() > 3, "the optimistic slot moved: {ever:?}");
}

#[test]
fn a_peer_leaving_its_slot_hands_it_to_a_waiting_peer_at_once() {
    let mut fx = seeder(1);
    let peers: Vec<Peer> = (2..5)
        .map(|host| {
            let p = fx.incoming(addr(host, 7000), FAST_ONLY).unwrap();
            fx.send(&p, &[Message::HaveNone, Message::Interested]);
            p
        })
        .collect();
    fx.timeout();
    let mut unchoked = BTreeSet::new();
    for p in &peers {
        track(&mut fx, p, &mut unchoked);
    }
    assert_eq!(unchoked.len(), 2, "one regular slot and the optimistic one");
    fx.wait(Duration::from_secs(2));
    let leaving = peers.iter().find(|p| unchoked.contains(&p.key)).copied().unwrap();
    fx.disconnect(&leaving);
    unchoked.remove(&leaving.key);
    assert!(
        fx.torrent.poll_timeout().is_some_and(|at| at <= fx.now),
        "a slot is free now"
    );
    fx.timeout();
    for p in peers.iter().filter(|p| **p != leaving) {
        track(&mut fx, p, &mut unchoked);
    }
    assert_eq!(unchoked.len(), 2, "the waiting peer has the slot");
}

#[test]
fn peers_that_are_not_interested_and_seeds_are_never_unchoked() {
    let mut fx = Setup {
        have: vec![0],
        ..Setup::pieces(16, 1)
    }
    .start();
    let idle = fx.incoming(addr(2, 7000), FAST_ONLY).unwrap();
    fx.send(&idle, &[Message::HaveNone]);
    let seed = fx.incoming(addr(3, 7000), FAST_ONLY).unwrap();
    fx.send(&seed, &[Message::HaveAll, Message::Interested]);
    fx.run_until(Duration::from_secs(120));
    for p in [idle, seed] {
        assert!(!fx.recv(&p).contains(&Sent::Unchoke));
        fx.send(&p, &[Message::KeepAlive]);
    }
}

#[test]
fn while_downloading_the_peer_we_download_from_keeps_a_regular_slot() {
    // We have piece 0; seven peers want it, one of them sends us blocks.
    let mut fx = Setup {
        have: vec![0],
        ..Setup::pieces(80, 1)
    }
    .config(|c| c.upload_slots = 1)
    .start();
    let mut most = Bitfield::new(80);
    for p in 1..80 {
        most.set(p);
    }
    let giver = fx.outgoing(addr(2, 7000), FAST_ONLY);
    fx.send(
        &giver,
        &[
            Message::Bitfield(most.as_bytes()),
            Message::Interested,
            Message::Unchoke,
        ],
    );
    let mut heard = fx.recv(&giver);
    let mut asked = requests(&heard);
    let takers: Vec<Peer> = (3..9)
        .map(|host| {
            let p = fx.incoming(addr(host, 7000), FAST_ONLY).unwrap();
            fx.send(&p, &[Message::HaveNone, Message::Interested]);
            p
        })
        .collect();
    // A block every half second: still downloading (not seeding) for 30 s.
    for step in 1..=62u64 {
        fx.run_until(Duration::from_millis(500 * step));
        let b = asked.remove(0);
        fx.deliver(&giver, b);
        let sent = fx.recv(&giver);
        asked.extend(requests(&sent));
        heard.extend(sent);
        for p in &takers {
            fx.forget_sent(p);
        }
        if step % 20 == 1 && step > 1 {
            // Just after the rounds at 10, 20 and 30 s.
            let last = heard
                .iter()
                .rev()
                .find(|m| matches!(m, Sent::Choke | Sent::Unchoke));
            assert_eq!(
                last,
                Some(&Sent::Unchoke),
                "at {} ms the giver is unchoked",
                500 * step
            );
        }
    }
    assert!(fx.torrent.stats().downloaded > 0 && !fx.torrent.is_complete());
}
