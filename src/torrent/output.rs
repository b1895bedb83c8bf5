//! What the torrent core asks its driver to do, and the session-wide resources every
//! torrent works with.
//!
//! The core never touches a socket: it appends encoded messages to one shared byte
//! buffer and records, in order, which connection each range goes to and which
//! connections to close. The driver (`client::session`) carries the actions out on
//! the reactor and clears the buffer, so one buffer serves every torrent of a
//! session and nothing per torrent is sized for the largest batch ever sent. The
//! same value carries the session's open files ([`FilePool`]), the one bounded
//! set of file handles all its torrents share.

use std::ops::Range;

use crate::reactor::HandleId;
use crate::storage::FilePool;
use crate::swarm::PeerKey;
use crate::wire::{self, Message};

/// One thing for the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write `bytes[range]` of the [`Output`] to the peer's connection.
    Send {
        peer: PeerKey,
        conn: HandleId,
        range: Range<usize>,
    },
    /// Close the connection (the core has already forgotten the peer).
    Close { conn: HandleId },
}

/// Bytes to send and actions in order, and the session's open files.
pub struct Output {
    pub bytes: Vec<u8>,
    pub actions: Vec<Action>,
    pub files: FilePool,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("bytes", &self.bytes.len())
            .field("actions", &self.actions)
            .field("open_files", &self.files.len())
            .finish()
    }
}

impl Default for Output {
    fn default() -> Output {
        Output::new(DEFAULT_OPEN_FILES)
    }
}

/// Open files a session keeps when not told otherwise.
pub const DEFAULT_OPEN_FILES: usize = 64;

impl Output {
    /// An empty output with room for `open_files` open files.
    pub fn new(open_files: usize) -> Output {
        Output {
            bytes: Vec::new(),
            actions: Vec::new(),
            files: FilePool::new(open_files),
        }
    }

    /// Appends one encoded message for `peer`.
    pub fn message(&mut self, peer: PeerKey, conn: HandleId, message: &Message<'_>) {
        let start = self.bytes.len();
        wire::encode(message, &mut self.bytes);
        self.sent(peer, conn, start);
    }

    /// Appends raw bytes (a handshake) for `peer`.
    pub fn raw(&mut self, peer: PeerKey, conn: HandleId, bytes: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        self.sent(peer, conn, start);
    }

    /// Records that `bytes[start..]` goes to `peer`, merging with the previous send
    /// to the same peer so that one write carries a whole batch.
    pub fn sent(&mut self, peer: PeerKey, conn: HandleId, start: usize) {
        let end = self.bytes.len();
        if let Some(Action::Send {
            peer: last,
            conn: c,
            range,
        }) = self.actions.last_mut()
        {
            if *last == peer && *c == conn && range.end == start {
                range.end = end;
                return;
            }
        }
        self.actions.push(Action::Send {
            peer,
            conn,
            range: start..end,
        });
    }

    pub fn close(&mut self, conn: HandleId) {
        self.actions.push(Action::Close { conn });
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Empties both, keeping the buffer's capacity unless it grew large.
    pub fn clear(&mut self) {
        self.actions.clear();
        self.bytes.clear();
        if self.bytes.capacity() > MAX_RETAINED {
            self.bytes = Vec::new();
        }
    }
}

/// Capacity the shared buffer keeps between batches.
const MAX_RETAINED: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_messages_to_one_peer_make_one_send() {
        let a = HandleId::from_token(mio::Token(1));
        let b = HandleId::from_token(mio::Token(2));
        let mut out = Output::default();
        out.message(0, a, &Message::Interested);
        out.message(0, a, &Message::Unchoke);
        out.message(1, b, &Message::Choke);
        out.close(b);
        assert_eq!(
            out.actions,
            vec![
                Action::Send {
                    peer: 0,
                    conn: a,
                    range: 0..10
                },
                Action::Send {
                    peer: 1,
                    conn: b,
                    range: 10..15
                },
                Action::Close { conn: b },
            ]
        );
        out.clear();
        assert!(out.is_empty() && out.bytes.is_empty());
    }
}
