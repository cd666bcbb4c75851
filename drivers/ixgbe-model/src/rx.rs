//! The receive path: a frame from the wire goes through the MAC (link, receive enable,
//! length checks), the L2 filter (7.1.1.1), queue selection (RSS, 7.1.2.8) and the
//! queue's descriptor ring (advanced one-buffer descriptors, 7.1.6): the frame is written
//! into the posted buffers, then the write-back descriptors, then RDH advances.
//!
//! With SR-IOV virtual functions, unicast to a VF's address goes to that VF's queue
//! only, and broadcast and multicast also go to every VF that takes them ([`crate::vfrx`]
//! picks and checks; the rings and the write-back are the ones here).

use crate::desc::*;
use crate::device::Device;
use crate::engine::Engine;
use crate::hw::{CRC_LEN, MAX_MFS, MIN_FRAME, STD_MAX_FRAME};
use crate::packet::{parse, Parsed, Transport, L3, L4};
use crate::regs::*;
use crate::rss::{classify, RssResult};
use crate::stats::bump;

/// What happened to a frame offered to the receive path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxOutcome {
    /// Written to `queue`, over `descriptors` descriptors.
    Delivered {
        /// The receive queue.
        queue: usize,
        /// Descriptors used (more than one when the frame exceeds the buffer size).
        descriptors: usize,
    },
    /// The link is down: the frame never arrived.
    LinkDown,
    /// RXCTRL.RXEN is clear: the MAC ignores the frame.
    RxDisabled,
    /// Shorter than 64 bytes with CRC: counted in RUC and dropped.
    Undersize,
    /// Longer than the maximum frame size: counted in ROC and RLEC and dropped.
    Oversize,
    /// Not for this station (unicast to another address without UPE, multicast without
    /// MPE, broadcast without BAM).
    Filtered,
    /// The target queue is disabled, stopped by a fault, or bus mastering is off:
    /// counted in MPC0.
    QueueOff {
        /// The receive queue.
        queue: usize,
    },
    /// The target queue's registers describe no usable ring (RDLEN 0, RDH/RDT past the
    /// end, an unsupported descriptor type): the queue stops (counted as an error).
    BadRing {
        /// The receive queue.
        queue: usize,
    },
    /// No free descriptor (RDH == RDT, or fewer than the frame needs): counted in MPC0
    /// (for a VF's queue, in the VF's counters).
    NoDescriptor {
        /// The receive queue.
        queue: usize,
    },
    /// The frame is for SR-IOV virtual function `vf`, which is not clear to send (it has
    /// not completed its RESET exchange since its last reset, or a PF reset is in
    /// progress): counted in the VF's counters.
    VfNotReady {
        /// The VF.
        vf: u8,
    },
    /// A descriptor or buffer address is outside every mapped segment: nothing was
    /// written, the queue stops.
    DmaFault {
        /// The receive queue.
        queue: usize,
    },
}

impl RxOutcome {
    /// Whether a generator should hold the frame and retry rather than lose it.
    fn retryable(&self) -> bool {
        matches!(
            self,
            RxOutcome::LinkDown
                | RxOutcome::RxDisabled
                | RxOutcome::QueueOff { .. }
                | RxOutcome::NoDescriptor { .. }
                | RxOutcome::VfNotReady { .. }
        )
    }
}

/// A receive ring as its registers describe it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ring {
    base: u64,
    count: u32,
    head: u32,
    tail: u32,
    buf_len: usize,
}

impl Ring {
    /// Reads queue `q`'s ring registers; Err says what is wrong with them.
    pub fn load(dev: &Device, q: usize) -> Result<Ring, String> {
        let r = &dev.regs;
        let base =
            (u64::from(r.get(rdbah(q))) << 32 | u64::from(r.get(rdbal(q)))) & !RING_BASE_IGNORED;
        let count = (r.get(rdlen(q)) & RING_LEN_MASK) / DESC_LEN as u32;
        let (head, tail) = (r.get(rdh(q)), r.get(rdt(q)));
        if count == 0 {
            return Err("RDLEN holds no descriptor".into());
        }
        if head >= count || tail >= count {
            return Err(format!(
                "RDH {head} / RDT {tail} past the {count}-descriptor ring"
            ));
        }
        let srrctl = r.get(srrctl(q));
        if srrctl & SRRCTL_DESCTYPE_MASK != SRRCTL_DESCTYPE_ADV_ONEBUF {
            return Err(format!(
                "SRRCTL.DESCTYPE {:#x}: only advanced one-buffer descriptors (001b) are modelled",
                (srrctl & SRRCTL_DESCTYPE_MASK) >> 25
            ));
        }
        // BSIZEPACKET 0 is reserved; the model uses the 2 KiB power-on default then.
        let kib = match srrctl & SRRCTL_BSIZEPKT_MASK {
            0 => 2,
            k => k,
        };
        Ok(Ring {
            base,
            count,
            head,
            tail,
            buf_len: kib as usize * 1024,
        })
    }

    /// Descriptors owned by the device (RDH up to RDT).
    pub fn free(&self) -> u32 {
        (self.tail + self.count - self.head) % self.count
    }

    /// Device address of descriptor `i` positions after RDH.
    fn desc(&self, i: u32) -> Option<u64> {
        let idx = (self.head + i) % self.count;
        self.base.checked_add(u64::from(idx) * DESC_LEN)
    }
}

/// Where a frame goes.
pub(crate) enum Route {
    /// Nowhere: dropped, for the PF or for VF `.1`.
    Drop(RxOutcome, Option<u8>),
    /// Into `queue` over `ring`, for the PF or for VF `vf`.
    Deliver {
        ring: Ring,
        queue: usize,
        parsed: Parsed,
        rss: RssResult,
        vf: Option<u8>,
    },
}

/// The largest frame (with CRC) the MAC accepts: MAXFRS.MFS with jumbo frames enabled,
/// else 1518, four more with a VLAN tag.
fn max_frame(dev: &Device, vlan: bool) -> usize {
    let base = if dev.regs.get(HLREG0) & HLREG0_JUMBOEN != 0 {
        ((dev.regs.get(MAXFRS) >> MAXFRS_MFS_SHIFT) as usize).min(MAX_MFS)
    } else {
        STD_MAX_FRAME
    };
    base + if vlan { 4 } else { 0 }
}

/// The L2 filter (7.1.1.1): exact unicast addresses from the valid receive-address
/// entries, or any unicast with FCTRL.UPE; broadcast with FCTRL.BAM; multicast with
/// FCTRL.MPE (the multicast hash table is not modelled).
fn accepts(dev: &Device, dst: &[u8; 6]) -> bool {
    let fctrl = dev.regs.get(FCTRL);
    if *dst == [0xff; 6] {
        return fctrl & FCTRL_BAM != 0;
    }
    if dst[0] & 1 != 0 {
        return fctrl & FCTRL_MPE != 0;
    }
    if fctrl & FCTRL_UPE != 0 {
        return true;
    }
    let lo = u32::from_le_bytes([dst[0], dst[1], dst[2], dst[3]]);
    let hi = u32::from(u16::from_le_bytes([dst[4], dst[5]]));
    (0..RAR_ENTRIES).any(|n| {
        let rah = dev.regs.get(rah(n));
        rah & RAH_AV != 0 && rah & 0xffff == hi && dev.regs.get(ral(n)) == lo
    })
}

fn route(dev: &Device, engine: &Engine, frame: &[u8]) -> Route {
    use RxOutcome::*;
    if let Some(vf) = crate::vfrx::unicast_owner(dev, frame) {
        return crate::vfrx::route(dev, engine, vf, frame);
    }
    let drop = |o| Route::Drop(o, None);
    if !dev.link_is_up() {
        return drop(LinkDown);
    }
    if dev.regs.get(RXCTRL) & RXCTRL_RXEN == 0 {
        return drop(RxDisabled);
    }
    let parsed = parse(frame);
    let wire_len = frame.len() + CRC_LEN;
    if wire_len < MIN_FRAME {
        return drop(Undersize);
    }
    if wire_len > max_frame(dev, parsed.vlan) {
        return drop(Oversize);
    }
    if !accepts(dev, &parsed.dst) {
        return drop(Filtered);
    }
    let rss = classify(&dev.regs, &parsed);
    let queue = rss.queue;
    if !dev.dma_allowed() {
        return drop(QueueOff { queue });
    }
    ring_route(dev, engine, frame, queue, parsed, rss, None)
}

/// The last steps of routing to `queue` (for the PF or VF `vf`): the queue must be on,
/// its registers must describe a ring, and the ring must have room.
pub(crate) fn ring_route(
    dev: &Device,
    engine: &Engine,
    frame: &[u8],
    queue: usize,
    parsed: Parsed,
    rss: RssResult,
    vf: Option<u8>,
) -> Route {
    use RxOutcome::*;
    let stopped = engine.rx_stopped.get(queue).copied().unwrap_or(true);
    if stopped || dev.regs.get(rxdctl(queue)) & DCTL_ENABLE == 0 {
        return Route::Drop(QueueOff { queue }, vf);
    }
    let ring = match Ring::load(dev, queue) {
        Ok(r) => r,
        Err(why) => {
            tracing::warn!(model = dev.id, queue, "rx queue stopped: {why}");
            return Route::Drop(BadRing { queue }, vf);
        }
    };
    let need = frame.len().div_ceil(ring.buf_len).max(1);
    if (ring.free() as usize) < need {
        return Route::Drop(NoDescriptor { queue }, vf);
    }
    Route::Deliver {
        ring,
        queue,
        parsed,
        rss,
        vf,
    }
}

/// Delivers or drops (and counts) a routed frame.
pub(crate) fn take(dev: &Device, engine: &mut Engine, frame: &[u8], r: Route) -> RxOutcome {
    match r {
        Route::Drop(o, vf) => account_drop(dev, engine, o, vf),
        Route::Deliver {
            ring,
            queue,
            parsed,
            rss,
            vf,
        } => deliver(dev, engine, frame, ring, queue, &parsed, rss, vf),
    }
}

/// Offers `frame` to the receive path; it is delivered or dropped (and counted). A
/// broadcast or multicast frame also goes to the VFs that take it.
pub(crate) fn receive(dev: &Device, engine: &mut Engine, frame: &[u8]) -> RxOutcome {
    let r = route(dev, engine, frame);
    let o = take(dev, engine, frame, r);
    crate::vfrx::replicate(dev, engine, frame);
    o
}

/// Like [`receive`], but a frame that only lacks room (link down, receive or queue
/// disabled, no descriptor, a VF not ready) is not taken: None, nothing counted.
pub(crate) fn receive_or_wait(
    dev: &Device,
    engine: &mut Engine,
    frame: &[u8],
) -> Option<RxOutcome> {
    match route(dev, engine, frame) {
        Route::Drop(o, _) if o.retryable() => None,
        r => {
            let o = take(dev, engine, frame, r);
            crate::vfrx::replicate(dev, engine, frame);
            Some(o)
        }
    }
}

/// Counts a dropped frame where the datasheet and the model count it (a VF's drops in
/// the VF's counters).
fn account_drop(dev: &Device, engine: &mut Engine, o: RxOutcome, vf: Option<u8>) -> RxOutcome {
    if let Some(vf) = vf {
        return crate::vfrx::account_drop(dev, engine, vf, o);
    }
    let c = &dev.counters;
    match o {
        RxOutcome::LinkDown => bump(&c.dropped_link_down, 1),
        RxOutcome::RxDisabled => bump(&c.dropped_rx_disabled, 1),
        RxOutcome::Undersize => {
            dev.regs.count(RUC, 1);
            bump(&c.dropped_length, 1);
        }
        RxOutcome::Oversize => {
            dev.regs.count(ROC, 1);
            dev.regs.count(RLEC, 1);
            bump(&c.dropped_length, 1);
        }
        RxOutcome::Filtered => bump(&c.dropped_filter, 1),
        RxOutcome::QueueOff { .. } => {
            dev.regs.count(mpc(0), 1);
            bump(&c.dropped_queue_off, 1);
        }
        RxOutcome::BadRing { queue } => {
            if let Some(s) = engine.rx_stopped.get_mut(queue) {
                *s = true;
            }
            dev.regs.count(mpc(0), 1);
            bump(&c.dropped_queue_off, 1);
            bump(&c.errors, 1);
        }
        RxOutcome::NoDescriptor { .. } => {
            dev.regs.count(mpc(0), 1);
            bump(&c.dropped_no_desc, 1);
        }
        RxOutcome::DmaFault { .. } | RxOutcome::Delivered { .. } | RxOutcome::VfNotReady { .. } => {
        }
    }
    o
}

/// Receive status and error bits and packet type from the checksum offload and the
/// parser (write-back fields of 7.1.6.2): IPCS with IPE for IPv4 headers, L4CS (and UDPCS for UDP) with L4E for
/// TCP/UDP checksums that were checked.
fn offload_bits(p: &Parsed) -> (u32, u32) {
    let mut status = 0;
    let mut ptype = 0;
    let l4: Option<L4> = match p.l3 {
        L3::V4 { header_ok, l4, .. } => {
            status |= RXD_STAT_IPCS;
            if !header_ok {
                status |= RXD_ERR_IPE;
            }
            ptype |= PTYPE_IPV4;
            l4
        }
        L3::V6 { l4, .. } => {
            ptype |= PTYPE_IPV6;
            l4
        }
        L3::Other => None,
    };
    if let Some(l4) = l4 {
        ptype |= match l4.proto {
            Transport::Tcp => PTYPE_TCP,
            Transport::Udp => PTYPE_UDP,
        };
        if let Some(ok) = l4.csum_ok {
            status |= RXD_STAT_L4CS;
            if l4.proto == Transport::Udp {
                status |= RXD_STAT_UDPCS;
            }
            if !ok {
                status |= RXD_ERR_L4E;
            }
        }
    }
    (status, ptype)
}

/// Writes `frame` into queue `queue`: buffers first, then the write-backs in order (DD
/// on each, EOP and the offload bits on the last), then RDH. A DMA fault writes no
/// descriptor and stops the queue. A frame for VF `vf` counts in the VF's statistics
/// instead of GPRC/GORC, and never carries an injected error.
#[allow(clippy::too_many_arguments)]
fn deliver(
    dev: &Device,
    engine: &mut Engine,
    frame: &[u8],
    ring: Ring,
    queue: usize,
    parsed: &Parsed,
    rss: RssResult,
    vf: Option<u8>,
) -> RxOutcome {
    // VLAN stripping (RXDCTL.VME): the tag leaves the data for the write-back descriptor.
    let stripped: Vec<u8>;
    let (frame, vlan, vp) = if dev.regs.get(rxdctl(queue)) & RXDCTL_VME != 0
        && frame.len() >= 18
        && frame[12..14] == [0x81, 0x00]
    {
        stripped = [&frame[..12], &frame[16..]].concat();
        let tci = u16::from_be_bytes([frame[14], frame[15]]);
        (&stripped[..], tci, RXD_STAT_VP)
    } else {
        (frame, 0, 0)
    };
    let chunks: Vec<&[u8]> = frame.chunks(ring.buf_len).collect();
    let mut slots = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        let copied = ring.desc(i as u32).ok_or(crate::iommu::DmaFault {
            iova: ring.base,
            len: DESC_LEN as usize,
        });
        let copied = copied.and_then(|di| {
            let d = dev.iommu.read_desc(di)?;
            dev.iommu.write(d[0], chunk)?;
            Ok(di)
        });
        match copied {
            Ok(di) => slots.push(di),
            Err(f) => return dma_fault(dev, engine, queue, f),
        }
    }
    let inject_error = vf.is_none()
        && dev
            .rx_error_every
            .is_some_and(|n| (engine.rx_seen + 1).is_multiple_of(u64::from(n.max(1))));
    let (offload, ptype) = offload_bits(parsed);
    let Some(last) = slots.len().checked_sub(1) else {
        return RxOutcome::Undersize; // an empty frame: unreachable after the length check
    };
    for (i, (&di, chunk)) in slots.iter().zip(&chunks).enumerate() {
        let mut status = RXD_STAT_DD;
        if i == last {
            status |= RXD_STAT_EOP | offload | vp;
            if inject_error {
                status |= RXD_ERR_RXE;
            }
        }
        let d = RxWriteBack {
            rss_type: rss.rss_type,
            packet_type: ptype,
            rss_hash: rss.hash,
            status_error: status,
            length: chunk.len() as u16,
            vlan: if i == last { vlan } else { 0 },
        };
        if let Err(f) = dev.write_rx_desc(di, &d) {
            return dma_fault(dev, engine, queue, f);
        }
    }
    dev.regs
        .set(rdh(queue), (ring.head + slots.len() as u32) % ring.count);
    // The queue's interrupt cause, raised once the engine lock is released (after these
    // write-backs, never before).
    engine.rx_written |= 1u64.checked_shl(queue as u32).unwrap_or(0);
    let c = &dev.counters;
    if let Some(vf) = vf {
        crate::vfrx::count_delivered(dev, vf, frame.len(), &parsed.dst);
    } else if inject_error {
        engine.rx_seen += 1;
        dev.regs.count(CRCERRS, 1);
        bump(&c.rx_errors_injected, 1);
    } else {
        engine.rx_seen += 1;
        dev.regs.count(GPRC, 1);
        dev.regs.count_rx_octets((frame.len() + CRC_LEN) as u64);
    }
    bump(&c.rx_delivered, 1);
    bump(&c.rx_bytes, frame.len() as u64);
    if let Some(q) = c.rx_per_queue.get(queue) {
        bump(q, 1);
    }
    RxOutcome::Delivered {
        queue,
        descriptors: slots.len(),
    }
}

fn dma_fault(
    dev: &Device,
    engine: &mut Engine,
    queue: usize,
    f: crate::iommu::DmaFault,
) -> RxOutcome {
    tracing::warn!(model = dev.id, queue, "rx queue stopped: {f}");
    if let Some(s) = engine.rx_stopped.get_mut(queue) {
        *s = true;
    }
    bump(&dev.counters.dma_faults, 1);
    RxOutcome::DmaFault { queue }
}
