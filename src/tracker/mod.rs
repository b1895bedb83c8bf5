//! Trackers (BEP 3, 15, 23, 7, 12): announce requests, responses, and the per-torrent
//! coordinator, all sans-IO.
//!
//! - [`peers`]: the one decoder for compact peer lists, shared by both tracker kinds.
//! - [`http`]: the HTTP request, a bounded HTTP/1.1 response reader, the bencoded body.
//! - [`udp`]: the BEP 15 codec and one announce's state machine (retransmission, ids).
//! - [`announcer`]: tiers, schedule and events for one torrent.
//! - [`url`]: tracker URLs.
//!
//! Both tracker kinds produce the same [`AnnounceResponse`], owned by value: whoever
//! receives it owns its peer list, and nobody else can free it (the seed's bugs #6,
//! #8 and #10 were a peer list each tracker kind had to remember to free).

pub mod announcer;
pub mod http;
pub mod peers;
pub mod udp;
pub mod url;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::metainfo::InfoHash;

/// Our 20-byte id in the swarm: `-BL0001-` and 12 random characters (Azureus style).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(pub [u8; 20]);

impl PeerId {
    /// A fresh id. Randomness comes from std's per-process hash keys (no extra crate):
    /// ids only need to be unlikely to collide, not unpredictable.
    pub fn generate() -> PeerId {
        let mut id = *b"-BL0001-000000000000";
        let alphabet = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut bits = random_u64() as u128 | (random_u64() as u128) << 64;
        for byte in &mut id[8..] {
            *byte = alphabet[(bits % alphabet.len() as u128) as usize];
            bits /= alphabet.len() as u128;
        }
        PeerId(id)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", String::from_utf8_lossy(&self.0))
    }
}

pub use crate::random::random_u64;

/// The `event` of an announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnounceEvent {
    /// A regular, periodic announce.
    None,
    Started,
    Stopped,
    Completed,
}

impl AnnounceEvent {
    /// The value of the HTTP `event` parameter (none for a periodic announce).
    pub fn http_name(self) -> Option<&'static str> {
        match self {
            AnnounceEvent::None => None,
            AnnounceEvent::Started => Some("started"),
            AnnounceEvent::Stopped => Some("stopped"),
            AnnounceEvent::Completed => Some("completed"),
        }
    }
}

/// Everything an announce says about us, for either tracker kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: AnnounceEvent,
    /// Peers wanted; `None` lets the tracker choose.
    pub numwant: Option<u32>,
    /// Identifies us across IP changes (BEP 3's `key`).
    pub key: u32,
    /// The tracker's `tracker id` from an earlier response, sent back.
    pub tracker_id: Option<Vec<u8>>,
}

/// What a tracker answered. Owned by value, the peer list included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceResponse {
    pub interval: Duration,
    pub min_interval: Option<Duration>,
    pub tracker_id: Option<Vec<u8>>,
    /// Seeders and leechers, when the tracker says.
    pub complete: Option<u32>,
    pub incomplete: Option<u32>,
    pub warning: Option<String>,
    pub peers: Vec<SocketAddr>,
}

/// One torrent's figures from a scrape (either tracker kind).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrapeStats {
    pub seeders: u32,
    pub completed: u32,
    pub leechers: u32,
}

/// Why an announce failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackerError {
    /// The tracker said no (`failure reason`, or a BEP 15 error).
    Failure(String),
    /// An HTTP status other than 200.
    Status(u16),
    /// The response broke the protocol.
    Malformed(String),
    /// The response was larger than we accept.
    TooLarge,
    /// No answer in time.
    Timeout,
    /// More than the allowed number of redirects.
    TooManyRedirects,
    /// A URL we cannot use (bad syntax, or a scheme not supported yet).
    BadUrl(String),
    /// The host name could not be resolved.
    Resolve(String),
    /// The connection failed.
    Io(String),
    /// HTTPS: the TLS handshake or a record failed; the text names the tracker and
    /// what was wrong (expired, unknown issuer, name mismatch, …).
    Tls(String),
    /// The loop is shutting down.
    Cancelled,
}

impl fmt::Display for TrackerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrackerError::Failure(why) => write!(f, "tracker refused: {why}"),
            TrackerError::Status(code) => write!(f, "tracker answered HTTP {code}"),
            TrackerError::Malformed(why) => write!(f, "malformed tracker response: {why}"),
            TrackerError::TooLarge => write!(f, "tracker response too large"),
            TrackerError::Timeout => write!(f, "tracker did not answer in time"),
            TrackerError::TooManyRedirects => write!(f, "too many redirects"),
            TrackerError::BadUrl(why) => write!(f, "{why}"),
            TrackerError::Resolve(why) => write!(f, "cannot resolve tracker host: {why}"),
            TrackerError::Io(why) => write!(f, "tracker connection failed: {why}"),
            TrackerError::Tls(why) => write!(f, "TLS failed: {why}"),
            TrackerError::Cancelled => write!(f, "announce cancelled"),
        }
    }
}

impl std::error::Error for TrackerError {}

/// Bounds applied to every interval a tracker sends, so a hostile or broken one can
/// neither make us hammer it nor go silent for days.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);
pub const MAX_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// Interval used when a tracker sends none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1800);

/// Clamps a tracker's interval (seconds) to [`MIN_INTERVAL`]..=[`MAX_INTERVAL`].
pub fn clamp_interval(seconds: u64) -> Duration {
    Duration::from_secs(seconds).clamp(MIN_INTERVAL, MAX_INTERVAL)
}
