//! PCI network devices: the `status` section, and the `bind`, `unbind`, `sriov` and
//! `noiommu` commands.
//!
//! Everything takes a [`Host`], which is the live system for `--sysfs-root /` and a fake
//! tree otherwise (test support: interface state then comes from `<root>/test-net/<iface>`
//! files and driver (un)binding is emulated by [`FakeKernel`]).

use crate::bind::{self, FakeKernel, KernelWriter, SysfsWriter};
use crate::discover::{self, KernelSupport, PciDeviceInfo};
use crate::error::Failure;
use crate::hugepages::json_str;
use crate::net::{self, FileNetState, HostNetState, NetState};
use crate::record::BindStore;
use crate::sriov;
use pmd_core::pci::{BackendKind, PciAddr, SysfsRoot};
use std::fmt::Write as _;
use std::path::Path;

/// The machine the commands act on, and how.
pub struct Host {
    /// Where `sys/`, `dev/`, `proc/` and `run/` are.
    pub root: SysfsRoot,
    /// Records of the drivers devices had before `bind`.
    pub store: BindStore,
    /// Interface state, for the "active" check.
    pub net: Box<dyn NetState>,
    /// Where sysfs writes go.
    pub writer: Box<dyn SysfsWriter>,
}

impl Host {
    /// The live system when `dir` is `/`, otherwise a fake tree at `dir`.
    pub fn new(dir: &Path) -> Host {
        let root = SysfsRoot::at(dir);
        let store = BindStore::under(&root);
        if root.is_system() {
            Host {
                net: Box::new(HostNetState::new(&root)),
                writer: Box::new(KernelWriter),
                root,
                store,
            }
        } else {
            Host {
                net: Box::new(FileNetState::under(&root)),
                writer: Box::new(FakeKernel::new(&root)),
                root,
                store,
            }
        }
    }
}

/// One row of the device table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// What sysfs says.
    pub info: PciDeviceInfo,
    /// Its active interfaces (up, with addresses or routes).
    pub active: Vec<String>,
}

/// The PCI part of `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciStatus {
    /// PCI network devices, by address.
    pub devices: Vec<DeviceRow>,
    /// What the kernel offers for device access.
    pub kernel: KernelSupport,
}

/// Reads the network devices and kernel support.
pub fn pci_status(root: &SysfsRoot, net: &dyn NetState) -> Result<PciStatus, String> {
    let devices = discover::scan(root)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(PciDeviceInfo::is_network)
        .map(|info| DeviceRow {
            active: crate::net::active_ifaces(&info, net),
            info,
        })
        .collect();
    Ok(PciStatus {
        devices,
        kernel: discover::kernel_support(root),
    })
}

fn backend_name(k: BackendKind) -> &'static str {
    match k {
        BackendKind::Vfio => "vfio",
        BackendKind::VfioNoIommu => "vfio-noiommu",
        BackendKind::Uio => "uio",
        BackendKind::Model => "model",
    }
}

fn json_opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("null".to_string(), |x| x.to_string())
}

fn json_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| json_str(s)).collect();
    format!("[{}]", items.join(","))
}

impl PciStatus {
    /// Human-readable report.
    pub fn to_text(&self) -> String {
        let mut s = String::from("PCI network devices:\n");
        if self.devices.is_empty() {
            s.push_str("  none found\n");
        }
        for d in &self.devices {
            let i = &d.info;
            let ifaces = if i.net_ifaces.is_empty() {
                "-".to_string()
            } else {
                i.net_ifaces.join(",")
            };
            let mut line = format!(
                "  {}  {:04x}:{:04x}  driver {:<16} iommu group {:<4} if {ifaces}",
                i.addr,
                i.vendor,
                i.device,
                i.driver.as_deref().unwrap_or("-"),
                i.iommu_group.map_or("-".to_string(), |g| g.to_string()),
            );
            if let Some(o) = &i.driver_override {
                let _ = write!(line, "  override={o}");
            }
            if let Some(v) = i.sriov.filter(|v| v.num_vfs > 0) {
                let _ = write!(line, "  sriov {}/{}", v.num_vfs, v.total_vfs);
            }
            if !d.active.is_empty() {
                line.push_str("  *Active*");
            }
            s.push_str(line.trim_end());
            s.push('\n');
        }
        s.push_str("PCI device access:\n");
        for l in self.kernel.summary().lines() {
            let _ = writeln!(s, "  {l}");
        }
        s
    }

    /// `"pci":[...],"kernel":{...}`, for the top-level status object.
    pub fn json_fields(&self) -> String {
        let devices: Vec<String> = self
            .devices
            .iter()
            .map(|d| {
                let i = &d.info;
                format!(
                    "{{\"addr\":\"{}\",\"vendor\":\"{:04x}\",\"device\":\"{:04x}\",\"class\":\"{:06x}\",\
                     \"subsystem_vendor\":\"{:04x}\",\"subsystem_device\":\"{:04x}\",\"numa_node\":{},\
                     \"driver\":{},\"driver_override\":{},\"iommu_group\":{},\"interfaces\":{},\"active\":{},\
                     \"sriov\":{}}}",
                    i.addr,
                    i.vendor,
                    i.device,
                    i.class,
                    i.subsystem_vendor,
                    i.subsystem_device,
                    json_opt(i.numa_node),
                    json_opt(i.driver.as_deref().map(json_str)),
                    json_opt(i.driver_override.as_deref().map(json_str)),
                    json_opt(i.iommu_group),
                    json_list(&i.net_ifaces),
                    json_list(&d.active),
                    json_opt(i.sriov.map(|v| format!(
                        "{{\"num_vfs\":{},\"total_vfs\":{}}}",
                        v.num_vfs, v.total_vfs
                    ))),
                )
            })
            .collect();
        let k = &self.kernel;
        let usable: Vec<String> = k
            .usable()
            .into_iter()
            .map(|b| backend_name(b).to_string())
            .collect();
        format!(
            "\"pci\":[{}],\"kernel\":{{\"vfio_loaded\":{},\"vfio_pci_loaded\":{},\"vfio_dev_present\":{},\
             \"noiommu_enabled\":{},\"iommu_groups\":{},\"uio_pci_generic_loaded\":{},\"usable\":{}}}",
            devices.join(","),
            k.vfio_loaded,
            k.vfio_pci_loaded,
            k.vfio_dev_present,
            k.noiommu_enabled,
            k.iommu_groups,
            k.uio_pci_generic_loaded,
            json_list(&usable),
        )
    }
}

fn parse_addr(s: &str) -> Result<PciAddr, Failure> {
    s.parse::<PciAddr>()
        .map_err(|e| Failure::refused(e.to_string()))
}

/// `bind ADDR DRIVER [--force]`: binds, records the previous driver, and says what happened.
pub fn bind_cmd(host: &mut Host, addr: &str, driver: &str, force: bool) -> Result<String, Failure> {
    let addr = parse_addr(addr)?;
    let forced = if force {
        discover::device(&host.root, addr)
            .ok()
            .and_then(|info| net::in_use_reason(&info, host.net.as_ref()))
    } else {
        None
    };
    let out = bind::bind_with(
        &host.root,
        host.net.as_ref(),
        addr,
        driver,
        force,
        host.writer.as_mut(),
    )?;
    if !out.changed {
        return Ok(format!("{addr} is already bound to {driver}"));
    }
    let was = match &out.previous {
        Some(p) => format!("was {p}"),
        None => "had no driver".to_string(),
    };
    let mut msg =
        format!("{addr}: bound to {driver} ({was}; `pmd-setup unbind {addr}` puts it back)");
    if let Some(why) = forced {
        let why = why
            .split(". Bring")
            .next()
            .and_then(|w| w.split("; pass --force").next())
            .unwrap_or(&why);
        let _ = write!(msg, "\nwarning: forced although {why}");
    }
    match host.store.note_bind(addr, &out, driver) {
        Ok(rec) if rec.original != out.previous => {
            let _ = write!(
                msg,
                "\n(its original driver, before earlier binds, was {})",
                rec.original.as_deref().unwrap_or("none")
            );
        }
        Ok(_) => {}
        Err(e) => {
            let _ = write!(
                msg,
                "\nwarning: could not record the previous driver ({e}); it was {}",
                out.previous.as_deref().unwrap_or("none")
            );
        }
    }
    Ok(msg)
}

/// `unbind ADDR [--force]`: gives the device back to the driver recorded by `bind`, or, with
/// no record, detaches it from its current driver (refused for an in-use device unless
/// `force`).
pub fn unbind_cmd(host: &mut Host, addr: &str, force: bool) -> Result<String, Failure> {
    let addr = parse_addr(addr)?;
    let info = discover::device(&host.root, addr)?;
    let current = info.driver.clone();
    let now = current.as_deref().unwrap_or("no driver");
    match host.store.load(addr).map_err(|e| e.to_string())? {
        Some(rec) => {
            bind::restore_with(
                &host.root,
                addr,
                rec.original.as_deref(),
                host.writer.as_mut(),
            )
            .map_err(|e| e.to_string())?;
            host.store.remove(addr).map_err(|e| e.to_string())?;
            Ok(match (&rec.original, &current) {
                (Some(o), Some(c)) if o == c => format!("{addr} is already bound to {o}"),
                (Some(o), _) => format!("{addr}: given back to {o} (was bound to {now})"),
                (None, _) => format!("{addr}: detached from {now} (it had no driver before)"),
            })
        }
        None => {
            let Some(cur) = current else {
                return Ok(format!("{addr} is not bound to any driver"));
            };
            if !force {
                if let Some(why) = net::in_use_reason(&info, host.net.as_ref()) {
                    return Err(Failure::refused(format!(
                        "refusing to unbind {addr} from {cur}: {why}"
                    )));
                }
            }
            bind::unbind_with(&host.root, addr, host.writer.as_mut()).map_err(|e| e.to_string())?;
            Ok(format!(
                "{addr}: unbound from {cur} (no earlier driver was recorded, so it now has none)"
            ))
        }
    }
}

/// `1 VF`, `2 VFs`.
fn vf_count(n: u32) -> String {
    format!("{n} VF{}", if n == 1 { "" } else { "s" })
}

/// `sriov PF N [--force]`: gives the physical function PF N SR-IOV virtual functions (0
/// removes them), then lists them, one line each: address, vendor:device and driver.
/// Bind records of removed VFs are dropped (the VFs that may come back at the same
/// addresses are new devices, on their default driver).
pub fn sriov_cmd(host: &mut Host, pf: &str, n: u32, force: bool) -> Result<String, Failure> {
    let pf = parse_addr(pf)?;
    let out = sriov::set_vfs_with(
        &host.root,
        host.net.as_ref(),
        pf,
        n,
        force,
        host.writer.as_mut(),
    )?;
    let mut msg = if !out.changed() {
        format!("{pf} already has {}", vf_count(n))
    } else if n == 0 {
        format!("{pf}: removed its {}", vf_count(out.previous))
    } else if out.previous == 0 {
        format!(
            "{pf}: {} (at most {}); bind one to a PMD with `pmd-setup bind ADDR vfio-pci`",
            vf_count(n),
            out.total
        )
    } else {
        format!(
            "{pf}: {} (at most {}), replacing its {}",
            vf_count(n),
            out.total,
            vf_count(out.previous)
        )
    };
    for v in sriov::vfs(&host.root, pf) {
        let _ = write!(
            msg,
            "\n  {}  {:04x}:{:04x}  driver {}",
            v.addr,
            v.vendor,
            v.device,
            v.driver.as_deref().unwrap_or("none")
        );
    }
    for why in &out.forced {
        let _ = write!(msg, "\nwarning: forced although {why}");
    }
    for vf in &out.removed {
        if let Err(e) = host.store.remove(*vf) {
            let _ = write!(msg, "\nwarning: {e}");
        }
    }
    Ok(msg)
}

/// The warning shown whenever no-IOMMU mode is on.
pub const NOIOMMU_WARNING: &str = "\
WARNING: vfio no-IOMMU mode is ON. Devices bound to vfio-pci can now DMA to ANY memory of
WARNING: this machine: there is no DMA isolation, a buggy PMD or device can corrupt the
WARNING: kernel and other processes, and the kernel is tainted. Use it only in VMs without a
WARNING: vIOMMU or on test machines; turn it off with `pmd-setup noiommu off`.";

/// `noiommu [on|off]`: shows or sets vfio's `enable_unsafe_noiommu_mode`. Returns the
/// message and whether the no-IOMMU warning applies.
pub fn noiommu_cmd(host: &mut Host, on: Option<bool>) -> Result<(String, bool), String> {
    let root = &host.root;
    let param = root.noiommu_param();
    let loaded = root.module_dir("vfio").is_dir();
    let current = discover::kernel_support(root).noiommu_enabled;
    match on {
        None if !loaded => Ok((
            "vfio is not loaded: no-IOMMU mode is off".to_string(),
            false,
        )),
        None => Ok((
            format!("no-IOMMU mode is {}", if current { "on" } else { "off" }),
            current,
        )),
        Some(false) if !loaded => Ok((
            "vfio is not loaded, so no-IOMMU mode is off already".to_string(),
            false,
        )),
        Some(true) if !loaded => Err(
            "vfio is not loaded: load vfio with `modprobe vfio enable_unsafe_noiommu_mode=1` \
             (then `modprobe vfio-pci`)"
                .to_string(),
        ),
        Some(want) => {
            if !param.exists() {
                return Err(format!(
                    "{} is missing: this kernel's vfio has no no-IOMMU support \
                     (CONFIG_VFIO_NOIOMMU)",
                    param.display()
                ));
            }
            // Plain file write for both the live system and fake trees.
            KernelWriter
                .write(&param, if want { "Y" } else { "N" })
                .map_err(|e| {
                    let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                        " (run as root)"
                    } else {
                        ""
                    };
                    format!("writing {}: {e}{hint}", param.display())
                })?;
            let msg = if want {
                "no-IOMMU mode is on: bind devices to vfio-pci now (devices bound before \
                 have no IOMMU group; rebind them)"
            } else {
                "no-IOMMU mode is off (devices already opened in no-IOMMU mode stay so \
                 until they are rebound)"
            };
            Ok((msg.to_string(), want))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    struct Tree(PathBuf);

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// e1000 NIC 00:03.0 with active eth0, unbound NIC 00:04.0, a SATA controller, vfio-pci.
    fn tree(tag: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!("hps-pci-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let sys = dir.join("sys/bus/pci");
        for d in ["e1000", "vfio-pci", "ahci"] {
            fs::create_dir_all(sys.join("drivers").join(d)).unwrap();
            fs::write(sys.join("drivers").join(d).join("bind"), "").unwrap();
            fs::write(sys.join("drivers").join(d).join("unbind"), "").unwrap();
        }
        fs::write(sys.join("drivers_probe"), "").unwrap();
        let dev = |addr: &str, class: &str, drv: Option<&str>, ifs: &[&str]| {
            let d = sys.join("devices").join(addr);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("vendor"), "0x8086").unwrap();
            fs::write(d.join("device"), "0x100e").unwrap();
            fs::write(d.join("class"), class).unwrap();
            fs::write(d.join("numa_node"), "-1").unwrap();
            fs::write(d.join("driver_override"), "(null)").unwrap();
            if let Some(drv) = drv {
                symlink(format!("../../drivers/{drv}"), d.join("driver")).unwrap();
            }
            let g = dir.join("sys/kernel/iommu_groups/5");
            fs::create_dir_all(&g).unwrap();
            symlink(&g, d.join("iommu_group")).unwrap();
            for i in ifs {
                fs::create_dir_all(d.join("net").join(i)).unwrap();
            }
        };
        dev("0000:00:03.0", "0x020000", Some("e1000"), &["eth0"]);
        dev("0000:00:04.0", "0x020000", None, &[]);
        dev("0000:00:1f.2", "0x010601", Some("ahci"), &[]);
        fs::create_dir_all(dir.join("test-net")).unwrap();
        fs::write(dir.join("test-net/eth0"), "up addr route").unwrap();
        Tree(dir)
    }

    #[test]
    fn status_text_and_json() {
        let t = tree("status");
        let host = Host::new(&t.0);
        let st = pci_status(&host.root, host.net.as_ref()).unwrap();
        assert_eq!(st.devices.len(), 2, "only network devices");
        let text = st.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "PCI network devices:");
        assert!(
            lines[1].starts_with("  0000:00:03.0  8086:100e  driver e1000"),
            "{text}"
        );
        assert!(
            lines[1].contains("iommu group 5") && lines[1].contains("if eth0"),
            "{text}"
        );
        assert!(lines[1].ends_with("*Active*"), "{text}");
        assert!(
            lines[2].contains("driver -") && lines[2].ends_with("if -"),
            "{text}"
        );
        assert!(text.contains("PCI device access:\n  "), "{text}");
        assert!(
            text.contains("modprobe vfio-pci") || text.contains("usable"),
            "{text}"
        );

        let json = st.json_fields();
        assert!(json.starts_with("\"pci\":[{\"addr\":\"0000:00:03.0\",\"vendor\":\"8086\",\"device\":\"100e\",\"class\":\"020000\""), "{json}");
        assert!(json.contains("\"numa_node\":null,\"driver\":\"e1000\",\"driver_override\":null,\"iommu_group\":5,\"interfaces\":[\"eth0\"],\"active\":[\"eth0\"]"), "{json}");
        assert!(json.contains("\"driver\":null"), "{json}");
        assert!(
            json.contains("\"kernel\":{\"vfio_loaded\":false,\"vfio_pci_loaded\":true"),
            "{json}"
        );
        assert!(
            json.contains("\"iommu_groups\":1,") && json.ends_with("\"usable\":[]}"),
            "{json}"
        );
    }

    #[test]
    fn empty_status() {
        let st = PciStatus {
            devices: Vec::new(),
            kernel: KernelSupport::default(),
        };
        assert!(st.to_text().contains("none found"));
        assert!(st.json_fields().starts_with("\"pci\":[],\"kernel\":{"));
    }

    #[test]
    fn bind_and_unbind_commands() {
        let t = tree("cmds");
        let mut host = Host::new(&t.0);
        let mut err = |addr: &str| bind_cmd(&mut host, addr, "vfio-pci", false).unwrap_err();
        let e = err("0000:00:03.0").message;
        assert!(e.contains("refusing") && e.contains("eth0"), "{e}");
        let e = err("0000:00:03").message;
        assert!(e.starts_with("invalid PCI address"), "{e}");
        let e = err("0000:00:09.0").message;
        assert!(e.starts_with("no PCI device 0000:00:09.0"), "{e}");

        let m = bind_cmd(&mut host, "0000:00:03.0", "vfio-pci", true).unwrap();
        assert!(
            m.starts_with("0000:00:03.0: bound to vfio-pci (was e1000;"),
            "{m}"
        );
        assert!(
            m.contains("warning: forced although its interface eth0"),
            "{m}"
        );
        let m = bind_cmd(&mut host, "0000:00:03.0", "vfio-pci", false).unwrap();
        assert_eq!(m, "0000:00:03.0 is already bound to vfio-pci");
        let m = unbind_cmd(&mut host, "0000:00:03.0", false).unwrap();
        assert_eq!(
            m,
            "0000:00:03.0: given back to e1000 (was bound to vfio-pci)"
        );
        assert_eq!(
            host.store.load("0000:00:03.0".parse().unwrap()).unwrap(),
            None
        );

        // No record: an in-use device is refused, an idle one is detached.
        let e = unbind_cmd(&mut host, "0000:00:03.0", false).unwrap_err();
        assert!(
            e.message
                .starts_with("refusing to unbind 0000:00:03.0 from e1000"),
            "{e:?}"
        );
        assert_eq!(e.code, 2);
        let e = unbind_cmd(&mut host, "0000:00:1f.2", false).unwrap_err();
        assert!(e.message.contains("not a network device"), "{e:?}");
        let m = unbind_cmd(&mut host, "0000:00:04.0", false).unwrap();
        assert_eq!(m, "0000:00:04.0 is not bound to any driver");
        let m = bind_cmd(&mut host, "0000:00:04.0", "vfio-pci", false).unwrap();
        assert!(m.contains("had no driver"), "{m}");
        let m = unbind_cmd(&mut host, "0000:00:04.0", false).unwrap();
        assert_eq!(
            m,
            "0000:00:04.0: detached from vfio-pci (it had no driver before)"
        );
    }

    #[test]
    fn sriov_command_lists_the_vfs_and_status_counts_them() {
        use crate::testtree;
        let (t, _) = testtree::setup("sriov-cmd");
        t.driver("igbvf");
        t.pf("0000:01:00.0", Some("igb"), &["eth1"], 7);
        testtree::set_net(&t, "eth1", "up");
        let mut host = Host::new(t.root.path());
        let m = sriov_cmd(&mut host, "0000:01:00.0", 2, false).unwrap();
        assert_eq!(
            m,
            "0000:01:00.0: 2 VFs (at most 7); bind one to a PMD with `pmd-setup bind ADDR vfio-pci`\n\
             \x20 0000:01:10.0  8086:10ca  driver igbvf\n\
             \x20 0000:01:10.2  8086:10ca  driver igbvf"
        );
        let st = pci_status(&host.root, host.net.as_ref()).unwrap();
        let text = st.to_text();
        let pf_line = text.lines().find(|l| l.contains("0000:01:00.0")).unwrap();
        assert!(pf_line.ends_with("if eth1  sriov 2/7"), "{text}");
        let nic_line = text.lines().find(|l| l.contains("0000:00:03.0")).unwrap();
        assert!(!nic_line.contains("sriov"), "{text}");
        let json = st.json_fields();
        assert!(
            json.contains("\"interfaces\":[\"eth1\"],\"active\":[],\"sriov\":{\"num_vfs\":2,\"total_vfs\":7}}"),
            "{json}"
        );
        assert!(json.contains("\"active\":[],\"sriov\":null}"), "{json}");

        // A VF bound with `bind` keeps a record; it goes when the VFs are removed.
        let m = bind_cmd(&mut host, "0000:01:10.2", "vfio-pci", false).unwrap();
        assert!(m.contains("was igbvf"), "{m}");
        let e = sriov_cmd(&mut host, "0000:01:00.0", 0, false).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(
            e.message.contains("`pmd-setup unbind 0000:01:10.2`"),
            "{e:?}"
        );
        let m = sriov_cmd(&mut host, "0000:01:00.0", 2, false).unwrap();
        assert!(m.starts_with("0000:01:00.0 already has 2 VFs\n"), "{m}");
        assert!(
            m.ends_with("0000:01:10.2  8086:10ca  driver vfio-pci"),
            "{m}"
        );
        let m = sriov_cmd(&mut host, "0000:01:00.0", 3, true).unwrap();
        assert_eq!(
            m,
            "0000:01:00.0: 3 VFs (at most 7), replacing its 2 VFs\n\
             \x20 0000:01:10.0  8086:10ca  driver igbvf\n\
             \x20 0000:01:10.2  8086:10ca  driver igbvf\n\
             \x20 0000:01:10.4  8086:10ca  driver igbvf\n\
             warning: forced although VF 0000:01:10.2 was bound to vfio-pci"
        );
        assert_eq!(host.store.load(testtree::a("0000:01:10.2")).unwrap(), None);
        assert_eq!(
            sriov_cmd(&mut host, "0000:01:00.0", 0, false).unwrap(),
            "0000:01:00.0: removed its 3 VFs"
        );
        let e = sriov_cmd(&mut host, "0000:01:00", 1, false).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(e.message.starts_with("invalid PCI address"), "{e:?}");
    }

    #[test]
    fn noiommu_command() {
        let t = tree("noiommu");
        let mut host = Host::new(&t.0);
        let e = noiommu_cmd(&mut host, Some(true)).unwrap_err();
        assert!(
            e.contains("modprobe vfio enable_unsafe_noiommu_mode=1"),
            "{e}"
        );
        assert!(!noiommu_cmd(&mut host, Some(false)).unwrap().1);
        fs::create_dir_all(t.0.join("sys/module/vfio")).unwrap();
        let e = noiommu_cmd(&mut host, Some(true)).unwrap_err();
        assert!(e.contains("CONFIG_VFIO_NOIOMMU"), "{e}");
        let p =
            t.0.join("sys/module/vfio/parameters/enable_unsafe_noiommu_mode");
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "N\n").unwrap();
        assert_eq!(
            noiommu_cmd(&mut host, None).unwrap(),
            ("no-IOMMU mode is off".to_string(), false)
        );
        let (m, warn) = noiommu_cmd(&mut host, Some(true)).unwrap();
        assert!(warn && m.starts_with("no-IOMMU mode is on"), "{m}");
        assert_eq!(fs::read_to_string(&p).unwrap(), "Y");
        assert!(noiommu_cmd(&mut host, None).unwrap().1);
        let (_, warn) = noiommu_cmd(&mut host, Some(false)).unwrap();
        assert!(!warn);
        assert_eq!(fs::read_to_string(&p).unwrap(), "N");
    }
}
