//! What the driver probes: a [`PciBackend`] whose BAR 0 is the model's register file
//! (every access reaches [`Device::read`] / [`Device::write`] synchronously), whose DMA
//! goes through the model's IOMMU and whose MSI-X vectors are eventfds the model signals.

use crate::device::Device;
use crate::model::Handle;
use crate::regs::BAR0_LEN;
use pmd_core::memory::IovaMode;
use pmd_core::memory::SegmentInfo;
use pmd_core::pci::{BackendKind, IrqWait, MmioRegion, PciAddr, PciBackend, RegisterModel};
use pmd_core::{Error, Result};
use std::sync::Arc;

/// BAR 0 as a register model. It keeps the model alive (and its thread running) for as
/// long as the driver holds a mapping.
pub(crate) struct Bar0 {
    handle: Arc<Handle>,
}

impl Bar0 {
    fn dev(&self) -> &Device {
        &self.handle.dev
    }
}

impl RegisterModel for Bar0 {
    fn read32(&self, offset: usize) -> u32 {
        self.dev().read(offset)
    }

    fn write32(&self, offset: usize, value: u32) {
        self.dev().write(offset, value)
    }
}

/// The model as a PCI function.
pub(crate) struct ModelBackend {
    pub handle: Arc<Handle>,
    pub addr: PciAddr,
}

impl ModelBackend {
    fn dev(&self) -> &Device {
        &self.handle.dev
    }
}

impl PciBackend for ModelBackend {
    fn addr(&self) -> PciAddr {
        self.addr
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Model
    }

    fn iova_mode(&self) -> IovaMode {
        IovaMode::Va
    }

    fn read_config(&self, offset: u16, buf: &mut [u8]) -> Result<()> {
        self.dev().config.read(offset, buf)
    }

    fn write_config(&self, offset: u16, buf: &[u8]) -> Result<()> {
        // Turning bus mastering off must stop DMA before the write returns, as on a real
        // bus: take the data-path lock.
        let _engine = crate::lock(&self.dev().engine);
        self.dev().config.write(offset, buf)
    }

    fn map_bar(&self, bar: u8) -> Result<MmioRegion> {
        if bar != 0 {
            return Err(Error::driver(
                "ixgbe-model",
                format!(
                    "{}: the 82599 model implements only BAR 0 (registers), not BAR {bar}",
                    self.addr
                ),
            ));
        }
        let regs = Arc::new(Bar0 {
            handle: self.handle.clone(),
        });
        Ok(MmioRegion::over_model(regs, BAR0_LEN))
    }

    fn dma_map(&self, seg: &SegmentInfo) -> Result<()> {
        self.dev().iommu.map(seg)
    }

    fn dma_unmap(&self, seg: &SegmentInfo) -> Result<()> {
        let _engine = crate::lock(&self.dev().engine);
        self.dev().iommu.unmap(seg);
        Ok(())
    }

    /// MSI-X vectors as eventfds the model signals (see `irq`): 1..=64 of them, until
    /// every handle is dropped.
    fn enable_irqs(&self, count: u32) -> Result<Vec<Box<dyn IrqWait>>> {
        crate::irq::enable(&self.handle.dev, self.addr, count)
    }

    fn reset(&self) -> Result<()> {
        self.dev().function_reset();
        Ok(())
    }
}
