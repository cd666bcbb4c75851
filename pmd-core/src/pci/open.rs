//! Opening a PCI device with the right backend: VFIO (with or without an IOMMU) or UIO,
//! chosen from the kernel driver the device is bound to.
//!
//! All VFIO devices of a process share one container ([`shared_container`]), so they
//! share one IOMMU domain and every memory segment is DMA-mapped once for all of them.
//! The sysfs and /dev roots are configurable ([`HostPaths`]) so the decision logic and the
//! error messages can be tested against a fake tree.

use super::backend::PciBackend;
use super::uio::UioDevice;
use super::vfio::{locate_group, VfioContainer, VfioDevice};
use crate::error::{Error, Result};
use crate::memory::IovaMode;
use crate::pci_addr::PciAddr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};

/// Where sysfs and /dev are (`/sys` and `/dev` on a real system; a temp dir in tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// The sysfs root (`/sys`).
    pub sys: PathBuf,
    /// The device-node root (`/dev`).
    pub dev: PathBuf,
}

impl Default for HostPaths {
    /// The real system: `/sys` and `/dev`.
    fn default() -> Self {
        HostPaths {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

impl HostPaths {
    /// `<sys>/bus/pci/devices/<addr>`.
    pub fn device_dir(&self, addr: PciAddr) -> PathBuf {
        self.sys.join("bus/pci/devices").join(addr.to_string())
    }

    /// `<sys>/kernel/iommu_groups/<group>/devices`.
    pub fn iommu_group_devices(&self, group: u32) -> PathBuf {
        self.sys
            .join("kernel/iommu_groups")
            .join(group.to_string())
            .join("devices")
    }

    /// `<dev>/vfio`.
    pub fn dev_vfio(&self) -> PathBuf {
        self.dev.join("vfio")
    }

    /// Whether VFIO's no-IOMMU mode is enabled (`enable_unsafe_noiommu_mode` = Y).
    pub fn noiommu_enabled(&self) -> bool {
        std::fs::read_to_string(
            self.sys
                .join("module/vfio/parameters/enable_unsafe_noiommu_mode"),
        )
        .is_ok_and(|s| s.trim().eq_ignore_ascii_case("y") || s.trim() == "1")
    }
}

/// The name of the kernel driver a sysfs device directory is bound to, if any.
pub fn bound_driver(dev_dir: &Path) -> Option<String> {
    std::fs::read_link(dev_dir.join("driver"))
        .ok()?
        .file_name()?
        .to_str()
        .map(str::to_string)
}

/// How to reach a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessMode {
    /// From the bound driver: vfio-pci → VFIO, uio_pci_generic (or any UIO driver) → UIO.
    #[default]
    Auto,
    /// VFIO (the device must be bound to vfio-pci).
    Vfio,
    /// UIO (the device must be bound to uio_pci_generic or another UIO driver).
    Uio,
}

impl FromStr for AccessMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(AccessMode::Auto),
            "vfio" => Ok(AccessMode::Vfio),
            "uio" => Ok(AccessMode::Uio),
            _ => Err(format!(
                "unknown access mode {s:?}: expected auto, vfio or uio"
            )),
        }
    }
}

impl fmt::Display for AccessMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessMode::Auto => "auto",
            AccessMode::Vfio => "vfio",
            AccessMode::Uio => "uio",
        })
    }
}

/// An opened device, with its concrete backend type (for backend-specific queries such
/// as [`VfioDevice::read_region`] or [`VfioDevice::is_dma_mapped`]).
#[derive(Debug, Clone)]
pub enum Opened {
    /// Through VFIO.
    Vfio(Arc<VfioDevice>),
    /// Through UIO.
    Uio(Arc<UioDevice>),
}

impl Opened {
    /// The device as a [`PciBackend`].
    pub fn backend(&self) -> Arc<dyn PciBackend> {
        match self {
            Opened::Vfio(d) => d.clone(),
            Opened::Uio(d) => d.clone(),
        }
    }

    /// The VFIO device, when opened through VFIO.
    pub fn as_vfio(&self) -> Option<&Arc<VfioDevice>> {
        match self {
            Opened::Vfio(d) => Some(d),
            Opened::Uio(_) => None,
        }
    }

    /// The UIO device, when opened through UIO.
    pub fn as_uio(&self) -> Option<&Arc<UioDevice>> {
        match self {
            Opened::Uio(d) => Some(d),
            Opened::Vfio(_) => None,
        }
    }

    /// Whether [`PciBackend::reset`] really resets the function (VFIO with
    /// `VFIO_DEVICE_FLAGS_RESET`); elsewhere it is a logged no-op.
    pub fn supports_reset(&self) -> bool {
        match self {
            Opened::Vfio(d) => d.supports_reset(),
            Opened::Uio(_) => false,
        }
    }
}

fn not_bound_error(addr: PciAddr, driver: Option<&str>) -> Error {
    let now = driver.map_or("is not bound to any driver".to_string(), |d| {
        format!("is bound to {d}")
    });
    Error::driver(
        format!("pci {addr}"),
        format!(
            "device {now}, which a poll-mode driver cannot use: bind it first: `hugepage-setup bind {addr} vfio-pci` \
             (or `hugepage-setup bind {addr} uio_pci_generic`)"
        ),
    )
}

/// Turns `Auto` into `Vfio` or `Uio` from the bound driver (explicit modes pass through;
/// their backends check the binding themselves).
pub fn resolve_mode(addr: PciAddr, mode: AccessMode, paths: &HostPaths) -> Result<AccessMode> {
    if mode != AccessMode::Auto {
        return Ok(mode);
    }
    let dev = paths.device_dir(addr);
    if !dev.exists() {
        return Err(Error::driver(
            format!("pci {addr}"),
            format!(
                "no such PCI device ({} does not exist); list devices with `lspci -D`",
                dev.display()
            ),
        ));
    }
    let driver = bound_driver(&dev);
    match driver.as_deref() {
        Some("vfio-pci") => Ok(AccessMode::Vfio),
        Some("uio_pci_generic") => Ok(AccessMode::Uio),
        Some(_) if dev.join("uio").is_dir() => Ok(AccessMode::Uio),
        other => Err(not_bound_error(addr, other)),
    }
}

static SHARED: Mutex<Option<(PathBuf, Weak<VfioContainer>)>> = Mutex::new(None);

/// The process-wide VFIO container for `<paths.dev>/vfio`: opened on first use and kept
/// while any device uses it, so all VFIO devices share one IOMMU domain.
pub fn shared_container(paths: &HostPaths) -> Result<Arc<VfioContainer>> {
    let dir = paths.dev_vfio();
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((p, w)) = shared.as_ref() {
        if *p == dir {
            if let Some(c) = w.upgrade() {
                return Ok(c);
            }
        }
    }
    let c = VfioContainer::open_at(&dir)?;
    *shared = Some((dir, Arc::downgrade(&c)));
    Ok(c)
}

/// Opens `addr` with `mode` on this system. See [`open_device_at`].
pub fn open(addr: PciAddr, mode: AccessMode) -> Result<Arc<dyn PciBackend>> {
    Ok(open_device(addr, mode)?.backend())
}

/// Opens `addr` with `mode` on this system, keeping the concrete backend type.
pub fn open_device(addr: PciAddr, mode: AccessMode) -> Result<Opened> {
    open_device_at(addr, mode, &HostPaths::default())
}

/// Opens `addr` with `mode`, reading sysfs and /dev under `paths`. With
/// [`AccessMode::Auto`], a device bound to vfio-pci is opened through VFIO (its IOMMU
/// group, or its no-IOMMU group when the kernel runs VFIO in no-IOMMU mode), one bound
/// to uio_pci_generic through UIO; anything else is an error saying how to bind it.
pub fn open_device_at(addr: PciAddr, mode: AccessMode, paths: &HostPaths) -> Result<Opened> {
    match resolve_mode(addr, mode, paths)? {
        AccessMode::Vfio => {
            // Check the binding and the group before touching /dev/vfio/vfio, so the
            // error names the first thing to fix.
            locate_group(addr, paths)?;
            let container = shared_container(paths)?;
            Ok(Opened::Vfio(Arc::new(VfioDevice::open_in(
                addr, paths, &container,
            )?)))
        }
        AccessMode::Uio => Ok(Opened::Uio(Arc::new(UioDevice::open_at(addr, paths)?))),
        AccessMode::Auto => unreachable!("resolve_mode never returns Auto"),
    }
}

/// The IOVA mode `addr` needs when opened with `mode` on this system: VA for VFIO with
/// an IOMMU, PA for VFIO no-IOMMU and UIO. For the EAL to choose `--iova-mode`.
pub fn required_iova_mode(addr: PciAddr, mode: AccessMode) -> Result<IovaMode> {
    required_iova_mode_at(addr, mode, &HostPaths::default())
}

/// [`required_iova_mode`] with explicit roots.
pub fn required_iova_mode_at(
    addr: PciAddr,
    mode: AccessMode,
    paths: &HostPaths,
) -> Result<IovaMode> {
    match resolve_mode(addr, mode, paths)? {
        AccessMode::Uio => Ok(IovaMode::Pa),
        _ => Ok(if locate_group(addr, paths)?.noiommu {
            IovaMode::Pa
        } else {
            IovaMode::Va
        }),
    }
}

/// One IOVA mode that suits all devices: PA if any needs PA (VFIO with an IOMMU copes
/// with PA as long as each segment is IOVA-contiguous), else VA; `None` for no devices.
pub fn common_iova_mode(modes: impl IntoIterator<Item = IovaMode>) -> Option<IovaMode> {
    modes.into_iter().reduce(|a, b| {
        if a == IovaMode::Pa || b == IovaMode::Pa {
            IovaMode::Pa
        } else {
            IovaMode::Va
        }
    })
}

/// Vendor and device id of `addr` from the sysfs `vendor` and `device` files.
pub fn sysfs_ids(addr: PciAddr, paths: &HostPaths) -> Result<(u16, u16)> {
    let dir = paths.device_dir(addr);
    let read = |f: &str| -> Result<u16> {
        let p = dir.join(f);
        let s = std::fs::read_to_string(&p)
            .map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
        let t = s.trim();
        u16::from_str_radix(t.strip_prefix("0x").unwrap_or(t), 16)
            .map_err(|_| Error::driver(format!("pci {addr}"), format!("unexpected {f} id {t:?}")))
    };
    Ok((read("vendor")?, read("device")?))
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
pub fn list_bound(paths: &HostPaths) -> Vec<BoundDevice> {
    let mut out: Vec<BoundDevice> = std::fs::read_dir(paths.sys.join("bus/pci/devices"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let addr: PciAddr = e.file_name().to_str()?.parse().ok()?;
            let dir = paths.device_dir(addr);
            let driver = bound_driver(&dir)?;
            let detail = if driver == "vfio-pci" {
                match std::fs::read_link(dir.join("iommu_group"))
                    .ok()
                    .and_then(|l| l.file_name()?.to_str().map(str::to_string))
                {
                    Some(n) if paths.dev_vfio().join(format!("noiommu-{n}")).exists() => {
                        format!("noiommu group {n}")
                    }
                    Some(n) => format!("iommu group {n}"),
                    None => "no iommu group".to_string(),
                }
            } else {
                std::fs::read_dir(dir.join("uio"))
                    .ok()
                    .and_then(|mut d| d.find_map(|e| e.ok()?.file_name().into_string().ok()))?
            };
            let (vendor, device) = sysfs_ids(addr, paths).unwrap_or((0, 0));
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
    use std::os::unix::fs::symlink;

    struct Fake {
        root: PathBuf,
        paths: HostPaths,
    }

    impl Fake {
        fn new(tag: &str) -> Fake {
            let root = std::env::temp_dir().join(format!("pmd-open-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("sys/bus/pci/devices")).unwrap();
            std::fs::create_dir_all(root.join("dev")).unwrap();
            let paths = HostPaths {
                sys: root.join("sys"),
                dev: root.join("dev"),
            };
            Fake { root, paths }
        }

        fn device(&self, addr: &str, driver: Option<&str>, group: Option<u32>) -> PathBuf {
            let dev = self.paths.sys.join("bus/pci/devices").join(addr);
            std::fs::create_dir_all(&dev).unwrap();
            std::fs::write(dev.join("vendor"), "0x1af4\n").unwrap();
            std::fs::write(dev.join("device"), "0x1041\n").unwrap();
            if let Some(d) = driver {
                std::fs::create_dir_all(self.paths.sys.join("bus/pci/drivers").join(d)).unwrap();
                symlink(format!("../../../bus/pci/drivers/{d}"), dev.join("driver")).unwrap();
            }
            if let Some(g) = group {
                let gdir = self
                    .paths
                    .sys
                    .join(format!("kernel/iommu_groups/{g}/devices"));
                std::fs::create_dir_all(&gdir).unwrap();
                symlink(
                    format!("../../../kernel/iommu_groups/{g}"),
                    dev.join("iommu_group"),
                )
                .unwrap();
                symlink(&dev, gdir.join(addr)).unwrap();
            }
            dev
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    fn a(s: &str) -> PciAddr {
        s.parse().unwrap()
    }

    #[test]
    fn unbound_device_error_says_how_to_bind() {
        let f = Fake::new("unbound");
        f.device("0000:00:03.0", None, None);
        f.device("0000:00:04.0", Some("e1000e"), Some(4));
        let e = open_device_at(a("0000:00:03.0"), AccessMode::Auto, &f.paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not bound to any driver"), "{e}");
        assert!(
            e.contains("`hugepage-setup bind 0000:00:03.0 vfio-pci`"),
            "{e}"
        );
        let e = open_device_at(a("0000:00:04.0"), AccessMode::Auto, &f.paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bound to e1000e"), "{e}");
        let e = open_device_at(a("0000:00:04.0"), AccessMode::Vfio, &f.paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not bound to vfio-pci (driver e1000e)"), "{e}");
        assert!(
            e.contains("bind it first: `hugepage-setup bind 0000:00:04.0 vfio-pci`"),
            "{e}"
        );
        let e = open_device_at(a("0000:00:09.0"), AccessMode::Auto, &f.paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such PCI device"), "{e}");
    }

    #[test]
    fn missing_dev_vfio_and_missing_group_errors() {
        let f = Fake::new("novfio");
        f.device("0000:00:03.0", Some("vfio-pci"), Some(7));
        f.device("0000:00:05.0", Some("vfio-pci"), None);
        let e = open_device_at(a("0000:00:03.0"), AccessMode::Auto, &f.paths)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("vfio-pci is not loaded: `modprobe vfio-pci`"),
            "{e}"
        );
        let e = open_device_at(a("0000:00:05.0"), AccessMode::Auto, &f.paths)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no IOMMU group: enable the IOMMU (intel_iommu=on iommu=pt)"),
            "{e}"
        );
        assert!(e.contains("hugepage-setup noiommu on"), "{e}");
        // /dev/vfio/vfio present but no node for the group.
        std::fs::create_dir_all(f.paths.dev_vfio()).unwrap();
        std::fs::write(f.paths.dev_vfio().join("vfio"), b"").unwrap();
        let e = open_device_at(a("0000:00:03.0"), AccessMode::Auto, &f.paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains("noiommu-7"), "{e}");
    }

    #[test]
    fn iova_mode_follows_the_group_kind() {
        let f = Fake::new("iova");
        f.device("0000:00:03.0", Some("vfio-pci"), Some(3));
        f.device("0000:00:04.0", Some("vfio-pci"), Some(4));
        let uio = f.device("0000:00:05.0", Some("uio_pci_generic"), None);
        std::fs::create_dir_all(uio.join("uio/uio0")).unwrap();
        f.device("0000:00:06.0", Some("virtio-pci"), None);
        std::fs::create_dir_all(f.paths.dev_vfio()).unwrap();
        for n in ["vfio", "3", "noiommu-4"] {
            std::fs::write(f.paths.dev_vfio().join(n), b"").unwrap();
        }
        let m = |s| required_iova_mode_at(a(s), AccessMode::Auto, &f.paths);
        assert_eq!(m("0000:00:03.0").unwrap(), IovaMode::Va);
        assert_eq!(m("0000:00:04.0").unwrap(), IovaMode::Pa);
        assert_eq!(m("0000:00:05.0").unwrap(), IovaMode::Pa);
        assert!(m("0000:00:06.0").is_err());
        assert_eq!(
            resolve_mode(a("0000:00:05.0"), AccessMode::Auto, &f.paths).unwrap(),
            AccessMode::Uio
        );
        assert_eq!(
            common_iova_mode([IovaMode::Va, IovaMode::Pa]),
            Some(IovaMode::Pa)
        );
        assert_eq!(common_iova_mode([IovaMode::Va]), Some(IovaMode::Va));
        assert_eq!(common_iova_mode([]), None);
        // Listing: only the devices a PMD can use.
        let l = list_bound(&f.paths);
        let shown: Vec<(String, &str, &str)> = l
            .iter()
            .map(|d| (d.addr.to_string(), d.driver.as_str(), d.detail.as_str()))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("0000:00:03.0".to_string(), "vfio-pci", "iommu group 3"),
                ("0000:00:04.0".to_string(), "vfio-pci", "noiommu group 4"),
                ("0000:00:05.0".to_string(), "uio_pci_generic", "uio0"),
            ]
        );
        assert_eq!((l[0].vendor, l[0].device), (0x1af4, 0x1041));
        assert_eq!(
            sysfs_ids(a("0000:00:03.0"), &f.paths).unwrap(),
            (0x1af4, 0x1041)
        );
    }

    #[test]
    fn non_viable_group_message_lists_the_other_devices() {
        let f = Fake::new("viable");
        f.device("0000:00:03.0", Some("vfio-pci"), Some(9));
        let other = f.device("0000:00:03.1", Some("ixgbe"), None);
        symlink(&other, f.paths.iommu_group_devices(9).join("0000:00:03.1")).unwrap();
        let m = super::super::vfio::group_not_viable_message(&f.paths, 9, a("0000:00:03.0"));
        assert!(m.contains("IOMMU group 9 is not viable"), "{m}");
        assert!(m.contains("0000:00:03.1 (ixgbe)"), "{m}");
        assert!(!m.contains("0000:00:03.0"), "{m}");
        assert!(m.contains("vfio-pci") && m.contains("unbind"), "{m}");
    }

    #[test]
    fn access_mode_parses() {
        assert_eq!("VFIO".parse::<AccessMode>().unwrap(), AccessMode::Vfio);
        assert_eq!("auto".parse::<AccessMode>().unwrap(), AccessMode::Auto);
        assert!("x".parse::<AccessMode>().is_err());
        assert_eq!(AccessMode::Uio.to_string(), "uio");
    }

    #[test]
    fn uio_devices_open_through_auto() {
        let f = Fake::new("uioauto");
        super::super::uio::tests::fake_uio_device(&f.root, "0000:00:08.0", "uio_pci_generic");
        let o = open_device_at(a("0000:00:08.0"), AccessMode::Auto, &f.paths).unwrap();
        assert!(o.as_uio().is_some() && o.as_vfio().is_none());
        assert!(!o.supports_reset());
        assert_eq!(o.backend().read_config16(0).unwrap(), 0x8086);
    }
}
