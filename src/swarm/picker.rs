//! The piece picker: which blocks to request from which peer.
//!
//! - Partial pieces first, so pieces complete (and can be verified and shared) soon.
//! - Otherwise rarest first: among the pieces a peer has and we lack, those the fewest
//!   connected peers have, with a random choice among the rarest few so that peers
//!   starting together do not all fetch the same piece.
//! - Endgame: once every missing block is requested, blocks already requested from
//!   one peer may be requested from another too; the first copy wins and the
//!   others are cancelled.
//!
//! - Suspect pieces (they failed their hash check with blocks from several peers)
//!   are fetched whole from one peer next time, so a second failure has a single
//!   culprit; their blocks are never split between peers, in endgame or otherwise.
//!
//! Invariant (checked in debug builds): every piece is in exactly one of *had*,
//! *in progress* (some block requested or received) or *not started*.

use std::collections::{HashMap, HashSet};

use super::bitfield::Bitfield;
use crate::random::Xorshift;
use crate::wire::{BlockRef, BLOCK};

/// How many of the rarest candidate pieces a random pick is made among.
const RAREST_CHOICES: usize = 5;
/// Most peers a block may be requested from at once in endgame.
const ENDGAME_COPIES: u8 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Free,
    /// Requested from this many peers.
    Requested(u8),
    Received,
}

#[derive(Debug)]
struct Partial {
    blocks: Vec<Block>,
    received: u32,
    /// A suspect piece: all its blocks go to the one peer that started it.
    exclusive: bool,
}

/// What a received block meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Not something we asked for, or a copy we already had: drop it.
    Unwanted,
    /// Stored; the piece is still incomplete.
    Stored,
    /// Stored, and it was the piece's last block: verify the piece now.
    PieceComplete,
}

/// Block bookkeeping for one torrent.
#[derive(Debug)]
pub struct Picker {
    piece_length: u64,
    total_length: u64,
    have: Bitfield,
    availability: Vec<u16>,
    partial: HashMap<u32, Partial>,
    suspect: HashSet<u32>,
    rng: Xorshift,
}

impl Picker {
    pub fn new(piece_length: u64, total_length: u64, have: Bitfield, seed: u64) -> Picker {
        let count = have.len() as usize;
        Picker {
            piece_length,
            total_length,
            have,
            availability: vec![0; count],
            partial: HashMap::new(),
            suspect: HashSet::new(),
            rng: Xorshift::new(seed),
        }
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    pub fn piece_size(&self, piece: u32) -> u32 {
        let start = u64::from(piece) * self.piece_length;
        self.piece_length.min(self.total_length - start) as u32
    }

    fn block_count(&self, piece: u32) -> usize {
        self.piece_size(piece).div_ceil(BLOCK) as usize
    }

    fn block_ref(&self, piece: u32, block: usize) -> BlockRef {
        let begin = block as u32 * BLOCK;
        BlockRef {
            index: piece,
            begin,
            length: BLOCK.min(self.piece_size(piece) - begin),
        }
    }

    /// The piece failed with blocks from several peers: fetch it whole from one next time.
    pub fn mark_suspect(&mut self, piece: u32) {
        if !self.have.get(piece) {
            self.suspect.insert(piece);
        }
    }

    /// Pieces in progress (for tests and status).
    pub fn in_progress(&self) -> usize {
        self.partial.len()
    }

    // ------------------------------------------------------------ availability

    pub fn peer_has_bitfield(&mut self, bits: &Bitfield) {
        for piece in bits.iter_ones() {
            self.availability[piece as usize] += 1;
        }
    }

    pub fn peer_has(&mut self, piece: u32) {
        if let Some(count) = self.availability.get_mut(piece as usize) {
            *count = count.saturating_add(1);
        }
    }

    pub fn peer_gone(&mut self, bits: &Bitfield) {
        for piece in bits.iter_ones() {
            let count = &mut self.availability[piece as usize];
            *count = count.saturating_sub(1);
        }
    }

    /// Whether `bits` holds a piece we still lack.
    pub fn wants_from(&self, bits: &Bitfield) -> bool {
        bits.iter_ones().any(|p| !self.have.get(p))
    }

    // ------------------------------------------------------------ picking

    /// Picks up to `max` blocks for a peer that has `peer_has`; `allowed` narrows the
    /// choice to some pieces (the allowed-fast set while choked). `outstanding`
    /// lists the blocks already requested from this peer, so endgame never asks one
    /// peer twice for the same block.
    pub fn pick(
        &mut self,
        peer_has: &Bitfield,
        allowed: Option<&[u32]>,
        outstanding: &[BlockRef],
        max: usize,
        out: &mut Vec<BlockRef>,
    ) {
        let usable = |picker: &Picker, piece: u32| {
            peer_has.get(piece) && !picker.have.get(piece) && allowed.is_none_or(|a| a.contains(&piece))
        };
        // 1. Free blocks of pieces in progress (not suspect ones: those stay with one peer).
        let mut partial_pieces: Vec<u32> = self
            .partial
            .iter()
            .filter(|(p, partial)| !partial.exclusive && usable(self, **p))
            .map(|(p, _)| *p)
            .collect();
        partial_pieces.sort_unstable();
        for piece in partial_pieces {
            self.take_free(piece, max, out);
            if out.len() >= max {
                return;
            }
        }
        // 2. New pieces, rarest first.
        while out.len() < max {
            let mut candidates: Vec<(u16, u32)> = (0..self.have.len())
                .filter(|&p| usable(self, p) && !self.partial.contains_key(&p))
                .map(|p| (self.availability[p as usize], p))
                .collect();
            if candidates.is_empty() {
                break;
            }
            let rarest = candidates.len().min(RAREST_CHOICES);
            candidates.select_nth_unstable(rarest - 1);
            candidates[..rarest].sort_unstable();
            // Random among the pieces tied for rarest (at most a few of them).
            let ties = candidates[..rarest]
                .iter()
                .take_while(|c| c.0 == candidates[0].0)
                .count();
            let (_, piece) = candidates[self.rng.below(ties as u64) as usize];
            let blocks = vec![Block::Free; self.block_count(piece)];
            let exclusive = self.suspect.contains(&piece);
            self.partial.insert(
                piece,
                Partial {
                    blocks,
                    received: 0,
                    exclusive,
                },
            );
            // A suspect piece is requested whole from this one peer.
            let room = if exclusive { usize::MAX } else { max };
            self.take_free(piece, room, out);
        }
        // 3. Endgame: nothing free is left; request blocks others are already fetching.
        if out.len() < max && self.all_requested() {
            let mut pieces: Vec<u32> = self
                .partial
                .iter()
                .filter(|(p, partial)| !partial.exclusive && usable(self, **p))
                .map(|(p, _)| *p)
                .collect();
            pieces.sort_unstable();
            for piece in pieces {
                for block in 0..self.partial[&piece].blocks.len() {
                    if out.len() >= max {
                        return;
                    }
                    let r = self.block_ref(piece, block);
                    let state = &mut self.partial.get_mut(&piece).expect("listed").blocks[block];
                    if let Block::Requested(n) = state {
                        if *n < ENDGAME_COPIES && !outstanding.contains(&r) && !out.contains(&r) {
                            *n += 1;
                            out.push(r);
                        }
                    }
                }
            }
        }
        self.check_invariant();
    }

    fn take_free(&mut self, piece: u32, max: usize, out: &mut Vec<BlockRef>) {
        let count = self.partial[&piece].blocks.len();
        for block in 0..count {
            if out.len() >= max {
                return;
            }
            let r = self.block_ref(piece, block);
            let state = &mut self.partial.get_mut(&piece).expect("in progress").blocks[block];
            if *state == Block::Free {
                *state = Block::Requested(1);
                out.push(r);
            }
        }
    }

    /// True when no missing block is free: every one is requested or received.
    pub fn all_requested(&self) -> bool {
        let started = self.partial.len() as u32 + self.have.count();
        started == self.have.len()
            && self
                .partial
                .values()
                .all(|p| p.blocks.iter().all(|b| *b != Block::Free))
    }

    /// Whether endgame is on (a block may then be outstanding at several peers).
    pub fn in_endgame(&self) -> bool {
        self.all_requested() && !self.is_complete()
    }

    // ------------------------------------------------------------ results

    /// A block arrived.
    pub fn on_block(&mut self, r: BlockRef) -> Received {
        if r.begin % BLOCK != 0 || self.have.get(r.index) {
            return Received::Unwanted;
        }
        let block = (r.begin / BLOCK) as usize;
        let expected = match self.partial.get(&r.index) {
            Some(p) if block < p.blocks.len() => self.block_ref(r.index, block),
            _ => return Received::Unwanted,
        };
        if expected != r {
            return Received::Unwanted;
        }
        let partial = self.partial.get_mut(&r.index).expect("checked");
        match partial.blocks[block] {
            Block::Received => Received::Unwanted,
            // Free: an unrequested block (or one whose request timed out): take it anyway.
            Block::Free | Block::Requested(_) => {
                partial.blocks[block] = Block::Received;
                partial.received += 1;
                if partial.received as usize == partial.blocks.len() {
                    Received::PieceComplete
                } else {
                    Received::Stored
                }
            }
        }
    }

    /// A request will not be answered (timeout, reject, choke, disconnect): the block
    /// goes back to the pool unless another peer still has it requested.
    pub fn on_request_lost(&mut self, r: BlockRef) {
        let Some(partial) = self.partial.get_mut(&r.index) else {
            return;
        };
        if partial.exclusive {
            // Its blocks must come from one peer: start the piece over.
            self.partial.remove(&r.index);
            return;
        }
        let Some(state) = partial.blocks.get_mut((r.begin / BLOCK) as usize) else {
            return;
        };
        if let Block::Requested(n) = state {
            *state = if *n > 1 {
                Block::Requested(*n - 1)
            } else {
                Block::Free
            };
        }
        if partial.received == 0 && partial.blocks.iter().all(|b| *b == Block::Free) {
            self.partial.remove(&r.index);
        }
    }

    /// The piece's hash was checked: on success it is ours, otherwise every block
    /// must be fetched again.
    pub fn on_verified(&mut self, piece: u32, ok: bool) {
        self.partial.remove(&piece);
        if ok {
            self.have.set(piece);
            self.suspect.remove(&piece);
        }
        self.check_invariant();
    }

    fn check_invariant(&self) {
        if cfg!(debug_assertions) {
            for piece in self.partial.keys() {
                debug_assert!(!self.have.get(*piece), "piece {piece} both had and in progress");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picker(pieces: u32) -> Picker {
        Picker::new(
            2 * u64::from(BLOCK),
            u64::from(pieces) * 2 * u64::from(BLOCK) - 100,
            Bitfield::new(pieces),
            7,
        )
    }

    #[test]
    fn rarest_pieces_are_picked_first() {
        let mut p = picker(10);
        let everyone = Bitfield::full(10);
        for _ in 0..3 {
            p.peer_has_bitfield(&everyone);
        }
        // Pieces 8 and 9 are held by one more peer... except piece 3, held by the fewest.
        p.peer_gone(&Bitfield::from_bytes(&[0x10, 0x00], 10));
        let mut out = Vec::new();
        p.pick(&everyone, None, &[], 2, &mut out);
        assert_eq!(
            out.iter().map(|b| b.index).collect::<Vec<_>>(),
            vec![3, 3],
            "both blocks of the rarest piece"
        );
    }

    #[test]
    fn partial_pieces_are_finished_first_and_lengths_are_exact() {
        let mut p = picker(3);
        let all = Bitfield::full(3);
        let mut first = Vec::new();
        p.pick(&all, None, &[], 1, &mut first);
        let mut next = Vec::new();
        p.pick(&all, None, &first, 1, &mut next);
        assert_eq!(next[0].index, first[0].index, "the started piece continues");
        assert_ne!(next[0].begin, first[0].begin);
        let asked: Vec<_> = first.iter().chain(&next).copied().collect();
        let mut rest = Vec::new();
        p.pick(&all, None, &asked, 100, &mut rest);
        let last = rest
            .iter()
            .find(|b| b.index == 2 && b.begin == BLOCK)
            .expect("last block");
        assert_eq!(last.length, BLOCK - 100, "the torrent's last block is short");
        assert_eq!(first.len() + next.len() + rest.len(), 6);
    }

    #[test]
    fn blocks_complete_pieces_and_lost_requests_return_to_the_pool() {
        let mut p = picker(2);
        let all = Bitfield::full(2);
        let mut blocks = Vec::new();
        p.pick(&all, None, &[], 4, &mut blocks);
        assert!(p.in_endgame());
        p.on_request_lost(blocks[0]);
        assert!(!p.in_endgame(), "a lost request frees its block");
        let mut again = Vec::new();
        p.pick(&all, None, &blocks[1..], 4, &mut again);
        assert_eq!(again, vec![blocks[0]]);
        let piece = blocks[0].index;
        let same_piece: Vec<_> = blocks.iter().filter(|b| b.index == piece).copied().collect();
        assert_eq!(p.on_block(same_piece[0]), Received::Stored);
        assert_eq!(p.on_block(same_piece[0]), Received::Unwanted, "a duplicate copy");
        assert_eq!(p.on_block(same_piece[1]), Received::PieceComplete);
        p.on_verified(piece, false);
        assert!(!p.have().get(piece));
        let mut refetch = Vec::new();
        p.pick(&all, None, &[], 10, &mut refetch);
        assert_eq!(
            refetch.iter().filter(|b| b.index == piece).count(),
            2,
            "a failed piece is fetched again"
        );
    }

    #[test]
    fn endgame_requests_a_block_from_a_second_peer_only() {
        let mut p = picker(1);
        let all = Bitfield::full(1);
        let mut from_a = Vec::new();
        p.pick(&all, None, &[], 10, &mut from_a);
        assert_eq!(from_a.len(), 2);
        let mut from_b = Vec::new();
        p.pick(&all, None, &[], 10, &mut from_b);
        assert_eq!(from_b, from_a, "endgame: the same blocks from another peer");
        let mut from_c = Vec::new();
        p.pick(&all, None, &[], 10, &mut from_c);
        assert!(from_c.is_empty(), "at most two copies");
        let mut again_a = Vec::new();
        p.pick(&all, None, &from_a, 10, &mut again_a);
        assert!(again_a.is_empty(), "never twice from one peer");
    }

    #[test]
    fn suspect_pieces_go_whole_to_one_peer_and_restart_when_a_request_is_lost() {
        let mut p = Picker::new(4 * u64::from(BLOCK), 8 * u64::from(BLOCK), Bitfield::new(2), 3);
        let all = Bitfield::full(2);
        p.mark_suspect(0);
        p.mark_suspect(1);
        let mut a = Vec::new();
        p.pick(&all, None, &[], 1, &mut a);
        assert_eq!(a.len(), 4, "the whole piece despite max = 1");
        let mut b = Vec::new();
        p.pick(&all, None, &[], 10, &mut b);
        assert!(
            b.iter().all(|x| x.index != a[0].index),
            "never shared with another peer: {a:?} {b:?}"
        );
        assert_eq!(p.on_block(a[0]), Received::Stored);
        p.on_request_lost(a[1]);
        let mut c = Vec::new();
        p.pick(&all, None, &[], 10, &mut c);
        assert_eq!(c.len(), 4, "the piece starts over, whole: {c:?}");
        assert!(c.iter().all(|x| x.index == a[0].index));
    }

    #[test]
    fn allowed_fast_narrows_the_choice_and_unwanted_blocks_are_refused() {
        let mut p = picker(10);
        let all = Bitfield::full(10);
        let mut out = Vec::new();
        p.pick(&all, Some(&[7]), &[], 10, &mut out);
        assert!(out.iter().all(|b| b.index == 7) && out.len() == 2);
        let bogus = BlockRef {
            index: 1,
            begin: 5,
            length: BLOCK,
        };
        assert_eq!(p.on_block(bogus), Received::Unwanted);
        assert_eq!(
            p.on_block(BlockRef {
                index: 99,
                begin: 0,
                length: BLOCK
            }),
            Received::Unwanted
        );
    }
}
