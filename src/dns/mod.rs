//! Name resolution that never blocks the loop: a sans-IO stub resolver.
//!
//! IP literals and `/etc/hosts` names answer at once. Other names become lookups
//! whose queries the client sends on a reactor UDP handle; answers and timeouts are
//! fed back. A slow or dead name server delays only the lookups that wait on it,
//! never the loop. Each lookup asks for A records, then AAAA if there were none,
//! trying each server `attempts` times with `timeout` per try.

pub mod config;
pub mod message;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use slab::Slab;

pub use config::ResolverConfig;
use message::{decode_answer, encode_query, RecordType};

/// Most lookups in progress at once; more are refused rather than queued forever.
pub const MAX_LOOKUPS: usize = 256;

/// A lookup in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LookupId {
    key: usize,
    serial: u64,
}

/// The addresses a name resolved to, or why it did not.
pub type Resolved = Result<Vec<IpAddr>, String>;

/// What `resolve` can say at once.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    /// An IP literal or a hosts entry: no query needed.
    Ready(Vec<IpAddr>),
    /// Queries will follow; the result comes from `poll_result`.
    Pending(LookupId),
}

#[derive(Debug)]
struct Lookup {
    serial: u64,
    name: String,
    record: RecordType,
    query_id: u16,
    server: usize,
    tries_on_server: u32,
    deadline: Instant,
    send_pending: bool,
}

/// The resolver's state: configuration and lookups in progress.
#[derive(Debug)]
pub struct Resolver {
    config: ResolverConfig,
    lookups: Slab<Lookup>,
    next_serial: u64,
    results: VecDeque<(LookupId, Resolved)>,
}

impl Resolver {
    pub fn new(config: ResolverConfig) -> Resolver {
        Resolver {
            config,
            lookups: Slab::new(),
            next_serial: 0,
            results: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &ResolverConfig {
        &self.config
    }

    /// Starts resolving `name`.
    pub fn resolve(&mut self, now: Instant, name: &str) -> Result<Start, String> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(Start::Ready(vec![ip]));
        }
        if let Some(ips) = self.config.hosts.get(&name.to_ascii_lowercase()) {
            return Ok(Start::Ready(ips.clone()));
        }
        if self.config.nameservers.is_empty() {
            return Err(format!("{name}: no name server configured"));
        }
        if self.lookups.len() >= MAX_LOOKUPS {
            return Err("too many name lookups in progress".into());
        }
        encode_query(0, name, RecordType::A)?; // validate the name now, not later
        self.next_serial += 1;
        let lookup = Lookup {
            serial: self.next_serial,
            name: name.to_string(),
            record: RecordType::A,
            query_id: crate::tracker::random_u64() as u16,
            server: 0,
            tries_on_server: 1,
            deadline: now + self.config.timeout,
            send_pending: true,
        };
        let key = self.lookups.insert(lookup);
        Ok(Start::Pending(LookupId {
            key,
            serial: self.next_serial,
        }))
    }

    /// Forgets a lookup (its result is no longer wanted).
    pub fn cancel(&mut self, id: LookupId) {
        if self.lookups.get(id.key).is_some_and(|l| l.serial == id.serial) {
            self.lookups.remove(id.key);
        }
        self.results.retain(|(done, _)| *done != id);
    }

    pub fn in_progress(&self) -> usize {
        self.lookups.len()
    }

    /// The next query to send: (server, datagram).
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let servers = &self.config.nameservers;
        for (_, lookup) in self.lookups.iter_mut() {
            if std::mem::take(&mut lookup.send_pending) {
                let query =
                    encode_query(lookup.query_id, &lookup.name, lookup.record).expect("validated at start");
                return Some((servers[lookup.server], query));
            }
        }
        None
    }

    /// The earliest deadline of any lookup.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.lookups.iter().map(|(_, l)| l.deadline).min()
    }

    /// Retries or fails lookups whose deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let (servers, attempts, timeout) = (
            self.config.nameservers.len(),
            self.config.attempts,
            self.config.timeout,
        );
        let mut failed = Vec::new();
        for (key, lookup) in self.lookups.iter_mut() {
            if lookup.deadline > now {
                continue;
            }
            if lookup.tries_on_server < attempts {
                lookup.tries_on_server += 1;
            } else if lookup.server + 1 < servers {
                lookup.server += 1;
                lookup.tries_on_server = 1;
            } else {
                failed.push(key);
                continue;
            }
            lookup.query_id = crate::tracker::random_u64() as u16;
            lookup.deadline = now + timeout;
            lookup.send_pending = true;
        }
        for key in failed {
            let lookup = self.lookups.remove(key);
            let id = LookupId {
                key,
                serial: lookup.serial,
            };
            self.results.push_back((
                id,
                Err(format!("{}: no answer from the name servers", lookup.name)),
            ));
        }
    }

    /// A datagram from a name server.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let Ok(answer) = decode_answer(data) else { return };
        let servers = &self.config.nameservers;
        let Some((key, _)) = self
            .lookups
            .iter()
            .find(|(_, l)| l.query_id == answer.id && servers[l.server] == from)
        else {
            return; // late, spoofed, or for a cancelled lookup
        };
        let lookup = &mut self.lookups[key];
        let id = LookupId {
            key,
            serial: lookup.serial,
        };
        if !answer.addresses.is_empty() {
            self.lookups.remove(key);
            self.results.push_back((id, Ok(answer.addresses)));
        } else if answer.rcode == 0 && lookup.record == RecordType::A {
            // No IPv4 address: ask for IPv6 before giving up.
            lookup.record = RecordType::Aaaa;
            lookup.query_id = crate::tracker::random_u64() as u16;
            lookup.deadline = now + self.config.timeout;
            lookup.send_pending = true;
        } else {
            let lookup = self.lookups.remove(key);
            let why = if answer.rcode == 3 {
                "no such host"
            } else {
                "no address"
            };
            self.results
                .push_back((id, Err(format!("{}: {why}", lookup.name))));
        }
    }

    /// A finished lookup.
    pub fn poll_result(&mut self) -> Option<(LookupId, Resolved)> {
        self.results.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> ResolverConfig {
        ResolverConfig::from_texts(
            "127.0.0.1 localhost\n",
            "nameserver 127.0.0.1\nnameserver 127.0.0.2\noptions timeout:1 attempts:2\n",
        )
    }

    fn reply(query: &[u8], ips: &[&str]) -> Vec<u8> {
        let ips: Vec<IpAddr> = ips.iter().map(|s| s.parse().unwrap()).collect();
        message::encode_answer(query, &ips)
    }

    #[test]
    fn no_name_server_is_an_error_not_a_panic() {
        let mut config = config();
        config.nameservers.clear();
        let mut r = Resolver::new(config);
        assert!(r
            .resolve(Instant::now(), "tracker.example")
            .unwrap_err()
            .contains("no name server"));
        assert!(r.poll_transmit().is_none());
    }

    #[test]
    fn literals_and_hosts_answer_at_once() {
        let mut r = Resolver::new(config());
        let now = Instant::now();
        assert_eq!(
            r.resolve(now, "10.1.2.3").unwrap(),
            Start::Ready(vec!["10.1.2.3".parse().unwrap()])
        );
        assert_eq!(
            r.resolve(now, "LOCALHOST").unwrap(),
            Start::Ready(vec!["127.0.0.1".parse().unwrap()])
        );
        assert!(r.poll_transmit().is_none());
    }

    #[test]
    fn a_then_aaaa_then_answer() {
        let mut r = Resolver::new(config());
        let now = Instant::now();
        let Start::Pending(id) = r.resolve(now, "tracker.example").unwrap() else {
            panic!()
        };
        let (server, query) = r.poll_transmit().unwrap();
        assert_eq!(server, "127.0.0.1:53".parse().unwrap());
        r.handle_datagram(now, "127.0.0.9:53".parse().unwrap(), &reply(&query, &["1.2.3.4"]));
        assert!(
            r.poll_result().is_none(),
            "answers from another address are ignored"
        );
        r.handle_datagram(now, server, &reply(&query, &[]));
        let (_, aaaa) = r.poll_transmit().unwrap();
        assert_eq!(&aaaa[aaaa.len() - 4..aaaa.len() - 2], &28u16.to_be_bytes());
        r.handle_datagram(now, server, &reply(&aaaa, &["::1"]));
        assert_eq!(r.poll_result(), Some((id, Ok(vec!["::1".parse().unwrap()]))));
        assert_eq!(r.in_progress(), 0);
    }

    #[test]
    fn retries_each_server_then_fails() {
        let mut r = Resolver::new(config());
        let mut now = Instant::now();
        let Start::Pending(id) = r.resolve(now, "dead.example").unwrap() else {
            panic!()
        };
        let mut servers = Vec::new();
        for _ in 0..10 {
            if let Some((server, _)) = r.poll_transmit() {
                servers.push(server.ip().to_string());
            }
            now += Duration::from_secs(1);
            r.handle_timeout(now);
            if let Some((done, result)) = r.poll_result() {
                assert_eq!(done, id);
                assert!(result.unwrap_err().contains("no answer"));
                break;
            }
        }
        assert_eq!(servers, ["127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2"]);
        assert_eq!(r.in_progress(), 0);
    }
}
