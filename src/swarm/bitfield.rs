//! A set of piece indexes, one bit each, in the wire's byte order (piece 0 is the
//! high bit of byte 0).

/// One bit per piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

impl Bitfield {
    pub fn new(len: u32) -> Bitfield {
        Bitfield {
            bytes: vec![0; (len as usize).div_ceil(8)],
            len,
            ones: 0,
        }
    }

    pub fn full(len: u32) -> Bitfield {
        let mut bytes = vec![0xff; (len as usize).div_ceil(8)];
        let spare = bytes.len() * 8 - len as usize;
        if let Some(last) = bytes.last_mut() {
            *last &= 0xffu8 << spare;
        }
        Bitfield {
            bytes,
            len,
            ones: len,
        }
    }

    /// From wire bytes already checked by the codec (right size, spare bits clear).
    pub fn from_bytes(bytes: &[u8], len: u32) -> Bitfield {
        debug_assert_eq!(bytes.len(), (len as usize).div_ceil(8));
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Bitfield {
            bytes: bytes.to_vec(),
            len,
            ones,
        }
    }

    /// From wire bytes of unchecked size: `None` unless there is exactly one bit per
    /// piece and the spare bits are clear.
    pub fn from_wire(bytes: &[u8], len: u32) -> Option<Bitfield> {
        if bytes.len() != (len as usize).div_ceil(8) {
            return None;
        }
        let spare = bytes.len() * 8 - len as usize;
        if spare > 0 && bytes[bytes.len() - 1] & !(0xffu8 << spare) != 0 {
            return None;
        }
        Some(Bitfield::from_bytes(bytes, len))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Sets bit `i`; returns whether it was clear. Out-of-range indexes are ignored.
    pub fn set(&mut self, i: u32) -> bool {
        if i >= self.len || self.get(i) {
            return false;
        }
        self.bytes[(i / 8) as usize] |= 0x80 >> (i % 8);
        self.ones += 1;
        true
    }

    pub fn clear(&mut self, i: u32) {
        if self.get(i) {
            self.bytes[(i / 8) as usize] &= !(0x80 >> (i % 8));
            self.ones -= 1;
        }
    }

    pub fn count(&self) -> u32 {
        self.ones
    }

    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// The set bits in order; skips whole zero bytes, so sparse sets are cheap.
    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.bytes.iter().enumerate().flat_map(|(at, &byte)| {
            let base = at as u32 * 8;
            (0..8u32)
                .filter(move |bit| byte & (0x80 >> bit) != 0)
                .map(move |bit| base + bit)
        })
    }

    /// Whether some bit is set here and clear in `other` (same length).
    pub fn has_any_not_in(&self, other: &Bitfield) -> bool {
        self.bytes.iter().zip(&other.bytes).any(|(a, b)| a & !b != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_in_wire_order_and_counted() {
        let mut b = Bitfield::new(10);
        assert!(b.set(0) && b.set(9) && !b.set(9) && !b.set(10));
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count(), 2);
        b.clear(0);
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), vec![9]);
        assert!(Bitfield::full(10).is_full());
        assert_eq!(Bitfield::full(10).as_bytes(), &[0xff, 0xc0]);
        assert_eq!(Bitfield::from_bytes(&[0xff, 0xc0], 10).count(), 10);
        assert_eq!(Bitfield::full(16).iter_ones().count(), 16);
    }

    #[test]
    fn wire_bytes_are_checked_for_size_and_spare_bits() {
        assert!(Bitfield::from_wire(&[0xff, 0xc0], 10).is_some());
        assert!(Bitfield::from_wire(&[0xff, 0xe0], 10).is_none(), "spare bit set");
        assert!(Bitfield::from_wire(&[0xff], 10).is_none(), "too short");
        assert!(Bitfield::from_wire(&[0xff, 0, 0], 10).is_none(), "too long");
        let mut ours = Bitfield::new(10);
        ours.set(3);
        let theirs = Bitfield::from_wire(&[0x10, 0], 10).unwrap();
        assert!(!theirs.has_any_not_in(&ours));
        assert!(Bitfield::full(10).has_any_not_in(&ours));
    }
}
