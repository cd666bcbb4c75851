//! Vdev argument parsing and validation (no system calls apart from the page size).

use crate::sys::{self, Geometry};
use pmd_core::devargs::VdevSpec;
use pmd_core::error::{Error, Result};

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
/// Default frame size (for interfaces whose MTU it holds, up to 1946).
pub(crate) const DEFAULT_FRAMESZ: u32 = 2048;
/// Largest frame size picked from the MTU when `framesz` is not given (MTU up to 16282);
/// larger frames need an explicit `framesz`.
pub(crate) const MAX_AUTO_FRAMESZ: u32 = 16384;
/// Default block size.
pub(crate) const DEFAULT_BLOCKSZ: u32 = 4096;
/// Default frames per ring.
pub(crate) const DEFAULT_FRAMECNT: u32 = 512;

/// Ring frame bytes a received super-frame needs with `PACKET_VNET_HDR`: the rx header,
/// the packet offset, the virtio-net header and a 64 KiB frame (GSO's largest).
pub(crate) const VNET_FRAME_NEED: u32 = sys::tpacket_align(
    sys::RX_MAX_MAC_OFFSET + pmd_core::vnet::VNET_HDR_LEN + pmd_core::vnet::GSO_MAX_FRAME,
) as u32;
/// Default block size with vnet headers: 512 KiB (a power of two, so the kernel's block
/// allocation wastes nothing), seven super-frames each.
pub(crate) const VNET_BLOCKSZ: u32 = 512 * 1024;
/// Default frames per ring with vnet headers (rounded up to whole blocks): 70 frames of
/// 73 KiB, 5 MiB per ring.
pub(crate) const VNET_FRAMECNT: u32 = 64;

/// A validated device configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    pub iface: String,
    pub qpairs: u16,
    /// The ring layout in use (for the default MTU until [`Config::geometry_for_mtu`]).
    pub geom: Geometry,
    pub qdisc_bypass: bool,
    /// `blocksz`, `framesz` and `framecnt` as given (`None`: derived).
    pub blocksz: Option<u32>,
    pub framesz: Option<u32>,
    pub framecnt: Option<u32>,
    pub page: u32,
    /// Sockets use `PACKET_VNET_HDR` (an offload needing it is configured) and rings of
    /// [`Config::geometry_for_vnet`].
    pub vnet: bool,
}

/// A ring layout for frames of `frame_size`: blocks of the given size or else the
/// smallest page multiple (at least the default) holding a frame, and the given frame
/// count or else the default rounded up to whole blocks.
fn build_geometry(
    blocksz: Option<u32>,
    frame_size: u32,
    framecnt: Option<u32>,
    page: u32,
) -> std::result::Result<Geometry, String> {
    let block = blocksz.unwrap_or_else(|| DEFAULT_BLOCKSZ.max(frame_size.div_ceil(page) * page));
    let count = framecnt.unwrap_or_else(|| {
        let per_block = (block / frame_size.max(1)).max(1);
        DEFAULT_FRAMECNT.div_ceil(per_block) * per_block
    });
    Geometry::new(block, frame_size, count, page)
}

impl Config {
    /// Parses and validates the vdev arguments.
    pub fn from_vdev(vdev: &VdevSpec) -> Result<Config> {
        Self::from_vdev_with_page(vdev, sys::page_size())
    }

    pub(crate) fn from_vdev_with_page(vdev: &VdevSpec, page: u32) -> Result<Config> {
        vdev.check_known(KNOWN_ARGS)?;
        let bad = |msg: String| Error::driver(vdev.name.clone(), msg);
        let iface_arg = vdev.get("iface");
        let iface = iface_arg
            .text("name an interface")?
            .ok_or_else(|| iface_arg.missing("name the interface to use, e.g. iface=eth0"))?;
        if iface.len() > sys::IFNAME_MAX || iface.contains(['/', '\0']) {
            return Err(bad(format!(
                "invalid interface name '{iface}': at most {} characters, no '/'",
                sys::IFNAME_MAX
            )));
        }
        let qpairs = vdev.get("qpairs").int_in(1..=MAX_QPAIRS)?.unwrap_or(1);
        let blocksz: Option<u32> = vdev.get("blocksz").parse()?;
        let framesz: Option<u32> = vdev.get("framesz").parse()?;
        let framecnt: Option<u32> = vdev.get("framecnt").parse()?;
        let geom = build_geometry(blocksz, framesz.unwrap_or(DEFAULT_FRAMESZ), framecnt, page)
            .map_err(bad)?;
        let qdisc_bypass = vdev.get("qdisc_bypass").flag()?.unwrap_or(false);
        Ok(Config {
            iface: iface.to_string(),
            qpairs,
            geom,
            qdisc_bypass,
            blocksz,
            framesz,
            framecnt,
            page,
            vnet: false,
        })
    }

    /// The ring layout for an interface MTU of `mtu`: with `framesz` given, the current
    /// one if its frames hold a whole frame of that MTU (else an error saying what to
    /// do); otherwise frames sized from the MTU (at least the default, at most
    /// [`MAX_AUTO_FRAMESZ`]: the flag says whether that cap was hit).
    pub fn geometry_for_mtu(&self, mtu: u32) -> std::result::Result<(Geometry, bool), String> {
        let need = sys::frame_size_for_mtu(mtu);
        if let Some(f) = self.framesz {
            if f < need {
                return Err(format!(
                    "interface '{}' has MTU {mtu}, whose frames need framesz >= {need}, but \
                     framesz={f}: raise framesz (or leave it out to size frames from the MTU) \
                     or lower the MTU",
                    self.iface
                ));
            }
            return Ok((self.geom, false));
        }
        let frame = if need <= DEFAULT_FRAMESZ {
            DEFAULT_FRAMESZ
        } else if need <= self.page {
            need.next_power_of_two()
        } else {
            need.div_ceil(self.page) * self.page
        };
        let capped = frame > MAX_AUTO_FRAMESZ;
        let frame = frame.min(MAX_AUTO_FRAMESZ);
        let g = build_geometry(self.blocksz, frame, self.framecnt, self.page).map_err(|e| {
            format!(
                "interface '{}' has MTU {mtu}, which needs {frame}-byte ring frames: {e} \
                 (or give framesz)",
                self.iface
            )
        })?;
        Ok((g, capped))
    }

    /// The ring layout with vnet headers, whose rx frames must hold a whole 64 KiB
    /// super-frame ([`VNET_FRAME_NEED`]): the given sizes if large enough (else an error
    /// saying what to do), otherwise [`VNET_BLOCKSZ`] blocks cut into as many such frames
    /// as fit, [`VNET_FRAMECNT`] of them rounded up to whole blocks.
    pub fn geometry_for_vnet(&self) -> std::result::Result<Geometry, String> {
        let need = VNET_FRAME_NEED;
        let hint = "(the checksum/LRO/TSO offloads receive 64 KiB super-frames): raise it, \
                    leave it out, or configure no such offload";
        if let Some(f) = self.framesz.filter(|&f| f < need) {
            return Err(format!("framesz={f} is below {need} {hint}"));
        }
        let block = self
            .blocksz
            .unwrap_or(VNET_BLOCKSZ.div_ceil(self.page) * self.page);
        if block < need.max(self.framesz.unwrap_or(0)) {
            return Err(format!("blocksz={block} is below {need} {hint}"));
        }
        let frame = self.framesz.unwrap_or_else(|| {
            let per = block / need;
            (block / per) & !(sys::tpacket_align(1) as u32 - 1)
        });
        let per = block / frame;
        let count = self
            .framecnt
            .unwrap_or_else(|| VNET_FRAMECNT.div_ceil(per) * per);
        Geometry::new(block, frame, count, self.page)
    }

    /// Largest MTU the rings can hold: that of the frames given, else of the largest
    /// frames picked from the MTU.
    pub fn max_mtu(&self) -> u32 {
        sys::max_mtu_for_frame(
            self.framesz
                .map_or(MAX_AUTO_FRAMESZ, |_| self.geom.frame_size),
        )
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
    fn frames_sized_from_the_mtu() {
        let c = parse("net_af_packet0,iface=eth0").unwrap();
        let g = |mtu| c.geometry_for_mtu(mtu).unwrap();
        assert_eq!(g(1500).0, c.geom);
        assert_eq!(g(1946).0.frame_size, 2048);
        let (j, capped) = g(9000);
        assert!(!capped);
        assert_eq!(
            (j.frame_size, j.block_size, j.frame_nr),
            (12288, 12288, 512)
        );
        assert!(sys::max_mtu_for_frame(j.frame_size) >= 9000);
        let (l, capped) = g(65536);
        assert!(capped);
        assert_eq!(l.frame_size, MAX_AUTO_FRAMESZ);
        assert_eq!(c.max_mtu(), 16282);
        // 3000 fits a page: frames of 4096, one per block.
        assert_eq!(g(3000).0.frame_size, 4096);

        // framesz given: kept when it holds the MTU, refused with a hint when not.
        let c = parse("net_af_packet0,iface=va,framesz=2048").unwrap();
        assert_eq!(c.geometry_for_mtu(1500).unwrap().0, c.geom);
        assert_eq!(c.max_mtu(), 1946);
        let e = c.geometry_for_mtu(9000).unwrap_err();
        assert!(
            e.contains("MTU 9000") && e.contains("framesz=2048") && e.contains(">= 9104"),
            "{e}"
        );
        // framesz without blocksz: blocks grow to hold a frame.
        let c = parse("net_af_packet0,iface=va,framesz=9216").unwrap();
        assert_eq!(c.geom.block_size, 12288);
        // blocksz given too small for the MTU's frames.
        let c = parse("net_af_packet0,iface=va,blocksz=4096").unwrap();
        let e = c.geometry_for_mtu(9000).unwrap_err();
        assert!(e.contains("MTU 9000") && e.contains("blocksz=4096"), "{e}");
    }

    #[test]
    fn vnet_frames_hold_super_frames() {
        let c = parse("net_af_packet0,iface=eth0").unwrap();
        let g = c.geometry_for_vnet().unwrap();
        assert!(g.frame_size >= VNET_FRAME_NEED && g.frame_size.is_multiple_of(16));
        assert_eq!((g.block_size, g.frames_per_block()), (VNET_BLOCKSZ, 7));
        assert_eq!(g.frame_nr, 70);
        // What the kernel's rx path needs: mac offset + 64 KiB + Ethernet + 2 tags.
        assert!(g.frame_size as usize >= 90 + 65_536 + 22);
        let c = parse("net_af_packet0,iface=eth0,framecnt=14").unwrap();
        assert_eq!(c.geometry_for_vnet().unwrap().frame_nr, 14);
        let e = parse("net_af_packet0,iface=eth0,framesz=2048")
            .unwrap()
            .geometry_for_vnet()
            .unwrap_err();
        assert!(
            e.contains("framesz=2048") && e.contains("super-frames"),
            "{e}"
        );
        let e = parse("net_af_packet0,iface=eth0,blocksz=8192")
            .unwrap()
            .geometry_for_vnet()
            .unwrap_err();
        assert!(e.contains("blocksz=8192"), "{e}");
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
