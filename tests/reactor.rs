//! The reactor's contract, tested through its public API on loopback.
//!
//! Every test ends with `close_and_finish`, which fails if anything is still
//! alive: a test that forgets to close is the seed's bug #12.

mod common;

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::time::Duration;

use bitloop::reactor::{Config, Event, HandleKind, HandleState, Reactor, ReactorError, RunMode};
use common::black_hole;
use common::bounded::{accept_within, join_within};
use common::{close_and_finish, run_until, Recorder, Seen, Tag};

const LIMIT: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn manual() -> Reactor<Tag> {
    Reactor::with_config(Config {
        manual_clock: true,
        ..Config::default()
    })
    .unwrap()
}

#[test]
fn timer_fires_once_then_repeats_on_a_manual_clock() {
    let mut rx = manual();
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
    let mut rx = manual();
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
    let mut rx = manual();
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
    let mut rx = manual();
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
    let mut rx = manual();
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
    let mut rx = manual();
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
    let mut rx = manual();
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
    let mut rx = manual();
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
    let mut rx = manual();
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
    let (_old_peer, _) = accept_within(&listener, LIMIT, "the old connect");
    let (mut peer, _) = accept_within(&listener, LIMIT, "the new connect");
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
fn tcp_echo_round_trip_with_accept_and_set_owner() {
    let mut rx: Reactor<Tag> = Reactor::new().unwrap();
    // Owner tags: 1 = listener, 2 = accepted side, 3 = client.
    let mut rec = Recorder::with(|rx, id, owner, event| match (owner, event) {
        (1, Event::Accepted { stream, .. }) => rx.set_owner(*stream, 2).unwrap(),
        (2, Event::Readable) => {
            let data = rx.tcp_received(id).unwrap().to_vec();
            rx.tcp_consume(id, data.len()).unwrap();
            rx.tcp_write(id, &data).unwrap();
        }
        (2, Event::Eof) => rx.tcp_shutdown(id).unwrap(),
        _ => {}
    });
    let listener = rx.tcp_listen(loopback(), 1).unwrap();
    let addr = rx.local_addr(listener).unwrap();
    let client = rx.tcp_connect(addr, 3, Some(Duration::from_secs(5))).unwrap();
    rx.tcp_write(client, b"hello, loop").unwrap(); // queued while connecting
    rx.tcp_shutdown(client).unwrap();
    run_until(&mut rx, &mut rec, LIMIT, |rec, _| {
        rec.count(client, &Seen::Eof) == 1
    });
    assert_eq!(rx.tcp_received(client).unwrap(), b"hello, loop");
    assert_eq!(rec.count(client, &Seen::Connected), 1);
    assert!(matches!(
        rx.tcp_write(client, b"late"),
        Err(ReactorError::WriteAfterShutdown(_))
    ));
    assert!(rec
        .log
        .iter()
        .any(|(_, owner, seen)| *owner == 2 && *seen == Seen::Eof));
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn listener_closed_inside_accepted_accepts_nothing_more_in_that_batch() {
    let mut rx: Reactor<Tag> = Reactor::new().unwrap();
    let mut rec = Recorder::with(|rx, id, owner, event| {
        if owner == 1 && matches!(event, Event::Accepted { .. }) {
            rx.close(id);
        }
    });
    let listener = rx.tcp_listen(loopback(), 1).unwrap();
    let addr = rx.local_addr(listener).unwrap();
    // Five handshakes complete in the kernel before the loop runs: one readiness
    // event, one accept batch.
    let clients: Vec<_> = (0..5)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    run_until(&mut rx, &mut rec, LIMIT, |rec, _| rec.closed(listener));
    let accepted = rec
        .events_of(listener)
        .iter()
        .filter(|s| matches!(s, Seen::Accepted(_)))
        .count();
    assert_eq!(accepted, 1, "{:?}", rec.log);
    let stats = rx.stats();
    assert_eq!(
        stats.opened_total.get(HandleKind::TcpStream),
        1,
        "streams were accepted after the close and never announced: {stats:?}"
    );
    drop(clients);
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn connect_refused_is_reported_and_the_stream_closed_by_the_loop() {
    let mut rx: Reactor<Tag> = Reactor::new().unwrap();
    let mut rec = Recorder::new();
    let addr = {
        let l = StdListener::bind(loopback()).unwrap();
        l.local_addr().unwrap()
    }; // closed again: nothing listens there now
    let id = rx.tcp_connect(addr, 1, None).unwrap();
    run_until(&mut rx, &mut rec, LIMIT, |rec, _| rec.closed(id));
    assert_eq!(
        rec.events_of(id),
        vec![
            Seen::ConnectFailed(std::io::ErrorKind::ConnectionRefused),
            Seen::Closed {
                cancelled_writes: 0,
                cancelled_connect: true
            }
        ]
    );
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn connect_timeout_fails_a_connect_that_never_completes() {
    let (_hole, _filler, addr) = black_hole();
    let mut rx = manual();
    let mut rec = Recorder::new();
    let id = rx.tcp_connect(addr, 1, Some(Duration::from_secs(5))).unwrap();
    for _ in 0..5 {
        rx.run(&mut rec, RunMode::NoWait).unwrap();
    }
    assert!(
        rx.tcp_is_connecting(id).unwrap(),
        "the SYN should be unanswered: {:?}",
        rec.log
    );
    rx.advance(Duration::from_secs(5));
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    assert_eq!(
        rec.events_of(id),
        vec![
            Seen::ConnectFailed(std::io::ErrorKind::TimedOut),
            Seen::Closed {
                cancelled_writes: 0,
                cancelled_connect: true
            }
        ]
    );
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn closing_a_connecting_stream_cancels_the_connect_and_its_writes() {
    let (_hole, _filler, addr) = black_hole();
    let mut rx = manual();
    let mut rec = Recorder::new();
    let id = rx.tcp_connect(addr, 1, Some(Duration::from_secs(5))).unwrap();
    rx.tcp_write(id, b"never sent").unwrap();
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    rx.close(id);
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    assert_eq!(
        rec.events_of(id),
        vec![Seen::Closed {
            cancelled_writes: 10,
            cancelled_connect: true
        }]
    );
    // The connect timeout died with the connection.
    rx.advance(Duration::from_secs(10));
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    assert_eq!(rec.events_of(id).len(), 1);
    assert_eq!(rx.stats().timers_armed, 0);
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn close_during_a_read_callback_stops_further_events() {
    let mut rx: Reactor<Tag> = Reactor::new().unwrap();
    let mut rec = Recorder::with(|rx, id, owner, event| {
        if owner == 1 && matches!(event, Event::Readable) {
            rx.close(id);
        }
    });
    let listener = StdListener::bind(loopback()).unwrap();
    let id = rx.tcp_connect(listener.local_addr().unwrap(), 1, None).unwrap();
    let (mut peer, _) = accept_within(&listener, LIMIT, "the reactor's connect");
    peer.write_all(b"first").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap(); // an Eof would follow if we were still open
    run_until(&mut rx, &mut rec, LIMIT, |rec, _| rec.closed(id));
    let events = rec.events_of(id);
    assert_eq!(
        events[events.len() - 2..],
        [
            Seen::Readable,
            Seen::Closed {
                cancelled_writes: 0,
                cancelled_connect: false
            }
        ]
    );
    assert_eq!(rec.count(id, &Seen::Eof), 0);
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn write_backpressure_queue_full_then_drained() {
    let config = Config {
        write_queue_limit: 1 << 20,
        ..Config::default()
    };
    let mut rx: Reactor<Tag> = Reactor::with_config(config).unwrap();
    let mut rec = Recorder::new();
    let listener = StdListener::bind(loopback()).unwrap();
    let id = rx.tcp_connect(listener.local_addr().unwrap(), 1, None).unwrap();
    let (mut peer, _) = accept_within(&listener, LIMIT, "the reactor's connect");
    run_until(&mut rx, &mut rec, LIMIT, |rec, _| {
        rec.count(id, &Seen::Connected) == 1
    });

    // The peer does not read yet, so the kernel buffers fill and our queue grows.
    let chunk = vec![0x5a; 64 * 1024];
    let mut sent = 0usize;
    loop {
        match rx.tcp_write(id, &chunk) {
            Ok(()) => sent += chunk.len(),
            Err(ReactorError::QueueFull(_)) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(sent < 256 << 20, "queue never filled");
    }
    assert!(rx.tcp_unsent(id).unwrap() > 0);
    let reader = std::thread::spawn(move || {
        let mut total = 0;
        let mut buf = vec![0; 1 << 16];
        while total < sent {
            let n = peer.read(&mut buf).unwrap();
            assert!(buf[..n].iter().all(|&b| b == 0x5a));
            total += n;
        }
        total
    });
    run_until(&mut rx, &mut rec, LIMIT, |rec, _| {
        rec.count(id, &Seen::Drained) == 1
    });
    assert_eq!(rx.tcp_unsent(id).unwrap(), 0);
    assert_eq!(join_within(reader, LIMIT, "the reader"), sent);
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn bounded_read_buffer_delivers_every_byte_in_order() {
    let config = Config {
        read_buffer_limit: 4096,
        ..Config::default()
    };
    let mut rx: Reactor<Tag> = Reactor::with_config(config).unwrap();
    let received = Rc::new(std::cell::RefCell::new(Vec::new()));
    let sink = received.clone();
    let mut rec = Recorder::with(move |rx, id, _, event| {
        if matches!(event, Event::Readable) {
            // Consume at most 1000 bytes per event: the buffer fills, reading
            // pauses, and resumes when we consume.
            let data = rx.tcp_received(id).unwrap();
            assert!(data.len() <= 4096);
            let take = data.len().min(1000);
            sink.borrow_mut().extend_from_slice(&data[..take]);
            rx.tcp_consume(id, take).unwrap();
        }
    });
    let listener = StdListener::bind(loopback()).unwrap();
    let id = rx.tcp_connect(listener.local_addr().unwrap(), 1, None).unwrap();
    let (mut peer, _) = accept_within(&listener, LIMIT, "the reactor's connect");
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let expected = payload.clone();
    let writer = std::thread::spawn(move || {
        peer.write_all(&payload).unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    run_until(&mut rx, &mut rec, LIMIT, |rec, _| rec.count(id, &Seen::Eof) == 1);
    join_within(writer, LIMIT, "the writer");
    while let Ok(data) = rx.tcp_received(id) {
        if data.is_empty() {
            break;
        }
        let data = data.to_vec();
        received.borrow_mut().extend_from_slice(&data);
        rx.tcp_consume(id, data.len()).unwrap();
    }
    assert_eq!(*received.borrow(), expected);
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn paused_reads_leave_bytes_in_the_kernel_and_resuming_reads_what_arrived() {
    let mut rx: Reactor<Tag> = Reactor::new().unwrap();
    let consumed = Rc::new(Cell::new(0usize));
    let total = consumed.clone();
    let mut rec = Recorder::with(move |rx, id, _, event| {
        if matches!(event, Event::Readable) {
            let n = rx.tcp_received(id).unwrap().len();
            rx.tcp_consume(id, n).unwrap();
            total.set(total.get() + n);
        }
    });
    let listener = StdListener::bind(loopback()).unwrap();
    let id = rx.tcp_connect(listener.local_addr().unwrap(), 1, None).unwrap();
    let (mut peer, _) = accept_within(&listener, LIMIT, "the reactor's connect");
    run_until(&mut rx, &mut rec, LIMIT, |rec, _| {
        rec.count(id, &Seen::Connected) == 1
    });
    rx.tcp_pause_reads(id).unwrap();
    assert!(rx.tcp_reads_paused(id).unwrap());

    // The peer writes, with the loop running, until TCP flow control stops it.
    peer.set_nonblocking(true).unwrap();
    let chunk = vec![0x42; 64 * 1024];
    let mut sent = 0usize;
    loop {
        match peer.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
        rx.run(&mut rec, RunMode::NoWait).unwrap();
        assert!(sent < 256 << 20, "flow control never pushed back");
    }
    for _ in 0..5 {
        rx.run(&mut rec, RunMode::NoWait).unwrap(); // whatever the OS still reports
    }
    assert_eq!(rec.count(id, &Seen::Readable), 0, "nothing read while paused");
    assert_eq!(consumed.get(), 0);
    assert!(
        rx.tcp_received(id).unwrap().is_empty(),
        "the bytes stayed in the kernel"
    );
    assert!(rx.is_open(id), "pausing is not closing");

    // No new data can arrive (the peer is blocked), so no new OS event: resuming
    // alone must get the stream read in the very next iteration.
    rx.tcp_resume_reads(id).unwrap();
    assert!(!rx.tcp_reads_paused(id).unwrap());
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    assert!(
        rec.count(id, &Seen::Readable) >= 1,
        "resume did not re-queue the stream"
    );
    // And everything the peer wrote arrives, in flow again.
    run_until(&mut rx, &mut rec, LIMIT, |_, _| consumed.get() == sent);
    close_and_finish(&mut rx, &mut rec);
}

#[test]
fn udp_ping_pong_and_queued_datagrams_are_cancelled_at_close() {
    let mut rx: Reactor<Tag> = Reactor::new().unwrap();
    let mut rec = Recorder::with(|rx, id, owner, event| {
        if matches!(event, Event::Readable) {
            let mut buf = [0u8; 1500];
            while let Some((n, from)) = rx.udp_recv_from(id, &mut buf).unwrap() {
                if owner == 1 && &buf[..n] == b"ping" {
                    rx.udp_send_to(id, b"pong", from).unwrap();
                }
            }
        }
    });
    let a = rx.udp_bind(loopback(), 1).unwrap();
    let b = rx.udp_bind(loopback(), 2).unwrap();
    let a_addr = rx.local_addr(a).unwrap();
    rx.udp_send_to(b, b"ping", a_addr).unwrap();
    run_until(&mut rx, &mut rec, LIMIT, |rec, _| {
        rec.count(b, &Seen::Readable) >= 1
    });
    rx.udp_queue_unsent(b, b"late", a_addr).unwrap();
    rx.close(b);
    rx.run(&mut rec, RunMode::NoWait).unwrap();
    assert_eq!(
        rec.events_of(b).last(),
        Some(&Seen::Closed {
            cancelled_writes: 1,
            cancelled_connect: false
        })
    );
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
    let mut rx = manual();
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
    let mut rx = manual();
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

/// Set in the child process that runs one test alone (see `run_alone_in_child`).
const CHILD_ENV: &str = "BITLOOP_REACTOR_TEST_CHILD";

/// Runs the test `name` of this binary alone in a child process and asserts it
/// passed. For tests that change process-wide state (the descriptor limit), which
/// must not reach the other tests running on libtest's threads.
fn run_alone_in_child(name: &str) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("child running {name} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        status.success() && stdout.contains("test result: ok. 1 passed"),
        "child running {name}: {status}\n{stdout}\n{stderr}"
    );
}

/// The process's soft and hard limits on open descriptors.
fn descriptor_limit() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, exclusively borrowed struct.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    limit
}

fn set_descriptor_limit(soft: libc::rlim_t) {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: descriptor_limit().rlim_max,
    };
    // SAFETY: setrlimit only reads the struct, which lives across the call.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

/// Makes new descriptors impossible while keeping every one in use: the limit
/// goes just above the highest descriptor, and fillers take the free ones below it.
fn exhaust_descriptors() -> Vec<std::fs::File> {
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<libc::rlim_t>().ok())
        .max()
        .unwrap();
    set_descriptor_limit(highest + 1);
    let mut fillers = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => fillers.push(file),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                return fillers;
            }
        }
        assert!(fillers.len() < 100_000, "the descriptor limit did not take");
    }
}

/// Runs single iterations for `window`; returns how many ran.
fn iterations_during(rx: &mut Reactor<Tag>, rec: &mut Recorder, window: Duration) -> u64 {
    let before = rx.stats().iterations;
    let start = std::time::Instant::now();
    while start.elapsed() < window {
        rx.run(rec, RunMode::Once).unwrap();
    }
    rx.stats().iterations - before
}

#[test]
fn out_of_descriptors_accept_sleeps_instead_of_spinning_and_recovers() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return run_alone_in_child("out_of_descriptors_accept_sleeps_instead_of_spinning_and_recovers");
    }
    let original_limit = descriptor_limit().rlim_cur;
    let mut rx: Reactor<Tag> = Reactor::new().unwrap();
    let mut rec = Recorder::with(|rx, _, owner, event| {
        if let (1, Event::Accepted { stream, .. }) = (owner, event) {
            rx.set_owner(*stream, 2).unwrap();
        }
    });
    let listener = rx.tcp_listen(loopback(), 1).unwrap();
    let addr = rx.local_addr(listener).unwrap();
    // A heartbeat bounds each blocking poll, so an idle loop runs ~10 iterations a
    // second; a loop that spins on a listener it cannot accept from runs millions.
    let heartbeat = rx.timer(3).unwrap();
    let beat = Duration::from_millis(100);
    rx.timer_start(heartbeat, beat, Some(beat)).unwrap();
    let accepted = |rec: &Recorder| {
        rec.log
            .iter()
            .filter(|(_, _, s)| matches!(s, Seen::Accepted(_)))
            .count()
    };

    // 1. No descriptor left, but the loop's reserve is below the limit: every
    //    pending connection is accepted into it and closed at once.
    let mut waiting: Vec<_> = (0..20)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let fillers = exhaust_descriptors();
    let iterations = iterations_during(&mut rx, &mut rec, Duration::from_secs(1));
    assert!(
        iterations <= 50,
        "{iterations} iterations in one second: the loop spins"
    );
    let stats = rx.stats();
    println!("reserve: {iterations} iterations in 1 s, {stats:?}");
    assert_eq!(stats.accepts_refused, 20, "{stats:?}");
    assert_eq!(accepted(&rec), 0);
    for client in &mut waiting {
        client.set_read_timeout(Some(LIMIT)).unwrap();
        match client.read(&mut [0; 1]) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("a refused connection should end, got {other:?}"),
        }
    }
    drop(waiting);
    // Descriptors free up: the next connection is accepted.
    drop(fillers);
    let _late = std::net::TcpStream::connect(addr).unwrap();
    run_until(&mut rx, &mut rec, LIMIT, |rec, _| accepted(rec) == 1);
    set_descriptor_limit(original_limit);

    // 2. No descriptor at all, not even for the reserve (the limit is below every
    //    descriptor but the standard three): the listener backs off on the timer
    //    heap, retrying at 100 ms, 200 ms, 400 ms, 800 ms, then every second.
    let waiting: Vec<_> = (0..5)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    set_descriptor_limit(3);
    let iterations = iterations_during(&mut rx, &mut rec, Duration::from_secs(1));
    let stats = rx.stats();
    set_descriptor_limit(original_limit);
    assert!(
        iterations <= 50,
        "{iterations} iterations in one second: the loop spins"
    );
    println!("out of descriptors: {iterations} iterations in 1 s, {stats:?}");
    assert!((2..=6).contains(&stats.accept_backoffs), "{stats:?}");
    assert_eq!(accepted(&rec), 1, "nothing accepted while out of descriptors");
    // Descriptors free up: the next retry accepts everything that waited.
    run_until(&mut rx, &mut rec, LIMIT, |rec, _| accepted(rec) == 6);
    assert_eq!(rx.stats().accepts_refused, 20);
    drop(waiting);
    close_and_finish(&mut rx, &mut rec);
}
