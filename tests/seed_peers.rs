//! Peer bookkeeping of a seeder, seen from scripted peers on loopback against the
//! real binary (`bitloop seed`): seeds let each other go, a second connection of
//! one peer replaces the first cleanly, and the `--json` summary counts every
//! peer, including those still connected at the stop.

#[path = "common/binary.rs"]
mod binary;
mod common;
#[path = "common/wire_peer.rs"]
mod wire_peer;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use binary::Bitloop;
use bitloop::tracker::PeerId;
use bitloop::wire::{Message, BLOCK};
use common::bounded::accept_within;
use common::seeders::Content;
use wire_peer::{block, bytes_of, handshake_bytes, peer_id, Got, WirePeer};

const PIECE: u64 = 32768;
const SHORT: Duration = Duration::from_secs(5);

struct Fixture {
    content: Content,
    data: Vec<u8>,
    pieces: u32,
}

fn fixture() -> Fixture {
    let content = Content::make(false, 1 << 20, PIECE, vec![]);
    let data = std::fs::read(content.save_path.join("single.bin")).unwrap();
    let pieces = content.torrent.info.pieces.len() as u32;
    Fixture {
        content,
        data,
        pieces,
    }
}

impl Fixture {
    fn seed(&self, args: &[&str]) -> Bitloop {
        Bitloop::seed(&self.content.torrent_path, &self.content.save_path, args)
    }

    fn connect(&self, seeder: &Bitloop, id: PeerId) -> WirePeer {
        WirePeer::connect(
            seeder.addr(),
            self.content.torrent.info_hash,
            self.pieces,
            id,
            true,
        )
    }

    /// A bitfield of every piece but `missing`.
    fn all_but(&self, missing: u32) -> Vec<u8> {
        let mut bits = vec![0u8; (self.pieces as usize).div_ceil(8)];
        for p in (0..self.pieces).filter(|p| *p != missing) {
            bits[p as usize / 8] |= 0x80 >> (p % 8);
        }
        bits
    }

    /// Interested, unchoked, then `count` blocks requested and received intact.
    fn download_blocks(&self, peer: &mut WirePeer, count: u32) {
        peer.send(&[Message::Interested]);
        peer.greeting(true);
        let asked: Vec<_> = (0..count).map(|p| block(p, 0, BLOCK)).collect();
        let requests: Vec<Message> = asked.iter().map(|b| Message::Request(*b)).collect();
        peer.send(&requests);
        for b in asked {
            let data = peer.until(SHORT, "a piece", |g| match g {
                Got::Piece(got, data) if *got == b => Some(data.clone()),
                Got::Piece(..) | Got::Reject(_) => panic!("{g:?} instead of {b:?}"),
                _ => None,
            });
            assert_eq!(data, bytes_of(&self.data, PIECE, b), "{b:?}");
        }
    }
}

#[test]
fn a_seed_that_connects_to_a_seed_is_let_go() {
    let fx = fixture();
    let seeder = fx.seed(&[]);
    let mut peer = fx.connect(&seeder, peer_id(1));
    peer.send(&[Message::HaveAll]);
    peer.expect_closed(SHORT, "a seed connected to a seed");
}

#[test]
fn a_peer_that_becomes_a_seed_is_let_go() {
    let fx = fixture();
    let seeder = fx.seed(&[]);
    let mut peer = fx.connect(&seeder, peer_id(2));
    let last = fx.pieces - 1;
    peer.send(&[Message::Bitfield(&fx.all_but(last))]);
    peer.greeting(false);
    peer.send(&[Message::Have(last)]);
    peer.expect_closed(SHORT, "a peer that became a seed");
}

#[test]
fn a_second_connection_of_a_peer_we_dialed_replaces_the_first() {
    let fx = fixture();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let us = listener.local_addr().unwrap().to_string();
    let seeder = fx.seed(&["--peer", &us]);
    // Our id is below bitloop's (`-BL…`), so the connection we open wins over the
    // one it opened: BEP-less, but the rule both sides of a pair apply.
    let id = PeerId(*b"-AA0001-duplicate001");
    let (mut first, _) = accept_within(&listener, Duration::from_secs(20), "bitloop dialing its --peer");
    first.set_read_timeout(Some(SHORT)).unwrap();
    let mut hello = [0u8; 68];
    first.read_exact(&mut hello).expect("bitloop's handshake");
    first
        .write_all(&handshake_bytes(fx.content.torrent.info_hash, id, true))
        .unwrap();
    first
        .write_all(&wire_peer::encode_all(&[Message::HaveNone]))
        .unwrap();
    let theirs = bitloop::wire::Handshake::decode(&hello).unwrap().unwrap();
    let mut first = WirePeer::adopt(first, theirs, fx.pieces);
    first.until(SHORT, "have-all from the seeder", |g| {
        (*g == Got::HaveAll).then_some(())
    });

    let mut second = fx.connect(&seeder, id);
    second.send(&[Message::HaveNone]);
    first.expect_closed(SHORT, "the first connection, replaced");
    fx.download_blocks(&mut second, 3);
}

#[test]
fn a_peer_still_connected_at_the_stop_is_in_the_json_summary() {
    let fx = fixture();
    let seeder = fx.seed(&["--json"]);
    let id = peer_id(4);
    let mut peer = fx.connect(&seeder, id);
    peer.send(&[Message::HaveNone]);
    fx.download_blocks(&mut peer, 4);
    let summary = seeder.stop(Duration::from_secs(10)).json();
    let ours = String::from_utf8_lossy(&id.0).into_owned();
    let entry = summary["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == ours.as_str())
        .unwrap_or_else(|| panic!("{ours} not among the peers: {summary}"));
    assert_eq!(entry["uploaded"], 4 * u64::from(BLOCK), "{summary}");
}

/// The control for the test above: a peer that leaves before the stop is counted.
#[test]
fn a_peer_that_left_is_in_the_json_summary() {
    let fx = fixture();
    let mut seeder = fx.seed(&["--json"]);
    let id = peer_id(5);
    let mut peer = fx.connect(&seeder, id);
    peer.send(&[Message::HaveNone]);
    fx.download_blocks(&mut peer, 4);
    drop(peer);
    seeder.wait_no_peers(Duration::from_secs(15));
    let summary = seeder.stop(Duration::from_secs(10)).json();
    let ours = String::from_utf8_lossy(&id.0).into_owned();
    let entry = summary["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == ours.as_str())
        .unwrap_or_else(|| panic!("{ours} not among the peers: {summary}"));
    assert_eq!(entry["uploaded"], 4 * u64::from(BLOCK), "{summary}");
    assert_eq!(
        summary["torrents"][0]["uploaded"],
        4 * u64::from(BLOCK),
        "{summary}"
    );
}
