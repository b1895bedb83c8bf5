//! The glue between the reactor and the sans-IO protocol code.
//!
//! Components here own protocol state machines and the `HandleId`s of the reactor
//! handles they use; the reactor owns the handles themselves. Every handle carries an
//! [`Owner`] tag saying which component (and which of its entries) it belongs to,
//! and a component checks that an event's `HandleId` is the one it holds before
//! acting: a tag can outlive the entry it named (its slot may be reused), a
//! `HandleId` cannot (the generation check).

pub mod announcing;
pub mod download;
pub mod torrent;
pub mod trackers;

pub use announcing::{TorrentTrackers, Transfer};
pub use trackers::{RequestId, TrackerClient, TrackerConfig};

/// Which component a reactor handle belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The TCP connection of an HTTP tracker request, by request slot.
    HttpTracker(usize),
    /// A UDP socket shared by every UDP tracker transaction.
    UdpTracker,
    /// A socket the resolver sends its queries on.
    Dns,
    /// The tracker client's one timer (its earliest deadline).
    TrackerTimer,
    /// A torrent's listening socket, by torrent key.
    Listener(u32),
    /// A peer connection: torrent key, peer slot.
    Peer(u32, u32),
    /// A torrent's one timer (its earliest deadline).
    TorrentTimer(u32),
    /// The SIGINT/SIGTERM watch.
    Signal,
    /// A timer of the application's own (for example a run deadline).
    App(u32),
}
