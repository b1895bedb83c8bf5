//! Candidate peer addresses: the one channel through which trackers (and later DHT
//! and PEX) hand peers to the pool. Duplicates are dropped, the set is bounded so a
//! flood of addresses cannot grow it without limit, and addresses come out in
//! random order: trackers list dead peers in runs, and trying them in the order
//! given would spend a whole round of connects on one run.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::random::Xorshift;

/// Addresses we may connect to, each known at most once.
#[derive(Debug)]
pub struct Candidates {
    /// Addresses to try; may hold entries forgotten since (skipped when popped).
    queue: Vec<SocketAddr>,
    /// Every known address: `true` while queued, `false` once handed out. `forget`
    /// removes one (its peer is gone for good), so this shrinks as well as grows.
    known: HashMap<SocketAddr, bool>,
    queued: usize,
    limit: usize,
    own: Vec<SocketAddr>,
    rng: Xorshift,
    /// Cleared for good (the torrent stopped): late tracker answers add nothing.
    closed: bool,
}

impl Candidates {
    /// A set that keeps at most `limit` addresses known at once.
    pub fn new(limit: usize) -> Candidates {
        Candidates::with_seed(limit, crate::random::random_u64())
    }

    /// The same with a fixed shuffle seed (tests).
    pub fn with_seed(limit: usize, seed: u64) -> Candidates {
        Candidates {
            queue: Vec::new(),
            known: HashMap::new(),
            queued: 0,
            limit,
            own: Vec::new(),
            rng: Xorshift::new(seed),
            closed: false,
        }
    }

    /// Addresses that are ours (our listen address as trackers echo it back).
    pub fn set_own(&mut self, own: Vec<SocketAddr>) {
        self.own = own;
    }

    /// Adds one of our own addresses.
    pub fn add_own(&mut self, addr: SocketAddr) {
        if !self.own.contains(&addr) && self.own.len() < 16 {
            self.own.push(addr);
        }
    }

    /// Offers an address; returns whether it was new and taken.
    pub fn offer(&mut self, peer: SocketAddr) -> bool {
        if self.closed || peer.port() == 0 || self.own.contains(&peer) || self.known.len() >= self.limit {
            return false;
        }
        if self.known.contains_key(&peer) {
            return false;
        }
        self.known.insert(peer, true);
        self.queued += 1;
        self.queue.push(peer);
        true
    }

    /// A random queued address to try.
    pub fn pop(&mut self) -> Option<SocketAddr> {
        while !self.queue.is_empty() {
            let at = self.rng.below(self.queue.len() as u64) as usize;
            let addr = self.queue.swap_remove(at);
            if let Some(queued @ true) = self.known.get_mut(&addr) {
                *queued = false;
                self.queued -= 1;
                return Some(addr);
            }
        }
        None
    }

    /// The address will not be used again: make room and allow it to be offered anew.
    pub fn forget(&mut self, peer: SocketAddr) {
        if self.known.remove(&peer) == Some(true) {
            self.queued -= 1;
            // Its queue entry is skipped when it comes up; rebuild when most are stale.
            if self.queue.len() > 2 * self.queued + 64 {
                let known = &self.known;
                self.queue.retain(|a| known.get(a) == Some(&true));
            }
        }
    }

    /// Forgets everything and takes nothing more (shutdown: the answer to a
    /// `stopped` announce still lists peers, and must not refill the set).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.known.clear();
        self.queued = 0;
        self.closed = true;
    }

    /// Whether the address is queued or handed out and not forgotten.
    pub fn contains(&self, peer: &SocketAddr) -> bool {
        self.known.contains_key(peer)
    }

    /// Whether another address would be taken (the set is not full).
    pub fn has_room(&self) -> bool {
        self.known.len() < self.limit
    }

    pub fn queued(&self) -> usize {
        self.queued
    }

    pub fn known(&self) -> usize {
        self.known.len()
    }

    /// Entries in the queue, stale ones included (for leak tests).
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_ourselves_and_overflow_are_dropped() {
        let mut c = Candidates::with_seed(3, 1);
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
        let first = c.pop().unwrap();
        assert!(!c.offer(first), "still known after being handed out");
        c.forget(first);
        assert!(c.offer(first), "forgotten addresses may come back");
        assert_eq!(c.known(), 3);
    }

    #[test]
    fn order_is_random_and_forgotten_entries_are_skipped() {
        let mut c = Candidates::with_seed(1000, 7);
        let addrs: Vec<SocketAddr> = (1..=100).map(|p| SocketAddr::from(([127, 0, 0, 1], p))).collect();
        for &a in &addrs {
            c.offer(a);
        }
        c.forget(addrs[0]);
        let popped: Vec<SocketAddr> = std::iter::from_fn(|| c.pop()).collect();
        assert_eq!(popped.len(), 99);
        assert!(!popped.contains(&addrs[0]));
        assert_ne!(popped, addrs[1..].to_vec(), "not the order given");
    }

    #[test]
    fn nothing_is_taken_after_the_clear_at_shutdown() {
        let mut c = Candidates::with_seed(10, 1);
        assert!(c.offer("127.0.0.1:1".parse().unwrap()));
        c.clear();
        assert!(!c.offer("127.0.0.1:2".parse().unwrap()), "a late tracker answer");
        assert_eq!((c.known(), c.queued(), c.queue_len()), (0, 0, 0));
    }

    #[test]
    fn ten_thousand_forgotten_failures_leave_room() {
        let mut c = Candidates::with_seed(2000, 3);
        for i in 0..10_000u32 {
            let addr = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 6881));
            assert!(c.offer(addr), "room for address {i}");
            let got = c.pop().unwrap();
            c.forget(got);
        }
        assert_eq!((c.known(), c.queued(), c.queue_len()), (0, 0, 0));
        assert!(c.offer("127.0.0.1:5".parse().unwrap()));
    }
}
