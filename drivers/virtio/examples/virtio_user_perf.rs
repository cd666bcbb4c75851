//! virtio_user_perf: blasts 64-byte frames through a virtio-user port (`tx`) or receives
//! and frees (`rx`), printing packets per second every second, like testpmd's
//! txonly/rxonly forwarding modes (the loop is `pmd_testkit::perf`).
//!
//! ```text
//! virtio_user_perf [EAL options] -- tx|rx [--duration SECS] [--size 64] [--burst 32]
//! e.g. virtio_user_perf -l 0 --no-pci --vdev net_virtio_user0,path=/tmp/vhost.sock -- tx --duration 10
//! ```
//! Stops on SIGINT/SIGTERM or after `--duration`; prints a final `average Mpps` line.

use pmd_testkit::perf::{Frame, PerfConf};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    pmd_testkit::perf::main(&PerfConf {
        name: "virtio_user_perf",
        drivers: &[&pmd_virtio::DRIVER],
        link_wait: Duration::from_secs(10),
        frame: Frame::Experimental,
        tx_count_from_stats: false,
        check_every: 1024,
        decimals: 2,
        xstat_prefixes: &[],
    })
}
