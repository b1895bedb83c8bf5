//! Name resolution that never blocks the loop: a sans-IO stub resolver.
//!
//! IP literals and `/etc/hosts` names answer at once. Other names become lookups
//! that ask for A and AAAA records at the same time (both families are wanted: the
//! tracker client announces over each). Every try of a question is a *query* of its
//! own, with a fresh random id, that the client sends from a **fresh UDP socket**
//! (so a fresh random source port, chosen by the kernel) and closes when the query
//! ends ([`Resolver::poll_ended`]). An answer counts only if it comes from the server
//! asked, to that query's socket, with the query's id, and echoes its one question
//! (name, type, class); anything else is dropped and counted
//! ([`Resolver::dropped_answers`]), and the query goes on waiting.
//!
//! Each question tries each server `attempts` times with `timeout` per try; a
//! server that answers SERVFAIL or REFUSED is skipped. Once one family has
//! addresses, the other gets no further tries after the one in flight, so a server
//! that drops AAAA queries delays a lookup by one timeout at most.

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

/// One query on the wire: one try of one question, with its own socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QueryId {
    key: usize,
    serial: u64,
}

impl QueryId {
    /// A small number naming the query's slot, for the socket's owner tag.
    pub fn slot(self) -> usize {
        self.key
    }
}

/// A query to send: from a fresh socket, to `server`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub query: QueryId,
    pub server: SocketAddr,
    pub datagram: Vec<u8>,
}

/// The addresses a name resolved to (IPv4 first), or why it did not.
pub type Resolved = Result<Vec<IpAddr>, String>;

/// What `resolve` can say at once.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    /// An IP literal or a hosts entry: no query needed.
    Ready(Vec<IpAddr>),
    /// Queries will follow; the result comes from `poll_result`.
    Pending(LookupId),
}

/// Where one question (A or AAAA) of a lookup is.
#[derive(Debug)]
enum State {
    /// A try is on the wire (or about to be): this query.
    Asking(QueryId),
    Answered(Vec<IpAddr>),
    /// No address: why (NXDOMAIN, no data, no answer).
    Failed(Failure),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// NXDOMAIN: the name does not exist.
    Nxdomain,
    /// The name exists but has no record of this type.
    NoData,
    /// No server answered (every try timed out, or they all failed).
    Silent,
}

#[derive(Debug)]
struct Question {
    record: RecordType,
    server: usize,
    tries_on_server: u32,
    state: State,
}

#[derive(Debug)]
struct Lookup {
    serial: u64,
    name: String,
    questions: [Question; 2],
}

#[derive(Debug)]
struct Query {
    serial: u64,
    lookup: usize,
    question: usize,
    id: u16,
    server: SocketAddr,
    deadline: Instant,
    /// Not sent yet (`poll_transmit` hands it out once).
    send_pending: bool,
}

/// The resolver's state: configuration, lookups and queries in progress.
#[derive(Debug)]
pub struct Resolver {
    config: ResolverConfig,
    lookups: Slab<Lookup>,
    queries: Slab<Query>,
    next_serial: u64,
    results: VecDeque<(LookupId, Resolved)>,
    /// Queries that ended: their sockets are to be closed.
    ended: VecDeque<QueryId>,
    dropped_answers: u64,
}

impl Resolver {
    pub fn new(config: ResolverConfig) -> Resolver {
        Resolver {
            config,
            lookups: Slab::new(),
            queries: Slab::new(),
            next_serial: 0,
            results: VecDeque::new(),
            ended: VecDeque::new(),
            dropped_answers: 0,
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
        let question = |record| Question {
            record,
            server: 0,
            tries_on_server: 1,
            state: State::Failed(Failure::Silent), // replaced at once below
        };
        let key = self.lookups.insert(Lookup {
            serial: self.next_serial,
            name: name.trim_end_matches('.').to_ascii_lowercase(),
            questions: [question(RecordType::A), question(RecordType::Aaaa)],
        });
        for q in 0..2 {
            self.ask(now, key, q);
        }
        Ok(Start::Pending(LookupId {
            key,
            serial: self.lookups[key].serial,
        }))
    }

    /// Puts a new query for question `q` of lookup `key` on the wire.
    fn ask(&mut self, now: Instant, key: usize, q: usize) {
        self.next_serial += 1;
        let question = &self.lookups[key].questions[q];
        let query = self.queries.insert(Query {
            serial: self.next_serial,
            lookup: key,
            question: q,
            id: crate::random::random_u64() as u16,
            server: self.config.nameservers[question.server],
            deadline: now + self.config.timeout,
            send_pending: true,
        });
        self.lookups[key].questions[q].state = State::Asking(QueryId {
            key: query,
            serial: self.next_serial,
        });
    }

    /// Ends a query: its socket is to be closed.
    fn end_query(&mut self, id: QueryId) {
        if self.queries.get(id.key).is_some_and(|q| q.serial == id.serial) {
            self.queries.remove(id.key);
            self.ended.push_back(id);
        }
    }

    /// Forgets a lookup (its result is no longer wanted); its queries end.
    pub fn cancel(&mut self, id: LookupId) {
        if self.lookups.get(id.key).is_some_and(|l| l.serial == id.serial) {
            let lookup = self.lookups.remove(id.key);
            for question in lookup.questions {
                if let State::Asking(query) = question.state {
                    self.end_query(query);
                }
            }
        }
        self.results.retain(|(done, _)| *done != id);
    }

    pub fn in_progress(&self) -> usize {
        self.lookups.len()
    }

    /// Queries on the wire (each holds one socket in the client).
    pub fn queries_in_flight(&self) -> usize {
        self.queries.len()
    }

    /// Answers dropped because they did not match their query (wrong server, id or
    /// question), or came for a query that had ended.
    pub fn dropped_answers(&self) -> u64 {
        self.dropped_answers
    }

    /// The next query to send, each from a fresh socket.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let (key, query) = self.queries.iter_mut().find(|(_, q)| q.send_pending)?;
        query.send_pending = false;
        let lookup = &self.lookups[query.lookup];
        let record = lookup.questions[query.question].record;
        let datagram = encode_query(query.id, &lookup.name, record).expect("validated at start");
        Some(Transmit {
            query: QueryId {
                key,
                serial: query.serial,
            },
            server: query.server,
            datagram,
        })
    }

    /// A query that ended since the last call: close its socket.
    pub fn poll_ended(&mut self) -> Option<QueryId> {
        self.ended.pop_front()
    }

    /// The earliest deadline of any query.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queries.iter().map(|(_, q)| q.deadline).min()
    }

    /// Retries or fails queries whose deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<(usize, u64)> = self
            .queries
            .iter()
            .filter(|(_, q)| q.deadline <= now)
            .map(|(key, q)| (key, q.serial))
            .collect();
        for (key, serial) in due {
            let Some(query) = self.queries.get(key).filter(|q| q.serial == serial) else {
                continue;
            };
            let (lookup, q) = (query.lookup, query.question);
            self.end_query(QueryId { key, serial });
            let other_has_addresses = matches!(self.lookups[lookup].questions[1 - q].state, State::Answered(ref a) if !a.is_empty());
            let (servers, attempts) = (self.config.nameservers.len(), self.config.attempts);
            let question = &mut self.lookups[lookup].questions[q];
            if other_has_addresses {
                question.state = State::Failed(Failure::Silent);
            } else if question.tries_on_server < attempts {
                question.tries_on_server += 1;
                self.ask(now, lookup, q);
            } else if question.server + 1 < servers {
                question.server += 1;
                question.tries_on_server = 1;
                self.ask(now, lookup, q);
            } else {
                question.state = State::Failed(Failure::Silent);
            }
            self.complete(lookup);
        }
    }

    /// A datagram that arrived on the socket of `query`, from `from`.
    pub fn handle_datagram(&mut self, now: Instant, query: QueryId, from: SocketAddr, data: &[u8]) {
        let Some(sent) = self.queries.get(query.key).filter(|q| q.serial == query.serial) else {
            self.dropped_answers += 1; // late: the query already ended
            return;
        };
        let lookup = &self.lookups[sent.lookup];
        let record = lookup.questions[sent.question].record;
        let answer = match decode_answer(data) {
            Ok(answer) => answer,
            Err(_) => {
                self.dropped_answers += 1;
                return;
            }
        };
        let echoes = answer.questions == 1
            && answer.question.as_ref().is_some_and(|q| {
                q.name == lookup.name && q.record == record as u16 && q.class == message::CLASS_IN
            });
        if from != sent.server || answer.id != sent.id || !echoes {
            self.dropped_answers += 1; // spoofed, misrouted, or for another question
            return;
        }
        let (key, q) = (sent.lookup, sent.question);
        self.end_query(query);
        let addresses: Vec<IpAddr> = answer
            .addresses
            .into_iter()
            .filter(|ip| ip.is_ipv6() == (record == RecordType::Aaaa))
            .collect();
        let servers = self.config.nameservers.len();
        let question = &mut self.lookups[key].questions[q];
        question.state = match answer.rcode {
            0 if !addresses.is_empty() => State::Answered(addresses),
            0 => State::Failed(Failure::NoData),
            3 => State::Failed(Failure::Nxdomain),
            // SERVFAIL, REFUSED, …: this server cannot help; ask the next one.
            _ if question.server + 1 < servers => {
                question.server += 1;
                question.tries_on_server = 1;
                self.ask(now, key, q);
                return;
            }
            _ => State::Failed(Failure::Silent),
        };
        self.complete(key);
    }

    /// Queues the lookup's result once neither question is still asking.
    fn complete(&mut self, key: usize) {
        let lookup = &self.lookups[key];
        if lookup
            .questions
            .iter()
            .any(|q| matches!(q.state, State::Asking(_)))
        {
            return;
        }
        let lookup = self.lookups.remove(key);
        let id = LookupId {
            key,
            serial: lookup.serial,
        };
        let mut addresses = Vec::new();
        let mut failures = Vec::new();
        for question in lookup.questions {
            match question.state {
                State::Answered(ips) => addresses.extend(ips),
                State::Failed(why) => failures.push(why),
                State::Asking(_) => unreachable!("checked above"),
            }
        }
        let result = if !addresses.is_empty() {
            Ok(addresses)
        } else if failures.contains(&Failure::Nxdomain) {
            Err(format!("{}: no such host", lookup.name))
        } else if failures.contains(&Failure::NoData) {
            Err(format!("{}: no address", lookup.name))
        } else {
            Err(format!("{}: no answer from the name servers", lookup.name))
        };
        self.results.push_back((id, result));
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

    /// The next two queries, as (A, AAAA) whatever order they come in.
    fn both(r: &mut Resolver) -> (Transmit, Transmit) {
        let (x, y) = (r.poll_transmit().unwrap(), r.poll_transmit().unwrap());
        let aaaa = |t: &Transmit| t.datagram[t.datagram.len() - 3] == 28;
        if aaaa(&x) {
            (y, x)
        } else {
            (x, y)
        }
    }

    fn pending(r: &mut Resolver, now: Instant, name: &str) -> LookupId {
        match r.resolve(now, name).unwrap() {
            Start::Pending(id) => id,
            ready => panic!("{ready:?}"),
        }
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
    fn a_and_aaaa_go_out_at_once_and_only_echoing_answers_count() {
        let mut r = Resolver::new(config());
        let now = Instant::now();
        let id = pending(&mut r, now, "Tracker.Example");
        let (a, aaaa) = both(&mut r);
        assert!(r.poll_transmit().is_none());
        assert_ne!(a.query, aaaa.query, "one query, one socket each");
        assert_eq!(a.server, "127.0.0.1:53".parse().unwrap());
        assert_eq!(
            &aaaa.datagram[aaaa.datagram.len() - 4..][..2],
            &28u16.to_be_bytes()
        );

        let good = reply(&a.datagram, &["1.2.3.4"]);
        // From another address, with another id, for another name or type, or on
        // the other query's socket: each is dropped and counted.
        r.handle_datagram(now, a.query, "127.0.0.9:53".parse().unwrap(), &good);
        let mut wrong_id = good.clone();
        wrong_id[0] ^= 0xff;
        r.handle_datagram(now, a.query, a.server, &wrong_id);
        let other_name = reply(
            &encode_query(
                u16::from_be_bytes([a.datagram[0], a.datagram[1]]),
                "evil.example",
                RecordType::A,
            )
            .unwrap(),
            &["6.6.6.6"],
        );
        r.handle_datagram(now, a.query, a.server, &other_name);
        r.handle_datagram(now, aaaa.query, aaaa.server, &good);
        r.handle_datagram(now, a.query, a.server, b"junk");
        assert_eq!(r.dropped_answers(), 5);
        assert!(r.poll_result().is_none() && r.poll_ended().is_none());

        r.handle_datagram(now, a.query, a.server, &good);
        assert_eq!(r.poll_ended(), Some(a.query), "its socket can close");
        assert!(r.poll_result().is_none(), "AAAA is still on its way");
        r.handle_datagram(now, a.query, a.server, &good);
        assert_eq!(r.dropped_answers(), 6, "a duplicate after the end is dropped too");
        r.handle_datagram(
            now,
            aaaa.query,
            aaaa.server,
            &reply(&aaaa.datagram, &["::1", "9.9.9.9"]),
        );
        assert_eq!(
            r.poll_result(),
            Some((id, Ok(vec!["1.2.3.4".parse().unwrap(), "::1".parse().unwrap()])))
        );
        assert_eq!(r.poll_ended(), Some(aaaa.query));
        assert_eq!((r.in_progress(), r.queries_in_flight()), (0, 0));
    }

    #[test]
    fn retries_are_fresh_queries_on_each_server_then_the_lookup_fails() {
        let mut r = Resolver::new(config());
        let mut now = Instant::now();
        let id = pending(&mut r, now, "dead.example");
        let mut sent = Vec::new();
        let mut ended = 0;
        for _ in 0..10 {
            while let Some(t) = r.poll_transmit() {
                sent.push(t);
            }
            while r.poll_ended().is_some() {
                ended += 1;
            }
            if let Some((done, result)) = r.poll_result() {
                assert_eq!(done, id);
                assert!(result.unwrap_err().contains("no answer"));
                break;
            }
            now += Duration::from_secs(1);
            r.handle_timeout(now);
        }
        let servers: Vec<String> = sent
            .iter()
            .step_by(2)
            .map(|t| t.server.ip().to_string())
            .collect();
        assert_eq!(servers, ["127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2"]);
        let mut queries: Vec<QueryId> = sent.iter().map(|t| t.query).collect();
        queries.dedup();
        assert_eq!(queries.len(), 8, "every try is a query of its own");
        assert_eq!(ended, 8, "and every one of them ends");
        assert_eq!((r.in_progress(), r.queries_in_flight()), (0, 0));
    }

    #[test]
    fn no_such_host_and_a_silent_second_family() {
        let mut r = Resolver::new(config());
        let now = Instant::now();
        let id = pending(&mut r, now, "gone.example");
        let (a, aaaa) = both(&mut r);
        let mut nx = reply(&a.datagram, &[]);
        nx[3] |= 3;
        r.handle_datagram(now, a.query, a.server, &nx);
        let mut nx6 = reply(&aaaa.datagram, &[]);
        nx6[3] |= 3;
        r.handle_datagram(now, aaaa.query, aaaa.server, &nx6);
        assert_eq!(
            r.poll_result(),
            Some((id, Err("gone.example: no such host".into())))
        );

        // The AAAA question is never answered: once A has addresses, the lookup ends
        // at the AAAA try's deadline, with no further tries.
        let id = pending(&mut r, now, "v4only.example");
        let (a, _) = both(&mut r);
        r.handle_datagram(now, a.query, a.server, &reply(&a.datagram, &["1.2.3.4"]));
        assert!(r.poll_result().is_none());
        r.handle_timeout(now + Duration::from_secs(1));
        assert!(r.poll_transmit().is_none(), "no retry for the silent family");
        assert_eq!(r.poll_result(), Some((id, Ok(vec!["1.2.3.4".parse().unwrap()]))));
    }
}
