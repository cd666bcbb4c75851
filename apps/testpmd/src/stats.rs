//! Statistics displays in DPDK testpmd's formats (so the same scripts parse both): the
//! periodic "NIC statistics" blocks and the final "Forward statistics".

use crate::engine::StreamStats;
use pmd_core::ethdev::{EthStats, Port, PortId};
use pmd_core::{tsc, Mempool};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Periodic per-port display with rates since the previous one.
pub struct Periodic {
    ports: Vec<PortId>,
    last: Vec<EthStats>,
    last_tsc: u64,
}

impl Periodic {
    /// Starts the rate window now.
    pub fn new(all: &[Port], ports: &[PortId]) -> Periodic {
        Periodic {
            ports: ports.to_vec(),
            last: ports.iter().map(|&p| all[p as usize].stats()).collect(),
            last_tsc: tsc::rdtsc(),
        }
    }

    /// Whether `period` TSC ticks have passed since the last display.
    pub fn due(&self, now: u64, period: u64) -> bool {
        now.wrapping_sub(self.last_tsc) >= period
    }

    /// Prints one display.
    pub fn print(&mut self, all: &[Port], now: u64) {
        let secs = (now.wrapping_sub(self.last_tsc) as f64 / tsc::hz() as f64).max(1e-9);
        let mut out = String::new();
        if std::io::stdout().is_terminal() {
            out.push_str("\x1b[2J\x1b[1;1H");
        }
        out.push_str("\nPort statistics ====================================\n");
        for (i, &p) in self.ports.iter().enumerate() {
            let s = all[p as usize].stats();
            let d = s.since(&self.last[i]);
            let _ = write!(
                out,
                "  ######################## NIC statistics for port {p:<2} ########################\n\
                 \x20 RX-packets: {:<10} RX-missed: {:<10} RX-bytes:  {}\n\
                 \x20 RX-errors: {}\n\
                 \x20 RX-nombuf:  {:<10}\n\
                 \x20 TX-packets: {:<10} TX-errors: {:<10} TX-bytes:  {}\n\n\
                 \x20 Throughput (since last show)\n\
                 \x20 Rx-pps: {:>12}          Rx-bps: {:>12}\n\
                 \x20 Tx-pps: {:>12}          Tx-bps: {:>12}\n\
                 \x20 ############################################################################\n",
                s.ipackets,
                s.imissed,
                s.ibytes,
                s.ierrors,
                s.rx_nombuf,
                s.opackets,
                s.oerrors,
                s.obytes,
                (d.ipackets as f64 / secs) as u64,
                (d.ibytes as f64 * 8.0 / secs) as u64,
                (d.opackets as f64 / secs) as u64,
                (d.obytes as f64 * 8.0 / secs) as u64,
            );
            self.last[i] = s;
        }
        self.last_tsc = now;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}

/// Forward counters of one port, summed over the streams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortTotals {
    /// Packets the streams received on the port.
    pub rx: u64,
    /// Packets dropped by the device or peer on receive (from the port's counters).
    pub rx_dropped: u64,
    /// Erroneous packets the port refused on receive (from the port's counters).
    pub rx_errors: u64,
    /// Packets lost on receive because no buffer could be allocated (port's counters).
    pub rx_nombuf: u64,
    /// Packets the streams sent on the port.
    pub tx: u64,
    /// Packets the port's tx queues did not take.
    pub tx_dropped: u64,
    /// Bad IPv4 checksums seen on the port (csum mode).
    pub bad_ip: u64,
    /// Bad L4 checksums seen on the port (csum mode).
    pub bad_l4: u64,
}

/// Sums the streams' counters per port.
pub fn totals(
    all: &[Port],
    ports: &[PortId],
    streams: &[(PortId, PortId, Arc<StreamStats>)],
) -> Vec<(PortId, PortTotals)> {
    ports
        .iter()
        .map(|&p| {
            let port = all[p as usize].stats();
            let mut t = PortTotals {
                rx_dropped: port.imissed,
                rx_errors: port.ierrors,
                rx_nombuf: port.rx_nombuf,
                ..Default::default()
            };
            for (rx, tx, s) in streams {
                if *rx == p {
                    t.rx += s.rx.load(Ordering::Relaxed);
                    t.bad_ip += s.bad_ip.load(Ordering::Relaxed);
                    t.bad_l4 += s.bad_l4.load(Ordering::Relaxed);
                }
                if *tx == p {
                    t.tx += s.tx.load(Ordering::Relaxed);
                    t.tx_dropped += s.tx_dropped.load(Ordering::Relaxed);
                }
            }
            (p, t)
        })
        .collect()
}

/// Per-stream forward statistics (printed, as testpmd does, when there are more streams
/// than ports). `streams` holds (rx port, rx queue, tx port, tx queue, counters).
pub fn format_streams(streams: &[(PortId, u16, PortId, u16, Arc<StreamStats>)]) -> String {
    let mut out = String::new();
    for (rp, rq, tp, tq, s) in streams {
        let _ = writeln!(
            out,
            "\n  ------- Forward Stats for RX Port={rp:>2}/Queue={rq:>2} -> TX Port={tp:>2}/Queue={tq:>2} -------"
        );
        let _ = writeln!(
            out,
            "  RX-packets: {:<14} TX-packets: {:<14} TX-dropped: {}",
            s.rx.load(Ordering::Relaxed),
            s.tx.load(Ordering::Relaxed),
            s.tx_dropped.load(Ordering::Relaxed)
        );
    }
    out
}

/// The final "Forward statistics" (per port, then accumulated). As testpmd does, the
/// `RX-error`/`RX-nombufs` lines of a port appear when either count is not zero, and the
/// accumulated `RX-nombufs` line when the ports' sum is not zero.
pub fn format_final(per_port: &[(PortId, PortTotals)], csum: bool) -> String {
    let mut out = String::new();
    let mut acc = PortTotals::default();
    for (p, t) in per_port {
        let _ = writeln!(
            out,
            "\n  ---------------------- Forward statistics for port {p:<2} ----------------------"
        );
        let _ = writeln!(
            out,
            "  RX-packets: {:<14} RX-dropped: {:<14} RX-total: {}",
            t.rx,
            t.rx_dropped,
            t.rx + t.rx_dropped
        );
        if csum {
            let _ = writeln!(
                out,
                "  Bad-ipcsum: {:<14} Bad-l4csum: {:<14}",
                t.bad_ip, t.bad_l4
            );
        }
        if t.rx_errors + t.rx_nombuf > 0 {
            let _ = writeln!(out, "  RX-error: {}", t.rx_errors);
            let _ = writeln!(out, "  RX-nombufs: {:<14}", t.rx_nombuf);
        }
        let _ = writeln!(
            out,
            "  TX-packets: {:<14} TX-dropped: {:<14} TX-total: {}",
            t.tx,
            t.tx_dropped,
            t.tx + t.tx_dropped
        );
        let _ = writeln!(
            out,
            "  ----------------------------------------------------------------------------"
        );
        acc.rx += t.rx;
        acc.rx_dropped += t.rx_dropped;
        acc.rx_errors += t.rx_errors;
        acc.rx_nombuf += t.rx_nombuf;
        acc.tx += t.tx;
        acc.tx_dropped += t.tx_dropped;
    }
    let _ = writeln!(
        out,
        "\n  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++"
    );
    let _ = writeln!(
        out,
        "  RX-packets: {:<14} RX-dropped: {:<14} RX-total: {}",
        acc.rx,
        acc.rx_dropped,
        acc.rx + acc.rx_dropped
    );
    let _ = writeln!(
        out,
        "  TX-packets: {:<14} TX-dropped: {:<14} TX-total: {}",
        acc.tx,
        acc.tx_dropped,
        acc.tx + acc.tx_dropped
    );
    if acc.rx_nombuf > 0 {
        let _ = writeln!(out, "  RX-nombufs: {:<14}", acc.rx_nombuf);
    }
    let _ = writeln!(
        out,
        "  ++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++"
    );
    out
}

/// Prints `pool`'s usage line; once every queue stopped and let go of its buffers, a
/// buffer still out is a leak: warned about on stderr (a warning, not a failure).
pub fn print_pool_end(pool: &Mempool) {
    println!("{}", pool.usage_line());
    if let Some(w) = pool.leak_warning() {
        eprintln!("testpmd: warning: {w}");
    }
}

/// Telemetry's `/testpmd/fwd_stats,PORT`: the forward counters of one forwarding port, as
/// the final table prints them (`None`, telemetry's `null`, for another port or a bad id).
pub fn telemetry_fwd_stats(
    all: &[Port],
    ports: &[PortId],
    streams: &[(PortId, PortId, Arc<StreamStats>)],
    param: Option<&str>,
) -> Option<pmd_core::telemetry::Value> {
    let p: PortId = param?.trim().parse().ok()?;
    if !ports.contains(&p) {
        return None;
    }
    let (_, t) = totals(all, &[p], streams).pop()?;
    Some(pmd_core::telemetry::json!({
        "rx_packets": t.rx,
        "rx_dropped": t.rx_dropped,
        "rx_errors": t.rx_errors,
        "rx_nombuf": t.rx_nombuf,
        "tx_packets": t.tx,
        "tx_dropped": t.tx_dropped,
        "bad_ip_csum": t.bad_ip,
        "bad_l4_csum": t.bad_l4,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_format_matches_testpmd() {
        let t = PortTotals {
            rx: 10,
            rx_dropped: 1,
            tx: 9,
            tx_dropped: 2,
            ..Default::default()
        };
        let s = format_final(&[(0, t), (1, t)], false);
        assert!(s.contains("Forward statistics for port 0"));
        assert!(s.contains("RX-packets: 10             RX-dropped: 1              RX-total: 11"));
        assert!(s.contains("Accumulated forward statistics for all ports"));
        assert!(s.contains("TX-packets: 18             TX-dropped: 4              TX-total: 22"));
        assert!(!s.contains("Bad-ipcsum"));
        assert!(format_final(&[(0, t)], true).contains("Bad-ipcsum: 0"));
        assert!(!s.contains("RX-error"), "no error lines when both are zero");
        assert!(!s.contains("RX-nombufs"));
    }

    #[test]
    fn final_format_shows_errors_and_nombuf() {
        let clean = PortTotals {
            rx: 5,
            tx: 5,
            ..Default::default()
        };
        let starved = PortTotals {
            rx: 7,
            rx_errors: 2,
            rx_nombuf: 25,
            tx: 7,
            ..Default::default()
        };
        let s = format_final(&[(0, starved), (1, clean)], false);
        let port0 = "  RX-packets: 7              RX-dropped: 0              RX-total: 7\n\
                     \x20 RX-error: 2\n\
                     \x20 RX-nombufs: 25            \n\
                     \x20 TX-packets: 7  ";
        assert!(s.contains(port0), "{s}");
        assert_eq!(s.matches("RX-error:").count(), 1, "port 1 has neither");
        let acc = s.split("Accumulated").nth(1).unwrap();
        assert!(
            acc.contains("TX-total: 12\n  RX-nombufs: 25            \n  ++++"),
            "{acc}"
        );
        // Only nombuf: both lines still appear (the pair is printed together).
        let only = PortTotals {
            rx_nombuf: 3,
            ..Default::default()
        };
        assert!(format_final(&[(0, only)], false).contains("RX-error: 0\n  RX-nombufs: 3 "));
    }
}
