//! The swarm of one torrent: where peers come from and (as the download lands)
//! which are connected, choked and picked from. Sans-IO.

pub mod bitfield;
pub mod candidates;
pub mod choker;
pub mod picker;
pub mod rate_limit;

pub use bitfield::Bitfield;
pub use candidates::Candidates;
pub use choker::{ChokeInput, Choker, ChokerConfig, Decision, SeedOrder};
pub use picker::{Picker, Received};
pub use rate_limit::{parse_rate, RateLimit, RateParseError};
