//! The send and receive loops, and the counters they share with the main thread.

use crate::frame::{self, Template};
use crate::hist::Histogram;
use pmd_core::ethdev::{RxQueueHandle, TxQueueHandle};
use pmd_core::mbuf::PktBatch;
use pmd_core::{lcore, tsc, Mempool};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters shared by the loops and the reporter.
#[derive(Debug, Default)]
pub struct Shared {
    /// Frames handed to the tx queue.
    pub sent: AtomicU64,
    /// Bytes handed to the tx queue.
    pub sent_bytes: AtomicU64,
    /// Our frames received.
    pub received: AtomicU64,
    /// Bytes of our frames received.
    pub received_bytes: AtomicU64,
    /// Frames received that are not ours.
    pub other: AtomicU64,
    /// Our frames that arrived after a later one.
    pub reordered: AtomicU64,
    /// Set when the sender has sent `--count` frames.
    pub tx_done: AtomicBool,
    /// Latency (ns) of frames received since the last merge.
    pub latency: Mutex<Histogram>,
}

fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// The sender: templates per size, flows, rate and count.
pub struct Sender {
    /// The tx queue.
    pub tx: TxQueueHandle,
    /// Where frames come from.
    pub pool: Mempool,
    /// One template per configured size, used in turn.
    pub templates: Vec<Template>,
    /// Flows to cycle through.
    pub flows: u32,
    /// Frames per TSC tick (0: unlimited).
    pub per_tick: f64,
    /// Frames to send (0: unlimited).
    pub count: u64,
    /// Frames per burst.
    pub burst: usize,
    /// Counters.
    pub shared: Arc<Shared>,
    /// Frames to replay instead of the templates.
    pub replay: Option<Arc<pmd_pcap::Trace>>,
    seq: u64,
    next_tpl: usize,
    flow: u32,
    /// TSC of the first step (0 before it).
    start: u64,
    batch: PktBatch,
}

impl Sender {
    /// Makes a sender starting now.
    pub fn new(
        tx: TxQueueHandle,
        pool: Mempool,
        templates: Vec<Template>,
        shared: Arc<Shared>,
    ) -> Sender {
        Sender {
            tx,
            pool,
            templates,
            flows: 1,
            per_tick: 0.0,
            count: 0,
            burst: 32,
            shared,
            replay: None,
            seq: 0,
            next_tpl: 0,
            flow: 0,
            start: 0,
            batch: PktBatch::new(),
        }
    }

    /// One step: build up to a burst of frames the rate and count allow, send them (what
    /// the queue does not take is retried next step).
    #[inline]
    pub fn step(&mut self) {
        if self.start == 0 {
            self.start = tsc::rdtsc(); // the rate counts from the first step
        }
        if self.batch.is_empty() {
            let mut n = self.burst as u64;
            if self.count > 0 {
                n = n.min(self.count - self.seq);
                if n == 0 {
                    // Done: let the queue push out anything it still holds back.
                    self.tx.tx_flush();
                    self.shared.tx_done.store(true, Ordering::Release);
                    return;
                }
            }
            if self.per_tick > 0.0 {
                let allowed = ((tsc::rdtsc() - self.start) as f64 * self.per_tick) as u64;
                n = n.min(allowed.saturating_sub(self.seq));
                if n == 0 {
                    return;
                }
            }
            if self.pool.alloc_bulk(&mut self.batch, n as usize).is_none() {
                return;
            }
            let now = tsc::rdtsc();
            if let Some(trace) = &self.replay {
                for m in self.batch.iter_mut() {
                    let f = trace.frame((self.seq % trace.len() as u64) as usize);
                    if let Some(d) = m.append(f.len()) {
                        d.copy_from_slice(f);
                    }
                    self.seq += 1;
                }
            } else {
                for m in self.batch.iter_mut() {
                    let t = &self.templates[self.next_tpl];
                    self.next_tpl = if self.next_tpl + 1 == self.templates.len() {
                        0
                    } else {
                        self.next_tpl + 1
                    };
                    if let Some(d) = m.append(t.len()) {
                        t.write(d, self.flow, self.seq, now);
                    }
                    self.flow = if self.flow + 1 == self.flows {
                        0
                    } else {
                        self.flow + 1
                    };
                    self.seq += 1;
                }
            }
        }
        let bytes: u64 = self.batch.iter().map(|m| m.len() as u64).sum();
        let before = self.batch.len();
        let sent = self.tx.tx_burst(&mut self.batch);
        if sent > 0 {
            let left: u64 = self.batch.iter().map(|m| m.len() as u64).sum();
            add(&self.shared.sent, sent as u64);
            add(&self.shared.sent_bytes, bytes - left);
        }
        debug_assert!(sent <= before);
    }
}

/// The receiver: counts our frames, latency and reordering.
pub struct Receiver {
    /// The rx queue.
    pub rx: RxQueueHandle,
    /// Counters.
    pub shared: Arc<Shared>,
    /// Replay mode: every frame counts as ours.
    pub count_all: bool,
    hist: Histogram,
    next_seq: u64,
    ns_per_tick: f64,
    last_merge: u64,
    batch: PktBatch,
}

impl Receiver {
    /// A receiver on `rx`.
    pub fn new(rx: RxQueueHandle, shared: Arc<Shared>) -> Receiver {
        Receiver {
            rx,
            shared,
            count_all: false,
            hist: Histogram::default(),
            next_seq: 0,
            ns_per_tick: 1e9 / tsc::hz() as f64,
            last_merge: tsc::rdtsc(),
            batch: PktBatch::new(),
        }
    }

    /// One receive burst.
    #[inline]
    pub fn step(&mut self) {
        let n = self.rx.rx_burst(&mut self.batch);
        if n > 0 {
            let now = tsc::rdtsc();
            let (mut ours, mut bytes, mut other, mut reord) = (0u64, 0u64, 0u64, 0u64);
            for m in self.batch.iter() {
                match frame::parse(m.data()) {
                    Some((seq, ts)) => {
                        ours += 1;
                        bytes += m.len() as u64;
                        self.hist
                            .record((now.saturating_sub(ts) as f64 * self.ns_per_tick) as u64);
                        if seq < self.next_seq {
                            reord += 1;
                        } else {
                            self.next_seq = seq + 1;
                        }
                    }
                    None if self.count_all => {
                        ours += 1;
                        bytes += m.len() as u64;
                    }
                    None => other += 1,
                }
            }
            self.batch.clear();
            add(&self.shared.received, ours);
            add(&self.shared.received_bytes, bytes);
            add(&self.shared.other, other);
            add(&self.shared.reordered, reord);
        }
        // Publish latency about every 50 ms (one lock, off the per-packet path).
        let now = tsc::rdtsc();
        if now - self.last_merge > tsc::hz() / 20 {
            self.flush();
            self.last_merge = now;
        }
    }

    /// Merges the local histogram into the shared one.
    pub fn flush(&mut self) {
        if self.hist.count() > 0 {
            if let Ok(mut h) = self.shared.latency.lock() {
                h.merge(&self.hist);
            }
            self.hist = Histogram::default();
        }
    }
}

/// Runs a sender and/or a receiver on this lcore until a stop is requested; `tick` (on
/// the main lcore) is called with the TSC once per loop and may stop the run.
pub fn run(
    mut tx: Option<Sender>,
    mut rx: Option<Receiver>,
    mut tick: Option<&mut dyn FnMut(u64) -> bool>,
) -> (Option<Sender>, Option<Receiver>) {
    while !lcore::stop_requested() {
        if let Some(s) = tx.as_mut() {
            s.step();
        }
        if let Some(r) = rx.as_mut() {
            r.step();
        }
        if let Some(t) = tick.as_mut() {
            if t(tsc::rdtsc()) {
                lcore::request_stop();
            }
        }
    }
    if let Some(r) = rx.as_mut() {
        r.flush();
    }
    (tx, rx)
}
