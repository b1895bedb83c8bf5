//! Fuzzes the torrent parser: any bytes must give a torrent or an error, never a
//! panic, and a torrent that parses must have a consistent layout.
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run metainfo` from the repository root.

#![no_main]

use bitloop::metainfo::Metainfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(torrent) = Metainfo::parse(data) {
        let layout = torrent.layout();
        let mut covered = 0;
        for piece in 0..layout.piece_count() {
            covered += layout.piece_spans(piece).expect("piece in range").map(|s| s.len).sum::<u64>();
        }
        assert_eq!(covered, torrent.total_length());
    }
});
