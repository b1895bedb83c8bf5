//! The response reader against every framing, every chunking, and broken input.

use super::*;

fn read_all(chunks: &[&[u8]], eof: bool) -> Result<Option<HttpResponse>, TrackerError> {
    let mut reader = ResponseReader::new();
    let mut last = None;
    for chunk in chunks {
        last = reader.push(chunk)?;
    }
    if last.is_none() && eof {
        return reader.finish().map(Some);
    }
    Ok(last)
}

/// Feeds `bytes` one byte at a time.
fn trickle(bytes: &[u8]) -> Result<Option<HttpResponse>, TrackerError> {
    let mut reader = ResponseReader::new();
    for b in bytes {
        if let Some(done) = reader.push(std::slice::from_ref(b))? {
            return Ok(Some(done));
        }
    }
    Ok(None)
}

#[test]
fn content_length_chunked_and_close_delimited_bodies() {
    let full = b"HTTP/1.1 200 OK\r\nContent-Type: Text/Plain\r\nContent-Length: 5\r\n\r\nhello";
    // Every split point gives the same result.
    for at in 0..full.len() {
        let r = read_all(&[&full[..at], &full[at..]], false).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        assert_eq!(r.content_type.as_deref(), Some("text/plain"));
    }
    assert_eq!(trickle(full).unwrap().unwrap().body, b"hello");
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\nX-Trailer: 1\r\n\r\n";
    for at in 0..chunked.len() {
        let r = read_all(&[&chunked[..at], &chunked[at..]], false)
            .unwrap()
            .unwrap();
        assert_eq!(r.body, b"hello");
    }
    assert_eq!(trickle(chunked).unwrap().unwrap().body, b"hello");
    let close = b"HTTP/1.0 200 OK\r\n\r\nhello";
    assert_eq!(read_all(&[close], false).unwrap(), None);
    assert_eq!(read_all(&[close], true).unwrap().unwrap().body, b"hello");
    let continued =
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n";
    let r = read_all(&[continued], false).unwrap().unwrap();
    assert_eq!((r.status, r.location.as_deref()), (302, Some("/x")));
    assert_eq!(r.reason, "Found");
    let r = trickle(continued).unwrap().unwrap();
    assert_eq!(r.status, 302);
}

#[test]
fn broken_responses_are_errors() {
    assert!(read_all(&[b"SSH-2.0-OpenSSH\r\n\r\n"], false).is_err());
    assert!(read_all(&[b"HTTP/1.1 abc OK\r\n\r\n"], false).is_err());
    assert!(read_all(&[b"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n"], false).is_err());
    assert!(read_all(&[b"HTTP/1.1 999 Big\r\nContent-Length: 0\r\n\r\n"], false).is_err());
    assert!(read_all(&[b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n"], false).is_err());
    assert!(read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"], true).is_err());
    assert!(read_all(
        &[b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"],
        false
    )
    .is_err());
    assert!(read_all(
        &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"],
        false
    )
    .is_err());
    assert!(read_all(
        &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX"],
        false
    )
    .is_err());
    let many: String = (0..MAX_HEADERS + 1).map(|i| format!("X-{i}: y\r\n")).collect();
    let head = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
    assert!(read_all(&[head.as_bytes()], false).is_err());
}

#[test]
fn limits_are_checked_before_bytes_are_stored() {
    assert_eq!(
        read_all(&[b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n"], false),
        Err(TrackerError::TooLarge)
    );
    let endless = vec![b'a'; MAX_HEADER_BYTES + 10];
    assert_eq!(read_all(&[&endless], false), Err(TrackerError::TooLarge));
    let mut reader = ResponseReader::new();
    reader.push(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
    let big = vec![0u8; MAX_RESPONSE_BYTES + 1];
    assert_eq!(reader.push(&big), Err(TrackerError::TooLarge));
    let mut reader = ResponseReader::new();
    reader
        .push(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    assert_eq!(reader.push(b"fffffff\r\n"), Err(TrackerError::TooLarge));
    let mut reader = ResponseReader::new();
    reader
        .push(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1")
        .unwrap();
    assert!(reader.push(&vec![b'0'; 2 * MAX_CHUNK_LINE]).is_err());

    // A larger limit for fetched torrents.
    let mut reader = ResponseReader::with_body_limit(4);
    assert_eq!(
        reader.push(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
        Err(TrackerError::TooLarge)
    );
    let mut reader = ResponseReader::with_body_limit(4);
    assert!(reader.push(b"HTTP/1.1 200 OK\r\n\r\nabcd").unwrap().is_none());
    assert_eq!(reader.push(b"e"), Err(TrackerError::TooLarge));
}

#[test]
fn arbitrary_input_never_panics() {
    // A bounded stand-in for the `tracker` fuzz target: mutated responses in random
    // chunkings; each ends in a response, "need more", or an error.
    let seeds: [&[u8]; 3] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n0\r\n\r\n",
        b"HTTP/1.1 302 Found\r\nLocation: //x/y\r\n\r\n",
    ];
    let mut rng = crate::random::Xorshift::new(7);
    for round in 0..20_000 {
        let mut input = seeds[round % seeds.len()].to_vec();
        for _ in 0..=rng.below(3) {
            let at = rng.below(input.len() as u64) as usize;
            let alphabet = b"0123456789abcdef\r\n: ;HTTP/";
            input[at] = alphabet[rng.below(alphabet.len() as u64) as usize];
        }
        let mut reader = ResponseReader::with_body_limit(64);
        let mut rest = &input[..];
        let mut done = false;
        while !rest.is_empty() && !done {
            let n = (rng.below(8) as usize + 1).min(rest.len());
            done = !matches!(reader.push(&rest[..n]), Ok(None));
            rest = &rest[n..];
        }
        if !done {
            let _ = reader.finish();
        }
    }
}
