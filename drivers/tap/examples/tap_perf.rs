//! tap_perf: blasts 64-byte IPv4/UDP frames (like testpmd's txonly) through a tap port
//! (`tx`), or receives and frees (`rx`), on one lcore through the public ethdev API,
//! printing packets per second every second (the loop is `pmd_testkit::perf`). Tx counts
//! what the kernel took (the port's `opackets`: tx_burst also consumes refused packets).
//!
//! ```text
//! tap_perf [EAL options] -- tx|rx [--duration SECS] [--size 64] [--burst 32]
//! e.g. tap_perf -l 1 --no-pci --vdev net_tap0,iface=dtap0 -- tx --duration 10
//! ```
//! Stops on SIGINT/SIGTERM or after `--duration`; prints a final `average Mpps` line.

use pmd_testkit::perf::{Frame, PerfConf};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    pmd_testkit::perf::main(&PerfConf {
        name: "tap_perf",
        drivers: &[&pmd_tap::DRIVER],
        link_wait: Duration::from_secs(10),
        frame: Frame::TxonlyUdp {
            dst: [0x02, 0, 0, 0, 0, 0],
        },
        tx_count_from_stats: true,
        check_every: 64,
        decimals: 3,
        xstat_prefixes: &[],
    })
}
