//! Moving a PCI device between kernel drivers: to vfio-pci / uio_pci_generic for a PMD, and
//! back to its original driver afterwards.
//!
//! Binding uses the kernel's `driver_override` mechanism: write the target driver's name to
//! `<dev>/driver_override`, detach the device from its current driver (`<drv>/unbind`),
//! then ask the bus to probe it again (`sys/bus/pci/drivers_probe`). Only the named driver
//! may then claim it. The result is verified by re-reading the `driver` link.
//!
//! Safety: a device that is not a network controller (its PCI class code), and one whose
//! network interface is *active* (up and with addresses or routes), are refused unless
//! forced, so neither a disk, bridge or display controller nor the link that carries a
//! host's own traffic is pulled away by mistake. All writes go through a [`SysfsWriter`], so the whole sequence is tested
//! against a fake tree with [`FakeKernel`] standing in for the kernel.

use crate::discover::{self, kernel_support};
use crate::error::SetupError;
use crate::net::{in_use_reason, NetState};
use pmd_core::pci::sysfs::link_name;
use pmd_core::pci::{ClassCode, PciAddr, SysfsRoot};
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// Result of the operations here.
pub type Result<T, E = SetupError> = std::result::Result<T, E>;

/// Where every sysfs write goes: the real kernel, or a fake for tests.
pub trait SysfsWriter {
    /// Writes `contents` to the existing file `path` in one `write(2)`.
    fn write(&mut self, path: &Path, contents: &str) -> io::Result<()>;
}

/// Writes to the files for real. Never creates files: a missing sysfs file is an error.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelWriter;

impl SysfsWriter for KernelWriter {
    fn write(&mut self, path: &Path, contents: &str) -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)?;
        let n = f.write(contents.as_bytes())?;
        if n != contents.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write ({n} of {} bytes)", contents.len()),
            ));
        }
        Ok(())
    }
}

/// Test support: emulates the kernel's PCI bind/unbind and SR-IOV behaviour on a fake tree.
///
/// Every write is logged and stored in the (pre-existing) file like [`KernelWriter`]; then
/// writing an address to `drivers/<d>/unbind` removes the device's `driver` link, to
/// `drivers/<d>/bind` or `drivers_probe` (with an override set) creates it, unless the driver
/// is in [`FakeKernel::refuse`] (a probe failure, like vfio-pci on a non-viable group).
///
/// Writing N to `devices/<pf>/sriov_numvfs` checks like the kernel (`sriov_numvfs_store`):
/// ERANGE above `sriov_totalvfs`, nothing to do for the current count, ENOENT for a PF
/// without a driver, [`FakeKernel::sriov_error`] if set, EBUSY for a change between two
/// non-zero counts; a failed write leaves the file as it was. 0 then removes the VF
/// directories and the PF's `virtfnN` links; N > 0 creates N VFs like an 82576's (vendor
/// 0x8086, device 0x10ca, routing ids from the PF's + 0x80 in steps of 2), each with a
/// `physfn` link, its own IOMMU group if the PF has one, and bound to `igbvf` if that
/// driver is registered (the kernel's VF autoprobe).
#[derive(Debug)]
pub struct FakeKernel {
    root: SysfsRoot,
    /// Every write, in order: (path, contents).
    pub log: Vec<(PathBuf, String)>,
    /// Drivers whose probe fails.
    pub refuse: Vec<String>,
    /// An errno for the PF's driver to fail `sriov_numvfs` writes with (EINVAL, ENOMEM...).
    pub sriov_error: Option<i32>,
}

/// The driver the fake kernel binds new VFs to, if it is registered.
const FAKE_VF_DRIVER: &str = "igbvf";

impl FakeKernel {
    /// A fake kernel acting on the tree at `root`.
    pub fn new(root: &SysfsRoot) -> FakeKernel {
        FakeKernel {
            root: root.clone(),
            log: Vec::new(),
            refuse: Vec::new(),
            sriov_error: None,
        }
    }

    /// Emulates writing `contents` to `<pf_dir>/sriov_numvfs` (see the type's docs).
    fn set_numvfs(&mut self, pf_dir: &Path, contents: &str) -> io::Result<()> {
        let errno = |e| Err(io::Error::from_raw_os_error(e));
        let Ok(n) = contents.trim().parse::<u32>() else {
            return errno(libc::EINVAL);
        };
        let Some(sriov) = discover::sriov_of(pf_dir) else {
            return errno(libc::ENOENT);
        };
        if n > sriov.total_vfs {
            return errno(libc::ERANGE);
        }
        if n == sriov.num_vfs {
            return Ok(());
        }
        if link_name(&pf_dir.join("driver")).is_none() {
            return errno(libc::ENOENT);
        }
        if let Some(e) = self.sriov_error {
            return errno(e);
        }
        if sriov.num_vfs != 0 && n != 0 {
            return errno(libc::EBUSY);
        }
        KernelWriter.write(&pf_dir.join("sriov_numvfs"), contents)?;
        if n == 0 {
            for (i, vf) in discover::virtfns(pf_dir).into_iter().enumerate() {
                fs::remove_dir_all(self.root.device_dir(vf))?;
                fs::remove_file(pf_dir.join(format!("virtfn{i}")))?;
            }
            return Ok(());
        }
        let pf: PciAddr = pf_dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
        let pf_rid = u32::from(pf.bus) << 8 | u32::from(pf.device) << 3 | u32::from(pf.function);
        for i in 0..n {
            let rid = pf_rid + 0x80 + 2 * i;
            let vf = u8::try_from(rid >> 8)
                .ok()
                .and_then(|bus| {
                    PciAddr::new(pf.domain, bus, (rid >> 3 & 0x1f) as u8, (rid & 7) as u8)
                })
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
            self.add_vf(pf_dir, pf, vf, i)?;
        }
        Ok(())
    }

    /// Creates the directory of VF number `i` of `pf` at `vf`, like the kernel would.
    fn add_vf(&self, pf_dir: &Path, pf: PciAddr, vf: PciAddr, i: u32) -> io::Result<()> {
        use std::os::unix::fs::symlink;
        let dir = self.root.device_dir(vf);
        fs::create_dir_all(&dir)?;
        for (file, value) in [
            ("vendor", "0x8086"),
            ("device", "0x10ca"),
            ("class", "0x020000"),
            ("subsystem_vendor", "0x8086"),
            ("subsystem_device", "0xa03c"),
            ("driver_override", "(null)"),
        ] {
            fs::write(dir.join(file), format!("{value}\n"))?;
        }
        let node = fs::read_to_string(pf_dir.join("numa_node")).unwrap_or("-1\n".into());
        fs::write(dir.join("numa_node"), node)?;
        symlink(format!("../{pf}"), dir.join("physfn"))?;
        symlink(format!("../{vf}"), pf_dir.join(format!("virtfn{i}")))?;
        if link_name(&pf_dir.join("iommu_group")).is_some() {
            let groups = self.root.iommu_groups();
            fs::create_dir_all(&groups)?;
            let next = fs::read_dir(&groups)?
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .max()
                .map_or(0, |g| g + 1);
            let g = groups.join(next.to_string());
            fs::create_dir_all(g.join("devices"))?;
            symlink(&g, dir.join("iommu_group"))?;
            symlink(&dir, g.join("devices").join(vf.to_string()))?;
        }
        if self.root.driver_dir(FAKE_VF_DRIVER).is_dir() {
            self.attach(vf, FAKE_VF_DRIVER)?;
        }
        Ok(())
    }

    /// Attaches `addr` to `driver` like a successful probe would.
    fn attach(&self, addr: PciAddr, driver: &str) -> io::Result<()> {
        let dev = self.root.device_dir(addr);
        let drv = self.root.driver_dir(driver);
        if link_name(&dev.join("driver")).is_some() {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        if !drv.is_dir() || self.refuse.iter().any(|r| r == driver) {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        std::os::unix::fs::symlink(drv, dev.join("driver"))
    }
}

impl SysfsWriter for FakeKernel {
    fn write(&mut self, path: &Path, contents: &str) -> io::Result<()> {
        self.log.push((path.to_path_buf(), contents.to_string()));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let parent = path.parent().unwrap_or(Path::new(""));
        if name == "sriov_numvfs" && parent.parent() == Some(self.root.devices_dir().as_path()) {
            if !path.is_file() {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            return self.set_numvfs(parent, contents);
        }
        KernelWriter.write(path, contents)?;
        let in_drivers = parent.parent() == Some(self.root.drivers_dir().as_path());
        let addr = contents.trim().parse::<PciAddr>();
        match (name, addr) {
            ("unbind", Ok(addr)) if in_drivers => {
                let link = self.root.device_dir(addr).join("driver");
                if link_name(&link).as_deref() != parent.file_name().and_then(|n| n.to_str()) {
                    return Err(io::Error::from_raw_os_error(libc::ENODEV));
                }
                fs::remove_file(link)
            }
            ("bind", Ok(addr)) if in_drivers => {
                let driver = parent.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let dev = discover::device(&self.root, addr).map_err(io::Error::other)?;
                match dev.driver_override {
                    Some(o) if o != driver => Err(io::Error::from_raw_os_error(libc::ENODEV)),
                    _ => self.attach(addr, driver),
                }
            }
            ("drivers_probe", Ok(addr)) if path == self.root.drivers_probe() => {
                let dev = discover::device(&self.root, addr).map_err(io::Error::other)?;
                match (dev.driver, dev.driver_override) {
                    // Probe failures are not reported to the writer, as with the kernel.
                    (None, Some(o)) => {
                        let _ = self.attach(addr, &o);
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

/// What [`bind_with`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindOutcome {
    /// The driver the device was bound to before (None: no driver).
    pub previous: Option<String>,
    /// False when the device was already bound to the requested driver.
    pub changed: bool,
}

/// Rejects driver names that cannot be a single sysfs directory entry.
fn check_driver_name(driver: &str) -> Result<()> {
    let bad = driver.is_empty()
        || driver == "."
        || driver == ".."
        || driver
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control());
    if bad {
        return Err(SetupError::BadDriverName {
            name: driver.to_string(),
        });
    }
    Ok(())
}

/// Writes through `w`, turning failures into an error naming the file.
pub(crate) fn write_sys(w: &mut dyn SysfsWriter, path: &Path, contents: &str) -> Result<()> {
    w.write(path, contents).map_err(|source| SetupError::Write {
        contents: contents.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

/// Clears the override and writes `addr` to `driver_override` only if the kernel has it.
fn clear_override(root: &SysfsRoot, addr: PciAddr, w: &mut dyn SysfsWriter) -> Result<()> {
    let path = root.device_dir(addr).join("driver_override");
    if path.exists() {
        write_sys(w, &path, "\n")?;
    }
    Ok(())
}

/// After a failed bind: clears the override and gives the device back to `previous`.
/// Returns a sentence saying how that went.
fn rollback(
    root: &SysfsRoot,
    addr: PciAddr,
    previous: Option<&str>,
    w: &mut dyn SysfsWriter,
) -> String {
    let cleared = clear_override(root, addr, w);
    let now = link_name(&root.device_dir(addr).join("driver"));
    match (previous, now) {
        (_, Some(d)) if Some(d.as_str()) == previous => format!("it is still bound to {d}"),
        (Some(p), None) => {
            let bind_file = root.driver_dir(p).join("bind");
            match write_sys(w, &bind_file, &addr.to_string()).and(cleared) {
                Ok(()) => format!("it was given back to {p}"),
                Err(e) => format!("giving it back to {p} failed ({e}); it has no driver now"),
            }
        }
        (None, None) => "it has no driver, as before".to_string(),
        (_, Some(d)) => format!("it is bound to {d} now"),
    }
}

/// Binds the device at `addr` to `driver` (see the module docs), refusing a device that
/// is not a network controller (PCI class 0x02) or whose network interface is active,
/// unless `force`.
/// Every sysfs write goes through `w`.
pub fn bind_with(
    root: &SysfsRoot,
    net: &dyn NetState,
    addr: PciAddr,
    driver: &str,
    force: bool,
    w: &mut dyn SysfsWriter,
) -> Result<BindOutcome> {
    check_driver_name(driver)?;
    let info = discover::device(root, addr)?;
    if !root.driver_dir(driver).is_dir() {
        return Err(SetupError::DriverNotLoaded {
            driver: driver.to_string(),
        });
    }
    let previous = info.driver.clone();
    if previous.as_deref() == Some(driver) {
        return Ok(BindOutcome {
            previous,
            changed: false,
        });
    }
    if !force && !info.is_network() {
        return Err(SetupError::NotNetwork {
            addr,
            driver: driver.to_string(),
            class: ClassCode(info.class),
            held_by: info.driver.clone(),
        });
    }
    if !force {
        if let Some(why) = in_use_reason(&info, net) {
            return Err(SetupError::InUse {
                addr,
                driver: driver.to_string(),
                why,
            });
        }
    }
    if driver == "vfio-pci" && info.iommu_group.is_none() && !kernel_support(root).noiommu_enabled {
        return Err(SetupError::NoIommuGroup { addr });
    }

    let dev = root.device_dir(addr);
    let addr_s = addr.to_string();
    write_sys(w, &dev.join("driver_override"), driver)?;
    if let Some(p) = &previous {
        if let Err(e) = write_sys(w, &root.driver_dir(p).join("unbind"), &addr_s) {
            let how = rollback(root, addr, previous.as_deref(), w);
            return Err(SetupError::Unbind {
                addr,
                from: p.clone(),
                error: Box::new(e),
                rollback: how,
            });
        }
    }
    if let Err(e) = write_sys(w, &root.drivers_probe(), &addr_s) {
        let how = rollback(root, addr, previous.as_deref(), w);
        return Err(SetupError::Probe {
            addr,
            error: Box::new(e),
            rollback: how,
        });
    }

    let now = link_name(&dev.join("driver"));
    if now.as_deref() != Some(driver) {
        let why = if driver == "vfio-pci" {
            let group = match info.iommu_group {
                Some(g) => format!("IOMMU group {g}"),
                None => "IOMMU group".to_string(),
            };
            format!(
                "is its {group} viable (every device in it bound to vfio-pci or to no driver)? see dmesg"
            )
        } else {
            "does it support this device? see dmesg".to_string()
        };
        let how = rollback(root, addr, previous.as_deref(), w);
        return Err(SetupError::NotTaken {
            driver: driver.to_string(),
            addr,
            why,
            rollback: how,
        });
    }
    Ok(BindOutcome {
        previous,
        changed: true,
    })
}

/// Detaches the device from its driver and clears its driver override; returns the driver
/// it was bound to. Performs no in-use check: see [`in_use_reason`].
/// Every sysfs write goes through `w`.
pub fn unbind_with(
    root: &SysfsRoot,
    addr: PciAddr,
    w: &mut dyn SysfsWriter,
) -> Result<Option<String>> {
    let info = discover::device(root, addr)?;
    if info.driver_override.is_some() {
        clear_override(root, addr, w)?;
    }
    if let Some(d) = &info.driver {
        write_sys(w, &root.driver_dir(d).join("unbind"), &addr.to_string())?;
    }
    Ok(info.driver)
}

/// Puts the device back the way it was: clears the override, detaches it from its current
/// driver and, if `original` is Some, binds it to that driver (checked by re-reading the
/// `driver` link). Nothing is changed if `original` is not loaded.
/// Every sysfs write goes through `w`.
pub fn restore_with(
    root: &SysfsRoot,
    addr: PciAddr,
    original: Option<&str>,
    w: &mut dyn SysfsWriter,
) -> Result<()> {
    if let Some(o) = original {
        check_driver_name(o)?;
    }
    let info = discover::device(root, addr)?;
    if let Some(o) = original {
        if !root.driver_dir(o).is_dir() {
            return Err(SetupError::OriginalNotLoaded {
                addr,
                driver: o.to_string(),
            });
        }
    }
    if info.driver_override.is_some() {
        clear_override(root, addr, w)?;
    }
    if info.driver.as_deref() == original {
        return Ok(());
    }
    if let Some(d) = &info.driver {
        write_sys(w, &root.driver_dir(d).join("unbind"), &addr.to_string())?;
    }
    if let Some(o) = original {
        write_sys(w, &root.driver_dir(o).join("bind"), &addr.to_string())?;
        let now = link_name(&root.device_dir(addr).join("driver"));
        if now.as_deref() != Some(o) {
            return Err(SetupError::NotTakenBack {
                driver: o.to_string(),
                addr,
                now,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testtree::*;

    #[test]
    fn bind_writes_override_unbind_probe_in_order() {
        let (t, net) = setup("order");
        set_net(&t, "eth0", "up"); // up, but no addresses or routes: not active
        let mut k = FakeKernel::new(&t.root);
        let out = bind_with(&t.root, &net, a("0000:00:03.0"), "vfio-pci", false, &mut k).unwrap();
        assert_eq!(
            out,
            BindOutcome {
                previous: Some("e1000".into()),
                changed: true
            }
        );
        assert_eq!(
            rel(&t, &k.log),
            [
                pair(
                    "sys/bus/pci/devices/0000:00:03.0/driver_override",
                    "vfio-pci"
                ),
                pair("sys/bus/pci/drivers/e1000/unbind", "0000:00:03.0"),
                pair("sys/bus/pci/drivers_probe", "0000:00:03.0"),
            ]
        );
        assert_eq!(driver_of(&t, "0000:00:03.0").as_deref(), Some("vfio-pci"));
    }

    #[test]
    fn bind_of_unbound_device_skips_unbind() {
        let (t, net) = setup("unbound");
        t.nic("0000:00:04.0", None, &[]);
        let mut k = FakeKernel::new(&t.root);
        let out = bind_with(
            &t.root,
            &net,
            a("00:04.0"),
            "uio_pci_generic",
            false,
            &mut k,
        )
        .unwrap();
        assert_eq!(out.previous, None);
        assert!(out.changed);
        assert_eq!(k.log.len(), 2);
        assert_eq!(
            driver_of(&t, "0000:00:04.0").as_deref(),
            Some("uio_pci_generic")
        );
    }

    #[test]
    fn refuses_active_device_and_says_why() {
        let (t, net) = setup("active");
        set_net(&t, "eth0", "up addr route");
        let mut k = FakeKernel::new(&t.root);
        let e = bind_with(&t.root, &net, a("0000:00:03.0"), "vfio-pci", false, &mut k)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("refusing to bind 0000:00:03.0 to vfio-pci"),
            "{e}"
        );
        assert!(
            e.contains("eth0 (up, with addresses and routes) is active"),
            "{e}"
        );
        assert!(e.contains("live link") && e.contains("--force"), "{e}");
        assert!(e.contains("ip link set eth0 down"), "{e}");
        assert!(k.log.is_empty(), "nothing may be written: {:?}", k.log);
        assert_eq!(driver_of(&t, "0000:00:03.0").as_deref(), Some("e1000"));

        set_net(&t, "eth0", "up route");
        let e = bind_with(&t.root, &net, a("0000:00:03.0"), "vfio-pci", false, &mut k)
            .unwrap_err()
            .to_string();
        assert!(e.contains("eth0 (up, with routes)"), "{e}");
        // Down with addresses: not active.
        set_net(&t, "eth0", "addr route");
        assert!(bind_with(&t.root, &net, a("0000:00:03.0"), "vfio-pci", false, &mut k).is_ok());
    }

    #[test]
    fn refuses_virtio_net_whose_interface_hangs_off_a_child_device() {
        let (t, net) = setup("virtio");
        let d = t.nic("0000:00:07.0", Some("virtio-pci"), &[]);
        fs::create_dir_all(d.join("virtio2/net/vnet0")).unwrap();
        set_net(&t, "vnet0", "up addr");
        let mut k = FakeKernel::new(&t.root);
        let e = bind_with(&t.root, &net, a("0000:00:07.0"), "vfio-pci", false, &mut k)
            .unwrap_err()
            .to_string();
        assert!(e.contains("vnet0 (up, with addresses) is active"), "{e}");
        assert!(k.log.is_empty());
    }

    #[test]
    fn force_overrides_the_active_check() {
        let (t, net) = setup("force");
        set_net(&t, "eth0", "up addr");
        let mut k = FakeKernel::new(&t.root);
        let out = bind_with(&t.root, &net, a("0000:00:03.0"), "vfio-pci", true, &mut k).unwrap();
        assert!(out.changed);
        assert_eq!(driver_of(&t, "0000:00:03.0").as_deref(), Some("vfio-pci"));
    }

    #[test]
    fn refuses_non_network_device_held_by_kernel_driver() {
        let (t, net) = setup("nonnet");
        t.device(Dev {
            addr: "0000:00:1f.2",
            class: "0x010601",
            driver: Some("ahci"),
            group: Some(4),
            ifaces: &[],
        });
        let mut k = FakeKernel::new(&t.root);
        let e = bind_with(&t.root, &net, a("0000:00:1f.2"), "vfio-pci", false, &mut k)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a network device (class 010601)") && e.contains("ahci"),
            "{e}"
        );
        assert!(k.log.is_empty());
        assert!(bind_with(&t.root, &net, a("0000:00:1f.2"), "vfio-pci", true, &mut k).is_ok());
    }

    #[test]
    fn refuses_a_host_bridge_with_no_driver_unless_forced() {
        let (t, net) = setup("bridge");
        t.device(Dev {
            addr: "0000:00:00.0",
            class: "0x060000",
            driver: None,
            group: Some(0),
            ifaces: &[],
        });
        let mut k = FakeKernel::new(&t.root);
        let e = bind_with(&t.root, &net, a("0000:00:00.0"), "vfio-pci", false, &mut k).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "refusing to bind 0000:00:00.0 to vfio-pci: it is not a network device (class 060000) \
             but a host bridge; pass --force to bind it anyway"
        );
        assert!(k.log.is_empty());
        assert_eq!(driver_of(&t, "0000:00:00.0"), None);
        let out = bind_with(&t.root, &net, a("0000:00:00.0"), "vfio-pci", true, &mut k).unwrap();
        assert!(out.changed);
    }

    #[test]
    fn unknown_or_unloaded_driver() {
        let (t, net) = setup("nodriver");
        fs::remove_dir_all(t.root.driver_dir("vfio-pci")).unwrap();
        fs::remove_dir_all(t.root.driver_dir("uio_pci_generic")).unwrap();
        let mut k = FakeKernel::new(&t.root);
        let mut err = |d: &str| {
            bind_with(&t.root, &net, a("0000:00:03.0"), d, false, &mut k)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("vfio-pci"),
            "driver vfio-pci is not loaded: run `modprobe vfio-pci`"
        );
        assert!(err("uio_pci_generic").contains("`modprobe uio_pci_generic`"));
        assert!(err("foo").starts_with("no PCI driver named foo"));
        assert!(err("../drivers/e1000").starts_with("no PCI driver named"));
        assert!(err("").starts_with("no PCI driver named"));
        assert!(k.log.is_empty());
    }

    #[test]
    fn missing_device_is_an_error() {
        let (t, net) = setup("missing");
        let mut k = FakeKernel::new(&t.root);
        let e = bind_with(&t.root, &net, a("0000:00:1f.7"), "vfio-pci", false, &mut k)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("no PCI device 0000:00:1f.7"), "{e}");
        assert!(k.log.is_empty());
    }

    #[test]
    fn already_bound_is_a_no_op() {
        let (t, net) = setup("noop");
        t.nic("0000:00:05.0", Some("vfio-pci"), &[]);
        let mut k = FakeKernel::new(&t.root);
        let out = bind_with(&t.root, &net, a("0000:00:05.0"), "vfio-pci", false, &mut k).unwrap();
        assert_eq!(
            out,
            BindOutcome {
                previous: Some("vfio-pci".into()),
                changed: false
            }
        );
        assert!(k.log.is_empty());
    }

    #[test]
    fn probe_failure_is_reported_and_rolled_back() {
        let (t, net) = setup("refuse");
        let mut k = FakeKernel::new(&t.root);
        k.refuse.push("vfio-pci".into());
        let e = bind_with(&t.root, &net, a("0000:00:03.0"), "vfio-pci", false, &mut k)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("vfio-pci did not take 0000:00:03.0: is its IOMMU group 3 viable"),
            "{e}"
        );
        assert!(
            e.contains("dmesg") && e.contains("given back to e1000"),
            "{e}"
        );
        assert_eq!(driver_of(&t, "0000:00:03.0").as_deref(), Some("e1000"));
        assert_eq!(
            discover::device(&t.root, a("0000:00:03.0"))
                .unwrap()
                .driver_override,
            None
        );
    }

    #[test]
    fn vfio_needs_a_group_or_noiommu() {
        let (t, net) = setup("nogroup");
        t.device(Dev {
            addr: "0000:00:06.0",
            class: "0x020000",
            driver: None,
            group: None,
            ifaces: &[],
        });
        let mut k = FakeKernel::new(&t.root);
        let e = bind_with(&t.root, &net, a("0000:00:06.0"), "vfio-pci", false, &mut k)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no IOMMU group") && e.contains("noiommu on"),
            "{e}"
        );
        assert!(k.log.is_empty());
        fs::create_dir_all(t.root.noiommu_param().parent().unwrap()).unwrap();
        fs::write(t.root.noiommu_param(), "Y\n").unwrap();
        assert!(bind_with(&t.root, &net, a("0000:00:06.0"), "vfio-pci", false, &mut k).is_ok());
    }

    #[test]
    fn unbind_returns_driver_and_clears_override() {
        let (t, _) = setup("unbind");
        let dev = t.root.device_dir(a("0000:00:03.0"));
        fs::write(dev.join("driver_override"), "vfio-pci\n").unwrap();
        let mut k = FakeKernel::new(&t.root);
        let prev = unbind_with(&t.root, a("0000:00:03.0"), &mut k).unwrap();
        assert_eq!(prev.as_deref(), Some("e1000"));
        assert_eq!(
            rel(&t, &k.log),
            [
                pair("sys/bus/pci/devices/0000:00:03.0/driver_override", "\n"),
                pair("sys/bus/pci/drivers/e1000/unbind", "0000:00:03.0"),
            ]
        );
        assert_eq!(driver_of(&t, "0000:00:03.0"), None);
        assert_eq!(
            unbind_with(&t.root, a("0000:00:03.0"), &mut k).unwrap(),
            None
        );
    }

    #[test]
    fn restore_checks_the_original_driver_first() {
        let (t, net) = setup("restore-missing");
        let addr = a("0000:00:03.0");
        let mut k = FakeKernel::new(&t.root);
        bind_with(&t.root, &net, addr, "vfio-pci", false, &mut k).unwrap();
        k.log.clear();
        let e = restore_with(&t.root, addr, Some("ixgbe"), &mut k)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("driver ixgbe is not loaded") && e.contains("modprobe ixgbe"),
            "{e}"
        );
        assert!(k.log.is_empty());
        assert_eq!(driver_of(&t, "0000:00:03.0").as_deref(), Some("vfio-pci"));
        // A refusing original driver is reported.
        k.refuse.push("e1000".into());
        let e = restore_with(&t.root, addr, Some("e1000"), &mut k)
            .unwrap_err()
            .to_string();
        assert!(e.contains("e1000"), "{e}");
    }

    #[test]
    fn malformed_addresses_never_reach_sysfs() {
        for bad in [
            "0000:00:03",
            "0000:00:03.0/../..",
            "../0000:00:03.0",
            "eth0",
        ] {
            assert!(bad.parse::<PciAddr>().is_err(), "{bad}");
        }
    }
}
