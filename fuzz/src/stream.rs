//! Byte streams in arbitrary chunkings, and the receive loop every stream decoder is
//! driven by: append each read to a buffer, decode whole items from its front,
//! consume what the decoder says it used, wait for more when it says "need more".
//!
//! Depends on std only: the fuzz targets use it through `bitloop_fuzz::stream`, and
//! the normal suite includes this very file (`tests/parsers_arbitrary.rs`), so both
//! cut streams and receive them the same way.

/// How a stream is cut into reads: `sizes` in turn, cycling, the last read short.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunking {
    sizes: Vec<usize>,
}

impl Chunking {
    /// The whole stream in one read.
    pub fn whole() -> Chunking {
        Chunking {
            sizes: vec![usize::MAX],
        }
    }

    /// Reads of `sizes` bytes in turn (a zero is read as one byte: a read that
    /// returns nothing is the end of the stream, not a chunk).
    pub fn new(sizes: Vec<usize>) -> Chunking {
        if sizes.is_empty() {
            return Chunking::whole();
        }
        Chunking {
            sizes: sizes.into_iter().map(|s| s.max(1)).collect(),
        }
    }

    /// The reads `stream` arrives in.
    pub fn chunks<'a>(&'a self, stream: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut rest = stream;
        self.sizes.iter().cycle().map_while(move |&size| {
            if rest.is_empty() {
                return None;
            }
            let (read, after) = rest.split_at(size.min(rest.len()));
            rest = after;
            Some(read)
        })
    }
}

/// The input of a stream target, cut from raw fuzz bytes:
///
/// ```text
/// [param: u32 LE][flags: u8][k: u8][k chunk sizes: u8 each, 0 = 64 KiB][stream ...]
/// ```
///
/// Missing header bytes read as zero, so every input is valid. `param` and
/// `flags` are the target's to interpret (the wire target: piece count and
/// whether the stream starts with a handshake).
#[derive(Clone, Debug)]
pub struct StreamInput<'a> {
    pub param: u32,
    pub flags: u8,
    pub chunking: Chunking,
    pub stream: &'a [u8],
}

/// Most chunk sizes in a header (`k` is taken modulo one more than this).
pub const MAX_SIZES: usize = 32;
/// The read size a size byte of zero stands for.
pub const BIG_READ: usize = 64 * 1024;

impl<'a> StreamInput<'a> {
    pub fn parse(data: &'a [u8]) -> StreamInput<'a> {
        let byte = |at: usize| data.get(at).copied().unwrap_or(0);
        let param = u32::from_le_bytes([byte(0), byte(1), byte(2), byte(3)]);
        let flags = byte(4);
        let k = byte(5) as usize % (MAX_SIZES + 1);
        let sizes_end = (6 + k).min(data.len());
        let sizes = data.get(6.min(data.len())..sizes_end).unwrap_or_default();
        let sizes = sizes
            .iter()
            .map(|&s| if s == 0 { BIG_READ } else { s as usize })
            .collect();
        StreamInput {
            param,
            flags,
            chunking: Chunking::new(sizes),
            stream: &data[sizes_end..],
        }
    }

    /// The raw bytes [`StreamInput::parse`] reads back as these parts (for seeds
    /// and regression inputs). `sizes` holds size bytes as in the header.
    pub fn encode(param: u32, flags: u8, sizes: &[u8], stream: &[u8]) -> Vec<u8> {
        assert!(sizes.len() <= MAX_SIZES, "at most {MAX_SIZES} chunk sizes");
        let mut out = param.to_le_bytes().to_vec();
        out.push(flags);
        out.push(sizes.len() as u8);
        out.extend_from_slice(sizes);
        out.extend_from_slice(stream);
        out
    }
}

/// What a decoder says about the front of the receive buffer.
#[derive(Debug)]
pub enum Step<T, E> {
    /// One whole item, and how many bytes of the buffer it used.
    Took(T, usize),
    /// The item at the front is not complete yet.
    NeedMore,
    /// The stream is broken; a receiver drops the connection.
    Failed(E),
}

/// What a receiver got from a whole stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received<T, E> {
    /// The items decoded, in order.
    pub items: Vec<T>,
    /// `None` when the stream ended waiting for more (`buffered` bytes held),
    /// the error otherwise.
    pub failed: Option<E>,
    /// Bytes left in the buffer at the end.
    pub buffered: usize,
}

/// Feeds `stream` to `decode` in `chunking`, as a receiver would: after each read,
/// decode from the front of the buffer until it needs more, dropping what each item
/// used. Panics if the decoder claims to use nothing or more than it was given.
pub fn receive<T, E>(
    chunking: &Chunking,
    stream: &[u8],
    mut decode: impl FnMut(&[u8]) -> Step<T, E>,
) -> Received<T, E> {
    let mut buffer = Vec::new();
    let mut items = Vec::new();
    for read in chunking.chunks(stream) {
        buffer.extend_from_slice(read);
        let mut at = 0;
        loop {
            match decode(&buffer[at..]) {
                Step::Took(item, used) => {
                    assert!(
                        used > 0 && used <= buffer.len() - at,
                        "decoder used {used} of {} bytes",
                        buffer.len() - at
                    );
                    at += used;
                    items.push(item);
                }
                Step::NeedMore => break,
                Step::Failed(error) => {
                    return Received {
                        items,
                        failed: Some(error),
                        buffered: buffer.len() - at,
                    }
                }
            }
        }
        buffer.drain(..at);
    }
    Received {
        items,
        failed: None,
        buffered: buffer.len(),
    }
}
