//! `have` in batches (issue 19): the first verified piece after a quiet spell is
//! announced at once, the ones right after it together once `HAVE_INTERVAL` has
//! passed, everything at completion; a peer that handshakes meanwhile is not told
//! twice.

use std::time::Duration;

use super::*;
use crate::torrent::haves::HAVE_INTERVAL;

fn haves(sent: &[Sent]) -> Vec<u32> {
    sent.iter()
        .filter_map(|m| match m {
            Sent::Have(p) => Some(*p),
            _ => None,
        })
        .collect()
}

/// Delivers every block of `piece` from `seed`.
fn verify(fx: &mut Fixture, seed: &Peer, piece: u32) {
    for n in 0..2 {
        let block = fx.block(piece, n);
        fx.deliver(seed, block);
    }
}

#[test]
fn the_first_piece_goes_at_once_and_the_next_ones_together_after_the_interval() {
    let (mut fx, seed, _) = with_seed(Setup::pieces(8, 2), FAST_ONLY);
    let empty = fx.incoming(addr(3, 7000), FAST_ONLY).unwrap();
    fx.send(&empty, &[Message::HaveNone]);
    fx.forget_sent(&empty);
    let order: Vec<u32> = (0..8).collect();
    verify(&mut fx, &seed, order[0]);
    assert_eq!(haves(&fx.recv(&empty)), [0], "a quiet spell: at once");
    fx.wait(Duration::from_millis(10));
    verify(&mut fx, &seed, 1);
    fx.wait(Duration::from_millis(10));
    verify(&mut fx, &seed, 2);
    assert!(
        haves(&fx.recv(&empty)).is_empty(),
        "within the interval: they wait"
    );
    let due = fx.torrent.poll_timeout().expect("a batch is due");
    assert!(due <= fx.t0 + HAVE_INTERVAL, "{:?}", due - fx.t0);
    fx.run_until(HAVE_INTERVAL);
    assert_eq!(haves(&fx.recv(&empty)), [1, 2], "together, after the interval");
    // Quiet again: the next piece goes at once.
    fx.wait(HAVE_INTERVAL);
    verify(&mut fx, &seed, 3);
    assert_eq!(haves(&fx.recv(&empty)), [3]);
}

#[test]
fn completion_announces_everything_pending_at_once() {
    let (mut fx, seed, _) = with_seed(Setup::pieces(4, 2), FAST_ONLY);
    let empty = fx.incoming(addr(3, 7000), FAST_ONLY).unwrap();
    fx.send(&empty, &[Message::HaveNone]);
    fx.forget_sent(&empty);
    for piece in 0..4 {
        verify(&mut fx, &seed, piece);
    }
    assert!(fx.torrent.is_complete());
    let mut told = haves(&fx.recv(&empty));
    told.sort();
    assert_eq!(told, [0, 1, 2, 3], "no waiting for the interval");
}

#[test]
fn a_peer_that_arrives_while_pieces_wait_learns_them_once() {
    let (mut fx, seed, _) = with_seed(Setup::pieces(8, 2), PLAIN);
    verify(&mut fx, &seed, 0); // announced at once: the interval starts
    verify(&mut fx, &seed, 1); // waits
    let late = fx.incoming(addr(3, 7000), PLAIN).unwrap();
    let first = fx.recv(&late);
    assert_eq!(
        first.iter().find(|m| matches!(m, Sent::Bitfield(_))),
        Some(&Sent::Bitfield(vec![0b1100_0000])),
        "its bitfield has the waiting piece"
    );
    fx.send(&late, &[Message::Bitfield(&[0])]);
    fx.forget_sent(&late);
    fx.wait(Duration::from_millis(10));
    verify(&mut fx, &seed, 2);
    fx.run_until(HAVE_INTERVAL);
    assert_eq!(haves(&fx.recv(&late)), [2], "not piece 1 again");
}
