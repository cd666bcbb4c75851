//! Whether a device carries a live link: the network state of its interfaces (the host's,
//! or a file-backed fake for tests), and the in-use check that guards `bind` and `unbind`
//! (and, through [`active_ifaces`], `sriov`).

use crate::discover::PciDeviceInfo;
use pmd_core::netif;
use pmd_core::pci::SysfsRoot;
use std::collections::HashSet;
use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;

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
const IFF_UP: u32 = libc::IFF_UP as u32;
/// `RTF_UP` in the flags column of `/proc/net/route` and `/proc/net/ipv6_route`.
const RTF_UP: u32 = libc::RTF_UP as u32;

/// The host's real network state: flags from `<root>/sys/class/net/<if>/flags`, routes from
/// `<root>/proc/net/route` and `<root>/proc/net/ipv6_route`, addresses from
/// [`netif::addresses`] (always the running host's). Addresses and routes are a snapshot taken by [`HostNetState::new`].
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

/// Interfaces with an IPv4 address or an IPv6 address outside fe80::/10 (none if the
/// list cannot be read).
fn ifaces_with_addresses() -> HashSet<String> {
    netif::addresses()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| match a.addr {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => !v6.is_unicast_link_local(),
        })
        .map(|a| a.iface)
        .collect()
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

/// `its interface eth0 (up, with addresses and routes) is active` for the interfaces
/// `active` (as found by [`active_ifaces`]; plural for more than one).
pub fn describe_active(active: &[String], net: &dyn NetState) -> String {
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
    format!(
        "its interface{} {} {} active",
        if active.len() > 1 { "s" } else { "" },
        what.join(", "),
        if active.len() > 1 { "are" } else { "is" },
    )
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
        return Some(format!(
            "{}: the device carries a live link. \
             Bring {} down first (`ip link set {} down`) or pass --force",
            describe_active(&active, net),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover;
    use crate::testtree::*;

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
        let info = discover::device(&t.root, a("0000:00:08.0")).unwrap();
        assert_eq!(active_ifaces(&info, &net), ["a", "d"]);
        let why = in_use_reason(&info, &net).unwrap();
        assert!(
            why.contains("interfaces a (up, with addresses), d (up, with routes) are active"),
            "{why}"
        );
    }
}
