//! `bitloop announce`: ask every tracker of a torrent for peers (or, with
//! `--scrape`, for its figures), in parallel, and print what each answered. A
//! debugging tool that shows the tracker code at work.

use std::collections::HashMap;
use std::time::Duration;

use bitloop::client::trackers::{AnnounceResult, ScrapeResult};
use bitloop::client::{Owner, RequestId, TrackerClient, TrackerConfig};
use bitloop::metainfo::Metainfo;
use bitloop::reactor::{Event, HandleId, Handler, Reactor, RunMode};
use bitloop::tracker::{random_u64, AnnounceEvent, AnnounceRequest, PeerId, TrackerError};

use super::info::read_torrent;

struct App {
    trackers: TrackerClient,
    names: HashMap<RequestId, String>,
    results: Vec<(String, AnnounceResult)>,
    scrapes: Vec<(String, ScrapeResult)>,
    deadline: Option<HandleId>,
    timed_out: bool,
}

impl App {
    fn collect(&mut self, rx: &mut Reactor<Owner>) {
        while let Some((id, result)) = self.trackers.poll_result() {
            let url = self.names.remove(&id).unwrap_or_default();
            self.results.push((url, result));
        }
        while let Some((id, result)) = self.trackers.poll_scrape() {
            let url = self.names.remove(&id).unwrap_or_default();
            self.scrapes.push((url, result));
        }
        if self.names.is_empty() {
            self.trackers.close(rx);
            if let Some(deadline) = self.deadline.take() {
                rx.close(deadline);
            }
        }
    }
}

impl Handler<Owner> for App {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        match owner {
            // Out of time: whatever has not answered is cancelled.
            Owner::App(_) if matches!(event, Event::Timer) => {
                self.timed_out = true;
                self.trackers.close(rx);
            }
            Owner::App(_) => {}
            _ => self.trackers.on_event(rx, id, owner, event),
        }
        self.collect(rx);
    }
}

pub fn run(
    path: &str,
    event: AnnounceEvent,
    port: u16,
    timeout: Duration,
    scrape: bool,
) -> Result<(), String> {
    let torrent = Metainfo::parse(&read_torrent(path)?).map_err(|e| format!("{path}: {e}"))?;
    let urls: Vec<String> = torrent.trackers.iter().flatten().cloned().collect();
    if urls.is_empty() {
        return Err(format!("{path}: the torrent lists no trackers"));
    }
    let mut rx: Reactor<Owner> = Reactor::new().map_err(|e| e.to_string())?;
    let mut app = App {
        trackers: TrackerClient::new(TrackerConfig::default(), 0),
        names: HashMap::new(),
        results: Vec::new(),
        scrapes: Vec::new(),
        deadline: None,
        timed_out: false,
    };
    let request = AnnounceRequest {
        info_hash: torrent.info_hash,
        peer_id: PeerId::generate(),
        port,
        uploaded: 0,
        downloaded: 0,
        left: if event == AnnounceEvent::Completed {
            0
        } else {
            torrent.total_length()
        },
        event,
        numwant: Some(200),
        key: random_u64() as u32,
        tracker_id: None,
    };
    let deadline = rx.timer(Owner::App(0)).map_err(|e| e.to_string())?;
    rx.timer_start(deadline, timeout, None)
        .map_err(|e| e.to_string())?;
    app.deadline = Some(deadline);
    for url in &urls {
        let id = if scrape {
            app.trackers.scrape(&mut rx, url, vec![torrent.info_hash])
        } else {
            app.trackers.announce(&mut rx, url, request.clone())
        };
        app.names.insert(id, url.clone());
    }
    app.collect(&mut rx);
    rx.run(&mut app, RunMode::Default).map_err(|e| e.to_string())?;
    rx.close_all_and_drain(&mut app).map_err(|e| e.to_string())?;
    rx.finish().map_err(|busy| busy.to_string())?;

    let mut any_ok = false;
    for (url, result) in &app.scrapes {
        match result {
            Ok(stats) => {
                any_ok = true;
                let figures = stats.first().copied().unwrap_or_default();
                println!(
                    "{url}: {} seeders, {} leechers, {} downloads",
                    figures.seeders, figures.leechers, figures.completed
                );
            }
            Err(TrackerError::Cancelled) if app.timed_out => {
                println!("{url}: no answer within {} s", timeout.as_secs())
            }
            Err(error) => println!("{url}: {error}"),
        }
    }
    for (url, result) in &app.results {
        match result {
            Ok(response) => {
                any_ok = true;
                let figure = |n: Option<u32>| n.map_or("?".to_string(), |n| n.to_string());
                println!(
                    "{url}: {} peers, {} seeders, {} leechers, next announce in {} s",
                    response.peers.len(),
                    figure(response.complete),
                    figure(response.incomplete),
                    response.interval.as_secs()
                );
                if let Some(warning) = &response.warning {
                    println!("  warning: {warning}");
                }
                for peer in &response.peers {
                    println!("  {peer}");
                }
            }
            Err(TrackerError::Cancelled) if app.timed_out => {
                println!("{url}: no answer within {} s", timeout.as_secs())
            }
            Err(error) => println!("{url}: {error}"),
        }
    }
    if any_ok {
        Ok(())
    } else {
        Err("no tracker answered".into())
    }
}
