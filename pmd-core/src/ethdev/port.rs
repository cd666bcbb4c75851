//! [`Port`]: the ethdev state machine around a driver's [`Device`], and the owned queue
//! handles it hands out.

use super::{
    Armed, DevInfo, Device, EthStats, IntrError, Link, MacAddr, PortConf, PortId, QueueStats,
    RxOffloads, RxQueue, RxQueueConf, TxOffloads, TxQueue, TxQueueConf, DEFAULT_MTU, L2_OVERHEAD,
};
use crate::error::{Error, Result};
use crate::mbuf::{PktBatch, DEFAULT_BURST};
use crate::mempool::Mempool;
use crate::pdump::{Dir, PortTap, QueueTap};
use std::cell::Cell;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

/// Where a port is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    /// Probed, not configured yet.
    Probed,
    /// Configured; queues may be set up.
    Configured,
    /// Passing packets.
    Started,
    /// Stopped after running; may be reconfigured or restarted.
    Stopped,
    /// Closed for good.
    Closed,
}

impl PortState {
    fn name(self) -> &'static str {
        match self {
            PortState::Probed => "not configured",
            PortState::Configured => "configured",
            PortState::Started => "started",
            PortState::Stopped => "stopped",
            PortState::Closed => "closed",
        }
    }
}

/// State shared between a port and its queue handles.
#[derive(Debug, Default)]
struct PortShared {
    started: AtomicBool,
}

/// Proof that a queue is owned by a live handle.
#[derive(Debug)]
struct QueueToken;

#[derive(Debug, Default)]
struct QueueSlot {
    stats: Arc<QueueStats>,
    owner: Weak<QueueToken>,
    set_up: bool,
    /// Data room of the rx queue's pool buffers and whether it scatters (rx only).
    rx_room: usize,
    scatter: bool,
}

/// A network port: a probed device plus the ethdev state machine.
/// Calls made in the wrong state return [`Error::PortState`].
pub struct Port {
    id: PortId,
    name: String,
    dev: Box<dyn Device>,
    state: PortState,
    shared: Arc<PortShared>,
    /// Where a capture (`pmd-dumpcap`) attaches to this port's queues.
    pdump: Arc<PortTap>,
    rxq: Vec<QueueSlot>,
    txq: Vec<QueueSlot>,
    stats_base: EthStats,
    rx_offloads: RxOffloads,
    tx_offloads: TxOffloads,
    mtu: u16,
    /// The link as [`Port::link_changed`] last reported it.
    seen_link: Cell<Link>,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("state", &self.state)
            .finish()
    }
}

impl Port {
    /// Wraps a probed device as port `id`.
    pub fn new(id: PortId, name: impl Into<String>, dev: Box<dyn Device>) -> Port {
        let mtu = dev.mtu().unwrap_or(DEFAULT_MTU);
        let name = name.into();
        Port {
            pdump: Arc::new(PortTap::new(id, &name)),
            rx_offloads: RxOffloads::NONE,
            tx_offloads: TxOffloads::NONE,
            mtu,
            id,
            name,
            dev,
            state: PortState::Probed,
            shared: Arc::default(),
            rxq: Vec::new(),
            txq: Vec::new(),
            stats_base: EthStats::default(),
            seen_link: Cell::new(Link::default()),
        }
    }

    fn wrong_state(&self, op: &'static str, hint: &'static str) -> Error {
        Error::PortState {
            port: self.id,
            op,
            state: self.state.name(),
            hint,
        }
    }

    fn port_err(&self, msg: String) -> Error {
        Error::Port { port: self.id, msg }
    }

    /// Port id.
    pub fn id(&self) -> PortId {
        self.id
    }

    /// Where a capture attaches to this port (the capture server's view of it).
    pub(crate) fn pdump_tap(&self) -> Arc<PortTap> {
        self.pdump.clone()
    }

    /// Device name (the vdev name, e.g. `net_null0`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Current state.
    pub fn state(&self) -> PortState {
        self.state
    }

    /// Device capabilities.
    pub fn info(&self) -> DevInfo {
        self.dev.info()
    }

    /// Sets the number of rx and tx queues. Allowed before start or after stop.
    pub fn configure(&mut self, conf: &PortConf) -> Result<()> {
        match self.state {
            PortState::Probed | PortState::Configured | PortState::Stopped => {}
            _ => return Err(self.wrong_state("configure", "; stop it first")),
        }
        let info = self.dev.info();
        if conf.rx_queues == 0 || conf.rx_queues > info.max_rx_queues {
            return Err(self.port_err(format!(
                "{} rx queues requested, {} supports 1..={}",
                conf.rx_queues, info.driver, info.max_rx_queues
            )));
        }
        if conf.tx_queues == 0 || conf.tx_queues > info.max_tx_queues {
            return Err(self.port_err(format!(
                "{} tx queues requested, {} supports 1..={}",
                conf.tx_queues, info.driver, info.max_tx_queues
            )));
        }
        self.check_offloads(&info, conf.rx_offloads, conf.tx_offloads)?;
        if self
            .rxq
            .iter()
            .chain(&self.txq)
            .any(|q| q.owner.strong_count() > 0)
        {
            return Err(self.port_err(
                "cannot reconfigure while queue handles are alive; drop them first".into(),
            ));
        }
        if let Some(mtu) = conf.mtu {
            self.apply_mtu(&info, mtu)?;
        }
        self.dev.configure(conf)?;
        self.rx_offloads = conf.rx_offloads;
        self.tx_offloads = conf.tx_offloads;
        self.rxq = (0..conf.rx_queues).map(|_| QueueSlot::default()).collect();
        self.txq = (0..conf.tx_queues).map(|_| QueueSlot::default()).collect();
        self.pdump.set_queues(conf.rx_queues, conf.tx_queues);
        self.state = PortState::Configured;
        Ok(())
    }

    /// Refuses offloads the device lacks, naming them and listing what it has.
    fn check_offloads(&self, info: &DevInfo, rx: RxOffloads, tx: TxOffloads) -> Result<()> {
        let rx_missing = rx.minus(info.rx_offload_capa);
        if !rx_missing.is_empty() {
            return Err(self.port_err(format!(
                "{} does not support rx offload {rx_missing}; it supports: {}",
                info.driver, info.rx_offload_capa
            )));
        }
        let tx_missing = tx.minus(info.tx_offload_capa);
        if !tx_missing.is_empty() {
            return Err(self.port_err(format!(
                "{} does not support tx offload {tx_missing}; it supports: {}",
                info.driver, info.tx_offload_capa
            )));
        }
        Ok(())
    }

    fn apply_mtu(&mut self, info: &DevInfo, mtu: u16) -> Result<()> {
        if mtu < info.min_mtu || mtu > info.max_mtu {
            return Err(self.port_err(format!(
                "MTU {mtu} is out of range: {} supports {}..={}",
                info.driver, info.min_mtu, info.max_mtu
            )));
        }
        self.check_rx_room(mtu)?;
        // A device whose own MTU (a kernel interface's) is already this one is not asked.
        if self.dev.mtu() != Some(mtu) {
            self.dev.set_mtu(mtu)?;
        }
        self.mtu = mtu;
        Ok(())
    }

    /// A frame of MTU size must fit one rx buffer unless the queue scatters: refusing
    /// here is what keeps a too-small pool from dropping every large frame.
    fn check_rx_room(&self, mtu: u16) -> Result<()> {
        let frame = (u32::from(mtu) + L2_OVERHEAD) as usize;
        for (q, slot) in self.rxq.iter().enumerate() {
            if slot.set_up && !slot.scatter && frame > slot.rx_room {
                return Err(self.rx_room_err(q, mtu, slot.rx_room));
            }
        }
        Ok(())
    }

    fn rx_room_err(&self, q: usize, mtu: u16, room: usize) -> Error {
        let frame = u32::from(mtu) + L2_OVERHEAD;
        self.port_err(format!(
            "MTU {mtu} needs {frame}-byte frames but rx queue {q}'s buffers hold {room} bytes: \
             enable the SCATTER rx offload (testpmd --enable-scatter), use larger buffers \
             (--mbuf-size {}) or lower the MTU",
            frame as usize + usize::from(crate::mbuf::HEADROOM)
        ))
    }

    /// The port's MTU (the device's own when it has one, e.g. a kernel interface's).
    pub fn mtu(&self) -> u16 {
        self.dev.mtu().unwrap_or(self.mtu)
    }

    /// Sets the MTU: checked against the device's range and, for queues already set up
    /// without scatter, against their buffers.
    pub fn set_mtu(&mut self, mtu: u16) -> Result<()> {
        if self.state == PortState::Closed {
            return Err(self.wrong_state("set the MTU", ""));
        }
        let info = self.dev.info();
        self.apply_mtu(&info, mtu)
    }

    /// Largest frame the port accepts at its MTU (MTU plus [`L2_OVERHEAD`]).
    pub fn max_frame_len(&self) -> u32 {
        u32::from(self.mtu()) + L2_OVERHEAD
    }

    /// Receive offloads configured for the port.
    pub fn rx_offloads(&self) -> RxOffloads {
        self.rx_offloads
    }

    /// Transmit offloads configured for the port.
    pub fn tx_offloads(&self) -> TxOffloads {
        self.tx_offloads
    }

    fn check_queue_setup(
        &self,
        kind: &str,
        slots: &[QueueSlot],
        qid: u16,
        nb_desc: u16,
    ) -> Result<u16> {
        match self.state {
            PortState::Configured | PortState::Stopped => {}
            PortState::Probed => {
                return Err(self.wrong_state("set up queues", "; call configure first"))
            }
            _ => return Err(self.wrong_state("set up queues", "; stop it first")),
        }
        let slot = slots.get(qid as usize).ok_or_else(|| {
            self.port_err(format!(
                "{kind} queue {qid} does not exist: the port has {} {kind} queues",
                slots.len()
            ))
        })?;
        if slot.owner.strong_count() > 0 {
            return Err(self.port_err(format!(
                "{kind} queue {qid} is still owned by a handle; drop it first"
            )));
        }
        let info = self.dev.info();
        let nb = if nb_desc == 0 {
            info.default_desc
        } else {
            nb_desc
        };
        if !info.desc_ok(nb) {
            return Err(self.port_err(format!(
                "{nb} {kind} descriptors requested, {} supports {}",
                info.driver,
                info.desc_limits()
            )));
        }
        Ok(nb)
    }

    /// Sets up rx queue `qid` with `nb_desc` descriptors (0 = driver default) filled from
    /// `pool`, and returns its owned handle.
    pub fn setup_rx_queue(
        &mut self,
        qid: u16,
        nb_desc: u16,
        pool: &Mempool,
    ) -> Result<RxQueueHandle> {
        self.setup_rx_queue_with(qid, nb_desc, pool, RxOffloads::NONE)
    }

    /// [`Port::setup_rx_queue`] with per-queue offloads added to the port's.
    pub fn setup_rx_queue_with(
        &mut self,
        qid: u16,
        nb_desc: u16,
        pool: &Mempool,
        offloads: RxOffloads,
    ) -> Result<RxQueueHandle> {
        let nb_desc = self.check_queue_setup("rx", &self.rxq, qid, nb_desc)?;
        let info = self.dev.info();
        self.check_offloads(&info, offloads, TxOffloads::NONE)?;
        let offloads = offloads | self.rx_offloads;
        let room = usize::from(pool.buf_size()).saturating_sub(usize::from(crate::mbuf::HEADROOM));
        let scatter = offloads.contains(RxOffloads::SCATTER);
        let mtu = self.mtu();
        if !scatter && self.max_frame_len() as usize > room {
            return Err(self.rx_room_err(qid as usize, mtu, room));
        }
        let stats = self.rxq[qid as usize].stats.clone();
        let q = self.dev.setup_rx_queue(
            qid,
            RxQueueConf {
                port: self.id,
                nb_desc,
                pool: pool.clone(),
                stats,
                offloads,
                max_rx_pktlen: self.max_frame_len(),
            },
        )?;
        let token = Arc::new(QueueToken);
        let slot = &mut self.rxq[qid as usize];
        slot.owner = Arc::downgrade(&token);
        slot.set_up = true;
        slot.rx_room = room;
        slot.scatter = scatter;
        Ok(RxQueueHandle {
            q,
            driver: info.driver,
            shared: self.shared.clone(),
            burst: DEFAULT_BURST,
            port: self.id,
            qid,
            pdump: QueueTap::new(self.pdump.clone(), Dir::Rx, qid),
            _token: token,
        })
    }

    /// Sets up tx queue `qid` with `nb_desc` descriptors (0 = driver default) and returns
    /// its owned handle.
    pub fn setup_tx_queue(&mut self, qid: u16, nb_desc: u16) -> Result<TxQueueHandle> {
        self.setup_tx_queue_with(qid, nb_desc, TxOffloads::NONE)
    }

    /// [`Port::setup_tx_queue`] with per-queue offloads added to the port's.
    pub fn setup_tx_queue_with(
        &mut self,
        qid: u16,
        nb_desc: u16,
        offloads: TxOffloads,
    ) -> Result<TxQueueHandle> {
        let nb_desc = self.check_queue_setup("tx", &self.txq, qid, nb_desc)?;
        let info = self.dev.info();
        self.check_offloads(&info, RxOffloads::NONE, offloads)?;
        let stats = self.txq[qid as usize].stats.clone();
        let q = self.dev.setup_tx_queue(
            qid,
            TxQueueConf {
                nb_desc,
                stats,
                offloads: offloads | self.tx_offloads,
            },
        )?;
        let token = Arc::new(QueueToken);
        let slot = &mut self.txq[qid as usize];
        slot.owner = Arc::downgrade(&token);
        slot.set_up = true;
        Ok(TxQueueHandle {
            q,
            shared: self.shared.clone(),
            port: self.id,
            qid,
            pdump: QueueTap::new(self.pdump.clone(), Dir::Tx, qid),
            _token: token,
        })
    }

    /// Starts the port. Every configured queue must have been set up.
    pub fn start(&mut self) -> Result<()> {
        match self.state {
            PortState::Configured | PortState::Stopped => {}
            PortState::Started => return Ok(()),
            PortState::Probed => {
                return Err(
                    self.wrong_state("start", "; call configure and set up its queues first")
                )
            }
            PortState::Closed => return Err(self.wrong_state("start", "")),
        }
        if let Some(q) = self.rxq.iter().position(|q| !q.set_up) {
            return Err(self.port_err(format!(
                "rx queue {q} is not set up; set up every queue before start"
            )));
        }
        if let Some(q) = self.txq.iter().position(|q| !q.set_up) {
            return Err(self.port_err(format!(
                "tx queue {q} is not set up; set up every queue before start"
            )));
        }
        // The MTU may have changed since the queues were set up (a kernel interface's
        // can change under us): a frame that cannot be received must fail here, not vanish.
        self.check_rx_room(self.mtu())?;
        self.dev.start()?;
        self.state = PortState::Started;
        self.shared.started.store(true, Ordering::Release);
        Ok(())
    }

    /// Stops the port; queue handles return 0 from their bursts until it starts again.
    pub fn stop(&mut self) -> Result<()> {
        match self.state {
            PortState::Started => {}
            PortState::Stopped => return Ok(()),
            _ => return Err(self.wrong_state("stop", "; only a started port can be stopped")),
        }
        self.shared.started.store(false, Ordering::Release);
        self.dev.stop()?;
        self.state = PortState::Stopped;
        Ok(())
    }

    /// Closes the port (stopping it first if needed). Final.
    pub fn close(&mut self) {
        if self.state == PortState::Closed {
            return;
        }
        if self.state == PortState::Started {
            if let Err(e) = self.stop() {
                tracing::warn!(port = self.id, "stop during close failed: {e}");
            }
        }
        self.dev.close();
        self.state = PortState::Closed;
    }

    /// Current link state.
    pub fn link(&self) -> Link {
        self.dev.link()
    }

    /// Waits up to `timeout` for the link to come up; returns the last state seen.
    pub fn wait_link_up(&self, timeout: std::time::Duration) -> Link {
        let end = std::time::Instant::now() + timeout;
        loop {
            let l = self.link();
            if l.up || std::time::Instant::now() >= end {
                return l;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// The link-state change event of this port, if there is one since the last call
    /// (the first call reports a link that is up): the new state. Applications call it
    /// from their periodic work (l2fwd and testpmd every 50 ms) and when [`Port::link_fd`]
    /// fires, and print or act on it. Acknowledges a link interrupt that fired.
    pub fn link_changed(&self) -> Option<Link> {
        self.link_intr_take(std::time::Duration::ZERO);
        let now = self.link();
        (now != self.seen_link.replace(now)).then_some(now)
    }

    /// The descriptor that becomes readable when the device signals a link change (its
    /// link-state interrupt: the misc MSI-X vector of igb and ixgbe), if it has one. Watch
    /// it edge-triggered ([`crate::unix::Epoll::watch_edge`]) and call
    /// [`Port::link_changed`] when it fires, which acknowledges it. `None`: the link is
    /// polled.
    pub fn link_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.dev.link_intr_fd()
    }

    /// Acknowledges the link interrupt if it fires within `wait` (0: has fired).
    fn link_intr_take(&self, wait: std::time::Duration) {
        let fired = self
            .dev
            .link_intr_fd()
            .is_some_and(|fd| crate::unix::readable(fd, wait).unwrap_or(false));
        if fired {
            self.dev.link_intr_ack();
        }
    }

    /// Waits up to `timeout` for the link to differ from what it is at the call; returns
    /// the state then (the same one if it did not change). Sleeps on the link interrupt
    /// where the device has one (looking at the link at least every 100 ms all the same),
    /// else looks every 10 ms.
    pub fn link_wait(&self, timeout: std::time::Duration) -> Link {
        use std::time::{Duration, Instant};
        let end = Instant::now() + timeout;
        let before = self.link();
        loop {
            let l = self.link();
            let left = end.saturating_duration_since(Instant::now());
            if l != before || left.is_zero() {
                return l;
            }
            if self.dev.link_intr_fd().is_some() {
                self.link_intr_take(left.min(Duration::from_millis(100)));
            } else {
                std::thread::sleep(left.min(Duration::from_millis(10)));
            }
        }
    }

    /// The port's MAC address.
    pub fn mac_addr(&self) -> MacAddr {
        self.dev.mac_addr()
    }

    /// Turns promiscuous mode on or off.
    pub fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        if self.state == PortState::Closed {
            return Err(self.wrong_state("change promiscuous mode", ""));
        }
        self.dev.set_promiscuous(on)
    }

    /// Whether promiscuous mode is on.
    pub fn promiscuous(&self) -> bool {
        self.dev.promiscuous()
    }

    /// Replaces the multicast addresses the port receives besides its own; each must be
    /// a multicast address.
    pub fn set_mc_addr_list(&mut self, list: &[MacAddr]) -> Result<()> {
        if self.state == PortState::Closed {
            return Err(self.wrong_state("set the multicast list", ""));
        }
        if let Some(m) = list.iter().find(|m| m.0[0] & 1 == 0) {
            return Err(crate::Error::Config(format!(
                "{m} is not a multicast address (the first byte's low bit is clear)"
            )));
        }
        self.dev.set_mc_addr_list(list)
    }

    /// Adds (`on`) or removes a filter for VLAN `vlan` (0..=4095).
    pub fn vlan_filter(&mut self, vlan: u16, on: bool) -> Result<()> {
        if self.state == PortState::Closed {
            return Err(self.wrong_state("change a VLAN filter", ""));
        }
        if vlan > 4095 {
            return Err(crate::Error::Config(format!(
                "VLAN {vlan}: ids are 0..=4095"
            )));
        }
        self.dev.vlan_filter(vlan, on)
    }

    fn raw_stats(&self) -> EthStats {
        let mut s = EthStats {
            imissed: self.dev.rx_missed(),
            ..EthStats::default()
        };
        for q in &self.rxq {
            let c = q.stats.snapshot();
            s.ipackets += c.packets;
            s.ibytes += c.bytes;
            s.ierrors += c.errors;
            s.imissed += c.missed;
            s.rx_nombuf += c.no_mbuf;
        }
        for q in &self.txq {
            let c = q.stats.snapshot();
            s.opackets += c.packets;
            s.obytes += c.bytes;
            s.oerrors += c.errors;
        }
        s
    }

    /// Port totals since the last [`Port::reset_stats`].
    pub fn stats(&self) -> EthStats {
        self.raw_stats().since(&self.stats_base)
    }

    /// Zeroes the totals reported by [`Port::stats`].
    pub fn reset_stats(&mut self) {
        self.stats_base = self.raw_stats();
    }

    /// Each rx queue's and each tx queue's counters, by queue id.
    pub fn queue_counters(&self) -> (Vec<super::QueueCounters>, Vec<super::QueueCounters>) {
        (
            self.rxq.iter().map(|q| q.stats.snapshot()).collect(),
            self.txq.iter().map(|q| q.stats.snapshot()).collect(),
        )
    }

    /// The smallest data room of the rx queues' pool buffers (0 before any is set up).
    pub fn rx_buf_size_min(&self) -> usize {
        self.rxq
            .iter()
            .filter(|q| q.set_up)
            .map(|q| q.rx_room)
            .min()
            .unwrap_or(0)
    }

    /// Extended statistics by name: port totals, per-queue counters, then the driver's own.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        let s = self.stats();
        let mut v = vec![
            ("rx_good_packets".to_string(), s.ipackets),
            ("tx_good_packets".to_string(), s.opackets),
            ("rx_good_bytes".to_string(), s.ibytes),
            ("tx_good_bytes".to_string(), s.obytes),
            ("rx_missed_errors".to_string(), s.imissed),
            ("rx_errors".to_string(), s.ierrors),
            ("tx_errors".to_string(), s.oerrors),
            ("rx_mbuf_allocation_errors".to_string(), s.rx_nombuf),
        ];
        let (rx, tx) = self.queue_counters();
        for (i, c) in rx.iter().enumerate() {
            v.push((format!("rx_q{i}_packets"), c.packets));
            v.push((format!("rx_q{i}_bytes"), c.bytes));
            v.push((format!("rx_q{i}_errors"), c.errors));
        }
        for (i, c) in tx.iter().enumerate() {
            v.push((format!("tx_q{i}_packets"), c.packets));
            v.push((format!("tx_q{i}_bytes"), c.bytes));
        }
        v.extend(self.dev.xstats());
        v
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.close();
    }
}

/// An owned rx queue: move it into the one lcore thread that polls it.
pub struct RxQueueHandle {
    q: Box<dyn RxQueue>,
    driver: &'static str,
    shared: Arc<PortShared>,
    burst: usize,
    port: PortId,
    qid: u16,
    pdump: QueueTap,
    _token: Arc<QueueToken>,
}

impl RxQueueHandle {
    /// Receives up to the burst size (default 32, bounded by the batch's room) into `batch`;
    /// returns how many were appended. Returns 0 while the port is not started.
    #[inline]
    pub fn rx_burst(&mut self, batch: &mut PktBatch) -> usize {
        if !self.shared.started.load(Ordering::Relaxed) {
            return 0;
        }
        let max = self.burst.min(batch.spare());
        if max == 0 {
            return 0;
        }
        let before = batch.len();
        let n = self.q.rx_burst(batch, max);
        if n > 0 && self.pdump.on() {
            self.capture(batch, before, n);
        }
        n
    }

    /// Copies the `n` packets received after `before` into the running capture.
    #[cold]
    fn capture(&mut self, batch: &PktBatch, before: usize, n: usize) {
        if let Some(pkts) = batch.as_slice().get(before..before + n) {
            self.pdump.stage(pkts);
            self.pdump.commit(pkts.len());
        }
    }

    /// Whether this queue has rx interrupts (see [`crate::intr`]).
    pub fn has_intr(&self) -> bool {
        self.q.has_intr()
    }

    /// Arms the rx interrupt (DPDK's `rte_eth_dev_rx_intr_enable`), then checks the ring
    /// once more: [`Armed::Ready`] means packets are waiting (poll instead of sleeping).
    /// Fails with an error naming the PMD if it has no rx interrupts.
    pub fn intr_enable(&mut self) -> Result<Armed> {
        self.intr_enable_raw().map_err(|e| match e {
            IntrError::Unsupported => Error::Port {
                port: self.port,
                msg: format!(
                    "rx queue {}: {} has no rx interrupts; poll this queue instead",
                    self.qid, self.driver
                ),
            },
            IntrError::Io(e) => Error::Port {
                port: self.port,
                msg: format!("rx queue {}: arming the rx interrupt: {e}", self.qid),
            },
        })
    }

    /// [`RxQueueHandle::intr_enable`] with the PMD's own error.
    pub(crate) fn intr_enable_raw(&mut self) -> std::result::Result<Armed, IntrError> {
        self.q.intr_enable()
    }

    /// Disarms the rx interrupt and consumes what it signalled.
    pub fn intr_disable(&mut self) {
        self.q.intr_disable()
    }

    /// The descriptor that becomes readable while the interrupt is armed and a packet
    /// arrives (for an application's own epoll set); `None` while there is none.
    pub fn intr_fd(&self) -> Option<BorrowedFd<'_>> {
        self.q.intr_fd()
    }

    /// The PMD behind this queue.
    pub fn driver(&self) -> &'static str {
        self.driver
    }

    /// Sets the largest burst one `rx_burst` call returns (1..=64).
    pub fn set_burst(&mut self, burst: usize) {
        self.burst = burst.clamp(1, crate::mbuf::BATCH_CAPACITY);
    }

    /// The port this queue belongs to.
    pub fn port(&self) -> PortId {
        self.port
    }

    /// Queue index.
    pub fn queue(&self) -> u16 {
        self.qid
    }
}

/// An owned tx queue: move it into the one lcore thread that sends on it.
pub struct TxQueueHandle {
    q: Box<dyn TxQueue>,
    shared: Arc<PortShared>,
    port: PortId,
    qid: u16,
    pdump: QueueTap,
    _token: Arc<QueueToken>,
}

impl TxQueueHandle {
    /// Sends packets from the front of `batch`; those not sent stay in it, in order.
    /// Returns how many left the batch (0 while the port is not started, or for an empty
    /// batch).
    #[inline]
    pub fn tx_burst(&mut self, batch: &mut PktBatch) -> usize {
        if !self.shared.started.load(Ordering::Relaxed) {
            return 0;
        }
        if self.pdump.on() {
            return self.tx_burst_captured(batch);
        }
        self.q.tx_burst(batch)
    }

    /// A tx burst while a capture runs: every packet is copied before the PMD takes it,
    /// and only the copies of those it took are published.
    #[cold]
    fn tx_burst_captured(&mut self, batch: &mut PktBatch) -> usize {
        self.pdump.stage(batch.as_slice());
        let sent = self.q.tx_burst(batch);
        self.pdump.commit(sent);
        sent
    }

    /// Pushes out what the queue still holds back from earlier bursts ([`TxQueue::flush`]);
    /// call it when there is nothing to send for a while. Does nothing while the port is
    /// not started.
    #[inline]
    pub fn tx_flush(&mut self) {
        if !self.shared.started.load(Ordering::Relaxed) {
            return;
        }
        self.q.flush()
    }

    /// Prepares packets with transmit offload requests for this queue (DPDK's
    /// `rte_eth_tx_prepare`): returns how many from the front are ready to send; the
    /// first that is not (bad header lengths, or an offload the port cannot do) stops it.
    #[inline]
    pub fn tx_prepare(&mut self, batch: &mut PktBatch) -> usize {
        self.q.tx_prepare(batch)
    }

    /// The port this queue belongs to.
    pub fn port(&self) -> PortId {
        self.port
    }

    /// Queue index.
    pub fn queue(&self) -> u16 {
        self.qid
    }
}

impl std::fmt::Debug for RxQueueHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxQueueHandle")
            .field("port", &self.port)
            .field("queue", &self.qid)
            .finish()
    }
}

impl std::fmt::Debug for TxQueueHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxQueueHandle")
            .field("port", &self.port)
            .field("queue", &self.qid)
            .finish()
    }
}
