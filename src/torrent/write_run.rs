//! The write run: blocks from one peer that continue each other inside one piece,
//! accepted and waiting to go to disk in one vectored write (why: `blocks.rs`).
//! It holds offsets into the reader's buffer, not bytes, and never outlives one
//! `handle_bytes` call.

use std::net::{IpAddr, Ipv4Addr};

use crate::wire::{BlockRef, Message};

/// Most blocks in a run: 256 KiB of 16 KiB blocks, where the page cache stops
/// gaining from bigger writes (and the reader's buffer holds at most that much).
pub const MAX_RUN_BLOCKS: usize = 16;

#[derive(Clone, Copy, Debug)]
pub(super) struct WriteRun {
    /// The sender's address, a contributor of the piece once the run is written.
    ip: IpAddr,
    /// Each block with the offset of its payload in the buffer.
    blocks: [(BlockRef, usize); MAX_RUN_BLOCKS],
    len: usize,
}

impl Default for WriteRun {
    fn default() -> WriteRun {
        let none = BlockRef {
            index: 0,
            begin: 0,
            length: 0,
        };
        WriteRun {
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            blocks: [(none, 0); MAX_RUN_BLOCKS],
            len: 0,
        }
    }
}

impl WriteRun {
    /// Whether `message` can be handled without writing the run first: the run is
    /// empty, or the message is a block that continues it and there is room.
    /// Anything else (another piece, a gap, any other message) ends the run, so
    /// every other message sees the state of a torrent that has booked its blocks.
    pub fn continued_by(&self, message: &Message<'_>) -> bool {
        let Some(last) = self.blocks().last() else {
            return true;
        };
        match message {
            Message::Piece { index, begin, .. } => {
                self.len < MAX_RUN_BLOCKS
                    && *index == last.0.index
                    && Some(*begin) == last.0.begin.checked_add(last.0.length)
            }
            _ => false,
        }
    }

    /// Adds an accepted block whose payload is at `at` of the buffer. The caller
    /// has made room and checked that it continues the run
    /// ([`continued_by`](Self::continued_by)).
    pub fn push(&mut self, ip: IpAddr, block: BlockRef, at: usize) {
        assert!(self.len < MAX_RUN_BLOCKS, "the run was written when full");
        if self.len == 0 {
            self.ip = ip;
        }
        self.blocks[self.len] = (block, at);
        self.len += 1;
    }

    /// Empties the run, returning what it held (`None` if nothing).
    pub fn take(&mut self) -> Option<WriteRun> {
        (self.len > 0).then(|| std::mem::take(self))
    }

    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    pub fn blocks(&self) -> &[(BlockRef, usize)] {
        &self.blocks[..self.len]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
