//! Payloads too big for `Content::make` (which builds its file in memory a byte at
//! a time): a file of up to gigabytes written a MiB at a time, its torrent, and
//! comparisons that stream instead of reading whole files.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use bitloop::metainfo::create::{create_torrent, CreateOptions};
use bitloop::metainfo::Metainfo;

use super::seeders::Content;

const MIB: usize = 1 << 20;

/// Writes `size` pseudo-random bytes: one random MiB, each copy stamped with its
/// index and `seed`, so that no two pieces are alike.
pub fn write_big_file(path: &Path, size: u64, seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut block = vec![0u8; MIB];
    for word in block.chunks_exact_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.copy_from_slice(&state.to_le_bytes());
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = std::io::BufWriter::with_capacity(MIB, File::create(path).unwrap());
    let mut left = size;
    let mut index = 0u64;
    while left > 0 {
        block[..8].copy_from_slice(&(index ^ seed.rotate_left(32)).to_le_bytes());
        let n = left.min(MIB as u64) as usize;
        file.write_all(&block[..n]).unwrap();
        left -= n as u64;
        index += 1;
    }
    file.flush().unwrap();
}

/// One file of `size` bytes (named `big.bin`) and its torrent, without trackers.
pub fn big_content(size: u64, piece_length: u64) -> Content {
    big_content_with(size, piece_length, Vec::new())
}

/// The same, announcing to `trackers`.
pub fn big_content_with(size: u64, piece_length: u64, trackers: Vec<String>) -> Content {
    let dir = tempfile::tempdir().unwrap();
    let save_path = dir.path().join("seed");
    let file = save_path.join("big.bin");
    write_big_file(&file, size, 7);
    let options = CreateOptions {
        trackers,
        piece_length: Some(piece_length),
        ..CreateOptions::default()
    };
    let bytes = create_torrent(&file, &options, &mut |_, _| {}).unwrap();
    let torrent_path = dir.path().join("big.torrent");
    std::fs::write(&torrent_path, &bytes).unwrap();
    Content {
        torrent: Metainfo::parse(&bytes).unwrap(),
        dir,
        save_path,
        torrent_path,
    }
}

/// Whether two files hold the same bytes, compared a MiB at a time.
pub fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = match (File::open(a), File::open(b)) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return false,
    };
    if a.metadata().unwrap().len() != b.metadata().unwrap().len() {
        return false;
    }
    let (mut x, mut y) = (vec![0u8; MIB], vec![0u8; MIB]);
    loop {
        let n = read_full(&mut a, &mut x);
        let m = read_full(&mut b, &mut y);
        if n != m || x[..n] != y[..m] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

fn read_full(file: &mut File, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]).unwrap() {
            0 => break,
            n => got += n,
        }
    }
    got
}

/// Asserts every file of `content` under `output` equals the seeded original.
pub fn assert_same_files(content: &Content, output: &Path) {
    for file in &content.torrent.info.files {
        assert!(
            same_bytes(&output.join(&file.path), &content.save_path.join(&file.path)),
            "{} differs from the original",
            file.path.display()
        );
    }
}

/// The bytes of the pieces `pieces` of `torrent` (the last piece may be short).
pub fn piece_bytes(torrent: &Metainfo, pieces: impl IntoIterator<Item = u32>) -> u64 {
    let length = torrent.info.piece_length;
    let total = torrent.total_length();
    pieces
        .into_iter()
        .map(|p| length.min(total - p as u64 * length))
        .sum()
}
