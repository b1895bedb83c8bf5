//! Fuzzes the DNS answer decoder: compression pointers, truncation, odd records.
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run dns` from the repository root.

#![no_main]

bitloop_fuzz::fuzz_target!(|data: &[u8]| bitloop_fuzz::checks::dns(data));
