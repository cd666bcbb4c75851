//! memif_perf: blasts 64-byte frames through a memif port (`tx`) or receives
//! and frees (`rx`), printing packets per second every second, like testpmd's
//! txonly/rxonly forwarding modes (the loop is `pmd_testkit::perf`).
//!
//! ```text
//! memif_perf [EAL options] -- tx|rx [--duration SECS] [--size 64] [--burst 32]
//! e.g. memif_perf -l 0 --no-pci --vdev net_memif0,role=client,socket=/tmp/memif.sock -- rx --duration 10
//!      memif_perf -l 1 --no-pci --vdev net_memif0,role=server,socket=/tmp/memif.sock -- tx
//! ```
//! Waits up to 30 s for the peer (the link), then runs on the main lcore through the public
//! ethdev API. Stops on SIGINT/SIGTERM or after `--duration`; prints a final `average Mpps`
//! line.

use pmd_testkit::perf::{Frame, PerfConf};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    pmd_testkit::perf::main(&PerfConf {
        name: "memif_perf",
        drivers: &[&pmd_memif::DRIVER],
        link_wait: Duration::from_secs(30),
        frame: Frame::Experimental,
        tx_count_from_stats: false,
        check_every: 1024,
        decimals: 2,
        xstat_prefixes: &[],
    })
}
