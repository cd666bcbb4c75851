//! The register file: BAR 0 as 32-bit atomic words, so the driver's threads and the model
//! thread read and write it without a lock, plus the statistics counters with their
//! clear-on-read behaviour (8.2.3.23).

use crate::regs::{mpc, BAR0_LEN, CRCERRS, GORCH, GORCL, GOTCH, GOTCL, GPRC, GPTC, RLEC, ROC, RUC};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// 32-bit statistics registers that clear when read (8.2.3.23).
const CLEAR_ON_READ: &[usize] = &[GPRC, GPTC, mpc(0), CRCERRS, RLEC, RUC, ROC];

/// A split octet counter: 36 bits in hardware, read low register first (the low read
/// takes the count and latches its high bits for the high register; 8.2.3.23).
#[derive(Debug, Default)]
struct Octets {
    count: AtomicU64,
    high: AtomicU32,
}

impl Octets {
    fn read_low(&self) -> u32 {
        let v = self.count.swap(0, Ordering::AcqRel) & 0xf_ffff_ffff;
        self.high.store((v >> 32) as u32, Ordering::Release);
        v as u32
    }

    fn read_high(&self) -> u32 {
        self.high.swap(0, Ordering::AcqRel)
    }

    fn clear(&self) {
        self.count.store(0, Ordering::Release);
        self.high.store(0, Ordering::Release);
    }
}

/// BAR 0 of the model.
#[derive(Debug)]
pub(crate) struct RegFile {
    words: Box<[AtomicU32]>,
    rx_octets: Octets,
    tx_octets: Octets,
}

impl RegFile {
    /// All registers zero.
    pub fn new() -> RegFile {
        RegFile {
            words: (0..BAR0_LEN / 4).map(|_| AtomicU32::new(0)).collect(),
            rx_octets: Octets::default(),
            tx_octets: Octets::default(),
        }
    }

    fn word(&self, off: usize) -> Option<&AtomicU32> {
        if !off.is_multiple_of(4) {
            return None;
        }
        self.words.get(off / 4)
    }

    /// The stored value at `off` (0 outside the BAR), without side effects.
    pub fn get(&self, off: usize) -> u32 {
        self.word(off).map_or(0, |w| w.load(Ordering::Acquire))
    }

    /// Stores `v` at `off` (ignored outside the BAR).
    pub fn set(&self, off: usize, v: u32) {
        if let Some(w) = self.word(off) {
            w.store(v, Ordering::Release);
        }
    }

    /// Sets `bits` at `off`.
    pub fn or(&self, off: usize, bits: u32) {
        if let Some(w) = self.word(off) {
            w.fetch_or(bits, Ordering::AcqRel);
        }
    }

    /// Clears `bits` at `off`.
    pub fn clear_bits(&self, off: usize, bits: u32) {
        if let Some(w) = self.word(off) {
            w.fetch_and(!bits, Ordering::AcqRel);
        }
    }

    /// Clears `bits` at `off` and returns the value from before.
    pub fn take_bits(&self, off: usize, bits: u32) -> u32 {
        self.word(off)
            .map_or(0, |w| w.fetch_and(!bits, Ordering::AcqRel))
    }

    /// Returns the value at `off` and zeroes it.
    pub fn take(&self, off: usize) -> u32 {
        self.word(off).map_or(0, |w| w.swap(0, Ordering::AcqRel))
    }

    /// Adds `n` to the 32-bit counter at `off` (wrapping, as a 32-bit register does).
    pub fn count(&self, off: usize, n: u32) {
        if let Some(w) = self.word(off) {
            w.fetch_add(n, Ordering::AcqRel);
        }
    }

    /// Adds to the good-octets-received counter (GORCL/GORCH).
    pub fn count_rx_octets(&self, n: u64) {
        self.rx_octets.count.fetch_add(n, Ordering::AcqRel);
    }

    /// Adds to the good-octets-transmitted counter (GOTCL/GOTCH).
    pub fn count_tx_octets(&self, n: u64) {
        self.tx_octets.count.fetch_add(n, Ordering::AcqRel);
    }

    /// The value of a statistics register read at `off`, clearing it as hardware does;
    /// None if `off` is not a statistics register.
    pub fn read_stat(&self, off: usize) -> Option<u32> {
        Some(match off {
            GORCL => self.rx_octets.read_low(),
            GORCH => self.rx_octets.read_high(),
            GOTCL => self.tx_octets.read_low(),
            GOTCH => self.tx_octets.read_high(),
            _ if CLEAR_ON_READ.contains(&off) => self.take(off),
            _ => return None,
        })
    }

    /// Whether `off` is a statistics register (read-only to software).
    pub fn is_stat(off: usize) -> bool {
        matches!(off, GORCL | GORCH | GOTCL | GOTCH) || CLEAR_ON_READ.contains(&off)
    }

    /// Every register and counter back to zero.
    pub fn clear_all(&self) {
        for w in self.words.iter() {
            w.store(0, Ordering::Release);
        }
        self.rx_octets.clear();
        self.tx_octets.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_bounded_and_aligned() {
        let r = RegFile::new();
        r.set(0x10, 5);
        r.or(0x10, 2);
        r.clear_bits(0x10, 1);
        assert_eq!(r.get(0x10), 6);
        assert_eq!(r.take_bits(0x10, 4), 6);
        assert_eq!(r.get(0x10), 2);
        r.or(0x10, 4);
        r.set(BAR0_LEN, 1);
        r.set(0x11, 1);
        assert_eq!(
            (r.get(BAR0_LEN), r.get(0x11), r.take(usize::MAX)),
            (0, 0, 0)
        );
        r.count(usize::MAX - 3, 1);
        r.clear_all();
        assert_eq!(r.get(0x10), 0);
    }

    #[test]
    fn statistics_clear_on_read_and_split_counters_latch_the_high_bits() {
        let r = RegFile::new();
        r.count(GPRC, 3);
        assert_eq!(r.read_stat(GPRC), Some(3));
        assert_eq!(r.read_stat(GPRC), Some(0));
        r.count_rx_octets(0x3_0000_0010);
        assert_eq!(r.read_stat(GORCL), Some(0x10));
        r.count_rx_octets(7); // arrives between the two reads: kept for the next pair
        assert_eq!(r.read_stat(GORCH), Some(3));
        assert_eq!(r.read_stat(GORCH), Some(0));
        assert_eq!(r.read_stat(GORCL), Some(7));
        assert_eq!(r.read_stat(0x0), None);
        assert!(RegFile::is_stat(GOTCH) && RegFile::is_stat(ROC) && !RegFile::is_stat(0));
    }
}
