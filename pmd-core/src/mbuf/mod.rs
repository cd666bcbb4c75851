//! Packet buffers: [`Mbuf`] (one owned packet, a chain of one or more buffers, that
//! returns every buffer to its pool on drop), [`SharedMbuf`] (a reference-counted,
//! read-only packet), and [`PktBatch`] (a burst).
//!
//! A packet larger than one buffer is a chain: the head carries the packet's metadata
//! (`pkt_len`, `nb_segs`, offload flags) and each segment its own `data_len`. Single-segment
//! packets never touch the header's second cache line: a buffer in its pool always has
//! `next` null and `nb_segs` 1, so allocation resets only the first line.

mod batch;
mod chain;
pub mod flags;
pub mod ptype;

pub use batch::{Drain, PktBatch, BATCH_CAPACITY, DEFAULT_BURST};
pub use chain::{ChainError, SegmentIovas, Segments, SegmentsMut, MAX_SEGS};
pub use flags::*;

use crate::mempool::PoolInner;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

/// Default headroom in front of the packet data, bytes.
pub const HEADROOM: u16 = 128;
/// Default buffer size: 2048 bytes of data room plus the headroom.
pub const DEFAULT_BUF_SIZE: u16 = 2048 + HEADROOM;
/// Port value of a buffer that no port has touched.
pub const NO_PORT: u16 = u16::MAX;

/// The buffer header, at the start of each pool element: two cache lines. The first holds
/// everything a receive path writes; the second the chain link and the transmit offload
/// fields, touched only by multi-segment packets and offload requests. Buffer data follows
/// the header in the same element.
#[repr(C, align(64))]
pub(crate) struct MbufHdr {
    pub(crate) buf_addr: *mut u8,
    pub(crate) buf_iova: u64,
    pub(crate) data_off: u16,
    pub(crate) refcnt: AtomicU16,
    pub(crate) nb_segs: u16,
    pub(crate) port: u16,
    pub(crate) ol_flags: u64,
    pub(crate) packet_type: u32,
    pub(crate) pkt_len: u32,
    pub(crate) data_len: u16,
    pub(crate) vlan_tci: u16,
    pub(crate) rss_hash: u32,
    pub(crate) buf_len: u16,
    pub(crate) headroom: u16,
    /// The buffer's pool, with bit 0 set on the head of a chain (see [`CHAIN_TAG`]).
    pub(crate) pool: *const PoolInner,
    // -- second cache line --
    /// Next segment of the chain (null for the last). Null in every free buffer.
    pub(crate) next: *mut MbufHdr,
    pub(crate) tx_offload: TxOffload,
    pub(crate) vlan_tci_outer: u16,
}

const _: () = assert!(std::mem::size_of::<MbufHdr>() == 128);
const _: () = assert!(std::mem::offset_of!(MbufHdr, pool) < 64);
const _: () = assert!(std::mem::offset_of!(MbufHdr, next) == 64);

/// Bit 0 of a header's `pool` word: set on the head of a chain (`nb_segs > 1`). The free
/// path compares whole pool words to find runs of buffers from one pool, so a chain head
/// breaks a run like a buffer of another pool would, and single-segment buffers pay one
/// compare each, as before chains existed. Pools are aligned, so bit 0 is free.
pub(crate) const CHAIN_TAG: usize = 1;

impl MbufHdr {
    /// The buffer's pool (the chain tag masked off).
    #[inline(always)]
    pub(crate) fn pool_ptr(&self) -> *const PoolInner {
        // map_addr keeps the pointer's provenance (no integer round trip).
        self.pool.map_addr(|a| a & !CHAIN_TAG)
    }

    /// Sets the segment count and the chain tag with it (every write of `nb_segs` goes
    /// through here).
    #[inline(always)]
    pub(crate) fn set_nb_segs(&mut self, n: u16) {
        self.nb_segs = n;
        let tag = if n > 1 { CHAIN_TAG } else { 0 };
        self.pool = self.pool.map_addr(|a| (a & !CHAIN_TAG) | tag);
    }

    /// Sets the first segment's length and moves the packet length by the same amount
    /// (for a single segment: sets both).
    #[inline(always)]
    pub(crate) fn set_first_len(&mut self, len: u16) {
        if self.nb_segs == 1 {
            self.pkt_len = u32::from(len);
        } else {
            self.pkt_len = self.pkt_len - u32::from(self.data_len) + u32::from(len);
        }
        self.data_len = len;
    }

    /// Puts the header's first cache line into its freshly-allocated state (the second
    /// already is: see the module docs).
    #[inline(always)]
    pub(crate) fn reset(&mut self) {
        self.data_off = self.headroom;
        self.refcnt = AtomicU16::new(1);
        self.nb_segs = 1;
        self.port = NO_PORT;
        self.ol_flags = 0;
        self.packet_type = 0;
        self.pkt_len = 0;
        self.data_len = 0;
        self.vlan_tci = 0;
        self.rss_hash = 0;
    }
}

/// An owned packet: the head of a chain of one or more buffers, with unique access to all
/// of them. Dropping it returns every segment to its own pool. It moves between threads
/// as one value.
#[repr(transparent)]
pub struct Mbuf {
    hdr: NonNull<MbufHdr>,
}

// SAFETY: an Mbuf is the unique owner of its buffer; moving it to another thread moves
// that ownership. The pool it returns to is thread-safe.
unsafe impl Send for Mbuf {}
// SAFETY: `&Mbuf` only reads the header and data.
unsafe impl Sync for Mbuf {}

/// An unowned buffer pointer, for drivers that park buffers in rings or descriptor
/// shadows. Turning it back into an [`Mbuf`] is unsafe: the caller vouches for ownership.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawMbuf(pub(crate) *mut MbufHdr);

// SAFETY: just an address; ownership rules are enforced where it becomes an Mbuf again.
unsafe impl Send for RawMbuf {}

impl RawMbuf {
    /// The null value (an empty slot).
    pub const NULL: RawMbuf = RawMbuf(std::ptr::null_mut());

    /// Takes ownership again.
    ///
    /// # Safety
    /// `self` must come from [`Mbuf::into_raw`] (or a pool allocation) and must not have been
    /// turned back into an `Mbuf` since.
    #[inline(always)]
    pub unsafe fn into_mbuf(self) -> Mbuf {
        debug_assert!(!self.0.is_null());
        // SAFETY: non-null by the caller's contract.
        let hdr = unsafe { NonNull::new_unchecked(self.0) };
        Mbuf { hdr }
    }

    /// Whether this is the null slot value.
    pub fn is_null(self) -> bool {
        self.0.is_null()
    }
}

impl Mbuf {
    #[inline(always)]
    fn h(&self) -> &MbufHdr {
        // SAFETY: the header is valid for the Mbuf's lifetime (the pool outlives its buffers).
        unsafe { self.hdr.as_ref() }
    }

    #[inline(always)]
    fn h_mut(&mut self) -> &mut MbufHdr {
        // SAFETY: as above, and `&mut self` is unique access to this buffer.
        unsafe { self.hdr.as_mut() }
    }

    /// The pool of the first segment (see [`crate::Mempool::of`]).
    #[inline(always)]
    pub(crate) fn pool_inner(&self) -> *const PoolInner {
        self.h().pool_ptr()
    }

    /// Gives up ownership without freeing; see [`RawMbuf::into_mbuf`].
    #[inline(always)]
    pub fn into_raw(self) -> RawMbuf {
        RawMbuf(ManuallyDrop::new(self).hdr.as_ptr())
    }

    /// The bytes of the first segment: the whole packet when [`Mbuf::is_contiguous`];
    /// see [`Mbuf::segments`] for the rest of a chain.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        let h = self.h();
        // SAFETY: data_off + data_len <= buf_len is an invariant kept by every setter; the
        // buffer memory is initialised (zeroed at creation, then only ever written).
        unsafe {
            std::slice::from_raw_parts(h.buf_addr.add(h.data_off as usize), h.data_len as usize)
        }
    }

    /// The bytes of the first segment, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let h = self.h();
        // SAFETY: as in `data`, plus unique access through `&mut self`.
        unsafe {
            std::slice::from_raw_parts_mut(h.buf_addr.add(h.data_off as usize), h.data_len as usize)
        }
    }

    /// Packet length in bytes, over every segment (DPDK's `pkt_len`).
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.h().pkt_len as usize
    }

    /// Bytes in the first segment (DPDK's `data_len`).
    #[inline(always)]
    pub fn data_len(&self) -> usize {
        self.h().data_len as usize
    }

    /// Number of segments (1 for a packet in one buffer).
    #[inline(always)]
    pub fn nb_segs(&self) -> u16 {
        self.h().nb_segs
    }

    /// Whether the whole packet is in the first buffer, so [`Mbuf::data`] is all of it.
    #[inline(always)]
    pub fn is_contiguous(&self) -> bool {
        self.h().nb_segs == 1
    }

    /// Whether the packet has no bytes.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes free in front of the first segment's data.
    #[inline(always)]
    pub fn headroom(&self) -> usize {
        self.h().data_off as usize
    }

    /// Bytes free after the first segment's data.
    #[inline(always)]
    pub fn tailroom(&self) -> usize {
        let h = self.h();
        h.buf_len as usize - h.data_off as usize - h.data_len as usize
    }

    /// Total buffer size (headroom + data + tailroom).
    pub fn buf_len(&self) -> usize {
        self.h().buf_len as usize
    }

    /// Sets the first segment's length, keeping its start (and the packet length with it);
    /// fails (false) if it exceeds the buffer. New bytes hold whatever the buffer held.
    #[inline(always)]
    pub fn set_len(&mut self, len: usize) -> bool {
        let h = self.h_mut();
        if len > (h.buf_len - h.data_off) as usize {
            return false;
        }
        h.set_first_len(len as u16);
        true
    }

    /// Extends the packet by `n` bytes at the end of its last segment and returns them, or
    /// `None` if that segment lacks room (see [`Mbuf::extend_from_slice`] to grow a chain).
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        if !self.is_contiguous() {
            return self.append_last(n);
        }
        let old = self.data_len();
        if !self.set_len(old + n) {
            return None;
        }
        Some(&mut self.data_mut()[old..])
    }

    /// Extends the packet by `n` bytes at the front and returns them, or `None` without room.
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let h = self.h_mut();
        if n > h.data_off as usize {
            return None;
        }
        h.data_off -= n as u16;
        h.data_len += n as u16;
        h.pkt_len += n as u32;
        Some(&mut self.data_mut()[..n])
    }

    /// Removes `n` bytes from the front of the first segment; false (nothing changed) if
    /// that segment is shorter (as DPDK's `rte_pktmbuf_adj`).
    pub fn adj(&mut self, n: usize) -> bool {
        let h = self.h_mut();
        if n > h.data_len as usize {
            return false;
        }
        h.data_off += n as u16;
        h.data_len -= n as u16;
        h.pkt_len -= n as u32;
        true
    }

    /// Removes `n` bytes from the end of the packet, across segments (segments left empty
    /// go back to their pools); false (nothing changed) if the packet is shorter.
    pub fn trim(&mut self, n: usize) -> bool {
        let len = self.len();
        if n > len {
            return false;
        }
        if self.is_contiguous() {
            return self.set_len(len - n);
        }
        self.truncate(len - n);
        true
    }

    /// Copies `bytes` in as the whole packet (from the default headroom, in the first
    /// buffer; a chain's other segments are freed); false (nothing changed) if too long.
    #[inline]
    pub fn copy_from(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > self.buf_len() - usize::from(self.h().headroom) {
            return false;
        }
        self.free_tail();
        let h = self.h_mut();
        h.data_off = h.headroom;
        if !self.set_len(bytes.len()) {
            return false;
        }
        // Inlined for short frames (a `memcpy` call costs more than the copy).
        crate::copy::copy_bytes(self.data_mut(), bytes);
        true
    }

    /// The port the packet arrived on ([`NO_PORT`] if none).
    #[inline(always)]
    pub fn port(&self) -> u16 {
        self.h().port
    }

    /// Sets the input port.
    #[inline(always)]
    pub fn set_port(&mut self, port: u16) {
        self.h_mut().port = port;
    }

    /// RSS hash (valid when `ol_flags` has [`RX_RSS_HASH`]).
    #[inline(always)]
    pub fn rss_hash(&self) -> u32 {
        self.h().rss_hash
    }

    /// Sets the RSS hash.
    #[inline(always)]
    pub fn set_rss_hash(&mut self, hash: u32) {
        self.h_mut().rss_hash = hash;
    }

    /// Offload flags ([`flags`]: `RX_*` from the driver, `TX_*` requests).
    #[inline(always)]
    pub fn ol_flags(&self) -> u64 {
        self.h().ol_flags
    }

    /// Sets the offload flags.
    #[inline(always)]
    pub fn set_ol_flags(&mut self, flags: u64) {
        self.h_mut().ol_flags = flags;
    }

    /// Packet type as classified by the driver ([`ptype`]; 0 = unknown).
    pub fn packet_type(&self) -> u32 {
        self.h().packet_type
    }

    /// Sets the packet type.
    pub fn set_packet_type(&mut self, t: u32) {
        self.h_mut().packet_type = t;
    }

    /// VLAN tag stripped by the driver (valid with [`RX_VLAN_STRIPPED`]), or to insert
    /// (with [`TX_VLAN`]; the inner tag with [`TX_QINQ`]).
    pub fn vlan_tci(&self) -> u16 {
        self.h().vlan_tci
    }

    /// Sets the VLAN tag.
    pub fn set_vlan_tci(&mut self, tci: u16) {
        self.h_mut().vlan_tci = tci;
    }

    /// Outer VLAN tag of a QinQ packet (stripped with [`RX_QINQ_STRIPPED`], inserted with
    /// [`TX_QINQ`]).
    pub fn vlan_tci_outer(&self) -> u16 {
        self.h().vlan_tci_outer
    }

    /// Sets the outer VLAN tag.
    pub fn set_vlan_tci_outer(&mut self, tci: u16) {
        self.h_mut().vlan_tci_outer = tci;
    }

    /// Header lengths and segment size for transmit offloads (meaningful with the `TX_*`
    /// flags that need them; not reset on allocation, like DPDK's).
    #[inline(always)]
    pub fn tx_offload(&self) -> TxOffload {
        self.h().tx_offload
    }

    /// Sets the transmit offload lengths.
    #[inline(always)]
    pub fn set_tx_offload(&mut self, t: TxOffload) {
        self.h_mut().tx_offload = t;
    }

    /// IOVA (the address a device uses for DMA) of the first data byte of the first segment.
    #[inline(always)]
    pub fn data_iova(&self) -> u64 {
        let h = self.h();
        h.buf_iova + h.data_off as u64
    }

    /// IOVA of the start of the buffer (where headroom begins).
    #[inline(always)]
    pub fn buf_iova(&self) -> u64 {
        self.h().buf_iova
    }

    /// Raw pointer to the start of the buffer, for drivers that let a device or peer write it.
    #[inline(always)]
    pub fn buf_ptr(&mut self) -> *mut u8 {
        self.h().buf_addr
    }

    /// Sets data offset and length together, as a receive path does after a device wrote
    /// `len` bytes at `offset` into the buffer; false (nothing changed) if out of bounds.
    #[inline(always)]
    pub fn set_data_span(&mut self, offset: usize, len: usize) -> bool {
        let h = self.h_mut();
        if offset
            .checked_add(len)
            .is_none_or(|end| end > h.buf_len as usize)
        {
            return false;
        }
        h.data_off = offset as u16;
        h.set_first_len(len as u16);
        true
    }

    /// Reference count (1 for an `Mbuf`; more once shared).
    pub fn refcnt(&self) -> u16 {
        self.h().refcnt.load(Ordering::Relaxed)
    }

    /// Turns this buffer into a reference-counted, read-only one that can be cloned
    /// cheaply (e.g. to send one packet to several ports).
    pub fn into_shared(self) -> SharedMbuf {
        SharedMbuf {
            hdr: ManuallyDrop::new(self).hdr,
        }
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        let raw = RawMbuf(self.hdr.as_ptr());
        // SAFETY: we own the buffer (refcnt 1) and hand it back exactly once.
        unsafe { free_raw_bulk(std::slice::from_ref(&raw)) };
    }
}

impl std::fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mbuf")
            .field("len", &self.len())
            .field("port", &self.port())
            .field("headroom", &self.headroom())
            .finish()
    }
}

/// A shared, read-only packet (one buffer or a chain); every segment returns to its pool
/// when the last clone is dropped.
pub struct SharedMbuf {
    hdr: NonNull<MbufHdr>,
}

// SAFETY: shared buffers are only read; the reference count is atomic.
unsafe impl Send for SharedMbuf {}
// SAFETY: as above.
unsafe impl Sync for SharedMbuf {}

impl SharedMbuf {
    fn h(&self) -> &MbufHdr {
        // SAFETY: the header lives as long as any reference is outstanding.
        unsafe { self.hdr.as_ref() }
    }

    /// Packet length over every segment.
    pub fn len(&self) -> usize {
        self.h().pkt_len as usize
    }

    /// Whether the packet has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of segments.
    pub fn nb_segs(&self) -> u16 {
        self.h().nb_segs
    }

    /// The segments' bytes, in order.
    pub fn segments(&self) -> Segments<'_> {
        Segments::new(self.hdr.as_ptr())
    }

    /// The first segment's bytes (the whole packet when it has one segment).
    pub fn data(&self) -> &[u8] {
        let h = self.h();
        // SAFETY: bounds invariant as for Mbuf; nobody writes while shared.
        unsafe {
            std::slice::from_raw_parts(h.buf_addr.add(h.data_off as usize), h.data_len as usize)
        }
    }

    /// Current reference count.
    pub fn refcnt(&self) -> u16 {
        self.h().refcnt.load(Ordering::Acquire)
    }

    /// Gets the unique buffer back if this is the last reference.
    pub fn try_unique(self) -> Result<Mbuf, SharedMbuf> {
        if self.refcnt() == 1 {
            Ok(Mbuf {
                hdr: ManuallyDrop::new(self).hdr,
            })
        } else {
            Err(self)
        }
    }
}

impl std::fmt::Debug for SharedMbuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMbuf")
            .field("len", &self.data().len())
            .field("refcnt", &self.refcnt())
            .finish()
    }
}

impl Clone for SharedMbuf {
    fn clone(&self) -> Self {
        let prev = self.h().refcnt.fetch_add(1, Ordering::Relaxed);
        if prev == u16::MAX {
            // Like Arc: overflowing the count would lead to a use-after-free.
            std::process::abort();
        }
        SharedMbuf { hdr: self.hdr }
    }
}

impl Drop for SharedMbuf {
    fn drop(&mut self) {
        if self.h().refcnt.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Last reference: restore the unique state and free.
            self.h().refcnt.store(1, Ordering::Relaxed);
            drop(Mbuf { hdr: self.hdr });
        }
    }
}

/// Returns packets to their pools, in bulk for runs of single-segment buffers from the
/// same pool; chains go segment by segment, each to its own pool.
///
/// # Safety
/// Every entry must be an owned, non-null packet (chain head) with refcount 1 that
/// nothing else refers to.
#[inline]
pub(crate) unsafe fn free_raw_bulk(bufs: &[RawMbuf]) {
    let Some(first) = bufs.first() else { return };
    // SAFETY: headers of owned buffers are valid.
    let mut pool = unsafe { (*first.0).pool };
    if pool.addr() & CHAIN_TAG != 0 {
        // SAFETY: forwarded contract.
        return unsafe { free_chains_slow(bufs) };
    }
    let mut start = 0;
    for (i, b) in bufs.iter().enumerate().skip(1) {
        // SAFETY: as above.
        let p = unsafe { (*b.0).pool };
        if p != pool {
            // SAFETY: the pool outlives its buffers; the run start..i belongs to it.
            unsafe { (*pool).put_bulk(&bufs[start..i]) };
            if p.addr() & CHAIN_TAG != 0 {
                // SAFETY: the rest is forwarded under the caller's contract.
                return unsafe { free_chains_slow(&bufs[i..]) };
            }
            pool = p;
            start = i;
        }
    }
    // SAFETY: as above.
    unsafe { (*pool).put_bulk(&bufs[start..]) };
}

/// The out-of-line part of [`free_raw_bulk`] once a chain is met: every segment of every
/// packet is unlinked (restoring the free-buffer state: `next` null, `nb_segs` 1) and
/// returned to its own pool.
///
/// # Safety
/// As [`free_raw_bulk`].
#[cold]
#[inline(never)]
unsafe fn free_chains_slow(bufs: &[RawMbuf]) {
    for b in bufs {
        let mut seg = b.0;
        while !seg.is_null() {
            // SAFETY: every segment of an owned chain is owned through its head and valid;
            // links are only ever made by the chain API, to buffers it owned.
            unsafe {
                let next = (*seg).next;
                (*seg).next = std::ptr::null_mut();
                (*seg).set_nb_segs(1);
                (*(*seg).pool_ptr()).put_bulk(std::slice::from_ref(&RawMbuf(seg)));
                seg = next;
            }
        }
    }
}
