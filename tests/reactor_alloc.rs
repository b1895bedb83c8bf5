//! Leak proof for the reactor: live heap blocks, heap bytes and open fds return to
//! their baselines after close-then-drain, and churn makes nothing grow.
//!
//! This binary installs a counting `#[global_allocator]` and runs as a plain
//! `main` (no libtest harness): libtest's own threads allocate, and one thread
//! doing one scenario at a time is what makes the counts exact.

mod common;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::time::Duration;

use std::io::Write;
use std::time::Instant;

use bitloop::reactor::{Event, HandleId, HandleKind, Handler, Reactor, ReactorError, RunMode};
use common::black_hole;
use common::bounded::accept_within;
use common::counting::{heap, run_scenarios, Counting};
use common::{loopback, open_fds, run_until, Recorder, Tag};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One-time globals (signal-hook's registry, std's thread-locals) are created
/// here, before any baseline is taken.
fn warm_up() {
    let mut rx: Reactor<Tag> = Reactor::new().unwrap();
    let mut rec = Recorder::new();
    rx.signal_watch(&[signal_hook::consts::SIGUSR1], 0).unwrap();
    let l = rx.tcp_listen(loopback(), 0).unwrap();
    let addr = rx.local_addr(l).unwrap();
    rx.tcp_connect(addr, 0, None).unwrap();
    rx.udp_bind(loopback(), 0).unwrap();
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    rx.close_all_and_drain(&mut rec).unwrap();
    rx.finish().unwrap();
}

/// Hundreds of handles of every kind in every state, then close-all and drain.
fn close_then_drain_with_every_kind_in_every_state() {
    let fds_before = open_fds();
    let heap_before = heap();
    {
        let (_hole, _filler, hole_addr) = black_hole();
        let mut rx: Reactor<Tag> = Reactor::new().unwrap();
        let mut rec = Recorder::with(|rx, _, owner, event| {
            if owner == 1 {
                if let Event::Accepted { stream, .. } = event {
                    rx.set_owner(*stream, 2).unwrap(); // accepted side never reads
                }
            }
        });
        let listener = rx.tcp_listen(loopback(), 1).unwrap();
        let addr = rx.local_addr(listener).unwrap();
        let mut clients = Vec::new();
        for _ in 0..100 {
            clients.push(rx.tcp_connect(addr, 3, Some(Duration::from_secs(30))).unwrap());
        }
        run_until(&mut rx, &mut rec, Duration::from_secs(10), |rec, _| {
            rec.log.iter().filter(|(_, o, _)| *o == 1).count() == 100
        });
        // Connected with unsent data: nobody reads, so queues fill past the kernel's buffers.
        let chunk = vec![7u8; 256 * 1024];
        for &client in &clients[..20] {
            for _ in 0..40 {
                match rx.tcp_write(client, &chunk) {
                    Ok(()) | Err(ReactorError::QueueFull(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            assert!(rx.tcp_unsent(client).unwrap() > 0);
        }
        // Connecting: their SYNs go unanswered.
        for _ in 0..50 {
            rx.tcp_connect(hole_addr, 4, Some(Duration::from_secs(30)))
                .unwrap();
        }
        // Timers: armed one-shot, repeating, and stopped.
        for i in 0..300 {
            let t = rx.timer(5).unwrap();
            match i % 3 {
                0 => rx.timer_start(t, Duration::from_secs(60), None).unwrap(),
                1 => rx
                    .timer_start(t, Duration::from_millis(1), Some(Duration::from_millis(1)))
                    .unwrap(),
                _ => {}
            }
        }
        // UDP sockets with queued datagrams.
        let target = "127.0.0.1:9".parse().unwrap();
        for _ in 0..50 {
            let u = rx.udp_bind(loopback(), 6).unwrap();
            rx.udp_queue_unsent(u, &[1; 512], target).unwrap();
        }
        rx.signal_watch(&[signal_hook::consts::SIGUSR1], 7).unwrap();
        rx.run(&mut rec, RunMode::NoWait).unwrap();

        let stats = rx.stats();
        assert!(stats.open.total() >= 100 + 100 + 50 + 300 + 50 + 2, "{stats:?}");
        rx.close_all_and_drain(&mut rec).unwrap();
        let stats = rx.stats();
        assert_eq!(stats.open.total() + stats.closing.total(), 0, "{stats:?}");
        assert_eq!(stats.registered(), 0, "{stats:?}");
        assert_eq!(stats.timers_armed, 0);
        let report = rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
        assert_eq!(report.closed.get(HandleKind::TcpStream), 250);
        assert_eq!(report.opened, report.closed);
    }
    assert_eq!(open_fds(), fds_before, "open fds back to baseline");
    assert_eq!(heap(), heap_before, "live heap back to baseline");
}

/// A loop holding thousands of handles, closed and drained, gives back every byte.
fn thousands_of_handles_closed_and_drained() {
    let heap_before = heap();
    let fds_before = open_fds();
    {
        let mut rx: Reactor<Tag> = Reactor::new().unwrap();
        let mut rec = Recorder::new();
        for i in 0..5000 {
            let t = rx.timer(i).unwrap();
            rx.timer_start(t, Duration::from_secs(u64::from(i)), None)
                .unwrap();
        }
        for i in 0..500 {
            rx.udp_bind(loopback(), i).unwrap();
        }
        rx.close_all_and_drain(&mut rec).unwrap();
        rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
    }
    assert_eq!(open_fds(), fds_before);
    assert_eq!(heap(), heap_before);
}

/// One open/use/close cycle of each kind.
fn churn_cycle(rx: &mut Reactor<Tag>, rec: &mut Recorder, listener_addr: SocketAddr, peer: &StdListener) {
    let t = rx.timer(1).unwrap();
    rx.timer_start(t, Duration::from_secs(5), None).unwrap();
    let u = rx.udp_bind(loopback(), 2).unwrap();
    let c = rx
        .tcp_connect(listener_addr, 3, Some(Duration::from_secs(5)))
        .unwrap();
    rx.tcp_write(c, b"hi").unwrap();
    let (accepted, _) = accept_within(peer, Duration::from_secs(10), "the churn connect");
    rx.run(rec, RunMode::NoWait).unwrap();
    drop(accepted);
    rx.close(t);
    rx.close(u);
    rx.close(c);
    rx.run(rec, RunMode::NoWait).unwrap();
    rec.log.clear();
}

/// 10,000 open/close cycles: the heap after 10,000 equals the heap after 1,000.
fn ten_thousand_open_close_cycles_grow_nothing() {
    let heap_before = heap();
    let fds_before = open_fds();
    {
        let peer = StdListener::bind(loopback()).unwrap();
        let addr = peer.local_addr().unwrap();
        let mut rx: Reactor<Tag> = Reactor::new().unwrap();
        let mut rec = Recorder::new();
        rec.log.reserve(64);
        for _ in 0..1000 {
            churn_cycle(&mut rx, &mut rec, addr, &peer);
        }
        let after_warm = heap();
        let stats_warm = rx.stats();
        for _ in 0..9000 {
            churn_cycle(&mut rx, &mut rec, addr, &peer);
        }
        let stats = rx.stats();
        assert_eq!(heap().blocks, after_warm.blocks, "live blocks grew during churn");
        assert_eq!(stats.open.total() + stats.closing.total(), 0);
        // Closed timers leave entries behind; compaction keeps them bounded.
        assert!(stats.timer_entries <= 2 * stats.timers_armed + 65, "{stats:?}");
        assert!(stats_warm.timer_entries <= 65, "{stats_warm:?}");
        assert_eq!(stats.closed_total.get(HandleKind::TcpStream), 10_000);
        rx.close_all_and_drain(&mut rec).unwrap();
        rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
    }
    assert_eq!(open_fds(), fds_before);
    assert_eq!(heap(), heap_before);
}

/// Consumes whatever arrives and counts it and `Drained` events, without allocating.
#[derive(Default)]
struct ConsumeAll {
    consumed: usize,
    drained: usize,
}

impl Handler<Tag> for ConsumeAll {
    fn on_event(&mut self, rx: &mut Reactor<Tag>, id: HandleId, _: Tag, event: Event) {
        match event {
            Event::Readable => {
                let n = rx.tcp_received(id).unwrap().len();
                rx.tcp_consume(id, n).unwrap();
                self.consumed += n;
            }
            Event::Drained => self.drained += 1,
            _ => {}
        }
    }
}

/// Connects `count` streams to `peer`, has each peer send `hello` and the loop
/// consume it; returns the ids and the peers' ends.
fn idle_streams(
    rx: &mut Reactor<Tag>,
    handler: &mut ConsumeAll,
    peer: &StdListener,
    count: usize,
    ids: &mut Vec<HandleId>,
    peers: &mut Vec<std::net::TcpStream>,
) {
    let addr = peer.local_addr().unwrap();
    let goal = handler.consumed + count * b"hello".len();
    for _ in 0..count {
        ids.push(rx.tcp_connect(addr, 1, None).unwrap());
        peers.push(accept_within(peer, Duration::from_secs(10), "an idle stream").0);
    }
    let first = peers.len() - count;
    for end in &mut peers[first..] {
        end.write_all(b"hello").unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while handler.consumed < goal {
        assert!(Instant::now() < deadline, "the hellos did not all arrive");
        rx.run(handler, RunMode::NoWait).unwrap();
    }
}

/// Idle connections cost almost nothing: each of 200 streams that received a
/// few bytes and consumed them holds no buffer sized for the worst case.
fn idle_streams_hold_no_buffers() {
    const STREAMS: usize = 200;
    /// What one idle stream may cost the reactor: its slot, its boxed state, and
    /// its share of the table's spare capacity; no read or write buffer.
    const BOUND: isize = 512;
    let peer = StdListener::bind(loopback()).unwrap();
    let mut rx: Reactor<Tag> = Reactor::new().unwrap();
    let mut handler = ConsumeAll::default();
    let mut ids = Vec::with_capacity(STREAMS + 1);
    let mut peers = Vec::with_capacity(STREAMS + 1);
    // One stream first, so the loop's one-time allocations exist before the baseline.
    idle_streams(&mut rx, &mut handler, &peer, 1, &mut ids, &mut peers);
    let before = heap();
    idle_streams(&mut rx, &mut handler, &peer, STREAMS, &mut ids, &mut peers);
    let after = heap();
    let per_stream = (after.bytes - before.bytes) / STREAMS as isize;
    println!(
        "{STREAMS} idle streams: {} heap bytes in {} blocks, {per_stream} bytes per stream",
        after.bytes - before.bytes,
        after.blocks - before.blocks
    );
    assert!(per_stream < BOUND, "{per_stream} bytes per idle stream");
    rx.close_all_and_drain(&mut handler).unwrap();
    rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
}

/// A write queue that had to hold bytes gives its memory back once drained,
/// however little it held.
fn drained_write_queue_gives_its_memory_back() {
    let peer_listener = StdListener::bind(loopback()).unwrap();
    let mut rx: Reactor<Tag> = Reactor::new().unwrap();
    let mut handler = ConsumeAll::default();
    let (mut ids, mut peers) = (Vec::with_capacity(1), Vec::with_capacity(1));
    idle_streams(&mut rx, &mut handler, &peer_listener, 1, &mut ids, &mut peers);
    let (id, peer) = (ids[0], &mut peers[0]);
    peer.set_nonblocking(true).unwrap();
    let mut sink = vec![0u8; 64 * 1024];
    let chunk = vec![9u8; 4 * 1024];
    let before = heap();
    // The peer does not read yet: the kernel's buffers fill, then a few bytes queue.
    while rx.tcp_unsent(id).unwrap() == 0 {
        rx.tcp_write(id, &chunk).unwrap();
    }
    assert!(heap().bytes > before.bytes, "something is queued");
    let deadline = Instant::now() + Duration::from_secs(10);
    while handler.drained == 0 {
        assert!(Instant::now() < deadline, "the queue never drained");
        loop {
            match std::io::Read::read(peer, &mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        rx.run(&mut handler, RunMode::NoWait).unwrap();
    }
    assert_eq!(rx.tcp_unsent(id).unwrap(), 0);
    assert_eq!(heap(), before, "the drained queue kept memory");
    rx.close_all_and_drain(&mut handler).unwrap();
    rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
}

fn main() {
    warm_up();
    run_scenarios(&[
        (
            "close_then_drain_with_every_kind_in_every_state",
            close_then_drain_with_every_kind_in_every_state,
        ),
        (
            "thousands_of_handles_closed_and_drained",
            thousands_of_handles_closed_and_drained,
        ),
        (
            "ten_thousand_open_close_cycles_grow_nothing",
            ten_thousand_open_close_cycles_grow_nothing,
        ),
        ("idle_streams_hold_no_buffers", idle_streams_hold_no_buffers),
        (
            "drained_write_queue_gives_its_memory_back",
            drained_write_queue_gives_its_memory_back,
        ),
    ]);
}
