//! Fuzzes tracker responses: the HTTP response reader (in every chunking), the
//! bencoded announce body, and BEP 15 datagrams. Errors are fine; panics are not.
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run tracker` from the repository root.

#![no_main]

use bitloop::tracker::http::{parse_announce, ResponseReader};
use bitloop::tracker::udp::parse_reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_announce(data);
    let _ = parse_reply(data, data.len() % 2 == 0);
    let split = data.first().map_or(0, |b| *b as usize).min(data.len());
    let mut reader = ResponseReader::new();
    if let Ok(None) = reader.push(&data[..split]) {
        if let Ok(None) = reader.push(&data[split..]) {
            let _ = reader.finish();
        }
    }
});
