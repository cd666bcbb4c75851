//! Runs the `pmd-setup` binary (and its old name, `hugepage-setup`) against fake sysfs
//! trees (hidden `--sysfs-root`): nothing here touches the real /sys.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fake root, removed on drop.
struct Tree(PathBuf);

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Fake tree: e1000 NIC 0000:00:03.0 with eth0 up, addressed and routed (active);
/// unbound NIC 0000:00:04.0; drivers e1000 and vfio-pci; three IOMMU groups; no vfio module.
fn tree() -> Tree {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "hps-cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    let pci = dir.join("sys/bus/pci");
    for d in ["e1000", "vfio-pci"] {
        let dd = pci.join("drivers").join(d);
        fs::create_dir_all(&dd).unwrap();
        fs::write(dd.join("bind"), "").unwrap();
        fs::write(dd.join("unbind"), "").unwrap();
    }
    fs::write(pci.join("drivers_probe"), "").unwrap();
    for g in 0..3 {
        fs::create_dir_all(dir.join(format!("sys/kernel/iommu_groups/{g}/devices"))).unwrap();
    }
    fs::create_dir_all(dir.join("sys/class/net")).unwrap();
    let dev = |addr: &str, drv: Option<&str>, group: u32, iface: Option<&str>| {
        let d = pci.join("devices").join(addr);
        fs::create_dir_all(&d).unwrap();
        for (f, v) in [
            ("vendor", "0x8086"),
            ("device", "0x10d3"),
            ("class", "0x020000"),
            ("subsystem_vendor", "0x8086"),
            ("subsystem_device", "0xa01f"),
            ("numa_node", "0"),
            ("driver_override", "(null)"),
        ] {
            fs::write(d.join(f), format!("{v}\n")).unwrap();
        }
        if let Some(drv) = drv {
            symlink(format!("../../../bus/pci/drivers/{drv}"), d.join("driver")).unwrap();
        }
        symlink(
            format!("../../../kernel/iommu_groups/{group}"),
            d.join("iommu_group"),
        )
        .unwrap();
        if let Some(i) = iface {
            fs::create_dir_all(d.join("net").join(i)).unwrap();
            let cn = dir.join("sys/class/net").join(i);
            fs::create_dir_all(&cn).unwrap();
            fs::write(cn.join("flags"), "0x1003\n").unwrap();
        }
    };
    dev("0000:00:03.0", Some("e1000"), 1, Some("eth0"));
    dev("0000:00:04.0", None, 2, None);
    fs::create_dir_all(dir.join("test-net")).unwrap();
    fs::write(dir.join("test-net/eth0"), "up addr route\n").unwrap();
    Tree(dir)
}

fn run_as(bin: &str, t: &Tree, args: &[&str]) -> Output {
    Command::new(bin)
        .arg("--sysfs-root")
        .arg(&t.0)
        .args(args)
        .output()
        .expect("run pmd-setup")
}

fn run(t: &Tree, args: &[&str]) -> Output {
    run_as(env!("CARGO_BIN_EXE_pmd-setup"), t, args)
}

/// The old name: one deprecation line on stderr, then exactly what `pmd-setup` does.
const DEPRECATION: &str = "hugepage-setup: this name is deprecated and will be removed in a later release; use pmd-setup (same commands)\n";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every file's contents and every link's target, for "nothing changed" checks.
fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                out.push((p.clone(), fs::read_link(&p).unwrap().display().to_string()));
            } else if ft.is_dir() {
                out.push((p.clone(), "<dir>".into()));
                stack.push(p);
            } else {
                out.push((p.clone(), fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn driver_of(t: &Tree, addr: &str) -> Option<String> {
    let link = t.0.join("sys/bus/pci/devices").join(addr).join("driver");
    fs::read_link(link)
        .ok()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
}

#[test]
fn status_json_lists_devices_and_kernel_support() {
    let t = tree();
    let out = run(&t, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json = text(&out.stdout);
    assert!(json.contains("\"pools\":[]"), "{json}");
    assert!(
        json.contains(
            "\"pci\":[{\"addr\":\"0000:00:03.0\",\"vendor\":\"8086\",\"device\":\"10d3\""
        ),
        "{json}"
    );
    assert!(
        json.contains("\"driver\":\"e1000\",\"driver_override\":null,\"iommu_group\":1,\"interfaces\":[\"eth0\"],\"active\":[\"eth0\"]"),
        "{json}"
    );
    assert!(json.contains("{\"addr\":\"0000:00:04.0\""), "{json}");
    assert!(
        json.contains("\"kernel\":{\"vfio_loaded\":false,\"vfio_pci_loaded\":true,\"vfio_dev_present\":false,\"noiommu_enabled\":false,\"iommu_groups\":3,"),
        "{json}"
    );
    assert!(json.trim_end().ends_with("}}"), "{json}");

    let out = run(&t, &["status"]);
    assert_eq!(out.status.code(), Some(0));
    let s = text(&out.stdout);
    assert!(s.contains("PCI network devices:"), "{s}");
    assert!(s.contains("0000:00:03.0  8086:10d3  driver e1000"), "{s}");
    assert!(s.contains("*Active*"), "{s}");
    assert!(s.contains("PCI device access:"), "{s}");
}

#[test]
fn bad_inputs_fail_cleanly_and_change_nothing() {
    let t = tree();
    let before = snapshot(&t.0);
    let cases: [(&[&str], &str); 5] = [
        (
            &["bind", "0000:00:03.0", "vfio-pci"],
            "refusing to bind 0000:00:03.0 to vfio-pci: its interface eth0 (up, with addresses and routes) is active",
        ),
        (&["bind", "0000:00:03", "vfio-pci"], "invalid PCI address \"0000:00:03\""),
        (&["bind", "0000:00:1f.7", "vfio-pci"], "no PCI device 0000:00:1f.7"),
        (&["bind", "0000:00:04.0", "nosuch"], "no PCI driver named nosuch"),
        (&["unbind", "0000:00:03.0"], "refusing to unbind 0000:00:03.0 from e1000"),
    ];
    for (args, want) in cases {
        let out = run(&t, args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("pmd-setup: "), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let out = run(&t, &["noiommu", "on"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("`modprobe vfio enable_unsafe_noiommu_mode=1`"));
    assert_eq!(snapshot(&t.0), before, "a failed command changed the tree");

    for args in [
        &["bind"][..],
        &["bind", "0000:00:04.0"],
        &["noiommu", "maybe"],
    ] {
        let out = run(&t, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    assert_eq!(snapshot(&t.0), before);
}

#[test]
fn non_network_device_is_refused_with_exit_code_2_unless_forced() {
    let t = tree();
    let d = t.0.join("sys/bus/pci/devices/0000:00:00.0");
    fs::create_dir_all(&d).unwrap();
    for (f, v) in [
        ("vendor", "0x8086"),
        ("device", "0x1237"),
        ("class", "0x060000"),
        ("driver_override", "(null)"),
    ] {
        fs::write(d.join(f), format!("{v}\n")).unwrap();
    }
    symlink("../../../kernel/iommu_groups/0", d.join("iommu_group")).unwrap();
    let before = snapshot(&t.0);
    let out = run(&t, &["bind", "0000:00:00.0", "vfio-pci"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "pmd-setup: refusing to bind 0000:00:00.0 to vfio-pci: it is not a network device \
         (class 060000) but a host bridge; pass --force to bind it anyway\n"
    );
    assert_eq!(snapshot(&t.0), before, "a refused bind changed the tree");
    let out = run(&t, &["bind", "0000:00:00.0", "vfio-pci", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(driver_of(&t, "0000:00:00.0").as_deref(), Some("vfio-pci"));
}

#[test]
fn bind_then_unbind_restores_the_original_driver() {
    let t = tree();
    let out = run(&t, &["bind", "0000:00:03.0", "vfio-pci", "--force"]);
    let so = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        so.starts_with("0000:00:03.0: bound to vfio-pci (was e1000;"),
        "{so}"
    );
    assert!(so.contains("warning: forced"), "{so}");
    assert_eq!(driver_of(&t, "0000:00:03.0").as_deref(), Some("vfio-pci"));
    let rec = fs::read_to_string(t.0.join("run/pmd-rs/bind/0000:00:03.0")).unwrap();
    assert_eq!(rec, "original=e1000\ntarget=vfio-pci\n");

    let out = run(&t, &["bind", "0000:00:03.0", "vfio-pci"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("already bound to vfio-pci"));

    let out = run(&t, &["unbind", "0000:00:03.0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "0000:00:03.0: given back to e1000 (was bound to vfio-pci)"
    );
    assert_eq!(driver_of(&t, "0000:00:03.0").as_deref(), Some("e1000"));
    assert!(!t.0.join("run/pmd-rs/bind/0000:00:03.0").exists());

    // A device with no driver goes back to none.
    let out = run(&t, &["bind", "00:04.0", "vfio-pci"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("had no driver"));
    let out = run(&t, &["unbind", "0000:00:04.0"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("detached from vfio-pci"));
    assert_eq!(driver_of(&t, "0000:00:04.0"), None);
}

#[test]
fn noiommu_toggles_the_parameter_with_a_warning() {
    let t = tree();
    let p =
        t.0.join("sys/module/vfio/parameters/enable_unsafe_noiommu_mode");
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, "N\n").unwrap();
    let out = run(&t, &["noiommu", "on"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(fs::read_to_string(&p).unwrap(), "Y");
    assert!(text(&out.stderr).contains("no DMA isolation"));
    let out = run(&t, &["noiommu"]);
    assert!(text(&out.stdout).contains("no-IOMMU mode is on"));
    let out = run(&t, &["noiommu", "off"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(fs::read_to_string(&p).unwrap(), "N");
    assert!(text(&out.stderr).is_empty());
}

#[test]
fn old_name_warns_once_then_behaves_the_same() {
    let t = tree();
    let old = env!("CARGO_BIN_EXE_hugepage-setup");
    for args in [
        &["status", "--json"][..],
        &["status"],
        &["noiommu"],
        &["bind", "0000:00:03", "vfio-pci"],
        &["bind", "0000:00:03.0", "vfio-pci"],
    ] {
        let new = run(&t, args);
        let was = run_as(old, &t, args);
        assert_eq!(was.status.code(), new.status.code(), "{args:?}");
        assert_eq!(text(&was.stdout), text(&new.stdout), "{args:?}");
        let err = text(&was.stderr);
        let rest = err
            .strip_prefix(DEPRECATION)
            .unwrap_or_else(|| panic!("{args:?}: no deprecation line first: {err}"));
        assert!(
            !rest.contains("deprecated"),
            "{args:?}: warned twice: {err}"
        );
        // Its own messages carry the name it was called by.
        assert_eq!(
            rest.replace("hugepage-setup: ", "pmd-setup: "),
            text(&new.stderr),
            "{args:?}"
        );
    }
    // A command that changes the tree works the same under the old name.
    let out = run_as(old, &t, &["bind", "0000:00:04.0", "vfio-pci"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(driver_of(&t, "0000:00:04.0").as_deref(), Some("vfio-pci"));
    let out = run_as(old, &t, &["unbind", "0000:00:04.0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(driver_of(&t, "0000:00:04.0"), None);
}

/// Adds an SR-IOV physical function at 0000:01:00.0 (igb, interface eth1, at most 7 VFs, no
/// VFs yet) to `t`.
fn add_pf(t: &Tree) {
    let drv = t.0.join("sys/bus/pci/drivers/igb");
    fs::create_dir_all(&drv).unwrap();
    fs::write(drv.join("bind"), "").unwrap();
    fs::write(drv.join("unbind"), "").unwrap();
    let d = t.0.join("sys/bus/pci/devices/0000:01:00.0");
    fs::create_dir_all(d.join("net/eth1")).unwrap();
    for (f, v) in [
        ("vendor", "0x8086"),
        ("device", "0x10c9"),
        ("class", "0x020000"),
        ("numa_node", "0"),
        ("driver_override", "(null)"),
        ("sriov_totalvfs", "7"),
        ("sriov_numvfs", "0"),
    ] {
        fs::write(d.join(f), format!("{v}\n")).unwrap();
    }
    symlink("../../../bus/pci/drivers/igb", d.join("driver")).unwrap();
    symlink("../../../kernel/iommu_groups/0", d.join("iommu_group")).unwrap();
}

#[test]
fn sriov_is_described_in_the_help() {
    let t = tree();
    let out = run(&t, &["--help"]);
    let help = text(&out.stdout);
    assert!(
        help.contains(
            "  sriov    Set the number of SR-IOV virtual functions of the physical function PF"
        ),
        "{help}"
    );
    let out = run(&t, &["sriov", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(
        help.contains("Usage: pmd-setup sriov [OPTIONS] <PF> <N>"),
        "{help}"
    );
    assert!(
        help.contains("0 removes them; at most the PF's sriov_totalvfs"),
        "{help}"
    );
    assert!(help.contains("--force"), "{help}");
}

#[test]
fn sriov_refusals_exit_2_and_change_nothing() {
    let t = tree();
    add_pf(&t);
    fs::write(t.0.join("test-net/eth1"), "up addr\n").unwrap();
    let before = snapshot(&t.0);
    let cases: [(&[&str], &str); 5] = [
        (&["sriov", "0000:01:00", "2"], "invalid PCI address \"0000:01:00\""),
        (&["sriov", "0000:01:00.1", "2"], "no PCI device 0000:01:00.1"),
        (
            &["sriov", "0000:00:03.0", "2"],
            "0000:00:03.0 has no SR-IOV capability (no sriov_totalvfs)",
        ),
        (
            &["sriov", "0000:01:00.0", "8", "--force"],
            "0000:01:00.0 supports at most 7 VFs (its sriov_totalvfs), not 8",
        ),
        (
            &["sriov", "0000:01:00.0", "2"],
            "refusing to enable 2 VFs on 0000:01:00.0: its interface eth1 (up, with addresses) is active",
        ),
    ];
    for (args, want) in cases {
        let out = run(&t, args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("pmd-setup: "), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(text(&out.stdout).is_empty(), "{args:?}");
    }
    for args in [
        &["sriov", "0000:01:00.0"][..],
        &["sriov", "0000:01:00.0", "-1"],
        &["sriov", "0000:01:00.0", "two"],
        &["sriov", "0000:01:00.0", "65536"],
    ] {
        let out = run(&t, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    assert_eq!(snapshot(&t.0), before, "a refused sriov changed the tree");
}

#[test]
fn sriov_creates_lists_and_removes_vfs() {
    let t = tree();
    add_pf(&t);
    fs::write(t.0.join("test-net/eth1"), "up\n").unwrap();
    let pf = t.0.join("sys/bus/pci/devices/0000:01:00.0");
    let out = run(&t, &["sriov", "0000:01:00.0", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "0000:01:00.0: 2 VFs (at most 7); bind one to a PMD with `pmd-setup bind ADDR vfio-pci`\n\
         \x20 0000:01:10.0  8086:10ca  driver none\n\
         \x20 0000:01:10.2  8086:10ca  driver none\n"
    );
    assert_eq!(fs::read_to_string(pf.join("sriov_numvfs")).unwrap(), "2");
    assert_eq!(
        fs::read_link(pf.join("virtfn1")).unwrap(),
        Path::new("../0000:01:10.2")
    );
    let out = run(&t, &["status"]);
    let s = text(&out.stdout);
    assert!(s.contains("if eth1  sriov 2/7\n"), "{s}");
    assert!(s.contains("  0000:01:10.2  8086:10ca  driver -"), "{s}");
    let out = run(&t, &["status", "--json"]);
    let json = text(&out.stdout);
    assert!(
        json.contains("\"sriov\":{\"num_vfs\":2,\"total_vfs\":7}"),
        "{json}"
    );

    let out = run(&t, &["sriov", "0000:01:00.0", "2"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("0000:01:00.0 already has 2 VFs\n"));

    // A VF on vfio-pci blocks a change until it is unbound.
    let out = run(&t, &["bind", "0000:01:10.0", "vfio-pci"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let before = snapshot(&t.0);
    let out = run(&t, &["sriov", "0000:01:00.0", "3"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "pmd-setup: refusing to change 0000:01:00.0 from 2 to 3 VFs: its VF 0000:01:10.0 is \
         bound to vfio-pci (in use by a user-space driver, which would lose the device); \
         unbind it first (`pmd-setup unbind 0000:01:10.0`) or pass --force\n"
    );
    assert_eq!(snapshot(&t.0), before);
    let out = run(&t, &["unbind", "0000:01:10.0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = run(&t, &["sriov", "0000:01:00.0", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("0000:01:00.0: 3 VFs (at most 7), replacing its 2 VFs\n"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(text(&out.stdout).lines().count(), 4);
    let out = run(&t, &["sriov", "0000:01:00.0", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0000:01:00.0: removed its 3 VFs\n");
    assert!(!pf.join("virtfn0").exists());
    assert!(!t.0.join("sys/bus/pci/devices/0000:01:10.0").exists());
}

#[test]
fn sriov_write_error_names_the_errno_and_exits_1() {
    let t = tree();
    add_pf(&t);
    // No PF driver: the kernel answers ENOENT.
    fs::remove_file(t.0.join("sys/bus/pci/devices/0000:01:00.0/driver")).unwrap();
    let out = run(&t, &["sriov", "0000:01:00.0", "2"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("pmd-setup: setting 2 VFs on 0000:01:00.0: writing \"2\" to "),
        "{err}"
    );
    assert!(
        err.ends_with(
            "sriov_numvfs: No such file or directory (os error 2); the PF's driver must be \
             loaded and support SR-IOV (it has no driver; see dmesg)\n"
        ),
        "{err}"
    );
}
