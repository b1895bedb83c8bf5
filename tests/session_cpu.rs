//! Fix 13 of issue 16: no busy loop while the pool is full. Every slot holds a
//! connect that never completes (a listener whose accept queue is full drops our
//! SYNs) and refused peers come due for a retry: the loop must sleep until
//! something can happen, not fire the torrent's timer on every iteration.
//!
//! Measured two ways: the real binary's CPU time over a few seconds (from
//! `/proc/PID/stat`), and, in-process, the loop's iteration count over a second
//! with a short reconnection backoff, for a full pool and for a full session-wide
//! half-open budget.

mod common;
#[path = "common/sessions.rs"]
mod sessions;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bitloop::client::session::{AddOptions, Session, SessionConfig, Source};
use bitloop::client::Owner;
use bitloop::reactor::{Event, HandleId, Reactor, RunMode};
use bitloop::torrent::TorrentConfig;
use common::black_holes;
use common::seeders::Content;
use sessions::{cpu_time, shut_down, Guarded, Host, Side};

/// Ports on 127.0.0.1 where nothing listens (bound a moment ago, then let go).
fn refused_ports(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// Sleeps until `at`: the measurement needs wall time to pass (nothing is
/// being waited for).
fn sleep_until(at: Instant) {
    std::thread::sleep(at.saturating_duration_since(Instant::now()));
}

#[test]
fn the_binary_sleeps_while_every_slot_holds_a_connect_that_never_completes() {
    let content = Content::make(false, 100_000, 16384, vec![]);
    // More refused ports than slots: candidates are tried in random order, and with
    // 20 of 30 refusing, some are sure to be tried (and come due for a retry 5 s
    // later) before the black holes take all five slots.
    let refused = refused_ports(20);
    let (_holes, holes) = black_holes(10);
    let output = content.dir.path().join("out");
    let mut command = Command::new(env!("CARGO_BIN_EXE_bitloop"));
    command
        .args(["download", content.torrent_path.to_str().unwrap(), "-o"])
        .arg(&output)
        .args(["--quiet", "--max-peers", "5", "--timeout", "60"]);
    for peer in refused.iter().chain(&holes) {
        command.args(["--peer", &peer.to_string()]);
    }
    let started = Instant::now();
    let mut child = Guarded(Some(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let pid = child.pid();
    // Refused peers fail at once and are due again 5 s later (the default backoff);
    // the holes' connects time out only after 10 s. Between the two, the pool is
    // full and retries are due: exactly the state that spun.
    sleep_until(started + Duration::from_millis(5_500));
    let before = cpu_time(pid);
    sleep_until(started + Duration::from_millis(9_000));
    let after = cpu_time(pid);
    let window = after - before;
    eprintln!("CPU time: {window:?} in the 3.5 s window, {after:?} in 9 s");
    assert!(
        child.child().try_wait().unwrap().is_none(),
        "bitloop exited early"
    );
    child.signal(libc::SIGINT);
    let status = child.wait_within(Duration::from_secs(10), "bitloop after Ctrl+C");
    let mut stderr = String::new();
    use std::io::Read;
    let _ = child.child().stderr.take().unwrap().read_to_string(&mut stderr);
    assert_eq!(status.code(), Some(130), "exit after Ctrl+C; stderr:\n{stderr}");
    assert!(
        window < Duration::from_millis(300),
        "bitloop used {window:?} of CPU in 3.5 s with a full pool (total {after:?})"
    );
    assert!(
        after < Duration::from_millis(800),
        "bitloop used {after:?} of CPU in 9 s"
    );
}

const STOP: Owner = Owner::App(1);

#[derive(Default)]
struct Stopwatch {
    fired: bool,
}

impl Side for Stopwatch {
    fn on_event(&mut self, _rx: &mut Reactor<Owner>, _id: HandleId, owner: Owner, event: Event) {
        if owner == STOP && matches!(event, Event::Timer) {
            self.fired = true;
        }
    }
}

/// Runs the loop (no guard timer: each poll sleeps as long as the loop wants)
/// until a timer set for `after` fires; returns the iterations run meanwhile.
fn iterations_until(rx: &mut Reactor<Owner>, host: &mut Host<Stopwatch>, after: Duration) -> u64 {
    let timer = rx.timer(STOP).unwrap();
    rx.timer_start(timer, after, None).unwrap();
    let start = rx.stats().iterations;
    host.side.fired = false;
    let deadline = Instant::now() + after + Duration::from_secs(10);
    while !host.side.fired {
        assert!(Instant::now() < deadline, "the stop timer never fired");
        rx.run(host, RunMode::Once).unwrap();
    }
    rx.close(timer);
    rx.stats().iterations - start
}

/// A session with one torrent, `refused` refused ports and `holes` black holes as
/// peers; returns the loop's iterations over one second once the pool settled.
fn iterations_with_full_budget(torrent: TorrentConfig, session: SessionConfig) -> u64 {
    let _ = env_logger::builder().is_test(true).try_init();
    let torrent_slots = torrent.max_peers;
    let content = Content::make(false, 100_000, 16384, vec![]);
    let refused = refused_ports(20);
    let (_holes, holes) = black_holes(10);
    let mut rx: Reactor<Owner> = Reactor::new().unwrap();
    let config = SessionConfig {
        listen: Vec::new(),
        torrent,
        ..session
    };
    let session = Session::new(&mut rx, 0, config).unwrap();
    let mut host = Host::new(session, Stopwatch::default());
    let key = host
        .session
        .add_torrent(
            &mut rx,
            Source::Torrent(&content.torrent),
            AddOptions::new(content.dir.path().join("out")),
        )
        .unwrap();
    for peer in refused.iter().chain(&holes) {
        host.session.add_peer(&mut rx, key, *peer);
    }
    // Settle: refused peers fail and back off (50 ms, doubling) while slots are
    // free; the holes end up holding every slot.
    iterations_until(&mut rx, &mut host, Duration::from_millis(500));
    let counts = host.session.torrent(key).unwrap().peer_counts();
    // Connects in progress take no peer slot, but at most twice the free slots
    // (or the session's half-open budget) may be pending: the holes hold them all.
    let limit = 2 * torrent_slots;
    assert!(
        (5..=limit).contains(&counts.connecting) && counts.active == 0,
        "every pending connect a black hole: {counts:?}"
    );
    let spent = iterations_until(&mut rx, &mut host, Duration::from_secs(1));
    shut_down(&mut rx, &mut host);
    rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
    spent
}

fn short_backoff() -> TorrentConfig {
    TorrentConfig {
        reconnect_base: Duration::from_millis(50),
        reconnect_attempts: 20,
        connect_timeout: Duration::from_secs(30),
        ..TorrentConfig::default()
    }
}

#[test]
fn a_full_pool_with_retries_due_does_not_spin_the_loop() {
    let spent = iterations_with_full_budget(
        TorrentConfig {
            max_peers: 5,
            ..short_backoff()
        },
        sessions::config(),
    );
    // Retries come due every few tens of milliseconds at first; a handful of
    // wake-ups a second is fine, thousands is a spin.
    eprintln!("{spent} iterations in 1 s (full pool)");
    assert!(spent < 100, "{spent} loop iterations in 1 s with a full pool");
}

#[test]
fn a_full_half_open_budget_with_retries_due_does_not_spin_the_loop() {
    let spent = iterations_with_full_budget(
        short_backoff(),
        SessionConfig {
            max_half_open: 5,
            ..sessions::config()
        },
    );
    eprintln!("{spent} iterations in 1 s (full half-open budget)");
    assert!(
        spent < 100,
        "{spent} loop iterations in 1 s with the half-open budget full"
    );
}
