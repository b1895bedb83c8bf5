//! Issue 16, fix 14: a tracker that sends its keys out of order is read as other
//! clients read it, and a torrent's trackers report what each one answered last,
//! so the user can learn why there are no peers.

mod common;

use std::time::{Duration, Instant};

use bitloop::client::{Owner, TorrentTrackers, TrackerStatus, Transfer};
use bitloop::metainfo::InfoHash;
use bitloop::reactor::RunMode;
use bitloop::swarm::Candidates;
use bitloop::tracker::announcer::Announcer;
use bitloop::tracker::AnnounceEvent;
use common::http_server::{response, serve};
use common::trackers::{config, finish, reactor, request, Driver};

#[test]
fn unsorted_keys_are_read_and_each_tracker_s_last_answer_is_reported() {
    let refusing = serve(vec![response(
        "200 OK",
        "",
        b"d14:failure reason22:torrent not registerede",
    )]);
    // Keys out of order, as some tracker software sends them.
    let unsorted =
        b"d5:peers12:\x7f\x00\x00\x01\x1a\xe1\x7f\x00\x00\x02\x1a\xe28:intervali1800e8:completei1ee";
    let working = serve(vec![response("200 OK", "", unsorted)]);
    let urls = [
        format!("http://{}/announce", refusing.addr),
        format!("http://{}/announce", working.addr),
    ];
    let mut rx = reactor();
    let mut driver = Driver::new(config());
    let announcer = Announcer::new(rx.now(), &[vec![urls[0].clone()], vec![urls[1].clone()]], 1);
    let mut torrent = TorrentTrackers::new(
        announcer,
        request(InfoHash([4; 20]), 6881, AnnounceEvent::None, 1),
    );
    assert!(
        torrent.report().iter().all(|s| s.last.is_none()),
        "nothing answered yet"
    );
    let mut candidates = Candidates::new(100);
    let transfer = Transfer {
        uploaded: 0,
        downloaded: 0,
        left: 1,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while torrent.report().iter().any(|s| s.last.is_none()) {
        assert!(Instant::now() < deadline, "{:?}", torrent.report());
        torrent.poll(&mut rx, &mut driver.trackers, transfer);
        let guard = rx.timer(Owner::App(u32::MAX)).unwrap();
        rx.timer_start(guard, Duration::from_millis(20), None).unwrap();
        rx.run(&mut driver, RunMode::Once).unwrap();
        rx.close(guard);
        for (id, result) in std::mem::take(&mut driver.results) {
            assert!(torrent.on_result(rx.now(), id, &result, &mut candidates));
        }
    }
    assert_eq!(
        torrent.report(),
        [
            TrackerStatus {
                url: urls[0].clone(),
                last: Some(Err("tracker refused: torrent not registered".into())),
            },
            TrackerStatus {
                url: urls[1].clone(),
                last: Some(Ok(2)),
            },
        ]
    );
    assert_eq!(candidates.queued(), 2);
    finish(rx, driver);
    refusing.finish();
    working.finish();
}
