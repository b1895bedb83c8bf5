//! Fuzzes the DNS answer decoder: compression pointers, truncation, odd records.
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run dns` from the repository root.

#![no_main]

use bitloop::dns::message::decode_answer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_answer(data);
});
