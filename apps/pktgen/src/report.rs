//! The live table and the final summary (text or JSON).

use crate::gen::Shared;
use crate::hist::Histogram;
use pmd_core::{tsc, Mempool};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Prints a row per period and builds the summary.
pub struct Reporter {
    shared: Arc<Shared>,
    start: u64,
    last: u64,
    last_sent: u64,
    last_recv: u64,
    header_done: bool,
    live: bool,
    total: Histogram,
}

impl Reporter {
    /// A reporter from `start` (TSC); `live` prints rows.
    pub fn new(shared: Arc<Shared>, start: u64, live: bool) -> Reporter {
        Reporter {
            shared,
            start,
            last: start,
            last_sent: 0,
            last_recv: 0,
            header_done: false,
            live,
            total: Histogram::default(),
        }
    }

    /// Whether a row is due.
    pub fn due(&self, now: u64, period: u64) -> bool {
        now - self.last >= period
    }

    /// Takes the latency recorded since the last call into the run's total; returns it.
    fn take_latency(&mut self) -> Histogram {
        let h = match self.shared.latency.lock() {
            Ok(mut h) => std::mem::take(&mut *h),
            Err(_) => Histogram::default(),
        };
        self.total.merge(&h);
        h
    }

    /// Prints one row of the live table.
    pub fn print_row(&mut self, now: u64) {
        let secs = (now - self.last) as f64 / tsc::hz() as f64;
        let sent = self.shared.sent.load(Ordering::Relaxed);
        let recv = self.shared.received.load(Ordering::Relaxed);
        let lat = self.take_latency();
        if self.live {
            if !self.header_done {
                println!(
                    "{:>7} {:>10} {:>10} {:>14} {:>14} {:>12} {:>9} {:>9} {:>9}",
                    "time_s",
                    "tx_Mpps",
                    "rx_Mpps",
                    "sent",
                    "received",
                    "lost",
                    "p50_us",
                    "p99_us",
                    "max_us"
                );
                self.header_done = true;
            }
            println!(
                "{:>7.1} {:>10.3} {:>10.3} {:>14} {:>14} {:>12} {:>9.1} {:>9.1} {:>9.1}",
                (now - self.start) as f64 / tsc::hz() as f64,
                (sent - self.last_sent) as f64 / secs / 1e6,
                (recv - self.last_recv) as f64 / secs / 1e6,
                sent,
                recv,
                sent.saturating_sub(recv),
                lat.quantile(0.5) as f64 / 1e3,
                lat.quantile(0.99) as f64 / 1e3,
                lat.max() as f64 / 1e3,
            );
        }
        self.last = now;
        self.last_sent = sent;
        self.last_recv = recv;
    }

    /// The run's summary, with `pool`'s usage as it is now (after the queues are gone).
    pub fn summary(&mut self, end: u64, pool: &Mempool) -> Summary {
        self.take_latency();
        let s = &self.shared;
        let secs = (end - self.start) as f64 / tsc::hz() as f64;
        let sent = s.sent.load(Ordering::Relaxed);
        let received = s.received.load(Ordering::Relaxed);
        let ps = pool.stats();
        Summary {
            secs,
            sent,
            sent_bytes: s.sent_bytes.load(Ordering::Relaxed),
            received,
            received_bytes: s.received_bytes.load(Ordering::Relaxed),
            lost: sent.saturating_sub(received),
            other: s.other.load(Ordering::Relaxed),
            reordered: s.reordered.load(Ordering::Relaxed),
            lat_ns: [
                self.total.min(),
                self.total.mean() as u64,
                self.total.quantile(0.5),
                self.total.quantile(0.9),
                self.total.quantile(0.99),
                self.total.quantile(0.999),
                self.total.max(),
            ],
            pool: pool.usage_line(),
            pool_in_use: ps.in_use,
            pool_available: ps.available,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Run time in seconds.
    pub secs: f64,
    /// Frames sent.
    pub sent: u64,
    /// Bytes sent (without FCS).
    pub sent_bytes: u64,
    /// Our frames received.
    pub received: u64,
    /// Bytes of our frames received.
    pub received_bytes: u64,
    /// Sent minus received.
    pub lost: u64,
    /// Other frames received.
    pub other: u64,
    /// Our frames that arrived out of order.
    pub reordered: u64,
    /// Latency in ns: min, mean, p50, p90, p99, p99.9, max.
    pub lat_ns: [u64; 7],
    /// The pool's usage line (see [`Mempool::usage_line`]).
    pub pool: String,
    /// Pool buffers still in use.
    pub pool_in_use: i64,
    /// Pool buffers available.
    pub pool_available: usize,
}

impl Summary {
    /// The summary as one JSON object.
    pub fn to_json(&self) -> String {
        let l = &self.lat_ns;
        format!(
            "{{\"secs\":{:.3},\"sent\":{},\"sent_bytes\":{},\"received\":{},\"received_bytes\":{},\"lost\":{},\"other\":{},\"reordered\":{},\"tx_mpps\":{:.4},\"rx_mpps\":{:.4},\"latency_ns\":{{\"min\":{},\"mean\":{},\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{}}},\"pool_in_use\":{},\"pool_available\":{}}}",
            self.secs,
            self.sent,
            self.sent_bytes,
            self.received,
            self.received_bytes,
            self.lost,
            self.other,
            self.reordered,
            self.sent as f64 / self.secs.max(1e-9) / 1e6,
            self.received as f64 / self.secs.max(1e-9) / 1e6,
            l[0], l[1], l[2], l[3], l[4], l[5], l[6],
            self.pool_in_use,
            self.pool_available
        )
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.lat_ns;
        let us = |v: u64| v as f64 / 1e3;
        writeln!(f, "\n==== pktgen summary ====")?;
        writeln!(f, "duration        {:.2} s", self.secs)?;
        writeln!(
            f,
            "sent            {} frames, {} bytes, {:.3} Mpps",
            self.sent,
            self.sent_bytes,
            self.sent as f64 / self.secs.max(1e-9) / 1e6
        )?;
        writeln!(
            f,
            "received        {} frames, {} bytes, {:.3} Mpps",
            self.received,
            self.received_bytes,
            self.received as f64 / self.secs.max(1e-9) / 1e6
        )?;
        writeln!(f, "lost            {}", self.lost)?;
        writeln!(f, "reordered       {}", self.reordered)?;
        writeln!(f, "other frames    {}", self.other)?;
        writeln!(
            f,
            "latency (us)    min {:.1}  mean {:.1}  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            us(l[0]), us(l[1]), us(l[2]), us(l[3]), us(l[4]), us(l[5]), us(l[6])
        )?;
        writeln!(f, "{}", self.pool)
    }
}
