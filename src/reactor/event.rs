//! What the loop tells a handle's owner, and the trait through which it tells it.
//!
//! Every handle is created with a small `Copy` owner tag chosen by its creator.
//! The loop hands each event to one [`Handler`] together with the tag and a
//! `&mut Reactor`, for the length of one call. Because the tag is plain data and
//! not a closure, a handle can never carry application state that outlives it.

use std::io;
use std::net::SocketAddr;

use super::id::HandleId;
use super::table::HandleKind;
use super::Reactor;

/// Something that happened to a handle.
#[derive(Debug)]
pub enum Event {
    /// A timer expired (or, for a repeating timer, one period passed).
    Timer,
    /// A listener accepted a connection. The new stream is already open with the
    /// listener's owner tag; call `set_owner` to hand it to someone else.
    Accepted { stream: HandleId, peer: SocketAddr },
    /// An outgoing connection completed.
    Connected,
    /// An outgoing connection failed or timed out. The reactor closes the handle;
    /// `Closed` follows.
    ConnectFailed(io::Error),
    /// New bytes wait in the stream's read buffer (`tcp_received`), or a UDP socket
    /// has datagrams to read (`udp_recv_from`).
    Readable,
    /// The peer closed its write side; no more bytes will arrive. The handle stays
    /// open (we may still write) until its owner closes it.
    Eof,
    /// The write queue, which had to wait for the socket, is empty again.
    Drained,
    /// A stream failed while connected. The reactor closes it; `Closed` follows.
    Error(io::Error),
    /// A watched signal arrived.
    Signal(i32),
    /// The handle is gone: its resource is released and its id names nothing now.
    Closed(Closed),
}

/// What a handle left behind when it closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    pub kind: HandleKind,
    /// Bytes (TCP) or datagrams (UDP) that were queued and never sent: they are
    /// cancelled by the close.
    pub cancelled_writes: usize,
    /// The stream was still connecting: the connect is cancelled.
    pub cancelled_connect: bool,
}

/// Receives the loop's events. Implemented by the client, the examples and the tests.
pub trait Handler<O: Copy + std::fmt::Debug> {
    /// One event for handle `id`, whose owner tag is `owner`.
    fn on_event(&mut self, reactor: &mut Reactor<O>, id: HandleId, owner: O, event: Event);

    /// Deferred work queued with [`Reactor::defer`], run once per loop iteration
    /// after I/O has been dispatched.
    fn on_deferred(&mut self, reactor: &mut Reactor<O>, owner: O) {
        let _ = (reactor, owner);
    }
}
