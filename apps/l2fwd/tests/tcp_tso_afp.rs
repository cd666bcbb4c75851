//! A kernel TCP transfer through l2fwd on two af_packet ports over veth pairs, with the
//! ports' vnet offloads on (`--enable-lro`: super-frames forwarded whole) and off
//! (MTU-sized frames):
//!
//! ```text
//!  namespace A           namespace fwd: l2fwd                                namespace B
//!  10.9.1.1 a0 <=veth=> fa0 [port 0 net_af_packet0] <-> [port 1 net_af_packet1] fb0 <=veth=> b0 10.9.1.2
//! ```
//!
//! A client in A sends 20 MB to a server in B; every byte is compared. With
//! `--enable-lro` the kernel hands port 0 a0's TSO super-frames (veth's default), which
//! l2fwd forwards as RX_LRO chains and port 1 sends as GSO frames: port 0 then receives
//! far fewer packets than 20 MB of MTU-sized frames would take. Without it the ports have
//! no vnet headers, so a0 and b0 get TSO and checksum offload turned off (the kernel would
//! otherwise hand over super-frames and partial checksums the port cannot take).
//!
//! Needs root; without it the test prints why and passes (and fails under `PMD_REQUIRE_ALL=1`).

mod common;

use common::tcp::{received, transfer as tcp_transfer, BYTES};
use common::{Proc, L2FWD};
use pmd_testkit::{unique, NetNs};
use std::process::Command;
use std::time::Duration;

/// Runs the transfer (`--enable-lro` when `lro`); returns the packets port 0 received.
fn transfer(lro: bool, test: &str) -> Option<u64> {
    let fwd = NetNs::new("afptf", test)?;
    let a = NetNs::new("afpta", test)?;
    let b = NetNs::new("afptb", test)?;
    for (ns, near, far, addr) in [
        (&a, "fa0", "a0", "10.9.1.1/24"),
        (&b, "fb0", "b0", "10.9.1.2/24"),
    ] {
        fwd.veth(near, far);
        fwd.ip(&["link", "set", far, "netns", ns.name()]);
        ns.ip(&["addr", "add", addr, "dev", far]);
        ns.ip(&["link", "set", far, "up"]);
        ns.ip(&["link", "set", "lo", "up"]);
        if !lro {
            let st = Command::new("ip")
                .args(["netns", "exec", ns.name(), "ethtool", "-K", far])
                .args(["tx", "off", "tso", "off", "gso", "off"])
                .stdout(std::process::Stdio::null())
                .status()
                .expect("running ethtool");
            assert!(st.success(), "ethtool -K {far} tx off tso off gso off");
        }
    }
    let prefix = unique("afpl2f");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", fwd.name(), L2FWD])
        .args(["-l", "0", "--no-huge", "--file-prefix", &prefix])
        .args(["--vdev", "net_af_packet0,iface=fa0"])
        .args(["--vdev", "net_af_packet1,iface=fb0"])
        .args(["--", "-p", "0x3", "-q", "2", "-T", "1", "--no-mac-updating"])
        .args(lro.then_some("--enable-lro"));
    let mut l2fwd = Proc::spawn(cmd);
    l2fwd
        .wait_for("Port 1 link", 1, Duration::from_secs(20))
        .unwrap();
    let (sent, got) = tcp_transfer(&a, &b, "10.9.1.2", 5202);
    // Stop l2fwd (SIGINT to the process `ip netns exec` became) for its final statistics.
    let _ = Command::new("kill")
        .args(["-INT", &l2fwd.pid().to_string()])
        .status();
    l2fwd.wait(Duration::from_secs(10));
    let out = l2fwd.stdout();
    assert_eq!(sent, Ok(BYTES), "{}", l2fwd.transcript());
    assert_eq!(got, Ok(BYTES), "every byte arrives\n{}", l2fwd.transcript());
    let p0 = received(&out, 0)
        .unwrap_or_else(|| panic!("no statistics from l2fwd\n{}", l2fwd.transcript()));
    println!("lro={lro}: port 0 received {p0} packets");
    Some(p0)
}

#[test]
fn tcp_20mb_through_l2fwd_on_af_packet_with_and_without_lro() {
    let test = "tcp_20mb_through_l2fwd_on_af_packet_with_and_without_lro";
    let Some(lro0) = transfer(true, test) else {
        return;
    };
    let Some(plain0) = transfer(false, test) else {
        return;
    };
    // 20 MB in frames of at most 1448 payload bytes: at least 13,800 packets.
    let mtu_frames = (BYTES / 1448) as u64;
    assert!(plain0 >= mtu_frames, "offloads off: {plain0} packets");
    assert!(
        lro0 * 2 < mtu_frames,
        "--enable-lro: {lro0} packets for {BYTES} bytes: super-frames were not forwarded whole"
    );
}
