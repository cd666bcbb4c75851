//! PCI device discovery and kernel device-assignment support, read from sysfs, for the
//! `status` report and the checks before a bind.
//!
//! Everything here is read-only. All paths hang off a [`SysfsRoot`], which is `/` on a live
//! system and a temporary directory holding a fake `sys/` tree in tests.
//!
//! Facts used (Documentation/ABI/testing/sysfs-bus-pci and friends):
//! - `sys/bus/pci/devices/<addr>/{vendor,device,class,subsystem_vendor,subsystem_device}`
//!   hold hex numbers like `0x8086`; `numa_node` holds a decimal number, `-1` when unknown;
//! - `driver` and `iommu_group` are symlinks whose last component names the bound driver
//!   and the IOMMU group number; `net/` lists the kernel network interfaces of the device;
//! - `driver_override` holds a driver name, or `(null)` when unset;
//! - an SR-IOV physical function has `sriov_totalvfs` (the most VFs it supports) and
//!   `sriov_numvfs` (how many are enabled), and `virtfn0`, `virtfn1`, ... symlinks to the
//!   directories of its virtual functions.

use crate::error::SetupError;
use pmd_core::pci::sysfs::link_name;
use pmd_core::pci::{BackendKind, ClassCode, PciAddr, SysfsRoot};
use std::fs;
use std::io;
use std::path::Path;

/// What sysfs says about one PCI device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDeviceInfo {
    /// Its address.
    pub addr: PciAddr,
    /// Vendor id (0 if unreadable).
    pub vendor: u16,
    /// Device id (0 if unreadable).
    pub device: u16,
    /// 24-bit class code: class, subclass, programming interface (0 if unreadable).
    pub class: u32,
    /// Subsystem vendor id (0 if unreadable).
    pub subsystem_vendor: u16,
    /// Subsystem device id (0 if unreadable).
    pub subsystem_device: u16,
    /// NUMA node (None when the kernel reports -1 or the file is missing).
    pub numa_node: Option<u32>,
    /// Name of the bound driver, if any.
    pub driver: Option<String>,
    /// IOMMU group number, if the device is in one.
    pub iommu_group: Option<u32>,
    /// Kernel network interfaces of the device (sorted; see [`scan`] for where they are
    /// looked for).
    pub net_ifaces: Vec<String>,
    /// The driver override, if one is set.
    pub driver_override: Option<String>,
    /// Its SR-IOV state, if it is an SR-IOV physical function.
    pub sriov: Option<Sriov>,
}

/// The SR-IOV state of a physical function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sriov {
    /// Virtual functions enabled now (`sriov_numvfs`; 0 if unreadable).
    pub num_vfs: u32,
    /// The most it supports (`sriov_totalvfs`).
    pub total_vfs: u32,
}

/// The SR-IOV state of the device at `dir`: None when it has no readable
/// `sriov_totalvfs` (no SR-IOV capability).
pub fn sriov_of(dir: &Path) -> Option<Sriov> {
    let total_vfs = read_trimmed(&dir.join("sriov_totalvfs"))?.parse().ok()?;
    let num_vfs = read_trimmed(&dir.join("sriov_numvfs"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Some(Sriov { num_vfs, total_vfs })
}

/// The virtual functions of the physical function at `dir`, in order (`virtfn0`,
/// `virtfn1`, ... up to the first missing link).
pub fn virtfns(dir: &Path) -> Vec<PciAddr> {
    (0..)
        .map_while(|i| link_name(&dir.join(format!("virtfn{i}"))))
        .filter_map(|name| name.parse().ok())
        .collect()
}

impl PciDeviceInfo {
    /// True for network controllers (PCI base class 0x02).
    pub fn is_network(&self) -> bool {
        ClassCode(self.class).is_network()
    }
}

/// Reads a file and trims whitespace; None when unreadable.
fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Reads a `0x`-prefixed (or bare) hex number.
fn read_hex(path: &Path) -> Option<u32> {
    let s = read_trimmed(path)?;
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(&s);
    u32::from_str_radix(digits, 16).ok()
}

/// Names of the entries of `dir` (empty if unreadable).
fn entry_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// The network interfaces of the device at `dir`. Interfaces are found in three places,
/// because not every driver puts them directly under the PCI device:
/// - `<dev>/net/<if>` (most NIC drivers);
/// - `<dev>/<child>/net/<if>` for a child device directory (virtio-net: `<dev>/virtio2/net/eth0`);
/// - `sys/class/net/<if>` links whose target's last PCI-address component is `addr`
///   (any nesting depth).
fn net_ifaces_of(root: &SysfsRoot, dir: &Path, addr: PciAddr) -> Vec<String> {
    let mut ifaces = entry_names(&dir.join("net"));
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        // file_type() does not follow symlinks: only real child devices, never `driver`,
        // `subsystem` or `iommu_group` links.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            ifaces.extend(entry_names(&e.path().join("net")));
        }
    }
    let class_net = root.class_net();
    for name in entry_names(&class_net) {
        let Ok(target) = fs::read_link(class_net.join(&name)) else {
            continue;
        };
        let owner = target
            .components()
            .rev()
            .find_map(|c| c.as_os_str().to_str()?.parse::<PciAddr>().ok());
        if owner == Some(addr) {
            ifaces.push(name);
        }
    }
    ifaces.sort();
    ifaces.dedup();
    ifaces
}

/// Reads one device directory. Unreadable files degrade to 0 / None / empty.
fn read_device(root: &SysfsRoot, dir: &Path, addr: PciAddr) -> PciDeviceInfo {
    let hex16 = |f: &str| {
        read_hex(&dir.join(f))
            .and_then(|v| u16::try_from(v).ok())
            .unwrap_or(0)
    };
    let net_ifaces = net_ifaces_of(root, dir, addr);
    PciDeviceInfo {
        addr,
        vendor: hex16("vendor"),
        device: hex16("device"),
        class: read_hex(&dir.join("class")).unwrap_or(0) & 0x00ff_ffff,
        subsystem_vendor: hex16("subsystem_vendor"),
        subsystem_device: hex16("subsystem_device"),
        numa_node: read_trimmed(&dir.join("numa_node")).and_then(|s| s.parse().ok()),
        driver: link_name(&dir.join("driver")),
        iommu_group: link_name(&dir.join("iommu_group")).and_then(|s| s.parse().ok()),
        net_ifaces,
        driver_override: read_trimmed(&dir.join("driver_override"))
            .filter(|s| !s.is_empty() && s != "(null)"),
        sriov: sriov_of(dir),
    }
}

/// All PCI devices, sorted by address. Entries whose name is not a PCI address are skipped;
/// a system without a PCI bus gives an empty list.
///
/// Network interfaces are found under `<dev>/net/`, under a child device's `net/` (virtio-net
/// puts them at `<dev>/virtioN/net/`), and through `sys/class/net/<if>` links into the
/// device's directory.
pub fn scan(root: &SysfsRoot) -> Result<Vec<PciDeviceInfo>, SetupError> {
    let dir = root.devices_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SetupError::io(format!("listing {}", dir.display()), e)),
    };
    let mut devices: Vec<PciDeviceInfo> = entries
        .flatten()
        .filter_map(|e| {
            let addr: PciAddr = e.file_name().to_str()?.parse().ok()?;
            Some(read_device(root, &e.path(), addr))
        })
        .collect();
    devices.sort_by_key(|d| d.addr);
    Ok(devices)
}

/// One device by address; an error naming the address when there is no such device.
pub fn device(root: &SysfsRoot, addr: PciAddr) -> Result<PciDeviceInfo, SetupError> {
    let dir = root.device_dir(addr);
    if !dir.is_dir() {
        return Err(SetupError::NoDevice { addr });
    }
    Ok(read_device(root, &dir, addr))
}

/// Which kernel mechanisms for giving a device to user space are available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelSupport {
    /// The `vfio` core module is loaded (`sys/module/vfio`).
    pub vfio_loaded: bool,
    /// The `vfio-pci` driver is registered (`sys/bus/pci/drivers/vfio-pci`).
    pub vfio_pci_loaded: bool,
    /// `/dev/vfio/vfio` (the container device) exists.
    pub vfio_dev_present: bool,
    /// vfio's `enable_unsafe_noiommu_mode` parameter is `Y`.
    pub noiommu_enabled: bool,
    /// Number of IOMMU groups (0 = no IOMMU active).
    pub iommu_groups: usize,
    /// The `uio_pci_generic` driver is registered.
    pub uio_pci_generic_loaded: bool,
}

/// Reads what the kernel offers for user-space device access.
pub fn kernel_support(root: &SysfsRoot) -> KernelSupport {
    KernelSupport {
        vfio_loaded: root.module_dir("vfio").is_dir(),
        vfio_pci_loaded: root.driver_dir("vfio-pci").is_dir(),
        vfio_dev_present: root.dev_vfio().join("vfio").exists(),
        noiommu_enabled: read_trimmed(&root.noiommu_param()).is_some_and(|s| s == "Y"),
        iommu_groups: fs::read_dir(root.iommu_groups())
            .map(|d| d.flatten().count())
            .unwrap_or(0),
        uio_pci_generic_loaded: root.driver_dir("uio_pci_generic").is_dir(),
    }
}

impl KernelSupport {
    /// The backends that can be used right now, best first.
    pub fn usable(&self) -> Vec<BackendKind> {
        let mut v = Vec::new();
        if self.vfio_pci_loaded && self.vfio_dev_present && self.iommu_groups > 0 {
            v.push(BackendKind::Vfio);
        }
        if self.vfio_pci_loaded && self.vfio_dev_present && self.noiommu_enabled {
            v.push(BackendKind::VfioNoIommu);
        }
        if self.uio_pci_generic_loaded {
            v.push(BackendKind::Uio);
        }
        v
    }

    /// A short multi-line explanation of what is usable and, if the best option is not,
    /// what to do to get it.
    pub fn summary(&self) -> String {
        let usable = self.usable();
        let mut lines: Vec<String> = usable
            .iter()
            .map(|k| match k {
                BackendKind::Vfio => format!(
                    "usable: vfio-pci with IOMMU ({} IOMMU groups)",
                    self.iommu_groups
                ),
                BackendKind::VfioNoIommu => {
                    "usable: vfio no-IOMMU (unsafe: no DMA isolation)".to_string()
                }
                BackendKind::Uio => {
                    "usable: uio_pci_generic (no DMA isolation, legacy interrupts only)".to_string()
                }
                BackendKind::Model => String::new(),
            })
            .collect();
        if usable.is_empty() {
            lines.push("nothing usable for PCI device access yet:".to_string());
        }
        if !usable.contains(&BackendKind::Vfio) {
            if !self.vfio_pci_loaded {
                lines.push("vfio-pci is not loaded: run `modprobe vfio-pci`".to_string());
            } else if !self.vfio_dev_present {
                lines.push(
                    "/dev/vfio/vfio is missing: check that vfio is fully loaded and /dev is devtmpfs"
                        .to_string(),
                );
            }
            if self.iommu_groups == 0 {
                lines.push(
                    "no IOMMU is active: boot with intel_iommu=on (Intel) or amd_iommu=on (AMD), \
                     plus iommu=pt; in a VM without a vIOMMU use no-IOMMU mode instead \
                     (`modprobe vfio enable_unsafe_noiommu_mode=1` or `pmd-setup noiommu on`)"
                        .to_string(),
                );
            }
        }
        if usable.is_empty() && !self.uio_pci_generic_loaded {
            lines.push("or use uio_pci_generic: run `modprobe uio_pci_generic`".to_string());
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testtree::*;

    fn a(s: &str) -> PciAddr {
        s.parse().unwrap()
    }

    #[test]
    fn scan_parses_everything_and_sorts() {
        let t = Tree::new("scan");
        t.device(Dev {
            addr: "0000:00:1f.2",
            class: "0x010601",
            driver: Some("ahci"),
            group: None,
            ifaces: &[],
        });
        let d = t.nic("0000:00:03.0", Some("e1000"), &["eth1", "eth0"]);
        fs::write(d.join("numa_node"), "1\n").unwrap();
        fs::write(d.join("driver_override"), "vfio-pci\n").unwrap();
        let v = scan(&t.root).unwrap();
        assert_eq!(v.len(), 2);
        let n = &v[0];
        assert_eq!(n.addr, a("0000:00:03.0"));
        assert_eq!((n.vendor, n.device), (0x8086, 0x100e));
        assert_eq!((n.subsystem_vendor, n.subsystem_device), (0x1af4, 0x1100));
        assert_eq!(n.class, 0x020000);
        assert!(n.is_network());
        assert_eq!(n.numa_node, Some(1));
        assert_eq!(n.driver.as_deref(), Some("e1000"));
        assert_eq!(n.iommu_group, Some(3));
        assert_eq!(n.net_ifaces, ["eth0", "eth1"]);
        assert_eq!(n.driver_override.as_deref(), Some("vfio-pci"));
        let s = &v[1];
        assert!(!s.is_network());
        assert_eq!(s.iommu_group, None);
        assert_eq!(s.driver_override, None);
        assert!(s.net_ifaces.is_empty());
    }

    #[test]
    fn scan_tolerates_missing_files_and_junk_entries() {
        let t = Tree::new("junk");
        // A bare directory: every optional file missing.
        fs::create_dir_all(t.root.devices_dir().join("0000:05:00.1")).unwrap();
        let d = t.root.devices_dir().join("0000:06:00.0");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("vendor"), "garbage").unwrap();
        fs::write(d.join("class"), "").unwrap();
        fs::write(d.join("numa_node"), "-1\n").unwrap();
        fs::write(d.join("driver_override"), "\n").unwrap();
        // A dangling symlink for the driver still names it; a junk group is ignored.
        std::os::unix::fs::symlink("../../drivers/gone", d.join("driver")).unwrap();
        std::os::unix::fs::symlink("../../groups/notanumber", d.join("iommu_group")).unwrap();
        for junk in [
            "not-an-address",
            "0000:00:20.0",
            "0000:00:00.8",
            "pci0000:00",
        ] {
            fs::create_dir_all(t.root.devices_dir().join(junk)).unwrap();
        }
        fs::write(t.root.devices_dir().join("README"), "x").unwrap();
        let v = scan(&t.root).unwrap();
        assert_eq!(v.len(), 2, "{v:?}");
        let bare = &v[0];
        assert_eq!(bare.addr, a("0000:05:00.1"));
        assert_eq!((bare.vendor, bare.device, bare.class), (0, 0, 0));
        assert_eq!(
            (bare.numa_node, bare.driver.clone(), bare.iommu_group),
            (None, None, None)
        );
        let odd = &v[1];
        assert_eq!(odd.vendor, 0);
        assert_eq!(odd.numa_node, None);
        assert_eq!(odd.driver.as_deref(), Some("gone"));
        assert_eq!(odd.iommu_group, None);
        assert_eq!(odd.driver_override, None);
    }

    #[test]
    fn interfaces_of_child_devices_and_class_net_links_are_found() {
        let t = Tree::new("virtio");
        // virtio-net: the interface hangs off the virtio child device.
        let d = t.nic("0000:00:03.0", Some("virtio-pci"), &[]);
        fs::create_dir_all(d.join("virtio2/net/eth0")).unwrap();
        // A link into a device dir that is not a real subdirectory must not be followed.
        std::os::unix::fs::symlink(t.root.drivers_dir(), d.join("subsystem")).unwrap();
        // Behind a bridge, found only through sys/class/net.
        t.nic("0000:03:00.0", Some("ixgbe"), &[]);
        std::os::unix::fs::symlink(
            "../../devices/pci0000:00/0000:00:1c.0/0000:03:00.0/net/enp3s0",
            t.root.class_net().join("enp3s0"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "../../devices/virtual/net/lo",
            t.root.class_net().join("lo"),
        )
        .unwrap();
        let v = scan(&t.root).unwrap();
        assert_eq!(v[0].net_ifaces, ["eth0"]);
        assert_eq!(v[1].net_ifaces, ["enp3s0"]);
        assert!(device(&t.root, a("0000:00:1c.0")).is_err());
    }

    #[test]
    fn scan_without_pci_bus_is_empty() {
        let root = SysfsRoot::at(std::env::temp_dir().join("pmd-pci-does-not-exist-xyz"));
        assert!(scan(&root).unwrap().is_empty());
    }

    #[test]
    fn device_lookup_and_not_found_message() {
        let t = Tree::new("dev");
        t.nic("0000:00:03.0", None, &[]);
        assert_eq!(device(&t.root, a("00:03.0")).unwrap().driver, None);
        let e = device(&t.root, a("0000:00:1f.7")).unwrap_err().to_string();
        assert_eq!(
            e,
            "no PCI device 0000:00:1f.7 (list devices with `pmd-setup status`)"
        );
    }

    #[test]
    fn kernel_support_detection_and_summary() {
        let t = Tree::new("kernel");
        let k = kernel_support(&t.root);
        assert_eq!(k, KernelSupport::default());
        let s = k.summary();
        assert!(s.contains("nothing usable"), "{s}");
        assert!(s.contains("modprobe vfio-pci"), "{s}");
        assert!(s.contains("intel_iommu=on"), "{s}");
        assert!(s.contains("modprobe uio_pci_generic"), "{s}");

        t.driver("uio_pci_generic");
        let k = kernel_support(&t.root);
        assert_eq!(k.usable(), [BackendKind::Uio]);
        assert!(k.summary().starts_with("usable: uio_pci_generic"));

        t.driver("vfio-pci");
        fs::create_dir_all(t.root.noiommu_param().parent().unwrap()).unwrap();
        fs::write(t.root.noiommu_param(), "Y\n").unwrap();
        fs::create_dir_all(t.root.dev_vfio()).unwrap();
        fs::write(t.root.dev_vfio().join("vfio"), "").unwrap();
        let k = kernel_support(&t.root);
        assert!(k.vfio_loaded && k.vfio_pci_loaded && k.vfio_dev_present && k.noiommu_enabled);
        assert_eq!(k.usable(), [BackendKind::VfioNoIommu, BackendKind::Uio]);
        let s = k.summary();
        assert!(s.contains("usable: vfio no-IOMMU"), "{s}");
        assert!(s.contains("intel_iommu=on"), "{s}");
        assert!(!s.contains("modprobe vfio-pci"), "{s}");

        for g in 0..3 {
            fs::create_dir_all(t.root.iommu_groups().join(g.to_string())).unwrap();
        }
        let k = kernel_support(&t.root);
        assert_eq!(k.iommu_groups, 3);
        assert_eq!(k.usable()[0], BackendKind::Vfio);
        let s = k.summary();
        assert!(
            s.starts_with("usable: vfio-pci with IOMMU (3 IOMMU groups)"),
            "{s}"
        );
        assert!(!s.contains("intel_iommu"), "{s}");
    }
}
