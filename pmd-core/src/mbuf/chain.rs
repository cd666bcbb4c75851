//! Multi-segment packets: iterating, growing, shrinking, joining, linearizing, and reading
//! or writing across segment boundaries.
//!
//! A chain is owned through its head: segments are linked only here, only to buffers this
//! module owned, so walking `next` from a head the caller owns is sound. The head's
//! `nb_segs` and `pkt_len` always equal the segment count and the sum of `data_len`s.

use super::{Mbuf, MbufHdr, RawMbuf};
use crate::mempool::Mempool;
use std::marker::PhantomData;
use std::ptr;

/// The most segments one packet may have (DPDK's `RTE_MBUF_MAX_NB_SEGS`).
pub const MAX_SEGS: u16 = u16::MAX;

/// Why a chain operation failed; the packet is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The pool ran out of buffers; free some or make the pool larger.
    #[error("the mempool has no free buffer for another segment; enlarge the pool")]
    NoBuffers,
    /// The packet would have more than [`MAX_SEGS`] segments.
    #[error("the packet would have more than {MAX_SEGS} segments")]
    TooManySegments,
    /// The packet would be longer than 4 GiB.
    #[error("the packet would be longer than u32::MAX bytes")]
    TooLong,
    /// An offset or length past the end of the packet.
    #[error("offset and length run past the end of the packet")]
    OutOfRange,
    /// The first buffer cannot hold the whole packet (linearize).
    #[error("the first buffer has no room for the whole packet; copy it to a larger buffer")]
    NoRoom,
}

/// The bytes of one segment.
///
/// # Safety
/// `h` must be a valid header of a buffer the caller may read for `'a`.
#[inline(always)]
unsafe fn seg_slice<'a>(h: *const MbufHdr) -> &'a [u8] {
    // SAFETY: data_off + data_len <= buf_len is kept by every setter; the memory is the
    // buffer's own and initialised (zeroed at creation, then only written).
    unsafe {
        std::slice::from_raw_parts(
            (*h).buf_addr.add(usize::from((*h).data_off)),
            usize::from((*h).data_len),
        )
    }
}

/// The segments of a packet, as byte slices, in order.
pub struct Segments<'a> {
    cur: *const MbufHdr,
    _p: PhantomData<&'a Mbuf>,
}

impl<'a> Segments<'a> {
    pub(crate) fn new(head: *const MbufHdr) -> Self {
        Segments {
            cur: head,
            _p: PhantomData,
        }
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];
    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.cur.is_null() {
            return None;
        }
        let h = self.cur;
        // SAFETY: a segment of a chain borrowed for 'a (see the module docs).
        unsafe {
            self.cur = (*h).next;
            Some(seg_slice(h))
        }
    }
}

/// The segments of a packet, as writable byte slices, in order.
pub struct SegmentsMut<'a> {
    cur: *mut MbufHdr,
    _p: PhantomData<&'a mut Mbuf>,
}

impl<'a> Iterator for SegmentsMut<'a> {
    type Item = &'a mut [u8];
    #[inline]
    fn next(&mut self) -> Option<&'a mut [u8]> {
        if self.cur.is_null() {
            return None;
        }
        let h = self.cur;
        // SAFETY: a segment of a chain mutably borrowed for 'a; each segment's buffer is
        // distinct memory and is yielded once, so the slices never alias.
        unsafe {
            self.cur = (*h).next;
            Some(std::slice::from_raw_parts_mut(
                (*h).buf_addr.add(usize::from((*h).data_off)),
                usize::from((*h).data_len),
            ))
        }
    }
}

/// The segments of a packet as `(iova, len)`: where a device reads each one (DMA), in
/// order.
pub struct SegmentIovas<'a> {
    cur: *const MbufHdr,
    _p: PhantomData<&'a Mbuf>,
}

impl Iterator for SegmentIovas<'_> {
    type Item = (u64, usize);
    #[inline]
    fn next(&mut self) -> Option<(u64, usize)> {
        if self.cur.is_null() {
            return None;
        }
        let h = self.cur;
        // SAFETY: a segment of a chain borrowed for the iterator's lifetime.
        unsafe {
            self.cur = (*h).next;
            Some((
                (*h).buf_iova + u64::from((*h).data_off),
                usize::from((*h).data_len),
            ))
        }
    }
}

impl Mbuf {
    #[inline(always)]
    fn head_ptr(&self) -> *mut MbufHdr {
        self.hdr.as_ptr()
    }

    /// The last segment's header.
    fn last_seg(&self) -> *mut MbufHdr {
        let mut h = self.head_ptr();
        // SAFETY: walking an owned chain (module docs).
        unsafe {
            while !(*h).next.is_null() {
                h = (*h).next;
            }
        }
        h
    }

    /// The segments' bytes, in order (one slice for a contiguous packet).
    #[inline]
    pub fn segments(&self) -> Segments<'_> {
        Segments::new(self.head_ptr())
    }

    /// Each segment's IOVA (DMA address of its first data byte) and length, in order: what
    /// a NIC driver writes into one data descriptor per segment.
    #[inline]
    pub fn segment_iovas(&self) -> SegmentIovas<'_> {
        SegmentIovas {
            cur: self.head_ptr(),
            _p: PhantomData,
        }
    }

    /// The segments' bytes, writable, in order.
    #[inline]
    pub fn segments_mut(&mut self) -> SegmentsMut<'_> {
        SegmentsMut {
            cur: self.head_ptr(),
            _p: PhantomData,
        }
    }

    /// Extends the last segment by `n` bytes and returns them, or `None` without room.
    pub(crate) fn append_last(&mut self, n: usize) -> Option<&mut [u8]> {
        let len = self.len();
        let last = self.last_seg();
        // SAFETY: `last` is a segment of this owned chain; `&mut self` is unique access.
        // Field accesses through the raw pointer, no reference: `last` may be the head,
        // which `h_mut` borrows.
        unsafe {
            let used = usize::from((*last).data_off) + usize::from((*last).data_len);
            if n > usize::from((*last).buf_len) - used || (len + n) > u32::MAX as usize {
                return None;
            }
            (*last).data_len += n as u16;
            let buf = (*last).buf_addr;
            self.h_mut().pkt_len += n as u32;
            Some(std::slice::from_raw_parts_mut(buf.add(used), n))
        }
    }

    /// Appends the packet `tail` (all its segments) after this one's last segment. The
    /// tail's own metadata (flags, port, offload lengths) is dropped; this head's is kept.
    /// On error (too many segments or bytes), `tail` is handed back unchanged.
    pub fn chain(&mut self, tail: Mbuf) -> Result<(), (ChainError, Mbuf)> {
        let segs = u32::from(self.nb_segs()) + u32::from(tail.nb_segs());
        if segs > u32::from(MAX_SEGS) {
            return Err((ChainError::TooManySegments, tail));
        }
        let len = self.len() as u64 + tail.len() as u64;
        if len > u64::from(u32::MAX) {
            return Err((ChainError::TooLong, tail));
        }
        let last = self.last_seg();
        let t = tail.into_raw().0;
        // SAFETY: `last` belongs to this owned chain and `t` is an owned head we now link
        // in (ownership moves to this chain); its nb_segs goes back to the segment value.
        unsafe {
            (*last).next = t;
            (*t).set_nb_segs(1);
        }
        let h = self.h_mut();
        h.set_nb_segs(segs as u16);
        h.pkt_len = len as u32;
        Ok(())
    }

    /// Appends `bytes` at the end of the packet: into the last segment's tailroom, then
    /// into new segments from `pool`. All or nothing: on error the packet is unchanged.
    pub fn extend_from_slice(
        &mut self,
        mut bytes: &[u8],
        pool: &Mempool,
    ) -> Result<(), ChainError> {
        if self.len() as u64 + bytes.len() as u64 > u64::from(u32::MAX) {
            return Err(ChainError::TooLong);
        }
        // Build the new segments first, so a failure leaves the packet as it was.
        let last = self.last_seg();
        // SAFETY: `last` belongs to this owned chain.
        let room = unsafe {
            usize::from((*last).buf_len)
                - usize::from((*last).data_off)
                - usize::from((*last).data_len)
        };
        let here = room.min(bytes.len());
        let rest = &bytes[here..];
        let extra = if rest.is_empty() {
            None
        } else {
            let m = Mbuf::from_slice(rest, pool)?;
            if u32::from(self.nb_segs()) + u32::from(m.nb_segs()) > u32::from(MAX_SEGS) {
                return Err(ChainError::TooManySegments);
            }
            Some(m)
        };
        if here > 0 {
            // Cannot fail: `here` fits the tailroom and the length was checked.
            if let Some(dst) = self.append_last(here) {
                dst.copy_from_slice(&bytes[..here]);
            }
            bytes = rest;
        }
        debug_assert_eq!(bytes.len(), extra.as_ref().map_or(0, |m| m.len()));
        if let Some(m) = extra {
            // Cannot fail: segment count and length were checked above.
            let _ = self.chain(m);
        }
        Ok(())
    }

    /// A new packet holding a copy of `bytes`, in as many buffers from `pool` as it needs
    /// (one empty buffer for empty `bytes`).
    pub fn from_slice(bytes: &[u8], pool: &Mempool) -> Result<Mbuf, ChainError> {
        if bytes.len() > u32::MAX as usize {
            return Err(ChainError::TooLong);
        }
        let mut head = pool.alloc().ok_or(ChainError::NoBuffers)?;
        let room = head.tailroom();
        if room == 0 {
            return Err(ChainError::NoBuffers);
        }
        let nsegs = bytes.len().div_ceil(room).max(1);
        if nsegs > usize::from(MAX_SEGS) {
            return Err(ChainError::TooManySegments);
        }
        let mut chunks = bytes.chunks(room);
        if let Some(c) = chunks.next() {
            head.set_len(c.len());
            head.data_mut().copy_from_slice(c);
        }
        let mut last = head.head_ptr();
        for c in chunks {
            // Dropping `head` on failure frees what was built so far.
            let mut seg = pool.alloc().ok_or(ChainError::NoBuffers)?;
            seg.set_len(c.len());
            seg.data_mut().copy_from_slice(c);
            let s = seg.into_raw().0;
            // SAFETY: `last` is the last segment of the chain `head` owns; `s` is owned
            // and becomes part of it.
            unsafe { (*last).next = s };
            last = s;
            // Kept current so that dropping `head` after a failure frees every segment.
            let h = head.h_mut();
            h.set_nb_segs(h.nb_segs + 1);
            h.pkt_len += c.len() as u32;
        }
        debug_assert_eq!(usize::from(head.nb_segs()), nsegs);
        Ok(head)
    }

    /// Keeps the first `len` bytes of the packet, returning the segments after them to
    /// their pools; a `len` at or past the end changes nothing.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        let mut left = len;
        let mut h = self.head_ptr();
        let mut segs = 1u16;
        // SAFETY: walking an owned chain; `&mut self` is unique access.
        unsafe {
            // Stop at the segment holding byte `len - 1` (or the head when len is 0).
            while left > usize::from((*h).data_len) {
                left -= usize::from((*h).data_len);
                h = (*h).next;
                segs += 1;
            }
            (*h).data_len = left as u16;
            let tail = std::mem::replace(&mut (*h).next, ptr::null_mut());
            free_segments(tail);
        }
        let hd = self.h_mut();
        hd.set_nb_segs(segs);
        hd.pkt_len = len as u32;
    }

    /// Returns every segment after the first to its pool (the packet keeps the first
    /// segment's bytes).
    pub(crate) fn free_tail(&mut self) {
        if self.is_contiguous() {
            return;
        }
        let first = self.data_len();
        self.truncate(first);
    }

    /// Moves the whole packet into its first buffer (copying the other segments' bytes
    /// after the first's and freeing them); `NoRoom` (nothing changed) if it does not fit.
    pub fn linearize(&mut self) -> Result<(), ChainError> {
        if self.is_contiguous() {
            return Ok(());
        }
        let total = self.len();
        let first = self.data_len();
        if total - first > self.tailroom() {
            return Err(ChainError::NoRoom);
        }
        let h = self.head_ptr();
        // SAFETY: the head's buffer has room for `total` bytes from its data offset; the
        // other segments are distinct buffers of this owned chain.
        unsafe {
            let mut dst = (*h).buf_addr.add(usize::from((*h).data_off) + first);
            let mut seg = (*h).next;
            while !seg.is_null() {
                let src = seg_slice(seg);
                ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len());
                dst = dst.add(src.len());
                seg = (*seg).next;
            }
            free_segments((*h).next);
            (*h).next = ptr::null_mut();
            (*h).set_nb_segs(1);
            (*h).data_len = total as u16;
        }
        Ok(())
    }

    /// Copies `out.len()` packet bytes starting at `off` into `out`, across segments;
    /// `OutOfRange` (nothing copied) if they run past the end.
    pub fn read(&self, off: usize, out: &mut [u8]) -> Result<(), ChainError> {
        copy_span(self.segments(), off, out.len(), self.len(), |chunk, at| {
            out[at..at + chunk.len()].copy_from_slice(chunk)
        })
    }

    /// `len` bytes at `off`: borrowed from the packet when one segment holds them all,
    /// otherwise copied into `scratch` (which must be at least `len` long) and borrowed
    /// from there. DPDK's `rte_pktmbuf_read`: header parsing that costs nothing on
    /// contiguous packets.
    pub fn read_span<'a>(
        &'a self,
        off: usize,
        len: usize,
        scratch: &'a mut [u8],
    ) -> Result<&'a [u8], ChainError> {
        let first = self.data();
        if let Some(end) = off.checked_add(len) {
            if end <= first.len() {
                return Ok(&first[off..end]);
            }
        }
        let dst = scratch.get_mut(..len).ok_or(ChainError::OutOfRange)?;
        self.read(off, dst)?;
        Ok(dst)
    }

    /// Overwrites packet bytes from `off` with `bytes`, across segments; `OutOfRange`
    /// (nothing written) if they run past the end.
    pub fn write(&mut self, off: usize, bytes: &[u8]) -> Result<(), ChainError> {
        let len = self.len();
        if off.checked_add(bytes.len()).is_none_or(|e| e > len) {
            return Err(ChainError::OutOfRange);
        }
        let mut skip = off;
        let mut at = 0usize;
        for seg in self.segments_mut() {
            if at == bytes.len() {
                break;
            }
            if skip >= seg.len() {
                skip -= seg.len();
                continue;
            }
            let n = (seg.len() - skip).min(bytes.len() - at);
            seg[skip..skip + n].copy_from_slice(&bytes[at..at + n]);
            at += n;
            skip = 0;
        }
        Ok(())
    }

    /// Calls `f(piece, at)` for the pieces of segments covering packet bytes
    /// `[off, off + len)`, in order, `at` being the piece's position from `off`: how a PMD
    /// copies a packet into device or peer memory without caring where segments end.
    /// `OutOfRange` (nothing called) if the span runs past the end.
    #[inline]
    pub fn for_each_chunk<'a>(
        &'a self,
        off: usize,
        len: usize,
        f: impl FnMut(&'a [u8], usize),
    ) -> Result<(), ChainError> {
        copy_span(self.segments(), off, len, self.len(), f)
    }

    /// Bytes free after the last segment's data.
    pub fn last_tailroom(&self) -> usize {
        let l = self.last_seg();
        // SAFETY: `l` is a segment of this owned chain.
        unsafe {
            usize::from((*l).buf_len) - usize::from((*l).data_off) - usize::from((*l).data_len)
        }
    }

    /// The whole packet as one vector (for tests, tools and slow paths).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        for s in self.segments() {
            v.extend_from_slice(s);
        }
        v
    }
}

/// Walks `segs` and hands `f` the pieces covering `[off, off + len)` with their position
/// in the output; checks the span against `pkt_len` first.
fn copy_span<'a>(
    segs: Segments<'a>,
    off: usize,
    len: usize,
    pkt_len: usize,
    mut f: impl FnMut(&'a [u8], usize),
) -> Result<(), ChainError> {
    if off.checked_add(len).is_none_or(|e| e > pkt_len) {
        return Err(ChainError::OutOfRange);
    }
    let mut skip = off;
    let mut at = 0usize;
    for seg in segs {
        if at == len {
            break;
        }
        if skip >= seg.len() {
            skip -= seg.len();
            continue;
        }
        let n = (seg.len() - skip).min(len - at);
        f(&seg[skip..skip + n], at);
        at += n;
        skip = 0;
    }
    Ok(())
}

/// Returns the segments from `seg` on (an unlinked tail of an owned chain) to their pools.
///
/// # Safety
/// `seg` is null or the first of segments owned by the caller and referenced from nowhere
/// else.
unsafe fn free_segments(mut seg: *mut MbufHdr) {
    while !seg.is_null() {
        // SAFETY: per the contract, each segment is owned and valid.
        unsafe {
            let next = (*seg).next;
            (*seg).next = ptr::null_mut();
            (*seg).set_nb_segs(1);
            (*(*seg).pool_ptr()).put_bulk(std::slice::from_ref(&RawMbuf(seg)));
            seg = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::{PktBatch, HEADROOM};
    use crate::mempool::MempoolConfig;

    /// A pool of small buffers (64 data bytes), so chains form quickly.
    fn small_pool(name: &str, n: u32) -> Mempool {
        Mempool::create_with(
            name,
            &MempoolConfig {
                size: n,
                cache_size: 0,
                buf_size: HEADROOM + 64,
            },
        )
        .unwrap()
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn from_slice_spans_buffers_and_reads_back() {
        let p = small_pool("ch-from", 64);
        let data = pattern(200);
        let m = Mbuf::from_slice(&data, &p).unwrap();
        assert_eq!(m.len(), 200);
        assert_eq!(m.nb_segs(), 4);
        assert_eq!(m.data_len(), 64);
        assert!(!m.is_contiguous());
        assert_eq!(
            m.segments().map(|s| s.len()).collect::<Vec<_>>(),
            [64, 64, 64, 8]
        );
        assert_eq!(m.to_vec(), data);
        assert_eq!(p.stats().in_use, 4);
        drop(m);
        assert_eq!(p.stats().in_use, 0, "every segment returns on drop");
        // Empty input: one empty buffer.
        let e = Mbuf::from_slice(&[], &p).unwrap();
        assert_eq!((e.len(), e.nb_segs()), (0, 1));
    }

    #[test]
    fn read_and_write_across_boundaries() {
        let p = small_pool("ch-rw", 64);
        let data = pattern(150);
        let mut m = Mbuf::from_slice(&data, &p).unwrap();
        let mut out = [0u8; 20];
        m.read(55, &mut out).unwrap();
        assert_eq!(out, data[55..75]);
        assert_eq!(m.read(140, &mut out), Err(ChainError::OutOfRange));
        assert_eq!(m.read(usize::MAX, &mut out), Err(ChainError::OutOfRange));
        // A span inside the first segment is borrowed; one across is copied.
        let mut scratch = [0u8; 32];
        let borrowed = m.data()[2..].as_ptr();
        assert_eq!(m.read_span(2, 10, &mut scratch).unwrap().as_ptr(), borrowed);
        assert_eq!(m.read_span(60, 10, &mut scratch).unwrap(), &data[60..70]);
        assert_eq!(
            m.read_span(60, 40, &mut scratch),
            Err(ChainError::OutOfRange),
            "scratch too small"
        );
        m.write(60, &[0xee; 70]).unwrap();
        let mut want = data.clone();
        want[60..130].fill(0xee);
        assert_eq!(m.to_vec(), want);
        assert_eq!(m.write(149, &[1, 2]), Err(ChainError::OutOfRange));
        assert_eq!(m.to_vec(), want, "a failed write changes nothing");
    }

    #[test]
    fn chain_two_packets_and_keep_head_metadata() {
        let p = small_pool("ch-chain", 64);
        let mut a = Mbuf::from_slice(&pattern(100), &p).unwrap();
        a.set_port(3);
        a.set_ol_flags(crate::mbuf::RX_VLAN);
        let mut b = Mbuf::from_slice(&[9u8; 70], &p).unwrap();
        b.set_port(7);
        a.chain(b).unwrap();
        assert_eq!((a.len(), a.nb_segs(), a.port()), (170, 4, 3));
        assert_eq!(a.ol_flags(), crate::mbuf::RX_VLAN);
        let mut want = pattern(100);
        want.extend([9u8; 70]);
        assert_eq!(a.to_vec(), want);
        drop(a);
        assert_eq!(p.stats().in_use, 0);
    }

    #[test]
    fn append_prepend_adj_trim_on_chains() {
        let p = small_pool("ch-edit", 64);
        let mut m = Mbuf::from_slice(&pattern(100), &p).unwrap();
        // append grows the last segment (36 bytes in it, 28 free).
        m.append(20).unwrap().fill(0xaa);
        assert_eq!((m.len(), m.nb_segs()), (120, 2));
        assert!(m.append(9).is_none(), "the last segment has 8 bytes left");
        // prepend uses the head's headroom.
        m.prepend(4).unwrap().copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!((m.len(), m.data_len()), (124, 68));
        assert_eq!(&m.to_vec()[..6], &[1, 2, 3, 4, 3, 10]);
        // adj works within the first segment only.
        assert!(m.adj(4));
        assert!(!m.adj(65));
        assert_eq!(m.len(), 120);
        // trim across the boundary frees the emptied segment.
        assert!(m.trim(60));
        assert_eq!((m.len(), m.nb_segs(), m.data_len()), (60, 1, 60));
        assert_eq!(m.to_vec(), pattern(60));
        assert_eq!(p.stats().in_use, 1);
        assert!(!m.trim(61));
        // truncate to zero keeps an empty head.
        let mut n = Mbuf::from_slice(&pattern(130), &p).unwrap();
        n.truncate(0);
        assert_eq!((n.len(), n.nb_segs(), n.data_len()), (0, 1, 0));
        // truncate to a segment boundary drops exactly the later segments.
        let mut q = Mbuf::from_slice(&pattern(130), &p).unwrap();
        q.truncate(128);
        assert_eq!((q.len(), q.nb_segs()), (128, 2));
        assert_eq!(q.to_vec(), pattern(128));
    }

    #[test]
    fn extend_from_slice_is_all_or_nothing() {
        let p = small_pool("ch-ext", 4);
        let mut m = p.alloc().unwrap();
        m.copy_from(&pattern(10));
        m.extend_from_slice(&pattern(100), &p).unwrap();
        let mut want = pattern(10);
        want.extend(pattern(100));
        assert_eq!((m.len(), m.nb_segs()), (110, 2));
        assert_eq!(m.to_vec(), want);
        // Two buffers left: 200 more bytes need 3 (after 18 in the tail).
        assert_eq!(
            m.extend_from_slice(&pattern(200), &p),
            Err(ChainError::NoBuffers)
        );
        assert_eq!(m.to_vec(), want, "unchanged after a failure");
        assert_eq!(p.stats().in_use, 2, "the partial chain went back");
    }

    #[test]
    fn linearize_needs_room_in_the_first_buffer() {
        let big = Mempool::create("ch-lin-big", 8, 0).unwrap();
        let small = small_pool("ch-lin-small", 8);
        // Head from the big pool, tail segments from the small one.
        let mut m = Mbuf::from_slice(&pattern(40), &big).unwrap();
        m.chain(Mbuf::from_slice(&pattern(150), &small).unwrap())
            .unwrap();
        assert_eq!(m.nb_segs(), 4);
        m.linearize().unwrap();
        let mut want = pattern(40);
        want.extend(pattern(150));
        assert_eq!((m.nb_segs(), m.len(), m.data_len()), (1, 190, 190));
        assert_eq!(m.data(), &want[..]);
        assert_eq!(small.stats().in_use, 0);
        let mut s = Mbuf::from_slice(&pattern(100), &small).unwrap();
        assert_eq!(s.linearize(), Err(ChainError::NoRoom));
        assert_eq!(s.to_vec(), pattern(100));
    }

    #[test]
    fn drop_of_a_chain_from_several_pools_returns_each_segment_home() {
        let a = small_pool("ch-pa", 16);
        let b = small_pool("ch-pb", 16);
        let c = Mempool::create("ch-pc", 16, 0).unwrap();
        let mut batch = PktBatch::new();
        for i in 0..5 {
            let mut m = Mbuf::from_slice(&pattern(70 + i), &a).unwrap();
            m.chain(Mbuf::from_slice(&pattern(130), &b).unwrap())
                .unwrap();
            m.chain(Mbuf::from_slice(&pattern(10), &c).unwrap())
                .unwrap();
            batch.push(m).unwrap();
            // A single-segment packet between chains exercises the bulk path's switch.
            batch.push(c.alloc().unwrap()).unwrap();
        }
        assert_eq!(a.stats().in_use, 10);
        assert_eq!(b.stats().in_use, 15);
        assert_eq!(c.stats().in_use, 10);
        batch.clear();
        assert_eq!(
            (a.stats().in_use, b.stats().in_use, c.stats().in_use),
            (0, 0, 0)
        );
        // Reused buffers come back as single, unlinked segments.
        let all: Vec<Mbuf> = (0..16).map(|_| b.alloc().unwrap()).collect();
        for m in &all {
            assert_eq!(m.nb_segs(), 1);
            assert_eq!(m.segments().count(), 1);
        }
    }

    #[test]
    fn a_chain_moves_between_threads_as_one_value() {
        let p = small_pool("ch-thread", 32);
        let m = Mbuf::from_slice(&pattern(300), &p).unwrap();
        let back = std::thread::spawn(move || {
            assert_eq!(m.to_vec(), pattern(300));
            m
        })
        .join()
        .unwrap();
        assert_eq!(back.nb_segs(), 5);
        drop(back);
        assert_eq!(p.stats().in_use, 0);
    }

    #[test]
    fn shared_chain_frees_on_last_drop() {
        let p = small_pool("ch-shared", 16);
        let s = Mbuf::from_slice(&pattern(150), &p).unwrap().into_shared();
        let s2 = s.clone();
        assert_eq!((s2.len(), s2.nb_segs()), (150, 3));
        assert_eq!(
            s2.segments().flatten().copied().collect::<Vec<_>>(),
            pattern(150)
        );
        drop(s);
        assert_eq!(p.stats().in_use, 3);
        drop(s2);
        assert_eq!(p.stats().in_use, 0);
    }

    #[test]
    fn segment_iovas_follow_the_chain() {
        let p = small_pool("ch-iova", 16);
        let m = Mbuf::from_slice(&pattern(150), &p).unwrap();
        let v: Vec<(u64, usize)> = m.segment_iovas().collect();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0], (m.data_iova(), 64));
        assert_eq!(v.iter().map(|x| x.1).sum::<usize>(), 150);
        // Each segment's IOVA points at its data: the segment's own offset into its buffer.
        for ((iova, _), seg) in v.iter().zip(m.segments()) {
            let seg_va = seg.as_ptr() as u64;
            let base = p.segment().as_ptr() as u64;
            assert_eq!(*iova, p.segment().iova_at((seg_va - base) as usize));
        }
    }

    #[test]
    fn segments_mut_edits_every_segment() {
        let p = small_pool("ch-mut", 16);
        let mut m = Mbuf::from_slice(&[1u8; 140], &p).unwrap();
        for s in m.segments_mut() {
            s.fill(5);
        }
        assert_eq!(m.to_vec(), vec![5u8; 140]);
        // copy_from on a chain frees the tail.
        assert!(m.copy_from(&[7u8; 30]));
        assert_eq!((m.len(), m.nb_segs()), (30, 1));
        assert_eq!(p.stats().in_use, 1);
    }
}
