//! A scripted peer on a blocking socket, for tests against a real bitloop
//! process: it handshakes, sends whatever messages a test scripts (honest or
//! hostile), and reads the answers one message at a time with a deadline, so a
//! test can say "this was rejected", "this was served" or "the connection closed".

#![allow(dead_code)] // included with #[path] by several test binaries, each using a part

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bitloop::metainfo::InfoHash;
use bitloop::tracker::PeerId;
use bitloop::wire::{self, BlockRef, Handshake, Limits, Message};

/// A message received, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Got {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Vec<u8>),
    HaveAll,
    HaveNone,
    Request(BlockRef),
    Cancel(BlockRef),
    Piece(BlockRef, Vec<u8>),
    Reject(BlockRef),
    AllowedFast(u32),
    Extended(u8),
    Other,
}

impl Got {
    fn from(message: &Message<'_>) -> Got {
        match *message {
            Message::KeepAlive => Got::KeepAlive,
            Message::Choke => Got::Choke,
            Message::Unchoke => Got::Unchoke,
            Message::Interested => Got::Interested,
            Message::NotInterested => Got::NotInterested,
            Message::Have(p) => Got::Have(p),
            Message::Bitfield(b) => Got::Bitfield(b.to_vec()),
            Message::HaveAll => Got::HaveAll,
            Message::HaveNone => Got::HaveNone,
            Message::Piece { index, begin, data } => Got::Piece(
                BlockRef {
                    index,
                    begin,
                    length: data.len() as u32,
                },
                data.to_vec(),
            ),
            Message::Request(b) => Got::Request(b),
            Message::Cancel(b) => Got::Cancel(b),
            Message::Reject(b) => Got::Reject(b),
            Message::AllowedFast(p) => Got::AllowedFast(p),
            Message::Extended { id, .. } => Got::Extended(id),
            _ => Got::Other,
        }
    }
}

/// What the next read brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Message(Got),
    /// The other side closed (EOF or reset).
    Closed,
    Timeout,
}

/// One scripted connection.
pub struct WirePeer {
    pub stream: TcpStream,
    buf: Vec<u8>,
    limits: Limits,
    /// The other side's handshake.
    pub theirs: Handshake,
}

/// A distinct peer id per scripted peer (the same id twice is one peer connected twice).
pub fn peer_id(n: u32) -> PeerId {
    let mut id = *b"-XX0001-hostile00000";
    id[12..].copy_from_slice(format!("{n:08}").as_bytes());
    PeerId(id)
}

/// A handshake with the Fast extension (`fast`) and no other extension.
pub fn handshake_bytes(info_hash: InfoHash, id: PeerId, fast: bool) -> Vec<u8> {
    let mut reserved = [0u8; 8];
    if fast {
        reserved[wire::FAST.0] |= wire::FAST.1;
    }
    let mut out = Vec::new();
    Handshake {
        reserved,
        info_hash,
        peer_id: id,
    }
    .encode(&mut out);
    out
}

/// Messages as bytes, in order.
pub fn encode_all(messages: &[Message<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        wire::encode(m, &mut out);
    }
    out
}

impl WirePeer {
    /// Connects, sends our handshake and reads theirs (within 10 s).
    pub fn connect(
        addr: SocketAddr,
        info_hash: InfoHash,
        piece_count: u32,
        id: PeerId,
        fast: bool,
    ) -> WirePeer {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        WirePeer::on(stream, info_hash, piece_count, id, fast)
    }

    /// Like [`connect`](Self::connect), but `None` if the other side closes
    /// instead of answering (a torrent still checking its data turns peers away).
    pub fn try_connect(
        addr: SocketAddr,
        info_hash: InfoHash,
        piece_count: u32,
        id: PeerId,
        fast: bool,
    ) -> Option<WirePeer> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
        stream.set_nodelay(true).unwrap();
        stream.write_all(&handshake_bytes(info_hash, id, fast)).ok()?;
        let mut hello = [0u8; wire::HANDSHAKE_LEN];
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.read_exact(&mut hello).ok()?;
        let theirs = Handshake::decode(&hello).ok()??;
        Some(WirePeer::adopt(stream, theirs, piece_count))
    }

    /// The same over a stream already connected (a socket with options of its own).
    pub fn on(
        mut stream: TcpStream,
        info_hash: InfoHash,
        piece_count: u32,
        id: PeerId,
        fast: bool,
    ) -> WirePeer {
        stream.set_nodelay(true).unwrap();
        stream
            .write_all(&handshake_bytes(info_hash, id, fast))
            .expect("send the handshake");
        let mut hello = [0u8; wire::HANDSHAKE_LEN];
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream
            .read_exact(&mut hello)
            .expect("their handshake within 10 s");
        let theirs = Handshake::decode(&hello).unwrap().expect("a whole handshake");
        assert_eq!(theirs.info_hash, info_hash, "they answered for our torrent");
        WirePeer {
            stream,
            buf: Vec::new(),
            limits: Limits::pieces(piece_count),
            theirs,
        }
    }

    /// A stream whose handshakes were exchanged already (`theirs` is what came).
    pub fn adopt(stream: TcpStream, theirs: Handshake, piece_count: u32) -> WirePeer {
        stream.set_nodelay(true).unwrap();
        WirePeer {
            stream,
            buf: Vec::new(),
            limits: Limits::pieces(piece_count),
            theirs,
        }
    }

    /// Sends `messages` in one write.
    pub fn send(&mut self, messages: &[Message<'_>]) {
        self.send_bytes(&encode_all(messages));
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to the peer");
    }

    /// The next whole message within `limit`.
    pub fn next(&mut self, limit: Duration) -> Next {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(got) = self.decoded() {
                return Next::Message(got);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Next::Timeout;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Next::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Next::Closed, // reset
            }
        }
    }

    /// The next whole message if one has arrived, without waiting (`Timeout`:
    /// nothing yet).
    pub fn next_now(&mut self) -> Next {
        if let Some(got) = self.decoded() {
            return Next::Message(got);
        }
        self.stream.set_nonblocking(true).unwrap();
        let mut chunk = [0u8; 64 * 1024];
        let read = self.stream.read(&mut chunk);
        self.stream.set_nonblocking(false).unwrap();
        match read {
            Ok(0) => Next::Closed,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.decoded().map_or(Next::Timeout, Next::Message)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Next::Timeout,
            Err(_) => Next::Closed,
        }
    }

    /// The message at the front of what was read, if whole.
    fn decoded(&mut self) -> Option<Got> {
        match wire::decode(&self.buf, &self.limits) {
            Ok(Some((message, used))) => {
                let got = Got::from(&message);
                self.buf.drain(..used);
                Some(got)
            }
            Ok(None) => None,
            Err(e) => panic!("the peer sent bytes that are not the wire protocol: {e}"),
        }
    }

    /// Skips messages until one for which `pick` returns something, within `limit`.
    pub fn until<T>(&mut self, limit: Duration, what: &str, mut pick: impl FnMut(&Got) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Next::Message(got) => {
                    if let Some(found) = pick(&got) {
                        return found;
                    }
                }
                other => panic!("waiting for {what}: {other:?} instead"),
            }
        }
    }

    /// Every message that arrives within `limit` (the connection stays open).
    pub fn collect_for(&mut self, limit: Duration) -> Vec<Got> {
        let deadline = Instant::now() + limit;
        let mut all = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Next::Message(got) => all.push(got),
                Next::Timeout => return all,
                Next::Closed => panic!("closed after {} messages: {:?}", all.len(), all.last()),
            }
        }
    }

    /// Reads (and drops) messages until the other side closes, within `limit`.
    pub fn expect_closed(&mut self, limit: Duration, what: &str) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Next::Closed => return,
                Next::Timeout => panic!("{what}: still open after {limit:?}"),
                Next::Message(_) => {}
            }
        }
    }

    /// Reads the messages sent right after the handshake (the bitfield or have-all,
    /// allowed-fast pieces), until `unchoke` if `wait_unchoke`, else for a moment.
    /// Returns the allowed-fast pieces offered.
    pub fn greeting(&mut self, wait_unchoke: bool) -> Vec<u32> {
        let mut offered = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let left = if wait_unchoke {
                left
            } else {
                left.min(Duration::from_millis(300))
            };
            match self.next(left) {
                Next::Message(Got::AllowedFast(p)) => offered.push(p),
                Next::Message(Got::Unchoke) if wait_unchoke => return offered,
                Next::Message(_) => {}
                Next::Timeout if !wait_unchoke => return offered,
                other => panic!("greeting: {other:?} (unchoke awaited: {wait_unchoke})"),
            }
        }
    }
}

/// Block `begin..begin+length` of `piece` in a torrent of `piece_length`.
pub fn block(piece: u32, begin: u32, length: u32) -> BlockRef {
    BlockRef {
        index: piece,
        begin,
        length,
    }
}

/// The bytes of `b` in the torrent's data (one file, or the files concatenated).
pub fn bytes_of(data: &[u8], piece_length: u64, b: BlockRef) -> &[u8] {
    let start = b.index as usize * piece_length as usize + b.begin as usize;
    &data[start..start + b.length as usize]
}
