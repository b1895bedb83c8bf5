//! Name resolution never blocks the loop: while a (fake, loopback) name server
//! takes 2 s to answer, a 100 ms timer on the same loop keeps firing on time, and
//! the announce to the named tracker then succeeds.

mod common;

use std::cell::RefCell;
use std::net::UdpSocket;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bitloop::client::{Owner, TrackerConfig};
use bitloop::dns::message::encode_answer;
use bitloop::dns::ResolverConfig;
use bitloop::metainfo::InfoHash;
use bitloop::reactor::Event;
use bitloop::tracker::{AnnounceEvent, TrackerError};
use common::bounded::join_within;
use common::http_server::{response, serve};
use common::trackers::{announce_and_wait, finish, reactor, request, Driver};

const DNS_DELAY: Duration = Duration::from_secs(2);

/// Answers one query for any name with 127.0.0.1, after `delay`.
fn slow_name_server(delay: Duration) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let addr = socket.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let (n, from) = socket.recv_from(&mut buf).unwrap();
        std::thread::sleep(delay); // the slowness under test, not synchronisation
        let answer = encode_answer(&buf[..n], &["127.0.0.1".parse().unwrap()]);
        socket.send_to(&answer, from).unwrap();
    });
    (addr, handle)
}

fn config_with(name_server: std::net::SocketAddr, timeout: Duration) -> TrackerConfig {
    let mut resolver = ResolverConfig::from_texts("", "");
    resolver.nameservers = vec![name_server];
    resolver.timeout = timeout;
    resolver.attempts = 1;
    TrackerConfig {
        http_timeout: Duration::from_secs(10),
        udp_retry_base: Duration::from_millis(10),
        resolver,
        ca_file: None,
    }
}

#[test]
fn a_slow_name_server_does_not_delay_timers() {
    let (name_server, dns_thread) = slow_name_server(DNS_DELAY);
    let tracker = serve(vec![response("200 OK", "", b"d8:intervali1800e5:peers0:e")]);
    let port = tracker.addr.port();
    let mut rx = reactor();
    let mut driver = Driver::new(config_with(name_server, Duration::from_secs(5)));
    let ticks = Rc::new(RefCell::new(Vec::new()));
    let record = ticks.clone();
    driver.extra = Some(Box::new(move |_, _, owner, event| {
        if owner == Owner::App(1) && matches!(event, Event::Timer) {
            record.borrow_mut().push(Instant::now());
        }
    }));
    let ticker = rx.timer(Owner::App(1)).unwrap();
    rx.timer_start(
        ticker,
        Duration::from_millis(100),
        Some(Duration::from_millis(100)),
    )
    .unwrap();

    let started = Instant::now();
    let url = format!("http://tracker.bitloop.test:{port}/announce");
    let result = announce_and_wait(
        &mut rx,
        &mut driver,
        &url,
        request(InfoHash([3; 20]), 1, AnnounceEvent::Started, 1),
    );
    let elapsed = started.elapsed();
    assert!(result.is_ok(), "{result:?}");
    assert!(
        elapsed >= DNS_DELAY,
        "the answer cannot beat the name server: {elapsed:?}"
    );

    let ticks = ticks.borrow();
    let mut previous = started;
    let mut longest_gap = Duration::ZERO;
    for &tick in ticks.iter() {
        longest_gap = longest_gap.max(tick - previous);
        previous = tick;
    }
    assert!(ticks.len() >= 15, "only {} ticks in {elapsed:?}", ticks.len());
    assert!(
        longest_gap < Duration::from_millis(300),
        "the loop stalled for {longest_gap:?}"
    );
    drop(ticks);
    finish(rx, driver);
    join_within(dns_thread, Duration::from_secs(10), "the slow name server");
    let heads = tracker.heads();
    assert_eq!(heads.len(), 1);
    assert!(heads[0].starts_with("GET /announce?"), "{heads:?}");
    assert!(heads[0].contains("\r\nHost: tracker.bitloop.test:"), "{heads:?}");
}

#[test]
fn a_dead_name_server_fails_the_lookup_after_its_timeout() {
    // Bound, never answered: every query is lost.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rx = reactor();
    let mut driver = Driver::new(config_with(
        silent.local_addr().unwrap(),
        Duration::from_millis(300),
    ));
    let result = announce_and_wait(
        &mut rx,
        &mut driver,
        "udp://tracker.bitloop.test:6969",
        request(InfoHash([3; 20]), 1, AnnounceEvent::Started, 1),
    );
    assert!(
        matches!(result, Err(TrackerError::Resolve(ref why)) if why.contains("no answer")),
        "{result:?}"
    );
    finish(rx, driver);
}
