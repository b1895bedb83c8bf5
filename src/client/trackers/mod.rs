//! Runs tracker announces, scrapes and URL fetches on the reactor.
//!
//! - `http`: HTTP and HTTPS exchanges, one TCP handle each, redirects;
//! - `tls` (feature `https`): rustls on the reactor's stream bytes, no thread;
//! - `udp`: BEP 15 transactions on one shared socket per address family;
//! - `dns`: the sans-IO [`Resolver`] on a fresh UDP socket per query;
//! - `fetch`: a torrent by URL, and a blocking helper for the command line.
//!
//! A request's life: `announce`, `scrape` or `fetch` → resolve → one *leg* per
//! address family for an announce (IPv4 and IPv6, as libtorrent announces once per
//! family), one leg otherwise → one result, owned by value, from `poll_result`,
//! `poll_scrape` or `poll_fetch`. A request leaves the table in exactly one place,
//! `TrackerClient::finish`, which also closes its handles. The client keeps a
//! single timer armed for the earliest deadline of anything it waits on.

mod dns;
pub mod fetch;
mod http;
mod merge;
#[cfg(feature = "https")]
mod tls;
mod udp;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::debug;
use slab::Slab;

use super::{Owner, SessionKey, TrackerHandle};
use crate::dns::{LookupId, Resolver, ResolverConfig, Start};
use crate::metainfo::InfoHash;
use crate::reactor::{Event, HandleId, Reactor};
use crate::tracker::http::scrape_url;
use crate::tracker::udp::{Outcome, Purpose, UdpTransaction, DEFAULT_RETRY_BASE};
use crate::tracker::url::{Scheme, TrackerUrl};
use crate::tracker::{AnnounceRequest, AnnounceResponse, ScrapeStats, TrackerError};

pub use fetch::fetch_url;
use merge::merge;

/// Once one family's announce has answered, how long the other may still take: a
/// host whose IPv6 route is broken (connects that hang) gets its peers this soon,
/// not at the request's full deadline.
pub const OTHER_FAMILY_GRACE: Duration = Duration::from_secs(3);

/// Addresses of one family tried for one request (the next after a failed connect).
const MAX_ADDRESSES_PER_FAMILY: usize = 4;

/// Timeouts, name servers and trusted certificates of the tracker client.
#[derive(Clone, Debug)]
pub struct TrackerConfig {
    /// Deadline for a whole HTTP(S) exchange: name lookup, connect, TLS, redirects,
    /// response.
    pub http_timeout: Duration,
    /// BEP 15 retransmission base (15 s in the wild; tests use milliseconds).
    pub udp_retry_base: Duration,
    pub resolver: ResolverConfig,
    /// A PEM bundle of trusted root certificates for HTTPS. `None`: the system's
    /// roots, or the bundle `SSL_CERT_FILE` names, as OpenSSL and curl do.
    pub ca_file: Option<PathBuf>,
}

impl Default for TrackerConfig {
    fn default() -> TrackerConfig {
        TrackerConfig {
            http_timeout: Duration::from_secs(20),
            udp_retry_base: DEFAULT_RETRY_BASE,
            resolver: ResolverConfig::system(),
            ca_file: None,
        }
    }
}

/// One announce, scrape or fetch in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId {
    key: usize,
    serial: u64,
}

/// The result of one scrape: figures per requested hash, in order.
pub type ScrapeResult = Result<Vec<ScrapeStats>, TrackerError>;

/// The result of one announce.
pub type AnnounceResult = Result<AnnounceResponse, TrackerError>;

/// The result of one fetch: the document's bytes.
pub type FetchResult = Result<Vec<u8>, TrackerError>;

/// What a request asks for.
#[derive(Clone, Debug)]
enum Job {
    Tracker(Purpose),
    /// A torrent file by URL, at most this many bytes.
    Fetch(usize),
}

/// What one leg brought back.
enum Done {
    Tracker(Outcome),
    Fetched(Vec<u8>),
}

enum Phase {
    /// Between phases: made and not yet resolving, or resolved (or redirected) and
    /// not yet connected. Only ever seen inside one call; a leg never waits in it.
    Starting,
    Resolving(LookupId),
    Http(http::HttpLeg),
    Udp {
        tracker: SocketAddr,
        transaction: UdpTransaction,
    },
    /// This leg is over; the request waits for its other leg.
    Finished(Result<Done, TrackerError>),
}

/// One exchange with the tracker over one address family.
struct Leg {
    url: TrackerUrl,
    redirects: usize,
    /// After the split by family: `Some(is_ipv6)`, and a redirect keeps to it.
    family: Option<bool>,
    /// Further addresses to try if connecting to the current one fails.
    spare: Vec<IpAddr>,
    phase: Phase,
}

struct Request {
    serial: u64,
    job: Job,
    /// HTTP only: the whole exchange must end by then.
    deadline: Option<Instant>,
    legs: Vec<Leg>,
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
    /// Open name-server sockets (one per query on the wire).
    pub dns_sockets: usize,
    /// Name-server answers dropped: wrong server, id or question, or late.
    pub dropped_dns_answers: u64,
}

/// Announces to HTTP, HTTPS and UDP trackers, and fetches torrents by URL, on the
/// reactor.
pub struct TrackerClient {
    /// The session whose handles these are (every owner tag carries it).
    session: SessionKey,
    config: TrackerConfig,
    requests: Slab<Request>,
    next_serial: u64,
    resolver: Resolver,
    /// UDP sockets for tracker traffic: [IPv4, IPv6], opened on first use.
    udp: [Option<HandleId>; 2],
    /// One socket per DNS query on the wire, by query slot.
    dns: HashMap<usize, (crate::dns::QueryId, HandleId)>,
    timer: Option<HandleId>,
    /// BEP 15 connection ids by tracker address; entries older than their lifetime
    /// are dropped whenever one is added, so the map cannot only grow.
    connection_ids: HashMap<SocketAddr, (u64, Instant)>,
    #[cfg(feature = "https")]
    tls: tls::Roots,
    results: VecDeque<(RequestId, AnnounceResult)>,
    scrapes: VecDeque<(RequestId, ScrapeResult)>,
    fetches: VecDeque<(RequestId, FetchResult)>,
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
            #[cfg(feature = "https")]
            tls: tls::Roots::new(config.ca_file.clone()),
            config,
            requests: Slab::new(),
            next_serial: 0,
            resolver,
            udp: [None; 2],
            dns: HashMap::new(),
            timer: None,
            connection_ids: HashMap::new(),
            results: VecDeque::new(),
            scrapes: VecDeque::new(),
            fetches: VecDeque::new(),
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
            queued_results: self.results.len() + self.scrapes.len() + self.fetches.len(),
            stray_datagrams: self.stray_datagrams,
            dns_sockets: self.dns.len(),
            dropped_dns_answers: self.resolver.dropped_answers(),
        }
    }

    /// Starts an announce to `url`. The result arrives through `poll_result`.
    pub fn announce(&mut self, rx: &mut Reactor<Owner>, url: &str, announce: AnnounceRequest) -> RequestId {
        self.start(rx, url, Job::Tracker(Purpose::Announce(announce)))
    }

    /// Starts a scrape of `hashes` at the tracker behind the announce URL `url` (BEP 48
    /// for HTTP, BEP 15 for UDP). The result arrives through `poll_scrape`.
    pub fn scrape(&mut self, rx: &mut Reactor<Owner>, url: &str, hashes: Vec<InfoHash>) -> RequestId {
        self.start(rx, url, Job::Tracker(Purpose::Scrape(hashes)))
    }

    /// Starts fetching a torrent file from an `http://` or `https://` URL, at most
    /// `max_bytes` of it, with the trackers' redirects, limits and TLS. The result
    /// arrives through `poll_fetch`: the bytes, or an error for a status other than
    /// 200, an HTML page, a body that is not a bencoded dictionary, or one too large.
    pub fn fetch(&mut self, rx: &mut Reactor<Owner>, url: &str, max_bytes: usize) -> RequestId {
        self.start(rx, url, Job::Fetch(max_bytes))
    }

    fn start(&mut self, rx: &mut Reactor<Owner>, url: &str, job: Job) -> RequestId {
        self.next_serial += 1;
        let serial = self.next_serial;
        let now = rx.now();
        let id = RequestId {
            key: self.requests.vacant_key(),
            serial,
        };
        let url = match checked_url(url, &job) {
            Ok(url) => url,
            Err(error) => {
                self.queue(id, &job, Err(error));
                return id;
            }
        };
        let deadline = (url.scheme != Scheme::Udp).then(|| now + self.config.http_timeout);
        let key = self.requests.insert(Request {
            serial,
            job,
            deadline,
            legs: vec![Leg {
                url,
                redirects: 0,
                family: None,
                spare: Vec::new(),
                phase: Phase::Starting,
            }],
        });
        debug_assert_eq!(key, id.key);
        self.resolve(rx, key, 0);
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

    /// A finished fetch.
    pub fn poll_fetch(&mut self) -> Option<(RequestId, FetchResult)> {
        self.fetches.pop_front()
    }

    /// Queues a result where its kind of request expects it.
    fn queue(&mut self, id: RequestId, job: &Job, result: Result<Done, TrackerError>) {
        let wrong = |what: &str| TrackerError::Malformed(what.to_string());
        match (job, result) {
            (Job::Tracker(Purpose::Announce(_)), Ok(Done::Tracker(Outcome::Announced(r)))) => {
                self.results.push_back((id, Ok(r)))
            }
            (Job::Tracker(Purpose::Scrape(_)), Ok(Done::Tracker(Outcome::Scraped(s)))) => {
                self.scrapes.push_back((id, Ok(s)))
            }
            (Job::Fetch(_), Ok(Done::Fetched(bytes))) => self.fetches.push_back((id, Ok(bytes))),
            (Job::Tracker(Purpose::Announce(_)), Ok(_)) => self
                .results
                .push_back((id, Err(wrong("scrape reply to an announce")))),
            (Job::Tracker(Purpose::Scrape(_)), Ok(_)) => self
                .scrapes
                .push_back((id, Err(wrong("announce reply to a scrape")))),
            (Job::Fetch(_), Ok(_)) => self.fetches.push_back((id, Err(wrong("not a document")))),
            (Job::Tracker(Purpose::Announce(_)), Err(e)) => self.results.push_back((id, Err(e))),
            (Job::Tracker(Purpose::Scrape(_)), Err(e)) => self.scrapes.push_back((id, Err(e))),
            (Job::Fetch(_), Err(e)) => self.fetches.push_back((id, Err(e))),
        }
    }

    /// Resolves the leg's host, then starts its exchange.
    fn resolve(&mut self, rx: &mut Reactor<Owner>, key: usize, leg: usize) {
        let host = self.requests[key].legs[leg].url.host.clone();
        match self.resolver.resolve(rx.now(), &host) {
            Ok(Start::Ready(ips)) => self.resolved(rx, key, leg, ips),
            Ok(Start::Pending(lookup)) => self.requests[key].legs[leg].phase = Phase::Resolving(lookup),
            Err(why) => self.end_leg(rx, key, leg, Err(TrackerError::Resolve(why))),
        }
    }

    /// The leg's host resolved. An announce whose first leg finds both families
    /// splits in two: one announce over IPv4 and one over IPv6.
    fn resolved(&mut self, rx: &mut Reactor<Owner>, key: usize, leg: usize, mut ips: Vec<IpAddr>) {
        let request = &mut self.requests[key];
        let is_announce = matches!(request.job, Job::Tracker(Purpose::Announce(_)));
        if let Some(ipv6) = request.legs[leg].family {
            ips.retain(|ip| ip.is_ipv6() == ipv6);
        }
        ips.sort_by_key(|ip| ip.is_ipv6()); // IPv4 first, otherwise in the server's order
        let v4_count = ips.iter().filter(|ip| ip.is_ipv4()).count();
        let mut v6 = ips.split_off(v4_count);
        // At most a few addresses of each family are tried, so a long list cannot keep
        // a request connecting for long (the deadline bounds it anyway).
        ips.truncate(MAX_ADDRESSES_PER_FAMILY);
        v6.truncate(MAX_ADDRESSES_PER_FAMILY);
        let both = !ips.is_empty() && !v6.is_empty();
        if is_announce && request.legs[leg].family.is_none() && both {
            let first = &mut request.legs[leg];
            first.family = Some(false);
            let second = Leg {
                url: first.url.clone(),
                redirects: first.redirects,
                family: Some(true),
                spare: Vec::new(),
                phase: Phase::Starting,
            };
            request.legs.push(second);
            let second = request.legs.len() - 1;
            // A leg that fails at once cannot end the request: the other is not
            // finished yet.
            self.connect(rx, key, leg, ips);
            self.connect(rx, key, second, v6);
            return;
        }
        ips.append(&mut v6);
        self.connect(rx, key, leg, ips);
    }

    /// Starts the leg's HTTP or UDP exchange with the first of `ips`; the rest are
    /// spares for a failed connect.
    fn connect(&mut self, rx: &mut Reactor<Owner>, key: usize, leg: usize, mut ips: Vec<IpAddr>) {
        if ips.is_empty() {
            let why = format!("{}: no usable address", self.requests[key].legs[leg].url.host);
            return self.end_leg(rx, key, leg, Err(TrackerError::Resolve(why)));
        }
        let ip = ips.remove(0);
        self.requests[key].legs[leg].spare = ips;
        let scheme = self.requests[key].legs[leg].url.scheme;
        match scheme {
            Scheme::Http | Scheme::Https => self.connect_http(rx, key, leg, ip),
            Scheme::Udp => self.connect_udp(rx, key, leg, ip),
        }
    }

    /// Ends one leg. When no leg of the request is still running, the request ends.
    fn end_leg(
        &mut self,
        rx: &mut Reactor<Owner>,
        key: usize,
        leg: usize,
        result: Result<Done, TrackerError>,
    ) {
        let Some(request) = self.requests.get_mut(key) else {
            return;
        };
        if result.is_ok() {
            let grace = rx.now() + OTHER_FAMILY_GRACE;
            request.deadline = Some(request.deadline.map_or(grace, |d| d.min(grace)));
        }
        let old = std::mem::replace(&mut request.legs[leg].phase, Phase::Finished(result));
        self.release(rx, old);
        let request = &self.requests[key];
        if request.legs.iter().all(|l| matches!(l.phase, Phase::Finished(_))) {
            self.finish(rx, key);
        }
    }

    /// Lets go of what a leg's phase holds: its stream or its lookup.
    fn release(&mut self, rx: &mut Reactor<Owner>, phase: Phase) {
        match phase {
            Phase::Http(leg) => rx.close(leg.stream),
            Phase::Resolving(lookup) => self.resolver.cancel(lookup),
            Phase::Starting | Phase::Udp { .. } | Phase::Finished(_) => {}
        }
    }

    /// Ends a request: its one exit. Closes its handles, merges its legs' results
    /// and queues the result.
    fn finish(&mut self, rx: &mut Reactor<Owner>, key: usize) {
        let Some(request) = self.requests.try_remove(key) else {
            return;
        };
        let mut results = Vec::with_capacity(request.legs.len());
        for leg in request.legs {
            match leg.phase {
                Phase::Finished(result) => results.push(result),
                other => {
                    self.release(rx, other);
                    results.push(Err(TrackerError::Cancelled));
                }
            }
        }
        let result = merge(results);
        if let Err(error) = &result {
            debug!("tracker request {key} failed: {error}");
        }
        let id = RequestId {
            key,
            serial: request.serial,
        };
        self.queue(id, &request.job, result);
    }

    /// Routes a reactor event for one of our handles.
    pub fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        match owner {
            Owner::Tracker(_, TrackerHandle::Http(key)) => self.on_http_event(rx, id, key, event),
            Owner::Tracker(_, TrackerHandle::Udp) => self.on_udp_event(rx, id, event),
            Owner::Tracker(_, TrackerHandle::Dns(slot)) => self.on_dns_event(rx, id, slot, event),
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

    fn on_timer(&mut self, rx: &mut Reactor<Owner>) {
        let now = rx.now();
        self.resolver.handle_timeout(now);
        self.take_lookups(rx);
        let mut expired = Vec::new();
        for (key, request) in self.requests.iter_mut() {
            if request.deadline.is_some_and(|d| d <= now) {
                expired.push((key, None, TrackerError::Timeout));
                continue;
            }
            for (at, leg) in request.legs.iter_mut().enumerate() {
                if let Phase::Udp { transaction, .. } = &mut leg.phase {
                    if let Some(error) = transaction.handle_timeout(now) {
                        expired.push((key, Some(at), error));
                    }
                }
            }
        }
        for (key, leg, error) in expired {
            match leg {
                Some(leg) => self.end_leg(rx, key, leg, Err(error)),
                None => self.fail_request(rx, key, error),
            }
        }
    }

    /// Ends every running leg of a request with `error`.
    fn fail_request(&mut self, rx: &mut Reactor<Owner>, key: usize, error: TrackerError) {
        let legs = self.requests.get(key).map_or(0, |r| r.legs.len());
        for leg in 0..legs {
            let running = self
                .requests
                .get(key)
                .is_some_and(|r| !matches!(r.legs[leg].phase, Phase::Finished(_)));
            if running {
                self.end_leg(rx, key, leg, Err(error.clone()));
            }
        }
    }

    /// Sends what the state machines want sent and re-arms the one timer.
    fn flush(&mut self, rx: &mut Reactor<Owner>) {
        if rx.is_shutting_down() {
            return;
        }
        self.flush_dns(rx);
        self.flush_udp(rx);
        self.rearm(rx);
    }

    /// Arms the one timer for the earliest deadline, or stops it.
    fn rearm(&mut self, rx: &mut Reactor<Owner>) {
        let legs = self.requests.iter().flat_map(|(_, r)| {
            r.legs.iter().filter_map(|leg| match &leg.phase {
                Phase::Udp { transaction, .. } => Some(transaction.poll_timeout()),
                _ => None,
            })
        });
        let earliest = self
            .requests
            .iter()
            .filter_map(|(_, r)| r.deadline)
            .chain(legs)
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
            self.finish(rx, key);
        }
        self.close_dns(rx);
        for id in self.udp.iter_mut().chain(std::iter::once(&mut self.timer)) {
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

/// Parses and checks a request's URL: fetches take HTTP(S) only; a scrape goes to
/// the announce URL's scrape twin.
fn checked_url(url: &str, job: &Job) -> Result<TrackerUrl, TrackerError> {
    let parsed = TrackerUrl::parse(url)?;
    if parsed.scheme == Scheme::Https && !cfg!(feature = "https") {
        return Err(TrackerError::BadUrl(format!(
            "{url}: HTTPS needs bitloop built with the `https` feature"
        )));
    }
    match job {
        Job::Fetch(_) if parsed.scheme == Scheme::Udp => Err(TrackerError::BadUrl(format!(
            "{url}: only http:// and https:// URLs can be fetched"
        ))),
        Job::Tracker(Purpose::Scrape(_)) if parsed.scheme != Scheme::Udp => {
            scrape_url(&parsed).ok_or_else(|| {
                TrackerError::BadUrl(
                    "this tracker offers no scrape (its URL does not end in /announce)".into(),
                )
            })
        }
        _ => Ok(parsed),
    }
}
