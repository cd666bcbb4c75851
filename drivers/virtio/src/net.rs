//! The virtio-net PMD over any [`Transport`]: feature negotiation, receive and transmit
//! queues on split ([`SplitQueue`]) or packed ([`PackedQueue`]) virtqueues, and the ethdev
//! [`Device`] glue.
//!
//! Ring layout: split by default; packed when [`NetOptions::packed_vq`] asks for it and the
//! device offers `VIRTIO_F_RING_PACKED` (otherwise split, with a warning). The rx/tx queues
//! are generic over [`Virtqueue`], so either layout is statically dispatched per packet.
//!
//! Receive: each descriptor is one mbuf, device-writable, starting `hdr_len` bytes before
//! the mbuf's data offset (so the virtio-net header lands in the headroom and the frame at
//! the usual data offset). Harvested buffers become packets of `used.len - hdr_len` bytes;
//! the ring is refilled in bulk from the mempool. With `VIRTIO_NET_F_MRG_RXBUF` a packet
//! spanning several buffers (`num_buffers > 1`) becomes an mbuf chain when the queue has
//! SCATTER (dropped and counted otherwise). Every header field is validated first
//! ([`crate::hdr`]): bad checksum offsets, GSO types, `gso_size` 0, `hdr_len` or
//! `num_buffers` are counted errors with their own xstats. `NEEDS_CSUM`/`DATA_VALID` give
//! `RX_L4_CKSUM_GOOD`; a GSO frame (only with `GUEST_TSO4/6`, negotiated again at
//! configure when the port asks for TCP_LRO + SCATTER) is flagged `RX_LRO` with
//! `tso_segsz = gso_size`.
//!
//! Transmit: the header goes in the first segment's headroom; a packet of N segments is
//! one descriptor chain of N descriptors (header + first segment, then one per segment;
//! split: `next` links, packed: consecutive entries) when N <= `nb_seg_max` (min(ring,
//! [`TX_SEG_MAX`]); each segment's process address over vhost-user, its IOVA over PCI).
//! Longer chains are linearized (xstat `tx_linearized`) or dropped if they do not
//! fit their first buffer (`tx_too_many_segs`). A packet that needs more descriptors than
//! are free stays in the batch. Offloads: capabilities follow what was negotiated —
//! TCP/UDP_CKSUM with `CSUM` (a `NEEDS_CSUM` header, pseudo-header sum in the field),
//! TCP_TSO with `CSUM` + `HOST_TSO4/6` (gso_type/gso_size/hdr_len). A packet flagged
//! anyway gets its checksums computed in software; TSO without `HOST_TSO` for its IP
//! version, UDP segmentation or SCTP checksums are dropped and counted
//! (`tx_offload_errors`). The IPv4 header checksum is always computed here. Completed
//! chains are reclaimed in bursts (freeing their mbufs in bulk) when fewer than half the
//! descriptors are free or the burst does not fit. One notification per burst at most,
//! and only when the device asks.
//!
//! Control queue and multiqueue: when the transport can serve a control queue
//! ([`Transport::ctrl_mode`]), `VIRTIO_NET_F_CTRL_VQ` and `VIRTIO_NET_F_CTRL_RX` are asked
//! for, and `VIRTIO_NET_F_MQ` too when the transport reports more than one queue pair. At
//! each start the driver sends `MQ VQ_PAIRS_SET <configured pairs>` (with MQ) and
//! `RX PROMISC <mode>` (with CTRL_RX); [`Device::set_promiscuous`] sends `RX PROMISC` while
//! started. With [`CtrlMode::Device`] the commands go through a [`CtrlQueue`] at index
//! `2 * max_pairs` (1 pair without MQ); with [`CtrlMode::Emulated`] (vhost-user) the
//! transport executes them. Without `CTRL_RX` the port cannot leave promiscuous mode and
//! says so. A failed command at start fails the start.
//!
//! Memory: the rings of all queues live in one segment allocated at `configure`; buffers
//! live in mempool segments. Everything must exist before `start` (the vhost-user
//! transport sends its memory table then): see the crate documentation.

use crate::ctrl::{CtrlCommand, CtrlQueue};
use crate::hdr::{check_num_buffers, rx_hdr_apply, NetCounters, NetHdr};
use crate::queue::packed::PackedLayout;
use crate::queue::{AddrMode, Layout, PackedQueue, RingAddrs, SplitQueue, UsedElem, Virtqueue};
use crate::transport::{CtrlMode, Notifier, RingSetup, Transport};
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::{
    DevInfo, Device, Link, MacAddr, PortConf, QueueStats, RxOffloads, RxQueue, RxQueueConf,
    TxOffloads, TxQueue, TxQueueConf, L2_OVERHEAD,
};
use pmd_core::mbuf::{
    PktBatch, RawMbuf, BATCH_CAPACITY, TX_IPV4, TX_IPV6, TX_IP_CKSUM, TX_L4_MASK, TX_TCP_CKSUM,
    TX_TCP_SEG, TX_UDP_CKSUM, TX_UDP_SEG,
};
use pmd_core::memory::Segment;
use pmd_core::offload::OffloadError;
use pmd_core::vnet;
use pmd_core::Mempool;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Feature bit: the device completes partial checksums of transmitted packets
/// (`NEEDS_CSUM` headers): `TX_TCP_CKSUM` / `TX_UDP_CKSUM` offload.
pub const VIRTIO_NET_F_CSUM: u64 = 1 << 0;
/// Feature bit: the driver takes TCPv4 GSO super-frames on receive (`RX_LRO`).
pub const VIRTIO_NET_F_GUEST_TSO4: u64 = 1 << 7;
/// Feature bit: the driver takes TCPv6 GSO super-frames on receive (`RX_LRO`).
pub const VIRTIO_NET_F_GUEST_TSO6: u64 = 1 << 8;
/// Feature bit: the device segments TCPv4 super-frames (`TX_TCP_SEG`).
pub const VIRTIO_NET_F_HOST_TSO4: u64 = 1 << 11;
/// Feature bit: the device segments TCPv6 super-frames (`TX_TCP_SEG`).
pub const VIRTIO_NET_F_HOST_TSO6: u64 = 1 << 12;
/// Feature bit: the device has a MAC address in its configuration.
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// Largest frame the PMD takes: a jumbo frame with room to spare (DPDK's virtio allows
/// more; this is what is tested).
pub const MAX_FRAME: u32 = 9728;

/// Feature bit: the driver can merge receive buffers (header carries `num_buffers`).
pub const VIRTIO_NET_F_MRG_RXBUF: u64 = 1 << 15;
/// Feature bit: the driver accepts packets with a partial checksum (`NEEDS_CSUM`) and
/// checksum-validated packets (`DATA_VALID`).
pub const VIRTIO_NET_F_GUEST_CSUM: u64 = 1 << 1;
/// Feature bit: the configuration has a link status field.
pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
/// Feature bit: control virtqueue (asked for when the transport can serve one).
pub const VIRTIO_NET_F_CTRL_VQ: u64 = 1 << 17;
/// Feature bit: receive filtering commands (promiscuous, all-multicast) on the control queue.
pub const VIRTIO_NET_F_CTRL_RX: u64 = 1 << 18;
/// Feature bit: multiqueue with automatic receive steering (needs the control queue).
pub const VIRTIO_NET_F_MQ: u64 = 1 << 22;
/// Feature bit: indirect descriptors (not used).
pub const VIRTIO_F_INDIRECT_DESC: u64 = 1 << 28;
/// Feature bit: `used_event` / `avail_event` notification suppression.
pub const VIRTIO_F_EVENT_IDX: u64 = 1 << 29;
/// Feature bit: virtio 1.x (modern) device; the net header is always 12 bytes.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Feature bit: packed virtqueues (asked for with [`NetOptions::packed_vq`]).
pub const VIRTIO_F_RING_PACKED: u64 = 1 << 34;

/// Features the net layer asks for (the transport may add its own).
///
/// `GUEST_TSO4/6` are not among them: they are negotiated again at configure when the
/// port asks for [`RxOffloads::TCP_LRO`] (DPDK's rule: no super-frames unless asked).
pub const WANTED_FEATURES: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_NET_F_MAC
    | VIRTIO_NET_F_MRG_RXBUF
    | VIRTIO_F_EVENT_IDX
    | VIRTIO_NET_F_GUEST_CSUM
    | VIRTIO_NET_F_CSUM
    | VIRTIO_NET_F_HOST_TSO4
    | VIRTIO_NET_F_HOST_TSO6;

/// `GUEST_TSO4 | GUEST_TSO6`: asked for only with [`RxOffloads::TCP_LRO`].
pub const GUEST_TSO: u64 = VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6;

/// Most descriptors (segments) one transmitted packet may take.
pub const TX_SEG_MAX: u16 = 64;

/// Net header GSO type: not a GSO frame (the shared definition, [`pmd_core::vnet`]).
pub const VIRTIO_NET_HDR_GSO_NONE: u8 = vnet::GSO_NONE;
/// Net header GSO type: TCPv4 super-frame.
pub const VIRTIO_NET_HDR_GSO_TCPV4: u8 = vnet::GSO_TCPV4;
/// Net header GSO type: UDP fragmentation (UFO; never negotiated here).
pub const VIRTIO_NET_HDR_GSO_UDP: u8 = vnet::GSO_UDP;
/// Net header GSO type: TCPv6 super-frame.
pub const VIRTIO_NET_HDR_GSO_TCPV6: u8 = vnet::GSO_TCPV6;
/// Net header GSO type bit: the TCP ECN/CWR flag must be kept on every segment.
pub const VIRTIO_NET_HDR_GSO_ECN: u8 = vnet::GSO_ECN;

/// Net header flag: the packet's L4 checksum is partial; the driver completes it from
/// `csum_start`, storing the result at `csum_start + csum_offset`.
pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = vnet::F_NEEDS_CSUM;
/// Net header flag: the device has validated the packet's checksums.
pub const VIRTIO_NET_HDR_F_DATA_VALID: u8 = vnet::F_DATA_VALID;

/// Size of `struct virtio_net_hdr` without `num_buffers`.
pub const NET_HDR_LEN_LEGACY: usize = 10;
/// Size of `struct virtio_net_hdr` with `num_buffers` (virtio 1.x, or MRG_RXBUF).
pub const NET_HDR_LEN: usize = 12;

/// Header length for a negotiated feature set.
pub fn net_hdr_len(features: u64) -> usize {
    if features & (VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MRG_RXBUF) != 0 {
        NET_HDR_LEN
    } else {
        NET_HDR_LEN_LEGACY
    }
}

/// Names of the feature bits this driver knows, for logs.
pub fn feature_names(features: u64) -> String {
    const NAMES: &[(u64, &str)] = &[
        (VIRTIO_NET_F_CSUM, "CSUM"),
        (VIRTIO_NET_F_GUEST_CSUM, "GUEST_CSUM"),
        (VIRTIO_NET_F_GUEST_TSO4, "GUEST_TSO4"),
        (VIRTIO_NET_F_GUEST_TSO6, "GUEST_TSO6"),
        (VIRTIO_NET_F_HOST_TSO4, "HOST_TSO4"),
        (VIRTIO_NET_F_HOST_TSO6, "HOST_TSO6"),
        (VIRTIO_NET_F_MAC, "MAC"),
        (VIRTIO_NET_F_MRG_RXBUF, "MRG_RXBUF"),
        (VIRTIO_NET_F_STATUS, "STATUS"),
        (VIRTIO_NET_F_CTRL_VQ, "CTRL_VQ"),
        (VIRTIO_NET_F_CTRL_RX, "CTRL_RX"),
        (VIRTIO_NET_F_MQ, "MQ"),
        (VIRTIO_F_INDIRECT_DESC, "INDIRECT_DESC"),
        (VIRTIO_F_EVENT_IDX, "EVENT_IDX"),
        (1 << 30, "PROTOCOL_FEATURES"),
        (VIRTIO_F_VERSION_1, "VERSION_1"),
        (VIRTIO_F_RING_PACKED, "RING_PACKED"),
    ];
    let v: Vec<&str> = NAMES
        .iter()
        .filter(|(b, _)| features & b != 0)
        .map(|(_, n)| *n)
        .collect();
    v.join("|")
}

/// Refill the receive ring once this many descriptors are free.
const RX_REFILL_MIN: usize = 32;

/// Settings of a virtio-net device that do not come from the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConf {
    /// Driver name reported in [`DevInfo`] (`net_virtio_user` or `net_virtio`).
    pub driver: &'static str,
    /// Device name (the vdev name).
    pub name: String,
    /// Descriptors per queue (the most a queue may use; a power of two).
    pub queue_size: u16,
    /// Queue pairs the application may configure.
    pub queue_pairs: u16,
    /// MAC address to use when the transport has none.
    pub mac: MacAddr,
}

/// Driver options that change what is negotiated (vdev arguments beyond [`NetConf`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetOptions {
    /// Ask for packed virtqueues (`VIRTIO_F_RING_PACKED`; DPDK's `packed_vq=1`). Used when
    /// the device offers them; split otherwise.
    pub packed_vq: bool,
}

/// Bytes one queue of `size` entries takes in the ring segment (either layout fits).
fn ring_stride(size: u16) -> usize {
    let split = Layout::new(size)
        .expect("queue_size validated at probe")
        .total;
    let packed = PackedLayout::new(size).map_or(0, |l| l.total);
    split.max(packed)
}

#[derive(Clone, Copy, Debug, Default)]
struct RingSlot {
    addrs: Option<RingAddrs>,
    base: u16,
}

/// A virtio-net device over a [`Transport`].
pub struct VirtioNet {
    conf: NetConf,
    transport: Box<dyn Transport>,
    features: u64,
    /// What was asked for at probe (before `& offered`), without `GUEST_TSO`.
    wanted: u64,
    hdr_len: usize,
    mac: MacAddr,
    /// Header errors and transmit fallbacks, shared with the queues.
    counters: Arc<NetCounters>,
    pairs: u16,
    rings: Option<Arc<Segment>>,
    slots: Vec<RingSlot>,
    /// True while the device may touch queue memory; queues dropped meanwhile leak their
    /// in-flight buffers rather than hand them back to the pool.
    active: Arc<AtomicBool>,
    started: bool,
    promisc: bool,
    /// Who serves control commands (None unless CTRL_VQ was negotiated).
    ctrl_mode: CtrlMode,
    /// The control queue, with [`CtrlMode::Device`] (created at configure).
    ctrl: Option<CtrlQueue>,
    /// Device queue index of the control queue.
    ctrl_index: u16,
    /// Emulated control commands: (succeeded, failed).
    ctrl_emulated: (u64, u64),
    /// Queue pairs the device was last told to use (VQ_PAIRS_SET), 0 if never.
    active_pairs: u16,
}

impl std::fmt::Debug for VirtioNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioNet")
            .field("name", &self.conf.name)
            .field("transport", &self.transport.describe())
            .field("features", &format_args!("{:#x}", self.features))
            .finish()
    }
}

impl VirtioNet {
    /// Negotiates features with the device behind `transport` and creates the device
    /// (default [`NetOptions`]: split virtqueues).
    pub fn new(conf: NetConf, transport: Box<dyn Transport>) -> Result<VirtioNet> {
        Self::with_options(conf, NetOptions::default(), transport)
    }

    /// Like [`VirtioNet::new`], with driver options (e.g. packed virtqueues).
    pub fn with_options(
        conf: NetConf,
        opts: NetOptions,
        mut transport: Box<dyn Transport>,
    ) -> Result<VirtioNet> {
        let offered = transport.device_features();
        if offered & VIRTIO_F_VERSION_1 == 0 {
            tracing::warn!(
                device = conf.name,
                "device does not offer VERSION_1; using the legacy 10-byte header"
            );
        }
        let mut wanted = WANTED_FEATURES;
        if opts.packed_vq {
            wanted |= VIRTIO_F_RING_PACKED;
            if offered & VIRTIO_F_RING_PACKED == 0 {
                tracing::warn!(
                    device = conf.name,
                    "packed_vq=1 but the device does not offer RING_PACKED; using split rings"
                );
            }
        }
        let mode = transport.ctrl_mode();
        if mode != CtrlMode::None && offered & VIRTIO_NET_F_CTRL_VQ != 0 {
            wanted |= VIRTIO_NET_F_CTRL_VQ | VIRTIO_NET_F_CTRL_RX;
            // MQ depends on CTRL_VQ; only worth it with more than one pair.
            if transport.max_queue_pairs() > 1 {
                wanted |= VIRTIO_NET_F_MQ;
            }
        }
        let features = transport.negotiate(wanted & offered)?;
        let mac = transport.mac().unwrap_or(conf.mac);
        let ctrl_mode = if features & VIRTIO_NET_F_CTRL_VQ != 0 {
            mode
        } else {
            CtrlMode::None
        };
        let mq = ctrl_mode != CtrlMode::None && features & VIRTIO_NET_F_MQ != 0;
        let max_pairs = transport.max_queue_pairs().max(1);
        // A device serving its own queues uses one pair unless MQ is negotiated; vhost-user
        // back ends run every ring they are given (the MQ protocol feature).
        let pairs = if ctrl_mode == CtrlMode::Device && !mq {
            1
        } else {
            conf.queue_pairs.min(max_pairs).max(1)
        };
        let ctrl_index = 2 * if mq { max_pairs } else { 1 };
        tracing::info!(
            device = conf.name,
            transport = transport.describe(),
            offered = format_args!("{offered:#x}"),
            negotiated = format_args!("{features:#x} ({})", feature_names(features)),
            %mac,
            "virtio-net features negotiated"
        );
        Ok(VirtioNet {
            hdr_len: net_hdr_len(features),
            conf,
            transport,
            features,
            wanted,
            counters: Arc::new(NetCounters::default()),
            mac,
            pairs,
            rings: None,
            slots: Vec::new(),
            active: Arc::new(AtomicBool::new(false)),
            started: false,
            promisc: true,
            ctrl_mode,
            ctrl: None,
            ctrl_index,
            ctrl_emulated: (0, 0),
            active_pairs: 0,
        })
    }

    /// Negotiated feature bits.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// Length of the virtio-net header on this device.
    pub fn hdr_len(&self) -> usize {
        self.hdr_len
    }

    /// Who serves control commands on this device ([`CtrlMode::None`] when `CTRL_VQ`
    /// was not negotiated).
    pub fn ctrl_mode(&self) -> CtrlMode {
        self.ctrl_mode
    }

    /// Sends one control command (the port must be started) and waits for its ack.
    pub fn ctrl_command(&mut self, cmd: CtrlCommand) -> Result<()> {
        if !self.started {
            return Err(self.err(format!("{cmd}: the port is not started")));
        }
        let needs = match cmd {
            CtrlCommand::Promisc(_) | CtrlCommand::AllMulti(_) => VIRTIO_NET_F_CTRL_RX,
            CtrlCommand::VqPairsSet(_) => VIRTIO_NET_F_MQ,
        };
        if self.features & VIRTIO_NET_F_CTRL_VQ == 0 || self.features & needs == 0 {
            return Err(self.err(format!(
                "{cmd}: not negotiated with the device (features {})",
                feature_names(self.features)
            )));
        }
        match self.ctrl_mode {
            CtrlMode::None => Err(self.err(format!("{cmd}: no control queue"))),
            CtrlMode::Device => {
                let q = self
                    .ctrl
                    .as_mut()
                    .ok_or_else(|| Error::driver(&self.conf.name, "control queue not set up"))?;
                q.execute(cmd)
            }
            CtrlMode::Emulated => {
                let r = self.transport.ctrl_command(cmd);
                if r.is_ok() {
                    self.ctrl_emulated.0 += 1;
                } else {
                    self.ctrl_emulated.1 += 1;
                }
                r
            }
        }
    }

    /// Runs the commands that bring the device in line with the port's settings.
    fn apply_ctrl(&mut self, pairs: u16) -> Result<()> {
        if self.ctrl_mode == CtrlMode::None {
            return Ok(());
        }
        if self.features & VIRTIO_NET_F_MQ != 0 {
            self.ctrl_command(CtrlCommand::VqPairsSet(pairs))?;
            self.active_pairs = pairs;
        }
        if self.features & VIRTIO_NET_F_CTRL_RX != 0 {
            self.ctrl_command(CtrlCommand::Promisc(self.promisc))?;
        }
        Ok(())
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::driver(&self.conf.name, msg)
    }

    /// Whether the queues are packed (`VIRTIO_F_RING_PACKED` negotiated).
    pub fn packed(&self) -> bool {
        self.features & VIRTIO_F_RING_PACKED != 0
    }

    /// Where queue `index` goes in the ring segment, and whether EVENT_IDX is on.
    fn ring_area(&self, index: u16) -> Result<(Arc<Segment>, usize, bool)> {
        if self.started {
            return Err(self.err("cannot set up queues while started"));
        }
        let rings = self
            .rings
            .clone()
            .ok_or_else(|| self.err("queue setup before configure"))?;
        let off = ring_stride(self.conf.queue_size) * index as usize;
        Ok((rings, off, self.features & VIRTIO_F_EVENT_IDX != 0))
    }

    fn split_queue(&mut self, index: u16, nb_desc: u16) -> Result<SplitQueue> {
        let (rings, off, ev) = self.ring_area(index)?;
        let q = SplitQueue::new(rings, off, index, nb_desc, ev)
            .map_err(|e| self.err(format!("queue {index}: {e}")))?;
        self.register(&q);
        Ok(q)
    }

    fn packed_queue(&mut self, index: u16, nb_desc: u16) -> Result<PackedQueue> {
        let (rings, off, ev) = self.ring_area(index)?;
        let q = PackedQueue::new(rings, off, index, nb_desc, ev)
            .map_err(|e| self.err(format!("queue {index}: {e}")))?;
        self.register(&q);
        Ok(q)
    }

    fn register<Q: Virtqueue>(&mut self, q: &Q) {
        let mode = self.transport.addr_mode();
        self.slots[q.index() as usize] = RingSlot {
            addrs: Some(q.addrs(mode)),
            base: q.avail_idx(),
        };
    }

    fn rx_queue<Q: Virtqueue>(
        &mut self,
        qid: u16,
        vq: Q,
        conf: RxQueueConf,
    ) -> Result<Box<dyn RxQueue>> {
        let notifier = self.transport.notifier(vq.index())?;
        let mut rx = VirtioRx {
            bufs: vec![RawMbuf::NULL; vq.size() as usize],
            vq,
            pool: conf.pool,
            stats: conf.stats,
            port: conf.port,
            hdr_len: self.hdr_len,
            mrg: self.features & VIRTIO_NET_F_MRG_RXBUF != 0,
            guest_csum: self.features & VIRTIO_NET_F_GUEST_CSUM != 0,
            features: self.features,
            counters: self.counters.clone(),
            va: self.transport.addr_mode() == AddrMode::Va,
            notifier,
            active: self.active.clone(),
            used: [UsedElem::default(); BATCH_CAPACITY],
            skip: 0,
            scratch: PktBatch::new(),
            scatter: conf.offloads.contains(RxOffloads::SCATTER),
            partial: None,
            need: 0,
        };
        rx.refill();
        if rx.vq.num_free() == rx.vq.size() as usize {
            return Err(self.err(format!(
                "rx queue {qid}: could not allocate any receive buffer from {}",
                rx.pool.name()
            )));
        }
        Ok(Box::new(rx))
    }

    fn tx_queue<Q: Virtqueue>(&mut self, vq: Q, conf: TxQueueConf) -> Result<Box<dyn TxQueue>> {
        let notifier = self.transport.notifier(vq.index())?;
        let seg_max = TX_SEG_MAX.min(vq.size());
        Ok(Box::new(VirtioTx {
            bufs: vec![RawMbuf::NULL; vq.size() as usize],
            seg_max,
            parts: Vec::with_capacity(seg_max as usize),
            csum: self.features & VIRTIO_NET_F_CSUM != 0,
            tso4: self.features & (VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO4)
                == VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO4,
            tso6: self.features & (VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO6)
                == VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO6,
            counters: self.counters.clone(),
            vq,
            stats: conf.stats,
            hdr_len: self.hdr_len,
            va: self.transport.addr_mode() == AddrMode::Va,
            notifier,
            active: self.active.clone(),
            used: [UsedElem::default(); BATCH_CAPACITY],
            done: PktBatch::new(),
            bad: PktBatch::new(),
        }))
    }
}

impl Device for VirtioNet {
    fn info(&self) -> DevInfo {
        let f = self.features;
        let offered = self.transport.device_features();
        let mut rx_capa = RxOffloads::SCATTER;
        if f & VIRTIO_NET_F_GUEST_CSUM != 0 {
            rx_capa |= RxOffloads::TCP_CKSUM | RxOffloads::UDP_CKSUM;
            // GSO frames span many buffers: LRO needs merged buffers too.
            if f & VIRTIO_NET_F_MRG_RXBUF != 0 && offered & GUEST_TSO != 0 {
                rx_capa |= RxOffloads::TCP_LRO;
            }
        }
        let seg_max = TX_SEG_MAX.min(self.conf.queue_size);
        let mut tx_capa = TxOffloads::NONE;
        if seg_max > 1 {
            tx_capa |= TxOffloads::MULTI_SEGS;
        }
        if f & VIRTIO_NET_F_CSUM != 0 {
            tx_capa |= TxOffloads::TCP_CKSUM | TxOffloads::UDP_CKSUM;
            if f & (VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6) != 0 {
                tx_capa |= TxOffloads::TCP_TSO;
            }
        }
        DevInfo {
            driver: self.conf.driver,
            max_rx_queues: self.pairs,
            max_tx_queues: self.pairs,
            min_desc: 64.min(self.conf.queue_size),
            max_desc: self.conf.queue_size,
            default_desc: self.conf.queue_size,
            // Merged receive buffers (MRG_RXBUF) arrive as mbuf chains with SCATTER.
            rx_offload_capa: rx_capa,
            tx_offload_capa: tx_capa,
            nb_seg_max: seg_max,
            nb_mtu_seg_max: seg_max,
            max_rx_pktlen: MAX_FRAME,
            max_mtu: (MAX_FRAME - L2_OVERHEAD) as u16,
            ..Default::default()
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<()> {
        if conf.rx_queues != conf.tx_queues || conf.rx_queues == 0 {
            return Err(self.err(format!(
                "virtio-net needs as many rx as tx queues (at least 1), got {} rx and {} tx",
                conf.rx_queues, conf.tx_queues
            )));
        }
        let lro = conf.rx_offloads.contains(RxOffloads::TCP_LRO);
        if lro && !conf.rx_offloads.contains(RxOffloads::SCATTER) {
            return Err(self.err(
                "the TCP_LRO rx offload needs SCATTER too: a GSO super-frame spans many                  receive buffers",
            ));
        }
        let tso = if lro { GUEST_TSO } else { 0 };
        if (self.features & GUEST_TSO) != (tso & self.transport.device_features()) {
            // GUEST_TSO4/6 only when asked for (DPDK's rule); the device is not running, so
            // features may be negotiated again (vhost-user SET_FEATURES, PCI reset).
            let offered = self.transport.device_features();
            self.features = self.transport.negotiate((self.wanted | tso) & offered)?;
            tracing::info!(
                device = self.conf.name,
                negotiated =
                    format_args!("{:#x} ({})", self.features, feature_names(self.features)),
                "virtio-net features negotiated again for TCP_LRO"
            );
        }
        let n = 2 * conf.rx_queues as usize;
        let stride = ring_stride(self.conf.queue_size);
        if self.rings.as_ref().is_none_or(|r| r.len() < n * stride) {
            self.rings = Some(Arc::new(Segment::alloc(
                &format!("{}-rings", self.conf.name),
                n * stride,
            )?));
        }
        self.slots = vec![RingSlot::default(); n];
        if self.ctrl_mode == CtrlMode::Device && self.ctrl.is_none() {
            let notifier = self.transport.notifier(self.ctrl_index)?;
            self.ctrl = Some(CtrlQueue::new(
                &self.conf.name,
                self.ctrl_index,
                self.packed(),
                self.transport.addr_mode(),
                notifier,
            )?);
        }
        Ok(())
    }

    fn setup_rx_queue(&mut self, qid: u16, conf: RxQueueConf) -> Result<Box<dyn RxQueue>> {
        if !conf.nb_desc.is_power_of_two() {
            return Err(self.err(format!("{} descriptors: not a power of two", conf.nb_desc)));
        }
        // Check the pool's headroom can hold the header.
        let probe = conf
            .pool
            .alloc()
            .ok_or_else(|| self.err("rx queue setup: the mempool is empty"))?;
        if probe.headroom() < self.hdr_len {
            return Err(self.err(format!(
                "mempool {} has {} bytes of headroom, the virtio-net header needs {}",
                conf.pool.name(),
                probe.headroom(),
                self.hdr_len
            )));
        }
        drop(probe);
        let index = 2 * qid;
        if self.packed() {
            let vq = self.packed_queue(index, conf.nb_desc)?;
            self.rx_queue(qid, vq, conf)
        } else {
            let vq = self.split_queue(index, conf.nb_desc)?;
            self.rx_queue(qid, vq, conf)
        }
    }

    fn setup_tx_queue(&mut self, qid: u16, conf: TxQueueConf) -> Result<Box<dyn TxQueue>> {
        if !conf.nb_desc.is_power_of_two() {
            return Err(self.err(format!("{} descriptors: not a power of two", conf.nb_desc)));
        }
        let index = 2 * qid + 1;
        if self.packed() {
            let vq = self.packed_queue(index, conf.nb_desc)?;
            self.tx_queue(vq, conf)
        } else {
            let vq = self.split_queue(index, conf.nb_desc)?;
            self.tx_queue(vq, conf)
        }
    }

    fn start(&mut self) -> Result<()> {
        let mut rings = Vec::with_capacity(self.slots.len());
        for (i, s) in self.slots.iter().enumerate() {
            let addrs = s
                .addrs
                .ok_or_else(|| self.err(format!("virtqueue {i} is not set up")))?;
            rings.push(RingSetup {
                addrs,
                base: s.base,
            });
        }
        let pairs = (rings.len() / 2) as u16;
        if let Some(c) = self.ctrl.as_mut() {
            // Fresh at every start: the device starts it at index 0 (a reset forgot it).
            c.reset();
            rings.push(c.setup());
        }
        self.active.store(true, Ordering::Release);
        if let Err(e) = self.transport.start(&rings) {
            // Best effort: make sure the device is not using the rings.
            let _ = self.transport.stop();
            self.active.store(false, Ordering::Release);
            return Err(e);
        }
        self.started = true;
        if let Err(e) = self.apply_ctrl(pairs) {
            self.started = false;
            let _ = self.transport.stop();
            self.active.store(false, Ordering::Release);
            return Err(e);
        }
        tracing::info!(
            device = self.conf.name,
            features = format_args!("{:#x} ({})", self.features, feature_names(self.features)),
            hdr_len = self.hdr_len,
            queues = rings.len(),
            ctrl = ?self.ctrl_mode,
            pairs,
            "virtio-net started"
        );
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        if !self.started {
            return Ok(());
        }
        self.started = false;
        let mut bases = self.transport.stop()?;
        self.active.store(false, Ordering::Release);
        // The control ring (if the transport reported it) starts fresh every time.
        bases.truncate(self.slots.len());
        for (s, b) in self.slots.iter_mut().zip(bases) {
            s.base = b;
        }
        Ok(())
    }

    fn close(&mut self) {
        if self.started {
            let _ = self.stop();
        }
        self.transport.close();
        self.active.store(false, Ordering::Release);
    }

    fn link(&self) -> Link {
        Link {
            up: self.started && self.transport.link_up(),
            speed_mbps: 10_000,
            full_duplex: true,
        }
    }

    fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        if self.features & VIRTIO_NET_F_CTRL_RX == 0 {
            // No receive filtering: the device delivers everything, always promiscuous.
            if !on {
                return Err(self.err(format!(
                    "cannot leave promiscuous mode: VIRTIO_NET_F_CTRL_RX is not negotiated \
                     (control queue: {:?}; a vhost-user back end does not filter receive \
                     traffic), the port stays promiscuous",
                    self.ctrl_mode
                )));
            }
            self.promisc = true;
            return Ok(());
        }
        if self.started {
            self.ctrl_command(CtrlCommand::Promisc(on))?;
        }
        // Not started: sent at the next start.
        self.promisc = on;
        Ok(())
    }

    fn promiscuous(&self) -> bool {
        self.promisc
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            ("features".to_string(), self.features),
            (
                "device_features".to_string(),
                self.transport.device_features(),
            ),
            ("net_hdr_len".to_string(), self.hdr_len as u64),
            (
                "ctrl_mode".to_string(),
                match self.ctrl_mode {
                    CtrlMode::None => 0,
                    CtrlMode::Device => 1,
                    CtrlMode::Emulated => 2,
                },
            ),
            ("ctrl_active_pairs".to_string(), self.active_pairs as u64),
        ];
        let (ok, failed) = match &self.ctrl {
            Some(c) => (c.ok, c.failed),
            None => self.ctrl_emulated,
        };
        v.push(("ctrl_commands_ok".to_string(), ok));
        v.push(("ctrl_commands_failed".to_string(), failed));
        v.extend(self.counters.xstats());
        v.extend(self.transport.xstats());
        v
    }
}

impl Drop for VirtioNet {
    fn drop(&mut self) {
        self.close();
    }
}

/// Frees the buffers a queue still owns, unless the device may still be using them.
fn release<Q: Virtqueue>(vq: &Q, bufs: &mut [RawMbuf], active: &AtomicBool, what: &str) {
    let ids: Vec<u16> = vq.in_flight_ids();
    if ids.is_empty() {
        return;
    }
    if active.load(Ordering::Acquire) {
        tracing::warn!(
            queue = vq.index(),
            buffers = ids.len(),
            "{what} queue dropped while the device runs: leaking its in-flight buffers \
             (stop the port first)"
        );
        return;
    }
    let mut b = PktBatch::new();
    for id in ids {
        let raw = std::mem::replace(&mut bufs[id as usize], RawMbuf::NULL);
        if raw.is_null() {
            continue;
        }
        if b.spare() == 0 {
            b.clear();
        }
        b.spare_raw()[0] = raw;
        // SAFETY: the queue owned this buffer (taken out of its shadow array just now).
        unsafe { b.commit_raw(1) };
    }
}

/// Applies a received header's checksum fields (`(flags, csum_start, csum_offset)`) as
/// the receive path does; false when the device's offsets lie outside the packet.
#[cfg(test)]
fn apply_rx_csum(m: &mut pmd_core::Mbuf, (flags, start, offset): (u8, u16, u16)) -> bool {
    let h = NetHdr {
        flags,
        csum_start: start,
        csum_offset: offset,
        ..NetHdr::default()
    };
    rx_hdr_apply(m, &h, VIRTIO_NET_F_GUEST_CSUM, &NetCounters::default()).is_ok()
}

struct VirtioRx<Q: Virtqueue> {
    vq: Q,
    /// Buffer owned by each descriptor id (NULL when free).
    bufs: Vec<RawMbuf>,
    pool: Mempool,
    stats: Arc<QueueStats>,
    port: u16,
    hdr_len: usize,
    mrg: bool,
    /// GUEST_CSUM negotiated: header flags say which checksums to complete or trust.
    guest_csum: bool,
    /// Negotiated features (what a header may ask for).
    features: u64,
    counters: Arc<NetCounters>,
    va: bool,
    notifier: Arc<dyn Notifier>,
    active: Arc<AtomicBool>,
    used: [UsedElem; BATCH_CAPACITY],
    /// Buffers still to drop of a multi-buffer packet.
    skip: u16,
    scratch: PktBatch,
    /// SCATTER requested: merged buffers (MRG_RXBUF) become mbuf chains.
    scatter: bool,
    /// A merged packet still waiting for `need` more buffers, with its header.
    partial: Option<(pmd_core::Mbuf, NetHdr)>,
    need: u16,
}

impl<Q: Virtqueue> VirtioRx<Q> {
    /// Posts fresh buffers for every free descriptor (in bulk), then notifies if asked.
    #[inline]
    fn refill(&mut self) {
        let mut posted = false;
        while self.vq.num_free() > 0 {
            let n = self.vq.num_free().min(BATCH_CAPACITY);
            if self.pool.alloc_bulk(&mut self.scratch, n).is_none() {
                self.stats.add_no_mbuf(n as u64);
                break;
            }
            for i in 0..n {
                let raw = self.scratch.raw()[i];
                let m = &mut self.scratch.as_mut_slice()[i];
                let off = m.headroom() - self.hdr_len;
                let addr = if self.va {
                    m.buf_ptr() as u64 + off as u64
                } else {
                    m.buf_iova() + off as u64
                };
                let len = (m.buf_len() - off) as u32;
                // Cannot fail: n <= num_free.
                let id = self.vq.push(addr, len, true).expect("free descriptor");
                self.bufs[id as usize] = raw;
            }
            // The queue owns them now (through `bufs`).
            self.scratch.disown_front(n);
            posted = true;
        }
        if posted {
            self.vq.publish();
            if self.vq.kick_needed() {
                self.notifier.notify();
            }
        }
    }
}

impl<Q: Virtqueue> VirtioRx<Q> {
    /// The header the device wrote `hdr_len` bytes before the data offset `off`.
    #[inline(always)]
    fn read_hdr(&self, m: &mut pmd_core::Mbuf, off: usize) -> NetHdr {
        // SAFETY: the descriptor started hdr_len bytes before the data offset, inside the
        // buffer (off >= hdr_len was checked at queue setup: the headroom holds it), and
        // the device wrote the header there; hdr_len is 10 or 12.
        let b = unsafe {
            std::slice::from_raw_parts(m.buf_ptr().add(off - self.hdr_len), self.hdr_len)
        };
        NetHdr::parse(b).unwrap_or_default()
    }

    /// Applies a complete packet's header; false (counted) if the header is refused.
    #[inline(always)]
    fn finish(&self, m: &mut pmd_core::Mbuf, h: &NetHdr) -> bool {
        if h.gso_type == 0 && (!self.guest_csum || h.flags == 0) {
            return true;
        }
        rx_hdr_apply(m, h, self.features, &self.counters).is_ok()
    }
}

impl<Q: Virtqueue> RxQueue for VirtioRx<Q> {
    #[inline]
    fn rx_burst(&mut self, batch: &mut PktBatch, max: usize) -> usize {
        let max = max.min(batch.spare()).min(BATCH_CAPACITY);
        let (n, errors) = self.vq.poll_used(&mut self.used[..max]);
        let mut errors = errors;
        let mut k = 0;
        let mut bytes = 0u64;
        let spare = batch.spare_raw();
        for i in 0..n {
            let e = self.used[i];
            let raw = std::mem::replace(&mut self.bufs[e.id as usize], RawMbuf::NULL);
            debug_assert!(!raw.is_null());
            // SAFETY: the id was validated as in flight, so `bufs` held the buffer we
            // posted for it, which the queue owned; it is taken out of `bufs` above.
            let mut m = unsafe { raw.into_mbuf() };
            if self.skip > 0 {
                self.skip -= 1;
                continue; // drops m
            }
            if self.need > 0 {
                // A further buffer of a merged packet: no header, data from where the
                // descriptor started.
                self.need -= 1;
                let start = m.headroom() - self.hdr_len;
                let ok = e.ok && m.set_data_span(start, e.len as usize);
                let Some((mut head, hdr)) = self.partial.take() else {
                    continue;
                };
                if !ok || head.chain(m).is_err() {
                    errors += 1;
                    self.skip = self.need;
                    self.need = 0;
                    continue;
                }
                if self.need > 0 {
                    self.partial = Some((head, hdr));
                    continue;
                }
                if !self.finish(&mut head, &hdr) {
                    errors += 1;
                    continue;
                }
                head.set_port(self.port);
                bytes += head.len() as u64;
                spare[k] = head.into_raw();
                k += 1;
                continue;
            }
            let len = e.len as usize;
            if !e.ok || len < self.hdr_len {
                errors += u64::from(e.ok);
                continue;
            }
            let off = m.headroom();
            let hdr = self.read_hdr(&mut m, off);
            if self.mrg && hdr.num_buffers > 1 {
                // Bounded by the ring: a device claiming more buffers than it could
                // have filled is lying.
                let nb = hdr.num_buffers;
                if let Err(e) = check_num_buffers(nb, self.vq.size()) {
                    self.counters.rx_hdr(&e);
                    self.skip = nb.min(self.vq.size()) - 1;
                    errors += 1;
                    continue;
                }
                if !self.scatter || !m.set_data_span(off, len - self.hdr_len) {
                    self.skip = nb - 1;
                    errors += 1;
                    continue;
                }
                self.partial = Some((m, hdr));
                self.need = nb - 1;
                continue;
            }
            let plen = len - self.hdr_len;
            if !m.set_data_span(off, plen) {
                errors += 1;
                continue;
            }
            if !self.finish(&mut m, &hdr) {
                errors += 1;
                continue;
            }
            m.set_port(self.port);
            bytes += plen as u64;
            spare[k] = m.into_raw();
            k += 1;
        }
        // SAFETY: the first k spare slots hold buffers we own; k <= max <= spare().
        unsafe { batch.commit_raw(k) };
        if errors > 0 {
            self.stats.add_errors(errors);
        }
        if k > 0 {
            self.stats.add(k as u64, bytes);
        }
        if self.vq.num_free() >= RX_REFILL_MIN {
            self.refill();
        }
        k
    }
}

impl<Q: Virtqueue> Drop for VirtioRx<Q> {
    fn drop(&mut self) {
        release(&self.vq, &mut self.bufs, &self.active, "rx");
    }
}

struct VirtioTx<Q: Virtqueue> {
    vq: Q,
    bufs: Vec<RawMbuf>,
    stats: Arc<QueueStats>,
    hdr_len: usize,
    va: bool,
    notifier: Arc<dyn Notifier>,
    active: Arc<AtomicBool>,
    used: [UsedElem; BATCH_CAPACITY],
    /// Completed buffers waiting to be freed in bulk.
    done: PktBatch,
    /// Packets dropped for lack of headroom.
    bad: PktBatch,
    /// Most descriptors one packet may take (1: chains are linearized).
    seg_max: u16,
    /// Descriptor parts of the chain being posted (capacity `seg_max`, never grows).
    parts: Vec<(u64, u32)>,
    /// CSUM negotiated: TCP/UDP checksums go to the device as `NEEDS_CSUM`.
    csum: bool,
    /// HOST_TSO4 (with CSUM) negotiated.
    tso4: bool,
    /// HOST_TSO6 (with CSUM) negotiated.
    tso6: bool,
    counters: Arc<NetCounters>,
}

/// Transmit flags that ask for work on the packet or in the header.
const TX_WORK: u64 = TX_L4_MASK | TX_TCP_SEG | TX_IP_CKSUM | TX_UDP_SEG;

/// Why a transmit offload request could not be met.
#[derive(Debug)]
enum TxOffloadError {
    /// Bad lengths, flags or an unsupported request (from `pmd_core::offload`).
    Offload(OffloadError),
    /// `TX_TCP_SEG` for an IP version whose HOST_TSO was not negotiated.
    TsoNotNegotiated,
}

impl std::fmt::Display for TxOffloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxOffloadError::Offload(e) => write!(f, "{e}"),
            TxOffloadError::TsoNotNegotiated => f.write_str(
                "TX_TCP_SEG but the device did not negotiate HOST_TSO for this IP version \
                 (check the port's tx_offload_capa for TCP_TSO)",
            ),
        }
    }
}

impl From<OffloadError> for TxOffloadError {
    fn from(e: OffloadError) -> Self {
        TxOffloadError::Offload(e)
    }
}

/// The header for a packet with transmit requests (`ol_flags & TX_WORK != 0`), after
/// doing in software what the device will not: the IPv4 header checksum always (virtio
/// has no such offload; with TSO the device rewrites it per segment), TCP/UDP checksums
/// when `csum` (VIRTIO_NET_F_CSUM) was not negotiated. With it, the checksum field gets
/// the pseudo-header sum and the header `NEEDS_CSUM` from `l2_len + l3_len`; TSO sets
/// `gso_type`/`gso_size`/`hdr_len` from `tso_segsz` and the header lengths.
fn tx_offload_hdr(
    m: &mut pmd_core::Mbuf,
    csum: bool,
    tso4: bool,
    tso6: bool,
) -> Result<NetHdr, TxOffloadError> {
    let ol = m.ol_flags();
    if ol & TX_UDP_SEG != 0 {
        return Err(OffloadError::Unsupported.into());
    }
    let t = m.tx_offload();
    let start = u16::from(t.l2_len) + t.l3_len;
    if ol & TX_TCP_SEG != 0 {
        let gso_type = match ol & (TX_IPV4 | TX_IPV6) {
            TX_IPV4 if tso4 => VIRTIO_NET_HDR_GSO_TCPV4,
            TX_IPV6 if tso6 => VIRTIO_NET_HDR_GSO_TCPV6,
            _ => return Err(TxOffloadError::TsoNotNegotiated),
        };
        // Checks the lengths and tso_segsz; writes the pseudo-header sum without the
        // length (what a segmenting device expects) and zeroes the IPv4 checksum.
        pmd_core::offload::prepare(m)?;
        return Ok(NetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type,
            hdr_len: start + u16::from(t.l4_len),
            gso_size: t.tso_segsz,
            csum_start: start,
            csum_offset: 16,
            num_buffers: 0,
        });
    }
    let l4 = ol & TX_L4_MASK;
    if csum && (l4 == TX_TCP_CKSUM || l4 == TX_UDP_CKSUM) {
        if ol & TX_IP_CKSUM != 0 {
            // IPv4 header checksum here, L4 by the device.
            m.set_ol_flags(ol & !TX_L4_MASK);
            let r = pmd_core::offload::checksum(m);
            m.set_ol_flags(ol & !TX_IP_CKSUM);
            r?;
        }
        pmd_core::offload::prepare(m)?;
        return Ok(NetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            csum_start: start,
            csum_offset: if l4 == TX_TCP_CKSUM { 16 } else { 6 },
            ..NetHdr::default()
        });
    }
    // Not negotiated (or IPv4 header only): in software, over every segment.
    pmd_core::offload::checksum(m)?;
    Ok(NetHdr::default())
}

impl<Q: Virtqueue> VirtioTx<Q> {
    /// Takes back every completed descriptor and frees the buffers in bulk.
    #[inline]
    fn reclaim(&mut self) {
        loop {
            let (n, errors) = self.vq.poll_used(&mut self.used);
            if errors > 0 {
                self.stats.add_errors(errors);
            }
            if n == 0 {
                break;
            }
            let spare = self.done.spare_raw();
            for (slot, e) in spare.iter_mut().zip(&self.used[..n]) {
                *slot = std::mem::replace(&mut self.bufs[e.id as usize], RawMbuf::NULL);
            }
            // SAFETY: the ids were validated as in flight: these are buffers the queue owned,
            // now taken out of `bufs`; n <= BATCH_CAPACITY and `done` is empty here.
            unsafe { self.done.commit_raw(n) };
            self.done.clear();
            if n < BATCH_CAPACITY {
                break;
            }
        }
    }

    /// Frees a packet the queue will not send (its raw pointer stays in the caller's
    /// batch, which disowns it afterwards) and counts it.
    #[inline(never)]
    fn drop_packet(&mut self, raw: RawMbuf) {
        self.bad.spare_raw()[0] = raw;
        // SAFETY: the batch owns the buffer and disowns it after the burst; `bad` has room
        // (it is emptied right after each use).
        unsafe { self.bad.commit_raw(1) };
        self.bad.clear();
        self.stats.add_errors(1);
    }
}

impl<Q: Virtqueue> TxQueue for VirtioTx<Q> {
    #[inline]
    fn tx_burst(&mut self, batch: &mut PktBatch) -> usize {
        let size = self.vq.size() as usize;
        if self.vq.num_free() < size / 2 || self.vq.num_free() < batch.len() {
            self.reclaim();
        }
        let mut reclaimed = false;
        let mut taken = 0;
        let mut sent = 0u64;
        let mut bytes = 0u64;
        // Fast path, as before chains existed: the leading packets of one segment without
        // offload requests, up to the free descriptors, one descriptor each.
        let limit = batch.len().min(self.vq.num_free());
        while taken < limit {
            let raw = batch.raw()[taken];
            let m = &mut batch.as_mut_slice()[taken];
            if !m.is_contiguous() || m.ol_flags() & TX_WORK != 0 {
                break;
            }
            taken += 1;
            let plen = m.len();
            let Some(hdr) = m.prepend(self.hdr_len) else {
                self.drop_packet(raw);
                continue;
            };
            // Constant-size stores (a variable-length fill is a `memset` call per packet).
            match hdr.len() {
                NET_HDR_LEN => hdr.copy_from_slice(&[0; NET_HDR_LEN]),
                NET_HDR_LEN_LEGACY => hdr.copy_from_slice(&[0; NET_HDR_LEN_LEGACY]),
                _ => hdr.fill(0),
            }
            let addr = if self.va {
                m.data_mut().as_mut_ptr() as u64
            } else {
                m.data_iova()
            };
            let id = self
                .vq
                .push(addr, (plen + self.hdr_len) as u32, false)
                .expect("taken <= num_free");
            self.bufs[id as usize] = raw;
            sent += 1;
            bytes += plen as u64;
        }
        // Chains and offload requests (and whatever follows the first of them).
        while taken < batch.len() {
            let raw = batch.raw()[taken];
            let m = &mut batch.as_mut_slice()[taken];
            let segs = m.nb_segs();
            // Descriptors this packet takes: one per segment (the header shares the first),
            // or one after linearizing a chain longer than seg_max.
            let need = if segs <= self.seg_max {
                segs as usize
            } else {
                1
            };
            if need > self.vq.num_free() {
                if reclaimed {
                    break;
                }
                reclaimed = true;
                self.reclaim();
                continue;
            }
            taken += 1;
            if segs > self.seg_max {
                if m.linearize().is_err() {
                    NetCounters::bump(&self.counters.tx_too_many_segs);
                    self.drop_packet(raw);
                    continue;
                }
                NetCounters::bump(&self.counters.tx_linearized);
            }
            let hdr_vals = if m.ol_flags() & TX_WORK != 0 {
                match tx_offload_hdr(m, self.csum, self.tso4, self.tso6) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        tracing::debug!(queue = self.vq.index(), error = %e, "tx offload refused; packet dropped");
                        NetCounters::bump(&self.counters.tx_offload_errors);
                        self.drop_packet(raw);
                        continue;
                    }
                }
            } else {
                None
            };
            let plen = m.len();
            let Some(hdr) = m.prepend(self.hdr_len) else {
                self.drop_packet(raw);
                continue;
            };
            match hdr_vals {
                // Constant-size stores (a variable-length fill is a `memset` call per packet).
                None => match hdr.len() {
                    NET_HDR_LEN => hdr.copy_from_slice(&[0; NET_HDR_LEN]),
                    NET_HDR_LEN_LEGACY => hdr.copy_from_slice(&[0; NET_HDR_LEN_LEGACY]),
                    _ => hdr.fill(0),
                },
                Some(h) => h.write(hdr),
            }
            let m = &batch.as_slice()[taken - 1];
            let first = m.data();
            let addr = if self.va {
                first.as_ptr() as u64
            } else {
                m.data_iova()
            };
            let id = if need == 1 {
                self.vq.push(addr, first.len() as u32, false)
            } else {
                // Each segment where the device reads it: the process address over
                // vhost-user, the IOVA over PCI.
                self.parts.clear();
                if self.va {
                    for seg in m.segments() {
                        self.parts.push((seg.as_ptr() as u64, seg.len() as u32));
                    }
                } else {
                    for (iova, len) in m.segment_iovas() {
                        self.parts.push((iova, len as u32));
                    }
                }
                self.vq.push_chain(&self.parts, false)
            }
            .expect("need <= num_free");
            self.bufs[id as usize] = raw;
            sent += 1;
            bytes += plen as u64;
        }
        if taken == 0 {
            return 0;
        }
        if sent > 0 {
            self.vq.publish();
            if self.vq.kick_needed() {
                self.notifier.notify();
            }
        }
        batch.disown_front(taken);
        self.stats.add(sent, bytes);
        taken
    }
}

impl<Q: Virtqueue> Drop for VirtioTx<Q> {
    fn drop(&mut self) {
        release(&self.vq, &mut self.bufs, &self.active, "tx");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::tests::SimDevice;
    use pmd_core::ethdev::Port;
    use std::sync::atomic::AtomicU64;

    struct CountingNotifier(AtomicU64);
    impl Notifier for CountingNotifier {
        fn notify(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A transport with nothing behind it: the test plays the device through SimDevice.
    struct LoopTransport {
        features: u64,
        kicks: Arc<CountingNotifier>,
        started: bool,
        rings: Arc<std::sync::Mutex<Vec<RingSetup>>>,
    }

    impl Transport for LoopTransport {
        fn describe(&self) -> String {
            "test".into()
        }
        fn addr_mode(&self) -> AddrMode {
            AddrMode::Va
        }
        fn device_features(&self) -> u64 {
            self.features
        }
        fn negotiate(&mut self, wanted: u64) -> Result<u64> {
            Ok(wanted & self.features)
        }
        fn mac(&self) -> Option<MacAddr> {
            None
        }
        fn max_queue_pairs(&self) -> u16 {
            1
        }
        fn notifier(&mut self, _index: u16) -> Result<Arc<dyn Notifier>> {
            Ok(self.kicks.clone())
        }
        fn start(&mut self, rings: &[RingSetup]) -> Result<()> {
            assert_eq!(rings.len(), 2);
            *self.rings.lock().unwrap() = rings.to_vec();
            self.started = true;
            Ok(())
        }
        fn stop(&mut self) -> Result<Vec<u16>> {
            self.started = false;
            Ok(vec![0, 0])
        }
        fn link_up(&self) -> bool {
            self.started
        }
    }

    /// A transport whose device serves a control queue (like virtio-pci), played by
    /// `SimCtrlDevice`; data queues are not served.
    struct CtrlTransport {
        features: u64,
        kicks: Arc<CountingNotifier>,
        ctrl: Arc<crate::ctrl::tests::SimCtrlDevice>,
        started: bool,
        ring_indices: Arc<std::sync::Mutex<Vec<u16>>>,
    }

    impl Transport for CtrlTransport {
        fn describe(&self) -> String {
            "test-ctrl".into()
        }
        fn addr_mode(&self) -> AddrMode {
            AddrMode::Va
        }
        fn device_features(&self) -> u64 {
            self.features
        }
        fn negotiate(&mut self, wanted: u64) -> Result<u64> {
            self.features &= wanted;
            Ok(self.features)
        }
        fn mac(&self) -> Option<MacAddr> {
            None
        }
        fn max_queue_pairs(&self) -> u16 {
            4
        }
        fn notifier(&mut self, index: u16) -> Result<Arc<dyn Notifier>> {
            if index == 8 {
                Ok(self.ctrl.clone())
            } else {
                Ok(self.kicks.clone())
            }
        }
        fn start(&mut self, rings: &[RingSetup]) -> Result<()> {
            *self.ring_indices.lock().unwrap() = rings.iter().map(|r| r.addrs.index).collect();
            let c = *rings.last().unwrap();
            self.ctrl
                .attach(c, self.features & VIRTIO_F_RING_PACKED != 0);
            self.started = true;
            Ok(())
        }
        fn stop(&mut self) -> Result<Vec<u16>> {
            self.started = false;
            Ok(vec![0; 5])
        }
        fn link_up(&self) -> bool {
            self.started
        }
        fn ctrl_mode(&self) -> CtrlMode {
            CtrlMode::Device
        }
    }

    #[test]
    fn control_queue_through_the_net_layer() {
        use crate::ctrl::tests::{Reply, SimCtrlDevice};
        for packed in [false, true] {
            let ctrl = SimCtrlDevice::new();
            let idx = Arc::new(std::sync::Mutex::new(Vec::new()));
            let t = CtrlTransport {
                features: VIRTIO_F_VERSION_1
                    | VIRTIO_NET_F_CTRL_VQ
                    | VIRTIO_NET_F_CTRL_RX
                    | VIRTIO_NET_F_MQ
                    | VIRTIO_F_RING_PACKED,
                kicks: Arc::new(CountingNotifier(AtomicU64::new(0))),
                ctrl: ctrl.clone(),
                started: false,
                ring_indices: idx.clone(),
            };
            let conf = NetConf {
                driver: crate::DRIVER_NAME,
                name: format!("net_virtio_ctrl{}", u8::from(packed)),
                queue_size: 64,
                queue_pairs: 2,
                mac: MacAddr::local(9),
            };
            let dev = VirtioNet::with_options(conf, NetOptions { packed_vq: packed }, Box::new(t))
                .unwrap();
            let f = dev.features();
            assert_eq!(
                f & (VIRTIO_NET_F_CTRL_VQ | VIRTIO_NET_F_CTRL_RX | VIRTIO_NET_F_MQ),
                VIRTIO_NET_F_CTRL_VQ | VIRTIO_NET_F_CTRL_RX | VIRTIO_NET_F_MQ
            );
            assert_eq!(dev.ctrl_mode(), CtrlMode::Device);
            let name = format!("net_virtio_ctrl{}", u8::from(packed));
            let mut port = Port::new(0, &name, Box::new(dev));
            assert_eq!(port.info().max_rx_queues, 2, "min(conf, device)");
            let pool = Mempool::create(&format!("{name}-pool"), 512, 0).unwrap();
            port.configure(&PortConf {
                rx_queues: 2,
                tx_queues: 2,
                ..Default::default()
            })
            .unwrap();
            let rx: Vec<_> = (0..2)
                .map(|q| port.setup_rx_queue(q, 0, &pool).unwrap())
                .collect();
            let tx: Vec<_> = (0..2).map(|q| port.setup_tx_queue(q, 0).unwrap()).collect();
            // Promiscuous off before start: remembered, sent at start.
            port.set_promiscuous(false).unwrap();
            port.start().unwrap();
            // Control queue at 2 * max_pairs (4) = 8, after the 4 data rings.
            assert_eq!(*idx.lock().unwrap(), vec![0, 1, 2, 3, 8]);
            assert_eq!(
                *ctrl.seen.lock().unwrap(),
                vec![vec![4, 0, 2, 0], vec![0, 0, 0]],
                "VQ_PAIRS_SET 2, PROMISC 0"
            );
            port.set_promiscuous(true).unwrap();
            assert!(port.promiscuous());
            assert_eq!(ctrl.seen.lock().unwrap()[2], vec![0, 0, 1]);
            // The device refuses: an error, and the mode does not change.
            *ctrl.reply.lock().unwrap() = Reply::Ack(crate::ctrl::VIRTIO_NET_ERR);
            let e = port.set_promiscuous(false).unwrap_err().to_string();
            assert!(e.contains("rejected RX PROMISC 0"), "{e}");
            assert!(port.promiscuous());
            let xs = port.xstats();
            let get = |k: &str| xs.iter().find(|(n, _)| n == k).unwrap().1;
            assert_eq!(
                (get("ctrl_commands_ok"), get("ctrl_commands_failed")),
                (3, 1)
            );
            assert_eq!(get("ctrl_active_pairs"), 2);
            // A restart: fresh control ring, commands again.
            port.stop().unwrap();
            *ctrl.reply.lock().unwrap() = Reply::Ack(0);
            port.start().unwrap();
            assert_eq!(ctrl.seen.lock().unwrap().len(), 6);
            // A device that never answers: start fails with a timeout, nothing hangs.
            port.stop().unwrap();
            *ctrl.reply.lock().unwrap() = Reply::Silent;
            let e = port.start().unwrap_err().to_string();
            assert!(e.contains("no completion"), "{e}");
            drop(rx);
            drop(tx);
            assert_eq!(pool.stats().in_use, 0);
        }
    }

    #[test]
    fn packed_rings_through_a_simulated_device() {
        use crate::queue::packed::tests::SimPackedDevice;
        let kicks = Arc::new(CountingNotifier(AtomicU64::new(0)));
        let rings = Arc::new(std::sync::Mutex::new(Vec::new()));
        let t = LoopTransport {
            features: VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MRG_RXBUF | VIRTIO_F_RING_PACKED,
            kicks: kicks.clone(),
            started: false,
            rings: rings.clone(),
        };
        let conf = NetConf {
            driver: crate::DRIVER_NAME,
            name: "net_virtio_test1".into(),
            queue_size: 64,
            queue_pairs: 1,
            mac: MacAddr::local(8),
        };
        // Not asked for: split even though offered.
        let split = VirtioNet::new(
            conf.clone(),
            Box::new(LoopTransport {
                features: t.features,
                kicks: kicks.clone(),
                started: false,
                rings: rings.clone(),
            }),
        )
        .unwrap();
        assert!(!split.packed());
        let dev =
            VirtioNet::with_options(conf, NetOptions { packed_vq: true }, Box::new(t)).unwrap();
        assert!(dev.packed());
        let mut port = Port::new(0, "net_virtio_test1", Box::new(dev));
        let pool = Mempool::create("virtio-net-test-packed", 512, 0).unwrap();
        port.configure(&PortConf::default()).unwrap();
        let mut rx = port.setup_rx_queue(0, 0, &pool).unwrap();
        let mut tx = port.setup_tx_queue(0, 0).unwrap();
        port.start().unwrap();
        let r = rings.lock().unwrap().clone();
        assert_eq!(r[0].base, 0x8000, "position 0, avail wrap counter 1");
        let mut dev_rx = SimPackedDevice::at(r[0].addrs);
        let mut dev_tx = SimPackedDevice::at(r[1].addrs);
        let mut rx_bufs = dev_rx.take_avail();
        assert_eq!(rx_bufs.len(), 64);
        // Several rounds so both rings wrap.
        let mut total = 0;
        for round in 0..10u8 {
            let mut b = PktBatch::new();
            for i in 0..20u8 {
                let mut m = pool.alloc().unwrap();
                m.append(60 + i as usize).unwrap().fill(round ^ i);
                b.push(m).unwrap();
            }
            assert_eq!(tx.tx_burst(&mut b), 20);
            let sent = dev_tx.take_avail();
            assert_eq!(sent.len(), 20);
            for (id, d) in &sent {
                // SAFETY: test: the address is our own VA of the packet.
                let bytes =
                    unsafe { std::slice::from_raw_parts(d.addr as *const u8, d.len as usize) };
                let (rid, rd) = rx_bufs.remove(0);
                assert!(rd.len as usize >= bytes.len());
                // SAFETY: test: rd.addr is a receive buffer of rd.len bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), rd.addr as *mut u8, bytes.len());
                    *(rd.addr as *mut u8).add(10) = 1;
                }
                dev_rx.complete(rid, d.len);
                dev_tx.complete(*id, 0);
            }
            let mut got = PktBatch::new();
            assert_eq!(rx.rx_burst(&mut got), 20);
            for (i, m) in got.iter().enumerate() {
                assert_eq!(m.len(), 60 + i);
                assert!(m.data().iter().all(|&x| x == round ^ i as u8));
            }
            total += 20;
            rx_bufs.extend(dev_rx.take_avail());
        }
        // A hostile used descriptor: id never posted on the rx ring -> counted, queue stops.
        dev_rx.complete(9999, 10);
        let mut r2 = PktBatch::new();
        assert_eq!(rx.rx_burst(&mut r2), 0);
        let s = port.stats();
        assert_eq!((s.ipackets, s.opackets, s.ierrors), (total, total, 1));
        port.stop().unwrap();
        drop(rx);
        drop(tx);
        assert_eq!(pool.stats().in_use, 0, "everything freed");
    }

    #[test]
    fn guest_csum_completes_partial_checksums_and_rejects_bad_offsets() {
        let pool = Mempool::create("virtio-csum-test", 64, 0).unwrap();
        // Ethernet (14) + IPv4 (20) + UDP (8) + 11 bytes of payload.
        let (src, dst) = ([10u8, 0, 0, 1], [10u8, 0, 0, 2]);
        let udp_len = 8 + 11u16;
        let mut pkt = vec![0u8; 14 + 20 + udp_len as usize];
        pkt[12..14].copy_from_slice(&[0x08, 0x00]);
        pkt[14] = 0x45;
        pkt[23] = 17;
        pkt[26..30].copy_from_slice(&src);
        pkt[30..34].copy_from_slice(&dst);
        pkt[34..36].copy_from_slice(&1234u16.to_be_bytes());
        pkt[36..38].copy_from_slice(&5678u16.to_be_bytes());
        pkt[38..40].copy_from_slice(&udp_len.to_be_bytes());
        for (i, b) in pkt[42..].iter_mut().enumerate() {
            *b = i as u8 * 7 + 1;
        }
        // The device leaves the pseudo-header sum in the checksum field (CHECKSUM_PARTIAL).
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&udp_len.to_be_bytes());
        let partial = pmd_core::csum::ones_complement_sum(&pseudo);
        pkt[40..42].copy_from_slice(&partial.to_be_bytes());

        let mut m = pool.alloc().unwrap();
        assert!(m.copy_from(&pkt));
        assert!(apply_rx_csum(&mut m, (VIRTIO_NET_HDR_F_NEEDS_CSUM, 34, 6)));
        assert_ne!(m.ol_flags() & pmd_core::mbuf::RX_L4_CKSUM_GOOD, 0);
        // Verify: pseudo-header + UDP segment now sums to all ones.
        let mut all = pseudo.clone();
        all.extend_from_slice(&m.data()[34..]);
        assert_eq!(pmd_core::csum::ones_complement_sum(&all), 0xffff);
        assert_eq!(&m.data()[..40], &pkt[..40], "only the checksum changed");

        // DATA_VALID: trusted, untouched.
        let mut v = pool.alloc().unwrap();
        assert!(v.copy_from(&pkt));
        assert!(apply_rx_csum(&mut v, (VIRTIO_NET_HDR_F_DATA_VALID, 0, 0)));
        assert_ne!(v.ol_flags() & pmd_core::mbuf::RX_L4_CKSUM_GOOD, 0);
        assert_eq!(v.data(), &pkt[..]);
        // No flags: nothing claimed.
        let mut n = pool.alloc().unwrap();
        assert!(n.copy_from(&pkt));
        assert!(apply_rx_csum(&mut n, (0, 0, 0)));
        assert_eq!(n.ol_flags(), 0);
        // Hostile offsets: start or field beyond the packet.
        for (start, off) in [(34u16, 65535u16), (60, 0), (u16::MAX, u16::MAX), (52, 1)] {
            let mut h = pool.alloc().unwrap();
            assert!(h.copy_from(&pkt));
            assert!(
                !apply_rx_csum(&mut h, (VIRTIO_NET_HDR_F_NEEDS_CSUM, start, off)),
                "{start} {off}"
            );
            assert_eq!(h.data(), &pkt[..]);
        }
    }

    #[test]
    fn rx_and_tx_through_a_simulated_device() {
        let kicks = Arc::new(CountingNotifier(AtomicU64::new(0)));
        let rings = Arc::new(std::sync::Mutex::new(Vec::new()));
        let t = LoopTransport {
            features: VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MRG_RXBUF,
            kicks: kicks.clone(),
            started: false,
            rings: rings.clone(),
        };
        let conf = NetConf {
            driver: crate::DRIVER_NAME,
            name: "net_virtio_test0".into(),
            queue_size: 64,
            queue_pairs: 1,
            mac: MacAddr::local(7),
        };
        let dev = VirtioNet::new(conf, Box::new(t)).unwrap();
        assert_eq!(dev.hdr_len(), 12);
        let mut port = Port::new(0, "net_virtio_test0", Box::new(dev));
        let pool = Mempool::create("virtio-net-test", 512, 0).unwrap();
        port.configure(&PortConf::default()).unwrap();
        let mut rx = port.setup_rx_queue(0, 0, &pool).unwrap();
        let mut tx = port.setup_tx_queue(0, 0).unwrap();
        assert_eq!(pool.stats().in_use, 64, "rx ring filled");
        port.start().unwrap();
        assert!(port.link().up);
        assert!(port
            .xstats()
            .iter()
            .any(|(k, v)| k == "features" && *v != 0));

        // The simulated device reaches the rings the way a back end does: by the
        // addresses the transport was given at start.
        let r = rings.lock().unwrap().clone();
        let mut dev_rx = SimDevice::at(r[0].addrs, false);
        let mut dev_tx = SimDevice::at(r[1].addrs, false);
        let bufs = dev_rx.take_avail();
        assert_eq!(bufs.len(), 64);

        // Transmit 3 packets.
        let mut b = PktBatch::new();
        for (i, len) in [60usize, 100, 1514].iter().enumerate() {
            let mut m = pool.alloc().unwrap();
            m.append(*len).unwrap().fill(i as u8 + 1);
            b.push(m).unwrap();
        }
        assert_eq!(tx.tx_burst(&mut b), 3);
        assert!(b.is_empty());
        let sent = dev_tx.take_avail();
        assert_eq!(sent.len(), 3);
        for ((id, d), len) in sent.iter().zip([60u32, 100, 1514]) {
            assert_eq!(d.len, len + 12);
            // SAFETY: test: the address is our own VA of the packet.
            let bytes = unsafe { std::slice::from_raw_parts(d.addr as *const u8, d.len as usize) };
            assert!(bytes[..12].iter().all(|&x| x == 0), "zeroed header");
            // Loop the packet into an rx buffer, like a switch would.
            let (rid, rd) = bufs[*id as usize];
            assert!(rd.len as usize >= bytes.len());
            // SAFETY: test: rd.addr is a receive buffer of rd.len bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), rd.addr as *mut u8, bytes.len());
                *(rd.addr as *mut u8).add(10) = 1; // num_buffers = 1
            }
            dev_rx.write_elem(rid as u32, d.len);
            dev_tx.write_elem(*id as u32, 0);
        }
        dev_rx.publish();
        dev_tx.publish();
        let mut r = PktBatch::new();
        assert_eq!(rx.rx_burst(&mut r), 3);
        for (i, (m, len)) in r.iter().zip([60usize, 100, 1514]).enumerate() {
            assert_eq!(m.len(), len);
            assert!(m.data().iter().all(|&x| x == i as u8 + 1));
            assert_eq!(m.port(), 0);
        }
        // A hostile used element: too long for the buffer.
        let (rid, rd) = bufs[10];
        dev_rx.write_elem(rid as u32, rd.len + 1);
        dev_rx.publish();
        let mut r2 = PktBatch::new();
        assert_eq!(rx.rx_burst(&mut r2), 0);
        let s = port.stats();
        assert_eq!((s.ipackets, s.opackets, s.ierrors), (3, 3, 1));
        drop(r);
        port.stop().unwrap();
        drop(rx);
        drop(tx);
        assert_eq!(pool.stats().in_use, 0, "everything freed");
        assert!(kicks.0.load(Ordering::Relaxed) >= 1);
    }
}
