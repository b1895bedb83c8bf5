//! Leak proof for trackers: 10,000 announces through each tracker kind leave the
//! live heap where it was, and each response's peer list is exactly one allocation
//! (the seed's bugs #6, #8 and #11 were a peer list leaked per response, fixed in
//! one tracker but not its twin, and a list decoded twice).
//!
//! The fake trackers run on the same loop as the client, so one thread does all the
//! work and the counting allocator sees only the code under test.

mod common;

use bitloop::client::{Owner, RequestId, TrackerClient};
use bitloop::metainfo::InfoHash;
use bitloop::reactor::{Event, HandleId, Handler, Reactor, RunMode};
use bitloop::tracker::http::parse_announce;
use bitloop::tracker::udp::parse_reply;
use bitloop::tracker::AnnounceEvent;
use common::counting::{allocations, heap, run_scenarios, Counting};
use common::trackers::{config, request};

#[global_allocator]
static GLOBAL: Counting = Counting;

const FAKE_LISTENER: Owner = Owner::App(1);
const FAKE_STREAM: Owner = Owner::App(2);
const FAKE_UDP: Owner = Owner::App(3);

fn compact_peers(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| [127, 0, 0, 1, 0x1a, i as u8]).collect()
}

fn http_body(peers: usize) -> Vec<u8> {
    let compact = compact_peers(peers);
    let mut body = format!(
        "d8:completei1e10:incompletei2e8:intervali1800e5:peers{}:",
        compact.len()
    )
    .into_bytes();
    body.extend_from_slice(&compact);
    body.push(b'e');
    body
}

fn udp_announce_reply(tid: &[u8], peers: usize) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 1];
    out.extend_from_slice(tid);
    out.extend_from_slice(&[0, 0, 7, 8, 0, 0, 0, 1, 0, 0, 0, 2]);
    out.extend(compact_peers(peers));
    out
}

/// The client under test plus fake HTTP and UDP trackers on the same loop.
struct World {
    trackers: TrackerClient,
    http_response: Vec<u8>,
    /// Prebuilt so the fake tracker allocates the same for any peer count.
    udp_reply: Vec<u8>,
    done: Vec<(RequestId, usize)>,
}

impl Handler<Owner> for World {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        match (owner, event) {
            (FAKE_LISTENER, Event::Accepted { stream, .. }) => rx.set_owner(stream, FAKE_STREAM).unwrap(),
            (FAKE_STREAM, Event::Readable) => {
                let request_complete = rx.tcp_received(id).unwrap().ends_with(b"\r\n\r\n");
                if request_complete {
                    let n = rx.tcp_received(id).unwrap().len();
                    rx.tcp_consume(id, n).unwrap();
                    rx.tcp_write(id, &self.http_response).unwrap();
                    rx.tcp_shutdown(id).unwrap();
                }
            }
            (FAKE_STREAM, Event::Eof) => rx.close(id),
            (FAKE_UDP, Event::Readable) => {
                let mut buf = [0u8; 256];
                while let Some((n, from)) = rx.udp_recv_from(id, &mut buf).unwrap() {
                    let tid = &buf[12..16];
                    let reply = if n == 16 {
                        let mut out = vec![0, 0, 0, 0];
                        out.extend_from_slice(tid);
                        out.extend_from_slice(&77u64.to_be_bytes());
                        out
                    } else {
                        self.udp_reply[4..8].copy_from_slice(tid);
                        std::mem::take(&mut self.udp_reply)
                    };
                    rx.udp_send_to(id, &reply, from).unwrap();
                    if n != 16 {
                        self.udp_reply = reply;
                    }
                }
            }
            (Owner::App(_), _) => {}
            (owner, event) => self.trackers.on_event(rx, id, owner, event),
        }
        while let Some((id, result)) = self.trackers.poll_result() {
            self.done
                .push((id, result.expect("announce succeeds").peers.len()));
        }
    }
}

struct Setup {
    rx: Reactor<Owner>,
    world: World,
    http_url: String,
    udp_url: String,
}

fn setup(peers: usize) -> Setup {
    let mut rx: Reactor<Owner> = Reactor::new().unwrap();
    let listener = rx
        .tcp_listen("127.0.0.1:0".parse().unwrap(), FAKE_LISTENER)
        .unwrap();
    let udp = rx.udp_bind("127.0.0.1:0".parse().unwrap(), FAKE_UDP).unwrap();
    let http_url = format!("http://{}/announce", rx.local_addr(listener).unwrap());
    let udp_url = format!("udp://{}", rx.local_addr(udp).unwrap());
    let body = http_body(peers);
    let mut http_response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    http_response.extend_from_slice(&body);
    let udp_reply = udp_announce_reply(&[0; 4], peers);
    // Retransmissions at 10 ms (the tests' usual base) fire now and then on a loaded
    // machine, and the first one makes a one-time allocation (seen: one block of
    // 1-4 KiB) at a random moment, after the baseline: not a leak, but the test
    // failed 3 runs in 6 beside two busy loops. At 5 s no timer comes due while a
    // loopback tracker answers.
    let config = bitloop::client::TrackerConfig {
        udp_retry_base: std::time::Duration::from_secs(5),
        ..config()
    };
    let world = World {
        trackers: TrackerClient::new(config, 0),
        http_response,
        udp_reply,
        done: Vec::with_capacity(4),
    };
    Setup {
        rx,
        world,
        http_url,
        udp_url,
    }
}

/// One announce, run to its result.
fn announce(s: &mut Setup, url: &str) -> usize {
    let id = s.world.trackers.announce(
        &mut s.rx,
        url,
        request(InfoHash([5; 20]), 6881, AnnounceEvent::None, 1),
    );
    for _ in 0..10_000 {
        if let Some(at) = s.world.done.iter().position(|(done, _)| *done == id) {
            return s.world.done.swap_remove(at).1;
        }
        s.rx.run(&mut s.world, RunMode::Once).unwrap();
    }
    panic!("announce to {url} did not finish");
}

fn teardown(mut s: Setup) {
    s.world.trackers.close(&mut s.rx);
    s.rx.close_all_and_drain(&mut s.world).unwrap();
    s.rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
}

fn ten_thousand_announces(kind: &str) {
    let before = heap();
    {
        let mut s = setup(50);
        let url = if kind == "http" {
            s.http_url.clone()
        } else {
            s.udp_url.clone()
        };
        for _ in 0..500 {
            assert_eq!(announce(&mut s, &url), 50);
        }
        let warm = heap();
        for _ in 0..10_000 {
            assert_eq!(announce(&mut s, &url), 50);
        }
        let after = heap();
        let stats = s.world.trackers.stats();
        assert_eq!(
            (stats.in_flight, stats.queued_results, stats.lookups),
            (0, 0, 0),
            "{stats:?}"
        );
        assert!(stats.cached_connection_ids <= 1, "{stats:?}");
        assert_eq!(
            after.blocks, warm.blocks,
            "{kind}: live blocks grew over 10,000 announces"
        );
        teardown(s);
    }
    assert_eq!(heap(), before, "{kind}: live heap back to the baseline");
}

fn ten_thousand_http_announces_leave_the_heap_at_baseline() {
    ten_thousand_announces("http");
}

fn ten_thousand_udp_announces_leave_the_heap_at_baseline() {
    ten_thousand_announces("udp");
}

/// Allocation calls made by `f`.
fn allocations_of(f: impl FnOnce()) -> usize {
    let start = allocations();
    f();
    allocations() - start
}

fn each_response_makes_exactly_one_peer_list_allocation() {
    // Decoders: a response with peers costs exactly one allocation more than the same
    // response without any, in both tracker kinds (a second decode would cost two).
    let (empty, full) = (http_body(0), http_body(50));
    let http_extra = allocations_of(|| drop(parse_announce(&full).unwrap()))
        - allocations_of(|| drop(parse_announce(&empty).unwrap()));
    assert_eq!(http_extra, 1, "HTTP");
    let (empty, full) = (udp_announce_reply(&[0; 4], 0), udp_announce_reply(&[0; 4], 50));
    let udp_extra = allocations_of(|| drop(parse_reply(&full, false).unwrap()))
        - allocations_of(|| drop(parse_reply(&empty, false).unwrap()));
    assert_eq!(udp_extra, 1, "UDP");

    // End to end through the client: the same, per announce.
    for kind in ["http", "udp"] {
        let mut cost = Vec::new();
        for peers in [0, 50] {
            let mut s = setup(peers);
            let url = if kind == "http" {
                s.http_url.clone()
            } else {
                s.udp_url.clone()
            };
            for _ in 0..50 {
                announce(&mut s, &url); // warm every buffer and cache
            }
            cost.push(allocations_of(|| {
                announce(&mut s, &url);
            }));
            teardown(s);
        }
        assert_eq!(cost[1] - cost[0], 1, "{kind}: allocations per announce {cost:?}");
    }
}

fn main() {
    // One-time globals (std's thread-locals, the resolver's random keys) first.
    let mut s = setup(1);
    let (http, udp) = (s.http_url.clone(), s.udp_url.clone());
    announce(&mut s, &http);
    announce(&mut s, &udp);
    teardown(s);
    run_scenarios(&[
        (
            "ten_thousand_http_announces_leave_the_heap_at_baseline",
            ten_thousand_http_announces_leave_the_heap_at_baseline,
        ),
        (
            "ten_thousand_udp_announces_leave_the_heap_at_baseline",
            ten_thousand_udp_announces_leave_the_heap_at_baseline,
        ),
        (
            "each_response_makes_exactly_one_peer_list_allocation",
            each_response_makes_exactly_one_peer_list_allocation,
        ),
    ]);
}
