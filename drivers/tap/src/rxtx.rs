//! The data path: one `read` (`readv` when scattering) per received frame, one `write`
//! (`writev` for a chain) per sent frame (a tap has no batch interface), straight between
//! the tap fd and mbuf data.

use crate::sys;
use pmd_core::ethdev::{QueueStats, RxOffloads, RxQueue, RxQueueConf, TxQueue};
use pmd_core::intr::{Armed, IntrError};
use pmd_core::mbuf::{Mbuf, PktBatch, HEADROOM, RX_LRO, TX_IP_CKSUM};
use pmd_core::mempool::Mempool;
use pmd_core::vnet::{self, RxProcessor, VnetError, VnetHdr, VnetStats, VNET_HDR_LEN};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Smallest frame a tap accepts (an Ethernet header); the kernel rejects shorter writes.
const ETH_HLEN: usize = libc::ETH_HLEN as usize;
/// Mbufs taken from the pool at a time into an rx queue's stash.
const STASH_REFILL: usize = 32;

/// One queue's tap fd (one per queue pair on a multi-queue tap), shared by the device and
/// the queues that use it, so it stays open as long as any of them does.
#[derive(Debug)]
pub(crate) struct TapFd {
    fd: OwnedFd,
}

impl TapFd {
    /// Wraps an fd attached to the interface.
    pub fn new(fd: OwnedFd) -> TapFd {
        TapFd { fd }
    }

    /// The fd, for ioctls.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

/// The vnet state of an rx queue whose tap has `IFF_VNET_HDR`.
struct VnetRx {
    /// Where each read puts the frame's header (the first buffer of the read).
    hdr: [u8; VNET_HDR_LEN],
    proc: RxProcessor,
    /// Segments of a super-frame cut in software that did not fit the burst (never more
    /// than its capacity, [`vnet::MAX_SW_SEGS`], so it never grows).
    pending: VecDeque<Mbuf>,
}

/// An rx queue: reads frames from its tap fd into mbufs until the fd is empty (`EAGAIN`)
/// or the burst is full.
///
/// Buffers come from a small stash refilled from the pool in bulk, so an empty poll (one
/// `readv` that returns `EAGAIN`) allocates and frees nothing.
///
/// Each read is one `readv` into the head mbuf's data room, then (with
/// [`RxOffloads::SCATTER`]) a set of spare segments kept ready for the port's largest frame,
/// then one overflow byte. A frame that fits the head costs what a `read` costs; a larger
/// one takes the spares it filled as a chain, and the set is topped up from the pool. The
/// tap returns the bytes it copied, not the frame's length, so the overflow byte is what
/// tells a frame that did not fit from one that filled the buffers exactly: such a frame
/// (larger than one buffer without scatter, or than every buffer offered) is dropped and
/// counted as an rx error, never delivered cut short.
pub struct TapRxQueue {
    fd: Arc<TapFd>,
    pool: Mempool,
    stash: PktBatch,
    stats: Arc<QueueStats>,
    port: u16,
    /// The `iovec` array of each read: the vnet header if any, the head, each spare in
    /// fill order, last `overflow`.
    iov: sys::IoVecs,
    /// The byte after every buffer offered.
    overflow: [u8; 1],
    /// Scatter state, with [`RxOffloads::SCATTER`] (or super-frames to take).
    sg: Option<Scatter>,
    /// With vnet headers: the header buffer, what to do with it, pending segments.
    vnet: Option<VnetRx>,
}

/// The spare segments of a scattering rx queue.
struct Scatter {
    /// Spare segments, each set to its whole data room, in reverse order of use (the next
    /// to fill is the last).
    spares: Vec<Mbuf>,
    /// Data room of one segment.
    seg_room: usize,
    /// The largest frame the spares are sized for.
    cap_frame: usize,
    /// The port's largest frame now (the device raises it when the MTU grows).
    limit: Arc<AtomicU32>,
}

impl Scatter {
    /// Tops the spare set up to what the current limit needs beside a head of `head_room`
    /// bytes (allocating only what was used since the last call). False if the pool ran
    /// dry (nothing may be read then).
    fn refill(&mut self, pool: &Mempool, head_room: usize) -> bool {
        let limit = self.limit.load(Ordering::Relaxed) as usize;
        if limit > self.cap_frame {
            self.cap_frame = limit;
        }
        let want = self
            .cap_frame
            .saturating_sub(head_room)
            .div_ceil(self.seg_room)
            .min(sys::IOV_MAX - 3);
        while self.spares.len() < want {
            let Some(mut m) = pool.alloc() else {
                return false;
            };
            let room = m.tailroom();
            m.set_len(room);
            self.spares.push(m);
        }
        true
    }

    /// Bytes the spares offer.
    fn spare_bytes(&self) -> usize {
        self.spares.len() * self.seg_room
    }
}

impl std::fmt::Debug for TapRxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapRxQueue")
            .field("fd", &self.fd)
            .field("port", &self.port)
            .field("scatter", &self.sg.is_some())
            .finish()
    }
}

impl TapRxQueue {
    /// `limit`: the port's largest frame, shared with the device (used with SCATTER).
    /// `vnet`: the tap has vnet headers; what to do with them. With `gso` the kernel
    /// hands over super-frames: the queue scatters and keeps room for them.
    pub(crate) fn new(
        fd: Arc<TapFd>,
        conf: RxQueueConf,
        limit: Arc<AtomicU32>,
        vnet: Option<RxProcessor>,
        gso: bool,
    ) -> TapRxQueue {
        let room = usize::from(conf.pool.buf_size()).saturating_sub(usize::from(HEADROOM));
        let scatter = conf.offloads.contains(RxOffloads::SCATTER) || gso;
        let cap_frame = if gso {
            (conf.max_rx_pktlen as usize).max(vnet::GSO_MAX_FRAME)
        } else {
            conf.max_rx_pktlen as usize
        };
        let sg = scatter.then(|| Scatter {
            spares: Vec::new(),
            seg_room: room.max(1),
            cap_frame,
            limit,
        });
        let vnet = vnet.map(|proc| VnetRx {
            hdr: [0u8; VNET_HDR_LEN],
            proc,
            pending: VecDeque::with_capacity(vnet::MAX_SW_SEGS),
        });
        TapRxQueue {
            fd,
            pool: conf.pool,
            stash: PktBatch::new(),
            stats: conf.stats,
            port: conf.port,
            iov: sys::IoVecs::with_capacity(if scatter { sys::IOV_MAX } else { 3 }),
            overflow: [0u8; 1],
            sg,
            vnet,
        }
    }

    /// Reads one frame into `m` (already set to its whole data room), the spares and the
    /// overflow byte; returns how many bytes the kernel copied.
    #[inline(always)]
    fn read_one(&mut self, fd: RawFd, m: &mut Mbuf) -> io::Result<usize> {
        let hdr = self.vnet.as_mut().map(|v| &mut v.hdr[..]);
        let spares = self
            .sg
            .iter_mut()
            .flat_map(|sg| sg.spares.iter_mut().rev().map(Mbuf::data_mut));
        let bufs = hdr
            .into_iter()
            .chain(std::iter::once(m.data_mut()))
            .chain(spares)
            .chain(std::iter::once(&mut self.overflow[..]));
        sys::readv(fd, &mut self.iov, bufs)
    }

    /// Reads and drops up to `n` frames waiting on `fd`, for want of buffers to receive
    /// them into (tap copies what fits the one overflow byte and drops the rest); returns
    /// how many, so that rx_nombuf counts each lost packet once however often it polls.
    #[cold]
    fn discard(&mut self, fd: RawFd, n: usize) -> u64 {
        let mut lost = 0u64;
        while lost < n as u64 {
            match sys::readv(fd, &mut self.iov, std::iter::once(&mut self.overflow[..])) {
                Ok(_) => lost += 1,
                Err(_) => break,
            }
        }
        lost
    }
}

impl RxQueue for TapRxQueue {
    /// The tap fd is the interrupt: readable while the queue holds a frame
    /// (level-triggered), so arming is only a look at the segments still pending here.
    fn has_intr(&self) -> bool {
        true
    }

    fn intr_enable(&mut self) -> Result<Armed, IntrError> {
        if self.vnet.as_ref().is_some_and(|v| !v.pending.is_empty()) {
            Ok(Armed::Ready)
        } else {
            Ok(Armed::Sleep)
        }
    }

    fn intr_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.fd.fd.as_fd())
    }

    fn rx_burst(&mut self, batch: &mut PktBatch, max: usize) -> usize {
        let fd = self.fd.fd.as_raw_fd();
        let max = max.min(batch.spare());
        let mut got = 0usize;
        let mut bytes = 0u64;
        let mut errors = 0u64;
        // Segments of a super-frame cut in software go first.
        if let Some(v) = &mut self.vnet {
            while got < max {
                let Some(p) = v.pending.pop_front() else {
                    break;
                };
                bytes += p.len() as u64;
                got += 1;
                let _ = batch.push(p);
            }
        }
        while got < max {
            let Some(mut m) = self.stash.pop() else {
                if self
                    .pool
                    .alloc_bulk(&mut self.stash, STASH_REFILL)
                    .is_none()
                {
                    let lost = self.discard(fd, max - got);
                    self.stats.add_no_mbuf(lost);
                    break;
                }
                continue;
            };
            // The whole data room (stale bytes, about to be overwritten by the frame).
            let room = m.len() + m.tailroom();
            m.set_len(room);
            if let Some(sg) = &mut self.sg {
                if !sg.refill(&self.pool, room) {
                    m.set_len(0);
                    let _ = self.stash.push(m);
                    let lost = self.discard(fd, max - got);
                    self.stats.add_no_mbuf(lost);
                    break;
                }
            }
            let mut res = self.read_one(fd, &mut m);
            if let (Some(v), Ok(n)) = (&self.vnet, &mut res) {
                if *n < VNET_HDR_LEN {
                    v.proc.stats.count(VnetError::Short);
                    *n = 0; // a runt: dropped below
                } else {
                    *n -= VNET_HDR_LEN;
                }
            }
            let m = match res {
                Ok(n) if (ETH_HLEN..=room).contains(&n) => {
                    m.set_len(n);
                    m.set_port(self.port);
                    m
                }
                Ok(n)
                    if n > room
                        && self
                            .sg
                            .as_ref()
                            .is_some_and(|sg| n <= room + sg.spare_bytes()) =>
                {
                    // Scattered: the head is full, the spares it spilled into follow.
                    let sg = self.sg.as_mut().expect("checked above");
                    let mut left = n - room;
                    while left > 0 {
                        let Some(mut seg) = sg.spares.pop() else {
                            break;
                        };
                        let take = left.min(seg.len());
                        seg.set_len(take);
                        left -= take;
                        if let Err((_, seg)) = m.chain(seg) {
                            // Cannot happen (a few segments of a u16-sized frame).
                            drop(seg);
                        }
                    }
                    m.set_port(self.port);
                    m
                }
                Ok(_) => {
                    // Larger than the buffers offered (it reached the overflow byte) or a
                    // runt: dropped.
                    errors += 1;
                    m.set_len(0);
                    let _ = self.stash.push(m);
                    continue;
                }
                Err(e) => {
                    m.set_len(0);
                    let _ = self.stash.push(m);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted => continue,
                        _ => {
                            errors += 1;
                            break;
                        }
                    }
                }
            };
            match &mut self.vnet {
                None => {
                    bytes += m.len() as u64;
                    got += 1;
                    // Cannot fail: got < max <= the batch's spare room.
                    let _ = batch.push(m);
                }
                Some(v) => {
                    let h = VnetHdr::from_bytes(&v.hdr);
                    let pending = &mut v.pending;
                    let res = v.proc.process(&h, m, &self.pool, |p| {
                        if got < max {
                            bytes += p.len() as u64;
                            got += 1;
                            let _ = batch.push(p);
                        } else {
                            // Within capacity: check_rx bounds the segment count and
                            // `pending` is empty when a frame is read.
                            pending.push_back(p);
                        }
                    });
                    if res.is_err() {
                        errors += 1;
                    }
                }
            }
        }
        if got > 0 {
            self.stats.add(got as u64, bytes);
        }
        if errors > 0 {
            self.stats.add_errors(errors);
        }
        got
    }
}

/// A tx queue: one `write` per frame (the kernel has no batched write for a tap); a chain
/// goes out whole with one `writev` of its segments.
pub struct TapTxQueue {
    fd: Arc<TapFd>,
    stats: Arc<QueueStats>,
    /// The `writev` array, allocated once.
    iov: sys::IoVecs,
    /// With vnet headers: the offload state.
    vnet: Option<VnetTx>,
    /// The device's vnet counters (also counted without vnet headers: refused super-frames).
    vstats: Arc<VnetStats>,
}

/// The vnet state of a tx queue whose tap has `IFF_VNET_HDR`.
#[derive(Debug)]
pub(crate) struct VnetTx {
    /// Received super-frames (`RX_LRO` + `tso_segsz`) go out as GSO frames (the queue
    /// has `TCP_TSO`, or the device `gso=1`).
    pub tso: bool,
    /// The device's counters.
    pub stats: Arc<VnetStats>,
}

impl std::fmt::Debug for TapTxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapTxQueue").field("fd", &self.fd).finish()
    }
}

impl TapTxQueue {
    pub(crate) fn new(
        fd: Arc<TapFd>,
        stats: Arc<QueueStats>,
        vnet: Option<VnetTx>,
        vstats: Arc<VnetStats>,
    ) -> TapTxQueue {
        TapTxQueue {
            fd,
            stats,
            iov: sys::IoVecs::with_capacity(sys::IOV_MAX),
            vnet,
            vstats,
        }
    }
}

/// A received super-frame (`RX_LRO` with `tso_segsz`, larger than one segment): without
/// vnet headers it would reach the kernel as one oversized frame with a partial checksum.
fn is_super_frame(m: &Mbuf) -> bool {
    let t = m.tx_offload();
    m.ol_flags() & RX_LRO != 0
        && t.tso_segsz > 0
        && m.len()
            > usize::from(t.l2_len)
                + usize::from(t.l3_len)
                + usize::from(t.l4_len)
                + usize::from(t.tso_segsz)
}

impl TxQueue for TapTxQueue {
    /// Returns how many packets left the batch: those written plus those dropped as invalid
    /// (shorter than an Ethernet header, more than [`crate::TX_MAX_SEGS`] segments, or
    /// refused by the kernel, e.g. while the interface is down; counted as errors). Stops at `EAGAIN`/`ENOBUFS`, leaving the rest.
    fn tx_burst(&mut self, batch: &mut PktBatch) -> usize {
        let fd = self.fd.fd.as_raw_fd();
        let mut consumed = 0usize;
        let mut sent = 0u64;
        let mut bytes = 0u64;
        let mut errors = 0u64;
        let mut iter = batch.iter_mut();
        let mut next = iter.next();
        while let Some(m) = next.as_deref_mut() {
            let len = m.len();
            // The vnet header in front of the frame, if the tap takes one.
            let mut hdr = [0u8; VNET_HDR_LEN];
            let bad = match &self.vnet {
                _ if len < ETH_HLEN => true,
                None if is_super_frame(m) => {
                    self.vstats
                        .tx_offload_errors
                        .fetch_add(1, Ordering::Relaxed);
                    true
                }
                None => false,
                Some(v) => match vnet::tx_header(m, v.tso) {
                    Some(h) => {
                        let gso = h.gso_type != vnet::GSO_NONE;
                        if m.ol_flags() & TX_IP_CKSUM != 0
                            && !gso
                            && !pmd_core::vnet::ip_checksum_for_kernel(m)
                        {
                            v.stats.tx_offload_errors.fetch_add(1, Ordering::Relaxed);
                            true
                        } else {
                            if gso {
                                v.stats.tx_gso_packets.fetch_add(1, Ordering::Relaxed);
                            } else if h.flags != 0 {
                                v.stats.tx_csum_packets.fetch_add(1, Ordering::Relaxed);
                            }
                            hdr = h.to_bytes();
                            false
                        }
                    }
                    None => {
                        v.stats.tx_offload_errors.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                },
            };
            if bad {
                errors += 1;
            } else {
                let res = if self.vnet.is_some() {
                    sys::writev(
                        fd,
                        &mut self.iov,
                        std::iter::once(&hdr[..]).chain(m.segments()),
                    )
                } else if m.is_contiguous() {
                    sys::write(fd, m.data())
                } else {
                    sys::writev(fd, &mut self.iov, m.segments())
                };
                match res {
                    Ok(_) => {
                        sent += 1;
                        bytes += len as u64;
                    }
                    Err(e) => match e.kind() {
                        io::ErrorKind::Interrupted => continue,
                        io::ErrorKind::WouldBlock => break,
                        _ if e.raw_os_error() == Some(libc::ENOBUFS) => break,
                        _ => errors += 1,
                    },
                }
            }
            consumed += 1;
            next = iter.next();
        }
        batch.free_front(consumed);
        if sent > 0 {
            self.stats.add(sent, bytes);
        }
        if errors > 0 {
            self.stats.add_errors(errors);
        }
        consumed
    }

    /// As [`pmd_core::offload::prepare`], except that a TSO packet's TCP checksum field
    /// gets the pseudo-header sum *with* the L4 length: the kernel's segmentation (unlike
    /// a NIC's) adjusts that sum per segment.
    fn tx_prepare(&mut self, batch: &mut PktBatch) -> usize {
        pmd_core::vnet::prepare_batch_for_kernel(batch)
    }
}
