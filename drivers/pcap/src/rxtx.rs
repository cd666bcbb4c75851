//! The data path: rx copies frames from a file loaded in memory into mbufs; tx appends
//! records to a buffered file.

use crate::file::{Sink, Trace};
use pmd_capture::{now, SNAPLEN};
use pmd_core::ethdev::{QueueStats, RxOffloads, RxQueue, RxQueueConf, TxQueue};
use pmd_core::mbuf::PktBatch;
use pmd_core::mempool::Mempool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// An rx queue replaying one file: each burst copies the next frames into mbufs. At the end
/// of the file it wraps (`infinite_rx=1`) or goes idle; each port start rewinds it.
///
/// A frame larger than one buffer becomes a chain with [`RxOffloads::SCATTER`] (extra
/// segments from the queue's pool); without it, it is skipped and counted as an rx error.
pub struct PcapRxQueue {
    trace: Arc<Trace>,
    next: usize,
    infinite: bool,
    /// The device's start count; a change means "rewind".
    starts: Arc<AtomicU64>,
    seen_starts: u64,
    pool: Mempool,
    stats: Arc<QueueStats>,
    port: u16,
    scatter: bool,
}

impl std::fmt::Debug for PcapRxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapRxQueue")
            .field("frames", &self.trace.len())
            .field("next", &self.next)
            .field("infinite", &self.infinite)
            .field("scatter", &self.scatter)
            .finish()
    }
}

impl PcapRxQueue {
    pub(crate) fn new(
        trace: Arc<Trace>,
        infinite: bool,
        starts: Arc<AtomicU64>,
        conf: RxQueueConf,
    ) -> PcapRxQueue {
        PcapRxQueue {
            trace,
            next: 0,
            infinite,
            seen_starts: starts.load(Ordering::Relaxed),
            starts,
            scatter: conf.offloads.contains(RxOffloads::SCATTER),
            pool: conf.pool,
            stats: conf.stats,
            port: conf.port,
        }
    }

    /// Moves past one frame of the `total` in the trace (back to the first when replaying).
    fn advance(&mut self, total: usize) {
        self.next += 1;
        if self.next == total && self.infinite {
            self.next = 0;
        }
    }
}

impl RxQueue for PcapRxQueue {
    fn rx_burst(&mut self, batch: &mut PktBatch, max: usize) -> usize {
        let starts = self.starts.load(Ordering::Relaxed);
        if starts != self.seen_starts {
            self.seen_starts = starts;
            self.next = 0;
        }
        let total = self.trace.len();
        let n = if self.infinite {
            max
        } else {
            max.min(total - self.next)
        };
        if n == 0 || total == 0 {
            return 0;
        }
        let start = batch.len();
        let Some(mbufs) = self.pool.alloc_bulk(batch, n) else {
            // As a capture read without a buffer: the frames are lost, each counted once.
            for _ in 0..n {
                self.advance(total);
            }
            self.stats.add_no_mbuf(n as u64);
            return 0;
        };
        let mut used = 0usize;
        let mut bytes = 0u64;
        let mut errors = 0u64;
        let mut no_mbuf = 0u64;
        for _ in 0..n {
            let frame = self.trace.frame(self.next);
            let m = &mut mbufs[used];
            let ok = if m.copy_from(frame) {
                true
            } else if self.scatter {
                // Larger than one buffer: the head's data room, then segments.
                let head = m.tailroom();
                m.copy_from(&frame[..head]);
                if m.extend_from_slice(&frame[head..], &self.pool).is_err() {
                    // The pool is dry: this frame is lost (counted once); stop here.
                    m.set_len(0);
                    no_mbuf += 1;
                    self.advance(total);
                    break;
                }
                true
            } else {
                // Larger than one buffer and no SCATTER: skipped, counted.
                errors += 1;
                false
            };
            if ok {
                m.set_port(self.port);
                used += 1;
                bytes += frame.len() as u64;
            }
            self.advance(total);
        }
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

/// A tx queue: appends each packet (a chain with all its segments) to its file as a pcap
/// record (one timestamp per burst), through a large write buffer; or, without a file, drops everything and counts
/// it as sent (DPDK's `tx_drop`).
pub struct PcapTxQueue {
    sink: Option<Arc<Sink>>,
    stats: Arc<QueueStats>,
}

impl std::fmt::Debug for PcapTxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapTxQueue")
            .field("file", &self.sink.as_ref().map(|s| s.path()))
            .finish()
    }
}

impl PcapTxQueue {
    pub(crate) fn new(sink: Option<Arc<Sink>>, stats: Arc<QueueStats>) -> PcapTxQueue {
        PcapTxQueue { sink, stats }
    }
}

impl TxQueue for PcapTxQueue {
    /// Takes every packet. Those that could not be written (the device was closed, or the
    /// file system refused) are counted as errors.
    fn tx_burst(&mut self, batch: &mut PktBatch) -> usize {
        let n = batch.len();
        if n == 0 {
            return 0;
        }
        let Some(sink) = &self.sink else {
            let bytes = batch.iter().map(|m| m.len() as u64).sum();
            self.stats.add(n as u64, bytes);
            batch.clear();
            return n;
        };
        let ts = now();
        let (sent, bytes) = sink
            .with(|w| {
                let mut sent = 0u64;
                let mut bytes = 0u64;
                for m in batch.iter() {
                    // Chains whole, every segment; beyond the snaplen truncated (the
                    // record keeps the length), as DPDK's net_pcap does.
                    let len = m.len() as u32;
                    if w.write_segments(ts, len, len.min(SNAPLEN), m.segments())
                        .is_ok()
                    {
                        sent += 1;
                        bytes += u64::from(len);
                    }
                }
                (sent, bytes)
            })
            .unwrap_or((0, 0));
        batch.clear();
        if sent > 0 {
            self.stats.add(sent, bytes);
        }
        if sent < n as u64 {
            self.stats.add_errors(n as u64 - sent);
        }
        n
    }

    /// Pushes the buffered records out to the file (a failed write counts one error).
    fn flush(&mut self) {
        if let Some(sink) = &self.sink {
            if sink.flush().is_err() {
                self.stats.add_errors(1);
            }
        }
    }
}
