//! Property tests for metainfo: create → parse round trips, the layout, magnets.

use std::path::Path;

use bitloop::metainfo::create::{create_torrent, CreateOptions};
use bitloop::metainfo::magnet::percent_encode;
use bitloop::metainfo::{FileEntry, Info, Layout, Magnet, Metainfo};
use proptest::prelude::*;
use sha1::{Digest, Sha1};

fn file_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_ é-]{1,12}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

/// Reads `len` bytes at `offset` of `path`.
fn read_at(path: &Path, offset: u64, len: u64) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    bytes[offset as usize..(offset + len) as usize].to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Whatever the files, a created torrent parses back to the same files, and every
    /// piece hash matches the bytes the layout says belong to that piece.
    #[test]
    fn create_then_parse_round_trips(
        files in prop::collection::btree_map(file_name(), 0u64..70_000, 1..6),
        piece_shift in 14u32..17,
        private in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("set");
        std::fs::create_dir(&root).unwrap();
        let mut seed = 1u8;
        for (name, len) in &files {
            let bytes: Vec<u8> = (0..*len).map(|i| (i as u8).wrapping_mul(seed)).collect();
            std::fs::write(root.join(name), bytes).unwrap();
            seed = seed.wrapping_add(2);
        }
        let total: u64 = files.values().sum();
        let options = CreateOptions {
            piece_length: Some(1 << piece_shift),
            private,
            trackers: vec!["http://127.0.0.1:1/announce".into()],
            ..CreateOptions::default()
        };
        let created = create_torrent(&root, &options, &mut |_, _| {});
        if total == 0 {
            prop_assert!(created.is_err());
            return Ok(());
        }
        let torrent = Metainfo::parse(&created.unwrap()).unwrap();
        prop_assert_eq!(torrent.info.private, private);
        prop_assert_eq!(torrent.total_length(), total);
        let listed: Vec<_> = torrent.info.files.iter().map(|f| (f.path.clone(), f.length)).collect();
        let expected: Vec<_> = files.iter().map(|(n, l)| (Path::new("set").join(n), *l)).collect();
        prop_assert_eq!(listed, expected);

        let layout = torrent.layout();
        for piece in 0..layout.piece_count() {
            let mut hasher = Sha1::new();
            for span in layout.piece_spans(piece).unwrap() {
                let file = &layout.files()[span.file];
                hasher.update(read_at(&tmp.path().join(&file.path), span.file_offset, span.len));
            }
            let digest: [u8; 20] = hasher.finalize().into();
            prop_assert_eq!(digest, torrent.info.pieces[piece as usize], "piece {}", piece);
        }
    }

    /// Every byte of every file is covered exactly once, in order.
    #[test]
    fn layout_covers_every_byte_once(
        lengths in prop::collection::vec(0u64..5_000, 1..12),
        piece_length in 1u64..4_096,
    ) {
        let total: u64 = lengths.iter().sum();
        prop_assume!(total > 0);
        let info = Info {
            name: "t".into(),
            piece_length,
            pieces: vec![[0; 20]; total.div_ceil(piece_length) as usize],
            files: lengths.iter().enumerate()
                .map(|(i, &length)| FileEntry { path: format!("f{i}").into(), length, pad: false })
                .collect(),
            single_file: false,
            private: false,
        };
        let layout = Layout::new(&info);
        let mut next = vec![0u64; lengths.len()];
        let mut covered = 0;
        for piece in 0..layout.piece_count() {
            let mut in_piece = 0;
            for span in layout.piece_spans(piece).unwrap() {
                prop_assert!(span.len > 0);
                prop_assert_eq!(span.file_offset, next[span.file]);
                next[span.file] += span.len;
                in_piece += span.len;
            }
            prop_assert_eq!(in_piece, layout.piece_size(piece).unwrap());
            covered += in_piece;
        }
        prop_assert_eq!(covered, total);
        prop_assert_eq!(next, lengths);
    }

    /// Hex and base32 spellings of one hash are the same magnet; names survive encoding.
    #[test]
    fn magnet_spellings_agree(hash in any::<[u8; 20]>(), name in "\\PC{0,30}") {
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        let b32 = base32(&hash);
        let a = Magnet::parse(&format!("magnet:?xt=urn:btih:{hex}&dn={}", percent_encode(name.as_bytes()))).unwrap();
        let b = Magnet::parse(&format!("magnet:?xt=urn:btih:{b32}")).unwrap();
        prop_assert_eq!(a.info_hash, b.info_hash);
        prop_assert_eq!(a.info_hash.0, hash);
        prop_assert_eq!(a.name.as_deref(), Some(name.as_str()));
        prop_assert_eq!(Magnet::parse(&a.to_uri()).unwrap(), a);
    }
}

/// Reference base32 encoder (RFC 4648), written independently of the decoder under test.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    bits.chunks(5)
        .map(|c| ALPHABET[c.iter().fold(0usize, |acc, &b| acc << 1 | b as usize)] as char)
        .collect()
}
