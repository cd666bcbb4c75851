//! testpmd in io mode carries every frame unchanged — minimum, odd and jumbo sizes,
//! 802.1Q and QinQ tags, broadcast and multicast — between two af_packet ports over veth
//! pairs at MTU 1500 and 9000 and two tap ports at MTU 9000 (`--enable-scatter`: jumbo
//! frames cross as mbuf chains of 2 KiB buffers), and between two af_xdp ports at MTU
//! 1500. Needs root; without it the test says why and passes (and fails under
//! `PMD_REQUIRE_ALL=1`).

use pmd_testkit::frames::{frame_set, one_way, ETH_P_ALL};
use pmd_testkit::{have_root, ip, unique, NetNs, RawSock};
use std::process::{Command, Stdio};
use std::time::Duration;

fn run(test: &str, pmd: &str, mtu: usize) {
    let Some(ns) = NetNs::new("tpmdt", test) else {
        return;
    };
    // The port's interface and where frames are injected and captured: the veth pair's
    // other end, or for a tap (made beforehand at the MTU, attached by the PMD) its own
    // kernel side.
    let (ports, inject, capture) = if pmd == "net_tap" {
        for t in ["p0", "p1"] {
            ip(&["-n", ns.name(), "tuntap", "add", "mode", "tap", "name", t]).unwrap();
            ns.ip(&["link", "set", t, "mtu", &mtu.to_string()]);
            ns.ip(&["link", "set", t, "up"]);
        }
        (["p0", "p1"], "p0", "p1")
    } else {
        ns.veth("p0", "o0");
        ns.veth("p1", "o1");
        for d in ["p0", "o0", "p1", "o1"] {
            ns.ip(&["link", "set", d, "mtu", &mtu.to_string()]);
        }
        (["p0", "p1"], "o0", "o1")
    };
    let prefix = unique("tpmdt-jumbo");
    let child = Command::new("ip")
        .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_testpmd")])
        .args(["-l", "0", "--no-huge", "--file-prefix", &prefix])
        .args(["--vdev", &format!("{pmd}0,iface={}", ports[0])])
        .args(["--vdev", &format!("{pmd}1,iface={}", ports[1])])
        .args(["--", "--forward-mode=io", "--duration=5"])
        // af_xdp has one UMEM frame per packet and no SCATTER (asking is refused).
        .args((pmd != "net_af_xdp").then_some("--enable-scatter"))
        .arg(format!("--max-pkt-len={}", mtu + 18))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start testpmd");
    std::thread::sleep(Duration::from_millis(1500)); // testpmd up and polling
    let dst = ns.mac(inject);
    let frames = frame_set(dst, mtu, 4);
    let n = frames.len();
    let res = ns.run(move || {
        let inj = RawSock::open(inject, ETH_P_ALL, Duration::from_millis(20));
        let cap = RawSock::open(capture, ETH_P_ALL, Duration::from_millis(20));
        one_way(&inj, &cap, &frames, None)
    });
    let out = child.wait_with_output().expect("testpmd output");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if let Err(e) = res {
        panic!("{test} ({pmd}, MTU {mtu}): {e}\n{text}");
    }
    assert!(out.status.success(), "{text}");
    let acc = text
        .split("Accumulated forward statistics")
        .nth(1)
        .unwrap_or_else(|| panic!("no final statistics\n{text}"));
    let num = |key: &str| -> u64 {
        acc.split(key)
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(num("RX-packets:") >= n as u64, "{text}");
    assert_eq!(num("TX-dropped:"), 0, "{text}");
    eprintln!("{test}: {pmd} at MTU {mtu}: {n} frames crossed testpmd intact");
}

#[test]
fn io_forwards_jumbo_and_tagged_frames_unchanged() {
    const TEST: &str = "io_forwards_jumbo_and_tagged_frames_unchanged";
    if !have_root(TEST) {
        return;
    }
    run(TEST, "net_af_packet", 1500);
    run(TEST, "net_af_packet", 9000);
    run(TEST, "net_af_xdp", 1500);
    run(TEST, "net_tap", 9000);
}
