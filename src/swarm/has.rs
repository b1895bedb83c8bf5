//! What a peer has told us it has: nothing yet, everything (a seed), a bitfield,
//! or, before we know the torrent's metadata, raw bits to check once we do.
//!
//! A seed is represented without a bitfield: on a torrent of a million pieces a
//! `have all` then costs neither 125 KB per peer nor a pass over every piece.

use super::Bitfield;
use crate::metainfo::MAX_PIECES;

/// Most bytes of unchecked bits kept for a peer before the metadata is known.
pub const MAX_UNCHECKED_BYTES: usize = MAX_PIECES.div_ceil(8);

/// A peer's pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerHas {
    /// Every piece (`have all`, or a full bitfield).
    All,
    /// Some pieces (maybe none).
    Bits(Bitfield),
    /// Bits received before the metadata: size unknown, checked when it arrives.
    Unchecked { bytes: Vec<u8>, all: bool },
}

impl PeerHas {
    /// Nothing yet, for a torrent of `piece_count` pieces (`None`: metadata unknown).
    pub fn nothing(piece_count: Option<u32>) -> PeerHas {
        match piece_count {
            Some(count) => PeerHas::Bits(Bitfield::new(count)),
            None => PeerHas::Unchecked {
                bytes: Vec::new(),
                all: false,
            },
        }
    }

    /// From a checked bitfield: a full one becomes `All`.
    pub fn from_bits(bits: Bitfield) -> PeerHas {
        if bits.is_full() {
            PeerHas::All
        } else {
            PeerHas::Bits(bits)
        }
    }

    pub fn get(&self, piece: u32) -> bool {
        match self {
            PeerHas::All => true,
            PeerHas::Bits(bits) => bits.get(piece),
            PeerHas::Unchecked { .. } => false,
        }
    }

    /// Records a `have`. Returns whether the piece was new. A bitfield that becomes
    /// full stays a bitfield (the picker counted it piece by piece).
    pub fn set(&mut self, piece: u32) -> bool {
        match self {
            PeerHas::All => false,
            PeerHas::Bits(bits) => bits.set(piece),
            PeerHas::Unchecked { bytes, all } => {
                let at = piece as usize / 8;
                if *all || at >= MAX_UNCHECKED_BYTES {
                    return false;
                }
                if bytes.len() <= at {
                    bytes.resize(at + 1, 0);
                }
                let mask = 0x80 >> (piece % 8);
                let new = bytes[at] & mask == 0;
                bytes[at] |= mask;
                new
            }
        }
    }

    pub fn is_seed(&self) -> bool {
        match self {
            PeerHas::All => true,
            PeerHas::Bits(bits) => bits.is_full(),
            PeerHas::Unchecked { all, .. } => *all,
        }
    }

    /// Pieces held, out of `piece_count`.
    pub fn count(&self, piece_count: u32) -> u32 {
        match self {
            PeerHas::All => piece_count,
            PeerHas::Bits(bits) => bits.count(),
            PeerHas::Unchecked { .. } => 0,
        }
    }

    /// Pieces it has that `ours` lacks.
    pub fn count_missing_from(&self, ours: &Bitfield) -> u32 {
        match self {
            PeerHas::All => ours.len() - ours.count(),
            PeerHas::Bits(bits) => bits
                .as_bytes()
                .iter()
                .zip(ours.as_bytes())
                .map(|(theirs, mine)| (theirs & !mine).count_ones())
                .sum(),
            PeerHas::Unchecked { .. } => 0,
        }
    }

    /// The metadata arrived: unchecked bits become a checked bitfield, or `None` if
    /// they do not fit the torrent (the peer lied about its size).
    pub fn check(self, piece_count: u32) -> Option<PeerHas> {
        match self {
            PeerHas::Unchecked { all: true, .. } => Some(PeerHas::All),
            PeerHas::Unchecked { mut bytes, .. } => {
                let size = (piece_count as usize).div_ceil(8);
                if bytes.len() > size {
                    return None;
                }
                bytes.resize(size, 0);
                Bitfield::from_wire(&bytes, piece_count).map(PeerHas::from_bits)
            }
            checked => Some(checked),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_need_no_bitfield_and_unchecked_bits_are_checked_later() {
        let mut ours = Bitfield::new(10);
        ours.set(1);
        assert_eq!(PeerHas::All.count_missing_from(&ours), 9);
        assert!(PeerHas::from_bits(Bitfield::full(10)).is_seed());
        let mut early = PeerHas::nothing(None);
        assert!(early.set(3) && !early.set(3));
        assert!(!early.get(3), "nothing is usable before the metadata");
        let checked = early.check(10).unwrap();
        assert!(checked.get(3) && !checked.get(2));
        let mut liar = PeerHas::nothing(None);
        liar.set(40);
        assert_eq!(liar.check(10), None, "a have past the end");
        let mut has = PeerHas::nothing(Some(10));
        has.set(1);
        has.set(2);
        assert_eq!(has.count_missing_from(&ours), 1);
    }
}
