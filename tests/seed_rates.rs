//! Rate limits of the real binary, measured by the other end over a 5 s transfer
//! on loopback: `bitloop seed --max-upload-rate` as seen by a scripted leecher
//! counting the bytes it receives, and `bitloop download --max-download-rate` as
//! seen by a scripted seeder counting the bytes it manages to send. Each must be
//! within 10 % of the limit.

#[path = "common/binary.rs"]
mod binary;
mod common;
#[path = "common/wire_peer.rs"]
mod wire_peer;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use binary::Bitloop;
use bitloop::wire::{BlockRef, Handshake, Message, BLOCK};
use common::bounded::{accept_within, join_within};
use common::seeders::Content;
use wire_peer::{block, bytes_of, encode_all, handshake_bytes, peer_id, Got, Next, WirePeer};

const PIECE: u64 = 65536;
/// 2 MiB/s, as given on the command line.
const RATE: u64 = 2 << 20;
const RATE_ARG: &str = "2M";
const WINDOW: Duration = Duration::from_secs(5);
/// 16 MiB: eight seconds at the limit, more than a window and its lead-in.
const SIZE: usize = 16 << 20;

/// Bytes that moved in `[from, from + WINDOW)`, from samples `(when, total so far)`.
fn moved_in_window(samples: &[(Instant, u64)], from: Instant) -> u64 {
    let total_at = |t: Instant| {
        samples
            .iter()
            .take_while(|(at, _)| *at < t)
            .last()
            .map_or(0, |s| s.1)
    };
    total_at(from + WINDOW) - total_at(from)
}

fn assert_near(what: &str, bytes: u64) {
    let rate = bytes as f64 / WINDOW.as_secs_f64();
    let error = (rate - RATE as f64).abs() / RATE as f64;
    eprintln!(
        "{what}: {:.3} MiB/s against {RATE_ARG}/s ({:.1} % off)",
        rate / (1 << 20) as f64,
        error * 100.0
    );
    assert!(
        error <= 0.10,
        "{what}: {rate:.0} B/s over {WINDOW:?}, limit {RATE} B/s"
    );
}

fn blocks(pieces: u32) -> VecDeque<BlockRef> {
    (0..pieces)
        .flat_map(|p| (0..(PIECE as u32 / BLOCK)).map(move |i| block(p, i * BLOCK, BLOCK)))
        .collect()
}

#[test]
fn the_upload_limit_holds_within_10_percent_as_the_leecher_measures_it() {
    let content = Content::make(false, SIZE, PIECE, vec![]);
    let data = std::fs::read(content.save_path.join("single.bin")).unwrap();
    let pieces = content.torrent.info.pieces.len() as u32;
    let seeder = Bitloop::seed(
        &content.torrent_path,
        &content.save_path,
        &["--max-upload-rate", RATE_ARG],
    );
    let mut peer = WirePeer::connect(seeder.addr(), content.torrent.info_hash, pieces, peer_id(1), true);
    peer.send(&[Message::HaveNone, Message::Interested]);
    peer.greeting(true);
    // Keep 100 requests outstanding (under its reqq), so that only the limit
    // paces what arrives.
    let mut wanted = blocks(pieces);
    let mut outstanding = 0;
    let mut samples: Vec<(Instant, u64)> = Vec::new();
    let mut total = 0u64;
    let end = Instant::now() + Duration::from_secs(30);
    while samples
        .first()
        .is_none_or(|first| first.0 + WINDOW + Duration::from_millis(200) > Instant::now())
    {
        let mut asks = Vec::new();
        while outstanding < 100 {
            let Some(b) = wanted.pop_front() else { break };
            asks.push(Message::Request(b));
            outstanding += 1;
        }
        if !asks.is_empty() {
            peer.send(&asks);
        }
        if outstanding == 0 {
            break; // all of it in less than a window: the limit did not hold
        }
        assert!(Instant::now() < end, "no 5 s of transfer within 30 s");
        match peer.next(Duration::from_secs(5)) {
            Next::Message(Got::Piece(b, bytes)) => {
                assert!(bytes == bytes_of(&data, PIECE, b), "{b:?}");
                outstanding -= 1;
                total += bytes.len() as u64;
                samples.push((Instant::now(), total));
            }
            Next::Message(Got::Reject(b)) => panic!("{b:?} rejected"),
            Next::Message(_) => {}
            other => panic!("upload: {other:?} after {total} bytes"),
        }
    }
    // From the first block on: the bucket starts empty, so the window holds at
    // most one burst (1/8 s) more than the rate.
    assert_near("upload", moved_in_window(&samples, samples[0].0));
}

/// A seeder scripted in the test, serving every request as fast as the socket
/// takes it; returns when the connection ends, with `(when, bytes sent so far)`
/// after each block.
fn serve_all(
    listener: TcpListener,
    content_hash: bitloop::metainfo::InfoHash,
    data: Vec<u8>,
    pieces: u32,
) -> Vec<(Instant, u64)> {
    let (mut stream, _) = accept_within(&listener, Duration::from_secs(30), "bitloop download");
    // A small send buffer: what we count as sent is then what bitloop has nearly
    // taken, not what waits in our kernel.
    socket2::SockRef::from(&stream)
        .set_send_buffer_size(16 << 10)
        .unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = [0u8; 68];
    stream.read_exact(&mut hello).expect("bitloop's handshake");
    let theirs = Handshake::decode(&hello).unwrap().unwrap();
    stream
        .write_all(&handshake_bytes(content_hash, peer_id(2), true))
        .unwrap();
    stream
        .write_all(&encode_all(&[Message::HaveAll, Message::Unchoke]))
        .unwrap();
    let mut peer = WirePeer::adopt(stream, theirs, pieces);
    let mut queue: VecDeque<BlockRef> = VecDeque::new();
    let (mut samples, mut total) = (Vec::new(), 0u64);
    let mut piece = Vec::new();
    loop {
        // Take every request that has arrived; wait for one only when idle.
        loop {
            let got = if queue.is_empty() {
                peer.next(Duration::from_secs(10))
            } else {
                peer.next_now()
            };
            match got {
                Next::Message(Got::Request(b)) => queue.push_back(b),
                Next::Message(Got::Cancel(b)) => queue.retain(|q| *q != b),
                Next::Message(_) => {}
                Next::Closed => return samples,
                Next::Timeout if queue.is_empty() => panic!("bitloop asked for nothing for 10 s"),
                Next::Timeout => break,
            }
        }
        let b = queue.pop_front().expect("a request");
        piece.clear();
        let message = Message::Piece {
            index: b.index,
            begin: b.begin,
            data: bytes_of(&data, PIECE, b),
        };
        bitloop::wire::encode(&message, &mut piece);
        if peer.stream.write_all(&piece).is_err() {
            return samples;
        }
        total += piece.len() as u64;
        samples.push((Instant::now(), total));
    }
}

#[test]
fn the_download_limit_holds_within_10_percent_as_the_seeder_measures_it() {
    let content = Content::make(false, SIZE, PIECE, vec![]);
    let data = std::fs::read(content.save_path.join("single.bin")).unwrap();
    let pieces = content.torrent.info.pieces.len() as u32;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let us = listener.local_addr().unwrap().to_string();
    let hash = content.torrent.info_hash;
    let sender = std::thread::spawn(move || serve_all(listener, hash, data, pieces));
    let output = content.dir.path().join("download");
    let leecher = Bitloop::download(
        &content.torrent_path,
        &output,
        &["--peer", &us, "--max-download-rate", RATE_ARG, "--quiet"],
    );
    let exit = leecher.wait_exit(Duration::from_secs(60));
    assert!(exit.status.success(), "{exit:?}");
    content.assert_identical(&output);
    let samples = join_within(sender, Duration::from_secs(10), "the scripted seeder");
    // The first second fills the pipes (kernel buffers on both sides); from then
    // on we can send only as fast as bitloop reads.
    let from = samples[0].0 + Duration::from_secs(1);
    assert!(
        samples.last().unwrap().0 > from + WINDOW,
        "the transfer lasted more than 6 s"
    );
    assert_near("download", moved_in_window(&samples, from));
}
