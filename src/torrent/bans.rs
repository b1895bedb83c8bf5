//! Strikes and bans, bounded.
//!
//! Two kinds of blame, as in libtorrent:
//! - a protocol violation (a malformed message, a second bitfield, blocks nobody
//!   asked for) closes that connection and strikes that *address* (IP and port)
//!   alone, so an honest peer behind the same NAT, seedbox or loopback is not hurt;
//! - bad piece data (a failed hash check with one contributor) strikes the *IP*,
//!   since whoever sent it can come back from any port.
//!
//! Three strikes ban for [`BAN_TIME`]. Every table is capped at [`MAX_ENTRIES`]:
//! when one is full, expired entries go first, then the one closest to expiry
//! (strikes are forgotten oldest first), so nothing here can only grow.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Most entries of each table (strikes and bans, by address and by IP).
pub const MAX_ENTRIES: usize = 10_000;
/// How long a ban lasts.
pub const BAN_TIME: Duration = Duration::from_secs(3600);
/// How long a strike is remembered.
pub const STRIKE_MEMORY: Duration = Duration::from_secs(3600);

/// A table of `key → (count, expires)` with a cap.
#[derive(Debug)]
struct Bounded<K> {
    entries: HashMap<K, (u32, Instant)>,
}

impl<K: Hash + Eq + Copy> Bounded<K> {
    fn new() -> Bounded<K> {
        Bounded {
            entries: HashMap::new(),
        }
    }

    fn get(&self, key: &K, now: Instant) -> u32 {
        self.entries
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map_or(0, |(count, _)| *count)
    }

    /// Adds one to `key` (restarting an expired entry) and sets its expiry.
    fn bump(&mut self, key: K, now: Instant, lasts: Duration) -> u32 {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (_, expires)| *expires > now);
            if self.entries.len() >= MAX_ENTRIES {
                // Forget the tenth closest to expiry at once, so a flood of new
                // addresses costs one pass per thousand, not one per address.
                let mut expiries: Vec<Instant> = self.entries.values().map(|(_, e)| *e).collect();
                let cut = expiries.len() / 10;
                let (_, threshold, _) = expiries.select_nth_unstable(cut);
                let threshold = *threshold;
                self.entries.retain(|_, (_, expires)| *expires > threshold);
            }
        }
        let entry = self.entries.entry(key).or_insert((0, now));
        if entry.1 <= now {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now + lasts;
        entry.0
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn clear(&mut self) {
        self.entries.clear();
    }
}

/// One torrent's strikes and bans.
#[derive(Debug)]
pub struct Bans {
    max_strikes: u32,
    protocol: Bounded<SocketAddr>,
    bad_data: Bounded<IpAddr>,
    banned_addrs: Bounded<SocketAddr>,
    banned_ips: Bounded<IpAddr>,
}

/// What a strike led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strike {
    /// Counted; `n` strikes so far.
    Counted(u32),
    /// That was the last one: banned now.
    Banned,
}

impl Bans {
    pub fn new(max_strikes: u32) -> Bans {
        Bans {
            max_strikes: max_strikes.max(1),
            protocol: Bounded::new(),
            bad_data: Bounded::new(),
            banned_addrs: Bounded::new(),
            banned_ips: Bounded::new(),
        }
    }

    /// A protocol violation by the peer at `addr`.
    pub fn protocol_violation(&mut self, addr: SocketAddr, now: Instant) -> Strike {
        let n = self.protocol.bump(addr, now, STRIKE_MEMORY);
        if n >= self.max_strikes {
            self.banned_addrs.bump(addr, now, BAN_TIME);
            Strike::Banned
        } else {
            Strike::Counted(n)
        }
    }

    /// Bad piece data from `ip`.
    pub fn bad_data(&mut self, ip: IpAddr, now: Instant) -> Strike {
        let n = self.bad_data.bump(ip, now, STRIKE_MEMORY);
        if n >= self.max_strikes {
            self.banned_ips.bump(ip, now, BAN_TIME);
            Strike::Banned
        } else {
            Strike::Counted(n)
        }
    }

    /// Protocol-violation strikes against `addr` and bad-data strikes against its IP.
    pub fn strikes(&self, addr: SocketAddr, now: Instant) -> (u32, u32) {
        (self.protocol.get(&addr, now), self.bad_data.get(&addr.ip(), now))
    }

    pub fn is_banned(&self, addr: SocketAddr, now: Instant) -> bool {
        self.banned_ips.get(&addr.ip(), now) > 0 || self.banned_addrs.get(&addr, now) > 0
    }

    /// IPs banned for bad data (not yet expired), sorted.
    pub fn banned_ips(&self, now: Instant) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self
            .banned_ips
            .entries
            .iter()
            .filter(|(_, (_, expires))| *expires > now)
            .map(|(ip, _)| *ip)
            .collect();
        ips.sort();
        ips
    }

    /// Addresses banned for protocol violations (not yet expired), sorted.
    pub fn banned_addrs(&self, now: Instant) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = self
            .banned_addrs
            .entries
            .iter()
            .filter(|(_, (_, expires))| *expires > now)
            .map(|(addr, _)| *addr)
            .collect();
        addrs.sort();
        addrs
    }

    /// Entries in every table (for leak tests: each is capped).
    pub fn len(&self) -> usize {
        self.protocol.len() + self.bad_data.len() + self.banned_addrs.len() + self.banned_ips.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.protocol.clear();
        self.bad_data.clear();
        self.banned_addrs.clear();
        self.banned_ips.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_errors_ban_an_address_and_bad_data_an_ip() {
        let now = Instant::now();
        let mut bans = Bans::new(3);
        let liar: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let honest: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        for _ in 0..2 {
            bans.protocol_violation(liar, now);
        }
        assert_eq!(bans.protocol_violation(liar, now), Strike::Banned);
        assert!(bans.is_banned(liar, now));
        assert!(!bans.is_banned(honest, now), "the same IP, another port");
        for _ in 0..3 {
            bans.bad_data(liar.ip(), now);
        }
        assert!(bans.is_banned(honest, now), "bad data bans the IP");
        assert!(!bans.is_banned(honest, now + BAN_TIME), "bans expire");
    }

    #[test]
    fn tables_are_capped() {
        let now = Instant::now();
        let mut bans = Bans::new(1);
        for i in 0..(MAX_ENTRIES as u32 + 500) {
            let addr = SocketAddr::from((std::net::Ipv4Addr::from(i), 1));
            bans.protocol_violation(addr, now + Duration::from_millis(u64::from(i)));
            bans.bad_data(addr.ip(), now + Duration::from_millis(u64::from(i)));
        }
        assert!(bans.len() <= 4 * MAX_ENTRIES);
        let last = SocketAddr::from((std::net::Ipv4Addr::from(MAX_ENTRIES as u32 + 499), 1));
        assert!(
            bans.is_banned(last, now + Duration::from_secs(20)),
            "the newest ban is kept"
        );
    }
}
