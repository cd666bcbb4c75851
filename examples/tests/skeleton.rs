//! The skeleton forwarding real frames between two veth pairs in a private network
//! namespace (af_packet ports):
//!
//! ```text
//!  inject/capture            skeleton (af_packet)            capture/inject
//!  o0 <==veth==> p0 [port 0] <------------------> [port 1] p1 <==veth==> o1
//! ```
//!
//! Frames of many sizes up to the MTU, 802.1Q and QinQ tagged, broadcast and multicast,
//! cross each way once, every byte as sent; then Ctrl-C, and counts with no drop. Needs
//! root; without it the test says why and passes (and fails under `PMD_REQUIRE_ALL=1`).

mod common;

use pmd_testkit::frames::{frame_set, one_way, ETH_P_ALL};
use pmd_testkit::{have_root, NetNs, RawSock};
use std::time::Duration;

const SKELETON: &str = env!("CARGO_BIN_EXE_skeleton");

#[test]
fn forwards_frames_unchanged_both_ways_over_veth() {
    const TEST: &str = "forwards_frames_unchanged_both_ways_over_veth";
    if !have_root(TEST) {
        return;
    }
    // Declared before the process, so it is deleted after the process is gone.
    let Some(ns) = NetNs::new("pmdex", TEST) else {
        return;
    };
    ns.veth("p0", "o0");
    ns.veth("p1", "o1");
    let vdevs = [
        "--vdev",
        "net_af_packet0,iface=p0",
        "--vdev",
        "net_af_packet1,iface=p1",
    ];
    let mut app = common::start(&ns, SKELETON, &vdevs, &[], "Forwarding on lcore");

    let mut sent = 0;
    for (inject, via, capture) in [("o0", "p0", "o1"), ("o1", "p1", "o0")] {
        let frames = frame_set(ns.mac(via), 1500, 2);
        sent += frames.len() as u64;
        let res = ns.run(move || {
            let inj = RawSock::open(inject, ETH_P_ALL, Duration::from_millis(20));
            let cap = RawSock::open(capture, ETH_P_ALL, Duration::from_millis(20));
            one_way(&inj, &cap, &frames, None)
        });
        if let Err(e) = res {
            panic!("{TEST}: {inject} -> {capture}: {e}\n{}", app.transcript());
        }
    }

    let out = common::stop(&mut app);
    for p in 0..2 {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("Port {p}: received ")))
            .unwrap_or_else(|| panic!("no final count of port {p}\n{out}"));
        let n: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        // Port number, received, sent, then the three kinds of drop.
        assert!(
            n.len() == 6 && n[1] >= sent / 2 && n[2] >= sent / 2,
            "{line}"
        );
        assert_eq!(n[3..], [0, 0, 0], "{line}");
    }
}
