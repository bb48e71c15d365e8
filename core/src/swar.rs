//! Eight bytes at a time: a word of text, and where in it given bytes are (the scanner's
//! strings, the writer's escaping and gzip's fields all look for a few delimiters).

/// `0x01` in every byte.
pub(crate) const ONES: u64 = u64::from_le_bytes([0x01; 8]);
/// `0x80` in every byte.
pub(crate) const HIGH: u64 = ONES << 7;

/// `bytes` (8 of them) as a little-endian word: the byte at the lowest address is the
/// lowest, so `trailing_zeros() / 8` of a mask counts bytes from the start.
#[inline]
pub(crate) fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(bytes);
    u64::from_le_bytes(w)
}

/// The high bit of each byte of `w` that is zero; exact up to the first such byte (a byte
/// after it may be flagged by the borrow), so the lowest flag is always a real one.
#[inline]
pub(crate) fn zero_bytes(w: u64) -> u64 {
    w.wrapping_sub(ONES) & !w & HIGH
}

/// [`zero_bytes`] of the bytes of `w` that equal `b`.
#[inline]
pub(crate) fn bytes_equal(w: u64, b: u8) -> u64 {
    zero_bytes(w ^ (ONES * u64::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_flag_is_the_first_equal_byte() {
        for at in 0..8 {
            for b in [0u8, b'"', b'\n', 0x80, 0xff] {
                // Neighbours one below and one above `b`, which a borrow could flag.
                let mut bytes = [b.wrapping_add(1); 8];
                bytes[at] = b;
                for (k, byte) in bytes.iter_mut().enumerate().skip(at + 1) {
                    *byte = if k % 2 == 0 { b } else { b.wrapping_sub(1) };
                }
                let found = bytes_equal(word(&bytes), b);
                assert_eq!(found.trailing_zeros() / 8, at as u32, "{bytes:?}");
            }
            assert_eq!(bytes_equal(word(&[7; 8]), b'"'), 0);
        }
    }
}
