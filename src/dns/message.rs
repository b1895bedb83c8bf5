//! DNS messages (RFC 1035): encoding an A or AAAA query, decoding the addresses in
//! an answer. Every length and pointer is checked; a hostile answer gives an error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Record types we ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordType {
    A = 1,
    Aaaa = 28,
}

/// The Internet class, the only one we ask in.
pub const CLASS_IN: u16 = 1;
const HEADER: usize = 12;
/// Longest name accepted (RFC 1035: 255 octets on the wire).
pub const MAX_NAME: usize = 253;
/// Most answer records read from one message.
const MAX_ANSWERS: usize = 64;
/// Most labels walked in one name (pointers included) before giving up.
const MAX_LABELS: usize = 128;

/// The question a message carries (an answer echoes the query's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// Dotted, lower-cased, without the final dot.
    pub name: String,
    pub record: u16,
    pub class: u16,
}

/// A decoded answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub id: u16,
    /// The first question, and how many there were (an answer to our query has one).
    pub question: Option<Question>,
    pub questions: u16,
    /// 0 = no error, 3 = no such name, ...
    pub rcode: u8,
    pub truncated: bool,
    pub addresses: Vec<IpAddr>,
}

/// Encodes a recursive query for `name`.
pub fn encode_query(id: u16, name: &str, record: RecordType) -> Result<Vec<u8>, String> {
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("bad host name {name:?}"));
    }
    let mut out = Vec::with_capacity(HEADER + name.len() + 6);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes()); // RD: recursion desired
    out.extend_from_slice(&1u16.to_be_bytes()); // one question
    out.extend_from_slice(&[0; 6]);
    for label in name.split('.') {
        if label.is_empty()
            || label.len() > 63
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!("bad host name {name:?}"));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&(record as u16).to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

fn u16_at(data: &[u8], at: usize) -> Result<u16, String> {
    data.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| "truncated DNS message".to_string())
}

/// Skips a (possibly compressed) name starting at `at`; returns the offset after it.
fn skip_name(data: &[u8], mut at: usize) -> Result<usize, String> {
    for _ in 0..MAX_LABELS {
        let len = *data.get(at).ok_or("truncated name")?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => {
                data.get(at + 1).ok_or("truncated pointer")?;
                return Ok(at + 2); // a pointer ends the name in place
            }
            l if l & 0xc0 == 0 => at += 1 + l as usize,
            _ => return Err("bad label type".into()),
        }
    }
    Err("name has too many labels".into())
}

/// Reads a (possibly compressed) name at `at`: (dotted lower-case name, offset after
/// it in place). Pointers are followed at most [`MAX_LABELS`] times in all.
fn read_name(data: &[u8], mut at: usize) -> Result<(String, usize), String> {
    let mut name = String::new();
    let mut after = None;
    for _ in 0..MAX_LABELS {
        let len = *data.get(at).ok_or("truncated name")?;
        match len {
            0 => return Ok((name, after.unwrap_or(at + 1))),
            l if l & 0xc0 == 0xc0 => {
                let low = *data.get(at + 1).ok_or("truncated pointer")?;
                after.get_or_insert(at + 2);
                at = (usize::from(l & 0x3f) << 8) | usize::from(low);
            }
            l if l & 0xc0 == 0 => {
                let label = data.get(at + 1..at + 1 + l as usize).ok_or("truncated label")?;
                if !name.is_empty() {
                    name.push('.');
                }
                name.extend(label.iter().map(|b| b.to_ascii_lowercase() as char));
                if name.len() > MAX_NAME + 2 {
                    return Err("name too long".into());
                }
                at += 1 + l as usize;
            }
            _ => return Err("bad label type".into()),
        }
    }
    Err("name has too many labels".into())
}

/// Decodes the question and the A and AAAA records of an answer.
pub fn decode_answer(data: &[u8]) -> Result<Answer, String> {
    if data.len() < HEADER {
        return Err("truncated DNS header".into());
    }
    let id = u16_at(data, 0)?;
    let flags = u16_at(data, 2)?;
    if flags & 0x8000 == 0 {
        return Err("not a response".into());
    }
    let questions = u16_at(data, 4)? as usize;
    let answers = u16_at(data, 6)? as usize;
    let mut at = HEADER;
    let mut question = None;
    for i in 0..questions.min(4) {
        if i == 0 {
            let (name, after) = read_name(data, at)?;
            question = Some(Question {
                name,
                record: u16_at(data, after)?,
                class: u16_at(data, after + 2)?,
            });
            at = after + 4;
        } else {
            at = skip_name(data, at)? + 4;
        }
    }
    let mut addresses = Vec::new();
    for _ in 0..answers.min(MAX_ANSWERS) {
        at = skip_name(data, at)?;
        let kind = u16_at(data, at)?;
        let class = u16_at(data, at + 2)?;
        let len = u16_at(data, at + 8)? as usize;
        let rdata = data.get(at + 10..at + 10 + len).ok_or("truncated record")?;
        at += 10 + len;
        match (kind, class, len) {
            (1, CLASS_IN, 4) => {
                addresses.push(IpAddr::V4(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])))
            }
            (28, CLASS_IN, 16) => {
                let octets: [u8; 16] = rdata.try_into().expect("16 bytes");
                addresses.push(IpAddr::V6(Ipv6Addr::from(octets)));
            }
            _ => {} // CNAMEs and others: the addresses they lead to follow in the same answer
        }
    }
    Ok(Answer {
        id,
        question,
        questions: questions as u16,
        rcode: (flags & 0x000f) as u8,
        truncated: flags & 0x0200 != 0,
        addresses,
    })
}

/// An answer to `query` carrying `records`: what a name server would send back.
/// bitloop never serves DNS; tests use this for their fake name server.
pub fn encode_answer(query: &[u8], records: &[IpAddr]) -> Vec<u8> {
    let mut out = query.to_vec();
    out[2] = 0x81;
    out[3] = 0x80;
    out[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    for ip in records {
        out.extend_from_slice(&[0xc0, 12]); // pointer to the question's name
        let (kind, bytes): (u16, Vec<u8>) = match ip {
            IpAddr::V4(v4) => (1, v4.octets().to_vec()),
            IpAddr::V6(v6) => (28, v6.octets().to_vec()),
        };
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&300u32.to_be_bytes());
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_then_answer_round_trip() {
        let query = encode_query(0xbeef, "tracker.example.org.", RecordType::A).unwrap();
        assert_eq!(&query[12..], b"\x07tracker\x07example\x03org\x00\x00\x01\x00\x01");
        let ips: Vec<IpAddr> = vec!["127.0.0.9".parse().unwrap(), "::1".parse().unwrap()];
        let answer = decode_answer(&encode_answer(&query, &ips)).unwrap();
        assert_eq!((answer.id, answer.rcode, answer.addresses), (0xbeef, 0, ips));
        let question = answer.question.unwrap();
        assert_eq!(
            (
                question.name.as_str(),
                question.record,
                question.class,
                answer.questions
            ),
            ("tracker.example.org", 1, CLASS_IN, 1)
        );
    }

    #[test]
    fn bad_names_and_hostile_answers_are_errors() {
        assert!(encode_query(1, "", RecordType::A).is_err());
        assert!(encode_query(1, "a..b", RecordType::A).is_err());
        assert!(encode_query(1, &"a".repeat(64), RecordType::A).is_err());
        assert!(encode_query(1, "sp ace", RecordType::A).is_err());
        let query = encode_query(1, "x.example", RecordType::A).unwrap();
        let good = encode_answer(&query, &["127.0.0.1".parse().unwrap()]);
        for end in 0..good.len() {
            let _ = decode_answer(&good[..end]); // never panics
        }
        let mut looping = good.clone();
        let at = looping.len() - 16;
        looping[at] = 0xc0;
        looping[at + 1] = at as u8; // pointer to itself: skip_name does not follow it
        let _ = decode_answer(&looping);
        assert!(decode_answer(&query).is_err(), "a query is not a response");
    }
}
