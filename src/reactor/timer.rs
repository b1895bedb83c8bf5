//! Timers: the per-handle timer state, the loop's queue of deadlines, the timers
//! phase of an iteration, and the `timer_*` methods of the reactor.
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
use std::fmt::Debug;
use std::io;
use std::time::{Duration, Instant};

use log::{debug, trace};

use super::id::HandleId;
use super::table::Resource;
use super::{Event, HandleState, Handler, Reactor, Result};

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

impl<O: Copy + Debug> Reactor<O> {
    // ---------------------------------------------------------------- timers phase

    pub(super) fn run_timers<H: Handler<O>>(&mut self, handler: &mut H) {
        // Collect every due entry first, then fire: a callback that starts a timer
        // with timeout 0 runs it on the next iteration, not in this one.
        let mut due = std::mem::take(&mut self.due);
        while let Some(entry) = self.timers.pop_due(self.now) {
            due.push(entry);
        }
        trace!("phase: timers ({} due)", due.len());
        for entry in due.drain(..) {
            if !self.timer_entry_is_current(&entry) {
                continue;
            }
            let handle = self.table.get_mut(entry.id).expect("checked current");
            handle.armed_seq = 0;
            self.counts.timers_armed -= 1;
            match &handle.resource {
                Resource::Timer(timer) => {
                    if let Some(repeat) = timer.repeat {
                        // Re-arm before the callback so that it can stop or restart it.
                        let deadline = self.now + repeat;
                        self.arm(entry.id, deadline);
                    }
                    self.deliver(handler, entry.id, Event::Timer);
                }
                Resource::Listener(_) => self.end_backoff(entry.id),
                Resource::Stream(stream) if stream.connecting => {
                    debug!("connect timeout on {}", entry.id);
                    let error = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                    self.deliver(handler, entry.id, Event::ConnectFailed(error));
                    self.close(entry.id);
                }
                _ => {}
            }
        }
        self.due = due;
    }

    /// Whether a popped entry still means something; counts it if not.
    fn timer_entry_is_current(&mut self, entry: &TimerEntry) -> bool {
        match self.table.get(entry.id) {
            Some(handle) if handle.state == HandleState::Open => {
                if handle.armed_seq == entry.seq {
                    true
                } else {
                    self.counts.superseded_timer_entries += 1;
                    false
                }
            }
            _ => {
                self.counts.stale_events += 1;
                trace!("stale timer entry for {} dropped", entry.id);
                false
            }
        }
    }

    /// Gives handle `id` a new deadline, superseding any previous one.
    pub(super) fn arm(&mut self, id: HandleId, deadline: Instant) {
        let seq = self.timers.push(deadline, id);
        let handle = self.table.get_mut(id).expect("arm needs a live handle");
        if handle.armed_seq == 0 {
            self.counts.timers_armed += 1;
        }
        handle.armed_seq = seq;
        if self.timers.needs_compaction(self.counts.timers_armed) {
            self.compact_timers();
        }
    }

    pub(super) fn disarm(&mut self, id: HandleId) {
        if let Some(handle) = self.table.get_mut(id) {
            if handle.armed_seq != 0 {
                handle.armed_seq = 0;
                self.counts.timers_armed -= 1;
            }
        }
    }

    /// Drops every entry that no longer names an armed handle, so restarting and
    /// stopping timers cannot make the queue grow without bound.
    pub(super) fn compact_timers(&mut self) {
        let table = &self.table;
        let dropped = self.timers.retain(|entry| {
            table
                .get(entry.id)
                .is_some_and(|h| h.state == HandleState::Open && h.armed_seq == entry.seq)
        });
        self.counts.superseded_timer_entries += dropped as u64;
    }

    // ---------------------------------------------------------------- timers

    /// A stopped timer (libuv's `uv_timer_init`).
    pub fn timer(&mut self, owner: O) -> Result<HandleId> {
        self.open(owner, Resource::Timer(TimerState::default()))
    }

    /// Arms a timer to fire after `timeout`, then every `repeat` if given.
    /// Restarting an armed timer replaces its deadline.
    pub fn timer_start(&mut self, id: HandleId, timeout: Duration, repeat: Option<Duration>) -> Result<()> {
        let timer = self.timer_mut(id)?;
        timer.repeat = repeat;
        timer.started = true;
        let deadline = self.now + timeout;
        self.arm(id, deadline);
        Ok(())
    }

    /// Disarms a timer. The handle stays open: only `close` frees it.
    pub fn timer_stop(&mut self, id: HandleId) -> Result<()> {
        self.timer_mut(id)?;
        self.disarm(id);
        Ok(())
    }

    /// Restarts a repeating timer with its repeat as the timeout (libuv's
    /// `uv_timer_again`); a non-repeating timer is left as it is.
    pub fn timer_again(&mut self, id: HandleId) -> Result<()> {
        let timer = self.timer_mut(id)?;
        if let Some(repeat) = timer.repeat {
            let deadline = self.now + repeat;
            self.arm(id, deadline);
        }
        Ok(())
    }

    pub fn timer_is_armed(&self, id: HandleId) -> bool {
        self.table
            .get(id)
            .is_some_and(|h| h.armed_seq != 0 && matches!(h.resource, Resource::Timer(_)))
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
