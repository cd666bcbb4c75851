//! Moving a PCI device between kernel drivers: to vfio-pci / uio_pci_generic for a PMD, and
//! back to its original driver afterwards.
//!
//! Binding uses the kernel's `driver_override` mechanism: write the target driver's name to
//! `<dev>/driver_override`, detach the device from its current driver (`<drv>/unbind`),
//! then ask the bus to probe it again (`sys/bus/pci/drivers_probe`). Only the named driver
//! may then claim it. The result is verified by re-reading the `driver` link.
//!
//! Safety: a device whose network interface is *active* (up and with addresses or routes)
//! is refused unless forced, so the link that carries a host's own traffic is not pulled
//! away by mistake. All writes go through a [`SysfsWriter`], so the whole sequence is tested
//! against a fake tree with [`FakeKernel`] standing in for the kernel.

use super::sysfs::{self, link_name, PciDeviceInfo, SysfsRoot};
use crate::error::{Error, Result};
use crate::pci_addr::PciAddr;
use std::collections::HashSet;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// The view of network interfaces used to decide whether a device carries a live link.
pub trait NetState {
    /// The interface is administratively up (IFF_UP).
    fn is_up(&self, iface: &str) -> bool;
    /// The interface has an IPv4 address or a non-link-local IPv6 address.
    fn has_addresses(&self, iface: &str) -> bool;
    /// Some route goes through the interface.
    fn has_routes(&self, iface: &str) -> bool;
}

/// `IFF_UP` in `sys/class/net/<if>/flags`.
const IFF_UP: u32 = 0x1;
/// `RTF_UP` in the flags column of `/proc/net/route` and `/proc/net/ipv6_route`.
const RTF_UP: u32 = 0x1;

/// The host's real network state: flags from `<root>/sys/class/net/<if>/flags`, routes from
/// `<root>/proc/net/route` and `<root>/proc/net/ipv6_route`, addresses from `getifaddrs(3)`
/// (always the running host's). Addresses and routes are a snapshot taken by [`HostNetState::new`].
#[derive(Debug, Clone)]
pub struct HostNetState {
    class_net: PathBuf,
    addrs: HashSet<String>,
    routes: HashSet<String>,
}

impl HostNetState {
    /// Snapshots addresses and routes; flags are read on each [`NetState::is_up`] call.
    pub fn new(root: &SysfsRoot) -> HostNetState {
        let v4 = fs::read_to_string(root.join("proc/net/route")).unwrap_or_default();
        let v6 = fs::read_to_string(root.join("proc/net/ipv6_route")).unwrap_or_default();
        let mut routes = ipv4_route_ifaces(&v4);
        routes.extend(ipv6_route_ifaces(&v6));
        HostNetState {
            class_net: root.class_net(),
            addrs: ifaces_with_addresses(),
            routes,
        }
    }
}

impl NetState for HostNetState {
    fn is_up(&self, iface: &str) -> bool {
        fs::read_to_string(self.class_net.join(iface).join("flags"))
            .ok()
            .and_then(|s| {
                let s = s.trim();
                u32::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
            })
            .is_some_and(|f| f & IFF_UP != 0)
    }

    fn has_addresses(&self, iface: &str) -> bool {
        self.addrs.contains(iface)
    }

    fn has_routes(&self, iface: &str) -> bool {
        self.routes.contains(iface)
    }
}

/// Interfaces with an IPv4 address or an IPv6 address outside fe80::/10.
fn ifaces_with_addresses() -> HashSet<String> {
    let mut out = HashSet::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list returned by getifaddrs, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr at least as large as its family requires.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let counts = match family {
            libc::AF_INET => true,
            libc::AF_INET6 => {
                // SAFETY: AF_INET6 addresses are sockaddr_in6.
                let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                let b = a.sin6_addr.s6_addr;
                !(b[0] == 0xfe && b[1] & 0xc0 == 0x80)
            }
            _ => false,
        };
        if counts {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
            out.insert(name.to_string_lossy().into_owned());
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// Interfaces named by usable routes in `/proc/net/route` (header line, then
/// `Iface Destination Gateway Flags ...`).
fn ipv4_route_ifaces(text: &str) -> HashSet<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            (flags & RTF_UP != 0).then(|| f[0].to_string())
        })
        .collect()
}

/// Interfaces named by usable routes in `/proc/net/ipv6_route` (no header; columns
/// `dest plen src plen nexthop metric refcnt use flags iface`). Link-local (fe80::/10) and
/// multicast (ff00::/8) destinations are ignored: the kernel adds them to every IPv6-enabled
/// interface that is up, so they say nothing about the interface being in use.
fn ipv6_route_ifaces(text: &str) -> HashSet<String> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            let dest = f[0];
            if dest.starts_with("ff") || dest.starts_with("fe8") || dest.starts_with("fe9") {
                return None;
            }
            if dest.starts_with("fea") || dest.starts_with("feb") || f[9] == "lo" {
                return None;
            }
            let flags = u32::from_str_radix(f[8], 16).ok()?;
            (flags & RTF_UP != 0).then(|| f[9].to_string())
        })
        .collect()
}

/// Test support: network state read from files, one per interface, in a directory
/// (by convention `<fake root>/test-net/<iface>`). A file holds any of the words `up`,
/// `addr` and `route`; a missing file means down, no addresses, no routes.
#[derive(Debug, Clone)]
pub struct FileNetState {
    dir: PathBuf,
}

impl FileNetState {
    /// Reads interface files from `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> FileNetState {
        FileNetState { dir: dir.into() }
    }

    /// Reads interface files from `<root>/test-net`.
    pub fn under(root: &SysfsRoot) -> FileNetState {
        FileNetState::new(root.join("test-net"))
    }

    fn has_word(&self, iface: &str, word: &str) -> bool {
        fs::read_to_string(self.dir.join(iface))
            .map(|s| s.split_whitespace().any(|w| w == word))
            .unwrap_or(false)
    }
}

impl NetState for FileNetState {
    fn is_up(&self, iface: &str) -> bool {
        self.has_word(iface, "up")
    }

    fn has_addresses(&self, iface: &str) -> bool {
        self.has_word(iface, "addr")
    }

    fn has_routes(&self, iface: &str) -> bool {
        self.has_word(iface, "route")
    }
}

/// The device's interfaces that are up and have addresses or routes.
pub fn active_ifaces(info: &PciDeviceInfo, net: &dyn NetState) -> Vec<String> {
    info.net_ifaces
        .iter()
        .filter(|i| net.is_up(i) && (net.has_addresses(i) || net.has_routes(i)))
        .cloned()
        .collect()
}

/// Drivers that exist to hand devices to user space (or park them): detaching a device from
/// them never cuts a host service off.
const PASSTHROUGH_DRIVERS: [&str; 3] = ["vfio-pci", "uio_pci_generic", "pci-stub"];

/// Why taking `info` away from its current driver could break the host, if it could:
/// an active network interface, or a non-network device held by a kernel driver (whose
/// use cannot be judged from here, e.g. a disk controller). None when it looks safe.
pub fn in_use_reason(info: &PciDeviceInfo, net: &dyn NetState) -> Option<String> {
    let active = active_ifaces(info, net);
    if !active.is_empty() {
        let what: Vec<String> = active
            .iter()
            .map(|i| {
                let mut has = Vec::new();
                if net.has_addresses(i) {
                    has.push("addresses");
                }
                if net.has_routes(i) {
                    has.push("routes");
                }
                format!("{i} (up, with {})", has.join(" and "))
            })
            .collect();
        return Some(format!(
            "its interface{} {} {} active: the device carries a live link. \
             Bring {} down first (`ip link set {} down`) or pass --force",
            if active.len() > 1 { "s" } else { "" },
            what.join(", "),
            if active.len() > 1 { "are" } else { "is" },
            if active.len() > 1 { "them" } else { "it" },
            active[0],
        ));
    }
    match &info.driver {
        Some(d) if !info.is_network() && !PASSTHROUGH_DRIVERS.contains(&d.as_str()) => {
            Some(format!(
                "it is not a network device (class {:06x}) and is held by the kernel driver {d}, \
                 which may be in use (a disk or display controller?); pass --force if you are sure",
                info.class
            ))
        }
        _ => None,
    }
}

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

/// Test support: emulates the kernel's PCI bind/unbind behaviour on a fake tree.
///
/// Every write is logged and stored in the (pre-existing) file like [`KernelWriter`]; then
/// writing an address to `drivers/<d>/unbind` removes the device's `driver` link, to
/// `drivers/<d>/bind` or `drivers_probe` (with an override set) creates it, unless the driver
/// is in [`FakeKernel::refuse`] (a probe failure, like vfio-pci on a non-viable group).
#[derive(Debug)]
pub struct FakeKernel {
    root: SysfsRoot,
    /// Every write, in order: (path, contents).
    pub log: Vec<(PathBuf, String)>,
    /// Drivers whose probe fails.
    pub refuse: Vec<String>,
}

impl FakeKernel {
    /// A fake kernel acting on the tree at `root`.
    pub fn new(root: &SysfsRoot) -> FakeKernel {
        FakeKernel {
            root: root.clone(),
            log: Vec::new(),
            refuse: Vec::new(),
        }
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
        KernelWriter.write(path, contents)?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let parent = path.parent().unwrap_or(Path::new(""));
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
                let dev = sysfs::device(&self.root, addr).map_err(io::Error::other)?;
                match dev.driver_override {
                    Some(o) if o != driver => Err(io::Error::from_raw_os_error(libc::ENODEV)),
                    _ => self.attach(addr, driver),
                }
            }
            ("drivers_probe", Ok(addr)) if path == self.root.drivers_probe() => {
                let dev = sysfs::device(&self.root, addr).map_err(io::Error::other)?;
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

/// What [`bind`] did.
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
        return Err(Error::Pci(format!("no PCI driver named {driver:?}")));
    }
    Ok(())
}

/// The error for a driver that is not registered with the PCI bus.
fn missing_driver(driver: &str) -> Error {
    Error::Pci(match driver {
        "vfio-pci" => "driver vfio-pci is not loaded: run `modprobe vfio-pci`".to_string(),
        "uio_pci_generic" => {
            "driver uio_pci_generic is not loaded: run `modprobe uio_pci_generic`".to_string()
        }
        _ => format!("no PCI driver named {driver} (is its module loaded?)"),
    })
}

/// Writes through `w`, turning failures into an error naming the file.
fn write_sys(w: &mut dyn SysfsWriter, path: &Path, contents: &str) -> Result<()> {
    w.write(path, contents).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::PermissionDenied {
            " (run as root)"
        } else {
            ""
        };
        Error::Pci(format!(
            "writing {:?} to {}: {e}{hint}",
            contents.trim(),
            path.display()
        ))
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

/// Binds the device at `addr` to `driver` (see the module docs), refusing a device whose
/// network interface is active unless `force`.
pub fn bind(
    root: &SysfsRoot,
    net: &dyn NetState,
    addr: PciAddr,
    driver: &str,
    force: bool,
) -> Result<BindOutcome> {
    bind_with(root, net, addr, driver, force, &mut KernelWriter)
}

/// [`bind`] with every sysfs write going through `w`.
pub fn bind_with(
    root: &SysfsRoot,
    net: &dyn NetState,
    addr: PciAddr,
    driver: &str,
    force: bool,
    w: &mut dyn SysfsWriter,
) -> Result<BindOutcome> {
    check_driver_name(driver)?;
    let info = sysfs::device(root, addr)?;
    if !root.driver_dir(driver).is_dir() {
        return Err(missing_driver(driver));
    }
    let previous = info.driver.clone();
    if previous.as_deref() == Some(driver) {
        return Ok(BindOutcome {
            previous,
            changed: false,
        });
    }
    if !force {
        if let Some(why) = in_use_reason(&info, net) {
            return Err(Error::Pci(format!(
                "refusing to bind {addr} to {driver}: {why}"
            )));
        }
    }
    if driver == "vfio-pci"
        && info.iommu_group.is_none()
        && !sysfs::kernel_support(root).noiommu_enabled
    {
        return Err(Error::Pci(format!(
            "{addr} is in no IOMMU group, so vfio-pci cannot take it: enable the IOMMU \
             (boot with intel_iommu=on or amd_iommu=on), or, in a VM without a vIOMMU, \
             enable no-IOMMU mode first (`hugepage-setup noiommu on`)"
        )));
    }

    let dev = root.device_dir(addr);
    let addr_s = addr.to_string();
    write_sys(w, &dev.join("driver_override"), driver)?;
    if let Some(p) = &previous {
        if let Err(e) = write_sys(w, &root.driver_dir(p).join("unbind"), &addr_s) {
            let how = rollback(root, addr, previous.as_deref(), w);
            return Err(Error::Pci(format!("unbinding {addr} from {p}: {e}; {how}")));
        }
    }
    if let Err(e) = write_sys(w, &root.drivers_probe(), &addr_s) {
        let how = rollback(root, addr, previous.as_deref(), w);
        return Err(Error::Pci(format!("probing {addr}: {e}; {how}")));
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
        return Err(Error::Pci(format!(
            "{driver} did not take {addr}: {why}; {how}"
        )));
    }
    Ok(BindOutcome {
        previous,
        changed: true,
    })
}

/// Detaches the device from its driver and clears its driver override; returns the driver
/// it was bound to. Performs no in-use check: see [`in_use_reason`].
pub fn unbind(root: &SysfsRoot, addr: PciAddr) -> Result<Option<String>> {
    unbind_with(root, addr, &mut KernelWriter)
}

/// [`unbind`] with every sysfs write going through `w`.
pub fn unbind_with(
    root: &SysfsRoot,
    addr: PciAddr,
    w: &mut dyn SysfsWriter,
) -> Result<Option<String>> {
    let info = sysfs::device(root, addr)?;
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
pub fn restore(root: &SysfsRoot, addr: PciAddr, original: Option<&str>) -> Result<()> {
    restore_with(root, addr, original, &mut KernelWriter)
}

/// [`restore`] with every sysfs write going through `w`.
pub fn restore_with(
    root: &SysfsRoot,
    addr: PciAddr,
    original: Option<&str>,
    w: &mut dyn SysfsWriter,
) -> Result<()> {
    if let Some(o) = original {
        check_driver_name(o)?;
    }
    let info = sysfs::device(root, addr)?;
    if let Some(o) = original {
        if !root.driver_dir(o).is_dir() {
            return Err(Error::Pci(format!(
                "cannot give {addr} back to {o}: driver {o} is not loaded \
                 (load its module, e.g. `modprobe {}`, and try again)",
                o.replace('-', "_")
            )));
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
            return Err(Error::Pci(format!(
                "{o} did not take {addr} back (see dmesg); it is bound to {}",
                now.as_deref().unwrap_or("no driver")
            )));
        }
    }
    Ok(())
}

/// What a device was bound to before we took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindRecord {
    /// The device.
    pub addr: PciAddr,
    /// Its driver before the first bind we did (None: it had none).
    pub original: Option<String>,
    /// The driver we bound it to.
    pub target: String,
}

/// Bind records, one file per device (`<dir>/<addr>` holding `original=` and `target=`
/// lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindStore {
    dir: PathBuf,
}

impl BindStore {
    /// Where the live system keeps records (gone after a reboot, like the bindings).
    pub const DEFAULT_DIR: &'static str = "/run/pmd-rs/bind";

    /// The store at [`BindStore::DEFAULT_DIR`].
    pub fn system() -> BindStore {
        BindStore::at(Self::DEFAULT_DIR)
    }

    /// A store in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> BindStore {
        BindStore { dir: dir.into() }
    }

    /// The store at `<root>/run/pmd-rs/bind` (the default one for the real root).
    pub fn under(root: &SysfsRoot) -> BindStore {
        BindStore::at(root.join(Self::DEFAULT_DIR.trim_start_matches('/')))
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, addr: PciAddr) -> PathBuf {
        self.dir.join(addr.to_string())
    }

    /// The record for `addr`, if there is one.
    pub fn load(&self, addr: PciAddr) -> Result<Option<BindRecord>> {
        let path = self.file(addr);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(str::trim)
        };
        match (field("original"), field("target")) {
            (Some(o), Some(t)) if !t.is_empty() => Ok(Some(BindRecord {
                addr,
                original: (!o.is_empty()).then(|| o.to_string()),
                target: t.to_string(),
            })),
            _ => Err(Error::Pci(format!(
                "corrupt bind record {} (delete it to forget the original driver)",
                path.display()
            ))),
        }
    }

    /// Writes `rec`, replacing any record for the same device.
    pub fn save(&self, rec: &BindRecord) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io(format!("creating {}", self.dir.display()), e))?;
        let path = self.file(rec.addr);
        let text = format!(
            "original={}\ntarget={}\n",
            rec.original.as_deref().unwrap_or(""),
            rec.target
        );
        fs::write(&path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// Deletes the record for `addr` (no error if there is none).
    pub fn remove(&self, addr: PciAddr) -> Result<()> {
        let path = self.file(addr);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(Error::io(format!("removing {}", path.display()), e))
            }
            _ => Ok(()),
        }
    }

    /// Records a bind of `addr` to `target` that found the device on `outcome.previous`.
    /// An existing record keeps its original driver, so a chain of binds still restores the
    /// driver the device had before the first one. Returns the record now stored.
    pub fn note_bind(
        &self,
        addr: PciAddr,
        outcome: &BindOutcome,
        target: &str,
    ) -> Result<BindRecord> {
        let original = match self.load(addr)? {
            Some(r) => r.original,
            None => outcome.previous.clone(),
        };
        let rec = BindRecord {
            addr,
            original,
            target: target.to_string(),
        };
        self.save(&rec)?;
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::super::sysfs::testtree::*;
    use super::*;

    fn a(s: &str) -> PciAddr {
        s.parse().unwrap()
    }

    /// A tree with an e1000 NIC at 00:03.0 (eth0), vfio-pci, uio_pci_generic, and a
    /// FileNetState in `<root>/test-net`.
    fn setup(tag: &str) -> (Tree, FileNetState) {
        let t = Tree::new(tag);
        t.driver("vfio-pci").driver("uio_pci_generic");
        t.nic("0000:00:03.0", Some("e1000"), &["eth0"]);
        fs::create_dir_all(t.root.join("test-net")).unwrap();
        let net = FileNetState::under(&t.root);
        (t, net)
    }

    fn set_net(t: &Tree, iface: &str, words: &str) {
        fs::write(t.root.join("test-net").join(iface), words).unwrap();
    }

    fn driver_of(t: &Tree, addr: &str) -> Option<String> {
        sysfs::device(&t.root, a(addr)).unwrap().driver
    }

    fn rel(t: &Tree, log: &[(PathBuf, String)]) -> Vec<(String, String)> {
        log.iter()
            .map(|(p, c)| {
                let p = p.strip_prefix(t.root.path()).unwrap();
                (p.display().to_string(), c.clone())
            })
            .collect()
    }

    fn pair(p: &str, c: &str) -> (String, String) {
        (p.to_string(), c.to_string())
    }

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
            sysfs::device(&t.root, a("0000:00:03.0"))
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
    fn record_and_restore_roundtrip() {
        let (t, net) = setup("restore");
        let store = BindStore::under(&t.root);
        assert_eq!(store.dir(), t.root.join("run/pmd-rs/bind"));
        let addr = a("0000:00:03.0");
        assert_eq!(store.load(addr).unwrap(), None);
        let mut k = FakeKernel::new(&t.root);
        let out = bind_with(&t.root, &net, addr, "vfio-pci", false, &mut k).unwrap();
        let rec = store.note_bind(addr, &out, "vfio-pci").unwrap();
        assert_eq!(rec.original.as_deref(), Some("e1000"));
        // A second bind keeps the first original driver.
        let out = bind_with(&t.root, &net, addr, "uio_pci_generic", false, &mut k).unwrap();
        assert_eq!(out.previous.as_deref(), Some("vfio-pci"));
        store.note_bind(addr, &out, "uio_pci_generic").unwrap();
        let rec = store.load(addr).unwrap().unwrap();
        assert_eq!(
            rec,
            BindRecord {
                addr,
                original: Some("e1000".into()),
                target: "uio_pci_generic".into()
            }
        );

        k.log.clear();
        restore_with(&t.root, addr, rec.original.as_deref(), &mut k).unwrap();
        assert_eq!(
            rel(&t, &k.log),
            [
                pair("sys/bus/pci/devices/0000:00:03.0/driver_override", "\n"),
                pair("sys/bus/pci/drivers/uio_pci_generic/unbind", "0000:00:03.0"),
                pair("sys/bus/pci/drivers/e1000/bind", "0000:00:03.0"),
            ]
        );
        assert_eq!(driver_of(&t, "0000:00:03.0").as_deref(), Some("e1000"));
        store.remove(addr).unwrap();
        store.remove(addr).unwrap();
        assert_eq!(store.load(addr).unwrap(), None);

        // A device that had no driver goes back to none.
        t.nic("0000:00:04.0", None, &[]);
        let out = bind_with(&t.root, &net, a("00:04.0"), "vfio-pci", false, &mut k).unwrap();
        let rec = store.note_bind(a("00:04.0"), &out, "vfio-pci").unwrap();
        assert_eq!(store.load(a("00:04.0")).unwrap(), Some(rec.clone()));
        restore_with(&t.root, a("00:04.0"), rec.original.as_deref(), &mut k).unwrap();
        assert_eq!(driver_of(&t, "0000:00:04.0"), None);
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
    fn corrupt_record_is_an_error() {
        let t = Tree::new("corrupt");
        let store = BindStore::under(&t.root);
        fs::create_dir_all(store.dir()).unwrap();
        fs::write(store.dir().join("0000:00:03.0"), "garbage").unwrap();
        let e = store.load(a("0000:00:03.0")).unwrap_err().to_string();
        assert!(e.contains("corrupt bind record"), "{e}");
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

    #[test]
    fn route_tables_are_parsed() {
        let v4 = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                  eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\n\
                  eth1\t0002A8C0\t00000000\t0000\t0\t0\t100\t00FFFFFF\n\
                  short\n";
        let got = ipv4_route_ifaces(v4);
        assert_eq!(got, HashSet::from(["eth0".to_string()]));
        let v6 = "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n\
                  ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n\
                  20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth2\n\
                  00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000001 00000000 80200001 lo\n";
        assert_eq!(ipv6_route_ifaces(v6), HashSet::from(["eth2".to_string()]));
    }

    #[test]
    fn host_net_state_reads_flags_and_routes_under_root() {
        let (t, _) = setup("hostnet");
        fs::create_dir_all(t.root.join("proc/net")).unwrap();
        fs::write(
            t.root.join("proc/net/route"),
            "Iface\tDestination\tGateway\tFlags\nfakeif0\t00000000\t00000000\t0001\n",
        )
        .unwrap();
        let cn = t.root.class_net().join("fakeif0");
        fs::create_dir_all(&cn).unwrap();
        fs::write(cn.join("flags"), "0x1003\n").unwrap();
        fs::write(t.root.class_net().join("eth0/flags"), "0x1002\n").unwrap();
        let net = HostNetState::new(&t.root);
        assert!(net.is_up("fakeif0") && net.has_routes("fakeif0"));
        assert!(!net.is_up("eth0") && !net.has_routes("eth0"));
        assert!(!net.is_up("nonexistent-if"));
        assert!(!net.has_addresses("nonexistent-if"));
        // getifaddrs must at least run; loopback carries 127.0.0.1 on any sane host.
        let _ = net.has_addresses("lo");
    }

    #[test]
    fn active_ifaces_needs_up_and_addresses_or_routes() {
        let (t, net) = setup("activeifs");
        t.nic("0000:00:08.0", Some("virtio-pci"), &["a", "b", "c", "d"]);
        set_net(&t, "a", "up addr");
        set_net(&t, "b", "up");
        set_net(&t, "c", "addr route");
        set_net(&t, "d", "route up");
        let info = sysfs::device(&t.root, a("0000:00:08.0")).unwrap();
        assert_eq!(active_ifaces(&info, &net), ["a", "d"]);
        let why = in_use_reason(&info, &net).unwrap();
        assert!(
            why.contains("interfaces a (up, with addresses), d (up, with routes) are active"),
            "{why}"
        );
    }
}
