//! A transmit descriptor ring: one descriptor per packet, RS on every `RS_THRESH`-th
//! descriptor, completed groups reclaimed in bulk, one tail write per burst.
//!
//! Ring positions: `clean` is the oldest descriptor not yet reclaimed, `next` the next to
//! fill. `clean..next` (mod size) are in flight; one slot stays empty. Reclaim works in
//! groups of `RS_THRESH` descriptors starting at `clean`: the group's last descriptor has
//! RS set, and its DD write-back means the whole group is done.

use crate::desc::{TxDesc, TXD_STAT_DD};
use pmd_core::ethdev::{QueueStats, TxQueue};
use pmd_core::mbuf::{PktBatch, RawMbuf, BATCH_CAPACITY};
use pmd_core::memory::Segment;
use pmd_core::pci::Reg32;
use pmd_core::{Error, Result};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

/// Descriptors per report-status group.
pub const RS_THRESH: usize = 32;

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

    /// Reclaims completed groups; returns descriptors freed.
    #[inline]
    fn reclaim(&mut self) -> usize {
        let mut freed = 0;
        while self.in_flight() >= RS_THRESH {
            let last = (self.clean + RS_THRESH - 1) & self.mask;
            // SAFETY: `last` is in flight (in_flight >= RS_THRESH): our descriptor.
            let d = unsafe { self.desc(last).read_volatile() };
            if d.olinfo_status() & TXD_STAT_DD == 0 {
                break;
            }
            fence(Ordering::Acquire);
            // The group does not wrap: clean is a multiple of RS_THRESH, which divides size.
            let group = &mut self.bufs[self.clean..self.clean + RS_THRESH];
            let spare = self.done.spare_raw();
            for (slot, b) in spare.iter_mut().zip(group.iter_mut()) {
                *slot = std::mem::replace(b, RawMbuf::NULL);
            }
            // SAFETY: the group's buffers were in flight and owned by the ring; they are
            // taken out of `bufs` above; RS_THRESH <= BATCH_CAPACITY and `done` is empty.
            unsafe { self.done.commit_raw(RS_THRESH) };
            self.done.clear();
            self.clean = (self.clean + RS_THRESH) & self.mask;
            freed += RS_THRESH;
        }
        freed
    }
}

const _: () = assert!(RS_THRESH <= BATCH_CAPACITY && RS_THRESH.is_power_of_two());

impl TxQueue for TxRing {
    #[inline]
    fn tx_burst(&mut self, batch: &mut PktBatch) -> usize {
        let mut room = self.mask - self.in_flight();
        if room < batch.len().max(RS_THRESH) {
            self.reclaim();
            room = self.mask - self.in_flight();
        }
        let n = batch.len().min(room);
        if n == 0 {
            if !batch.is_empty() {
                self.full_events += 1;
            }
            return 0;
        }
        // One data descriptor per packet: chains go out linearized when they fit their
        // first buffer; one that does not is dropped and counted, never sent truncated.
        let n = batch.contiguous_front(n);
        if n == 0 {
            batch.drop_first();
            self.stats.add_errors(1);
            return 1;
        }
        let mut bytes = 0u64;
        for (k, m) in batch.iter().take(n).enumerate() {
            let i = (self.next + k) & self.mask;
            let len = m.len();
            bytes += len as u64;
            let rs = (i + 1) & (RS_THRESH - 1) == 0;
            // SAFETY: `i` is free (n <= room): the device does not own it; the memory is
            // live while `mem` is.
            unsafe {
                self.desc(i)
                    .write_volatile(TxDesc::data(m.data_iova(), len as u16, rs))
            };
            self.bufs[i] = batch.raw()[k];
        }
        // The ring owns the first n buffers now (through `bufs`).
        batch.disown_front(n);
        self.next = (self.next + n) & self.mask;
        // Descriptors must be visible before the device sees the new tail.
        fence(Ordering::Release);
        self.tail.write(self.next as u32);
        self.stats.add(n as u64, bytes);
        n
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
