//! The handle table: one `slab` that owns every handle, plus a generation per slot.
//!
//! This is the only owner of sockets, timers and the signal source in the whole
//! program. A slot is freed in exactly one place, [`Table::remove`], which the
//! closing phase calls; freeing bumps the slot's generation so that ids kept by
//! anyone else stop matching.

use std::fmt::Debug;

use slab::Slab;

use super::accept::Listener;
use super::id::HandleId;
use super::signal::SignalWatch;
use super::tcp::Stream;
use super::timer::TimerState;
use super::udp::UdpSocket;

/// What kind of handle a slot holds; used for statistics, reports and errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandleKind {
    /// A one-shot or repeating timer.
    Timer,
    /// A listening TCP socket.
    TcpListener,
    /// A TCP stream, connecting or connected.
    TcpStream,
    /// A bound UDP socket.
    Udp,
    /// The process's signal source (SIGINT, SIGTERM, ...).
    Signal,
}

impl HandleKind {
    /// Every kind, in the order statistics print them.
    pub const ALL: [HandleKind; 5] = [
        HandleKind::Timer,
        HandleKind::TcpListener,
        HandleKind::TcpStream,
        HandleKind::Udp,
        HandleKind::Signal,
    ];

    /// Position in [`HandleKind::ALL`], for per-kind counters.
    pub(crate) fn slot(self) -> usize {
        self as usize
    }

    /// A short lowercase name for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            HandleKind::Timer => "timer",
            HandleKind::TcpListener => "tcp-listener",
            HandleKind::TcpStream => "tcp-stream",
            HandleKind::Udp => "udp",
            HandleKind::Signal => "signal",
        }
    }
}

/// `Open → Closing → (removed)`: the whole life of a handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleState {
    /// Usable: events and timer expiries reach the owner.
    Open,
    /// `close` was called: deregistered, no callbacks, waiting for the closing phase.
    Closing,
}

/// The resource a handle owns. Dropping it releases the resource (the socket's fd,
/// the signal registration), and that drop happens only in [`Table::remove`].
pub(crate) enum Resource {
    Timer(TimerState),
    Listener(Listener),
    Stream(Box<Stream>),
    Udp(Box<UdpSocket>),
    Signal(SignalWatch),
}

impl Resource {
    pub(crate) fn kind(&self) -> HandleKind {
        match self {
            Resource::Timer(_) => HandleKind::Timer,
            Resource::Listener(_) => HandleKind::TcpListener,
            Resource::Stream(_) => HandleKind::TcpStream,
            Resource::Udp(_) => HandleKind::Udp,
            Resource::Signal(_) => HandleKind::Signal,
        }
    }
}

/// One slot of the table.
pub(crate) struct Handle<O> {
    pub(crate) owner: O,
    pub(crate) state: HandleState,
    /// The sequence number of this handle's live timer-queue entry, 0 when none
    /// (a timer's expiry, or a connecting stream's connect timeout).
    pub(crate) armed_seq: u64,
    pub(crate) resource: Resource,
}

/// The slab and its generations.
pub(crate) struct Table<O> {
    slots: Slab<(u32, Handle<O>)>,
    /// The generation the *next* handle in each slot will get. Never shrinks, so it
    /// is bounded by the most handles ever open at once.
    next_generation: Vec<u32>,
}

impl<O: Copy + Debug> Table<O> {
    pub(crate) fn new() -> Table<O> {
        Table {
            slots: Slab::new(),
            next_generation: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Stores a handle and returns its id.
    pub(crate) fn insert(&mut self, handle: Handle<O>) -> HandleId {
        let index = self.slots.vacant_key();
        if index >= self.next_generation.len() {
            self.next_generation.resize(index + 1, 0);
        }
        let generation = self.next_generation[index];
        let key = self.slots.insert((generation, handle));
        debug_assert_eq!(key, index);
        HandleId::new(index as u32, generation)
    }

    /// The id the next `insert` will return.
    pub(crate) fn peek_next_id(&self) -> HandleId {
        let index = self.slots.vacant_key();
        HandleId::new(
            index as u32,
            self.next_generation.get(index).copied().unwrap_or(0),
        )
    }

    /// The handle `id` names, if it is still the handle in that slot.
    pub(crate) fn get(&self, id: HandleId) -> Option<&Handle<O>> {
        match self.slots.get(id.index() as usize) {
            Some((generation, handle)) if *generation == id.generation() => Some(handle),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, id: HandleId) -> Option<&mut Handle<O>> {
        match self.slots.get_mut(id.index() as usize) {
            Some((generation, handle)) if *generation == id.generation() => Some(handle),
            _ => None,
        }
    }

    /// Frees the slot: the one place a handle's resource is dropped. Bumps the slot's
    /// generation so every copy of `id` goes stale.
    pub(crate) fn remove(&mut self, id: HandleId) -> Option<Handle<O>> {
        self.get(id)?;
        let index = id.index() as usize;
        let (_, handle) = self.slots.remove(index);
        self.next_generation[index] = id.generation().wrapping_add(1);
        Some(handle)
    }

    /// Every live handle with its id, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (HandleId, &Handle<O>)> {
        self.slots
            .iter()
            .map(|(index, (generation, handle))| (HandleId::new(index as u32, *generation), handle))
    }
}
