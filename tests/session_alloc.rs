//! Leak proofs for the session: every session table and every torrent table
//! empty, the live heap (blocks *and* bytes) at its baseline and the open file
//! descriptors back, after
//! - 10,000 incoming connections with good, unknown and garbage handshakes (and
//!   hang-ups and silent ones), all on one loop with the session;
//! - two torrents downloaded to completion by `run_many` from libtorrent seeders;
//! - Ctrl+C (a real SIGINT to this process) with both torrents in flight.
//!
//! Counting allocator, plain `main`, one scenario at a time. The libtorrent
//! seeders are other processes, so their memory is not counted.

mod common;
#[path = "common/sessions.rs"]
mod sessions;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bitloop::client::download::{run_many, Download, DownloadOptions, Outcome};
use bitloop::client::session::{AddOptions, IncomingStats, Session, SessionConfig, Source, TorrentKey};
use bitloop::client::Owner;
use bitloop::metainfo::{InfoHash, Metainfo};
use bitloop::reactor::{Event, HandleId, HandleKind, Reactor, RunMode};
use common::counting::{heap, run_scenarios, Counting, Heap};
use common::open_fds;
use common::seeders::{Content, Seeder};
use common::trackers::offline_resolver;
use sessions::{assert_tables_empty, handshake, peer_id, run_until, shut_down, Host, Side};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap and descriptors at a point in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mark {
    heap: Heap,
    fds: usize,
}

fn mark() -> Mark {
    Mark {
        heap: heap(),
        fds: open_fds(),
    }
}

fn assert_back(before: Mark, what: &str) {
    let now = mark();
    assert_eq!(
        now.heap, before.heap,
        "{what}: live heap (blocks, bytes) not at its baseline"
    );
    assert_eq!(now.fds, before.fds, "{what}: open file descriptors");
}

// ------------------------------------------------------------------ (a) incoming

/// What a scripted incoming peer sends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Hello {
    /// A handshake for our torrent: it is routed; the peer leaves once answered.
    Good,
    /// A handshake for a torrent we do not serve.
    Unknown,
    /// Not BitTorrent at all.
    Garbage,
    /// Part of a handshake, then the peer hangs up.
    HangUp,
    /// Nothing: the handshake timeout closes it.
    Silent,
}

const HELLOS: [Hello; 5] = [
    Hello::Good,
    Hello::Unknown,
    Hello::Garbage,
    Hello::HangUp,
    Hello::Silent,
];
const CLIENT: u32 = 10;

fn tag(hello: Hello) -> Owner {
    Owner::App(CLIENT + HELLOS.iter().position(|h| *h == hello).unwrap() as u32)
}

fn hello_of(owner: Owner) -> Option<Hello> {
    match owner {
        Owner::App(n) if (CLIENT..CLIENT + HELLOS.len() as u32).contains(&n) => {
            Some(HELLOS[(n - CLIENT) as usize])
        }
        _ => None,
    }
}

/// The remote side of the incoming connections, on the same loop.
#[derive(Default)]
struct Clients {
    closed: usize,
}

impl Side for Clients {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        let Some(hello) = hello_of(owner) else { return };
        match event {
            Event::Readable => {
                let got = rx.tcp_received(id).map_or(0, <[u8]>::len);
                if hello == Hello::Good && got >= 68 {
                    rx.close(id); // answered: leave
                } else {
                    let _ = rx.tcp_consume(id, got);
                }
            }
            Event::Eof | Event::Error(_) | Event::ConnectFailed(_) => rx.close(id),
            Event::Closed(_) => self.closed += 1,
            _ => {}
        }
    }
}

/// The kind of the `i`th connection: a repeating pattern of 1,000 in which every
/// kind appears (40 % good, 30 % unknown, 20 % garbage, 10 % hang-ups), the last
/// five of each 1,000 silent (one batch that waits for the handshake timeout).
fn kind(i: usize) -> Hello {
    match i % 1000 {
        995.. => Hello::Silent,
        n if n % 10 < 4 => Hello::Good,
        n if n % 10 < 7 => Hello::Unknown,
        n if n % 10 < 9 => Hello::Garbage,
        _ => Hello::HangUp,
    }
}

fn open_client(rx: &mut Reactor<Owner>, to: SocketAddr, hello: Hello, i: usize, info_hash: &InfoHash) {
    let conn = rx.tcp_connect(to, tag(hello), None).unwrap();
    match hello {
        Hello::Good => rx
            .tcp_write(conn, &handshake(info_hash, &peer_id(i as u64), false))
            .unwrap(),
        Hello::Unknown => rx
            .tcp_write(conn, &handshake(&InfoHash([0x5a; 20]), &peer_id(i as u64), false))
            .unwrap(),
        Hello::Garbage => rx
            .tcp_write(
                conn,
                b"GET /announce?info_hash=0123456789 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            )
            .unwrap(),
        Hello::HangUp => {
            rx.tcp_write(conn, &[19, b'B', b'i', b't']).unwrap();
            rx.tcp_shutdown(conn).unwrap();
        }
        Hello::Silent => {}
    }
}

/// Sessions' counters the pattern must produce for `n` connections.
fn expected(n: usize) -> IncomingStats {
    let count = |h: Hello| (0..n).filter(|&i| kind(i) == h).count() as u64;
    IncomingStats {
        accepted: n as u64,
        routed: count(Hello::Good),
        unknown_info_hash: count(Hello::Unknown),
        not_bittorrent: count(Hello::Garbage),
        timed_out: count(Hello::Silent),
        refused: 0,
        hung_up: count(Hello::HangUp),
    }
}

/// Runs until every connection of the batch is gone from both sides.
fn settle_batch(rx: &mut Reactor<Owner>, host: &mut Host<Clients>, key: TorrentKey, closed: usize) {
    run_until(rx, host, Duration::from_secs(20), |h, rx| {
        h.side.closed == closed
            && h.session.table_sizes()[2] == 0
            && h.session.torrent(key).unwrap().pool().is_empty()
            && rx.stats().open.get(HandleKind::TcpStream) == 0
    });
}

/// `total` incoming connections in batches of 20; returns the heap after the
/// 2,000th and after the last (the same point of the pattern of 1,000).
fn incoming_churn(torrent: &Metainfo, output: &std::path::Path, total: usize) -> (Heap, Heap) {
    let mut rx: Reactor<Owner> = Reactor::new().unwrap();
    let config = SessionConfig {
        // Long enough that a loaded machine never times out a peer that did send
        // its handshake (that would change the counts), short enough for ten batches.
        handshake_timeout: Duration::from_millis(300),
        ..sessions::config()
    };
    let session = Session::new(&mut rx, 0, config).unwrap();
    let mut host = Host::new(session, Clients::default());
    let key = host
        .session
        .add_torrent(
            &mut rx,
            Source::Torrent(torrent),
            AddOptions::new(output.to_path_buf()),
        )
        .unwrap();
    let to = SocketAddr::from(([127, 0, 0, 1], host.session.port()));
    let (mut warm, mut end) = (heap(), heap());
    let mut opened = 0;
    while opened < total {
        for _ in 0..20.min(total - opened) {
            open_client(&mut rx, to, kind(opened), opened, &torrent.info_hash);
            opened += 1;
        }
        settle_batch(&mut rx, &mut host, key, opened);
        if opened == 2_000.min(total) {
            warm = heap();
        }
        if opened == total {
            end = heap();
        }
    }
    assert_eq!(host.session.incoming_stats(), expected(total));
    assert_eq!(host.peers_gone, expected(total).routed, "every routed peer left");
    let sizes = host.session.table_sizes();
    assert_eq!(
        sizes[2..6],
        [0; 4],
        "session tables (pending, deadlines, waiting, serving)"
    );
    let torrent_sizes = host.session.torrent(key).unwrap().table_sizes();
    assert_eq!(
        torrent_sizes, [0; 11],
        "torrent tables after {total} incoming connections"
    );
    assert_eq!(host.session.budget_use(), (0, 0));
    shut_down(&mut rx, &mut host);
    rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
    (warm, end)
}

fn ten_thousand_incoming_connections_leave_every_table_empty_and_the_heap_at_baseline() {
    let content = Content::make(false, 100_000, 16384, vec![]);
    let output = content.dir.path().join("out");
    // A first, short run creates one-time globals (std's and the allocator's).
    incoming_churn(&content.torrent, &output, 500);
    let before = mark();
    let (warm, end) = incoming_churn(&content.torrent, &output, 10_000);
    // Blocks must match exactly. Bytes may differ by a container's capacity
    // high-water mark, which depends on timing (how many stale entries the pending
    // deadline queue holds at its fullest), but one that grew with the connections,
    // even by a byte each, would be 8,000 bytes over.
    assert_eq!(
        end.blocks, warm.blocks,
        "live blocks grew between the 2,000th and the 10,000th incoming connection"
    );
    let growth = end.bytes - warm.bytes;
    assert!(
        growth < 2048,
        "live bytes grew by {growth} between the 2,000th and the 10,000th incoming connection"
    );
    // And once the loop is closed, everything is back: blocks and bytes exactly.
    assert_back(before, "after 10,000 incoming connections");
}

// ------------------------------------------------------------------ (b) two complete

struct Pair {
    a: Content,
    b: Content,
    seeders: Vec<Seeder>,
}

/// Two torrents (different data) and a libtorrent seeder for each; `rate` limits
/// the seeders' upload (bytes per second; 0: unlimited).
fn pair(size: usize, rate: u32) -> Pair {
    let a = Content::make(false, size, 16384, vec![]);
    let b = Content::make(true, size, 16384, vec![]);
    let limit = rate.to_string();
    let extra: &[&str] = if rate > 0 {
        &["--upload-limit", &limit]
    } else {
        &[]
    };
    let seeders = vec![
        Seeder::start_with(&a.torrent_path, &a.save_path, extra),
        Seeder::start_with(&b.torrent_path, &b.save_path, extra),
    ];
    Pair { a, b, seeders }
}

impl Pair {
    fn torrents(&self) -> [Metainfo; 2] {
        [self.a.torrent.clone(), self.b.torrent.clone()]
    }

    fn options(&self, output: &std::path::Path) -> DownloadOptions {
        let mut options = DownloadOptions::new(output.to_path_buf());
        options.listen = Some("127.0.0.1:0".parse().unwrap());
        options.watch_signals = false;
        options.timeout = Duration::from_secs(30);
        options.trackers.resolver = offline_resolver();
        // Every torrent is given both: each seeder closes the one it does not serve.
        options.peers = self.seeders.iter().map(Seeder::addr).collect();
        options
    }
}

/// An outcome without its message, so that keeping it allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Completed,
    Interrupted,
    Failed,
}

fn ended(outcome: &Outcome) -> Ended {
    match outcome {
        Outcome::Completed => Ended::Completed,
        Outcome::Interrupted => Ended::Interrupted,
        Outcome::Failed(_) => Ended::Failed,
    }
}

/// Drives a `Download` of two torrents on a fresh loop until it ends (or, with
/// `interrupt`, until both have data, then sends this process SIGINT); checks
/// every table, closes and proves the loop empty. Returns each torrent's outcome.
fn drive(torrents: &[Metainfo; 2], options: DownloadOptions, interrupt: bool) -> [Ended; 2] {
    let mut rx: Reactor<Owner> = Reactor::new().unwrap();
    let mut download = Download::start(&mut rx, torrents, options).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = false;
    while download.outcome().is_none() {
        assert!(Instant::now() < deadline, "the download never ended");
        if interrupt && !sent {
            let session = download.session();
            let all_flowing = session
                .torrent_keys()
                .iter()
                .all(|k| session.stats(*k).unwrap().downloaded > 0);
            if all_flowing {
                // SAFETY: kill(2) on our own pid; the loop's signal watch (installed
                // by Download::start) turns SIGINT into an event instead of the
                // default action.
                let rc = unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
                assert_eq!(rc, 0);
                sent = true;
            }
        }
        rx.run(&mut download, RunMode::Once).unwrap();
    }
    assert_eq!(
        interrupt, sent,
        "the interrupt was sent while both were in flight"
    );
    assert_tables_empty(download.session(), "when the run ended");
    let mut outcomes = [Ended::Failed; 2];
    for (ended_as, (name, outcome)) in outcomes.iter_mut().zip(download.outcomes()) {
        *ended_as = ended(&outcome.unwrap_or_else(|| panic!("{name} has no outcome")));
    }
    rx.close_all_and_drain(&mut download).unwrap();
    let stats = rx.stats();
    assert_eq!((stats.timers_armed, stats.registered()), (0, 0), "{stats:?}");
    rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
    drop(download);
    outcomes
}

fn two_completed_torrents_give_back_every_heap_block_and_descriptor() {
    let pair = pair(2_000_000, 0);
    let torrents = pair.torrents();
    let dir = pair.a.dir.path();
    // One-time globals first (a whole run).
    let first = run_many(&torrents, pair.options(&dir.join("run-0"))).unwrap();
    assert_eq!(first.outcome, Outcome::Completed);
    drop(first);

    let before = mark();
    let summary = run_many(&torrents, pair.options(&dir.join("run-1"))).unwrap();
    // Read what is needed into plain values: nothing of the summary may outlive the check.
    let mut outcomes = [Ended::Failed; 2];
    for (ended_as, torrent) in outcomes.iter_mut().zip(&summary.torrents) {
        *ended_as = ended(&torrent.outcome);
    }
    let (overall, report_ok) = (ended(&summary.outcome), summary.report.is_ok());
    drop(summary);
    assert_back(before, "after run_many completed two torrents");
    assert_eq!(overall, Ended::Completed);
    assert_eq!(outcomes, [Ended::Completed; 2]);
    assert!(report_ok, "finish() named live handles");
    pair.a.assert_identical(&dir.join("run-1"));
    pair.b.assert_identical(&dir.join("run-1"));

    // The same through a Download driven here, to see the session's tables.
    let before = mark();
    let outcomes = drive(&torrents, pair.options(&dir.join("run-2")), false);
    assert_back(before, "after a driven download of two torrents");
    assert_eq!(outcomes, [Ended::Completed; 2]);
    pair.a.assert_identical(&dir.join("run-2"));
    pair.b.assert_identical(&dir.join("run-2"));
}

// ------------------------------------------------------------------ (c) Ctrl+C

fn ctrl_c_with_both_torrents_in_flight_gives_back_every_heap_block_and_descriptor() {
    // 4 MB each at 200 kB/s: some twenty seconds each, so both are in flight.
    let pair = pair(4_000_000, 200_000);
    let torrents = pair.torrents();
    let dir = pair.a.dir.path();
    let options = |n: usize| {
        let mut options = pair.options(&dir.join(format!("interrupted-{n}")));
        options.watch_signals = true;
        options
    };
    // The first run installs the process's signal handler and other one-time globals.
    assert_eq!(drive(&torrents, options(0), true), [Ended::Interrupted; 2]);
    let before = mark();
    let outcomes = drive(&torrents, options(1), true);
    assert_back(before, "after Ctrl+C with two torrents in flight");
    assert_eq!(outcomes, [Ended::Interrupted; 2]);
}

fn main() {
    run_scenarios(&[
        (
            "ten_thousand_incoming_connections_leave_every_table_empty_and_the_heap_at_baseline",
            ten_thousand_incoming_connections_leave_every_table_empty_and_the_heap_at_baseline,
        ),
        (
            "two_completed_torrents_give_back_every_heap_block_and_descriptor",
            two_completed_torrents_give_back_every_heap_block_and_descriptor,
        ),
        (
            "ctrl_c_with_both_torrents_in_flight_gives_back_every_heap_block_and_descriptor",
            ctrl_c_with_both_torrents_in_flight_gives_back_every_heap_block_and_descriptor,
        ),
    ]);
}
