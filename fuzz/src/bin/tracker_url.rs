//! Fuzzes tracker URLs (from torrent files) and `Location` headers (from
//! trackers): any text gives a URL bitloop can use, or an error.
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run tracker_url` from the repository root.

#![no_main]

bitloop_fuzz::fuzz_target!(|data: &[u8]| bitloop_fuzz::checks::tracker_url(data));
