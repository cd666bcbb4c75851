//! PCI configuration space of the model (datasheet 9.3): Intel's vendor id, the 82599
//! SFP+ device id (a VF's: the 82599 VF id), the Ethernet class code, a 64-bit memory
//! BAR 0 of the register size, and a command register whose enable bits are writable.
//! Everything else reads as the initial value and ignores writes.

use crate::hw::{CLASS_ETHERNET, DEVICE_82599_SFP, VENDOR_INTEL};
use crate::lock;
use crate::regs::BAR0_LEN;
use pmd_core::pci::backend::{PCI_COMMAND, PCI_COMMAND_MASTER};
use pmd_core::{Error, Result};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Mutex;

/// Bytes of the conventional configuration header the model implements.
const HEADER_LEN: usize = 256;
/// Bytes of PCIe extended configuration space (reads past the header return zeros).
const EXTENDED_LEN: usize = 4096;
/// Command register bits software may change: I/O, memory, bus master, parity error
/// response, SERR#, INTx disable.
const COMMAND_WRITABLE: u16 = 0x0547;
/// Where BAR 0 pretends to be mapped (a 128 KiB-aligned address).
const BAR0_BASE: u32 = 0xfe00_0000;
/// BAR 0 type bits: memory, 64-bit (bits 2:1 = 10b), not prefetchable.
const BAR0_FLAGS: u32 = 0x4;

/// The configuration header.
#[derive(Debug)]
pub(crate) struct ConfigSpace {
    bytes: Mutex<[u8; HEADER_LEN]>,
    /// A copy of the command register for the DMA path (no lock).
    command: AtomicU16,
    /// The PCI device id.
    device: u16,
    /// Bytes of BAR 0 (a power of two).
    bar0_len: usize,
}

fn initial(device: u16) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[0..2].copy_from_slice(&VENDOR_INTEL.to_le_bytes());
    b[2..4].copy_from_slice(&device.to_le_bytes());
    b[0x08] = 0x01; // revision
    b[0x09..0x0c].copy_from_slice(&CLASS_ETHERNET.to_le_bytes()[..3]);
    b[0x10..0x14].copy_from_slice(&(BAR0_BASE | BAR0_FLAGS).to_le_bytes());
    b[0x3d] = 0x01; // interrupt pin INTA#
    b
}

/// Which bits of config byte `off` software may write, for a BAR 0 of `bar0_len` bytes.
fn write_mask(off: usize, bar0_len: usize) -> u8 {
    let bar0 = !(bar0_len as u32 - 1);
    match off {
        0x04 => COMMAND_WRITABLE as u8,
        0x05 => (COMMAND_WRITABLE >> 8) as u8,
        0x10..=0x13 => (bar0 >> (8 * (off - 0x10))) as u8,
        0x14..=0x17 | 0x3c => 0xff,
        _ => 0,
    }
}

impl ConfigSpace {
    /// The power-on header of the PF (the 82599 SFP+, 128 KiB of registers).
    pub fn new() -> ConfigSpace {
        ConfigSpace::of(DEVICE_82599_SFP, BAR0_LEN)
    }

    /// The power-on header of a function with device id `device` and a BAR 0 of
    /// `bar0_len` bytes (a power of two).
    pub fn of(device: u16, bar0_len: usize) -> ConfigSpace {
        ConfigSpace {
            bytes: Mutex::new(initial(device)),
            command: AtomicU16::new(0),
            device,
            bar0_len,
        }
    }

    fn check(off: u16, len: usize) -> Result<usize> {
        let off = usize::from(off);
        if off.checked_add(len).is_none_or(|end| end > EXTENDED_LEN) {
            return Err(Error::driver(
                "ixgbe-model",
                format!(
                    "config access of {len} bytes at {off:#x} is outside the 4 KiB config space"
                ),
            ));
        }
        Ok(off)
    }

    /// Reads `buf.len()` bytes at `off`.
    pub fn read(&self, off: u16, buf: &mut [u8]) -> Result<()> {
        let off = Self::check(off, buf.len())?;
        let bytes = lock(&self.bytes);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = bytes.get(off + i).copied().unwrap_or(0);
        }
        Ok(())
    }

    /// Writes `buf` at `off`, keeping read-only bits.
    pub fn write(&self, off: u16, buf: &[u8]) -> Result<()> {
        let off = Self::check(off, buf.len())?;
        let mut bytes = lock(&self.bytes);
        for (i, v) in buf.iter().enumerate() {
            if let Some(b) = bytes.get_mut(off + i) {
                let m = write_mask(off + i, self.bar0_len);
                *b = (*b & !m) | (v & m);
            }
        }
        let c = usize::from(PCI_COMMAND);
        self.command.store(
            u16::from_le_bytes([bytes[c], bytes[c + 1]]),
            Ordering::Release,
        );
        Ok(())
    }

    /// Whether bus mastering (DMA) is enabled.
    pub fn bus_master(&self) -> bool {
        self.command.load(Ordering::Acquire) & PCI_COMMAND_MASTER != 0
    }

    /// A function-level reset: the header returns to its power-on values.
    pub fn reset(&self) {
        *lock(&self.bytes) = initial(self.device);
        self.command.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_bar_and_command() {
        let c = ConfigSpace::new();
        let mut b = [0u8; 12];
        c.read(0, &mut b).unwrap();
        assert_eq!(&b[..4], &[0x86, 0x80, 0xfb, 0x10]);
        assert_eq!(&b[9..12], &[0x00, 0x00, 0x02]);
        c.write(0, &[0xff; 4]).unwrap();
        c.write(4, &[0xff, 0xff]).unwrap();
        c.read(0, &mut b).unwrap();
        assert_eq!(&b[..4], &[0x86, 0x80, 0xfb, 0x10], "ids are read-only");
        assert_eq!(u16::from_le_bytes([b[4], b[5]]), COMMAND_WRITABLE);
        assert!(c.bus_master());
        // BAR sizing: all ones written, the size shows in the read-only low bits.
        c.write(0x10, &[0xff; 4]).unwrap();
        let mut bar = [0u8; 4];
        c.read(0x10, &mut bar).unwrap();
        assert_eq!(u32::from_le_bytes(bar), !(BAR0_LEN as u32 - 1) | BAR0_FLAGS);
        assert!(c.read(4095, &mut [0; 2]).is_err());
        assert!(c.write(u16::MAX, &[0]).is_err());
        c.read(0x200, &mut bar).unwrap();
        assert_eq!(bar, [0; 4]);
        c.reset();
        assert!(!c.bus_master());
    }
}
