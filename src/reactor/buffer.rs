//! A byte queue used for a stream's read buffer and its write queue.
//!
//! Bytes are appended at the back and consumed from the front; consumed space is
//! reclaimed by moving the live bytes down before growing, so the buffer stays
//! near the most bytes it has held at once, and gives large storage back when
//! it empties.

use std::io::{self, Read};

/// Smallest amount of free space offered to one `read` call.
const MIN_READ_CHUNK: usize = 16 * 1024;
/// A buffer emptied while holding more than this gives its memory back.
const SHRINK_ABOVE: usize = 64 * 1024;

/// Live bytes are `storage[start..end]`. `storage` is always fully initialised, so
/// a read can go straight into `storage[end..]` without zeroing it first; it is
/// zeroed once, when it grows.
#[derive(Debug, Default)]
pub(crate) struct ByteQueue {
    storage: Vec<u8>,
    start: usize,
    end: usize,
}

/// How one `fill_from` call ended.
#[derive(Debug)]
pub(crate) struct FillOutcome {
    pub(crate) received: usize,
    pub(crate) eof: bool,
    pub(crate) full: bool,
    pub(crate) error: Option<io::Error>,
}

impl ByteQueue {
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.end]
    }

    pub(crate) fn extend(&mut self, data: &[u8]) {
        self.make_room(data.len());
        self.storage[self.end..self.end + data.len()].copy_from_slice(data);
        self.end += data.len();
    }

    /// Drops `n` bytes from the front (all of them if `n` is larger).
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.storage.len() > SHRINK_ABOVE {
                self.storage = Vec::new();
            }
        }
    }

    /// Ensures `wanted` free bytes after `end`: moves live bytes to the front when
    /// that frees enough, grows the storage otherwise.
    fn make_room(&mut self, wanted: usize) {
        if self.storage.len() - self.end >= wanted {
            return;
        }
        if self.start > 0 {
            self.storage.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.storage.len() - self.end < wanted {
            let grown = (self.end + wanted).max(self.storage.len() * 2);
            self.storage.resize(grown, 0);
        }
    }

    /// Reads from `source` until it would block, reaches end of file, fails, or the
    /// queue holds `limit` bytes.
    pub(crate) fn fill_from(&mut self, source: &mut impl Read, limit: usize) -> FillOutcome {
        let mut outcome = FillOutcome {
            received: 0,
            eof: false,
            full: false,
            error: None,
        };
        loop {
            let room = limit.saturating_sub(self.len());
            if room == 0 {
                outcome.full = true;
                return outcome;
            }
            let free = self.storage.len() - self.end;
            if free == 0 || (free < MIN_READ_CHUNK && free < room) {
                self.make_room(room.min(MIN_READ_CHUNK));
            }
            let window = (self.storage.len() - self.end).min(room);
            match source.read(&mut self.storage[self.end..self.end + window]) {
                Ok(0) => {
                    outcome.eof = true;
                    return outcome;
                }
                Ok(n) => {
                    self.end += n;
                    outcome.received += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return outcome,
                Err(e) => {
                    outcome.error = Some(e);
                    return outcome;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn fill_stops_at_the_limit_and_resumes_after_consume() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut source = Trickle(&data, 7);
        let mut queue = ByteQueue::default();
        let first = queue.fill_from(&mut source, 40);
        assert!(first.full);
        assert_eq!(queue.len(), 40);
        assert_eq!(queue.as_slice(), &data[..40]);
        queue.consume(30);
        let second = queue.fill_from(&mut source, 40);
        assert!(second.full);
        assert_eq!(queue.as_slice(), &data[30..70]);
        queue.consume(100);
        let third = queue.fill_from(&mut source, 1000);
        assert!(!third.full && !third.eof && third.error.is_none());
        assert_eq!(queue.as_slice(), &data[70..]);
    }

    #[test]
    fn eof_is_reported() {
        let mut queue = ByteQueue::default();
        let outcome = queue.fill_from(&mut io::empty(), 10);
        assert!(outcome.eof);
        assert_eq!(outcome.received, 0);
    }

    #[test]
    fn consume_everything_releases_large_buffers() {
        let mut queue = ByteQueue::default();
        queue.extend(&vec![1u8; SHRINK_ABOVE * 2]);
        queue.consume(usize::MAX);
        assert!(queue.is_empty());
        assert_eq!(queue.storage.capacity(), 0);
    }
}
