//! Fuzzes the torrent parser: any bytes give a torrent or an error, never a panic,
//! and a torrent that parses has a consistent layout.
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run metainfo` from the repository root.

#![no_main]

bitloop_fuzz::fuzz_target!(|data: &[u8]| bitloop_fuzz::checks::metainfo(data));
