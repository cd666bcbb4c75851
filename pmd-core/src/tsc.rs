//! Time-stamp counter helpers for cheap timing on the hot path.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Reads the CPU's time-stamp counter (a few cycles, no syscall).
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no memory effects and is available on every x86_64 CPU.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// TSC ticks per second, measured once against the wall clock (about 20 ms).
pub fn hz() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| {
        let t0 = Instant::now();
        let c0 = rdtsc();
        std::thread::sleep(Duration::from_millis(20));
        let c1 = rdtsc();
        let dt = t0.elapsed().as_secs_f64();
        ((c1.wrapping_sub(c0)) as f64 / dt) as u64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsc_advances_and_hz_is_plausible() {
        let a = rdtsc();
        let b = rdtsc();
        assert!(b >= a);
        let hz = hz();
        assert!(hz > 100_000_000, "TSC rate {hz} Hz is implausibly low");
    }
}
