//! A torrent that exists before its metadata: a magnet link added to a session
//! finds its peer (the magnet's `x.pe`), connects and handshakes with a real
//! python3-libtorrent seeder, and keeps what it announces unchecked, without
//! any piece to fetch. Fetching the info dictionary (BEP 9) comes later; the
//! CLI says so for magnet links (exit 2).

mod common;

use std::time::{Duration, Instant};

use bitloop::client::session::{AddOptions, Phase, Session, Source};
use bitloop::client::Owner;
use bitloop::metainfo::Magnet;
use bitloop::reactor::{Event, HandleId, Handler, Reactor, RunMode};
use bitloop::torrent::TorrentConfig;
use common::libtorrent::bitloop;
use common::seeders::{Content, Seeder};
use common::world::session_config;

struct Front {
    session: Session,
}

impl Handler<Owner> for Front {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        if owner.session().is_some() {
            self.session.on_event(rx, id, owner, event);
        }
        while self.session.poll_event().is_some() {}
    }

    fn on_deferred(&mut self, rx: &mut Reactor<Owner>, _: Owner) {
        self.session.on_deferred(rx);
    }
}

#[test]
fn a_magnet_link_finds_its_peer_and_handshakes_before_the_metadata() {
    let content = Content::make(false, 300_000, 16384, vec![]);
    let seeder = Seeder::start(&content.torrent_path, &content.save_path);
    let uri = format!(
        "magnet:?xt=urn:btih:{}&dn=single.bin&x.pe={}",
        content.torrent.info_hash.to_hex(),
        seeder.addr()
    );
    let magnet = Magnet::parse(&uri).unwrap();
    let mut rx: Reactor<Owner> = Reactor::new().unwrap();
    let session = Session::new(&mut rx, 0, session_config(TorrentConfig::default())).unwrap();
    let mut front = Front { session };
    let output = content.dir.path().join("magnet");
    let key = front
        .session
        .add_torrent(&mut rx, Source::Magnet(&magnet), AddOptions::new(output.clone()))
        .unwrap();
    assert_eq!(front.session.phase(key), Some(Phase::NoMetadata));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let torrent = front.session.torrent(key).unwrap();
        if torrent.peer_counts().active == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no handshake: {:?}",
            torrent.peer_counts()
        );
        let guard = rx.timer(Owner::App(1)).unwrap();
        rx.timer_start(guard, Duration::from_millis(20), None).unwrap();
        rx.run(&mut front, RunMode::Once).unwrap();
        rx.close(guard);
    }
    let torrent = front.session.torrent(key).unwrap();
    assert!(!torrent.has_metadata(), "nothing to fetch pieces with yet");
    assert_eq!(torrent.stats().downloaded, 0);
    assert!(!output.join("single.bin").exists(), "no files without metadata");
    front.session.close(&mut rx);
    rx.close_all_and_drain(&mut front).unwrap();
    rx.finish().unwrap_or_else(|busy| panic!("{busy}"));
    assert_eq!(front.session.torrent(key).unwrap().table_sizes(), [0; 11]);
}

#[test]
fn the_cli_says_magnet_downloads_are_not_supported_yet() {
    let uri = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=x";
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_bitloop"))
        .args(["download", uri, "-o", "/nonexistent-bitloop-test"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot fetch yet") && stderr.contains("BEP 9"),
        "{stderr}"
    );
    // `info` still reads the link.
    let (ok, out, _) = bitloop(&["info", uri]);
    assert!(ok && out.contains("0123456789abcdef"), "{out}");
}
