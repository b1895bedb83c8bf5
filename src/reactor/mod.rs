//! The reactor: one thread, one `mio::Poll`, one table of handles.
//!
//! This is bitloop's libuv. Every timer, TCP listener, TCP stream, UDP socket and
//! the signal source lives in one table (`table.rs`) and is named elsewhere only by
//! a [`HandleId`]. Each handle carries an owner tag (any small `Copy` type the
//! caller picks), and every event goes to one [`Handler`] with that tag.
//!
//! # One iteration of `run`
//!
//! ```text
//!   ┌──────────────────────────────┐
//!   │ update cached time           │
//!   │ timers: collect due, fire    │  FIFO for equal deadlines
//!   │ poll timeout                 │  0 if closing/deferred/ready-again work waits,
//!   │                              │  else until the earliest timer, else forever
//!   │ poll (retry on EINTR)        │
//!   │ io: dispatch readiness       │  streams drained to WouldBlock or re-queued
//!   │ deferred work                │  what the event bus runs on
//!   │ closing: free closed slots   │  repeated until nothing is closing (bounded)
//!   └──────────────┬───────────────┘
//!                  └── again while anything is alive (RunMode::Default)
//! ```
//!
//! # A handle's life: `Open → Closing → removed`
//!
//! [`Reactor::close`] is the only way a handle ends, and it is idempotent. It
//! deregisters the source at once and queues the slot; the closing phase drops the
//! resource, tells the owner [`Event::Closed`], bumps the slot's generation and
//! frees it. The cleanup is the resource's own `Drop`, fixed when the handle was
//! created: nobody can pass a different one at close time.
//!
//! # Shutdown
//!
//! [`Reactor::begin_shutdown`] refuses new handles; [`Reactor::close_all`] closes
//! every open one through the same close path; running the loop drains the closing
//! queue; [`Reactor::finish`] proves the table is empty or names what is not.

mod accept;
mod buffer;
mod closing;
mod event;
mod id;
mod signal;
mod stats;
mod table;
mod tcp;
mod timer;
mod udp;

use std::collections::VecDeque;
use std::fmt::{self, Debug};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::trace;
use mio::{Events, Interest, Poll};

pub use event::{Closed, Event, Handler};
pub use id::HandleId;
pub use stats::{Busy, HandleInfo, PerKind, Report, Stats};
pub use table::{HandleKind, HandleState};

use accept::Reserve;
use buffer::Scratch;
use table::{Handle, Resource, Table};
use tcp::Stream;
use timer::{TimerEntry, TimerQueue, TimerState};
use udp::UdpSocket;

/// Limits and sizes of one loop.
#[derive(Clone, Debug)]
pub struct Config {
    /// Bytes a stream may hold unread before the loop stops reading it.
    pub read_buffer_limit: usize,
    /// Bytes a stream may hold unsent before `tcp_write` refuses more.
    pub write_queue_limit: usize,
    /// Datagrams a UDP socket may hold unsent before `udp_send_to` refuses more.
    pub udp_queue_limit: usize,
    /// Connections accepted per listener per iteration, for fairness.
    pub accept_batch: usize,
    /// Closing-phase passes per iteration before the rest waits for the next one.
    pub max_closing_passes: usize,
    /// Capacity of the mio event buffer.
    pub events_capacity: usize,
    /// Time moves only through [`Reactor::advance`]: for deterministic tests.
    pub manual_clock: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            read_buffer_limit: 256 * 1024,
            write_queue_limit: 16 * 1024 * 1024,
            udp_queue_limit: 1024,
            accept_batch: 64,
            max_closing_passes: 64,
            events_capacity: 1024,
            manual_clock: false,
        }
    }
}

/// How long `run` keeps going (libuv's `uv_run_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// Until no handle is active and no work is queued, or `stop()`.
    Default,
    /// One iteration, blocking in poll if there is nothing to do yet.
    Once,
    /// One iteration without blocking.
    NoWait,
}

/// Why a reactor call was refused.
#[derive(Debug)]
pub enum ReactorError {
    /// The loop is shutting down and creates no new handles.
    ShuttingDown,
    /// The id names no open handle (it closed, or never existed).
    NotFound(HandleId),
    /// The handle is of another kind than the call needs.
    WrongKind {
        id: HandleId,
        expected: HandleKind,
        actual: HandleKind,
    },
    /// The handle's send queue is full; wait for `Drained` (TCP) or try later (UDP).
    QueueFull(HandleId),
    /// `tcp_write` after `tcp_shutdown`.
    WriteAfterShutdown(HandleId),
    /// The operating system refused.
    Io(io::Error),
}

impl fmt::Display for ReactorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReactorError::ShuttingDown => write!(f, "the loop is shutting down"),
            ReactorError::NotFound(id) => write!(f, "handle {id} is not open"),
            ReactorError::WrongKind { id, expected, actual } => {
                write!(f, "handle {id} is a {}, not a {}", actual.name(), expected.name())
            }
            ReactorError::QueueFull(id) => write!(f, "send queue of handle {id} is full"),
            ReactorError::WriteAfterShutdown(id) => write!(f, "write to handle {id} after shutdown"),
            ReactorError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReactorError {}

impl From<io::Error> for ReactorError {
    fn from(e: io::Error) -> Self {
        ReactorError::Io(e)
    }
}

/// Result of a reactor call.
pub type Result<T> = std::result::Result<T, ReactorError>;

/// What one mio event (or a re-queued handle) says about a source.
#[derive(Clone, Copy, Debug)]
struct Readiness {
    readable: bool,
    writable: bool,
}

/// The event loop. `O` is the owner tag handed back with every event.
pub struct Reactor<O: Copy + Debug> {
    poll: Poll,
    events: Events,
    table: Table<O>,
    timers: TimerQueue,
    /// Handles closed and waiting for the closing phase.
    closing: VecDeque<HandleId>,
    deferred: VecDeque<O>,
    /// Handles to dispatch again without an OS event (partial reads, accept batches).
    ready_again: VecDeque<(HandleId, Readiness)>,
    now: Instant,
    config: Config,
    stop_requested: bool,
    shutting_down: bool,
    finished: bool,
    counts: Stats,
    /// Scratch space reused by the timers phase.
    due: Vec<TimerEntry>,
    /// A descriptor kept in reserve for refusing connections when none is left.
    reserve: Reserve,
    /// The one read buffer, lent to the stream being read (see `buffer.rs`).
    scratch: Scratch,
}

impl<O: Copy + Debug> Reactor<O> {
    /// A loop with the default configuration.
    pub fn new() -> io::Result<Reactor<O>> {
        Reactor::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> io::Result<Reactor<O>> {
        Ok(Reactor {
            poll: Poll::new()?,
            events: Events::with_capacity(config.events_capacity),
            table: Table::new(),
            timers: TimerQueue::default(),
            // The loop's own queues are allocated once, here, rather than at first
            // use, so that when a queue is first needed does not show in the heap's
            // block count (the leak tests compare it exactly). The read scratch is the
            // exception: a loop that never reads TCP never needs it.
            closing: VecDeque::with_capacity(16),
            deferred: VecDeque::with_capacity(16),
            ready_again: VecDeque::with_capacity(16),
            now: Instant::now(),
            config,
            stop_requested: false,
            shutting_down: false,
            finished: false,
            counts: Stats::default(),
            due: Vec::with_capacity(16),
            reserve: Reserve::default(),
            scratch: Scratch::default(),
        })
    }

    /// The loop's cached time, updated at the start of each iteration and after poll.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Moves a manual clock forward (see [`Config::manual_clock`]).
    pub fn advance(&mut self, by: Duration) {
        assert!(self.config.manual_clock, "advance() needs Config::manual_clock");
        self.now += by;
    }

    // ---------------------------------------------------------------- running

    /// Runs the loop (libuv's `uv_run`). Returns whether anything is still alive.
    pub fn run<H: Handler<O>>(&mut self, handler: &mut H, mode: RunMode) -> io::Result<bool> {
        let mut alive = self.is_alive();
        if !alive {
            self.update_time();
        }
        while alive && !self.stop_requested {
            self.counts.iterations += 1;
            self.update_time();
            self.run_timers(handler);
            let timeout = self.poll_timeout(mode);
            self.poll_io(timeout)?;
            self.update_time();
            self.dispatch_io(handler);
            self.run_deferred(handler);
            self.run_closing(handler);
            if mode == RunMode::Once {
                // The poll may have woken for a timer: fire it now so one
                // iteration always makes progress, as uv_run does.
                self.update_time();
                self.run_timers(handler);
            }
            alive = self.is_alive();
            if mode != RunMode::Default {
                break;
            }
        }
        self.stop_requested = false;
        Ok(alive)
    }

    /// Makes `run` return after the current iteration.
    pub fn stop(&mut self) {
        self.stop_requested = true;
    }

    /// True while a handle is active (armed timer, open socket or signal source) or
    /// work is queued.
    pub fn is_alive(&self) -> bool {
        let open_io = self.counts.open.total() - self.counts.open.get(HandleKind::Timer);
        self.counts.timers_armed > 0
            || open_io > 0
            || !self.closing.is_empty()
            || !self.deferred.is_empty()
            || !self.ready_again.is_empty()
    }

    fn update_time(&mut self) {
        if !self.config.manual_clock {
            self.now = Instant::now();
        }
    }

    /// The one rule for how long poll may block.
    fn poll_timeout(&self, mode: RunMode) -> Option<Duration> {
        let work_waiting =
            !self.closing.is_empty() || !self.deferred.is_empty() || !self.ready_again.is_empty();
        if mode == RunMode::NoWait || work_waiting || self.stop_requested {
            return Some(Duration::ZERO);
        }
        let deadline = self.timers.next_deadline()?;
        if self.config.manual_clock {
            // Only the test moves time; waiting for it would hang.
            return Some(Duration::ZERO);
        }
        Some(deadline.saturating_duration_since(Instant::now()))
    }

    fn poll_io(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        trace!("phase: poll (timeout {timeout:?})");
        match self.poll.poll(&mut self.events, timeout) {
            // A signal interrupted the wait; mio does not retry for us. Poll once
            // more without blocking: the signal itself is then a readable self-pipe.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                match self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
                    Err(e) if e.kind() != io::ErrorKind::Interrupted => Err(e),
                    _ => Ok(()),
                }
            }
            result => result,
        }
    }

    // ---------------------------------------------------------------- io phase

    fn dispatch_io<H: Handler<O>>(&mut self, handler: &mut H) {
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        let again = self.ready_again.len();
        trace!(
            "phase: io ({} events, {again} ready again)",
            events.iter().count()
        );
        for event in events.iter() {
            let readiness = Readiness {
                readable: event.is_readable() || event.is_read_closed() || event.is_error(),
                writable: event.is_writable() || event.is_write_closed() || event.is_error(),
            };
            self.dispatch(handler, HandleId::from_token(event.token()), readiness);
        }
        self.events = events;
        // Handles re-queued by an earlier iteration get one turn each; anything
        // they re-queue waits for the next iteration.
        for _ in 0..again {
            let (id, readiness) = self.ready_again.pop_front().expect("counted");
            self.dispatch(handler, id, readiness);
        }
    }

    fn dispatch<H: Handler<O>>(&mut self, handler: &mut H, id: HandleId, readiness: Readiness) {
        let kind = match self.table.get(id) {
            Some(handle) if handle.state == HandleState::Open => handle.resource.kind(),
            _ => {
                self.counts.stale_events += 1;
                trace!("stale event for {id} dropped");
                return;
            }
        };
        match kind {
            HandleKind::TcpListener => self.listener_ready(handler, id),
            HandleKind::TcpStream => self.stream_ready(handler, id, readiness),
            HandleKind::Udp => self.udp_ready(handler, id, readiness),
            HandleKind::Signal => self.signal_ready(handler, id),
            // Timers are never registered with mio.
            HandleKind::Timer => self.counts.stale_events += 1,
        }
    }

    /// Hands one event to the owner of `id` if it is still open.
    fn deliver<H: Handler<O>>(&mut self, handler: &mut H, id: HandleId, event: Event) {
        let Some(handle) = self.table.get(id) else { return };
        if handle.state != HandleState::Open {
            return;
        }
        let owner = handle.owner;
        handler.on_event(self, id, owner, event);
    }

    // ---------------------------------------------------------------- deferred phase

    /// Queues `owner`'s deferred work: `Handler::on_deferred` runs once, in this
    /// iteration's deferred phase (or the next iteration's, if queued during it).
    pub fn defer(&mut self, owner: O) {
        self.deferred.push_back(owner);
    }

    fn run_deferred<H: Handler<O>>(&mut self, handler: &mut H) {
        let queued = self.deferred.len();
        trace!("phase: deferred ({queued} queued)");
        for _ in 0..queued {
            let owner = self.deferred.pop_front().expect("counted");
            handler.on_deferred(self, owner);
        }
    }

    // ---------------------------------------------------------------- inspection

    /// Calls `visit` for every handle in the table, open or closing (libuv's `uv_walk`).
    pub fn walk(&self, mut visit: impl FnMut(HandleId, HandleKind, HandleState, O)) {
        for (id, handle) in self.table.iter() {
            visit(id, handle.resource.kind(), handle.state, handle.owner);
        }
    }

    /// Every handle in the table, described.
    pub fn handles(&self) -> Vec<HandleInfo> {
        let mut all = Vec::new();
        self.walk(|id, kind, state, owner| {
            all.push(HandleInfo {
                id,
                kind,
                state,
                owner: format!("{owner:?}"),
            })
        });
        all
    }

    /// One line per live handle (libuv's `uv_print_all_handles`).
    pub fn dump(&self) -> String {
        self.handles().iter().map(|h| format!("{h}\n")).collect()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            timer_entries: self.timers.len(),
            deferred: self.deferred.len(),
            ready_again: self.ready_again.len(),
            ..self.counts.clone()
        }
    }

    pub fn is_open(&self, id: HandleId) -> bool {
        self.table.get(id).is_some_and(|h| h.state == HandleState::Open)
    }

    pub fn kind(&self, id: HandleId) -> Option<HandleKind> {
        self.table.get(id).map(|h| h.resource.kind())
    }

    /// Hands an open handle to another owner (typically a just-accepted stream).
    pub fn set_owner(&mut self, id: HandleId, owner: O) -> Result<()> {
        match self.table.get_mut(id) {
            Some(handle) if handle.state == HandleState::Open => {
                handle.owner = owner;
                Ok(())
            }
            _ => Err(ReactorError::NotFound(id)),
        }
    }

    // ---------------------------------------------------------------- opening

    fn open(&mut self, owner: O, mut resource: Resource) -> Result<HandleId> {
        if self.shutting_down {
            return Err(ReactorError::ShuttingDown);
        }
        let kind = resource.kind();
        let index = self.table_next_token();
        let registry = self.poll.registry();
        let registered = match &mut resource {
            Resource::Timer(_) => None,
            Resource::Listener(l) => Some(registry.register(&mut l.socket, index, Interest::READABLE)),
            Resource::Stream(s) => {
                Some(registry.register(&mut s.socket, index, Interest::READABLE | Interest::WRITABLE))
            }
            Resource::Udp(u) => {
                Some(registry.register(&mut u.socket, index, Interest::READABLE | Interest::WRITABLE))
            }
            Resource::Signal(w) => Some(registry.register(&mut w.signals, index, Interest::READABLE)),
        };
        match registered {
            Some(Err(e)) => return Err(ReactorError::Io(e)),
            Some(Ok(())) => self.counts.registrations += 1,
            None => {}
        }
        let id = self.table.insert(Handle {
            owner,
            state: HandleState::Open,
            armed_seq: 0,
            resource,
        });
        debug_assert_eq!(id.to_token(), index);
        self.counts.open.add(kind, 1);
        self.counts.opened_total.add(kind, 1);
        trace!("{id} {} opened for {owner:?}", kind.name());
        Ok(id)
    }

    /// The token the next inserted handle will get, so a source can be registered
    /// before it is stored (nothing can fail between the two).
    fn table_next_token(&self) -> mio::Token {
        self.table.peek_next_id().to_token()
    }

    fn check_creation(&self) -> Result<()> {
        if self.shutting_down {
            Err(ReactorError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    fn handle_mut(&mut self, id: HandleId) -> Result<&mut Handle<O>> {
        match self.table.get_mut(id) {
            Some(handle) if handle.state == HandleState::Open => Ok(handle),
            _ => Err(ReactorError::NotFound(id)),
        }
    }

    fn stream_ref(&self, id: HandleId) -> Result<&Stream> {
        match self.table.get(id) {
            Some(Handle {
                state: HandleState::Open,
                resource: Resource::Stream(stream),
                ..
            }) => Ok(stream),
            Some(Handle {
                state: HandleState::Open,
                resource,
                ..
            }) => Err(ReactorError::WrongKind {
                id,
                expected: HandleKind::TcpStream,
                actual: resource.kind(),
            }),
            _ => Err(ReactorError::NotFound(id)),
        }
    }

    fn stream_mut(&mut self, id: HandleId) -> Result<&mut Stream> {
        match &mut self.handle_mut(id)?.resource {
            Resource::Stream(stream) => Ok(stream),
            other => Err(ReactorError::WrongKind {
                id,
                expected: HandleKind::TcpStream,
                actual: other.kind(),
            }),
        }
    }

    fn udp_mut(&mut self, id: HandleId) -> Result<&mut UdpSocket> {
        match &mut self.handle_mut(id)?.resource {
            Resource::Udp(udp) => Ok(udp),
            other => Err(ReactorError::WrongKind {
                id,
                expected: HandleKind::Udp,
                actual: other.kind(),
            }),
        }
    }

    fn timer_mut(&mut self, id: HandleId) -> Result<&mut TimerState> {
        match &mut self.handle_mut(id)?.resource {
            Resource::Timer(timer) => Ok(timer),
            other => Err(ReactorError::WrongKind {
                id,
                expected: HandleKind::Timer,
                actual: other.kind(),
            }),
        }
    }

    // ---------------------------------------------------------------- test hooks

    /// Feeds the loop a readiness event for `token` on its next iteration, as if
    /// the OS had reported it: lets tests replay an old token (the ABA case).
    #[doc(hidden)]
    pub fn inject_event(&mut self, id: HandleId) {
        self.ready_again.push_back((
            id,
            Readiness {
                readable: true,
                writable: true,
            },
        ));
    }

    /// Puts a timer entry for `id` due at `deadline` with sequence `seq` into the
    /// queue, as if it had been left over from an earlier life of the slot.
    #[doc(hidden)]
    pub fn inject_timer_entry(&mut self, id: HandleId, deadline: Instant, seq: u64) {
        self.timers.push_raw(TimerEntry { deadline, seq, id });
    }

    /// Queues a datagram without trying to send it. Loopback UDP practically never
    /// blocks, so tests use this to reach the "UDP with queued sends" state.
    #[doc(hidden)]
    pub fn udp_queue_unsent(&mut self, id: HandleId, data: &[u8], to: SocketAddr) -> Result<()> {
        self.udp_mut(id)?.unsent.push_back((to, data.to_vec()));
        Ok(())
    }

    /// The sequence number of `id`'s live timer entry (0 if none).
    #[doc(hidden)]
    pub fn armed_seq(&self, id: HandleId) -> u64 {
        self.table.get(id).map_or(0, |h| h.armed_seq)
    }
}
