//! Runs tracker announces on the reactor.
//!
//! HTTP announces use one TCP handle each; UDP announces share one socket per
//! address family and are told apart by transaction id; host names go through the
//! sans-IO [`Resolver`] on UDP handles of their own. The client keeps a single timer
//! armed for the earliest deadline of anything it waits on.
//!
//! A request's life: `announce` or `scrape` → (resolving) → HTTP or UDP exchange → one result in
//! `poll_result`, owned by value. The request is removed from the table in exactly
//! one place, `TrackerClient::finish`, which also closes its handle.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use log::{debug, trace};
use slab::Slab;

use super::{Owner, SessionKey, TrackerHandle};
use crate::dns::{LookupId, Resolver, ResolverConfig, Start};
use crate::metainfo::InfoHash;
use crate::reactor::{Event, HandleId, Reactor};
use crate::tracker::http::{
    announce_request, parse_announce, parse_scrape, scrape_request, scrape_url, ResponseReader, MAX_REDIRECTS,
};
use crate::tracker::udp::{
    Outcome, Progress, Purpose, UdpTransaction, CONNECTION_ID_LIFETIME, DEFAULT_RETRY_BASE,
};
use crate::tracker::url::{Scheme, TrackerUrl};
use crate::tracker::{AnnounceRequest, AnnounceResponse, ScrapeStats, TrackerError};

/// Timeouts and name servers of the tracker client.
#[derive(Clone, Debug)]
pub struct TrackerConfig {
    /// Deadline for a whole HTTP announce: name lookup, connect, redirects, response.
    pub http_timeout: Duration,
    /// BEP 15 retransmission base (15 s in the wild; tests use milliseconds).
    pub udp_retry_base: Duration,
    pub resolver: ResolverConfig,
}

impl Default for TrackerConfig {
    fn default() -> TrackerConfig {
        TrackerConfig {
            http_timeout: Duration::from_secs(20),
            udp_retry_base: DEFAULT_RETRY_BASE,
            resolver: ResolverConfig::system(),
        }
    }
}

/// One announce in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId {
    key: usize,
    serial: u64,
}

/// The result of one scrape: figures per requested hash, in order.
pub type ScrapeResult = Result<Vec<ScrapeStats>, TrackerError>;

/// The result of one announce.
pub type AnnounceResult = Result<AnnounceResponse, TrackerError>;

enum Phase {
    /// Inserted, `begin` not yet run (never seen outside `announce`).
    Starting,
    Resolving(LookupId),
    Http {
        stream: HandleId,
        reader: ResponseReader,
    },
    Udp {
        tracker: SocketAddr,
        transaction: UdpTransaction,
    },
}

struct Request {
    serial: u64,
    url: TrackerUrl,
    /// What is asked: an announce, or a scrape.
    purpose: Purpose,
    /// HTTP only: the whole exchange must end by then.
    deadline: Option<Instant>,
    redirects: usize,
    phase: Phase,
}

/// Counts that tests and the shutdown report read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackerStats {
    pub in_flight: usize,
    pub cached_connection_ids: usize,
    pub lookups: usize,
    pub queued_results: usize,
    /// Datagrams that matched no transaction.
    pub stray_datagrams: u64,
}

/// Announces to HTTP and UDP trackers on the reactor.
pub struct TrackerClient {
    /// The session whose handles these are (every owner tag carries it).
    session: SessionKey,
    config: TrackerConfig,
    requests: Slab<Request>,
    next_serial: u64,
    resolver: Resolver,
    /// UDP sockets for tracker traffic: [IPv4, IPv6], opened on first use.
    udp: [Option<HandleId>; 2],
    /// Sockets for name server queries: [IPv4, IPv6].
    dns: [Option<HandleId>; 2],
    timer: Option<HandleId>,
    /// BEP 15 connection ids by tracker address; entries older than their lifetime
    /// are dropped whenever one is added, so the map cannot only grow.
    connection_ids: HashMap<SocketAddr, (u64, Instant)>,
    results: VecDeque<(RequestId, AnnounceResult)>,
    scrapes: VecDeque<(RequestId, ScrapeResult)>,
    datagram: Vec<u8>,
    stray_datagrams: u64,
}

/// The wildcard address of one family, port 0: where our UDP sockets bind.
fn unspecified(ipv6: bool) -> SocketAddr {
    if ipv6 {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    }
}

fn family(ip: IpAddr) -> usize {
    usize::from(ip.is_ipv6())
}

impl TrackerClient {
    /// A client for the session `session` (its key goes into every owner tag).
    pub fn new(config: TrackerConfig, session: SessionKey) -> TrackerClient {
        let resolver = Resolver::new(config.resolver.clone());
        TrackerClient {
            session,
            config,
            requests: Slab::new(),
            next_serial: 0,
            resolver,
            udp: [None; 2],
            dns: [None; 2],
            timer: None,
            connection_ids: HashMap::new(),
            results: VecDeque::new(),
            scrapes: VecDeque::new(),
            datagram: Vec::new(),
            stray_datagrams: 0,
        }
    }

    fn tag(&self, handle: TrackerHandle) -> Owner {
        Owner::Tracker(self.session, handle)
    }

    pub fn stats(&self) -> TrackerStats {
        TrackerStats {
            in_flight: self.requests.len(),
            cached_connection_ids: self.connection_ids.len(),
            lookups: self.resolver.in_progress(),
            queued_results: self.results.len() + self.scrapes.len(),
            stray_datagrams: self.stray_datagrams,
        }
    }

    /// Starts an announce to `url`. The result arrives through `poll_result`.
    pub fn announce(&mut self, rx: &mut Reactor<Owner>, url: &str, announce: AnnounceRequest) -> RequestId {
        self.start(rx, url, Purpose::Announce(announce))
    }

    /// Starts a scrape of `hashes` at the tracker behind the announce URL `url` (BEP 48
    /// for HTTP, BEP 15 for UDP). The result arrives through `poll_scrape`.
    pub fn scrape(&mut self, rx: &mut Reactor<Owner>, url: &str, hashes: Vec<InfoHash>) -> RequestId {
        self.start(rx, url, Purpose::Scrape(hashes))
    }

    fn start(&mut self, rx: &mut Reactor<Owner>, url: &str, purpose: Purpose) -> RequestId {
        self.next_serial += 1;
        let serial = self.next_serial;
        let parsed = TrackerUrl::parse(url);
        let now = rx.now();
        let entry = self.requests.vacant_entry();
        let id = RequestId {
            key: entry.key(),
            serial,
        };
        let url = match parsed {
            Ok(tracker) if tracker.scheme == Scheme::Https => {
                let why = "HTTPS trackers are not supported yet".to_string();
                self.queue(id, &purpose, Err(TrackerError::BadUrl(why)));
                return id;
            }
            Ok(tracker) if tracker.scheme == Scheme::Http && matches!(purpose, Purpose::Scrape(_)) => {
                match scrape_url(&tracker) {
                    Some(scrape) => scrape,
                    None => {
                        let why =
                            "this tracker offers no scrape (its URL does not end in /announce)".to_string();
                        self.queue(id, &purpose, Err(TrackerError::BadUrl(why)));
                        return id;
                    }
                }
            }
            Ok(url) => url,
            Err(error) => {
                self.queue(id, &purpose, Err(error));
                return id;
            }
        };
        let deadline = (url.scheme == Scheme::Http).then(|| now + self.config.http_timeout);
        entry.insert(Request {
            serial,
            url,
            purpose,
            deadline,
            redirects: 0,
            phase: Phase::Starting,
        });
        self.begin(rx, id.key);
        self.flush(rx);
        id
    }

    /// A finished announce.
    pub fn poll_result(&mut self) -> Option<(RequestId, AnnounceResult)> {
        self.results.pop_front()
    }

    /// A finished scrape: figures for each requested hash, in order.
    pub fn poll_scrape(&mut self) -> Option<(RequestId, ScrapeResult)> {
        self.scrapes.pop_front()
    }

    /// Queues a result where its kind of request expects it.
    fn queue(&mut self, id: RequestId, purpose: &Purpose, result: Result<Outcome, TrackerError>) {
        match (purpose, result) {
            (Purpose::Announce(_), Ok(Outcome::Announced(response))) => {
                self.results.push_back((id, Ok(response)))
            }
            (Purpose::Scrape(_), Ok(Outcome::Scraped(stats))) => self.scrapes.push_back((id, Ok(stats))),
            (Purpose::Announce(_), Ok(Outcome::Scraped(_))) => self.results.push_back((
                id,
                Err(TrackerError::Malformed("scrape reply to an announce".into())),
            )),
            (Purpose::Scrape(_), Ok(Outcome::Announced(_))) => self.scrapes.push_back((
                id,
                Err(TrackerError::Malformed("announce reply to a scrape".into())),
            )),
            (Purpose::Announce(_), Err(error)) => self.results.push_back((id, Err(error))),
            (Purpose::Scrape(_), Err(error)) => self.scrapes.push_back((id, Err(error))),
        }
    }

    /// Resolves the request's host, then starts its exchange.
    fn begin(&mut self, rx: &mut Reactor<Owner>, key: usize) {
        let now = rx.now();
        let host = self.requests[key].url.host.clone();
        match self.resolver.resolve(now, &host) {
            Ok(Start::Ready(ips)) => self.connect(rx, key, &ips),
            Ok(Start::Pending(lookup)) => self.requests[key].phase = Phase::Resolving(lookup),
            Err(why) => self.finish(rx, key, Err(TrackerError::Resolve(why))),
        }
    }

    /// Starts the HTTP or UDP exchange with the first usable address.
    fn connect(&mut self, rx: &mut Reactor<Owner>, key: usize, ips: &[IpAddr]) {
        let Some(&ip) = ips.iter().find(|ip| ip.is_ipv4()).or(ips.first()) else {
            return self.finish(rx, key, Err(TrackerError::Resolve("no address".into())));
        };
        let now = rx.now();
        let request = &self.requests[key];
        let addr = SocketAddr::new(ip, request.url.port);
        match request.url.scheme {
            Scheme::Http => {
                let timeout = request.deadline.map(|d| d.saturating_duration_since(now));
                let bytes = match &request.purpose {
                    Purpose::Announce(announce) => announce_request(&request.url, announce),
                    Purpose::Scrape(hashes) => scrape_request(&request.url, hashes),
                };
                let stream = match rx.tcp_connect(addr, self.tag(TrackerHandle::Http(key)), timeout) {
                    Ok(stream) => stream,
                    Err(e) => return self.finish(rx, key, Err(TrackerError::Io(e.to_string()))),
                };
                trace!("announce {key}: GET {} via {stream}", request.url.host);
                self.requests[key].phase = Phase::Http {
                    stream,
                    reader: ResponseReader::new(),
                };
                if let Err(e) = rx.tcp_write(stream, &bytes) {
                    self.finish(rx, key, Err(TrackerError::Io(e.to_string())));
                }
            }
            Scheme::Udp => {
                let purpose = request.purpose.clone();
                if let Err(e) = self.udp_socket(rx, ip) {
                    return self.finish(rx, key, Err(TrackerError::Io(e)));
                }
                let cached = self.connection_ids.get(&addr).copied();
                let transaction =
                    UdpTransaction::new(now, purpose, ip.is_ipv6(), self.config.udp_retry_base, cached);
                self.requests[key].phase = Phase::Udp {
                    tracker: addr,
                    transaction,
                };
            }
            Scheme::Https => unreachable!("refused in announce"),
        }
    }

    fn udp_socket(&mut self, rx: &mut Reactor<Owner>, ip: IpAddr) -> Result<HandleId, String> {
        if let Some(id) = self.udp[family(ip)] {
            return Ok(id);
        }
        let any = unspecified(ip.is_ipv6());
        let id = rx
            .udp_bind(any, self.tag(TrackerHandle::Udp))
            .map_err(|e| e.to_string())?;
        self.udp[family(ip)] = Some(id);
        Ok(id)
    }

    /// Ends a request: its one exit. Closes its handle and queues its result.
    fn finish(&mut self, rx: &mut Reactor<Owner>, key: usize, result: Result<Outcome, TrackerError>) {
        let Some(request) = self.requests.try_remove(key) else {
            return;
        };
        match request.phase {
            Phase::Http { stream, .. } => rx.close(stream),
            Phase::Resolving(lookup) => self.resolver.cancel(lookup),
            Phase::Starting | Phase::Udp { .. } => {}
        }
        if let Err(error) = &result {
            debug!(
                "announce to {}:{} failed: {error}",
                request.url.host, request.url.port
            );
        }
        let id = RequestId {
            key,
            serial: request.serial,
        };
        self.queue(id, &request.purpose, result);
    }

    /// Routes a reactor event for one of our handles.
    pub fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        match owner {
            Owner::Tracker(_, TrackerHandle::Http(key)) => self.on_http_event(rx, id, key, event),
            Owner::Tracker(_, TrackerHandle::Udp) => self.on_udp_event(rx, id, event),
            Owner::Tracker(_, TrackerHandle::Dns) => self.on_dns_event(rx, id, event),
            Owner::Tracker(_, TrackerHandle::Timer) => {
                if let Event::Closed(_) = event {
                    if self.timer == Some(id) {
                        self.timer = None;
                    }
                } else {
                    self.on_timer(rx);
                }
            }
            _ => {}
        }
        self.flush(rx);
    }

    fn http_request(&mut self, key: usize, id: HandleId) -> Option<&mut Request> {
        self.requests
            .get_mut(key)
            .filter(|r| matches!(r.phase, Phase::Http { stream, .. } if stream == id))
    }

    fn on_http_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, key: usize, event: Event) {
        if self.http_request(key, id).is_none() {
            return; // an event for a stream we already let go of
        }
        let done = match event {
            Event::Readable => {
                let bytes = rx.tcp_received(id).map(<[u8]>::to_vec).unwrap_or_default();
                let _ = rx.tcp_consume(id, bytes.len());
                let request = self.http_request(key, id).expect("checked");
                let Phase::Http { reader, .. } = &mut request.phase else {
                    unreachable!()
                };
                match reader.push(&bytes) {
                    Ok(Some(response)) => Some(Ok(response)),
                    Ok(None) => None,
                    Err(e) => Some(Err(e)),
                }
            }
            Event::Eof => {
                let request = self.http_request(key, id).expect("checked");
                let Phase::Http { reader, .. } = &mut request.phase else {
                    unreachable!()
                };
                Some(reader.finish())
            }
            Event::ConnectFailed(e) | Event::Error(e) => Some(Err(TrackerError::Io(e.to_string()))),
            Event::Closed(_) => Some(Err(TrackerError::Cancelled)),
            _ => None,
        };
        match done {
            None => {}
            Some(Err(error)) => self.finish(rx, key, Err(error)),
            Some(Ok(response)) => {
                let request = &mut self.requests[key];
                if (300..400).contains(&response.status) && response.location.is_some() {
                    let next = request
                        .url
                        .redirect(response.location.as_deref().unwrap_or_default());
                    if request.redirects == MAX_REDIRECTS {
                        return self.finish(rx, key, Err(TrackerError::TooManyRedirects));
                    }
                    match next {
                        Ok(url) if url.scheme == Scheme::Http => {
                            debug!("announce redirected to {}:{}{}", url.host, url.port, url.target);
                            request.redirects += 1;
                            request.url = url;
                            rx.close(id);
                            self.begin(rx, key);
                        }
                        Ok(_) => self.finish(
                            rx,
                            key,
                            Err(TrackerError::BadUrl("redirect to a non-HTTP tracker".into())),
                        ),
                        Err(e) => self.finish(rx, key, Err(e)),
                    }
                } else if response.status != 200 {
                    self.finish(rx, key, Err(TrackerError::Status(response.status)));
                } else {
                    // The one parse of the body: its peer list goes out with the result.
                    let result = match &self.requests[key].purpose {
                        Purpose::Announce(_) => parse_announce(&response.body).map(Outcome::Announced),
                        Purpose::Scrape(hashes) => parse_scrape(&response.body, hashes).map(Outcome::Scraped),
                    };
                    self.finish(rx, key, result);
                }
            }
        }
    }

    fn on_udp_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, event: Event) {
        match event {
            Event::Readable => {
                self.datagram.resize(crate::tracker::udp::MAX_DATAGRAM, 0);
                while let Ok(Some((n, from))) = rx.udp_recv_from(id, &mut self.datagram) {
                    let now = rx.now();
                    let data = std::mem::take(&mut self.datagram);
                    self.on_tracker_datagram(rx, now, from, &data[..n]);
                    self.datagram = data;
                }
            }
            Event::Closed(_) => {
                for slot in &mut self.udp {
                    if *slot == Some(id) {
                        *slot = None;
                    }
                }
            }
            _ => {}
        }
    }

    fn on_tracker_datagram(&mut self, rx: &mut Reactor<Owner>, now: Instant, from: SocketAddr, data: &[u8]) {
        let tid = data
            .get(4..8)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let key = self.requests.iter().find_map(|(key, r)| match &r.phase {
            Phase::Udp { tracker, transaction }
                if *tracker == from && Some(transaction.transaction_id()) == tid =>
            {
                Some(key)
            }
            _ => None,
        });
        let Some(key) = key else {
            self.stray_datagrams += 1;
            return;
        };
        let Phase::Udp { transaction, .. } = &mut self.requests[key].phase else {
            unreachable!()
        };
        match transaction.handle_datagram(now, data) {
            Progress::Ignored => self.stray_datagrams += 1,
            Progress::Connected { connection_id } => {
                self.connection_ids
                    .retain(|_, (_, at)| now.saturating_duration_since(*at) < CONNECTION_ID_LIFETIME);
                self.connection_ids.insert(from, (connection_id, now));
            }
            Progress::Done(outcome) => self.finish(rx, key, Ok(outcome)),
            Progress::Failed(error) => self.finish(rx, key, Err(error)),
        }
    }

    fn on_dns_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, event: Event) {
        match event {
            Event::Readable => {
                let mut buf = [0u8; 1500];
                while let Ok(Some((n, from))) = rx.udp_recv_from(id, &mut buf) {
                    self.resolver.handle_datagram(rx.now(), from, &buf[..n]);
                }
                self.take_lookups(rx);
            }
            Event::Closed(_) => {
                for slot in &mut self.dns {
                    if *slot == Some(id) {
                        *slot = None;
                    }
                }
            }
            _ => {}
        }
    }

    /// Continues requests whose names resolved.
    fn take_lookups(&mut self, rx: &mut Reactor<Owner>) {
        while let Some((lookup, result)) = self.resolver.poll_result() {
            let key = self
                .requests
                .iter()
                .find_map(|(key, r)| matches!(r.phase, Phase::Resolving(l) if l == lookup).then_some(key));
            let Some(key) = key else { continue };
            match result {
                Ok(ips) => self.connect(rx, key, &ips),
                Err(why) => self.finish(rx, key, Err(TrackerError::Resolve(why))),
            }
        }
    }

    fn on_timer(&mut self, rx: &mut Reactor<Owner>) {
        let now = rx.now();
        self.resolver.handle_timeout(now);
        self.take_lookups(rx);
        let mut failed = Vec::new();
        for (key, request) in self.requests.iter_mut() {
            if request.deadline.is_some_and(|d| d <= now) {
                failed.push((key, TrackerError::Timeout));
            } else if let Phase::Udp { transaction, .. } = &mut request.phase {
                if let Some(error) = transaction.handle_timeout(now) {
                    failed.push((key, error));
                }
            }
        }
        for (key, error) in failed {
            self.finish(rx, key, Err(error));
        }
    }

    /// Sends what the state machines want sent and re-arms the one timer.
    fn flush(&mut self, rx: &mut Reactor<Owner>) {
        if rx.is_shutting_down() {
            return;
        }
        while let Some((server, query)) = self.resolver.poll_transmit() {
            let slot = family(server.ip());
            if self.dns[slot].is_none() {
                let any = unspecified(server.is_ipv6());
                self.dns[slot] = rx
                    .udp_bind(any, Owner::Tracker(self.session, TrackerHandle::Dns))
                    .ok();
            }
            if let Some(socket) = self.dns[slot] {
                let _ = rx.udp_send_to(socket, &query, server);
            }
        }
        let mut failed = Vec::new();
        for (key, request) in self.requests.iter_mut() {
            if let Phase::Udp { tracker, transaction } = &mut request.phase {
                if let Some(datagram) = transaction.poll_transmit() {
                    // The socket is opened in `connect`; if it has been closed since,
                    // the request fails rather than the process.
                    let sent = match self.udp[family(tracker.ip())] {
                        Some(socket) => rx
                            .udp_send_to(socket, &datagram, *tracker)
                            .map_err(|e| e.to_string()),
                        None => Err("the tracker socket is closed".to_string()),
                    };
                    if let Err(why) = sent {
                        failed.push((key, TrackerError::Io(why)));
                    }
                }
            }
        }
        for (key, error) in failed {
            self.finish(rx, key, Err(error));
        }
        self.rearm(rx);
    }

    /// Arms the one timer for the earliest deadline, or stops it.
    fn rearm(&mut self, rx: &mut Reactor<Owner>) {
        let earliest = self
            .requests
            .iter()
            .filter_map(|(_, r)| match &r.phase {
                Phase::Udp { transaction, .. } => Some(transaction.poll_timeout()),
                _ => r.deadline,
            })
            .chain(self.resolver.poll_timeout())
            .min();
        match (earliest, self.timer) {
            (Some(deadline), timer) => {
                let timer = match timer {
                    Some(timer) => timer,
                    None => match rx.timer(self.tag(TrackerHandle::Timer)) {
                        Ok(timer) => *self.timer.insert(timer),
                        Err(_) => return,
                    },
                };
                let _ = rx.timer_start(timer, deadline.saturating_duration_since(rx.now()), None);
            }
            (None, Some(timer)) => {
                let _ = rx.timer_stop(timer);
            }
            (None, None) => {}
        }
    }

    /// Shutdown: cancels every request (results say `Cancelled`) and closes every
    /// handle the client holds. Afterwards it holds no handle and no lookup.
    pub fn close(&mut self, rx: &mut Reactor<Owner>) {
        let keys: Vec<usize> = self.requests.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.finish(rx, key, Err(TrackerError::Cancelled));
        }
        for id in self
            .udp
            .iter_mut()
            .chain(self.dns.iter_mut())
            .chain(std::iter::once(&mut self.timer))
        {
            if let Some(id) = id.take() {
                rx.close(id);
            }
        }
        self.connection_ids.clear();
        debug_assert!(self.requests.is_empty() && self.resolver.in_progress() == 0);
    }

    /// True when nothing is in flight.
    pub fn is_idle(&self) -> bool {
        self.requests.is_empty()
    }
}
