//! The statistics table, in DPDK l2fwd's format (so the same scripts parse both).

use pmd_core::ethdev::{Port, PortId};
use pmd_core::{tsc, Mempool};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Prints per-port and total counters, plus the forwarding rate since the last print.
pub struct Reporter {
    ports: Vec<PortId>,
    dropped: Arc<Vec<AtomicU64>>,
    last_tsc: u64,
    last_sent: u64,
}

impl Reporter {
    /// A reporter over `ports`, reading app-level drop counters from `dropped`.
    pub fn new(ports: &[PortId], dropped: Arc<Vec<AtomicU64>>) -> Reporter {
        Reporter {
            ports: ports.to_vec(),
            dropped,
            last_tsc: tsc::rdtsc(),
            last_sent: 0,
        }
    }

    /// Whether `period` TSC ticks passed since the last print.
    #[inline]
    pub fn due(&self, now: u64, period: u64) -> bool {
        now.wrapping_sub(self.last_tsc) >= period
    }

    /// Prints the table.
    pub fn print(&mut self, all: &[Port], now: u64) {
        let mut out = String::new();
        if std::io::stdout().is_terminal() {
            out.push_str("\x1b[2J\x1b[1;1H");
        }
        out.push_str("\nPort statistics ====================================");
        let (mut sent, mut recv, mut drop) = (0u64, 0u64, 0u64);
        for &p in &self.ports {
            let s = all[p as usize].stats();
            let d = self.dropped[p as usize].load(Ordering::Relaxed);
            out.push_str(&format!(
                "\nStatistics for port {p} ------------------------------\
                 \nPackets sent: {:>24}\nPackets received: {:>20}\nPackets dropped: {:>21}",
                s.opackets, s.ipackets, d
            ));
            sent += s.opackets;
            recv += s.ipackets;
            drop += d;
        }
        let secs = now.wrapping_sub(self.last_tsc) as f64 / tsc::hz() as f64;
        let rate = if secs > 0.0 {
            (sent - self.last_sent.min(sent)) as f64 / secs / 1e6
        } else {
            0.0
        };
        out.push_str(&format!(
            "\nAggregate statistics ===============================\
             \nTotal packets sent: {sent:>18}\nTotal packets received: {recv:>14}\nTotal packets dropped: {drop:>15}\
             \nTotal rate (Mpps): {rate:>19.3}\
             \n====================================================\n"
        ));
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
        self.last_tsc = now;
        self.last_sent = sent;
    }
}

/// Prints the run's forwarding rate and its cost: TSC cycles per forwarded packet, summed
/// over the forwarding lcores (each polls all the time, so its cycles are all spent on
/// forwarding or polling).
pub fn print_summary(all: &[Port], ports: &[PortId], ticks: u64, lcores: usize) {
    let sent: u64 = ports
        .iter()
        .map(|&p| all[p as usize].stats().opackets)
        .sum();
    let secs = ticks as f64 / tsc::hz() as f64;
    let mpps = if secs > 0.0 {
        sent as f64 / secs / 1e6
    } else {
        0.0
    };
    let cycles = if sent > 0 {
        format!("{:.1}", ticks as f64 * lcores as f64 / sent as f64)
    } else {
        "-".into()
    };
    println!(
        "Forwarded {sent} packets in {secs:.2} s on {lcores} lcore(s): {mpps:.3} Mpps, {cycles} TSC cycles per packet"
    );
}

/// Prints the TSC cycles spent in polls that received packets, per packet sent: the cost
/// of forwarding itself, without idle polling.
pub fn print_busy(all: &[Port], ports: &[PortId], busy_ticks: u64) {
    let sent: u64 = ports
        .iter()
        .map(|&p| all[p as usize].stats().opackets)
        .sum();
    if sent > 0 {
        println!(
            "Busy forwarding: {:.1} TSC cycles per packet ({busy_ticks} cycles in polls that received packets)",
            busy_ticks as f64 / sent as f64
        );
    }
}

/// Prints, per port, the counters DPDK l2fwd's table leaves out: packets lost on receive
/// (missed, erroneous, no buffer) and packets the driver took but could not send. With
/// them, what a port received equals what its peer sent, dropped or lost to tx errors.
pub fn print_port_errors(all: &[Port], ports: &[PortId]) {
    for &p in ports {
        let s = all[p as usize].stats();
        println!(
            "Port {p} errors: rx-missed {} rx-errors {} rx-nombuf {} tx-errors {}",
            s.imissed, s.ierrors, s.rx_nombuf, s.oerrors
        );
    }
}

/// Prints `pool`'s usage line; once every queue stopped and let go of its buffers, a
/// buffer still out is a leak: warned about on stderr (a warning, not a failure).
pub fn print_pool_end(pool: &Mempool) {
    println!("{}", pool.usage_line());
    if let Some(w) = pool.leak_warning() {
        eprintln!("l2fwd: warning: {w}");
    }
}

/// Telemetry's `/l2fwd/stats,PORT`: what the periodic table prints for one enabled port
/// (`None`, telemetry's `null`, for a port l2fwd does not forward or a bad id).
pub fn telemetry_stats(
    all: &[Port],
    enabled: &[PortId],
    dropped: &[AtomicU64],
    param: Option<&str>,
) -> Option<pmd_core::telemetry::Value> {
    let p: PortId = param?.trim().parse().ok()?;
    if !enabled.contains(&p) {
        return None;
    }
    let s = all.get(usize::from(p))?.stats();
    Some(pmd_core::telemetry::json!({
        "sent": s.opackets,
        "received": s.ipackets,
        "dropped": dropped.get(usize::from(p))?.load(Ordering::Relaxed),
    }))
}
