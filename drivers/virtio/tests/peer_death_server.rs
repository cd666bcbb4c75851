//! Peers that die, server mode: DPDK's vhost-user back end (`dpdk-testpmd` with
//! `net_vhost0,...,client=1`, macswap) connects to our `server=1` port and is killed with
//! SIGKILL while frames are in flight. The link goes down, a `net_null` port beside it
//! keeps forwarding, and the restarted back end is taken again by the port's watcher
//! thread (nobody asks for the link), handed the rings where the dead one left them, and
//! traffic resumes. Killed again while the port is stopped, the next start takes the next
//! back end. Every buffer goes back to the pool. Needs root, hugepages and
//! `dpdk-testpmd`; otherwise the test prints why and passes (and fails under
//! `PMD_REQUIRE_ALL=1`).

mod interop_common;

use interop_common::peers::Ours;
use interop_common::{skip_reason, Testpmd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[test]
fn server_mode_survives_dpdk_vhost_killed_and_restarted() {
    let test = "server_mode_survives_dpdk_vhost_killed_and_restarted";
    if !pmd_testkit::require(test, skip_reason()) {
        return;
    }
    let pid = std::process::id();
    let sock = PathBuf::from(format!("/tmp/pmd-virtio-death-s-{pid}.sock"));
    let log = PathBuf::from(format!("/tmp/pmd-virtio-death-s-{pid}.log"));
    let prefix = format!("pmdvdeaths{pid}");
    let start = || Testpmd::start_args(&sock, &prefix, &log, "macswap", 1, ",client=1", &[]);
    // testpmd retries until our socket exists; our probe waits for it to connect.
    let mut tp = start();
    let (mut ours, idle) = Ours::open(&sock, &format!("pmdvus{pid}"), ",server=1");
    assert_eq!(ours.xstat("server_mode"), 1);
    let started = ours.pool.stats().in_use;
    ours.pump("500 echoes", |_, n| n >= 500);
    tp.kill9();
    ours.pump("link down after SIGKILL", |o, _| !o.link_up());
    assert_eq!(ours.xstat("device_lost"), 1);
    ours.other_port_runs();
    // While the back end is dead the rings hold what they held: at most a tx ring more.
    let mut bursts = 0;
    ours.pump("300 bursts while dead", |_, _| {
        bursts += 1;
        bursts > 300
    });
    assert!(ours.pool.stats().in_use <= started + 256);
    drop(tp);

    // Nobody asks for the link now: the port's watcher takes the new back end.
    let tp = start();
    let again = ours.pump("500 echoes after the restart", |_, n| n >= 500);
    assert!(again >= 500);
    assert_eq!(ours.xstat("backend_reconnects"), 1);
    assert!(ours.link_up());
    // Killed again, and the port stopped meanwhile: the stop succeeds without the back
    // end, and a start takes the next one that connects.
    let mut tp = tp;
    tp.kill9();
    ours.pump("link down after the second SIGKILL", |o, _| !o.link_up());
    ours.eal.port_mut(0).unwrap().stop().unwrap();
    drop(tp);
    let e = ours
        .eal
        .port_mut(0)
        .unwrap()
        .start()
        .unwrap_err()
        .to_string();
    assert!(e.contains("no new one has connected yet"), "{e}");
    let tp = start();
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = ours.eal.port_mut(0).unwrap().start() {
        assert!(Instant::now() < deadline, "start: {e}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ours.xstat("backend_reconnects"), 2);
    ours.pump("500 echoes after stop, restart and start", |_, n| n >= 500);
    ours.finish(idle);
    drop(tp);
    assert!(!sock.exists(), "our socket removed when the port closed");
}
