//! Incoming connections before their handshake names a torrent.
//!
//! The session's one listener accepts for every torrent. An accepted stream is
//! owned by the session (tag `Owner::Incoming`) until its 68-byte handshake
//! arrives; then it is handed to the torrent with that info hash: only its owner
//! tag changes, the `HandleId` stays. An unknown info hash, garbage instead of a
//! handshake, silence past the handshake timeout, or no room closes it, and each
//! outcome is counted. The table is bounded (`SessionConfig::max_pending`) and
//! [`Incoming::remove`] is its only way out.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use slab::Slab;

use crate::reactor::HandleId;

/// An accepted stream waiting for its handshake.
#[derive(Clone, Copy, Debug)]
pub struct Pending {
    pub conn: HandleId,
    pub addr: SocketAddr,
    pub deadline: Instant,
}

/// What became of incoming connections, for status and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IncomingStats {
    pub accepted: u64,
    /// Handed to a torrent.
    pub routed: u64,
    /// The handshake named a torrent we do not serve.
    pub unknown_info_hash: u64,
    /// Not a BitTorrent handshake.
    pub not_bittorrent: u64,
    /// No handshake before the deadline.
    pub timed_out: u64,
    /// Refused for want of room (pending table, connection budget, full torrent).
    pub refused: u64,
    /// Closed by the peer before its handshake.
    pub hung_up: u64,
}

/// The pending table: a slab, plus the deadlines in arrival order (all pending
/// connections share one timeout, so the oldest is always the next to expire).
#[derive(Debug, Default)]
pub struct Incoming {
    pending: Slab<Pending>,
    deadlines: VecDeque<(Instant, u32, HandleId)>,
    pub stats: IncomingStats,
}

impl Incoming {
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn vacant_key(&self) -> u32 {
        self.pending.vacant_key() as u32
    }

    pub fn insert(&mut self, pending: Pending) -> u32 {
        let key = self.pending.insert(pending) as u32;
        self.deadlines.push_back((pending.deadline, key, pending.conn));
        key
    }

    /// The entry `key` if it still is the one on `conn` (tags outlive entries).
    pub fn get(&self, key: u32, conn: HandleId) -> Option<Pending> {
        self.pending.get(key as usize).filter(|p| p.conn == conn).copied()
    }

    /// The only way out of the table.
    pub fn remove(&mut self, key: u32, conn: HandleId) -> Option<Pending> {
        self.get(key, conn)?;
        let pending = self.pending.remove(key as usize);
        // Its deadline entry is skipped when it surfaces; trim stale ones at the
        // front, and drop them all when they outnumber the live ones (one silent
        // connection at the front must not let the queue grow behind it).
        while let Some(&(_, k, c)) = self.deadlines.front() {
            if self.get(k, c).is_some() {
                break;
            }
            self.deadlines.pop_front();
        }
        if self.deadlines.len() > 2 * self.pending.len() + 64 {
            let pending = &self.pending;
            self.deadlines
                .retain(|(_, k, c)| pending.get(*k as usize).is_some_and(|p| p.conn == *c));
        }
        Some(pending)
    }

    /// The earliest deadline of a connection still pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines
            .iter()
            .find(|(_, k, c)| self.get(*k, *c).is_some())
            .map(|(at, _, _)| *at)
    }

    /// Removes and returns every connection whose deadline passed.
    pub fn expire(&mut self, now: Instant, expired: &mut Vec<Pending>) {
        while let Some(&(at, key, conn)) = self.deadlines.front() {
            if self.get(key, conn).is_none() {
                self.deadlines.pop_front();
                continue;
            }
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(pending) = self.remove(key, conn) {
                expired.push(pending);
            }
        }
    }

    /// Every pending connection, for shutdown.
    pub fn drain(&mut self) -> Vec<Pending> {
        self.deadlines.clear();
        self.pending.drain().collect()
    }

    /// Entries in the slab and the deadline queue (for leak tests).
    pub fn table_sizes(&self) -> [usize; 2] {
        [self.pending.len(), self.deadlines.len()]
    }
}
