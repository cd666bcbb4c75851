//! The Internet checksum (RFC 1071): one's-complement sums over packet bytes, for PMDs
//! that complete partial checksums and apps that build or verify headers.

/// Adds `data` as big-endian 16-bit words (an odd last byte is padded with zero) to an
/// unfolded 64-bit accumulator.
#[inline]
pub fn add(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Sum the four 16-bit words of w without losing carries.
        acc += (w >> 48) + ((w >> 32) & 0xffff) + ((w >> 16) & 0xffff) + (w & 0xffff);
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = rest.remainder() {
        acc += u64::from(*b) << 8;
    }
    acc
}

/// Folds an accumulator to 16 bits with end-around carry.
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The folded one's-complement sum of `data` (not inverted).
#[inline]
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    fold(add(0, data))
}

/// The checksum to store in a header whose checksum field is zero in `data`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !ones_complement_sum(data)
}

/// The checksum of a header after the bytes `old` in it became `new` (same even length,
/// 16-bit aligned in the header), from its checksum `csum` before: RFC 1624's
/// incremental update, `HC' = ~(~HC + ~m + m')`, without summing the rest again.
#[inline]
pub fn update(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    let mut acc = u64::from(!csum);
    for (o, n) in old.chunks(2).zip(new.chunks(2)) {
        let w = |c: &[u8]| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]);
        acc += u64::from(!w(o)) + u64::from(w(n));
    }
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incremental_update_equals_a_full_sum() {
        let mut d: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37)).collect();
        let before = checksum(&d);
        let old = d[8..12].to_vec();
        d[8..12].copy_from_slice(&[0xff, 0x00, 0x12, 0x34]);
        assert_eq!(update(before, &old, &d[8..12]), checksum(&d));
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(ones_complement_sum(&d), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
    }

    #[test]
    fn ipv4_header_checksum_verifies() {
        // A well-known IPv4 header (checksum 0xb861 at bytes 10..12).
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(ones_complement_sum(&h), 0xffff);
    }

    #[test]
    fn odd_lengths_and_long_runs_match_the_word_loop() {
        let data: Vec<u8> = (0..1501u32).map(|i| (i * 37 + 11) as u8).collect();
        for len in [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 1500, 1501] {
            let d = &data[..len];
            let mut slow = 0u64;
            for c in d.chunks(2) {
                slow += u64::from(c[0]) << 8 | u64::from(*c.get(1).unwrap_or(&0));
            }
            assert_eq!(ones_complement_sum(d), fold(slow), "len {len}");
        }
    }
}
