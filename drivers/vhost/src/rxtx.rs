//! The port's queues: receive queue `q` empties the guest's transmit ring `2q + 1`,
//! transmit queue `q` fills the guest's receive ring `2q`. Each burst enters the ring's
//! slot ([`crate::shared::RingSlot`]), rebuilds its view of the ring when the control
//! thread handed out a new configuration, runs the ring's code — split ([`crate::split`])
//! or packed ([`crate::packed`]), as the front end negotiated `VIRTIO_F_RING_PACKED` — and
//! leaves the slot with the next available index.

use crate::burst::{RingSetupError, RxCtx, TxCtx};
use crate::packed::PackedRing;
use crate::shared::{RingSlot, Shared};
use crate::split::SplitRing;
use crate::vring::{RingErrors, VringConfig};
use pmd_core::ethdev::{
    PortId, QueueStats, RxOffloads, RxQueue, RxQueueConf, TxQueue, TxQueueConf,
};
use pmd_core::intr::{Armed, IntrError};
use pmd_core::mbuf::{Mbuf, PktBatch, TX_L4_MASK, TX_TCP_SEG};
use pmd_core::vnet::features::{VIRTIO_F_RING_PACKED, VIRTIO_NET_F_GUEST_CSUM};
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
    /// The guest negotiated GUEST_CSUM (takes packets with partial checksums).
    guest_csum: bool,
    /// The ring's kick eventfd (rx interrupts), if the front end gave one.
    kick: Option<Arc<OwnedFd>>,
}

impl View {
    /// The ring to run in this burst (inside `slot.enter()`), if it could be built, and
    /// whether its guest takes partial checksums.
    #[inline(always)]
    fn ring(&mut self, slot: &RingSlot, errs: &RingErrors) -> Option<(&mut AnyRing, bool)> {
        if slot.generation() != self.gen || self.ring.is_none() {
            self.rebuild(slot, errs);
        }
        let guest_csum = self.guest_csum;
        self.ring
            .as_mut()
            .filter(|r| !r.is_broken())
            .map(|r| (r, guest_csum))
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
        self.guest_csum = false;
        self.kick = None;
        self.ring = slot.config().and_then(|cfg| match AnyRing::new(&cfg) {
            Ok(r) => {
                self.guest_csum = cfg.has(VIRTIO_NET_F_GUEST_CSUM);
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
/// are (the ring drops those the guest cannot take).
#[inline(never)]
fn software_checksums(batch: &mut PktBatch) {
    for m in batch.iter_mut() {
        let f = m.ol_flags();
        if f & TX_L4_MASK != 0 && f & TX_TCP_SEG == 0 {
            let _ = pmd_core::offload::checksum(m);
        }
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
            stats: conf.stats,
            errs,
            vnet,
            link_down,
            view: View::default(),
        }
    }

    #[cold]
    fn down(&self, n: usize) -> usize {
        self.link_down.fetch_add(n as u64, Ordering::Relaxed);
        0
    }
}

impl TxQueue for VhostTxQueue {
    fn tx_burst(&mut self, batch: &mut PktBatch) -> usize {
        if batch.is_empty() {
            return 0;
        }
        let Some(slot) = self.shared.ring(self.ring) else {
            return self.down(batch.len());
        };
        if !slot.enter() {
            self.view.release();
            return self.down(batch.len());
        }
        let Some((ring, guest_csum)) = self.view.ring(slot, &self.errs) else {
            slot.leave_unchanged();
            return self.down(batch.len());
        };
        if !guest_csum {
            software_checksums(batch);
        }
        let ctx = TxCtx {
            stats: &self.stats,
            errors: &self.errs,
            vnet: &self.vnet,
        };
        let n = ring.enqueue(batch.as_slice(), &ctx);
        slot.leave(ring.last_avail());
        batch.free_front(n);
        n
    }

    /// The virtio-net header carries L4 checksum and segmentation requests with the
    /// pseudo-header sum in the checksum field, as the kernel's do, and cannot ask for
    /// the IPv4 header checksum: both are written here.
    fn tx_prepare(&mut self, batch: &mut PktBatch) -> usize {
        pmd_core::vnet::prepare_batch_for_kernel(batch)
    }
}
