//! Fuzzes the magnet-link parser: any text gives a link or an error, and a parsed
//! link survives printing and parsing again.
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run magnet` from the repository root.

#![no_main]

use bitloop::metainfo::Magnet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(magnet) = Magnet::parse(text) {
            let again = Magnet::parse(&magnet.to_uri()).expect("our own output parses");
            assert_eq!(again.info_hash, magnet.info_hash);
        }
    }
});
