//! Bounded arbitrary-input tests for every parser of untrusted bytes besides the
//! torrent and magnet parsers (which `metainfo_hostile.rs` covers): the peer wire,
//! HTTP and UDP tracker replies, compact peer lists, DNS answers, tracker URLs and
//! BEP 10 extension handshakes.
//!
//! Each test feeds tens of thousands of random and mutated inputs from a fixed
//! seed, asserts nothing panics and that what does parse is consistent (valid
//! inputs round-trip, chunking does not change a stream's meaning), and finishes
//! in well under its time bound. The stream checks are the fuzz targets' own
//! (`fuzz/src/*.rs`, included below), and `fuzz/regressions/` is replayed through
//! them, so every input that ever broke a parser is checked on every run.

#[allow(dead_code)]
#[path = "../fuzz/src/checks.rs"]
mod checks;
#[allow(dead_code)]
#[path = "../fuzz/src/http_stream.rs"]
mod http_stream;
#[allow(dead_code)]
#[path = "../fuzz/src/peer_stream.rs"]
mod peer_stream;
#[allow(dead_code)]
#[path = "../fuzz/src/stream.rs"]
mod stream;

mod parsers_arbitrary {
    pub mod dns;
    pub mod extension;
    pub mod gen;
    pub mod http;
    pub mod regressions;
    pub mod udp;
    pub mod url;
    pub mod wire;
}
