//! Packet buffers: [`Mbuf`] (one owned buffer that returns to its pool on drop),
//! [`SharedMbuf`] (a reference-counted read-only view), and [`PktBatch`] (a burst).

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

/// Receive offload flag: the IP checksum was checked and is good.
pub const RX_IP_CKSUM_GOOD: u64 = 1 << 7;
/// Receive offload flag: the IP checksum was checked and is bad.
pub const RX_IP_CKSUM_BAD: u64 = 1 << 4;
/// Receive offload flag: the L4 checksum was checked and is good.
pub const RX_L4_CKSUM_GOOD: u64 = 1 << 8;
/// Receive offload flag: the L4 checksum was checked and is bad.
pub const RX_L4_CKSUM_BAD: u64 = 1 << 3;
/// Receive offload flag: `rss_hash` holds a valid RSS hash.
pub const RX_RSS_HASH: u64 = 1 << 1;
/// Receive offload flag: `vlan_tci` holds a stripped VLAN tag.
pub const RX_VLAN_STRIPPED: u64 = 1 << 6;

/// The buffer header, at the start of each pool element, one cache line.
/// Buffer data follows it in the same element.
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
    pub(crate) pool: *const PoolInner,
}

const _: () = assert!(std::mem::size_of::<MbufHdr>() == 64);

impl MbufHdr {
    /// Puts the header into its freshly-allocated state.
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

/// An owned packet buffer: unique access to its data; returns to its pool when dropped.
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
        Mbuf {
            hdr: unsafe { NonNull::new_unchecked(self.0) },
        }
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

    /// Gives up ownership without freeing; see [`RawMbuf::into_mbuf`].
    #[inline(always)]
    pub fn into_raw(self) -> RawMbuf {
        RawMbuf(ManuallyDrop::new(self).hdr.as_ptr())
    }

    /// The packet bytes.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        let h = self.h();
        // SAFETY: data_off + data_len <= buf_len is an invariant kept by every setter; the
        // buffer memory is initialised (zeroed at creation, then only ever written).
        unsafe {
            std::slice::from_raw_parts(h.buf_addr.add(h.data_off as usize), h.data_len as usize)
        }
    }

    /// The packet bytes, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let h = self.h();
        // SAFETY: as in `data`, plus unique access through `&mut self`.
        unsafe {
            std::slice::from_raw_parts_mut(h.buf_addr.add(h.data_off as usize), h.data_len as usize)
        }
    }

    /// Packet length in bytes.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.h().data_len as usize
    }

    /// Whether the packet has no bytes.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes free in front of the data.
    #[inline(always)]
    pub fn headroom(&self) -> usize {
        self.h().data_off as usize
    }

    /// Bytes free after the data.
    #[inline(always)]
    pub fn tailroom(&self) -> usize {
        let h = self.h();
        h.buf_len as usize - h.data_off as usize - h.data_len as usize
    }

    /// Total buffer size (headroom + data + tailroom).
    pub fn buf_len(&self) -> usize {
        self.h().buf_len as usize
    }

    /// Sets the packet length, keeping the start; fails (false) if it exceeds the buffer.
    /// New bytes hold whatever the buffer held before.
    #[inline(always)]
    pub fn set_len(&mut self, len: usize) -> bool {
        let h = self.h_mut();
        if len > (h.buf_len - h.data_off) as usize {
            return false;
        }
        h.data_len = len as u16;
        h.pkt_len = len as u32;
        true
    }

    /// Extends the packet by `n` bytes at the end and returns them, or `None` without room.
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        let old = self.len();
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

    /// Removes `n` bytes from the front; false if the packet is shorter.
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

    /// Removes `n` bytes from the end; false if the packet is shorter.
    pub fn trim(&mut self, n: usize) -> bool {
        let len = self.len();
        n <= len && self.set_len(len - n)
    }

    /// Copies `bytes` in as the whole packet (from the default headroom); false if too long.
    pub fn copy_from(&mut self, bytes: &[u8]) -> bool {
        let h = self.h_mut();
        h.data_off = h.headroom;
        if !self.set_len(bytes.len()) {
            return false;
        }
        self.data_mut().copy_from_slice(bytes);
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

    /// Offload flags (`RX_*` constants).
    #[inline(always)]
    pub fn ol_flags(&self) -> u64 {
        self.h().ol_flags
    }

    /// Sets the offload flags.
    #[inline(always)]
    pub fn set_ol_flags(&mut self, flags: u64) {
        self.h_mut().ol_flags = flags;
    }

    /// Packet type as classified by the driver (0 = unknown).
    pub fn packet_type(&self) -> u32 {
        self.h().packet_type
    }

    /// Sets the packet type.
    pub fn set_packet_type(&mut self, t: u32) {
        self.h_mut().packet_type = t;
    }

    /// VLAN tag stripped by the driver (valid with [`RX_VLAN_STRIPPED`]).
    pub fn vlan_tci(&self) -> u16 {
        self.h().vlan_tci
    }

    /// Sets the VLAN tag.
    pub fn set_vlan_tci(&mut self, tci: u16) {
        self.h_mut().vlan_tci = tci;
    }

    /// IOVA (the address a device uses for DMA) of the first data byte.
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
        h.data_len = len as u16;
        h.pkt_len = len as u32;
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

/// A shared, read-only packet buffer; the buffer returns to its pool when the last
/// clone is dropped.
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

    /// The packet bytes.
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

/// Returns buffers to their pools, in bulk for runs of buffers from the same pool.
///
/// # Safety
/// Every entry must be an owned, non-null buffer with refcount 1 that nothing else refers to.
#[inline]
pub(crate) unsafe fn free_raw_bulk(bufs: &[RawMbuf]) {
    let Some(first) = bufs.first() else { return };
    // SAFETY: headers of owned buffers are valid.
    let mut pool = unsafe { (*first.0).pool };
    let mut start = 0;
    for (i, b) in bufs.iter().enumerate().skip(1) {
        // SAFETY: as above.
        let p = unsafe { (*b.0).pool };
        if p != pool {
            // SAFETY: the pool outlives its buffers; the run start..i belongs to it.
            unsafe { (*pool).put_bulk(&bufs[start..i]) };
            pool = p;
            start = i;
        }
    }
    // SAFETY: as above.
    unsafe { (*pool).put_bulk(&bufs[start..]) };
}

/// The most buffers a [`PktBatch`] holds.
pub const BATCH_CAPACITY: usize = 64;
/// The burst size apps use by default.
pub const DEFAULT_BURST: usize = 32;

/// A burst of owned packet buffers: what `rx_burst` fills and `tx_burst` drains.
/// Dropping it (or [`PktBatch::clear`]) frees what it still holds, in bulk.
pub struct PktBatch {
    len: usize,
    bufs: [RawMbuf; BATCH_CAPACITY],
}

impl Default for PktBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl PktBatch {
    /// An empty batch.
    pub const fn new() -> Self {
        PktBatch {
            len: 0,
            bufs: [RawMbuf::NULL; BATCH_CAPACITY],
        }
    }

    /// Number of buffers held.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds nothing.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left.
    #[inline(always)]
    pub fn spare(&self) -> usize {
        BATCH_CAPACITY - self.len
    }

    /// The buffers held.
    #[inline(always)]
    pub fn as_slice(&self) -> &[Mbuf] {
        // SAFETY: the first `len` entries are owned, non-null buffers, and `Mbuf` is a
        // transparent non-null wrapper of the same pointer.
        unsafe { std::slice::from_raw_parts(self.bufs.as_ptr() as *const Mbuf, self.len) }
    }

    /// The buffers held, writable.
    #[inline(always)]
    pub fn as_mut_slice(&mut self) -> &mut [Mbuf] {
        // SAFETY: as in `as_slice`, with unique access.
        unsafe { std::slice::from_raw_parts_mut(self.bufs.as_mut_ptr() as *mut Mbuf, self.len) }
    }

    /// Iterates over the buffers.
    pub fn iter(&self) -> std::slice::Iter<'_, Mbuf> {
        self.as_slice().iter()
    }

    /// Iterates over the buffers, writable.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Mbuf> {
        self.as_mut_slice().iter_mut()
    }

    /// The buffers held, as raw pointers (for drivers that park them).
    #[inline(always)]
    pub fn raw(&self) -> &[RawMbuf] {
        &self.bufs[..self.len]
    }

    /// Adds a buffer at the end, or gives it back when full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == BATCH_CAPACITY {
            return Err(m);
        }
        self.bufs[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// Removes the last buffer.
    #[inline]
    pub fn pop(&mut self) -> Option<Mbuf> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: entry `len` was owned and is now out of the batch.
        Some(unsafe { self.bufs[self.len].into_mbuf() })
    }

    /// Frees every buffer held (in bulk).
    #[inline]
    pub fn clear(&mut self) {
        let n = self.len;
        self.len = 0;
        // SAFETY: the entries were owned and are no longer in the batch.
        unsafe { free_raw_bulk(&self.bufs[..n]) };
    }

    /// Frees the buffers after the first `keep`.
    pub fn truncate(&mut self, keep: usize) {
        if keep < self.len {
            let n = self.len;
            self.len = keep;
            // SAFETY: entries keep..n were owned and are no longer in the batch.
            unsafe { free_raw_bulk(&self.bufs[keep..n]) };
        }
    }

    /// Keeps only the buffers for which `f` returns true (in order); frees the others.
    pub fn retain(&mut self, mut f: impl FnMut(&mut Mbuf) -> bool) {
        let mut kept = 0;
        let mut dropped = PktBatch::new();
        for i in 0..self.len {
            // SAFETY: entry i is owned; we move it either back into the batch or out.
            let mut m = unsafe { self.bufs[i].into_mbuf() };
            if f(&mut m) {
                self.bufs[kept] = m.into_raw();
                kept += 1;
            } else {
                // Cannot fail: at most BATCH_CAPACITY buffers are dropped.
                let _ = dropped.push(m);
            }
        }
        self.len = kept;
    }

    /// Removes the first `n` buffers (clamped to `len`) from the batch without freeing them,
    /// shifting the rest to the front. For drivers that took ownership of them through
    /// [`PktBatch::raw`]; a caller that did not leaks them (memory-safe, but lost).
    #[inline]
    pub fn disown_front(&mut self, n: usize) {
        let n = n.min(self.len);
        if n < self.len {
            self.bufs.copy_within(n..self.len, 0);
        }
        self.len -= n;
    }

    /// Frees the first `n` buffers (clamped) and shifts the rest to the front: what a
    /// driver that copied the packets out (to a socket or a device ring) calls.
    #[inline]
    pub fn free_front(&mut self, n: usize) {
        let n = n.min(self.len);
        // SAFETY: entries 0..n are owned; disown_front removes them from the batch right after.
        unsafe { free_raw_bulk(&self.bufs[..n]) };
        self.disown_front(n);
    }

    /// The unused slots, for a driver to write raw buffer pointers into before
    /// [`PktBatch::commit_raw`].
    #[inline(always)]
    pub fn spare_raw(&mut self) -> &mut [RawMbuf] {
        &mut self.bufs[self.len..]
    }

    /// Adopts the first `n` entries of [`PktBatch::spare_raw`] as held buffers.
    ///
    /// # Safety
    /// Those entries must be owned buffers (see [`RawMbuf::into_mbuf`]), and `n <= spare()`.
    #[inline(always)]
    pub unsafe fn commit_raw(&mut self, n: usize) {
        debug_assert!(n <= self.spare());
        self.len += n;
    }
}

impl Drop for PktBatch {
    fn drop(&mut self) {
        self.clear();
    }
}

impl std::fmt::Debug for PktBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
