//! Helpers for the storage tests: torrents with known contents (multi-file, with
//! BEP 47 padding files), writing pieces in or out of order, and small tmpfs
//! mounts for full-disk and read-only cases.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use bitloop::metainfo::Metainfo;
use bitloop::random::Xorshift;
use bitloop::storage::{FilePool, PieceStore, StoreOptions};
use sha1::{Digest, Sha1};

/// A torrent and the bytes it describes (padding included, as zeros).
pub struct Fixture {
    pub meta: Metainfo,
    pub data: Vec<u8>,
}

/// One file of a fixture: name, length, whether it is a padding file.
pub type Spec<'a> = (&'a str, u64, bool);

fn s(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out
}

impl Fixture {
    /// A multi-file torrent `t/…` with `files`, random contents from `seed`.
    pub fn new(files: &[Spec], piece_length: u64, seed: u64) -> Fixture {
        let mut rng = Xorshift::new(seed);
        let mut data = Vec::new();
        let mut list = b"l".to_vec();
        for &(name, length, pad) in files {
            if pad {
                data.resize(data.len() + length as usize, 0);
            } else {
                data.extend((0..length).map(|_| rng.next_u64() as u8));
            }
            list.push(b'd');
            if pad {
                list.extend(s(b"attr"));
                list.extend(s(b"p"));
            }
            list.extend(format!("6:lengthi{length}e4:pathl").into_bytes());
            for part in name.split('/') {
                list.extend(s(part.as_bytes()));
            }
            list.extend(b"ee");
        }
        list.push(b'e');
        let pieces: Vec<u8> = data
            .chunks(piece_length as usize)
            .flat_map(|piece| Sha1::digest(piece).to_vec())
            .collect();
        let mut torrent = b"d4:infod5:files".to_vec();
        torrent.extend(list);
        torrent.extend(s(b"name"));
        torrent.extend(s(b"t"));
        torrent.extend(format!("12:piece lengthi{piece_length}e6:pieces").into_bytes());
        torrent.extend(s(&pieces));
        torrent.extend(b"ee");
        let meta = Metainfo::parse(&torrent).expect("fixture torrent parses");
        Fixture { meta, data }
    }

    /// One file of `length` random bytes.
    pub fn single(length: u64, piece_length: u64, seed: u64) -> Fixture {
        Fixture::new(&[("file.bin", length, false)], piece_length, seed)
    }

    pub fn piece_count(&self) -> u32 {
        self.meta.info.pieces.len() as u32
    }

    pub fn piece(&self, piece: u32) -> &[u8] {
        let length = self.meta.info.piece_length as usize;
        let start = piece as usize * length;
        &self.data[start..(start + length).min(self.data.len())]
    }

    /// Opens a store for this torrent in `root`.
    pub fn open(&self, files: &mut FilePool, root: &Path) -> PieceStore {
        let id = files.new_store_id();
        PieceStore::open(id, root, &self.meta, &StoreOptions::default()).expect("store opens")
    }
}

/// The order blocks of a piece are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    InOrder,
    Reversed,
}

/// Writes `piece` of `fixture` in blocks of `block` bytes.
pub fn write_piece(
    store: &mut PieceStore,
    files: &mut FilePool,
    fixture: &Fixture,
    piece: u32,
    block: usize,
    order: Order,
) {
    let data = fixture.piece(piece);
    let mut begins: Vec<usize> = (0..data.len()).step_by(block).collect();
    if order == Order::Reversed {
        begins.reverse();
    }
    for begin in begins {
        let end = (begin + block).min(data.len());
        store
            .write_block(files, piece, begin as u32, &data[begin..end])
            .expect("block written");
    }
}

/// Writes every piece in order and verifies it.
pub fn download_all(store: &mut PieceStore, files: &mut FilePool, fixture: &Fixture) {
    for piece in 0..fixture.piece_count() {
        write_piece(store, files, fixture, piece, 16384, Order::InOrder);
        assert!(
            store.verify_piece(files, piece).unwrap(),
            "piece {piece} verifies"
        );
    }
}

/// A tmpfs mounted for one test, unmounted when dropped (even on panic).
pub struct Tmpfs {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (for `mount -o size=`, like `2m`). Fails loudly when
    /// it cannot: these tests need root (CI runs as root), they never skip.
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            path.to_str().unwrap(),
        ]);
        Tmpfs { _dir: dir, path }
    }

    /// Makes the mount read-only (root can write through chmod 0555, not through this).
    pub fn remount_read_only(&self) {
        run(&["mount", "-o", "remount,ro", self.path.to_str().unwrap()]);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn run(args: &[&str]) {
    let output = Command::new(args[0]).args(&args[1..]).output();
    match output {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "`{}` failed: {}. These tests mount a small tmpfs and need root (CI runs as root); \
             run them as root, e.g. `sudo -E cargo test --test storage_disk`.",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("cannot run `{}`: {e} (install util-linux's mount)", args[0]),
    }
}
