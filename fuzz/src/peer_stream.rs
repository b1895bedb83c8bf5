//! The peer wire stream as a connection receives it: optionally a handshake, then
//! length-prefixed messages, in any chunking. One check, used by the `wire` fuzz
//! target and by the normal suite (`tests/parsers_arbitrary.rs` includes this file
//! next to `stream.rs`, so it must name that module `stream` too).
//!
//! What it asserts, for any bytes:
//! - nothing panics, and the decoder never uses more bytes than it was given;
//! - "need more" is only said while less than one largest message is buffered
//!   (a peer cannot make us hold more than that);
//! - every decoded message encodes back to exactly the bytes it came from
//!   (unknown ids, which are skipped, excepted);
//! - the messages and the error are the same whatever the chunking.

use bitloop::wire::{decode, encode, Handshake, Limits, Message, WireError, HANDSHAKE_LEN};

use super::stream::{receive, Chunking, Received, Step, StreamInput};

/// A decoded item (the handshake or a message): the bytes it was decoded from.
pub type Item = Vec<u8>;

/// The piece count and handshake flag a [`StreamInput`] stands for.
pub fn parameters(input: &StreamInput<'_>) -> (Limits, bool) {
    // 24 bits reach bitfields far larger than the biggest other message; flag 2
    // stands for a torrent whose metadata is not known yet (any bitfield size).
    let limits = Limits {
        piece_count: (input.flags & 2 == 0).then_some(input.param & 0x00ff_ffff),
    };
    (limits, input.flags & 1 != 0)
}

/// Receives `stream` in `chunking`, checking every step.
pub fn receive_peer(
    chunking: &Chunking,
    stream: &[u8],
    limits: Limits,
    handshake_first: bool,
) -> Received<Item, WireError> {
    let mut want_handshake = handshake_first;
    receive(chunking, stream, |buf| {
        if want_handshake {
            return match Handshake::decode(buf) {
                Ok(Some(handshake)) => {
                    let mut again = Vec::new();
                    handshake.encode(&mut again);
                    assert_eq!(again, buf[..HANDSHAKE_LEN], "handshake re-encodes differently");
                    want_handshake = false;
                    Step::Took(buf[..HANDSHAKE_LEN].to_vec(), HANDSHAKE_LEN)
                }
                Ok(None) => {
                    assert!(
                        buf.len() < HANDSHAKE_LEN,
                        "need more with a whole handshake buffered"
                    );
                    Step::NeedMore
                }
                Err(e) => Step::Failed(e),
            };
        }
        match decode(buf, &limits) {
            Ok(Some((message, used))) => {
                assert!(used <= buf.len());
                if !matches!(message, Message::Unknown(_)) {
                    let mut again = Vec::new();
                    encode(&message, &mut again);
                    assert_eq!(again, buf[..used], "{message:?} re-encodes differently");
                }
                Step::Took(buf[..used].to_vec(), used)
            }
            Ok(None) => {
                assert!(
                    buf.len() < limits.max_message(),
                    "need more with {} bytes buffered, more than the largest message ({})",
                    buf.len(),
                    limits.max_message()
                );
                Step::NeedMore
            }
            Err(e) => Step::Failed(e),
        }
    })
}

/// The whole check on one input; returns what the stream in one read gave.
pub fn check(input: &StreamInput<'_>) -> Received<Item, WireError> {
    let (limits, handshake) = parameters(input);
    let chunked = receive_peer(&input.chunking, input.stream, limits, handshake);
    let whole = receive_peer(&Chunking::whole(), input.stream, limits, handshake);
    assert_eq!(chunked.items, whole.items, "the chunking changed the messages");
    assert_eq!(chunked.failed, whole.failed, "the chunking changed the error");
    if whole.failed.is_none() {
        assert_eq!(chunked.buffered, whole.buffered);
    }
    whole
}
