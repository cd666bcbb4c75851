//! Where the kernel's PCI files are ([`SysfsRoot`]) and the few facts the EAL reads from
//! them at run time: the bound driver, the vendor and device ids, and the devices bound to
//! a driver a poll-mode driver can use.
//!
//! All paths hang off a [`SysfsRoot`], which is `/` on a live system and a temporary
//! directory holding fake `sys/` and `dev/` trees in tests. Facts used
//! (Documentation/ABI/testing/sysfs-bus-pci):
//! - `sys/bus/pci/devices/<addr>/{vendor,device}` hold hex numbers like `0x8086`;
//! - `driver` and `iommu_group` are symlinks whose last component names the bound driver
//!   and the IOMMU group number; `uio/uioN` exists while a UIO driver holds the device.

use super::addr::PciAddr;
use super::class::ClassCode;
use super::error::PciError;
use std::fs;
use std::path::{Path, PathBuf};

/// The directory that plays the role of `/` when reading `sys/`, `dev/`, `proc/` and `run/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsRoot(PathBuf);

impl Default for SysfsRoot {
    /// The live system (`/`).
    fn default() -> Self {
        SysfsRoot::system()
    }
}

impl SysfsRoot {
    /// The live system (`/`).
    pub fn system() -> SysfsRoot {
        SysfsRoot(PathBuf::from("/"))
    }

    /// A fake tree rooted at `dir` (tests).
    pub fn at(dir: impl Into<PathBuf>) -> SysfsRoot {
        SysfsRoot(dir.into())
    }

    /// The root directory itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// True when this root is the real `/` (after resolving symlinks and `..`).
    pub fn is_system(&self) -> bool {
        self.0
            .canonicalize()
            .map(|p| p == Path::new("/"))
            .unwrap_or(false)
    }

    /// `<root>/<rel>`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.0.join(rel)
    }

    /// `<root>/sys/bus/pci/devices`.
    pub fn devices_dir(&self) -> PathBuf {
        self.join("sys/bus/pci/devices")
    }

    /// `<root>/sys/bus/pci/devices/<addr>`.
    pub fn device_dir(&self, addr: PciAddr) -> PathBuf {
        self.devices_dir().join(addr.to_string())
    }

    /// `<root>/sys/bus/pci/drivers`.
    pub fn drivers_dir(&self) -> PathBuf {
        self.join("sys/bus/pci/drivers")
    }

    /// `<root>/sys/bus/pci/drivers/<name>`.
    pub fn driver_dir(&self, name: &str) -> PathBuf {
        self.drivers_dir().join(name)
    }

    /// `<root>/sys/bus/pci/drivers_probe`: writing an address asks the kernel to probe it.
    pub fn drivers_probe(&self) -> PathBuf {
        self.join("sys/bus/pci/drivers_probe")
    }

    /// `<root>/sys/class/net`.
    pub fn class_net(&self) -> PathBuf {
        self.join("sys/class/net")
    }

    /// `<root>/sys/kernel/iommu_groups`.
    pub fn iommu_groups(&self) -> PathBuf {
        self.join("sys/kernel/iommu_groups")
    }

    /// `<root>/sys/kernel/iommu_groups/<group>/devices`.
    pub fn iommu_group_devices(&self, group: u32) -> PathBuf {
        self.iommu_groups().join(group.to_string()).join("devices")
    }

    /// `<root>/sys/module/<module>`.
    pub fn module_dir(&self, module: &str) -> PathBuf {
        self.join("sys/module").join(module)
    }

    /// `<root>/sys/module/vfio/parameters/enable_unsafe_noiommu_mode`.
    pub fn noiommu_param(&self) -> PathBuf {
        self.module_dir("vfio")
            .join("parameters/enable_unsafe_noiommu_mode")
    }

    /// `<root>/dev/<name>`: a device node (`uio0`, ...).
    pub fn dev_node(&self, name: &str) -> PathBuf {
        self.join("dev").join(name)
    }

    /// `<root>/dev/vfio`.
    pub fn dev_vfio(&self) -> PathBuf {
        self.join("dev/vfio")
    }
}

/// The last component of the target of the symlink at `path`.
pub fn link_name(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    target.file_name()?.to_str().map(str::to_string)
}

/// The name of the kernel driver a sysfs device directory is bound to, if any.
pub fn bound_driver(dev_dir: &Path) -> Option<String> {
    link_name(&dev_dir.join("driver"))
}

/// Vendor and device id of `addr` from the sysfs `vendor` and `device` files.
pub fn sysfs_ids(addr: PciAddr, root: &SysfsRoot) -> Result<(u16, u16), PciError> {
    let dir = root.device_dir(addr);
    let read = |file: &'static str| -> Result<u16, PciError> {
        let p = dir.join(file);
        let s = fs::read_to_string(&p)
            .map_err(|e| PciError::io(format!("reading {}", p.display()), e))?;
        let t = s.trim();
        u16::from_str_radix(t.strip_prefix("0x").unwrap_or(t), 16).map_err(|_| PciError::BadId {
            addr,
            file,
            text: t.to_string(),
        })
    };
    Ok((read("vendor")?, read("device")?))
}

/// The class code in `<dev>/class` of `addr` under `root`; None when the file is missing
/// or does not hold a hex number (the caller then cannot tell, and does not refuse).
pub fn class_code(addr: PciAddr, root: &SysfsRoot) -> Option<ClassCode> {
    let s = fs::read_to_string(root.device_dir(addr).join("class")).ok()?;
    let t = s.trim();
    let digits = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    u32::from_str_radix(digits, 16)
        .ok()
        .map(|c| ClassCode(c & 0x00ff_ffff))
}

/// A device bound to a driver a PMD can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundDevice {
    /// Its address.
    pub addr: PciAddr,
    /// Vendor id (0 if unreadable).
    pub vendor: u16,
    /// Device id (0 if unreadable).
    pub device: u16,
    /// The bound driver (vfio-pci, uio_pci_generic, ...).
    pub driver: String,
    /// How it would be reached: `iommu group N`, `noiommu group N`, `uioN`, ...
    pub detail: String,
}

/// Devices bound to vfio-pci or a UIO driver, sorted by address. Reads only the
/// `driver`, `iommu_group`, `uio`, `vendor` and `device` entries of sysfs.
pub fn list_bound(root: &SysfsRoot) -> Vec<BoundDevice> {
    let mut out: Vec<BoundDevice> = fs::read_dir(root.devices_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let addr: PciAddr = e.file_name().to_str()?.parse().ok()?;
            let dir = root.device_dir(addr);
            let driver = bound_driver(&dir)?;
            let detail = if driver == "vfio-pci" {
                match link_name(&dir.join("iommu_group")) {
                    Some(n) if root.dev_vfio().join(format!("noiommu-{n}")).exists() => {
                        format!("noiommu group {n}")
                    }
                    Some(n) => format!("iommu group {n}"),
                    None => "no iommu group".to_string(),
                }
            } else {
                fs::read_dir(dir.join("uio"))
                    .ok()
                    .and_then(|mut d| d.find_map(|e| e.ok()?.file_name().into_string().ok()))?
            };
            let (vendor, device) = sysfs_ids(addr, root).unwrap_or((0, 0));
            Some(BoundDevice {
                addr,
                vendor,
                device,
                driver,
                detail,
            })
        })
        .collect();
    out.sort_by_key(|d| d.addr);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_class_file() {
        let dir = std::env::temp_dir().join(format!("pmd-class-{}", std::process::id()));
        let root = SysfsRoot::at(&dir);
        let addr: PciAddr = "0000:00:00.0".parse().unwrap();
        let dev = root.device_dir(addr);
        fs::create_dir_all(&dev).unwrap();
        assert_eq!(class_code(addr, &root), None);
        fs::write(dev.join("class"), "0x060000\n").unwrap();
        assert_eq!(class_code(addr, &root), Some(ClassCode(0x060000)));
        fs::write(dev.join("class"), "garbage\n").unwrap();
        assert_eq!(class_code(addr, &root), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn a(s: &str) -> PciAddr {
        s.parse().unwrap()
    }

    #[test]
    fn root_paths() {
        let r = SysfsRoot::system();
        assert!(r.is_system());
        assert_eq!(
            r.device_dir(a("0000:03:00.0")),
            Path::new("/sys/bus/pci/devices/0000:03:00.0")
        );
        assert_eq!(
            r.driver_dir("vfio-pci"),
            Path::new("/sys/bus/pci/drivers/vfio-pci")
        );
        assert_eq!(r.class_net(), Path::new("/sys/class/net"));
        assert_eq!(r.iommu_groups(), Path::new("/sys/kernel/iommu_groups"));
        assert_eq!(r.module_dir("vfio"), Path::new("/sys/module/vfio"));
        assert_eq!(r.dev_vfio(), Path::new("/dev/vfio"));
        assert!(!SysfsRoot::at(std::env::temp_dir()).is_system());
    }

    #[test]
    fn merged_root_has_the_paths_of_both_former_types() {
        let r = SysfsRoot::default();
        assert_eq!(r, SysfsRoot::system());
        assert_eq!(
            r.iommu_group_devices(7),
            Path::new("/sys/kernel/iommu_groups/7/devices")
        );
        assert_eq!(r.dev_node("uio3"), Path::new("/dev/uio3"));
        let fake = SysfsRoot::at("/tmp/x");
        assert_eq!(
            fake.device_dir(a("00:03.0")),
            Path::new("/tmp/x/sys/bus/pci/devices/0000:00:03.0")
        );
    }

    #[test]
    fn malformed_ids_name_the_file() {
        let dir = std::env::temp_dir().join(format!("pmd-sysfs-ids-{}", std::process::id()));
        let root = SysfsRoot::at(&dir);
        let dev = root.device_dir(a("0000:00:03.0"));
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("vendor"), "0x8086\n").unwrap();
        fs::write(dev.join("device"), "zz\n").unwrap();
        let e = sysfs_ids(a("0000:00:03.0"), &root).unwrap_err().to_string();
        let missing = sysfs_ids(a("0000:00:04.0"), &root).unwrap_err().to_string();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(e, "pci 0000:00:03.0: unexpected device id \"zz\"");
        assert!(missing.starts_with("reading "), "{missing}");
    }
}
