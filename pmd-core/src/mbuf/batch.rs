//! [`PktBatch`]: a burst of owned packet buffers.

use super::{free_raw_bulk, Mbuf, RawMbuf};

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

    /// Takes every buffer out of the batch, in order (to spread a burst over several tx
    /// queues); the ones the iterator has not yielded when it is dropped are freed.
    #[inline]
    pub fn drain(&mut self) -> Drain<'_> {
        let n = self.len;
        self.len = 0;
        Drain {
            bufs: &self.bufs[..n],
            at: 0,
        }
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

    /// Removes the first buffer and returns it, shifting the rest to the front.
    #[inline]
    pub fn take_front(&mut self) -> Option<Mbuf> {
        if self.len == 0 {
            return None;
        }
        // SAFETY: entry 0 is owned; disown_front takes it out of the batch right after.
        let m = unsafe { self.bufs[0].into_mbuf() };
        self.disown_front(1);
        Some(m)
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

    /// For drivers that send one buffer per packet: makes the first `n` packets (clamped)
    /// contiguous, linearizing chains that fit their first buffer, and returns how many
    /// from the front are contiguous now (fewer than `n` when a chain does not fit: the
    /// driver sends those before it and drops and counts that one). Single-segment
    /// packets cost one read of a field already in cache.
    #[inline]
    pub fn contiguous_front(&mut self, n: usize) -> usize {
        let n = n.min(self.len);
        for (i, m) in self.as_mut_slice()[..n].iter_mut().enumerate() {
            if !m.is_contiguous() && m.linearize().is_err() {
                return i;
            }
        }
        n
    }

    /// Frees the first packet and reports it gone (for a driver dropping a packet it
    /// cannot send, after counting it).
    pub fn drop_first(&mut self) {
        self.free_front(1);
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

/// The buffers of a [`PktBatch`], taken out in order ([`PktBatch::drain`]).
pub struct Drain<'a> {
    /// Owned buffers; those from `at` on are not yielded yet.
    bufs: &'a [RawMbuf],
    at: usize,
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        let raw = *self.bufs.get(self.at)?;
        self.at += 1;
        // SAFETY: the batch gave up these owned buffers to the iterator (its length is
        // zero), and each is yielded once.
        Some(unsafe { raw.into_mbuf() })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.bufs.len() - self.at;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Drain<'_> {}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        // SAFETY: the buffers not yielded are still owned by the iterator, and nothing
        // else refers to them.
        unsafe { free_raw_bulk(&self.bufs[self.at..]) };
    }
}
