//! `net_af_packet`: a poll-mode driver for any Linux network interface, through
//! `AF_PACKET` sockets with memory-mapped `TPACKET_V2` rx and tx rings (`PACKET_MMAP`).
//!
//! ```text
//! --vdev net_af_packet0,iface=eth0[,qpairs=N][,blocksz=B][,framesz=F][,framecnt=C][,qdisc_bypass=0|1]
//! ```
//!
//! | argument       | default | meaning                                                      |
//! |----------------|---------|--------------------------------------------------------------|
//! | `iface`        | —       | interface to attach to (required; see `ip link`)             |
//! | `qpairs`       | 1       | queue pairs, 1..=16: one socket each, in a `PACKET_FANOUT_HASH` group |
//! | `blocksz`      | 4096, or one frame | ring block size, a multiple of the page size and at least a frame |
//! | `framesz`      | from the MTU | ring frame size, a multiple of 16; by default 2048, or larger to hold a whole frame of the interface's MTU (up to 16384) |
//! | `framecnt`     | 512     | frames per ring (per direction and queue pair)               |
//! | `qdisc_bypass` | 0       | 1: transmit with `PACKET_QDISC_BYPASS` (skips the qdisc layer) |
//!
//! Each queue pair owns one socket, bound to the interface with `ETH_P_ALL`, whose rx and tx
//! rings share one mapping. Received frames are copied into mbufs; transmitted packets are
//! copied into the tx ring and one `sendto` per burst tells the kernel to send them. The
//! socket does not see its own transmissions (`PACKET_IGNORE_OUTGOING`, or a filter on the
//! packet type on kernels older than 4.20). Kernel drops (`PACKET_STATISTICS`) are reported
//! as missed packets, read when the port's statistics are read (not on the rx path).
//!
//! Frames up to the interface's MTU (plus the Ethernet header and two VLAN tags) fit a
//! ring frame: without `framesz`, frames are sized from the MTU read at probe; a `framesz`
//! too small for the MTU is refused at probe and start. A frame longer than one mbuf
//! arrives as a chain with the `SCATTER` rx offload, and is counted as an rx error
//! without it. Transmitted chains are copied segment by segment.
//!
//! A frame leaves as it came: the kernel takes the (outer) VLAN tag out of received frames
//! and reports it beside them; the driver puts it back, so received bytes equal the wire
//! bytes. With the `VLAN_STRIP` rx offload it stays out, in `vlan_tci` with
//! `RX_VLAN | RX_VLAN_STRIPPED`. On tx, `TX_VLAN` / `TX_QINQ` tags are written while copying.
//!
//! Offloads (`PACKET_VNET_HDR`): when the configuration asks for `TCP_LRO`, `TCP_CKSUM`
//! or `UDP_CKSUM` on rx, or `TCP_TSO`, `TCP_CKSUM`, `UDP_CKSUM` or `IPV4_CKSUM` on tx, the
//! sockets are reopened with a `struct virtio_net_hdr` in front of every frame, and rings
//! whose frames hold a 64 KiB super-frame (see `Config::geometry_for_vnet`; without these
//! offloads nothing changes). The kernel then hands over GSO super-frames whole, with
//! partial checksums: with `TCP_LRO` they are delivered as `RX_LRO` chains (`tso_segsz`
//! and the header lengths set), otherwise cut into MSS-sized packets in software; partial
//! checksums are completed. Every header is checked against its frame first (the
//! header logic is `pmd_core::vnet`'s); a header that does not fit is dropped, counted as
//! an rx error and by kind in the xstats (`rx_vnet_err_*`). On tx, `TX_TCP_SEG` packets
//! (and, with `TCP_TSO`, received super-frames) go to the kernel as GSO frames, and L4
//! checksum requests as partial checksums, which the kernel (or the device) completes.
//!
//! The driver never changes the interface's state (except its MTU, when asked): if it is down, the link reports down and
//! no packets flow. Promiscuous mode is a `PACKET_MR_PROMISC` membership, dropped with the
//! device. Opening the sockets needs `CAP_NET_RAW`.

mod config;
mod rxtx;
mod socket;
mod sys;

pub use rxtx::{AfPacketRxQueue, AfPacketTxQueue};
pub use rxtx::{RX_VNET, TX_VNET};

use config::Config;
use pmd_core::devargs::VdevSpec;
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::{
    DevInfo, Device, Driver, ExclusiveResource, Link, MacAddr, PortConf, RxOffloads, RxQueue,
    RxQueueConf, TxOffloads, TxQueue, TxQueueConf,
};
use pmd_core::netif::{self, Interface, NetifError};
use pmd_core::vnet::{RxProcessor, VnetStats};
use socket::{OpenError, SocketSet};
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

/// The driver name, and the vdev prefix it claims.
pub const DRIVER_NAME: &str = "net_af_packet";

/// The `AF_PACKET` driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct AfPacketDriver;

/// The driver instance to register.
pub static DRIVER: AfPacketDriver = AfPacketDriver;

fn needs_cap(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

impl Driver for AfPacketDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    fn description(&self) -> &'static str {
        "AF_PACKET (PACKET_MMAP) on a Linux interface: iface=NAME[,qpairs=1..16]\
         [,blocksz=4096][,framesz=2048 or from the MTU][,framecnt=512][,qdisc_bypass=0|1]"
    }

    fn probe(&self, vdev: &VdevSpec) -> Result<Box<dyn Device>> {
        Ok(Box::new(AfPacketDevice::open(vdev)?))
    }

    /// The interface: two ports on one would each receive every frame.
    fn exclusive_resource(&self, vdev: &VdevSpec) -> Option<ExclusiveResource> {
        let cfg = Config::from_vdev(vdev).ok()?;
        Some(ExclusiveResource::interface(&cfg.iface))
    }
}

/// One `AF_PACKET` device: an interface and one socket per queue pair.
pub struct AfPacketDevice {
    name: String,
    cfg: Config,
    ifindex: u32,
    mac: MacAddr,
    /// The interface, its requests going through an `AF_PACKET` socket that receives
    /// nothing; `None` once closed.
    netif: Option<Interface>,
    /// The queue sockets; `None` once closed.
    set: Option<SocketSet>,
    conf: PortConf,
    promisc: bool,
    /// Received super-frames are kept whole (`TCP_LRO` configured).
    lro: bool,
    /// Received super-frames go out as GSO frames (`TCP_TSO` configured).
    tso: bool,
    /// Counters of the vnet path, shared with the queues.
    vstats: Arc<VnetStats>,
    /// Kernel drops of socket sets already replaced or closed.
    missed_retired: u64,
}

impl std::fmt::Debug for AfPacketDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketDevice")
            .field("name", &self.name)
            .field("iface", &self.cfg.iface)
            .field("ifindex", &self.ifindex)
            .field("qpairs", &self.cfg.qpairs)
            .finish()
    }
}

impl AfPacketDevice {
    /// Validates the arguments, finds the interface and opens its sockets.
    pub fn open(vdev: &VdevSpec) -> Result<AfPacketDevice> {
        let mut cfg = Config::from_vdev(vdev)?;
        let name = vdev.name.clone();
        let ctrl = netif::packet_socket().map_err(|e| {
            if needs_cap(&e) {
                Error::driver(
                    name.clone(),
                    format!("AF_PACKET needs CAP_NET_RAW: run as root ({e})"),
                )
            } else {
                Error::io(format!("{name}: socket(AF_PACKET)"), e)
            }
        })?;
        let netif = Interface::by_name_on(ctrl, &cfg.iface).map_err(|e| match e {
            NetifError::NotFound { .. } => Error::driver(
                name.clone(),
                format!("interface '{}' not found (see `ip link`)", cfg.iface),
            ),
            e => Error::io(
                format!("{name}: looking up interface '{}'", cfg.iface),
                e.into(),
            ),
        })?;
        let ifindex = netif.index();
        let mac = netif
            .mac()
            .map(MacAddr)
            .map_err(|e| Error::io(format!("{name}: MAC address of '{}'", cfg.iface), e.into()))?;
        let mtu = netif
            .mtu()
            .map_err(|e| Error::io(format!("{name}: MTU of '{}'", cfg.iface), e.into()))?;
        let (geom, capped) = cfg
            .geometry_for_mtu(mtu)
            .map_err(|m| Error::driver(name.clone(), m))?;
        if capped {
            tracing::warn!(
                "{name}: '{}' has MTU {mtu}; ring frames of {} bytes hold frames up to MTU {} \
                 only, longer ones are counted as rx errors (give framesz to go further)",
                cfg.iface,
                geom.frame_size,
                sys::max_mtu_for_frame(geom.frame_size)
            );
        }
        cfg.geom = geom;
        let q = usize::from(cfg.qpairs);
        let set = SocketSet::open(&cfg, ifindex, q, q).map_err(|e| open_error(&name, &cfg, e))?;
        tracing::info!(
            "{name}: AF_PACKET on {} (ifindex {ifindex}, {mac}), {} queue pair(s), {} frames of {} bytes",
            cfg.iface,
            cfg.qpairs,
            cfg.geom.frame_nr,
            cfg.geom.frame_size
        );
        Ok(AfPacketDevice {
            name,
            ifindex,
            mac,
            netif: Some(netif),
            set: Some(set),
            conf: PortConf {
                rx_queues: cfg.qpairs,
                tx_queues: cfg.qpairs,
                ..Default::default()
            },
            cfg,
            promisc: false,
            lro: false,
            tso: false,
            vstats: Arc::default(),
            missed_retired: 0,
        })
    }

    fn closed(&self) -> Error {
        Error::driver(self.name.clone(), "the device is closed")
    }

    fn sockets(&self) -> Result<&SocketSet> {
        self.set.as_ref().ok_or_else(|| self.closed())
    }

    fn netif(&self) -> Result<&Interface> {
        self.netif.as_ref().ok_or_else(|| self.closed())
    }

    /// The interface's MTU now.
    fn iface_mtu(&self) -> Result<u32> {
        self.netif()?.mtu().map_err(|e| {
            Error::io(
                format!("{}: MTU of '{}'", self.name, self.cfg.iface),
                e.into(),
            )
        })
    }

    /// Gives the first socket of `set` the promiscuous membership (the device's setting
    /// carried over to reopened sockets).
    fn set_packet_promisc(&self, set: &SocketSet) -> Result<()> {
        self.netif()?
            .set_packet_promisc(set.socks[0].as_fd(), true)
            .map_err(|e| {
                Error::io(
                    format!("{}: enabling promiscuous mode", self.name),
                    e.into(),
                )
            })
    }

    /// The interface's MTU now, checked against the ring frames.
    /// Installs `new` as the queue sockets, keeping the kernel drops of the old ones.
    fn replace_set(&mut self, new: Option<SocketSet>) {
        if let Some(old) = &self.set {
            self.missed_retired += kernel_drops(old);
        }
        self.set = new;
    }

    fn check_mtu_fits(&self) -> Result<()> {
        let mtu = self.iface_mtu()?;
        let frame = self.cfg.geom.frame_size;
        if mtu > sys::max_mtu_for_frame(frame) {
            return Err(Error::driver(
                self.name.clone(),
                format!(
                    "interface '{}' has MTU {mtu}, whose frames need framesz >= {}, but the \
                     rings have {frame}-byte frames: set the MTU through the port before \
                     setting up queues, probe with a larger framesz, or lower the MTU",
                    self.cfg.iface,
                    sys::frame_size_for_mtu(mtu)
                ),
            ));
        }
        Ok(())
    }
}

/// Most segments of a transmitted packet (every segment is copied into one ring frame).
const NB_SEG_MAX: u16 = pmd_core::mbuf::MAX_SEGS;

fn open_error(name: &str, cfg: &Config, e: OpenError) -> Error {
    if needs_cap(&e.err) {
        return Error::driver(
            name,
            format!(
                "AF_PACKET needs CAP_NET_RAW: run as root ({}: {})",
                e.step, e.err
            ),
        );
    }
    Error::io(format!("{name}: {} on '{}'", e.step, cfg.iface), e.err)
}

impl Device for AfPacketDevice {
    fn info(&self) -> DevInfo {
        let desc = u16::try_from(self.cfg.geom.frame_nr).unwrap_or(u16::MAX);
        // What the ring frames hold (or, with frames sized from the MTU, could be regrown to).
        let max_mtu = self.cfg.max_mtu().min(u32::from(u16::MAX));
        DevInfo {
            driver: DRIVER_NAME,
            max_rx_queues: self.cfg.qpairs,
            max_tx_queues: self.cfg.qpairs,
            // The ring size is set by framecnt at probe; any requested count is accepted.
            min_desc: 1,
            max_desc: u16::MAX,
            default_desc: desc,
            desc_pow2: false,
            rx_offload_capa: RxOffloads::VLAN_STRIP | RxOffloads::SCATTER | RX_VNET,
            tx_offload_capa: TxOffloads::VLAN_INSERT
                | TxOffloads::QINQ_INSERT
                | TxOffloads::MULTI_SEGS
                | TX_VNET,
            max_rx_pktlen: max_mtu + sys::L2_OVERHEAD as u32,
            min_mtu: 68,
            max_mtu: u16::try_from(max_mtu).unwrap_or(u16::MAX),
            nb_seg_max: NB_SEG_MAX,
            nb_mtu_seg_max: NB_SEG_MAX,
        }
    }

    /// Accepts up to `qpairs` queues each way. If fewer rx queues than open sockets
    /// would receive, the sockets are reopened so that traffic is spread (fanout) only
    /// over the rx queues that will be polled; extra tx-only sockets receive nothing.
    fn configure(&mut self, conf: &PortConf) -> Result<()> {
        let max = self.cfg.qpairs;
        for (kind, n) in [("rx", conf.rx_queues), ("tx", conf.tx_queues)] {
            if n == 0 || n > max {
                return Err(Error::driver(
                    self.name.clone(),
                    format!("{n} {kind} queues requested; qpairs={max} allows 1..={max}"),
                ));
            }
        }
        let rx = usize::from(conf.rx_queues);
        let total = usize::from(conf.rx_queues.max(conf.tx_queues));
        let vnet =
            !(conf.rx_offloads & RX_VNET).is_empty() || !(conf.tx_offloads & TX_VNET).is_empty();
        let mut cfg = self.cfg.clone();
        if vnet != cfg.vnet {
            cfg.vnet = vnet;
            cfg.geom = if vnet {
                cfg.geometry_for_vnet()
            } else {
                cfg.geometry_for_mtu(self.iface_mtu()?).map(|(g, _)| g)
            }
            .map_err(|m| Error::driver(self.name.clone(), m))?;
        }
        let set = self.sockets()?;
        if set.rx != rx || set.socks.len() != total || cfg.vnet != self.cfg.vnet {
            let new = SocketSet::open(&cfg, self.ifindex, rx, total)
                .map_err(|e| open_error(&self.name, &cfg, e))?;
            if self.promisc {
                self.set_packet_promisc(&new)?;
            }
            if cfg.vnet != self.cfg.vnet {
                tracing::info!(
                    "{}: virtio-net headers {} ({} frames of {} bytes)",
                    self.name,
                    if cfg.vnet { "on" } else { "off" },
                    cfg.geom.frame_nr,
                    cfg.geom.frame_size
                );
            }
            self.replace_set(Some(new));
            self.cfg = cfg;
        }
        self.lro = conf.rx_offloads.contains(RxOffloads::TCP_LRO);
        self.tso = conf.tx_offloads.contains(TxOffloads::TCP_TSO);
        self.conf = conf.clone();
        Ok(())
    }

    fn setup_rx_queue(&mut self, qid: u16, conf: RxQueueConf) -> Result<Box<dyn RxQueue>> {
        let set = self.sockets()?;
        if qid >= self.conf.rx_queues {
            return Err(Error::driver(
                self.name.clone(),
                format!(
                    "rx queue {qid} does not exist ({} configured)",
                    self.conf.rx_queues
                ),
            ));
        }
        let sock = set.socks[usize::from(qid)].clone();
        let vnet = sock.vnet.then(|| RxProcessor {
            lro: self.lro || conf.offloads.contains(RxOffloads::TCP_LRO),
            stats: self.vstats.clone(),
        });
        let q = AfPacketRxQueue::new(sock, conf.port, conf.pool, conf.stats, conf.offloads, vnet)
            .ok_or_else(|| {
            Error::driver(
                self.name.clone(),
                format!("rx queue {qid} is already in use; drop it first"),
            )
        })?;
        Ok(Box::new(q))
    }

    fn setup_tx_queue(&mut self, qid: u16, conf: TxQueueConf) -> Result<Box<dyn TxQueue>> {
        let set = self.sockets()?;
        if qid >= self.conf.tx_queues {
            return Err(Error::driver(
                self.name.clone(),
                format!(
                    "tx queue {qid} does not exist ({} configured)",
                    self.conf.tx_queues
                ),
            ));
        }
        let sock = set.socks[usize::from(qid)].clone();
        let vnet = sock.vnet.then(|| rxtx::VnetTx {
            tso: self.tso || conf.offloads.contains(TxOffloads::TCP_TSO),
            stats: self.vstats.clone(),
        });
        let q = AfPacketTxQueue::new(sock, conf.stats, vnet).ok_or_else(|| {
            Error::driver(
                self.name.clone(),
                format!("tx queue {qid} is already in use; drop it first"),
            )
        })?;
        Ok(Box::new(q))
    }

    fn start(&mut self) -> Result<()> {
        self.sockets()?;
        self.check_mtu_fits()?;
        if !self.link().up {
            tracing::warn!(
                "{}: interface '{}' is down or has no carrier; no packets will flow until it is up",
                self.name,
                self.cfg.iface
            );
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        Ok(())
    }

    fn close(&mut self) {
        // Queues keep their own references to their sockets and mappings.
        self.replace_set(None);
        self.netif = None;
        self.promisc = false;
    }

    fn link(&self) -> Link {
        self.netif.as_ref().map(Interface::link).unwrap_or_default()
    }

    fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        let set = self.sockets()?;
        if on == self.promisc {
            return Ok(());
        }
        let sock = set.socks[0].as_fd();
        self.netif()?.set_packet_promisc(sock, on).map_err(|e| {
            Error::io(
                format!(
                    "{}: turning promiscuous mode {}",
                    self.name,
                    if on { "on" } else { "off" }
                ),
                e.into(),
            )
        })?;
        self.promisc = on;
        Ok(())
    }

    fn promiscuous(&self) -> bool {
        self.promisc
    }

    /// The interface's MTU, read from the kernel (`None` once closed; 65535 for larger).
    fn mtu(&self) -> Option<u16> {
        let mtu = self.netif.as_ref()?.mtu().ok()?;
        Some(u16::try_from(mtu).unwrap_or(u16::MAX))
    }

    /// Sets the interface's MTU (SIOCSIFMTU, needs CAP_NET_ADMIN). When frames are sized
    /// from the MTU and the new one needs larger ring frames, the sockets are reopened,
    /// which needs every queue to be dropped first.
    fn set_mtu(&mut self, mtu: u16) -> Result<()> {
        let netif = self.netif()?;
        let set = self.sockets()?;
        let (geom, _) = self
            .cfg
            .geometry_for_mtu(u32::from(mtu))
            .map_err(|m| Error::driver(self.name.clone(), m))?;
        let grow = geom.frame_size > self.cfg.geom.frame_size;
        if grow
            && set.socks.iter().any(|s| {
                s.rx_claimed.load(std::sync::atomic::Ordering::Acquire)
                    || s.tx_claimed.load(std::sync::atomic::Ordering::Acquire)
            })
        {
            return Err(Error::driver(
                self.name.clone(),
                format!(
                    "MTU {mtu} needs {}-byte ring frames but the rings in use have {}: drop \
                     the port's queues, set the MTU, then set them up again (or probe with \
                     framesz={})",
                    geom.frame_size, self.cfg.geom.frame_size, geom.frame_size
                ),
            ));
        }
        netif.set_mtu(u32::from(mtu)).map_err(|e| {
            let e = io::Error::from(e);
            let what = format!(
                "{}: setting the MTU of '{}' to {mtu}{}",
                self.name,
                self.cfg.iface,
                if needs_cap(&e) {
                    " (needs CAP_NET_ADMIN)"
                } else {
                    ""
                }
            );
            Error::io(what, e)
        })?;
        if grow {
            let (rx, total) = (set.rx, set.socks.len());
            let mut cfg = self.cfg.clone();
            cfg.geom = geom;
            let new = SocketSet::open(&cfg, self.ifindex, rx, total)
                .map_err(|e| open_error(&self.name, &cfg, e))?;
            if self.promisc {
                self.set_packet_promisc(&new)?;
            }
            self.replace_set(Some(new));
            self.cfg = cfg;
            tracing::info!(
                "{}: MTU {mtu}: rings reopened with {}-byte frames",
                self.name,
                geom.frame_size
            );
        }
        Ok(())
    }

    fn rx_missed(&self) -> u64 {
        self.missed_retired + self.set.as_ref().map_or(0, kernel_drops)
    }

    /// Per receiving socket: packets the kernel saw and dropped (PACKET_STATISTICS); then
    /// whether vnet headers are on (`vnet_hdr`) and the vnet path's counters, refused
    /// headers by kind (`rx_vnet_err_*`).
    fn xstats(&self) -> Vec<(String, u64)> {
        let Some(set) = &self.set else {
            return Vec::new();
        };
        let mut v = Vec::new();
        v.push(("vnet_hdr".to_string(), u64::from(self.cfg.vnet)));
        v.extend(self.vstats.xstats());
        for (i, s) in set.socks.iter().take(set.rx).enumerate() {
            let _ = s.fetch_stats();
            v.push((
                format!("rx_q{i}_kernel_packets"),
                s.kernel_packets.load(std::sync::atomic::Ordering::Relaxed),
            ));
            v.push((
                format!("rx_q{i}_kernel_drops"),
                s.kernel_drops.load(std::sync::atomic::Ordering::Relaxed),
            ));
        }
        v
    }
}

/// Packets the kernel dropped on the receiving sockets of `set` (PACKET_STATISTICS, read
/// now; a failed read leaves the last total).
fn kernel_drops(set: &SocketSet) -> u64 {
    set.socks
        .iter()
        .take(set.rx)
        .map(|s| {
            let _ = s.fetch_stats();
            s.kernel_drops.load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum()
}
