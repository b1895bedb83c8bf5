//! Leak proof for the reactor: live heap blocks, heap bytes and open fds return to
//! their baselines after close-then-drain, and churn makes nothing grow.
//!
//! This binary installs a counting `#[global_allocator]` and runs as a plain
//! `main` (no libtest harness): libtest's own threads allocate, and one thread
//! doing one scenario at a time is what makes the counts exact.

mod common;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::time::Duration;

use bitloop::reactor::{Event, HandleKind, Reactor, ReactorError, RunMode};
use common::black_hole;
use common::counting::{heap, run_scenarios, Counting};
use common::{open_fds, run_until, Recorder, Tag};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

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
    let (accepted, _) = peer.accept().unwrap();
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
    ]);
}
