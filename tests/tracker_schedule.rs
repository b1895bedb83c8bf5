//! The announce schedule end to end: `started`, a periodic announce after the
//! tracker's interval, `completed` once, and `stopped`, as the tracker receives
//! them, on a manual clock, with peers handed over once each.

mod common;

use std::time::Duration;

use bitloop::client::{Owner, RequestId, TorrentTrackers, TrackerClient, Transfer};
use bitloop::metainfo::InfoHash;
use bitloop::reactor::{Config, Event, HandleId, Handler, Reactor, RunMode};
use bitloop::swarm::Candidates;
use bitloop::tracker::announcer::Announcer;
use bitloop::tracker::{AnnounceEvent, AnnounceResponse};
use common::trackers::{config, request};

const LISTENER: Owner = Owner::App(1);
const STREAM: Owner = Owner::App(2);

/// The client plus an HTTP tracker on the same loop that records each request's event.
struct World {
    trackers: TrackerClient,
    events: Vec<String>,
    results: Vec<(
        RequestId,
        Result<AnnounceResponse, bitloop::tracker::TrackerError>,
    )>,
}

impl Handler<Owner> for World {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        match (owner, event) {
            (LISTENER, Event::Accepted { stream, .. }) => rx.set_owner(stream, STREAM).unwrap(),
            (STREAM, Event::Readable) => {
                let text = String::from_utf8_lossy(rx.tcp_received(id).unwrap()).into_owned();
                if text.ends_with("\r\n\r\n") {
                    let event = text
                        .split(['&', ' '])
                        .find_map(|p| p.strip_prefix("event="))
                        .unwrap_or("");
                    self.events.push(event.to_string());
                    // The same three peers every time: duplicates must be dropped.
                    let peers = [127, 0, 0, 1, 0, 1, 127, 0, 0, 1, 0, 2, 127, 0, 0, 1, 0, 3];
                    let mut body = b"d8:intervali60e5:peers18:".to_vec();
                    body.extend_from_slice(&peers);
                    body.push(b'e');
                    let mut response =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
                    response.extend_from_slice(&body);
                    rx.tcp_write(id, &response).unwrap();
                    rx.tcp_shutdown(id).unwrap();
                }
            }
            (STREAM, Event::Eof) => rx.close(id),
            (Owner::App(_), _) => {}
            (owner, event) => self.trackers.on_event(rx, id, owner, event),
        }
        while let Some(result) = self.trackers.poll_result() {
            self.results.push(result);
        }
    }
}

/// Runs the loop (bounded) until the client has a result, then hands it over.
fn settle(
    rx: &mut Reactor<Owner>,
    world: &mut World,
    torrent: &mut TorrentTrackers,
    candidates: &mut Candidates,
) {
    for _ in 0..10_000 {
        if let Some((id, result)) = world.results.pop() {
            assert!(torrent.on_result(rx.now(), id, &result, candidates));
            assert!(result.is_ok(), "{result:?}");
            return;
        }
        rx.run(world, RunMode::NoWait).unwrap();
    }
    panic!("no result");
}

#[test]
fn started_periodic_completed_stopped_reach_the_tracker_in_order() {
    let mut rx: Reactor<Owner> = Reactor::with_config(Config {
        manual_clock: true,
        ..Config::default()
    })
    .unwrap();
    let listener = rx.tcp_listen("127.0.0.1:0".parse().unwrap(), LISTENER).unwrap();
    let url = format!("http://{}/announce", rx.local_addr(listener).unwrap());
    let mut world = World {
        trackers: TrackerClient::new(config(), 0),
        events: Vec::new(),
        results: Vec::new(),
    };
    let announcer = Announcer::new(rx.now(), &[vec![url]], 1);
    let mut torrent = TorrentTrackers::new(
        announcer,
        request(InfoHash([9; 20]), 6881, AnnounceEvent::None, 0),
    );
    let mut candidates = Candidates::new(100);
    let transfer = Transfer {
        uploaded: 0,
        downloaded: 0,
        left: 1000,
    };

    torrent.poll(&mut rx, &mut world.trackers, transfer);
    settle(&mut rx, &mut world, &mut torrent, &mut candidates);
    assert_eq!(torrent.poll_timeout(), Some(rx.now() + Duration::from_secs(60)));
    torrent.poll(&mut rx, &mut world.trackers, transfer);
    assert_eq!(torrent.in_flight(), 0, "nothing is due before the interval");

    rx.advance(Duration::from_secs(60));
    torrent.poll(&mut rx, &mut world.trackers, transfer);
    settle(&mut rx, &mut world, &mut torrent, &mut candidates);

    torrent.completed(rx.now());
    torrent.poll(
        &mut rx,
        &mut world.trackers,
        Transfer {
            left: 0,
            downloaded: 1000,
            ..transfer
        },
    );
    settle(&mut rx, &mut world, &mut torrent, &mut candidates);

    assert_eq!(
        torrent.stop(
            &mut rx,
            &mut world.trackers,
            Transfer {
                left: 0,
                downloaded: 1000,
                ..transfer
            }
        ),
        1
    );
    settle(&mut rx, &mut world, &mut torrent, &mut candidates);

    assert_eq!(world.events, ["started", "", "completed", "stopped"]);
    let answered: Vec<_> = torrent
        .history
        .iter()
        .map(|(_, event, ok)| (*event, *ok))
        .collect();
    assert_eq!(
        answered,
        [
            (AnnounceEvent::Started, true),
            (AnnounceEvent::None, true),
            (AnnounceEvent::Completed, true),
            (AnnounceEvent::Stopped, true)
        ]
    );
    assert_eq!(
        candidates.queued(),
        3,
        "four responses of the same three peers give three candidates"
    );

    world.trackers.close(&mut rx);
    rx.close_all_and_drain(&mut world).unwrap();
    rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
}
