//! `bitloop demo`: a whole swarm on one loop in one thread, the teaching example
//! of the design.
//!
//! It writes a payload into a temporary folder, makes a torrent of it, and runs a
//! seeder and three leechers as four [`Session`]s on **one** reactor, talking to each
//! other over loopback like four programs would. The leechers know every address,
//! so they trade pieces among themselves as well as taking them from the seeder.
//! When every leecher is complete, each copy is compared with the original, the
//! sessions close, the loop drains, and `finish()` proves that every handle is gone.
//!
//! Everything the design promises is visible here: one thread, one table of
//! handles, owner tags that say which session an event is for, and a shutdown that
//! ends with "0 remaining".

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::session::{AddOptions, Session, SessionConfig, SessionEvent, Source, TorrentKey};
use super::Owner;
use crate::metainfo::create::{create_torrent, CreateOptions};
use crate::metainfo::Metainfo;
use crate::reactor::{Event, HandleId, Handler, Reactor, Report, RunMode};
use crate::torrent::TorrentConfig;
use crate::tracker::PeerId;

/// The demo's timer for status lines.
const STATUS: Owner = Owner::App(1);

/// How big a swarm, and how to show it.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Bytes of payload.
    pub size: u64,
    pub leechers: usize,
    /// Each member's upload limit, bytes per second.
    pub upload_rate: Option<u64>,
    /// Called with one status line per session, every half second or so.
    pub interval: Duration,
}

/// A folder that removes itself when dropped, however the demo returns (Ctrl+C
/// included; a panic, a bug, aborts the release build and leaves it).
struct TempFolder(PathBuf);

impl Drop for TempFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One member of the swarm: its session and its one torrent.
struct Member {
    name: String,
    session: Session,
    torrent: TorrentKey,
    checked: bool,
    complete: bool,
    /// Bytes received from peers that have left: from the seeder, from others.
    gone: (u64, u64),
}

/// The swarm; implements [`Handler`]: every event goes to the session its owner
/// tag names.
struct Swarm {
    members: Vec<Member>,
    signal: Option<HandleId>,
    status: Option<HandleId>,
    interrupted: bool,
    lines: Vec<String>,
}

impl Handler<Owner> for Swarm {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        match owner {
            // Ctrl+C; the watch's own `Closed` at shutdown is not one.
            Owner::Signal if matches!(event, Event::Signal(_)) => self.interrupted = true,
            Owner::Signal => {}
            STATUS => self.lines = self.status_lines(),
            Owner::App(_) => {}
            // Session keys are indexes into `members`.
            _ => {
                if let Some(member) = owner.session().and_then(|s| self.members.get_mut(s as usize)) {
                    member.session.on_event(rx, id, owner, event);
                }
            }
        }
        // What the sessions report: checks done, downloads complete, peers gone.
        let seeder = self.members.first().map(|m| m.session.peer_id());
        for member in &mut self.members {
            while let Some(event) = member.session.poll_event() {
                match event {
                    SessionEvent::Checked(_) => member.checked = true,
                    SessionEvent::Completed(_) => member.complete = true,
                    SessionEvent::PeerGone {
                        peer_id, downloaded, ..
                    } if Some(peer_id) == seeder => member.gone.0 += downloaded,
                    SessionEvent::PeerGone { downloaded, .. } => member.gone.1 += downloaded,
                    SessionEvent::Failed(_, why) => {
                        log::warn!("{}: {why}", member.name);
                        self.interrupted = true;
                    }
                }
            }
        }
    }

    fn on_deferred(&mut self, rx: &mut Reactor<Owner>, owner: Owner) {
        if let Some(member) = owner.session().and_then(|s| self.members.get_mut(s as usize)) {
            member.session.on_deferred(rx);
        }
    }
}

impl Swarm {
    fn done(&self) -> bool {
        self.interrupted || self.members.iter().all(|m| m.complete)
    }

    /// One line per member: progress, rates, and where a leecher's bytes came from.
    fn status_lines(&self) -> Vec<String> {
        let seeder_id = self.members[0].session.peer_id();
        self.members
            .iter()
            .map(|m| {
                let torrent = m.session.torrent(m.torrent).expect("one torrent each");
                let stats = torrent.stats();
                let total = torrent.total_length().unwrap_or(0).max(1);
                let have = total - torrent.left().unwrap_or(total);
                let (from_seeder, from_leechers) = sources(m, seeder_id);
                format!(
                    "{:<10} {:5.1}%  down {:6.1} MiB (from seeder {:.1}, from leechers {:.1})  up {:6.1} MiB",
                    m.name,
                    have as f64 * 100.0 / total as f64,
                    mib(stats.downloaded),
                    mib(from_seeder),
                    mib(from_leechers),
                    mib(stats.uploaded),
                )
            })
            .collect()
    }
}

/// Bytes a member received from the seeder and from everyone else: from peers
/// still connected, and from those that left (complete leechers let each other go).
fn sources(member: &Member, seeder: PeerId) -> (u64, u64) {
    let mut split = member.gone;
    let torrent = member.session.torrent(member.torrent).expect("one torrent each");
    for (_, peer) in torrent.pool().iter() {
        if let Some(session) = peer.session() {
            if session.peer_id == seeder {
                split.0 += session.downloaded;
            } else {
                split.1 += session.downloaded;
            }
        }
    }
    split
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// What the demo showed.
#[derive(Debug)]
pub struct DemoReport {
    pub elapsed: Duration,
    /// Each leecher's name, whether its copy equals the original, and bytes it got
    /// from the seeder and from other leechers.
    pub copies: Vec<(String, bool, u64, u64)>,
    pub interrupted: bool,
    /// The loop's `finish()`: every handle closed, or the ones alive named.
    pub report: Result<Report, String>,
}

/// Runs the demo. `ready` is called once Ctrl+C is ours to handle (before that it
/// would kill the process as usual), so that is where to say hello; `show` gets
/// the status lines as they change.
pub fn run(
    options: &DemoOptions,
    ready: impl FnOnce(),
    mut show: impl FnMut(&[String]),
) -> Result<DemoReport, String> {
    let started = Instant::now();
    let mut rx: Reactor<Owner> = Reactor::new().map_err(|e| e.to_string())?;
    let mut swarm = Swarm {
        members: Vec::new(),
        signal: None,
        status: None,
        interrupted: false,
        lines: Vec::new(),
    };
    // Signals first: a Ctrl+C while the payload is written is then only noted (the
    // loop sees it at its first turn), and the folder is still removed.
    use signal_hook::consts::{SIGINT, SIGTERM};
    let watch = rx.signal_watch(&[SIGINT, SIGTERM], Owner::Signal);
    swarm.signal = Some(watch.map_err(|e| e.to_string())?);
    ready();
    let folder = TempFolder(std::env::temp_dir().join(format!("bitloop-demo-{}", std::process::id())));
    let original = folder.0.join("seeder").join("demo.bin");
    let prepared = write_payload(&original, options.size)
        .map_err(|e| format!("{}: {e}", original.display()))
        .and_then(|()| make_torrent(&original));
    let started_swarm = prepared.and_then(|torrent| start(&mut rx, &mut swarm, &folder.0, &torrent, options));
    if let Err(e) = started_swarm {
        rx.close_all_and_drain(&mut swarm).map_err(|e| e.to_string())?;
        let _ = rx.finish();
        return Err(e);
    }
    // The loop: one iteration at a time until every leecher is complete or Ctrl+C.
    while !swarm.done() {
        rx.run(&mut swarm, RunMode::Once).map_err(|e| e.to_string())?;
        if !swarm.lines.is_empty() {
            show(&std::mem::take(&mut swarm.lines));
        }
    }
    show(&swarm.status_lines());
    // Every copy is compared with the original before anything closes.
    let seeder = swarm.members[0].session.peer_id();
    let mut copies = Vec::new();
    for (i, member) in swarm.members.iter().enumerate().skip(1) {
        let copy = folder.0.join(format!("leecher-{i}")).join("demo.bin");
        let same = member.complete && same_bytes(&original, &copy).unwrap_or(false);
        let (from_seeder, from_leechers) = sources(member, seeder);
        copies.push((member.name.clone(), same, from_seeder, from_leechers));
    }
    // Shutdown: each session closes what it owns, the loop closes the rest (our
    // timers and the signal watch) and drains, and finish() proves it empty.
    for member in &mut swarm.members {
        member.session.close(&mut rx);
    }
    rx.close_all_and_drain(&mut swarm).map_err(|e| e.to_string())?;
    let report = rx.finish().map_err(|busy| busy.to_string());
    Ok(DemoReport {
        elapsed: started.elapsed(),
        copies,
        interrupted: swarm.interrupted,
        report,
    })
}

/// Opens the seeder and the leechers, each a session of its own on this loop.
fn start(
    rx: &mut Reactor<Owner>,
    swarm: &mut Swarm,
    folder: &Path,
    torrent: &Metainfo,
    options: &DemoOptions,
) -> Result<(), String> {
    let status = rx.timer(STATUS).map_err(|e| e.to_string())?;
    rx.timer_start(status, options.interval, Some(options.interval))
        .map_err(|e| e.to_string())?;
    swarm.status = Some(status);
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for i in 0..=options.leechers {
        let config = SessionConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            // Leechers keep serving once complete, so the others can still trade.
            torrent: TorrentConfig {
                seed: true,
                ..TorrentConfig::default()
            },
            upload_rate: options.upload_rate,
            ..SessionConfig::default()
        };
        let mut session = Session::new(rx, i as u16, config)?;
        let (name, output) = match i {
            0 => ("seeder".to_string(), folder.join("seeder")),
            i => (format!("leecher {i}"), folder.join(format!("leecher-{i}"))),
        };
        let key = session.add_torrent(rx, Source::Torrent(torrent), AddOptions::new(output))?;
        addrs.push(SocketAddr::from(([127, 0, 0, 1], session.port())));
        swarm.members.push(Member {
            name,
            session,
            torrent: key,
            checked: false,
            complete: false,
            gone: (0, 0),
        });
        if i == 0 {
            // The seeder checks its data first (a slice per iteration); peers that
            // came now would be turned away, so the leechers wait for it.
            while !swarm.members[0].checked && !swarm.interrupted {
                rx.run(swarm, RunMode::Once).map_err(|e| e.to_string())?;
            }
        }
    }
    // Every leecher is told every other member's address; the seeder waits for them.
    for (i, member) in swarm.members.iter_mut().enumerate().skip(1) {
        for (j, addr) in addrs.iter().enumerate() {
            if j != i {
                member.session.add_peer(rx, member.torrent, *addr);
            }
        }
    }
    Ok(())
}

/// `size` bytes of cheap pseudo-random data (xorshift), written in 1 MiB chunks.
fn write_payload(path: &Path, size: u64) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(path.parent().expect("a folder"))?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut rng = crate::random::Xorshift::new(crate::random::random_u64());
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            word.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.flush()
}

fn make_torrent(original: &Path) -> Result<Metainfo, String> {
    let options = CreateOptions {
        created_by: Some("bitloop demo".into()),
        ..CreateOptions::default()
    };
    let bytes = create_torrent(original, &options, &mut |_, _| {}).map_err(|e| e.to_string())?;
    Metainfo::parse(&bytes).map_err(|e| e.to_string())
}

/// Whether two files hold the same bytes (read in chunks, never whole).
fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    let (mut a, mut b) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(b.read(&mut y[..1])? == 0);
        }
        b.read_exact(&mut y[..n])?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}
