//! Per-peer deadlines in one heap, so the torrent's one timer is armed for the
//! earliest of them without looking at every peer.
//!
//! A peer has one "next deadline" (the earliest of its handshake timeout, silence
//! timeout, keep-alive and oldest request's timeout). Moving it *earlier* pushes an
//! entry; moving it later pushes nothing: the old entry fires, the peer is checked,
//! and its true next deadline is pushed then. Entries are `(deadline, key, serial)`;
//! one whose peer is gone (serial differs) or whose deadline is no longer the
//! peer's is skipped when it surfaces. The heap is rebuilt when stale entries
//! outnumber live peers, so it stays within a small multiple of the peer count.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::swarm::PeerKey;

/// A peer as the heap knows it: its slot and the serial of that slot's occupant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot {
    pub key: PeerKey,
    pub serial: u64,
}

/// Deadlines of many peers.
#[derive(Debug, Default)]
pub struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, Slot)>>,
}

impl Deadlines {
    /// `peer`'s deadline may have moved to `at`; `current` is what the peer has
    /// recorded as its next deadline, updated here when `at` is earlier.
    pub fn schedule(&mut self, slot: Slot, at: Instant, current: &mut Option<Instant>) {
        if current.is_none_or(|c| at < c) {
            *current = Some(at);
            self.heap.push(Reverse((at, slot)));
        }
    }

    /// The earliest entry (possibly stale: then the timer fires early, harmlessly).
    pub fn earliest(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the next entry due at `now`, if any.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Slot)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Drops stale entries when they outnumber live ones (more than twice the live
    /// peers plus slack). The heap keeps its capacity, so its memory stays at the
    /// most it ever needed instead of shrinking and growing again.
    pub fn compact(&mut self, live: usize, is_live: impl Fn(Slot, Instant) -> bool) {
        if self.heap.len() > 2 * live + 64 {
            self.heap.retain(|Reverse((at, slot))| is_live(*slot, *at));
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn clear(&mut self) {
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_earlier_deadlines_push_and_due_entries_come_out_in_order() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        let a = Slot { key: 1, serial: 1 };
        let b = Slot { key: 2, serial: 2 };
        let (mut next_a, mut next_b) = (None, None);
        d.schedule(a, t0 + Duration::from_secs(10), &mut next_a);
        d.schedule(a, t0 + Duration::from_secs(20), &mut next_a);
        assert_eq!(d.len(), 1, "a later deadline pushes nothing");
        d.schedule(a, t0 + Duration::from_secs(5), &mut next_a);
        d.schedule(b, t0 + Duration::from_secs(7), &mut next_b);
        assert_eq!(d.earliest(), Some(t0 + Duration::from_secs(5)));
        let due: Vec<_> = std::iter::from_fn(|| d.pop_due(t0 + Duration::from_secs(8))).collect();
        assert_eq!(
            due,
            vec![(t0 + Duration::from_secs(5), a), (t0 + Duration::from_secs(7), b)]
        );
        d.compact(0, |_, _| false);
        assert_eq!(d.len(), 1, "small heaps are left alone");
    }
}
