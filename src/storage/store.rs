//! One torrent's files: block writes, SHA-1 hashed while downloading, verification
//! that reads back only what it must (in bounded chunks), reads for seeding, and
//! fsync of what was written.
//!
//! # Hashing while downloading
//! Each piece in progress has a running SHA-1 of its *hashed prefix*: the bytes
//! `0..hashed`, which are on disk exactly as fed. A block written at `hashed` is fed
//! at once; a block past it leaves a gap (read back at verification); a block that
//! rewrites part of the prefix restarts the hash, because the bytes on disk may no
//! longer be the bytes hashed, and a piece must never verify on bytes it does not
//! hold. The table of hash states is bounded by [`MAX_PIECES_HASHING`]; a piece
//! without a state is simply read back whole.
//!
//! # Removed and truncated files
//! Storage reports them, it does not re-create them: a file that vanished took
//! verified pieces with it, which the torrent must learn about. Reopening a removed
//! file fails ([`StorageErrorKind::Vanished`](super::StorageErrorKind::Vanished)),
//! and since writes through a file still open would go to the unlinked inode
//! unnoticed, [`PieceStore::verify_piece`] and [`PieceStore::sync`] check the link
//! count, size and inode of every file they touch (the inode: a file of the same
//! name put in its place is not ours). So a piece on a vanished file never
//! verifies and never reaches resume data (which is saved only after a sync).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::IoSlice;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::error::{Op, Result, StorageError};
use super::parts::{Parts, RUN_SLICES};
use super::pool::{FilePool, StoreId};
use super::sys;
use crate::metainfo::{InfoHash, Layout, Metainfo};

/// Most pieces with a running hash at once (about 100 bytes each). A caller with
/// more pieces in flight loses nothing but the saving: those are read back.
pub const MAX_PIECES_HASHING: usize = 4096;
/// Bytes written between two early writebacks ([`sys::start_writeback`]). The
/// durability promise fsyncs at completion; without this the kernel holds the
/// whole download in dirty pages until then (it starts writing on its own only
/// past 10 % of memory or after 30 s), and the fsync writes it all while the user
/// waits: 0.45 s for 1 GiB here. Started every 4 MiB, the writing overlaps the
/// download (1 GiB from a bitloop seeder: 2.06 s before, about 1.6 s after), and
/// a small box holds few of our dirty pages.
pub const WRITEBACK_EVERY: u64 = 4 << 20;

/// How a store is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// Allocate every file's blocks at open, so a full disk fails at start.
    pub preallocate: bool,
    /// Serve the files as they are (seeding): open them for reading only, never
    /// create or resize one, so read-only media can be seeded. A missing file
    /// fails at open; a short one fails its pieces' check.
    pub read_only: bool,
}

/// What a store has done, for logs, notes and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Block bytes written (pad bytes excluded).
    pub bytes_written: u64,
    /// Write calls that wrote them (a run of blocks is one per file it touches).
    pub writes: u64,
    /// Block bytes fed to a piece's hash as they arrived (no read back needed).
    pub bytes_hashed_in_order: u64,
    /// Block bytes that arrived past a piece's hashed prefix (read back later).
    pub bytes_out_of_order: u64,
    /// Bytes read back to finish a verification.
    pub bytes_read_back: u64,
    /// Bytes read by a [`Checker`](super::Checker).
    pub bytes_checked: u64,
    /// Bytes read for peers ([`PieceStore::read_block`]).
    pub bytes_read: u64,
    /// Pieces that verified, and that failed.
    pub pieces_verified: u64,
    pub pieces_failed: u64,
    /// Blocks that rewrote part of a hashed prefix, restarting that piece's hash.
    pub hash_restarts: u64,
    /// Pieces with a running hash right now.
    pub pieces_in_progress: usize,
}

/// A piece's running hash over its first `hashed` bytes.
struct PieceHash {
    sha: Sha1,
    hashed: u64,
}

/// One torrent's files on disk.
pub struct PieceStore {
    id: StoreId,
    info_hash: InfoHash,
    root: PathBuf,
    layout: Layout,
    paths: Vec<PathBuf>,
    pad: Vec<bool>,
    hashes: Vec<[u8; 20]>,
    hashing: HashMap<u32, PieceHash>,
    /// Each file's (device, inode) when the store opened it, so a file replaced
    /// under us is told from ours (0, 0 for padding).
    identity: Vec<(u64, u64)>,
    /// Files written since the last sync: a flag per file and the list of them.
    dirty: Vec<bool>,
    dirty_list: Vec<usize>,
    /// Bytes written since the last early writeback, and the files they went to
    /// (a flag per file and the list of them).
    unflushed: u64,
    unflushed_file: Vec<bool>,
    unflushed_files: Vec<usize>,
    stats: StoreStats,
}

impl PieceStore {
    /// Prepares `root` for `metainfo`: folders and sparse files of the right size
    /// (padding files never), each file allocated in full with
    /// `options.preallocate`. Fails here, naming the folder or file, when the
    /// folder cannot be written or (preallocating) the disk has no room.
    pub fn open(id: StoreId, root: &Path, metainfo: &Metainfo, options: &StoreOptions) -> Result<PieceStore> {
        let layout = metainfo.layout();
        let mut paths = Vec::with_capacity(layout.files().len());
        let mut pad = Vec::with_capacity(layout.files().len());
        let mut identity = Vec::with_capacity(layout.files().len());
        for (file, entry) in layout.files().iter().zip(&metainfo.info.files) {
            let path = root.join(&file.path);
            identity.push(match entry.pad {
                true => (0, 0),
                false => create_file(&path, file.length, options)?,
            });
            paths.push(path);
            pad.push(entry.pad);
        }
        Ok(PieceStore {
            id,
            info_hash: metainfo.info_hash,
            root: root.to_path_buf(),
            dirty: vec![false; paths.len()],
            identity,
            dirty_list: Vec::new(),
            unflushed: 0,
            unflushed_file: vec![false; paths.len()],
            unflushed_files: Vec::new(),
            layout,
            paths,
            pad,
            hashes: metainfo.info.pieces.clone(),
            hashing: HashMap::new(),
            stats: StoreStats::default(),
        })
    }

    /// This store's id in the pool.
    pub fn id(&self) -> StoreId {
        self.id
    }

    /// The torrent's info hash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The download folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The piece ↔ file mapping.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Where file `index` lives.
    pub fn path(&self, index: usize) -> &Path {
        &self.paths[index]
    }

    /// Whether file `index` is a padding file (never on disk).
    pub fn is_pad(&self, index: usize) -> bool {
        self.pad[index]
    }

    /// Counters so far.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            pieces_in_progress: self.hashing.len(),
            ..self.stats
        }
    }

    /// Pieces with a running hash (0 once every piece was verified or abandoned).
    pub fn in_progress(&self) -> usize {
        self.hashing.len()
    }

    /// Closes this store's files in the pool. The one way a store ends.
    pub fn close(self, files: &mut FilePool) {
        files.close_store(self.id);
    }

    /// Writes a block at `begin` of `piece`: [`write_run`](Self::write_run) of one.
    pub fn write_block(&mut self, files: &mut FilePool, piece: u32, begin: u32, data: &[u8]) -> Result<()> {
        self.write_run(files, piece, begin, &[data])
    }

    /// Writes a run of blocks, `parts` back to back from `begin` of `piece`, with
    /// one vectored write per file it touches (the page cache charges per call
    /// and per folio, and a run gets large folios). Book the blocks only when this
    /// is Ok: on error nothing is hashed, and part of the run may be on disk. Write
    /// each block of a piece once, and none of a verified piece: a rewrite only
    /// costs a read back, but a block for a verified piece starts a hash state
    /// that stays until [`abandon_piece`](Self::abandon_piece).
    pub fn write_run(&mut self, files: &mut FilePool, piece: u32, begin: u32, parts: &[&[u8]]) -> Result<()> {
        let begin = u64::from(begin);
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let Some(spans) = self.layout.spans(piece, begin, len as u64) else {
            return Err(self.out_of_range(Op::Write, piece, begin, len));
        };
        if let Some(state) = self.hashing.get_mut(&piece) {
            if begin < state.hashed {
                // Part of the prefix is rewritten (even if this write fails half
                // way): what is on disk may differ from what was hashed, so start
                // again.
                *state = PieceHash::new();
                self.stats.hash_restarts += 1;
            }
        }
        let mut cursor = Parts::new(parts);
        for span in spans {
            if self.pad[span.file] {
                cursor.skip(span.len as usize); // zeros by definition, never stored
                continue;
            }
            let path = &self.paths[span.file];
            let file = files.file(self.id, span.file, path, true)?;
            let mut offset = span.file_offset;
            let mut left = span.len as usize;
            while left > 0 {
                let mut slices = [IoSlice::new(&[]); RUN_SLICES];
                let (count, bytes) = cursor.take(&mut slices, left);
                sys::write_all_vectored_at(file, &mut slices[..count], offset)
                    .map_err(|e| StorageError::io(path, Op::Write, e))?;
                self.stats.writes += 1;
                offset += bytes as u64;
                left -= bytes;
            }
            self.stats.bytes_written += span.len;
            if !self.dirty[span.file] {
                self.dirty[span.file] = true;
                self.dirty_list.push(span.file);
            }
            if !self.unflushed_file[span.file] {
                self.unflushed_file[span.file] = true;
                self.unflushed_files.push(span.file);
            }
        }
        let mut at = begin;
        for part in parts {
            self.feed(piece, at, part);
            at += part.len() as u64;
        }
        self.unflushed += len as u64;
        if self.unflushed >= WRITEBACK_EVERY {
            self.unflushed = 0;
            for index in self.unflushed_files.drain(..) {
                self.unflushed_file[index] = false;
                if let Ok(file) = files.file(self.id, index, &self.paths[index], true) {
                    sys::start_writeback(file);
                }
            }
        }
        Ok(())
    }

    /// Extends the piece's hashed prefix with a block just written.
    fn feed(&mut self, piece: u32, begin: u64, data: &[u8]) {
        let len = data.len() as u64;
        if !self.hashing.contains_key(&piece) {
            if self.hashing.len() >= MAX_PIECES_HASHING {
                self.stats.bytes_out_of_order += len;
                return;
            }
            self.hashing.insert(piece, PieceHash::new());
        }
        let state = self.hashing.get_mut(&piece).expect("present or just inserted");
        // A rewrite of the prefix reset the state before writing, so `begin` is at
        // or past the prefix here.
        if begin == state.hashed {
            state.sha.update(data);
            state.hashed += len;
            self.stats.bytes_hashed_in_order += len;
        } else {
            self.stats.bytes_out_of_order += len;
        }
    }

    /// Forgets `piece`'s running hash without verifying (the piece restarts).
    pub fn abandon_piece(&mut self, piece: u32) {
        self.hashing.remove(&piece);
    }

    /// Checks `piece` against its SHA-1 once all its blocks are written: what was
    /// hashed in order is not read again, the rest is read back in chunks. The
    /// piece's hash state is dropped whatever the outcome.
    pub fn verify_piece(&mut self, files: &mut FilePool, piece: u32) -> Result<bool> {
        let Some(size) = self.layout.piece_size(piece) else {
            return Err(self.out_of_range(Op::Read, piece, 0, 0));
        };
        let (mut sha, hashed) = match self.hashing.remove(&piece) {
            Some(state) => (state.sha, state.hashed),
            None => (Sha1::new(), 0),
        };
        self.check_whole(files, piece)?;
        self.hash_range(files, piece, hashed..size, &mut sha)?;
        self.stats.bytes_read_back += size - hashed;
        let ok = self.piece_matches(piece, sha);
        if ok {
            self.stats.pieces_verified += 1;
        } else {
            self.stats.pieces_failed += 1;
        }
        Ok(ok)
    }

    /// Fails if a file `piece` lives in was removed or truncated under us (an open
    /// handle would still read and write the lost inode).
    fn check_whole(&self, files: &mut FilePool, piece: u32) -> Result<()> {
        let spans = self.layout.piece_spans(piece).expect("piece checked by caller");
        for span in spans.filter(|s| !self.pad[s.file]) {
            self.check_file(files, span.file, Op::Read)?;
        }
        Ok(())
    }

    fn check_file(&self, files: &mut FilePool, index: usize, op: Op) -> Result<()> {
        let path = &self.paths[index];
        let meta = files
            .file(self.id, index, path, false)?
            .metadata()
            .map_err(|e| StorageError::io(path, op, e))?;
        let expected = self.layout.files()[index].length;
        if meta.nlink() == 0 {
            return Err(StorageError::removed(path, op));
        }
        if (meta.dev(), meta.ino()) != self.identity[index] {
            // Another file now has the name (reopened after ours was removed): what
            // was written and hashed went to ours.
            return Err(StorageError::replaced(path, op));
        }
        if meta.len() < expected {
            return Err(StorageError::truncated(path, op, meta.len(), expected));
        }
        Ok(())
    }

    /// Feeds bytes `range` of `piece` to `sha`, reading them in [`CHUNK`]-sized
    /// pieces through the pool's one scratch buffer.
    ///
    /// [`CHUNK`]: super::CHUNK
    pub(crate) fn hash_range(
        &self,
        files: &mut FilePool,
        piece: u32,
        range: std::ops::Range<u64>,
        sha: &mut Sha1,
    ) -> Result<()> {
        if range.is_empty() {
            return Ok(()); // hashed in order: the scratch buffer is not needed
        }
        let mut buffer = files.take_scratch();
        let mut result = Ok(());
        let mut at = range.start;
        while at < range.end {
            let len = (range.end - at).min(buffer.len() as u64) as usize;
            if let Err(e) = self.read_into(files, piece, at, &mut buffer[..len]) {
                result = Err(e);
                break;
            }
            sha.update(&buffer[..len]);
            at += len as u64;
        }
        files.put_scratch(buffer);
        result
    }

    /// Whether `sha`, fed a whole piece, is `piece`'s hash.
    pub(crate) fn piece_matches(&self, piece: u32, sha: Sha1) -> bool {
        sha.finalize().as_slice() == self.hashes[piece as usize]
    }

    /// Counts bytes a checker read.
    pub(crate) fn count_checked(&mut self, bytes: u64) {
        self.stats.bytes_checked += bytes;
    }

    /// Hints sequential reading for the files `piece` lives in past file
    /// `*advised` (a check goes through the files in order, so once each).
    pub(crate) fn advise_sequential(
        &self,
        files: &mut FilePool,
        piece: u32,
        advised: &mut Option<usize>,
    ) -> Result<()> {
        let spans = self.layout.piece_spans(piece).expect("piece checked by caller");
        for span in spans.filter(|s| !self.pad[s.file]) {
            if advised.is_none_or(|a| span.file > a) {
                sys::advise_sequential(files.file(self.id, span.file, &self.paths[span.file], false)?);
                *advised = Some(span.file);
            }
        }
        Ok(())
    }

    /// Reads a block (for seeding). Padding reads as zeros.
    pub fn read_block(&mut self, files: &mut FilePool, piece: u32, begin: u32, out: &mut [u8]) -> Result<()> {
        self.read_into(files, piece, u64::from(begin), out)?;
        self.stats.bytes_read += out.len() as u64;
        Ok(())
    }

    fn read_into(&self, files: &mut FilePool, piece: u32, begin: u64, out: &mut [u8]) -> Result<()> {
        let Some(spans) = self.layout.spans(piece, begin, out.len() as u64) else {
            return Err(self.out_of_range(Op::Read, piece, begin, out.len()));
        };
        let mut at = 0;
        for span in spans {
            let chunk = &mut out[at..at + span.len as usize];
            at += span.len as usize;
            if self.pad[span.file] {
                chunk.fill(0);
                continue;
            }
            let path = &self.paths[span.file];
            files
                .file(self.id, span.file, path, false)?
                .read_exact_at(chunk, span.file_offset)
                .map_err(|e| StorageError::io(path, Op::Read, e))?;
        }
        Ok(())
    }

    /// Flushes every file written since the last sync to the device, after
    /// checking it is still whole. A full fsync, not fdatasync, so that the
    /// modification time resume data records is the one on disk after a power
    /// loss too (else the file would only be checked again, but needlessly). A file leaves the to-sync list only once
    /// flushed, so a failed sync is retried whole by the next one; but after an
    /// fsync error the kernel may have dropped the data, so treat any error here
    /// as fatal for the torrent and do not save resume data on it.
    pub fn sync(&mut self, files: &mut FilePool) -> Result<()> {
        while let Some(&index) = self.dirty_list.last() {
            self.check_file(files, index, Op::Sync)?;
            let path = &self.paths[index];
            files
                .file(self.id, index, path, false)?
                .sync_all()
                .map_err(|e| StorageError::io(path, Op::Sync, e))?;
            self.dirty[index] = false;
            self.dirty_list.pop();
        }
        Ok(())
    }

    /// Files written since the last sync.
    pub fn unsynced_files(&self) -> usize {
        self.dirty_list.len()
    }

    fn out_of_range(&self, op: Op, piece: u32, begin: u64, len: usize) -> StorageError {
        StorageError::out_of_range(
            &self.root,
            op,
            format!(
                "{len} bytes at {begin} of piece {piece} are outside the torrent ({} pieces of {} bytes)",
                self.layout.piece_count(),
                self.layout.piece_length()
            ),
        )
    }
}

impl PieceHash {
    fn new() -> PieceHash {
        PieceHash {
            sha: Sha1::new(),
            hashed: 0,
        }
    }
}

/// Creates `path` (and its folders) at `length` bytes, sparse unless preallocating
/// (read-only: only opens it); returns its (device, inode).
fn create_file(path: &Path, length: u64, options: &StoreOptions) -> Result<(u64, u64)> {
    if options.read_only {
        let meta = std::fs::metadata(path).map_err(|e| StorageError::io(path, Op::Find, e))?;
        return Ok((meta.dev(), meta.ino()));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| StorageError::io(parent, Op::CreateFolder, e))?;
    }
    let error = |e| StorageError::io(path, Op::Create, e);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(error)?;
    let meta = file.metadata().map_err(error)?;
    if meta.len() != length {
        file.set_len(length).map_err(error)?;
    }
    if options.preallocate {
        sys::preallocate(&file, length).map_err(|e| StorageError::io(path, Op::Preallocate, e))?;
    }
    Ok((meta.dev(), meta.ino()))
}
