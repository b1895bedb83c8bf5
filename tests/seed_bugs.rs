//! One regression test per bug class of the seed document (`shared/seed/`), named
//! after it. Each fails if its class came back; where the types make a class
//! impossible, the test runs the scenario and shows it ends clean: the loop
//! provably empty (`finish()`), every table empty, the live heap at its baseline.
//!
//! Counting allocator, plain `main`, one scenario at a time. Fake peers and fake
//! trackers run on the same loop as the code under test.

mod common;

use std::time::Duration;

use bitloop::reactor::{HandleKind, Reactor};
use bitloop::torrent::TorrentConfig;
use bitloop::tracker::http::parse_announce;
use common::counting::{allocations, heap, run_scenarios, Counting, Heap};
use common::fake_trackers::{announces, http_body};
use common::seeders::Content;
use common::world::{run_until, setup, shut_down, Fake};
use common::{open_fds, Recorder};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn assert_heap_back(before: Heap, what: &str) {
    assert_eq!(heap(), before, "{what}: live heap not back at its baseline");
}

fn content() -> (Content, Vec<u8>) {
    let content = Content::make(false, 4_000_000, 16384, vec![]);
    let data = std::fs::read(content.save_path.join("single.bin")).unwrap();
    (content, data)
}

// ------------------------------------------------------------------ the twelve

/// #1: a close that replaced the cleanup callback with null. Here `close` takes no
/// callback; the cleanup is the resource's own drop, whichever path closes it.
fn seed_bug_01_cleanup_fixed_at_creation_runs_on_every_close_path() {
    let (fds, before) = (open_fds(), heap());
    {
        let mut rx: Reactor<u32> = Reactor::new().unwrap();
        let mut rec = Recorder::new();
        let explicit = rx.udp_bind("127.0.0.1:0".parse().unwrap(), 1).unwrap();
        let twice = rx.tcp_listen("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let by_close_all = rx.udp_bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let timer = rx.timer(4).unwrap();
        rx.close(explicit);
        rx.close(twice);
        rx.close(twice);
        rx.close_all_and_drain(&mut rec).unwrap();
        for id in [explicit, twice, by_close_all, timer] {
            let closed = rec
                .events_of(id)
                .iter()
                .filter(|e| matches!(e, common::Seen::Closed { .. }))
                .count();
            assert_eq!(closed, 1, "{id}: one cleanup, whatever the close path");
        }
        rx.finish().unwrap();
    }
    assert_eq!(open_fds(), fds, "every socket's fd was released");
    assert_heap_back(before, "bug 1");
}

/// #2: timers and sockets stopped but never closed. Stopping is not closing, and
/// shutdown closes every slot, stopped or not.
fn seed_bug_02_stopped_timers_and_sockets_are_closed_at_shutdown() {
    let before = heap();
    {
        let mut rx: Reactor<u32> = Reactor::new().unwrap();
        let mut rec = Recorder::new();
        for i in 0..10 {
            let t = rx.timer(i).unwrap();
            rx.timer_start(t, Duration::from_secs(60), Some(Duration::from_secs(1)))
                .unwrap();
            rx.timer_stop(t).unwrap();
        }
        rx.udp_bind("127.0.0.1:0".parse().unwrap(), 99).unwrap();
        rx.close_all_and_drain(&mut rec).unwrap();
        let report = rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
        assert_eq!(report.closed.get(HandleKind::Timer), 10);
    }
    assert_heap_back(before, "bug 2");
}

/// #3: connections still connecting at shutdown were never freed.
fn seed_bug_03_connecting_peers_closed_at_shutdown() {
    let (content, data) = content();
    let before = heap();
    {
        let mut s = setup(&content, &data, &[], 8, TorrentConfig::default());
        run_until(&mut s, 100, |w| w.torrent().peer_counts().connecting == 8);
        shut_down(s);
    }
    assert_heap_back(before, "bug 3");
}

/// #4: the block-request timeout timer was never closed. It is the torrent's one
/// timer, armed while requests are outstanding, and shutdown closes it.
fn seed_bug_04_request_timeout_timer_closed_at_shutdown() {
    let (content, data) = content();
    let before = heap();
    {
        let mut s = setup(
            &content,
            &data,
            &[(Fake::Hoarder, 2)],
            0,
            TorrentConfig::default(),
        );
        run_until(&mut s, 1000, |w| w.torrent().unchoked_by() == 2);
        run_until(&mut s, 100, |_| true);
        assert!(s.rx.stats().timers_armed >= 1, "the request timeout is armed");
        shut_down(s);
    }
    assert_heap_back(before, "bug 4");
}

/// #5: a log output whose close did nothing. Outputs here are owned values (the
/// progress printer lives in the download session); dropping the session frees it.
fn seed_bug_05_owned_outputs_are_freed() {
    let (content, _) = content();
    let options = || {
        let mut options = bitloop::client::download::DownloadOptions::new(content.dir.path().join("out5"));
        options.listen = None;
        options.watch_signals = false;
        options.progress = true;
        options.timeout = Duration::from_millis(300);
        options.trackers.resolver = common::trackers::offline_resolver();
        options
    };
    let first = bitloop::client::download::run(&content.torrent, options()).unwrap();
    drop(first);
    let before = heap();
    let summary = bitloop::client::download::run(&content.torrent, options()).unwrap();
    assert!(summary.report.is_ok());
    drop(summary);
    assert_heap_back(before, "bug 5");
}

/// #6: the UDP tracker's peer list was never freed.
fn seed_bug_06_udp_tracker_peer_lists_are_freed() {
    let before = heap();
    announces("udp", 2000);
    assert_heap_back(before, "bug 6");
}

/// #7: a peer pointer cleared before cleanup could use it. Peers are slab entries
/// with a state; shutdown removes each through `remove_peer`, whatever its state.
/// Here: an interrupted download with peers connecting, handshaking, choked,
/// hoarding requests and transferring.
fn seed_bug_07_peers_in_every_state_cleaned_when_interrupted() {
    let (content, data) = content();
    let before = heap();
    {
        let kinds = [
            (Fake::Silent, 5),
            (Fake::Choker, 5),
            (Fake::Hoarder, 3),
            (Fake::Server, 3),
        ];
        let mut s = setup(&content, &data, &kinds, 5, TorrentConfig::default());
        run_until(&mut s, 5000, |w| {
            let t = w.torrent();
            let c = t.peer_counts();
            c.connecting >= 5
                && c.handshaking >= 5
                && c.active >= 11
                && t.unchoked_by() >= 6
                && t.stats().downloaded > 0
        });
        let counts = s.world.torrent().peer_counts();
        assert!(
            counts.connecting + counts.handshaking + counts.active >= 20,
            "{counts:?}"
        );
        assert!(!s.world.torrent().is_complete(), "interrupted mid-transfer");
        shut_down(s);
    }
    assert_heap_back(before, "bug 7");
}

/// #8: the HTTP tracker's twin of #6 (the fix had gone into one tracker only).
fn seed_bug_08_http_tracker_peer_lists_are_freed() {
    let before = heap();
    announces("http", 2000);
    assert_heap_back(before, "bug 8");
}

/// #9: peers that dropped and reconnected leaked their old connection.
fn seed_bug_09_reconnecting_peers_do_not_leak() {
    let (content, data) = content();
    let before = heap();
    {
        let config = TorrentConfig {
            reconnect_base: Duration::from_millis(1),
            reconnect_attempts: 4,
            ..TorrentConfig::default()
        };
        let mut s = setup(&content, &data, &[(Fake::Dropper, 20)], 0, config);
        // Every address is tried, dropped, retried four times, then forgotten: every
        // table empty but the deadline heap, whose stale entries are bounded.
        run_until(&mut s, 20_000, |w| {
            let sizes = w.torrent().table_sizes();
            sizes[..9] == [0; 9] && sizes[10] == 0 && sizes[9] <= 64
        });
        shut_down(s);
    }
    assert_heap_back(before, "bug 9");
}

/// #10: a free in the wrong layer (a double free). Results pass by value, so only
/// their last owner frees them; the compiler refuses a second free. The scenario:
/// results consumed by the caller leave nothing behind.
fn seed_bug_10_results_pass_by_value_and_are_freed_once() {
    let before = heap();
    announces("udp", 200);
    announces("http", 200);
    assert_heap_back(before, "bug 10");
}

/// #11: a response parsed twice, one result kept. One parse: a response with peers
/// costs exactly one allocation more than one without.
fn seed_bug_11_each_response_is_parsed_once() {
    let (empty, full) = (http_body(0), http_body(40));
    let count = |body: &[u8]| {
        let start = allocations();
        drop(parse_announce(body).unwrap());
        allocations() - start
    };
    assert_eq!(count(&full) - count(&empty), 1);
}

/// #12: tests that forgot to close. Every test here ends in `finish()`, and a loop
/// dropped with live handles panics, naming them.
fn seed_bug_12_a_test_that_forgets_to_close_fails() {
    let result = std::panic::catch_unwind(|| {
        let mut rx: Reactor<u32> = Reactor::new().unwrap();
        let _forgotten = rx.timer(7).unwrap();
    });
    if cfg!(debug_assertions) {
        // Debug builds (every test run but `--release`) refuse outright, naming it.
        let message = result
            .expect_err("dropping a live loop must fail")
            .downcast::<String>()
            .unwrap();
        assert!(
            message.contains("timer") && message.contains("owned by 7"),
            "{message}"
        );
    } else {
        // Release builds log the live handles and go on (a user's run must not abort).
        assert!(result.is_ok(), "release builds do not panic on a dropped loop");
    }
    let mut rx: Reactor<u32> = Reactor::new().unwrap();
    rx.udp_bind("127.0.0.1:0".parse().unwrap(), 8).unwrap();
    let busy = rx.finish().expect_err("a live handle is reported");
    assert!(busy.to_string().contains("udp"));
    rx.close_all_and_drain(&mut Recorder::new()).unwrap();
}

fn main() {
    // One-time globals first (std's thread-locals, the random keys).
    seed_bug_11_each_response_is_parsed_once();
    announces("udp", 5);
    let _ = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let text = info.to_string();
        if !text.contains("reactor dropped without finish()") {
            eprintln!("{text}");
        }
    }));
    run_scenarios(&[
        (
            "seed_bug_01_cleanup_fixed_at_creation_runs_on_every_close_path",
            seed_bug_01_cleanup_fixed_at_creation_runs_on_every_close_path,
        ),
        (
            "seed_bug_02_stopped_timers_and_sockets_are_closed_at_shutdown",
            seed_bug_02_stopped_timers_and_sockets_are_closed_at_shutdown,
        ),
        (
            "seed_bug_03_connecting_peers_closed_at_shutdown",
            seed_bug_03_connecting_peers_closed_at_shutdown,
        ),
        (
            "seed_bug_04_request_timeout_timer_closed_at_shutdown",
            seed_bug_04_request_timeout_timer_closed_at_shutdown,
        ),
        (
            "seed_bug_05_owned_outputs_are_freed",
            seed_bug_05_owned_outputs_are_freed,
        ),
        (
            "seed_bug_06_udp_tracker_peer_lists_are_freed",
            seed_bug_06_udp_tracker_peer_lists_are_freed,
        ),
        (
            "seed_bug_07_peers_in_every_state_cleaned_when_interrupted",
            seed_bug_07_peers_in_every_state_cleaned_when_interrupted,
        ),
        (
            "seed_bug_08_http_tracker_peer_lists_are_freed",
            seed_bug_08_http_tracker_peer_lists_are_freed,
        ),
        (
            "seed_bug_09_reconnecting_peers_do_not_leak",
            seed_bug_09_reconnecting_peers_do_not_leak,
        ),
        (
            "seed_bug_10_results_pass_by_value_and_are_freed_once",
            seed_bug_10_results_pass_by_value_and_are_freed_once,
        ),
        (
            "seed_bug_11_each_response_is_parsed_once",
            seed_bug_11_each_response_is_parsed_once,
        ),
        (
            "seed_bug_12_a_test_that_forgets_to_close_fails",
            seed_bug_12_a_test_that_forgets_to_close_fails,
        ),
    ]);
}
