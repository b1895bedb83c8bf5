//! The swarm of one torrent, sans-IO: where peers come from, what they have, which
//! blocks to ask whom for, and who gets to download from us.

pub mod bitfield;
pub mod candidates;
pub mod choker;
pub mod connect_timeout;
pub mod has;
pub mod order;
pub mod picker;
pub mod rate_limit;

pub use bitfield::Bitfield;
pub use candidates::Candidates;
pub use choker::{ChokeInput, Choker, ChokerConfig, Decision, SeedOrder};
pub use connect_timeout::ConnectTimeout;
pub use has::PeerHas;
pub use order::PieceOrder;
pub use picker::{PeerKey, Picker, Received};
pub use rate_limit::{parse_rate, RateLimit, RateParseError};
