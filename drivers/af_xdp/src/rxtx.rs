//! The data path: [`AfXdpRxQueue`] and [`AfXdpTxQueue`].
//!
//! Per burst and in bulk: rx reads up to a burst of descriptors, copies the frames into
//! mbufs allocated in one call, releases the descriptors and hands the frames back on the
//! fill ring with one index update; tx first reclaims every completed frame, copies the
//! packets into free frames, posts them with one index update and calls `sendto` only
//! when the kernel set `XDP_RING_NEED_WAKEUP`. No allocation, lock or syscall per packet.
//!
//! The kernel is a peer: a descriptor is used only if its address lies in this queue's
//! frames and its length inside one frame (and in the mbuf); anything else is counted as
//! an error and dropped.

use crate::umem::Umem;
use crate::xsk::{KickCounters, RxRings, TxRings, Xsk};
use crate::{sys, uapi::XdpDesc};
use pmd_core::ethdev::{QueueStats, RxQueue, TxQueue};
use pmd_core::intr::{Armed, IntrError};
use pmd_core::mbuf::{PktBatch, BATCH_CAPACITY, HEADROOM};
use pmd_core::mempool::Mempool;
use std::sync::Arc;

/// Smallest frame we transmit (an Ethernet header).
const ETH_HLEN: usize = libc::ETH_HLEN as usize;
/// Bursts between two reads of the kernel's drop counters (`XDP_STATISTICS`, one
/// syscall): rare enough to cost nothing even when polling an idle queue.
pub(crate) const STATS_EVERY: u32 = 1 << 16;
/// Descriptors the kernel sends per `sendto` in copy mode (`TX_BATCH_SIZE` in
/// net/xdp/xsk.c); a longer backlog takes more kicks.
const KERNEL_TX_BATCH: u32 = 32;

/// The bounds an rx descriptor from the kernel must keep.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RxLimits {
    /// End of the rx frames (UMEM address): frames below it are this queue's.
    pub rx_end: u64,
    /// UMEM frame size (a power of two).
    pub frame_size: u64,
    /// Largest packet an mbuf of the queue's pool holds.
    pub room: usize,
}

/// What an rx descriptor is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RxDesc {
    /// A packet to deliver; the frame (its start) goes back to the fill ring after.
    Good(u64),
    /// One of our frames, but the length is unusable (0, past the frame, or longer than
    /// an mbuf): drop the packet, recycle the frame.
    Bad(u64),
    /// Not one of our rx frames: drop it, recycle nothing.
    Foreign,
}

impl RxLimits {
    #[inline(always)]
    pub(crate) fn check(&self, d: &XdpDesc) -> RxDesc {
        let offset = d.addr & (self.frame_size - 1);
        let frame = d.addr - offset;
        if frame >= self.rx_end {
            return RxDesc::Foreign;
        }
        let len = u64::from(d.len);
        if len == 0 || len as usize > self.room || offset + len > self.frame_size {
            return RxDesc::Bad(frame);
        }
        RxDesc::Good(frame)
    }
}

/// An rx queue: copies frames from the socket's rx ring into mbufs.
pub struct AfXdpRxQueue {
    rings: Option<RxRings>,
    xsk: Arc<Xsk>,
    pool: Mempool,
    stats: Arc<QueueStats>,
    port: u16,
    /// What an rx descriptor may point at.
    limits: RxLimits,
    bursts: u32,
    /// Kernel drops already reported as missed.
    reported_drops: u64,
    /// Preferred busy polling is on: each burst drives the NAPI context first.
    busy_poll: bool,
}

impl std::fmt::Debug for AfXdpRxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfXdpRxQueue")
            .field("xsk", &self.xsk)
            .finish()
    }
}

impl AfXdpRxQueue {
    /// Takes the rx half of `xsk`; `None` if another rx queue holds it.
    pub(crate) fn new(
        xsk: Arc<Xsk>,
        port: u16,
        pool: Mempool,
        stats: Arc<QueueStats>,
    ) -> Option<AfXdpRxQueue> {
        let rings = xsk.take_rx()?;
        let u = xsk.umem();
        let limits = RxLimits {
            rx_end: u.frame_addr(u.rx_frames()),
            frame_size: u64::from(u.frame_size()),
            room: usize::from(pool.buf_size()).saturating_sub(usize::from(HEADROOM)),
        };
        Some(AfXdpRxQueue {
            busy_poll: xsk.busy_budget() > 0,
            limits,
            reported_drops: kernel_drops(&xsk),
            rings: Some(rings),
            xsk,
            pool,
            stats,
            port,
            bursts: 0,
        })
    }

    /// Reports drops the kernel counted since the last look as missed packets.
    #[cold]
    fn account_kernel_drops(&mut self) {
        let total = kernel_drops(&self.xsk);
        if total > self.reported_drops {
            self.stats.add_missed(total - self.reported_drops);
            self.reported_drops = total;
        }
    }
}

/// Packets the kernel dropped on this socket's rx side (no fill frame, rx ring full).
fn kernel_drops(xsk: &Xsk) -> u64 {
    xsk.statistics()
        .map(|s| s.rx_dropped + s.rx_ring_full)
        .unwrap_or(0)
}

impl RxQueue for AfXdpRxQueue {
    /// The XDP socket is the interrupt: readable while its rx ring holds descriptors
    /// (level-triggered). Arming puts stashed frames back on the fill ring and wakes the
    /// kernel if it asked, so it has buffers to receive into while we sleep.
    fn has_intr(&self) -> bool {
        true
    }

    fn intr_enable(&mut self) -> Result<Armed, IntrError> {
        let Some(r) = self.rings.as_mut() else {
            return Ok(Armed::Sleep);
        };
        if r.rx.ready(1) > 0 {
            return Ok(Armed::Ready);
        }
        if !r.stash.is_empty() {
            let lost = r.refill(&[]);
            self.stats.add_errors(lost);
        }
        if r.fill.needs_wakeup() {
            wake_rx(&self.xsk);
        }
        Ok(Armed::Sleep)
    }

    fn intr_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(self.xsk.as_fd())
    }

    fn rx_burst(&mut self, batch: &mut PktBatch, max: usize) -> usize {
        self.bursts = self.bursts.wrapping_add(1);
        if self.bursts.is_multiple_of(STATS_EVERY) {
            self.account_kernel_drops();
        }
        let Some(r) = self.rings.as_mut() else {
            return 0;
        };
        if self.busy_poll {
            busy_poll(&self.xsk);
        }
        let max = max.min(batch.spare()).min(BATCH_CAPACITY);
        let n = r.rx.ready(max as u32) as usize;
        if n == 0 {
            if !r.stash.is_empty() {
                let lost = r.refill(&[]);
                self.stats.add_errors(lost);
            }
            if r.fill.needs_wakeup() {
                wake_rx(&self.xsk);
            }
            return 0;
        }
        let got = take_rx(
            r,
            self.limits,
            self.xsk.umem(),
            &self.pool,
            batch,
            n,
            self.port,
        );
        if r.fill.needs_wakeup() {
            wake_rx(&self.xsk);
        }
        if got.used > 0 {
            self.stats.add(got.used as u64, got.bytes);
        }
        if got.no_mbuf > 0 {
            self.stats.add_no_mbuf(got.no_mbuf);
        }
        if got.errors > 0 {
            self.stats.add_errors(got.errors);
        }
        got.used
    }
}

/// What one pass over the rx ring did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RxTaken {
    /// Packets delivered into the batch.
    pub used: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Descriptors refused (and frames lost for a full stash).
    pub errors: u64,
    /// Good packets dropped for want of mbufs.
    pub no_mbuf: u64,
}

/// Takes the `n` ready rx descriptors (`n` from `r.rx.ready`): copies the good ones into
/// mbufs from `pool` appended to `batch`, releases all `n` and hands their frames back on
/// the fill ring. Without mbufs for all `n`, every packet is dropped (counted in
/// `no_mbuf`) and the frames still go back.
#[inline(always)]
pub(crate) fn take_rx(
    r: &mut RxRings,
    limits: RxLimits,
    umem: &Umem,
    pool: &Mempool,
    batch: &mut PktBatch,
    n: usize,
    port: u16,
) -> RxTaken {
    let start = batch.len();
    let mut fill = [0u64; BATCH_CAPACITY];
    let mut nfill = 0usize;
    let Some(mbufs) = pool.alloc_bulk(batch, n) else {
        // No buffers to copy these frames into: give their frames back to the fill ring
        // and count each lost packet once (left on the rx ring, every later poll would
        // count them again).
        let (mut lost, mut errors) = (0u64, 0u64);
        for i in 0..n {
            let d = r.rx.get(i as u32);
            match limits.check(&d) {
                RxDesc::Good(frame) => {
                    fill[nfill] = frame;
                    nfill += 1;
                    lost += 1;
                }
                RxDesc::Bad(frame) => {
                    log_rejected(&d);
                    fill[nfill] = frame;
                    nfill += 1;
                    errors += 1;
                }
                RxDesc::Foreign => {
                    log_rejected(&d);
                    errors += 1;
                }
            }
        }
        r.rx.release(n as u32);
        errors += r.refill(&fill[..nfill]);
        return RxTaken {
            errors,
            no_mbuf: lost,
            ..RxTaken::default()
        };
    };
    let (mut used, mut bytes, mut errors) = (0usize, 0u64, 0u64);
    for i in 0..n {
        let d = r.rx.get(i as u32);
        let frame = match limits.check(&d) {
            RxDesc::Good(frame) => frame,
            RxDesc::Bad(frame) => {
                log_rejected(&d);
                fill[nfill] = frame;
                nfill += 1;
                errors += 1;
                continue;
            }
            RxDesc::Foreign => {
                log_rejected(&d);
                errors += 1;
                continue;
            }
        };
        fill[nfill] = frame;
        nfill += 1;
        let len = d.len as usize;
        let m = &mut mbufs[used];
        if !m.set_len(len) || !umem.copy_out(d.addr, m.data_mut()) {
            errors += 1; // cannot happen after `check`
            continue;
        }
        m.set_port(port);
        used += 1;
        bytes += len as u64;
    }
    r.rx.release(n as u32);
    errors += r.refill(&fill[..nfill]);
    batch.truncate(start + used);
    RxTaken {
        used,
        bytes,
        errors,
        no_mbuf: 0,
    }
}

#[cold]
fn log_rejected(d: &XdpDesc) {
    tracing::debug!(
        "net_af_xdp: rx descriptor rejected: addr {:#x} len {}",
        d.addr,
        d.len
    );
}

/// Preferred busy polling: one `recvfrom` runs the queue's NAPI poll here, up to the
/// budget, filling the rx ring (and taking the fill ring's frames) before the burst reads
/// it. One system call per burst, not per packet.
#[inline]
fn busy_poll(xsk: &Xsk) {
    KickCounters::bump(&xsk.kicks.busy_polls);
    // Errors (e.g. EAGAIN) only mean nothing was there; the burst reads the ring anyway.
    let _ = sys::kick_rx(xsk.fd());
}

/// The kernel asked for a wake-up to refill from the fill ring (zero-copy drivers).
#[cold]
fn wake_rx(xsk: &Xsk) {
    KickCounters::bump(&xsk.kicks.rx);
    // Errors (e.g. ENETDOWN) only mean nothing happened; the next burst retries.
    let _ = sys::kick_rx(xsk.fd());
}

impl Drop for AfXdpRxQueue {
    fn drop(&mut self) {
        if let Some(r) = self.rings.take() {
            self.xsk.put_rx(r);
        }
    }
}

/// Where the tx frames are: the UMEM addresses a completion may carry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TxFrames {
    /// First tx frame.
    pub start: u64,
    /// End of the UMEM.
    pub end: u64,
    /// Frame size.
    pub size: u64,
    /// Number of tx frames (the most the free list may hold).
    pub count: usize,
}

impl TxFrames {
    /// Whether `a` is the start of one of the tx frames (what we post, so what a
    /// completion must carry).
    #[inline(always)]
    pub(crate) fn owns(self, a: u64) -> bool {
        a >= self.start && a < self.end && a.is_multiple_of(self.size)
    }

    /// Index of tx frame `a` (one that [`TxFrames::owns`]) in [`TxRings::sent`].
    #[inline(always)]
    fn index(self, a: u64) -> usize {
        ((a - self.start) / self.size) as usize
    }

    /// Moves every completed frame back to the free list; returns bad completions (not
    /// a tx frame, or one not in flight).
    #[inline(always)]
    pub(crate) fn reclaim(self, r: &mut TxRings) -> u64 {
        let n = r.comp.ready(r.comp.size());
        let mut errors = 0;
        for i in 0..n {
            let a = r.comp.get(i);
            let sent = if self.owns(a) {
                r.sent.get_mut(self.index(a)).filter(|s| **s)
            } else {
                None
            };
            match sent {
                Some(s) if r.free.len() < self.count => {
                    *s = false;
                    r.free.push(a);
                }
                _ => errors += 1,
            }
        }
        if n > 0 {
            r.comp.release(n);
        }
        errors
    }
}

/// A tx queue: copies packets into free UMEM frames and posts them on the tx ring.
pub struct AfXdpTxQueue {
    rings: Option<TxRings>,
    xsk: Arc<Xsk>,
    stats: Arc<QueueStats>,
    frames: TxFrames,
}

impl std::fmt::Debug for AfXdpTxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfXdpTxQueue")
            .field("xsk", &self.xsk)
            .finish()
    }
}

impl AfXdpTxQueue {
    /// Takes the tx half of `xsk`; `None` if another tx queue holds it.
    pub(crate) fn new(xsk: Arc<Xsk>, stats: Arc<QueueStats>) -> Option<AfXdpTxQueue> {
        let rings = xsk.take_tx()?;
        let u = xsk.umem();
        let frames = TxFrames {
            start: u.frame_addr(u.rx_frames()),
            end: u.len(),
            size: u64::from(u.frame_size()),
            count: (u.len() / u64::from(u.frame_size())) as usize - u.rx_frames() as usize,
        };
        Some(AfXdpTxQueue {
            rings: Some(rings),
            xsk,
            stats,
            frames,
        })
    }
}

/// Kicks the kernel until it has taken what the tx ring holds (copy mode sends a bounded
/// batch per call), or it reports it cannot go on now; returns 1 on an unexpected error.
#[cold]
fn kick_tx(xsk: &Xsk, r: &mut TxRings) -> u64 {
    let mut budget = r.tx.pending() / KERNEL_TX_BATCH + 2;
    loop {
        KickCounters::bump(&xsk.kicks.tx);
        match sys::kick_tx(xsk.fd()) {
            Ok(()) => return 0,
            Err(e) => match e.raw_os_error() {
                // More waiting than one call sends, a dropped frame, or a signal.
                Some(libc::EAGAIN | libc::EBUSY | libc::EINTR) => {
                    budget -= 1;
                    if budget == 0 || r.tx.pending() == 0 {
                        return 0;
                    }
                }
                // Out of socket buffers or link down: the frames wait for the next burst.
                Some(libc::ENOBUFS | libc::ENETDOWN | libc::ENXIO) => return 0,
                _ => {
                    log_kick_error(&e);
                    return 1;
                }
            },
        }
    }
}

/// Kicks when something waits in the tx ring, or when we ran out of frames (their
/// completions may need the kernel to run) -- and only if the kernel asks for it. Returns
/// the errors to count.
#[inline]
fn kick_if_needed(xsk: &Xsk, frames: TxFrames, r: &mut TxRings) -> u64 {
    let starved = r.free.is_empty();
    let mut errors = 0;
    if (starved || r.tx.pending() > 0) && r.tx.needs_wakeup() {
        errors += kick_tx(xsk, r);
        if starved {
            errors += frames.reclaim(r);
        }
    }
    errors
}

#[cold]
fn log_kick_error(e: &std::io::Error) {
    tracing::debug!("net_af_xdp: tx kick failed: {e}");
}

impl TxQueue for AfXdpTxQueue {
    /// Returns how many packets left the batch: those posted plus those dropped as
    /// invalid (shorter than an Ethernet header or longer than a frame; counted as errors).
    fn tx_burst(&mut self, batch: &mut PktBatch) -> usize {
        if batch.is_empty() {
            return 0;
        }
        let frames = self.frames;
        let Some(r) = self.rings.as_mut() else {
            return 0;
        };
        let mut errors = frames.reclaim(r);
        let put = post_tx(r, frames, self.xsk.umem(), batch);
        errors += put.errors;
        let (posted, consumed, bytes) = (put.posted, put.consumed, put.bytes);
        errors += kick_if_needed(&self.xsk, frames, r);
        batch.free_front(consumed);
        if posted > 0 {
            self.stats.add(u64::from(posted), bytes);
        }
        if errors > 0 {
            self.stats.add_errors(errors);
        }
        consumed
    }

    /// Takes back the frames the kernel completed and kicks it if frames still wait in the
    /// tx ring (a kick that stopped early) and it asks for a wakeup.
    fn flush(&mut self) {
        let frames = self.frames;
        let Some(r) = self.rings.as_mut() else {
            return;
        };
        let errors = frames.reclaim(r) + kick_if_needed(&self.xsk, frames, r);
        if errors > 0 {
            self.stats.add_errors(errors);
        }
    }
}

/// What one tx burst put on the tx ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TxPosted {
    /// Packets copied into frames and posted (published with one index update).
    pub posted: u32,
    /// Packets that left the batch: posted, or dropped as invalid.
    pub consumed: usize,
    /// Bytes posted.
    pub bytes: u64,
    /// Packets dropped as invalid (shorter than an Ethernet header, longer than a frame).
    pub errors: u64,
}

/// Copies the packets at the front of `batch` into free tx frames and posts them, as many
/// as frames and tx ring slots allow; packets no frame can hold are dropped. The caller
/// frees the first `consumed` packets of the batch.
#[inline(always)]
pub(crate) fn post_tx(
    r: &mut TxRings,
    frames: TxFrames,
    umem: &Umem,
    batch: &PktBatch,
) -> TxPosted {
    let mut errors = 0;
    let want = batch.len().min(r.free.len()) as u32;
    let slots = r.tx.free(want);
    let (mut posted, mut consumed, mut bytes) = (0u32, 0usize, 0u64);
    for m in batch.iter() {
        let plen = m.len();
        if plen < ETH_HLEN || plen as u64 > frames.size {
            errors += 1;
            consumed += 1;
            continue;
        }
        if posted == slots {
            break;
        }
        let Some(addr) = r.free.pop() else { break };
        // A chain is copied segment by segment into the one frame.
        let copied = if m.is_contiguous() {
            umem.copy_in(addr, m.data())
        } else {
            let mut ok = true;
            let _ = m.for_each_chunk(0, plen, |piece, at| {
                ok &= umem.within_frame(addr, at + piece.len())
                    && umem.copy_in(addr + at as u64, piece);
            });
            ok
        };
        if !copied {
            // Cannot happen (length checked, frame ours); drop rather than stall.
            r.free.push(addr);
            errors += 1;
            consumed += 1;
            continue;
        }
        r.tx.set(
            posted,
            XdpDesc {
                addr,
                len: plen as u32,
                options: 0,
            },
        );
        if let Some(s) = r.sent.get_mut(frames.index(addr)) {
            *s = true;
        }
        posted += 1;
        consumed += 1;
        bytes += plen as u64;
    }
    if posted > 0 {
        r.tx.submit(posted);
    }
    TxPosted {
        posted,
        consumed,
        bytes,
        errors,
    }
}

impl Drop for AfXdpTxQueue {
    fn drop(&mut self) {
        if let Some(r) = self.rings.take() {
            self.xsk.put_tx(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(addr: u64, len: u32) -> XdpDesc {
        XdpDesc {
            addr,
            len,
            options: 0,
        }
    }

    #[test]
    fn rx_descriptors_from_the_kernel_are_bounded() {
        // 4 rx frames of 2048 bytes; mbufs hold 2048 bytes.
        let l = RxLimits {
            rx_end: 4 * 2048,
            frame_size: 2048,
            room: 2048,
        };
        assert_eq!(l.check(&desc(256, 60)), RxDesc::Good(0));
        assert_eq!(l.check(&desc(3 * 2048 + 256, 1792)), RxDesc::Good(3 * 2048));
        assert_eq!(l.check(&desc(2048, 2048)), RxDesc::Good(2048));
        // Past the frame end, empty, or longer than an mbuf: drop, but recycle the frame.
        assert_eq!(l.check(&desc(2048 + 256, 1793)), RxDesc::Bad(2048));
        assert_eq!(l.check(&desc(256, 0)), RxDesc::Bad(0));
        assert_eq!(l.check(&desc(256, u32::MAX)), RxDesc::Bad(0));
        let small = RxLimits { room: 100, ..l };
        assert_eq!(small.check(&desc(256, 101)), RxDesc::Bad(0));
        // Tx frames, beyond the UMEM, absurd addresses: not ours.
        assert_eq!(l.check(&desc(4 * 2048, 60)), RxDesc::Foreign);
        assert_eq!(l.check(&desc(1 << 40, 60)), RxDesc::Foreign);
        assert_eq!(l.check(&desc(u64::MAX, 60)), RxDesc::Foreign);
    }

    #[test]
    fn completions_must_be_our_tx_frames() {
        let t = TxFrames {
            start: 4 * 2048,
            end: 8 * 2048,
            size: 2048,
            count: 4,
        };
        assert!(t.owns(4 * 2048));
        assert!(t.owns(7 * 2048));
        assert!(!t.owns(3 * 2048), "an rx frame");
        assert!(!t.owns(8 * 2048), "past the end");
        assert!(!t.owns(4 * 2048 + 1), "not a frame start");
        assert!(!t.owns(u64::MAX));
    }
}
