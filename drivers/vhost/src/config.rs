//! Vdev argument parsing and validation, with DPDK's `net_vhost` names and defaults.

use pmd_core::devargs::VdevSpec;
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::MacAddr;
use std::path::PathBuf;

/// Argument keys the driver accepts.
pub(crate) const KNOWN_ARGS: &[&str] = &["iface", "queues", "client", "tso", "mac"];

/// Most queue pairs (DPDK's `VHOST_MAX_QUEUE_PAIRS` is 128; 8-bit vring indexes in
/// SET_VRING_KICK/CALL address at most 256 rings).
pub const MAX_QUEUE_PAIRS: u16 = 128;

/// A validated device configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The vhost-user socket.
    pub iface: PathBuf,
    /// Queue pairs offered to the front end.
    pub queues: u16,
    /// Connect to a front end that listens (and reconnect after it goes away), instead of
    /// listening ourselves.
    pub client: bool,
    /// Offer TSO both ways (HOST_TSO4/6, GUEST_TSO4/6) and checksum offload.
    pub tso: bool,
    /// MAC address reported for the port.
    pub mac: MacAddr,
}

/// A locally administered MAC from the process id and the device name's number.
fn default_mac(name: &str) -> MacAddr {
    let n: u16 = name
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or(0);
    let [_, _, p1, p0] = std::process::id().to_be_bytes();
    let [n1, n0] = n.to_be_bytes();
    MacAddr([0x02, 0x76, p1 ^ n1, p0, 0, n0])
}

impl Config {
    /// Parses and validates the vdev arguments.
    pub fn from_vdev(vdev: &VdevSpec) -> Result<Config> {
        vdev.check_known(KNOWN_ARGS)?;
        let bad = |msg: String| Error::driver(vdev.name.clone(), msg);
        let iface = vdev
            .get("iface")
            .path()?
            .ok_or_else(|| vdev.get("iface").missing("the vhost-user socket path"))?;
        if let Some(dir) = iface.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(bad(format!(
                    "iface={}: directory {} does not exist; create it or pick another path",
                    iface.display(),
                    dir.display()
                )));
            }
        }
        let queues = vdev.get("queues").int_in(1..=MAX_QUEUE_PAIRS)?.unwrap_or(1);
        let client = vdev.get("client").switch()?.unwrap_or(false);
        let tso = vdev.get("tso").switch()?.unwrap_or(false);
        let mac = match vdev.get("mac").parse::<MacAddr>()? {
            Some(m) => m,
            None => default_mac(&vdev.name),
        };
        Ok(Config {
            iface,
            queues,
            client,
            tso,
            mac,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(s: &str) -> Result<Config> {
        Config::from_vdev(&s.parse().unwrap())
    }

    #[test]
    fn dpdk_names_and_defaults() {
        let c = cfg("net_vhost0,iface=/tmp/vh0.sock").unwrap();
        assert_eq!(c.iface, PathBuf::from("/tmp/vh0.sock"));
        assert_eq!((c.queues, c.client, c.tso), (1, false, false));
        let c = cfg("net_vhost1,iface=/tmp/vh1.sock,queues=2,client=1,tso=1").unwrap();
        assert_eq!((c.queues, c.client, c.tso), (2, true, true));
    }

    #[test]
    fn refuses_bad_arguments() {
        for bad in [
            "net_vhost0",
            "net_vhost0,iface=/tmp/x.sock,queues=0",
            "net_vhost0,iface=/tmp/x.sock,queues=129",
            "net_vhost0,iface=/tmp/x.sock,client=2",
            "net_vhost0,iface=/nonexistent-dir/x.sock",
            "net_vhost0,iface=/tmp/x.sock,dequeue-zero-copy=1",
        ] {
            assert!(cfg(bad).is_err(), "{bad}");
        }
    }
}
