//! UDP: a bound socket with a bounded queue of datagrams waiting to be sent, the
//! `udp_*` methods of the reactor, and what a UDP readiness event means.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::net::SocketAddr;

use log::debug;
use mio::net::UdpSocket as MioUdp;

use super::table::Resource;
use super::{Event, HandleId, Handler, Reactor, ReactorError, Readiness};

type Result<T> = super::Result<T>;

pub(crate) struct UdpSocket {
    pub(crate) socket: MioUdp,
    pub(crate) unsent: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Set when the owner's last `udp_recv_from` did not reach `WouldBlock`: the
    /// socket may hold more datagrams but mio (edge-triggered) will not say so again.
    pub(crate) maybe_readable: bool,
}

impl UdpSocket {
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            socket: MioUdp::bind(addr)?,
            unsent: VecDeque::new(),
            maybe_readable: false,
        })
    }

    /// Sends queued datagrams until the socket would block. A datagram the kernel
    /// refuses for another reason is dropped and its error returned (UDP promises
    /// nothing, and one bad destination must not block the rest).
    pub(crate) fn flush(&mut self) -> std::result::Result<(), io::Error> {
        while let Some((addr, data)) = self.unsent.front() {
            match self.socket.send_to(data, *addr) {
                Ok(_) => {
                    self.unsent.pop_front();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.unsent.pop_front();
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

impl<O: Copy + Debug> Reactor<O> {
    pub(super) fn udp_ready<H: Handler<O>>(&mut self, handler: &mut H, id: HandleId, readiness: Readiness) {
        if readiness.writable {
            if let Ok(udp) = self.udp_mut(id) {
                if let Err(e) = udp.flush() {
                    debug!("udp {id}: datagram dropped: {e}");
                }
            }
        }
        if readiness.readable {
            let Ok(udp) = self.udp_mut(id) else { return };
            udp.maybe_readable = true;
            self.deliver(handler, id, Event::Readable);
            // The owner stopped before WouldBlock: give it another turn, since the
            // edge-triggered poll will not report the socket again.
            if self.udp_mut(id).is_ok_and(|udp| udp.maybe_readable) {
                self.ready_again.push_back((
                    id,
                    Readiness {
                        readable: true,
                        writable: false,
                    },
                ));
            }
        }
    }

    // ---------------------------------------------------------------- UDP

    pub fn udp_bind(&mut self, addr: SocketAddr, owner: O) -> Result<HandleId> {
        self.check_creation()?;
        let socket = UdpSocket::bind(addr)?;
        self.open(owner, Resource::Udp(Box::new(socket)))
    }

    /// Sends a datagram now, or queues it if the socket would block. Refused with
    /// `QueueFull` past [`Config::udp_queue_limit`](super::Config::udp_queue_limit) queued datagrams.
    pub fn udp_send_to(&mut self, id: HandleId, data: &[u8], to: SocketAddr) -> Result<()> {
        let limit = self.config.udp_queue_limit;
        let udp = self.udp_mut(id)?;
        if udp.unsent.is_empty() {
            match udp.socket.send_to(data, to) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(ReactorError::Io(e)),
            }
        }
        if udp.unsent.len() >= limit {
            return Err(ReactorError::QueueFull(id));
        }
        udp.unsent.push_back((to, data.to_vec()));
        Ok(())
    }

    /// Datagrams queued and not yet sent.
    pub fn udp_unsent(&mut self, id: HandleId) -> Result<usize> {
        Ok(self.udp_mut(id)?.unsent.len())
    }

    /// Reads one datagram into `buf`; `None` when there is none left. Call it until
    /// `None` after [`Event::Readable`] (or the loop offers the socket again).
    pub fn udp_recv_from(&mut self, id: HandleId, buf: &mut [u8]) -> Result<Option<(usize, SocketAddr)>> {
        let udp = self.udp_mut(id)?;
        loop {
            match udp.socket.recv_from(buf) {
                Ok((n, from)) => return Ok(Some((n, from))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    udp.maybe_readable = false;
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReactorError::Io(e)),
            }
        }
    }
}
