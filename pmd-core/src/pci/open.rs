//! Opening a PCI device with the right backend: VFIO (with or without an IOMMU) or UIO,
//! chosen from the kernel driver the device is bound to ([`super::access::resolve_mode`]).
//!
//! All VFIO devices of a process share one container ([`shared_container`]), so they
//! share one IOMMU domain and every memory segment is DMA-mapped once for all of them.
//! The sysfs and /dev roots are configurable ([`SysfsRoot`]) so the decision logic and the
//! error messages can be tested against a fake tree.

use super::access::{resolve_mode, AccessMode};
use super::addr::PciAddr;
use super::backend::PciBackend;
use super::sysfs::SysfsRoot;
use super::uio::UioDevice;
use super::vfio::{locate_group, VfioContainer, VfioDevice};
use crate::error::Result;
use crate::memory::IovaMode;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

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

static SHARED: Mutex<Option<(PathBuf, Weak<VfioContainer>)>> = Mutex::new(None);

/// The process-wide VFIO container for `<root>/dev/vfio`: opened on first use and kept
/// while any device uses it, so all VFIO devices share one IOMMU domain.
pub fn shared_container(root: &SysfsRoot) -> Result<Arc<VfioContainer>> {
    let dir = root.dev_vfio();
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
pub fn open(addr: PciAddr, mode: AccessMode, iova_mode: IovaMode) -> Result<Arc<dyn PciBackend>> {
    Ok(open_device(addr, mode, iova_mode)?.backend())
}

/// Opens `addr` with `mode` on this system, keeping the concrete backend type.
pub fn open_device(addr: PciAddr, mode: AccessMode, iova_mode: IovaMode) -> Result<Opened> {
    open_device_at(addr, mode, iova_mode, &SysfsRoot::system())
}

/// Opens `addr` with `mode`, reading sysfs and /dev under `root`. With
/// [`AccessMode::Auto`], a device bound to vfio-pci is opened through VFIO (its IOMMU
/// group, or its no-IOMMU group when the kernel runs VFIO in no-IOMMU mode), one bound
/// to uio_pci_generic through UIO; anything else is an error saying how to bind it.
///
/// `iova_mode` is what the IOVAs of the process's memory segments are (the EAL's
/// choice, [`crate::Eal::iova_mode`]): a device behind an IOMMU reports it from
/// [`PciBackend::iova_mode`]; one without (UIO, VFIO no-IOMMU) always reports PA.
pub fn open_device_at(
    addr: PciAddr,
    mode: AccessMode,
    iova_mode: IovaMode,
    root: &SysfsRoot,
) -> Result<Opened> {
    match resolve_mode(addr, mode, root)? {
        AccessMode::Uio => Ok(Opened::Uio(Arc::new(UioDevice::open_at(addr, root)?))),
        // resolve_mode never returns Auto.
        AccessMode::Vfio | AccessMode::Auto => {
            // Check the binding and the group before touching /dev/vfio/vfio, so the
            // error names the first thing to fix.
            locate_group(addr, root)?;
            let container = shared_container(root)?;
            Ok(Opened::Vfio(Arc::new(VfioDevice::open_in(
                addr, root, &container, iova_mode,
            )?)))
        }
    }
}

/// The IOVA mode `addr` needs when opened with `mode` on this system: VA for VFIO with
/// an IOMMU, PA for VFIO no-IOMMU and UIO. For the EAL to choose `--iova-mode`.
pub fn required_iova_mode(addr: PciAddr, mode: AccessMode) -> Result<IovaMode> {
    required_iova_mode_at(addr, mode, &SysfsRoot::system())
}

/// [`required_iova_mode`] with explicit roots.
pub fn required_iova_mode_at(
    addr: PciAddr,
    mode: AccessMode,
    root: &SysfsRoot,
) -> Result<IovaMode> {
    match resolve_mode(addr, mode, root)? {
        AccessMode::Uio => Ok(IovaMode::Pa),
        _ => Ok(if locate_group(addr, root)?.noiommu {
            IovaMode::Pa
        } else {
            IovaMode::Va
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::access::common_iova_mode;
    use super::super::sysfs::{list_bound, sysfs_ids};
    use super::*;
    use std::os::unix::fs::symlink;

    struct Fake {
        root: PathBuf,
        paths: SysfsRoot,
    }

    impl Fake {
        fn new(tag: &str) -> Fake {
            let root = std::env::temp_dir().join(format!("pmd-open-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(root.join("sys/bus/pci/devices")).unwrap();
            std::fs::create_dir_all(root.join("dev")).unwrap();
            let paths = SysfsRoot::at(&root);
            Fake { root, paths }
        }

        fn device(&self, addr: &str, driver: Option<&str>, group: Option<u32>) -> PathBuf {
            let dev = self.paths.devices_dir().join(addr);
            std::fs::create_dir_all(&dev).unwrap();
            std::fs::write(dev.join("vendor"), "0x1af4\n").unwrap();
            std::fs::write(dev.join("device"), "0x1041\n").unwrap();
            if let Some(d) = driver {
                std::fs::create_dir_all(self.paths.driver_dir(d)).unwrap();
                symlink(format!("../../../bus/pci/drivers/{d}"), dev.join("driver")).unwrap();
            }
            if let Some(g) = group {
                let gdir = self.paths.iommu_group_devices(g);
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
        let e = open_device_at(a("0000:00:03.0"), AccessMode::Auto, IovaMode::Va, &f.paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not bound to any driver"), "{e}");
        assert!(e.contains("`pmd-setup bind 0000:00:03.0 vfio-pci`"), "{e}");
        let e = open_device_at(a("0000:00:04.0"), AccessMode::Auto, IovaMode::Va, &f.paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bound to e1000e"), "{e}");
        let e = open_device_at(a("0000:00:04.0"), AccessMode::Vfio, IovaMode::Va, &f.paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not bound to vfio-pci (driver e1000e)"), "{e}");
        assert!(
            e.contains("bind it first: `pmd-setup bind 0000:00:04.0 vfio-pci`"),
            "{e}"
        );
        let e = open_device_at(a("0000:00:09.0"), AccessMode::Auto, IovaMode::Va, &f.paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such PCI device"), "{e}");
    }

    #[test]
    fn non_network_device_is_refused_before_any_binding_advice() {
        let f = Fake::new("bridge");
        let bridge = f.device("0000:00:00.0", None, None);
        std::fs::write(bridge.join("class"), "0x060000\n").unwrap();
        let held = f.device("0000:00:1f.2", Some("vfio-pci"), Some(5));
        std::fs::write(held.join("class"), "0x010601\n").unwrap();
        let nic = f.device("0000:00:03.0", None, None);
        std::fs::write(nic.join("class"), "0x020000\n").unwrap();
        for mode in [AccessMode::Auto, AccessMode::Vfio, AccessMode::Uio] {
            let e = open_device_at(a("0000:00:00.0"), mode, IovaMode::Va, &f.paths).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert_eq!(
                e.to_string(),
                "pci 0000:00:00.0: class 060000 (host bridge) is not a network controller \
                 (class 02xxxx), so no poll-mode driver can use it; give the address of a \
                 network device (`pmd-setup status` lists them)"
            );
        }
        let e = required_iova_mode_at(a("0000:00:1f.2"), AccessMode::Auto, &f.paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains("class 010601 (mass storage controller)"), "{e}");
        assert!(!e.contains("pmd-setup bind"), "{e}");
        // A network controller still gets the binding advice.
        let e = open_device_at(a("0000:00:03.0"), AccessMode::Auto, IovaMode::Va, &f.paths)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`pmd-setup bind 0000:00:03.0 vfio-pci`"), "{e}");
        assert_eq!(crate::pci::sysfs::bound_driver(&bridge), None);
    }

    #[test]
    fn missing_dev_vfio_and_missing_group_errors() {
        let f = Fake::new("novfio");
        f.device("0000:00:03.0", Some("vfio-pci"), Some(7));
        f.device("0000:00:05.0", Some("vfio-pci"), None);
        let e = open_device_at(a("0000:00:03.0"), AccessMode::Auto, IovaMode::Va, &f.paths)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("vfio-pci is not loaded: `modprobe vfio-pci`"),
            "{e}"
        );
        let e = open_device_at(a("0000:00:05.0"), AccessMode::Auto, IovaMode::Va, &f.paths)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no IOMMU group: enable the IOMMU (intel_iommu=on iommu=pt)"),
            "{e}"
        );
        assert!(e.contains("pmd-setup noiommu on"), "{e}");
        // /dev/vfio/vfio present but no node for the group.
        std::fs::create_dir_all(f.paths.dev_vfio()).unwrap();
        std::fs::write(f.paths.dev_vfio().join("vfio"), b"").unwrap();
        let e = open_device_at(a("0000:00:03.0"), AccessMode::Auto, IovaMode::Va, &f.paths)
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
        let m = super::super::vfio::group_not_viable(&f.paths, 9, a("0000:00:03.0")).to_string();
        assert!(m.contains("IOMMU group 9 is not viable"), "{m}");
        assert!(m.contains("0000:00:03.1 (ixgbe)"), "{m}");
        assert!(!m.contains("0000:00:03.0"), "{m}");
        assert!(m.contains("vfio-pci") && m.contains("unbind"), "{m}");
    }

    #[test]
    fn uio_devices_open_through_auto() {
        let f = Fake::new("uioauto");
        super::super::uio::tests::fake_uio_device(&f.root, "0000:00:08.0", "uio_pci_generic");
        let o =
            open_device_at(a("0000:00:08.0"), AccessMode::Auto, IovaMode::Va, &f.paths).unwrap();
        assert!(o.as_uio().is_some() && o.as_vfio().is_none());
        assert!(!o.supports_reset());
        assert_eq!(o.backend().read_config16(0).unwrap(), 0x8086);
        // Without an IOMMU the device sees physical addresses, whatever mode is asked.
        assert_eq!(o.backend().iova_mode(), IovaMode::Pa);
    }
}
