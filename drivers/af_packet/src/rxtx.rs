//! The data path: [`AfPacketRxQueue`] and [`AfPacketTxQueue`].

use crate::socket::PacketSocket;
use crate::sys::{self, Dir, RxFrameHdr};
use pmd_core::ethdev::{QueueStats, RxQueue, TxQueue};
use pmd_core::mbuf::{PktBatch, RX_VLAN_STRIPPED};
use pmd_core::mempool::Mempool;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Why an rx frame was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RxReject {
    /// `tp_mac` points into the frame header.
    MacInHeader,
    /// `tp_mac + tp_snaplen` runs past the end of the frame.
    OutOfFrame,
    /// The packet was truncated (`tp_snaplen < tp_len`: frame too small).
    Truncated,
    /// The packet does not fit the mbuf data room.
    TooBigForMbuf,
}

/// Checks an rx frame header against the frame size and the mbuf data room; returns
/// the packet's (offset in frame, length).
#[inline(always)]
pub(crate) fn validate_rx(
    h: &RxFrameHdr,
    frame_size: usize,
    room: usize,
) -> Result<(usize, usize), RxReject> {
    let off = h.mac as usize;
    let len = h.snaplen as usize;
    if off < sys::TPACKET2_HDRLEN {
        return Err(RxReject::MacInHeader);
    }
    if off.checked_add(len).is_none_or(|end| end > frame_size) {
        return Err(RxReject::OutOfFrame);
    }
    if len != h.len as usize {
        return Err(RxReject::Truncated);
    }
    if len > room {
        return Err(RxReject::TooBigForMbuf);
    }
    Ok((off, len))
}

/// Bursts between two PACKET_STATISTICS reads at most (only when the kernel signals
/// losses with TP_STATUS_LOSING).
const STATS_MIN_BURSTS: u64 = 64;

/// An rx queue: copies frames from the socket's rx ring into mbufs.
pub struct AfPacketRxQueue {
    sock: Arc<PacketSocket>,
    idx: u32,
    nframes: u32,
    frame_size: usize,
    room: usize,
    pool: Mempool,
    stats: Arc<QueueStats>,
    port: u16,
    bursts: u64,
    last_fetch: Option<u64>,
    reported_drops: u64,
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
    /// Takes the rx ring of `sock`; `None` if another rx queue holds it.
    pub(crate) fn new(
        sock: Arc<PacketSocket>,
        port: u16,
        pool: Mempool,
        stats: Arc<QueueStats>,
    ) -> Option<AfPacketRxQueue> {
        if sock.rx_claimed.swap(true, Ordering::Acquire) {
            return None;
        }
        let g = *sock.ring.geometry();
        let room =
            usize::from(pool.buf_size()).saturating_sub(usize::from(pmd_core::mbuf::HEADROOM));
        Some(AfPacketRxQueue {
            idx: sock.rx_next.load(Ordering::Relaxed),
            reported_drops: sock.kernel_drops.load(Ordering::Relaxed),
            sock,
            nframes: g.frame_nr,
            frame_size: g.frame_size as usize,
            room,
            pool,
            stats,
            port,
            bursts: 0,
            last_fetch: None,
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

    /// Reads PACKET_STATISTICS if the kernel reported losses and we have not asked
    /// recently, then reports new drops as missed.
    #[inline]
    fn account_drops(&mut self, losing: bool) {
        if losing
            && self
                .last_fetch
                .is_none_or(|b| self.bursts.wrapping_sub(b) >= STATS_MIN_BURSTS)
        {
            self.last_fetch = Some(self.bursts);
            if self.sock.fetch_stats().is_err() {
                self.stats.add_errors(1);
            }
        }
        let total = self.sock.kernel_drops.load(Ordering::Relaxed);
        if total != self.reported_drops {
            self.stats
                .add_missed(total.wrapping_sub(self.reported_drops));
            self.reported_drops = total;
        }
    }
}

impl RxQueue for AfPacketRxQueue {
    fn rx_burst(&mut self, batch: &mut PktBatch, max: usize) -> usize {
        self.bursts = self.bursts.wrapping_add(1);
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
            self.account_drops(false);
            return 0;
        }

        let start = batch.len();
        let Some(mbufs) = self.pool.alloc_bulk(batch, ready) else {
            self.stats.add_no_mbuf(ready as u64);
            return 0;
        };
        let mut used = 0usize;
        let mut bytes = 0u64;
        let mut errors = 0u64;
        let mut losing = false;
        let mut f = self.idx;
        for _ in 0..ready {
            let h = ring.rx_header(f);
            losing |= h.status & sys::TP_STATUS_LOSING != 0;
            if !sock.ignore_outgoing && h.pkttype == sys::PACKET_OUTGOING {
                // Our own (or the host's) transmission looped back: not received traffic.
            } else {
                match validate_rx(&h, self.frame_size, self.room) {
                    Ok((off, len)) => {
                        let m = &mut mbufs[used];
                        if m.set_len(len) && ring.copy_from_rx(f, off, m.data_mut()) {
                            m.set_port(self.port);
                            if h.status & sys::TP_STATUS_VLAN_VALID != 0 {
                                m.set_vlan_tci(h.vlan_tci);
                                m.set_ol_flags(RX_VLAN_STRIPPED);
                            }
                            used += 1;
                            bytes += len as u64;
                        } else {
                            errors += 1;
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
        self.account_drops(losing);
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
    /// Takes the tx ring of `sock`; `None` if another tx queue holds it.
    pub(crate) fn new(sock: Arc<PacketSocket>, stats: Arc<QueueStats>) -> Option<AfPacketTxQueue> {
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
        })
    }
}

impl TxQueue for AfPacketTxQueue {
    /// Returns how many packets left the batch: those queued to the kernel plus those
    /// dropped as invalid (shorter than an Ethernet header or longer than a frame holds,
    /// counted as errors).
    fn tx_burst(&mut self, batch: &mut PktBatch) -> usize {
        let ring = &self.sock.ring;
        let mut consumed = 0usize;
        let mut sent = 0u64;
        let mut bytes = 0u64;
        let mut errors = 0u64;
        let mut full = false;
        for m in batch.iter() {
            let pkt = m.data();
            if pkt.len() < sys::ETH_HLEN || pkt.len() > self.capacity {
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
            if !ring.fill_tx(f, pkt) {
                // Cannot happen (length checked above); drop rather than stall.
                errors += 1;
                consumed += 1;
                continue;
            }
            ring.set_status(Dir::Tx, f, sys::TP_STATUS_SEND_REQUEST);
            self.idx = if f + 1 == self.nframes { 0 } else { f + 1 };
            consumed += 1;
            sent += 1;
            bytes += pkt.len() as u64;
        }
        // Kick when we queued something, and also when the ring is full: an earlier kick
        // may have stopped early (EAGAIN/ENOBUFS) and nothing else would resume it.
        // An empty burst is the application's flush: kick if an earlier kick stopped early.
        if sent > 0 || full || self.kick_pending {
            self.kick_pending = false;
            if let Err(e) = sys::kick_tx(self.sock.fd()) {
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR)
                ) {
                    self.kick_pending = true;
                } else {
                    errors += 1;
                    log_kick_error(&e);
                }
            }
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
        assert_eq!(validate_rx(&hdr(66, 60, 60), 2048, 2048), Ok((66, 60)));
        assert_eq!(
            validate_rx(&hdr(66, 2048 - 66, 2048 - 66), 2048, 2048),
            Ok((66, 2048 - 66))
        );
    }

    #[test]
    fn rejects_out_of_frame() {
        assert_eq!(
            validate_rx(&hdr(66, 2048 - 65, 2048 - 65), 2048, 4096),
            Err(RxReject::OutOfFrame)
        );
        assert_eq!(
            validate_rx(&hdr(u16::MAX, u32::MAX, u32::MAX), 2048, 4096),
            Err(RxReject::OutOfFrame)
        );
        assert_eq!(
            validate_rx(&hdr(0, 60, 60), 2048, 4096),
            Err(RxReject::MacInHeader)
        );
        assert_eq!(
            validate_rx(&hdr(51, 60, 60), 2048, 4096),
            Err(RxReject::MacInHeader)
        );
    }

    /// Over loopback in a private namespace, each frame another socket transmits is seen
    /// twice by an ETH_P_ALL socket: outgoing, then incoming. With the kernel filter off, the
    /// `sll_pkttype` fallback must still deliver each exactly once.
    #[test]
    fn outgoing_filter_fallback_on_loopback() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("outgoing_filter_fallback_on_loopback: skipped: needs root");
            return;
        }
        std::thread::spawn(|| {
            // SAFETY: moves only this thread into a new, empty network namespace.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            let ctl = sys::packet_socket().unwrap();
            sys::if_set_up(sys::raw(&ctl), "lo").unwrap();
            let ifindex = sys::if_index(sys::raw(&ctl), "lo").unwrap();
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
                let mut rxq =
                    AfPacketRxQueue::new(sock.clone(), 0, pool.clone(), rs.clone()).unwrap();
                // Another socket sends (a socket never sees its own transmissions).
                let sender =
                    Arc::new(PacketSocket::open_with(&cfg, ifindex, false, None, true).unwrap());
                let mut txq = AfPacketTxQueue::new(sender, Arc::default()).unwrap();
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

    #[test]
    fn rejects_truncated_and_oversized() {
        assert_eq!(
            validate_rx(&hdr(66, 1900, 9000), 2048, 4096),
            Err(RxReject::Truncated)
        );
        assert_eq!(
            validate_rx(&hdr(66, 1500, 1500), 2048, 1000),
            Err(RxReject::TooBigForMbuf)
        );
    }
}
