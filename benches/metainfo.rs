//! Metainfo benchmarks: parsing a torrent with 100,000 pieces, and SHA-1
//! verification of those pieces' data.
//!
//! Run with `cargo bench --bench metainfo`. Figures are medians of several runs.

use std::time::Instant;

use bitloop::metainfo::Metainfo;
use sha1::{Digest, Sha1};

const PIECES: usize = 100_000;
const PIECE_LENGTH: usize = 16 * 1024;
/// Distinct piece contents; piece `i` holds `RING[i % RING]`. Keeps 1.6 GB of
/// "data" in 1 MiB of memory while every piece is still hashed in full.
const RING: usize = 64;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

/// The ring of piece contents and the torrent describing 100,000 such pieces.
fn build() -> (Vec<Vec<u8>>, Vec<u8>) {
    let ring: Vec<Vec<u8>> = (0..RING)
        .map(|r| {
            (0..PIECE_LENGTH)
                .map(|i| (i as u8).wrapping_mul(r as u8 + 1) ^ (r as u8))
                .collect()
        })
        .collect();
    let hashes: Vec<[u8; 20]> = ring.iter().map(|piece| Sha1::digest(piece).into()).collect();
    let mut pieces = Vec::with_capacity(PIECES * 20);
    for i in 0..PIECES {
        pieces.extend_from_slice(&hashes[i % RING]);
    }
    let total = PIECES * PIECE_LENGTH;
    let url = "http://127.0.0.1:1/announce";
    let mut torrent = format!("d8:announce{}:{url}4:infod", url.len()).into_bytes();
    torrent.extend(
        format!(
            "6:lengthi{total}e4:name9:bench.bin12:piece lengthi{PIECE_LENGTH}e6:pieces{}:",
            pieces.len()
        )
        .bytes(),
    );
    torrent.extend_from_slice(&pieces);
    torrent.extend_from_slice(b"ee");
    (ring, torrent)
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = if quick { 1 } else { 7 };
    let (ring, bytes) = build();

    let parse: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let torrent = Metainfo::parse(&bytes).expect("valid");
            assert_eq!(torrent.info.pieces.len(), PIECES);
            started.elapsed().as_secs_f64()
        })
        .collect();
    let parse = median(parse);
    println!(
        "parse: {PIECES}-piece torrent ({:.1} MiB) in {:.2} ms ({:.0} MiB/s)",
        bytes.len() as f64 / (1 << 20) as f64,
        parse * 1e3,
        bytes.len() as f64 / (1 << 20) as f64 / parse
    );

    let torrent = Metainfo::parse(&bytes).unwrap();
    let verify_runs = if quick { 1 } else { 3 };
    let pieces_to_check = if quick { PIECES / 20 } else { PIECES };
    let verify: Vec<f64> = (0..verify_runs)
        .map(|_| {
            let started = Instant::now();
            for (i, expected) in torrent.info.pieces.iter().take(pieces_to_check).enumerate() {
                let digest: [u8; 20] = Sha1::digest(&ring[i % RING]).into();
                assert_eq!(&digest, expected);
            }
            started.elapsed().as_secs_f64()
        })
        .collect();
    let verify = median(verify);
    let gib = (pieces_to_check * PIECE_LENGTH) as f64 / (1u64 << 30) as f64;
    println!(
        "verify: {pieces_to_check} pieces ({gib:.2} GiB) in {verify:.2} s ({:.2} GiB/s SHA-1)",
        gib / verify
    );
}
