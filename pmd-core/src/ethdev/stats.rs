//! Queue and port counters. Each queue's counters have one writer (the lcore that owns the
//! queue) and any number of readers, so updates are plain relaxed load/store pairs: no
//! locked instructions on the data path.

use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one queue, on their own cache line.
#[derive(Debug, Default)]
pub struct QueueStats {
    c: CachePadded<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    packets: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    missed: AtomicU64,
    no_mbuf: AtomicU64,
}

#[inline(always)]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// A snapshot of one queue's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounters {
    /// Packets received or sent.
    pub packets: u64,
    /// Bytes received or sent.
    pub bytes: u64,
    /// Erroneous packets (bad descriptor, failed send).
    pub errors: u64,
    /// Packets dropped because the queue was full (rx: device/peer side drops).
    pub missed: u64,
    /// Receive buffers that could not be allocated (the mempool was empty).
    pub no_mbuf: u64,
}

impl QueueStats {
    /// Counts `packets` packets of `bytes` bytes in total. Single writer only.
    #[inline(always)]
    pub fn add(&self, packets: u64, bytes: u64) {
        bump(&self.c.packets, packets);
        bump(&self.c.bytes, bytes);
    }

    /// Counts errors.
    #[inline(always)]
    pub fn add_errors(&self, n: u64) {
        bump(&self.c.errors, n);
    }

    /// Counts missed (dropped) packets.
    #[inline(always)]
    pub fn add_missed(&self, n: u64) {
        bump(&self.c.missed, n);
    }

    /// Counts buffers that could not be allocated.
    #[inline(always)]
    pub fn add_no_mbuf(&self, n: u64) {
        bump(&self.c.no_mbuf, n);
    }

    /// Reads all counters.
    pub fn snapshot(&self) -> QueueCounters {
        QueueCounters {
            packets: self.c.packets.load(Ordering::Relaxed),
            bytes: self.c.bytes.load(Ordering::Relaxed),
            errors: self.c.errors.load(Ordering::Relaxed),
            missed: self.c.missed.load(Ordering::Relaxed),
            no_mbuf: self.c.no_mbuf.load(Ordering::Relaxed),
        }
    }
}

/// Port totals, summed over queues (DPDK's `rte_eth_stats` fields).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EthStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets dropped on receive by the device or peer.
    pub imissed: u64,
    /// Erroneous received packets.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// Receive buffer allocation failures.
    pub rx_nombuf: u64,
}

impl EthStats {
    /// Counter-wise difference `self - base` (for resets and rates).
    pub fn since(&self, base: &EthStats) -> EthStats {
        EthStats {
            ipackets: self.ipackets.wrapping_sub(base.ipackets),
            opackets: self.opackets.wrapping_sub(base.opackets),
            ibytes: self.ibytes.wrapping_sub(base.ibytes),
            obytes: self.obytes.wrapping_sub(base.obytes),
            imissed: self.imissed.wrapping_sub(base.imissed),
            ierrors: self.ierrors.wrapping_sub(base.ierrors),
            oerrors: self.oerrors.wrapping_sub(base.oerrors),
            rx_nombuf: self.rx_nombuf.wrapping_sub(base.rx_nombuf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_snapshots() {
        let s = QueueStats::default();
        s.add(3, 180);
        s.add(1, 60);
        s.add_errors(2);
        s.add_missed(5);
        s.add_no_mbuf(1);
        assert_eq!(
            s.snapshot(),
            QueueCounters {
                packets: 4,
                bytes: 240,
                errors: 2,
                missed: 5,
                no_mbuf: 1
            }
        );
        let a = EthStats {
            ipackets: 10,
            obytes: 5,
            ..Default::default()
        };
        let b = EthStats {
            ipackets: 4,
            obytes: 1,
            ..Default::default()
        };
        assert_eq!(
            a.since(&b),
            EthStats {
                ipackets: 6,
                obytes: 4,
                ..Default::default()
            }
        );
    }
}
