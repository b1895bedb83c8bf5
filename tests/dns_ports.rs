//! Issue 16, fix 9: every DNS query goes out from a socket of its own (a fresh,
//! kernel-chosen random source port, closed when the query ends), and an answer
//! counts only if it comes from the server asked with the query's id and echoes its
//! question; spoofed answers are dropped and counted, and the real one still wins.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitloop::client::TrackerConfig;
use bitloop::dns::message::encode_answer;
use bitloop::dns::ResolverConfig;
use bitloop::metainfo::InfoHash;
use bitloop::tracker::AnnounceEvent;
use common::bounded::join_within;
use common::http_server::{response, serve, tracker_body};
use common::trackers::{finish, reactor, request, wait_for, Driver};

/// One query as the name server saw it.
#[derive(Clone, Debug)]
struct Query {
    from: SocketAddr,
    id: u16,
    record: u16,
}

/// A loopback name server. For every A query it first sends spoofs (wrong id, a
/// question for another name, for another type, and one from another socket, each
/// pointing at 127.0.0.66), then the real answer (127.0.0.1); AAAA gets "no data".
/// With `drop_first`, the very first A query is ignored (so its retry is seen).
struct NameServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Query>>,
}

fn name_server(drop_first: bool) -> NameServer {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let spoofer = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let addr = socket.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        while !stopped.load(Ordering::SeqCst) && Instant::now() < deadline {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue; // the read timeout: check the stop flag
            };
            let query = &buf[..n];
            let record = u16::from_be_bytes([query[n - 4], query[n - 3]]);
            seen.push(Query {
                from,
                id: u16::from_be_bytes([query[0], query[1]]),
                record,
            });
            if record == 28 {
                socket.send_to(&encode_answer(query, &[]), from).unwrap();
                continue;
            }
            if drop_first && seen.iter().filter(|q| q.record == 1).count() == 1 {
                continue;
            }
            let evil = ["127.0.0.66".parse().unwrap()];
            let mut wrong_id = encode_answer(query, &evil);
            wrong_id[1] ^= 0x5a;
            let mut other_name = query.to_vec();
            other_name[13] ^= 0x01; // first letter of the name: another name
            let mut other_type = query.to_vec();
            other_type[n - 3] = 28;
            for spoof in [
                wrong_id,
                encode_answer(&other_name, &evil),
                encode_answer(&other_type, &evil),
            ] {
                socket.send_to(&spoof, from).unwrap();
            }
            spoofer.send_to(&encode_answer(query, &evil), from).unwrap();
            let real = encode_answer(query, &["127.0.0.1".parse().unwrap()]);
            socket.send_to(&real, from).unwrap();
        }
        seen
    });
    NameServer { addr, stop, thread }
}

impl NameServer {
    fn finish(self) -> Vec<Query> {
        self.stop.store(true, Ordering::SeqCst);
        // Its loop checks the flag at least every 50 ms (the read timeout).
        join_within(self.thread, Duration::from_secs(10), "the fake name server")
    }
}

fn config_with(server: SocketAddr) -> TrackerConfig {
    let mut resolver = ResolverConfig::from_texts("", "");
    resolver.nameservers = vec![server];
    resolver.timeout = Duration::from_millis(300);
    resolver.attempts = 2;
    TrackerConfig {
        http_timeout: Duration::from_secs(10),
        udp_retry_base: Duration::from_millis(10),
        resolver,
        ca_file: None,
    }
}

#[test]
fn each_query_has_its_own_port_and_spoofed_answers_are_dropped() {
    let names = name_server(false);
    let ok = response("200 OK", "", &tracker_body(&["127.0.0.1:6881".parse().unwrap()]));
    let tracker = serve(vec![ok; 4]);
    let mut rx = reactor();
    let mut driver = Driver::new(config_with(names.addr));
    let ids: Vec<_> = (0..4)
        .map(|i| {
            let url = format!("http://t{i}.bitloop.test:{}/announce", tracker.addr.port());
            let req = request(InfoHash([i; 20]), 6881, AnnounceEvent::Started, 1);
            driver.trackers.announce(&mut rx, &url, req)
        })
        .collect();
    for id in ids {
        let result = wait_for(&mut rx, &mut driver, id, Duration::from_secs(10));
        assert_eq!(result.map(|r| r.peers.len()), Ok(1), "the real answer wins");
    }
    let stats = driver.trackers.stats();
    assert!(
        stats.dropped_dns_answers >= 12,
        "wrong id, name and type for each of 4 names: {stats:?}"
    );
    assert_eq!(stats.dns_sockets, 0, "every query's socket closed: {stats:?}");
    finish(rx, driver);
    assert_eq!(
        tracker.requests().len(),
        4,
        "no connection went to the spoofed address"
    );
    let queries = names.finish();
    assert_eq!(queries.len(), 8, "A and AAAA for each name: {queries:?}");
    let mut ports: Vec<u16> = queries.iter().map(|q| q.from.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(
        ports.len(),
        8,
        "eight queries in flight at once, eight source ports: {queries:?}"
    );
}

#[test]
fn a_retry_is_a_fresh_query_from_a_fresh_port() {
    let names = name_server(true);
    let tracker = serve(vec![response("200 OK", "", &tracker_body(&[]))]);
    let mut rx = reactor();
    let mut driver = Driver::new(config_with(names.addr));
    let url = format!("http://retry.bitloop.test:{}/announce", tracker.addr.port());
    let req = request(InfoHash([9; 20]), 6881, AnnounceEvent::Started, 1);
    let id = driver.trackers.announce(&mut rx, &url, req);
    let result = wait_for(&mut rx, &mut driver, id, Duration::from_secs(10));
    assert!(result.is_ok(), "{result:?}");
    finish(rx, driver);
    tracker.finish();
    let a: Vec<Query> = names.finish().into_iter().filter(|q| q.record == 1).collect();
    assert_eq!(a.len(), 2, "the ignored query and its retry: {a:?}");
    assert_ne!(a[0].from.port(), a[1].from.port(), "{a:?}");
    assert_ne!(a[0].id, a[1].id, "{a:?}");
}
