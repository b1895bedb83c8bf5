//! UDP resources: a bound socket with a bounded queue of datagrams waiting to be sent.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use mio::net::UdpSocket as MioUdp;

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
    pub(crate) fn flush(&mut self) -> Result<(), io::Error> {
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
