//! One ethdev [`Driver`] for every Intel chip: it claims the chip's PCI ids and turns an
//! opened function into an [`IntelDevice`]. Intel NICs are PCI-only, so `--vdev` gets the
//! default answer of [`Driver::probe`].

use crate::device::{Chip, IntelDevice};
use pmd_core::ethdev::{Device, Driver, PciId};
use pmd_core::pci::PciBackend;
use pmd_core::Result;
use std::marker::PhantomData;
use std::sync::Arc;

/// Intel's PCI vendor id.
pub const VENDOR_INTEL: u16 = 0x8086;

/// The PCI id of Intel device `device`.
pub const fn intel_id(device: u16) -> PciId {
    PciId {
        vendor: VENDOR_INTEL,
        device,
    }
}

/// The driver of chip `C` (a `static` in the chip's crate, listed in the driver table).
pub struct IntelDriver<C: Chip>(PhantomData<fn() -> C>);

impl<C: Chip> IntelDriver<C> {
    /// The driver (a `const fn`, for statics).
    pub const fn new() -> IntelDriver<C> {
        IntelDriver(PhantomData)
    }
}

impl<C: Chip> Default for IntelDriver<C> {
    fn default() -> IntelDriver<C> {
        IntelDriver::new()
    }
}

impl<C: Chip> Driver for IntelDriver<C> {
    fn name(&self) -> &'static str {
        C::DRIVER
    }

    fn description(&self) -> &'static str {
        C::DESCRIPTION
    }

    fn pci_ids(&self) -> &'static [PciId] {
        C::PCI_IDS
    }

    fn probe_pci(&self, dev: Arc<dyn PciBackend>) -> Result<Box<dyn Device>> {
        let name = dev.addr().to_string();
        Ok(Box::new(IntelDevice::<C>::init(dev, &name)?))
    }
}
