//! Writes many-flow IPv4/IPv6 UDP traffic to a pcap file, and the l3fwd route files
//! (DPDK's format) that send all of it to one port (ci/bench-l3fwd.sh).
//!
//! ```text
//! pcap-flows OUT.pcap FLOWS LEN V6_PCT ROUTES_DIR PORT
//! ```
//!
//! Writes ROUTES_DIR/{lpm,em}_v{4,6}.cfg. LEN is the frame length without FCS (60 for a
//! 64-byte frame on the wire).

use pmd_testkit::flows::{em_routes, frames, lpm_routes, write_pcap, FlowSpec};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: pcap-flows OUT.pcap FLOWS LEN V6_PCT ROUTES_DIR PORT";
    let [out, flows, len, v6, dir, port] = &a[..] else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let (Ok(flows), Ok(len), Ok(v6_pct), Ok(port)) =
        (flows.parse(), len.parse(), v6.parse::<u32>(), port.parse())
    else {
        eprintln!("pcap-flows: FLOWS, LEN, V6_PCT and PORT are numbers; {usage}");
        return ExitCode::from(2);
    };
    if !(60..=9000).contains(&len) || v6_pct > 100 || flows == 0 {
        eprintln!("pcap-flows: LEN 60-9000, V6_PCT 0-100, FLOWS at least 1");
        return ExitCode::from(2);
    }
    let spec = FlowSpec {
        flows,
        len,
        v6_pct,
        dst_mac: [0x02, 0, 0, 0, 0, 0x10],
    };
    let dir = PathBuf::from(dir);
    let (l4, l6) = lpm_routes(port);
    let (e4, e6) = em_routes(&spec, port);
    let written = write_pcap(out.as_ref(), &frames(&spec)).and_then(|_| {
        for (name, text) in [("lpm_v4", l4), ("lpm_v6", l6), ("em_v4", e4), ("em_v6", e6)] {
            std::fs::write(dir.join(format!("{name}.cfg")), text)?;
        }
        Ok(())
    });
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pcap-flows: {e}");
            ExitCode::from(1)
        }
    }
}
