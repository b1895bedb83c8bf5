//! TCP listeners: binding, the accept loop, what the loop does when the process
//! runs out of file descriptors, and the reactor's `tcp_listen`.
//!
//! mio is edge-triggered, so a listener is accepted from until `WouldBlock` (at
//! most `Config::accept_batch` per turn, then it goes on the ready-again list).
//! When `accept` fails with `EMFILE`/`ENFILE` the connection stays in the backlog
//! and the listener stays readable; re-queueing it would spin the loop at 100 %
//! CPU. Instead, as libuv does, the loop keeps one descriptor in reserve (an open
//! `/dev/null`): it closes the reserve, accepts the pending connection into the
//! freed slot, closes it at once (the peer sees the connection end) and takes the
//! reserve back, until the backlog is empty. If even that fails, the listener
//! stops accepting for a while (100 ms, doubling to 1 s) on the timer heap, and
//! the loop sleeps until then.

use std::fmt::Debug;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use log::{debug, warn};
use mio::net::TcpListener as MioListener;

use super::table::{Handle, Resource, Table};
use super::tcp::Stream;
use super::{Event, HandleId, HandleState, Handler, Reactor, Readiness, Result};

/// Backlog for listening sockets; the kernel caps it at `somaxconn`.
const LISTEN_BACKLOG: i32 = 1024;
/// The first pause of a listener whose accept failed for want of resources.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Each further failure doubles the pause, up to this.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

pub(crate) struct Listener {
    pub(crate) socket: MioListener,
    /// Accepting is paused after a failure; the listener's timer entry ends it.
    pub(crate) backing_off: bool,
    /// How long the next pause lasts; back to the minimum after an accept succeeds.
    next_backoff: Duration,
}

impl Listener {
    /// Binds with `SO_REUSEADDR` so a restarted client can reuse its port at once.
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<Listener> {
        let domain = socket2::Domain::for_address(addr);
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        Ok(Listener {
            socket: MioListener::from_std(socket.into()),
            backing_off: false,
            next_backoff: ACCEPT_BACKOFF_MIN,
        })
    }
}

/// The loop's one descriptor in reserve for refusing connections when the
/// process has no descriptor left (libuv's `emfile_fd`).
#[derive(Debug, Default)]
pub(crate) struct Reserve {
    file: Option<File>,
}

/// What spending the reserve on one pending connection did.
enum Refusal {
    /// A connection was accepted and closed at once.
    Refused,
    /// The backlog was empty after all.
    Empty,
    /// No reserve, or accept failed even with it.
    Failed,
}

impl Reserve {
    /// Opens the reserve if it is not held (at the first listen, and again after a
    /// shortage, once descriptors are free).
    fn ensure(&mut self) {
        if self.file.is_none() {
            match File::open("/dev/null") {
                Ok(file) => self.file = Some(file),
                Err(e) => debug!("no reserve descriptor: {e}"),
            }
        }
    }

    /// Closes the reserve, accepts one connection into the freed descriptor and
    /// closes it, then takes the reserve back.
    fn refuse_one(&mut self, socket: &MioListener) -> Refusal {
        let Some(file) = self.file.take() else {
            return Refusal::Failed;
        };
        drop(file);
        let refusal = match socket.accept() {
            Ok((stream, peer)) => {
                debug!("out of file descriptors: connection from {peer} refused");
                drop(stream);
                Refusal::Refused
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Refusal::Empty,
            Err(_) => Refusal::Failed,
        };
        self.ensure();
        refusal
    }
}

/// `EMFILE` (this process) or `ENFILE` (the whole system): no descriptor left.
fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Errors that belong to one pending connection, which accept has used up: go on
/// with the next. Linux reports a new connection's network errors from `accept`.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) || matches!(
        e.raw_os_error(),
        Some(
            libc::EPROTO
                | libc::ENOPROTOOPT
                | libc::ENETDOWN
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}

/// The listener `id`, if it is one and still open. A function of the table alone,
/// so that the reserve and the counters can be used while it is borrowed.
fn open_listener<O: Copy + Debug>(table: &mut Table<O>, id: HandleId) -> Option<&mut Listener> {
    match table.get_mut(id)? {
        Handle {
            state: HandleState::Open,
            resource: Resource::Listener(listener),
            ..
        } => Some(listener),
        _ => None,
    }
}

impl<O: Copy + Debug> Reactor<O> {
    pub(super) fn listener_ready<H: Handler<O>>(&mut self, handler: &mut H, id: HandleId) {
        for _ in 0..self.config.accept_batch {
            // A callback may have closed the listener: then it accepts nothing more.
            let Some(listener) = open_listener(&mut self.table, id) else {
                return;
            };
            if listener.backing_off {
                return; // the listener's timer resumes it
            }
            match listener.socket.accept() {
                Ok((socket, peer)) => {
                    listener.next_backoff = ACCEPT_BACKOFF_MIN;
                    if self.shutting_down {
                        self.counts.accepts_refused += 1;
                        continue; // dropping the socket refuses the connection
                    }
                    self.reserve.ensure();
                    let owner = self.table.get(id).expect("open").owner;
                    let stream = Stream::new(socket, false);
                    match self.open(owner, Resource::Stream(Box::new(stream))) {
                        Ok(stream) => self.deliver(handler, id, Event::Accepted { stream, peer }),
                        Err(e) => warn!("accepted connection from {peer} dropped: {e}"),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_per_connection(&e) => debug!("accept on {id}: {e}"),
                Err(e) if is_out_of_descriptors(&e) => match self.reserve.refuse_one(&listener.socket) {
                    Refusal::Refused => self.counts.accepts_refused += 1,
                    Refusal::Empty => return,
                    Refusal::Failed => return self.back_off(id, e),
                },
                Err(e) => return self.back_off(id, e),
            }
        }
        // The batch is used up and more connections may wait: another turn next
        // iteration, after every other handle had one.
        self.ready_again.push_back((
            id,
            Readiness {
                readable: true,
                writable: false,
            },
        ));
    }

    /// Stops accepting on `id` for a while; the loop sleeps instead of retrying.
    fn back_off(&mut self, id: HandleId, error: io::Error) {
        let Some(listener) = open_listener(&mut self.table, id) else {
            return;
        };
        let pause = listener.next_backoff;
        listener.next_backoff = (pause * 2).min(ACCEPT_BACKOFF_MAX);
        listener.backing_off = true;
        self.counts.accept_backoffs += 1;
        warn!("accept on {id} failed: {error}; not accepting for {pause:?}");
        let deadline = self.now + pause;
        self.arm(id, deadline);
    }

    /// The listener's pause is over: accept what waits in the backlog.
    pub(super) fn end_backoff(&mut self, id: HandleId) {
        if let Some(listener) = open_listener(&mut self.table, id) {
            listener.backing_off = false;
            self.ready_again.push_back((
                id,
                Readiness {
                    readable: true,
                    writable: false,
                },
            ));
        }
    }

    // ---------------------------------------------------------------- TCP listen

    /// A listening socket. Accepted connections arrive as [`Event::Accepted`].
    ///
    /// If the process runs out of file descriptors, pending connections are
    /// accepted and closed at once (counted in `Stats::accepts_refused`), or the
    /// listener pauses for up to a second (`Stats::accept_backoffs`); it never
    /// keeps the loop busy.
    pub fn tcp_listen(&mut self, addr: SocketAddr, owner: O) -> Result<HandleId> {
        self.check_creation()?;
        let listener = Listener::bind(addr)?;
        self.reserve.ensure();
        self.open(owner, Resource::Listener(listener))
    }
}
