//! The device-access seam: one trait over VFIO, UIO and in-process device models, so a PMD
//! is written once and runs on all of them.

use super::addr::PciAddr;
use super::error::PciError;
use super::kind::BackendKind;
use super::mmio::MmioRegion;
use crate::error::Result;
use crate::memory::IovaMode;
use crate::memory::SegmentInfo;
use std::os::fd::BorrowedFd;

/// Offset of the PCI command register in config space.
pub const PCI_COMMAND: u16 = 0x04;
/// Command register: memory space enable.
pub const PCI_COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: bus master enable (the device may DMA).
pub const PCI_COMMAND_MASTER: u16 = 1 << 2;
/// Command register: legacy interrupt (INTx) disable.
pub const PCI_COMMAND_INTX_DISABLE: u16 = 1 << 10;

/// Something a thread can wait on for a device interrupt (an eventfd or the UIO fd).
pub trait IrqWait: Send + Sync {
    /// The file descriptor that becomes readable when the interrupt fires.
    fn fd(&self) -> BorrowedFd<'_>;
    /// Waits up to `timeout_ms` (negative: forever); returns the number of interrupts seen
    /// (0 on timeout) and re-arms where the backend needs it.
    fn wait(&self, timeout_ms: i32) -> Result<u64>;
}

/// Access to one PCI function: config space, BARs, DMA mapping, interrupts, reset.
pub trait PciBackend: Send + Sync {
    /// The device's address.
    fn addr(&self) -> PciAddr;
    /// How the device is reached.
    fn kind(&self) -> BackendKind;
    /// What the IOVAs this device is given are: PA without an IOMMU (UIO, VFIO
    /// no-IOMMU); behind an IOMMU, the mode the device was opened for (the EAL's choice,
    /// which its DMA mappings follow).
    fn iova_mode(&self) -> IovaMode;
    /// Reads config space at `offset`.
    fn read_config(&self, offset: u16, buf: &mut [u8]) -> Result<()>;
    /// Writes config space at `offset`.
    fn write_config(&self, offset: u16, buf: &[u8]) -> Result<()>;
    /// Maps memory BAR `bar` (0..=5).
    fn map_bar(&self, bar: u8) -> Result<MmioRegion>;
    /// Makes `seg` reachable by the device's DMA at `seg.iova`.
    fn dma_map(&self, seg: &SegmentInfo) -> Result<()>;
    /// Undoes [`PciBackend::dma_map`].
    fn dma_unmap(&self, seg: &SegmentInfo) -> Result<()>;
    /// Enables `count` interrupt vectors (MSI-X, else MSI, else INTx with count 1) and
    /// returns one waitable per vector.
    fn enable_irqs(&self, count: u32) -> Result<Vec<Box<dyn IrqWait>>>;
    /// Resets the function (function-level reset where supported).
    fn reset(&self) -> Result<()>;

    /// Reads a 16-bit config register.
    fn read_config16(&self, offset: u16) -> Result<u16> {
        let mut b = [0u8; 2];
        self.read_config(offset, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Reads a 32-bit config register.
    fn read_config32(&self, offset: u16) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read_config(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads `buf.len()` bytes at `offset` of I/O-port BAR `bar` (e.g. the register block
    /// of a legacy virtio device). The default says the backend cannot reach I/O ports.
    fn read_io(&self, bar: u8, offset: u64, buf: &mut [u8]) -> Result<()> {
        let _ = (offset, buf);
        Err(no_io_ports(self.addr(), self.kind(), bar))
    }

    /// Writes `buf` at `offset` of I/O-port BAR `bar`. The default says the backend cannot
    /// reach I/O ports.
    fn write_io(&self, bar: u8, offset: u64, buf: &[u8]) -> Result<()> {
        let _ = (offset, buf);
        Err(no_io_ports(self.addr(), self.kind(), bar))
    }

    /// Turns bus mastering (DMA) and memory decoding on or off.
    fn set_bus_master(&self, on: bool) -> Result<()> {
        let mut cmd = self.read_config16(PCI_COMMAND)?;
        if on {
            cmd |= PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY;
        } else {
            cmd &= !PCI_COMMAND_MASTER;
        }
        self.write_config(PCI_COMMAND, &cmd.to_le_bytes())
    }
}

/// The error of a backend that cannot reach I/O-port BARs (the default of
/// [`PciBackend::read_io`] and [`PciBackend::write_io`]).
fn no_io_ports(addr: PciAddr, kind: BackendKind, bar: u8) -> crate::error::Error {
    PciError::NoIoPorts { addr, kind, bar }.into()
}
