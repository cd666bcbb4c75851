//! af_xdp_perf: blasts 64-byte IPv4/UDP frames (testpmd txonly's) through an AF_XDP port
//! (`tx`) or receives and frees (`rx`) on one lcore through the public ethdev API, printing
//! packets per second every second (the loop is `pmd_testkit::perf`).
//!
//! ```text
//! af_xdp_perf [EAL options] -- tx|rx [--duration SECS] [--size 64] [--burst 32]
//! e.g. af_xdp_perf -l 0 --no-pci --vdev net_af_xdp0,iface=va0 -- tx --duration 10
//! ```
//! Stops on SIGINT/SIGTERM or after `--duration`; prints a final `average Mpps` line and
//! the AF_XDP xstats.

use pmd_testkit::perf::{Frame, PerfConf};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    pmd_testkit::perf::main(&PerfConf {
        name: "af_xdp_perf",
        drivers: &[&pmd_af_xdp::DRIVER],
        link_wait: Duration::from_secs(10),
        frame: Frame::TxonlyUdp { dst: [0; 6] },
        tx_count_from_stats: false,
        check_every: 1024,
        decimals: 2,
        xstat_prefixes: &["xdp_", "q0_"],
    })
}
