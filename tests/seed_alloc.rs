//! Leak proofs for seeding: a seeding session whose upload queues are full and
//! whose choker knows every peer leaves every table empty when it stops, and
//! 10,000 incoming leechers that handshake, request and vanish leave the heap
//! (blocks and bytes), the open descriptors and every table of the session and
//! its torrent at their baseline.
//!
//! Counting allocator, plain `main`, one scenario at a time. The leechers are
//! scripted on the same loop as the seeding session, so the allocator sees both
//! and nothing runs on another thread.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bitloop::client::session::{AddOptions, Phase, Session, SessionConfig, Source, TorrentKey};
use bitloop::client::Owner;
use bitloop::reactor::{Event, HandleId, HandleKind, Handler, Reactor, RunMode};
use bitloop::torrent::TorrentConfig;
use bitloop::wire::{self, BlockRef, Handshake, Limits, Message, BLOCK};
use common::counting::{heap, run_scenarios, Counting, Heap};
use common::open_fds;
use common::seeders::Content;
use common::trackers;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Tags of the scripted leechers' streams.
const LEECHER: u32 = 10;

/// The churn's pattern of vanishing moments repeats this often.
const PATTERN: usize = 30;

/// When a scripted leecher vanishes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Vanish {
    /// Right after sending its handshake and requests.
    AtOnce,
    /// Once the seeder's handshake arrived.
    AfterHandshake,
    /// Once a requested block (or its reject) arrived.
    AfterAnswer,
    /// Never (until the session stops).
    Never,
}

/// A seeding session and scripted leechers on one loop.
struct Swarm {
    session: Session,
    torrent: TorrentKey,
    /// What a leecher sends first: handshake, have-none, interested, requests.
    hello: Vec<u8>,
    limits: Limits,
    vanish: Vanish,
    leechers: Vec<HandleId>,
    closed: usize,
    /// Blocks and rejects the leechers received.
    pieces: u64,
    rejects: u64,
}

impl Swarm {
    /// Every table of the torrent empty but its deadline heap (bounded stale
    /// entries), and no incoming connection pending in the session.
    fn forgot_everything(&self) -> bool {
        let sizes = self.session.torrent(self.torrent).unwrap().table_sizes();
        let session = self.session.table_sizes();
        sizes[..9] == [0; 9] && sizes[10] == 0 && sizes[9] <= 64 && session[2..6] == [0; 4]
    }

    fn on_leecher(&mut self, rx: &mut Reactor<Owner>, id: HandleId, event: Event) {
        match event {
            Event::Connected => {
                // A distinct peer id per leecher alive at once (bytes 8..20 of the
                // id, which follows the 48 bytes of protocol, flags and info hash).
                let n = format!("{:012}", id.index());
                self.hello[56..68].copy_from_slice(n.as_bytes());
                rx.tcp_write(id, &self.hello).unwrap();
                if self.vanish == Vanish::AtOnce {
                    rx.close(id);
                }
            }
            Event::Readable => {
                let Ok(buffer) = rx.tcp_received(id) else { return };
                if self.vanish == Vanish::Never {
                    // Reads everything, says nothing more, stays.
                    let all = buffer.len();
                    rx.tcp_consume(id, all).unwrap();
                    return;
                }
                if buffer.len() < wire::HANDSHAKE_LEN {
                    return;
                }
                let mut rest = &buffer[wire::HANDSHAKE_LEN..];
                let mut answered = false;
                while let Ok(Some((message, used))) = wire::decode(rest, &self.limits) {
                    match message {
                        Message::Piece { .. } => self.pieces += 1,
                        Message::Reject(_) => self.rejects += 1,
                        _ => {}
                    }
                    answered |= matches!(message, Message::Piece { .. } | Message::Reject(_));
                    rest = &rest[used..];
                }
                let done = match self.vanish {
                    Vanish::AfterHandshake => true,
                    Vanish::AfterAnswer => answered,
                    Vanish::AtOnce | Vanish::Never => false,
                };
                // (What is read stays buffered and is decoded again next time: the
                // leecher lives for a few messages only.)
                if done {
                    rx.close(id);
                }
            }
            Event::Eof | Event::Error(_) => rx.close(id),
            Event::Closed(_) => {
                self.closed += 1;
                self.leechers.retain(|l| *l != id);
            }
            _ => {}
        }
    }
}

impl Handler<Owner> for Swarm {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        match owner {
            Owner::App(LEECHER) => self.on_leecher(rx, id, event),
            Owner::App(_) => {}
            _ => self.session.on_event(rx, id, owner, event),
        }
        while self.session.poll_event().is_some() {}
    }

    fn on_deferred(&mut self, rx: &mut Reactor<Owner>, owner: Owner) {
        if owner.session() == Some(self.session.key()) {
            self.session.on_deferred(rx);
        }
    }
}

/// A session seeding `content` (its data checked first), listening on loopback.
fn seeding(rx: &mut Reactor<Owner>, content: &Content, upload_rate: Option<u64>) -> Swarm {
    let config = SessionConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        torrent: TorrentConfig {
            seed: true,
            ..TorrentConfig::default()
        },
        trackers: trackers::config(),
        upload_rate,
        ..SessionConfig::default()
    };
    let mut session = Session::new(rx, 0, config).unwrap();
    let options = AddOptions::new(content.save_path.clone());
    let torrent = session
        .add_torrent(rx, Source::Torrent(&content.torrent), options)
        .unwrap();
    let info_hash = content.torrent.info_hash;
    let pieces = content.torrent.info.pieces.len() as u32;
    let mut hello = Vec::new();
    Handshake::ours(info_hash, bitloop::tracker::PeerId(*b"-XX0001-leecher00001")).encode(&mut hello);
    // Loopback's allowed-fast set is known: one block inside it (served while
    // choked), one outside (rejected), then whatever the choker allows.
    let fast = wire::allowed_fast_set("127.0.0.1".parse().unwrap(), &info_hash, pieces, 10);
    let outside = (0..pieces).find(|p| !fast.contains(p)).unwrap();
    let mut messages = vec![Message::HaveNone, Message::Interested];
    let asks = [fast[0], outside, fast[1], (outside + 1) % pieces];
    messages.extend(asks.map(|p| {
        Message::Request(BlockRef {
            index: p,
            begin: 0,
            length: BLOCK,
        })
    }));
    for m in &messages {
        wire::encode(m, &mut hello);
    }
    let mut swarm = Swarm {
        session,
        torrent,
        hello,
        limits: Limits::pieces(pieces),
        vanish: Vanish::Never,
        leechers: Vec::new(),
        closed: 0,
        pieces: 0,
        rejects: 0,
    };
    run(rx, &mut swarm, 100_000, "the check", |s, _| {
        s.session.phase(s.torrent) == Some(Phase::Running)
    });
    assert!(swarm.session.torrent(torrent).unwrap().is_complete());
    swarm
}

/// Runs the loop until `done`, at most `limit` iterations (never hangs).
fn run(
    rx: &mut Reactor<Owner>,
    swarm: &mut Swarm,
    limit: usize,
    what: &str,
    mut done: impl FnMut(&Swarm, &mut Reactor<Owner>) -> bool,
) {
    for _ in 0..limit {
        if done(swarm, rx) {
            return;
        }
        let guard = rx.timer(Owner::App(1)).unwrap();
        rx.timer_start(guard, Duration::from_millis(20), None).unwrap();
        rx.run(swarm, RunMode::Once).unwrap();
        rx.close(guard);
    }
    panic!(
        "{what}: not reached in {limit} iterations; torrent tables {:?}, session tables {:?}",
        swarm.session.torrent(swarm.torrent).unwrap().table_sizes(),
        swarm.session.table_sizes()
    );
}

fn listen_addr(rx: &mut Reactor<Owner>, swarm: &Swarm) -> SocketAddr {
    swarm.session.listen_addrs(rx)[0]
}

/// The end: the session closes, the loop drains, everything is provably empty.
fn shut_down(mut rx: Reactor<Owner>, mut swarm: Swarm) {
    swarm.session.close(&mut rx);
    let torrent = swarm.session.torrent(swarm.torrent).unwrap();
    assert_eq!(torrent.table_sizes(), [0; 11], "torrent tables at stop");
    assert_eq!(
        &swarm.session.table_sizes()[2..],
        &[0; 7],
        "session tables (pending, deadlines, waiting, serving, listeners, checking, open files)"
    );
    rx.close_all_and_drain(&mut swarm).unwrap();
    let stats = rx.stats();
    assert_eq!((stats.timers_armed, stats.registered()), (0, 0), "{stats:?}");
    let report = rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
    assert_eq!(report.opened, report.closed);
    assert_eq!(swarm.session.budget_use(), (0, 0));
}

fn content() -> Content {
    Content::make(false, 2_000_000, 16384, vec![])
}

/// Leechers that never leave, served slowly (64 KiB/s), so that at the stop the
/// torrent has requests queued for each, peers in line to be served, and choker
/// entries for all: the stop empties every table, and the heap and descriptors
/// return to where they were before the session existed.
fn stop_with_full_upload_queues(content: &Content) -> (Heap, usize) {
    let (before, fds) = (heap(), open_fds());
    let mut rx: Reactor<Owner> = Reactor::new().unwrap();
    let mut swarm = seeding(&mut rx, content, Some(64 << 10));
    let addr = listen_addr(&mut rx, &swarm);
    for _ in 0..6 {
        let id = rx.tcp_connect(addr, Owner::App(LEECHER), None).unwrap();
        swarm.leechers.push(id);
    }
    run(&mut rx, &mut swarm, 20_000, "queued uploads", |s, _| {
        let t = s.session.torrent(s.torrent).unwrap();
        let queued = t
            .pool()
            .iter()
            .filter_map(|(_, p)| p.session())
            .filter(|p| !p.queue.is_empty())
            .count();
        t.peer_counts().active == 6 && queued >= 3 && t.stats().uploaded > 0
    });
    let torrent = swarm.session.torrent(swarm.torrent).unwrap();
    let sizes = torrent.table_sizes();
    assert!(sizes[8] > 0, "peers in line to be served: {sizes:?}");
    assert_eq!(sizes[10], 6, "the choker knows every peer: {sizes:?}");
    assert!(swarm.session.table_sizes()[5] > 0, "the torrent waits to serve");
    shut_down(rx, swarm);
    assert_eq!(open_fds(), fds, "descriptors after the stop");
    (before, fds)
}

fn upload_queues_and_choker_state_are_empty_at_stop() {
    let content = content();
    stop_with_full_upload_queues(&content); // one-time globals
    let (before, _) = stop_with_full_upload_queues(&content);
    assert_eq!(heap(), before, "live heap after a stop with full upload queues");
}

/// `cycles` leechers, one at a time, vanishing in turn at each moment of their
/// short life. Returns the heap at each position of the pattern after warm-up
/// and at the end (blocks, blocks, bytes, bytes), on the stack: a returned `Vec`
/// would count as live heap.
fn churn(content: &Content, cycles: usize) -> [(isize, isize, isize, isize); PATTERN] {
    let mut rx: Reactor<Owner> = Reactor::new().unwrap();
    let mut swarm = seeding(&mut rx, content, None);
    let addr = listen_addr(&mut rx, &swarm);
    let (mut warm, mut end) = ([(0, 0); PATTERN], [(0, 0); PATTERN]);
    for i in 0..cycles {
        swarm.vanish = match i % 3 {
            0 => Vanish::AtOnce,
            1 => Vanish::AfterHandshake,
            _ => Vanish::AfterAnswer,
        };
        let closed = swarm.closed;
        let id = rx.tcp_connect(addr, Owner::App(LEECHER), None).unwrap();
        swarm.leechers.push(id);
        // Until the leecher is gone on both sides and the seeder forgot it.
        run(&mut rx, &mut swarm, 10_000, &format!("cycle {i}"), |s, rx| {
            s.closed > closed && s.forgot_everything() && rx.stats().open.get(HandleKind::TcpStream) == 0
        });
        if (300..300 + PATTERN).contains(&i) {
            let h = heap();
            warm[i % PATTERN] = (h.blocks, h.bytes);
        }
        if i >= cycles - PATTERN {
            let h = heap();
            end[i % PATTERN] = (h.blocks, h.bytes);
        }
    }
    assert!(
        swarm.pieces > 0 && swarm.rejects > 0,
        "leechers were served and refused"
    );
    let stats = swarm.session.incoming_stats();
    assert!(stats.routed as usize >= cycles * 2 / 3, "{stats:?}");
    shut_down(rx, swarm);
    std::array::from_fn(|i| (warm[i].0, end[i].0, warm[i].1, end[i].1))
}

fn ten_thousand_incoming_leechers_that_request_and_vanish_leave_heap_and_fds_at_baseline() {
    let content = content();
    churn(&content, 400); // one-time globals
    let (before, fds) = (heap(), open_fds());
    let samples = churn(&content, 10_000);
    assert_eq!(open_fds(), fds, "descriptors after the churn");
    let after = heap();
    assert_eq!(after, before, "live heap after 10,000 leechers came and went");
    // Within the run too: each position of the pattern holds as many blocks at
    // the end as just after warm-up, and bytes differ only by transient state
    // (superseded timer entries awaiting compaction), never by a growing table.
    for (i, (warm_blocks, end_blocks, warm_bytes, end_bytes)) in samples.iter().enumerate() {
        assert_eq!(
            end_blocks, warm_blocks,
            "live blocks grew at pattern position {i}: {samples:?}"
        );
        assert!(
            end_bytes - warm_bytes < 2048,
            "live bytes grew by {} at pattern position {i}",
            end_bytes - warm_bytes
        );
    }
}

fn main() {
    run_scenarios(&[
        (
            "upload_queues_and_choker_state_are_empty_at_stop",
            upload_queues_and_choker_state_are_empty_at_stop,
        ),
        (
            "ten_thousand_incoming_leechers_that_request_and_vanish_leave_heap_and_fds_at_baseline",
            ten_thousand_incoming_leechers_that_request_and_vanish_leave_heap_and_fds_at_baseline,
        ),
    ]);
}
