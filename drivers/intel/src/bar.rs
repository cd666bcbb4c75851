//! Register access for init and control paths: named reads, writes, bit updates and
//! bounded waits on BAR 0, with errors that name the device.

use pmd_core::pci::{MmioRegion, Reg32};
use pmd_core::{Error, Result};
use std::time::Duration;

/// Poll interval of [`Bar::wait`].
const STEP: Duration = Duration::from_micros(100);

/// BAR 0 of an Intel NIC, with the driver and device names for messages.
#[derive(Clone, Debug)]
pub struct Bar {
    region: MmioRegion,
    driver: &'static str,
    name: String,
}

impl Bar {
    /// Wraps `region` (checked by the caller to be at least the chip's register space).
    pub fn new(region: MmioRegion, driver: &'static str, name: &str) -> Bar {
        Bar {
            region,
            driver,
            name: name.to_string(),
        }
    }

    /// The device name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The mapped region.
    pub fn region(&self) -> &MmioRegion {
        &self.region
    }

    /// An error from this device.
    pub fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::driver(self.driver, format!("{}: {msg}", self.name))
    }

    /// Reads a register (offsets are the chip's constants, inside the BAR the driver
    /// checked at init; an impossible out-of-range read gives 0).
    pub fn rd(&self, reg: usize) -> u32 {
        self.region.read32_at(reg).unwrap_or(0)
    }

    /// Writes a register (out-of-range writes are dropped, see [`Bar::rd`]).
    pub fn wr(&self, reg: usize, v: u32) {
        let _ = self.region.write32_at(reg, v);
    }

    /// Sets `bits` in a register.
    pub fn set_bits(&self, reg: usize, bits: u32) {
        self.wr(reg, self.rd(reg) | bits);
    }

    /// Clears `bits` in a register.
    pub fn clear_bits(&self, reg: usize, bits: u32) {
        self.wr(reg, self.rd(reg) & !bits);
    }

    /// Sets `bits` in a register when `on`, clears them otherwise.
    pub fn set_bits_to(&self, reg: usize, bits: u32, on: bool) {
        if on {
            self.set_bits(reg, bits);
        } else {
            self.clear_bits(reg, bits);
        }
    }

    /// A handle for the data path (tails, queue enables).
    pub fn reg32(&self, reg: usize) -> Result<Reg32> {
        self.region.reg32(reg)
    }

    /// Polls until `cond` holds or `timeout` passes (error: "`what` did not happen").
    pub fn wait(&self, what: &str, timeout: Duration, cond: impl Fn(&Bar) -> bool) -> Result<()> {
        crate::wait::poll_until(
            self.driver,
            &format!("{}: {what}", self.name),
            timeout,
            STEP,
            || Ok(cond(self)),
        )
    }

    /// Reads a MAC address from a receive-address pair (RAL, RAH); an all-zero or
    /// multicast address is an error (a blank NVM).
    pub fn read_mac(&self, ral: usize, rah: usize) -> Result<pmd_core::ethdev::MacAddr> {
        let lo = self.rd(ral).to_le_bytes();
        let hi = self.rd(rah).to_le_bytes();
        let mac = pmd_core::ethdev::MacAddr([lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]]);
        if mac.0 == [0; 6] || mac.0[0] & 1 != 0 {
            return Err(self.err(format!(
                "the NVM gives no valid MAC address ({mac}); the EEPROM may be blank"
            )));
        }
        Ok(mac)
    }
}

/// Bits of one register that switch something on (e.g. a global receive enable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegBits {
    /// Register offset.
    pub reg: usize,
    /// The bits.
    pub bits: u32,
}

impl RegBits {
    /// `bits` of register `reg`.
    pub const fn new(reg: usize, bits: u32) -> RegBits {
        RegBits { reg, bits }
    }
}

/// Where a queue resumes: the head and tail loaded at start (0 and the ring's tail after
/// setup; the device's values at stop, while the rings stay frozen).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueuePos {
    /// Head register value.
    pub head: u32,
    /// Tail register value.
    pub tail: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmd_core::pci::mmio::region_over_memory;

    #[test]
    fn bit_updates_waits_and_mac() {
        let bar = Bar::new(region_over_memory(0x20), "t", "dev0");
        bar.wr(0, 0xf0);
        bar.set_bits(0, 1);
        bar.clear_bits(0, 0x10);
        assert_eq!(bar.rd(0), 0xe1);
        bar.set_bits_to(0, 0x102, true);
        bar.set_bits_to(0, 0x21, false);
        assert_eq!(bar.rd(0), 0x1c2);
        bar.wr(0, 0xe1);
        assert_eq!(bar.rd(0x100), 0, "out of range reads 0");
        let e = bar
            .wait("thing", Duration::from_millis(2), |b| b.rd(0) == 0)
            .unwrap_err();
        assert!(e.to_string().contains("dev0: thing did not happen"), "{e}");
        assert!(bar.read_mac(8, 12).is_err(), "blank");
        bar.wr(8, 0x0000_0002);
        bar.wr(12, 0x8000_0100);
        assert_eq!(
            bar.read_mac(8, 12).unwrap().to_string(),
            "02:00:00:00:00:01"
        );
    }
}
