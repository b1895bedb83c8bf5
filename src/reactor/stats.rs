//! Counting the loop: statistics, the list of live handles, and the final report.
//!
//! These are how tests and the shutdown report *prove* a loop is empty rather
//! than assume it: `finish` either returns a report of everything that was ever
//! opened and closed, or names every handle still alive (libuv's
//! `uv_loop_close` returning `UV_EBUSY`, but with names).

use std::fmt;

use super::id::HandleId;
use super::table::{HandleKind, HandleState};

/// Per-kind counters, indexed by [`HandleKind::ALL`] order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerKind(pub [usize; 5]);

impl PerKind {
    pub fn get(&self, kind: HandleKind) -> usize {
        self.0[kind.slot()]
    }
    pub(crate) fn add(&mut self, kind: HandleKind, delta: isize) {
        let slot = &mut self.0[kind.slot()];
        *slot = slot
            .checked_add_signed(delta)
            .expect("per-kind counter underflow");
    }
    pub fn total(&self) -> usize {
        self.0.iter().sum()
    }
}

impl fmt::Display for PerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for kind in HandleKind::ALL {
            let n = self.get(kind);
            if n > 0 {
                write!(f, "{}{} {}", if first { "" } else { ", " }, n, kind.name())?;
                first = false;
            }
        }
        if first {
            write!(f, "none")?;
        }
        Ok(())
    }
}

/// A snapshot of the loop's tables and counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Handles in the `Open` state, by kind.
    pub open: PerKind,
    /// Handles waiting for the closing phase, by kind.
    pub closing: PerKind,
    /// Handles ever opened and ever removed, by kind.
    pub opened_total: PerKind,
    pub closed_total: PerKind,
    /// Timers (and connect timeouts) currently armed.
    pub timers_armed: usize,
    /// Entries in the deadline queue, live or superseded.
    pub timer_entries: usize,
    /// Events and timer entries that named a closed or reused handle and were dropped.
    pub stale_events: u64,
    /// Timer entries dropped because the timer was stopped or restarted since.
    pub superseded_timer_entries: u64,
    /// Sources registered with mio, and deregistered. Equal when nothing leaks.
    pub registrations: u64,
    pub deregistrations: u64,
    /// Deferred work queued and not yet run.
    pub deferred: usize,
    /// Handles that will be polled again without waiting for the OS.
    pub ready_again: usize,
    /// Iterations of the loop run so far: a loop that spins shows here.
    pub iterations: u64,
    /// Connections accepted and closed at once: the process had no file
    /// descriptor left for them (or the loop was shutting down).
    pub accepts_refused: u64,
    /// Times a listener stopped accepting for a while because accept failed.
    pub accept_backoffs: u64,
}

impl Stats {
    /// Registrations minus deregistrations: sources still known to mio.
    pub fn registered(&self) -> u64 {
        self.registrations - self.deregistrations
    }
}

/// One live handle, as `walk` and `finish` describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandleInfo {
    pub id: HandleId,
    pub kind: HandleKind,
    pub state: HandleState,
    /// The owner tag, formatted with `Debug`.
    pub owner: String,
}

impl fmt::Display for HandleInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {:?} owned by {}",
            self.id,
            self.kind.name(),
            self.state,
            self.owner
        )
    }
}

/// What `finish` returns when the loop is empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub opened: PerKind,
    pub closed: PerKind,
    pub stale_events: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "closed {} handles ({}), {} stale events dropped, 0 remaining",
            self.closed.total(),
            self.closed,
            self.stale_events
        )
    }
}

/// What `finish` returns when something is still alive: every such thing, named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Busy {
    pub handles: Vec<HandleInfo>,
    pub deferred: usize,
    pub timer_entries: usize,
    pub registered: u64,
}

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loop not empty: {} handles alive, {} deferred, {} timer entries, {} registered sources",
            self.handles.len(),
            self.deferred,
            self.timer_entries,
            self.registered
        )?;
        for handle in &self.handles {
            write!(f, "\n  {handle}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Busy {}
