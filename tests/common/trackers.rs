//! Driving the tracker client in tests: a handler that routes events to it and
//! collects results, and helpers to run until results arrive.

use std::time::Duration;

use bitloop::client::trackers::AnnounceResult;
use bitloop::client::{Owner, RequestId, TrackerClient, TrackerConfig};
use bitloop::dns::ResolverConfig;
use bitloop::metainfo::InfoHash;
use bitloop::reactor::{Config, Event, HandleId, Handler, Reactor, RunMode};
use bitloop::tracker::{AnnounceEvent, AnnounceRequest, PeerId};

/// Resolver settings that can never reach a real name server: tests use IP
/// literals, or a fake server on loopback they configure themselves.
pub fn offline_resolver() -> ResolverConfig {
    ResolverConfig::from_texts(
        "127.0.0.1 localhost\n",
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
}

pub fn config() -> TrackerConfig {
    TrackerConfig {
        http_timeout: Duration::from_secs(5),
        // Loopback answers at once; 10 ms bounds the full 2^0..2^8 schedule at ~5 s.
        udp_retry_base: Duration::from_millis(10),
        resolver: offline_resolver(),
        ca_file: None,
    }
}

pub fn request(info_hash: InfoHash, port: u16, event: AnnounceEvent, left: u64) -> AnnounceRequest {
    let mut id = *b"-BL0001-test00000000";
    id[14..].copy_from_slice(format!("{port:06}").as_bytes());
    AnnounceRequest {
        info_hash,
        peer_id: PeerId(id),
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event,
        numwant: Some(50),
        key: u32::from(port),
        tracker_id: None,
    }
}

/// What a test does with events for its own (`Owner::App`) handles.
pub type AppHook = Box<dyn FnMut(&mut Reactor<Owner>, HandleId, Owner, &Event)>;

/// Routes tracker events to the client; other owners go to `extra`.
pub struct Driver {
    pub trackers: TrackerClient,
    pub results: Vec<(RequestId, AnnounceResult)>,
    pub scrapes: Vec<(RequestId, bitloop::client::trackers::ScrapeResult)>,
    pub extra: Option<AppHook>,
}

impl Driver {
    pub fn new(config: TrackerConfig) -> Driver {
        Driver {
            trackers: TrackerClient::new(config, 0),
            results: Vec::new(),
            scrapes: Vec::new(),
            extra: None,
        }
    }

    fn collect(&mut self) {
        while let Some(result) = self.trackers.poll_result() {
            self.results.push(result);
        }
        while let Some(result) = self.trackers.poll_scrape() {
            self.scrapes.push(result);
        }
    }

    pub fn take(&mut self, id: RequestId) -> Option<AnnounceResult> {
        let at = self.results.iter().position(|(r, _)| *r == id)?;
        Some(self.results.remove(at).1)
    }
}

impl Handler<Owner> for Driver {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        match owner {
            Owner::App(_) => {
                if let Some(extra) = self.extra.as_mut() {
                    extra(rx, id, owner, &event);
                }
            }
            _ => self.trackers.on_event(rx, id, owner, event),
        }
        self.collect();
    }
}

pub fn reactor() -> Reactor<Owner> {
    Reactor::with_config(Config::default()).unwrap()
}

/// Starts an announce and runs the loop (bounded) until its result arrives.
pub fn announce_and_wait(
    rx: &mut Reactor<Owner>,
    driver: &mut Driver,
    url: &str,
    request: AnnounceRequest,
) -> AnnounceResult {
    let id = driver.trackers.announce(rx, url, request);
    wait_for(rx, driver, id, Duration::from_secs(20))
}

pub fn wait_for(
    rx: &mut Reactor<Owner>,
    driver: &mut Driver,
    id: RequestId,
    limit: Duration,
) -> AnnounceResult {
    driver.collect();
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(result) = driver.take(id) {
            return result;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no announce result within {limit:?}"
        );
        let guard = rx.timer(Owner::App(u32::MAX)).unwrap();
        rx.timer_start(guard, Duration::from_millis(50), None).unwrap();
        rx.run(driver, RunMode::Once).unwrap();
        rx.close(guard);
    }
}

/// Closes the client and the loop and proves both are empty.
pub fn finish(mut rx: Reactor<Owner>, mut driver: Driver) {
    driver.trackers.close(&mut rx);
    rx.close_all_and_drain(&mut driver).unwrap();
    rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
    let stats = driver.trackers.stats();
    assert_eq!(
        (stats.in_flight, stats.lookups, stats.cached_connection_ids),
        (0, 0, 0),
        "{stats:?}"
    );
}

/// Starts a scrape and runs the loop (bounded) until its result arrives.
pub fn scrape_and_wait(
    rx: &mut Reactor<Owner>,
    driver: &mut Driver,
    url: &str,
    hashes: Vec<InfoHash>,
) -> bitloop::client::trackers::ScrapeResult {
    let id = driver.trackers.scrape(rx, url, hashes);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        driver.collect();
        if let Some(at) = driver.scrapes.iter().position(|(r, _)| *r == id) {
            return driver.scrapes.remove(at).1;
        }
        assert!(std::time::Instant::now() < deadline, "no scrape result");
        let guard = rx.timer(Owner::App(u32::MAX)).unwrap();
        rx.timer_start(guard, Duration::from_millis(50), None).unwrap();
        rx.run(driver, RunMode::Once).unwrap();
        rx.close(guard);
    }
}
