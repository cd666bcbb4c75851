//! The VFIO backend: a device bound to `vfio-pci`, reached through a container
//! (`/dev/vfio/vfio`), its IOMMU group (`/dev/vfio/<N>`, or `/dev/vfio/noiommu-<N>` in
//! no-IOMMU mode) and the device file descriptor the group hands out.
//!
//! Written from the kernel's VFIO documentation (Documentation/driver-api/vfio.rst) and
//! the structures of `linux/vfio.h` (taken from `vfio-bindings`). Read top-down:
//! - [`ioctl`]: every VFIO ioctl, one safe function each (the only `ioctl(2)` calls);
//! - [`error`]: [`VfioError`], what each step can fail with;
//! - [`region`]: region info and its capability chain;
//! - [`dma`]: the IOMMU mapping table of a container;
//! - [`group`]: finding a device's IOMMU group in sysfs and /dev/vfio;
//! - [`container`]: [`VfioContainer`] (one IOMMU domain) and [`VfioGroup`];
//! - [`irq`]: interrupt type choice and eventfd vectors;
//! - [`device`]: [`VfioDevice`], the [`crate::pci::backend::PciBackend`] of a vfio-pci
//!   function.

pub mod container;
pub mod device;
pub mod dma;
pub mod error;
pub mod group;
pub mod ioctl;
pub mod irq;
pub mod region;

pub use container::{VfioContainer, VfioGroup};
pub use device::VfioDevice;
pub use dma::check_memlock;
pub use error::VfioError;
pub use group::{group_not_viable, locate_group, GroupLocation};
pub use ioctl::{IommuType, IrqType};
pub use irq::{choose_irq_type, IrqCounts, VfioIrq};
pub use region::{parse_region_caps, validate_sparse_areas, RegionCaps, RegionInfo, SparseArea};

impl From<VfioError> for crate::error::Error {
    fn from(e: VfioError) -> Self {
        crate::pci::error::PciError::Vfio(e).into()
    }
}
