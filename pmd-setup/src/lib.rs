//! `pmd-setup`: prepares a machine for pmd-core applications. It reserves hugepages, mounts
//! and unmounts hugetlbfs, shows the state of both, hands PCI network devices to
//! user-space drivers (and back), and creates SR-IOV virtual functions. This admin-only
//! code lives here, not in the runtime library: an application never binds devices.
//!
//! ```text
//! pmd-setup status [--json]
//! pmd-setup reserve 1024            # 1024 pages of the default size
//! pmd-setup reserve 2G --page-size 1G --node 0
//! pmd-setup mount /mnt/huge [--page-size 2M]
//! pmd-setup unmount /mnt/huge
//! pmd-setup bind 0000:03:00.0 vfio-pci [--force]
//! pmd-setup unbind 0000:03:00.0     # back to the driver it had before `bind`
//! pmd-setup noiommu [on|off]
//! pmd-setup sriov 0000:01:00.0 4 [--force]   # 4 SR-IOV VFs (0 removes them), then lists them
//! ```
//!
//! `hugepage-setup`, the tool's former name, is kept as an alias binary for one release.
//!
//! Modules, top-down: [`cli`] (the commands), `devices` and `hugepages` (what the commands
//! do), `bind`, `sriov`, `record`, `net` and `discover` (moving devices between drivers,
//! setting a physical function's SR-IOV virtual functions, the records of their original
//! drivers, the live-link guard, reading sysfs).

mod bind;
pub mod cli;
mod devices;
mod discover;
mod error;
mod hugepages;
mod net;
mod record;
mod sriov;
#[cfg(test)]
mod testtree;

pub use cli::run;
pub use error::SetupError;
