//! The data path: burst receive and transmit over memif rings, copying packets between
//! mbufs and the shared packet buffers (copy mode), or, for a zero-copy client, naming
//! and receiving mbufs in place (see the crate docs).
//!
//! Who moves which counter (memif 2.0, as libmemif, VPP and DPDK implement it):
//!
//! | ring | producer of packets | `head` moved by | `tail` moved by |
//! |---|---|---|---|
//! | client-to-server | client (its own buffers) | client, after filling | server, after reading |
//! | server-to-client | server (into the client's buffers) | client, when it offers empty buffers | server, after filling |
//!
//! Everything the peer controls is checked before use: its counter must stay within
//! what the ring allows (otherwise the ring is corrupt: counted, and the control thread
//! disconnects), and every descriptor it wrote must name a mapped region and lie inside
//! it, with a length that fits the buffer (otherwise that packet is dropped and counted).
//! A client uses its own table of buffer offsets, never the ones in shared memory.
//! Per burst: one acquire load and one release store of the peer's and our counter; per
//! packet: a descriptor read/write and a copy. No allocation, lock or system call, except
//! the eventfd write when the receiving peer asked for interrupts (pollers set
//! `RING_FLAG_MASK_INT`, as we do, except while an rx queue sleeps: [`pmd_core::intr`]).

use crate::config::Role;
use crate::control::{Fault, Shared};
use crate::proto::{DESC_FLAG_NEXT, RING_FLAG_MASK_INT};
use crate::ring::{Desc, RingPtr};
use crate::session::Session;
use pmd_core::ethdev::{PortId, QueueStats, RxQueue, TxQueue};
use pmd_core::intr::{Armed, IntrError};
use pmd_core::mbuf::{ChainError, Mbuf, PktBatch};
use pmd_core::Mempool;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

/// Most descriptors one transmitted packet may span on a server-to-client ring.
const MAX_CHAIN: usize = 64;

/// Driver-specific error counters of one queue (single writer: the queue).
#[derive(Debug, Default)]
pub struct QueueErrors {
    /// The peer's ring counter was out of range (the connection is then dropped).
    pub bad_ring: AtomicU64,
    /// Descriptors naming a missing region, or a buffer outside its region / too long.
    pub bad_desc: AtomicU64,
    /// Packets dropped because they did not fit (rx: the mbuf; tx: the chain limit).
    pub too_long: AtomicU64,
    /// Tx: packets given back unsent because no connection was up (the peer is gone).
    pub link_down: AtomicU64,
    /// Zero-copy: tx, packets copied into the ring's own buffers because a segment was
    /// in no shared pool; rx, descriptors copied out of the ring's own buffers (those
    /// offered at connect, before the queue's mbufs took their places).
    pub zc_copied: AtomicU64,
}

#[inline]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// A region as the data path sees it.
#[derive(Clone, Copy, Debug)]
struct RegionView {
    base: *mut u8,
    len: u64,
}

impl RegionView {
    /// Address of `[offset, offset + len)` if it lies inside the region.
    #[inline(always)]
    fn span(&self, offset: u32, len: u32) -> Option<*mut u8> {
        if offset as u64 + len as u64 <= self.len {
            // SAFETY: offset + len <= region length, so the pointer stays inside.
            Some(unsafe { self.base.add(offset as usize) })
        } else {
            None
        }
    }
}

/// One ring attached to a queue for the lifetime of a session.
struct Attached {
    /// Keeps the regions mapped while `ring` and the pointers below are used, and the
    /// ring's interrupt eventfd open.
    session: Arc<Session>,
    /// Which ring of the session this is: rx (else tx) queue `qid`'s.
    rx: bool,
    qid: u16,
    ring: RingPtr,
    role: Role,
    size: u32,
    /// Our counter: consumer position (rx) or producer position (tx).
    ours: u16,
    /// Client rx: slots offered (our `head`). Client tx: last `tail` seen.
    aux: u16,
    /// Client: first buffer of this ring and the buffer size.
    buf: *mut u8,
    bsize: u32,
    /// Server: the client's regions.
    regions: Box<[RegionView]>,
    /// Client with `zero-copy=yes`: the shared pools and the mbufs in the ring.
    zc: Option<Box<ZeroCopy>>,
}

/// A pool's data segment shared as a region (zero-copy client).
#[derive(Clone, Copy, Debug)]
struct PoolRegion {
    base: usize,
    len: usize,
    index: u16,
}

/// A zero-copy client ring's state.
struct ZeroCopy {
    /// The shared pools' regions.
    pools: Box<[PoolRegion]>,
    /// Receive ring: the region of the queue's pool, when it is shared (the ring is then
    /// offered its mbufs); `None` receives by copying.
    rx_pool: Option<PoolRegion>,
    /// The mbufs in the ring, by slot: offered to the server (receive), or sent and not
    /// yet passed by its `tail` (transmit, at each packet's last slot).
    held: Box<[Option<Mbuf>]>,
    /// Receive: mbufs taken from the pool for a refill; transmit: mbufs the server
    /// passed, on their way back (allocated once, empty between bursts).
    fresh: PktBatch,
}

impl ZeroCopy {
    /// The state of a ring of `size` slots in the zero-copy session `s`; `pool` is a
    /// receive queue's.
    fn of(s: &Session, pool: Option<&Mempool>, size: u32) -> ZeroCopy {
        let pools: Box<[PoolRegion]> = s
            .regions
            .iter()
            .enumerate()
            .filter(|(_, r)| r.pool().is_some())
            .map(|(i, r)| PoolRegion {
                base: r.base() as usize,
                len: r.len() as usize,
                index: i as u16,
            })
            .collect();
        let rx_pool = pool.and_then(|p| {
            let seg = p.data_segment()?;
            pools
                .iter()
                .find(|r| r.base == seg.as_ptr() as usize)
                .copied()
        });
        if let (Some(p), None) = (pool, rx_pool) {
            tracing::warn!(
                "memif zero-copy: the rx pool {} is not shared (made before the port's probe?): \
                 receiving by copying",
                p.name()
            );
        }
        ZeroCopy {
            pools,
            rx_pool,
            held: (0..size).map(|_| None).collect(),
            fresh: PktBatch::new(),
        }
    }

    /// The region and offset of `len` bytes at `p`, if they lie in one shared pool.
    #[inline(always)]
    fn locate(&self, p: *const u8, len: usize) -> Option<(u16, u32)> {
        let a = p as usize;
        self.pools.iter().find_map(|r| {
            let off = a.wrapping_sub(r.base);
            (a >= r.base && off + len <= r.len).then_some((r.index, off as u32))
        })
    }
}

// SAFETY: raw pointers into regions the `Arc<Session>` keeps mapped; the queue that owns
// this is used by one thread at a time.
unsafe impl Send for Attached {}

impl Drop for Attached {
    /// The ring's mbufs go back to their pools before the session (whose regions may
    /// hold the last handle of a shared pool) is let go of: a pool dropped with buffers
    /// out would keep its memory for good.
    fn drop(&mut self) {
        self.zc = None;
    }
}

impl Attached {
    /// Attaches queue `qid` to its ring in `s`: a receive queue, which passes its `pool`,
    /// or a transmit queue (`None`).
    fn new(s: Arc<Session>, qid: u16, pool: Option<&Mempool>) -> Option<Attached> {
        let rx = pool.is_some();
        let info = if rx { s.rx_ring(qid) } else { s.tx_ring(qid) }?;
        let zc = s
            .zero_copy
            .then(|| Box::new(ZeroCopy::of(&s, pool, info.ring.size())));
        let (buf, bsize) = match s.role {
            Role::Client => {
                let r0 = s.regions.first()?;
                // SAFETY: the client laid out this ring's buffers inside region 0.
                (unsafe { r0.base().add(info.buf_base as usize) }, s.bsize)
            }
            Role::Server => (std::ptr::null_mut(), 0),
        };
        let regions = s
            .regions
            .iter()
            .map(|r| RegionView {
                base: r.base(),
                len: r.len(),
            })
            .collect();
        // A client's receive ring starts with every buffer offered (`reset_rings`).
        let aux = if rx && s.role == Role::Client {
            info.ring.head().load(Ordering::Acquire)
        } else {
            0
        };
        Some(Attached {
            ring: info.ring,
            role: s.role,
            size: info.ring.size(),
            ours: 0,
            aux,
            buf,
            bsize,
            regions,
            zc,
            rx,
            qid,
            session: s,
        })
    }

    /// Client transmit: reads the server's `tail`, which may only move forward up to
    /// what we produced (`None` if it did not: a corrupt ring), and takes note of it;
    /// with zero-copy, the packets it passed go back to their pools.
    #[inline(always)]
    fn take_tail(&mut self) -> Option<u16> {
        let tail = self.ring.tail().load(Ordering::Acquire);
        if tail.wrapping_sub(self.aux) > self.ours.wrapping_sub(self.aux) {
            return None;
        }
        self.release_sent(tail);
        Some(tail)
    }

    /// The server's `tail` moved to `tail`: with zero-copy, the packets it passed go
    /// back to their pools, in bulk.
    #[inline(always)]
    fn release_sent(&mut self, tail: u16) {
        if let Some(zc) = self.zc.as_deref_mut() {
            // Freed in bulk, a batch at a time.
            let mut s = self.aux;
            while s != tail {
                if let Some(m) = zc.held[usize::from(s & self.ring.mask())].take() {
                    if let Err(m) = zc.fresh.push(m) {
                        zc.fresh.clear();
                        let _ = zc.fresh.push(m);
                    }
                }
                s = s.wrapping_add(1);
            }
            zc.fresh.clear();
        }
        self.aux = tail;
    }

    /// Client: the offset (region 0) of our buffer of `slot`.
    #[inline(always)]
    fn own_offset(&self, slot: u16) -> u32 {
        // The layout fits region 0, whose offsets are 32-bit.
        (self.own_buf(slot) as usize - self.session.regions[0].base() as usize) as u32
    }

    /// Client: our buffer of `slot`.
    #[inline(always)]
    fn own_buf(&self, slot: u16) -> *mut u8 {
        own_buf(self.buf, self.bsize, self.ring.mask(), slot)
    }

    /// Signals the ring's interrupt eventfd (when the receiver did not mask interrupts).
    /// A full count means a signal is already pending, which is all a signal needs.
    #[cold]
    fn kick(&self) {
        let info = if self.rx {
            self.session.rx_ring(self.qid)
        } else {
            self.session.tx_ring(self.qid)
        };
        if let Some(info) = info {
            let _ = pmd_core::unix::eventfd_signal(info.intr.as_fd());
        }
    }

    /// Where the data of a received descriptor is, if it is valid.
    #[inline(always)]
    fn rx_src(&self, slot: u16, d: &Desc) -> Option<*const u8> {
        match self.role {
            Role::Client => (d.length <= self.bsize).then(|| self.own_buf(slot) as *const u8),
            Role::Server => self
                .regions
                .get(d.region as usize)?
                .span(d.offset, d.length)
                .map(|p| p as *const u8),
        }
    }
}

/// Client: the buffer of `slot` in a ring whose buffers start at `buf`, `bsize` bytes
/// each, `mask + 1` of them.
#[inline(always)]
fn own_buf(buf: *mut u8, bsize: u32, mask: u16, slot: u16) -> *mut u8 {
    // Only an address: users dereference it where the layout vouches for it.
    buf.wrapping_add((slot & mask) as usize * bsize as usize)
}

/// Re-reads the session when the generation changed; returns the attached ring if any.
#[inline(always)]
fn sync<'a>(
    shared: &Shared,
    gen: &mut u64,
    att: &'a mut Option<Attached>,
    rx: Option<&Mempool>,
    qid: u16,
) -> Option<&'a mut Attached> {
    if shared.generation() != *gen {
        reattach(shared, gen, att, rx, qid);
    }
    att.as_mut()
}

/// Attaches to the current session: a receive queue passes its pool (`rx`).
#[cold]
fn reattach(
    shared: &Shared,
    gen: &mut u64,
    att: &mut Option<Attached>,
    rx: Option<&Mempool>,
    qid: u16,
) {
    let (g, s) = shared.current();
    *gen = g;
    // The old ring's mbufs go back to their pools first.
    *att = None;
    *att = s.and_then(|s| Attached::new(s, qid, rx));
}

/// A memif receive queue.
pub struct MemifRxQueue {
    shared: Arc<Shared>,
    qid: u16,
    port: PortId,
    pool: Mempool,
    stats: Arc<QueueStats>,
    errs: Arc<QueueErrors>,
    /// Chain frames larger than one buffer (the SCATTER rx offload); otherwise drop them
    /// as too long.
    scatter: bool,
    gen: u64,
    att: Option<Attached>,
}

impl std::fmt::Debug for MemifRxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemifRxQueue")
            .field("qid", &self.qid)
            .field("attached", &self.att.is_some())
            .finish()
    }
}

impl MemifRxQueue {
    /// A queue that follows `shared`'s sessions.
    pub fn new(
        shared: Arc<Shared>,
        qid: u16,
        port: PortId,
        pool: Mempool,
        stats: Arc<QueueStats>,
        errs: Arc<QueueErrors>,
        scatter: bool,
    ) -> MemifRxQueue {
        MemifRxQueue {
            scatter,
            shared,
            qid,
            port,
            pool,
            stats,
            errs,
            gen: u64::MAX,
            att: None,
        }
    }

    /// Follows the session (a new one attached, with this queue's pool, or an ended
    /// one let go of); the ring is then `self.att`.
    #[inline(always)]
    fn refresh(&mut self) {
        sync(
            &self.shared,
            &mut self.gen,
            &mut self.att,
            Some(&self.pool),
            self.qid,
        );
    }
}

impl RxQueue for MemifRxQueue {
    /// The ring's interrupt eventfd: the sender signals it after a burst when our ring's
    /// flags lack `RING_FLAG_MASK_INT`.
    fn has_intr(&self) -> bool {
        true
    }

    /// Clears `RING_FLAG_MASK_INT`, fences (pairing with the sender's fence between
    /// publishing its counter and reading the flags) and looks at the peer's counter.
    /// Not connected: nothing to arm; the sleeper's timeout brings the queue back.
    fn intr_enable(&mut self) -> Result<Armed, IntrError> {
        self.refresh();
        let Some(a) = self.att.as_mut() else {
            return Ok(Armed::Sleep);
        };
        a.ring.set_flags(0);
        fence(Ordering::SeqCst);
        let peer = match a.role {
            Role::Server => a.ring.head().load(Ordering::Acquire),
            Role::Client => a.ring.tail().load(Ordering::Acquire),
        };
        Ok(if peer != a.ours {
            Armed::Ready
        } else {
            Armed::Sleep
        })
    }

    fn intr_disable(&mut self) {
        if let Some(a) = self.att.as_ref() {
            a.ring.set_flags(RING_FLAG_MASK_INT);
            if let Some(info) = a.session.rx_ring(self.qid) {
                pmd_core::unix::eventfd_drain(info.intr.as_fd());
            }
        }
    }

    fn intr_fd(&self) -> Option<BorrowedFd<'_>> {
        let a = self.att.as_ref()?;
        a.session.rx_ring(self.qid).map(|info| info.intr.as_fd())
    }

    fn rx_burst(&mut self, batch: &mut PktBatch, max: usize) -> usize {
        self.refresh();
        let Some(a) = self.att.as_mut() else {
            return 0;
        };
        if a.zc.as_ref().is_some_and(|z| z.rx_pool.is_some()) {
            let q = RxParts {
                pool: &self.pool,
                stats: &self.stats,
                errs: &self.errs,
                scatter: self.scatter,
                port: self.port,
                shared: &self.shared,
            };
            return rx_in_place(a, &q, batch, max);
        }
        let ring = a.ring;
        // The peer's counter: head (server reading client-to-server), tail (client
        // reading server-to-client).
        let (peer, limit) = match a.role {
            Role::Server => (ring.head().load(Ordering::Acquire), a.size),
            Role::Client => (
                ring.tail().load(Ordering::Acquire),
                a.aux.wrapping_sub(a.ours) as u32,
            ),
        };
        let avail = peer.wrapping_sub(a.ours) as u32;
        if avail > limit {
            bump(&self.errs.bad_ring, 1);
            self.stats.add_errors(1);
            self.shared.report_fault(Fault::RingIndex);
            return 0;
        }
        let mut got = 0usize;
        if avail > 0 {
            let want = (avail as usize).min(max);
            let start = batch.len();
            if let Some(mbufs) = self.pool.alloc_bulk(batch, want) {
                let mut cur = a.ours;
                let mut left = avail;
                let (mut bytes, mut bad, mut long, mut nomem) = (0u64, 0u64, 0u64, 0u64);
                'pkt: while got < want && left > 0 {
                    let m = &mut mbufs[got];
                    // Fresh buffer (or one a dropped packet used): all room after the headroom.
                    let room = m.buf_len() - m.headroom();
                    m.set_len(room);
                    let dst = m.data_mut();
                    let (mut len, mut slots, mut ok) = (0usize, 0u32, true);
                    // Bytes past the first buffer, as further segments (with SCATTER).
                    let mut ovf: Option<Mbuf> = None;
                    loop {
                        if slots == left {
                            // The chain is not complete yet: leave it for the next burst.
                            break 'pkt;
                        }
                        let slot = cur.wrapping_add(slots as u16);
                        let d = ring.desc(slot);
                        slots += 1;
                        match a.rx_src(slot, &d) {
                            None => {
                                if ok {
                                    bad += 1;
                                }
                                ok = false;
                            }
                            Some(src) if ok => {
                                let n = d.length as usize;
                                // Into the first buffer while it has room.
                                let here = n.min(dst.len() - len);
                                // SAFETY: `src..src+n` was checked to lie inside a mapped
                                // region; the destination is `here` bytes of our mbuf. A
                                // raw copy: the peer may write the source meanwhile.
                                unsafe {
                                    std::ptr::copy_nonoverlapping(
                                        src,
                                        dst[len..].as_mut_ptr(),
                                        here,
                                    )
                                };
                                len += here;
                                if here < n {
                                    if !self.scatter {
                                        long += 1;
                                        ok = false;
                                    } else if let Err(e) =
                                        // SAFETY: as above, for the rest of the span.
                                        unsafe {
                                            fill_overflow(
                                                &mut ovf,
                                                &self.pool,
                                                src.add(here),
                                                n - here,
                                            )
                                        }
                                    {
                                        match e {
                                            ChainError::NoBuffers => nomem += 1,
                                            _ => long += 1,
                                        }
                                        ok = false;
                                    }
                                }
                            }
                            Some(_) => {}
                        }
                        if d.flags & DESC_FLAG_NEXT == 0 {
                            break;
                        }
                    }
                    cur = cur.wrapping_add(slots as u16);
                    left -= slots;
                    if ok {
                        m.set_len(len);
                        m.set_port(self.port);
                        if let Some(o) = ovf.take() {
                            if m.chain(o).is_err() {
                                long += 1;
                                continue;
                            }
                        }
                        bytes += m.len() as u64;
                        got += 1;
                    }
                }
                batch.truncate(start + got);
                a.ours = cur;
                if a.role == Role::Server {
                    ring.tail().store(cur, Ordering::Release);
                }
                book_rx(&self.stats, &self.errs, got, bytes, (bad, long, nomem));
            } else {
                // No buffers for this burst: its packets are dropped and counted once each
                // in rx_nombuf (as a NIC drops what it has no buffer for), rather than left
                // in the ring to be counted again on every poll until buffers come back.
                let (slots, pkts) = whole_packets(&ring, a.ours, avail, want);
                a.ours = a.ours.wrapping_add(slots as u16);
                if a.role == Role::Server {
                    ring.tail().store(a.ours, Ordering::Release);
                }
                self.stats.add_no_mbuf(pkts);
            }
        }
        if a.role == Role::Client {
            // Offer every free buffer again (their offsets and region were written at
            // setup; only the capacity is restored).
            let target = a.ours.wrapping_add(a.size as u16);
            let mut h = a.aux;
            while h != target {
                ring.set_desc_len(h, 0, a.bsize);
                h = h.wrapping_add(1);
            }
            if h != a.aux {
                a.aux = h;
                ring.head().store(h, Ordering::Release);
            }
        }
        got
    }
}

/// Books a receive burst: `got` packets of `bytes`, and the packets dropped for a bad
/// descriptor, as too long, or for want of an mbuf.
#[inline(always)]
fn book_rx(
    stats: &QueueStats,
    errs: &QueueErrors,
    got: usize,
    bytes: u64,
    (bad, long, nomem): (u64, u64, u64),
) {
    stats.add(got as u64, bytes);
    if bad + long > 0 {
        bump(&errs.bad_desc, bad);
        bump(&errs.too_long, long);
        stats.add_errors(bad + long);
    }
    if nomem > 0 {
        stats.add_no_mbuf(nomem);
    }
}

/// What an in-place receive needs of its queue.
struct RxParts<'a> {
    pool: &'a Mempool,
    stats: &'a QueueStats,
    errs: &'a QueueErrors,
    scatter: bool,
    port: PortId,
    shared: &'a Shared,
}

/// Zero-copy client receive: the packets the server wrote into the mbufs we offered on
/// the server-to-client ring are those mbufs, with the lengths it wrote (each at most
/// what was offered; a chain of several descriptors becomes a chain of mbufs with
/// SCATTER, or is dropped as too long). Then every free slot is offered a fresh mbuf.
/// The descriptors' region and offset are never read back: each slot's mbuf is ours.
fn rx_in_place(a: &mut Attached, q: &RxParts<'_>, batch: &mut PktBatch, max: usize) -> usize {
    let ring = a.ring;
    let Some(zc) = a.zc.as_deref_mut() else {
        return 0;
    };
    let Some(region) = zc.rx_pool else {
        return 0;
    };
    let tail = ring.tail().load(Ordering::Acquire);
    let avail = tail.wrapping_sub(a.ours) as u32;
    if avail > a.aux.wrapping_sub(a.ours) as u32 {
        bump(&q.errs.bad_ring, 1);
        q.stats.add_errors(1);
        q.shared.report_fault(Fault::RingIndex);
        return 0;
    }
    let want = max.min(batch.spare());
    let mask = ring.mask();
    let (mut got, mut bytes, mut bad, mut long, mut nomem) = (0usize, 0u64, 0u64, 0u64, 0u64);
    let mut copied = 0u64;
    let mut cur = a.ours;
    let mut left = avail;
    while got < want && left > 0 {
        // The chain's extent first (flags only); a chain not complete yet waits.
        let (mut slots, mut complete) = (0u32, false);
        while slots < left && !complete {
            complete = ring.desc(cur.wrapping_add(slots as u16)).flags & DESC_FLAG_NEXT == 0;
            slots += 1;
        }
        if !complete {
            break;
        }
        let mut pkt: Option<Mbuf> = None;
        let mut ok = true;
        for k in 0..slots as u16 {
            let slot = cur.wrapping_add(k);
            let len = ring.desc(slot).length as usize;
            let held = zc.held[usize::from(slot & mask)].take();
            if !ok {
                continue; // dropped with the packet (a held mbuf goes back with it)
            }
            let m = match held {
                Some(mut m) if len <= m.buf_len() - m.headroom() => {
                    m.set_len(len);
                    m
                }
                // Offered at connect, before the queue had mbufs there: the ring's own
                // buffer, copied out.
                None if len <= a.bsize as usize => {
                    let src = own_buf(a.buf, a.bsize, mask, slot);
                    let mut copy = None;
                    // SAFETY: our own buffer of `slot` has bsize >= len bytes inside
                    // region 0.
                    let filled = unsafe { fill_overflow(&mut copy, q.pool, src, len) };
                    copied += 1;
                    match (filled, copy) {
                        (Ok(()), Some(m)) if q.scatter || m.is_contiguous() => m,
                        (Ok(()), None) => match q.pool.alloc() {
                            Some(m) => m, // an empty frame
                            None => {
                                nomem += 1;
                                ok = false;
                                continue;
                            }
                        },
                        (Err(ChainError::NoBuffers), _) => {
                            nomem += 1;
                            ok = false;
                            continue;
                        }
                        _ => {
                            long += 1;
                            ok = false;
                            continue;
                        }
                    }
                }
                // Longer than offered.
                _ => {
                    bad += 1;
                    ok = false;
                    continue;
                }
            };
            match pkt.as_mut() {
                None => pkt = Some(m),
                Some(p) if q.scatter => {
                    if p.chain(m).is_err() {
                        long += 1;
                        ok = false;
                    }
                }
                Some(_) => {
                    long += 1;
                    ok = false;
                }
            }
        }
        cur = cur.wrapping_add(slots as u16);
        left -= slots;
        if let (true, Some(mut p)) = (ok, pkt) {
            p.set_port(q.port);
            bytes += p.len() as u64;
            got += 1;
            let _ = batch.push(p);
        }
    }
    a.ours = cur;
    book_rx(q.stats, q.errs, got, bytes, (bad, long, nomem));
    if copied > 0 {
        bump(&q.errs.zc_copied, copied);
    }
    // Offer a fresh mbuf to every free slot.
    let target = a.ours.wrapping_add(a.size as u16);
    let mut h = a.aux;
    while h != target {
        let n = usize::from(target.wrapping_sub(h)).min(zc.fresh.spare());
        if q.pool.alloc_bulk(&mut zc.fresh, n).is_none() {
            // Fewer left than asked: as many as there are, one by one.
            match q.pool.alloc() {
                Some(m) => {
                    let _ = zc.fresh.push(m);
                }
                None => break, // dry: the ring stays short until buffers come back
            }
        }
        for m in zc.fresh.drain() {
            let data = m.data().as_ptr() as usize;
            let room = (m.buf_len() - m.headroom()) as u32;
            ring.set_desc(
                h,
                Desc {
                    flags: 0,
                    region: region.index,
                    length: room,
                    // Inside the region: the pool's buffers are its data segment.
                    offset: (data - region.base) as u32,
                },
            );
            zc.held[usize::from(h & mask)] = Some(m);
            h = h.wrapping_add(1);
        }
    }
    if h != a.aux {
        a.aux = h;
        ring.head().store(h, Ordering::Release);
    }
    got
}

/// The slots and the number of the first whole packets (at most `max`) among `avail`
/// filled slots from `from`. A chain still being written (its last descriptor not yet
/// there) is left out.
fn whole_packets(ring: &RingPtr, from: u16, avail: u32, max: usize) -> (u32, u64) {
    let (mut slots, mut whole, mut pkts) = (0u32, 0u32, 0u64);
    while slots < avail && (pkts as usize) < max {
        let d = ring.desc(from.wrapping_add(slots as u16));
        slots += 1;
        if d.flags & DESC_FLAG_NEXT == 0 {
            pkts += 1;
            whole = slots;
        }
    }
    (whole, pkts)
}

/// A memif transmit queue.
pub struct MemifTxQueue {
    shared: Arc<Shared>,
    qid: u16,
    stats: Arc<QueueStats>,
    errs: Arc<QueueErrors>,
    gen: u64,
    att: Option<Attached>,
}

impl std::fmt::Debug for MemifTxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemifTxQueue")
            .field("qid", &self.qid)
            .field("attached", &self.att.is_some())
            .finish()
    }
}

impl MemifTxQueue {
    /// A queue that follows `shared`'s sessions.
    pub fn new(
        shared: Arc<Shared>,
        qid: u16,
        stats: Arc<QueueStats>,
        errs: Arc<QueueErrors>,
    ) -> MemifTxQueue {
        MemifTxQueue {
            shared,
            qid,
            stats,
            errs,
            gen: u64::MAX,
            att: None,
        }
    }

    /// Client: writes packets into our own buffers on the client-to-server ring; with
    /// zero-copy, names their segments in place where they lie in a shared pool.
    fn tx_client(
        a: &mut Attached,
        batch: &PktBatch,
        errs: &QueueErrors,
    ) -> Result<(usize, u64), ()> {
        let ring = a.ring;
        let Some(tail) = a.take_tail() else {
            bump(&errs.bad_ring, 1);
            return Err(());
        };
        let mut free = a.size - a.ours.wrapping_sub(tail) as u32;
        let (mut n, mut bytes) = (0usize, 0u64);
        for (i, m) in batch.iter().enumerate() {
            let plen = m.len();
            if let Some(zc) = a.zc.as_deref_mut() {
                match send_in_place(zc, &ring, a.ours, free, m) {
                    InPlace::Sent(slots) => {
                        // SAFETY: entry i of the batch is owned by it; the caller takes
                        // the first n entries out of the batch without freeing them
                        // (`disown_front`) right after this call, so the ring holds the
                        // only owner.
                        let owned = unsafe { batch.raw()[i].into_mbuf() };
                        let last = a.ours.wrapping_add(slots as u16 - 1);
                        zc.held[usize::from(last & ring.mask())] = Some(owned);
                        a.ours = a.ours.wrapping_add(slots as u16);
                        free -= slots;
                        bytes += plen as u64;
                        n += 1;
                        continue;
                    }
                    InPlace::NoRoom => break,
                    InPlace::NotShared => {} // copied below
                }
            }
            let slots = if plen <= a.bsize as usize {
                1
            } else {
                plen.div_ceil(a.bsize as usize) as u32
            };
            if slots > free {
                break;
            }
            let mut off = 0usize;
            for k in 0..slots {
                let slot = a.ours.wrapping_add(k as u16);
                let chunk = (plen - off).min(a.bsize as usize);
                // SAFETY: our own buffer of `slot` has bsize >= chunk bytes.
                unsafe { copy_packet(m, off, a.own_buf(slot), chunk) };
                // Region and offset of our slots were written at setup and are ours to
                // read back never (we copy into `own_buf`), so only flags and length;
                // zero-copy may have named a pool's buffer there since.
                let flags = if k + 1 < slots { DESC_FLAG_NEXT } else { 0 };
                if a.zc.is_some() {
                    let d = Desc {
                        flags,
                        region: 0,
                        length: chunk as u32,
                        offset: a.own_offset(slot),
                    };
                    ring.set_desc(slot, d);
                } else {
                    ring.set_desc_len(slot, flags, chunk as u32);
                }
                off += chunk;
            }
            a.ours = a.ours.wrapping_add(slots as u16);
            free -= slots;
            bytes += plen as u64;
            n += 1;
            if a.zc.is_some() {
                bump(&errs.zc_copied, 1);
                // SAFETY: as for a packet sent in place above; copied, it is freed now.
                drop(unsafe { batch.raw()[i].into_mbuf() });
            }
        }
        if n > 0 {
            ring.head().store(a.ours, Ordering::Release);
        }
        Ok((n, bytes))
    }

    /// Server: fills the buffers the client offered on the server-to-client ring.
    /// Returns (packets taken from the batch, of which dropped, bytes sent).
    fn tx_server(
        a: &mut Attached,
        batch: &PktBatch,
        errs: &QueueErrors,
    ) -> Result<(usize, u64, u64), Fault> {
        let ring = a.ring;
        let head = ring.head().load(Ordering::Acquire);
        let mut free = head.wrapping_sub(a.ours) as u32;
        if free > a.size {
            bump(&errs.bad_ring, 1);
            return Err(Fault::RingIndex);
        }
        let (mut n, mut dropped, mut bytes) = (0usize, 0u64, 0u64);
        let mut chain = [(std::ptr::null_mut::<u8>(), 0u32); MAX_CHAIN];
        for m in batch.iter() {
            let plen = m.len();
            // Pass 1: pick descriptors until their capacity holds the packet.
            let (mut k, mut cap) = (0usize, 0usize);
            loop {
                if k as u32 == free || k == MAX_CHAIN {
                    break;
                }
                let d = ring.desc(a.ours.wrapping_add(k as u16));
                let Some(p) = a
                    .regions
                    .get(d.region as usize)
                    .and_then(|r| r.span(d.offset, d.length))
                else {
                    bump(&errs.bad_desc, 1);
                    return if n > 0 {
                        Ok((n, dropped, bytes))
                    } else {
                        Err(Fault::TxDesc)
                    };
                };
                chain[k] = (p, d.length);
                k += 1;
                cap += d.length as usize;
                if cap >= plen {
                    break;
                }
            }
            if k == 0 {
                break; // no offered buffer left
            }
            if cap < plen {
                if k == MAX_CHAIN || k as u32 == a.size {
                    // Would need more descriptors than we chain, or than the ring has
                    // (a zero-copy client offers buffers of its mbufs' size): drop it.
                    bump(&errs.too_long, 1);
                    dropped += 1;
                    n += 1;
                    continue;
                }
                break; // not enough offered buffers yet
            }
            // Pass 2: copy and publish the lengths.
            let mut off = 0usize;
            for (j, &(p, c)) in chain[..k].iter().enumerate() {
                let chunk = (plen - off).min(c as usize);
                // SAFETY: `p..p+c` was checked inside a mapped region and chunk <= c.
                unsafe { copy_packet(m, off, p, chunk) };
                let flags = if j + 1 < k { DESC_FLAG_NEXT } else { 0 };
                ring.set_desc_len(a.ours.wrapping_add(j as u16), flags, chunk as u32);
                off += chunk;
            }
            a.ours = a.ours.wrapping_add(k as u16);
            free -= k as u32;
            bytes += plen as u64;
            n += 1;
        }
        if n as u64 > dropped {
            ring.tail().store(a.ours, Ordering::Release);
        }
        Ok((n, dropped, bytes))
    }
}

impl TxQueue for MemifTxQueue {
    fn tx_burst(&mut self, batch: &mut PktBatch) -> usize {
        if batch.is_empty() {
            return 0;
        }
        let Some(a) = sync(&self.shared, &mut self.gen, &mut self.att, None, self.qid) else {
            bump(&self.errs.link_down, batch.len() as u64);
            return 0;
        };
        let res = match a.role {
            Role::Client => Self::tx_client(a, batch, &self.errs)
                .map(|(n, b)| (n, 0, b))
                .map_err(|_| Fault::RingIndex),
            Role::Server => Self::tx_server(a, batch, &self.errs),
        };
        match res {
            Ok((n, dropped, bytes)) => {
                let sent = n as u64 - dropped;
                if sent > 0 {
                    // The counter we just published must be visible before the flags are
                    // read: a receiver arming its interrupt clears MASK_INT, fences and
                    // reads the counter, so one of us sees the other (no lost wake-up).
                    fence(Ordering::SeqCst);
                    if a.ring.flags() & RING_FLAG_MASK_INT == 0 {
                        a.kick();
                    }
                }
                self.stats.add(sent, bytes);
                if dropped > 0 {
                    self.stats.add_errors(dropped);
                }
                if a.zc.is_some() {
                    // Each was taken by `tx_client`: held by the ring, or copied and freed.
                    batch.disown_front(n);
                } else {
                    batch.free_front(n);
                }
                n
            }
            Err(f) => {
                self.stats.add_errors(1);
                self.shared.report_fault(f);
                0
            }
        }
    }

    /// Nothing is held back (each burst rings the peer's doorbell itself); picks up a new
    /// session, or lets go of an ended one so its regions are unmapped while the queue
    /// idles; a zero-copy client gives back the mbufs the server has passed.
    fn flush(&mut self) {
        let Some(a) = sync(&self.shared, &mut self.gen, &mut self.att, None, self.qid) else {
            return;
        };
        // Zero-copy: packets the server has passed go back to their pools now, not at
        // the next send (the application may be waiting for those very buffers).
        // A corrupt tail is the next send's to report.
        if a.zc.is_some() && a.role == Role::Client {
            let _ = a.take_tail();
        }
    }
}

/// What [`send_in_place`] did with a packet.
enum InPlace {
    /// Named in place in this many slots.
    Sent(u32),
    /// Not enough free slots: the burst ends.
    NoRoom,
    /// A segment lies in no shared pool: copy it.
    NotShared,
}

/// Zero-copy client transmit of `m`: one descriptor per segment from slot `at`, naming
/// the segment where it lies in a shared pool, if every segment does and `free` slots
/// hold them. The caller hands the mbuf to the ring.
#[inline(always)]
fn send_in_place(zc: &ZeroCopy, ring: &RingPtr, at: u16, free: u32, m: &Mbuf) -> InPlace {
    let segs = u32::from(m.nb_segs());
    if segs > ring.size() {
        return InPlace::NotShared; // could never fit: copied into ring-sized buffers
    }
    if segs > free {
        return InPlace::NoRoom;
    }
    // A packet goes in place whole or is copied whole: descriptors written before a
    // segment that is in no shared pool are not published, and the copy rewrites them.
    let mut k = 0u32;
    for seg in m.segments().take(segs as usize) {
        let Some((region, offset)) = zc.locate(seg.as_ptr(), seg.len()) else {
            return InPlace::NotShared;
        };
        k += 1;
        ring.set_desc(
            at.wrapping_add(k as u16 - 1),
            Desc {
                flags: if k < segs { DESC_FLAG_NEXT } else { 0 },
                region,
                length: seg.len() as u32,
                offset,
            },
        );
    }
    if k < segs {
        return InPlace::NotShared; // a chain shorter than its count: a guard
    }
    InPlace::Sent(segs)
}

/// Copies packet bytes `[off, off + n)` (across its segments) to `dst`, with raw copies:
/// `dst` is shared memory the peer may touch.
///
/// # Safety
/// `dst..dst + n` must be writable memory; `off + n <= m.len()`.
#[inline(always)]
unsafe fn copy_packet(m: &Mbuf, off: usize, dst: *mut u8, n: usize) {
    if m.is_contiguous() {
        // SAFETY: the caller's contract; the source is n bytes of the first segment.
        unsafe { std::ptr::copy_nonoverlapping(m.data().as_ptr().add(off), dst, n) };
        return;
    }
    let _ = m.for_each_chunk(off, n, |piece, at| {
        // SAFETY: `at + piece.len() <= n`, inside the caller's destination.
        unsafe { std::ptr::copy_nonoverlapping(piece.as_ptr(), dst.add(at), piece.len()) }
    });
}

/// Appends `n` bytes from peer memory at `src` to the overflow chain `ovf`, taking new
/// segments from `pool` as each fills.
///
/// # Safety
/// `src..src + n` must be readable (inside a checked region).
#[cold]
unsafe fn fill_overflow(
    ovf: &mut Option<Mbuf>,
    pool: &Mempool,
    src: *const u8,
    n: usize,
) -> Result<(), ChainError> {
    let mut done = 0;
    while done < n {
        let o = match ovf {
            Some(o) if o.last_tailroom() > 0 => o,
            _ => {
                let seg = pool.alloc().ok_or(ChainError::NoBuffers)?;
                match ovf {
                    Some(o) => {
                        o.chain(seg).map_err(|(e, _)| e)?;
                        o
                    }
                    None => ovf.insert(seg),
                }
            }
        };
        let k = (n - done).min(o.last_tailroom());
        let Some(out) = o.append(k) else {
            return Err(ChainError::TooLong);
        };
        // SAFETY: the caller vouches for the source; `out` is k bytes of our segment.
        unsafe { std::ptr::copy_nonoverlapping(src.add(done), out.as_mut_ptr(), k) };
        done += k;
    }
    Ok(())
}
