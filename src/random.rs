//! Randomness that needs no crate: a seed from std's randomly keyed hasher, and a
//! small xorshift generator for shuffles and tie-breaks. Nothing here is for secrets.

use std::hash::{BuildHasher, Hasher};

/// A random `u64` from std's per-process random hash keys.
pub fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

/// xorshift64: fast, deterministic for a given seed (tests pass fixed seeds).
#[derive(Clone, Copy, Debug)]
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Xorshift {
        Xorshift(seed | 1) // zero is the one state xorshift never leaves
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
