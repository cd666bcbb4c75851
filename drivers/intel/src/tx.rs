//! A transmit descriptor ring: one data descriptor per packet segment (EOP on the last),
//! an advanced context descriptor in front of a packet whose offload request (checksums,
//! TSO, VLAN insert) differs from the last one programmed, RS on the last descriptor of
//! a packet once `RS_THRESH` descriptors went by without one, completed descriptors
//! reclaimed in bulk, one tail write per burst.
//!
//! Ring positions: `clean` is the oldest descriptor not yet reclaimed, `next` the next to
//! fill. `clean..next` (mod size) are in flight; one slot stays empty. A packet's buffer
//! (the chain head) is kept at the slot of its last descriptor; the positions of the
//! descriptors with RS wait in `rs` and each DD write-back frees everything up to it.

use crate::desc::{
    CtxL4, TxContext, TxDesc, CTX_IPLEN_MAX, CTX_MACLEN_MAX, TXD_CMD_EOP, TXD_CMD_RS, TXD_CMD_TSE,
    TXD_CMD_VLE, TXD_PAYLEN_MAX, TXD_PAYLEN_SHIFT, TXD_POPTS_IXSM, TXD_POPTS_TXSM, TXD_STAT_DD,
};
use pmd_core::ethdev::{QueueStats, TxQueue};
use pmd_core::mbuf::{
    Mbuf, PktBatch, RawMbuf, BATCH_CAPACITY, TX_IPV4, TX_IP_CKSUM, TX_L4_MASK, TX_OFFLOAD_MASK,
    TX_TCP_CKSUM, TX_TCP_SEG, TX_UDP_CKSUM, TX_VLAN,
};
use pmd_core::memory::Segment;
use pmd_core::pci::Reg32;
use pmd_core::{Error, Result};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

/// Descriptors after which a packet's last descriptor gets RS.
pub const RS_THRESH: usize = 32;
/// Most segments of one transmitted packet. With RS at most `RS_THRESH - 1` descriptors
/// apart, a packet of this many segments plus a context descriptor always fits a
/// 64-descriptor ring once the reported part is reclaimed.
pub const MAX_SEGS: u16 = 30;
/// Transmit offload flags this ring implements.
const SUPPORTED: u64 = TX_IP_CKSUM | TX_L4_MASK | TX_TCP_SEG | TX_VLAN;
/// Longest TSO segment payload (MSS) and header lengths the hardware takes.
const MSS_MAX: u16 = 9216;

/// How to build a [`TxRing`].
pub struct TxRingConf {
    /// Driver name (for errors).
    pub driver: &'static str,
    /// Ring name, e.g. `ixgbe0-tx0`.
    pub name: String,
    /// Descriptors: a power of two, at least 64.
    pub size: u16,
    /// The queue's tail register (TDT).
    pub tail: Reg32,
    /// Counters (this ring is their only writer).
    pub stats: Arc<QueueStats>,
    /// The queue's control register and enable bit, cleared when the ring is dropped.
    pub enable: Option<(Reg32, u32)>,
    /// Set by the device when the queue was stopped: the hardware context may be gone,
    /// so the next offload request writes a context descriptor again.
    pub ctx_lost: Arc<AtomicBool>,
}

/// Why a packet cannot be sent (it is dropped and counted as an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refused {
    /// An offload this ring lacks, or header lengths the context cannot hold.
    Offload,
    /// More segments than [`MAX_SEGS`] (and it does not fit its first buffer).
    Segments,
}

/// A transmit ring (the [`TxQueue`] of the Intel PMDs).
pub struct TxRing {
    mem: Arc<Segment>,
    descs: *mut TxDesc,
    bufs: Vec<RawMbuf>,
    mask: usize,
    next: usize,
    clean: usize,
    tail: Reg32,
    stats: Arc<QueueStats>,
    done: PktBatch,
    enable: Option<(Reg32, u32)>,
    /// Bursts that found the ring full (the device is not completing descriptors).
    full_events: u64,
    /// Positions of descriptors with RS, oldest first (a ring of `mask + 1` entries).
    rs: Vec<u16>,
    rs_head: usize,
    rs_len: usize,
    /// Descriptors written since the last RS.
    since_rs: usize,
    /// The context programmed in slot 0, if any.
    ctx: Option<TxContext>,
    ctx_lost: Arc<AtomicBool>,
}

// SAFETY: the ring exclusively owns its descriptor memory (kept alive by `mem`) and the
// buffers in flight; moving it moves that ownership.
unsafe impl Send for TxRing {}

impl TxRing {
    /// Allocates the descriptor ring (the device owns none of it yet).
    pub fn new(conf: TxRingConf) -> Result<TxRing> {
        let size = conf.size as usize;
        if !size.is_power_of_two() || size < 64 {
            return Err(Error::driver(
                conf.driver,
                format!(
                    "{}: ring size {size} must be a power of two >= 64",
                    conf.name
                ),
            ));
        }
        let mem = Arc::new(crate::ring_memory(
            conf.driver,
            &conf.name,
            size * std::mem::size_of::<TxDesc>(),
        )?);
        Ok(TxRing {
            descs: mem.as_ptr().cast(),
            mem,
            bufs: vec![RawMbuf::NULL; size],
            mask: size - 1,
            next: 0,
            clean: 0,
            tail: conf.tail,
            stats: conf.stats,
            done: PktBatch::new(),
            enable: conf.enable,
            full_events: 0,
            rs: vec![0; size],
            rs_head: 0,
            rs_len: 0,
            since_rs: 0,
            ctx: None,
            ctx_lost: conf.ctx_lost,
        })
    }

    /// IOVA of the descriptor ring (for TDBAL/TDBAH).
    pub fn desc_iova(&self) -> u64 {
        self.mem.iova_at(0)
    }

    /// Length of the descriptor ring in bytes (for TDLEN).
    pub fn desc_bytes(&self) -> u32 {
        ((self.mask + 1) * std::mem::size_of::<TxDesc>()) as u32
    }

    /// The value for the tail register (the position the ring starts from).
    pub fn tail_value(&self) -> u32 {
        self.next as u32
    }

    /// Descriptors in flight.
    pub fn in_flight(&self) -> usize {
        self.next.wrapping_sub(self.clean) & self.mask
    }

    /// Times a burst found the ring full.
    pub fn full_events(&self) -> u64 {
        self.full_events
    }

    fn desc(&self, i: usize) -> *mut TxDesc {
        self.descs.wrapping_add(i & self.mask)
    }

    /// Reclaims descriptors up to every RS descriptor the device reported done; returns
    /// descriptors freed.
    #[inline]
    fn reclaim(&mut self) -> usize {
        let mut freed = 0;
        while self.rs_len > 0 {
            let last = usize::from(self.rs[self.rs_head]);
            // SAFETY: `last` is in flight (an RS descriptor not yet reclaimed): ours.
            let d = unsafe { self.desc(last).read_volatile() };
            if d.olinfo_status() & TXD_STAT_DD == 0 {
                break;
            }
            fence(Ordering::Acquire);
            self.rs_head = (self.rs_head + 1) & self.mask;
            self.rs_len -= 1;
            let end = (last + 1) & self.mask;
            // Buffers of the group go to `done` a batch at a time (slots of context and
            // non-first segment descriptors are null), freed in bulk.
            while self.clean != end {
                let spare = self.done.spare_raw();
                let mut n = 0;
                while self.clean != end && n < spare.len() {
                    let b = std::mem::replace(&mut self.bufs[self.clean], RawMbuf::NULL);
                    spare[n] = b;
                    n += usize::from(!b.is_null());
                    self.clean = (self.clean + 1) & self.mask;
                    freed += 1;
                }
                // SAFETY: the first n spare slots hold buffers that were in flight, owned by
                // the ring, and are out of `bufs` now.
                unsafe { self.done.commit_raw(n) };
                self.done.clear();
            }
        }
        freed
    }

    /// Records that descriptor `i` (a packet's last) carries RS.
    #[inline(always)]
    fn push_rs(&mut self, i: usize) {
        let at = (self.rs_head + self.rs_len) & self.mask;
        self.rs[at] = i as u16;
        self.rs_len += 1;
        self.since_rs = 0;
    }

    /// Writes the descriptors of a packet that needs a context or has several segments:
    /// `need` descriptors from `next` (room was checked). Returns the last position.
    #[cold]
    #[inline(never)]
    fn write_complex(&mut self, m: &Mbuf, ctx: Option<TxContext>, ol: u64) -> usize {
        let mut i = self.next;
        let (mut cmd, mut olinfo) = (0u32, 0u32);
        if let Some(c) = ctx {
            if self.ctx != Some(c) {
                // SAFETY: `i` is free (room was checked): the device does not own it.
                unsafe { self.desc(i).write_volatile(c.descriptor(0)) };
                self.ctx = Some(c);
                i = (i + 1) & self.mask;
            }
            if ol & TX_VLAN != 0 {
                cmd |= TXD_CMD_VLE;
            }
            if ol & TX_IP_CKSUM != 0 {
                olinfo |= TXD_POPTS_IXSM;
            }
            if c.l4 != CtxL4::None {
                olinfo |= TXD_POPTS_TXSM;
            }
        }
        let paylen = if ol & TX_TCP_SEG != 0 {
            cmd |= TXD_CMD_TSE;
            let c = ctx.unwrap_or_default();
            m.len() - usize::from(c.l2_len) - usize::from(c.l3_len) - usize::from(c.l4_len)
        } else {
            m.len()
        };
        olinfo |= (paylen as u32) << TXD_PAYLEN_SHIFT;
        let nsegs = usize::from(m.nb_segs());
        for (k, (addr, len)) in m.segment_iovas().enumerate() {
            let last = k + 1 == nsegs;
            let c = if last { cmd | TXD_CMD_EOP } else { cmd };
            // SAFETY: as above; `i` is within the room checked for the packet.
            unsafe {
                self.desc(i)
                    .write_volatile(TxDesc::data_seg(addr, len as u16, c, olinfo))
            };
            if !last {
                i = (i + 1) & self.mask;
            }
        }
        i
    }
}

/// The context a packet's offload flags need (None: no offload), or why it cannot be sent.
#[inline]
fn context_for(m: &Mbuf, ol: u64) -> std::result::Result<Option<TxContext>, Refused> {
    if ol & TX_OFFLOAD_MASK == 0 {
        return Ok(None);
    }
    if ol & TX_OFFLOAD_MASK & !SUPPORTED != 0 {
        return Err(Refused::Offload);
    }
    let t = m.tx_offload();
    let mut c = TxContext::default();
    if ol & TX_VLAN != 0 {
        c.vlan = m.vlan_tci();
    }
    let l4 = ol & TX_L4_MASK;
    let tso = ol & TX_TCP_SEG != 0;
    if ol & TX_IP_CKSUM != 0 || l4 != 0 || tso {
        if u32::from(t.l2_len) > CTX_MACLEN_MAX
            || u32::from(t.l3_len) > CTX_IPLEN_MAX
            || t.l2_len < 14
            || t.l3_len < 20
        {
            return Err(Refused::Offload);
        }
        c.l2_len = t.l2_len;
        c.l3_len = t.l3_len;
        c.ipv4 = ol & TX_IPV4 != 0;
        c.l4 = match l4 {
            _ if tso => CtxL4::Tcp,
            TX_TCP_CKSUM => CtxL4::Tcp,
            TX_UDP_CKSUM => CtxL4::Udp,
            0 => CtxL4::None,
            _ => return Err(Refused::Offload),
        };
    }
    if tso {
        let hdr = usize::from(t.l2_len) + usize::from(t.l3_len) + usize::from(t.l4_len);
        if t.l4_len < 20
            || t.tso_segsz == 0
            || t.tso_segsz > MSS_MAX
            || m.len() <= hdr
            || (m.len() - hdr) as u64 > u64::from(TXD_PAYLEN_MAX)
        {
            return Err(Refused::Offload);
        }
        c.l4_len = t.l4_len;
        c.mss = t.tso_segsz;
    }
    Ok(Some(c))
}

const _: () = assert!(RS_THRESH <= BATCH_CAPACITY && RS_THRESH.is_power_of_two());
const _: () = assert!(MAX_SEGS as usize + 1 + RS_THRESH - 1 <= 63);

impl TxQueue for TxRing {
    #[inline]
    fn tx_burst(&mut self, batch: &mut PktBatch) -> usize {
        let mut room = self.mask - self.in_flight();
        if room < batch.len().max(RS_THRESH) {
            self.reclaim();
            room = self.mask - self.in_flight();
        }
        let mut bytes = 0u64;
        let mut sent = 0usize;
        let mut dropped = 0u64;
        let mut k = 0usize;
        let mut reclaimed = false;
        while k < batch.len() {
            let m = &batch.as_slice()[k];
            let ol = m.ol_flags();
            // The fast path: one segment, no offload. One predictable branch.
            if ol & TX_OFFLOAD_MASK == 0 && m.is_contiguous() {
                if room == 0 {
                    break;
                }
                let i = self.next;
                let len = m.len();
                self.since_rs += 1;
                let rs = self.since_rs >= RS_THRESH;
                // SAFETY: `i` is free (room > 0): the device does not own it; the memory
                // is live while `mem` is.
                unsafe {
                    self.desc(i)
                        .write_volatile(TxDesc::data(m.data_iova(), len as u16, rs))
                };
                if rs {
                    self.push_rs(i);
                }
                self.bufs[i] = batch.raw()[k];
                self.next = (i + 1) & self.mask;
                room -= 1;
                bytes += len as u64;
                k += 1;
                continue;
            }
            // Chains and offloads.
            let ctx = match self.prepare_complex(batch, k, ol) {
                Ok(c) => c,
                Err(_) => {
                    // Dropped: send what came before, then free it.
                    self.flush_front(batch, &mut k, &mut sent);
                    batch.drop_first();
                    dropped += 1;
                    continue;
                }
            };
            let m = &batch.as_slice()[k];
            let need =
                usize::from(m.nb_segs()) + usize::from(ctx.is_some_and(|c| self.ctx != Some(c)));
            if need > room {
                if reclaimed {
                    break;
                }
                reclaimed = true;
                self.reclaim();
                room = self.mask - self.in_flight();
                if need > room {
                    break;
                }
            }
            let len = m.len();
            let last = self.write_complex(m, ctx, ol);
            self.since_rs += need;
            if self.since_rs >= RS_THRESH {
                // SAFETY: `last` was just written by us and not yet handed over (no tail
                // write since).
                unsafe {
                    let d = self.desc(last);
                    let mut v = d.read_volatile();
                    v.w1 |= u64::from(TXD_CMD_RS);
                    d.write_volatile(v);
                }
                self.push_rs(last);
            }
            self.bufs[last] = batch.raw()[k];
            self.next = (last + 1) & self.mask;
            room -= need;
            bytes += len as u64;
            k += 1;
        }
        self.flush_front(batch, &mut k, &mut sent);
        if dropped > 0 {
            self.stats.add_errors(dropped);
        }
        if sent > 0 {
            // Descriptors must be visible before the device sees the new tail.
            fence(Ordering::Release);
            self.tail.write(self.next as u32);
            self.stats.add(sent as u64, bytes);
        } else if !batch.is_empty() && dropped == 0 {
            self.full_events += 1;
        }
        sent + dropped as usize
    }

    /// Takes back completed descriptors when the ring is nearly full (as a burst does
    /// first), so their mbufs return to the pool while the queue idles.
    fn flush(&mut self) {
        if self.mask - self.in_flight() < RS_THRESH {
            self.reclaim();
        }
    }
}

impl TxRing {
    /// The ring owns the first `k` packets of `batch` now (through `bufs`): removes them
    /// from the batch and adds them to `sent`.
    #[inline(always)]
    fn flush_front(&mut self, batch: &mut PktBatch, k: &mut usize, sent: &mut usize) {
        if *k > 0 {
            batch.disown_front(*k);
            *sent += *k;
            *k = 0;
        }
    }

    /// Checks packet `k` of a slow-path kind: its context, and that its segments can be
    /// given to the device (linearizing it when they cannot).
    #[cold]
    #[inline(never)]
    fn prepare_complex(
        &mut self,
        batch: &mut PktBatch,
        k: usize,
        ol: u64,
    ) -> std::result::Result<Option<TxContext>, Refused> {
        if self.ctx_lost.swap(false, Ordering::Relaxed) {
            self.ctx = None;
        }
        let m = &mut batch.as_mut_slice()[k];
        let ctx = context_for(m, ol)?;
        if !m.is_contiguous() && m.nb_segs() > MAX_SEGS && m.linearize().is_err() {
            return Err(Refused::Segments);
        }
        Ok(ctx)
    }
}

impl Drop for TxRing {
    fn drop(&mut self) {
        if let Some((reg, bit)) = &self.enable {
            reg.write(reg.read() & !bit);
        }
        let mut b = PktBatch::new();
        for raw in self.bufs.iter_mut().filter(|r| !r.is_null()) {
            if b.spare() == 0 {
                b.clear();
            }
            let raw = std::mem::replace(raw, RawMbuf::NULL);
            // SAFETY: buffers in `bufs` are in flight, owned by the ring.
            let _ = b.push(unsafe { raw.into_mbuf() });
        }
    }
}
