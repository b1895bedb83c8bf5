//! Both tracker kinds against a real opentracker on loopback, and the announce
//! schedule's events seen by the tracker itself.

mod common;

use bitloop::metainfo::InfoHash;
use bitloop::tracker::AnnounceEvent;
use common::opentracker::OpenTracker;
use common::trackers::{announce_and_wait, config, finish, reactor, request, scrape_and_wait, Driver};

fn hash(n: u8) -> InfoHash {
    InfoHash([n; 20])
}

fn ports(response: &bitloop::tracker::AnnounceResponse) -> Vec<u16> {
    let mut ports: Vec<u16> = response.peers.iter().map(|p| p.port()).collect();
    ports.sort();
    ports
}

/// Started, completed, stopped as seen by opentracker's counts, over one URL.
fn lifecycle_against(url_of: impl Fn(&OpenTracker) -> String) {
    let info_hash = hash(0x42);
    let tracker = OpenTracker::start(&[info_hash.to_hex()]);
    let url = url_of(&tracker);
    let mut rx = reactor();
    let mut driver = Driver::new(config());

    let a = announce_and_wait(
        &mut rx,
        &mut driver,
        &url,
        request(info_hash, 7001, AnnounceEvent::Started, 1000),
    )
    .unwrap();
    assert_eq!(
        ports(&a),
        vec![7001],
        "opentracker lists the announcing peer itself"
    );
    assert_eq!((a.complete, a.incomplete), (Some(0), Some(1)));

    let b = announce_and_wait(
        &mut rx,
        &mut driver,
        &url,
        request(info_hash, 7002, AnnounceEvent::Started, 1000),
    )
    .unwrap();
    assert_eq!(ports(&b), vec![7001, 7002]);
    assert_eq!(b.incomplete, Some(2));

    let done = announce_and_wait(
        &mut rx,
        &mut driver,
        &url,
        request(info_hash, 7001, AnnounceEvent::Completed, 0),
    )
    .unwrap();
    assert_eq!(
        (done.complete, done.incomplete),
        (Some(1), Some(1)),
        "completed makes a seeder"
    );

    let stopped = announce_and_wait(
        &mut rx,
        &mut driver,
        &url,
        request(info_hash, 7001, AnnounceEvent::Stopped, 0),
    );
    assert!(stopped.is_ok(), "{stopped:?}");
    let after = announce_and_wait(
        &mut rx,
        &mut driver,
        &url,
        request(info_hash, 7002, AnnounceEvent::None, 1000),
    )
    .unwrap();
    assert_eq!(ports(&after), vec![7002], "stopped removed the peer");
    assert_eq!(after.complete, Some(0));

    // A torrent the tracker does not serve is refused with its reason (HTTP), or
    // not answered at all (opentracker drops such UDP announces).
    let refused = announce_and_wait(
        &mut rx,
        &mut driver,
        &url,
        request(hash(0x99), 7003, AnnounceEvent::Started, 1),
    );
    assert!(refused.is_err());
    finish(rx, driver);
}

#[test]
fn http_announce_lifecycle_against_opentracker() {
    lifecycle_against(|t| t.http_url());
}

#[test]
fn udp_announce_lifecycle_against_opentracker() {
    lifecycle_against(|t| t.udp_url());
}

#[test]
fn http_and_udp_see_the_same_swarm() {
    let info_hash = hash(0x43);
    let tracker = OpenTracker::start(&[info_hash.to_hex()]);
    let mut rx = reactor();
    let mut driver = Driver::new(config());
    announce_and_wait(
        &mut rx,
        &mut driver,
        &tracker.http_url(),
        request(info_hash, 8001, AnnounceEvent::Started, 5),
    )
    .unwrap();
    let via_udp = announce_and_wait(
        &mut rx,
        &mut driver,
        &tracker.udp_url(),
        request(info_hash, 8002, AnnounceEvent::Started, 5),
    )
    .unwrap();
    assert_eq!(ports(&via_udp), vec![8001, 8002]);
    finish(rx, driver);
}

/// Scrape over one URL: a leecher counts as incomplete, then `completed` makes a
/// seeder and a download.
fn scrape_against(http: bool) {
    let info_hash = hash(0x44);
    let other = hash(0x45);
    let tracker = OpenTracker::start(&[info_hash.to_hex(), other.to_hex()]);
    let url = if http {
        tracker.http_url()
    } else {
        tracker.udp_url()
    };
    let mut rx = reactor();
    let mut driver = Driver::new(config());
    announce_and_wait(
        &mut rx,
        &mut driver,
        &url,
        request(info_hash, 9001, AnnounceEvent::Started, 10),
    )
    .unwrap();
    let stats = scrape_and_wait(&mut rx, &mut driver, &url, vec![info_hash, other]).unwrap();
    assert_eq!((stats[0].seeders, stats[0].leechers), (0, 1), "{stats:?}");
    assert_eq!((stats[1].seeders, stats[1].leechers), (0, 0), "{stats:?}");
    announce_and_wait(
        &mut rx,
        &mut driver,
        &url,
        request(info_hash, 9001, AnnounceEvent::Completed, 0),
    )
    .unwrap();
    let stats = scrape_and_wait(&mut rx, &mut driver, &url, vec![info_hash]).unwrap();
    assert_eq!(
        (stats[0].seeders, stats[0].leechers, stats[0].completed),
        (1, 0, 1),
        "{stats:?}"
    );
    finish(rx, driver);
}

#[test]
fn http_scrape_against_opentracker() {
    scrape_against(true);
}

#[test]
fn udp_scrape_against_opentracker() {
    scrape_against(false);
}

#[test]
fn bitloop_announce_and_scrape_from_the_command_line() {
    let probe = common::seeders::Content::make(false, 50_000, 16384, vec![]);
    let tracker = OpenTracker::start(&[probe.torrent.info_hash.to_hex()]);
    let content =
        common::seeders::Content::make(false, 50_000, 16384, vec![tracker.http_url(), tracker.udp_url()]);
    let torrent = content.torrent_path.to_str().unwrap();
    let (ok, out, err) =
        common::libtorrent::bitloop(&["announce", torrent, "--port", "7777", "--timeout", "5"]);
    assert!(ok, "{err}");
    assert!(out.contains("127.0.0.1:7777"), "the tracker lists us: {out}");
    let (ok, out, err) = common::libtorrent::bitloop(&["announce", torrent, "--scrape", "--timeout", "5"]);
    assert!(ok, "{err}");
    assert_eq!(
        out.matches("0 seeders, 1 leechers, 0 downloads").count(),
        2,
        "both trackers: {out}"
    );
}
