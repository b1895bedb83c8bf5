//! Hostile requesters against the real binary, scripted in Rust on loopback:
//! requests for pieces we lack, past the end, longer than 16 KiB, 10,000 at once,
//! while choked outside the allowed-fast set, cancel storms, and peers that never
//! read. Each is answered as the core does (`src/torrent/upload.rs`): a `reject`
//! for Fast peers, silence for others, the connection closed for a request no
//! valid peer makes or a flood without Fast; the seeder's memory stays bounded;
//! and an honest python3-libtorrent leecher beside them still finishes.

#[path = "common/binary.rs"]
mod binary;
mod common;
#[path = "common/leechers.rs"]
mod leechers;
#[path = "common/wire_peer.rs"]
mod wire_peer;

use std::collections::HashSet;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use binary::{proc_status_kib, Bitloop};
use bitloop::peer::OUR_REQQ;
use bitloop::wire::{BlockRef, Message, BLOCK};
use common::seeders::Content;
use leechers::Leecher;
use wire_peer::{block, bytes_of, encode_all, handshake_bytes, peer_id, Got, Next, WirePeer};

const PIECE: u64 = 32768;
/// Four MiB and a short last piece (1000 bytes).
const SIZE: usize = (4 << 20) + 1000;
const SHORT: Duration = Duration::from_secs(5);

struct Fx {
    content: Content,
    data: Vec<u8>,
    pieces: u32,
}

fn fx(size: usize) -> Fx {
    let content = Content::make(false, size, PIECE, vec![]);
    let data = std::fs::read(content.save_path.join("single.bin")).unwrap();
    let pieces = content.torrent.info.pieces.len() as u32;
    Fx {
        content,
        data,
        pieces,
    }
}

impl Fx {
    fn seed(&self, args: &[&str]) -> Bitloop {
        Bitloop::seed(&self.content.torrent_path, &self.content.save_path, args)
    }

    fn peer(&self, addr: SocketAddr, n: u32, fast: bool) -> WirePeer {
        WirePeer::connect(
            addr,
            self.content.torrent.info_hash,
            self.pieces,
            peer_id(n),
            fast,
        )
    }

    /// A connected peer that said what it has (nothing) and is unchoked.
    fn unchoked(&self, addr: SocketAddr, n: u32, fast: bool) -> WirePeer {
        let mut peer = self.peer(addr, n, fast);
        let hello: &[Message] = if fast {
            &[Message::HaveNone, Message::Interested]
        } else {
            &[Message::Interested]
        };
        peer.send(hello);
        peer.greeting(true);
        peer
    }

    fn assert_block(&self, b: BlockRef, data: &[u8]) {
        assert!(data == bytes_of(&self.data, PIECE, b), "{b:?}: wrong bytes");
    }
}

/// `n` distinct valid requests: every length of the first blocks.
fn many_requests(n: usize) -> Vec<BlockRef> {
    (1..=BLOCK).map(|length| block(0, 0, length)).take(n).collect()
}

// ------------------------------------------------------------------ scenarios

/// Requests no valid peer makes close the connection: past the last piece, past
/// the end of a piece or of the short last piece, over 16 KiB, empty.
fn bad_ranges_are_closed(fx: &Fx, addr: SocketAddr, first_id: u32) -> usize {
    let last = fx.pieces - 1;
    let cases = [
        ("past the last piece", block(fx.pieces, 0, 1)),
        ("past the end of a piece", block(0, PIECE as u32 - 1, 2)),
        ("past the end of the last piece", block(last, 0, BLOCK)),
        ("over 16 KiB", block(0, 0, BLOCK + 1)),
        ("empty", block(0, 0, 0)),
    ];
    for (i, (what, bad)) in cases.iter().enumerate() {
        let mut peer = fx.peer(addr, first_id + i as u32, true);
        peer.send(&[Message::HaveNone, Message::Request(*bad)]);
        peer.expect_closed(SHORT, what);
    }
    cases.len()
}

/// A choked Fast peer gets a reject outside its allowed-fast set and the block
/// inside it; a choked plain peer's requests are dropped without a word.
fn choked_requests_are_refused_outside_the_allowed_fast_set(fx: &Fx, addr: SocketAddr, id: u32) {
    let mut peer = fx.peer(addr, id, true);
    peer.send(&[Message::HaveNone]); // not interested: it stays choked
    let offered = peer.greeting(false);
    assert!(!offered.is_empty(), "a Fast peer is offered allowed-fast pieces");
    let outside = (0..fx.pieces).find(|p| !offered.contains(p)).unwrap();
    let (no, yes) = (block(outside, 0, BLOCK), block(offered[0], 0, BLOCK));
    peer.send(&[Message::Request(no), Message::Request(yes)]);
    let mut answers = Vec::new();
    while answers.len() < 2 {
        match peer.next(SHORT) {
            Next::Message(Got::Reject(b)) => answers.push((b, None)),
            Next::Message(Got::Piece(b, data)) => answers.push((b, Some(data))),
            Next::Message(Got::Unchoke) => panic!("a peer that is not interested was unchoked"),
            Next::Message(_) => {}
            other => panic!("choked requests: {other:?} after {answers:?}"),
        }
    }
    assert_eq!(answers[0], (no, None), "rejected outside the allowed-fast set");
    assert_eq!(answers[1].0, yes, "served inside it");
    fx.assert_block(yes, answers[1].1.as_ref().unwrap());

    let mut plain = fx.peer(addr, id + 1, false);
    let asks: Vec<Message> = (0..3).map(|p| Message::Request(block(p, 0, BLOCK))).collect();
    plain.send(&asks);
    let heard = plain.collect_for(Duration::from_millis(800));
    assert!(
        heard
            .iter()
            .all(|g| !matches!(g, Got::Piece(..) | Got::Reject(_))),
        "a choked plain peer hears nothing about its requests: {heard:?}"
    );
    // Still connected and served once it plays by the rules.
    plain.send(&[Message::Interested]);
    plain.greeting(true);
    let b = block(1, 0, BLOCK);
    plain.send(&[Message::Request(b)]);
    let data = plain.until(SHORT, "the block", |g| match g {
        Got::Piece(got, data) if *got == b => Some(data.clone()),
        _ => None,
    });
    fx.assert_block(b, &data);
}

/// 10,000 requests from an unchoked Fast peer at once: each is answered exactly
/// once, at least our `reqq` of them with the block and (at least `min_rejects`
/// of) the rest with a reject; the connection stays open.
fn a_fast_flood_is_answered_once_each(fx: &Fx, addr: SocketAddr, id: u32, min_rejects: usize) {
    let mut peer = fx.unchoked(addr, id, true);
    let flood = many_requests(10_000);
    let messages: Vec<Message> = flood.iter().map(|b| Message::Request(*b)).collect();
    peer.send(&messages);
    let (mut served, mut rejected) = (HashSet::new(), HashSet::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while served.len() + rejected.len() < flood.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match peer.next(left) {
            Next::Message(Got::Piece(b, data)) => {
                fx.assert_block(b, &data);
                assert!(served.insert(b) && !rejected.contains(&b), "{b:?} answered twice");
            }
            Next::Message(Got::Reject(b)) => {
                assert!(rejected.insert(b) && !served.contains(&b), "{b:?} answered twice");
            }
            Next::Message(_) => {}
            other => panic!(
                "flood: {other:?} after {} served, {} rejected",
                served.len(),
                rejected.len()
            ),
        }
    }
    assert!(served.len() >= OUR_REQQ, "served {} (< reqq)", served.len());
    assert!(
        rejected.len() >= min_rejects,
        "{} rejected, {} served",
        rejected.len(),
        served.len()
    );
    // Still open: one more request is served.
    let b = block(2, 0, BLOCK);
    peer.send(&[Message::Request(b)]);
    peer.until(SHORT, "a block after the flood", |g| {
        matches!(g, Got::Piece(got, _) if *got == b).then_some(())
    });
}

/// Without Fast there is no reject: a peer that floods past our queue is closed.
fn a_plain_flood_is_closed(fx: &Fx, addr: SocketAddr, id: u32) {
    let mut peer = fx.unchoked(addr, id, false);
    let messages: Vec<Message> = many_requests(10_000).into_iter().map(Message::Request).collect();
    peer.send_bytes(&encode_all(&messages));
    peer.expect_closed(Duration::from_secs(20), "a plain peer flooding requests");
}

/// Requests, cancels of most of them, and 10,000 cancels of blocks never asked
/// for, in one write: only what was not cancelled is served, nothing is rejected,
/// and the connection stays open.
fn a_cancel_storm_changes_nothing(fx: &Fx, addr: SocketAddr, id: u32) {
    let mut peer = fx.unchoked(addr, id, true);
    let asked: Vec<BlockRef> = (10..20).map(|p| block(p, 0, BLOCK)).collect();
    let mut messages: Vec<Message> = asked.iter().map(|b| Message::Request(*b)).collect();
    messages.extend(asked[2..].iter().map(|b| Message::Cancel(*b)));
    messages.extend(
        many_requests(10_000)
            .into_iter()
            .map(|b| Message::Cancel(block(3, 1, b.length))),
    );
    peer.send(&messages);
    let heard = peer.collect_for(Duration::from_secs(2));
    let pieces: Vec<BlockRef> = heard
        .iter()
        .filter_map(|g| match g {
            Got::Piece(b, data) => {
                fx.assert_block(*b, data);
                Some(*b)
            }
            _ => None,
        })
        .collect();
    assert_eq!(pieces, asked[..2], "only what was not cancelled");
    assert!(
        !heard.iter().any(|g| matches!(g, Got::Reject(_))),
        "a cancel is not rejected: {heard:?}"
    );
    let b = block(4, 0, BLOCK);
    peer.send(&[Message::Request(b)]);
    peer.until(SHORT, "a block after the storm", |g| {
        matches!(g, Got::Piece(got, _) if *got == b).then_some(())
    });
}

/// A socket with a tiny receive buffer, so that what the seeder sends stays on
/// its side once we stop reading.
fn small_window(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect_timeout(&addr.into(), SHORT).unwrap();
    socket.into()
}

/// `n` distinct valid requests spread over the pieces.
fn spread_requests(fx: &Fx, n: usize) -> Vec<u8> {
    let per_piece = BLOCK as usize;
    let asks: Vec<Message> = (0..n)
        .map(|i| {
            let piece = (i / per_piece) as u32 % (fx.pieces - 1);
            Message::Request(block(piece, 0, (i % per_piece) as u32 + 1))
        })
        .collect();
    encode_all(&asks)
}

/// A peer that waits to be unchoked, asks for our `reqq` of blocks, and never
/// reads again. Returned so that the caller decides when it goes.
fn stops_reading_when_unchoked(fx: &Fx, addr: SocketAddr, id: u32) -> WirePeer {
    let hash = fx.content.torrent.info_hash;
    let mut peer = WirePeer::on(small_window(addr), hash, fx.pieces, peer_id(id), true);
    peer.send(&[Message::HaveNone, Message::Interested]);
    peer.greeting(true);
    // Two blocks a piece: our `reqq` of distinct blocks.
    let asks: Vec<Message> = (0..OUR_REQQ as u32)
        .map(|i| Message::Request(block(i / 2, (i % 2) * BLOCK, BLOCK)))
        .collect();
    peer.send(&asks);
    peer
}

/// A choked peer that floods `requests` requests and never reads a byte, not even
/// the handshake: every answer is a reject it leaves unread.
fn floods_and_never_reads(fx: &Fx, addr: SocketAddr, id: u32, requests: usize) -> TcpStream {
    let mut stream = small_window(addr);
    let mut bytes = handshake_bytes(fx.content.torrent.info_hash, peer_id(id), true);
    bytes.extend(encode_all(&[Message::HaveNone]));
    bytes.extend(spread_requests(fx, requests));
    stream.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    // Our own send buffer may fill once the seeder stops reading us: that is its
    // right; what it queued in return is what matters.
    let _ = stream.write_all(&bytes);
    stream
}

/// Samples the seeder's resident memory every 20 ms until stopped; the peak.
struct RssPeak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssPeak {
    fn start(pid: u32) -> RssPeak {
        let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                    return; // it exited
                };
                let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:"));
                let kib = rss.and_then(|v| v.split_whitespace().next()?.parse().ok());
                p.fetch_max(kib.unwrap_or(0), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20)); // sampling, not synchronising
            }
        });
        RssPeak { stop, peak, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        common::bounded::join_within(self.thread, SHORT, "the RSS sampler");
        self.peak.load(Ordering::Relaxed)
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn requests_outside_a_piece_or_over_16_kib_close_the_connection() {
    let fx = fx(SIZE);
    let seeder = fx.seed(&["--json"]);
    let closed = bad_ranges_are_closed(&fx, seeder.addr(), 100);
    // The seeder is none the worse: an honest peer is served.
    let mut honest = fx.unchoked(seeder.addr(), 200, true);
    let b = block(0, 0, BLOCK);
    honest.send(&[Message::Request(b)]);
    honest.until(SHORT, "a block", |g| {
        matches!(g, Got::Piece(got, _) if *got == b).then_some(())
    });
    drop(honest);
    let summary = seeder.stop(Duration::from_secs(10)).json();
    assert_eq!(summary["torrents"][0]["violations"], closed as u64, "{summary}");
}

#[test]
fn choked_requests_outside_the_allowed_fast_set_are_refused() {
    let fx = fx(SIZE);
    let seeder = fx.seed(&[]);
    choked_requests_are_refused_outside_the_allowed_fast_set(&fx, seeder.addr(), 300);
}

/// The seeder's upload is limited (1 MiB/s, 64 blocks a second) so that it can
/// serve only a handful of blocks while it reads the 10,000 requests: what it
/// queued is then our `reqq`, and the rest must be rejected.
#[test]
fn ten_thousand_requests_from_a_fast_peer_queue_our_reqq_and_the_rest_are_rejected() {
    let fx = fx(SIZE);
    let seeder = fx.seed(&["--max-upload-rate", "1M"]);
    a_fast_flood_is_answered_once_each(&fx, seeder.addr(), 400, 10_000 - OUR_REQQ - 64);
}

#[test]
fn ten_thousand_requests_from_a_plain_peer_close_it() {
    let fx = fx(SIZE);
    let seeder = fx.seed(&[]);
    a_plain_flood_is_closed(&fx, seeder.addr(), 500);
}

#[test]
fn a_cancel_storm_leaves_only_the_requests_not_cancelled() {
    let fx = fx(SIZE);
    let seeder = fx.seed(&[]);
    a_cancel_storm_changes_nothing(&fx, seeder.addr(), 600);
}

/// A leecher that holds half the pieces (the others are zeros on disk, found bad
/// by its check) rejects requests for what it lacks from a Fast peer, drops them
/// from a plain one, and serves what it has to both.
#[test]
fn requests_for_pieces_we_lack_are_rejected_or_dropped() {
    let fx = fx(SIZE);
    let output = fx.content.dir.path().join("partial");
    let mut half = fx.data.clone();
    for piece in (1..fx.pieces as usize).step_by(2) {
        let start = piece * PIECE as usize;
        let end = (start + PIECE as usize).min(half.len());
        half[start..end].fill(0);
    }
    std::fs::create_dir_all(&output).unwrap();
    std::fs::write(output.join("single.bin"), &half).unwrap();
    let leecher = Bitloop::download(&fx.content.torrent_path, &output, &["--timeout", "120"]);
    let hash = fx.content.torrent.info_hash;
    // It turns peers away until its check is done.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut fast = loop {
        if let Some(peer) = WirePeer::try_connect(leecher.addr(), hash, fx.pieces, peer_id(700), true) {
            break peer;
        }
        assert!(Instant::now() < deadline, "the partial leecher never took a peer");
        std::thread::sleep(Duration::from_millis(50)); // polling another process's check
    };
    fast.send(&[Message::HaveNone, Message::Interested]);
    let bits = fast.until(SHORT, "its bitfield", |g| match g {
        Got::Bitfield(bits) => Some(bits.clone()),
        _ => None,
    });
    for p in 0..fx.pieces {
        let has = bits[p as usize / 8] & (0x80 >> (p % 8)) != 0;
        assert_eq!(has, p % 2 == 0, "piece {p} in its bitfield");
    }
    fast.greeting(true);
    let (lacking, had) = (block(3, 0, BLOCK), block(4, 0, BLOCK));
    fast.send(&[Message::Request(lacking), Message::Request(had)]);
    let reject = fast.until(SHORT, "an answer", |g| match g {
        Got::Reject(b) => Some(*b),
        Got::Piece(b, _) => panic!("served {b:?} before rejecting"),
        _ => None,
    });
    assert_eq!(reject, lacking);
    let data = fast.until(SHORT, "the block it has", |g| match g {
        Got::Piece(b, data) if *b == had => Some(data.clone()),
        _ => None,
    });
    fx.assert_block(had, &data);

    let mut plain = fx.peer(leecher.addr(), 701, false);
    plain.send(&[Message::Interested]);
    plain.greeting(true);
    plain.send(&[Message::Request(lacking), Message::Request(had)]);
    let heard = plain.until(SHORT, "the block it has", |g| match g {
        Got::Piece(b, data) if *b == had => Some(data.clone()),
        Got::Piece(b, _) => panic!("served {b:?}, which it lacks"),
        _ => None,
    });
    fx.assert_block(had, &heard);
}

/// Slack in the seeder's resident memory for its own buffers while it serves
/// (the loop's read scratch, one serving round of blocks): a queue of our `reqq`
/// blocks for one peer that does not read would be 8 MiB alone.
const RSS_SLACK_KIB: u64 = 4 << 10;

/// Peers that stop reading once unchoked hold the seeder's write queue to a few
/// blocks each (`MAX_UNSENT`), not the `OUR_REQQ` blocks each asked for, and an
/// honest peer beside them is served. Each silent peer's kernel buffers take some
/// 2.8 MiB of the 8 MiB it asks for and the rest, 5.2 MiB, waits as requests: had
/// bitloop read those blocks into its queues, its RSS would grow by 15 MiB, against
/// 2 MiB allowed after the buffers of serving were warmed up by the honest peer.
#[test]
fn peers_that_stop_reading_hold_a_bounded_queue_and_others_are_served() {
    let fx = fx(SIZE);
    let mut seeder = fx.seed(&["--json"]);
    let mut honest = fx.unchoked(seeder.addr(), 910, true);
    let fetch = |honest: &mut WirePeer, pieces: std::ops::Range<u32>| {
        let asked: Vec<BlockRef> = pieces.map(|i| block(i, 0, BLOCK)).collect();
        honest.send(&asked.iter().map(|b| Message::Request(*b)).collect::<Vec<_>>());
        for b in &asked {
            let data = honest.until(SHORT, "a block beside the silent peers", |g| match g {
                Got::Piece(got, data) if got == b => Some(data.clone()),
                _ => None,
            });
            fx.assert_block(*b, &data);
        }
    };
    fetch(&mut honest, 0..64);
    let base = proc_status_kib(seeder.pid(), "VmRSS");
    let sampler = RssPeak::start(seeder.pid());
    let silent: Vec<WirePeer> = (0..3)
        .map(|i| stops_reading_when_unchoked(&fx, seeder.addr(), 900 + i))
        .collect();
    fetch(&mut honest, 64..128);
    let peak = sampler.finish();
    eprintln!("seeder RSS: {base} KiB before the silent peers, {peak} KiB at most");
    assert!(
        peak < base + 2048,
        "RSS grew from {base} to {peak} KiB with three peers not reading"
    );
    drop((silent, honest));
    seeder.wait_no_peers(Duration::from_secs(15));
    let summary = seeder.stop(Duration::from_secs(10)).json();
    // The honest peer got all it asked for. (What the silent ones got is what
    // their connections' kernel buffers took, a few MiB on loopback: the bound on
    // what bitloop itself holds is the RSS above.)
    for peer in summary["peers"].as_array().unwrap() {
        let uploaded = peer["uploaded"].as_u64().unwrap();
        eprintln!("{}: {uploaded} bytes", peer["peer_id"]);
        if peer["peer_id"].as_str().unwrap().ends_with("0910") {
            assert_eq!(uploaded, 128 * u64::from(BLOCK), "{summary}");
        }
    }
}

/// A choked peer that floods requests and never reads the rejects: they must not
/// pile up in its write queue (the reactor's limit is 16 MiB per stream).
#[test]
fn a_peer_that_never_reads_its_rejects_holds_a_bounded_queue() {
    let fx = fx(SIZE);
    let seeder = fx.seed(&[]);
    let base = proc_status_kib(seeder.pid(), "VmRSS");
    let sampler = RssPeak::start(seeder.pid());
    let flooder = floods_and_never_reads(&fx, seeder.addr(), 920, 2_000_000);
    let mut honest = fx.unchoked(seeder.addr(), 921, true);
    let b = block(1, 0, BLOCK);
    honest.send(&[Message::Request(b)]);
    honest.until(SHORT, "a block", |g| {
        matches!(g, Got::Piece(got, _) if *got == b).then_some(())
    });
    let peak = sampler.finish();
    eprintln!("seeder RSS: {base} KiB at start, {peak} KiB at most");
    assert!(
        peak < base + RSS_SLACK_KIB,
        "RSS grew from {base} to {peak} KiB for one peer not reading its rejects"
    );
    drop(flooder);
}

/// Everything at once beside an honest libtorrent leecher: peers that stop
/// reading (two unchoked, one choked that requests a few hundred more than it
/// reads), then each scenario in turn while the leecher downloads. The seeder's
/// upload is limited to 8 MiB/s so that the leecher's 32 MiB take a few seconds
/// and overlap all of it.
#[test]
fn hostile_peers_beside_an_honest_libtorrent_leecher_who_still_finishes() {
    let fx = fx((32 << 20) + 1000); // a short last piece, as SIZE has
    let seeder = fx.seed(&["--max-upload-rate", "8M", "--json"]);
    let addr = seeder.addr();
    let base = proc_status_kib(seeder.pid(), "VmRSS");
    let sampler = RssPeak::start(seeder.pid());
    let silent = (
        stops_reading_when_unchoked(&fx, addr, 800),
        stops_reading_when_unchoked(&fx, addr, 801),
        floods_and_never_reads(&fx, addr, 802, 4 * OUR_REQQ),
    );
    let leech_dir = fx.content.dir.path().join("leech");
    let mut leecher = Leecher::start(
        &fx.content.torrent_path,
        &leech_dir,
        &[addr],
        false,
        "honest leecher",
    );
    let closed = bad_ranges_are_closed(&fx, addr, 810);
    choked_requests_are_refused_outside_the_allowed_fast_set(&fx, addr, 820);
    // 32 MiB at 8 MiB/s cannot be done in the second or so that took.
    assert!(
        leecher.running(),
        "the leecher is still downloading beside the hostile peers"
    );
    a_cancel_storm_changes_nothing(&fx, addr, 830);
    a_plain_flood_is_closed(&fx, addr, 840);
    a_fast_flood_is_answered_once_each(&fx, addr, 850, 0);
    leecher.wait_complete(Duration::from_secs(120));
    fx.content.assert_identical(&leech_dir);
    let peak = sampler.finish();
    eprintln!("seeder RSS: {base} KiB at start, {peak} KiB at most");
    assert!(peak < base + RSS_SLACK_KIB, "RSS grew from {base} to {peak} KiB");
    drop(silent);
    let summary = seeder.stop(Duration::from_secs(10)).json();
    let violations = summary["torrents"][0]["violations"].as_u64().unwrap();
    // The bad ranges, and the plain flood.
    assert_eq!(violations, closed as u64 + 1, "{summary}");
}
