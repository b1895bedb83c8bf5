//! The signal source: SIGINT, SIGTERM and friends delivered as loop events.
//!
//! `signal-hook` installs an async-signal-safe handler that writes to a self-pipe;
//! the pipe's read end is registered with mio like any socket, so a signal becomes
//! an ordinary readable event on the loop. Dropping the value unregisters the
//! handlers, and the drop happens only when the table frees the slot.

use std::io;

use signal_hook_mio::v1_0::Signals;

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
