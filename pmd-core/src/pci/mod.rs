//! PCI devices: discovery through sysfs, binding to vfio-pci / uio_pci_generic (and back),
//! and device access through one backend trait ([`PciBackend`]) implemented by VFIO
//! (with or without an IOMMU), UIO and in-process device models.

pub mod backend;
pub mod bind;
pub mod mmio;
pub mod open;
pub mod sysfs;
pub mod uio;
pub mod vfio;

pub use crate::pci_addr::{PciAddr, PciAddrError};
pub use backend::{BackendKind, IrqWait, PciBackend};
pub use mmio::{MmioRegion, Reg32, RegisterModel};
