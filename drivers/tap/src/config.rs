//! Vdev argument parsing and validation (no system calls).

use crate::sys::IFNAME_MAX;
use pmd_core::devargs::VdevSpec;
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::MacAddr;

/// Argument keys the driver accepts (DPDK net_tap's names).
pub(crate) const KNOWN_ARGS: &[&str] = &["iface", "mac", "persist", "gso"];

/// Interface name prefix when `iface` is not given (`dtap` + the device number).
pub(crate) const DEFAULT_PREFIX: &str = "dtap";

/// The MAC address to give the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MacChoice {
    /// Keep the kernel's (random for a new interface).
    Kernel,
    /// This address.
    Set(MacAddr),
}

/// A validated device configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    /// Interface name (may hold one `%d` for the kernel to fill in).
    pub iface: String,
    /// MAC address to set.
    pub mac: MacChoice,
    /// Keep a created interface after close.
    pub persist: bool,
    /// Exchange TCP super-frames with the kernel whatever the application configures
    /// (vnet headers, `TCP_LRO` on rx, `TCP_TSO` for received super-frames on tx).
    pub gso: bool,
}

/// The number at the end of a device name (`net_tap3` -> 3), 0 without one.
fn unit(name: &str) -> u32 {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    name[name.len() - digits..].parse().unwrap_or(0)
}

/// Checks an interface name as the kernel's `dev_valid_name` does (plus at most one
/// `%d`); the error says what is wrong.
pub(crate) fn check_ifname(s: &str) -> std::result::Result<(), String> {
    if s.is_empty() {
        return Err("argument 'iface' is empty: name the tap interface, e.g. iface=dtap0".into());
    }
    if s.len() > IFNAME_MAX {
        return Err(format!(
            "invalid interface name '{s}': at most {IFNAME_MAX} characters"
        ));
    }
    if s == "." || s == ".." {
        return Err(format!("invalid interface name '{s}'"));
    }
    if let Some(c) = s
        .chars()
        .find(|&c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        return Err(format!(
            "invalid interface name '{s}': {c:?} is not allowed (no '/', ':' or spaces)"
        ));
    }
    let pct = s.matches('%').count();
    if pct > 1 || (pct == 1 && !s.contains("%d")) {
        return Err(format!(
            "invalid interface name '{s}': '%' is only allowed once, as %d"
        ));
    }
    Ok(())
}

impl Config {
    /// Parses and validates the vdev arguments.
    pub fn from_vdev(vdev: &VdevSpec) -> Result<Config> {
        vdev.check_known(KNOWN_ARGS)?;
        let bad = |msg: String| Error::driver(vdev.name.clone(), msg);
        let iface = match vdev.arg("iface") {
            None => format!("{DEFAULT_PREFIX}{}", unit(&vdev.name)),
            Some(s) => {
                check_ifname(s).map_err(bad)?;
                s.to_string()
            }
        };
        let mac_arg = vdev.get("mac");
        let mac = match mac_arg.value() {
            None => MacChoice::Kernel,
            Some(v) if v.eq_ignore_ascii_case("fixed") => {
                // DPDK's fixed address: 00:64:74:61:70 ("\0dtap") and '0' + the unit.
                let last = b'0'.wrapping_add(unit(&vdev.name) as u8);
                MacChoice::Set(MacAddr([0x00, 0x64, 0x74, 0x61, 0x70, last]))
            }
            Some(v) => {
                let m: MacAddr = v
                    .parse()
                    .map_err(|e: String| mac_arg.reject(format!("{e}, or mac=fixed")))?;
                if m.0[0] & 1 != 0 || m.0 == [0; 6] {
                    return Err(mac_arg
                        .reject("a multicast or all-zero address cannot be an interface's address")
                        .into());
                }
                MacChoice::Set(m)
            }
        };
        // DPDK spells them as a bare `persist`/`gso`; `=1` and `=0` also work.
        let persist = vdev.get("persist").switch()?.unwrap_or(false);
        let gso = vdev.get("gso").switch()?.unwrap_or(false);
        Ok(Config {
            iface,
            mac,
            persist,
            gso,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config> {
        Config::from_vdev(&s.parse().unwrap())
    }

    fn err(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    #[test]
    fn defaults_follow_dpdk() {
        let c = parse("net_tap0").unwrap();
        assert_eq!(c.iface, "dtap0");
        assert_eq!(c.mac, MacChoice::Kernel);
        assert!(!c.persist);
        assert_eq!(parse("net_tap12").unwrap().iface, "dtap12");
    }

    #[test]
    fn all_args() {
        let c = parse("net_tap1,iface=mytap,mac=02:00:00:00:00:07,persist=1").unwrap();
        assert_eq!(c.iface, "mytap");
        assert_eq!(c.mac, MacChoice::Set(MacAddr::local(7)));
        assert!(c.persist);
        let c = parse("net_tap2,mac=fixed").unwrap();
        assert_eq!(
            c.mac,
            MacChoice::Set(MacAddr([0, 0x64, 0x74, 0x61, 0x70, b'2']))
        );
        assert_eq!(parse("net_tap0,iface=t%d").unwrap().iface, "t%d");
    }

    #[test]
    fn bad_args_are_named() {
        assert!(err("net_tap0,iface=").contains("empty"));
        assert!(err("net_tap0,iface=abcdefghijklmnop").contains("at most 15"));
        assert!(err("net_tap0,iface=a/b").contains("'/'"));
        assert!(err("net_tap0,iface=a:b").contains("not allowed"));
        assert!(err("net_tap0,iface=..").contains("invalid interface name"));
        assert!(err("net_tap0,iface=a%s").contains("%d"));
        assert!(err("net_tap0,iface=a%d%d").contains("%d"));
        assert!(err("net_tap0,mac=zz").contains("mac=zz"));
        assert!(err("net_tap0,mac=01:00:00:00:00:01").contains("multicast"));
        assert!(err("net_tap0,persist=2").contains("persist=2"));
        assert!(err("net_tap0,gso=2").contains("gso=0|1"));
        assert!(parse("net_tap0,gso=1").unwrap().gso);
        assert!(!parse("net_tap0").unwrap().gso);
        let e = err("net_tap0,remote=eth0");
        assert!(e.contains("'remote'") && e.contains("'iface'"), "{e}");
    }
}
