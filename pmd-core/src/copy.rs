//! Copying short runs of pointers and bytes without a call into `memcpy`.
//!
//! Bursts move 1 to 64 pointers at a time. A plain `copy_from_slice` of a run whose length
//! is only known at run time becomes a `memcpy` call, whose fixed cost dominates at these
//! sizes; fixed-size chunk copies are inlined as a few vector moves instead.

/// Copies `src` into `dst` (equal lengths; a longer side is cut to the shorter).
#[inline(always)]
pub(crate) fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    let n = src.len().min(dst.len());
    // SAFETY: n is at most the length of both slices, which cannot overlap (one is
    // borrowed mutably).
    unsafe { copy_run_raw(dst.as_mut_ptr(), src.as_ptr(), n) }
}

/// Copies `n` elements from `s` to `d`.
///
/// # Safety
/// `s..s+n` must be readable, `d..d+n` writable, and the two must not overlap.
#[inline(always)]
pub(crate) unsafe fn copy_run_raw<T: Copy>(d: *mut T, s: *const T, n: usize) {
    // SAFETY: every copy stays within 0..n, which the caller guarantees is readable at `s`,
    // writable at `d`, and not overlapping.
    unsafe {
        if n > 64 {
            std::ptr::copy_nonoverlapping(s, d, n);
            return;
        }
        // Straight-line code, no loop: LLVM turns a copy loop into a `memcpy` call, which is
        // what this function avoids. Eight-element chunks (64 bytes of pointers, a few
        // vector moves each) up to n's multiple of 8, then the remaining 0..=7.
        let full = n & !7;
        let mut k = 8;
        macro_rules! chunk {
            () => {
                if full >= k {
                    std::ptr::copy_nonoverlapping(s.add(k - 8), d.add(k - 8), 8);
                }
                k += 8;
            };
        }
        chunk!();
        chunk!();
        chunk!();
        chunk!();
        chunk!();
        chunk!();
        chunk!();
        chunk!();
        let _ = k;
        let mut i = full;
        if n & 4 != 0 {
            std::ptr::copy_nonoverlapping(s.add(i), d.add(i), 4);
            i += 4;
        }
        if n & 2 != 0 {
            std::ptr::copy_nonoverlapping(s.add(i), d.add(i), 2);
            i += 2;
        }
        if n & 1 != 0 {
            *d.add(i) = *s.add(i);
        }
    }
}

/// Copies `src` into `dst` (equal lengths; a longer side is cut to the shorter): up to
/// 64 bytes as two fixed-size copies that may overlap in the middle (a packet's bytes,
/// where a `memcpy` call would cost more than the copy), longer runs with `memcpy`.
#[inline(always)]
pub(crate) fn copy_bytes(dst: &mut [u8], src: &[u8]) {
    let n = src.len().min(dst.len());
    // SAFETY: n is within both slices, which cannot overlap (one is borrowed mutably).
    unsafe { copy_bytes_raw(dst.as_mut_ptr(), src.as_ptr(), n) }
}

/// Copies `n` bytes from `s` to `d`: up to 64 bytes as two fixed-size moves that may
/// overlap in the middle (where a `memcpy` call would cost more than the copy), longer
/// runs with `memcpy`. Raw pointers, for memory a slice must not describe, such as a
/// guest's buffer that the guest may write while it is read.
///
/// # Safety
/// `s..s+n` must be readable, `d..d+n` writable, and the two must not overlap.
#[inline(always)]
pub unsafe fn copy_bytes_raw(d: *mut u8, s: *const u8, n: usize) {
    /// Copies `K` bytes from the start and `K` bytes ending at `n` (`K <= n <= 2K`).
    macro_rules! two {
        ($k:expr) => {
            // SAFETY: K <= n, so both K-byte runs are inside 0..n, which the caller
            // guarantees readable at `s`, writable at `d` and not overlapping.
            unsafe {
                std::ptr::copy_nonoverlapping(s, d, $k);
                std::ptr::copy_nonoverlapping(s.add(n - $k), d.add(n - $k), $k);
            }
        };
    }
    match n {
        33..=64 => two!(32),
        16..=32 => two!(16),
        8..=15 => two!(8),
        4..=7 => two!(4),
        0..=3 => {
            for i in 0..n {
                // SAFETY: i < n, within both runs.
                unsafe { *d.add(i) = *s.add(i) };
            }
        }
        // SAFETY: as the caller guarantees.
        _ => unsafe { std::ptr::copy_nonoverlapping(s, d, n) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_length() {
        for n in 0..140usize {
            let src: Vec<u64> = (0..n as u64).collect();
            let mut dst = vec![u64::MAX; n];
            copy_run(&mut dst, &src);
            assert_eq!(dst, src, "n={n}");
        }
        let mut short = [0u8; 3];
        copy_run(&mut short, &[1, 2, 3, 4, 5]);
        assert_eq!(short, [1, 2, 3]);
    }

    #[test]
    fn copies_every_byte_length() {
        for n in 0..200usize {
            let src: Vec<u8> = (0..n).map(|i| (i * 7 + 1) as u8).collect();
            let mut dst = vec![0u8; n + 3];
            copy_bytes(&mut dst[..n], &src);
            assert_eq!(&dst[..n], &src[..], "n={n}");
            assert_eq!(&dst[n..], &[0, 0, 0], "n={n}: past the end");
        }
        let mut short = [0u8; 2];
        copy_bytes(&mut short, &[1, 2, 3]);
        assert_eq!(short, [1, 2]);
    }
}
