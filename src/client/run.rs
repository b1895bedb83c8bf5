//! Running the download front end on a fresh loop, and what a run produced.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use log::debug;

use super::download::{Download, DownloadOptions, Outcome, PeerTally};
use super::session::IncomingStats;
use super::Owner;
use crate::metainfo::Metainfo;
use crate::reactor::{Event, HandleId, Handler, Reactor, Report, RunMode};
use crate::storage::StoreStats;
use crate::torrent::TorrentStats;
use crate::tracker::PeerId;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A handler for a loop whose owners are gone: events are dropped.
pub struct Discard;

impl Handler<Owner> for Discard {
    fn on_event(&mut self, _: &mut Reactor<Owner>, _: HandleId, _: Owner, _: Event) {}
}

/// What one torrent of a run produced.
#[derive(Clone, Debug)]
pub struct TorrentSummary {
    pub name: String,
    pub outcome: Outcome,
    pub stats: TorrentStats,
    /// Pieces verified by the end.
    pub pieces: Vec<u32>,
    /// Addresses banned for sending data that failed hash checks.
    pub banned: Vec<IpAddr>,
    /// What storage did (bytes read back, hashed in order, …).
    pub store: Option<StoreStats>,
}

/// What a whole run produced.
#[derive(Debug)]
pub struct RunSummary {
    pub outcome: Outcome,
    /// The loop's `finish()`: every handle closed, or the ones still alive named.
    pub report: Result<Report, String>,
    /// Sums over the torrents.
    pub downloaded: u64,
    pub wasted: u64,
    pub banned: Vec<IpAddr>,
    /// The first torrent's counters (tests of one torrent read these).
    pub fast: TorrentStats,
    /// Pieces of the first torrent verified by the end.
    pub pieces: Vec<u32>,
    pub torrents: Vec<TorrentSummary>,
    pub incoming: IncomingStats,
    /// What each peer gave and took, by peer id.
    pub peers: HashMap<PeerId, PeerTally>,
    /// Our own peer id in this run.
    pub peer_id: PeerId,
    pub elapsed: Duration,
}

/// Runs a download of one torrent on a fresh loop until it ends and the loop is
/// proven empty.
pub fn run(metainfo: &Metainfo, options: DownloadOptions) -> Result<RunSummary, String> {
    run_many(std::slice::from_ref(metainfo), options)
}

/// Runs a download of several torrents through one session and one port.
pub fn run_many(torrents: &[Metainfo], options: DownloadOptions) -> Result<RunSummary, String> {
    let started = Instant::now();
    let mut rx: Reactor<Owner> = Reactor::new().map_err(err)?;
    let mut download = match Download::start(&mut rx, torrents, options) {
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
    Ok(summarize(&download, report, started.elapsed(), rx.now()))
}

fn summarize(
    download: &Download,
    report: Result<Report, String>,
    elapsed: Duration,
    now: Instant,
) -> RunSummary {
    let session = download.session();
    let mut torrents = Vec::new();
    for (item, (name, outcome)) in download.items().iter().zip(download.outcomes()) {
        let torrent = session.torrent(item.key).expect("kept until the end");
        debug!("{name}: tables at exit {:?}", torrent.table_sizes());
        torrents.push(TorrentSummary {
            name,
            outcome: outcome.unwrap_or(Outcome::Interrupted),
            stats: torrent.stats(),
            pieces: torrent
                .have()
                .map(|h| h.iter_ones().collect())
                .unwrap_or_default(),
            banned: torrent.banned(now),
            store: torrent.store_stats(),
        });
    }
    let first = torrents.first();
    RunSummary {
        outcome: download.outcome().expect("run ended"),
        report,
        downloaded: torrents.iter().map(|t| t.stats.downloaded).sum(),
        wasted: torrents.iter().map(|t| t.stats.wasted).sum(),
        banned: torrents.iter().flat_map(|t| t.banned.iter().copied()).collect(),
        fast: first.map(|t| t.stats).unwrap_or_default(),
        pieces: first.map(|t| t.pieces.clone()).unwrap_or_default(),
        incoming: session.incoming_stats(),
        peers: download.peers().clone(),
        peer_id: session.peer_id(),
        torrents,
        elapsed,
    }
}
