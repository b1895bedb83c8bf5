//! Handle ids: a slot index and a generation packed into one mio `Token`.
//!
//! Components never hold a reference to a handle, only a `HandleId`. The index
//! says which slot of the table; the generation says which *life* of that slot.
//! `slab` reuses the most recently freed slot first, so an id kept after its
//! handle closed would otherwise name the next handle in that slot (the ABA
//! problem). The table bumps a slot's generation every time it frees the slot,
//! so an old id simply stops matching.

use std::fmt;

use mio::Token;

/// Bits of the token that hold the slot index (the low half).
const INDEX_BITS: u32 = 32;
/// Mask selecting the slot index from a packed token.
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

// The packing needs a 64-bit `usize`; refuse to build where it would truncate.
const _: () = assert!(usize::BITS >= 64, "bitloop packs handle ids into 64-bit tokens");

/// The id of one handle in the reactor: small, `Copy`, and safe to keep after
/// the handle is gone (it then names nothing).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HandleId {
    index: u32,
    generation: u32,
}

impl HandleId {
    pub(crate) fn new(index: u32, generation: u32) -> HandleId {
        HandleId { index, generation }
    }

    /// The slot this id points at.
    pub fn index(self) -> u32 {
        self.index
    }

    /// Which life of the slot this id belongs to.
    pub fn generation(self) -> u32 {
        self.generation
    }

    /// Packs the id into a mio token: generation in the high 32 bits, index in the low 32.
    pub fn to_token(self) -> Token {
        Token((u64::from(self.generation) << INDEX_BITS | u64::from(self.index)) as usize)
    }

    /// Unpacks a token made by [`HandleId::to_token`].
    pub fn from_token(token: Token) -> HandleId {
        let raw = token.0 as u64;
        HandleId {
            index: (raw & INDEX_MASK) as u32,
            generation: (raw >> INDEX_BITS) as u32,
        }
    }
}

impl fmt::Debug for HandleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.index, self.generation)
    }
}

impl fmt::Display for HandleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_packing_round_trips_at_the_edges() {
        for &index in &[0, 1, 0xffff, u32::MAX - 1, u32::MAX] {
            for &generation in &[0, 1, 0x8000_0000, u32::MAX] {
                let id = HandleId::new(index, generation);
                assert_eq!(HandleId::from_token(id.to_token()), id);
            }
        }
    }

    #[test]
    fn index_and_generation_never_overlap() {
        // A token differing only in generation must differ as a token, and the
        // index must be unaffected by any generation (the daemon bug the
        // contract cites packed two fields with overlapping masks).
        let a = HandleId::new(7, 1).to_token();
        let b = HandleId::new(7, 2).to_token();
        assert_ne!(a, b);
        assert_eq!(HandleId::from_token(b).index(), 7);
        assert_eq!(
            HandleId::from_token(HandleId::new(u32::MAX, 0).to_token()).generation(),
            0
        );
        assert_eq!(
            HandleId::from_token(HandleId::new(0, u32::MAX).to_token()).index(),
            0
        );
    }

    proptest::proptest! {
        #[test]
        fn token_packing_round_trips(index: u32, generation: u32) {
            let id = HandleId::new(index, generation);
            proptest::prop_assert_eq!(HandleId::from_token(id.to_token()), id);
        }

        #[test]
        fn distinct_ids_make_distinct_tokens(a: (u32, u32), b: (u32, u32)) {
            proptest::prop_assume!(a != b);
            proptest::prop_assert_ne!(HandleId::new(a.0, a.1).to_token(), HandleId::new(b.0, b.1).to_token());
        }
    }
}
