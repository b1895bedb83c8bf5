//! Unit tests of the picker.

use super::*;

fn picker(pieces: u32) -> Picker {
    Picker::new(
        2 * u64::from(BLOCK),
        u64::from(pieces) * 2 * u64::from(BLOCK) - 100,
        Bitfield::new(pieces),
        7,
    )
}

fn bits(count: u32, ones: &[u32]) -> PeerHas {
    let mut b = Bitfield::new(count);
    for &i in ones {
        b.set(i);
    }
    PeerHas::Bits(b)
}

#[test]
fn rarest_pieces_are_picked_first_and_seeds_count_apart() {
    let mut p = picker(10);
    let everyone = bits(10, &(0..10).collect::<Vec<_>>());
    for _ in 0..3 {
        p.peer_has_all_of(&everyone);
    }
    p.peer_has_all_of(&PeerHas::All);
    // Piece 3 is held by one peer fewer than the rest.
    p.peer_gone(&bits(10, &[3]));
    let mut out = Vec::new();
    p.pick(1, &PeerHas::All, None, 2, &mut out);
    assert_eq!(
        out.iter().map(|b| b.index).collect::<Vec<_>>(),
        vec![3, 3],
        "both blocks of the rarest piece"
    );
}

#[test]
fn partial_pieces_are_finished_first_and_lengths_are_exact() {
    let mut p = picker(3);
    let all = PeerHas::All;
    let mut first = Vec::new();
    p.pick(1, &all, None, 1, &mut first);
    let mut next = Vec::new();
    p.pick(2, &all, None, 1, &mut next);
    assert_eq!(next[0].index, first[0].index, "the started piece continues");
    assert_ne!(next[0].begin, first[0].begin);
    let mut rest = Vec::new();
    // The four blocks left; a fifth would be an endgame copy.
    p.pick(3, &all, None, 4, &mut rest);
    let last = rest
        .iter()
        .find(|b| b.index == 2 && b.begin == BLOCK)
        .expect("last block");
    assert_eq!(last.length, BLOCK - 100, "the torrent's last block is short");
    assert_eq!(first.len() + next.len() + rest.len(), 6);
    assert_eq!(p.left(), 6 * u64::from(BLOCK) - 100);
}

#[test]
fn blocks_complete_pieces_and_lost_requests_return_to_the_pool() {
    let mut p = picker(2);
    let all = PeerHas::All;
    let mut blocks = Vec::new();
    p.pick(1, &all, None, 4, &mut blocks);
    assert!(p.in_endgame());
    p.on_request_lost(blocks[0], 1);
    assert!(!p.in_endgame(), "a lost request frees its block");
    let mut again = Vec::new();
    p.pick(1, &all, None, 4, &mut again);
    assert_eq!(again, vec![blocks[0]]);
    let piece = blocks[0].index;
    let same_piece: Vec<_> = blocks.iter().filter(|b| b.index == piece).copied().collect();
    assert!(p.wants(same_piece[0]));
    assert_eq!(p.on_block(same_piece[0], 1), Received::Stored { cancel: None });
    assert!(!p.wants(same_piece[0]), "a copy we already have");
    assert_eq!(p.on_block(same_piece[0], 1), Received::Unwanted);
    assert_eq!(
        p.on_block(same_piece[1], 1),
        Received::PieceComplete { cancel: None }
    );
    p.on_verified(piece, false);
    assert!(!p.have().get(piece));
    let mut refetch = Vec::new();
    p.pick(1, &all, None, 10, &mut refetch);
    assert_eq!(
        refetch.iter().filter(|b| b.index == piece).count(),
        2,
        "a failed piece is fetched again"
    );
}

#[test]
fn endgame_asks_a_second_peer_once_and_names_the_loser() {
    let mut p = picker(1);
    let all = PeerHas::All;
    let mut from_a = Vec::new();
    p.pick(1, &all, None, 10, &mut from_a);
    assert_eq!(from_a.len(), 2);
    let mut from_b = Vec::new();
    p.pick(2, &all, None, 10, &mut from_b);
    assert_eq!(from_b, from_a, "endgame: the same blocks from another peer");
    let mut from_c = Vec::new();
    p.pick(3, &all, None, 10, &mut from_c);
    assert!(from_c.is_empty(), "at most two copies");
    let mut again_a = Vec::new();
    p.pick(1, &all, None, 10, &mut again_a);
    assert!(again_a.is_empty(), "never twice from one peer");
    assert_eq!(p.on_block(from_a[0], 2), Received::Stored { cancel: Some(1) });
    assert_eq!(
        p.on_block(from_a[1], 1),
        Received::PieceComplete { cancel: Some(2) }
    );
}

#[test]
fn a_lost_endgame_copy_leaves_the_other_holder() {
    let mut p = picker(1);
    let mut a = Vec::new();
    p.pick(1, &PeerHas::All, None, 10, &mut a);
    let mut b = Vec::new();
    p.pick(2, &PeerHas::All, None, 10, &mut b);
    p.on_request_lost(a[0], 1);
    assert!(p.all_requested(), "peer 2 still holds it");
    p.on_request_lost(a[0], 3);
    assert!(p.all_requested(), "peer 3 never held it");
    p.on_request_lost(a[0], 2);
    assert!(!p.all_requested(), "free again");
}

#[test]
fn suspect_pieces_go_whole_to_one_peer_and_restart_when_a_request_is_lost() {
    let mut p = Picker::new(4 * u64::from(BLOCK), 8 * u64::from(BLOCK), Bitfield::new(2), 3);
    let all = PeerHas::All;
    p.mark_suspect(0);
    p.mark_suspect(1);
    let mut a = Vec::new();
    p.pick(1, &all, None, 1, &mut a);
    assert_eq!(a.len(), 1, "within the peer's pipeline");
    let mut b = Vec::new();
    p.pick(2, &all, None, 10, &mut b);
    assert!(
        b.iter().all(|x| x.index != a[0].index),
        "never shared with another peer: {a:?} {b:?}"
    );
    // The owner takes the rest of its piece, not a new one.
    p.pick(1, &all, None, 3, &mut a);
    assert_eq!(a.len(), 4);
    assert!(a.iter().all(|x| x.index == a[0].index), "{a:?}");
    assert_eq!(p.on_block(a[0], 1), Received::Stored { cancel: None });
    p.on_request_lost(a[1], 1);
    assert_eq!(p.take_restarted(), vec![a[0].index]);
    let mut c = Vec::new();
    p.pick(3, &all, None, 10, &mut c);
    assert_eq!(c.len(), 4, "the piece starts over, whole: {c:?}");
    assert!(c.iter().all(|x| x.index == a[0].index));
}

#[test]
fn allowed_fast_narrows_the_choice_and_foreign_blocks_are_not_wanted() {
    let mut p = picker(10);
    let mut out = Vec::new();
    p.pick(1, &PeerHas::All, Some(&[7]), 10, &mut out);
    assert!(out.iter().all(|b| b.index == 7) && out.len() == 2);
    for bogus in [
        BlockRef {
            index: 7,
            begin: 5,
            length: BLOCK,
        },
        BlockRef {
            index: 7,
            begin: 0,
            length: 100,
        },
        BlockRef {
            index: 99,
            begin: 0,
            length: BLOCK,
        },
        BlockRef {
            index: 1,
            begin: 0,
            length: BLOCK,
        },
    ] {
        assert!(!p.wants(bogus), "{bogus:?}");
        assert_eq!(p.on_block(bogus, 1), Received::Unwanted);
    }
}

#[test]
fn seeds_and_bitfields_on_a_huge_torrent_cost_what_they_hold() {
    let pieces = 1 << 20;
    let mut p = Picker::new(
        u64::from(BLOCK),
        u64::from(pieces) * u64::from(BLOCK),
        Bitfield::new(pieces),
        1,
    );
    let started = std::time::Instant::now();
    for _ in 0..10_000 {
        p.peer_has_all_of(&PeerHas::All);
        p.peer_gone(&PeerHas::All);
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let mut out = Vec::new();
    p.pick(1, &PeerHas::All, None, 4, &mut out);
    assert_eq!(out.len(), 4);
}

#[test]
fn left_follows_verified_pieces() {
    let mut p = picker(3);
    let total = 6 * u64::from(BLOCK) - 100;
    assert_eq!(p.left(), total);
    let mut out = Vec::new();
    p.pick(1, &PeerHas::All, None, 10, &mut out);
    for b in &out {
        p.on_block(*b, 1);
    }
    p.on_verified(2, true);
    assert_eq!(p.left(), total - u64::from(BLOCK * 2 - 100));
    p.on_verified(0, true);
    p.on_verified(1, true);
    assert_eq!(p.left(), 0);
    assert!(p.is_complete());
}
