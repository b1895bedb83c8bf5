//! Session-wide rate limits, by token buckets (`swarm::RateLimit`) on the loop's
//! timers.
//!
//! - **Uploads** are pulled: each serving round may send what the upload bucket
//!   holds (at most one burst, an eighth of a second), and the bytes sent are
//!   charged after. An empty bucket stops serving until the session timer says it
//!   has refilled.
//! - **Downloads** cannot be refused once they arrive, so nothing is dropped:
//!   bytes read are charged (the bucket may go into debt), and while it is in debt
//!   every peer connection of the session stops reading. The kernel's buffers fill,
//!   TCP's flow control slows the senders, and reading resumes when the debt is
//!   repaid.

use std::time::Instant;

use super::Session;
use crate::client::Owner;
use crate::reactor::{HandleId, Reactor};
use crate::swarm::RateLimit;

/// The session's two buckets and whether reads are paused.
#[derive(Debug)]
pub(super) struct Rates {
    pub(super) upload: RateLimit,
    pub(super) download: RateLimit,
    /// Every peer connection's reads are paused (download debt).
    pub(super) reads_paused: bool,
}

impl Rates {
    pub(super) fn new(upload: Option<u64>, download: Option<u64>, now: Instant) -> Rates {
        Rates {
            upload: RateLimit::new(upload, now),
            download: RateLimit::new(download, now),
            reads_paused: false,
        }
    }
}

impl Session {
    /// Bytes the upload limit lets this serving round send (`u64::MAX`: no limit).
    pub(super) fn upload_allowance(&mut self, now: Instant) -> u64 {
        if self.rates.upload.rate().is_none() {
            return u64::MAX;
        }
        if self.rates.upload.is_blocked(now) {
            return 0;
        }
        self.rates.upload.burst()
    }

    /// Charges `bytes` sent to the upload bucket.
    pub(super) fn uploaded(&mut self, now: Instant, bytes: u64) {
        self.rates.upload.consume(now, bytes);
    }

    /// Charges `bytes` read from peers to the download bucket; in debt, every peer
    /// connection stops reading until it is repaid.
    pub(super) fn downloaded(&mut self, rx: &mut Reactor<Owner>, bytes: u64) {
        let now = rx.now();
        self.rates.download.consume(now, bytes);
        if !self.rates.reads_paused && self.rates.download.is_blocked(now) {
            self.rates.reads_paused = true;
            for conn in self.peer_connections() {
                let _ = rx.tcp_pause_reads(conn);
            }
            self.rearm_session_timer(rx);
        }
    }

    /// A new connection starts paused while downloads are in debt.
    pub(super) fn pause_if_limited(&self, rx: &mut Reactor<Owner>, conn: HandleId) {
        if self.rates.reads_paused {
            let _ = rx.tcp_pause_reads(conn);
        }
    }

    /// The session timer fired: resume reads once the debt is repaid, and serve
    /// again once the upload bucket has refilled.
    pub(super) fn rates_tick(&mut self, rx: &mut Reactor<Owner>) {
        let now = rx.now();
        if self.rates.reads_paused && !self.rates.download.is_blocked(now) {
            self.rates.reads_paused = false;
            for conn in self.peer_connections() {
                let _ = rx.tcp_resume_reads(conn);
            }
        }
        if !self.serving.is_empty() && !self.rates.upload.is_blocked(now) {
            self.queue_deferred(rx);
        }
    }

    /// When the session timer must fire for the rate limits.
    pub(super) fn rates_deadline(&mut self, now: Instant) -> Option<Instant> {
        let mut at = None;
        if self.rates.reads_paused {
            at = self.rates.download.ready_at(now);
        }
        if !self.serving.is_empty() && self.rates.upload.is_blocked(now) {
            let upload = self.rates.upload.ready_at(now);
            at = match (at, upload) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        at
    }

    /// Every peer connection of every torrent (pausing and resuming reads).
    fn peer_connections(&self) -> Vec<HandleId> {
        self.torrents
            .iter()
            .flat_map(|(_, e)| e.torrent.pool().iter().map(|(_, p)| p.conn))
            .collect()
    }
}
