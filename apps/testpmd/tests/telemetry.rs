//! DPDK's `dpdk-telemetry.py` reads a running testpmd as it reads DPDK's testpmd: every
//! command of issue 14 is answered, keyed and shaped as DPDK 22.11 answers it (compared
//! live, [`pmd_testkit::telemetry::compare_with_dpdk`]), and testpmd's own
//! `/testpmd/fwd_stats` gives a forwarding port's counters. Needs `dpdk-testpmd`,
//! `dpdk-telemetry.py` (ci/setup.sh --dpdk) and root (DPDK's runtime directory).

use pmd_testkit::telemetry::{compare_with_dpdk, missing, query, wait_socket};
use pmd_testkit::{require, unique, Proc};
use std::process::Command;
use std::time::Duration;

#[test]
fn dpdk_telemetry_py_reads_testpmd_as_it_reads_dpdk() {
    let test = "dpdk_telemetry_py_reads_testpmd_as_it_reads_dpdk";
    if !require(test, missing()) {
        return;
    }
    let prefix = unique("pmd-tel-testpmd");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_testpmd"));
    cmd.args(["-l", "0", "--no-huge", "--file-prefix", &prefix])
        .args(["--vdev", "net_null0", "--vdev", "net_null1"])
        .args([
            "--",
            "--forward-mode=io",
            "--stats-period=0",
            "--duration=60",
        ]);
    let mut child = Proc::spawn(cmd);
    assert!(wait_socket(&prefix), "no telemetry socket");
    let ours = compare_with_dpdk(&prefix);
    assert_eq!(
        ours.get("/ethdev/list")["/ethdev/list"],
        serde_json::json!([0, 1])
    );
    let f = query(&prefix, "/testpmd/fwd_stats,0");
    assert!(
        f["/testpmd/fwd_stats"]["rx_packets"].as_u64() > Some(0),
        "{f}"
    );
    assert_eq!(
        query(&prefix, "/testpmd/fwd_stats,x")["/testpmd/fwd_stats"],
        serde_json::Value::Null
    );
    let status = child.interrupt(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        child.stderr()
    );
    assert!(!pmd_core::telemetry::runtime_dir(&prefix).exists());
}
