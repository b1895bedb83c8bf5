//! Fuzzes an HTTP tracker's response: the response reader in an arbitrary
//! chunking, then the announce and scrape body parsers. `bitloop_fuzz::http_stream`
//! says what is asserted.
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run tracker` from the repository root.

#![no_main]

bitloop_fuzz::fuzz_target!(|data: &[u8]| bitloop_fuzz::checks::tracker(data));
