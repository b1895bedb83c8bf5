//! BEP 10 extension handshakes as the torrent reads them (`checks::extension`):
//! valid ones from several clients' layouts give their `reqq` whatever the key
//! order, and random and mutated ones never break the reader or the extended
//! message around them.

use bitloop::bencode::{decode, Limits};

use super::gen::{mutate, run_cases, Rng};
use crate::checks;

/// A bencoded byte string.
fn string(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out
}

/// A handshake with `reqq` and the usual keys, in an order the rng picks (clients
/// do not all sort them).
fn handshake(rng: &mut Rng, reqq: u32) -> Vec<u8> {
    let ip_len = if rng.one_in(2) { 4 } else { 16 };
    let mut entries: Vec<Vec<u8>> = vec![
        [string(b"m"), b"d11:ut_metadatai1e6:ut_pexi2ee".to_vec()].concat(),
        [string(b"reqq"), format!("i{reqq}e").into_bytes()].concat(),
        [string(b"v"), string(b"libtorrent/2.0.8")].concat(),
        [string(b"p"), format!("i{}e", rng.u16()).into_bytes()].concat(),
        [string(b"yourip"), string(&rng.bytes(ip_len))].concat(),
        [string(b"metadata_size"), format!("i{}e", rng.u32()).into_bytes()].concat(),
    ];
    for i in (1..entries.len()).rev() {
        entries.swap(i, rng.below(i + 1));
    }
    [b"d".to_vec(), entries.concat(), b"e".to_vec()].concat()
}

#[test]
fn valid_handshakes_give_their_reqq_in_any_key_order() {
    let limits = Limits {
        max_depth: 4,
        max_values: 1000,
    };
    run_cases("extension handshakes", 0x5eed_0601, 10_000, |rng| {
        let reqq = 1 + rng.below(100_000) as u32;
        let bytes = handshake(rng, reqq);
        let value = decode(&bytes, limits).expect("a valid handshake decodes");
        assert_eq!(
            value.as_dict().and_then(|d| d.int(b"reqq")),
            Some(i64::from(reqq))
        );
        checks::extension(&bytes);
    });
}

#[test]
fn mutated_and_random_handshakes_never_break_the_reader() {
    run_cases("mutated extension handshakes", 0x5eed_0602, 20_000, |rng| {
        let mut bytes = if rng.one_in(4) {
            rng.some_bytes(300)
        } else {
            let reqq = rng.u32();
            handshake(rng, reqq)
        };
        for _ in 0..1 + rng.below(4) {
            mutate(rng, &mut bytes);
        }
        checks::extension(&bytes);
    });
    // At the limits: four levels with a value inside, and 1,000 values, decode.
    let limits = Limits {
        max_depth: 4,
        max_values: 1000,
    };
    let deep = b"d1:ad1:bd1:cli1eeeee";
    let many = [b"l".to_vec(), b"i1e".repeat(999), b"e".to_vec()].concat();
    for at_limit in [&deep[..], &many[..]] {
        assert!(decode(at_limit, limits).is_ok());
        checks::extension(at_limit);
    }
    // Deep nesting and many values are refused, not walked.
    checks::extension(&[b'l'; 10_000]);
    checks::extension(&b"le".repeat(5_000));
    checks::extension(&vec![b'x'; 70 * 1024]);
}
