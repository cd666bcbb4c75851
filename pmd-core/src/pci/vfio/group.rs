//! Finding a device's IOMMU group: the `iommu_group` link in sysfs and the group's node in
//! `/dev/vfio` (`<N>`, or `noiommu-<N>` in no-IOMMU mode), with an error that says what to
//! fix for every way this can go wrong. Opening the group is the container's job
//! (`VfioContainer::attach_group`).

use super::error::{NotViable, VfioError};
use crate::error::Result;
use crate::pci::addr::PciAddr;
use crate::pci::error::{Origin, PciError};
use crate::pci::sysfs::{bound_driver, SysfsRoot};
use std::path::PathBuf;

/// Where a device's IOMMU group lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLocation {
    /// The group number (`iommu_group` link in sysfs).
    pub number: u32,
    /// Its device node: `/dev/vfio/<N>` or `/dev/vfio/noiommu-<N>`.
    pub dev_path: PathBuf,
    /// Whether this is a no-IOMMU group.
    pub noiommu: bool,
}

/// Finds the VFIO group of `addr`, checking on the way that the device exists, is bound
/// to vfio-pci, has an IOMMU group and that VFIO is loaded; every error says what to do.
pub fn locate_group(addr: PciAddr, root: &SysfsRoot) -> Result<GroupLocation> {
    let dev = root.device_dir(addr);
    if !dev.exists() {
        return Err(PciError::NoSuchDevice {
            at: Origin::Vfio(Some(addr)),
            path: dev,
        }
        .into());
    }
    match bound_driver(&dev) {
        Some(d) if d == "vfio-pci" => {}
        driver => return Err(VfioError::NotBoundToVfio { addr, driver }.into()),
    }
    let link = std::fs::read_link(dev.join("iommu_group"))
        .map_err(|_| VfioError::NoIommuGroup { addr })?;
    let number: u32 = link
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| VfioError::BadGroupLink {
            addr,
            link: link.clone(),
        })?;
    let vfio_dir = root.dev_vfio();
    if !vfio_dir.join("vfio").exists() {
        return Err(VfioError::NotLoaded {
            addr,
            path: vfio_dir.join("vfio"),
        }
        .into());
    }
    let normal = vfio_dir.join(number.to_string());
    if normal.exists() {
        return Ok(GroupLocation {
            number,
            dev_path: normal,
            noiommu: false,
        });
    }
    let noiommu = vfio_dir.join(format!("noiommu-{number}"));
    if noiommu.exists() {
        return Ok(GroupLocation {
            number,
            dev_path: noiommu,
            noiommu: true,
        });
    }
    Err(VfioError::NoGroupNode {
        addr,
        normal,
        noiommu,
    }
    .into())
}

/// What to say about a non-viable group: which other devices are in it and their drivers.
pub fn group_not_viable(root: &SysfsRoot, group: u32, addr: PciAddr) -> NotViable {
    let dir = root.iommu_group_devices(group);
    let mut others: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if name == addr.to_string() {
                return None;
            }
            let driver = bound_driver(&e.path()).unwrap_or_else(|| "no driver".into());
            Some(format!("{name} ({driver})"))
        })
        .collect();
    others.sort();
    NotViable { group, others }
}
