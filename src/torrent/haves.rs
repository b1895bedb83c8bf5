//! Telling peers which pieces we have, in batches.
//!
//! A verified piece is news for every peer that lacks it. Sent as it happens, that
//! is one message, and so one write and one TCP segment, per peer per piece: with
//! 1,000 peers connected and 2,000 pieces verified a second (256 MiB of 128 KiB
//! pieces from two fast seeders), two million writes a second, which made such a
//! download five times slower than with the seeders alone. So the first piece
//! after a quiet spell is announced at once, and pieces verified within
//! [`HAVE_INTERVAL`] of that announcement wait for it to pass and then go out
//! together: one write per peer per interval, whatever the piece rate. When the
//! download completes, everything pending goes out at once.
//!
//! Pending pieces are kept in one list for the torrent (at most the pieces
//! verified in one interval), emptied by every flush; a peer that handshakes
//! while pieces are pending learns them from its bitfield and is not told again.

use std::time::{Duration, Instant};

use super::{Output, Torrent};
use crate::wire::{self, Message};

/// Longest a verified piece waits before peers hear of it.
pub const HAVE_INTERVAL: Duration = Duration::from_millis(250);

/// Pieces verified and not yet announced, and when announcements may go next.
#[derive(Debug, Default)]
pub struct Haves {
    pending: Vec<u32>,
    last_flush: Option<Instant>,
    /// When the pending pieces go out (set while some wait).
    due: Option<Instant>,
}

impl Haves {
    /// Pieces waiting: a peer activated now knows them from its bitfield.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    pub fn clear(&mut self) {
        self.pending.clear();
        self.due = None;
    }
}

impl Torrent {
    /// `piece` was verified: peers that lack it hear of it now, or with the next
    /// batch if an announcement went out less than [`HAVE_INTERVAL`] ago.
    pub(super) fn announce_piece(&mut self, now: Instant, piece: u32, out: &mut Output) {
        self.haves.pending.push(piece);
        let next = self.haves.last_flush.map(|at| at + HAVE_INTERVAL);
        match next {
            Some(at) if at > now && !self.is_complete() => {
                self.haves.due.get_or_insert(at);
            }
            _ => self.flush_haves(now, out),
        }
    }

    /// Sends every pending piece to each active peer that lacks it, in one write
    /// per peer.
    pub(super) fn flush_haves(&mut self, now: Instant, out: &mut Output) {
        self.haves.due = None;
        self.haves.last_flush = Some(now);
        if self.haves.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.haves.pending);
        for (key, peer) in self.pool.iter_mut() {
            let skip = std::mem::take(&mut peer.skip_haves) as usize;
            let conn = peer.conn;
            let Some(session) = peer.session_mut() else {
                continue;
            };
            let start = out.bytes.len();
            for &piece in pending.iter().skip(skip) {
                if !session.has.get(piece) {
                    wire::encode(&Message::Have(piece), &mut out.bytes);
                }
            }
            if out.bytes.len() > start {
                out.sent(key, conn, start);
                session.last_sent = now;
            }
        }
        self.haves.pending = pending;
        self.haves.pending.clear(); // keeps its capacity for the next batch
    }
}
