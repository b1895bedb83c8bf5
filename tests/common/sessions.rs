//! Helpers for the session tests (`tests/session_*.rs`): a handler that drives a
//! `Session` beside scripted peers on the same loop, bounded runs, the shutdown
//! proof (every table empty, the loop provably empty), raw handshakes, a fake
//! HTTP tracker, bounded waits for child processes and their CPU time.
//!
//! Included with `#[path = "common/sessions.rs"] mod sessions;` next to `mod common;`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bitloop::client::session::{Session, SessionConfig, SessionEvent, TorrentKey};
use bitloop::client::Owner;
use bitloop::metainfo::InfoHash;
use bitloop::reactor::{Event, HandleId, Handler, Reactor, RunMode};

/// The owner tag of the guard timer that bounds each blocking poll.
pub const GUARD: Owner = Owner::App(u32::MAX);

/// What the test scripts beside the session: events for `Owner::App` handles.
pub trait Side {
    fn on_event(&mut self, _rx: &mut Reactor<Owner>, _id: HandleId, _owner: Owner, _event: Event) {}
}

impl Side for () {}

/// A session and the test's own handles on one loop.
pub struct Host<S> {
    pub session: Session,
    pub side: S,
    /// Torrents that completed, in order (small: one entry per torrent).
    pub completed: Vec<TorrentKey>,
    pub failed: Vec<(TorrentKey, String)>,
    /// Handshaken peers that left.
    pub peers_gone: u64,
}

impl<S: Side> Host<S> {
    pub fn new(session: Session, side: S) -> Host<S> {
        Host {
            session,
            side,
            completed: Vec::new(),
            failed: Vec::new(),
            peers_gone: 0,
        }
    }

    fn take_events(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match event {
                SessionEvent::Completed(key) => self.completed.push(key),
                SessionEvent::Failed(key, why) => self.failed.push((key, why)),
                SessionEvent::PeerGone { .. } => self.peers_gone += 1,
                SessionEvent::Checked(_) => {}
            }
        }
    }
}

impl<S: Side> Handler<Owner> for Host<S> {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        match owner {
            GUARD => {}
            Owner::App(_) => self.side.on_event(rx, id, owner, event),
            _ => self.session.on_event(rx, id, owner, event),
        }
        self.take_events();
    }

    fn on_deferred(&mut self, rx: &mut Reactor<Owner>, owner: Owner) {
        if owner.session() == Some(self.session.key()) {
            self.session.on_deferred(rx);
            self.take_events();
        }
    }
}

/// A session configuration for tests: listening on 127.0.0.1 (any port),
/// trackers that never reach a real name server.
pub fn config() -> SessionConfig {
    SessionConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        trackers: super::common::trackers::config(),
        ..SessionConfig::default()
    }
}

/// Runs single iterations until `done` holds; panics after `limit` of wall time.
/// A repeating guard timer bounds every poll (5 ms), so a condition that changes
/// without an event of ours is still seen. It is one timer for the whole wait: a
/// timer closed after each iteration would leave a handle in its closing phase,
/// and with one pending the next poll does not wait at all (the loop would spin).
pub fn run_until<S: Side>(
    rx: &mut Reactor<Owner>,
    host: &mut Host<S>,
    limit: Duration,
    mut done: impl FnMut(&Host<S>, &Reactor<Owner>) -> bool,
) {
    let deadline = Instant::now() + limit;
    let guard = rx.timer(GUARD).expect("guard timer");
    let every = Duration::from_millis(5);
    rx.timer_start(guard, every, Some(every)).expect("start guard");
    while !done(host, rx) {
        assert!(
            Instant::now() < deadline,
            "condition not reached within {limit:?}; incoming {:?}, session tables {:?}",
            host.session.incoming_stats(),
            host.session.table_sizes()
        );
        rx.run(host, RunMode::Once).expect("run");
    }
    rx.close(guard);
}

/// No stream is waiting for its closing phase: every `close` of a connection so
/// far took effect (its socket is shut), so the peer on the other side sees it.
/// (Timers are left out: the guard of a previous `run_until` may still be closing.)
pub fn settled(rx: &Reactor<Owner>) -> bool {
    rx.stats().closing.get(bitloop::reactor::HandleKind::TcpStream) == 0
}

/// Every table of the session and of each of its torrents is empty, and no
/// connection is counted against the budgets.
pub fn assert_tables_empty(session: &Session, what: &str) {
    for key in session.torrent_keys() {
        let torrent = session.torrent(key).unwrap();
        assert_eq!(torrent.table_sizes(), [0; 11], "{what}: torrent {key}'s tables");
    }
    assert_eq!(
        &session.table_sizes()[2..],
        &[0; 7],
        "{what}: session tables (pending, deadlines, waiting, serving, listeners, checking, open files)"
    );
    assert_eq!(session.budget_use(), (0, 0), "{what}: budgets in use");
}

/// The shutdown sequence: close the session, close the rest, drain, prove the loop
/// empty and every table empty.
pub fn shut_down<S: Side>(rx: &mut Reactor<Owner>, host: &mut Host<S>) {
    host.session.close(rx);
    rx.close_all_and_drain(host).unwrap();
    let stats = rx.stats();
    assert_eq!((stats.timers_armed, stats.registered()), (0, 0), "{stats:?}");
    assert_tables_empty(&host.session, "after close");
}

/// A BitTorrent handshake for `info_hash` from `peer_id`, with the Fast bit if asked.
pub fn handshake(info_hash: &InfoHash, peer_id: &[u8; 20], fast: bool) -> Vec<u8> {
    let mut hello = vec![19];
    hello.extend_from_slice(b"BitTorrent protocol");
    hello.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, if fast { 0x04 } else { 0 }]);
    hello.extend_from_slice(&info_hash.0);
    hello.extend_from_slice(peer_id);
    hello
}

/// A distinct peer id per `n`.
pub fn peer_id(n: u64) -> [u8; 20] {
    let mut id = *b"-XX0001-000000000000";
    id[8..].copy_from_slice(format!("{n:012}").as_bytes());
    id
}

/// A tracker response body with `peers` in compact form (IPv4 only).
pub fn peers_body(peers: &[SocketAddr]) -> Vec<u8> {
    let mut compact = Vec::new();
    for peer in peers {
        let SocketAddr::V4(v4) = peer else {
            panic!("compact IPv4 peers only: {peer}")
        };
        compact.extend_from_slice(&v4.ip().octets());
        compact.extend_from_slice(&v4.port().to_be_bytes());
    }
    let mut body = format!("d8:intervali1800e5:peers{}:", compact.len()).into_bytes();
    body.extend_from_slice(&compact);
    body.push(b'e');
    body
}

/// An HTTP tracker on a thread that answers every announce with one fixed body.
/// It stops when dropped (or after a minute, so it cannot outlive a failed test).
pub struct FakeTracker {
    pub url: String,
    pub announces: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeTracker {
    pub fn start(body: Vec<u8>) -> FakeTracker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/announce", listener.local_addr().unwrap());
        let announces = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (announces.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Some((mut stream, _)) =
                    super::common::bounded::try_accept_within(&listener, Duration::from_millis(50))
                else {
                    continue;
                };
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                count.fetch_add(1, Ordering::Relaxed);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        FakeTracker {
            url,
            announces,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = super::common::bounded::try_join_within(thread, Duration::from_secs(10));
        }
    }
}

/// A child process that is killed (and reaped) if the test ends before it exits.
pub struct Guarded(pub Option<Child>);

impl Guarded {
    pub fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    /// Waits (polling, bounded) for the process to exit.
    pub fn wait_within(&mut self, limit: Duration, what: &str) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{what} did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(5)); // polling a child process
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped (we hold the
        // `Child`), so it cannot name another process.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.pid());
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// CPU time (user + system) a process has used so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("procfs");
    // The command name is in parentheses and may hold spaces: fields count from after it.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields[11].parse().unwrap();
    let stime: u64 = fields[12].parse().unwrap();
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros((utime + stime) * 1_000_000 / ticks)
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for a `--port` argument).
pub fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Seeders opentracker knows for `info_hash` (its scrape's `complete`), or 0.
pub fn scrape_seeders(tracker_port: u16, info_hash: &InfoHash) -> u64 {
    let encoded: String = info_hash.0.iter().map(|b| format!("%{b:02x}")).collect();
    let request =
        format!("GET /scrape?info_hash={encoded} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", tracker_port)) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    text.split("8:completei")
        .nth(1)
        .and_then(|rest| rest.split('e').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Waits (bounded, polling the tracker) until it knows a seeder of `info_hash`,
/// so a download that announces next is sure to hear of it.
pub fn wait_for_seeder(tracker_port: u16, info_hash: &InfoHash) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while scrape_seeders(tracker_port, info_hash) == 0 {
        assert!(
            Instant::now() < deadline,
            "the tracker never heard of a seeder of {}",
            info_hash.to_hex()
        );
        std::thread::sleep(Duration::from_millis(20)); // polling an external process
    }
}
