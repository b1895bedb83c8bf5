//! Fuzzes the magnet-link parser: any text gives a link or an error, and a parsed
//! link survives printing and parsing again.
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run magnet` from the repository root.

#![no_main]

bitloop_fuzz::fuzz_target!(|data: &[u8]| bitloop_fuzz::checks::magnet(data));
