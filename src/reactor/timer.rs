//! Timers: the per-handle timer state and the loop's queue of deadlines.
//!
//! The queue is a binary heap ordered by `(deadline, seq)`. `seq` grows with every
//! start, so timers with equal deadlines fire in the order they were started
//! (FIFO, as in libuv). Stopping or restarting a timer does not search the heap:
//! the handle remembers the `seq` of its one live entry and older entries are
//! recognised as superseded when they surface. So that restarts cannot make the
//! heap grow without bound, it is compacted whenever superseded entries
//! outnumber live ones.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::id::HandleId;

/// A timer handle's settings.
#[derive(Debug, Default)]
pub(crate) struct TimerState {
    /// Set by `timer_start`; `None` until then (`timer_again` needs it).
    pub(crate) repeat: Option<Duration>,
    pub(crate) started: bool,
}

/// One entry of the deadline queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerEntry {
    pub(crate) deadline: Instant,
    pub(crate) seq: u64,
    pub(crate) id: HandleId,
}

impl Ord for TimerEntry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap and we want the earliest first.
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Headroom of superseded entries tolerated before a compaction.
const COMPACT_SLACK: usize = 64;

/// The loop's deadline queue.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<TimerEntry>,
    next_seq: u64,
}

impl TimerQueue {
    /// Adds an entry and returns its sequence number (never 0).
    pub(crate) fn push(&mut self, deadline: Instant, id: HandleId) -> u64 {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.heap.push(TimerEntry { deadline, seq, id });
        seq
    }

    /// Adds an entry with a given sequence number; used by tests to replay an old entry.
    pub(crate) fn push_raw(&mut self, entry: TimerEntry) {
        self.heap.push(entry);
    }

    /// The earliest deadline in the queue (possibly of a superseded entry, which only
    /// makes the loop wake early and discard it).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|entry| entry.deadline)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<TimerEntry> {
        if self.heap.peek()?.deadline <= now {
            self.heap.pop()
        } else {
            None
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when superseded entries outnumber the `live` ones by enough to compact.
    pub(crate) fn needs_compaction(&self, live: usize) -> bool {
        self.heap.len() > 2 * live + COMPACT_SLACK
    }

    /// Keeps only entries for which `is_live` holds; returns how many were dropped.
    pub(crate) fn retain(&mut self, mut is_live: impl FnMut(&TimerEntry) -> bool) -> usize {
        let before = self.heap.len();
        self.heap.retain(|entry| is_live(entry));
        before - self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_deadlines_pop_in_start_order() {
        let mut queue = TimerQueue::default();
        let t = Instant::now();
        let ids: Vec<_> = (0..10).map(|i| HandleId::new(i, 0)).collect();
        for id in ids.iter().rev() {
            queue.push(t, *id);
        }
        let popped: Vec<_> = std::iter::from_fn(|| queue.pop_due(t)).map(|e| e.id).collect();
        let expected: Vec<_> = ids.iter().rev().copied().collect();
        assert_eq!(popped, expected);
    }

    #[test]
    fn earlier_deadline_first_and_future_entries_stay() {
        let mut queue = TimerQueue::default();
        let t = Instant::now();
        queue.push(t + Duration::from_millis(5), HandleId::new(1, 0));
        queue.push(t + Duration::from_millis(1), HandleId::new(2, 0));
        queue.push(t + Duration::from_millis(9), HandleId::new(3, 0));
        let now = t + Duration::from_millis(5);
        assert_eq!(queue.pop_due(now).unwrap().id, HandleId::new(2, 0));
        assert_eq!(queue.pop_due(now).unwrap().id, HandleId::new(1, 0));
        assert!(queue.pop_due(now).is_none());
        assert_eq!(queue.len(), 1);
    }
}
