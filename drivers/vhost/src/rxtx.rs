//! The port's queues: receive queue `q` empties the guest's transmit ring `2q + 1`,
//! transmit queue `q` fills the guest's receive ring `2q`. Each burst enters the ring's
//! slot ([`crate::shared::RingSlot`]), rebuilds its view of the ring when the control
//! thread handed out a new configuration, runs the ring's code — split ([`crate::split`])
//! or packed ([`crate::packed`]), as the front end negotiated `VIRTIO_F_RING_PACKED` — and
//! leaves the slot with the next available index.

use crate::burst::{
    bump, tx_header_for, RingSetupError, RxCtx, TxCtx, F_GUEST_CSUM, F_GUEST_ECN, F_GUEST_TSO4,
    F_GUEST_TSO6,
};
use crate::packed::PackedRing;
use crate::shared::{RingSlot, Shared};
use crate::split::SplitRing;
use crate::vring::{RingErrors, VringConfig};
use pmd_core::ethdev::{
    PortId, QueueStats, RxOffloads, RxQueue, RxQueueConf, TxOffloads, TxQueue, TxQueueConf,
};
use pmd_core::intr::{Armed, IntrError};
use pmd_core::mbuf::{Mbuf, PktBatch, TX_L4_MASK, TX_TCP_SEG};
use pmd_core::vnet::features::VIRTIO_F_RING_PACKED;
use pmd_core::vnet::{RxProcessor, VnetStats};
use pmd_core::Mempool;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A ring of either layout.
#[derive(Debug)]
enum AnyRing {
    Split(SplitRing),
    Packed(PackedRing),
}

impl AnyRing {
    /// The ring `cfg` describes, in the layout its features name.
    fn new(cfg: &VringConfig) -> Result<AnyRing, RingSetupError> {
        if cfg.has(VIRTIO_F_RING_PACKED) {
            PackedRing::new(cfg).map(AnyRing::Packed)
        } else {
            SplitRing::new(cfg).map(AnyRing::Split)
        }
    }

    #[inline(always)]
    fn dequeue(
        &mut self,
        batch: &mut PktBatch,
        max: usize,
        pool: &Mempool,
        ctx: &RxCtx<'_>,
    ) -> usize {
        match self {
            AnyRing::Split(r) => r.dequeue(batch, max, pool, ctx),
            AnyRing::Packed(r) => r.dequeue(batch, max, pool, ctx),
        }
    }

    #[inline(always)]
    fn enqueue(&mut self, pkts: &[Mbuf], ctx: &TxCtx<'_>) -> usize {
        match self {
            AnyRing::Split(r) => r.enqueue(pkts, ctx),
            AnyRing::Packed(r) => r.enqueue(pkts, ctx),
        }
    }

    #[inline(always)]
    fn last_avail(&self) -> u16 {
        match self {
            AnyRing::Split(r) => r.last_avail(),
            AnyRing::Packed(r) => r.last_avail(),
        }
    }

    fn arm(&self) -> bool {
        match self {
            AnyRing::Split(r) => r.arm(),
            AnyRing::Packed(r) => r.arm(),
        }
    }

    fn disarm(&self) {
        match self {
            AnyRing::Split(r) => r.disarm(),
            AnyRing::Packed(r) => r.disarm(),
        }
    }

    #[inline(always)]
    fn is_broken(&self) -> bool {
        match self {
            AnyRing::Split(r) => r.is_broken(),
            AnyRing::Packed(r) => r.is_broken(),
        }
    }
}

/// A queue's view of its ring: rebuilt when the slot's generation changes.
#[derive(Debug, Default)]
struct View {
    gen: u64,
    ring: Option<AnyRing>,
    /// The features the front end negotiated (what its guest takes).
    features: u64,
    /// The ring's kick eventfd (rx interrupts), if the front end gave one.
    kick: Option<Arc<OwnedFd>>,
}

impl View {
    /// The ring to run in this burst (inside `slot.enter()`), if it could be built, and
    /// the features its front end negotiated.
    #[inline(always)]
    fn ring(&mut self, slot: &RingSlot, errs: &RingErrors) -> Option<(&mut AnyRing, u64)> {
        if slot.generation() != self.gen || self.ring.is_none() {
            self.rebuild(slot, errs);
        }
        let features = self.features;
        self.ring
            .as_mut()
            .filter(|r| !r.is_broken())
            .map(|r| (r, features))
    }

    /// The ring was taken back (the front end went away): drops the view, and with it
    /// the guest's memory mapping and call eventfd it held.
    #[cold]
    fn release(&mut self) {
        self.ring = None;
        self.kick = None;
    }

    #[cold]
    fn rebuild(&mut self, slot: &RingSlot, errs: &RingErrors) {
        let gen = slot.generation();
        if gen == self.gen && self.ring.is_none() {
            return; // this configuration already failed to build
        }
        self.gen = gen;
        self.features = 0;
        self.kick = None;
        self.ring = slot.config().and_then(|cfg| match AnyRing::new(&cfg) {
            Ok(r) => {
                self.features = cfg.features;
                self.kick = cfg.kick.clone();
                Some(r)
            }
            Err(e) => {
                // The control plane checked the addresses; this is a guard.
                errs.bad_ring.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("vhost: ring {}: {e}", cfg.index);
                None
            }
        });
    }
}

/// A receive queue: packets the guest transmits.
#[derive(Debug)]
pub struct VhostRxQueue {
    shared: Arc<Shared>,
    ring: u16,
    port: PortId,
    pool: Mempool,
    stats: Arc<QueueStats>,
    errs: Arc<RingErrors>,
    rxp: RxProcessor,
    scatter: bool,
    view: View,
}

impl VhostRxQueue {
    /// Receive queue `qid`; `vnet` counts what the guest's headers asked for.
    pub fn new(
        shared: Arc<Shared>,
        qid: u16,
        conf: RxQueueConf,
        errs: Arc<RingErrors>,
        vnet: Arc<VnetStats>,
    ) -> Self {
        VhostRxQueue {
            shared,
            ring: 2 * qid + 1,
            port: conf.port,
            scatter: conf.offloads.contains(RxOffloads::SCATTER),
            rxp: RxProcessor {
                lro: conf.offloads.contains(RxOffloads::TCP_LRO),
                stats: vnet,
            },
            pool: conf.pool,
            stats: conf.stats,
            errs,
            view: View::default(),
        }
    }
}

impl RxQueue for VhostRxQueue {
    /// The ring's kick eventfd: armed, the guest is asked to kick us (NO_NOTIFY cleared,
    /// `avail_event` set, or the packed device event flags enabled).
    fn has_intr(&self) -> bool {
        true
    }

    /// Arms the ring the front end runs now; with none (not connected, or NOFD kicks)
    /// there is nothing to arm and the sleeper's timeout brings the queue back.
    fn intr_enable(&mut self) -> Result<Armed, IntrError> {
        let Some(slot) = self.shared.ring(self.ring) else {
            return Ok(Armed::Sleep);
        };
        if !slot.enter() {
            self.view.release();
            return Ok(Armed::Sleep);
        }
        let ready = match self.view.ring(slot, &self.errs) {
            Some((ring, _)) => ring.arm(),
            None => false,
        };
        slot.leave_unchanged();
        Ok(if ready { Armed::Ready } else { Armed::Sleep })
    }

    fn intr_disable(&mut self) {
        let Some(slot) = self.shared.ring(self.ring) else {
            return;
        };
        if slot.enter() {
            if let Some((ring, _)) = self.view.ring(slot, &self.errs) {
                ring.disarm();
            }
            slot.leave_unchanged();
        }
        if let Some(k) = &self.view.kick {
            pmd_core::unix::eventfd_drain(k.as_fd());
        }
    }

    fn intr_fd(&self) -> Option<BorrowedFd<'_>> {
        self.view.kick.as_ref().map(|k| k.as_fd())
    }

    fn rx_burst(&mut self, batch: &mut PktBatch, max: usize) -> usize {
        let Some(slot) = self.shared.ring(self.ring) else {
            return 0;
        };
        if !slot.enter() {
            self.view.release();
            return 0;
        }
        let Some((ring, _)) = self.view.ring(slot, &self.errs) else {
            slot.leave_unchanged();
            return 0;
        };
        let ctx = RxCtx {
            stats: &self.stats,
            errors: &self.errs,
            vnet: &self.rxp,
            scatter: self.scatter,
            port: self.port,
        };
        let got = ring.dequeue(batch, max, &self.pool, &ctx);
        slot.leave(ring.last_avail());
        got
    }
}

/// The guest did not negotiate GUEST_CSUM: the TCP/UDP (and IPv4 header) checksums
/// packets ask for are computed here. A packet whose headers do not allow it keeps its
/// request, and the ring drops it (`tx_offload_errors`); TSO requests are left as they
/// are (see [`SoftwareTso`]).
#[inline(never)]
fn software_checksums(batch: &mut PktBatch) {
    for m in batch.iter_mut() {
        let f = m.ol_flags();
        if f & TX_L4_MASK != 0 && f & TX_TCP_SEG == 0 {
            let _ = pmd_core::offload::checksum(m);
        }
    }
}

/// Whether a guest with `features` takes every super-frame whole: both TSO kinds, with
/// checksum offload and ECN.
fn takes_every_super_frame(features: u64) -> bool {
    let all = F_GUEST_TSO4 | F_GUEST_TSO6 | F_GUEST_CSUM | F_GUEST_ECN;
    features & all == all
}

/// Software segmentation for guests that cannot take a super-frame whole (no GUEST_TSO4/6,
/// GUEST_CSUM or GUEST_ECN where one needs it): the super-frame is cut into MSS-sized
/// frames, with their checksums, from the pool it came from, and those go to the guest
/// in its place. Segments the ring has no room for wait here, ahead of anything else,
/// for the next burst.
#[derive(Debug, Default)]
struct SoftwareTso {
    /// Segments made and not yet in the ring, in order.
    waiting: Vec<Mbuf>,
    /// The pool of the last super-frame cut (looked up once per pool, not per packet).
    pool: Option<Mempool>,
}

impl SoftwareTso {
    /// The index of the first packet of `pkts` that the guest cannot take whole.
    #[inline]
    fn first_to_cut(pkts: &[Mbuf], features: u64) -> usize {
        pkts.iter()
            .position(|m| m.ol_flags() & TX_TCP_SEG != 0 && tx_header_for(features, m).is_none())
            .unwrap_or(pkts.len())
    }

    /// Cuts `m` into segments that wait for the ring; a super-frame whose headers do
    /// not allow it, or whose segments the pool cannot hold, is dropped and counted.
    #[cold]
    fn cut(&mut self, m: Mbuf, vnet: &VnetStats) {
        if !self.pool.as_ref().is_some_and(|p| p.owns(&m)) {
            self.pool = Mempool::of(&m);
        }
        let Some(pool) = self.pool.as_ref() else {
            bump(&vnet.tx_offload_errors, 1);
            return;
        };
        let waiting = &mut self.waiting;
        match pmd_core::offload::tso_segment(m, pool, |s| waiting.push(s)) {
            Ok(_) => bump(&vnet.tx_sw_segmented, 1),
            Err(_) => bump(&vnet.tx_offload_errors, 1),
        }
    }

    /// Puts waiting segments into the ring; returns whether none are left.
    #[inline]
    fn flush(&mut self, ring: &mut AnyRing, ctx: &TxCtx<'_>) -> bool {
        if !self.waiting.is_empty() {
            let n = ring.enqueue(&self.waiting, ctx);
            // In the ring now (copied) or dropped and counted by it: freed here.
            self.waiting.drain(..n);
        }
        self.waiting.is_empty()
    }
}

/// A transmit queue: packets for the guest.
#[derive(Debug)]
pub struct VhostTxQueue {
    shared: Arc<Shared>,
    ring: u16,
    stats: Arc<QueueStats>,
    errs: Arc<RingErrors>,
    vnet: Arc<VnetStats>,
    link_down: Arc<AtomicU64>,
    view: View,
    /// The application enabled `TCP_TSO`: super-frames may come.
    tso: bool,
    sw_tso: SoftwareTso,
}

impl VhostTxQueue {
    /// Transmit queue `qid`; `link_down` counts packets given back while no front end
    /// runs the ring, `vnet` the offloads asked of the guest.
    pub fn new(
        shared: Arc<Shared>,
        qid: u16,
        conf: TxQueueConf,
        errs: Arc<RingErrors>,
        vnet: Arc<VnetStats>,
        link_down: Arc<AtomicU64>,
    ) -> Self {
        VhostTxQueue {
            shared,
            ring: 2 * qid,
            tso: conf.offloads.contains(TxOffloads::TCP_TSO),
            stats: conf.stats,
            errs,
            vnet,
            link_down,
            view: View::default(),
            sw_tso: SoftwareTso::default(),
        }
    }

    #[cold]
    fn down(&self, n: usize) -> usize {
        self.link_down.fetch_add(n as u64, Ordering::Relaxed);
        0
    }
}

impl Drop for VhostTxQueue {
    /// Segments still waiting for the guest are lost with the queue: counted as errors.
    fn drop(&mut self) {
        let lost = self.sw_tso.waiting.len();
        if lost > 0 {
            self.stats.add_errors(lost as u64);
        }
    }
}

impl TxQueue for VhostTxQueue {
    fn tx_burst(&mut self, batch: &mut PktBatch) -> usize {
        if batch.is_empty() && self.sw_tso.waiting.is_empty() {
            return 0;
        }
        let Some(slot) = self.shared.ring(self.ring) else {
            return self.down(batch.len());
        };
        if !slot.enter() {
            self.view.release();
            return self.down(batch.len());
        }
        let Some((ring, features)) = self.view.ring(slot, &self.errs) else {
            slot.leave_unchanged();
            return self.down(batch.len());
        };
        let ctx = TxCtx {
            stats: &self.stats,
            errors: &self.errs,
            vnet: &self.vnet,
        };
        if !self.sw_tso.flush(ring, &ctx) {
            slot.leave(ring.last_avail());
            return 0;
        }
        if features & F_GUEST_CSUM == 0 {
            software_checksums(batch);
        }
        let cut = self.tso && !takes_every_super_frame(features);
        let mut sent = 0;
        loop {
            let run = if cut {
                SoftwareTso::first_to_cut(batch.as_slice(), features)
            } else {
                batch.len()
            };
            let n = ring.enqueue(&batch.as_slice()[..run], &ctx);
            batch.free_front(n);
            sent += n;
            if n < run || batch.is_empty() {
                break;
            }
            // The front packet is a super-frame the guest cannot take: it goes as segments.
            let Some(m) = batch.take_front() else { break };
            self.sw_tso.cut(m, &self.vnet);
            sent += 1;
            if !self.sw_tso.flush(ring, &ctx) {
                break;
            }
        }
        slot.leave(ring.last_avail());
        sent
    }

    /// The virtio-net header carries L4 checksum and segmentation requests with the
    /// pseudo-header sum in the checksum field, as the kernel's do, and cannot ask for
    /// the IPv4 header checksum: both are written here.
    fn tx_prepare(&mut self, batch: &mut PktBatch) -> usize {
        pmd_core::vnet::prepare_batch_for_kernel(batch)
    }
}
