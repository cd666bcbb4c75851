//! PCI devices at run time: addresses, where sysfs and /dev are, and device access through
//! one backend trait ([`PciBackend`]) implemented by VFIO (with or without an IOMMU), UIO
//! and in-process device models. Binding devices to drivers is the admin tool's job
//! (`pmd-setup`), not the runtime's.
//!
//! Read top-down:
//! - [`open`]: opens a device with the backend its bound driver calls for;
//! - [`vfio`] and [`uio`]: the two kernel backends;
//! - [`access`]: what both backends and the opener share: the access mode and the IOVA
//!   rule for devices without an IOMMU;
//! - [`backend`] and [`mmio`]: the device-access trait and mapped registers;
//! - [`sysfs`]: where the kernel's files are, and the facts read from them;
//! - [`class`]: class codes, so devices that are not network controllers are refused;
//! - `sys`: the system calls besides VFIO's ioctls, behind safe functions;
//! - [`error`], [`kind`] and [`addr`]: errors, backend kinds and addresses.

pub mod access;
pub mod addr;
pub mod backend;
pub mod class;
pub mod error;
pub mod kind;
pub mod mmio;
pub mod open;
mod sys;
pub(crate) use sys::is_root;
pub mod sysfs;
pub mod uio;
pub mod vfio;

pub use access::AccessMode;
pub use addr::{PciAddr, PciAddrError};
pub use backend::{IrqWait, PciBackend};
pub use class::ClassCode;
pub use error::PciError;
pub use kind::BackendKind;
pub use mmio::{MmioRegion, Reg32, RegisterModel};
pub use sysfs::SysfsRoot;
pub use vfio::VfioError;
