//! Fuzzes the BEP 10 extension-handshake reader (the lenient bencode reader with
//! the handshake's limits, then `reqq`) and the extended message around it.
//! `bitloop_fuzz::checks::extension` says what is asserted; extension messages
//! still to come (ut_metadata, ut_pex) add their readers there.
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run extension` from the repository root.

#![no_main]

bitloop_fuzz::fuzz_target!(|data: &[u8]| bitloop_fuzz::checks::extension(data));
