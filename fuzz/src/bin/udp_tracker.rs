//! Fuzzes BEP 15 tracker datagrams: the reply decoder over IPv4 and IPv6, and a
//! transaction fed the datagram (the first byte picks the variant; see
//! `bitloop_fuzz::checks::udp_tracker`).
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run udp_tracker` from the repository root.

#![no_main]

bitloop_fuzz::fuzz_target!(|data: &[u8]| bitloop_fuzz::checks::udp_tracker(data));
