//! The rarest-first order of the pieces we still lack, kept sorted as availability
//! changes, so picking never scans every piece.
//!
//! The pieces sit in one vector grouped into buckets by availability (how many
//! connected peers have the piece): first every piece no peer has, then those one
//! peer has, and so on. Moving a piece to the next bucket up or down is one swap
//! with the bucket's edge and one boundary move, so a `have` costs O(1) and a
//! peer's bitfield O(pieces it has). Within a bucket the order is random (shuffled
//! once, then perturbed by the swaps), which is what spreads peers that start
//! together over different pieces. libtorrent's piece picker keeps the same shape.

use crate::random::Xorshift;

const NOT_HERE: u32 = u32::MAX;

/// Pieces we lack, rarest first.
#[derive(Debug)]
pub struct PieceOrder {
    order: Vec<u32>,
    /// Piece → its index in `order`, or `NOT_HERE` once we have it.
    position: Vec<u32>,
    /// `ends[a]`: one past the last index of the bucket of availability `a`. The
    /// last entry always equals `order.len()`.
    ends: Vec<u32>,
}

impl PieceOrder {
    /// Every piece for which `lacking` holds, at availability 0, in random order.
    pub fn new(piece_count: u32, lacking: impl Fn(u32) -> bool, rng: &mut Xorshift) -> PieceOrder {
        let mut order: Vec<u32> = (0..piece_count).filter(|&p| lacking(p)).collect();
        for i in (1..order.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        let mut position = vec![NOT_HERE; piece_count as usize];
        for (at, &piece) in order.iter().enumerate() {
            position[piece as usize] = at as u32;
        }
        let ends = vec![order.len() as u32];
        PieceOrder {
            order,
            position,
            ends,
        }
    }

    /// The pieces in rarest-first order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.order.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn contains(&self, piece: u32) -> bool {
        self.position.get(piece as usize).is_some_and(|&p| p != NOT_HERE)
    }

    fn swap(&mut self, a: u32, b: u32) {
        let (pa, pb) = (self.order[a as usize], self.order[b as usize]);
        self.order.swap(a as usize, b as usize);
        self.position[pa as usize] = b;
        self.position[pb as usize] = a;
    }

    /// `piece`'s availability went from `from` to `from + 1`.
    pub fn increment(&mut self, piece: u32, from: u16) {
        if !self.contains(piece) {
            return;
        }
        let bucket = from as usize;
        if bucket + 1 >= self.ends.len() {
            let len = self.order.len() as u32;
            self.ends.resize(bucket + 2, len);
        }
        // Swap to the bucket's last slot, then move the boundary below it: the
        // piece is now the first of the next bucket.
        let last = self.ends[bucket] - 1;
        self.swap(self.position[piece as usize], last);
        self.ends[bucket] -= 1;
    }

    /// `piece`'s availability went from `from` to `from - 1` (`from` > 0).
    pub fn decrement(&mut self, piece: u32, from: u16) {
        if !self.contains(piece) || from == 0 {
            return;
        }
        let below = from as usize - 1;
        // Swap to the bucket's first slot, then move the boundary above it.
        let first = self.ends[below];
        self.swap(self.position[piece as usize], first);
        self.ends[below] += 1;
    }

    /// We have `piece` now (its availability is `availability`): it leaves the order.
    pub fn remove(&mut self, piece: u32, availability: u16) {
        if !self.contains(piece) {
            return;
        }
        // Walk it up through every higher bucket's last slot to the very end.
        for bucket in availability as usize..self.ends.len() {
            let last = self.ends[bucket] - 1;
            self.swap(self.position[piece as usize], last);
            self.ends[bucket] -= 1;
        }
        self.order.pop();
        self.position[piece as usize] = NOT_HERE;
        // Buckets above the highest availability in use are empty; keep one end.
        while self.ends.len() > 1 && self.ends[self.ends.len() - 2] == self.order.len() as u32 {
            self.ends.pop();
        }
    }

    /// Checks the structure against `availability` (tests and debug builds).
    pub fn check(&self, availability: &[u16]) {
        assert_eq!(*self.ends.last().expect("one end"), self.order.len() as u32);
        let mut start = 0;
        for (bucket, &end) in self.ends.iter().enumerate() {
            for at in start..end {
                let piece = self.order[at as usize];
                assert_eq!(self.position[piece as usize], at);
                if bucket + 1 < self.ends.len() {
                    assert_eq!(availability[piece as usize] as usize, bucket, "piece {piece}");
                } else {
                    assert!(availability[piece as usize] as usize >= bucket, "piece {piece}");
                }
            }
            start = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_availability_through_random_changes() {
        let mut rng = Xorshift::new(9);
        let mut order = PieceOrder::new(200, |p| p % 7 != 0, &mut rng);
        let mut availability = vec![0u16; 200];
        let mut had: Vec<bool> = (0..200).map(|p| p % 7 == 0).collect();
        for step in 0..20_000 {
            let piece = rng.below(200) as u32;
            match rng.below(10) {
                0 if !had[piece as usize] && step > 5_000 => {
                    order.remove(piece, availability[piece as usize]);
                    had[piece as usize] = true;
                }
                1..=5 => {
                    order.increment(piece, availability[piece as usize]);
                    availability[piece as usize] += 1;
                }
                _ if availability[piece as usize] > 0 => {
                    order.decrement(piece, availability[piece as usize]);
                    availability[piece as usize] -= 1;
                }
                _ => {}
            }
            order.check(&availability);
        }
        let listed: Vec<u32> = order.iter().collect();
        assert_eq!(listed.len(), had.iter().filter(|h| !**h).count());
        let mut last = 0;
        for piece in listed {
            assert!(!had[piece as usize]);
            assert!(availability[piece as usize] >= last, "rarest first");
            last = availability[piece as usize];
        }
    }
}
