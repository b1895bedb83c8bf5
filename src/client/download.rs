//! `bitloop download`'s front end: one session, any number of torrents, progress on
//! the console, signals, and the stop sequence, from start to a proven-empty loop.
//!
//! Each torrent goes `Downloading → Completing → Stopping → Done`: when every
//! piece is verified, `completed` is announced (and waited for under the stop
//! deadline), then the torrent stops with `stopped`. The run ends when every
//! torrent is done; then the session closes, the loop closes what is left and
//! drains, and `finish()` proves it empty. Ctrl+C stops every torrent at once; a
//! second Ctrl+C skips what remains of the goodbyes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{debug, info};

pub use super::run::{run, run_many, Discard, RunSummary, TorrentSummary};

use super::console::Console;
use super::session::{AddOptions, Phase, Session, SessionConfig, SessionEvent, Source, TorrentKey};
use super::{Owner, TrackerConfig};
use crate::metainfo::Metainfo;
use crate::reactor::{Event, HandleId, Handler, Reactor};
use crate::torrent::TorrentConfig;
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
    /// Peers to connect to besides those trackers give (every torrent gets them).
    pub peers: Vec<SocketAddr>,
    /// Give up on a torrent when no data arrives for it for this long.
    pub timeout: Duration,
    /// Progress on stderr (lines that update on a terminal, periodic lines otherwise).
    pub progress: bool,
    pub watch_signals: bool,
    /// The whole graceful part of stopping must fit in this.
    pub stop_deadline: Duration,
    pub torrent: TorrentConfig,
    pub trackers: TrackerConfig,
    /// Session-wide budgets (connections, half-open connects); `None`: defaults.
    pub max_connections: Option<usize>,
    pub max_half_open: Option<usize>,
    /// Allocate files at start, so a full disk fails then and not halfway.
    pub preallocate: bool,
    /// Where resume data lives (`None`: beside the download, in `.bitloop/`).
    pub state_dir: Option<PathBuf>,
    /// After completion keep seeding until the upload reaches this ratio of the
    /// torrent's size, or for this long (whichever comes first); with neither,
    /// stop when complete. `seed`: seed until interrupted (`bitloop seed`).
    pub seed_ratio: Option<f64>,
    pub seed_time: Option<Duration>,
    pub seed: bool,
    /// Serve the data as it is, which must be complete after the check (`bitloop
    /// seed`): files are only read, so read-only media can be seeded.
    pub require_complete: bool,
    /// Session-wide rate limits, bytes per second.
    pub upload_rate: Option<u64>,
    pub download_rate: Option<u64>,
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
            max_connections: None,
            max_half_open: None,
            preallocate: false,
            state_dir: None,
            seed_ratio: None,
            seed_time: None,
            seed: false,
            require_complete: false,
            upload_rate: None,
            download_rate: None,
        }
    }

    /// Whether a complete torrent keeps its peers (and serves them).
    fn seeds(&self) -> bool {
        self.seed || self.seed_ratio.is_some() || self.seed_time.is_some()
    }

    fn add_options(&self) -> AddOptions {
        AddOptions {
            output: self.output.clone(),
            preallocate: self.preallocate,
            state_dir: self.state_dir.clone(),
            read_only: self.require_complete,
        }
    }

    fn session_config(&self) -> SessionConfig {
        let mut torrent = self.torrent.clone();
        torrent.seed |= self.seeds();
        let mut config = SessionConfig {
            listen: self.listen.into_iter().collect(),
            torrent,
            trackers: self.trackers.clone(),
            upload_rate: self.upload_rate,
            download_rate: self.download_rate,
            ..SessionConfig::default()
        };
        if let Some(n) = self.max_connections {
            config.max_connections = n;
        }
        if let Some(n) = self.max_half_open {
            config.max_half_open = n;
        }
        config
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

/// Where one torrent of the run is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Downloading,
    /// Complete: `completed` is being announced before the stop.
    Completing {
        deadline: Instant,
    },
    /// Complete and serving peers, until `until` (or the ratio, or Ctrl+C).
    Seeding {
        until: Option<Instant>,
    },
    /// Graceful stop in progress, with the outcome to report.
    Stopping {
        outcome: Outcome,
        deadline: Instant,
    },
    Done(Outcome),
}

/// One torrent of the run.
pub(super) struct Item {
    pub(super) key: TorrentKey,
    pub(super) name: String,
    state: State,
    /// Bytes downloaded at the last stall check.
    checked: u64,
}

/// The whole run; implements [`Handler`] for the loop.
pub struct Download {
    session: Session,
    items: Vec<Item>,
    signal: Option<HandleId>,
    progress: Option<HandleId>,
    stall: Option<HandleId>,
    stop_timer: Option<HandleId>,
    options: DownloadOptions,
    console: Console,
    interrupts: u32,
    /// What each peer gave and took, by peer id, as peers leave.
    peers: HashMap<PeerId, PeerTally>,
    closed: bool,
}

/// One peer's transfer over the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerTally {
    pub addr: Option<SocketAddr>,
    pub downloaded: u64,
    pub uploaded: u64,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Download {
    /// Opens the session, adds every torrent (checking existing data), announces
    /// and connects.
    pub fn start(
        rx: &mut Reactor<Owner>,
        torrents: &[Metainfo],
        options: DownloadOptions,
    ) -> Result<Download, String> {
        // Signals first: from the first announce on, Ctrl+C must mean a graceful stop.
        let signal = if options.watch_signals {
            use signal_hook::consts::{SIGINT, SIGTERM};
            Some(rx.signal_watch(&[SIGINT, SIGTERM], Owner::Signal).map_err(err)?)
        } else {
            None
        };
        let session = Session::new(rx, 0, options.session_config())?;
        let mut download = Download {
            session,
            items: Vec::new(),
            signal,
            progress: None,
            stall: None,
            stop_timer: None,
            console: Console::new(options.progress),
            options,
            interrupts: 0,
            peers: HashMap::new(),
            closed: false,
        };
        for metainfo in torrents {
            let key = match download.session.add_torrent(
                rx,
                Source::Torrent(metainfo),
                download.options.add_options(),
            ) {
                Ok(key) => key,
                Err(e) => {
                    download.session.close(rx);
                    return Err(e);
                }
            };
            download.session.add_peers(rx, key, &download.options.peers);
            download.items.push(Item {
                key,
                name: metainfo.info.name.clone(),
                state: State::Downloading,
                checked: 0,
            });
        }
        if download.options.progress {
            let every = download.console.interval();
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

    /// The outcome of the whole run once every torrent is done.
    pub fn outcome(&self) -> Option<Outcome> {
        if !self.closed {
            return None;
        }
        let outcomes = self.items.iter().map(|i| match &i.state {
            State::Done(o) => o.clone(),
            _ => Outcome::Interrupted,
        });
        let mut overall = Outcome::Completed;
        for outcome in outcomes {
            match (&overall, outcome) {
                (_, Outcome::Completed) => {}
                (Outcome::Failed(_), _) => {}
                (_, failed @ Outcome::Failed(_)) => overall = failed,
                (_, Outcome::Interrupted) => overall = Outcome::Interrupted,
            }
        }
        Some(overall)
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub(super) fn items(&self) -> &[Item] {
        &self.items
    }

    /// What each peer gave and took, by peer id (as peers left).
    pub fn peers(&self) -> &HashMap<PeerId, PeerTally> {
        &self.peers
    }

    /// Each torrent's outcome, in the order given (`None` while running).
    pub fn outcomes(&self) -> Vec<(String, Option<Outcome>)> {
        self.items
            .iter()
            .map(|i| {
                let outcome = match &i.state {
                    State::Done(o) => Some(o.clone()),
                    _ => None,
                };
                (i.name.clone(), outcome)
            })
            .collect()
    }

    /// Starts stopping torrent `index` with `outcome` (a complete one stays complete).
    fn stop_item(&mut self, rx: &mut Reactor<Owner>, index: usize, outcome: Outcome) {
        let item = &mut self.items[index];
        let outcome = match item.state {
            State::Downloading => outcome,
            State::Completing { .. } | State::Seeding { .. } => Outcome::Completed,
            State::Stopping { .. } | State::Done(_) => return,
        };
        info!("{}: stopping: {outcome:?}", item.name);
        let announces = self.session.stop_torrent(rx, item.key);
        debug!("{}: {announces} stopped announces", item.name);
        let deadline = rx.now() + self.options.stop_deadline;
        self.items[index].state = State::Stopping { outcome, deadline };
        self.arm_stop_timer(rx);
    }

    /// Stops everything still running (Ctrl+C).
    fn stop_all(&mut self, rx: &mut Reactor<Owner>, outcome: Outcome) {
        for index in 0..self.items.len() {
            self.stop_item(rx, index, outcome.clone());
        }
    }

    /// Ends the graceful part for every torrent still in it (a second Ctrl+C).
    fn skip_goodbyes(&mut self) {
        for item in &mut self.items {
            if let State::Stopping { outcome, .. } = &item.state {
                item.state = State::Done(outcome.clone());
            }
        }
    }

    fn arm_stop_timer(&mut self, rx: &mut Reactor<Owner>) {
        let earliest = self
            .items
            .iter()
            .filter_map(|i| match i.state {
                State::Completing { deadline } | State::Stopping { deadline, .. } => Some(deadline),
                State::Seeding { until } => until,
                _ => None,
            })
            .min();
        let Some(deadline) = earliest else { return };
        if self.stop_timer.is_none() {
            self.stop_timer = rx.timer(STOP_DEADLINE).ok();
        }
        if let Some(timer) = self.stop_timer {
            let _ = rx.timer_start(timer, deadline.saturating_duration_since(rx.now()), None);
        }
    }

    /// Acts on what happened: session events, torrents' progress through their
    /// stop, and the end of the run.
    fn check(&mut self, rx: &mut Reactor<Owner>) {
        while let Some(event) = self.session.poll_event() {
            match event {
                SessionEvent::Completed(key) => {
                    if let Some(index) = self.index_of(key) {
                        if self.items[index].state == State::Downloading {
                            self.console.completed(&self.session, &self.items[index]);
                            let now = rx.now();
                            self.items[index].state = if self.options.seeds() {
                                let until = self.options.seed_time.map(|t| now + t);
                                State::Seeding { until }
                            } else {
                                State::Completing {
                                    deadline: now + self.options.stop_deadline,
                                }
                            };
                            self.arm_stop_timer(rx);
                        }
                    }
                }
                SessionEvent::Checked(key) => {
                    let Some(index) = self.index_of(key) else { continue };
                    let Some(torrent) = self.session.torrent(key) else {
                        continue;
                    };
                    let have = torrent.have().map_or((0, 0), |h| (h.count(), h.len()));
                    if self.options.require_complete && have.0 < have.1 {
                        let why = format!(
                            "{} holds {} of {} pieces; `bitloop download` fetches the rest",
                            self.options.output.display(),
                            have.0,
                            have.1
                        );
                        self.stop_item(rx, index, Outcome::Failed(why));
                    }
                }
                SessionEvent::Failed(key, why) => {
                    if let Some(index) = self.index_of(key) {
                        self.stop_item(rx, index, Outcome::Failed(why));
                    }
                }
                SessionEvent::PeerGone {
                    peer_id,
                    addr,
                    downloaded,
                    uploaded,
                    ..
                } => {
                    let tally = self.peers.entry(peer_id).or_default();
                    tally.addr = Some(addr);
                    tally.downloaded += downloaded;
                    tally.uploaded += uploaded;
                }
            }
        }
        // Each torrent moves on as far as it can now (a complete torrent with no
        // tracker to tell goes Completing → Stopping → Done in one call).
        let now = rx.now();
        let mut moved = true;
        while moved {
            moved = false;
            for index in 0..self.items.len() {
                let key = self.items[index].key;
                let idle = self.session.announces_in_flight(key) == 0;
                match self.items[index].state.clone() {
                    State::Completing { deadline } if idle || deadline <= now => {
                        self.stop_item(rx, index, Outcome::Completed);
                        moved = true;
                    }
                    State::Seeding { until }
                        if until.is_some_and(|u| u <= now) || self.ratio_reached(key) =>
                    {
                        self.stop_item(rx, index, Outcome::Completed);
                        moved = true;
                    }
                    State::Stopping { outcome, deadline } if idle || deadline <= now => {
                        if !idle {
                            debug!("stop deadline reached with announces unanswered");
                        }
                        self.items[index].state = State::Done(outcome);
                        moved = true;
                    }
                    _ => {}
                }
            }
        }
        let all_done = self.items.iter().all(|i| matches!(i.state, State::Done(_)));
        if all_done && !self.closed {
            self.finish_run(rx);
        }
    }

    /// Every torrent is done: close the session and our own handles.
    fn finish_run(&mut self, rx: &mut Reactor<Owner>) {
        self.console.finished(&self.session, &self.items);
        self.session.close(rx);
        // The last peers left as their torrents stopped: count what they gave.
        while let Some(event) = self.session.poll_event() {
            if let SessionEvent::PeerGone {
                peer_id,
                addr,
                downloaded,
                uploaded,
                ..
            } = event
            {
                let tally = self.peers.entry(peer_id).or_default();
                tally.addr = Some(addr);
                tally.downloaded += downloaded;
                tally.uploaded += uploaded;
            }
        }
        for id in [
            self.signal.take(),
            self.progress.take(),
            self.stall.take(),
            self.stop_timer.take(),
        ]
        .into_iter()
        .flatten()
        {
            rx.close(id);
        }
        self.closed = true;
    }

    /// Uploaded at least `seed_ratio` times the torrent's size.
    fn ratio_reached(&self, key: TorrentKey) -> bool {
        let (Some(ratio), Some(torrent)) = (self.options.seed_ratio, self.session.torrent(key)) else {
            return false;
        };
        let size = torrent.total_length().unwrap_or(0).max(1) as f64;
        torrent.stats().uploaded as f64 >= ratio * size
    }

    fn index_of(&self, key: TorrentKey) -> Option<usize> {
        self.items.iter().position(|i| i.key == key)
    }

    /// The stall timer: a downloading torrent that got nothing since the last tick fails.
    fn on_stall(&mut self, rx: &mut Reactor<Owner>) {
        for index in 0..self.items.len() {
            let key = self.items[index].key;
            let Some(torrent) = self.session.torrent(key) else {
                continue;
            };
            if self.session.phase(key) == Some(Phase::Checking) {
                continue; // a long check is not a stall
            }
            let got = torrent.stats().downloaded;
            let stuck = got == self.items[index].checked && self.items[index].state == State::Downloading;
            self.items[index].checked = got;
            if stuck {
                let active = torrent.peer_counts().active;
                let timeout = seconds(self.options.timeout);
                let mut why = if active == 0 {
                    format!("no peers within {timeout} s")
                } else {
                    format!("no data from {active} peers in {timeout} s")
                };
                // Say what each tracker answered: the reason is often there.
                let report = self.session.tracker_report(key);
                if !report.is_empty() {
                    let lines: Vec<String> = report.iter().map(|t| format!("\n  {t}")).collect();
                    why.push_str("; trackers:");
                    why.push_str(&lines.concat());
                }
                self.stop_item(rx, index, Outcome::Failed(why));
            }
        }
    }
}

impl Handler<Owner> for Download {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        match owner {
            Owner::Signal => {
                if let Event::Signal(signal) = event {
                    self.interrupts += 1;
                    if self.interrupts == 1 {
                        self.console.interrupted(signal);
                        self.stop_all(rx, Outcome::Interrupted);
                    } else {
                        self.stop_all(rx, Outcome::Interrupted);
                        self.skip_goodbyes();
                    }
                }
            }
            PROGRESS if matches!(event, Event::Timer) => self.console.progress(&self.session, &self.items),
            STALL if matches!(event, Event::Timer) => self.on_stall(rx),
            STOP_DEADLINE if matches!(event, Event::Timer) => {}
            Owner::App(_) => {}
            _ => self.session.on_event(rx, id, owner, event),
        }
        self.check(rx);
    }

    fn on_deferred(&mut self, rx: &mut Reactor<Owner>, owner: Owner) {
        if owner.session() == Some(self.session.key()) {
            self.session.on_deferred(rx);
            self.check(rx);
        }
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
