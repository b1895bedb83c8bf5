//! The glue between the reactor and the sans-IO protocol code.
//!
//! Components here own protocol state machines and the `HandleId`s of the reactor
//! handles they use; the reactor owns the handles themselves. Every handle carries an
//! [`Owner`] tag saying which component (and which of its entries) it belongs to,
//! and a component checks that an event's `HandleId` is the one it holds before
//! acting: a tag can outlive the entry it named (its slot may be reused), a
//! `HandleId` cannot (the generation check).

pub mod announcing;
mod console;
pub mod demo;
pub mod download;
pub mod run;
pub mod session;
pub mod trackers;

pub use announcing::{TorrentTrackers, TrackerStatus, Transfer};
pub use trackers::{RequestId, TrackerClient, TrackerConfig};

/// Which session a handle belongs to. Several sessions can share one loop (the
/// loopback demo runs a seeder and leechers in one process), so every tag of a
/// session's handle carries its key.
pub type SessionKey = u16;

/// Which component a reactor handle belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// One of a session's tracker-client handles.
    Tracker(SessionKey, TrackerHandle),
    /// A session's listening socket.
    Listener(SessionKey),
    /// An accepted stream whose handshake has not named a torrent yet: session, slot.
    Incoming(SessionKey, u32),
    /// A peer connection: session, torrent key, peer slot.
    Peer(SessionKey, u32, u32),
    /// A torrent's one timer (its earliest deadline): session, torrent key.
    TorrentTimer(SessionKey, u32),
    /// A session's own timer (its earliest deadline).
    SessionTimer(SessionKey),
    /// The SIGINT/SIGTERM watch.
    Signal,
    /// A timer or handle of the front end's own (for example a run deadline).
    App(u32),
}

impl Owner {
    /// The session a handle belongs to, if any.
    pub fn session(self) -> Option<SessionKey> {
        match self {
            Owner::Tracker(s, _)
            | Owner::Listener(s)
            | Owner::Incoming(s, _)
            | Owner::Peer(s, ..)
            | Owner::TorrentTimer(s, _)
            | Owner::SessionTimer(s) => Some(s),
            Owner::Signal | Owner::App(_) => None,
        }
    }
}

/// Which of a tracker client's handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackerHandle {
    /// The TCP connection of an HTTP tracker request, by request slot.
    Http(usize),
    /// A UDP socket shared by every UDP tracker transaction.
    Udp,
    /// The socket of one name-server query (a fresh one per query, so a fresh
    /// random source port), by the resolver's query slot.
    Dns(usize),
    /// The tracker client's one timer (its earliest deadline).
    Timer,
}
