//! [`VirtioNet`]: a virtio-net device as an ethdev [`Device`]. It negotiates features
//! with the [`Transport`], lays out the rings of all queues in one segment at
//! `configure`, creates the receive and transmit queues on the negotiated ring layout,
//! and hands the rings to the transport at `start`.
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

use super::ctrl::queue::CtrlQueue;
use super::ctrl::CtrlCommand;
use super::hdr::NetCounters;
use super::rx::VirtioRx;
use super::tx::VirtioTx;
use super::watch::{self, LinkState, Resumable, SharedTransport, Watcher};
use super::{
    feature_names, net_hdr_len, NetConf, NetOptions, QueueCtx, GUEST_TSO, MAX_FRAME, TX_SEG_MAX,
    VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1, VIRTIO_NET_F_CSUM,
    VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_HOST_TSO4,
    VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MQ, VIRTIO_NET_F_MRG_RXBUF, WANTED_FEATURES,
};
use crate::transport::{CallSource, CtrlMode, RingSetup, Transport};
use crate::virtqueue::{
    AddrMode, Layout, PackedLayout, PackedQueue, RingAddrs, SplitQueue, Virtqueue,
};
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::{
    DevInfo, Device, Link, MacAddr, PortConf, RxOffloads, RxQueue, RxQueueConf, TxOffloads,
    TxQueue, TxQueueConf, L2_OVERHEAD,
};
use pmd_core::memory::Segment;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

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
    /// Shared with the link watcher while started.
    transport: SharedTransport,
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
    /// Losses of the device seen by `link` or the watcher.
    link_state: Arc<LinkState>,
    /// While started, with a transport that can reconnect: the thread that does it.
    watcher: Option<Watcher>,
    /// While started: the configuration-change interrupt ([`Transport::link_source`]).
    link_src: Option<Arc<dyn CallSource>>,
    /// Link interrupts acknowledged (xstat `link_interrupts`).
    link_intrs: AtomicU64,
}

impl std::fmt::Debug for VirtioNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioNet")
            .field("name", &self.conf.name)
            .field("transport", &self.t().describe())
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
            transport: Arc::new(Mutex::new(transport)),
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
            link_state: Arc::default(),
            link_src: None,
            link_intrs: AtomicU64::new(0),
            watcher: None,
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
                let r = self.t().ctrl_command(cmd);
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

    /// The transport, locked.
    fn t(&self) -> std::sync::MutexGuard<'_, Box<dyn Transport>> {
        watch::lock(&self.transport)
    }

    /// The rings a new device could resume, if the transport `t` can reconnect: split
    /// rings at addresses of this process, every queue set up, no device-served control
    /// queue.
    fn resumable(&self, t: &dyn Transport) -> Option<Resumable> {
        if !t.can_reconnect()
            || self.packed()
            || self.ctrl.is_some()
            || t.addr_mode() != AddrMode::Va
        {
            return None;
        }
        let rings = self
            .slots
            .iter()
            .map(|s| s.addrs)
            .collect::<Option<Vec<_>>>()?;
        Some(Resumable {
            seg: self.rings.clone()?,
            rings,
        })
    }

    /// Starts the link watcher when a new device could resume the rings.
    fn watch(&mut self) {
        let Some(what) = self.resumable(self.t().as_ref()) else {
            return;
        };
        match Watcher::spawn(
            &self.conf.name,
            self.transport.clone(),
            what,
            self.link_state.clone(),
        ) {
            Ok(w) => self.watcher = Some(w),
            Err(e) => tracing::warn!(
                device = self.conf.name,
                "no link watcher ({e}): a new device is only looked for when the link is asked"
            ),
        }
    }

    fn register<Q: Virtqueue>(&mut self, q: &Q) {
        let mode = self.t().addr_mode();
        self.slots[q.index() as usize] = RingSlot {
            addrs: Some(q.addrs(mode)),
            base: q.avail_idx(),
        };
    }

    /// What every queue of this device gets: features, header length, address mode, the
    /// doorbell and used-buffer eventfd of device queue `index`, the shared flags and
    /// counters.
    fn queue_ctx(&mut self, index: u16) -> Result<QueueCtx> {
        let (va, notifier, call) = {
            let mut t = self.t();
            (
                t.addr_mode() == AddrMode::Va,
                t.notifier(index)?,
                t.call_source(index),
            )
        };
        Ok(QueueCtx {
            features: self.features,
            hdr_len: self.hdr_len,
            va,
            notifier,
            call,
            active: self.active.clone(),
            counters: self.counters.clone(),
        })
    }

    fn rx_queue<Q: Virtqueue>(
        &mut self,
        qid: u16,
        vq: Q,
        conf: RxQueueConf,
    ) -> Result<Box<dyn RxQueue>> {
        let ctx = self.queue_ctx(vq.index())?;
        let pool = conf.pool.name().to_owned();
        let rx = VirtioRx::new(vq, conf, ctx);
        if !rx.has_buffers() {
            return Err(self.err(format!(
                "rx queue {qid}: could not allocate any receive buffer from {pool}"
            )));
        }
        Ok(Box::new(rx))
    }

    fn tx_queue<Q: Virtqueue>(&mut self, vq: Q, conf: TxQueueConf) -> Result<Box<dyn TxQueue>> {
        let ctx = self.queue_ctx(vq.index())?;
        Ok(Box::new(VirtioTx::new(vq, conf, ctx)))
    }
}

impl Device for VirtioNet {
    fn info(&self) -> DevInfo {
        let f = self.features;
        let offered = self.t().device_features();
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
            // Queue setup takes powers of two up to the queue size (split rings need them).
            desc_pow2: true,
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
        if (self.features & GUEST_TSO) != (tso & self.t().device_features()) {
            // GUEST_TSO4/6 only when asked for (DPDK's rule); the device is not running, so
            // features may be negotiated again (vhost-user SET_FEATURES, PCI reset).
            let offered = self.t().device_features();
            let features = self.t().negotiate((self.wanted | tso) & offered)?;
            self.features = features;
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
            let notifier = self.t().notifier(self.ctrl_index)?;
            let mode = self.t().addr_mode();
            let q = CtrlQueue::new(
                &self.conf.name,
                self.ctrl_index,
                self.packed(),
                mode,
                notifier,
            )?;
            self.ctrl = Some(q);
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

    /// A device that went away while the port was stopped is first replaced by a new
    /// one when the transport can reconnect (split rings; they resume at the indexes
    /// `stop` recorded); with none there yet the start fails and says so.
    fn start(&mut self) -> Result<()> {
        let back = {
            let t = self.t();
            !t.can_reconnect() || self.packed() || t.link_up() || t.reconnect(&[])?
        };
        if !back {
            return Err(self.err(
                "the device went away and no new one has connected yet; start the port \
                 again once its back end is back",
            ));
        }
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
        let started = self.t().start(&rings);
        if let Err(e) = started {
            // Best effort: make sure the device is not using the rings.
            let _ = self.t().stop();
            self.active.store(false, Ordering::Release);
            return Err(e);
        }
        self.started = true;
        self.link_state.reset();
        if let Err(e) = self.apply_ctrl(pairs) {
            self.started = false;
            let _ = self.t().stop();
            self.active.store(false, Ordering::Release);
            return Err(e);
        }
        self.watch();
        let link_src = self.t().link_source();
        self.link_src = link_src;
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

    /// A device that went away cannot answer: the port stops without it (its rings
    /// resume where the device last marked them used), and the queues may then hand
    /// their in-flight buffers back to the pool.
    fn stop(&mut self) -> Result<()> {
        if !self.started {
            return Ok(());
        }
        self.started = false;
        self.watcher = None;
        self.link_src = None;
        let (stopped, gone) = {
            let mut t = self.t();
            let r = t.stop();
            (r, !t.link_up())
        };
        let mut bases = match stopped {
            Ok(b) => b,
            Err(e) if gone => {
                tracing::warn!(
                    device = self.conf.name,
                    "the device went away; stopped without it ({e})"
                );
                let seg = self.rings.clone();
                let split = !self.packed();
                self.slots
                    .iter()
                    .map(|s| {
                        s.addrs
                            .zip(seg.as_deref().filter(|_| split))
                            .and_then(|(a, seg)| watch::used_index(seg, &a))
                            .unwrap_or(s.base)
                    })
                    .collect()
            }
            Err(e) => return Err(e),
        };
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
        self.watcher = None;
        self.t().close();
        self.active.store(false, Ordering::Release);
    }

    /// Down while the device is gone; a transport that can reconnect
    /// ([`Transport::can_reconnect`]) is asked for a new device each time (as its
    /// watcher does meanwhile).
    fn link(&self) -> Link {
        let up = self.started && {
            let t = self.t();
            t.link_up()
                || self
                    .resumable(t.as_ref())
                    .is_some_and(|r| r.resume(t.as_ref(), &self.conf.name))
        };
        if self.started {
            self.link_state.observe(up, &self.conf.name);
        }
        Link {
            up,
            speed_mbps: 10_000,
            full_duplex: true,
        }
    }

    fn link_intr_fd(&self) -> Option<BorrowedFd<'_>> {
        self.link_src.as_ref().map(|s| s.fd())
    }

    fn link_intr_ack(&self) {
        if let Some(s) = &self.link_src {
            s.ack();
            self.link_intrs.fetch_add(1, Ordering::Relaxed);
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
            ("device_features".to_string(), self.t().device_features()),
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
            (
                "device_lost".to_string(),
                self.link_state.lost.load(Ordering::Relaxed),
            ),
            (
                "link_interrupts".to_string(),
                self.link_intrs.load(Ordering::Relaxed),
            ),
        ];
        let (ok, failed) = match &self.ctrl {
            Some(c) => (c.ok, c.failed),
            None => self.ctrl_emulated,
        };
        v.push(("ctrl_commands_ok".to_string(), ok));
        v.push(("ctrl_commands_failed".to_string(), failed));
        v.extend(self.counters.xstats());
        v.extend(self.t().xstats());
        v
    }
}

impl Drop for VirtioNet {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Notifier;
    use crate::virtqueue::split::tests::SimDevice;
    use pmd_core::ethdev::Port;
    use pmd_core::mbuf::PktBatch;
    use pmd_core::Mempool;
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
        ctrl: Arc<crate::net::ctrl::queue::tests::SimCtrlDevice>,
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
        use crate::net::ctrl::queue::tests::{Reply, SimCtrlDevice};
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
            *ctrl.reply.lock().unwrap() = Reply::Ack(crate::net::ctrl::VIRTIO_NET_ERR);
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
        use crate::virtqueue::packed::tests::SimPackedDevice;
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
