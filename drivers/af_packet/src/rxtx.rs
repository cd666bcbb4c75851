//! The data path: [`AfPacketRxQueue`] and [`AfPacketTxQueue`].

use crate::socket::PacketSocket;
use crate::sys::{self, Dir, RxFrameHdr};
use pmd_core::ethdev::{QueueStats, RxOffloads, RxQueue, TxOffloads, TxQueue};
use pmd_core::intr::{Armed, IntrError};
use pmd_core::mbuf::{Mbuf, PktBatch, RX_VLAN, RX_VLAN_STRIPPED, TX_IP_CKSUM, TX_QINQ, TX_VLAN};
use pmd_core::mempool::Mempool;
use pmd_core::offload::{TPID_8021AD, TPID_8021Q};
use pmd_core::vnet::{self, RxProcessor, VnetHdr, VnetStats, VNET_HDR_LEN};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Receive offloads that need vnet headers (the kernel's checksum and GSO metadata).
pub const RX_VNET: RxOffloads =
    RxOffloads(RxOffloads::TCP_LRO.0 | RxOffloads::TCP_CKSUM.0 | RxOffloads::UDP_CKSUM.0);
/// Transmit offloads that need vnet headers (the kernel completes checksums, segments;
/// `IPV4_CKSUM` is done in software on that path).
pub const TX_VNET: TxOffloads = TxOffloads(
    TxOffloads::TCP_TSO.0
        | TxOffloads::TCP_CKSUM.0
        | TxOffloads::UDP_CKSUM.0
        | TxOffloads::IPV4_CKSUM.0,
);

/// Why an rx frame was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RxReject {
    /// `tp_mac` points into the frame header.
    MacInHeader,
    /// `tp_mac + tp_snaplen` runs past the end of the frame.
    OutOfFrame,
    /// The packet was truncated (`tp_snaplen < tp_len`: frame too small).
    Truncated,
}

/// Checks an rx frame header against the frame size; returns the packet's (offset in
/// frame, length in the frame). `before`: bytes the kernel puts in front of the packet
/// (a virtio-net header), which must lie after the frame header too.
#[inline(always)]
pub(crate) fn validate_rx(
    h: &RxFrameHdr,
    frame_size: usize,
    before: usize,
) -> Result<(usize, usize), RxReject> {
    let off = h.mac as usize;
    let len = h.snaplen as usize;
    if off < sys::TPACKET2_HDRLEN + before {
        return Err(RxReject::MacInHeader);
    }
    if off.checked_add(len).is_none_or(|end| end > frame_size) {
        return Err(RxReject::OutOfFrame);
    }
    if len != h.len as usize {
        return Err(RxReject::Truncated);
    }
    Ok((off, len))
}

/// Offset of the EtherType (or of a VLAN tag) in an Ethernet frame.
const TAG_AT: usize = 12;

/// The 802.1Q/802.1ad tag the kernel took out of a received frame (`TP_STATUS_VLAN_VALID`),
/// as wire bytes: the TPID (`tp_vlan_tpid` when valid, else 0x8100), then the TCI.
#[inline(always)]
pub(crate) fn rx_tag(h: &RxFrameHdr) -> Option<[u8; 4]> {
    if h.status & sys::TP_STATUS_VLAN_VALID == 0 {
        return None;
    }
    let tpid = if h.status & sys::TP_STATUS_VLAN_TPID_VALID != 0 && h.vlan_tpid != 0 {
        h.vlan_tpid
    } else {
        TPID_8021Q
    };
    let [a, b] = tpid.to_be_bytes();
    let [c, d] = h.vlan_tci.to_be_bytes();
    Some([a, b, c, d])
}

/// A received packet as the application gets it: the frame's `len` bytes at `off`, with
/// `tag` (a VLAN tag the kernel removed) put back after the MAC addresses, so that the
/// packet equals the frame on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RxPacket {
    /// Offset of the packet in the ring frame.
    pub off: usize,
    /// Bytes of it in the ring frame.
    pub len: usize,
    /// Tag to re-insert at byte 12.
    pub tag: Option<[u8; 4]>,
}

impl RxPacket {
    /// The packet's length (with the tag).
    #[inline(always)]
    pub fn pkt_len(&self) -> usize {
        self.len + if self.tag.is_some() { 4 } else { 0 }
    }

    /// Copies the packet's bytes `at..at + dst.len()` into `dst`, taking frame bytes with
    /// `read(offset in frame, dst)`; false if a read fails or the range is past the end.
    #[inline(always)]
    pub fn read(&self, at: usize, dst: &mut [u8], read: impl Fn(usize, &mut [u8]) -> bool) -> bool {
        if at.checked_add(dst.len()).is_none_or(|e| e > self.pkt_len()) {
            return false;
        }
        let Some(tag) = self.tag else {
            return read(self.off + at, dst);
        };
        if self.len < TAG_AT {
            return false;
        }
        let mut at = at;
        let mut dst = dst;
        if at < TAG_AT && !dst.is_empty() {
            let n = (TAG_AT - at).min(dst.len());
            let (head, rest) = dst.split_at_mut(n);
            if !read(self.off + at, head) {
                return false;
            }
            at += n;
            dst = rest;
        }
        if at < TAG_AT + 4 && !dst.is_empty() {
            let n = (TAG_AT + 4 - at).min(dst.len());
            let (head, rest) = dst.split_at_mut(n);
            head.copy_from_slice(&tag[at - TAG_AT..at - TAG_AT + n]);
            at += n;
            dst = rest;
        }
        dst.is_empty() || read(self.off + at - 4, dst)
    }
}

/// Why a received frame could not be delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RxDrop {
    /// Malformed, too large without SCATTER, or a failed copy: an rx error.
    Error,
    /// The pool ran out of buffers for the segments of a chain.
    NoMbuf,
}

/// An rx queue: copies frames from the socket's rx ring into mbufs.
pub struct AfPacketRxQueue {
    sock: Arc<PacketSocket>,
    idx: u32,
    nframes: u32,
    frame_size: usize,
    room: usize,
    /// Frames larger than one buffer become chains (RxOffloads::SCATTER).
    scatter: bool,
    /// Keep the kernel's VLAN stripping (RxOffloads::VLAN_STRIP) instead of re-inserting.
    strip: bool,
    pool: Mempool,
    stats: Arc<QueueStats>,
    port: u16,
    /// With vnet headers (`PACKET_VNET_HDR`): what to do with them.
    vnet: Option<VnetRx>,
}

/// The vnet state of an rx queue whose socket has `PACKET_VNET_HDR`.
#[derive(Debug)]
pub(crate) struct VnetRx {
    /// The checks of the untrusted header and their effect (LRO or software segmentation).
    proc: RxProcessor,
    /// Segments of a super-frame cut in software that did not fit the burst: at most one
    /// frame's ([`vnet::MAX_SW_SEGS`], its capacity, so it never grows), as no frame is
    /// taken while any wait.
    pending: VecDeque<Mbuf>,
}

impl VnetRx {
    /// The rx state for `proc`.
    pub(crate) fn new(proc: RxProcessor) -> VnetRx {
        VnetRx {
            proc,
            pending: VecDeque::with_capacity(vnet::MAX_SW_SEGS),
        }
    }
}

/// The header of a received frame, as read from the ring (`bytes`), for the packet as
/// delivered: a VLAN tag put back in front of the headers (`tagged`) moves every offset
/// by 4 (the kernel counts them without it). Saturating: an offset that would overflow
/// stays out of range and is refused by the checks.
#[inline(always)]
pub(crate) fn rx_vnet_header(bytes: &[u8; VNET_HDR_LEN], tagged: bool) -> VnetHdr {
    let mut h = VnetHdr::from_bytes(bytes);
    if tagged {
        if h.flags & vnet::F_NEEDS_CSUM != 0 {
            h.csum_start = h.csum_start.saturating_add(4);
        }
        if h.hdr_len != 0 {
            h.hdr_len = h.hdr_len.saturating_add(4);
        }
    }
    h
}

impl std::fmt::Debug for AfPacketRxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketRxQueue")
            .field("sock", &self.sock)
            .field("idx", &self.idx)
            .finish()
    }
}

impl AfPacketRxQueue {
    /// Takes the rx ring of `sock`; `None` if another rx queue holds it. `offloads`:
    /// SCATTER and VLAN_STRIP are honoured. `vnet`: what to do with the virtio-net
    /// headers of a socket that has them (then frames always scatter: super-frames
    /// exceed any buffer).
    pub(crate) fn new(
        sock: Arc<PacketSocket>,
        port: u16,
        pool: Mempool,
        stats: Arc<QueueStats>,
        offloads: RxOffloads,
        vnet: Option<RxProcessor>,
    ) -> Option<AfPacketRxQueue> {
        if sock.rx_claimed.swap(true, Ordering::Acquire) {
            return None;
        }
        let g = *sock.ring.geometry();
        let room =
            usize::from(pool.buf_size()).saturating_sub(usize::from(pmd_core::mbuf::HEADROOM));
        Some(AfPacketRxQueue {
            idx: sock.rx_next.load(Ordering::Relaxed),
            sock,
            nframes: g.frame_nr,
            frame_size: g.frame_size as usize,
            room,
            scatter: offloads.contains(RxOffloads::SCATTER) || vnet.is_some(),
            strip: offloads.contains(RxOffloads::VLAN_STRIP),
            vnet: vnet.map(VnetRx::new),
            pool,
            stats,
            port,
        })
    }

    #[inline(always)]
    fn next(&self, i: u32) -> u32 {
        if i + 1 == self.nframes {
            0
        } else {
            i + 1
        }
    }

    /// Copies the packet in rx frame `f` into `m` (its first `room` bytes) and, when it is
    /// longer and the queue scatters, into further segments from the pool.
    #[inline(always)]
    fn fill(&self, f: u32, p: &RxPacket, m: &mut Mbuf) -> Result<(), RxDrop> {
        let ring = &self.sock.ring;
        let read = |o: usize, d: &mut [u8]| ring.copy_from_rx(f, o, d);
        let total = p.pkt_len();
        if total > self.room && !self.scatter {
            return Err(RxDrop::Error);
        }
        let first = total.min(self.room);
        if !m.set_len(first) || !p.read(0, m.data_mut(), read) {
            return Err(RxDrop::Error);
        }
        if total > first {
            let tail = self.read_tail(f, p, first)?;
            m.chain(tail).map_err(|_| RxDrop::Error)?;
        }
        Ok(())
    }

    /// Reads the virtio-net header in front of the packet in rx frame `f` (at `off`) into
    /// `raw` and the packet into a pool buffer (a chain when larger).
    #[inline(always)]
    fn vnet_fill(
        &self,
        f: u32,
        off: usize,
        p: &RxPacket,
        raw: &mut [u8; VNET_HDR_LEN],
    ) -> Result<Mbuf, RxDrop> {
        // validate_rx checked off >= the frame headers + the vnet header.
        let at = off.checked_sub(VNET_HDR_LEN).ok_or(RxDrop::Error)?;
        if !self.sock.ring.copy_from_rx(f, at, raw) {
            return Err(RxDrop::Error);
        }
        let mut m = self.pool.alloc().ok_or(RxDrop::NoMbuf)?;
        self.fill(f, p, &mut m)?;
        Ok(m)
    }

    /// The bytes of the packet from `from` on, as a chain of pool buffers (built from the
    /// end, so that each link is one step); dropped whole on failure.
    #[cold]
    fn read_tail(&self, f: u32, p: &RxPacket, from: usize) -> Result<Mbuf, RxDrop> {
        let ring = &self.sock.ring;
        let read = |o: usize, d: &mut [u8]| ring.copy_from_rx(f, o, d);
        let total = p.pkt_len();
        let seg_room = self.room.max(1);
        let nseg = (total - from).div_ceil(seg_room);
        let mut acc: Option<Mbuf> = None;
        for k in (0..nseg).rev() {
            let start = from + k * seg_room;
            let end = (start + seg_room).min(total);
            let mut seg = self.pool.alloc().ok_or(RxDrop::NoMbuf)?;
            if !seg.set_len(end - start) || !p.read(start, seg.data_mut(), read) {
                return Err(RxDrop::Error);
            }
            if let Some(rest) = acc.take() {
                seg.chain(rest).map_err(|_| RxDrop::Error)?;
            }
            acc = Some(seg);
        }
        acc.ok_or(RxDrop::Error)
    }
}

impl AfPacketRxQueue {
    /// [`RxQueue::rx_burst`] with vnet headers: each frame's header is checked
    /// ([`vnet::check_rx`]) and applied (partial checksum completed, super-frame kept whole
    /// as `RX_LRO` or cut into segments); a refused header drops the frame, counted as an
    /// rx error and in the xstat of its kind. Frames are taken one at a time while the
    /// burst has room; segments beyond it wait for the next burst.
    fn rx_burst_vnet(&mut self, batch: &mut PktBatch, max: usize, mut v: VnetRx) -> usize {
        let max = max.min(batch.spare());
        let mut got = 0usize;
        let mut bytes = 0u64;
        let mut errors = 0u64;
        let mut no_mbuf = 0u64;
        while got < max {
            let Some(p) = v.pending.pop_front() else {
                break;
            };
            bytes += p.len() as u64;
            got += 1;
            let _ = batch.push(p);
        }
        let sock = &*self.sock;
        let ring = &sock.ring;
        let mut f = self.idx;
        while got < max && ring.status(Dir::Rx, f) & sys::TP_STATUS_USER != 0 {
            let h = ring.rx_header(f);
            if sock.ignore_outgoing || h.pkttype != sys::PACKET_OUTGOING {
                match validate_rx(&h, self.frame_size, VNET_HDR_LEN) {
                    Ok((off, len)) => {
                        let mut raw = [0u8; VNET_HDR_LEN];
                        let tag = rx_tag(&h);
                        let p = RxPacket {
                            off,
                            len,
                            tag: if self.strip { None } else { tag },
                        };
                        match self.vnet_fill(f, off, &p, &mut raw) {
                            Err(RxDrop::Error) => errors += 1,
                            Err(RxDrop::NoMbuf) => no_mbuf += 1,
                            Ok(mut m) => {
                                let vh = rx_vnet_header(&raw, p.tag.is_some());
                                m.set_port(self.port);
                                if self.strip && tag.is_some() {
                                    m.set_vlan_tci(h.vlan_tci);
                                    m.set_ol_flags(RX_VLAN | RX_VLAN_STRIPPED);
                                }
                                let pending = &mut v.pending;
                                let res = v.proc.process(&vh, m, &self.pool, |s| {
                                    if got < max {
                                        bytes += s.len() as u64;
                                        got += 1;
                                        let _ = batch.push(s);
                                    } else {
                                        pending.push_back(s);
                                    }
                                });
                                if res.is_err() {
                                    errors += 1;
                                }
                            }
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            ring.set_status(Dir::Rx, f, sys::TP_STATUS_KERNEL);
            f = self.next(f);
        }
        self.idx = f;
        self.vnet = Some(v);
        if got > 0 {
            self.stats.add(got as u64, bytes);
        }
        if errors > 0 {
            self.stats.add_errors(errors);
        }
        if no_mbuf > 0 {
            self.stats.add_no_mbuf(no_mbuf);
        }
        got
    }
}

impl RxQueue for AfPacketRxQueue {
    /// The socket itself is the interrupt: poll(2) reports it readable while the frame
    /// before the kernel's position in the rx ring is ours, level-triggered, so arming is
    /// only the look at the ring.
    fn has_intr(&self) -> bool {
        true
    }

    fn intr_enable(&mut self) -> Result<Armed, IntrError> {
        let pending = self.vnet.as_ref().is_some_and(|v| !v.pending.is_empty());
        if pending || self.sock.ring.status(Dir::Rx, self.idx) & sys::TP_STATUS_USER != 0 {
            Ok(Armed::Ready)
        } else {
            Ok(Armed::Sleep)
        }
    }

    fn intr_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.sock.as_fd())
    }

    fn rx_burst(&mut self, batch: &mut PktBatch, max: usize) -> usize {
        if let Some(v) = self.vnet.take() {
            return self.rx_burst_vnet(batch, max, v);
        }
        // Never more than the ring holds: counting must not wrap onto frames already counted.
        let max = max.min(batch.spare()).min(self.nframes as usize);
        let sock = &*self.sock;
        let ring = &sock.ring;

        // How many frames are ready (up to max)?
        let mut ready = 0usize;
        let mut i = self.idx;
        while ready < max && ring.status(Dir::Rx, i) & sys::TP_STATUS_USER != 0 {
            ready += 1;
            i = self.next(i);
        }
        if ready == 0 {
            return 0;
        }

        let start = batch.len();
        let Some(mbufs) = self.pool.alloc_bulk(batch, ready) else {
            // No buffers for these frames: hand them back to the kernel and count each
            // lost packet once (left on the ring, every later poll would count it again).
            let mut lost = 0u64;
            let mut f = self.idx;
            for _ in 0..ready {
                let h = ring.rx_header(f);
                if sock.ignore_outgoing || h.pkttype != sys::PACKET_OUTGOING {
                    lost += 1;
                }
                ring.set_status(Dir::Rx, f, sys::TP_STATUS_KERNEL);
                f = self.next(f);
            }
            self.idx = f;
            self.stats.add_no_mbuf(lost);
            return 0;
        };
        let mut used = 0usize;
        let mut bytes = 0u64;
        let mut errors = 0u64;
        let mut no_mbuf = 0u64;
        let mut f = self.idx;
        for _ in 0..ready {
            let h = ring.rx_header(f);
            if !sock.ignore_outgoing && h.pkttype == sys::PACKET_OUTGOING {
                // Our own (or the host's) transmission looped back: not received traffic.
            } else {
                match validate_rx(&h, self.frame_size, 0) {
                    Ok((off, len)) => {
                        let tag = rx_tag(&h);
                        let p = RxPacket {
                            off,
                            len,
                            tag: if self.strip { None } else { tag },
                        };
                        let m = &mut mbufs[used];
                        match self.fill(f, &p, m) {
                            Ok(()) => {
                                m.set_port(self.port);
                                if self.strip && tag.is_some() {
                                    m.set_vlan_tci(h.vlan_tci);
                                    m.set_ol_flags(RX_VLAN | RX_VLAN_STRIPPED);
                                }
                                used += 1;
                                bytes += m.len() as u64;
                            }
                            Err(RxDrop::Error) => errors += 1,
                            Err(RxDrop::NoMbuf) => no_mbuf += 1,
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            ring.set_status(Dir::Rx, f, sys::TP_STATUS_KERNEL);
            f = self.next(f);
        }
        self.idx = f;
        batch.truncate(start + used);

        if used > 0 {
            self.stats.add(used as u64, bytes);
        }
        if errors > 0 {
            self.stats.add_errors(errors);
        }
        if no_mbuf > 0 {
            self.stats.add_no_mbuf(no_mbuf);
        }
        used
    }
}

impl Drop for AfPacketRxQueue {
    fn drop(&mut self) {
        self.sock.rx_next.store(self.idx, Ordering::Relaxed);
        self.sock.rx_claimed.store(false, Ordering::Release);
    }
}

/// A tx queue: copies packets into the socket's tx ring and kicks the kernel.
pub struct AfPacketTxQueue {
    sock: Arc<PacketSocket>,
    idx: u32,
    nframes: u32,
    capacity: usize,
    /// The last kick stopped early (EAGAIN/ENOBUFS): frames wait for another kick.
    kick_pending: bool,
    stats: Arc<QueueStats>,
    /// With vnet headers (`PACKET_VNET_HDR`): the offload state.
    vnet: Option<VnetTx>,
}

/// The vnet state of a tx queue whose socket has `PACKET_VNET_HDR`.
#[derive(Debug)]
pub(crate) struct VnetTx {
    /// Received super-frames (`RX_LRO` + `tso_segsz`) go out as GSO frames (`TCP_TSO`).
    pub tso: bool,
    /// The device's counters.
    pub stats: Arc<VnetStats>,
}

impl VnetTx {
    /// The header to send `m` with, `ntag` tag bytes inserted after its MAC addresses
    /// (offsets move by as much); `None` (counted) when its offload requests do not fit
    /// its headers. A non-GSO IPv4 checksum request is done here in software: the kernel
    /// completes L4 checksums and segments, but never fills in an IPv4 header checksum.
    #[inline]
    fn header(&self, m: &mut Mbuf, ntag: usize) -> Option<[u8; VNET_HDR_LEN]> {
        let Some(mut h) = vnet::tx_header(m, self.tso) else {
            self.stats.tx_offload_errors.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let gso = h.gso_type != vnet::GSO_NONE;
        if m.ol_flags() & TX_IP_CKSUM != 0 && !gso && !pmd_core::vnet::ip_checksum_for_kernel(m) {
            self.stats.tx_offload_errors.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if gso {
            self.stats.tx_gso_packets.fetch_add(1, Ordering::Relaxed);
        } else if h.flags != 0 {
            self.stats.tx_csum_packets.fetch_add(1, Ordering::Relaxed);
        }
        if ntag > 0 {
            // ntag <= 8: these stay far below u16::MAX for headers parse_tcp accepted.
            if h.flags & vnet::F_NEEDS_CSUM != 0 {
                h.csum_start = h.csum_start.saturating_add(ntag as u16);
            }
            if h.hdr_len != 0 {
                h.hdr_len = h.hdr_len.saturating_add(ntag as u16);
            }
        }
        Some(h.to_bytes())
    }
}

impl std::fmt::Debug for AfPacketTxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketTxQueue")
            .field("sock", &self.sock)
            .field("idx", &self.idx)
            .finish()
    }
}

impl AfPacketTxQueue {
    /// Takes the tx ring of `sock`; `None` if another tx queue holds it. `vnet`: the
    /// offload state for a socket with vnet headers.
    pub(crate) fn new(
        sock: Arc<PacketSocket>,
        stats: Arc<QueueStats>,
        vnet: Option<VnetTx>,
    ) -> Option<AfPacketTxQueue> {
        if sock.tx_claimed.swap(true, Ordering::Acquire) {
            return None;
        }
        Some(AfPacketTxQueue {
            idx: sock.tx_next.load(Ordering::Relaxed),
            nframes: sock.ring.geometry().frame_nr,
            capacity: sock.ring.tx_capacity(),
            kick_pending: false,
            sock,
            stats,
            vnet,
        })
    }
}

impl TxQueue for AfPacketTxQueue {
    /// Returns how many packets left the batch: those queued to the kernel plus those
    /// dropped as invalid (shorter than an Ethernet header or longer than a frame holds,
    /// counted as errors). Every segment of a chain is copied; packets flagged `TX_VLAN`
    /// (`TX_QINQ`) get their tag(s) written after the MAC addresses on the way.
    fn tx_burst(&mut self, batch: &mut PktBatch) -> usize {
        if batch.is_empty() {
            return 0;
        }
        let ring = &self.sock.ring;
        let mut consumed = 0usize;
        let mut sent = 0u64;
        let mut bytes = 0u64;
        let mut errors = 0u64;
        let mut full = false;
        for m in batch.iter_mut() {
            let (tags, ntag) = tx_tags(m);
            let len = m.len() + ntag;
            // The virtio-net header in front of the frame, if the socket takes one.
            let mut hdr = [0u8; VNET_HDR_LEN];
            let hlen = if self.vnet.is_some() { VNET_HDR_LEN } else { 0 };
            if len < sys::ETH_HLEN
                || len + hlen > self.capacity
                || (ntag > 0 && m.data_len() < TAG_AT)
            {
                errors += 1;
                consumed += 1;
                continue;
            }
            let f = self.idx;
            match ring.status(Dir::Tx, f) {
                sys::TP_STATUS_AVAILABLE => {}
                sys::TP_STATUS_WRONG_FORMAT => errors += 1,
                _ => {
                    full = true;
                    break;
                }
            }
            if let Some(v) = &self.vnet {
                match v.header(m, ntag) {
                    Some(h) => hdr = h,
                    None => {
                        errors += 1;
                        consumed += 1;
                        continue;
                    }
                }
            }
            let head = std::iter::once(&hdr[..hlen]);
            let first = m.data();
            let filled = if ntag == 0 {
                ring.fill_tx_parts(f, hlen + len, head.chain(m.segments()))
            } else {
                let (mac, rest) = first.split_at(TAG_AT);
                let parts = [mac, &tags[..ntag], rest];
                ring.fill_tx_parts(f, hlen + len, head.chain(parts).chain(m.segments().skip(1)))
            };
            if !filled {
                // Cannot happen (length checked above); drop rather than stall.
                errors += 1;
                consumed += 1;
                continue;
            }
            ring.set_status(Dir::Tx, f, sys::TP_STATUS_SEND_REQUEST);
            self.idx = if f + 1 == self.nframes { 0 } else { f + 1 };
            consumed += 1;
            sent += 1;
            bytes += len as u64;
        }
        // Kick when we queued something, and also when the ring is full: an earlier kick
        // may have stopped early (EAGAIN/ENOBUFS) and nothing else would resume it.
        if sent > 0 || full || self.kick_pending {
            errors += self.kick();
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

    /// As [`pmd_core::offload::prepare`], except that with vnet headers a TSO packet's TCP
    /// checksum field gets the pseudo-header sum *with* the L4 length: the kernel's
    /// segmentation (unlike a NIC's) adjusts that sum per segment.
    fn tx_prepare(&mut self, batch: &mut PktBatch) -> usize {
        if self.vnet.is_some() {
            pmd_core::vnet::prepare_batch_for_kernel(batch)
        } else {
            pmd_core::offload::prepare_batch(batch)
        }
    }

    /// Kicks the kernel again if an earlier kick stopped early (EAGAIN/ENOBUFS): the
    /// frames it left in the ring go out.
    fn flush(&mut self) {
        if self.kick_pending {
            let errors = self.kick();
            if errors > 0 {
                self.stats.add_errors(errors);
            }
        }
    }
}

/// The VLAN tag(s) a packet asks to have inserted, as wire bytes, and their length:
/// `TX_VLAN` an 802.1Q tag with `vlan_tci`; `TX_QINQ` an 802.1ad tag with
/// `vlan_tci_outer` and the 802.1Q tag inside it (as `pmd_core::offload::vlan_insert`).
#[inline(always)]
fn tx_tags(m: &Mbuf) -> ([u8; 8], usize) {
    let flags = m.ol_flags();
    if flags & (TX_VLAN | TX_QINQ) == 0 {
        return ([0; 8], 0);
    }
    let [a, b] = TPID_8021Q.to_be_bytes();
    let [c, d] = m.vlan_tci().to_be_bytes();
    if flags & TX_QINQ == 0 {
        return ([a, b, c, d, 0, 0, 0, 0], 4);
    }
    let [oa, ob] = TPID_8021AD.to_be_bytes();
    let [oc, od] = m.vlan_tci_outer().to_be_bytes();
    ([oa, ob, oc, od, a, b, c, d], 8)
}

impl AfPacketTxQueue {
    /// Asks the kernel to send what the tx ring holds; remembers a kick that stopped early
    /// (EAGAIN/ENOBUFS/EINTR) for the next burst or flush. Returns the errors to count.
    fn kick(&mut self) -> u64 {
        self.kick_pending = false;
        match sys::kick_tx(self.sock.fd()) {
            Ok(()) => 0,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR)
                ) =>
            {
                self.kick_pending = true;
                0
            }
            Err(e) => {
                log_kick_error(&e);
                1
            }
        }
    }
}

#[cold]
fn log_kick_error(e: &io::Error) {
    tracing::debug!("net_af_packet: tx kick failed: {e}");
}

impl Drop for AfPacketTxQueue {
    fn drop(&mut self) {
        self.sock.tx_next.store(self.idx, Ordering::Relaxed);
        self.sock.tx_claimed.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(mac: u16, snaplen: u32, len: u32) -> RxFrameHdr {
        RxFrameHdr {
            status: sys::TP_STATUS_USER,
            len,
            snaplen,
            mac,
            ..RxFrameHdr::default()
        }
    }

    #[test]
    fn accepts_a_normal_frame() {
        assert_eq!(validate_rx(&hdr(66, 60, 60), 2048, 0), Ok((66, 60)));
        assert_eq!(
            validate_rx(&hdr(66, 2048 - 66, 2048 - 66), 2048, 0),
            Ok((66, 2048 - 66))
        );
    }

    #[test]
    fn rejects_out_of_frame() {
        assert_eq!(
            validate_rx(&hdr(66, 2048 - 65, 2048 - 65), 2048, 0),
            Err(RxReject::OutOfFrame)
        );
        assert_eq!(
            validate_rx(&hdr(u16::MAX, u32::MAX, u32::MAX), 2048, 0),
            Err(RxReject::OutOfFrame)
        );
        assert_eq!(
            validate_rx(&hdr(0, 60, 60), 2048, 0),
            Err(RxReject::MacInHeader)
        );
        assert_eq!(
            validate_rx(&hdr(51, 60, 60), 2048, 0),
            Err(RxReject::MacInHeader)
        );
    }

    /// A fake ring frame: `pkt` at offset 66.
    fn frame_with(pkt: &[u8]) -> Vec<u8> {
        let mut f = vec![0xcc; 66];
        f.extend_from_slice(pkt);
        f
    }

    fn read_all(p: &RxPacket, frame: &[u8], chunk: usize) -> Vec<u8> {
        let read = |o: usize, d: &mut [u8]| match frame.get(o..o + d.len()) {
            Some(s) => {
                d.copy_from_slice(s);
                true
            }
            None => false,
        };
        let mut out = vec![0u8; p.pkt_len()];
        let mut at = 0;
        for c in out.chunks_mut(chunk) {
            assert!(p.read(at, c, read), "read at {at}");
            at += c.len();
        }
        out
    }

    /// The kernel hands a tagged frame over without its tag (which it reports in the
    /// header); the queue puts it back so the packet equals the wire bytes, whatever the
    /// segment boundaries.
    #[test]
    fn vlan_tag_is_reinserted() {
        let wire: Vec<u8> = (0..100u8)
            .enumerate()
            .map(|(i, b)| match i {
                12 => 0x88,
                13 => 0xa8,
                14 => 0x20,
                15 => 0x07,
                16 => 0x81,
                17 => 0x00,
                _ => b,
            })
            .collect();
        // The kernel's view: outer 802.1ad tag (TCI 0x2007) stripped, inner left in.
        let mut stripped = wire[..12].to_vec();
        stripped.extend_from_slice(&wire[16..]);
        let frame = frame_with(&stripped);
        let mut h = hdr(66, stripped.len() as u32, stripped.len() as u32);
        h.status |= sys::TP_STATUS_VLAN_VALID | sys::TP_STATUS_VLAN_TPID_VALID;
        h.vlan_tci = 0x2007;
        h.vlan_tpid = TPID_8021AD;
        let (off, len) = validate_rx(&h, frame.len(), 0).unwrap();
        let p = RxPacket {
            off,
            len,
            tag: rx_tag(&h),
        };
        assert_eq!(p.pkt_len(), wire.len());
        for chunk in [1, 3, 5, 12, 13, 14, 16, 17, 64, 1000] {
            assert_eq!(read_all(&p, &frame, chunk), wire, "chunk {chunk}");
        }
        // Past the end: refused.
        let read = |_: usize, _: &mut [u8]| true;
        assert!(!p.read(wire.len() - 1, &mut [0u8; 2], read));

        // Without TPID_VALID (older kernels): 0x8100.
        h.status &= !sys::TP_STATUS_VLAN_TPID_VALID;
        assert_eq!(rx_tag(&h), Some([0x81, 0x00, 0x20, 0x07]));
        // No tag reported: the frame as it is.
        h.status &= !sys::TP_STATUS_VLAN_VALID;
        assert_eq!(rx_tag(&h), None);
        let p = RxPacket {
            off,
            len,
            tag: None,
        };
        assert_eq!(read_all(&p, &frame, 7), stripped);
    }

    #[test]
    fn tx_tags_follow_the_flags() {
        let pool = Mempool::create("afp-txtags", 8, 0).unwrap();
        let mut m = pool.alloc().unwrap();
        assert_eq!(tx_tags(&m).1, 0);
        m.set_vlan_tci(0x0123);
        m.set_vlan_tci_outer(0x0456);
        m.set_ol_flags(TX_VLAN);
        assert_eq!(tx_tags(&m), ([0x81, 0, 0x01, 0x23, 0, 0, 0, 0], 4));
        m.set_ol_flags(TX_VLAN | TX_QINQ);
        assert_eq!(
            tx_tags(&m),
            ([0x88, 0xa8, 0x04, 0x56, 0x81, 0, 0x01, 0x23], 8)
        );
    }

    /// Over loopback in a private namespace, each frame another socket transmits is seen
    /// twice by an ETH_P_ALL socket: outgoing, then incoming. With the kernel filter off, the
    /// `sll_pkttype` fallback must still deliver each exactly once.
    #[test]
    fn outgoing_filter_fallback_on_loopback() {
        const TEST: &str = "outgoing_filter_fallback_on_loopback";
        if !pmd_testkit::require(
            TEST,
            pmd_testkit::root_missing("a private network namespace"),
        ) {
            return;
        }
        std::thread::spawn(|| {
            // SAFETY: moves only this thread into a new, empty network namespace.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            let lo = pmd_core::netif::Interface::by_name("lo").unwrap();
            lo.set_up(true).unwrap();
            let ifindex = lo.index();
            let cfg = crate::config::Config::from_vdev(
                &"net_af_packet0,iface=lo,framecnt=64".parse().unwrap(),
            )
            .unwrap();
            for kernel_filter in [false, true] {
                let sock = Arc::new(
                    PacketSocket::open_with(&cfg, ifindex, true, None, kernel_filter).unwrap(),
                );
                assert_eq!(sock.ignore_outgoing, kernel_filter);
                let pool = Mempool::create("afp-lo", 64, 0).unwrap();
                let rs = Arc::new(QueueStats::default());
                let mut rxq = AfPacketRxQueue::new(
                    sock.clone(),
                    0,
                    pool.clone(),
                    rs.clone(),
                    RxOffloads::NONE,
                    None,
                )
                .unwrap();
                // Another socket sends (a socket never sees its own transmissions).
                let sender =
                    Arc::new(PacketSocket::open_with(&cfg, ifindex, false, None, true).unwrap());
                let mut txq = AfPacketTxQueue::new(sender, Arc::default(), None).unwrap();
                let mut batch = PktBatch::new();
                for (i, m) in pool
                    .alloc_bulk(&mut batch, 5)
                    .unwrap()
                    .iter_mut()
                    .enumerate()
                {
                    let mut f = vec![0u8; 60];
                    f[12..14].copy_from_slice(&[0x88, 0xb5]);
                    f[14] = i as u8;
                    assert!(m.copy_from(&f));
                }
                assert_eq!(txq.tx_burst(&mut batch), 5);
                let mut seen = Vec::new();
                let end = std::time::Instant::now() + std::time::Duration::from_millis(300);
                while std::time::Instant::now() < end {
                    rxq.rx_burst(&mut batch, 32);
                    seen.extend(batch.iter().map(|m| m.data()[14]));
                    batch.clear();
                }
                assert_eq!(seen, [0, 1, 2, 3, 4], "kernel filter {kernel_filter}");
                assert_eq!(rs.snapshot().errors, 0);
            }
        })
        .join()
        .unwrap();
    }

    /// An Ethernet/IPv4/TCP frame of `payload` bytes (checksum field 0).
    fn tcp_frame(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
        f[23] = 6;
        f[14 + 20 + 12] = 5 << 4;
        f
    }

    /// The header as delivered: a re-inserted VLAN tag moves csum_start and hdr_len by 4,
    /// never overflowing.
    #[test]
    fn vnet_header_offsets_follow_a_reinserted_tag() {
        let h = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: vnet::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let b = h.to_bytes();
        assert_eq!(rx_vnet_header(&b, false), h);
        let t = rx_vnet_header(&b, true);
        assert_eq!((t.csum_start, t.hdr_len, t.csum_offset), (38, 58, 16));
        let mut big = h;
        big.csum_start = u16::MAX;
        big.hdr_len = u16::MAX - 1;
        let t = rx_vnet_header(&big.to_bytes(), true);
        assert_eq!((t.csum_start, t.hdr_len), (u16::MAX, u16::MAX));
        // Without NEEDS_CSUM the checksum offsets mean nothing: left alone.
        let plain = VnetHdr::default();
        assert_eq!(rx_vnet_header(&plain.to_bytes(), true), plain);
    }

    /// Every field of a received header is untrusted: each bad kind is refused with its
    /// own counted error (one xstat each), the packet dropped, nothing panics; good ones
    /// are applied (LRO kept whole, or segmented).
    #[test]
    fn untrusted_vnet_headers_are_counted_not_trusted() {
        let pool = Mempool::create("afp-vnet", 512, 0).unwrap();
        let stats = Arc::new(VnetStats::default());
        let frame = tcp_frame(4000);
        let pkt = |pool: &Mempool| {
            let mut m = pool.alloc().unwrap();
            let room = m.len() + m.tailroom();
            assert!(m.copy_from(&frame[..room]));
            let mut tail = pool.alloc().unwrap();
            assert!(tail.copy_from(&frame[room..]));
            m.chain(tail).map_err(|_| ()).unwrap();
            m
        };
        let gso = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            gso_type: vnet::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1000,
            csum_start: 34,
            csum_offset: 16,
        };
        use pmd_core::vnet::VnetError as E;
        let bad = [
            (
                VnetHdr {
                    csum_start: 9000,
                    ..gso
                },
                E::CsumOffsets,
            ),
            (
                VnetHdr {
                    csum_offset: 8000,
                    ..gso
                },
                E::CsumOffsets,
            ),
            (VnetHdr { gso_size: 0, ..gso }, E::GsoSizeZero),
            (
                VnetHdr {
                    hdr_len: 9000,
                    ..gso
                },
                E::HdrLen,
            ),
            (VnetHdr { gso_type: 3, ..gso }, E::GsoType),
            (
                VnetHdr {
                    gso_type: 0x42,
                    ..gso
                },
                E::GsoType,
            ),
            (VnetHdr { flags: 0, ..gso }, E::GsoWithoutCsum),
            (
                VnetHdr {
                    csum_start: 30,
                    ..gso
                },
                E::GsoHeaders,
            ),
            (VnetHdr { gso_size: 1, ..gso }, E::TooManySegments),
        ];
        for lro in [false, true] {
            let proc = RxProcessor {
                lro,
                stats: stats.clone(),
            };
            for (h, e) in bad {
                let mut out = 0;
                let before = stats.errors(e);
                assert_eq!(proc.process(&h, pkt(&pool), &pool, |_| out += 1), Err(e));
                assert_eq!((out, stats.errors(e)), (0, before + 1), "{h:?}");
            }
            let mut lens = Vec::new();
            proc.process(&gso, pkt(&pool), &pool, |m| lens.push(m.len()))
                .unwrap();
            if lro {
                assert_eq!(lens, [frame.len()]);
            } else {
                assert_eq!(lens, [1054, 1054, 1054, 1054]);
            }
        }
        let xs = stats.xstats();
        for e in E::ALL {
            assert!(xs.iter().any(|(n, _)| n == e.xstat()), "{}", e.xstat());
        }
        assert_eq!(stats.total_errors(), 2 * bad.len() as u64);
        assert_eq!(stats.rx_lro_packets.load(Ordering::Relaxed), 1);
        assert_eq!(stats.rx_gso_segments.load(Ordering::Relaxed), 4);
        // All buffers came back.
        assert_eq!(pool.stats().in_use, 0);
    }

    #[test]
    fn rejects_truncated() {
        assert_eq!(
            validate_rx(&hdr(66, 1900, 9000), 2048, 0),
            Err(RxReject::Truncated)
        );
    }
}
