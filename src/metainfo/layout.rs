//! The storage layout: where each byte of each piece lives on disk.
//!
//! A torrent is one long byte string cut into pieces, and also the same byte string
//! cut into files. `Layout` maps a range of a piece to the file ranges it covers.
//! Zero-length files cover no bytes (they are created, never written).

use std::ops::Range;
use std::path::PathBuf;

use super::Info;

/// One file and where it starts in the torrent's byte string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutFile {
    pub path: PathBuf,
    pub length: u64,
    /// Offset of the file's first byte in the torrent.
    pub offset: u64,
}

/// A contiguous range inside one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSpan {
    /// Index into [`Layout::files`].
    pub file: usize,
    pub file_offset: u64,
    pub len: u64,
}

/// Piece ↔ file mapping for one torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    files: Vec<LayoutFile>,
    piece_length: u64,
    total_length: u64,
    piece_count: u32,
}

impl Layout {
    pub fn new(info: &Info) -> Layout {
        let mut offset = 0;
        let files = info
            .files
            .iter()
            .map(|f| {
                let file = LayoutFile {
                    path: f.path.clone(),
                    length: f.length,
                    offset,
                };
                offset += f.length;
                file
            })
            .collect();
        Layout {
            files,
            piece_length: info.piece_length,
            total_length: offset,
            piece_count: info.pieces.len() as u32,
        }
    }

    pub fn files(&self) -> &[LayoutFile] {
        &self.files
    }

    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    pub fn piece_length(&self) -> u64 {
        self.piece_length
    }

    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// Length of `piece` (the last one may be short); `None` past the end.
    pub fn piece_size(&self, piece: u32) -> Option<u64> {
        if piece >= self.piece_count {
            return None;
        }
        let start = u64::from(piece) * self.piece_length;
        Some(self.piece_length.min(self.total_length - start))
    }

    /// The file ranges covering `len` bytes at `offset` inside `piece`, in order.
    /// `None` if the range is not inside the piece.
    pub fn spans(&self, piece: u32, offset: u64, len: u64) -> Option<impl Iterator<Item = FileSpan> + '_> {
        let size = self.piece_size(piece)?;
        if offset.checked_add(len)? > size {
            return None;
        }
        let start = u64::from(piece) * self.piece_length + offset;
        let end = start + len;
        // First file that ends after `start`; zero-length files end where they start
        // and are skipped by this and by the filter below.
        let first = self.files.partition_point(|f| f.offset + f.length <= start);
        Some(
            self.files[first..]
                .iter()
                .enumerate()
                .take_while(move |(_, f)| f.offset < end)
                .filter(|(_, f)| f.length > 0)
                .map(move |(i, f)| {
                    let from = start.max(f.offset);
                    let to = end.min(f.offset + f.length);
                    FileSpan {
                        file: first + i,
                        file_offset: from - f.offset,
                        len: to - from,
                    }
                }),
        )
    }

    /// The file ranges covering a whole piece.
    pub fn piece_spans(&self, piece: u32) -> Option<impl Iterator<Item = FileSpan> + '_> {
        self.spans(piece, 0, self.piece_size(piece)?)
    }

    /// The pieces that hold bytes of `file` (empty for a zero-length file).
    pub fn file_pieces(&self, file: usize) -> Range<u32> {
        let f = &self.files[file];
        if f.length == 0 {
            return 0..0;
        }
        let first = f.offset / self.piece_length;
        let last = (f.offset + f.length - 1) / self.piece_length;
        first as u32..last as u32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FileEntry, Info};
    use super::*;

    fn layout(piece_length: u64, lengths: &[u64]) -> Layout {
        let total: u64 = lengths.iter().sum();
        let info = Info {
            name: "t".into(),
            piece_length,
            pieces: vec![[0; 20]; total.div_ceil(piece_length) as usize],
            files: lengths
                .iter()
                .enumerate()
                .map(|(i, &length)| FileEntry {
                    path: format!("f{i}").into(),
                    length,
                    pad: false,
                })
                .collect(),
            single_file: false,
            private: false,
        };
        Layout::new(&info)
    }

    fn spans(l: &Layout, piece: u32) -> Vec<(usize, u64, u64)> {
        l.piece_spans(piece)
            .unwrap()
            .map(|s| (s.file, s.file_offset, s.len))
            .collect()
    }

    #[test]
    fn one_piece_spanning_many_small_files_and_empty_ones() {
        // Files smaller than a block, zero-length files between them.
        let l = layout(16384, &[100, 0, 5, 0, 0, 16000, 1000]);
        assert_eq!(l.piece_count(), 2);
        assert_eq!(
            spans(&l, 0),
            vec![(0, 0, 100), (2, 0, 5), (5, 0, 16000), (6, 0, 279)]
        );
        assert_eq!(spans(&l, 1), vec![(6, 279, 721)]);
        assert_eq!(l.piece_size(1), Some(721));
        assert_eq!(l.file_pieces(1), 0..0);
        assert_eq!(l.file_pieces(6), 0..2);
    }

    #[test]
    fn a_file_spanning_many_pieces() {
        let l = layout(10, &[3, 35, 2]);
        assert_eq!(spans(&l, 0), vec![(0, 0, 3), (1, 0, 7)]);
        assert_eq!(spans(&l, 2), vec![(1, 17, 10)]);
        assert_eq!(spans(&l, 3), vec![(1, 27, 8), (2, 0, 2)]);
        assert_eq!(l.file_pieces(1), 0..4);
        let block: Vec<_> = l
            .spans(3, 7, 3)
            .unwrap()
            .map(|s| (s.file, s.file_offset, s.len))
            .collect();
        assert_eq!(block, vec![(1, 34, 1), (2, 0, 2)]);
    }

    #[test]
    fn ranges_outside_a_piece_are_refused() {
        let l = layout(10, &[25]);
        assert!(l.spans(2, 0, 6).is_none(), "last piece is 5 bytes");
        assert!(l.spans(3, 0, 1).is_none());
        assert!(l.spans(0, u64::MAX, 2).is_none());
        assert_eq!(l.spans(2, 5, 0).unwrap().count(), 0);
    }

    #[test]
    fn every_byte_maps_to_exactly_one_file_position() {
        let lengths = [7, 0, 1, 13, 0, 29, 3, 0];
        for piece_length in [1, 2, 5, 8, 16, 64] {
            let l = layout(piece_length, &lengths);
            let mut seen = Vec::new();
            for piece in 0..l.piece_count() {
                for span in l.piece_spans(piece).unwrap() {
                    for k in 0..span.len {
                        seen.push((span.file, span.file_offset + k));
                    }
                }
            }
            let expected: Vec<_> = lengths
                .iter()
                .enumerate()
                .flat_map(|(i, &n)| (0..n).map(move |k| (i, k)))
                .collect();
            assert_eq!(seen, expected, "piece length {piece_length}");
        }
    }
}
