//! Generators for the arbitrary-input tests: a seeded generator, byte mutations,
//! chunkings, and a runner that bounds a test's time.

use std::time::{Duration, Instant};

use bitloop::random::Xorshift;

use crate::stream::Chunking;

/// How long one test may take in a debug build on a loaded machine; a parser that
/// suddenly needs more is a finding (quadratic work), not noise.
pub const TIME_BOUND: Duration = Duration::from_secs(30);

/// A seeded generator with the helpers the tests need.
pub struct Rng(Xorshift);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(Xorshift::new(seed))
    }

    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    pub fn u32(&mut self) -> u32 {
        self.0.next_u64() as u32
    }

    pub fn u16(&mut self) -> u16 {
        self.0.next_u64() as u16
    }

    pub fn u8(&mut self) -> u8 {
        self.0.next_u64() as u8
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.u8()).collect()
    }

    /// Up to `max` random bytes, short lengths more likely.
    pub fn some_bytes(&mut self, max: usize) -> Vec<u8> {
        let top = self.below(max + 1);
        let len = self.below(top + 1);
        self.bytes(len)
    }

    /// A chunking: one read, one byte at a time, or random read sizes.
    pub fn chunking(&mut self) -> Chunking {
        match self.below(4) {
            0 => Chunking::whole(),
            1 => Chunking::new(vec![1]),
            _ => {
                let top = self.pick(&[3, 17, 200, 5000]);
                let sizes = (0..1 + self.below(8)).map(|_| 1 + self.below(top)).collect();
                Chunking::new(sizes)
            }
        }
    }
}

/// Values that sit on the edges of length checks.
const EDGES: &[u32] = &[
    0,
    1,
    2,
    5,
    9,
    13,
    17,
    18,
    19,
    255,
    16_393,
    16_394,
    65_536,
    65_537,
    0x7fff_ffff,
    u32::MAX,
];

/// Applies one to four random edits: bit flips, edge values, inserted, deleted,
/// duplicated or overwritten runs, truncation.
pub fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = bytes.len();
        let at = if len == 0 { 0 } else { rng.below(len) };
        match rng.below(8) {
            0 if len > 0 => bytes[at] ^= 1 << rng.below(8),
            1 if len > 0 => bytes[at] = rng.pick(&[0, 1, 0x7f, 0x80, 0xff, 19, b'\r', b'\n', b':', b'e']),
            2 if len >= 4 => {
                let at = rng.below(len - 3);
                bytes[at..at + 4].copy_from_slice(&rng.pick(EDGES).to_be_bytes());
            }
            3 => {
                let run = rng.some_bytes(16);
                bytes.splice(at..at, run);
            }
            4 if len > 0 => {
                let end = (at + 1 + rng.below(32)).min(len);
                bytes.drain(at..end);
            }
            5 if len > 0 => {
                let end = (at + 1 + rng.below(64)).min(len);
                let run = bytes[at..end].to_vec();
                let to = rng.below(len + 1);
                bytes.splice(to..to, run);
            }
            6 => bytes.truncate(at),
            _ if len > 0 => {
                let end = (at + 1 + rng.below(8)).min(len);
                for b in &mut bytes[at..end] {
                    *b = rng.u8();
                }
            }
            _ => bytes.push(rng.u8()),
        }
    }
}

/// Runs `case` `count` times on one seeded generator and fails if that takes
/// longer than [`TIME_BOUND`].
pub fn run_cases(name: &str, seed: u64, count: usize, mut case: impl FnMut(&mut Rng)) {
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    for _ in 0..count {
        case(&mut rng);
    }
    let took = started.elapsed();
    assert!(
        took < TIME_BOUND,
        "{name}: {count} cases took {took:?}, more than {TIME_BOUND:?}"
    );
}
