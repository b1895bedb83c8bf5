//! Checking data already on disk in slices, so the loop never blocks: each
//! [`Checker::step`] hashes about `budget` bytes (a piece may span many steps) and
//! returns, and the torrent calls it again from the loop's deferred phase until it
//! says [`CheckProgress::Done`].
//!
//! Reads are sequential, [`CHUNK`](super::CHUNK) bytes at a time into the pool's one
//! scratch buffer, straight from the page cache into SHA-1: no other copy, and the
//! same memory whatever the piece length.

use sha1::{Digest, Sha1};

use super::error::{Op, Result, StorageError};
use super::pool::FilePool;
use super::store::PieceStore;
use crate::swarm::Bitfield;

/// Where a check stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckStatus {
    /// Pieces hashed to the end, and pieces to check in all.
    pub pieces_checked: u32,
    pub pieces_total: u32,
    /// Bytes hashed, and bytes to hash in all.
    pub bytes_checked: u64,
    pub bytes_total: u64,
}

/// What one [`Checker::step`] achieved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckProgress {
    /// More to do: call `step` again (from the next iteration).
    Running(CheckStatus),
    /// Every piece was checked: the good ones. Further steps return this again.
    Done(Bitfield),
}

/// The piece being hashed across steps.
struct Current {
    piece: u32,
    sha: Sha1,
    offset: u64,
    size: u64,
}

/// A check of a set of pieces, run a slice at a time.
pub struct Checker {
    to_check: Bitfield,
    /// Next piece index to look at in `to_check`.
    cursor: u32,
    current: Option<Current>,
    good: Bitfield,
    status: CheckStatus,
    /// The last file given the sequential read hint.
    advised: Option<usize>,
}

impl Checker {
    /// A check of `pieces` (indexes past `store`'s piece count are ignored). Step it
    /// with the same store.
    pub fn new(store: &PieceStore, pieces: &Bitfield) -> Checker {
        let layout = store.layout();
        let count = layout.piece_count();
        let mut to_check = Bitfield::new(count);
        let mut bytes_total = 0;
        for piece in pieces.iter_ones().filter(|&p| p < count) {
            to_check.set(piece);
            bytes_total += layout.piece_size(piece).expect("in range");
        }
        Checker {
            status: CheckStatus {
                pieces_total: to_check.count(),
                bytes_total,
                ..CheckStatus::default()
            },
            to_check,
            cursor: 0,
            current: None,
            good: Bitfield::new(count),
            advised: None,
        }
    }

    /// Progress so far.
    pub fn status(&self) -> CheckStatus {
        self.status
    }

    /// Hashes about `budget` bytes (at least one chunk, at most `budget` rounded up
    /// to a chunk) and reports progress, or the good pieces once all are checked.
    /// After an error (a file vanished, EIO) a further step starts the piece it
    /// was in again.
    pub fn step(
        &mut self,
        store: &mut PieceStore,
        files: &mut FilePool,
        budget: u64,
    ) -> Result<CheckProgress> {
        let mut spent = 0;
        loop {
            if self.current.is_none() {
                match self.next_piece() {
                    Some(piece) => {
                        let Some(size) = store.layout().piece_size(piece) else {
                            return Err(StorageError::out_of_range(
                                store.root(),
                                Op::Read,
                                format!("piece {piece}: this checker was made for another torrent"),
                            ));
                        };
                        if let Err(e) = store.advise_sequential(files, piece, &mut self.advised) {
                            self.cursor = piece;
                            return Err(e);
                        }
                        self.current = Some(Current {
                            piece,
                            sha: Sha1::new(),
                            offset: 0,
                            size,
                        });
                    }
                    None => return Ok(CheckProgress::Done(self.good.clone())),
                }
            }
            if spent >= budget.max(1) {
                return Ok(CheckProgress::Running(self.status));
            }
            let current = self.current.as_mut().expect("set above");
            let want = budget.max(1) - spent;
            let chunk = want.checked_next_multiple_of(super::CHUNK as u64).unwrap_or(want);
            let end = current.size.min(current.offset.saturating_add(chunk));
            if let Err(e) = store.hash_range(files, current.piece, current.offset..end, &mut current.sha) {
                // Part of the chunk may be hashed: start this piece again next time.
                self.cursor = current.piece;
                self.current = None;
                return Err(e);
            }
            let len = end - current.offset;
            current.offset = end;
            spent += len;
            self.status.bytes_checked += len;
            store.count_checked(len);
            if current.offset == current.size {
                let current = self.current.take().expect("set above");
                if store.piece_matches(current.piece, current.sha) {
                    self.good.set(current.piece);
                }
                self.status.pieces_checked += 1;
            }
        }
    }

    fn next_piece(&mut self) -> Option<u32> {
        while self.cursor < self.to_check.len() {
            let piece = self.cursor;
            self.cursor += 1;
            if self.to_check.get(piece) {
                return Some(piece);
            }
        }
        None
    }
}
