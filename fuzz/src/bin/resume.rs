//! Fuzzes the resume file decoder: any bytes must give resume data or an error,
//! never a panic, and what decodes must encode back to the same bytes (so nothing
//! is half-understood). Each input is tried as it is and with a valid checksum
//! appended, so the checks behind the checksum are reached too.
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run resume` from the repository root.

#![no_main]

use bitloop::storage::ResumeData;
use libfuzzer_sys::fuzz_target;
use sha1::{Digest, Sha1};

fuzz_target!(|data: &[u8]| {
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&Sha1::digest(data));
    for bytes in [data, &sealed[..]] {
        if let Ok(resume) = ResumeData::decode(bytes) {
            assert_eq!(resume.encode(), bytes);
        }
    }
});
