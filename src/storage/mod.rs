//! Storage: a torrent's files on disk, verified.
//!
//! - [`FilePool`]: the session's open files, one bounded LRU shared by all torrents.
//! - [`PieceStore`]: one torrent's files. Blocks are written as they arrive and
//!   hashed at once when they continue their piece's in-order prefix, so a piece
//!   that arrived in order verifies without reading anything back; the rest is read
//!   back in [`CHUNK`]-sized reads. Nothing here allocates with the piece length.
//! - [`Checker`]: checks existing data a slice at a time, so the loop stays live.
//! - [`ResumeData`] and [`ResumePlan`]: the verified pieces with each file's size and
//!   modification time, saved atomically; at start, which pieces to trust, check or
//!   fetch.
//! - [`Storage`]: the single-torrent wrapper today's client uses.
//!
//! `docs/storage.md` describes how a torrent is meant to drive these, the resume
//! file format and the durability promise.

mod check;
mod error;
mod legacy;
mod parts;
mod plan;
mod pool;
pub mod resume;
mod store;
mod sys;

pub use check::{CheckProgress, CheckStatus, Checker};
pub use error::{Op, Result, StorageError, StorageErrorKind};
pub use legacy::{Storage, MAX_OPEN_FILES};
pub use plan::{FileChange, PlanReason, ResumePlan};
pub use pool::{FilePool, PoolStats, StoreId, CHUNK};
pub use resume::{default_state_dir, FileStamp, ResumeData, ResumeError};
pub use store::{PieceStore, StoreOptions, StoreStats, MAX_PIECES_HASHING};
