//! The virtio-net receive queue.
//!
//! Each descriptor is one mbuf, device-writable, starting `hdr_len` bytes before
//! the mbuf's data offset (so the virtio-net header lands in the headroom and the frame at
//! the usual data offset). Harvested buffers become packets of `used.len - hdr_len` bytes;
//! the ring is refilled in bulk from the mempool. With `VIRTIO_NET_F_MRG_RXBUF` a packet
//! spanning several buffers (`num_buffers > 1`) becomes an mbuf chain when the queue has
//! SCATTER (dropped and counted otherwise). Every header field is validated first
//! ([`super::hdr`]): bad checksum offsets, GSO types, `gso_size` 0, `hdr_len` or
//! `num_buffers` are counted errors with their own xstats. `NEEDS_CSUM`/`DATA_VALID` give
//! `RX_L4_CKSUM_GOOD`; a GSO frame (only with `GUEST_TSO4/6`, negotiated again at
//! configure when the port asks for TCP_LRO + SCATTER) is flagged `RX_LRO` with
//! `tso_segsz = gso_size`.
//!
//! Interrupts ([`pmd_core::intr`]): a queue whose transport gives the ring's used-buffer
//! eventfd (virtio-user: the one SET_VRING_CALL sent) can wake a sleeping thread. Arming
//! drains that eventfd (what it holds came before), asks the device for notifications
//! (split: `avail.flags` without `NO_INTERRUPT`, or `used_event` at the next index to
//! consume with `EVENT_IDX`; packed: driver event suppression `ENABLE`, or `DESC` at the
//! next position), fences and looks at the ring once more; disarming restores the polling
//! state and drains the eventfd again. The burst path is unchanged: a branch on a flag in
//! the virtqueue keeps `used_event` (or `off_wrap`) following while armed.

use super::features::{VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_MRG_RXBUF};
use super::hdr::{check_num_buffers, parse_hdr, rx_hdr_apply, NetCounters};
use super::{release, QueueCtx};
use crate::transport::{CallSource, Notifier};
use crate::virtqueue::{UsedElem, Virtqueue};
use pmd_core::ethdev::{QueueStats, RxOffloads, RxQueue, RxQueueConf};
use pmd_core::intr::{Armed, IntrError};
use pmd_core::mbuf::{PktBatch, RawMbuf, BATCH_CAPACITY};
use pmd_core::vnet::VnetHdr;
use pmd_core::{Mbuf, Mempool};
use std::os::fd::BorrowedFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Refill the receive ring once this many descriptors are free.
const RX_REFILL_MIN: usize = 32;

/// A receive queue on virtqueue `Q` (split or packed).
pub(super) struct VirtioRx<Q: Virtqueue> {
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
    /// What the device signals for used buffers (rx interrupts), if anything.
    call: Option<Arc<dyn CallSource>>,
    active: Arc<AtomicBool>,
    used: [UsedElem; BATCH_CAPACITY],
    /// Buffers still to drop of a multi-buffer packet.
    skip: u16,
    scratch: PktBatch,
    /// SCATTER requested: merged buffers (MRG_RXBUF) become mbuf chains.
    scatter: bool,
    /// A merged packet still waiting for `need` more buffers, with its header.
    partial: Option<(Mbuf, VnetHdr)>,
    need: u16,
}

impl<Q: Virtqueue> VirtioRx<Q> {
    /// A receive queue on `vq` with a buffer from `conf.pool` posted on every descriptor
    /// (as many as the pool gives).
    pub(super) fn new(vq: Q, conf: RxQueueConf, ctx: QueueCtx) -> VirtioRx<Q> {
        let mut rx = VirtioRx {
            bufs: vec![RawMbuf::NULL; vq.size() as usize],
            vq,
            pool: conf.pool,
            stats: conf.stats,
            port: conf.port,
            hdr_len: ctx.hdr_len,
            mrg: ctx.features & VIRTIO_NET_F_MRG_RXBUF != 0,
            guest_csum: ctx.features & VIRTIO_NET_F_GUEST_CSUM != 0,
            features: ctx.features,
            counters: ctx.counters,
            va: ctx.va,
            notifier: ctx.notifier,
            call: ctx.call,
            active: ctx.active,
            used: [UsedElem::default(); BATCH_CAPACITY],
            skip: 0,
            scratch: PktBatch::new(),
            scatter: conf.offloads.contains(RxOffloads::SCATTER),
            partial: None,
            need: 0,
        };
        rx.refill();
        rx
    }

    /// Whether at least one receive buffer is posted.
    pub(super) fn has_buffers(&self) -> bool {
        self.vq.num_free() < self.vq.size() as usize
    }

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
    /// The header the device wrote `hdr_len` bytes before the data offset `off`, and its
    /// `num_buffers`.
    #[inline(always)]
    fn read_hdr(&self, m: &mut Mbuf, off: usize) -> (VnetHdr, u16) {
        // SAFETY: the descriptor started hdr_len bytes before the data offset, inside the
        // buffer (off >= hdr_len was checked at queue setup: the headroom holds it), and
        // the device wrote the header there; hdr_len is 10 or 12.
        let b = unsafe {
            std::slice::from_raw_parts(m.buf_ptr().add(off - self.hdr_len), self.hdr_len)
        };
        parse_hdr(b).unwrap_or_default()
    }

    /// Applies a complete packet's header; false (counted) if the header is refused.
    #[inline(always)]
    fn finish(&self, m: &mut Mbuf, h: &VnetHdr) -> bool {
        if h.gso_type == 0 && (!self.guest_csum || h.flags == 0) {
            return true;
        }
        rx_hdr_apply(m, h, self.features, &self.counters).is_ok()
    }
}

impl<Q: Virtqueue> RxQueue for VirtioRx<Q> {
    /// True when the transport gave the ring a call source (virtio-user's call eventfd,
    /// an MSI-X vector, a legacy device's INTx line under UIO).
    fn has_intr(&self) -> bool {
        self.call.is_some()
    }

    /// Consumes the call source (signals from before count for nothing; a line is
    /// acknowledged and unmasked), asks the device for notifications and looks at the ring
    /// once more (see the module documentation).
    fn intr_enable(&mut self) -> Result<Armed, IntrError> {
        let Some(call) = &self.call else {
            return Err(IntrError::Unsupported);
        };
        call.ack();
        Ok(if self.vq.enable_intr() {
            Armed::Ready
        } else {
            Armed::Sleep
        })
    }

    /// Back to polling (`NO_INTERRUPT` / far `used_event` / `DISABLE`), and consumes the
    /// call source.
    fn intr_disable(&mut self) {
        if let Some(call) = &self.call {
            self.vq.disable_intr();
            call.ack();
        }
    }

    fn intr_fd(&self) -> Option<BorrowedFd<'_>> {
        self.call.as_ref().map(|c| c.fd())
    }

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
            let (hdr, nb) = self.read_hdr(&mut m, off);
            if self.mrg && nb > 1 {
                // Bounded by the ring: a device claiming more buffers than it could
                // have filled is lying.
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
