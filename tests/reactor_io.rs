//! The reactor's contract for sockets, tested through its public API on loopback:
//! TCP accept, connect, reads, writes and backpressure, paused reads, UDP, and
//! running out of descriptors.
//!
//! Every test ends with `close_and_finish`, which fails if anything is still
//! alive: a test that forgets to close is the seed's bug #12.

mod common;

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::time::Duration;

use bitloop::reactor::{Config, Event, HandleKind, Reactor, ReactorError, RunMode};
use common::black_hole;
use common::bounded::{accept_within, join_within};
use common::{close_and_finish, loopback, manual_reactor, run_until, Recorder, Seen, Tag};

const LIMIT: Duration = Duration::from_secs(10);

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
    let mut rx = manual_reactor();
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
    let mut rx = manual_reactor();
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
    let (stdout, stderr) = (
        join_within(stdout, LIMIT, "the stdout"),
        join_within(stderr, LIMIT, "the stderr"),
    );
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
