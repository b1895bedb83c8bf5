//! Verified storage: blocks go to their files through the layout, and each piece is
//! checked against its SHA-1 once its last block is written.
//!
//! Memory stays flat: blocks are written to their files as they arrive, so no piece
//! is ever buffered whole; verification reads the finished piece back (from the page
//! cache, just written) through **one** reusable piece-sized buffer. So at most one
//! piece buffer exists per torrent, whatever the number of peers or pieces in flight.
//!
//! Files are created sparse (`set_len`), padding files (BEP 47) never, and at most
//! [`MAX_OPEN_FILES`] file handles stay open (least recently used closed first).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use crate::metainfo::{Layout, Metainfo};
use crate::swarm::Bitfield;

/// Most files kept open at once.
pub const MAX_OPEN_FILES: usize = 32;

/// Why storage failed: the file and the OS error.
#[derive(Debug)]
pub struct StorageError {
    pub path: PathBuf,
    pub error: io::Error,
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

impl std::error::Error for StorageError {}

pub type Result<T> = std::result::Result<T, StorageError>;

/// One torrent's files on disk.
pub struct Storage {
    layout: Layout,
    paths: Vec<PathBuf>,
    pad: Vec<bool>,
    hashes: Vec<[u8; 20]>,
    /// Open files, most recently used last.
    open: Vec<(usize, File)>,
    /// The one piece buffer, reused for every verification.
    piece: Vec<u8>,
}

impl Storage {
    /// Prepares `root` for the torrent: folders and sparse files of the right size.
    pub fn create(root: &Path, torrent: &Metainfo) -> Result<Storage> {
        let layout = torrent.layout();
        let mut paths = Vec::new();
        let mut pad = Vec::new();
        for (file, entry) in layout.files().iter().zip(&torrent.info.files) {
            let path = root.join(&file.path);
            pad.push(entry.pad);
            if !entry.pad {
                let error = |error| StorageError {
                    path: path.clone(),
                    error,
                };
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(error)?;
                }
                let handle = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(error)?;
                if handle.metadata().map_err(error)?.len() != file.length {
                    handle.set_len(file.length).map_err(error)?;
                }
            }
            paths.push(path);
        }
        Ok(Storage {
            layout,
            paths,
            pad,
            hashes: torrent.info.pieces.clone(),
            open: Vec::new(),
            piece: Vec::new(),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Open files right now (bounded by [`MAX_OPEN_FILES`]).
    pub fn open_files(&self) -> usize {
        self.open.len()
    }

    fn file(&mut self, index: usize) -> Result<&File> {
        if let Some(at) = self.open.iter().position(|(i, _)| *i == index) {
            let entry = self.open.remove(at);
            self.open.push(entry);
        } else {
            let path = &self.paths[index];
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|error| StorageError {
                    path: path.clone(),
                    error,
                })?;
            if self.open.len() == MAX_OPEN_FILES {
                self.open.remove(0);
            }
            self.open.push((index, file));
        }
        Ok(&self.open.last().expect("just pushed").1)
    }

    /// Writes a block at `begin` of `piece`. The caller has checked the range.
    pub fn write_block(&mut self, piece: u32, begin: u32, data: &[u8]) -> Result<()> {
        let spans: Vec<_> = self
            .layout
            .spans(piece, u64::from(begin), data.len() as u64)
            .expect("checked range")
            .collect();
        let mut at = 0;
        for span in spans {
            let chunk = &data[at..at + span.len as usize];
            at += span.len as usize;
            if self.pad[span.file] {
                continue; // zeros by definition
            }
            let path = self.paths[span.file].clone();
            self.file(span.file)?
                .write_all_at(chunk, span.file_offset)
                .map_err(|error| StorageError { path, error })?;
        }
        Ok(())
    }

    /// Reads a block (for seeding and for verification).
    pub fn read_block(&mut self, piece: u32, begin: u32, out: &mut [u8]) -> Result<()> {
        let spans: Vec<_> = self
            .layout
            .spans(piece, u64::from(begin), out.len() as u64)
            .expect("checked range")
            .collect();
        let mut at = 0;
        for span in spans {
            let chunk = &mut out[at..at + span.len as usize];
            at += span.len as usize;
            if self.pad[span.file] {
                chunk.fill(0);
                continue;
            }
            let path = self.paths[span.file].clone();
            self.file(span.file)?
                .read_exact_at(chunk, span.file_offset)
                .map_err(|error| StorageError { path, error })?;
        }
        Ok(())
    }

    /// Reads the whole piece back and checks its SHA-1.
    pub fn verify(&mut self, piece: u32) -> Result<bool> {
        let size = self.layout.piece_size(piece).expect("valid piece") as usize;
        let mut buffer = std::mem::take(&mut self.piece);
        buffer.resize(size, 0);
        let read = self.read_block(piece, 0, &mut buffer);
        let ok = read.is_ok() && Sha1::digest(&buffer).as_slice() == self.hashes[piece as usize];
        self.piece = buffer;
        read.map(|_| ok)
    }

    /// Resume by re-check: the pieces already on disk and correct.
    pub fn check_existing(&mut self) -> Result<Bitfield> {
        let count = self.layout.piece_count();
        let mut have = Bitfield::new(count);
        for piece in 0..count {
            if self.verify(piece)? {
                have.set(piece);
            }
        }
        Ok(have)
    }

    /// Whether any file already held data before we started (so a re-check is useful).
    pub fn has_existing_data(root: &Path, torrent: &Metainfo) -> bool {
        torrent
            .info
            .files
            .iter()
            .any(|f| !f.pad && f.length > 0 && root.join(&f.path).metadata().is_ok_and(|m| m.len() > 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::create::{create_torrent, CreateOptions};

    #[test]
    fn blocks_across_files_verify_and_a_bad_piece_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("d")).unwrap();
        let a: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let b: Vec<u8> = (0..30_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(src.join("a"), &a).unwrap();
        std::fs::write(src.join("d/b"), &b).unwrap();
        std::fs::write(src.join("empty"), b"").unwrap();
        let options = CreateOptions {
            piece_length: Some(16384),
            ..Default::default()
        };
        let torrent = Metainfo::parse(&create_torrent(&src, &options, &mut |_, _| {}).unwrap()).unwrap();
        let all: Vec<u8> = a.iter().chain(&b).copied().collect();

        let out = tmp.path().join("out");
        let mut storage = Storage::create(&out, &torrent).unwrap();
        assert!(out.join("src/empty").exists(), "zero-length files are created");
        assert_eq!(
            storage.check_existing().unwrap().count(),
            0,
            "sparse zeros verify as nothing"
        );
        for piece in 0..storage.layout().piece_count() {
            let start = piece as usize * 16384;
            let size = storage.layout().piece_size(piece).unwrap() as usize;
            // Blocks of 1000 bytes in reverse: order and size do not matter.
            let mut begin = size;
            while begin > 0 {
                let from = begin.saturating_sub(1000);
                storage
                    .write_block(piece, from as u32, &all[start + from..start + begin])
                    .unwrap();
                begin = from;
            }
            assert!(storage.verify(piece).unwrap());
        }
        assert_eq!(std::fs::read(out.join("src/a")).unwrap(), a);
        assert_eq!(std::fs::read(out.join("src/d/b")).unwrap(), b);
        storage.write_block(1, 5, b"X").unwrap();
        assert!(!storage.verify(1).unwrap());
        let mut again = Storage::create(&out, &torrent).unwrap();
        let have = again.check_existing().unwrap();
        assert_eq!(
            have.iter_ones().collect::<Vec<_>>(),
            vec![0, 2, 3],
            "resume keeps the good pieces"
        );
    }
}
