//! TCP streams: the stream resource (with its read buffer and write queue), the
//! `tcp_*` methods of the reactor for streams, and what a stream's readiness event
//! means (connected, connect failed, readable, drained, end of file). Listeners and
//! accepting are in `accept.rs`.

use std::fmt::Debug;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use log::{debug, trace};
use mio::net::TcpStream as MioStream;

use super::buffer::ByteQueue;
use super::table::{Handle, Resource, Table};
use super::{Event, HandleId, HandleKind, HandleState, Handler, Reactor, ReactorError, Readiness, Result};

pub(crate) struct Stream {
    pub(crate) socket: MioStream,
    /// True until the non-blocking connect completes.
    pub(crate) connecting: bool,
    pub(crate) received: ByteQueue,
    pub(crate) unsent: ByteQueue,
    /// A write had to wait, so the owner is told `Drained` when the queue empties.
    pub(crate) notify_drained: bool,
    /// Reading stopped because `received` is full; resumes when the owner consumes.
    pub(crate) buffer_full: bool,
    /// The owner stopped reading (`tcp_pause_reads`) until `tcp_resume_reads`.
    pub(crate) reads_paused: bool,
    pub(crate) eof_reported: bool,
    /// `tcp_shutdown` was called: shut the write side once `unsent` is empty.
    pub(crate) shutdown_requested: bool,
    pub(crate) write_shut: bool,
}

/// How a flush of the write queue ended.
pub(crate) enum Flush {
    /// Everything was written.
    Empty,
    /// The socket would block; bytes remain queued.
    Blocked,
    Failed(io::Error),
}

impl Stream {
    pub(crate) fn new(socket: MioStream, connecting: bool) -> Stream {
        Stream {
            socket,
            connecting,
            received: ByteQueue::default(),
            unsent: ByteQueue::default(),
            notify_drained: false,
            buffer_full: false,
            reads_paused: false,
            eof_reported: false,
            shutdown_requested: false,
            write_shut: false,
        }
    }

    /// Writes `data` straight to the socket, returning how much the kernel took.
    pub(crate) fn write_direct(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < data.len() {
            match self.socket.write(&data[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// Writes as much of the queue as the socket takes.
    pub(crate) fn flush(&mut self) -> Flush {
        while !self.unsent.is_empty() {
            match self.socket.write(self.unsent.as_slice()) {
                Ok(0) => return Flush::Failed(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.unsent.consume(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flush::Blocked,
                Err(e) => return Flush::Failed(e),
            }
        }
        if self.shutdown_requested && !self.write_shut {
            self.write_shut = true;
            if let Err(e) = self.socket.shutdown(std::net::Shutdown::Write) {
                // The peer may already be gone; reading will report it.
                debug!("shutdown of write side failed: {e}");
            }
        }
        Flush::Empty
    }
}

/// The stream `id`, if it is one and still open. A function of the table alone,
/// so that the loop's scratch buffer can be used while it is borrowed.
fn open_stream<O: Copy + Debug>(table: &mut Table<O>, id: HandleId) -> Option<&mut Stream> {
    match table.get_mut(id)? {
        Handle {
            state: HandleState::Open,
            resource: Resource::Stream(stream),
            ..
        } => Some(stream),
        _ => None,
    }
}

impl<O: Copy + Debug> Reactor<O> {
    pub(super) fn stream_ready<H: Handler<O>>(
        &mut self,
        handler: &mut H,
        id: HandleId,
        readiness: Readiness,
    ) {
        let mut readiness = readiness;
        if self.stream_mut(id).is_ok_and(|s| s.connecting) {
            match self.finish_connect(handler, id) {
                // Connected: the socket may already hold data or room to write.
                Some(true) => {
                    readiness = Readiness {
                        readable: true,
                        writable: true,
                    }
                }
                Some(false) => return,
                None => return, // spurious wakeup, still connecting
            }
        }
        if readiness.writable {
            self.flush_stream(handler, id);
        }
        if readiness.readable {
            self.read_stream(handler, id);
        }
    }

    /// Completes a non-blocking connect: `Some(true)` connected, `Some(false)`
    /// failed (and closed), `None` not finished yet.
    fn finish_connect<H: Handler<O>>(&mut self, handler: &mut H, id: HandleId) -> Option<bool> {
        let stream = self.stream_mut(id).ok()?;
        let result = match stream.socket.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match stream.socket.peer_addr() {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return None,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) => {
                stream.connecting = false;
                self.disarm(id);
                trace!("{id} connected");
                self.deliver(handler, id, Event::Connected);
                Some(self.is_open(id))
            }
            Err(e) => {
                trace!("{id} connect failed: {e}");
                self.deliver(handler, id, Event::ConnectFailed(e));
                self.close(id);
                Some(false)
            }
        }
    }

    fn flush_stream<H: Handler<O>>(&mut self, handler: &mut H, id: HandleId) {
        let Ok(stream) = self.stream_mut(id) else { return };
        if stream.connecting {
            return;
        }
        match stream.flush() {
            Flush::Empty if stream.notify_drained => {
                stream.notify_drained = false;
                self.deliver(handler, id, Event::Drained);
            }
            Flush::Empty | Flush::Blocked => {}
            Flush::Failed(e) => {
                self.deliver(handler, id, Event::Error(e));
                self.close(id);
            }
        }
    }

    fn read_stream<H: Handler<O>>(&mut self, handler: &mut H, id: HandleId) {
        let limit = self.config.read_buffer_limit;
        let Some(stream) = open_stream(&mut self.table, id) else {
            return;
        };
        // Paused: bytes stay in the kernel, whose window pushes back on the peer.
        if stream.buffer_full || stream.reads_paused || stream.eof_reported {
            return;
        }
        if self.scratch.lent_to().is_some() {
            // Only a `Readable` callback running the loop itself could get here (and
            // poll refuses that, its event buffer being in use): read it later
            // rather than mix two streams' bytes.
            return self.read_again(id);
        }
        let outcome = self
            .scratch
            .fill(id, &mut stream.received, &mut stream.socket, limit);
        stream.buffer_full = outcome.full;
        let eof = outcome.eof && outcome.error.is_none();
        stream.eof_reported = eof;
        if outcome.received > 0 {
            self.deliver(handler, id, Event::Readable);
        }
        if self.scratch.lent_to() == Some(id) {
            let queue = open_stream(&mut self.table, id).map(|stream| &mut stream.received);
            self.scratch.give_back(queue);
        }
        if let Some(error) = outcome.error {
            self.deliver(handler, id, Event::Error(error));
            self.close(id);
        } else if eof {
            self.deliver(handler, id, Event::Eof);
        }
    }

    // ---------------------------------------------------------------- TCP

    /// Starts a non-blocking connect. [`Event::Connected`] or
    /// [`Event::ConnectFailed`] follows; `timeout` bounds the wait. Writes made
    /// before the connect completes are queued.
    pub fn tcp_connect(&mut self, addr: SocketAddr, owner: O, timeout: Option<Duration>) -> Result<HandleId> {
        self.check_creation()?;
        let socket = mio::net::TcpStream::connect(addr)?;
        let id = self.open(owner, Resource::Stream(Box::new(Stream::new(socket, true))))?;
        if let Some(timeout) = timeout {
            let deadline = self.now + timeout;
            self.arm(id, deadline);
        }
        Ok(id)
    }

    /// Queues bytes for sending, writing at once what the socket takes. Refused
    /// with `QueueFull` past [`Config::write_queue_limit`](super::Config::write_queue_limit): wait for `Drained`.
    /// A socket error closes the stream and is returned.
    pub fn tcp_write(&mut self, id: HandleId, data: &[u8]) -> Result<()> {
        let limit = self.config.write_queue_limit;
        let stream = self.stream_mut(id)?;
        if stream.shutdown_requested {
            return Err(ReactorError::WriteAfterShutdown(id));
        }
        if stream.unsent.len() + data.len() > limit {
            return Err(ReactorError::QueueFull(id));
        }
        let mut written = 0;
        if !stream.connecting && stream.unsent.is_empty() {
            match stream.write_direct(data) {
                Ok(n) => written = n,
                Err(e) => {
                    self.close(id);
                    return Err(ReactorError::Io(e));
                }
            }
        }
        if written < data.len() {
            stream.unsent.extend(&data[written..]);
            stream.notify_drained = true;
        }
        Ok(())
    }

    /// Bytes queued and not yet taken by the kernel.
    pub fn tcp_unsent(&mut self, id: HandleId) -> Result<usize> {
        Ok(self.stream_mut(id)?.unsent.len())
    }

    /// Bytes received and not yet consumed.
    pub fn tcp_received(&self, id: HandleId) -> Result<&[u8]> {
        let stream = self.stream_ref(id)?;
        if self.scratch.lent_to() == Some(id) {
            Ok(self.scratch.as_slice()) // inside this stream's `Readable`
        } else {
            Ok(stream.received.as_slice())
        }
    }

    /// Marks `n` received bytes as used. Reading resumes if the buffer was full.
    pub fn tcp_consume(&mut self, id: HandleId, n: usize) -> Result<()> {
        let limit = self.config.read_buffer_limit;
        // Inside this stream's `Readable` its bytes are in the scratch. (If the
        // callback closed it, the scratch is dropped anyway; the lookup refuses.)
        let lent = self.scratch.lent_to() == Some(id);
        if lent {
            self.scratch.consume(n);
        }
        let in_scratch = self.scratch.len();
        let stream = self.stream_mut(id)?;
        let held = if lent {
            in_scratch
        } else {
            stream.received.consume(n);
            stream.received.len()
        };
        if stream.buffer_full && held < limit {
            stream.buffer_full = false;
            if !stream.reads_paused {
                self.read_again(id);
            }
        }
        Ok(())
    }

    /// Stops reading from the stream without closing it (for a rate limit, say):
    /// no `Readable` until [`tcp_resume_reads`](Self::tcp_resume_reads). Bytes
    /// that arrive stay in the kernel, so TCP flow control slows the peer down.
    /// Writing, `Eof` already read and closing are unaffected.
    pub fn tcp_pause_reads(&mut self, id: HandleId) -> Result<()> {
        self.stream_mut(id)?.reads_paused = true;
        Ok(())
    }

    /// Undoes [`tcp_pause_reads`](Self::tcp_pause_reads). The stream is read on
    /// the next iteration whether or not the OS reports it again, so bytes that
    /// arrived while paused are not left waiting for more. A no-op if not paused.
    pub fn tcp_resume_reads(&mut self, id: HandleId) -> Result<()> {
        let stream = self.stream_mut(id)?;
        if stream.reads_paused {
            stream.reads_paused = false;
            if !stream.buffer_full {
                self.read_again(id);
            }
        }
        Ok(())
    }

    /// Whether reads are paused by [`tcp_pause_reads`](Self::tcp_pause_reads).
    pub fn tcp_reads_paused(&self, id: HandleId) -> Result<bool> {
        Ok(self.stream_ref(id)?.reads_paused)
    }

    /// Puts a stream on the ready-again list: edge-triggered readiness that was
    /// passed over while reading was stopped will not be reported again.
    fn read_again(&mut self, id: HandleId) {
        self.ready_again.push_back((
            id,
            Readiness {
                readable: true,
                writable: false,
            },
        ));
    }

    /// Shuts the write side once every queued byte is sent (libuv's `uv_shutdown`).
    pub fn tcp_shutdown(&mut self, id: HandleId) -> Result<()> {
        let stream = self.stream_mut(id)?;
        stream.shutdown_requested = true;
        if !stream.connecting && stream.unsent.is_empty() {
            stream.flush();
        }
        Ok(())
    }

    /// Disables Nagle's algorithm: small messages (requests, haves) go out at once.
    pub fn tcp_set_nodelay(&mut self, id: HandleId, nodelay: bool) -> Result<()> {
        Ok(self.stream_mut(id)?.socket.set_nodelay(nodelay)?)
    }

    /// Whether the stream is still connecting.
    pub fn tcp_is_connecting(&mut self, id: HandleId) -> Result<bool> {
        Ok(self.stream_mut(id)?.connecting)
    }

    pub fn local_addr(&mut self, id: HandleId) -> Result<SocketAddr> {
        Ok(match &self.handle_mut(id)?.resource {
            Resource::Listener(l) => l.socket.local_addr()?,
            Resource::Stream(s) => s.socket.local_addr()?,
            Resource::Udp(u) => u.socket.local_addr()?,
            other => {
                let actual = other.kind();
                return Err(ReactorError::WrongKind {
                    id,
                    expected: HandleKind::TcpStream,
                    actual,
                });
            }
        })
    }

    pub fn peer_addr(&mut self, id: HandleId) -> Result<SocketAddr> {
        Ok(self.stream_mut(id)?.socket.peer_addr()?)
    }
}
