//! The peer wire decoder (`wire::decode`, `Handshake::decode`) fed streams in
//! random chunkings, through the wire fuzz target's own check.

use bitloop::metainfo::InfoHash;
use bitloop::tracker::PeerId;
use bitloop::wire::{decode, encode, BlockRef, Handshake, Limits, Message, WireError, BLOCK, MAX_EXTENDED};

use super::gen::{mutate, run_cases, Rng};
use crate::peer_stream::{check, receive_peer};
use crate::stream::StreamInput;

/// A piece count: usually small, sometimes large enough for big bitfields.
fn piece_count(rng: &mut Rng) -> u32 {
    match rng.below(8) {
        0 | 1 => rng.below(9) as u32,
        2 => rng.below(70_000) as u32,
        _ => 1 + rng.below(300) as u32,
    }
}

fn block(rng: &mut Rng) -> BlockRef {
    BlockRef {
        index: rng.u32(),
        begin: rng.u32(),
        length: rng.u32(),
    }
}

/// A valid bitfield for `pieces` (spare bits clear).
fn bitfield(rng: &mut Rng, pieces: u32) -> Vec<u8> {
    let mut bits = rng.bytes((pieces as usize).div_ceil(8));
    let spare = bits.len() * 8 - pieces as usize;
    if let Some(last) = bits.last_mut() {
        *last &= !((1u16 << spare) - 1) as u8;
    }
    bits
}

/// A valid encoded message of any kind for `limits`.
fn message(rng: &mut Rng, limits: &Limits, out: &mut Vec<u8>) {
    let max = if rng.one_in(200) { BLOCK as usize } else { 40 };
    let kind = rng.below(19);
    let payload = if matches!(kind, 8 | 16 | 17) {
        rng.some_bytes(max)
    } else {
        Vec::new()
    };
    let bits = if kind == 6 {
        bitfield(
            rng,
            limits.piece_count.expect("streams are made for a known torrent"),
        )
    } else {
        Vec::new()
    };
    let unknown = rng.pick(&[10, 11, 12, 18, 19, 21, 99, 255]);
    let message = match kind {
        0 => Message::KeepAlive,
        1 => Message::Choke,
        2 => Message::Unchoke,
        3 => Message::Interested,
        4 => Message::NotInterested,
        5 => Message::Have(rng.u32()),
        6 => Message::Bitfield(&bits),
        7 => Message::Request(block(rng)),
        8 => Message::Piece {
            index: rng.u32(),
            begin: rng.u32(),
            data: &payload,
        },
        9 => Message::Cancel(block(rng)),
        10 => Message::Port(rng.u16()),
        11 => Message::Suggest(rng.u32()),
        12 => Message::HaveAll,
        13 => Message::HaveNone,
        14 => Message::Reject(block(rng)),
        15 => Message::AllowedFast(rng.u32()),
        16 | 17 => Message::Extended {
            id: rng.u8(),
            payload: &payload,
        },
        _ => Message::Unknown(unknown),
    };
    encode(&message, out);
}

/// A valid stream: maybe a handshake, then up to 30 messages. Returns the stream
/// and the bytes of each item in it.
fn valid_stream(rng: &mut Rng, limits: &Limits, handshake: bool) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut stream = Vec::new();
    let mut items = Vec::new();
    if handshake {
        let mut ours = Handshake::ours(InfoHash(rng.bytes(20).try_into().unwrap()), PeerId::generate());
        ours.reserved = rng.bytes(8).try_into().unwrap();
        ours.encode(&mut stream);
        items.push(stream.clone());
    }
    for _ in 0..rng.below(31) {
        let start = stream.len();
        message(rng, limits, &mut stream);
        items.push(stream[start..].to_vec());
    }
    (stream, items)
}

/// A random header: piece count, handshake flag, chunk sizes.
fn input_bytes(rng: &mut Rng, pieces: u32, handshake: bool, stream: &[u8]) -> Vec<u8> {
    let sizes = rng.some_bytes(12);
    StreamInput::encode(
        pieces | (rng.u32() & 0xff00_0000),
        handshake as u8,
        &sizes,
        stream,
    )
}

#[test]
fn valid_streams_decode_to_what_was_sent_in_any_chunking() {
    run_cases("valid wire streams", 0x5eed_0001, 10_000, |rng| {
        let limits = Limits::pieces(piece_count(rng));
        let handshake = rng.one_in(2);
        let (stream, items) = valid_stream(rng, &limits, handshake);
        let got = receive_peer(&rng.chunking(), &stream, limits, handshake);
        assert_eq!(got.failed, None);
        assert_eq!(got.items, items);
        assert_eq!(got.buffered, 0);
    });
}

#[test]
fn mutated_streams_never_break_the_receiver() {
    let mut failures = 0;
    run_cases("mutated wire streams", 0x5eed_0002, 20_000, |rng| {
        let pieces = piece_count(rng);
        let handshake = rng.one_in(3);
        let (mut stream, _) = valid_stream(rng, &Limits::pieces(pieces), handshake);
        mutate(rng, &mut stream);
        let input = input_bytes(rng, pieces, handshake, &stream);
        failures += check(&StreamInput::parse(&input)).failed.is_some() as usize;
    });
    // The mutations must reach the error paths, or this test checks little.
    assert!(failures > 2_000, "only {failures} mutated streams were refused");
}

#[test]
fn random_bytes_never_break_the_receiver() {
    run_cases("random wire bytes", 0x5eed_0003, 30_000, |rng| {
        let mut input = rng.some_bytes(400);
        if rng.one_in(4) && input.len() > 6 {
            input[6] = 19; // the handshake's first byte, with the flag often set
        }
        let _ = check(&StreamInput::parse(&input));
    });
}

/// The largest length prefix each id may carry (what `Limits` allows).
fn max_length(id: u8, limits: &Limits) -> usize {
    match id {
        7 => 9 + BLOCK as usize,
        5 => {
            1 + (limits
                .piece_count
                .map_or(bitloop::metainfo::MAX_PIECES, |c| c as usize))
            .div_ceil(8)
        }
        20 => MAX_EXTENDED,
        _ => 17,
    }
}

#[test]
fn an_oversized_prefix_is_refused_as_soon_as_its_id_arrives() {
    for pieces in [0, 1, 8, 9, 1000, 600_000] {
        let limits = Limits::pieces(pieces);
        for id in 0..=255u8 {
            let max = max_length(id, &limits);
            for length in [max, max + 1, u32::MAX as usize] {
                let mut head = (length as u32).to_be_bytes().to_vec();
                head.push(id);
                let got = decode(&head, &limits);
                if length > max {
                    assert_eq!(
                        got,
                        Err(WireError::TooLong {
                            id: Some(id),
                            length,
                            limit: max
                        }),
                        "id {id}, {pieces} pieces"
                    );
                } else if length > 1 {
                    assert_eq!(got, Ok(None), "id {id}, length {length}: wait for the body");
                    assert!(4 + length <= limits.max_message());
                }
            }
        }
    }
}
