//! Peers that die, client mode: DPDK's vhost-user back end (`dpdk-testpmd` with
//! `net_vhost`, macswap) listens and our port connects; the back end is killed with
//! SIGKILL while frames are in flight. The link goes down, a `net_null` port beside it
//! keeps forwarding, the port reconnects when testpmd listens again and traffic resumes;
//! killed once more, the port stops without it and every buffer goes back to the pool.
//! Needs root, hugepages and `dpdk-testpmd`; otherwise the test prints why and passes
//! (and fails under `PMD_REQUIRE_ALL=1`).

mod interop_common;

use interop_common::peers::Ours;
use interop_common::{skip_reason, wait_socket, Testpmd};
use std::path::PathBuf;

#[test]
fn client_mode_sees_dpdk_vhost_killed_and_reconnects() {
    let test = "client_mode_sees_dpdk_vhost_killed_and_reconnects";
    if !pmd_testkit::require(test, skip_reason()) {
        return;
    }
    let pid = std::process::id();
    let sock = PathBuf::from(format!("/tmp/pmd-virtio-death-c-{pid}.sock"));
    let log = PathBuf::from(format!("/tmp/pmd-virtio-death-c-{pid}.log"));
    let prefix = format!("pmdvdeathc{pid}");
    let start = || {
        let tp = Testpmd::start_args(&sock, &prefix, &log, "macswap", 1, "", &[]);
        wait_socket(&tp, &sock);
        tp
    };
    let mut tp = start();
    let (mut ours, idle) = Ours::open(&sock, &format!("pmdvuc{pid}"), "");
    assert_eq!(ours.xstat("server_mode"), 0);
    ours.pump("500 echoes", |_, n| n >= 500);
    tp.kill9();
    ours.pump("link down after SIGKILL", |o, _| !o.link_up());
    assert_eq!(ours.xstat("device_lost"), 1);
    ours.other_port_runs();
    drop(tp);

    let tp = start();
    ours.pump("link up with the restarted back end", |o, _| o.link_up());
    assert_eq!(ours.xstat("backend_reconnects"), 1);
    ours.pump("500 echoes after the restart", |_, n| n >= 500);
    // Killed again: the port stops without its back end and gives every buffer back.
    let mut tp = tp;
    tp.kill9();
    ours.pump("link down after the second SIGKILL", |o, _| !o.link_up());
    assert_eq!(ours.xstat("device_lost"), 2);
    ours.finish(idle);
    drop(tp);
}
