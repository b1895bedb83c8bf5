//! Helpers shared by the integration tests: a scriptable handler that records
//! every event, and bounded ways to run a loop until something happened.

#![allow(dead_code)]

pub mod bounded;
pub mod counting;
pub mod event_tracker;
pub mod fake_trackers;
pub mod http_server;
#[cfg(feature = "https")]
pub mod https_tracker;
pub mod libtorrent;
pub mod mini_tracker;
pub mod mounts;
pub mod opentracker;
pub mod payload;
pub mod procs;
pub mod seeders;
pub mod trackers;
pub mod world;

use std::time::{Duration, Instant};

use bitloop::reactor::{Event, HandleId, Handler, Reactor, RunMode};

/// The owner tag tests use: a small number naming the role of a handle.
pub type Tag = u32;

/// A recorded event, reduced to something comparable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    Timer,
    Accepted(HandleId),
    Connected,
    ConnectFailed(std::io::ErrorKind),
    Readable,
    Eof,
    Drained,
    Error(std::io::ErrorKind),
    Signal(i32),
    Closed {
        cancelled_writes: usize,
        cancelled_connect: bool,
    },
    Deferred,
}

pub type Behaviour = Box<dyn FnMut(&mut Reactor<Tag>, HandleId, Tag, &Event)>;

/// Records `(id, owner, event)` for every event and then runs an optional behaviour.
pub struct Recorder {
    pub log: Vec<(HandleId, Tag, Seen)>,
    pub behaviour: Option<Behaviour>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            log: Vec::new(),
            behaviour: None,
        }
    }

    pub fn with(behaviour: impl FnMut(&mut Reactor<Tag>, HandleId, Tag, &Event) + 'static) -> Recorder {
        Recorder {
            log: Vec::new(),
            behaviour: Some(Box::new(behaviour)),
        }
    }

    pub fn count(&self, id: HandleId, seen: &Seen) -> usize {
        self.log.iter().filter(|(i, _, s)| *i == id && s == seen).count()
    }

    pub fn events_of(&self, id: HandleId) -> Vec<Seen> {
        self.log
            .iter()
            .filter(|(i, _, _)| *i == id)
            .map(|(_, _, s)| s.clone())
            .collect()
    }

    pub fn closed(&self, id: HandleId) -> bool {
        self.log
            .iter()
            .any(|(i, _, s)| *i == id && matches!(s, Seen::Closed { .. }))
    }
}

impl Handler<Tag> for Recorder {
    fn on_event(&mut self, reactor: &mut Reactor<Tag>, id: HandleId, owner: Tag, event: Event) {
        let seen = match &event {
            Event::Timer => Seen::Timer,
            Event::Accepted { stream, .. } => Seen::Accepted(*stream),
            Event::Connected => Seen::Connected,
            Event::ConnectFailed(e) => Seen::ConnectFailed(e.kind()),
            Event::Readable => Seen::Readable,
            Event::Eof => Seen::Eof,
            Event::Drained => Seen::Drained,
            Event::Error(e) => Seen::Error(e.kind()),
            Event::Signal(s) => Seen::Signal(*s),
            Event::Closed(c) => Seen::Closed {
                cancelled_writes: c.cancelled_writes,
                cancelled_connect: c.cancelled_connect,
            },
        };
        self.log.push((id, owner, seen));
        if let Some(behaviour) = self.behaviour.as_mut() {
            behaviour(reactor, id, owner, &event);
        }
    }

    fn on_deferred(&mut self, _reactor: &mut Reactor<Tag>, owner: Tag) {
        self.log
            .push((HandleId::from_token(mio_token_zero()), owner, Seen::Deferred));
    }
}

fn mio_token_zero() -> mio::Token {
    mio::Token(0)
}

/// Runs single iterations until `done` holds; panics after `limit` (never hangs a test).
pub fn run_until<H: Handler<Tag>>(
    reactor: &mut Reactor<Tag>,
    handler: &mut H,
    limit: Duration,
    mut done: impl FnMut(&H, &mut Reactor<Tag>) -> bool,
) {
    let deadline = Instant::now() + limit;
    // One repeating guard timer bounds each blocking poll for the whole wait
    // (closing one per iteration would make every poll non-blocking: a spin).
    let guard = reactor.timer(u32::MAX).expect("guard timer");
    let tick = Duration::from_millis(20);
    reactor.timer_start(guard, tick, Some(tick)).expect("start guard");
    while !done(handler, reactor) {
        assert!(
            Instant::now() < deadline,
            "condition not reached within {limit:?}"
        );
        reactor.run(handler, RunMode::Once).expect("run");
    }
    reactor.close(guard);
}

/// Closes everything, drains, and asserts the loop is provably empty.
pub fn close_and_finish<H: Handler<Tag>>(reactor: &mut Reactor<Tag>, handler: &mut H) {
    reactor.close_all_and_drain(handler).expect("drain");
    let stats = reactor.stats();
    match reactor.finish() {
        Ok(report) => assert_eq!(report.opened.total(), report.closed.total()),
        Err(busy) => panic!("{busy}"),
    }
    assert_eq!(stats.registered(), 0, "{stats:?}");
    assert_eq!(stats.timers_armed, 0);
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("procfs").count()
}

/// A loopback listener whose accept queue is full: the kernel drops further SYNs,
/// so a connect to it stays pending until the connector's own timeout. Keep the
/// returned socket and stream alive for as long as the hole is needed.
pub fn black_hole() -> (socket2::Socket, std::net::TcpStream, std::net::SocketAddr) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let filler = std::net::TcpStream::connect(addr).unwrap();
    (socket, filler, addr)
}

/// What [`black_holes`] returns to keep alive: each hole's listener and filler.
pub type Holes = Vec<(socket2::Socket, std::net::TcpStream)>;

/// `n` black holes and their addresses.
pub fn black_holes(n: usize) -> (Holes, Vec<std::net::SocketAddr>) {
    (0..n)
        .map(|_| {
            let (socket, filler, addr) = black_hole();
            ((socket, filler), addr)
        })
        .unzip()
}

/// 127.0.0.1 on a port the kernel picks.
pub fn loopback() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A reactor whose clock moves only when the test advances it.
pub fn manual_reactor() -> Reactor<Tag> {
    Reactor::with_config(bitloop::reactor::Config {
        manual_clock: true,
        ..bitloop::reactor::Config::default()
    })
    .unwrap()
}
