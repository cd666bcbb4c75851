//! Pools of packet buffers: fixed-size elements carved from one memory segment (or, after
//! [`keep_data_apart`], headers from one and data rooms from another), a shared
//! lock-free store (an MP/MC ring) and a cache per lcore for bulk get/put without atomics.
//!
//! Lifetime: buffers point back at their pool, so the pool's memory must outlive them. The
//! pool counts buffers handed out (per lcore, with plain stores) and, when its last handle
//! is dropped, releases its memory only if every buffer has come back; otherwise it stays
//! alive (logged), so late frees remain sound.
//!
//! The atomics come from `crate::sync`, so the `loom_*` tests model-check the real cache
//! refill and flush against the shared ring and the in-use count.

use crate::error::{Error, MempoolError, Result};
use crate::lcore;
use crate::mbuf::{Mbuf, MbufHdr, PktBatch, RawMbuf, DEFAULT_BUF_SIZE, HEADROOM};
use crate::memory::Segment;
use crate::ring::RingCore;
use crate::sync::{AtomicI64, AtomicU64, Ordering};
use crossbeam_utils::CachePadded;
use std::cell::UnsafeCell;
use std::ptr::NonNull;
use std::sync::{Arc, Weak};

/// The largest per-lcore cache size.
pub const MAX_CACHE_SIZE: u32 = 512;
/// Slots in a cache: room for a full cache plus one maximal bulk put.
const CACHE_SLOTS: usize = 2 * MAX_CACHE_SIZE as usize;
/// Caches of a pool with caching: one per possible lcore id. Under loom four (lcore ids
/// 0..4), so the models' state space holds only the caches they use.
#[cfg(not(loom))]
const CACHES: usize = lcore::MAX_LCORE;
#[cfg(loom)]
const CACHES: usize = 4;
/// Size of the buffer header in front of the data.
const HDR_SIZE: usize = std::mem::size_of::<MbufHdr>();

/// Per-lcore cache. Only the thread holding lcore id `i` touches `caches[i]`'s slots;
/// the atomics are written with plain load/store by that thread and read by others.
#[repr(C)]
struct LcoreCache {
    /// Low 32 bits: buffers in `objs`. High 32 bits: buffers handed out through this
    /// cache minus buffers returned through it (wrapping; read as `i32`). One word, so a
    /// get or put updates both with one load and one store.
    state: AtomicU64,
    alloc_fail: AtomicU64,
    objs: UnsafeCell<[RawMbuf; CACHE_SLOTS]>,
}

impl LcoreCache {
    #[inline(always)]
    fn len_of(state: u64) -> usize {
        state as u32 as usize
    }

    /// State after taking `n` buffers out of the cache and handing them out.
    #[inline(always)]
    fn took(state: u64, n: usize) -> u64 {
        state.wrapping_add((n as u64) << 32).wrapping_sub(n as u64)
    }

    /// State after `n` buffers came back into the cache.
    #[inline(always)]
    fn returned(state: u64, n: usize) -> u64 {
        state.wrapping_sub((n as u64) << 32).wrapping_add(n as u64)
    }

    /// State after moving `k` buffers between the cache and the shared ring (positive:
    /// ring to cache), which changes the length but not the handed-out count.
    #[inline(always)]
    fn moved(state: u64, k: isize) -> u64 {
        state.wrapping_add(k as i64 as u64)
    }

    fn outstanding(&self) -> i64 {
        (self.state.load(Ordering::Acquire) >> 32) as u32 as i32 as i64
    }

    fn len(&self) -> usize {
        Self::len_of(self.state.load(Ordering::Relaxed))
    }

    /// `n` empty caches, or none for `n == 0`.
    #[cfg(not(loom))]
    fn new_slice(n: usize) -> Box<[CachePadded<LcoreCache>]> {
        // SAFETY: all-zero bytes are a valid LcoreCache (zero counters, null pointers).
        unsafe { Box::new_zeroed_slice(n).assume_init() }
    }

    /// `n` empty caches; built one by one, as loom's atomics are objects of the model,
    /// which zeroed memory is not.
    #[cfg(loom)]
    fn new_slice(n: usize) -> Box<[CachePadded<LcoreCache>]> {
        (0..n)
            .map(|_| {
                CachePadded::new(LcoreCache {
                    state: AtomicU64::new(0),
                    alloc_fail: AtomicU64::new(0),
                    objs: UnsafeCell::new([RawMbuf::NULL; CACHE_SLOTS]),
                })
            })
            .collect()
    }
}

/// The shared part of a pool; buffers hold a raw pointer to it.
pub(crate) struct PoolInner {
    ring: RingCore<RawMbuf>,
    caches: Box<[CachePadded<LcoreCache>]>,
    cache_size: u32,
    flush_thresh: u32,
    uncached_out: CachePadded<AtomicI64>,
    uncached_fail: AtomicU64,
    name: String,
    size: u32,
    buf_len: u16,
    seg: Segment,
    /// The buffers' data rooms, when they live apart from the headers in `seg`
    /// ([`keep_data_apart`]).
    data: Option<Segment>,
}

// SAFETY: the ring is thread-safe; cache slots are touched only by the thread that holds the
// cache's lcore id (ids are unique per live thread, see `lcore`); everything else is
// immutable after creation or atomic.
unsafe impl Sync for PoolInner {}
// SAFETY: as above.
unsafe impl Send for PoolInner {}

impl PoolInner {
    #[inline(always)]
    fn cache(&self) -> Option<&LcoreCache> {
        // A pool without caching has an empty `caches`, so one bounds check covers both
        // "no cache" and "not an lcore thread".
        self.caches.get(lcore::current_raw() as usize).map(|c| &**c)
    }

    /// Fills `out` completely, or nothing. The common case (an lcore whose cache holds
    /// enough) is a few loads, a short copy and two stores; everything else is out of line.
    #[inline(always)]
    pub(crate) fn get_bulk(&self, out: &mut [RawMbuf]) -> bool {
        if let Some(c) = self.cache() {
            let n = out.len();
            let st = c.state.load(Ordering::Relaxed);
            let len = LcoreCache::len_of(st);
            if n <= len {
                // SAFETY: this thread is the only one holding this lcore id, hence the only
                // one touching this cache's slots.
                let objs = unsafe { &*c.objs.get() };
                crate::copy::copy_run(out, &objs[len - n..len]);
                c.state.store(LcoreCache::took(st, n), Ordering::Relaxed);
                return true;
            }
        }
        self.get_bulk_slow(out)
    }

    #[cold]
    #[inline(never)]
    fn get_bulk_slow(&self, out: &mut [RawMbuf]) -> bool {
        let n = out.len();
        match self.cache() {
            Some(c) if n <= MAX_CACHE_SIZE as usize => {
                // SAFETY: sole user of this cache's slots, as in get_bulk.
                let objs = unsafe { &mut *c.objs.get() };
                let mut st = c.state.load(Ordering::Relaxed);
                let len = LcoreCache::len_of(st);
                if len < n {
                    let want = self.cache_size as usize + n - len;
                    let got = if self.ring.dequeue_mc_bulk(&mut objs[len..len + want]) {
                        want
                    } else if self.ring.dequeue_mc_bulk(&mut objs[len..n]) {
                        n - len
                    } else {
                        0
                    };
                    if got == 0 {
                        c.alloc_fail
                            .store(c.alloc_fail.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                        return false;
                    }
                    st = LcoreCache::moved(st, got as isize);
                }
                let len = LcoreCache::len_of(st);
                crate::copy::copy_run(out, &objs[len - n..len]);
                c.state.store(LcoreCache::took(st, n), Ordering::Relaxed);
                true
            }
            _ => {
                if !self.ring.dequeue_mc_bulk(out) {
                    self.uncached_fail.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                self.uncached_out.fetch_add(n as i64, Ordering::Relaxed);
                true
            }
        }
    }

    /// Takes back buffers. The caller gives up every pointer in `bufs`. The common case
    /// (the lcore's cache stays under its flush threshold) is inline; the rest is not.
    #[inline(always)]
    pub(crate) fn put_bulk(&self, bufs: &[RawMbuf]) {
        if let Some(c) = self.cache() {
            let n = bufs.len();
            let st = c.state.load(Ordering::Relaxed);
            let len = LcoreCache::len_of(st);
            if len + n < self.flush_thresh as usize {
                // SAFETY: sole user of this cache's slots, as in get_bulk.
                let objs = unsafe { &mut *c.objs.get() };
                crate::copy::copy_run(&mut objs[len..len + n], bufs);
                // Release: the pool may be torn down once the count reads zero, so this
                // store is the last thing this path does with the pool.
                c.state
                    .store(LcoreCache::returned(st, n), Ordering::Release);
                return;
            }
        }
        self.put_bulk_slow(bufs)
    }

    #[cold]
    #[inline(never)]
    fn put_bulk_slow(&self, bufs: &[RawMbuf]) {
        let n = bufs.len();
        match self.cache() {
            Some(c) if n <= MAX_CACHE_SIZE as usize => {
                // SAFETY: sole user of this cache's slots, as in get_bulk.
                let objs = unsafe { &mut *c.objs.get() };
                let mut st = c.state.load(Ordering::Relaxed);
                let len = LcoreCache::len_of(st);
                if len + n > CACHE_SLOTS {
                    self.ring_put(&objs[..len]);
                    st = LcoreCache::moved(st, -(len as isize));
                }
                let len = LcoreCache::len_of(st);
                crate::copy::copy_run(&mut objs[len..len + n], bufs);
                st = LcoreCache::returned(st, n);
                let len = LcoreCache::len_of(st);
                if len >= self.flush_thresh as usize {
                    let keep = self.cache_size as usize;
                    self.ring_put(&objs[keep..len]);
                    st = LcoreCache::moved(st, -((len - keep) as isize));
                }
                // Release: as in put_bulk.
                c.state.store(st, Ordering::Release);
            }
            _ => {
                self.ring_put(bufs);
                self.uncached_out.fetch_sub(n as i64, Ordering::Release);
            }
        }
    }

    #[inline]
    fn ring_put(&self, bufs: &[RawMbuf]) {
        // The ring holds every element of the pool, so this only fails if a buffer was
        // returned twice, which ownership rules out.
        let ok = self.ring.enqueue_mp_bulk(bufs);
        debug_assert!(
            ok,
            "mempool {}: ring overflow (buffer freed twice?)",
            self.name
        );
    }

    /// Buffers handed out and not yet returned (a snapshot that never under-counts while
    /// no one allocates).
    fn outstanding(&self) -> i64 {
        let cached: i64 = self.caches.iter().map(|c| c.outstanding()).sum();
        cached + self.uncached_out.load(Ordering::Acquire)
    }

    fn available(&self) -> usize {
        let cached: usize = self.caches.iter().map(|c| c.len()).sum();
        self.ring.len() + cached
    }
}

/// Owner of the pool allocation: frees it when the last [`Mempool`] handle goes, if safe.
struct PoolOwner {
    inner: NonNull<PoolInner>,
}

/// The pools alive, for [`Mempool::list`]: weak, so listing keeps no pool alive.
static LIVE: std::sync::Mutex<Vec<Weak<PoolOwner>>> = std::sync::Mutex::new(Vec::new());

/// Whether pools made from now on keep their data rooms apart ([`keep_data_apart`]).
static DATA_APART: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, pools keep their buffers' data rooms (headroom and data) in a segment of
/// their own, apart from the buffer headers: a memfd sealed against resizing
/// ([`Segment::alloc_shareable_elements`]). A driver that lets a peer process read and
/// write packet bytes in place (memif's `zero-copy=yes`) shares that segment
/// ([`Mempool::data_segment`]) and nothing else: the headers, with the pointers the
/// process relies on, never enter memory the peer maps. Pools made earlier keep their
/// layout. The per-packet work is the same either way (a header always reaches its data
/// through its buffer address).
pub fn keep_data_apart() {
    DATA_APART.store(true, std::sync::atomic::Ordering::Relaxed);
}

// SAFETY: PoolInner is Send + Sync.
unsafe impl Send for PoolOwner {}
// SAFETY: as above.
unsafe impl Sync for PoolOwner {}

impl Drop for PoolOwner {
    fn drop(&mut self) {
        // SAFETY: the allocation is alive until we free it below.
        let inner = unsafe { self.inner.as_ref() };
        let out = inner.outstanding();
        if out == 0 {
            // SAFETY: no handle and no buffer refers to the pool any more (no handle means
            // no new allocations; a zero count means every buffer came back and its last
            // touch of the pool happened before the release store we observed).
            drop(unsafe { Box::from_raw(self.inner.as_ptr()) });
        } else {
            tracing::warn!(
                pool = inner.name,
                outstanding = out,
                "mempool dropped while buffers are still in use; keeping its memory"
            );
        }
    }
}

/// Usage counters of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MempoolStats {
    /// Buffers in the pool (ring plus caches).
    pub available: usize,
    /// Buffers handed out and not returned.
    pub in_use: i64,
    /// Allocation requests that failed because the pool was empty.
    pub alloc_failures: u64,
}

/// A pool of packet buffers. Cheap to clone (a shared handle).
#[derive(Clone)]
pub struct Mempool {
    /// The pool itself, kept here so the hot path needs no hop through the `Arc`.
    inner: NonNull<PoolInner>,
    /// Keeps the pool alive; dropped with the last handle.
    _owner: Arc<PoolOwner>,
}

// SAFETY: `inner` points at the Send + Sync PoolInner that `owner` keeps alive.
unsafe impl Send for Mempool {}
// SAFETY: as above.
unsafe impl Sync for Mempool {}

impl std::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.inner().name)
            .field("size", &self.inner().size)
            .finish()
    }
}

/// Parameters of [`Mempool::create_with`].
#[derive(Debug, Clone)]
pub struct MempoolConfig {
    /// Number of buffers.
    pub size: u32,
    /// Per-lcore cache size (0 disables caching; at most [`MAX_CACHE_SIZE`]).
    pub cache_size: u32,
    /// Buffer size including headroom (DPDK's "data room size").
    pub buf_size: u16,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            size: 8191,
            cache_size: 256,
            buf_size: DEFAULT_BUF_SIZE,
        }
    }
}

/// Checks a pool's parameters before any memory is taken.
fn check_config(cfg: &MempoolConfig) -> std::result::Result<(), MempoolError> {
    if cfg.size == 0 {
        return Err(MempoolError::NoBuffers);
    }
    if cfg.size > i32::MAX as u32 {
        return Err(MempoolError::TooManyBuffers {
            size: cfg.size,
            max: i32::MAX as u32,
        });
    }
    if cfg.cache_size > MAX_CACHE_SIZE {
        return Err(MempoolError::CacheTooLarge {
            cache_size: cfg.cache_size,
            max: MAX_CACHE_SIZE,
        });
    }
    if cfg.cache_size > cfg.size {
        return Err(MempoolError::CacheExceedsPool {
            cache_size: cfg.cache_size,
            size: cfg.size,
        });
    }
    if cfg.buf_size < HEADROOM {
        return Err(MempoolError::BufferBelowHeadroom {
            buf_size: cfg.buf_size,
            headroom: HEADROOM,
        });
    }
    Ok(())
}

impl Mempool {
    /// Creates a pool of `size` buffers of the default size, with a per-lcore cache of
    /// `cache_size`, in memory from the process-wide configuration (hugepages after EAL init).
    pub fn create(name: &str, size: u32, cache_size: u32) -> Result<Mempool> {
        Self::create_with(
            name,
            &MempoolConfig {
                size,
                cache_size,
                ..MempoolConfig::default()
            },
        )
    }

    /// The pools alive in this process, oldest first (telemetry's `/mempool/list`).
    pub fn list() -> Vec<Mempool> {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|w| w.strong_count() > 0);
        live.iter()
            .filter_map(Weak::upgrade)
            .map(|owner| Mempool {
                inner: owner.inner,
                _owner: owner,
            })
            .collect()
    }

    /// The pool `m` (its first segment) came from, for code that must make more buffers
    /// like it (software segmentation on transmit, where the queue has no pool of its
    /// own). Takes the list of pools' lock: look it up once and keep the handle, not per
    /// packet.
    pub fn of(m: &Mbuf) -> Option<Mempool> {
        Mempool::list().into_iter().find(|p| p.owns(m))
    }

    /// Whether `m` (its first segment) came from this pool.
    #[inline]
    pub fn owns(&self, m: &Mbuf) -> bool {
        std::ptr::eq(self.inner.as_ptr(), m.pool_inner())
    }

    /// Bytes one buffer takes in the pool's memory: its header, headroom and data room,
    /// cache-line aligned.
    pub fn element_size(&self) -> usize {
        let room = usize::from(self.inner().buf_len);
        if self.inner().data.is_some() {
            HDR_SIZE + room.next_multiple_of(64)
        } else {
            (HDR_SIZE + room).next_multiple_of(64)
        }
    }

    /// Creates a pool with explicit parameters.
    pub fn create_with(name: &str, cfg: &MempoolConfig) -> Result<Mempool> {
        let err = |reason: MempoolError| Error::mempool(name, reason);
        check_config(cfg).map_err(err)?;
        let apart = DATA_APART.load(std::sync::atomic::Ordering::Relaxed);
        let (hdr_elt, room) = if apart {
            (HDR_SIZE, (cfg.buf_size as usize).next_multiple_of(64))
        } else {
            ((HDR_SIZE + cfg.buf_size as usize).next_multiple_of(64), 0)
        };
        let (seg, layout) = Segment::alloc_elements(name, cfg.size as usize, hdr_elt)?;
        let (data, data_layout) = if apart {
            let (d, l) = Segment::alloc_shareable_elements(
                &format!("{name}-data"),
                cfg.size as usize,
                room,
            )?;
            (Some(d), Some(l))
        } else {
            (None, None)
        };
        let ring = RingCore::new(cfg.size as usize).ok_or_else(|| err(MempoolError::TooLarge))?;
        let caches = LcoreCache::new_slice(if cfg.cache_size == 0 { 0 } else { CACHES });
        // Leaked first, so the buffers' pool pointers and the handles below all derive from
        // this one raw pointer; taking them from the Box and leaking it afterwards would
        // invalidate them (the leak asserts unique access: undefined behaviour, which Miri
        // reports).
        let inner = NonNull::from(Box::leak(Box::new(PoolInner {
            ring,
            caches,
            cache_size: cfg.cache_size,
            flush_thresh: cfg.cache_size + cfg.cache_size / 2,
            uncached_out: CachePadded::new(AtomicI64::new(0)),
            uncached_fail: AtomicU64::new(0),
            name: name.to_string(),
            size: cfg.size,
            buf_len: cfg.buf_size,
            seg,
            data,
        })));
        let pool_ptr: *const PoolInner = inner.as_ptr();
        // SAFETY: just allocated; freed only by the PoolOwner made below.
        let pool = unsafe { inner.as_ref() };
        let mut batch = Vec::with_capacity(256);
        for i in 0..cfg.size as usize {
            let offset = layout.offset(i);
            // SAFETY: offset + elt <= the segment's length, which the layout sized for
            // `cfg.size` elements; the element is 64-byte aligned (segment is page
            // aligned, elt a multiple of 64, pages multiples of 64).
            let hdr = unsafe { pool.seg.as_ptr().add(offset) } as *mut MbufHdr;
            // The data room: right after the header, or element i of the data segment.
            let (room_seg, room_off) = match (&pool.data, data_layout) {
                (Some(d), Some(l)) => (d, l.offset(i)),
                _ => (&pool.seg, offset + HDR_SIZE),
            };
            // SAFETY: room_off + buf_size lies inside `room_seg`, sized by its layout.
            let buf_addr = unsafe { room_seg.as_ptr().add(room_off) };
            // SAFETY: writing a fresh header into our own memory.
            unsafe {
                hdr.write(MbufHdr {
                    buf_addr,
                    buf_iova: room_seg.iova_at(room_off),
                    data_off: HEADROOM,
                    refcnt: std::sync::atomic::AtomicU16::new(1),
                    nb_segs: 1,
                    port: crate::mbuf::NO_PORT,
                    ol_flags: 0,
                    packet_type: 0,
                    pkt_len: 0,
                    data_len: 0,
                    vlan_tci: 0,
                    rss_hash: 0,
                    buf_len: cfg.buf_size,
                    headroom: HEADROOM,
                    pool: pool_ptr,
                    next: std::ptr::null_mut(),
                    tx_offload: crate::mbuf::TxOffload::default(),
                    vlan_tci_outer: 0,
                })
            };
            batch.push(RawMbuf(hdr));
            if batch.len() == batch.capacity() {
                pool.ring_put(&batch);
                batch.clear();
            }
        }
        pool.ring_put(&batch);
        let owner = Arc::new(PoolOwner { inner });
        {
            let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
            live.retain(|w| w.strong_count() > 0);
            live.push(Arc::downgrade(&owner));
        }
        Ok(Mempool {
            inner,
            _owner: owner,
        })
    }

    #[inline(always)]
    pub(crate) fn inner(&self) -> &PoolInner {
        // SAFETY: the allocation lives at least as long as any owner handle, and this
        // handle holds one.
        unsafe { self.inner.as_ref() }
    }

    /// Pool name.
    pub fn name(&self) -> &str {
        &self.inner().name
    }

    /// Number of buffers in the pool.
    pub fn size(&self) -> u32 {
        self.inner().size
    }

    /// Buffer size including headroom.
    pub fn buf_size(&self) -> u16 {
        self.inner().buf_len
    }

    /// Per-lcore cache size.
    pub fn cache_size(&self) -> u32 {
        self.inner().cache_size
    }

    /// The memory segment the buffers live in (their headers only, when the data rooms
    /// live apart: [`Self::data_segment`]).
    pub fn segment(&self) -> &Segment {
        &self.inner().seg
    }

    /// The segment holding only the buffers' data rooms (headroom and data), if this
    /// pool was made after [`keep_data_apart`]; what a driver may share with a peer.
    pub fn data_segment(&self) -> Option<&Segment> {
        self.inner().data.as_ref()
    }

    /// Allocates one buffer (empty, default headroom), or `None` if the pool is empty.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        let mut raw = [RawMbuf::NULL];
        if !self.inner().get_bulk(&mut raw) {
            return None;
        }
        // SAFETY: fresh from the pool, so owned and unaliased.
        let mut m = unsafe { raw[0].into_mbuf() };
        // SAFETY: see into_mbuf; the header is ours to reset.
        unsafe { (*raw[0].0).reset() };
        m.set_len(0);
        Some(m)
    }

    /// Allocates `n` buffers at the end of `batch`, all or nothing, and returns them;
    /// `None` (batch unchanged, failure counted) if the pool or the batch lacks room.
    #[inline]
    pub fn alloc_bulk<'b>(&self, batch: &'b mut PktBatch, n: usize) -> Option<&'b mut [Mbuf]> {
        self.alloc_bulk_len(batch, n, 0)
    }

    /// [`Mempool::alloc_bulk`] with every buffer already `len` bytes long (what a
    /// receive path that fills whole buffers wants: one pass over the headers instead of
    /// a reset and a `set_len` each). `None` (nothing taken) also when `len` exceeds the
    /// data room.
    #[inline]
    pub fn alloc_bulk_len<'b>(
        &self,
        batch: &'b mut PktBatch,
        n: usize,
        len: u16,
    ) -> Option<&'b mut [Mbuf]> {
        if n > batch.spare() || u32::from(len) + u32::from(HEADROOM) > u32::from(self.buf_size()) {
            return None;
        }
        let start = batch.len();
        let slots = &mut batch.spare_raw()[..n];
        if !self.inner().get_bulk(slots) {
            return None;
        }
        for r in slots.iter() {
            // SAFETY: fresh buffers from the pool: valid headers we own; `len` fits the
            // data room after the default headroom (checked above).
            unsafe {
                let h = &mut *r.0;
                h.reset();
                h.data_len = len;
                h.pkt_len = u32::from(len);
            }
        }
        // SAFETY: the n slots now hold owned buffers.
        unsafe { batch.commit_raw(n) };
        Some(&mut batch.as_mut_slice()[start..])
    }

    /// Takes `out.len()` buffers as raw pointers, all or nothing, without touching them
    /// (no header reset): the object-level get, for drivers that keep buffers in their own
    /// shadow rings. Make them owned with [`RawMbuf::into_mbuf`].
    #[inline]
    pub fn get_raw_bulk(&self, out: &mut [RawMbuf]) -> bool {
        self.inner().get_bulk(out)
    }

    /// Returns raw buffers to this pool without touching them.
    ///
    /// # Safety
    /// Every entry must be a buffer of this pool that the caller owns (from
    /// [`Mempool::get_raw_bulk`] or [`crate::Mbuf::into_raw`]), with reference count 1,
    /// and nothing may use it afterwards.
    #[inline]
    pub unsafe fn put_raw_bulk(&self, bufs: &[RawMbuf]) {
        self.inner().put_bulk(bufs)
    }

    /// Counters of this pool.
    pub fn stats(&self) -> MempoolStats {
        let inner = self.inner();
        let fails: u64 = inner
            .caches
            .iter()
            .map(|c| c.alloc_fail.load(Ordering::Relaxed))
            .sum();
        MempoolStats {
            available: inner.available(),
            in_use: inner.outstanding(),
            alloc_failures: fails + inner.uncached_fail.load(Ordering::Relaxed),
        }
    }

    /// This pool's usage as the apps print it in their statistics:
    /// `mempool <name>: <in use> in use, <available> available of <size>` (buffers in
    /// per-lcore caches count as available).
    pub fn usage_line(&self) -> String {
        let s = self.stats();
        format!(
            "mempool {}: {} in use, {} available of {}",
            self.name(),
            s.in_use,
            s.available,
            self.size()
        )
    }

    /// For an app that stopped every queue and let go of its buffers: a warning naming
    /// the pool and how many buffers are still out, or `None` if all came back.
    pub fn leak_warning(&self) -> Option<String> {
        let out = self.stats().in_use;
        (out != 0).then(|| {
            format!(
                "mempool {}: {out} buffer(s) still in use after all queues stopped",
                self.name()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::SharedMbuf;

    fn pool(name: &str, size: u32, cache: u32) -> Mempool {
        Mempool::create(name, size, cache).unwrap()
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(Mempool::create("p0", 0, 0).is_err());
        assert!(Mempool::create("p1", 10, 600).is_err());
        assert!(Mempool::create("p2", 10, 20).is_err());
        let e = Mempool::create_with(
            "p3",
            &MempoolConfig {
                size: 4,
                cache_size: 0,
                buf_size: 10,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("headroom"), "{e}");
    }

    #[test]
    fn buffer_basics() {
        let p = pool("basics", 16, 0);
        let mut m = p.alloc().unwrap();
        assert_eq!(m.len(), 0);
        assert_eq!(m.headroom(), HEADROOM as usize);
        assert_eq!(m.tailroom(), (DEFAULT_BUF_SIZE - HEADROOM) as usize);
        m.append(4).unwrap().copy_from_slice(&[1, 2, 3, 4]);
        m.prepend(2).unwrap().copy_from_slice(&[9, 9]);
        assert_eq!(m.data(), &[9, 9, 1, 2, 3, 4]);
        assert!(m.adj(2));
        assert!(m.trim(1));
        assert_eq!(m.data(), &[1, 2, 3]);
        assert!(!m.adj(4));
        assert!(!m.set_len(100_000));
        assert!(m.append(10_000).is_none());
        assert!(m.prepend(1000).is_none());
        assert!(!m.set_data_span(2170, 10));
        assert!(m.set_data_span(0, 64));
        assert_eq!(m.data_iova(), m.buf_iova());
        assert!(m.copy_from(&[7; 60]));
        assert_eq!(m.data(), &[7; 60]);
        assert_eq!(p.stats().in_use, 1);
        drop(m);
        assert_eq!(p.stats().in_use, 0);
        assert_eq!(p.stats().available, 16);
    }

    #[test]
    fn exhaustion_is_an_error_and_counted() {
        let p = pool("exhaust", 40, 0);
        let mut b1 = PktBatch::new();
        assert!(p.alloc_bulk(&mut b1, 32).is_some());
        let mut b2 = PktBatch::new();
        assert!(p.alloc_bulk(&mut b2, 32).is_none(), "only 8 left");
        assert!(b2.is_empty());
        assert_eq!(p.stats().alloc_failures, 1);
        assert!(p.alloc_bulk(&mut b2, 8).is_some());
        assert!(p.alloc().is_none());
        assert_eq!(p.stats().alloc_failures, 2);
        drop(b1);
        drop(b2);
        assert_eq!(p.stats().available, 40);
    }

    #[test]
    fn cached_alloc_and_free_on_an_lcore() {
        let p = pool("cached", 2048, 256);
        let p2 = p.clone();
        std::thread::spawn(move || {
            let _g = lcore::register_current_thread(90).unwrap();
            let mut b = PktBatch::new();
            // Under Miri (slow) fewer rounds; still several refills and flushes.
            for _ in 0..if cfg!(miri) { 40 } else { 1000 } {
                let got = p2.alloc_bulk(&mut b, 32).unwrap();
                assert_eq!(got.len(), 32);
                for m in got.iter_mut() {
                    assert!(m.set_len(60));
                }
                b.clear();
            }
            assert_eq!(p2.stats().in_use, 0);
        })
        .join()
        .unwrap();
        assert_eq!(p.stats().available, 2048);
        assert_eq!(p.stats().in_use, 0);
    }

    #[test]
    fn no_buffer_lost_across_threads() {
        // 10^6 get/put cycles split over two lcore threads that also pass buffers to each
        // other (alloc on one lcore, free on the other). Under Miri, which checks every
        // access for races but runs slowly, 2 * 4000 cycles.
        const CYCLES: u64 = if cfg!(miri) { 4_000 } else { 500_000 };
        const IDLE_ROUNDS: u32 = if cfg!(miri) { 200 } else { 200_000 };
        let p = pool("two-threads", 1024, 64);
        let (tx, rx) = crate::ring::spsc::<RawMbuf>(256).unwrap();
        let (mut tx, mut rx) = (tx, rx);
        let pa = p.clone();
        let a = std::thread::spawn(move || {
            let _g = lcore::register_current_thread(91).unwrap();
            let mut b = PktBatch::new();
            let mut cycles = 0u64;
            while cycles < CYCLES {
                if pa.alloc_bulk(&mut b, 8).is_none() {
                    std::thread::yield_now();
                    continue;
                }
                cycles += 8;
                // Hand half to the other thread, free the rest here.
                let raw: Vec<RawMbuf> = b.raw()[..4].to_vec();
                let sent = tx.enqueue_burst(&raw);
                b.disown_front(sent);
                b.clear();
            }
        });
        let pb = p.clone();
        let b = std::thread::spawn(move || {
            let _g = lcore::register_current_thread(92).unwrap();
            let mut local = PktBatch::new();
            let mut cycles = 0u64;
            let mut idle = 0u32;
            loop {
                let n = rx.dequeue_burst(&mut local.spare_raw()[..16]);
                // SAFETY: the other thread gave up ownership of these buffers.
                unsafe { local.commit_raw(n) };
                local.clear();
                if let Some(_m) = pb.alloc() {
                    cycles += 1;
                }
                if n == 0 {
                    idle += 1;
                    if idle > IDLE_ROUNDS && cycles >= CYCLES {
                        break;
                    }
                    std::thread::yield_now();
                } else {
                    idle = 0;
                }
            }
        });
        a.join().unwrap();
        b.join().unwrap();
        let s = p.stats();
        assert_eq!(s.in_use, 0, "{s:?}");
        assert_eq!(s.available, 1024, "{s:?}");
    }

    #[test]
    fn buffers_in_lcore_caches_count_as_available() {
        let p = pool("usage", 1024, 64);
        let p2 = p.clone();
        let held = std::thread::spawn(move || {
            let _g = lcore::register_current_thread(94).unwrap();
            let mut b = PktBatch::new();
            // 40 out, then 30 back into this lcore's cache: 10 in use.
            p2.alloc_bulk(&mut b, 40).unwrap();
            b.truncate(10);
            let s = p2.stats();
            assert_eq!((s.in_use, s.available), (10, 1014), "{s:?}");
            b
        })
        .join()
        .unwrap();
        let s = p.stats();
        assert_eq!((s.in_use, s.available), (10, 1014), "{s:?}");
        assert_eq!(
            p.usage_line(),
            "mempool usage: 10 in use, 1014 available of 1024"
        );
        assert_eq!(
            p.leak_warning().as_deref(),
            Some("mempool usage: 10 buffer(s) still in use after all queues stopped")
        );
        // Freed by a thread without a cache (this one): counted back all the same.
        drop(held);
        let s = p.stats();
        assert_eq!((s.in_use, s.available), (0, 1024), "{s:?}");
        assert_eq!(
            p.usage_line(),
            "mempool usage: 0 in use, 1024 available of 1024"
        );
        assert_eq!(p.leak_warning(), None);
    }

    #[test]
    fn raw_get_and_put() {
        let p = pool("raw", 64, 32);
        std::thread::spawn(move || {
            let _g = lcore::register_current_thread(93).unwrap();
            let mut raw = [RawMbuf::NULL; 40];
            assert!(p.get_raw_bulk(&mut raw));
            assert!(raw.iter().all(|r| !r.is_null()));
            assert!(!p.get_raw_bulk(&mut [RawMbuf::NULL; 40]), "only 24 left");
            assert_eq!(p.stats().in_use, 40);
            // SAFETY: we own these buffers, fresh from this pool.
            unsafe { p.put_raw_bulk(&raw) };
            assert_eq!(p.stats().in_use, 0);
            assert_eq!(p.stats().available, 64);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn shared_buffers_return_on_last_drop() {
        let p = pool("shared", 4, 0);
        let mut m = p.alloc().unwrap();
        m.copy_from(b"abc");
        let s1: SharedMbuf = m.into_shared();
        let s2 = s1.clone();
        assert_eq!(s2.refcnt(), 2);
        assert_eq!(s1.data(), b"abc");
        let s1 = s1.try_unique().unwrap_err();
        drop(s2);
        assert_eq!(p.stats().in_use, 1);
        let m = s1.try_unique().unwrap();
        assert_eq!(m.refcnt(), 1);
        drop(m);
        assert_eq!(p.stats().in_use, 0);
    }

    #[test]
    fn pool_outlives_its_handle_while_buffers_are_out() {
        let p = pool("outlive", 8, 0);
        let mut m = p.alloc().unwrap();
        drop(p);
        m.copy_from(&[1; 100]);
        assert_eq!(m.data()[99], 1);
        drop(m);
    }

    #[test]
    fn a_drain_yields_in_order_and_frees_what_it_did_not_yield() {
        let p = pool("drain", 16, 0);
        let mut b = PktBatch::new();
        for (i, m) in p.alloc_bulk(&mut b, 6).unwrap().iter_mut().enumerate() {
            m.copy_from(&[i as u8]);
        }
        let mut d = b.drain();
        assert_eq!(d.len(), 6);
        let first: Vec<Mbuf> = d.by_ref().take(2).collect();
        assert_eq!(
            first.iter().map(|m| m.data()[0]).collect::<Vec<_>>(),
            [0, 1]
        );
        drop(d);
        assert!(b.is_empty());
        assert_eq!(p.stats().in_use, 2, "the four not yielded went back");
        drop(first);
        assert_eq!(p.stats().in_use, 0);
    }

    #[test]
    fn batch_operations() {
        let p = pool("batch", 64, 0);
        let mut b = PktBatch::new();
        for (i, m) in p.alloc_bulk(&mut b, 10).unwrap().iter_mut().enumerate() {
            m.copy_from(&[i as u8]);
        }
        b.retain(|m| m.data()[0] % 2 == 0);
        assert_eq!(b.len(), 5);
        assert_eq!(p.stats().in_use, 5);
        b.free_front(2);
        assert_eq!(
            b.iter().map(|m| m.data()[0]).collect::<Vec<_>>(),
            vec![4, 6, 8]
        );
        let m = b.take_front().unwrap();
        assert_eq!(m.data(), &[4]);
        assert_eq!(
            b.iter().map(|m| m.data()[0]).collect::<Vec<_>>(),
            vec![6, 8]
        );
        // A buffer names its pool; a handle found through it is the same pool.
        assert!(p.owns(&m));
        let found = Mempool::of(&m).unwrap();
        assert!(found.owns(&m) && found.name() == "batch");
        assert!(!pool("batch-other", 8, 0).owns(&m));
        b.push(m).unwrap();
        let m = b.pop().unwrap();
        assert_eq!(m.data(), &[4]);
        b.push(m).unwrap();
        b.truncate(1);
        assert_eq!(p.stats().in_use, 1);
        let mut full = PktBatch::new();
        assert!(
            p.alloc_bulk(&mut full, 64).is_none(),
            "pool has only 63 left"
        );
        assert!(p.alloc_bulk(&mut full, 63).is_some());
        let extra = b.pop().unwrap();
        full.push(extra).unwrap();
        let again = p.alloc();
        assert!(again.is_none());
        drop(full);
        drop(b);
        assert_eq!(p.stats().available, 64);
    }
}

/// Model checks of the per-lcore cache under loom (`RUSTFLAGS="--cfg loom"`, see
/// `ci/loom.sh`): refills and flushes of two lcores' caches racing on the shared ring, and
/// a buffer freed on another lcore than the one it came from, must leave every buffer
/// back in the pool and the in-use count at zero. Each model uses its own lcore ids (the
/// test harness runs models in parallel), below [`CACHES`].
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::thread;

    #[test]
    fn loom_cache_refill_and_flush_conserve_buffers() {
        loom::model(|| {
            // Six buffers, caches of two (flushed from three up): an empty cache's get of
            // two asks the ring for four, and falls back to two when the other lcore
            // took four; the put of two then flushes the cache back down to two.
            let p = Mempool::create("loom-flush", 6, 2).unwrap();
            let lcores = [0, 1].map(|id| {
                let p = p.clone();
                thread::spawn(move || {
                    let _lcore = lcore::register_current_thread(id).unwrap();
                    let mut b = PktBatch::new();
                    assert!(
                        p.alloc_bulk(&mut b, 2).is_some(),
                        "6 buffers, at most 4 taken"
                    );
                    b.clear();
                })
            });
            for l in lcores {
                l.join().unwrap();
            }
            let s = p.stats();
            assert_eq!(
                (s.in_use, s.available, s.alloc_failures),
                (0, 6, 0),
                "{s:?}"
            );
        });
    }

    #[test]
    fn loom_buffer_freed_on_another_lcore_is_counted_back() {
        loom::model(|| {
            // A buffer from lcore 2's cache goes through a ring to lcore 3, which frees it
            // into its own cache if it arrived in time (else the main thread frees it):
            // 2 counts one out, 3 one back, and the pool as a whole none.
            let p = Mempool::create("loom-cross", 4, 1).unwrap();
            let (mut tx, mut rx) = crate::ring::spsc::<RawMbuf>(1).unwrap();
            let pa = p.clone();
            let giver = thread::spawn(move || {
                let _lcore = lcore::register_current_thread(2).unwrap();
                let m = pa.alloc().unwrap();
                assert!(tx.enqueue_bulk(&[m.into_raw()]));
            });
            let pb = p.clone();
            let taker = thread::spawn(move || {
                let _lcore = lcore::register_current_thread(3).unwrap();
                let mut raw = [RawMbuf::NULL];
                if rx.dequeue_bulk(&mut raw) {
                    // SAFETY: the giver handed this buffer over and no longer uses it.
                    drop(unsafe { raw[0].into_mbuf() });
                }
                drop(pb.alloc());
                rx
            });
            giver.join().unwrap();
            let mut rx = taker.join().unwrap();
            let mut raw = [RawMbuf::NULL];
            if rx.dequeue_bulk(&mut raw) {
                // SAFETY: as above.
                drop(unsafe { raw[0].into_mbuf() });
            }
            let s = p.stats();
            assert_eq!((s.in_use, s.available), (0, 4), "{s:?}");
        });
    }
}
