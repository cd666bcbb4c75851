//! The ethdev layer: the traits a driver implements ([`Driver`], [`Device`], [`RxQueue`],
//! [`TxQueue`]), the [`Port`] state machine applications drive, owned queue handles, and
//! statistics.
//!
//! Data path: an [`RxQueueHandle`] or [`TxQueueHandle`] is `Send` but not `Sync` and moves
//! into the one lcore thread that polls it. Each burst costs one indirect call into the
//! driver; per packet there is no allocation, lock, syscall or dynamic dispatch.

mod offloads;
mod port;
mod stats;

pub use offloads::{RxOffloads, TxOffloads};
pub use port::{Port, PortState, RxQueueHandle, TxQueueHandle};
pub use stats::{EthStats, QueueCounters, QueueStats};

use crate::devargs::VdevSpec;
use crate::error::Result;
use crate::mbuf::PktBatch;
use crate::mempool::Mempool;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Port number, in probe order.
pub type PortId = u16;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A locally administered unicast address `02:00:00:00:xx:yy` derived from a number.
    pub fn local(n: u16) -> MacAddr {
        let [hi, lo] = n.to_be_bytes();
        MacAddr([0x02, 0, 0, 0, hi, lo])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in out.iter_mut() {
            let p = parts
                .next()
                .filter(|p| p.len() == 2)
                .ok_or_else(|| format!("invalid MAC address {s:?}: expected xx:xx:xx:xx:xx:xx"))?;
            *b = u8::from_str_radix(p, 16)
                .map_err(|_| format!("invalid MAC address {s:?}: {p:?} is not hex"))?;
        }
        if parts.next().is_some() {
            return Err(format!("invalid MAC address {s:?}: more than 6 bytes"));
        }
        Ok(MacAddr(out))
    }
}

/// Link state as reported by the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Link {
    /// Carrier up.
    pub up: bool,
    /// Speed in Mbit/s (0 = unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.up {
            return write!(f, "down");
        }
        match self.speed_mbps {
            0 => write!(f, "up"),
            s => write!(
                f,
                "up {s} Mbps {}",
                if self.full_duplex {
                    "full-duplex"
                } else {
                    "half-duplex"
                }
            ),
        }
    }
}

/// What a device supports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevInfo {
    /// Driver name (e.g. `net_null`).
    pub driver: &'static str,
    /// Most rx queues.
    pub max_rx_queues: u16,
    /// Most tx queues.
    pub max_tx_queues: u16,
    /// Fewest descriptors per queue.
    pub min_desc: u16,
    /// Most descriptors per queue.
    pub max_desc: u16,
    /// Descriptors used when the application asks for 0.
    pub default_desc: u16,
    /// Descriptor counts must be powers of two (rings indexed with a mask), as well as
    /// within `min_desc..=max_desc`: with them, DPDK's `rx_desc_lim`/`tx_desc_lim`.
    pub desc_pow2: bool,
    /// Receive offloads the device can do.
    pub rx_offload_capa: RxOffloads,
    /// Transmit offloads the device can do.
    pub tx_offload_capa: TxOffloads,
    /// Largest frame it receives, bytes (Ethernet header to payload end, no CRC).
    pub max_rx_pktlen: u32,
    /// Smallest MTU it accepts.
    pub min_mtu: u16,
    /// Largest MTU it accepts.
    pub max_mtu: u16,
    /// Most segments one transmitted packet may have (TSO included).
    pub nb_seg_max: u16,
    /// Most segments one transmitted packet of at most MTU size may have.
    pub nb_mtu_seg_max: u16,
}

/// Bytes a frame carries beyond its MTU-sized payload: the Ethernet header and two VLAN
/// tags (QinQ). No CRC: every PMD here hands frames over without it.
pub const L2_OVERHEAD: u32 = 14 + 2 * 4;

/// The default MTU of a port whose device has none of its own.
pub const DEFAULT_MTU: u16 = 1500;

impl Default for DevInfo {
    /// A device with one queue each way, no offloads, single-segment packets and a
    /// 1500-byte MTU: drivers start from this and state what they add.
    fn default() -> Self {
        DevInfo {
            driver: "unknown",
            max_rx_queues: 1,
            max_tx_queues: 1,
            min_desc: 1,
            max_desc: 4096,
            default_desc: 512,
            desc_pow2: false,
            rx_offload_capa: RxOffloads::NONE,
            tx_offload_capa: TxOffloads::NONE,
            max_rx_pktlen: u32::from(DEFAULT_MTU) + L2_OVERHEAD,
            min_mtu: 68,
            max_mtu: DEFAULT_MTU,
            nb_seg_max: 1,
            nb_mtu_seg_max: 1,
        }
    }
}

/// Port configuration given to [`Port::configure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConf {
    /// Number of rx queues.
    pub rx_queues: u16,
    /// Number of tx queues.
    pub tx_queues: u16,
    /// Receive offloads for every queue; each must be in [`DevInfo::rx_offload_capa`].
    pub rx_offloads: RxOffloads,
    /// Transmit offloads for every queue; each must be in [`DevInfo::tx_offload_capa`].
    pub tx_offloads: TxOffloads,
    /// MTU to set (`None` keeps the device's own, or [`DEFAULT_MTU`]).
    pub mtu: Option<u16>,
}

impl Default for PortConf {
    fn default() -> Self {
        PortConf {
            rx_queues: 1,
            tx_queues: 1,
            rx_offloads: RxOffloads::NONE,
            tx_offloads: TxOffloads::NONE,
            mtu: None,
        }
    }
}

impl DevInfo {
    /// `wanted` descriptors brought within the device's limits (0 = its default), like
    /// DPDK's `rte_eth_dev_adjust_nb_rx_tx_desc`: clamped to `min_desc..=max_desc`, then,
    /// for a device that needs powers of two, rounded up to one (down if that passes
    /// `max_desc`).
    pub fn clamp_desc(&self, wanted: u16) -> u16 {
        if wanted == 0 {
            return self.default_desc;
        }
        let n = wanted.clamp(self.min_desc, self.max_desc);
        if !self.desc_pow2 || n.is_power_of_two() {
            return n;
        }
        match n.checked_next_power_of_two() {
            Some(up) if up <= self.max_desc => up,
            _ => 1 << (15 - n.leading_zeros().min(15)),
        }
    }

    /// Whether a queue of `n` descriptors (not 0, which means the default) is within the
    /// device's limits.
    pub fn desc_ok(&self, n: u16) -> bool {
        (self.min_desc..=self.max_desc).contains(&n) && (!self.desc_pow2 || n.is_power_of_two())
    }

    /// The descriptor counts the device takes, in words: `64..=4096, a power of two`.
    pub fn desc_limits(&self) -> String {
        let pow2 = if self.desc_pow2 {
            ", a power of two"
        } else {
            ""
        };
        format!("{}..={}{pow2}", self.min_desc, self.max_desc)
    }

    /// Checks a descriptor count typed by a user (0: the default); the error is one
    /// sentence naming the PMD and its limits, e.g. `net_ixgbe takes 64..=4096
    /// descriptors per queue, a power of two (0: its default, 512)`.
    pub fn check_desc(&self, n: u16) -> std::result::Result<(), String> {
        if n == 0 || self.desc_ok(n) {
            return Ok(());
        }
        let pow2 = if self.desc_pow2 {
            ", a power of two"
        } else {
            ""
        };
        Err(format!(
            "{} takes {}..={} descriptors per queue{pow2} (0: its default, {})",
            self.driver, self.min_desc, self.max_desc, self.default_desc
        ))
    }
}

/// Everything a driver needs to set up an rx queue.
#[derive(Clone, Debug)]
pub struct RxQueueConf {
    /// The port the queue belongs to (drivers stamp it into received buffers).
    pub port: PortId,
    /// Descriptors (already validated against [`DevInfo`]).
    pub nb_desc: u16,
    /// Pool to fill the queue from.
    pub pool: Mempool,
    /// Counters the queue updates (the queue is their only writer).
    pub stats: Arc<QueueStats>,
    /// Receive offloads asked for (port-wide plus per-queue; all within the device's
    /// capabilities). Without [`RxOffloads::SCATTER`], a frame larger than one buffer is
    /// dropped and counted as an error; with it, it arrives as a chain.
    pub offloads: RxOffloads,
    /// Largest frame the port accepts now (MTU plus [`L2_OVERHEAD`]).
    pub max_rx_pktlen: u32,
}

/// Everything a driver needs to set up a tx queue.
#[derive(Clone, Debug)]
pub struct TxQueueConf {
    /// Descriptors (already validated against [`DevInfo`]).
    pub nb_desc: u16,
    /// Counters the queue updates (the queue is their only writer).
    pub stats: Arc<QueueStats>,
    /// Transmit offloads asked for (port-wide plus per-queue, within capabilities).
    pub offloads: TxOffloads,
}

/// A PCI vendor/device id pair that a driver claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciId {
    /// Vendor id (e.g. 0x8086).
    pub vendor: u16,
    /// Device id.
    pub device: u16,
}

/// A resource only one port may hold (a kernel interface, a control socket), as a driver
/// reads it from a vdev's arguments. Before probing anything, the EAL refuses two vdevs
/// that claim equal resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExclusiveResource {
    /// What is claimed, as the error names it (e.g. `interface veth0`); two claims are
    /// of the same resource when these are equal, whichever drivers make them.
    pub what: String,
    /// What to do instead, e.g. `give each port its own interface`.
    pub fix: String,
}

impl ExclusiveResource {
    /// A kernel network interface, the same resource whichever driver binds it.
    pub fn interface(name: &str) -> Self {
        ExclusiveResource {
            what: format!("interface {name}"),
            fix: "give each port its own interface".into(),
        }
    }

    /// `path` made absolute and lexically clean (no `.`, no doubled `/`), so that two
    /// spellings of one file compare equal; the file system is not consulted.
    pub fn path_name(path: &std::path::Path) -> String {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        abs.components()
            .collect::<std::path::PathBuf>()
            .display()
            .to_string()
    }
}

/// A poll-mode driver: claims `--vdev` names by prefix (virtual devices) and/or PCI ids
/// (devices the EAL opened through VFIO or UIO), and creates devices.
pub trait Driver: Sync {
    /// The vdev name prefix this driver claims (e.g. `net_null` for `net_null0`), or its
    /// name (e.g. `net_igb`) for a PCI driver.
    fn name(&self) -> &'static str;
    /// One line on what the driver does and its arguments, for `--help`.
    fn description(&self) -> &'static str;
    /// Creates a device for `vdev`; bad arguments give an error that names them. The
    /// default is for PCI-only drivers: an error that says to pass the device with `-a`.
    fn probe(&self, vdev: &VdevSpec) -> Result<Box<dyn Device>> {
        Err(crate::Error::driver(
            self.name(),
            format!(
                "{} is a PCI driver: pass the device with -a <PCI address>",
                vdev.name
            ),
        ))
    }
    /// The resource `vdev` would hold alone, if any (the default: none). Read from the
    /// arguments only, touching nothing; arguments the driver cannot read give `None`
    /// (probing reports them).
    fn exclusive_resource(&self, _vdev: &VdevSpec) -> Option<ExclusiveResource> {
        None
    }
    /// PCI ids this driver claims (none for virtual-device drivers).
    fn pci_ids(&self) -> &'static [PciId] {
        &[]
    }
    /// Creates a device for an opened PCI function whose id is in [`Driver::pci_ids`].
    fn probe_pci(&self, dev: Arc<dyn crate::pci::PciBackend>) -> Result<Box<dyn Device>> {
        Err(crate::Error::driver(
            self.name(),
            format!("is not a PCI driver (asked to take {})", dev.addr()),
        ))
    }
}

/// One network device, driven through a [`Port`] (which enforces the call order).
pub trait Device: Send {
    /// Capabilities.
    fn info(&self) -> DevInfo;
    /// Applies a configuration (called while stopped).
    fn configure(&mut self, conf: &PortConf) -> Result<()>;
    /// Creates rx queue `qid` (< configured count).
    fn setup_rx_queue(&mut self, qid: u16, conf: RxQueueConf) -> Result<Box<dyn RxQueue>>;
    /// Creates tx queue `qid` (< configured count).
    fn setup_tx_queue(&mut self, qid: u16, conf: TxQueueConf) -> Result<Box<dyn TxQueue>>;
    /// Starts packet flow.
    fn start(&mut self) -> Result<()>;
    /// Stops packet flow.
    fn stop(&mut self) -> Result<()>;
    /// Releases device resources (queues may still exist and must stay memory-safe).
    fn close(&mut self) {}
    /// Current link state.
    fn link(&self) -> Link;
    /// The device's link-state-change interrupt, if it has one: a descriptor that becomes
    /// readable when the link may have changed (DPDK's LSC interrupt). It stays readable
    /// until [`Device::link_intr_ack`]. `None`: the link is polled ([`Port::link_changed`]).
    fn link_intr_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
    /// Acknowledges a link interrupt that fired (drains its descriptor and clears the
    /// cause), so the next change signals again; the link is read after this.
    fn link_intr_ack(&self) {}
    /// The device's MAC address.
    fn mac_addr(&self) -> MacAddr;
    /// Turns promiscuous mode on or off.
    fn set_promiscuous(&mut self, on: bool) -> Result<()>;
    /// Whether promiscuous mode is on.
    fn promiscuous(&self) -> bool;
    /// Replaces the multicast addresses the port receives besides its own (DPDK's
    /// `rte_eth_dev_set_mc_addr_list`). The default: not supported.
    fn set_mc_addr_list(&mut self, list: &[MacAddr]) -> Result<()> {
        let _ = list;
        Err(crate::Error::Config(
            "this driver has no multicast filter list; use promiscuous mode".into(),
        ))
    }
    /// Adds (`on`) or removes a VLAN filter (DPDK's `rte_eth_dev_vlan_filter`). The
    /// default: not supported.
    fn vlan_filter(&mut self, vlan: u16, on: bool) -> Result<()> {
        let _ = (vlan, on);
        Err(crate::Error::Config(
            "this driver has no VLAN filter; tagged frames are received as they come".into(),
        ))
    }
    /// Driver-specific counters, by name.
    fn xstats(&self) -> Vec<(String, u64)> {
        Vec::new()
    }
    /// Packets dropped on receive below the queues (by the kernel under a socket-based
    /// port, say) that no queue counted, since the port was probed. Read when the port's
    /// statistics are read, as DPDK's `stats_get` does, so the rx path makes no system
    /// call for it; added to `imissed`.
    fn rx_missed(&self) -> u64 {
        0
    }
    /// The MTU of the device itself when it has one (a kernel interface's), else `None`
    /// (the port keeps the value).
    fn mtu(&self) -> Option<u16> {
        None
    }
    /// Applies an MTU already checked against [`DevInfo::min_mtu`]/[`DevInfo::max_mtu`].
    /// The default accepts it: a software port has no wire of its own.
    fn set_mtu(&mut self, _mtu: u16) -> Result<()> {
        Ok(())
    }
}

/// What arming a queue found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Armed {
    /// Nothing waiting: the queue's descriptor becomes readable when a packet arrives.
    Sleep,
    /// Packets arrived before the interrupt was armed: poll instead of sleeping.
    Ready,
}

/// Why a queue could not be armed.
#[derive(Debug, thiserror::Error)]
pub enum IntrError {
    /// The PMD has no rx interrupts (the queue must be polled).
    #[error("the PMD has no rx interrupts")]
    Unsupported,
    /// A system call failed while arming.
    #[error("arming the rx interrupt: {0}")]
    Io(#[from] std::io::Error),
}

/// The driver side of an rx queue.
pub trait RxQueue: Send {
    /// Appends up to `max` received packets (`max <= batch.spare()`) to `batch`; returns
    /// how many. Updates its [`QueueStats`].
    fn rx_burst(&mut self, batch: &mut PktBatch, max: usize) -> usize;
    /// Whether this queue can wake a sleeping thread ([`RxQueue::intr_enable`] works).
    fn has_intr(&self) -> bool {
        false
    }
    /// Arms the queue's interrupt, then looks at the ring once more: `Armed::Ready` if
    /// packets came in meanwhile (poll, do not sleep), else `Armed::Sleep` and
    /// [`RxQueue::intr_fd`] becomes readable when one arrives. The default: no interrupts.
    fn intr_enable(&mut self) -> std::result::Result<Armed, IntrError> {
        Err(IntrError::Unsupported)
    }
    /// Disarms the interrupt and consumes what it signalled (the thread polls again).
    fn intr_disable(&mut self) {}
    /// The descriptor to wait on while armed; `None` while there is none (a peer not yet
    /// connected: the sleeper's timeout covers it).
    fn intr_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
}

/// The driver side of a tx queue.
pub trait TxQueue: Send {
    /// Sends packets from the front of `batch`, removing those it took; returns how many.
    /// Packets it could not send stay in `batch`, in order. Updates its [`QueueStats`].
    /// An empty batch sends nothing and returns 0.
    fn tx_burst(&mut self, batch: &mut PktBatch) -> usize;
    /// Pushes out whatever the driver still holds back from earlier bursts (a doorbell
    /// that could not be rung, buffered file records, completions not yet reclaimed).
    /// Applications call it when they have nothing to send for a while. The default does
    /// nothing: a driver whose bursts leave nothing behind needs no flush.
    fn flush(&mut self) {}
    /// Gets packets with transmit offload requests ready for this queue (DPDK's
    /// `rte_eth_tx_prepare`): checks their header lengths and writes what the device
    /// expects (by default the pseudo-header sums of [`crate::offload::prepare`]). Returns
    /// how many packets from the front are ready; the first one that is not stops it.
    fn tx_prepare(&mut self, batch: &mut PktBatch) -> usize {
        crate::offload::prepare_batch(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_limits() {
        let ring = DevInfo {
            driver: "net_x",
            min_desc: 64,
            max_desc: 4096,
            desc_pow2: true,
            ..DevInfo::default()
        };
        assert_eq!(ring.desc_limits(), "64..=4096, a power of two");
        assert!(ring.desc_ok(64) && ring.desc_ok(4096) && ring.desc_ok(1024));
        assert!(!ring.desc_ok(32) && !ring.desc_ok(100) && !ring.desc_ok(8192));
        assert_eq!(ring.check_desc(0), Ok(()));
        assert_eq!(ring.check_desc(512), Ok(()));
        for bad in [1, 63, 100, 1000, 4095, 8192, u16::MAX] {
            assert_eq!(
                ring.check_desc(bad),
                Err(
                    "net_x takes 64..=4096 descriptors per queue, a power of two \
                     (0: its default, 512)"
                        .into()
                ),
                "{bad}"
            );
        }
        // Like rte_eth_dev_adjust_nb_rx_tx_desc: clamped, then aligned.
        assert_eq!(
            [0, 1, 100, 512, 1000, 5000, u16::MAX].map(|n| ring.clamp_desc(n)),
            [512, 64, 128, 512, 1024, 4096, 4096]
        );
        let odd_max = DevInfo {
            max_desc: 3000,
            ..ring.clone()
        };
        assert_eq!(odd_max.clamp_desc(2500), 2048);
        let any = DevInfo::default();
        assert_eq!(any.desc_limits(), "1..=4096");
        assert!(any.desc_ok(100));
        assert_eq!(any.clamp_desc(100), 100);
        assert!(any
            .check_desc(5000)
            .unwrap_err()
            .ends_with("1..=4096 descriptors per queue (0: its default, 512)"));
    }

    #[test]
    fn mac_parse_and_display() {
        let m: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        assert_eq!(m, MacAddr::local(1));
        assert_eq!(m.to_string(), "02:00:00:00:00:01");
        assert_eq!("aa-bb-cc-dd-ee-ff".parse::<MacAddr>().unwrap().0[5], 0xff);
        for bad in [
            "",
            "02:00",
            "02:00:00:00:00:01:03",
            "zz:00:00:00:00:00",
            "2:0:0:0:0:1",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn link_display() {
        assert_eq!(Link::default().to_string(), "down");
        let l = Link {
            up: true,
            speed_mbps: 10000,
            full_duplex: true,
        };
        assert_eq!(l.to_string(), "up 10000 Mbps full-duplex");
    }
}
