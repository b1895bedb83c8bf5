//! Progress on stderr for the console front ends: one line per torrent, updated in
//! place on a terminal (ANSI cursor movement), or a plain line every few seconds
//! otherwise, so logs and pipes get something readable.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::download::Item;
use super::session::{Session, TorrentKey};

/// Where progress goes and how it looks.
pub struct Console {
    enabled: bool,
    terminal: bool,
    /// Lines written by the last in-place update (to move back over them).
    drawn: usize,
    /// Bytes and time of the previous update, per torrent, for the current rate.
    last: HashMap<TorrentKey, (u64, Instant)>,
    started: Instant,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

impl Console {
    pub fn new(enabled: bool) -> Console {
        Console {
            enabled,
            terminal: std::io::stderr().is_terminal(),
            drawn: 0,
            last: HashMap::new(),
            started: Instant::now(),
        }
    }

    /// How often to update.
    pub fn interval(&self) -> Duration {
        if self.terminal {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        }
    }

    fn line(&mut self, session: &Session, item: &Item) -> String {
        let Some(torrent) = session.torrent(item.key) else {
            return format!("{}: gone", item.name);
        };
        if let Some(check) = session.check_status(item.key) {
            let total = check.bytes_total.max(1);
            return format!(
                "{}: checking existing data {:5.1}%  {:.1}/{:.1} MiB",
                item.name,
                check.bytes_checked as f64 * 100.0 / total as f64,
                mib(check.bytes_checked),
                mib(check.bytes_total)
            );
        }
        let now = Instant::now();
        let stats = torrent.stats();
        let total = torrent.total_length().unwrap_or(0).max(1);
        let have = total - torrent.left().unwrap_or(total);
        let (before, at) = self
            .last
            .insert(item.key, (stats.downloaded, now))
            .unwrap_or((0, self.started));
        let seconds = now.saturating_duration_since(at).as_secs_f64().max(1e-3);
        let rate = stats.downloaded.saturating_sub(before) as f64 / seconds;
        let peers = torrent.peer_counts();
        format!(
            "{}: {:5.1}%  {:.1}/{:.1} MiB  {} peers ({} unchoke us)  down {:.1} MiB/s  up {:.1} MiB",
            item.name,
            have as f64 * 100.0 / total as f64,
            mib(have),
            mib(total),
            peers.active,
            torrent.unchoked_by(),
            mib(rate as u64),
            mib(stats.uploaded),
        )
    }

    /// One update: every torrent's line.
    pub fn progress(&mut self, session: &Session, items: &[Item]) {
        if !self.enabled {
            return;
        }
        let lines: Vec<String> = items.iter().map(|i| self.line(session, i)).collect();
        let mut err = std::io::stderr().lock();
        if self.terminal {
            if self.drawn > 0 {
                let _ = write!(err, "\x1b[{}F", self.drawn);
            }
            for line in &lines {
                let _ = writeln!(err, "\x1b[2K{line}");
            }
            self.drawn = lines.len();
        } else {
            for line in &lines {
                let _ = writeln!(err, "{line}");
            }
        }
    }

    /// A torrent completed: its line is final.
    pub fn completed(&mut self, session: &Session, item: &Item) {
        if !self.enabled {
            return;
        }
        let line = self.line(session, item);
        let mut err = std::io::stderr().lock();
        if self.terminal && self.drawn > 0 {
            let _ = write!(err, "\x1b[{}F", self.drawn);
            self.drawn = 0;
            let _ = writeln!(err, "\x1b[2K{line}  complete");
            // The other lines are redrawn by the next update.
        } else {
            let _ = writeln!(err, "{line}  complete");
        }
    }

    /// The run is over: leave the last lines standing.
    pub fn finished(&mut self, session: &Session, items: &[Item]) {
        if self.enabled && self.terminal && self.drawn > 0 {
            self.progress(session, items);
        }
        self.drawn = 0;
    }

    pub fn interrupted(&mut self, signal: i32) {
        if self.enabled {
            eprintln!("\nbitloop: signal {signal}: stopping (again to skip the goodbyes)");
            self.drawn = 0;
        }
    }
}
