//! The signal source: SIGINT, SIGTERM and friends delivered as loop events, and
//! the reactor's `signal_watch`.
//!
//! `signal-hook` installs an async-signal-safe handler that writes to a self-pipe;
//! the pipe's read end is registered with mio like any socket, so a signal becomes
//! an ordinary readable event on the loop. Dropping the value unregisters our
//! actions (the drop happens only when the table frees the slot); signal-hook's
//! own handler stays installed, so the default dispositions do not come back.

use std::fmt::Debug;
use std::io;

use log::debug;
use signal_hook_mio::v1_0::Signals;

use super::table::Resource;
use super::{Event, HandleId, Handler, Reactor, Result};

pub(crate) struct SignalWatch {
    pub(crate) signals: Signals,
}

impl SignalWatch {
    pub(crate) fn new(signals: &[i32]) -> io::Result<SignalWatch> {
        Ok(SignalWatch {
            signals: Signals::new(signals)?,
        })
    }

    /// Signals received since the last call.
    pub(crate) fn take_pending(&mut self) -> Vec<i32> {
        self.signals.pending().collect()
    }
}

impl<O: Copy + Debug> Reactor<O> {
    pub(super) fn signal_ready<H: Handler<O>>(&mut self, handler: &mut H, id: HandleId) {
        let Some(Resource::Signal(watch)) = self.table.get_mut(id).map(|h| &mut h.resource) else {
            return;
        };
        for signal in watch.take_pending() {
            debug!("signal {signal} received");
            self.deliver(handler, id, Event::Signal(signal));
        }
    }

    // ---------------------------------------------------------------- signals

    /// Watches `signals` (for example SIGINT and SIGTERM); each arrival becomes
    /// [`Event::Signal`].
    ///
    /// Closing the handle stops delivery: no later arrival reaches anyone, and a
    /// new watch can be opened at any time. It does **not** restore the previous
    /// dispositions: signal-hook keeps its process-wide handler installed, so a
    /// signal whose default is to end the process (SIGINT, SIGTERM, SIGUSR1, ...)
    /// is ignored once no watch covers it.
    pub fn signal_watch(&mut self, signals: &[i32], owner: O) -> Result<HandleId> {
        self.check_creation()?;
        let watch = SignalWatch::new(signals)?;
        self.open(owner, Resource::Signal(watch))
    }
}
