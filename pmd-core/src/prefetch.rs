//! Cache prefetch hints for the data paths: start loading a line a burst will read, or
//! take ownership of a line it will write (`PREFETCHW`), while earlier packets are
//! worked on.
//!
//! A prefetch never faults and has no architectural effect, whatever the address, so
//! these are safe functions; on targets without the instructions they do nothing.
//! `core::hint` has no prefetch; `core::arch` has the x86 intrinsic, wrapped here once.

/// Hints that the line holding `p` will be read soon.
#[inline(always)]
pub fn read<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 takes any address and never faults; SSE is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Hints that the line holding `p` will be written soon: the core asks for ownership
/// now, so the stores do not wait for it (a line another core holds, such as a guest's
/// receive buffer, costs a round trip).
#[inline(always)]
pub fn write<T>(p: *const T) {
    // Inline assembly: the intrinsic's write hint becomes PREFETCHW only when the build
    // targets a CPU with it, and the baseline x86_64 target does not name one.
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHW takes any address and never faults, reads or writes memory as far
    // as the program can see; a CPU without it executes it as a no-op (0F 0D).
    unsafe {
        std::arch::asm!("prefetchw [{}]", in(reg) p, options(nostack, preserves_flags, readonly))
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetching_any_address_is_harmless() {
        let v = [7u8; 64];
        read(v.as_ptr());
        write(v.as_ptr());
        // Addresses nothing maps: a hint, never a fault.
        read(std::ptr::null::<u8>());
        write(usize::MAX as *const u8);
        assert_eq!(v, [7u8; 64]);
    }
}
