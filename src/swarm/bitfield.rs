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
        let mut bits = Bitfield::new(len);
        for i in 0..len {
            bits.set(i);
        }
        bits
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

    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(move |&i| self.get(i))
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
        assert_eq!(Bitfield::from_bytes(&[0xff, 0xc0], 10).count(), 10);
    }
}
