//! Fuzzes the one HTTP/1.1 response reader (trackers and torrents fetched by URL)
//! with bytes in arbitrary chunkings: the first byte seeds the chunk sizes. Errors
//! are fine; panics, and a body past its limit, are not.
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run http` from the repository root.

#![no_main]

use bitloop::http::ResponseReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, mut rest)) = data.split_first() else {
        return;
    };
    let limit = 1 + usize::from(seed) * 64;
    let mut reader = ResponseReader::with_body_limit(limit);
    let mut state = u32::from(seed) | 1;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % 97 + 1).min(rest.len());
        match reader.push(&rest[..n]) {
            Ok(None) => rest = &rest[n..],
            Ok(Some(response)) => {
                assert!(response.body.len() <= limit);
                return;
            }
            Err(_) => return,
        }
    }
    if let Ok(response) = reader.finish() {
        assert!(response.body.len() <= limit);
    }
});
