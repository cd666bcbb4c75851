//! The data path: one `read` per received frame, one `write` per sent frame (a tap has no
//! batch interface), straight between the tap fd and mbuf data.

use crate::sys;
use pmd_core::ethdev::{QueueStats, RxQueue, TxQueue};
use pmd_core::mbuf::PktBatch;
use pmd_core::mempool::Mempool;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

/// Smallest frame a tap accepts (an Ethernet header); the kernel rejects shorter writes.
const ETH_HLEN: usize = 14;
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
}

/// An rx queue: reads frames from its tap fd into mbufs until the fd is empty (`EAGAIN`)
/// or the burst is full.
///
/// Buffers come from a small stash refilled from the pool in bulk, so an empty poll (one
/// `read` that returns `EAGAIN`) allocates and frees nothing.
pub struct TapRxQueue {
    fd: Arc<TapFd>,
    pool: Mempool,
    stash: PktBatch,
    stats: Arc<QueueStats>,
    port: u16,
}

impl std::fmt::Debug for TapRxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapRxQueue")
            .field("fd", &self.fd)
            .field("port", &self.port)
            .finish()
    }
}

impl TapRxQueue {
    pub(crate) fn new(
        fd: Arc<TapFd>,
        port: u16,
        pool: Mempool,
        stats: Arc<QueueStats>,
    ) -> TapRxQueue {
        TapRxQueue {
            fd,
            pool,
            stash: PktBatch::new(),
            stats,
            port,
        }
    }
}

impl RxQueue for TapRxQueue {
    fn rx_burst(&mut self, batch: &mut PktBatch, max: usize) -> usize {
        let fd = self.fd.fd.as_raw_fd();
        let max = max.min(batch.spare());
        let mut got = 0usize;
        let mut bytes = 0u64;
        let mut errors = 0u64;
        while got < max {
            let Some(mut m) = self.stash.pop() else {
                if self
                    .pool
                    .alloc_bulk(&mut self.stash, STASH_REFILL)
                    .is_none()
                {
                    self.stats.add_no_mbuf(1);
                    break;
                }
                continue;
            };
            // The whole data room (stale bytes, about to be overwritten by the frame).
            let room = m.len() + m.tailroom();
            m.set_len(room);
            match sys::read(fd, m.data_mut()) {
                Ok(n) if (ETH_HLEN..=room).contains(&n) => {
                    m.set_len(n);
                    m.set_port(self.port);
                    bytes += n as u64;
                    got += 1;
                    // Cannot fail: got < max <= the batch's spare room.
                    let _ = batch.push(m);
                }
                Ok(_) => {
                    // Truncated (larger than the mbuf data room) or runt: dropped.
                    errors += 1;
                    m.set_len(0);
                    let _ = self.stash.push(m);
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

/// A tx queue: one `write` per frame (the kernel has no batched write for a tap).
pub struct TapTxQueue {
    fd: Arc<TapFd>,
    stats: Arc<QueueStats>,
}

impl std::fmt::Debug for TapTxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapTxQueue").field("fd", &self.fd).finish()
    }
}

impl TapTxQueue {
    pub(crate) fn new(fd: Arc<TapFd>, stats: Arc<QueueStats>) -> TapTxQueue {
        TapTxQueue { fd, stats }
    }
}

impl TxQueue for TapTxQueue {
    /// Returns how many packets left the batch: those written plus those dropped as invalid
    /// (shorter than an Ethernet header, or refused by the kernel, e.g. while the interface
    /// is down; counted as errors). Stops at `EAGAIN`/`ENOBUFS`, leaving the rest.
    fn tx_burst(&mut self, batch: &mut PktBatch) -> usize {
        let fd = self.fd.fd.as_raw_fd();
        let mut consumed = 0usize;
        let mut sent = 0u64;
        let mut bytes = 0u64;
        let mut errors = 0u64;
        let mut iter = batch.iter();
        let mut next = iter.next();
        while let Some(m) = next {
            let pkt = m.data();
            if pkt.len() < ETH_HLEN {
                errors += 1;
            } else {
                match sys::write(fd, pkt) {
                    Ok(_) => {
                        sent += 1;
                        bytes += pkt.len() as u64;
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
}
