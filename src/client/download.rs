//! A download session: one torrent, the tracker client, signals and progress on one
//! loop, from start to a proven-empty loop.
//!
//! Stopping (after completion, on Ctrl+C, or after a failure) runs in two steps:
//! 1. graceful, under one deadline ([`DownloadOptions::stop_deadline`]): peers are
//!    closed, `stopped` goes to every tracker that was told `started`;
//! 2. the rest is closed (`TrackerClient::close`, signals, timers), then the loop
//!    closes whatever is left and drains, and `finish()` proves it empty.
//!
//! A second Ctrl+C skips what remains of step 1.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{debug, info};

use super::torrent::{Torrent, TorrentConfig, TorrentEvent};
use super::{Owner, TrackerClient, TrackerConfig};
use crate::metainfo::Metainfo;
use crate::reactor::{Event, HandleId, Handler, Reactor, Report, RunMode};
use crate::tracker::PeerId;

const PROGRESS: Owner = Owner::App(1);
const STALL: Owner = Owner::App(2);
const STOP_DEADLINE: Owner = Owner::App(3);

/// How to run a download.
#[derive(Clone, Debug)]
pub struct DownloadOptions {
    pub output: PathBuf,
    /// Where to listen for incoming peers; port 0 picks one. `None`: do not listen.
    pub listen: Option<SocketAddr>,
    /// Peers to connect to besides those trackers give.
    pub peers: Vec<SocketAddr>,
    /// Give up when no data arrives for this long.
    pub timeout: Duration,
    /// Progress on stderr (a line that updates on a terminal, periodic lines otherwise).
    pub progress: bool,
    pub watch_signals: bool,
    /// The whole graceful part of stopping must fit in this.
    pub stop_deadline: Duration,
    pub torrent: TorrentConfig,
    pub trackers: TrackerConfig,
}

impl DownloadOptions {
    pub fn new(output: PathBuf) -> DownloadOptions {
        DownloadOptions {
            output,
            listen: Some(SocketAddr::from(([0, 0, 0, 0], 0))),
            peers: Vec::new(),
            timeout: Duration::from_secs(300),
            progress: false,
            watch_signals: true,
            stop_deadline: Duration::from_secs(3),
            torrent: TorrentConfig::default(),
            trackers: TrackerConfig::default(),
        }
    }
}

/// How a download ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// Stopped by SIGINT or SIGTERM.
    Interrupted,
    Failed(String),
}

enum Phase {
    Running,
    /// Every piece verified: `completed` is being announced before we stop.
    Completing,
    /// Graceful stop in progress, with the outcome to report.
    Stopping(Outcome),
    Done(Outcome),
}

/// The whole session; implements [`Handler`] for the loop.
pub struct Download {
    trackers: TrackerClient,
    torrent: Torrent,
    name: String,
    phase: Phase,
    signal: Option<HandleId>,
    progress: Option<HandleId>,
    stall: Option<HandleId>,
    stop_deadline: Option<HandleId>,
    options: DownloadOptions,
    started: Instant,
    bytes_at_last_check: u64,
    terminal: bool,
    interrupts: u32,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Download {
    /// Prepares storage, listens, announces and connects.
    pub fn start(
        rx: &mut Reactor<Owner>,
        metainfo: &Metainfo,
        options: DownloadOptions,
    ) -> Result<Download, String> {
        let peer_id = PeerId::generate();
        let mut trackers = TrackerClient::new(options.trackers.clone(), 0);
        // Signals first: from the first announce on, Ctrl+C must mean a graceful stop.
        let signal = if options.watch_signals {
            use signal_hook::consts::{SIGINT, SIGTERM};
            Some(rx.signal_watch(&[SIGINT, SIGTERM], Owner::Signal).map_err(err)?)
        } else {
            None
        };
        // Listen first, so trackers learn the real port.
        let listener = match options.listen {
            Some(addr) => Some(
                rx.tcp_listen(addr, Owner::Listener(0))
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))?,
            ),
            None => None,
        };
        let port = match listener {
            Some(listener) => rx.local_addr(listener).map_err(err)?.port(),
            None => 6881,
        };
        let mut torrent = match Torrent::new(
            0,
            metainfo,
            &options.output,
            peer_id,
            port,
            options.torrent.clone(),
            rx.now(),
        ) {
            Ok(torrent) => torrent,
            Err(e) => {
                if let Some(listener) = listener {
                    rx.close(listener);
                }
                return Err(e.to_string());
            }
        };
        torrent.start(rx, &mut trackers, listener);
        for &peer in &options.peers {
            torrent.add_peer(rx, peer);
        }
        let mut download = Download {
            trackers,
            torrent,
            name: metainfo.info.name.clone(),
            phase: Phase::Running,
            signal,
            progress: None,
            stall: None,
            stop_deadline: None,
            terminal: std::io::stderr().is_terminal(),
            options,
            started: Instant::now(),
            bytes_at_last_check: 0,
            interrupts: 0,
        };
        if download.options.progress {
            let every = if download.terminal {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(5)
            };
            let timer = rx.timer(PROGRESS).map_err(err)?;
            rx.timer_start(timer, every, Some(every)).map_err(err)?;
            download.progress = Some(timer);
        }
        let stall = rx.timer(STALL).map_err(err)?;
        let timeout = download.options.timeout;
        rx.timer_start(stall, timeout, Some(timeout)).map_err(err)?;
        download.stall = Some(stall);
        download.check(rx);
        Ok(download)
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.phase {
            Phase::Done(outcome) => Some(outcome),
            _ => None,
        }
    }

    pub fn torrent(&self) -> &Torrent {
        &self.torrent
    }

    pub fn trackers(&self) -> &TrackerClient {
        &self.trackers
    }

    /// Starts stopping with `outcome` (the first reason wins).
    pub fn stop(&mut self, rx: &mut Reactor<Owner>, outcome: Outcome) {
        let outcome = match self.phase {
            Phase::Running => outcome,
            // A complete download stays complete, however the stop was asked for.
            Phase::Completing => Outcome::Completed,
            Phase::Stopping(_) | Phase::Done(_) => return,
        };
        if let Some(timer) = self.stop_deadline.take() {
            rx.close(timer);
        }
        info!("stopping: {outcome:?}");
        let announces = self.torrent.stop(rx, &mut self.trackers);
        self.phase = Phase::Stopping(outcome);
        debug!(
            "graceful stop: {announces} stopped announces, deadline {:?}",
            self.options.stop_deadline
        );
        if let Ok(timer) = rx.timer(STOP_DEADLINE) {
            let _ = rx.timer_start(timer, self.options.stop_deadline, None);
            self.stop_deadline = Some(timer);
        }
        self.check(rx);
    }

    /// Every piece is verified: tell the trackers `completed` (under the stop
    /// deadline), then stop. With no tracker to tell, stop at once.
    fn announce_completed(&mut self, rx: &mut Reactor<Owner>) {
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        self.torrent.poll_trackers(rx, &mut self.trackers);
        self.phase = Phase::Completing;
        if let Ok(timer) = rx.timer(STOP_DEADLINE) {
            let _ = rx.timer_start(timer, self.options.stop_deadline, None);
            self.stop_deadline = Some(timer);
        }
    }

    /// Ends the graceful part: everything still open is closed.
    fn finish_stop(&mut self, rx: &mut Reactor<Owner>) {
        let Phase::Stopping(outcome) = std::mem::replace(&mut self.phase, Phase::Running) else {
            return;
        };
        self.trackers.close(rx);
        for id in [
            self.signal.take(),
            self.progress.take(),
            self.stall.take(),
            self.stop_deadline.take(),
        ]
        .into_iter()
        .flatten()
        {
            rx.close(id);
        }
        self.phase = Phase::Done(outcome);
    }

    /// Acts on what happened: tracker results, torrent events, the stop's progress.
    fn check(&mut self, rx: &mut Reactor<Owner>) {
        while let Some((id, result)) = self.trackers.poll_result() {
            self.torrent
                .on_tracker_result(rx, &mut self.trackers, id, &result);
        }
        for event in self.torrent.take_events() {
            match event {
                TorrentEvent::Completed => {
                    self.print_progress(true);
                    self.announce_completed(rx);
                }
                TorrentEvent::Failed(why) => self.stop(rx, Outcome::Failed(why)),
            }
        }
        match self.phase {
            Phase::Completing if self.torrent.announces_in_flight() == 0 => self.stop(rx, Outcome::Completed),
            Phase::Stopping(_) if self.torrent.announces_in_flight() == 0 => self.finish_stop(rx),
            _ => {}
        }
    }

    fn print_progress(&mut self, last: bool) {
        if !self.options.progress {
            return;
        }
        let total = self.torrent.total_length().max(1);
        let have = total - self.torrent.left();
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let peers = self.torrent.peer_counts();
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let line = format!(
            "{}: {:5.1}%  {:.1}/{:.1} MiB  {} peers ({} unchoked)  {:.1} MiB/s",
            self.name,
            have as f64 * 100.0 / total as f64,
            mib(have),
            mib(total),
            peers.active,
            peers.unchoked,
            mib(self.torrent.downloaded()) / elapsed
        );
        let mut err = std::io::stderr();
        if self.terminal {
            let _ = write!(err, "\r{line}   ");
            if last {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}

impl Handler<Owner> for Download {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        match owner {
            Owner::Listener(_) | Owner::Peer(..) | Owner::TorrentTimer(..) | Owner::Incoming(..) => {
                self.torrent.on_event(rx, &mut self.trackers, id, owner, event)
            }
            Owner::Tracker(..) => self.trackers.on_event(rx, id, owner, event),
            Owner::Signal => {
                if let Event::Signal(signal) = event {
                    self.interrupts += 1;
                    if self.interrupts == 1 {
                        if self.options.progress {
                            eprintln!("\nbitloop: signal {signal}: stopping (again to skip the goodbyes)");
                        }
                        self.stop(rx, Outcome::Interrupted);
                    } else {
                        self.stop(rx, Outcome::Interrupted);
                        self.finish_stop(rx);
                    }
                }
            }
            PROGRESS if matches!(event, Event::Timer) => self.print_progress(false),
            STALL if matches!(event, Event::Timer) => {
                let now = self.torrent.downloaded();
                if now == self.bytes_at_last_check && !self.torrent.is_complete() {
                    let peers = self.torrent.peer_counts();
                    let timeout = seconds(self.options.timeout);
                    let why = if peers.active == 0 {
                        format!("no peers within {timeout} s")
                    } else {
                        format!("no data from {} peers in {timeout} s", peers.active)
                    };
                    self.stop(rx, Outcome::Failed(why));
                }
                self.bytes_at_last_check = now;
            }
            STOP_DEADLINE if matches!(event, Event::Timer) => {
                debug!(
                    "stop deadline reached with {} announces unanswered",
                    self.torrent.announces_in_flight()
                );
                match self.phase {
                    Phase::Completing => self.stop(rx, Outcome::Completed),
                    _ => self.finish_stop(rx),
                }
            }
            _ => {}
        }
        self.check(rx);
    }
}

/// "3" for whole seconds, "0.7" otherwise.
fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        duration.as_secs().to_string()
    } else {
        format!("{:.1}", duration.as_secs_f64())
    }
}

/// A handler for a loop whose owners are gone: events are dropped.
struct Discard;

impl Handler<Owner> for Discard {
    fn on_event(&mut self, _: &mut Reactor<Owner>, _: HandleId, _: Owner, _: Event) {}
}

/// What a whole run produced.
#[derive(Debug)]
pub struct RunSummary {
    pub outcome: Outcome,
    /// The loop's `finish()`: every handle closed, or the ones still alive named.
    pub report: Result<Report, String>,
    pub downloaded: u64,
    /// Bytes received and thrown away (duplicates, failed pieces).
    pub wasted: u64,
    /// Addresses banned for sending data that failed hash checks.
    pub banned: Vec<std::net::IpAddr>,
    /// Fast-extension messages seen.
    pub fast: super::torrent::FastCounts,
    /// Pieces verified by the end.
    pub pieces: Vec<u32>,
    pub elapsed: Duration,
}

/// Runs a download on a fresh loop until it ends and the loop is proven empty.
pub fn run(metainfo: &Metainfo, options: DownloadOptions) -> Result<RunSummary, String> {
    let started = Instant::now();
    let mut rx: Reactor<Owner> = Reactor::new().map_err(err)?;
    let mut download = match Download::start(&mut rx, metainfo, options) {
        Ok(download) => download,
        Err(e) => {
            // Whatever start opened before it failed is closed the usual way.
            rx.close_all_and_drain(&mut Discard).map_err(err)?;
            rx.finish().map_err(|busy| busy.to_string())?;
            return Err(e);
        }
    };
    while download.outcome().is_none() {
        rx.run(&mut download, RunMode::Once).map_err(err)?;
    }
    rx.close_all_and_drain(&mut download).map_err(err)?;
    let report = rx.finish().map_err(|busy| busy.to_string());
    match &report {
        Ok(report) => debug!("shutdown: {report}"),
        Err(busy) => log::error!("shutdown left handles alive: {busy}"),
    }
    let sizes = download.torrent().table_sizes();
    debug!("torrent tables at exit (peers, addresses, retries, contributors, candidates): {sizes:?}");
    Ok(RunSummary {
        outcome: download.outcome().cloned().expect("loop ran until an outcome"),
        report,
        downloaded: download.torrent().downloaded(),
        wasted: download.torrent().wasted(),
        banned: download.torrent().banned(),
        fast: download.torrent().fast_counts(),
        pieces: download.torrent().have().iter_ones().collect(),
        elapsed: started.elapsed(),
    })
}
