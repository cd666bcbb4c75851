//! The final statistics: each port's counters, why packets were dropped, and the rate.

use crate::fwd::Counts;
use pmd_core::ethdev::{Port, PortId};
use pmd_core::tsc;

/// Prints the port table (DPDK l2fwd's layout, so the same scripts read both), the drop
/// reasons, and the forwarding rate with its cost in TSC cycles per packet.
pub fn print(all: &[Port], ports: &[PortId], c: &Counts, ticks: u64, lcores: usize) {
    println!("\nPort statistics ====================================");
    for &p in ports {
        let s = all[usize::from(p)].stats();
        println!(
            "Statistics for port {p} ------------------------------\
             \nPackets sent: {:>24}\nPackets received: {:>20}\
             \nRx missed/errors/no-mbuf: {} / {} / {}, tx errors: {}",
            s.opackets, s.ipackets, s.imissed, s.ierrors, s.rx_nombuf, s.oerrors
        );
    }
    println!(
        "l3fwd: received {}, forwarded {}, dropped: no route {}, TTL expired {}, malformed {}, not IP {}, tx queue full {}",
        c.received, c.forwarded, c.no_route, c.ttl_expired, c.malformed, c.not_ip, c.tx_full
    );
    let secs = ticks as f64 / tsc::hz() as f64;
    let mpps = if secs > 0.0 {
        c.forwarded as f64 / secs / 1e6
    } else {
        0.0
    };
    let per_pkt = |t: u64| {
        if c.forwarded > 0 {
            format!("{:.1}", t as f64 / c.forwarded as f64)
        } else {
            "-".into()
        }
    };
    println!(
        "Forwarded {} packets in {secs:.2} s on {lcores} lcore(s): {mpps:.3} Mpps, {} TSC cycles per packet ({} in polls that received packets)",
        c.forwarded,
        per_pkt(ticks * lcores as u64),
        per_pkt(c.busy_ticks)
    );
    println!("====================================================");
}
