//! Test support: builds fake sysfs trees in unique temp directories.

use crate::discover;
use crate::net::FileNetState;
use pmd_core::pci::{PciAddr, SysfsRoot};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fake root that removes itself when dropped.
pub(crate) struct Tree {
    pub root: SysfsRoot,
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(self.root.path());
    }
}

/// Options for a fake device.
pub(crate) struct Dev<'a> {
    pub addr: &'a str,
    pub class: &'a str,
    pub driver: Option<&'a str>,
    pub group: Option<u32>,
    pub ifaces: &'a [&'a str],
}

impl Tree {
    /// An empty tree with the bus-level files in place.
    pub fn new(tag: &str) -> Tree {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pmd-pci-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        let root = SysfsRoot::at(&dir);
        fs::create_dir_all(root.devices_dir()).unwrap();
        fs::create_dir_all(root.drivers_dir()).unwrap();
        fs::create_dir_all(root.class_net()).unwrap();
        fs::write(root.drivers_probe(), "").unwrap();
        Tree { root }
    }

    /// Registers a driver (directory with `bind` and `unbind`).
    pub fn driver(&self, name: &str) -> &Self {
        let d = self.root.driver_dir(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("bind"), "").unwrap();
        fs::write(d.join("unbind"), "").unwrap();
        self
    }

    /// Adds a full device.
    pub fn device(&self, d: Dev) -> PathBuf {
        let dir = self.root.devices_dir().join(d.addr);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("vendor"), "0x8086\n").unwrap();
        fs::write(dir.join("device"), "0x100e\n").unwrap();
        fs::write(dir.join("class"), format!("{}\n", d.class)).unwrap();
        fs::write(dir.join("subsystem_vendor"), "0x1af4\n").unwrap();
        fs::write(dir.join("subsystem_device"), "0x1100\n").unwrap();
        fs::write(dir.join("numa_node"), "0\n").unwrap();
        fs::write(dir.join("driver_override"), "(null)\n").unwrap();
        if let Some(drv) = d.driver {
            self.driver(drv);
            symlink(self.root.driver_dir(drv), dir.join("driver")).unwrap();
        }
        if let Some(g) = d.group {
            let gdir = self.root.iommu_groups().join(g.to_string());
            fs::create_dir_all(gdir.join("devices")).unwrap();
            symlink(&gdir, dir.join("iommu_group")).unwrap();
            let _ = symlink(&dir, gdir.join("devices").join(d.addr));
        }
        for i in d.ifaces {
            fs::create_dir_all(dir.join("net").join(i)).unwrap();
            let cn = self.root.class_net().join(i);
            fs::create_dir_all(&cn).unwrap();
            fs::write(cn.join("flags"), "0x1003\n").unwrap();
        }
        dir
    }

    /// A network device with the given driver, IOMMU group and interfaces.
    pub fn nic(&self, addr: &str, driver: Option<&str>, ifaces: &[&str]) -> PathBuf {
        self.device(Dev {
            addr,
            class: "0x020000",
            driver,
            group: Some(3),
            ifaces,
        })
    }

    /// An SR-IOV physical function (an 82576's device id) with no VFs yet, at most `total`.
    pub fn pf(&self, addr: &str, driver: Option<&str>, ifaces: &[&str], total: u32) -> PathBuf {
        let dir = self.nic(addr, driver, ifaces);
        fs::write(dir.join("device"), "0x10c9\n").unwrap();
        fs::write(dir.join("sriov_totalvfs"), format!("{total}\n")).unwrap();
        fs::write(dir.join("sriov_numvfs"), "0\n").unwrap();
        dir
    }
}

/// Parses an address (tests only ever give valid ones).
pub(crate) fn a(s: &str) -> PciAddr {
    s.parse().unwrap()
}

/// A tree with an e1000 NIC at 00:03.0 (eth0), vfio-pci, uio_pci_generic, and a
/// FileNetState in `<root>/test-net`.
pub(crate) fn setup(tag: &str) -> (Tree, FileNetState) {
    let t = Tree::new(tag);
    t.driver("vfio-pci").driver("uio_pci_generic");
    t.nic("0000:00:03.0", Some("e1000"), &["eth0"]);
    fs::create_dir_all(t.root.join("test-net")).unwrap();
    let net = FileNetState::under(&t.root);
    (t, net)
}

/// Writes the state words of `iface` (`up`, `addr`, `route`).
pub(crate) fn set_net(t: &Tree, iface: &str, words: &str) {
    fs::write(t.root.join("test-net").join(iface), words).unwrap();
}

/// The driver `addr` is bound to in the tree.
pub(crate) fn driver_of(t: &Tree, addr: &str) -> Option<String> {
    discover::device(&t.root, a(addr)).unwrap().driver
}

/// A write log with paths relative to the tree.
pub(crate) fn rel(t: &Tree, log: &[(PathBuf, String)]) -> Vec<(String, String)> {
    log.iter()
        .map(|(p, c)| {
            let p = p.strip_prefix(t.root.path()).unwrap();
            (p.display().to_string(), c.clone())
        })
        .collect()
}

/// `(path, contents)` of one logged write.
pub(crate) fn pair(p: &str, c: &str) -> (String, String) {
    (p.to_string(), c.to_string())
}
