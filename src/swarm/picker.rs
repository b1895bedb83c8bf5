//! The piece picker: which blocks to request from which peer.
//!
//! - Partial pieces first, so pieces complete (and can be verified and shared) soon.
//! - Otherwise rarest first (see [`PieceOrder`]): among the pieces a peer has and we
//!   lack, those the fewest connected peers have, in random order within a rarity.
//!   Seeds are counted apart (they add the same to every piece), so a `have all`
//!   costs O(1), however many pieces the torrent has.
//! - Endgame: once every missing block is requested, a block requested from one
//!   peer may be requested from a second too; the first copy wins and the other
//!   holder is returned so the caller can cancel it there.
//! - Suspect pieces (they failed their hash check with blocks from several peers)
//!   are fetched whole from one peer next time, so a second failure has a single
//!   culprit; their blocks are never split between peers, in endgame or otherwise.
//!
//! Every requested block records which peer(s) hold the request, so a block can be
//! told apart as wanted, a duplicate, or never asked of its sender, and endgame
//! cancels go to exactly the other holder without scanning peers.
//!
//! Invariant (checked in debug builds): every piece is in exactly one of *had*,
//! *in progress* (some block requested or received) or *not started*; the counters
//! of free blocks and unstarted pieces match the blocks.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::bitfield::Bitfield;
use super::order::PieceOrder;
use super::PeerHas;
use crate::random::Xorshift;
use crate::wire::{BlockRef, BLOCK};

/// A peer, as the caller numbers them.
pub type PeerKey = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Free,
    /// Requested from `by`, and in endgame perhaps from `also`.
    Requested {
        by: PeerKey,
        also: Option<PeerKey>,
    },
    Received,
}

#[derive(Debug)]
struct Partial {
    blocks: Vec<Block>,
    received: u32,
    free: u32,
    /// A suspect piece: all its blocks go to this one peer, the one that started it.
    owner: Option<PeerKey>,
}

/// What a received block means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Not wanted (a second copy, a piece we have or restarted): drop it.
    Unwanted,
    /// Stored; the piece is still incomplete. `cancel`: the other peer that was asked.
    Stored { cancel: Option<PeerKey> },
    /// Stored, and it was the piece's last block: verify the piece now.
    PieceComplete { cancel: Option<PeerKey> },
}

/// Block bookkeeping for one torrent.
#[derive(Debug)]
pub struct Picker {
    piece_length: u64,
    total_length: u64,
    have: Bitfield,
    /// Bytes of the pieces we do not have.
    left: u64,
    /// Peers with a bitfield that have each piece (seeds are counted in `seeds`).
    availability: Vec<u16>,
    seeds: u32,
    order: PieceOrder,
    partial: BTreeMap<u32, Partial>,
    /// Partial pieces with a free block: where picking starts.
    with_free: BTreeSet<u32>,
    /// Free blocks summed over partial pieces.
    free_blocks: u64,
    suspect: HashSet<u32>,
    /// Exclusive pieces that lost a request and start over: the caller drops what
    /// it kept for them (the hash in progress).
    restarted: Vec<u32>,
}

impl Picker {
    pub fn new(piece_length: u64, total_length: u64, have: Bitfield, seed: u64) -> Picker {
        let count = have.len();
        let mut rng = Xorshift::new(seed);
        let order = PieceOrder::new(count, |p| !have.get(p), &mut rng);
        let mut picker = Picker {
            piece_length,
            total_length,
            left: 0,
            availability: vec![0; count as usize],
            seeds: 0,
            order,
            partial: BTreeMap::new(),
            with_free: BTreeSet::new(),
            free_blocks: 0,
            suspect: HashSet::new(),
            restarted: Vec::new(),
            have,
        };
        picker.left = (0..count)
            .filter(|&p| !picker.have.get(p))
            .map(|p| u64::from(picker.piece_size(p)))
            .sum();
        picker
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    /// Bytes still missing (O(1)).
    pub fn left(&self) -> u64 {
        self.left
    }

    pub fn piece_count(&self) -> u32 {
        self.have.len()
    }

    pub fn piece_size(&self, piece: u32) -> u32 {
        let start = u64::from(piece) * self.piece_length;
        self.piece_length.min(self.total_length - start) as u32
    }

    /// The size of `piece`, or `None` past the end.
    pub fn piece_size_checked(&self, piece: u32) -> Option<u32> {
        (piece < self.piece_count()).then(|| self.piece_size(piece))
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

    /// The block index of `r` if it is exactly one of our blocks.
    fn block_index(&self, r: BlockRef) -> Option<usize> {
        if r.index >= self.piece_count() || r.begin % BLOCK != 0 {
            return None;
        }
        let block = (r.begin / BLOCK) as usize;
        (block < self.block_count(r.index) && self.block_ref(r.index, block) == r).then_some(block)
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

    /// The pieces in progress.
    pub fn partial_pieces(&self) -> Vec<u32> {
        self.partial.keys().copied().collect()
    }

    /// Exclusive pieces that started over since the last call.
    pub fn take_restarted(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.restarted)
    }

    // ------------------------------------------------------------ availability

    /// A peer announced what it has (bitfield or have-all): O(pieces it has) for a
    /// bitfield, O(1) for a seed.
    pub fn peer_has_all_of(&mut self, has: &PeerHas) {
        match has {
            PeerHas::All => self.seeds += 1,
            PeerHas::Bits(bits) => {
                for piece in bits.iter_ones() {
                    self.peer_has(piece);
                }
            }
            PeerHas::Unchecked { .. } => {}
        }
    }

    /// The reverse of [`peer_has_all_of`](Self::peer_has_all_of) (the peer left, or
    /// its announcement is replaced).
    pub fn peer_gone(&mut self, has: &PeerHas) {
        match has {
            PeerHas::All => self.seeds = self.seeds.saturating_sub(1),
            PeerHas::Bits(bits) => {
                for piece in bits.iter_ones() {
                    let count = self.availability[piece as usize];
                    if count > 0 {
                        self.order.decrement(piece, count);
                        self.availability[piece as usize] = count - 1;
                    }
                }
            }
            PeerHas::Unchecked { .. } => {}
        }
    }

    /// A `have` from a peer with a bitfield.
    pub fn peer_has(&mut self, piece: u32) {
        if let Some(&count) = self.availability.get(piece as usize) {
            if count < u16::MAX {
                self.order.increment(piece, count);
                self.availability[piece as usize] = count + 1;
            }
        }
    }

    // ------------------------------------------------------------ picking

    /// Picks up to `max` blocks for peer `peer`, which has `has`; `allowed` narrows the
    /// choice to some pieces (the allowed-fast set while choked). A block is never
    /// asked of the same peer twice: the picker knows who holds each request.
    pub fn pick(
        &mut self,
        peer: PeerKey,
        has: &PeerHas,
        allowed: Option<&[u32]>,
        max: usize,
        out: &mut Vec<BlockRef>,
    ) {
        let start = out.len();
        let usable = |picker: &Picker, piece: u32| {
            has.get(piece) && !picker.have.get(piece) && allowed.is_none_or(|a| a.contains(&piece))
        };
        // 1. Free blocks of pieces in progress (a suspect one only for its owner).
        let mut cursor = 0u32;
        while out.len() - start < max {
            let Some(&piece) = self.with_free.range(cursor..).next() else {
                break;
            };
            cursor = piece + 1;
            let mine = self.partial[&piece].owner.is_none_or(|o| o == peer);
            if mine && usable(self, piece) {
                self.take_free(piece, peer, max - (out.len() - start), out);
            }
        }
        // 2. New pieces, rarest first.
        while out.len() - start < max {
            let next = self
                .order
                .iter()
                .find(|&p| !self.partial.contains_key(&p) && usable(self, p));
            let Some(piece) = next else { break };
            let blocks = self.block_count(piece);
            // A suspect piece is reserved for this one peer, whole, within its pipeline.
            let owner = self.suspect.contains(&piece).then_some(peer);
            self.partial.insert(
                piece,
                Partial {
                    blocks: vec![Block::Free; blocks],
                    received: 0,
                    free: blocks as u32,
                    owner,
                },
            );
            self.free_blocks += blocks as u64;
            self.with_free.insert(piece);
            self.take_free(piece, peer, max - (out.len() - start), out);
        }
        // 3. Endgame: nothing free is left; ask for blocks another peer is fetching.
        if out.len() - start < max && self.all_requested() {
            let pieces: Vec<u32> = self
                .partial
                .iter()
                .filter(|(p, partial)| partial.owner.is_none() && usable(self, **p))
                .map(|(p, _)| *p)
                .collect();
            'pieces: for piece in pieces {
                for block in 0..self.partial[&piece].blocks.len() {
                    if out.len() - start >= max {
                        break 'pieces;
                    }
                    let r = self.block_ref(piece, block);
                    let state = &mut self.partial.get_mut(&piece).expect("listed").blocks[block];
                    if let Block::Requested {
                        by,
                        also: also @ None,
                    } = state
                    {
                        if *by != peer {
                            *also = Some(peer);
                            out.push(r);
                        }
                    }
                }
            }
        }
        self.check_invariant();
    }

    fn take_free(&mut self, piece: u32, peer: PeerKey, max: usize, out: &mut Vec<BlockRef>) {
        let mut taken = 0;
        let count = self.partial[&piece].blocks.len();
        for block in 0..count {
            if taken >= max {
                break;
            }
            let r = self.block_ref(piece, block);
            let partial = self.partial.get_mut(&piece).expect("in progress");
            if partial.blocks[block] == Block::Free {
                partial.blocks[block] = Block::Requested { by: peer, also: None };
                partial.free -= 1;
                self.free_blocks -= 1;
                taken += 1;
                out.push(r);
            }
        }
        if self.partial[&piece].free == 0 {
            self.with_free.remove(&piece);
        }
    }

    /// True when no missing block is free: every one is requested or received.
    pub fn all_requested(&self) -> bool {
        self.order.len() == self.partial.len() && self.free_blocks == 0
    }

    /// Whether endgame is on (a block may then be outstanding at two peers).
    pub fn in_endgame(&self) -> bool {
        self.all_requested() && !self.is_complete()
    }

    // ------------------------------------------------------------ results

    /// Whether a block is still wanted (to be checked *before* writing it, so a
    /// piece we have is never overwritten).
    pub fn wants(&self, r: BlockRef) -> bool {
        let Some(block) = self.block_index(r) else {
            return false;
        };
        self.partial
            .get(&r.index)
            .is_some_and(|p| p.blocks[block] != Block::Received)
    }

    /// A block from `from` was written: book it.
    pub fn on_block(&mut self, r: BlockRef, from: PeerKey) -> Received {
        let Some(block) = self.block_index(r) else {
            return Received::Unwanted;
        };
        let Some(partial) = self.partial.get_mut(&r.index) else {
            return Received::Unwanted;
        };
        let cancel = match partial.blocks[block] {
            Block::Received => return Received::Unwanted,
            Block::Free => {
                partial.free -= 1;
                self.free_blocks -= 1;
                None
            }
            Block::Requested { by, also } => {
                if by == from {
                    also
                } else {
                    Some(by)
                }
            }
        };
        partial.blocks[block] = Block::Received;
        partial.received += 1;
        let complete = partial.received as usize == partial.blocks.len();
        if partial.free == 0 {
            self.with_free.remove(&r.index);
        }
        if complete {
            Received::PieceComplete { cancel }
        } else {
            Received::Stored { cancel }
        }
    }

    /// `from` will not deliver `r` (timeout, reject, choke, disconnect, cancel): the
    /// block goes back to the pool unless another peer still has it requested.
    pub fn on_request_lost(&mut self, r: BlockRef, from: PeerKey) {
        let Some(block) = self.block_index(r) else { return };
        let Some(partial) = self.partial.get_mut(&r.index) else {
            return;
        };
        let state = &mut partial.blocks[block];
        let Block::Requested { by, also } = *state else {
            return;
        };
        if by != from && also != Some(from) {
            return; // not this peer's request
        }
        if partial.owner.is_some() {
            // Its blocks must come from one peer: start the piece over.
            let partial = self.partial.remove(&r.index).expect("present");
            self.free_blocks -= u64::from(partial.free);
            self.with_free.remove(&r.index);
            self.restarted.push(r.index);
            return;
        }
        *state = match (by == from, also) {
            (true, Some(other)) => Block::Requested {
                by: other,
                also: None,
            },
            (false, _) => Block::Requested { by, also: None },
            (true, None) => {
                partial.free += 1;
                self.free_blocks += 1;
                self.with_free.insert(r.index);
                Block::Free
            }
        };
        // Nothing of it requested or received any more: it is not started after all.
        if partial.received == 0 && partial.free as usize == partial.blocks.len() {
            let free = u64::from(partial.free);
            self.partial.remove(&r.index);
            self.free_blocks -= free;
            self.with_free.remove(&r.index);
        }
    }

    /// The piece's hash was checked: on success it is ours, otherwise every block
    /// must be fetched again.
    pub fn on_verified(&mut self, piece: u32, ok: bool) {
        if let Some(partial) = self.partial.remove(&piece) {
            self.free_blocks -= u64::from(partial.free);
        }
        self.with_free.remove(&piece);
        if ok && self.have.set(piece) {
            self.suspect.remove(&piece);
            self.left -= u64::from(self.piece_size(piece));
            self.order.remove(piece, self.availability[piece as usize]);
        }
        self.check_invariant();
    }

    fn check_invariant(&self) {
        if cfg!(debug_assertions) {
            let mut free = 0;
            for (piece, partial) in &self.partial {
                debug_assert!(!self.have.get(*piece), "piece {piece} both had and in progress");
                let counted = partial.blocks.iter().filter(|b| **b == Block::Free).count();
                debug_assert_eq!(counted as u32, partial.free, "piece {piece}");
                free += counted as u64;
            }
            debug_assert_eq!(free, self.free_blocks);
            debug_assert_eq!(self.order.len() as u32, self.have.len() - self.have.count());
        }
    }
}

#[cfg(test)]
mod tests;
