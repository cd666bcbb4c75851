//! The virtio-net transmit queue.
//!
//! The header goes in the first segment's headroom; a packet of N segments is
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

use super::features::{VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6};
use super::hdr::{write_hdr, NetCounters, NET_HDR_LEN, NET_HDR_LEN_LEGACY};
use super::{release, QueueCtx, TX_SEG_MAX};
use crate::transport::Notifier;
use crate::virtqueue::{UsedElem, Virtqueue};
use pmd_core::ethdev::{QueueStats, TxQueue, TxQueueConf};
use pmd_core::mbuf::{
    PktBatch, RawMbuf, BATCH_CAPACITY, TX_IPV4, TX_IPV6, TX_IP_CKSUM, TX_L4_MASK, TX_TCP_CKSUM,
    TX_TCP_SEG, TX_UDP_CKSUM, TX_UDP_SEG,
};
use pmd_core::offload::OffloadError;
use pmd_core::vnet::{self, VnetHdr};
use pmd_core::Mbuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A transmit queue on virtqueue `Q` (split or packed).
pub(super) struct VirtioTx<Q: Virtqueue> {
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
#[derive(Debug, thiserror::Error)]
enum TxOffloadError {
    /// Bad lengths, flags or an unsupported request (from `pmd_core::offload`).
    #[error(transparent)]
    Offload(#[from] OffloadError),
    /// `TX_TCP_SEG` for an IP version whose HOST_TSO was not negotiated.
    #[error(
        "TX_TCP_SEG but the device did not negotiate HOST_TSO for this IP version \
         (check the port's tx_offload_capa for TCP_TSO)"
    )]
    TsoNotNegotiated,
}

/// The header for a packet with transmit requests (`ol_flags & TX_WORK != 0`), after
/// doing in software what the device will not: the IPv4 header checksum always (virtio
/// has no such offload; with TSO the device rewrites it per segment), TCP/UDP checksums
/// when `csum` (VIRTIO_NET_F_CSUM) was not negotiated. With it, the checksum field gets
/// the pseudo-header sum and the header `NEEDS_CSUM` from `l2_len + l3_len`; TSO sets
/// `gso_type`/`gso_size`/`hdr_len` from `tso_segsz` and the header lengths.
fn tx_offload_hdr(
    m: &mut Mbuf,
    csum: bool,
    tso4: bool,
    tso6: bool,
) -> Result<VnetHdr, TxOffloadError> {
    let ol = m.ol_flags();
    if ol & TX_UDP_SEG != 0 {
        return Err(OffloadError::Unsupported.into());
    }
    let t = m.tx_offload();
    let start = u16::from(t.l2_len) + t.l3_len;
    if ol & TX_TCP_SEG != 0 {
        let gso_type = match ol & (TX_IPV4 | TX_IPV6) {
            TX_IPV4 if tso4 => vnet::GSO_TCPV4,
            TX_IPV6 if tso6 => vnet::GSO_TCPV6,
            _ => return Err(TxOffloadError::TsoNotNegotiated),
        };
        // Checks the lengths and tso_segsz; writes the pseudo-header sum without the
        // length (what a segmenting device expects) and zeroes the IPv4 checksum.
        pmd_core::offload::prepare(m)?;
        return Ok(VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            gso_type,
            hdr_len: start + u16::from(t.l4_len),
            gso_size: t.tso_segsz,
            csum_start: start,
            csum_offset: 16,
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
        return Ok(VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            csum_start: start,
            csum_offset: if l4 == TX_TCP_CKSUM { 16 } else { 6 },
            ..VnetHdr::default()
        });
    }
    // Not negotiated (or IPv4 header only): in software, over every segment.
    pmd_core::offload::checksum(m)?;
    Ok(VnetHdr::default())
}

impl<Q: Virtqueue> VirtioTx<Q> {
    /// A transmit queue on `vq`; the offloads it fills headers for follow the negotiated
    /// features.
    pub(super) fn new(vq: Q, conf: TxQueueConf, ctx: QueueCtx) -> VirtioTx<Q> {
        let seg_max = TX_SEG_MAX.min(vq.size());
        let f = ctx.features;
        VirtioTx {
            bufs: vec![RawMbuf::NULL; vq.size() as usize],
            seg_max,
            parts: Vec::with_capacity(seg_max as usize),
            csum: f & VIRTIO_NET_F_CSUM != 0,
            tso4: f & (VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO4)
                == VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO4,
            tso6: f & (VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO6)
                == VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO6,
            counters: ctx.counters,
            vq,
            stats: conf.stats,
            hdr_len: ctx.hdr_len,
            va: ctx.va,
            notifier: ctx.notifier,
            active: ctx.active,
            used: [UsedElem::default(); BATCH_CAPACITY],
            done: PktBatch::new(),
            bad: PktBatch::new(),
        }
    }

    /// Reclaims completed chains when fewer than half the descriptors, or fewer than
    /// `want`, are free (what every burst does first).
    #[inline(always)]
    fn reclaim_if_short(&mut self, want: usize) {
        let free = self.vq.num_free();
        if free < self.vq.size() as usize / 2 || free < want {
            self.reclaim();
        }
    }

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
        if batch.is_empty() {
            return 0;
        }
        self.reclaim_if_short(batch.len());
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
                Some(h) => write_hdr(&h, 0, hdr),
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

    /// Nothing waits for a notification (each burst publishes and, when the device asks,
    /// kicks); takes back completed chains as a burst would, so their mbufs return to the
    /// pool while the queue idles.
    fn flush(&mut self) {
        self.reclaim_if_short(0);
    }
}

impl<Q: Virtqueue> Drop for VirtioTx<Q> {
    fn drop(&mut self) {
        release(&self.vq, &mut self.bufs, &self.active, "tx");
    }
}
