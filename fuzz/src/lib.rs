//! bitloop's fuzz harness: what the targets in `src/bin/` share, so that a new
//! target is one file (see `README.md` for the recipe).
//!
//! - [`fuzz_target!`], [`text_target!`] and [`stream_target!`] declare a target
//!   taking raw bytes, UTF-8 text, or a byte stream in an arbitrary chunking;
//! - [`stream`] cuts fuzz input into a chunking and a stream and runs the receive
//!   loop a connection runs;
//! - [`checks`] holds each existing target's check by name, [`peer_stream`] and
//!   [`http_stream`] the two stream checks; the normal suite runs them too
//!   (`tests/parsers_arbitrary.rs` includes these files by path, so they use std
//!   and bitloop only) and replays `fuzz/regressions/` through them.

pub mod checks;
pub mod http_stream;
pub mod peer_stream;
pub mod stream;

pub use libfuzzer_sys::{arbitrary, fuzz_target};

/// A target for a parser of text: non-UTF-8 inputs are skipped.
///
/// ```ignore
/// bitloop_fuzz::text_target!(|text| { let _ = bitloop::metainfo::Magnet::parse(text); });
/// ```
#[macro_export]
macro_rules! text_target {
    (|$text:ident| $body:block) => {
        $crate::fuzz_target!(|data: &[u8]| {
            if let Ok($text) = ::std::str::from_utf8(data) {
                $body
            }
        });
    };
}

/// A target for a stream decoder: the input is cut into a [`stream::StreamInput`]
/// (a parameter, flags, a chunking and the stream).
///
/// ```ignore
/// bitloop_fuzz::stream_target!(|input| bitloop_fuzz::peer_stream::check(&input));
/// ```
#[macro_export]
macro_rules! stream_target {
    (|$input:ident| $body:expr) => {
        $crate::fuzz_target!(|data: &[u8]| {
            let $input = $crate::stream::StreamInput::parse(data);
            $body
        });
    };
}
