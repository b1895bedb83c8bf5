//! Time: per-peer deadlines (handshake, silence, keep-alive, request timeouts)
//! from one heap, reconnection backoff, and the choker's rounds; `poll_timeout`
//! is the one deadline the driver arms its timer for.

use std::time::Instant;

use log::debug;

use super::pool::PeerState;
use super::{Output, Torrent};
use crate::swarm::PeerKey;
use crate::wire::Message;

impl Torrent {
    /// When [`handle_timeout`](Self::handle_timeout) should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.stopping {
            return None;
        }
        let mut earliest = self.deadlines.earliest();
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        };
        // A backoff that ends while the pool is full changes nothing: the pool
        // tries again when a slot frees, and until then the loop sleeps.
        if self.has_room() {
            consider(self.pool.next_retry());
        }
        consider(self.choker.poll_timeout());
        // Verified pieces wait for their batch (`haves.rs`).
        consider(self.haves.due());
        // A slot is free and a peer wants it: the next turn handles it.
        consider(self.rechoke_soon);
        earliest
    }

    /// Runs whatever is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Output) {
        if self.stopping {
            return;
        }
        self.pool.release_due(now);
        while let Some((at, slot)) = self.deadlines.pop_due(now) {
            let Some(peer) = self.pool.get_mut(slot.key) else {
                continue;
            };
            if peer.serial != slot.serial || peer.next_deadline != Some(at) {
                continue; // superseded
            }
            peer.next_deadline = None;
            self.check_peer(now, slot.key, out);
        }
        self.compact_deadlines();
        if self.haves.due().is_some_and(|at| at <= now) {
            self.flush_haves(now, out);
        }
        if self.rechoke_soon.is_some() || self.choker.poll_timeout().is_some_and(|at| at <= now) {
            self.rechoke(now, out);
        }
    }

    /// Rebuilds the deadline heap when stale entries (of peers gone or deadlines
    /// moved) outnumber live ones: amortised O(1) per push or removal.
    pub(super) fn compact_deadlines(&mut self) {
        let live = self.pool.len();
        let pool = &self.pool;
        self.deadlines.compact(live, |slot, at| {
            pool.get(slot.key)
                .is_some_and(|p| p.serial == slot.serial && p.next_deadline == Some(at))
        });
    }

    /// One peer's deadline came: drop it, expire requests, or keep it alive.
    fn check_peer(&mut self, now: Instant, key: PeerKey, out: &mut Output) {
        let config = self.config.clone();
        let Some(addr) = self.pool.get(key).map(|p| p.addr) else {
            return;
        };
        let connect_timeout = self.connect_timeout(&addr);
        let Some(peer) = self.pool.get_mut(key) else {
            return;
        };
        let conn = peer.conn;
        match &mut peer.state {
            PeerState::Connecting | PeerState::Handshaking => {
                let limit = if matches!(peer.state, PeerState::Connecting) {
                    connect_timeout
                } else {
                    config.handshake_timeout
                };
                if now.saturating_duration_since(peer.since) >= limit {
                    debug!("peer {addr}: no handshake in time");
                    return self.remove_peer(now, key, true, out);
                }
            }
            PeerState::Active(session) => {
                if now.saturating_duration_since(session.last_received) >= config.silence_timeout {
                    debug!("dropping silent peer {addr}");
                    return self.remove_peer(now, key, true, out);
                }
                let mut expired = std::mem::take(&mut self.blocks);
                expired.clear();
                let timeout = session.pipeline.request_timeout().min(config.request_timeout);
                if let Some(cutoff) = now.checked_sub(timeout) {
                    session.expire_requests(now, cutoff, &mut expired);
                }
                if !expired.is_empty() {
                    debug!("peer {addr}: {} requests timed out", expired.len());
                    session.late_allowance = session.late_allowance.saturating_add(expired.len() as u32);
                    for block in &expired {
                        out.message(key, conn, &Message::Cancel(*block));
                    }
                    session.last_sent = now;
                    if let Some(meta) = &mut self.meta {
                        for block in &expired {
                            meta.picker.on_request_lost(*block, key);
                        }
                    }
                }
                if now.saturating_duration_since(session.last_sent) >= config.keepalive_interval {
                    out.message(key, conn, &Message::KeepAlive);
                    session.last_sent = now;
                }
                let any_expired = !expired.is_empty();
                self.blocks = expired;
                if any_expired {
                    self.drop_restarted();
                    self.refill(now, out);
                }
            }
        }
        self.schedule_peer(now, key);
    }
}
