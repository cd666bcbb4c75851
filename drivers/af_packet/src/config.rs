//! Vdev argument parsing and validation (no system calls apart from the page size).

use crate::sys::{self, Geometry};
use pmd_core::error::{Error, Result};
use pmd_core::options::VdevSpec;

/// Argument keys the driver accepts.
pub(crate) const KNOWN_ARGS: &[&str] = &[
    "iface",
    "qpairs",
    "blocksz",
    "framesz",
    "framecnt",
    "qdisc_bypass",
];

/// Most queue pairs.
pub(crate) const MAX_QPAIRS: u16 = 16;
/// Default frame size.
pub(crate) const DEFAULT_FRAMESZ: u32 = 2048;
/// Default block size.
pub(crate) const DEFAULT_BLOCKSZ: u32 = 4096;
/// Default frames per ring.
pub(crate) const DEFAULT_FRAMECNT: u32 = 512;

/// A validated device configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    pub iface: String,
    pub qpairs: u16,
    pub geom: Geometry,
    pub qdisc_bypass: bool,
}

impl Config {
    /// Parses and validates the vdev arguments.
    pub fn from_vdev(vdev: &VdevSpec) -> Result<Config> {
        Self::from_vdev_with_page(vdev, sys::page_size())
    }

    pub(crate) fn from_vdev_with_page(vdev: &VdevSpec, page: u32) -> Result<Config> {
        vdev.check_known(KNOWN_ARGS)?;
        let bad = |msg: String| Error::driver(vdev.name.clone(), msg);
        let iface = match vdev.arg("iface") {
            None => {
                return Err(bad(
                    "missing argument 'iface': name the interface to use, e.g. iface=eth0".into(),
                ))
            }
            Some("") => return Err(bad("argument 'iface' is empty: name an interface".into())),
            Some(s) if s.len() > sys::IFNAME_MAX || s.contains(['/', '\0']) => {
                return Err(bad(format!(
                    "invalid interface name '{s}': at most {} characters, no '/'",
                    sys::IFNAME_MAX
                )))
            }
            Some(s) => s.to_string(),
        };
        let qpairs: u16 = vdev.parse_arg("qpairs")?.unwrap_or(1);
        if !(1..=MAX_QPAIRS).contains(&qpairs) {
            return Err(bad(format!(
                "qpairs={qpairs} is out of range: use 1..={MAX_QPAIRS}"
            )));
        }
        let blocksz: u32 = vdev.parse_arg("blocksz")?.unwrap_or(DEFAULT_BLOCKSZ);
        let framesz: u32 = vdev.parse_arg("framesz")?.unwrap_or(DEFAULT_FRAMESZ);
        let framecnt: u32 = vdev.parse_arg("framecnt")?.unwrap_or(DEFAULT_FRAMECNT);
        let geom = Geometry::new(blocksz, framesz, framecnt, page).map_err(bad)?;
        let qdisc_bypass = match vdev.parse_arg::<u8>("qdisc_bypass")?.unwrap_or(0) {
            0 => false,
            1 => true,
            n => return Err(bad(format!("qdisc_bypass={n}: use 0 or 1"))),
        };
        Ok(Config {
            iface,
            qpairs,
            geom,
            qdisc_bypass,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config> {
        Config::from_vdev_with_page(&s.parse().unwrap(), 4096)
    }

    fn err(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let c = parse("net_af_packet0,iface=eth0").unwrap();
        assert_eq!(c.iface, "eth0");
        assert_eq!(c.qpairs, 1);
        assert_eq!(c.geom.frame_size, 2048);
        assert_eq!(c.geom.block_size, 4096);
        assert_eq!(c.geom.frame_nr, 512);
        assert!(!c.qdisc_bypass);
    }

    #[test]
    fn all_args() {
        let c = parse(
            "net_af_packet1,iface=veth0,qpairs=4,blocksz=8192,framesz=1024,framecnt=64,qdisc_bypass=1",
        )
        .unwrap();
        assert_eq!(c.qpairs, 4);
        assert_eq!(c.geom.block_nr, 8);
        assert!(c.qdisc_bypass);
    }

    #[test]
    fn bad_args_are_named() {
        assert!(err("net_af_packet0").contains("missing argument 'iface'"));
        assert!(err("net_af_packet0,iface=").contains("empty"));
        assert!(err("net_af_packet0,iface=abcdefghijklmnopq").contains("invalid interface"));
        assert!(err("net_af_packet0,iface=a,qpairs=0").contains("qpairs=0"));
        assert!(err("net_af_packet0,iface=a,qpairs=17").contains("1..=16"));
        assert!(err("net_af_packet0,iface=a,qpairs=x").contains("'qpairs'"));
        assert!(err("net_af_packet0,iface=a,framesz=100").contains("framesz=100"));
        assert!(err("net_af_packet0,iface=a,framecnt=3").contains("framecnt=3"));
        assert!(err("net_af_packet0,iface=a,blocksz=1000").contains("blocksz=1000"));
        assert!(err("net_af_packet0,iface=a,qdisc_bypass=2").contains("qdisc_bypass"));
        let e = err("net_af_packet0,iface=a,bogus=1");
        assert!(e.contains("'bogus'") && e.contains("'iface'"), "{e}");
    }
}
