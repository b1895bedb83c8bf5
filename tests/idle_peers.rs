//! Idle peers (issue 19): what one costs, and that a thousand connected and
//! closed leave nothing behind.
//!
//! A session with one torrent (2,048 pieces, nothing downloaded, no seeder) runs on
//! this thread; fake peers connect to it from another thread with blocking std
//! sockets, which own no heap memory, so the counting allocator sees bitloop's
//! side only. Each fake sends a handshake and a bitfield of every other piece,
//! reads our handshake, and then says nothing: never unchoked, never asked.
//! Plain `main`, one scenario at a time.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bitloop::client::session::{AddOptions, Session, SessionConfig, Source, TorrentKey};
use bitloop::client::Owner;
use bitloop::metainfo::InfoHash;
use bitloop::reactor::{Event, HandleId, HandleKind, Handler, Reactor, RunMode};
use bitloop::torrent::TorrentConfig;
use common::counting::{heap, run_scenarios, Counting, Heap};
use common::seeders::Content;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The target is 4 KiB of RSS per idle peer; this bound is on the heap
/// (with malloc's overhead per block) and generous, so only a real regression
/// fails: a buffer per idle connection, a table sized for the worst case.
const HEAP_PER_PEER_LIMIT: f64 = 8.0 * 1024.0;
/// What malloc adds to every block it hands out (glibc: 8 to 16 bytes).
const MALLOC_OVERHEAD: isize = 16;
/// Every wait for the loop or the fakes is bounded by this.
const WITHIN: Duration = Duration::from_secs(60);

const GUARD: Owner = Owner::App(1);

struct World {
    session: Session,
    torrent: TorrentKey,
}

impl Handler<Owner> for World {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        if owner != GUARD {
            self.session.on_event(rx, id, owner, event);
        }
        while self.session.poll_event().is_some() {}
    }

    fn on_deferred(&mut self, rx: &mut Reactor<Owner>, _owner: Owner) {
        self.session.on_deferred(rx);
    }
}

struct Setup {
    rx: Reactor<Owner>,
    world: World,
    guard: HandleId,
    addr: SocketAddr,
    info_hash: InfoHash,
    pieces: u32,
}

impl Setup {
    fn new(content: &Content, max_peers: usize) -> Setup {
        let mut rx: Reactor<Owner> = Reactor::new().unwrap();
        let config = SessionConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            max_connections: max_peers + 100,
            trackers: common::trackers::config(),
            torrent: TorrentConfig {
                max_peers,
                ..TorrentConfig::default()
            },
            ..SessionConfig::default()
        };
        let mut session = Session::new(&mut rx, 0, config).unwrap();
        let output = content.dir.path().join("download");
        let torrent = session
            .add_torrent(
                &mut rx,
                Source::Torrent(&content.torrent),
                AddOptions::new(output),
            )
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], session.port()));
        let guard = rx.timer(GUARD).unwrap();
        Setup {
            rx,
            world: World { session, torrent },
            guard,
            addr,
            info_hash: content.torrent.info_hash,
            pieces: content.torrent.info.pieces.len() as u32,
        }
    }

    fn active(&self) -> usize {
        self.world
            .session
            .torrent(self.world.torrent)
            .unwrap()
            .peer_counts()
            .active
    }

    /// Runs the loop until `done`; panics after [`WITHIN`].
    fn run_until(&mut self, what: &str, mut done: impl FnMut(&Setup) -> bool) {
        let deadline = Instant::now() + WITHIN;
        while !done(self) {
            assert!(Instant::now() < deadline, "{what}: not within {WITHIN:?}");
            // A short guard timer, so that one iteration never blocks for long.
            self.rx
                .timer_start(self.guard, Duration::from_millis(5), None)
                .unwrap();
            self.rx.run(&mut self.world, RunMode::Once).unwrap();
        }
    }

    /// `n` more idle peers (ids from `first`), connected while the loop runs.
    fn connect(&mut self, first: usize, n: usize, held: &mut Vec<TcpStream>) {
        let before = self.active();
        let peers = spawn_peers(
            self.addr,
            self.info_hash,
            self.pieces,
            first,
            n,
            std::mem::take(held),
        );
        self.run_until("idle peers handshaken", |s| s.active() == before + n);
        *held = peers.join().expect("the fake peers' thread");
    }

    fn close(mut self) {
        self.world.session.close(&mut self.rx);
        self.rx.close_all_and_drain(&mut self.world).unwrap();
        self.rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
    }
}

/// Fake idle peers on a thread of their own; it returns their streams (added to
/// `held`, whose capacity the caller reserved) once each has read our handshake.
fn spawn_peers(
    addr: SocketAddr,
    info_hash: InfoHash,
    pieces: u32,
    first: usize,
    n: usize,
    mut held: Vec<TcpStream>,
) -> JoinHandle<Vec<TcpStream>> {
    std::thread::spawn(move || {
        // The messages are built on the stack: the fakes allocate nothing per peer.
        let mut hello = [0u8; 68];
        hello[0] = 19;
        hello[1..20].copy_from_slice(b"BitTorrent protocol");
        hello[28..48].copy_from_slice(&info_hash.0);
        let mut bitfield = [0u8; 5 + 256];
        let bytes = pieces.div_ceil(8) as usize;
        assert!(bytes <= 256, "a torrent of at most 2,048 pieces");
        bitfield[..4].copy_from_slice(&(bytes as u32 + 1).to_be_bytes());
        bitfield[4] = 5;
        for piece in (0..pieces as usize).step_by(2) {
            bitfield[5 + piece / 8] |= 0x80 >> (piece % 8);
        }
        for i in first..first + n {
            hello[48..68].copy_from_slice(format!("-ID0001-{i:012}").as_bytes());
            let mut stream = TcpStream::connect_timeout(&addr, WITHIN).expect("connect to the session");
            stream.set_read_timeout(Some(WITHIN)).unwrap();
            stream.write_all(&hello).unwrap();
            stream.write_all(&bitfield[..5 + bytes]).unwrap();
            let mut theirs = [0u8; 68];
            stream.read_exact(&mut theirs).expect("the session's handshake");
            assert_eq!(&theirs[28..48], &info_hash.0, "answered for our torrent");
            held.push(stream);
        }
        held
    })
}

/// Raises the open-file limit to what `need` descriptors take, or fails saying so.
fn allow_descriptors(need: u64) {
    // SAFETY: `limit` is a plain C struct that getrlimit fills and setrlimit reads.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    if limit.rlim_cur < need {
        assert!(
            limit.rlim_max >= need,
            "this test needs {need} open files; the hard limit is {} (raise it: ulimit -Hn)",
            limit.rlim_max
        );
        limit.rlim_cur = need;
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    }
}

fn content() -> Content {
    // 2,048 pieces of 16 KiB (32 MiB): a 256-byte bitfield per peer, as in the bench.
    Content::make(false, 32 << 20, 16 * 1024, vec![])
}

fn footprint(h: Heap) -> isize {
    h.bytes + MALLOC_OVERHEAD * h.blocks
}

/// One idle peer, then 300 more: the heap per extra peer stays under 8 KiB.
fn three_hundred_idle_peers_cost_under_eight_kib_each() {
    allow_descriptors(1024);
    let content = content();
    let mut s = Setup::new(&content, 400);
    let mut held = Vec::with_capacity(301);
    s.connect(0, 1, &mut held);
    s.run_until("settled", |_| true);
    let one = heap();
    s.connect(1, 300, &mut held);
    let many = heap();
    let per_peer = (footprint(many) - footprint(one)) as f64 / 300.0;
    println!(
        "heap per idle peer: {per_peer:.0} bytes ({} bytes in {} blocks for 300 peers)",
        many.bytes - one.bytes,
        many.blocks - one.blocks
    );
    assert!(
        per_peer < HEAP_PER_PEER_LIMIT,
        "an idle peer costs {per_peer:.0} bytes of heap (limit {HEAP_PER_PEER_LIMIT})"
    );
    drop(held);
    s.close();
}

/// A thousand idle peers connect and hang up, twice: after the second round the
/// heap is where it was after the first, and every table of the torrent is empty.
fn a_thousand_peers_connected_and_closed_leave_the_heap_at_baseline() {
    allow_descriptors(2 * 1000 + 256);
    let content = content();
    let mut s = Setup::new(&content, 1100);
    let mut held = Vec::with_capacity(1000);
    let mut baseline = None;
    for round in 0..2 {
        s.connect(round * 1000, 1000, &mut held);
        assert_eq!(s.active(), 1000);
        held.clear(); // the fakes hang up
        s.run_until("every peer gone", |s| {
            let torrent = s.world.session.torrent(s.world.torrent).unwrap();
            torrent.table_sizes()[..9] == [0; 9]
                && torrent.table_sizes()[10] == 0
                && s.rx.stats().open.get(HandleKind::TcpStream) == 0
        });
        let sizes = s.world.session.torrent(s.world.torrent).unwrap().table_sizes();
        assert!(sizes[9] <= 64, "stale deadline entries are bounded: {sizes:?}");
        let now = heap();
        match baseline {
            None => baseline = Some(now),
            Some(before) => {
                assert_eq!(now.blocks, before.blocks, "live blocks after the second thousand");
                assert!(
                    (now.bytes - before.bytes).abs() < 2048,
                    "live bytes moved by {} after the second thousand",
                    now.bytes - before.bytes
                );
            }
        }
    }
    drop(held);
    s.close();
}

fn main() {
    run_scenarios(&[
        (
            "three_hundred_idle_peers_cost_under_eight_kib_each",
            three_hundred_idle_peers_cost_under_eight_kib_each,
        ),
        (
            "a_thousand_peers_connected_and_closed_leave_the_heap_at_baseline",
            a_thousand_peers_connected_and_closed_leave_the_heap_at_baseline,
        ),
    ]);
}
