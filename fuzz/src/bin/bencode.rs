//! Fuzzes the lenient bencode reader (tracker responses today; extension messages
//! and DHT packets later): any bytes give a value or an error, never a panic, and
//! the work is bounded by the input and the limits. What it decodes is looked up
//! the way callers do, so the lookup API is exercised too.
//!
//! Run with `RUSTC_BOOTSTRAP=1 cargo fuzz run bencode` from the repository root.

#![no_main]

use bitloop::bencode::{decode, decode_prefix, Limits, Value};
use libfuzzer_sys::fuzz_target;

fn walk(value: &Value<'_>, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    match value {
        Value::Dict(dict) => {
            let _ = (dict.int(b"interval"), dict.bytes(b"peers"), dict.dict(b"a"), dict.str(b"y"));
            for (_, v) in dict.iter() {
                walk(v, budget);
            }
        }
        Value::List(items) => items.iter().for_each(|v| walk(v, budget)),
        Value::Integer(_) | Value::Bytes(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let tight = Limits {
        max_depth: 4,
        max_values: 64,
    };
    let _ = decode(data, tight);
    if let Ok((value, used)) = decode_prefix(data, Limits::default()) {
        assert!(used <= data.len());
        walk(&value, &mut 100_000);
    }
});
