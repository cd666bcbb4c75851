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
