//! The swarm of one torrent, sans-IO: where peers come from, what they have, which
//! blocks to ask whom for, and who gets to download from us.

pub mod bitfield;
pub mod candidates;
pub mod has;
pub mod order;
pub mod picker;

pub use bitfield::Bitfield;
pub use candidates::Candidates;
pub use has::PeerHas;
pub use order::PieceOrder;
pub use picker::{PeerKey, Picker, Received};
