//! l2fwd carries every frame unchanged but for its MAC rewrite — minimum, odd and jumbo
//! sizes, 802.1Q and QinQ tags, broadcast and multicast — over veth pairs at MTU 1500 and
//! 9000 with af_packet ports, at MTU 1500 with af_xdp ports (one UMEM frame per packet),
//! and over tap ports at MTU 9000:
//!
//! ```text
//!  inject ==veth/tap==> [port 0] l2fwd [port 1] ==veth/tap==> capture
//! ```
//!
//! Frames larger than one 2 KiB mbuf cross l2fwd as chains (it asks for SCATTER and
//! MULTI_SEGS). Needs root; without it the tests print why and pass (and fail under
//! `PMD_REQUIRE_ALL=1`).

mod common;

use common::{Proc, L2FWD};
use pmd_testkit::frames::{frame_set, one_way, ETH_P_ALL};
use pmd_testkit::{have_root, ip, parse_mac, unique, NetNs, RawSock};
use std::process::Command;
use std::time::Duration;

/// Which PMD l2fwd's ports use.
#[derive(Clone, Copy, Debug)]
enum Pmd {
    AfPacket,
    AfXdp,
    Tap,
}

/// Runs l2fwd in `ns` on `ports[0]` and `ports[1]` with `pmd`, sends the frame set for
/// `mtu` from the outer end of port 0's link to the outer end of port 1's, and checks it
/// arrives whole; then l2fwd's totals: nothing dropped.
fn forward(test: &str, ns: &NetNs, pmd: Pmd, mtu: usize, links: [(&str, &str); 2]) {
    let vdev = |i: usize, iface: &str| match pmd {
        Pmd::AfPacket => format!("net_af_packet{i},iface={iface}"),
        Pmd::AfXdp => format!("net_af_xdp{i},iface={iface}"),
        Pmd::Tap => format!("net_tap{i},iface={iface}"),
    };
    let prefix = unique("l2fwdt-jumbo");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), L2FWD])
        .args(["-l", "0", "--no-huge", "--file-prefix", &prefix])
        .args(["--vdev", &vdev(0, links[0].0)])
        .args(["--vdev", &vdev(1, links[1].0)])
        .args(["--", "-p", "0x3", "-q", "2", "-T", "1"]);
    let mut l2fwd = Proc::spawn(cmd);
    if let Err(e) = l2fwd.wait_for("Lcore ", 2, Duration::from_secs(10)) {
        panic!("{test}: {e}");
    }
    // The tx port's MAC, as l2fwd reports it ("Port 1 (...): MAC aa:bb:...").
    let out = l2fwd.stdout();
    let mac1 = out
        .lines()
        .find(|l| l.starts_with("Port 1 ("))
        .and_then(|l| l.rsplit("MAC ").next())
        .and_then(|m| parse_mac(m.trim()))
        .unwrap_or_else(|| panic!("{test}: no MAC for port 1\n{out}"));
    let (inject, capture) = (links[0].1.to_string(), links[1].1.to_string());
    let dst = ns.mac(&inject);
    let frames = frame_set(dst, mtu, 4);
    let n = frames.len() as f64;
    let res = ns.run(move || {
        let inj = RawSock::open(&inject, ETH_P_ALL, Duration::from_millis(20));
        let cap = RawSock::open(&capture, ETH_P_ALL, Duration::from_millis(20));
        // l2fwd rewrites destination (02:00:00:00:00:<port>) and source (tx port's MAC).
        one_way(&inj, &cap, &frames, Some(([2, 0, 0, 0, 0, 1], mac1)))
    });
    // Ctrl-C (ip netns exec execs l2fwd: the child is l2fwd itself).
    let status = l2fwd.interrupt(Duration::from_secs(5));
    let all = l2fwd.transcript();
    if let Err(e) = res {
        panic!("{test} ({pmd:?}, MTU {mtu}): {e}\n{all}");
    }
    assert!(status.is_some_and(|s| s.success()), "{test}: {all}");
    let last = |label: &str| {
        *common::stat_values(&l2fwd.stdout(), label)
            .last()
            .unwrap_or_else(|| panic!("no {label:?}\n{all}"))
    };
    assert!(last("Total packets received:") >= n, "{all}");
    assert_eq!(last("Total packets dropped:"), 0.0, "{all}");
    eprintln!(
        "{test}: {pmd:?} at MTU {mtu}: {n} frames (up to {} bytes) crossed l2fwd intact",
        mtu + 18
    );
}

/// A namespace with two veth pairs at `mtu` (`p0` <-> `o0`, `p1` <-> `o1`).
fn veth_ns(test: &str, mtu: usize) -> Option<NetNs> {
    let ns = NetNs::new("l2fwdt", test)?;
    ns.veth("p0", "o0");
    ns.veth("p1", "o1");
    for d in ["p0", "o0", "p1", "o1"] {
        ns.ip(&["link", "set", d, "mtu", &mtu.to_string()]);
    }
    Some(ns)
}

#[test]
fn af_packet_at_mtu_1500_and_9000() {
    const TEST: &str = "af_packet_at_mtu_1500_and_9000";
    if !have_root(TEST) {
        return;
    }
    for mtu in [1500, 9000] {
        let Some(ns) = veth_ns(TEST, mtu) else {
            return;
        };
        forward(TEST, &ns, Pmd::AfPacket, mtu, [("p0", "o0"), ("p1", "o1")]);
    }
}

#[test]
fn af_xdp_at_mtu_1500() {
    const TEST: &str = "af_xdp_at_mtu_1500";
    if !have_root(TEST) {
        return;
    }
    let Some(ns) = veth_ns(TEST, 1500) else {
        return;
    };
    forward(TEST, &ns, Pmd::AfXdp, 1500, [("p0", "o0"), ("p1", "o1")]);
}

#[test]
fn tap_at_mtu_9000() {
    const TEST: &str = "tap_at_mtu_9000";
    if !have_root(TEST) {
        return;
    }
    let Some(ns) = NetNs::new("l2fwdt", TEST) else {
        return;
    };
    // Persistent taps made beforehand at MTU 9000, attached by the PMD; the kernel side
    // of each is where frames are injected and captured.
    for t in ["tj0", "tj1"] {
        ip(&["-n", ns.name(), "tuntap", "add", "mode", "tap", "name", t]).unwrap();
        ns.ip(&["link", "set", t, "mtu", "9000"]);
        ns.ip(&["link", "set", t, "up"]);
    }
    forward(TEST, &ns, Pmd::Tap, 9000, [("tj0", "tj0"), ("tj1", "tj1")]);
}
