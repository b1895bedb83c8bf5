//! The swarm of one torrent: where peers come from and (as the download lands)
//! which are connected, choked and picked from. Sans-IO.

pub mod candidates;

pub use candidates::Candidates;
