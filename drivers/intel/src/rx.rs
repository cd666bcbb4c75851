//! A receive descriptor ring: buffers posted from a mempool, burst receive that checks DD,
//! refill in bulk, one tail write per refill.
//!
//! A frame spread over several descriptors (EOP clear on all but the last) becomes an
//! mbuf chain when the queue scatters, kept across bursts until its EOP arrives and
//! bounded by `max_segs`; without scatter it is dropped whole and counted once.
//!
//! Ring positions: `next` is the oldest posted descriptor (the next to complete), `post`
//! the next descriptor to give a buffer. Descriptors `next..post` (mod size) are owned by
//! the device; one slot always stays empty so that a full ring (tail one behind head)
//! differs from an empty one (tail == head).

use crate::desc::{
    ptype_of, RxDesc, RXD_STAT_DD, RXD_STAT_EOP, RXD_STAT_IPCS, RXD_STAT_L4CS, RXD_STAT_VP,
};
use pmd_core::ethdev::{QueueStats, RxQueue};
use pmd_core::intr::{Armed, IntrError};
use pmd_core::mbuf::{
    Mbuf, PktBatch, RawMbuf, BATCH_CAPACITY, RX_IP_CKSUM_BAD, RX_IP_CKSUM_GOOD, RX_L4_CKSUM_BAD,
    RX_L4_CKSUM_GOOD, RX_RSS_HASH, RX_VLAN, RX_VLAN_STRIPPED,
};
use pmd_core::memory::Segment;
use pmd_core::pci::{IrqWait, Reg32};
use pmd_core::{Error, Mempool, Result};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

/// Refill once this many descriptors are empty (one tail write per refill).
const REFILL_THRESH: usize = 32;

/// How to build an [`RxRing`].
pub struct RxRingConf {
    /// Driver name (for errors).
    pub driver: &'static str,
    /// Ring name (for errors and the memory registry), e.g. `ixgbe0-rx0`.
    pub name: String,
    /// Descriptors: a power of two, at least 64.
    pub size: u16,
    /// Pool receive buffers come from.
    pub pool: Mempool,
    /// The queue's tail register (RDT).
    pub tail: Reg32,
    /// Error bits of this chip's write-back status word that make a packet bad.
    pub error_mask: u32,
    /// Port id stamped into received buffers.
    pub port: u16,
    /// Counters (this ring is their only writer).
    pub stats: Arc<QueueStats>,
    /// Whether the device strips VLAN tags into the descriptor.
    pub vlan_strip: bool,
    /// Receive frames spanning several descriptors as mbuf chains (SCATTER).
    pub scatter: bool,
    /// Largest frame the device can deliver (bounds the segments of a chain).
    pub max_frame: usize,
    /// This chip's checksum error bits, to report checksum results in `ol_flags` (None:
    /// report nothing).
    pub csum: Option<RxCsumBits>,
    /// The queue's control register and its enable bit: cleared when the ring is dropped,
    /// so the device stops writing into buffers that go back to the pool.
    pub enable: Option<(Reg32, u32)>,
    /// The queue's MSI-X vector, when the device has interrupts enabled (rx interrupts).
    pub intr: Option<RxIntr>,
}

/// A receive queue's interrupt: its MSI-X vector (an eventfd the kernel or the model
/// signals) and the mask registers that arm and disarm it (the device auto-masks the
/// vector when it fires, EIAM, so one packet wakes the sleeper once); or the device's
/// INTx line under UIO, with the cause register that deasserts it.
pub struct RxIntr {
    /// The vector's eventfd, or the UIO line.
    pub irq: Box<dyn IrqWait>,
    /// Mask set (EIMS; IMS for the line): writing the bit arms the interrupt.
    pub eims: Reg32,
    /// Mask clear (EIMC; IMC for the line): writing the bit disarms it.
    pub eimc: Reg32,
    /// The vector's bit in both (the line: the receive cause, ICR.RXDW).
    pub bit: u32,
    /// For the line: the cause register (ICR), read to clear stale causes before arming
    /// and to deassert the line before UIO unmasks it.
    pub line_icr: Option<Reg32>,
}

/// Where a chip reports checksum errors in the write-back status/error word (the
/// "checked" bits, IPCS and L4CS, are common to both chips).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxCsumBits {
    /// IPv4 header checksum error.
    pub ip_err: u32,
    /// TCP/UDP checksum error.
    pub l4_err: u32,
}

/// A receive ring (the [`RxQueue`] of the Intel PMDs).
pub struct RxRing {
    mem: Arc<Segment>,
    descs: *mut RxDesc,
    bufs: Vec<RawMbuf>,
    mask: usize,
    next: usize,
    post: usize,
    /// Skipping the rest of a multi-descriptor packet (dropped).
    in_chain: bool,
    /// With scatter: the chain of a frame whose EOP has not arrived yet.
    partial: Option<Mbuf>,
    /// Most segments of one chain.
    max_segs: u16,
    scatter: bool,
    tail: Reg32,
    pool: Mempool,
    error_mask: u32,
    port: u16,
    stats: Arc<QueueStats>,
    vlan_strip: bool,
    buf_len: usize,
    scratch: PktBatch,
    enable: Option<(Reg32, u32)>,
    csum: Option<RxCsumBits>,
    intr: Option<RxIntr>,
}

// SAFETY: the ring exclusively owns its descriptor memory (kept alive by `mem`) and its
// buffers; moving it to another thread moves that ownership.
unsafe impl Send for RxRing {}

impl RxRing {
    /// Allocates the descriptor ring and posts a buffer in every slot but one. The tail
    /// register is not written: the driver writes [`RxRing::tail_value`] once the queue
    /// is enabled (the datasheets' order).
    pub fn new(conf: RxRingConf) -> Result<RxRing> {
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
            size * std::mem::size_of::<RxDesc>(),
        )?);
        let buf_len = usize::from(conf.pool.buf_size()) - usize::from(pmd_core::mbuf::HEADROOM);
        let mut ring = RxRing {
            descs: mem.as_ptr().cast(),
            mem,
            bufs: vec![RawMbuf::NULL; size],
            mask: size - 1,
            next: 0,
            post: 0,
            in_chain: false,
            partial: None,
            max_segs: conf.max_frame.div_ceil(buf_len.max(1)).clamp(1, 64) as u16,
            scatter: conf.scatter,
            tail: conf.tail,
            pool: conf.pool,
            error_mask: conf.error_mask,
            port: conf.port,
            stats: conf.stats,
            vlan_strip: conf.vlan_strip,
            buf_len,
            scratch: PktBatch::new(),
            enable: conf.enable,
            csum: conf.csum,
            intr: conf.intr,
        };
        ring.post_buffers();
        if ring.posted() == 0 {
            return Err(Error::driver(
                conf.driver,
                format!(
                    "{}: could not allocate any receive buffer from pool {}",
                    conf.name,
                    ring.pool.name()
                ),
            ));
        }
        Ok(ring)
    }

    /// IOVA of the descriptor ring (for RDBAL/RDBAH).
    pub fn desc_iova(&self) -> u64 {
        self.mem.iova_at(0)
    }

    /// Length of the descriptor ring in bytes (for RDLEN).
    pub fn desc_bytes(&self) -> u32 {
        ((self.mask + 1) * std::mem::size_of::<RxDesc>()) as u32
    }

    /// Data bytes each posted buffer holds (for the buffer-size register).
    pub fn buf_len(&self) -> usize {
        self.buf_len
    }

    /// The value for the tail register: one past the last posted descriptor.
    pub fn tail_value(&self) -> u32 {
        self.post as u32
    }

    /// Descriptors owned by the device.
    pub fn posted(&self) -> usize {
        (self.post.wrapping_sub(self.next)) & self.mask
    }

    fn desc(&self, i: usize) -> *mut RxDesc {
        // SAFETY (of the callers' use): i is masked to the ring, which holds mask+1
        // descriptors in `mem`.
        self.descs.wrapping_add(i & self.mask)
    }

    /// Posts buffers in every empty slot but one (in bulk); returns how many.
    fn post_buffers(&mut self) -> usize {
        let mut total = 0;
        loop {
            let empty = self.mask - self.posted();
            let n = empty.min(BATCH_CAPACITY);
            if n == 0 {
                break;
            }
            if self.pool.alloc_bulk(&mut self.scratch, n).is_none() {
                self.stats.add_no_mbuf(n as u64);
                break;
            }
            for k in 0..n {
                let i = self.post;
                let iova = self.scratch.as_slice()[k].data_iova();
                // SAFETY: `i` is a slot of the ring not owned by the device (between post
                // and next); the descriptor memory is live while `mem` is.
                unsafe { self.desc(i).write_volatile(RxDesc::read(iova)) };
                self.bufs[i] = self.scratch.raw()[k];
                self.post = (i + 1) & self.mask;
            }
            // The ring owns them now (through `bufs`).
            self.scratch.disown_front(n);
            total += n;
        }
        total
    }
}

/// What became of one descriptor of a multi-descriptor frame.
enum Seg {
    /// Added to the chain in progress; more descriptors follow.
    Pending,
    /// Dropped (true: count the frame as an error, once).
    Dropped(bool),
    /// The frame's last descriptor: the whole chain.
    Complete(Mbuf),
}

impl RxRing {
    /// Handles a descriptor of a frame that spans several: chains it with scatter (up
    /// to `max_segs` segments), else drops the frame whole. `len` is the descriptor's
    /// length, bounded here by the buffer size.
    #[cold]
    #[inline(never)]
    fn segment(&mut self, mut m: Mbuf, len: usize, eop: bool) -> Seg {
        if self.in_chain {
            // The rest of a frame already dropped and counted.
            self.in_chain = !eop;
            return Seg::Dropped(false);
        }
        let off = m.headroom();
        if !self.scatter || len > self.buf_len || !m.set_data_span(off, len) {
            self.partial = None;
            self.in_chain = !eop;
            return Seg::Dropped(true);
        }
        let head = match self.partial.take() {
            None => m,
            Some(mut head) => {
                if head.nb_segs() >= self.max_segs {
                    // Longer than any frame the device may deliver: a broken device.
                    self.in_chain = !eop;
                    return Seg::Dropped(true);
                }
                if let Err((_, _m)) = head.chain(m) {
                    self.in_chain = !eop;
                    return Seg::Dropped(true);
                }
                head
            }
        };
        if eop {
            if head.is_empty() {
                return Seg::Dropped(true);
            }
            Seg::Complete(head)
        } else {
            self.partial = Some(head);
            Seg::Pending
        }
    }
}

impl RxQueue for RxRing {
    /// With an MSI-X vector for this queue (see [`RxIntr`]).
    fn has_intr(&self) -> bool {
        self.intr.is_some()
    }

    /// Unmasks the queue's vector (EIMS), then looks at the next descriptor's DD. A frame
    /// written back before the unmask left its cause pending in EICR, which the device
    /// signals as soon as the vector is unmasked; one written back after it signals it:
    /// either way the eventfd becomes readable.
    fn intr_enable(&mut self) -> std::result::Result<Armed, IntrError> {
        let Some(intr) = &self.intr else {
            return Err(IntrError::Unsupported);
        };
        if let Some(icr) = &intr.line_icr {
            // A cause left from polling would fire at once: cleared first (a frame after
            // this raises it again; one before it is seen by the DD check below).
            let _ = icr.read();
        }
        intr.eims.write(intr.bit);
        if self.posted() == 0 {
            return Ok(Armed::Sleep);
        }
        // SAFETY: `next` is posted (posted() > 0): the slot holds our descriptor.
        let st = unsafe { self.desc(self.next).read_volatile() }.status_error();
        Ok(if st & RXD_STAT_DD != 0 {
            Armed::Ready
        } else {
            Armed::Sleep
        })
    }

    /// Masks the vector (EIMC) and consumes its count. A line that fired is deasserted
    /// (ICR read) before UIO unmasks it (`wait`), or it would fire again at once.
    fn intr_disable(&mut self) {
        if let Some(intr) = &self.intr {
            intr.eimc.write(intr.bit);
            match &intr.line_icr {
                None => {
                    let _ = intr.irq.wait(0);
                }
                Some(icr) => {
                    if pmd_core::unix::readable(intr.irq.fd(), std::time::Duration::ZERO)
                        .unwrap_or(false)
                    {
                        let _ = icr.read();
                        let _ = intr.irq.wait(0);
                    }
                }
            }
        }
    }

    fn intr_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.intr.as_ref().map(|i| i.irq.fd())
    }

    #[inline]
    fn rx_burst(&mut self, batch: &mut PktBatch, max: usize) -> usize {
        let max = max.min(batch.spare());
        let spare = batch.spare_raw();
        let mut k = 0;
        let mut bytes = 0u64;
        let mut errors = 0u64;
        let mut in_flight = self.posted();
        while k < max && in_flight > 0 {
            let i = self.next;
            // SAFETY: `i` is posted (in_flight > 0): the slot holds our descriptor.
            let d = unsafe { self.desc(i).read_volatile() };
            let st = d.status_error();
            if st & RXD_STAT_DD == 0 {
                break;
            }
            // Read the rest of the descriptor only after seeing DD (the device writes the
            // status last).
            fence(Ordering::Acquire);
            // SAFETY: re-read after the fence for the other fields.
            let d = unsafe { self.desc(i).read_volatile() };
            self.next = (i + 1) & self.mask;
            in_flight -= 1;
            let raw = std::mem::replace(&mut self.bufs[i], RawMbuf::NULL);
            // SAFETY: the slot was posted, so `bufs` held the buffer we gave the device;
            // it is taken out of `bufs` above.
            let mut m = unsafe { raw.into_mbuf() };
            let eop = st & RXD_STAT_EOP != 0;
            let len = usize::from(d.length());
            if self.in_chain || !eop || self.partial.is_some() {
                match self.segment(m, len, eop) {
                    Seg::Pending => continue,
                    Seg::Dropped(counted) => {
                        errors += u64::from(counted);
                        continue;
                    }
                    Seg::Complete(head) => m = head,
                }
                if st & self.error_mask != 0 {
                    errors += 1;
                    continue;
                }
            } else {
                if st & self.error_mask != 0 || len == 0 || len > self.buf_len {
                    errors += 1;
                    continue;
                }
                let off = m.headroom();
                if !m.set_data_span(off, len) {
                    errors += 1;
                    continue;
                }
            }
            m.set_port(self.port);
            m.set_packet_type(ptype_of(d.packet_type()));
            let mut flags = 0;
            if d.rss_type() != 0 {
                m.set_rss_hash(d.rss_hash());
                flags |= RX_RSS_HASH;
            }
            if self.vlan_strip && st & RXD_STAT_VP != 0 {
                m.set_vlan_tci(d.vlan());
                flags |= RX_VLAN | RX_VLAN_STRIPPED;
            }
            if let Some(c) = self.csum {
                if st & RXD_STAT_IPCS != 0 {
                    flags |= if st & c.ip_err != 0 {
                        RX_IP_CKSUM_BAD
                    } else {
                        RX_IP_CKSUM_GOOD
                    };
                }
                if st & RXD_STAT_L4CS != 0 {
                    flags |= if st & c.l4_err != 0 {
                        RX_L4_CKSUM_BAD
                    } else {
                        RX_L4_CKSUM_GOOD
                    };
                }
            }
            if flags != 0 {
                m.set_ol_flags(flags);
            }
            bytes += m.len() as u64;
            spare[k] = m.into_raw();
            k += 1;
        }
        // SAFETY: the first k spare slots hold buffers we own; k <= max <= spare().
        unsafe { batch.commit_raw(k) };
        if k > 0 {
            self.stats.add(k as u64, bytes);
        }
        if errors > 0 {
            self.stats.add_errors(errors);
        }
        if self.mask - self.posted() >= REFILL_THRESH && self.post_buffers() > 0 {
            // Descriptors must be visible before the device sees the new tail.
            fence(Ordering::Release);
            self.tail.write(self.post as u32);
        }
        k
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        if let Some(i) = &self.intr {
            i.eimc.write(i.bit);
        }
        if let Some((reg, bit)) = &self.enable {
            reg.write(reg.read() & !bit);
        }
        let mut b = PktBatch::new();
        for raw in self.bufs.iter_mut().filter(|r| !r.is_null()) {
            if b.spare() == 0 {
                b.clear();
            }
            let raw = std::mem::replace(raw, RawMbuf::NULL);
            // SAFETY: buffers in `bufs` are owned by the ring (posted, never completed).
            let _ = b.push(unsafe { raw.into_mbuf() });
        }
    }
}
