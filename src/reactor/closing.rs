//! Closing and shutdown: `close` (the only way a handle ends), the closing phase
//! that frees slots, `close_all` and drain, and `finish`, which proves the loop
//! is empty or names what is not.

use std::fmt::Debug;
use std::io;

use log::{debug, trace, warn};

use super::table::Resource;
use super::{Busy, Closed, Event, HandleId, HandleState, Handler, Reactor, Report, RunMode};

impl<O: Copy + Debug> Reactor<O> {
    // ---------------------------------------------------------------- closing

    /// Closes a handle: the only way one ends. Idempotent; a stale id is ignored.
    ///
    /// The source is deregistered now and no further I/O or timer event reaches
    /// the owner. The resource is released in the closing phase, which then
    /// delivers [`Event::Closed`].
    pub fn close(&mut self, id: HandleId) {
        let Some(handle) = self.table.get_mut(id) else {
            return;
        };
        if handle.state == HandleState::Closing {
            return;
        }
        handle.state = HandleState::Closing;
        if handle.armed_seq != 0 {
            handle.armed_seq = 0;
            self.counts.timers_armed -= 1;
        }
        let registry = self.poll.registry();
        let deregistered = match &mut handle.resource {
            Resource::Timer(_) => None,
            Resource::Listener(listener) => Some(registry.deregister(&mut listener.socket)),
            Resource::Stream(stream) => Some(registry.deregister(&mut stream.socket)),
            Resource::Udp(udp) => Some(registry.deregister(&mut udp.socket)),
            Resource::Signal(watch) => Some(registry.deregister(&mut watch.signals)),
        };
        if let Some(result) = deregistered {
            self.counts.deregistrations += 1;
            if let Err(e) = result {
                debug!("deregistering {id} failed: {e}");
            }
        }
        let kind = handle.resource.kind();
        self.counts.open.add(kind, -1);
        self.counts.closing.add(kind, 1);
        self.closing.push_back(id);
        trace!("{id} {} closing", kind.name());
    }

    pub(super) fn run_closing<H: Handler<O>>(&mut self, handler: &mut H) {
        if self.closing.is_empty() {
            trace!("phase: closing (nothing to close)");
        }
        for pass in 0..self.config.max_closing_passes {
            if self.closing.is_empty() {
                return;
            }
            trace!("phase: closing (pass {pass}, {} handles)", self.closing.len());
            for _ in 0..self.closing.len() {
                let id = self.closing.pop_front().expect("counted");
                let Some(handle) = self.table.remove(id) else {
                    continue;
                };
                let kind = handle.resource.kind();
                let closed = Closed {
                    kind,
                    cancelled_writes: match &handle.resource {
                        Resource::Stream(stream) => stream.unsent.len(),
                        Resource::Udp(udp) => udp.unsent.len(),
                        _ => 0,
                    },
                    cancelled_connect: matches!(&handle.resource, Resource::Stream(s) if s.connecting),
                };
                let owner = handle.owner;
                drop(handle); // the one place a resource is released
                self.counts.closing.add(kind, -1);
                self.counts.closed_total.add(kind, 1);
                trace!("{id} {} closed", kind.name());
                handler.on_event(self, id, owner, Event::Closed(closed));
            }
        }
        if !self.closing.is_empty() {
            warn!(
                "closing phase: {} handles still closing after {} passes; continuing next iteration",
                self.closing.len(),
                self.config.max_closing_passes
            );
        }
    }

    /// Refuses new handles from now on (the first step of shutdown).
    pub fn begin_shutdown(&mut self) {
        if !self.shutting_down {
            debug!("shutting down: no new handles");
        }
        self.shutting_down = true;
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Closes every open handle through its close path (libuv's walk + close).
    pub fn close_all(&mut self) {
        let open: Vec<HandleId> = self
            .table
            .iter()
            .filter(|(_, handle)| handle.state == HandleState::Open)
            .map(|(id, _)| id)
            .collect();
        debug!("close_all: closing {} handles", open.len());
        for id in open {
            self.close(id);
        }
    }

    /// Shutdown steps 3 and 4: close everything, then run the loop without blocking
    /// until the table is empty and no work is queued (bounded). What remains, if
    /// anything, is for `finish` to name.
    pub fn close_all_and_drain<H: Handler<O>>(&mut self, handler: &mut H) -> io::Result<()> {
        self.begin_shutdown();
        for _ in 0..self.config.max_closing_passes {
            self.close_all();
            self.run(handler, RunMode::NoWait)?;
            if self.table.len() == 0 && self.deferred.is_empty() {
                break;
            }
        }
        Ok(())
    }

    /// Proves the loop is empty (libuv's `uv_loop_close`): a report of everything
    /// opened and closed, or every handle still alive, named.
    pub fn finish(&mut self) -> std::result::Result<Report, Busy> {
        self.finished = true;
        self.compact_timers();
        let stats = self.stats();
        if self.table.len() == 0
            && self.deferred.is_empty()
            && self.timers.len() == 0
            && stats.registered() == 0
        {
            let report = Report {
                opened: stats.opened_total,
                closed: stats.closed_total,
                stale_events: stats.stale_events,
            };
            debug!("loop finished: {report}");
            Ok(report)
        } else {
            Err(Busy {
                handles: self.handles(),
                deferred: self.deferred.len(),
                timer_entries: self.timers.len(),
                registered: stats.registered(),
            })
        }
    }
}

impl<O: Copy + Debug> Drop for Reactor<O> {
    fn drop(&mut self) {
        if self.finished || self.table.len() == 0 || std::thread::panicking() {
            return;
        }
        let message = format!(
            "reactor dropped without finish() with live handles:\n{}",
            self.dump()
        );
        log::error!("{message}");
        // Debug builds (and so every test) refuse outright: a test that forgets to
        // close is the seed's bug #12.
        if cfg!(debug_assertions) {
            panic!("{message}");
        }
    }
}
