//! TCP resources: a listener, and a stream with its read buffer and write queue.
//!
//! These types own the socket and its buffers and know how to move bytes; what an
//! event *means* (connected, failed, drained) is decided by the reactor in
//! `mod.rs`, which owns these values through the table.

use std::io::{self, Write};
use std::net::SocketAddr;

use mio::net::{TcpListener as MioListener, TcpStream as MioStream};

use super::buffer::{ByteQueue, FillOutcome};

/// Backlog for listening sockets; the kernel caps it at `somaxconn`.
const LISTEN_BACKLOG: i32 = 1024;

pub(crate) struct Listener {
    pub(crate) socket: MioListener,
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
        })
    }
}

pub(crate) struct Stream {
    pub(crate) socket: MioStream,
    /// True until the non-blocking connect completes.
    pub(crate) connecting: bool,
    pub(crate) received: ByteQueue,
    pub(crate) unsent: ByteQueue,
    /// A write had to wait, so the owner is told `Drained` when the queue empties.
    pub(crate) notify_drained: bool,
    /// Reading stopped because `received` is full; resumes when the owner consumes.
    pub(crate) read_paused: bool,
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
            read_paused: false,
            eof_reported: false,
            shutdown_requested: false,
            write_shut: false,
        }
    }

    pub(crate) fn fill(&mut self, limit: usize) -> FillOutcome {
        self.received.fill_from(&mut self.socket, limit)
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
                log::debug!(target: "bitloop::reactor", "shutdown of write side failed: {e}");
            }
        }
        Flush::Empty
    }
}
