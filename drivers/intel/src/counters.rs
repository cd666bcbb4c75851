//! Statistics registers folded into 64-bit totals. The physical functions' packet and
//! byte counters clear when read and are 32 to 36 bits wide, so they are read often and
//! accumulated. A virtual function's counters run freely and wrap instead (82576 VF
//! 8.28.x, 82599 VF 8.3.5.x): what is added is the change since the last read.

use crate::regs::{GORCH, GORCL, GOTCH, GOTCL, GPRC, GPTC};
use pmd_core::pci::MmioRegion;

/// The good packet and octet counters, which every Intel chip here has at the same
/// offsets; a chip's own counters follow them.
pub const GOOD: &[CounterSpec] = &[
    CounterSpec::reg("rx_good_packets", GPRC),
    CounterSpec::split("rx_good_bytes", GORCL, GORCH),
    CounterSpec::reg("tx_good_packets", GPTC),
    CounterSpec::split("tx_good_bytes", GOTCL, GOTCH),
];

/// One counter: a name and its register(s). With `high` set, the value is `low` plus
/// `high << 32` (read low first, as the datasheets require for the 64-bit byte counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterSpec {
    /// Name shown in xstats (DPDK-like, e.g. `rx_good_packets`).
    pub name: &'static str,
    /// Offset of the (low) register.
    pub low: usize,
    /// Offset of the high register, for split counters.
    pub high: Option<usize>,
    /// For a free-running counter, its width in bits (it wraps at `2^bits`); `None`: the
    /// register clears when read.
    pub wraps_at_bits: Option<u32>,
}

impl CounterSpec {
    /// A single 32-bit clear-on-read register.
    pub const fn reg(name: &'static str, low: usize) -> CounterSpec {
        CounterSpec {
            name,
            low,
            high: None,
            wraps_at_bits: None,
        }
    }

    /// A counter split over a low and a high register.
    pub const fn split(name: &'static str, low: usize, high: usize) -> CounterSpec {
        CounterSpec {
            name,
            low,
            high: Some(high),
            wraps_at_bits: None,
        }
    }

    /// A free-running 32-bit register that wraps.
    pub const fn running(name: &'static str, low: usize) -> CounterSpec {
        CounterSpec {
            name,
            low,
            high: None,
            wraps_at_bits: Some(32),
        }
    }

    /// A free-running counter of `bits` bits split over a low and a high register.
    pub const fn running_split(
        name: &'static str,
        low: usize,
        high: usize,
        bits: u32,
    ) -> CounterSpec {
        CounterSpec {
            name,
            low,
            high: Some(high),
            wraps_at_bits: Some(bits),
        }
    }
}

impl CounterSpec {
    /// The register value(s) now: `low`, plus `high << 32` (read after `low`), cut to
    /// the counter's width if it wraps. A register outside the BAR reads as zero.
    fn read(&self, bar: &MmioRegion) -> u64 {
        let lo = u64::from(bar.read32_at(self.low).unwrap_or(0));
        let hi = self
            .high
            .map_or(0, |h| u64::from(bar.read32_at(h).unwrap_or(0)));
        (lo | hi << 32) & self.wraps_at_bits.map_or(u64::MAX, wrap_mask)
    }
}

/// The mask of a `bits`-wide counter.
fn wrap_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

/// Running 64-bit totals of a list of counters.
#[derive(Debug)]
pub struct CounterSet {
    specs: Vec<CounterSpec>,
    totals: Vec<u64>,
    /// Last value read of each free-running counter.
    last: Vec<u64>,
}

impl CounterSet {
    /// The counters of `lists`, in order. Totals start at zero; call
    /// [`CounterSet::clear_hw`] after reset to drop stale values.
    pub fn new(lists: &[&[CounterSpec]]) -> CounterSet {
        let specs: Vec<CounterSpec> = lists.concat();
        CounterSet {
            totals: vec![0; specs.len()],
            last: vec![0; specs.len()],
            specs,
        }
    }

    /// Reads every register once (clearing it in hardware) and adds it, or for a
    /// free-running counter its change since the last read, to the totals. Read errors (a
    /// register outside the BAR) count as zero.
    pub fn fold(&mut self, bar: &MmioRegion) {
        let iter = self.specs.iter().zip(&mut self.totals).zip(&mut self.last);
        for ((spec, total), last) in iter {
            let value = spec.read(bar);
            let add = match spec.wraps_at_bits {
                None => value,
                Some(bits) => {
                    let delta = value.wrapping_sub(*last) & wrap_mask(bits);
                    *last = value;
                    delta
                }
            };
            *total = total.wrapping_add(add);
        }
    }

    /// Takes the free-running counters' current values as the new starting points,
    /// totals kept (after something that may have reset them, once folded). Clear-on-read
    /// registers are not read.
    pub fn rebase(&mut self, bar: &MmioRegion) {
        for (spec, last) in self.specs.iter().zip(&mut self.last) {
            if spec.wraps_at_bits.is_some() {
                *last = spec.read(bar);
            }
        }
    }

    /// Reads and discards the hardware values (after a reset, before counting starts;
    /// free-running counters count from the values read).
    pub fn clear_hw(&mut self, bar: &MmioRegion) {
        self.fold(bar);
        self.totals.iter_mut().for_each(|t| *t = 0);
    }

    /// The total of counter `name` (0 if unknown).
    pub fn get(&self, name: &str) -> u64 {
        self.specs
            .iter()
            .position(|s| s.name == name)
            .map_or(0, |i| self.totals[i])
    }

    /// All totals, by name.
    pub fn to_vec(&self) -> Vec<(String, u64)> {
        self.specs
            .iter()
            .zip(&self.totals)
            .map(|(s, t)| (s.name.to_string(), *t))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmd_core::pci::mmio::region_over_memory;

    static SPECS: &[CounterSpec] = &[
        CounterSpec::reg("rx_packets", 0x10),
        CounterSpec::split("rx_bytes", 0x20, 0x24),
    ];

    #[test]
    fn folds_reads_into_64_bit_totals() {
        let bar = region_over_memory(0x40);
        let mut c = CounterSet::new(&[SPECS, &[CounterSpec::reg("rx_missed", 0x30)]]);
        bar.write32_at(0x10, 5).unwrap();
        bar.write32_at(0x20, 0xffff_fff0).unwrap();
        bar.write32_at(0x24, 0xf).unwrap();
        c.fold(&bar);
        // Memory does not clear on read: the second fold adds the same values again,
        // like hardware that counted the same amount twice.
        c.fold(&bar);
        assert_eq!(c.get("rx_packets"), 10);
        assert_eq!(c.get("rx_bytes"), 2 * 0xf_ffff_fff0);
        assert_eq!(c.get("nope"), 0);
        c.clear_hw(&bar);
        assert_eq!(
            c.to_vec(),
            vec![
                ("rx_packets".into(), 0),
                ("rx_bytes".into(), 0),
                ("rx_missed".into(), 0)
            ]
        );
    }

    #[test]
    fn free_running_counters_add_their_change_across_a_wrap() {
        let bar = region_over_memory(0x40);
        let specs = [
            CounterSpec::running("rx", 0x0),
            CounterSpec::running_split("rx_bytes", 0x8, 0xc, 36),
        ];
        let mut c = CounterSet::new(&[&specs]);
        bar.write32_at(0x0, 0xffff_fff0).unwrap();
        bar.write32_at(0x8, 0xffff_ff00).unwrap();
        bar.write32_at(0xc, 0xf).unwrap();
        c.clear_hw(&bar);
        c.fold(&bar);
        assert_eq!((c.get("rx"), c.get("rx_bytes")), (0, 0), "no change");
        bar.write32_at(0x0, 0x10).unwrap();
        bar.write32_at(0x8, 0x100).unwrap();
        bar.write32_at(0xc, 0x0).unwrap();
        c.fold(&bar);
        assert_eq!(c.get("rx"), 0x20, "wrapped at 32 bits");
        assert_eq!(c.get("rx_bytes"), 0x200, "wrapped at 36 bits");
        // A reset restarts the registers at 0: rebased, not counted as a wrap.
        bar.write32_at(0x0, 0).unwrap();
        c.rebase(&bar);
        bar.write32_at(0x0, 5).unwrap();
        c.fold(&bar);
        assert_eq!(c.get("rx"), 0x25);
    }
}
