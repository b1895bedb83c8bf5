//! Fake HTTP and UDP trackers that run on the same loop as the tracker client, and
//! a helper that pushes many announces through one kind and checks nothing grows.
//! Used by the leak-proof binaries (one thread, exact allocation counts).

use bitloop::client::{Owner, TrackerClient};
use bitloop::metainfo::InfoHash;
use bitloop::reactor::{Event, HandleId, Handler, Reactor, RunMode};
use bitloop::tracker::AnnounceEvent;

use super::counting::heap;
use super::trackers::{config, request};

const FAKE_HTTP: Owner = Owner::App(20);
const FAKE_HTTP_STREAM: Owner = Owner::App(21);
const FAKE_UDP: Owner = Owner::App(22);

pub struct TrackerWorld {
    trackers: TrackerClient,
    http_response: Vec<u8>,
    udp_reply: Vec<u8>,
    results: Vec<(
        bitloop::client::RequestId,
        bitloop::client::trackers::AnnounceResult,
    )>,
}

impl Handler<Owner> for TrackerWorld {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        match (owner, event) {
            (FAKE_HTTP, Event::Accepted { stream, .. }) => rx.set_owner(stream, FAKE_HTTP_STREAM).unwrap(),
            (FAKE_HTTP_STREAM, Event::Readable) => {
                if rx.tcp_received(id).unwrap().ends_with(b"\r\n\r\n") {
                    let n = rx.tcp_received(id).unwrap().len();
                    rx.tcp_consume(id, n).unwrap();
                    rx.tcp_write(id, &self.http_response).unwrap();
                    rx.tcp_shutdown(id).unwrap();
                }
            }
            (FAKE_HTTP_STREAM, Event::Eof) => rx.close(id),
            (FAKE_UDP, Event::Readable) => {
                let mut buf = [0u8; 256];
                while let Some((n, from)) = rx.udp_recv_from(id, &mut buf).unwrap() {
                    if n == 16 {
                        let mut reply = vec![0, 0, 0, 0];
                        reply.extend_from_slice(&buf[12..16]);
                        reply.extend_from_slice(&9u64.to_be_bytes());
                        rx.udp_send_to(id, &reply, from).unwrap();
                    } else {
                        self.udp_reply[4..8].copy_from_slice(&buf[12..16]);
                        rx.udp_send_to(id, &self.udp_reply, from).unwrap();
                    }
                }
            }
            (Owner::App(_), _) => {}
            (owner, event) => self.trackers.on_event(rx, id, owner, event),
        }
        while let Some(result) = self.trackers.poll_result() {
            self.results.push(result);
        }
    }
}

pub fn compact(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| [127, 0, 0, 1, 0x1b, i as u8]).collect()
}

pub fn http_body(peers: usize) -> Vec<u8> {
    let mut body = format!("d8:intervali1800e5:peers{}:", peers * 6).into_bytes();
    body.extend(compact(peers));
    body.push(b'e');
    body
}

/// Runs `count` announces to the fake tracker of `kind` and checks the heap.
pub fn announces(kind: &str, count: usize) {
    let body = http_body(40);
    let mut http_response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    http_response.extend_from_slice(&body);
    let mut udp_reply = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 8, 0, 0, 0, 1, 0, 0, 0, 2];
    udp_reply.extend(compact(40));
    let mut rx: Reactor<Owner> = Reactor::new().unwrap();
    let http = rx.tcp_listen("127.0.0.1:0".parse().unwrap(), FAKE_HTTP).unwrap();
    let udp = rx.udp_bind("127.0.0.1:0".parse().unwrap(), FAKE_UDP).unwrap();
    let url = if kind == "http" {
        format!("http://{}/announce", rx.local_addr(http).unwrap())
    } else {
        format!("udp://{}", rx.local_addr(udp).unwrap())
    };
    let mut world = TrackerWorld {
        // No retransmission may come due on a loaded machine (see tracker_alloc.rs).
        trackers: TrackerClient::new(
            bitloop::client::TrackerConfig {
                udp_retry_base: std::time::Duration::from_secs(5),
                ..config()
            },
            0,
        ),
        http_response,
        udp_reply,
        results: Vec::with_capacity(2),
    };
    let mut warm = None;
    for i in 0..count {
        let id = world.trackers.announce(
            &mut rx,
            &url,
            request(InfoHash([6; 20]), 6881, AnnounceEvent::None, 1),
        );
        let mut spins = 0;
        while world.results.is_empty() {
            rx.run(&mut world, RunMode::Once).unwrap();
            spins += 1;
            assert!(spins < 10_000);
        }
        // #10: the result changes owner by value; the consumer drops it and that frees it.
        let (done, result) = world.results.pop().unwrap();
        assert_eq!(done, id);
        assert_eq!(result.unwrap().peers.len(), 40);
        if i == count / 10 {
            warm = Some(heap());
        }
    }
    assert_eq!(
        heap().blocks,
        warm.unwrap().blocks,
        "{kind}: peer lists or transactions piled up"
    );
    world.trackers.close(&mut rx);
    rx.close_all_and_drain(&mut world).unwrap();
    rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
}
