//! `Storage`, the one-torrent interface today's client uses, kept until the client
//! moves to [`PieceStore`]: a thin wrapper over a store and a pool of its own, so it
//! already hashes while downloading and never buffers a piece.

use std::path::Path;

use super::check::{CheckProgress, Checker};
use super::error::Result;
use super::pool::FilePool;
use super::store::{PieceStore, StoreOptions};
use crate::metainfo::{Layout, Metainfo};
use crate::swarm::Bitfield;

/// Most files kept open at once by one [`Storage`].
pub const MAX_OPEN_FILES: usize = 32;

/// One torrent's files on disk, with its own file pool.
pub struct Storage {
    store: PieceStore,
    files: FilePool,
}

impl Storage {
    /// Prepares `root` for the torrent: folders and sparse files of the right size.
    pub fn create(root: &Path, torrent: &Metainfo) -> Result<Storage> {
        let mut files = FilePool::new(MAX_OPEN_FILES);
        let id = files.new_store_id();
        let store = PieceStore::open(id, root, torrent, &StoreOptions::default())?;
        Ok(Storage { store, files })
    }

    pub fn layout(&self) -> &Layout {
        self.store.layout()
    }

    /// Open files right now (bounded by [`MAX_OPEN_FILES`]).
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    /// Writes a block at `begin` of `piece`.
    pub fn write_block(&mut self, piece: u32, begin: u32, data: &[u8]) -> Result<()> {
        self.store.write_block(&mut self.files, piece, begin, data)
    }

    /// Reads a block (for seeding).
    pub fn read_block(&mut self, piece: u32, begin: u32, out: &mut [u8]) -> Result<()> {
        self.store.read_block(&mut self.files, piece, begin, out)
    }

    /// Checks a piece whose blocks are all written against its SHA-1.
    pub fn verify(&mut self, piece: u32) -> Result<bool> {
        self.store.verify_piece(&mut self.files, piece)
    }

    /// Resume by re-check: the pieces already on disk and correct.
    pub fn check_existing(&mut self) -> Result<Bitfield> {
        let all = Bitfield::full(self.store.layout().piece_count());
        let mut checker = Checker::new(&self.store, &all);
        loop {
            if let CheckProgress::Done(good) = checker.step(&mut self.store, &mut self.files, u64::MAX)? {
                return Ok(good);
            }
        }
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
