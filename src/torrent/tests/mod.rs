//! Sans-IO tests of the torrent core: a [`Torrent`] on a tiny torrent in a
//! temporary folder, driven by fake peers that send byte strings made with
//! `wire::encode`, on a virtual clock (`t0 + Duration`), with what it sends
//! decoded back from the [`Output`] per connection, as the peer would read it.
//!
//! The harness ([`Fixture`]) plays the driver's part: it gives out connection ids,
//! keeps each peer's unread input as a stream buffer would, routes every
//! `Action::Send` to that connection's decoder and records every `Action::Close`.
//! It refuses what no driver could carry out: a send to a connection that is
//! closed, or a second close of one connection.

mod choking;
mod connecting;
mod download;
mod haves;
mod hostile;
mod integrity;
mod lifecycle;
mod pool;
mod runs;
mod sent;
mod upload;

pub use sent::*;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::connect::Refusal;
use super::{Action, Output, Torrent, TorrentConfig, TorrentEvent};
use crate::metainfo::create::{create_torrent, CreateOptions};
use crate::metainfo::Metainfo;
use crate::reactor::HandleId;
use crate::storage::{PieceStore, StoreOptions};
use crate::swarm::{Bitfield, PeerKey};
use crate::tracker::PeerId;
use crate::wire::{self, BlockRef, Handshake, Limits, Message, BLOCK, EXTENSION_PROTOCOL, FAST};

/// Our peer id in every fixture.
pub const OUR_ID: PeerId = PeerId(*b"-BL0001-ourselves000");
/// Our listening port, as the extension handshake tells it.
pub const OUR_PORT: u16 = 6881;
/// 16 KiB, as a `u64` for offsets.
pub const KIB16: u64 = BLOCK as u64;

/// The reserved bits a fake peer's handshake sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub fast: bool,
    pub ext: bool,
}

pub const PLAIN: Caps = Caps {
    fast: false,
    ext: false,
};
pub const FAST_ONLY: Caps = Caps {
    fast: true,
    ext: false,
};
pub const FAST_EXT: Caps = Caps {
    fast: true,
    ext: true,
};
pub const EXT_ONLY: Caps = Caps {
    fast: false,
    ext: true,
};

/// `127.0.0.<host>:<port>`.
pub fn addr(host: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, host], port))
}

/// One fake peer: the torrent's key for it and its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub key: PeerKey,
    pub conn: HandleId,
    pub addr: SocketAddr,
    pub id: PeerId,
}

/// How to build a fixture.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Bytes of the torrent's single file.
    pub total: usize,
    pub piece_length: u64,
    /// Pieces we have at the start (their data is on disk).
    pub have: Vec<u32>,
    pub config: TorrentConfig,
    /// Call `set_metadata` at once (otherwise the test does, with `load_metadata`).
    pub metadata: bool,
}

impl Default for Setup {
    /// Four pieces of two blocks each (128 KiB), nothing on disk.
    fn default() -> Setup {
        Setup {
            total: 4 * 2 * BLOCK as usize,
            piece_length: 2 * KIB16,
            have: Vec::new(),
            config: TorrentConfig::default(),
            metadata: true,
        }
    }
}

impl Setup {
    /// `pieces` pieces of `blocks` blocks each.
    pub fn pieces(pieces: u32, blocks: u32) -> Setup {
        Setup {
            total: (pieces * blocks) as usize * BLOCK as usize,
            piece_length: u64::from(blocks) * KIB16,
            ..Setup::default()
        }
    }

    /// We have every piece.
    pub fn seeding(mut self) -> Setup {
        let count = (self.total as u64).div_ceil(self.piece_length) as u32;
        self.have = (0..count).collect();
        self
    }

    pub fn config(mut self, f: impl FnOnce(&mut TorrentConfig)) -> Setup {
        f(&mut self.config);
        self
    }

    pub fn start(self) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let data: Vec<u8> = (0..self.total as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(src.join("payload"), &data).unwrap();
        let options = CreateOptions {
            piece_length: Some(self.piece_length),
            ..CreateOptions::default()
        };
        let bytes = create_torrent(&src.join("payload"), &options, &mut |_, _| {}).expect("create");
        let meta = Metainfo::parse(&bytes).expect("parse");
        // The pieces we have are on disk before storage opens the file.
        let root = dir.path().join("dl");
        std::fs::create_dir_all(&root).unwrap();
        let mut on_disk = vec![0u8; data.len()];
        for &p in &self.have {
            let start = p as usize * self.piece_length as usize;
            let end = (start + self.piece_length as usize).min(data.len());
            on_disk[start..end].copy_from_slice(&data[start..end]);
        }
        std::fs::write(root.join("payload"), &on_disk).unwrap();
        Fixture::from_parts(dir, root, meta, data, self.have, self.config, self.metadata)
    }
}

/// A torrent and its fake peers on a virtual clock.
pub struct Fixture {
    pub torrent: Torrent,
    pub out: Output,
    pub t0: Instant,
    pub now: Instant,
    pub meta: Metainfo,
    /// The torrent's content, for blocks the fake peers send.
    pub data: Vec<u8>,
    /// The downloaded file.
    pub file: PathBuf,
    pub root: PathBuf,
    have: Vec<u32>,
    wires: HashMap<HandleId, Wire>,
    next_conn: usize,
    next_id: u32,
    events: Vec<TorrentEvent>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// A fixture on a torrent whose file is `root/<name>` (made by the caller).
    pub fn from_parts(
        dir: tempfile::TempDir,
        root: PathBuf,
        meta: Metainfo,
        data: Vec<u8>,
        have: Vec<u32>,
        config: TorrentConfig,
        metadata: bool,
    ) -> Fixture {
        let t0 = Instant::now();
        let file = root.join(&meta.info.files[0].path);
        let mut fx = Fixture {
            torrent: Torrent::new(meta.info_hash, OUR_ID, OUR_PORT, config),
            out: Output::default(),
            t0,
            now: t0,
            meta,
            data,
            file,
            root,
            have,
            wires: HashMap::new(),
            next_conn: 1,
            next_id: 1,
            events: Vec::new(),
            _dir: dir,
        };
        if metadata {
            fx.load_metadata();
        }
        fx
    }

    /// `set_metadata` with storage on the fixture's folder and its pieces.
    pub fn load_metadata(&mut self) {
        let id = self.out.files.new_store_id();
        let storage =
            PieceStore::open(id, &self.root, &self.meta, &StoreOptions::default()).expect("storage");
        let mut have = Bitfield::new(self.meta.info.pieces.len() as u32);
        for &p in &self.have {
            have.set(p);
        }
        self.torrent
            .set_metadata(self.now, &self.meta, storage, have, None, &mut self.out);
        self.route();
    }

    pub fn piece_count(&self) -> u32 {
        self.meta.info.pieces.len() as u32
    }

    pub fn piece_size(&self, piece: u32) -> u64 {
        let start = u64::from(piece) * self.meta.info.piece_length;
        self.meta.info.piece_length.min(self.data.len() as u64 - start)
    }

    /// The `n`th block of `piece`.
    pub fn block(&self, piece: u32, n: u32) -> BlockRef {
        let begin = n * BLOCK;
        BlockRef {
            index: piece,
            begin,
            length: (self.piece_size(piece) - u64::from(begin)).min(KIB16) as u32,
        }
    }

    /// Every block of every piece, in order.
    pub fn all_blocks(&self) -> Vec<BlockRef> {
        (0..self.piece_count())
            .flat_map(|p| (0..self.piece_size(p).div_ceil(KIB16) as u32).map(move |n| (p, n)))
            .map(|(p, n)| self.block(p, n))
            .collect()
    }

    /// The true bytes of `b`.
    pub fn bytes_of(&self, b: BlockRef) -> Vec<u8> {
        let start = (u64::from(b.index) * self.meta.info.piece_length + u64::from(b.begin)) as usize;
        self.data[start..start + b.length as usize].to_vec()
    }

    /// What the downloaded file holds at `b`.
    pub fn on_disk(&self, b: BlockRef) -> Vec<u8> {
        let file = std::fs::read(&self.file).expect("read the file");
        let start = (u64::from(b.index) * self.meta.info.piece_length + u64::from(b.begin)) as usize;
        file[start..start + b.length as usize].to_vec()
    }

    // ------------------------------------------------------------ time

    /// Moves the clock by `d` (no timeout handled).
    pub fn wait(&mut self, d: Duration) {
        self.now += d;
    }

    /// Moves the clock by `d` and handles what is due then.
    pub fn tick(&mut self, d: Duration) {
        self.now += d;
        self.timeout();
    }

    /// `handle_timeout` now.
    pub fn timeout(&mut self) {
        self.torrent.handle_timeout(self.now, &mut self.out);
        self.route();
    }

    /// Plays the driver's timer until `t0 + at`: sleeps until `poll_timeout`, handles
    /// it, and so on. Panics if the torrent asks to be woken at the same instant
    /// again and again (a busy loop). Returns how many times it woke.
    pub fn run_until(&mut self, at: Duration) -> usize {
        let end = self.t0 + at;
        let mut wakeups = 0;
        let mut same_instant = 0;
        while let Some(next) = self.torrent.poll_timeout() {
            if next > end {
                break;
            }
            if next <= self.now {
                same_instant += 1;
                assert!(
                    same_instant < 3,
                    "busy loop: poll_timeout {:?} after handling {:?}",
                    next.saturating_duration_since(self.t0),
                    self.now.saturating_duration_since(self.t0)
                );
            } else {
                same_instant = 0;
                self.now = next;
            }
            self.timeout();
            wakeups += 1;
        }
        self.now = self.now.max(end);
        wakeups
    }

    // ------------------------------------------------------------ output

    /// Carries out the output as a driver would: sends go to their connection's
    /// decoder, closes are recorded.
    pub fn route(&mut self) {
        let limits = match self.torrent.loaded() {
            Some(_) => Limits::pieces(self.piece_count()),
            None => Limits { piece_count: None },
        };
        let Output { bytes, actions, .. } = &mut self.out;
        for action in actions.drain(..) {
            match action {
                Action::Send { peer, conn, range } => {
                    let wire = self.wires.get_mut(&conn).expect("a send to a connection we made");
                    assert_eq!(wire.key, peer, "the send names the connection's peer");
                    assert!(!wire.closed, "a send to {conn} after its close");
                    wire.from_us.extend_from_slice(&bytes[range]);
                    wire.decode(&limits);
                }
                Action::Close { conn } => {
                    let wire = self
                        .wires
                        .get_mut(&conn)
                        .expect("a close of a connection we made");
                    assert!(!wire.closed, "{conn} closed twice");
                    wire.closed = true;
                }
            }
        }
        self.out.clear();
        self.events
            .extend(std::iter::from_fn(|| self.torrent.poll_event()));
    }

    /// What we sent `peer` since the last call.
    pub fn recv(&mut self, peer: &Peer) -> Vec<Sent> {
        std::mem::take(&mut self.wire(peer).decoded)
    }

    /// Drops what we sent `peer` so far.
    pub fn forget_sent(&mut self, peer: &Peer) {
        self.wire(peer).decoded.clear();
    }

    /// Whether we closed `peer`'s connection.
    pub fn closed(&self, peer: &Peer) -> bool {
        self.wires[&peer.conn].closed
    }

    /// The events since the last call.
    pub fn events(&mut self) -> Vec<TorrentEvent> {
        std::mem::take(&mut self.events)
    }

    fn wire(&mut self, peer: &Peer) -> &mut Wire {
        self.wires.get_mut(&peer.conn).expect("a peer of this fixture")
    }

    // ------------------------------------------------------------ peers

    fn new_conn(&mut self) -> HandleId {
        self.next_conn += 1;
        HandleId::from_token(mio::Token(self.next_conn))
    }

    fn new_id(&mut self) -> PeerId {
        self.next_id += 1;
        let mut id = *b"-FK0001-000000000000";
        id[12..].copy_from_slice(format!("{:08}", self.next_id).as_bytes());
        PeerId(id)
    }

    /// The handshake a fake peer sends.
    pub fn handshake_of(&self, id: PeerId, caps: Caps) -> Handshake {
        let mut reserved = [0u8; 8];
        if caps.fast {
            reserved[FAST.0] |= FAST.1;
        }
        if caps.ext {
            reserved[EXTENSION_PROTOCOL.0] |= EXTENSION_PROTOCOL.1;
        }
        Handshake {
            reserved,
            info_hash: self.meta.info_hash,
            peer_id: id,
        }
    }

    /// We start connecting to `addr` (as if `poll_connect` had returned it).
    pub fn dial(&mut self, addr: SocketAddr) -> Peer {
        let conn = self.new_conn();
        let id = self.new_id();
        let key = self.torrent.vacant_key();
        self.wires.insert(
            conn,
            Wire {
                key,
                ..Wire::default()
            },
        );
        let got = self
            .torrent
            .handle_connecting(self.now, addr, conn, &mut self.out);
        assert_eq!(got, key, "vacant_key names the next peer");
        self.route();
        Peer { key, conn, addr, id }
    }

    /// The TCP connect of `peer` completed.
    pub fn connected(&mut self, peer: &Peer) {
        self.torrent
            .handle_connected(self.now, peer.key, peer.conn, &mut self.out);
        self.route();
    }

    /// The TCP connect of `peer` failed with `kind` (refused, timed out, …).
    pub fn connect_failed(&mut self, peer: &Peer, kind: std::io::ErrorKind) {
        let error = std::io::Error::from(kind);
        self.torrent
            .handle_connect_failed(self.now, peer.key, peer.conn, &error, &mut self.out);
        self.route();
    }

    /// `peer` sends its handshake.
    pub fn send_handshake(&mut self, peer: &Peer, caps: Caps) -> usize {
        let mut bytes = Vec::new();
        self.handshake_of(peer.id, caps).encode(&mut bytes);
        self.send_raw(peer, &bytes)
    }

    /// An outgoing peer through connect and both handshakes; what we sent it is
    /// left to read (our handshake first).
    pub fn outgoing(&mut self, addr: SocketAddr, caps: Caps) -> Peer {
        let peer = self.dial(addr);
        self.connected(&peer);
        self.send_handshake(&peer, caps);
        assert!(!self.closed(&peer), "handshake accepted");
        peer
    }

    /// A peer that connects to us; the session has read its handshake.
    pub fn incoming(&mut self, addr: SocketAddr, caps: Caps) -> Result<Peer, Refusal> {
        let id = self.new_id();
        self.incoming_as(addr, id, caps)
    }

    pub fn incoming_as(&mut self, addr: SocketAddr, id: PeerId, caps: Caps) -> Result<Peer, Refusal> {
        let conn = self.new_conn();
        let key = self.torrent.vacant_key();
        self.wires.insert(
            conn,
            Wire {
                key,
                ..Wire::default()
            },
        );
        let handshake = self.handshake_of(id, caps);
        let result = self
            .torrent
            .handle_incoming(self.now, addr, conn, &handshake, &mut self.out);
        self.route();
        match result {
            Ok(got) => {
                assert_eq!(got, key);
                Ok(Peer { key, conn, addr, id })
            }
            Err(refusal) => {
                self.wires.remove(&conn);
                Err(refusal)
            }
        }
    }

    /// `peer` sends bytes: they join its unread input, which `handle_bytes` reads
    /// as far as it can. Returns the bytes still unread.
    pub fn send_raw(&mut self, peer: &Peer, bytes: &[u8]) -> usize {
        let mut input = std::mem::take(&mut self.wire(peer).to_us);
        input.extend_from_slice(bytes);
        let used = self
            .torrent
            .handle_bytes(self.now, peer.key, &input, &mut self.out);
        assert!(used <= input.len());
        input.drain(..used);
        let left = input.len();
        self.wire(peer).to_us = input;
        self.route();
        left
    }

    /// `peer` sends messages (in one write). Returns the bytes still unread.
    pub fn send(&mut self, peer: &Peer, messages: &[Message<'_>]) -> usize {
        let mut bytes = Vec::new();
        for m in messages {
            wire::encode(m, &mut bytes);
        }
        self.send_raw(peer, &bytes)
    }

    /// `peer` sends the true bytes of `b`.
    pub fn deliver(&mut self, peer: &Peer, b: BlockRef) -> usize {
        let data = self.bytes_of(b);
        self.deliver_data(peer, b, &data)
    }

    /// `peer` sends `data` as block `b`.
    pub fn deliver_data(&mut self, peer: &Peer, b: BlockRef, data: &[u8]) -> usize {
        self.send(
            peer,
            &[Message::Piece {
                index: b.index,
                begin: b.begin,
                data,
            }],
        )
    }

    /// `peer` sends wrong bytes as block `b`.
    pub fn deliver_garbage(&mut self, peer: &Peer, b: BlockRef) -> usize {
        let data: Vec<u8> = self.bytes_of(b).iter().map(|x| !x).collect();
        self.deliver_data(peer, b, &data)
    }

    /// The peer's connection is gone (end of file).
    pub fn disconnect(&mut self, peer: &Peer) {
        self.torrent
            .handle_disconnected(self.now, peer.key, peer.conn, "test", &mut self.out);
        self.route();
    }

    /// The outstanding requests the torrent holds at `peer` (its own view).
    pub fn in_flight(&self, peer: &Peer) -> usize {
        self.torrent
            .pool()
            .session(peer.key)
            .filter(|_| self.torrent.pool().is_current(peer.key, peer.conn))
            .map_or(0, |s| s.requests.len())
    }
}

/// A fixture with one outgoing peer that has every piece and unchoked us, and
/// what we sent it after the handshake.
pub fn with_seed(setup: Setup, caps: Caps) -> (Fixture, Peer, Vec<Sent>) {
    let mut fx = setup.start();
    let seed = fx.outgoing(addr(2, 7000), caps);
    let all = Bitfield::full(fx.piece_count());
    if caps.fast {
        fx.send(&seed, &[Message::HaveAll, Message::Unchoke]);
    } else {
        fx.send(&seed, &[Message::Bitfield(all.as_bytes()), Message::Unchoke]);
    }
    let sent = fx.recv(&seed);
    (fx, seed, sent)
}
