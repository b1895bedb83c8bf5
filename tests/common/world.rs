//! A session and scripted fake peers on one loop, for the leak proofs and the
//! seed-bug regressions: the code under test and its peers share one reactor, so
//! a counting allocator sees everything and nothing runs on another thread.

use std::time::Duration;

use bitloop::client::session::{AddOptions, Session, SessionConfig, Source, TorrentKey};
use bitloop::client::Owner;
use bitloop::metainfo::InfoHash;
use bitloop::reactor::{Config, Event, HandleId, Handler, Reactor, RunMode};
use bitloop::torrent::{Torrent, TorrentConfig};

use super::black_hole;
use super::seeders::Content;

/// How a fake peer listener treats the connections it accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fake {
    /// Accepts, never says anything: we stay handshaking.
    Silent,
    /// Handshakes, has everything, never unchokes: active and choked.
    Choker,
    /// Unchokes but never answers requests: our requests stay outstanding.
    Hoarder,
    /// Unchokes and serves real data.
    Server,
    /// Accepts and closes at once.
    Dropper,
}

const FAKE_BASE: u32 = 100;

/// A session with one torrent, and fake peers, all on one loop.
pub struct World {
    pub session: Session,
    pub torrent: TorrentKey,
    fakes: Vec<Fake>,
    info_hash: InfoHash,
    data: Vec<u8>,
    piece_length: usize,
    /// Fake-side streams that already sent their handshake.
    greeted: Vec<HandleId>,
}

impl World {
    pub fn torrent(&self) -> &Torrent {
        self.session.torrent(self.torrent).expect("the torrent")
    }

    fn serve(&mut self, rx: &mut Reactor<Owner>, id: HandleId, fake: Fake) {
        loop {
            // Connections start with our 68-byte handshake; answer it once.
            if !self.greeted.contains(&id) {
                if rx.tcp_received(id).map_or(0, <[u8]>::len) < 68 {
                    return;
                }
                let mut hello = vec![19];
                hello.extend_from_slice(b"BitTorrent protocol");
                hello.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x04]);
                hello.extend_from_slice(&self.info_hash.0);
                // A distinct id per connection: same ids would be one peer connected twice.
                hello.extend_from_slice(format!("-XX0001-fake{:08}", id.index()).as_bytes());
                hello.extend_from_slice(&[0, 0, 0, 1, 0x0e]); // have all
                rx.tcp_consume(id, 68).unwrap();
                rx.tcp_write(id, &hello).unwrap();
                self.greeted.push(id);
                continue;
            }
            let body = {
                let buffer = rx.tcp_received(id).unwrap_or_default();
                if buffer.len() < 4 {
                    return;
                }
                let len = u32::from_be_bytes(buffer[..4].try_into().unwrap()) as usize;
                if buffer.len() < 4 + len {
                    return;
                }
                buffer[4..4 + len].to_vec()
            };
            rx.tcp_consume(id, 4 + body.len()).unwrap();
            match (body.first(), fake) {
                (Some(2), Fake::Hoarder | Fake::Server) => rx.tcp_write(id, &[0, 0, 0, 1, 1]).unwrap(),
                (Some(6), Fake::Server) => {
                    let index = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
                    let begin = u32::from_be_bytes(body[5..9].try_into().unwrap()) as usize;
                    let length = u32::from_be_bytes(body[9..13].try_into().unwrap()) as usize;
                    let start = index * self.piece_length + begin;
                    let mut message = (9 + length as u32).to_be_bytes().to_vec();
                    message.push(7);
                    message.extend_from_slice(&body[1..9]);
                    message.extend_from_slice(&self.data[start..start + length]);
                    rx.tcp_write(id, &message).unwrap();
                }
                _ => {}
            }
        }
    }
}

impl Handler<Owner> for World {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        match (owner, event) {
            (Owner::App(n), Event::Accepted { stream, .. }) if (FAKE_BASE..FAKE_BASE + 1000).contains(&n) => {
                let fake = self.fakes[(n - FAKE_BASE) as usize];
                if fake == Fake::Dropper {
                    rx.close(stream);
                } else {
                    rx.set_owner(stream, Owner::App(n + 1000)).unwrap();
                }
            }
            (Owner::App(n), Event::Readable) if n >= FAKE_BASE + 1000 => {
                let fake = self.fakes[(n - FAKE_BASE - 1000) as usize];
                if fake != Fake::Silent {
                    self.serve(rx, id, fake);
                }
            }
            (Owner::App(n), Event::Eof) if n >= FAKE_BASE + 1000 => rx.close(id),
            (Owner::App(_), _) => {}
            (owner, event) => self.session.on_event(rx, id, owner, event),
        }
        while self.session.poll_event().is_some() {}
    }

    fn on_deferred(&mut self, rx: &mut Reactor<Owner>, owner: Owner) {
        if owner.session() == Some(self.session.key()) {
            self.session.on_deferred(rx);
        }
    }
}

/// A loop, its world, and the black holes that keep connects pending.
pub struct Setup {
    pub rx: Reactor<Owner>,
    pub world: World,
    _holes: Vec<(socket2::Socket, std::net::TcpStream)>,
}

/// A session configuration for tests: no listener, offline trackers.
pub fn session_config(torrent: TorrentConfig) -> SessionConfig {
    SessionConfig {
        listen: Vec::new(),
        torrent,
        trackers: super::trackers::config(),
        ..SessionConfig::default()
    }
}

/// A world with `count` fake peers of each kind in `kinds` and `connecting` black holes.
pub fn setup(
    content: &Content,
    data: &[u8],
    kinds: &[(Fake, usize)],
    connecting: usize,
    config: TorrentConfig,
) -> Setup {
    let mut rx: Reactor<Owner> = Reactor::with_config(Config::default()).unwrap();
    let output = content.dir.path().join("download");
    let _ = std::fs::remove_dir_all(&output);
    let mut session = Session::new(&mut rx, 0, session_config(config)).unwrap();
    let torrent = session
        .add_torrent(
            &mut rx,
            Source::Torrent(&content.torrent),
            AddOptions::new(output),
        )
        .unwrap();
    let mut world = World {
        session,
        torrent,
        fakes: Vec::new(),
        info_hash: content.torrent.info_hash,
        data: data.to_vec(),
        piece_length: content.torrent.info.piece_length as usize,
        greeted: Vec::new(),
    };
    let mut addrs = Vec::new();
    for &(fake, count) in kinds {
        for _ in 0..count {
            let tag = Owner::App(FAKE_BASE + world.fakes.len() as u32);
            world.fakes.push(fake);
            let listener = rx.tcp_listen("127.0.0.1:0".parse().unwrap(), tag).unwrap();
            addrs.push(rx.local_addr(listener).unwrap());
        }
    }
    let mut holes = Vec::new();
    for _ in 0..connecting {
        let (socket, filler, addr) = black_hole();
        holes.push((socket, filler));
        addrs.push(addr);
    }
    for addr in addrs {
        world.session.add_peer(&mut rx, torrent, addr);
    }
    Setup {
        rx,
        world,
        _holes: holes,
    }
}

/// Runs single iterations until `done` holds; panics after `limit` iterations.
/// Each iteration waits at most 5 ms for something to happen (one guard timer,
/// restarted each time: a guard closed per iteration would leave closing work for
/// the next one, so no iteration would wait, and `limit` iterations would pass in
/// a few milliseconds of a fast build, before backoffs and timeouts could end).
pub fn run_until(s: &mut Setup, limit: usize, mut done: impl FnMut(&World) -> bool) {
    let guard = s.rx.timer(Owner::App(1)).unwrap();
    for _ in 0..limit {
        if done(&s.world) {
            s.rx.close(guard);
            return;
        }
        s.rx.timer_start(guard, Duration::from_millis(5), None).unwrap();
        s.rx.run(&mut s.world, RunMode::Once).unwrap();
    }
    panic!("condition not reached: {:?}", s.world.torrent().peer_counts());
}

/// The shutdown sequence: close the session, close the rest, drain, prove it empty.
pub fn shut_down(mut s: Setup) {
    s.world.session.close(&mut s.rx);
    s.rx.close_all_and_drain(&mut s.world).unwrap();
    let stats = s.rx.stats();
    assert_eq!((stats.timers_armed, stats.registered()), (0, 0), "{stats:?}");
    let report = s.rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
    assert_eq!(report.opened, report.closed);
    assert_eq!(s.world.torrent().table_sizes(), [0; 11], "torrent tables");
    let sizes = s.world.session.table_sizes();
    assert_eq!(
        &sizes[2..],
        &[0; 7],
        "session tables (pending, deadlines, waiting, serving, listeners, checking, open files)"
    );
    assert_eq!(s.world.session.budget_use(), (0, 0));
}
