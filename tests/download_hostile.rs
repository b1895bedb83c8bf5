//! Hostile and broken peers, scripted on 127.0.0.2, next to an honest libtorrent
//! seeder on 127.0.0.1: the download still completes from the honest peer, byte
//! for byte, nothing panics, and the loop ends empty. Each test also asserts what
//! it is named for, from the run's summary: the violation that disconnected the
//! peer, the ban for bad data, the blocks kept from a peer that hung up.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bitloop::client::download::{run, DownloadOptions, Outcome, PeerTally, RunSummary};
use bitloop::metainfo::Metainfo;
use bitloop::tracker::PeerId;
use common::seeders::{Content, Seeder};
use common::trackers::offline_resolver;

/// How the scripted peer misbehaves once handshaken (it always claims every piece).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Behaviour {
    /// Answers every request with garbage of the right length.
    CorruptData,
    /// Answers a few requests correctly, then hangs up in the middle of a piece.
    DisconnectMidPiece,
    /// Never unchokes us.
    NeverUnchoke,
    /// Sends a length prefix of 4 GiB.
    OversizeLength,
    /// Sends `have` for a piece that does not exist.
    InvalidIndex,
    /// Sends a bitfield of the wrong size instead of have-all.
    WrongBitfield,
    /// Unchokes, rejects its first request (BEP 6), then serves correctly.
    RejectFirst,
}

/// The scripted peer: a listener on 127.0.0.2 serving each connection.
struct Hostile {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    /// Blocks it sent (the `piece` messages written whole).
    blocks: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn read_exact(stream: &mut TcpStream, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; n];
    stream.read_exact(&mut buf).ok()?;
    Some(buf)
}

fn serve(
    mut stream: TcpStream,
    behaviour: Behaviour,
    torrent: &Metainfo,
    data: &[u8],
    blocks: &AtomicUsize,
) -> Option<()> {
    stream.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    stream.set_write_timeout(Some(Duration::from_secs(20))).ok()?;
    let theirs = read_exact(&mut stream, 68)?;
    let mut hello = vec![19];
    hello.extend_from_slice(b"BitTorrent protocol");
    hello.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x04]); // Fast
    hello.extend_from_slice(&theirs[28..48]);
    hello.extend_from_slice(HOSTILE_ID);
    stream.write_all(&hello).ok()?;
    let count = torrent.info.pieces.len() as u32;
    match behaviour {
        Behaviour::WrongBitfield => {
            let wrong = vec![0xffu8; count.div_ceil(8) as usize + 3];
            stream.write_all(&(wrong.len() as u32 + 1).to_be_bytes()).ok()?;
            stream.write_all(&[5]).ok()?;
            stream.write_all(&wrong).ok()?;
        }
        _ => stream.write_all(&[0, 0, 0, 1, 0x0e]).ok()?, // have all
    }
    match behaviour {
        Behaviour::OversizeLength => stream.write_all(&[0xff, 0xff, 0xff, 0xff, 7]).ok()?,
        Behaviour::InvalidIndex => {
            stream.write_all(&[0, 0, 0, 5, 4]).ok()?;
            stream.write_all(&(count + 1000).to_be_bytes()).ok()?;
        }
        _ => {}
    }
    let mut answered = 0;
    loop {
        let len = u32::from_be_bytes(read_exact(&mut stream, 4)?.try_into().ok()?) as usize;
        if len == 0 {
            continue;
        }
        let body = read_exact(&mut stream, len)?;
        match (body[0], behaviour) {
            (2, Behaviour::NeverUnchoke) => {} // interested: ignored forever
            (2, _) => stream.write_all(&[0, 0, 0, 1, 1]).ok()?, // interested → unchoke
            (6, Behaviour::RejectFirst) if answered == 0 => {
                stream.write_all(&[0, 0, 0, 13, 0x10]).ok()?;
                stream.write_all(&body[1..13]).ok()?;
                answered += 1;
            }
            (6, Behaviour::CorruptData | Behaviour::DisconnectMidPiece | Behaviour::RejectFirst) => {
                let index = u32::from_be_bytes(body[1..5].try_into().ok()?);
                let begin = u32::from_be_bytes(body[5..9].try_into().ok()?);
                let length = u32::from_be_bytes(body[9..13].try_into().ok()?) as usize;
                if behaviour == Behaviour::DisconnectMidPiece && answered == 3 {
                    // Hang up with requests outstanding: FIN after the blocks sent,
                    // then read what comes until the client closes (closing with
                    // unread requests would send a reset, which can discard blocks
                    // the client has not read yet).
                    stream.shutdown(std::net::Shutdown::Write).ok()?;
                    let _ = std::io::copy(&mut stream, &mut std::io::sink());
                    return None;
                }
                let start = index as usize * torrent.info.piece_length as usize + begin as usize;
                let block: Vec<u8> = if behaviour == Behaviour::CorruptData {
                    data[start..start + length].iter().map(|b| b ^ 0x5a).collect()
                } else {
                    data[start..start + length].to_vec()
                };
                stream.write_all(&(9 + length as u32).to_be_bytes()).ok()?;
                stream.write_all(&[7]).ok()?;
                stream.write_all(&body[1..9]).ok()?;
                stream.write_all(&block).ok()?;
                answered += 1;
                blocks.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

impl Hostile {
    fn start(behaviour: Behaviour, torrent: Metainfo, data: Vec<u8>) -> Hostile {
        let listener = TcpListener::bind("127.0.0.2:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let blocks = Arc::new(AtomicUsize::new(0));
        let (stop_flag, count, sent) = (stop.clone(), connections.clone(), blocks.clone());
        let thread = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let mut workers = Vec::new();
            while !stop_flag.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        stream.set_nonblocking(false).unwrap();
                        let (torrent, data, sent) = (torrent.clone(), data.clone(), sent.clone());
                        workers.push(std::thread::spawn(move || {
                            let _ = serve(stream, behaviour, &torrent, &data, &sent);
                        }));
                    }
                    // Polling a non-blocking listener so the thread can be told to stop.
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            drop(listener);
            for worker in workers {
                let _ = worker.join();
            }
        });
        Hostile {
            addr,
            stop,
            connections,
            blocks,
            thread: Some(thread),
        }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // Its workers end at EOF or their 20 s socket timeouts; not waited past that.
            let _ = common::bounded::try_join_within(thread, Duration::from_secs(30));
        }
    }
}

/// The scripted peer's id (in its handshake), by which the run's tally names it.
const HOSTILE_ID: &[u8; 20] = b"-XX0001-hostilepeer!";
/// Blocks are 16 KiB.
const BLOCK: u64 = 16 * 1024;

/// What the scripted peer did over a run.
#[derive(Clone, Copy, Debug)]
struct Served {
    connections: usize,
    blocks: usize,
}

/// Downloads with one honest seeder and one hostile peer (connected first).
fn download_beside(behaviour: Behaviour) -> RunSummary {
    download_with(behaviour, true, BLOCK).0
}

/// Downloads from the scripted peer, beside an honest libtorrent seeder or alone,
/// with pieces of `piece_length`.
fn download_with(behaviour: Behaviour, honest_seeder: bool, piece_length: u64) -> (RunSummary, Served) {
    let _ = env_logger::builder().is_test(true).try_init();
    let content = Content::make(false, 2_000_000, piece_length, vec![]);
    let data = std::fs::read(content.save_path.join("single.bin")).unwrap();
    let hostile = Hostile::start(behaviour, content.torrent.clone(), data);
    // The honest seeder is rate limited (1 MB/s), so the scripted peer, which answers
    // at once, has its say before the honest one could finish on its own.
    let seeder = honest_seeder.then(|| {
        Seeder::start_with(
            &content.torrent_path,
            &content.save_path,
            &["--upload-limit", "1000000"],
        )
    });
    let output = content.dir.path().join("download");
    let mut options = DownloadOptions::new(output.clone());
    options.listen = None;
    options.watch_signals = false;
    options.timeout = Duration::from_secs(30);
    options.trackers.resolver = offline_resolver();
    // Short, so that a hostile peer sitting on requests costs little; long enough
    // for the honest seeder at 1 MB/s to serve the first window (64 blocks, 1 MiB)
    // on a loaded machine, since a block that comes after its request timed out
    // is thrown away as unrequested.
    options.torrent.request_timeout = Duration::from_secs(5);
    options.peers = vec![hostile.addr];
    options.peers.extend(seeder.as_ref().map(Seeder::addr));
    let summary = run(&content.torrent, options).unwrap();
    assert_eq!(summary.outcome, Outcome::Completed, "{behaviour:?}");
    summary.report.as_ref().unwrap_or_else(|busy| panic!("{busy}"));
    content.assert_identical(&output);
    assert_eq!(summary.torrents.len(), 1);
    assert_eq!(
        summary.pieces.len(),
        content.torrent.info.pieces.len(),
        "every piece verified"
    );
    // Bounded wait: the connection is in the kernel's queue; the thread accepts it soon.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while hostile.connections.load(Ordering::Relaxed) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the hostile peer was never tried"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let served = Served {
        connections: hostile.connections.load(Ordering::Relaxed),
        blocks: hostile.blocks.load(Ordering::Relaxed),
    };
    (summary, served)
}

/// What the hostile peer gave us over all its connections, if it ever got past
/// the handshake (the run tallies every handshaken peer when it leaves).
fn from_hostile(summary: &RunSummary) -> Option<&PeerTally> {
    summary.peers.get(&PeerId(*HOSTILE_ID))
}

/// The hostile peer was handshaken, gave nothing, and was disconnected for a
/// protocol violation (at most `max_strikes` times: then it is banned and not
/// tried again); the honest seeder's data was all good.
fn assert_disconnected_for_a_violation(summary: &RunSummary) {
    let stats = summary.torrents[0].stats;
    let tally = from_hostile(summary).expect("the hostile peer was handshaken");
    assert_eq!(tally.downloaded, 0, "{tally:?}");
    assert!(
        (1..=3).contains(&stats.violations),
        "disconnected for its violation: {stats:?}"
    );
    assert_eq!((stats.wasted, stats.unrequested_blocks), (0, 0), "{stats:?}");
    assert!(summary.banned.is_empty(), "no bad data: {:?}", summary.banned);
}

#[test]
fn a_peer_sending_corrupt_pieces_is_struck_and_the_pieces_refetched() {
    let summary = download_beside(Behaviour::CorruptData);
    let stats = summary.torrents[0].stats;
    assert!(stats.wasted > 0, "corrupt data was received and thrown away");
    // Whole failed pieces: 16 KiB each, the last (2,000,000 mod 16 KiB) shorter.
    let last = 2_000_000 % BLOCK;
    assert!(
        [0, last].contains(&(stats.wasted % BLOCK)),
        "whole failed pieces: {stats:?}"
    );
    assert_eq!(
        summary.banned,
        vec!["127.0.0.2".parse::<std::net::IpAddr>().unwrap()],
        "banned for bad data"
    );
    assert_eq!(stats.violations, 0, "bad data is not a protocol violation");
}

#[test]
fn a_peer_that_disconnects_mid_piece() {
    // Four blocks per piece: the peer serves three and hangs up with requests out,
    // so a piece is left part-done; its blocks are kept and the rest refetched.
    let (summary, served) = download_with(Behaviour::DisconnectMidPiece, true, 4 * BLOCK);
    let stats = summary.torrents[0].stats;
    let tally = from_hostile(&summary).expect("the hostile peer was handshaken");
    // Handshaken connections each got three blocks out before the hang-up (the last
    // piece is shorter, so count blocks, not bytes); what they sent counts for them.
    assert!(
        served.blocks > 0 && served.blocks <= 3 * served.connections,
        "{served:?}"
    );
    assert!(
        tally.downloaded > 0 && tally.downloaded <= served.blocks as u64 * BLOCK,
        "the blocks sent before the hang-up were taken: {tally:?} {served:?}"
    );
    assert_eq!(stats.violations, 0, "hanging up is no violation: {stats:?}");
    assert!(summary.banned.is_empty());
}

#[test]
fn a_peer_that_never_unchokes() {
    let summary = download_beside(Behaviour::NeverUnchoke);
    let stats = summary.torrents[0].stats;
    let tally = from_hostile(&summary).expect("the hostile peer was handshaken");
    assert_eq!(tally.downloaded, 0, "{tally:?}");
    assert_eq!(
        (stats.requests_while_choked, stats.violations, stats.wasted),
        (0, 0, 0),
        "nothing asked of a choking peer without allowed-fast pieces: {stats:?}"
    );
}

#[test]
fn a_peer_sending_an_oversize_length_prefix() {
    assert_disconnected_for_a_violation(&download_beside(Behaviour::OversizeLength));
}

#[test]
fn a_peer_sending_an_invalid_piece_index() {
    assert_disconnected_for_a_violation(&download_beside(Behaviour::InvalidIndex));
}

#[test]
fn a_peer_sending_a_bitfield_of_the_wrong_size() {
    assert_disconnected_for_a_violation(&download_beside(Behaviour::WrongBitfield));
}

#[test]
fn a_rejected_request_is_requested_again() {
    // The only peer: the download completes only if the rejected block is asked for again.
    let (summary, _) = download_with(Behaviour::RejectFirst, false, BLOCK);
    assert_eq!(summary.fast.rejects, 1, "{:?}", summary.fast);
    let tally = from_hostile(&summary).expect("the hostile peer was handshaken");
    assert_eq!(tally.downloaded, 2_000_000, "all from the only peer: {tally:?}");
    assert_eq!(summary.fast.violations, 0);
}
