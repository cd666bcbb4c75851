//! Device registers of a virtio-pci function: bounds-checked windows over a memory BAR
//! ([`MmioWindow`]) or an I/O-port BAR ([`IoWindow`]), and the register maps the transport
//! reads through them (the modern common configuration, the legacy I/O-port block).

use pmd_core::error::{Error, Result};
use pmd_core::pci::{MmioRegion, PciBackend};
use std::sync::Arc;

/// Common configuration register offsets.
pub(super) mod common {
    pub const DFSELECT: usize = 0x00;
    pub const DF: usize = 0x04;
    pub const GFSELECT: usize = 0x08;
    pub const GF: usize = 0x0c;
    pub const MSIX: usize = 0x10;
    pub const NUM_QUEUES: usize = 0x12;
    pub const STATUS: usize = 0x14;
    pub const CFG_GENERATION: usize = 0x15;
    pub const Q_SELECT: usize = 0x16;
    pub const Q_SIZE: usize = 0x18;
    pub const Q_MSIX: usize = 0x1a;
    pub const Q_ENABLE: usize = 0x1c;
    pub const Q_NOTIFY_OFF: usize = 0x1e;
    pub const Q_DESC: usize = 0x20;
    pub const Q_DRIVER: usize = 0x28;
    pub const Q_DEVICE: usize = 0x30;
    /// Bytes of the common configuration this driver uses.
    pub const LEN: usize = 0x38;
}

/// Legacy I/O-port register offsets.
pub(super) mod legacy {
    pub const HOST_FEATURES: usize = 0;
    pub const GUEST_FEATURES: usize = 4;
    pub const QUEUE_PFN: usize = 8;
    pub const QUEUE_SIZE: usize = 12;
    pub const QUEUE_SELECT: usize = 14;
    pub const QUEUE_NOTIFY: usize = 16;
    pub const STATUS: usize = 18;
    /// ISR status (reading it clears it and deasserts INTx).
    pub const ISR: usize = 19;
    /// Device configuration without MSI-X.
    pub const DEVICE_CFG: usize = 20;
    /// Registers plus the net configuration (mac, status).
    pub const LEN: usize = DEVICE_CFG + 8;
    /// Shift of the queue PFN register.
    pub const PFN_SHIFT: u32 = 12;
}

/// A window of device registers (part of a memory BAR, or an I/O-port BAR), with bounds
/// checked on every access. Accesses are 1, 2 or 4 bytes wide, little endian.
pub trait Regs: Send + Sync {
    /// Reads `buf.len()` (1, 2 or 4) bytes at `off`.
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<()>;
    /// Writes `buf` (1, 2 or 4 bytes) at `off`.
    fn write(&self, off: usize, buf: &[u8]) -> Result<()>;
}

/// Typed accessors over [`Regs`].
pub(super) trait RegsExt: Regs {
    fn r8(&self, off: usize) -> Result<u8> {
        let mut b = [0u8; 1];
        self.read(off, &mut b)?;
        Ok(b[0])
    }
    fn r16(&self, off: usize) -> Result<u16> {
        let mut b = [0u8; 2];
        self.read(off, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    fn r32(&self, off: usize) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(off, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn w8(&self, off: usize, v: u8) -> Result<()> {
        self.write(off, &[v])
    }
    fn w16(&self, off: usize, v: u16) -> Result<()> {
        self.write(off, &v.to_le_bytes())
    }
    fn w32(&self, off: usize, v: u32) -> Result<()> {
        self.write(off, &v.to_le_bytes())
    }
    /// A 64-bit register as two 32-bit writes, low half first.
    fn w64(&self, off: usize, v: u64) -> Result<()> {
        self.w32(off, v as u32)?;
        self.w32(off + 4, (v >> 32) as u32)
    }
}

impl<T: Regs + ?Sized> RegsExt for T {}

fn out_of_window(off: usize, width: usize, len: usize) -> Error {
    Error::driver(
        "virtio-pci",
        format!("register access {off:#x}+{width} outside the {len:#x}-byte window"),
    )
}

/// `len` bytes of a memory BAR from `base`.
pub struct MmioWindow {
    region: MmioRegion,
    base: usize,
    len: usize,
}

impl MmioWindow {
    /// The window `base..base+len` of `region`; an error unless it lies inside.
    pub fn new(region: MmioRegion, base: usize, len: usize) -> Result<MmioWindow> {
        if base.checked_add(len).is_none_or(|end| end > region.len()) {
            return Err(Error::driver(
                "virtio-pci",
                format!(
                    "structure at {base:#x}+{len:#x} lies outside its {:#x}-byte BAR",
                    region.len()
                ),
            ));
        }
        Ok(MmioWindow { region, base, len })
    }
}

impl Regs for MmioWindow {
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<()> {
        if off.checked_add(buf.len()).is_none_or(|e| e > self.len) {
            return Err(out_of_window(off, buf.len(), self.len));
        }
        let at = self.base + off;
        match buf.len() {
            1 => buf[0] = self.region.read8_at(at)?,
            2 => buf.copy_from_slice(&self.region.read16_at(at)?.to_le_bytes()),
            4 => buf.copy_from_slice(&self.region.read32_at(at)?.to_le_bytes()),
            n => return Err(out_of_window(off, n, self.len)),
        }
        Ok(())
    }

    fn write(&self, off: usize, buf: &[u8]) -> Result<()> {
        if off.checked_add(buf.len()).is_none_or(|e| e > self.len) {
            return Err(out_of_window(off, buf.len(), self.len));
        }
        let at = self.base + off;
        match *buf {
            [a] => self.region.write8_at(at, a),
            [a, b] => self.region.write16_at(at, u16::from_le_bytes([a, b])),
            [a, b, c, d] => self.region.write32_at(at, u32::from_le_bytes([a, b, c, d])),
            _ => Err(out_of_window(off, buf.len(), self.len)),
        }
    }
}

/// The first `len` bytes of an I/O-port BAR, through the backend.
pub struct IoWindow {
    backend: Arc<dyn PciBackend>,
    bar: u8,
    len: usize,
}

impl IoWindow {
    /// The first `len` bytes of I/O BAR `bar` of `backend`.
    pub fn new(backend: Arc<dyn PciBackend>, bar: u8, len: usize) -> IoWindow {
        IoWindow { backend, bar, len }
    }
}

impl Regs for IoWindow {
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<()> {
        if off.checked_add(buf.len()).is_none_or(|e| e > self.len) {
            return Err(out_of_window(off, buf.len(), self.len));
        }
        self.backend.read_io(self.bar, off as u64, buf)
    }

    fn write(&self, off: usize, buf: &[u8]) -> Result<()> {
        if off.checked_add(buf.len()).is_none_or(|e| e > self.len) {
            return Err(out_of_window(off, buf.len(), self.len));
        }
        self.backend.write_io(self.bar, off as u64, buf)
    }
}
