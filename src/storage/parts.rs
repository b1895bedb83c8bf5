//! A cursor over a run of byte slices written back to back (the blocks of one
//! vectored write), handing them out a file span at a time: a span may end inside
//! a block, and the next file then starts with the rest of it.

use std::io::IoSlice;

/// Slices per vectored write of a span; a longer span takes several writes.
pub const RUN_SLICES: usize = 32;

pub struct Parts<'a> {
    parts: &'a [&'a [u8]],
    /// The part the next byte comes from, and how far into it.
    index: usize,
    offset: usize,
}

impl<'a> Parts<'a> {
    pub fn new(parts: &'a [&'a [u8]]) -> Parts<'a> {
        Parts {
            parts,
            index: 0,
            offset: 0,
        }
    }

    /// Fills `slices` with the next bytes, at most `max` of them; returns how many
    /// slices it filled and how many bytes they hold (fewer than `max` only when
    /// `slices` is full or the parts ran out).
    pub fn take(&mut self, slices: &mut [IoSlice<'a>], max: usize) -> (usize, usize) {
        let mut count = 0;
        let mut bytes = 0;
        while count < slices.len() && bytes < max && self.index < self.parts.len() {
            let part = &self.parts[self.index][self.offset..];
            let n = part.len().min(max - bytes);
            if n > 0 {
                slices[count] = IoSlice::new(&part[..n]);
                count += 1;
                bytes += n;
            }
            self.advance(n);
        }
        (count, bytes)
    }

    /// Passes over `len` bytes (a pad file's share of the run).
    pub fn skip(&mut self, mut len: usize) {
        while len > 0 && self.index < self.parts.len() {
            let n = (self.parts[self.index].len() - self.offset).min(len);
            self.advance(n);
            len -= n;
        }
    }

    fn advance(&mut self, n: usize) {
        self.offset += n;
        if self.offset == self.parts[self.index].len() {
            self.index += 1;
            self.offset = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(parts: &[&[u8]], spans: &[usize], skip: Option<usize>) -> Vec<Vec<u8>> {
        let mut cursor = Parts::new(parts);
        let mut out = Vec::new();
        for (i, &span) in spans.iter().enumerate() {
            if skip == Some(i) {
                cursor.skip(span);
                continue;
            }
            let mut left = span;
            let mut got = Vec::new();
            while left > 0 {
                let mut slices = [IoSlice::new(&[]); 2];
                let (count, bytes) = cursor.take(&mut slices, left);
                assert!(bytes > 0, "parts ran out");
                assert_eq!(slices[..count].iter().map(|s| s.len()).sum::<usize>(), bytes);
                for s in &slices[..count] {
                    got.extend_from_slice(s);
                }
                left -= bytes;
            }
            out.push(got);
        }
        out
    }

    #[test]
    fn spans_cut_blocks_and_continue_where_the_last_ended() {
        let parts: [&[u8]; 4] = [b"abcd", b"", b"efg", b"hijklm"];
        assert_eq!(
            collect(&parts, &[2, 6, 5], None),
            vec![b"ab".to_vec(), b"cdefgh".to_vec(), b"ijklm".to_vec()]
        );
        // Two slices per write: a span of more parts takes several writes.
        assert_eq!(collect(&parts, &[13], None), vec![b"abcdefghijklm".to_vec()]);
    }

    #[test]
    fn a_skipped_span_is_passed_over() {
        let parts: [&[u8]; 2] = [b"abcd", b"efgh"];
        assert_eq!(
            collect(&parts, &[3, 2, 3], Some(1)),
            vec![b"abc".to_vec(), b"fgh".to_vec()]
        );
    }
}
