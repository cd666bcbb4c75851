//! Vdev argument parsing and validation (no system calls).

use crate::prog::AttachMode;
use crate::sys::IFNAME_MAX;
use crate::xsk::BindMode;
use pmd_core::devargs::VdevSpec;
use pmd_core::error::{Error, Result};

/// Argument keys the driver accepts (DPDK's names, plus `mode`, `xdp_mode`, `frame_size`).
pub(crate) const KNOWN_ARGS: &[&str] = &[
    "iface",
    "start_queue",
    "queue_count",
    "mode",
    "force_copy",
    "xdp_mode",
    "frame_size",
    "busy_budget",
];

/// Most queues one device drives.
pub(crate) const MAX_QUEUES: u16 = 64;
/// Default UMEM frame size.
pub(crate) const DEFAULT_FRAME_SIZE: u32 = 2048;
/// Default busy-polling budget (DPDK's): packets the kernel's NAPI poll may process per
/// busy-poll call.
pub(crate) const DEFAULT_BUSY_BUDGET: u16 = 64;

/// A validated device configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Config {
    pub iface: String,
    pub start_queue: u32,
    pub queue_count: u16,
    pub bind: BindMode,
    pub attach: AttachMode,
    pub frame_size: u32,
    /// Preferred busy polling: the NAPI budget per call (`SO_BUSY_POLL_BUDGET`); 0 off.
    pub busy_budget: u16,
}

impl Config {
    /// Parses and validates the vdev arguments.
    pub fn from_vdev(vdev: &VdevSpec) -> Result<Config> {
        vdev.check_known(KNOWN_ARGS)?;
        let bad = |msg: String| Error::driver(vdev.name.clone(), msg);
        let iface_arg = vdev.get("iface");
        let iface = iface_arg
            .text("name an interface")?
            .ok_or_else(|| iface_arg.missing("name the interface to use, e.g. iface=eth0"))?;
        if iface.len() > IFNAME_MAX || iface.contains(['/', '\0']) {
            return Err(bad(format!(
                "invalid interface name '{iface}': at most {IFNAME_MAX} characters, no '/'"
            )));
        }
        // Parsed as u32 so that a number beyond 65535 is out of range, not malformed.
        let start_queue = vdev
            .get("start_queue")
            .int_in(0..=u32::from(u16::MAX))?
            .unwrap_or(0);
        let queue_count = vdev.get("queue_count").int_in(1..=MAX_QUEUES)?.unwrap_or(1);
        let force_copy = vdev.get("force_copy").flag()?.unwrap_or(false);
        let bind = vdev
            .get("mode")
            .choice(&[
                (&["copy"], BindMode::Copy),
                (&["zerocopy", "zero-copy", "zc"], BindMode::ZeroCopy),
                (&["auto"], BindMode::Auto),
            ])?
            .unwrap_or(BindMode::Auto);
        let bind = match (force_copy, bind) {
            (false, b) => b,
            (true, BindMode::ZeroCopy) => {
                return Err(bad(
                    "force_copy=1 contradicts mode=zerocopy: give one of them".into(),
                ))
            }
            (true, _) => BindMode::Copy,
        };
        let attach = vdev
            .get("xdp_mode")
            .choice(&[
                (&["native", "drv"], AttachMode::Native),
                (&["generic", "skb"], AttachMode::Generic),
                (&["auto"], AttachMode::Auto),
            ])?
            .unwrap_or(AttachMode::Auto);
        let frame_arg = vdev.get("frame_size");
        let frame_size: u32 = frame_arg.parse()?.unwrap_or(DEFAULT_FRAME_SIZE);
        if frame_size != 2048 && frame_size != 4096 {
            return Err(frame_arg
                .reject(
                    "use 2048 or 4096 (a power of two the kernel accepts for aligned UMEM chunks)",
                )
                .into());
        }
        let busy_budget = vdev
            .get("busy_budget")
            .int_in(0..=u16::MAX)?
            .unwrap_or(DEFAULT_BUSY_BUDGET);
        Ok(Config {
            iface: iface.to_string(),
            start_queue,
            queue_count,
            bind,
            attach,
            frame_size,
            busy_budget,
        })
    }

    /// Largest packet an rx frame holds (the kernel keeps `XDP_PACKET_HEADROOM` in front).
    pub fn max_rx_len(&self) -> u32 {
        self.frame_size - crate::uapi::XDP_PACKET_HEADROOM
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
    fn defaults() {
        let c = parse("net_af_xdp0,iface=eth0").unwrap();
        assert_eq!(c.iface, "eth0");
        assert_eq!((c.start_queue, c.queue_count), (0, 1));
        assert_eq!(c.bind, BindMode::Auto);
        assert_eq!(c.attach, AttachMode::Auto);
        assert_eq!(c.frame_size, 2048);
        assert_eq!(c.max_rx_len(), 1792);
        assert_eq!(c.busy_budget, 64);
    }

    #[test]
    fn all_args() {
        let c = parse(
            "net_af_xdp1,iface=veth0,start_queue=2,queue_count=4,mode=copy,xdp_mode=generic,frame_size=4096,busy_budget=0",
        )
        .unwrap();
        assert_eq!(c.busy_budget, 0);
        assert_eq!((c.start_queue, c.queue_count), (2, 4));
        assert_eq!(c.bind, BindMode::Copy);
        assert_eq!(c.attach, AttachMode::Generic);
        assert_eq!(c.frame_size, 4096);
        assert_eq!(
            parse("net_af_xdp0,iface=a,mode=zerocopy").unwrap().bind,
            BindMode::ZeroCopy
        );
        assert_eq!(
            parse("net_af_xdp0,iface=a,force_copy=1").unwrap().bind,
            BindMode::Copy
        );
        assert_eq!(
            parse("net_af_xdp0,iface=a,xdp_mode=native").unwrap().attach,
            AttachMode::Native
        );
    }

    #[test]
    fn bad_args_are_named() {
        assert!(err("net_af_xdp0").contains("missing argument 'iface'"));
        assert!(err("net_af_xdp0,iface=").contains("empty"));
        assert!(err("net_af_xdp0,iface=abcdefghijklmnopq").contains("invalid interface"));
        assert!(err("net_af_xdp0,iface=a,queue_count=0").contains("1..=64"));
        assert!(err("net_af_xdp0,iface=a,queue_count=x").contains("'queue_count'"));
        assert!(err("net_af_xdp0,iface=a,start_queue=70000").contains("start_queue=70000"));
        assert!(err("net_af_xdp0,iface=a,start_queue=-1").contains("'start_queue'"));
        assert!(err("net_af_xdp0,iface=a,mode=fast").contains("copy, zerocopy or auto"));
        assert!(err("net_af_xdp0,iface=a,xdp_mode=hw").contains("native, generic or auto"));
        assert!(err("net_af_xdp0,iface=a,force_copy=2").contains("force_copy=2"));
        assert!(err("net_af_xdp0,iface=a,force_copy=1,mode=zerocopy").contains("contradicts"));
        assert!(err("net_af_xdp0,iface=a,frame_size=3000").contains("2048 or 4096"));
        assert!(err("net_af_xdp0,iface=a,busy_budget=70000").contains("busy_budget"));
        assert!(err("net_af_xdp0,iface=a,busy_budget=-1").contains("'busy_budget'"));
        let e = err("net_af_xdp0,iface=a,shared_umem=1");
        assert!(
            e.contains("'shared_umem'") && e.contains("'queue_count'"),
            "{e}"
        );
    }
}
