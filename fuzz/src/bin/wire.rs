//! Fuzzes the peer wire decoder as a connection receives it: a stream (with or
//! without a handshake first) in an arbitrary chunking, with `Limits` from the
//! input. `bitloop_fuzz::peer_stream` says what is asserted.
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run wire` from the repository root.

#![no_main]

bitloop_fuzz::fuzz_target!(|data: &[u8]| bitloop_fuzz::checks::wire(data));
