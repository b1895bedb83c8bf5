//! Buffers: the byte queue that holds a stream's unconsumed input and its unsent
//! output, and the loop's one read buffer that streams are read into.
//!
//! Nothing here is sized for the worst case per connection. A queue holds only
//! bytes still in it: consumed space is reclaimed by moving the live bytes down
//! before growing, and a queue that empties gives its memory back. Reads go into
//! the loop's [`Scratch`] buffer, lent to one stream at a time; only the bytes its
//! owner leaves unconsumed are copied back into the stream's own queue. An idle
//! stream therefore holds no buffer at all.

use std::io::{self, Read};

use super::id::HandleId;

/// Live bytes are `storage[start..end]`. `storage` is always fully initialised, so
/// a read can go straight into `storage[end..]` without zeroing it first; it is
/// zeroed once, when it grows.
#[derive(Debug, Default)]
pub(crate) struct ByteQueue {
    storage: Vec<u8>,
    start: usize,
    end: usize,
}

/// How one fill ended.
#[derive(Debug, Default)]
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

    /// Drops `n` bytes from the front (all of them if `n` is larger). An emptied
    /// queue gives its memory back.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            *self = ByteQueue::default();
        }
    }

    /// Empties the queue but keeps its storage, for `replace_with` to reuse.
    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Makes `data` the whole content. Storage that fits is reused unless it is
    /// more than twice the size needed; an empty `data` frees it.
    fn replace_with(&mut self, data: &[u8]) {
        if data.is_empty() {
            *self = ByteQueue::default();
        } else if data.len() <= self.storage.len() && self.storage.len() <= 2 * data.len() {
            self.storage[..data.len()].copy_from_slice(data);
            self.start = 0;
            self.end = data.len();
        } else {
            *self = ByteQueue {
                storage: data.to_vec(),
                start: 0,
                end: data.len(),
            };
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
}

/// Reads from `source` into `window` until it would block, reaches end of file,
/// fails, or `window` is full.
fn read_into(source: &mut impl Read, window: &mut [u8]) -> FillOutcome {
    let mut outcome = FillOutcome::default();
    while outcome.received < window.len() {
        match source.read(&mut window[outcome.received..]) {
            Ok(0) => {
                outcome.eof = true;
                return outcome;
            }
            Ok(n) => outcome.received += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return outcome,
            Err(e) => {
                outcome.error = Some(e);
                return outcome;
            }
        }
    }
    outcome.full = true;
    outcome
}

/// The loop's one read buffer, `read_buffer_limit` bytes, allocated at the first
/// read. A readable stream is read into it behind the bytes its queue still held,
/// and is *lent* it for its owner's `Readable` callback (`tcp_received` and
/// `tcp_consume` work on it then); afterwards whatever the owner left is given
/// back to the stream's own queue. One stream at a time holds the loan.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    /// Fully initialised, so reads go straight into it; live bytes are
    /// `storage[start..end]` while lent.
    storage: Vec<u8>,
    start: usize,
    end: usize,
    lent_to: Option<HandleId>,
}

impl Scratch {
    /// The stream whose bytes the scratch holds now, if any.
    pub(crate) fn lent_to(&self) -> Option<HandleId> {
        self.lent_to
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.end]
    }

    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
    }

    /// Reads stream `id`'s `source` into the scratch, behind the `held` bytes of
    /// its queue, until it would block, ends, fails or `limit` bytes are held. If
    /// anything arrived, the held bytes move in front of it and the scratch is lent
    /// to `id` until [`Scratch::give_back`]; otherwise nothing moves.
    pub(crate) fn fill(
        &mut self,
        id: HandleId,
        held: &mut ByteQueue,
        source: &mut impl Read,
        limit: usize,
    ) -> FillOutcome {
        debug_assert!(
            self.lent_to.is_none(),
            "the scratch is lent to one stream at a time"
        );
        let kept = held.len();
        if kept >= limit {
            return FillOutcome {
                full: true,
                ..FillOutcome::default()
            };
        }
        if self.storage.len() < limit {
            // Zeroed memory from the allocator costs nothing until it is touched.
            self.storage = vec![0; limit];
        }
        let outcome = read_into(source, &mut self.storage[kept..limit]);
        if outcome.received > 0 {
            if kept > 0 {
                self.storage[..kept].copy_from_slice(held.as_slice());
                held.clear();
            }
            self.start = 0;
            self.end = kept + outcome.received;
            self.lent_to = Some(id);
        }
        outcome
    }

    /// Ends the loan: the bytes left unconsumed go back to the stream's queue, or
    /// are dropped if the stream closed meanwhile (`held` is `None`).
    pub(crate) fn give_back(&mut self, held: Option<&mut ByteQueue>) {
        if let Some(queue) = held {
            queue.replace_with(self.as_slice());
        }
        self.start = 0;
        self.end = 0;
        self.lent_to = None;
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

    /// One fill and loan as the loop does it: the owner consumes `take` bytes.
    fn fill_and_consume(
        held: &mut ByteQueue,
        source: &mut Trickle,
        limit: usize,
        take: usize,
    ) -> FillOutcome {
        let mut scratch = Scratch::default();
        let outcome = scratch.fill(HandleId::new(0, 0), held, source, limit);
        if scratch.lent_to().is_some() {
            scratch.consume(take);
            scratch.give_back(Some(held));
        }
        outcome
    }

    #[test]
    fn fill_stops_at_the_limit_and_resumes_after_consume() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut source = Trickle(&data, 7);
        let mut queue = ByteQueue::default();
        let first = fill_and_consume(&mut queue, &mut source, 40, 0);
        assert!(first.full);
        assert_eq!(queue.as_slice(), &data[..40]);
        queue.consume(30);
        let second = fill_and_consume(&mut queue, &mut source, 40, 0);
        assert!(second.full);
        assert_eq!(queue.as_slice(), &data[30..70]);
        let third = fill_and_consume(&mut queue, &mut source, 1000, 10);
        assert!(!third.full && !third.eof && third.error.is_none());
        assert_eq!(queue.as_slice(), &data[40..]);
    }

    #[test]
    fn eof_is_reported() {
        let mut scratch = Scratch::default();
        let outcome = scratch.fill(
            HandleId::new(0, 0),
            &mut ByteQueue::default(),
            &mut io::empty(),
            10,
        );
        assert!(outcome.eof);
        assert_eq!(outcome.received, 0);
        assert_eq!(scratch.lent_to(), None);
    }

    #[test]
    fn consume_everything_releases_the_storage() {
        let mut queue = ByteQueue::default();
        queue.extend(b"a few bytes");
        queue.consume(4);
        assert!(queue.storage.capacity() > 0);
        queue.consume(usize::MAX);
        assert!(queue.is_empty());
        assert_eq!(queue.storage.capacity(), 0);
    }

    #[test]
    fn scratch_holds_the_kept_bytes_then_the_new_ones_and_gives_back_the_rest() {
        let id = HandleId::new(3, 1);
        let mut held = ByteQueue::default();
        held.extend(b"head");
        let mut scratch = Scratch::default();
        let outcome = scratch.fill(id, &mut held, &mut Trickle(b"-and-tail", 4), 64);
        assert_eq!(outcome.received, 9);
        assert!(!outcome.full && !outcome.eof && outcome.error.is_none());
        assert_eq!(scratch.lent_to(), Some(id));
        assert_eq!(scratch.as_slice(), b"head-and-tail");
        assert!(held.is_empty());
        scratch.consume(9);
        scratch.give_back(Some(&mut held));
        assert_eq!(held.as_slice(), b"tail");
        assert_eq!(held.storage.len(), 4, "only the tail is kept");
        assert_eq!(scratch.lent_to(), None);
    }

    #[test]
    fn scratch_moves_nothing_when_nothing_arrives() {
        let id = HandleId::new(0, 0);
        let mut held = ByteQueue::default();
        held.extend(b"kept");
        let mut scratch = Scratch::default();
        let outcome = scratch.fill(id, &mut held, &mut Trickle(b"", 1), 64);
        assert_eq!(outcome.received, 0);
        assert_eq!(scratch.lent_to(), None);
        assert_eq!(held.as_slice(), b"kept");
    }

    #[test]
    fn scratch_stops_at_the_limit_counting_the_kept_bytes() {
        let id = HandleId::new(0, 0);
        let mut held = ByteQueue::default();
        held.extend(&[1; 10]);
        let mut scratch = Scratch::default();
        let outcome = scratch.fill(id, &mut held, &mut Trickle(&[2; 100], 7), 32);
        assert!(outcome.full);
        assert_eq!(outcome.received, 22);
        assert_eq!(scratch.len(), 32);
        scratch.give_back(Some(&mut held));
        assert_eq!(held.len(), 32);
        assert_eq!(&held.as_slice()[..10], &[1; 10]);
    }

    #[test]
    fn a_fully_consumed_loan_leaves_the_queue_without_storage() {
        let id = HandleId::new(0, 0);
        let mut held = ByteQueue::default();
        let mut scratch = Scratch::default();
        scratch.fill(id, &mut held, &mut Trickle(b"hello", 5), 64);
        scratch.consume(5);
        scratch.give_back(Some(&mut held));
        assert_eq!(held.storage.capacity(), 0);
    }
}
