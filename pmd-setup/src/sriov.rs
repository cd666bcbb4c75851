//! SR-IOV virtual functions: setting how many a physical function (PF) has, through its
//! `sriov_numvfs` file, and listing them through its `virtfnN` links.
//!
//! The kernel only changes the count between zero and non-zero (it answers EBUSY to a
//! change between two non-zero counts), so such a change writes 0 first, then the new
//! count. Any change resets the PF on Intel NICs (igb, ixgbe), dropping its link, and
//! removes the old VFs: so a PF whose interface is *active* (up with addresses or routes,
//! [`active_ifaces`], the same guard as `bind`'s), and VFs bound to a user-space driver, are
//! refused unless forced. An interface that is up without addresses or routes is fine: the
//! PF must be up for its VFs to pass traffic. All writes go through a [`SysfsWriter`].

use crate::bind::SysfsWriter;
use crate::discover::{self, PciDeviceInfo};
use crate::error::SetupError;
use crate::net::{active_ifaces, describe_active, NetState};
use pmd_core::pci::sysfs::link_name;
use pmd_core::pci::{PciAddr, SysfsRoot};

/// Result of the operations here.
pub type Result<T, E = SetupError> = std::result::Result<T, E>;

/// Drivers that hand a VF to a user-space program, which removing the VF would pull it
/// away from.
pub const USER_SPACE_DRIVERS: [&str; 2] = ["vfio-pci", "uio_pci_generic"];

/// What [`set_vfs_with`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfsOutcome {
    /// The VFs the PF had before.
    pub previous: u32,
    /// The VFs it has now.
    pub now: u32,
    /// Its `sriov_totalvfs`.
    pub total: u32,
    /// The VFs that were removed (all the old ones, for any change from a non-zero
    /// count; new VFs may come back at the same addresses, as new devices).
    pub removed: Vec<PciAddr>,
    /// What `force` overrode, one sentence each (empty without `force`).
    pub forced: Vec<String>,
}

impl VfsOutcome {
    /// False when the PF already had the VFs asked for (nothing was written).
    pub fn changed(&self) -> bool {
        self.previous != self.now
    }
}

/// The VFs of `pf` now, in `virtfnN` order (a link to a missing directory is skipped).
pub fn vfs(root: &SysfsRoot, pf: PciAddr) -> Vec<PciDeviceInfo> {
    discover::virtfns(&root.device_dir(pf))
        .into_iter()
        .filter_map(|vf| discover::device(root, vf).ok())
        .collect()
}

/// Gives the physical function `pf` `n` VFs (0 removes them; see the module docs),
/// refusing, unless `force`, when its interface is active or a VF that would be removed is
/// bound to one of [`USER_SPACE_DRIVERS`]. A device without SR-IOV and `n` above its
/// `sriov_totalvfs` are always refused. Nothing is written when refused, or when the PF
/// already has `n` VFs. Every sysfs write goes through `w`.
pub fn set_vfs_with(
    root: &SysfsRoot,
    net: &dyn NetState,
    pf: PciAddr,
    n: u32,
    force: bool,
    w: &mut dyn SysfsWriter,
) -> Result<VfsOutcome> {
    let info = discover::device(root, pf)?;
    let dir = root.device_dir(pf);
    let Some(sriov) = info.sriov else {
        return Err(SetupError::NoSriov {
            addr: pf,
            physfn: link_name(&dir.join("physfn")).and_then(|p| p.parse().ok()),
        });
    };
    if n > sriov.total_vfs {
        return Err(SetupError::TooManyVfs {
            addr: pf,
            asked: n,
            total: sriov.total_vfs,
        });
    }
    let current = sriov.num_vfs;
    let mut out = VfsOutcome {
        previous: current,
        now: current,
        total: sriov.total_vfs,
        removed: Vec::new(),
        forced: Vec::new(),
    };
    if n == current {
        return Ok(out);
    }

    let active = active_ifaces(&info, net);
    if !active.is_empty() {
        let why = describe_active(&active, net);
        if !force {
            return Err(SetupError::PfActive {
                addr: pf,
                current,
                asked: n,
                why,
            });
        }
        out.forced.push(format!(
            "{why} (the PF is reset, its link drops for a moment)"
        ));
    }
    let old = discover::virtfns(&dir);
    if current != 0 {
        let in_use: Vec<(PciAddr, String)> = old
            .iter()
            .filter_map(|&vf| {
                let d = discover::device(root, vf).ok()?.driver?;
                USER_SPACE_DRIVERS.contains(&d.as_str()).then_some((vf, d))
            })
            .collect();
        if !in_use.is_empty() {
            if !force {
                return Err(SetupError::VfsInUse {
                    addr: pf,
                    current,
                    asked: n,
                    vfs: in_use,
                });
            }
            for (vf, d) in in_use {
                out.forced.push(format!("VF {vf} was bound to {d}"));
            }
        }
    }

    let path = dir.join("sriov_numvfs");
    let fail = |write, removed| SetupError::SriovWrite {
        addr: pf,
        asked: n,
        write: Box::new(write),
        driver: info.driver.clone(),
        removed,
    };
    let mut removed = None;
    if current != 0 && n != 0 {
        crate::bind::write_sys(w, &path, "0").map_err(|e| fail(e, None))?;
        removed = Some(current);
    }
    crate::bind::write_sys(w, &path, &n.to_string()).map_err(|e| fail(e, removed))?;
    out.now = n;
    if current != 0 {
        out.removed = old;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bind::{bind_with, FakeKernel};
    use crate::testtree::*;
    use std::fs;

    const PF: &str = "0000:01:00.0";
    const NUMVFS: &str = "sys/bus/pci/devices/0000:01:00.0/sriov_numvfs";

    /// `setup` plus an 82576-like PF at 01:00.0 (igb, eth1, at most 7 VFs) and igbvf.
    fn pf_setup(tag: &str) -> (Tree, crate::net::FileNetState) {
        let (t, net) = setup(tag);
        t.driver("igbvf");
        t.pf(PF, Some("igb"), &["eth1"], 7);
        (t, net)
    }

    /// The addresses and drivers of the VFs of PF.
    fn vf_list(t: &Tree) -> Vec<(String, Option<String>)> {
        vfs(&t.root, a(PF))
            .into_iter()
            .map(|v| (v.addr.to_string(), v.driver))
            .collect()
    }

    fn numvfs(t: &Tree) -> String {
        fs::read_to_string(t.root.join(NUMVFS))
            .unwrap()
            .trim()
            .to_string()
    }

    #[test]
    fn enable_creates_vfs_and_lists_them() {
        let (t, net) = pf_setup("sriov-enable");
        set_net(&t, "eth1", "up"); // up without addresses or routes: not active
        let mut k = FakeKernel::new(&t.root);
        let out = set_vfs_with(&t.root, &net, a(PF), 2, false, &mut k).unwrap();
        assert_eq!(
            out,
            VfsOutcome {
                previous: 0,
                now: 2,
                total: 7,
                removed: vec![],
                forced: vec![],
            }
        );
        assert_eq!(rel(&t, &k.log), [pair(NUMVFS, "2")]);
        assert_eq!(numvfs(&t), "2");
        let v = vfs(&t.root, a(PF));
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].vendor, v[0].device), (0x8086, 0x10ca));
        assert_eq!(
            vf_list(&t),
            [
                ("0000:01:10.0".into(), Some("igbvf".into())),
                ("0000:01:10.2".into(), Some("igbvf".into())),
            ]
        );
        let info = discover::device(&t.root, a(PF)).unwrap();
        assert_eq!(
            info.sriov,
            Some(discover::Sriov {
                num_vfs: 2,
                total_vfs: 7
            })
        );
    }

    #[test]
    fn change_between_non_zero_counts_goes_through_zero() {
        let (t, net) = pf_setup("sriov-change");
        let mut k = FakeKernel::new(&t.root);
        set_vfs_with(&t.root, &net, a(PF), 2, false, &mut k).unwrap();
        k.log.clear();
        let out = set_vfs_with(&t.root, &net, a(PF), 3, false, &mut k).unwrap();
        assert_eq!((out.previous, out.now), (2, 3));
        assert_eq!(
            out.removed,
            [a("0000:01:10.0"), a("0000:01:10.2")],
            "the old VFs are gone even if new ones take their addresses"
        );
        assert_eq!(rel(&t, &k.log), [pair(NUMVFS, "0"), pair(NUMVFS, "3")]);
        assert_eq!(vf_list(&t).len(), 3);
        assert_eq!(vf_list(&t)[2].0, "0000:01:10.4");
    }

    #[test]
    fn fake_kernel_refuses_a_direct_change_between_non_zero_counts() {
        let (t, _) = pf_setup("sriov-ebusy");
        let mut k = FakeKernel::new(&t.root);
        let path = t.root.join(NUMVFS);
        k.write(&path, "2").unwrap();
        let e = k.write(&path, "3").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBUSY));
        assert_eq!(numvfs(&t), "2", "a refused write leaves the file as it was");
        assert_eq!(vf_list(&t).len(), 2);
        let e = k.write(&path, "8").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ERANGE));
        k.write(&path, "2").unwrap();
        k.write(&path, "0").unwrap();
        assert!(vf_list(&t).is_empty());
        assert!(!t.root.device_dir(a("0000:01:10.0")).exists());
        assert!(!t.root.device_dir(a(PF)).join("virtfn0").exists());
    }

    #[test]
    fn same_count_writes_nothing() {
        let (t, net) = pf_setup("sriov-same");
        set_net(&t, "eth1", "up addr route");
        let mut k = FakeKernel::new(&t.root);
        let out = set_vfs_with(&t.root, &net, a(PF), 0, false, &mut k).unwrap();
        assert!(!out.changed());
        set_vfs_with(&t.root, &net, a(PF), 2, true, &mut k).unwrap();
        k.log.clear();
        // Even with an active interface: nothing is reset.
        let out = set_vfs_with(&t.root, &net, a(PF), 2, false, &mut k).unwrap();
        assert!(!out.changed());
        assert_eq!((out.previous, out.now), (2, 2));
        assert!(out.removed.is_empty());
        assert!(k.log.is_empty(), "nothing may be written: {:?}", k.log);
    }

    #[test]
    fn zero_removes_the_vfs() {
        let (t, net) = pf_setup("sriov-remove");
        let mut k = FakeKernel::new(&t.root);
        set_vfs_with(&t.root, &net, a(PF), 2, false, &mut k).unwrap();
        k.log.clear();
        let out = set_vfs_with(&t.root, &net, a(PF), 0, false, &mut k).unwrap();
        assert_eq!((out.previous, out.now), (2, 0));
        assert_eq!(rel(&t, &k.log), [pair(NUMVFS, "0")]);
        assert!(vf_list(&t).is_empty());
        assert_eq!(numvfs(&t), "0");
    }

    #[test]
    fn refuses_a_device_without_sriov_or_a_vf() {
        let (t, net) = pf_setup("sriov-none");
        let mut k = FakeKernel::new(&t.root);
        let e = set_vfs_with(&t.root, &net, a("0000:00:03.0"), 2, false, &mut k).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "0000:00:03.0 has no SR-IOV capability (no sriov_totalvfs), so it cannot have \
             virtual functions: give the physical function of an SR-IOV NIC"
        );
        set_vfs_with(&t.root, &net, a(PF), 1, false, &mut k).unwrap();
        k.log.clear();
        let e = set_vfs_with(&t.root, &net, a("0000:01:10.0"), 1, false, &mut k).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "0000:01:10.0 is a virtual function of 0000:01:00.0: give the physical function \
             (`pmd-setup sriov 0000:01:00.0 N`)"
        );
        let e = set_vfs_with(&t.root, &net, a("0000:05:00.0"), 1, false, &mut k).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().starts_with("no PCI device 0000:05:00.0"),
            "{e}"
        );
        assert!(k.log.is_empty(), "nothing may be written: {:?}", k.log);
    }

    #[test]
    fn refuses_more_than_totalvfs() {
        let (t, net) = pf_setup("sriov-total");
        let mut k = FakeKernel::new(&t.root);
        let e = set_vfs_with(&t.root, &net, a(PF), 8, true, &mut k).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "0000:01:00.0 supports at most 7 VFs (its sriov_totalvfs), not 8: ask for 0 to 7"
        );
        assert!(k.log.is_empty());
        assert_eq!(numvfs(&t), "0");
        assert!(set_vfs_with(&t.root, &net, a(PF), 7, false, &mut k).is_ok());
    }

    #[test]
    fn refuses_an_active_pf_unless_forced() {
        let (t, net) = pf_setup("sriov-active");
        set_net(&t, "eth1", "up addr");
        let mut k = FakeKernel::new(&t.root);
        let e = set_vfs_with(&t.root, &net, a(PF), 2, false, &mut k).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let m = e.to_string();
        assert!(
            m.starts_with(
                "refusing to enable 2 VFs on 0000:01:00.0: its interface eth1 (up, with \
                 addresses) is active, and enabling, changing or removing VFs resets the PF"
            ),
            "{m}"
        );
        assert!(m.contains("(it may stay up) or pass --force"), "{m}");
        assert!(k.log.is_empty(), "nothing may be written: {:?}", k.log);

        // Routes alone make it active too; down with addresses does not.
        set_net(&t, "eth1", "up route");
        let m = set_vfs_with(&t.root, &net, a(PF), 2, false, &mut k)
            .unwrap_err()
            .to_string();
        assert!(m.contains("eth1 (up, with routes) is active"), "{m}");
        assert!(k.log.is_empty());

        set_net(&t, "eth1", "up addr route");
        let out = set_vfs_with(&t.root, &net, a(PF), 2, true, &mut k).unwrap();
        assert_eq!(rel(&t, &k.log), [pair(NUMVFS, "2")]);
        assert_eq!(
            out.forced,
            [
                "its interface eth1 (up, with addresses and routes) is active (the PF is reset, \
              its link drops for a moment)"
            ]
        );
        // Removing is refused the same way.
        k.log.clear();
        let m = set_vfs_with(&t.root, &net, a(PF), 0, false, &mut k)
            .unwrap_err()
            .to_string();
        assert!(
            m.starts_with("refusing to remove the 2 VFs of 0000:01:00.0: its interface eth1"),
            "{m}"
        );
        assert!(k.log.is_empty());
        set_net(&t, "eth1", "addr route");
        assert!(set_vfs_with(&t.root, &net, a(PF), 0, false, &mut k).is_ok());
    }

    #[test]
    fn refuses_to_remove_vfs_bound_to_user_space_drivers() {
        let (t, net) = pf_setup("sriov-inuse");
        let mut k = FakeKernel::new(&t.root);
        set_vfs_with(&t.root, &net, a(PF), 3, false, &mut k).unwrap();
        bind_with(&t.root, &net, a("0000:01:10.2"), "vfio-pci", false, &mut k).unwrap();
        k.log.clear();
        for n in [0, 2] {
            let e = set_vfs_with(&t.root, &net, a(PF), n, false, &mut k).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let m = e.to_string();
            assert!(
                m.ends_with(
                    ": its VF 0000:01:10.2 is bound to vfio-pci (in use by a user-space driver, \
                 which would lose the device); unbind it first (`pmd-setup unbind \
                 0000:01:10.2`) or pass --force"
                ),
                "{m}"
            );
        }
        let m = set_vfs_with(&t.root, &net, a(PF), 2, false, &mut k)
            .unwrap_err()
            .to_string();
        assert!(
            m.starts_with("refusing to change 0000:01:00.0 from 3 to 2 VFs: "),
            "{m}"
        );
        bind_with(
            &t.root,
            &net,
            a("0000:01:10.4"),
            "uio_pci_generic",
            false,
            &mut k,
        )
        .unwrap();
        k.log.clear();
        let m = set_vfs_with(&t.root, &net, a(PF), 0, false, &mut k)
            .unwrap_err()
            .to_string();
        assert!(
            m.contains(
                "its VFs 0000:01:10.2 (vfio-pci), 0000:01:10.4 (uio_pci_generic) are bound to \
                 user-space drivers"
            ) && m.contains("unbind them first (`pmd-setup unbind 0000:01:10.2`, `pmd-setup unbind 0000:01:10.4`)"),
            "{m}"
        );
        assert!(k.log.is_empty(), "nothing may be written: {:?}", k.log);
        assert_eq!(vf_list(&t).len(), 3);

        // Same count: nothing to remove, so no refusal; --force removes them.
        assert!(!set_vfs_with(&t.root, &net, a(PF), 3, false, &mut k)
            .unwrap()
            .changed());
        let out = set_vfs_with(&t.root, &net, a(PF), 0, true, &mut k).unwrap();
        assert_eq!(rel(&t, &k.log), [pair(NUMVFS, "0")]);
        assert_eq!(
            out.forced,
            [
                "VF 0000:01:10.2 was bound to vfio-pci",
                "VF 0000:01:10.4 was bound to uio_pci_generic"
            ]
        );
        assert!(vf_list(&t).is_empty());
    }

    #[test]
    fn a_vf_on_a_kernel_driver_does_not_block_removal() {
        let (t, net) = pf_setup("sriov-kernelvf");
        let mut k = FakeKernel::new(&t.root);
        set_vfs_with(&t.root, &net, a(PF), 1, false, &mut k).unwrap();
        assert_eq!(vf_list(&t)[0].1.as_deref(), Some("igbvf"));
        k.log.clear();
        let out = set_vfs_with(&t.root, &net, a(PF), 0, false, &mut k).unwrap();
        assert!(out.forced.is_empty());
        assert_eq!(rel(&t, &k.log), [pair(NUMVFS, "0")]);
    }

    #[test]
    fn write_errors_name_the_errno_and_the_pf_driver() {
        let (t, net) = pf_setup("sriov-write");
        let mut k = FakeKernel::new(&t.root);
        k.sriov_error = Some(libc::EINVAL);
        let e = set_vfs_with(&t.root, &net, a(PF), 2, false, &mut k).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        let root = t.root.path().display();
        assert_eq!(
            e.to_string(),
            format!(
                "setting 2 VFs on 0000:01:00.0: writing \"2\" to {root}/{NUMVFS}: Invalid argument \
                 (os error 22); the PF's driver must be loaded and support SR-IOV (it is bound \
                 to igb; see dmesg)"
            )
        );
        assert_eq!(rel(&t, &k.log), [pair(NUMVFS, "2")]);
        assert_eq!(numvfs(&t), "0");

        k.sriov_error = Some(libc::ENOMEM);
        let m = set_vfs_with(&t.root, &net, a(PF), 2, false, &mut k)
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("Cannot allocate memory") && m.contains("pci=realloc"),
            "{m}"
        );

        // No PF driver: the kernel answers ENOENT.
        k.sriov_error = None;
        fs::remove_file(t.root.device_dir(a(PF)).join("driver")).unwrap();
        let m = set_vfs_with(&t.root, &net, a(PF), 2, false, &mut k)
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("No such file or directory")
                && m.contains("the PF's driver must be loaded and support SR-IOV (it has no driver; see dmesg)"),
            "{m}"
        );
        assert!(vf_list(&t).is_empty());
    }

    #[test]
    fn a_failure_after_the_zero_write_says_the_vfs_are_gone() {
        let (t, net) = pf_setup("sriov-half");
        let mut k = FakeKernel::new(&t.root);
        set_vfs_with(&t.root, &net, a(PF), 2, false, &mut k).unwrap();
        k.log.clear();
        let e = set_vfs_with(&t.root, &net, a(PF), 4, false, &mut Refusing(&mut k)).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        let m = e.to_string();
        assert!(
            m.starts_with("setting 4 VFs on 0000:01:00.0: writing \"4\""),
            "{m}"
        );
        assert!(
            m.ends_with(" (its 2 VFs were removed on the way: it has none now)"),
            "{m}"
        );
        assert_eq!(rel(&t, &k.log), [pair(NUMVFS, "0")]);
        assert!(vf_list(&t).is_empty());
    }

    /// A PF driver that takes 0 but refuses any other count with EINVAL.
    struct Refusing<'a>(&'a mut FakeKernel);

    impl SysfsWriter for Refusing<'_> {
        fn write(&mut self, path: &std::path::Path, contents: &str) -> std::io::Result<()> {
            if contents != "0" {
                return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
            }
            self.0.write(path, contents)
        }
    }
}
