//! The session's open files: one bounded least-recently-used pool shared by every
//! torrent's [`PieceStore`](super::PieceStore), so that a session with hundreds of
//! torrents keeps within one open-file budget.
//!
//! Entries are keyed by ([`StoreId`], file index). Store ids come from the pool and
//! are never reused, so a store opened after another one closed cannot be handed
//! the old store's files. A store's files leave the pool in one place,
//! [`FilePool::close_store`], which the torrent calls when it stops (through
//! [`PieceStore::close`](super::PieceStore::close)); the pool also holds the one
//! scratch buffer every store hashes through.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::Path;

use super::error::{Op, Result, StorageError};

/// Bytes read at once to hash data back (verification and checks). Large enough
/// for sequential reads at full speed, small enough to stay in the CPU's L2 cache,
/// and the same whatever the piece length.
pub const CHUNK: usize = 128 * 1024;

/// Which store a pooled file belongs to. Made only by [`FilePool::new_store_id`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StoreId(u64);

struct Entry {
    file: File,
    /// Opened read-write (else read-only, for seeding).
    writable: bool,
    /// Tick of the last use; the smallest is closed first.
    used: u64,
}

/// Counters for tuning the budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Files opened (misses).
    pub opened: u64,
    /// Files closed to make room.
    pub evicted: u64,
}

/// A bounded pool of open files, least recently used closed first.
pub struct FilePool {
    capacity: usize,
    next_id: u64,
    tick: u64,
    entries: HashMap<(StoreId, usize), Entry>,
    scratch: Vec<u8>,
    stats: PoolStats,
}

impl FilePool {
    /// A pool holding at most `capacity` open files (at least one).
    pub fn new(capacity: usize) -> FilePool {
        FilePool {
            capacity: capacity.max(1),
            next_id: 0,
            tick: 0,
            entries: HashMap::new(),
            scratch: Vec::new(),
            stats: PoolStats::default(),
        }
    }

    /// A fresh id for a store about to be opened; never handed out twice.
    pub fn new_store_id(&mut self) -> StoreId {
        self.next_id += 1;
        StoreId(self.next_id)
    }

    /// Open files right now (for leak checks: 0 once every store is closed).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no file is open.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Most files open at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Opens and evictions so far.
    pub fn stats(&self) -> PoolStats {
        self.stats
    }

    /// Closes every file of store `id` (the torrent stopped).
    pub fn close_store(&mut self, id: StoreId) {
        self.entries.retain(|(store, _), _| *store != id);
    }

    /// File `index` of store `id`, opened at `path` if it is not open (read-write if
    /// `write`, else read-only unless already open read-write). Never creates it:
    /// the store created it at open, so a missing file was removed under us.
    pub(crate) fn file(&mut self, id: StoreId, index: usize, path: &Path, write: bool) -> Result<&File> {
        self.tick += 1;
        let tick = self.tick;
        let key = (id, index);
        let reopen = match self.entries.get(&key) {
            Some(entry) => write && !entry.writable,
            None => true,
        };
        if reopen {
            let file = OpenOptions::new()
                .read(true)
                .write(write)
                .open(path)
                .map_err(|e| StorageError::io(path, Op::Open, e))?;
            self.stats.opened += 1;
            if self.entries.remove(&key).is_none() && self.entries.len() >= self.capacity {
                self.evict_one();
            }
            self.entries.insert(
                key,
                Entry {
                    file,
                    writable: write,
                    used: tick,
                },
            );
        }
        let entry = self.entries.get_mut(&key).expect("present or just inserted");
        entry.used = tick;
        Ok(&entry.file)
    }

    fn evict_one(&mut self) {
        // A scan on a miss only: the pool is small, hits stay O(1).
        if let Some(oldest) = self.entries.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| *k) {
            self.entries.remove(&oldest);
            self.stats.evicted += 1;
        }
    }

    /// The shared scratch buffer ([`CHUNK`] bytes), lent out while hashing. Give it
    /// back with [`put_scratch`](Self::put_scratch); taking it twice would only
    /// allocate a second one, never alias.
    pub(crate) fn take_scratch(&mut self) -> Vec<u8> {
        let mut buffer = std::mem::take(&mut self.scratch);
        buffer.resize(CHUNK, 0);
        buffer
    }

    pub(crate) fn put_scratch(&mut self, buffer: Vec<u8>) {
        self.scratch = buffer;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_file_is_closed_first_and_stores_close_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let paths: Vec<_> = (0..4).map(|i| tmp.path().join(format!("f{i}"))).collect();
        for path in &paths {
            std::fs::write(path, b"x").unwrap();
        }
        let mut pool = FilePool::new(2);
        let (a, b) = (pool.new_store_id(), pool.new_store_id());
        assert_ne!(a, b);
        pool.file(a, 0, &paths[0], false).unwrap();
        pool.file(a, 1, &paths[1], false).unwrap();
        pool.file(a, 0, &paths[0], false).unwrap(); // 0 is now the most recent
        pool.file(b, 0, &paths[2], true).unwrap(); // evicts (a, 1)
        assert_eq!(pool.len(), 2);
        assert_eq!(
            pool.stats(),
            PoolStats {
                opened: 3,
                evicted: 1
            }
        );
        pool.file(a, 0, &paths[0], false).unwrap();
        assert_eq!(pool.stats().opened, 3, "(a, 0) stayed open");
        // Asking to write reopens a read-only file in place.
        pool.file(a, 0, &paths[0], true).unwrap();
        assert_eq!((pool.len(), pool.stats().opened), (2, 4));
        pool.close_store(a);
        assert_eq!(pool.len(), 1);
        pool.close_store(b);
        assert!(pool.is_empty());
        let missing = pool.file(a, 3, &tmp.path().join("gone"), true).unwrap_err();
        assert_eq!(missing.kind(), super::super::StorageErrorKind::Vanished);
    }
}
