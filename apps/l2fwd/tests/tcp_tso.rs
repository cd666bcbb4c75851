//! A kernel TCP transfer through l2fwd on two tap ports, with the taps' vnet offloads on
//! (super-frames forwarded whole as chains) and off (MTU-sized frames):
//!
//! ```text
//!  namespace A            namespace fwd: l2fwd                    namespace B
//!  10.9.0.1 tso0 <=tap=> [port 0 net_tap0] <-> [port 1 net_tap1] <=tap=> tso1 10.9.0.2
//! ```
//!
//! l2fwd creates both taps in `fwd`; their kernel sides are then moved into A and B (the
//! PMD's fds keep working across namespaces). A client in A sends 20 MB to a server in B;
//! every byte is compared. With `--enable-lro` the kernel hands the PMD TSO super-frames, which
//! l2fwd forwards unchanged as RX_LRO chains and the other tap sends as GSO frames: port
//! 0 then receives far fewer packets than 20 MB of MTU-sized frames would take.
//!
//! Needs root; without it the test prints why and passes (and fails under `PMD_REQUIRE_ALL=1`).

mod common;

use common::tcp::{received, transfer as tcp_transfer, BYTES};
use common::{Proc, L2FWD};
use pmd_testkit::{unique, NetNs};
use std::process::Command;
use std::time::Duration;

/// Runs the transfer with l2fwd's `--enable-lro` when `gso`; returns the packets port 0 and
/// port 1 received.
fn transfer(gso: bool, test: &str) -> Option<(u64, u64)> {
    let fwd = NetNs::new("tsof", test)?;
    let a = NetNs::new("tsoa", test)?;
    let b = NetNs::new("tsob", test)?;
    let prefix = unique("tsol2f");
    let lro = gso.then_some("--enable-lro");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", fwd.name(), L2FWD])
        .args(["-l", "0", "--no-huge", "--file-prefix", &prefix])
        .args(["--vdev", "net_tap0,iface=tso0"])
        .args(["--vdev", "net_tap1,iface=tso1"])
        .args(["--", "-p", "0x3", "-q", "2", "-T", "1", "--no-mac-updating"])
        .args(lro);
    let mut l2fwd = Proc::spawn(cmd);
    l2fwd
        .wait_for("Port 1 link", 1, Duration::from_secs(20))
        .unwrap();
    fwd.ip(&["link", "set", "tso0", "netns", a.name()]);
    fwd.ip(&["link", "set", "tso1", "netns", b.name()]);
    for (ns, dev, addr) in [(&a, "tso0", "10.9.0.1/24"), (&b, "tso1", "10.9.0.2/24")] {
        ns.ip(&["addr", "add", addr, "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
        ns.ip(&["link", "set", "lo", "up"]);
    }
    let (sent, got) = tcp_transfer(&a, &b, "10.9.0.2", 5201);
    let tso0 = a.ip(&["-s", "link", "show", "tso0"]);
    // Stop l2fwd (SIGINT to the process `ip netns exec` became) for its final statistics.
    let _ = Command::new("kill")
        .args(["-INT", &l2fwd.pid().to_string()])
        .status();
    l2fwd.wait(Duration::from_secs(10));
    let out = l2fwd.stdout();
    assert_eq!(sent, Ok(BYTES), "{}", l2fwd.transcript());
    assert_eq!(got, Ok(BYTES), "every byte arrives\n{}", l2fwd.transcript());
    let (Some(p0), Some(p1)) = (received(&out, 0), received(&out, 1)) else {
        panic!("no statistics from l2fwd\n{}", l2fwd.transcript());
    };
    println!("gso={gso}: port 0 received {p0} packets, port 1 {p1}\n{tso0}");
    Some((p0, p1))
}

#[test]
fn tcp_20mb_through_l2fwd_on_taps_with_and_without_gso() {
    let test = "tcp_20mb_through_l2fwd_on_taps_with_and_without_gso";
    let Some((gso0, _)) = transfer(true, test) else {
        return;
    };
    let Some((plain0, _)) = transfer(false, test) else {
        return;
    };
    // 20 MB in frames of at most 1448 payload bytes: at least 13,800 packets.
    let mtu_frames = (BYTES / 1448) as u64;
    assert!(plain0 >= mtu_frames, "offloads off: {plain0} packets");
    assert!(
        gso0 * 2 < mtu_frames,
        "offloads on: {gso0} packets for {BYTES} bytes: super-frames were not forwarded whole"
    );
}
