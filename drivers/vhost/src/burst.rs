//! What the split ([`crate::split`]) and packed ([`crate::packed`]) data paths share:
//! the contexts a burst runs with, why a chain is refused and how that is counted, how a
//! ring's areas are translated, and the per-buffer work of a chain in either direction —
//! gathering a received packet (header, then frame into mbufs) and writing a packet to
//! the guest (header, then frame, with MRG_RXBUF's `num_buffers` filled in afterwards).
//!
//! The buffers handed to these helpers were translated with their full lengths through
//! the memory table by a ring's walker; the guest may write them meanwhile, so they are
//! only ever accessed through raw copies.

use crate::mem::GuestMemory;
use crate::vring::RingErrors;
use pmd_core::ethdev::QueueStats;
use pmd_core::mbuf::{Mbuf, PktBatch};
use pmd_core::vnet::{
    tx_header, RxProcessor, VnetHdr, VnetStats, F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4,
    VNET_HDR_LEN,
};
use pmd_core::Mempool;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

/// `VIRTIO_NET_F_GUEST_CSUM`: the guest takes packets with partial checksums.
pub(crate) const F_GUEST_CSUM: u64 = 1 << 1;
/// `VIRTIO_NET_F_GUEST_TSO4`: the guest takes TCPv4 super-frames.
pub(crate) const F_GUEST_TSO4: u64 = 1 << 7;
/// `VIRTIO_NET_F_GUEST_TSO6`: the guest takes TCPv6 super-frames.
pub(crate) const F_GUEST_TSO6: u64 = 1 << 8;
/// `VIRTIO_NET_F_GUEST_ECN`: the guest takes super-frames with ECN (CWR) set.
pub(crate) const F_GUEST_ECN: u64 = 1 << 9;
/// `VIRTIO_NET_F_MRG_RXBUF`: a received packet may span several chains.
pub(crate) const F_MRG_RXBUF: u64 = 1 << 15;
/// `VIRTIO_RING_F_INDIRECT_DESC`: a chain may end in a table of descriptors
/// ([`crate::indirect`]).
pub(crate) const F_INDIRECT_DESC: u64 = pmd_core::vnet::features::VIRTIO_F_INDIRECT_DESC;
/// `VIRTIO_RING_F_EVENT_IDX`: `used_event`/`avail_event` (split) or `DESC` event
/// suppression (packed) instead of the flags alone.
pub(crate) const F_EVENT_IDX: u64 = 1 << 29;
/// `VIRTIO_F_VERSION_1`.
pub(crate) const F_VERSION_1: u64 = 1 << 32;

/// Largest frame taken from the guest (a TCP super-frame of 64 KiB with its Ethernet
/// header and two tags, [`pmd_core::vnet::GSO_MAX_FRAME`]); longer chains are dropped and
/// counted `too_long`.
pub const MAX_RX_FRAME: usize = pmd_core::vnet::GSO_MAX_FRAME;

/// Most entries of a ring (split or packed).
pub const MAX_RING_SIZE: u16 = 32768;

/// Why a ring could not be set up from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingSetupError {
    /// The size is not a power of two in `1..=32768`.
    #[error("ring size {0} is not a power of two in 1..={MAX_RING_SIZE}")]
    Size(u16),
    /// An area does not lie inside one memory region, or is misaligned.
    #[error("the {area} area at {addr:#x} ({len} bytes, {align}-byte aligned) is not inside one memory region")]
    Area {
        /// `desc`, `avail` or `used` (split); `desc`, `driver` or `device` (packed).
        area: &'static str,
        /// The front end's address of it.
        addr: u64,
        /// Its length for the ring's size.
        len: u64,
        /// The alignment it needs.
        align: u64,
    },
    /// Packed: the base's index (bits 0..=14) is not inside the ring.
    #[error("packed ring base index {index} is beyond the ring's {size} entries")]
    Base {
        /// The index from the base.
        index: u16,
        /// The ring's entries.
        size: u16,
    },
}

/// What a receive burst needs besides the ring and the pool.
#[derive(Debug, Clone, Copy)]
pub struct RxCtx<'a> {
    /// The queue's counters (packets, bytes, errors, no_mbuf).
    pub stats: &'a QueueStats,
    /// The ring's error counters.
    pub errors: &'a RingErrors,
    /// Applies each packet's virtio-net header (checksum, GSO).
    pub vnet: &'a RxProcessor,
    /// Frames longer than one mbuf become mbuf chains (the SCATTER offload); otherwise
    /// they are dropped and counted `too_long`.
    pub scatter: bool,
    /// The port stamped on received packets.
    pub port: u16,
}

/// What a transmit burst needs besides the ring.
#[derive(Debug, Clone, Copy)]
pub struct TxCtx<'a> {
    /// The queue's counters (packets, bytes, errors).
    pub stats: &'a QueueStats,
    /// The ring's error counters.
    pub errors: &'a RingErrors,
    /// The offload counters (`tx_csum_packets`, `tx_gso_packets`, `tx_offload_errors`).
    pub vnet: &'a VnetStats,
}

/// Why a descriptor chain was refused; each maps to one [`RingErrors`] counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChainFault {
    /// More descriptors than the ring has (a loop), a `next` beyond the table, an
    /// indirect table that is not allowed (not negotiated, followed by NEXT, nested) or
    /// malformed (not whole entries, more than the ring's size), a buffer of the wrong
    /// direction or (packed) a buffer id beyond the ring: `bad_chain`.
    Chain,
    /// A buffer outside every memory region (or whose end wraps): `bad_addr`.
    Addr,
    /// The buffers add up to more than the limit: `too_long`.
    TooLong,
}

/// What a walker does after a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Go on to the next descriptor.
    Continue,
    /// Stop here (the caller has what it needs).
    Stop,
}

/// What a ring walker hands each buffer of a chain to: a packet being gathered
/// ([`RxGather`]) or written ([`TxStream`]).
///
/// A trait with an always-inlined method rather than a closure: a walker calls it from
/// two places (buffers from the ring, buffers from an indirect table), and a closure
/// called from two places is no longer inlined into the burst, which cost a quarter of
/// the 64-byte transmit rate.
pub(crate) trait ChainSink {
    /// Takes the next buffer of the chain.
    ///
    /// # Safety
    /// `p` must be valid for reads and writes of `n` bytes (a buffer a walker
    /// translated), and stay so until the burst ends.
    unsafe fn take(&mut self, p: *mut u8, n: usize) -> Step;
}

/// Counts a chain fault in its counter.
#[inline]
pub(crate) fn count_fault(errors: &RingErrors, f: ChainFault) {
    bump(
        match f {
            ChainFault::Chain => &errors.bad_chain,
            ChainFault::Addr => &errors.bad_addr,
            ChainFault::TooLong => &errors.too_long,
        },
        1,
    );
}

/// Adds `n` to a single-writer counter.
#[inline(always)]
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Bytes of the virtio-net header for `features`: 12 with VERSION_1 or MRG_RXBUF, else 10.
pub(crate) fn hdr_len(features: u64) -> usize {
    if features & (F_VERSION_1 | F_MRG_RXBUF) != 0 {
        12
    } else {
        10
    }
}

/// Host address of `[addr, addr + len)` in the front end's address space, aligned (both
/// the address and the host pointer) to `align`.
pub(crate) fn area(
    mem: &GuestMemory,
    name: &'static str,
    addr: u64,
    len: u64,
    align: u64,
) -> Result<*mut u8, RingSetupError> {
    let err = RingSetupError::Area {
        area: name,
        addr,
        len,
        align,
    };
    if !addr.is_multiple_of(align) {
        return Err(err);
    }
    match mem.uva(addr, len) {
        Some(p) if (p as usize as u64).is_multiple_of(align) => Ok(p),
        _ => Err(err),
    }
}

/// Moves segments of an earlier super-frame into `batch`, at most until `*got == max`;
/// returns whether some are still waiting (then no new chain may be taken).
#[inline(always)]
pub(crate) fn drain_pending(
    pending: &mut VecDeque<Mbuf>,
    batch: &mut PktBatch,
    max: usize,
    got: &mut usize,
    bytes: &mut u64,
) -> bool {
    while *got < max {
        let Some(p) = pending.pop_front() else {
            break;
        };
        *bytes += p.len() as u64;
        *got += 1;
        let _ = batch.push(p);
    }
    !pending.is_empty()
}

/// Why a chain's copy into an mbuf stopped early.
enum CopyStop {
    /// The frame is longer than one mbuf and the queue does not scatter.
    TooLong,
    /// The pool ran dry for another segment.
    NoMbuf,
}

/// Copies `n` bytes from guest memory at `src` to the end of `m`, chaining segments
/// from `pool` when `scatter`.
///
/// # Safety
/// `src` must be valid for reads of `n` bytes (a buffer translated through the memory
/// table); the guest may write it meanwhile (a raw copy).
#[inline(always)]
unsafe fn append_guest(
    m: &mut Mbuf,
    pool: &Mempool,
    scatter: bool,
    src: *const u8,
    n: usize,
) -> Result<(), CopyStop> {
    let mut done = 0;
    while done < n {
        if m.last_tailroom() == 0 {
            if !scatter {
                return Err(CopyStop::TooLong);
            }
            let seg = pool.alloc().ok_or(CopyStop::NoMbuf)?;
            m.chain(seg).map_err(|_| CopyStop::TooLong)?;
        }
        let k = (n - done).min(m.last_tailroom());
        let dst = m.append(k).ok_or(CopyStop::TooLong)?;
        // SAFETY: the caller vouches for `src..src + n`; `dst` is k bytes of our mbuf.
        unsafe { pmd_core::copy::copy_bytes_raw(dst.as_mut_ptr(), src.add(done), k) };
        done += k;
    }
    Ok(())
}

/// What became of one chain taken from the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RxChain {
    /// Its packet (or the segments of its super-frame) went to `emit`.
    Delivered,
    /// Dropped and counted (a bad chain, or a header the processor refused).
    Dropped,
    /// The pool ran dry: the chain must stay available for the next burst.
    NoMbuf,
}

/// One received packet being gathered from the buffers of a device-readable chain: the
/// virtio-net header into a small array, the frame into an mbuf (chain).
pub(crate) struct RxGather<'a> {
    m: Mbuf,
    pool: &'a Mempool,
    scatter: bool,
    hdr_len: usize,
    hdr: [u8; 12],
    have_hdr: usize,
    stop: Option<CopyStop>,
}

impl<'a> RxGather<'a> {
    /// Gathers into `m` (a fresh mbuf from `pool`) behind a header of `hdr_len` bytes.
    #[inline(always)]
    pub fn new(m: Mbuf, pool: &'a Mempool, scatter: bool, hdr_len: usize) -> Self {
        RxGather {
            m,
            pool,
            scatter,
            hdr_len,
            hdr: [0; 12],
            have_hdr: 0,
            stop: None,
        }
    }

    /// Ends the chain whose walk returned `walked`: counts a fault, or hands the packet
    /// (its header applied by `ctx.vnet`: checksum completed, super-frame segmented) to
    /// `emit`, once per resulting packet. A frame of 0 bytes is a bad chain.
    #[inline(always)]
    pub fn finish(
        self,
        walked: Result<(), ChainFault>,
        ctx: &RxCtx<'_>,
        emit: impl FnMut(Mbuf),
    ) -> RxChain {
        let RxGather {
            mut m,
            pool,
            hdr_len,
            hdr,
            have_hdr,
            stop,
            ..
        } = self;
        match (walked, stop) {
            (_, Some(CopyStop::NoMbuf)) => {
                drop(m);
                ctx.stats.add_no_mbuf(1);
                RxChain::NoMbuf
            }
            (Err(f), _) => {
                count_fault(ctx.errors, f);
                RxChain::Dropped
            }
            (Ok(()), Some(CopyStop::TooLong)) => {
                count_fault(ctx.errors, ChainFault::TooLong);
                RxChain::Dropped
            }
            (Ok(()), None) if have_hdr < hdr_len || m.is_empty() => {
                count_fault(ctx.errors, ChainFault::Chain);
                RxChain::Dropped
            }
            (Ok(()), None) => {
                let mut h = [0u8; VNET_HDR_LEN];
                h.copy_from_slice(&hdr[..VNET_HDR_LEN]);
                m.set_port(ctx.port);
                match ctx.vnet.process(&VnetHdr::from_bytes(&h), m, pool, emit) {
                    Ok(_) => RxChain::Delivered,
                    Err(_) => RxChain::Dropped,
                }
            }
        }
    }
}

/// The header's bytes into `hdr`, the rest appended to the mbuf (chain).
impl ChainSink for RxGather<'_> {
    #[inline(always)]
    unsafe fn take(&mut self, p: *mut u8, n: usize) -> Step {
        let mut off = 0;
        if self.have_hdr < self.hdr_len {
            off = n.min(self.hdr_len - self.have_hdr);
            // SAFETY: `p` is valid for `n >= off` bytes; the destination is inside `hdr`
            // (have_hdr + off <= hdr_len <= 12).
            unsafe {
                pmd_core::copy::copy_bytes_raw(self.hdr[self.have_hdr..].as_mut_ptr(), p, off)
            };
            self.have_hdr += off;
        }
        if off < n {
            // SAFETY: `p + off .. p + n` lies in the caller's buffer.
            let r =
                unsafe { append_guest(&mut self.m, self.pool, self.scatter, p.add(off), n - off) };
            if let Err(e) = r {
                self.stop = Some(e);
                return Step::Stop;
            }
        }
        Step::Continue
    }
}

/// The header for `m` on a ring with `features`, if its offload request is valid and
/// the guest takes it (GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN for a super-frame with CWR).
#[inline(always)]
pub(crate) fn tx_header_for(features: u64, m: &Mbuf) -> Option<VnetHdr> {
    let has = |f: u64| features & f != 0;
    let tso4 = has(F_GUEST_TSO4);
    let tso6 = has(F_GUEST_TSO6);
    let h = tx_header(m, tso4 || tso6)?;
    let ecn_ok = h.gso_type & GSO_ECN == 0 || has(F_GUEST_ECN);
    let ok = match h.gso_type & !GSO_ECN {
        GSO_NONE => h.flags & F_NEEDS_CSUM == 0 || has(F_GUEST_CSUM),
        GSO_TCPV4 => tso4 && ecn_ok && has(F_GUEST_CSUM),
        _ => tso6 && ecn_ok && has(F_GUEST_CSUM),
    };
    ok.then_some(h)
}

/// Counts a packet sent with header `h` in the offload counters.
#[inline(always)]
pub(crate) fn count_tx_offload(h: &VnetHdr, vnet: &VnetStats) {
    if h.gso_type != GSO_NONE {
        bump(&vnet.tx_gso_packets, 1);
    } else if h.flags & F_NEEDS_CSUM != 0 {
        bump(&vnet.tx_csum_packets, 1);
    }
}

/// One packet being written to the guest as the byte stream `header ++ frame` across
/// the buffers of one or more device-writable chains.
///
/// The header is held as two little-endian words (bytes 0..8 and 8..12) and, when a
/// buffer takes all of it (the common case), stored with two fixed-size writes straight
/// from registers: a byte array written just before would be read back by the copy with
/// loads that the stores cannot forward to, and those loads would wait for every earlier
/// store of the burst to reach the cache, each a line of guest memory the other core
/// holds.
pub(crate) struct TxStream<'a> {
    /// Header bytes 0..8: flags, gso_type, hdr_len, gso_size, csum_start.
    lo: u64,
    /// Header bytes 8..12: csum_offset, num_buffers (1).
    hi: u32,
    hdr_len: usize,
    m: &'a Mbuf,
    total: usize,
    pos: usize,
    /// Bytes written into the current chain's buffers ([`TxStream::end_chain`]).
    in_chain: usize,
    /// Where bytes 10 and 11 of the stream (`num_buffers`) went.
    nb_at: [*mut u8; 2],
}

impl<'a> TxStream<'a> {
    /// The stream for `m` behind header `h` (`hdr_len` bytes, 10 or 12; `num_buffers` 1).
    #[inline(always)]
    pub fn new(h: &VnetHdr, hdr_len: usize, m: &'a Mbuf) -> Self {
        debug_assert!(hdr_len == VNET_HDR_LEN || hdr_len == VNET_HDR_LEN + 2);
        TxStream {
            lo: u64::from(h.flags)
                | u64::from(h.gso_type) << 8
                | u64::from(h.hdr_len) << 16
                | u64::from(h.gso_size) << 32
                | u64::from(h.csum_start) << 48,
            hi: u32::from(h.csum_offset) | 1 << 16,
            hdr_len,
            m,
            total: hdr_len + m.len(),
            pos: 0,
            in_chain: 0,
            nb_at: [std::ptr::null_mut(); 2],
        }
    }

    /// The bytes written into the chain just walked (its used length); the next
    /// chain starts from 0.
    #[inline(always)]
    pub fn end_chain(&mut self) -> usize {
        std::mem::take(&mut self.in_chain)
    }

    /// Whether every byte was written.
    #[inline(always)]
    pub fn done(&self) -> bool {
        self.pos == self.total
    }

    /// The first `k` bytes of the stream (the whole header and `k - hdr_len` of the
    /// frame) into `p`.
    ///
    /// # Safety
    /// `p` must be valid for writes of `k >= hdr_len` bytes.
    #[inline(always)]
    unsafe fn put_whole(&mut self, p: *mut u8, k: usize) {
        // SAFETY: hdr_len (10 or 12) <= k bytes at `p`; unaligned stores of 8 and then
        // 2 or 4 bytes cover exactly the header.
        unsafe {
            p.cast::<u64>().write_unaligned(self.lo.to_le());
            let q = p.add(8);
            if self.hdr_len > VNET_HDR_LEN {
                q.cast::<u32>().write_unaligned(self.hi.to_le());
                self.nb_at = [p.add(VNET_HDR_LEN), p.add(VNET_HDR_LEN + 1)];
            } else {
                q.cast::<u16>().write_unaligned((self.hi as u16).to_le());
            }
        }
        let dst = p.wrapping_add(self.hdr_len);
        // In range (k - hdr_len <= the frame), so never an error.
        let _ = self.m.for_each_chunk(0, k - self.hdr_len, |chunk, at| {
            // SAFETY: `hdr_len + at + chunk.len() <= k`: inside the caller's buffer.
            unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), dst.add(at), chunk.len()) };
        });
    }

    /// The header as bytes (for a header split across buffers).
    #[inline(always)]
    fn header_bytes(&self) -> [u8; 12] {
        let mut hdr = [0u8; 12];
        hdr[..8].copy_from_slice(&self.lo.to_le_bytes());
        hdr[8..].copy_from_slice(&self.hi.to_le_bytes());
        hdr
    }

    /// Records where stream bytes 10 and 11 (`num_buffers`, with a 12-byte header) land
    /// when `[pos, pos + k)` goes to `p`.
    #[inline(always)]
    fn note_num_buffers(&mut self, p: *mut u8, pos: usize, k: usize) {
        for (i, at) in self.nb_at.iter_mut().enumerate() {
            let b = VNET_HDR_LEN + i;
            if self.hdr_len > b && (pos..pos + k).contains(&b) {
                // In the buffer: b - pos < k.
                *at = p.wrapping_add(b - pos);
            }
        }
    }

    /// Where the two bytes of `num_buffers` went (null before the header was written, or
    /// with a 10-byte header): dirty logging marks them again after
    /// [`TxStream::set_num_buffers`].
    #[inline(always)]
    pub fn num_buffers_at(&self) -> [*mut u8; 2] {
        self.nb_at
    }

    /// Writes `num_buffers` (MRG_RXBUF: the chains the packet took) into the header.
    ///
    /// # Safety
    /// The buffers given to [`ChainSink::take`] must still be mapped (the memory table is
    /// held by the ring).
    #[inline(always)]
    pub unsafe fn set_num_buffers(&self, chains: u16) {
        if chains == 1 {
            return; // the header went out with 1
        }
        for (at, b) in self.nb_at.iter().zip(chains.to_le_bytes()) {
            if !at.is_null() {
                // SAFETY: a byte of a buffer translated for this packet, still mapped.
                unsafe { at.write_volatile(b) };
            }
        }
    }
}

/// The next bytes of the stream into the buffer (the caller's contract keeps it valid
/// until the burst ends, which is when [`TxStream::set_num_buffers`] runs); the stream
/// says [`Step::Stop`] once complete.
impl ChainSink for TxStream<'_> {
    #[inline(always)]
    unsafe fn take(&mut self, p: *mut u8, n: usize) -> Step {
        let pos = self.pos;
        let k = n.min(self.total - pos);
        if pos == 0 && k >= self.hdr_len {
            // SAFETY: `p` is valid for n >= k >= hdr_len bytes.
            unsafe { self.put_whole(p, k) };
        } else {
            self.note_num_buffers(p, pos, k);
            let hdr = self.header_bytes();
            // SAFETY: `p` is valid for n >= k bytes; pos + k <= total.
            unsafe { write_stream(p, pos, k, &hdr[..self.hdr_len], self.m) };
        }
        self.pos += k;
        self.in_chain += k;
        if self.done() {
            Step::Stop
        } else {
            Step::Continue
        }
    }
}

/// Writes bytes `[pos, pos + k)` of the stream `hdr ++ m` to `dst`.
///
/// # Safety
/// `dst` must be valid for writes of `k` bytes, and `pos + k` at most the stream's length.
#[inline(always)]
unsafe fn write_stream(dst: *mut u8, pos: usize, k: usize, hdr: &[u8], m: &Mbuf) {
    let mut done = 0;
    if pos < hdr.len() {
        done = k.min(hdr.len() - pos);
        // SAFETY: `done` bytes of `hdr` from `pos`, into the caller's buffer.
        unsafe { std::ptr::copy_nonoverlapping(hdr[pos..].as_ptr(), dst, done) };
    }
    if done < k {
        let off = pos + done - hdr.len();
        // In range by the caller's contract, so never an error.
        let _ = m.for_each_chunk(off, k - done, |chunk, at| {
            // SAFETY: `done + at + chunk.len() <= k`: inside the caller's buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(chunk.as_ptr(), dst.add(done + at), chunk.len())
            };
        });
    }
}
