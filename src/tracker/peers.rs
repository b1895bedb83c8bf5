//! The one decoder for compact peer lists (BEP 23 for IPv4, BEP 7 for IPv6), used
//! by the HTTP and the UDP tracker alike.
//!
//! A response's peers go into one `Vec`, sized once, returned by value. There is no
//! second decoder to keep in step with this one (the seed's bug #8) and no way to
//! decode twice and keep one result (bug #11): callers get the list and own it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Bytes per compact IPv4 peer: 4 address + 2 port.
pub const COMPACT_V4: usize = 6;
/// Bytes per compact IPv6 peer: 16 address + 2 port.
pub const COMPACT_V6: usize = 18;
/// Most peers taken from one response; the rest are ignored.
pub const MAX_PEERS_PER_RESPONSE: usize = 5000;

/// Builds one response's peer list with a single allocation.
pub struct PeerList {
    peers: Vec<SocketAddr>,
}

impl PeerList {
    /// A list with room for the compact peers in `v4` and `v6` plus `extra` more.
    pub fn with_room(v4: &[u8], v6: &[u8], extra: usize) -> PeerList {
        let wanted = v4.len() / COMPACT_V4 + v6.len() / COMPACT_V6 + extra;
        PeerList {
            peers: Vec::with_capacity(wanted.min(MAX_PEERS_PER_RESPONSE)),
        }
    }

    /// Adds compact IPv4 peers. A length that is not a multiple of 6 is malformed.
    pub fn add_compact_v4(&mut self, bytes: &[u8]) -> Result<(), String> {
        if bytes.len() % COMPACT_V4 != 0 {
            return Err(format!(
                "compact IPv4 peers: {} bytes is not a multiple of 6",
                bytes.len()
            ));
        }
        for entry in bytes.chunks_exact(COMPACT_V4) {
            let ip = Ipv4Addr::new(entry[0], entry[1], entry[2], entry[3]);
            let port = u16::from_be_bytes([entry[4], entry[5]]);
            self.push(SocketAddr::V4(SocketAddrV4::new(ip, port)));
        }
        Ok(())
    }

    /// Adds compact IPv6 peers. A length that is not a multiple of 18 is malformed.
    pub fn add_compact_v6(&mut self, bytes: &[u8]) -> Result<(), String> {
        if bytes.len() % COMPACT_V6 != 0 {
            return Err(format!(
                "compact IPv6 peers: {} bytes is not a multiple of 18",
                bytes.len()
            ));
        }
        for entry in bytes.chunks_exact(COMPACT_V6) {
            let ip: [u8; 16] = entry[..16].try_into().expect("16 bytes");
            let port = u16::from_be_bytes([entry[16], entry[17]]);
            self.push(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0)));
        }
        Ok(())
    }

    /// Adds one peer; port 0 is unreachable and dropped, as are peers past the limit.
    pub fn push(&mut self, peer: SocketAddr) {
        if peer.port() != 0 && self.peers.len() < MAX_PEERS_PER_RESPONSE {
            self.peers.push(peer);
        }
    }

    pub fn into_vec(self) -> Vec<SocketAddr> {
        self.peers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_ipv4_and_ipv6_and_drops_port_zero() {
        let v4 = [127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0, 0];
        let mut v6 = [0u8; 18];
        v6[15] = 1;
        v6[16] = 0x1a;
        v6[17] = 0xe2;
        let mut list = PeerList::with_room(&v4, &v6, 0);
        list.add_compact_v4(&v4).unwrap();
        list.add_compact_v6(&v6).unwrap();
        let peers = list.into_vec();
        assert_eq!(
            peers,
            vec!["127.0.0.1:6881".parse().unwrap(), "[::1]:6882".parse().unwrap()]
        );
    }

    #[test]
    fn ragged_lengths_are_malformed() {
        let mut list = PeerList::with_room(&[], &[], 0);
        assert!(list.add_compact_v4(&[1, 2, 3, 4, 5]).is_err());
        assert!(list.add_compact_v6(&[0; 17]).is_err());
    }

    #[test]
    fn huge_lists_are_capped() {
        let v4 = vec![1u8; COMPACT_V4 * (MAX_PEERS_PER_RESPONSE + 100)];
        let mut list = PeerList::with_room(&v4, &[], 0);
        list.add_compact_v4(&v4).unwrap();
        assert_eq!(list.into_vec().len(), MAX_PEERS_PER_RESPONSE);
    }
}
