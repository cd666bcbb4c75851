//! Copying short runs of pointers without a call into `memcpy`.
//!
//! Bursts move 1 to 64 pointers at a time. A plain `copy_from_slice` of a run whose length
//! is only known at run time becomes a `memcpy` call, whose fixed cost dominates at these
//! sizes; fixed-size chunk copies are inlined as a few vector moves instead.

/// Copies `src` into `dst` (equal lengths; a longer side is cut to the shorter).
#[inline(always)]
pub(crate) fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    let n = src.len().min(dst.len());
    let (dst, src) = (&mut dst[..n], &src[..n]);
    if n > 64 {
        dst.copy_from_slice(src);
        return;
    }
    let mut i = 0;
    while i + 8 <= n {
        chunk::<T, 8>(dst, src, i);
        i += 8;
    }
    if n - i >= 4 {
        chunk::<T, 4>(dst, src, i);
        i += 4;
    }
    if n - i >= 2 {
        chunk::<T, 2>(dst, src, i);
        i += 2;
    }
    if n - i >= 1 {
        dst[i] = src[i];
    }
}

#[inline(always)]
fn chunk<T: Copy, const K: usize>(dst: &mut [T], src: &[T], at: usize) {
    let s: &[T; K] = src[at..at + K].try_into().expect("K elements");
    let d: &mut [T; K] = (&mut dst[at..at + K]).try_into().expect("K elements");
    *d = *s;
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
}
