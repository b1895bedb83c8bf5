//! Write runs: the blocks at hand in one read that continue each other go to
//! disk in one write, and every block is booked by the time `handle_bytes`
//! returns, whatever ends the run (another piece, a gap, another message, a
//! violation, the end of the bytes) and however the bytes were cut.

use super::*;

/// The bytes of `blocks` as `piece` messages, back to back.
fn blocks_message(fx: &Fixture, blocks: &[BlockRef]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for &b in blocks {
        let data = fx.bytes_of(b);
        wire::encode(
            &Message::Piece {
                index: b.index,
                begin: b.begin,
                data: &data,
            },
            &mut bytes,
        );
    }
    bytes
}

fn writes(fx: &Fixture) -> u64 {
    fx.torrent.store_stats().expect("loaded").writes
}

fn verified(events: &[TorrentEvent]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            TorrentEvent::Verified(p) => Some(*p),
            _ => None,
        })
        .collect()
}

#[test]
fn a_piece_at_hand_in_one_read_is_one_write_and_booked_by_the_end_of_the_call() {
    let (mut fx, seed, sent) = with_seed(Setup::pieces(2, 8), FAST_ONLY);
    assert_eq!(requests(&sent).len(), 16, "every block asked for at once");
    let piece0: Vec<BlockRef> = (0..8).map(|n| fx.block(0, n)).collect();
    let bytes = blocks_message(&fx, &piece0);
    assert_eq!(fx.send_raw(&seed, &bytes), 0);
    assert_eq!(writes(&fx), 1, "eight blocks, one write");
    assert_eq!(verified(&fx.events()), [0], "verified within the same call");
    assert_eq!(fx.torrent.stats().downloaded, 8 * KIB16);
    for &b in &piece0 {
        assert_eq!(fx.on_disk(b), fx.bytes_of(b));
    }
    // The next piece cut in the middle of a block: the run before the cut is
    // written and booked at the end of the first call, the rest in the second.
    let piece1: Vec<BlockRef> = (0..8).map(|n| fx.block(1, n)).collect();
    let bytes = blocks_message(&fx, &piece1);
    let cut = bytes.len() / 2 + 100;
    let left = fx.send_raw(&seed, &bytes[..cut]);
    assert!(left > 0, "a partial block waits");
    let written = fx.torrent.store_stats().unwrap().bytes_written;
    assert_eq!(
        written,
        8 * KIB16 + 4 * KIB16,
        "the four whole blocks are on disk"
    );
    assert_eq!(fx.torrent.stats().downloaded, written);
    assert_eq!(fx.send_raw(&seed, &bytes[cut..]), 0);
    assert_eq!(writes(&fx), 3);
    assert_eq!(verified(&fx.events()), [1]);
    assert!(fx.torrent.is_complete());
    assert_eq!(std::fs::read(&fx.file).unwrap(), fx.data);
}

#[test]
fn a_gap_another_piece_or_another_message_ends_a_run() {
    let (mut fx, seed, _) = with_seed(Setup::pieces(2, 4), FAST_ONLY);
    let b = |n: u32| fx.block(n / 4, n % 4);
    // 0 1 | 3 | 2 (gap, then back) | 4 5 (next piece) | have | 6 7
    let mut bytes = blocks_message(&fx, &[b(0), b(1), b(3), b(2), b(4), b(5)]);
    wire::encode(&Message::Have(1), &mut bytes);
    bytes.extend(blocks_message(&fx, &[b(6), b(7)]));
    assert_eq!(fx.send_raw(&seed, &bytes), 0);
    assert_eq!(writes(&fx), 5);
    let mut pieces = verified(&fx.events());
    pieces.sort();
    assert_eq!(pieces, [0, 1]);
    assert!(fx.torrent.is_complete());
    assert_eq!(std::fs::read(&fx.file).unwrap(), fx.data);
    let store = fx.torrent.store_stats().unwrap();
    assert_eq!(
        store.bytes_out_of_order, KIB16,
        "block 3 came past the prefix, 2 continued it"
    );
}

#[test]
fn blocks_before_a_violation_are_still_written_and_booked() {
    let (mut fx, seed, _) = with_seed(Setup::pieces(2, 4), FAST_ONLY);
    let good: Vec<BlockRef> = (0..3).map(|n| fx.block(0, n)).collect();
    let mut bytes = blocks_message(&fx, &good);
    bytes.extend_from_slice(&u32::MAX.to_be_bytes()); // a block longer than any limit
    bytes.push(7);
    fx.send_raw(&seed, &bytes);
    assert!(fx.closed(&seed), "the violation closes the peer");
    assert_eq!(fx.torrent.stats().downloaded, 3 * KIB16);
    for &b in &good {
        assert_eq!(fx.on_disk(b), fx.bytes_of(b));
    }
}

#[test]
fn a_run_that_cannot_be_written_books_none_of_its_blocks() {
    let (mut fx, seed, _) = with_seed(Setup::pieces(2, 4), FAST_ONLY);
    // Where the file should go there is a folder: opening it to write fails.
    let _ = std::fs::remove_file(&fx.file);
    std::fs::create_dir_all(&fx.file).unwrap();
    let blocks: Vec<BlockRef> = (0..4).map(|n| fx.block(0, n)).collect();
    let bytes = blocks_message(&fx, &blocks);
    fx.send_raw(&seed, &bytes);
    assert_eq!(fx.torrent.stats().downloaded, 0, "nothing booked");
    assert!(
        fx.events()
            .iter()
            .any(|e| matches!(e, TorrentEvent::Failed(why) if why.contains("cannot write"))),
        "the torrent fails, saying why"
    );
}
