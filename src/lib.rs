//! bitloop: a small, fast BitTorrent client on a hand-written, libuv-style reactor.
//!
//! # Map of the crate
//!
//! | module | what it is for |
//! | --- | --- |
//! | [`reactor`] | the event loop: one table owning every socket, timer and signal source |
//! | [`bencode`] | a lenient bencode reader for what peers and trackers send (torrents stay strict) |
//! | [`client`] | the glue: runs the protocol state machines on the reactor |
//! | [`dns`] | name resolution that never blocks the loop (hosts, resolv.conf, queries) |
//! | [`http`] | one HTTP/1.1 response reader (httparse for the head, our bounded body framing) |
//! | [`metainfo`] | torrent files, magnet links, the piece↔file layout, creating torrents |
//! | [`percent`], [`random`] | small shared helpers: percent-encoding, seeds and a xorshift |
//! | [`peer`] | one peer connection's protocol state: choking, interest, requests, rate |
//! | [`storage`] | files on disk: sparse creation, block writes, SHA-1 verification, resume |
//! | [`swarm`] | one torrent's peers: candidate addresses (and, as they land, the pool and picker) |
//! | [`wire`] | the peer wire protocol (BEP 3) and the Fast extension (BEP 6) |
//! | [`tracker`] | HTTP and UDP tracker announces and the per-torrent announce schedule |
//!
//! Everything above the reactor is sans-IO: protocol code takes bytes and time and
//! returns results, and only `reactor` touches the operating system. See
//! `docs/architecture.md` for the design.

#![warn(missing_docs)]

#[allow(missing_docs)]
pub mod bencode;
#[allow(missing_docs)]
pub mod client;
#[allow(missing_docs)]
pub mod dns;
#[allow(missing_docs)]
pub mod http;
#[allow(missing_docs)]
pub mod metainfo;
#[allow(missing_docs)]
pub mod peer;
#[allow(missing_docs)]
pub mod percent;
#[allow(missing_docs)]
pub mod random;
#[allow(missing_docs)]
pub mod reactor;
#[allow(missing_docs)]
pub mod storage;
#[allow(missing_docs)]
pub mod swarm;
#[allow(missing_docs)]
pub mod torrent;
#[allow(missing_docs)]
pub mod tracker;
#[allow(missing_docs)]
pub mod wire;
