//! Fuzzes the peer wire decoder: any bytes decode to messages, "need more", or an
//! error; a decoded message never claims more bytes than it was given, and
//! re-encoding it gives back exactly those bytes.
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run wire` from the repository root.

#![no_main]

use bitloop::wire::{decode, encode, Handshake, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Handshake::decode(data);
    let limits = Limits { piece_count: 1 + u32::from(data.first().copied().unwrap_or(0)) * 37 };
    let mut at = 0;
    while let Ok(Some((message, used))) = decode(&data[at..], &limits) {
        assert!(used <= data.len() - at);
        let mut again = Vec::new();
        encode(&message, &mut again);
        if !matches!(message, bitloop::wire::Message::Unknown(_)) {
            assert_eq!(again, &data[at..at + used]);
        }
        at += used;
    }
});
