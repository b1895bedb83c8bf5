//! Leak proof for downloads: a complete download in-process gives back every heap
//! block, and thousands of peer connect/disconnect cycles (peers that drop during
//! the handshake, right after it, refused connections, connect timeouts) leave
//! every table of the torrent at its baseline size and the heap where it was.
//!
//! Counting allocator, plain `main`, one scenario at a time. The libtorrent seeder
//! is another process, so its memory is not counted; the churn peers run on the
//! same loop as the torrent.

mod common;

use std::time::Duration;

use bitloop::client::download::{run, DownloadOptions, Outcome};
use bitloop::client::session::{AddOptions, Session, Source, TorrentKey};
use bitloop::client::Owner;
use bitloop::metainfo::Metainfo;
use bitloop::reactor::{Event, HandleId, HandleKind, Handler, Reactor, RunMode};
use bitloop::torrent::TorrentConfig;
use common::black_hole;
use common::counting::{heap, run_scenarios, Counting};
use common::fake_trackers::announces;
use common::seeders::{Content, Seeder};
use common::trackers::offline_resolver;
use common::world::session_config;

#[global_allocator]
static GLOBAL: Counting = Counting;

fn complete_download_returns_every_heap_block() {
    let content = Content::make(true, 2_000_000, 16384, vec![]);
    let seeder = Seeder::start(&content.torrent_path, &content.save_path);
    let options = |n: usize| {
        let mut options = DownloadOptions::new(content.dir.path().join(format!("download-{n}")));
        options.listen = Some("127.0.0.1:0".parse().unwrap());
        options.watch_signals = false;
        options.timeout = Duration::from_secs(30);
        options.trackers.resolver = offline_resolver();
        options.peers = vec![seeder.addr()];
        options
    };
    // A first run creates one-time globals (std's thread-locals and the like).
    let first = run(&content.torrent, options(0)).unwrap();
    assert_eq!(first.outcome, Outcome::Completed);
    drop(first);
    let before = heap();
    let summary = run(&content.torrent, options(1)).unwrap();
    let (outcome, report_ok) = (summary.outcome.clone(), summary.report.is_ok());
    drop(summary);
    let after = heap();
    assert_eq!(outcome, Outcome::Completed);
    assert!(report_ok, "finish() named live handles");
    assert_eq!(after, before, "live heap after a complete download");
    content.assert_identical(&content.dir.path().join("download-1"));
}

/// Every tracker unreachable (refused HTTP, silent UDP, a name that never resolves):
/// the download fails by its timeout and still gives back every heap block.
fn download_with_unreachable_trackers_returns_every_heap_block() {
    let silent_udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let trackers = vec![
        format!("http://{refused}/announce"),
        format!("udp://{}", silent_udp.local_addr().unwrap()),
        "http://tracker.invalid.bitloop.test:80/announce".to_string(),
    ];
    let content = Content::make(false, 100_000, 16384, trackers);
    let options = |n: usize| {
        let mut options = DownloadOptions::new(content.dir.path().join(format!("unreachable-{n}")));
        options.listen = Some("127.0.0.1:0".parse().unwrap());
        options.watch_signals = false;
        options.timeout = Duration::from_millis(700);
        options.trackers.resolver = offline_resolver();
        options.trackers.udp_retry_base = Duration::from_millis(50);
        options
    };
    drop(run(&content.torrent, options(0)).unwrap());
    let before = heap();
    let summary = run(&content.torrent, options(1)).unwrap();
    // Read what we need before dropping the summary: nothing of it may outlive the check.
    let no_peers = matches!(&summary.outcome, Outcome::Failed(why) if why.contains("no peers within 0.7 s"));
    let report_ok = summary.report.is_ok();
    drop(summary);
    assert_eq!(
        heap(),
        before,
        "live heap after a download with unreachable trackers"
    );
    assert!(no_peers, "the run failed for want of peers");
    assert!(report_ok, "finish() named live handles");
}

const FAKE_LISTENER: Owner = Owner::App(1);
const DROP_NOW: Owner = Owner::App(2);
const DROP_AFTER_HANDSHAKE: Owner = Owner::App(3);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cycle {
    /// Accepted, then closed before any handshake.
    DropInHandshake,
    /// Accepted, handshaken, then closed.
    DropAfterHandshake,
    /// Nothing listens there.
    Refused,
    /// The SYN goes unanswered until our connect timeout.
    ConnectTimeout,
}

/// A session with one torrent, plus fake peers on the same loop.
struct World {
    session: Session,
    torrent: TorrentKey,
    next: Cycle,
    hello: Vec<u8>,
}

impl World {
    /// Every table of the torrent empty but the deadline heap, whose stale entries
    /// are bounded (it is rebuilt past twice the live peers plus 64).
    fn forgot_everything(&self) -> bool {
        let sizes = self.session.torrent(self.torrent).unwrap().table_sizes();
        sizes[..9] == [0; 9] && sizes[10] == 0 && sizes[9] <= 64
    }
}

impl Handler<Owner> for World {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        match (owner, event) {
            (FAKE_LISTENER, Event::Accepted { stream, .. }) => {
                if self.next == Cycle::DropAfterHandshake {
                    rx.set_owner(stream, DROP_AFTER_HANDSHAKE).unwrap();
                } else {
                    rx.close(stream);
                }
            }
            (DROP_AFTER_HANDSHAKE, Event::Readable) => {
                let got = rx.tcp_received(id).unwrap().len();
                if got >= 68 {
                    rx.tcp_write(id, &self.hello).unwrap();
                    rx.tcp_shutdown(id).unwrap();
                }
            }
            (DROP_AFTER_HANDSHAKE | DROP_NOW, Event::Eof) => rx.close(id),
            (Owner::App(_), _) => {}
            (owner, event) => self.session.on_event(rx, id, owner, event),
        }
        // A front end reads its events; a queue nobody reads is bounded, not empty.
        while self.session.poll_event().is_some() {}
    }

    fn on_deferred(&mut self, rx: &mut Reactor<Owner>, _owner: Owner) {
        self.session.on_deferred(rx);
    }
}

fn churn(torrent: &Metainfo, tmp: &std::path::Path, cycles: usize) {
    let (_hole, _filler, hole) = black_hole();
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut rx: Reactor<Owner> = Reactor::new().unwrap();
    let listener = rx
        .tcp_listen("127.0.0.1:0".parse().unwrap(), FAKE_LISTENER)
        .unwrap();
    let fake = rx.local_addr(listener).unwrap();
    let mut hello = vec![19];
    hello.extend_from_slice(b"BitTorrent protocol");
    hello.extend_from_slice(&[0; 8]);
    hello.extend_from_slice(&torrent.info_hash.0);
    hello.extend_from_slice(b"-XX0001-churnchurn00");
    let torrent_config = TorrentConfig {
        connect_timeout: Duration::from_millis(20),
        reconnect_attempts: 0,
        ..TorrentConfig::default()
    };
    let mut session = Session::new(&mut rx, 0, session_config(torrent_config)).unwrap();
    let key = session
        .add_torrent(
            &mut rx,
            Source::Torrent(torrent),
            AddOptions::new(tmp.to_path_buf()),
        )
        .unwrap();
    let mut world = World {
        session,
        torrent: key,
        next: Cycle::Refused,
        hello,
    };

    let (mut warm, mut end) = ([(0isize, 0isize); 20], [(0isize, 0isize); 20]);
    for i in 0..cycles {
        let kind = match i % 20 {
            0 => Cycle::ConnectTimeout,
            n if n % 3 == 0 => Cycle::Refused,
            n if n % 3 == 1 => Cycle::DropInHandshake,
            _ => Cycle::DropAfterHandshake,
        };
        world.next = kind;
        let target = match kind {
            Cycle::Refused => refused,
            Cycle::ConnectTimeout => hole,
            _ => fake,
        };
        world.session.add_peer(&mut rx, key, target);
        assert_eq!(
            world.session.torrent(key).unwrap().peer_counts().connecting,
            1,
            "cycle {i} ({kind:?}) did not start"
        );
        let mut spins = 0;
        // Until the torrent forgot the peer and the fake side closed its end too.
        while !world.forgot_everything() || rx.stats().open.get(HandleKind::TcpStream) > 0 {
            rx.run(&mut world, RunMode::Once).unwrap();
            spins += 1;
            assert!(
                spins < 10_000,
                "cycle {i} ({kind:?}) never ended: {:?}",
                world.session.torrent(key).unwrap().table_sizes()
            );
        }
        // The cycle kinds repeat every 20; compare each position of the pattern just
        // after warm-up with the same position at the very end.
        if (100..120).contains(&i) {
            let h = heap();
            warm[i % 20] = (h.blocks, h.bytes);
        }
        if i >= cycles - 20 {
            let h = heap();
            end[i % 20] = (h.blocks, h.bytes);
        }
    }
    assert!(
        world.forgot_everything(),
        "{:?}",
        world.session.torrent(key).unwrap().table_sizes()
    );
    // Blocks must match exactly. Bytes may differ by what transient state holds at
    // the moment of sampling (superseded timer entries awaiting compaction), but a
    // container that grows with the cycles, even by one byte each, would be
    // thousands of bytes over.
    let blocks = |v: &[(isize, isize)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
    assert_eq!(
        blocks(&end),
        blocks(&warm),
        "live blocks grew over {cycles} cycles"
    );
    let growth = end.iter().zip(&warm).map(|(e, w)| e.1 - w.1).max().unwrap();
    assert!(
        growth < 2048,
        "live bytes grew by {growth} over {cycles} connect/disconnect cycles: {warm:?} → {end:?}"
    );
    world.session.close(&mut rx);
    rx.close_all_and_drain(&mut world).unwrap();
    rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
    assert_eq!(world.session.torrent(key).unwrap().table_sizes(), [0; 11]);
}

/// The seed's last "acceptable" 1.1 KB came from refused connections, connect
/// timeouts and peers dropping in the handshake: 10,000 of those, then 10,000
/// announces through each tracker kind, in one process, end at the baseline.
fn ten_thousand_peer_cycles_and_announces_in_one_process_leave_the_heap_at_baseline() {
    let content = Content::make(false, 100_000, 16384, vec![]);
    let before = heap();
    churn(&content.torrent, content.dir.path(), 10_000);
    announces("http", 10_000);
    announces("udp", 10_000);
    assert_eq!(heap(), before, "live heap after the churn");
}

fn main() {
    run_scenarios(&[
        (
            "complete_download_returns_every_heap_block",
            complete_download_returns_every_heap_block,
        ),
        (
            "download_with_unreachable_trackers_returns_every_heap_block",
            download_with_unreachable_trackers_returns_every_heap_block,
        ),
        (
            "ten_thousand_peer_cycles_and_announces_in_one_process_leave_the_heap_at_baseline",
            ten_thousand_peer_cycles_and_announces_in_one_process_leave_the_heap_at_baseline,
        ),
    ]);
}
