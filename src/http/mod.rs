//! One HTTP/1.1 response reader, sans-IO, for trackers and torrents fetched by URL.
//!
//! The head (status line and headers) is parsed by `httparse`, the parser under
//! hyper; the body framing is ours and incremental, so every byte is looked at once
//! however the response is chunked by the network: `Content-Length`, `chunked`
//! (with extensions and trailers), or a body that ends when the server closes.
//!
//! Feed bytes with [`ResponseReader::push`]: `Ok(None)` means "need more", `Ok(Some)`
//! is the complete response. [`ResponseReader::finish`] is the server's close. The
//! head may be at most [`MAX_HEADER_BYTES`] and the body at most the reader's body
//! limit ([`MAX_RESPONSE_BYTES`] for trackers); past either it is `TooLarge`, checked
//! before the bytes are stored.

use crate::tracker::TrackerError;

/// Largest body accepted from a tracker.
pub const MAX_RESPONSE_BYTES: usize = 512 * 1024;
/// Largest head (status line and headers) accepted.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header lines in one head.
pub const MAX_HEADERS: usize = 64;
/// Longest chunk-size line (with extensions) or trailer line.
const MAX_CHUNK_LINE: usize = 1024;

/// A complete HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// The reason phrase ("Not Found"), for messages.
    pub reason: String,
    /// The `Location` header (first one), unvalidated: redirects resolve and check it.
    pub location: Option<String>,
    /// The `Content-Type` header, lower-cased.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Where a chunked body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// This many data bytes of the current chunk remain.
    Data(usize),
    /// The CRLF after a chunk's data: this many of its bytes remain.
    DataEnd(u8),
    /// Reading trailer lines after the last chunk, until an empty one.
    Trailer,
    Done,
}

#[derive(Debug)]
struct Head {
    status: u16,
    reason: String,
    location: Option<String>,
    content_type: Option<String>,
    framing: Framing,
}

/// Reads one HTTP/1.1 response from bytes fed in any chunking.
#[derive(Debug)]
pub struct ResponseReader {
    body_limit: usize,
    /// Bytes of the head seen so far (only until the head is complete).
    head_bytes: Vec<u8>,
    head: Option<Head>,
    body: Vec<u8>,
    chunk: Chunk,
    /// A partial chunk-size or trailer line.
    line: Vec<u8>,
}

impl Default for ResponseReader {
    fn default() -> ResponseReader {
        ResponseReader::new()
    }
}

fn malformed(why: impl Into<String>) -> TrackerError {
    TrackerError::Malformed(why.into())
}

impl ResponseReader {
    /// A reader for tracker responses (body up to [`MAX_RESPONSE_BYTES`]).
    pub fn new() -> ResponseReader {
        ResponseReader::with_body_limit(MAX_RESPONSE_BYTES)
    }

    /// A reader whose body may be up to `body_limit` bytes.
    pub fn with_body_limit(body_limit: usize) -> ResponseReader {
        ResponseReader {
            body_limit,
            head_bytes: Vec::new(),
            head: None,
            body: Vec::new(),
            chunk: Chunk::Size,
            line: Vec::new(),
        }
    }

    /// Adds received bytes; returns the response once it is complete. Bytes after a
    /// complete response are ignored (we send `Connection: close`).
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<Option<HttpResponse>, TrackerError> {
        while self.head.is_none() {
            if bytes.is_empty() {
                return Ok(None);
            }
            // Look for the end of the head only in the new bytes (and the three before
            // them), so a head trickled in byte by byte is still scanned once.
            let old = self.head_bytes.len();
            let room = MAX_HEADER_BYTES + 4 - old.min(MAX_HEADER_BYTES + 4);
            let take = bytes.len().min(room);
            self.head_bytes.extend_from_slice(&bytes[..take]);
            let from = old.saturating_sub(3);
            let end = find(&self.head_bytes[from..], b"\r\n\r\n").map(|at| from + at + 4);
            let Some(end) = end else {
                if self.head_bytes.len() > MAX_HEADER_BYTES {
                    return Err(TrackerError::TooLarge);
                }
                return Ok(None);
            };
            let used_of_new = end - old;
            bytes = &bytes[used_of_new..];
            match parse_head(&self.head_bytes[..end])? {
                // 1xx (100 Continue and friends): skip it and read the real response.
                None => self.head_bytes.clear(),
                Some(head) => {
                    if let Framing::Length(n) = head.framing {
                        if n > self.body_limit {
                            return Err(TrackerError::TooLarge);
                        }
                        self.body.reserve_exact(n);
                    }
                    self.head = Some(head);
                    self.head_bytes = Vec::new();
                }
            }
        }
        self.body_bytes(bytes)?;
        Ok(self.complete(false))
    }

    /// The server closed the connection: a close-delimited body ends here; anything
    /// else incomplete is truncated.
    pub fn finish(&mut self) -> Result<HttpResponse, TrackerError> {
        self.complete(true)
            .ok_or_else(|| malformed("connection closed before the response was complete"))
    }

    fn room_for(&self, n: usize) -> Result<(), TrackerError> {
        if self.body.len() + n > self.body_limit {
            Err(TrackerError::TooLarge)
        } else {
            Ok(())
        }
    }

    fn body_bytes(&mut self, mut bytes: &[u8]) -> Result<(), TrackerError> {
        let framing = self.head.as_ref().expect("head parsed").framing;
        match framing {
            Framing::Length(n) => {
                let take = bytes.len().min(n - self.body.len());
                self.body.extend_from_slice(&bytes[..take]);
            }
            Framing::UntilClose => {
                self.room_for(bytes.len())?;
                self.body.extend_from_slice(bytes);
            }
            Framing::Chunked => {
                while !bytes.is_empty() && self.chunk != Chunk::Done {
                    bytes = self.chunked(bytes)?;
                }
            }
        }
        Ok(())
    }

    /// Consumes some bytes of a chunked body; returns the rest.
    fn chunked<'b>(&mut self, bytes: &'b [u8]) -> Result<&'b [u8], TrackerError> {
        match self.chunk {
            Chunk::Size | Chunk::Trailer => {
                let Some(at) = bytes.iter().position(|&b| b == b'\n') else {
                    if self.line.len() + bytes.len() > MAX_CHUNK_LINE {
                        return Err(malformed("chunk size line too long"));
                    }
                    self.line.extend_from_slice(bytes);
                    return Ok(&[]);
                };
                if self.line.len() + at > MAX_CHUNK_LINE {
                    return Err(malformed("chunk size line too long"));
                }
                self.line.extend_from_slice(&bytes[..at]);
                let line = std::mem::take(&mut self.line);
                let line = line.strip_suffix(b"\r").unwrap_or(&line);
                if self.chunk == Chunk::Trailer {
                    if line.is_empty() {
                        self.chunk = Chunk::Done;
                    }
                } else {
                    let size = chunk_size(line)?;
                    self.room_for(size)?;
                    self.chunk = if size == 0 {
                        Chunk::Trailer
                    } else {
                        Chunk::Data(size)
                    };
                }
                Ok(&bytes[at + 1..])
            }
            Chunk::Data(left) => {
                let take = bytes.len().min(left);
                self.body.extend_from_slice(&bytes[..take]);
                self.chunk = if take == left {
                    Chunk::DataEnd(2)
                } else {
                    Chunk::Data(left - take)
                };
                Ok(&bytes[take..])
            }
            Chunk::DataEnd(left) => {
                let expected: &[u8] = if left == 2 { b"\r\n" } else { b"\n" };
                if bytes[0] != expected[0] {
                    return Err(malformed("chunk not followed by CRLF"));
                }
                self.chunk = if left == 2 { Chunk::DataEnd(1) } else { Chunk::Size };
                Ok(&bytes[1..])
            }
            Chunk::Done => Ok(&[]),
        }
    }

    /// The response, if the body is complete (or the server closed, `eof`).
    fn complete(&mut self, eof: bool) -> Option<HttpResponse> {
        let head = self.head.as_ref()?;
        let done = match head.framing {
            Framing::Length(n) => self.body.len() == n,
            Framing::Chunked => self.chunk == Chunk::Done,
            Framing::UntilClose => eof,
        };
        if !done {
            return None;
        }
        let head = self.head.take()?;
        Some(HttpResponse {
            status: head.status,
            reason: head.reason,
            location: head.location,
            content_type: head.content_type,
            body: std::mem::take(&mut self.body),
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn chunk_size(line: &[u8]) -> Result<usize, TrackerError> {
    let size = line.split(|&b| b == b';').next().unwrap_or_default();
    let size = std::str::from_utf8(size)
        .map_err(|_| malformed("bad chunk size"))?
        .trim();
    if size.is_empty() || size.len() > 16 {
        return Err(malformed(format!("bad chunk size {size:?}")));
    }
    usize::from_str_radix(size, 16).map_err(|_| malformed(format!("bad chunk size {size:?}")))
}

/// Parses a complete head with httparse; `None` for a 1xx interim response.
fn parse_head(bytes: &[u8]) -> Result<Option<Head>, TrackerError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(malformed("incomplete response head")),
        Err(e) => return Err(malformed(format!("bad response head: {e}"))),
    }
    let status = response.code.unwrap_or(0);
    if !(100..600).contains(&status) {
        return Err(malformed(format!("bad status code {status}")));
    }
    if (100..200).contains(&status) {
        return Ok(None);
    }
    let (mut length, mut chunked, mut location, mut content_type) = (None, false, None, None);
    for header in response.headers.iter() {
        let value = String::from_utf8_lossy(header.value);
        let value = value.trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            let n: usize = value.parse().map_err(|_| malformed("bad Content-Length"))?;
            if length.is_some_and(|m| m != n) {
                return Err(malformed("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if header.name.eq_ignore_ascii_case("location") && location.is_none() {
            location = Some(value.to_string());
        } else if header.name.eq_ignore_ascii_case("content-type") && content_type.is_none() {
            content_type = Some(value.to_ascii_lowercase());
        }
    }
    let framing = if chunked {
        Framing::Chunked // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length
    } else if let Some(n) = length {
        Framing::Length(n)
    } else if status == 204 || status == 304 {
        Framing::Length(0)
    } else {
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        reason: response.reason.unwrap_or_default().to_string(),
        location,
        content_type,
        framing,
    }))
}

#[cfg(test)]
mod tests;
