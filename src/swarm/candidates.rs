//! Candidate peer addresses: the one channel through which trackers (and later DHT
//! and PEX) hand peers to the pool. Duplicates are dropped, and the queue is bounded
//! so a flood of addresses cannot grow it without limit.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;

/// Addresses we may connect to, oldest first, each at most once.
#[derive(Debug)]
pub struct Candidates {
    queue: VecDeque<SocketAddr>,
    /// Every address queued or handed out; `forget` removes one (when its peer is
    /// gone for good), so this shrinks as well as grows.
    known: HashSet<SocketAddr>,
    limit: usize,
    own: Vec<SocketAddr>,
}

impl Candidates {
    /// A queue that keeps at most `limit` addresses known at once.
    pub fn new(limit: usize) -> Candidates {
        Candidates {
            queue: VecDeque::new(),
            known: HashSet::new(),
            limit,
            own: Vec::new(),
        }
    }

    /// Addresses that are ours (our listen address as trackers echo it back).
    pub fn set_own(&mut self, own: Vec<SocketAddr>) {
        self.own = own;
    }

    /// Offers an address; returns whether it was new and taken.
    pub fn offer(&mut self, peer: SocketAddr) -> bool {
        if peer.port() == 0 || self.own.contains(&peer) || self.known.len() >= self.limit {
            return false;
        }
        if !self.known.insert(peer) {
            return false;
        }
        self.queue.push_back(peer);
        true
    }

    /// The next address to try.
    pub fn pop(&mut self) -> Option<SocketAddr> {
        self.queue.pop_front()
    }

    /// The address will not be used again: make room and allow it to be offered anew.
    pub fn forget(&mut self, peer: SocketAddr) {
        self.known.remove(&peer);
        self.queue.retain(|p| *p != peer);
    }

    /// Forgets everything (shutdown).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.known.clear();
    }

    /// Whether the address is queued or handed out and not forgotten.
    pub fn contains(&self, peer: &SocketAddr) -> bool {
        self.known.contains(peer)
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn known(&self) -> usize {
        self.known.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_ourselves_and_overflow_are_dropped() {
        let mut c = Candidates::new(3);
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let me: SocketAddr = "127.0.0.1:9".parse().unwrap();
        c.set_own(vec![me]);
        assert!(c.offer(a));
        assert!(!c.offer(a), "duplicate");
        assert!(!c.offer(me), "ourselves");
        assert!(!c.offer("127.0.0.1:0".parse().unwrap()), "port 0");
        assert!(c.offer(b));
        assert!(c.offer("127.0.0.1:3".parse().unwrap()));
        assert!(!c.offer("127.0.0.1:4".parse().unwrap()), "full");
        assert_eq!(c.pop(), Some(a));
        assert!(!c.offer(a), "still known after being handed out");
        c.forget(a);
        assert!(c.offer(a), "forgotten addresses may come back");
        assert_eq!(c.known(), 3);
    }
}
