//! The reactor's contract, tested through its public API on loopback.
//!
//! Every test ends with `close_and_finish`, which fails if anything is still
//! alive: a test that forgets to close is the seed's bug #12.

mod common;

use std::cell::Cell;
use std::io::Write;
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::time::Duration;

use bitloop::reactor::{Event, HandleKind, HandleState, Reactor, ReactorError, RunMode};
use common::bounded::accept_within;
use common::{close_and_finish, loopback, manual_reactor, run_until, Recorder, Seen, Tag};

const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn timer_fires_once_then_repeats_on_a_manual_clock() {
    let mut rx = manual_reactor();
    let mut rec = Recorder::new();
    let once = rx.timer(1).unwrap();
    let every = rx.timer(2).unwrap();
    rx.timer_start(once, Duration::from_millis(100), None).unwrap();
    rx.timer_start(every, Duration::from_millis(50), Some(Duration::from_millis(50)))
        .unwrap();

    rx.run(&mut rec, RunMode::NoWait).unwrap();
    assert!(rec.log.is_empty(), "nothing is due yet");
    rx.advance(Duration::from_millis(50));
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    assert_eq!(rec.events_of(every), vec![Seen::Timer]);
    rx.advance(Duration::from_millis(50));
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    assert_eq!(rec.events_of(once), vec![Seen::Timer]);
    assert_eq!(rec.count(every, &Seen::Timer), 2);
    assert!(!rx.timer_is_armed(once), "a one-shot timer disarms after firing");
    assert!(rx.timer_is_armed(every));
    assert!(rx.is_open(once), "firing is not closing");
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn equal_deadlines_fire_in_start_order() {
    let mut rx = manual_reactor();
    let order = Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = order.clone();
    let mut rec = Recorder::with(move |_, _, owner, event| {
        if matches!(event, Event::Timer) {
            seen.borrow_mut().push(owner);
        }
    });
    let ids: Vec<_> = (0..20).map(|tag| rx.timer(tag).unwrap()).collect();
    // Started in reverse slot order, so FIFO is not an accident of slot order.
    for id in ids.iter().rev() {
        rx.timer_start(*id, Duration::from_millis(10), None).unwrap();
    }
    rx.advance(Duration::from_millis(10));
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    assert_eq!(*order.borrow(), (0..20).rev().collect::<Vec<_>>());
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn stop_and_restart_supersede_old_deadlines() {
    let mut rx = manual_reactor();
    let mut rec = Recorder::new();
    let t = rx.timer(1).unwrap();
    rx.timer_start(t, Duration::from_millis(10), None).unwrap();
    rx.timer_start(t, Duration::from_millis(30), None).unwrap();
    rx.advance(Duration::from_millis(20));
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    assert!(rec.log.is_empty(), "the first deadline was replaced");
    assert_eq!(rx.stats().superseded_timer_entries, 1);
    rx.timer_stop(t).unwrap();
    rx.advance(Duration::from_millis(20));
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    assert!(rec.log.is_empty(), "a stopped timer does not fire");
    assert!(rx.is_open(t), "stopping is not closing");
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn restarting_a_timer_many_times_keeps_the_queue_bounded() {
    let mut rx = manual_reactor();
    let mut rec = Recorder::new();
    let t = rx.timer(1).unwrap();
    for i in 0..100_000u64 {
        rx.timer_start(t, Duration::from_secs(60 + i), None).unwrap();
    }
    let stats = rx.stats();
    assert!(
        stats.timer_entries <= 2 * stats.timers_armed + 64 + 1,
        "{stats:?}"
    );
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn timer_again_restarts_with_the_repeat() {
    let mut rx = manual_reactor();
    let mut rec = Recorder::new();
    let t = rx.timer(1).unwrap();
    rx.timer_start(t, Duration::from_millis(10), Some(Duration::from_millis(100)))
        .unwrap();
    rx.advance(Duration::from_millis(5));
    rx.timer_again(t).unwrap(); // now due at 105 ms, not 10 ms
    rx.advance(Duration::from_millis(50));
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    assert!(rec.log.is_empty());
    rx.advance(Duration::from_millis(50));
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    assert_eq!(rec.events_of(t), vec![Seen::Timer]);
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn repeating_timer_closed_from_its_own_callback_fires_no_more() {
    let mut rx = manual_reactor();
    let mut rec = Recorder::with(|rx, id, _, event| {
        if matches!(event, Event::Timer) {
            rx.close(id);
            rx.close(id); // twice: a no-op
        }
    });
    let t = rx.timer(7).unwrap();
    rx.timer_start(t, Duration::ZERO, Some(Duration::from_millis(1)))
        .unwrap();
    for _ in 0..5 {
        rx.advance(Duration::from_millis(1));
        rx.run(&mut rec, RunMode::NoWait).unwrap();
    }
    let closed = Seen::Closed {
        cancelled_writes: 0,
        cancelled_connect: false,
    };
    assert_eq!(rec.events_of(t), vec![Seen::Timer, closed]);
    assert!(!rx.is_alive());
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn close_is_idempotent_and_stale_ids_are_refused() {
    let mut rx = manual_reactor();
    let mut rec = Recorder::new();
    let t = rx.timer(1).unwrap();
    rx.close(t);
    rx.close(t);
    assert_eq!(rx.stats().closing.get(HandleKind::Timer), 1);
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    rx.close(t); // after removal: still a no-op
    assert_eq!(rec.log.len(), 1, "exactly one Closed: {:?}", rec.log);
    assert!(matches!(
        rx.timer_start(t, Duration::ZERO, None),
        Err(ReactorError::NotFound(_))
    ));
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn timer_closed_by_an_earlier_timer_in_the_same_batch_does_not_fire() {
    let mut rx = manual_reactor();
    let victim = Rc::new(Cell::new(None));
    let target = victim.clone();
    let mut rec = Recorder::with(move |rx, _, owner, event| {
        if owner == 1 && matches!(event, Event::Timer) {
            rx.close(target.get().unwrap());
        }
    });
    let first = rx.timer(1).unwrap();
    let second = rx.timer(2).unwrap();
    victim.set(Some(second));
    rx.timer_start(first, Duration::from_millis(5), None).unwrap();
    rx.timer_start(second, Duration::from_millis(5), None).unwrap();
    rx.advance(Duration::from_millis(5));
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    assert_eq!(rec.count(second, &Seen::Timer), 0);
    assert!(rec.closed(second));
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn aba_old_token_and_old_timer_entry_do_not_reach_the_new_handle() {
    let mut rx = manual_reactor();
    let mut rec = Recorder::new();
    let old = rx.timer(1).unwrap();
    rx.timer_start(old, Duration::from_millis(10), None).unwrap();
    let old_seq = rx.armed_seq(old);
    rx.close(old);
    rx.run(&mut rec, RunMode::NoWait).unwrap();

    // slab reuses the freed slot first: the new handle gets the same index.
    let new = rx.timer(2).unwrap();
    assert_eq!(new.index(), old.index());
    assert_ne!(new.generation(), old.generation());
    rx.timer_start(new, Duration::from_secs(3600), None).unwrap();

    let before = rx.stats().stale_events;
    rx.inject_event(old);
    rx.inject_timer_entry(old, rx.now(), old_seq);
    rx.advance(Duration::from_millis(10));
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    let after = rx.stats().stale_events;

    assert!(
        rec.events_of(new).is_empty(),
        "the new handle was touched: {:?}",
        rec.log
    );
    assert!(rx.timer_is_armed(new));
    // The injected token, the injected entry, and the closed timer's own leftover entry.
    assert_eq!(after - before, 3);
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn aba_for_streams_old_token_is_dropped() {
    let mut rx: Reactor<Tag> = Reactor::new().unwrap();
    let mut rec = Recorder::new();
    let listener = StdListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let old = rx.tcp_connect(addr, 1, None).unwrap();
    rx.close(old);
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    let new = rx.tcp_connect(addr, 2, None).unwrap();
    assert_eq!(new.index(), old.index());
    // The kernel completed the old handshake too: its connection is first in the queue.
    let (_old_peer, _) = accept_within(&listener, LIMIT, "the reactor's connect");
    let (mut peer, _) = accept_within(&listener, LIMIT, "the reactor's connect");
    run_until(&mut rx, &mut rec, LIMIT, |rec, _| {
        rec.count(new, &Seen::Connected) == 1
    });
    let before = rx.stats().stale_events;
    rx.inject_event(old);
    peer.write_all(b"x").unwrap();
    run_until(&mut rx, &mut rec, LIMIT, |rec, _| {
        rec.count(new, &Seen::Readable) == 1
    });
    assert_eq!(rx.stats().stale_events - before, 1);
    assert!(rec
        .events_of(old)
        .iter()
        .all(|s| matches!(s, Seen::Closed { .. })));
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn signals_arrive_as_events_and_after_close_reach_nobody() {
    use signal_hook::consts::{SIGUSR1, SIGUSR2};
    let mut rx: Reactor<Tag> = Reactor::new().unwrap();
    let mut rec = Recorder::new();
    let first = rx.signal_watch(&[SIGUSR1, SIGUSR2], 9).unwrap();
    signal_hook::low_level::raise(SIGUSR2).unwrap();
    run_until(&mut rx, &mut rec, LIMIT, |rec, _| {
        rec.count(first, &Seen::Signal(SIGUSR2)) == 1
    });
    rx.close(first);
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    assert!(rec.closed(first));
    assert!(!rx.is_open(first));
    assert_eq!(rx.kind(first), None, "the handle is gone");

    // signal-hook leaves its process-wide handler installed and does not restore
    // the default disposition (which for SIGUSR2 would end this process): the
    // signal is swallowed and reaches no one.
    signal_hook::low_level::raise(SIGUSR2).unwrap();
    let second = rx.signal_watch(&[SIGUSR2], 10).unwrap();
    signal_hook::low_level::raise(SIGUSR2).unwrap();
    run_until(&mut rx, &mut rec, LIMIT, |rec, _| {
        rec.count(second, &Seen::Signal(SIGUSR2)) == 1
    });
    for _ in 0..3 {
        rx.run(&mut rec, RunMode::NoWait).unwrap();
    }
    let signals: Vec<_> = rec
        .log
        .iter()
        .filter(|(_, _, seen)| matches!(seen, Seen::Signal(_)))
        .map(|(id, _, seen)| (*id, seen.clone()))
        .collect();
    assert_eq!(
        signals,
        vec![(first, Seen::Signal(SIGUSR2)), (second, Seen::Signal(SIGUSR2))],
        "the signal raised between the two watches went to nobody"
    );
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn deferred_work_runs_once_in_its_phase() {
    let mut rx = manual_reactor();
    let mut rec = Recorder::new();
    rx.defer(5);
    rx.defer(6);
    assert!(rx.is_alive(), "queued work keeps the loop alive");
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    let deferred: Vec<_> = rec
        .log
        .iter()
        .map(|(_, owner, seen)| (*owner, seen.clone()))
        .collect();
    assert_eq!(deferred, vec![(5, Seen::Deferred), (6, Seen::Deferred)]);
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    assert_eq!(rec.log.len(), 2);
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn run_default_returns_when_nothing_is_active_and_stop_ends_it_early() {
    let mut rx: Reactor<Tag> = Reactor::new().unwrap();
    let mut rec = Recorder::with(|rx, id, owner, event| {
        if owner == 1 && matches!(event, Event::Timer) {
            rx.close(id);
        }
        if owner == 2 && matches!(event, Event::Timer) {
            rx.stop();
        }
    });
    let t = rx.timer(1).unwrap();
    rx.timer_start(t, Duration::from_millis(1), None).unwrap();
    let idle = rx.timer(3).unwrap(); // stopped: not active, does not keep run() going
    assert!(!rx.run(&mut rec, RunMode::Default).unwrap());
    assert!(rec.closed(t));

    let stopper = rx.timer(2).unwrap();
    rx.timer_start(stopper, Duration::from_millis(1), Some(Duration::from_millis(1)))
        .unwrap();
    assert!(
        rx.run(&mut rec, RunMode::Default).unwrap(),
        "stop() returns with work left"
    );
    assert_eq!(rec.count(stopper, &Seen::Timer), 1);
    rx.close(idle);
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn shutting_down_refuses_new_handles() {
    let mut rx = manual_reactor();
    let mut rec = Recorder::new();
    rx.begin_shutdown();
    assert!(matches!(rx.timer(1), Err(ReactorError::ShuttingDown)));
    assert!(matches!(
        rx.udp_bind(loopback(), 1),
        Err(ReactorError::ShuttingDown)
    ));
    assert!(matches!(
        rx.tcp_listen(loopback(), 1),
        Err(ReactorError::ShuttingDown)
    ));
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn finish_names_every_live_handle_by_kind() {
    let mut rx: Reactor<Tag> = Reactor::new().unwrap();
    let mut rec = Recorder::new();
    let t = rx.timer(41).unwrap();
    let u = rx.udp_bind(loopback(), 42).unwrap();
    let busy = rx.finish().expect_err("two handles are alive");
    let kinds: Vec<_> = busy
        .handles
        .iter()
        .map(|h| (h.id, h.kind, h.state, h.owner.clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (t, HandleKind::Timer, HandleState::Open, "41".into()),
            (u, HandleKind::Udp, HandleState::Open, "42".into())
        ]
    );
    let text = busy.to_string();
    assert!(text.contains("timer") && text.contains("udp"), "{text}");
    close_and_finish(&mut rx, &mut rec);
}

/// Error-level log records of this test binary, kept for assertions.
static ERRORS_LOGGED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

struct KeepErrors;

impl log::Log for KeepErrors {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Error
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            ERRORS_LOGGED.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

#[test]
fn dropping_a_loop_with_live_handles_logs_it_and_panics_in_debug_builds_only() {
    static LOGGER: KeepErrors = KeepErrors;
    log::set_logger(&LOGGER).expect("no other test of this binary installs a logger");
    log::set_max_level(log::LevelFilter::Error);
    let dropped = std::panic::catch_unwind(|| {
        let mut rx: Reactor<Tag> = Reactor::new().unwrap();
        let _t = rx.timer(1).unwrap();
        drop(rx);
    });
    let logged = ERRORS_LOGGED
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.starts_with("reactor dropped without finish()") && line.contains("timer"))
        .count();
    assert_eq!(logged, 1, "the live handle is named in the log in every build");
    if cfg!(debug_assertions) {
        // A test that forgets to close fails (seed bug #12).
        let panic = dropped.expect_err("debug builds refuse the drop");
        let message = panic.downcast_ref::<String>().expect("a formatted panic message");
        assert!(
            message.starts_with("reactor dropped without finish()"),
            "{message}"
        );
    } else {
        // A release binary must not abort its user over a forgotten close.
        assert!(dropped.is_ok(), "release builds log and go on");
    }
}

// ------------------------------------------------------------------ out of descriptors
