//! l2fwd in adaptive mode (`--idle-sleep`): with no traffic it sleeps on its queues' rx
//! interrupts and uses under 2% of a core over 5 s (user + system time from
//! /proc/PID/stat); bursts of frames with idle gaps between them all cross it, each
//! exactly once and intact; its final statistics show the sleeps and the interrupt wakes;
//! taking port 1's wire down and up prints both link changes while it sleeps.
//! Over af_packet and af_xdp on veth pairs and over tap ports, in a private namespace:
//!
//! ```text
//!  inject ==veth/tap==> [port 0] l2fwd --idle-sleep [port 1] ==veth/tap==> capture
//! ```
//!
//! Needs root; without it the tests print why and pass (and fail under
//! `PMD_REQUIRE_ALL=1`).

mod common;

use common::{run_l2fwd, Proc, L2FWD};
use pmd_testkit::frames::{frame_set, one_way, ETH_P_ALL};
use pmd_testkit::{have_root, ip, parse_mac, unique, NetNs, RawSock};
use std::process::Command;
use std::time::{Duration, Instant};

/// Which PMD l2fwd's ports use.
#[derive(Clone, Copy, Debug)]
enum Pmd {
    AfPacket,
    AfXdp,
    Tap,
}

/// The idle window over which CPU use is measured, and the most it may use of a core.
const IDLE_WINDOW: Duration = Duration::from_secs(5);
const IDLE_MAX_PERCENT: f64 = 2.0;
/// Bursts sent, with this gap between them (long enough for l2fwd to fall asleep).
const BURSTS: usize = 3;
const GAP: Duration = Duration::from_millis(400);

fn adaptive(test: &str, ns: &NetNs, pmd: Pmd, links: [(&str, &str); 2]) {
    let vdev = |i: usize, iface: &str| match pmd {
        Pmd::AfPacket => format!("net_af_packet{i},iface={iface}"),
        Pmd::AfXdp => format!("net_af_xdp{i},iface={iface}"),
        Pmd::Tap => format!("net_tap{i},iface={iface}"),
    };
    let prefix = unique("l2fwdt-adapt");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), L2FWD])
        .args(["-l", "0", "--no-huge", "--file-prefix", &prefix])
        .args(["--vdev", &vdev(0, links[0].0)])
        .args(["--vdev", &vdev(1, links[1].0)])
        .args(["--", "-p", "0x3", "-q", "2", "-T", "1"])
        .args(["--idle-sleep", "200", "--max-sleep-ms", "100"]);
    let mut l2fwd = Proc::spawn(cmd);
    if let Err(e) = l2fwd.wait_for(
        "adaptive (sleeps after 200 µs without a packet)",
        1,
        Duration::from_secs(10),
    ) {
        panic!("{test}: {e}");
    }
    let out = l2fwd.stdout();
    let mac1 = out
        .lines()
        .find(|l| l.starts_with("Port 1 ("))
        .and_then(|l| l.rsplit("MAC ").next())
        .and_then(|m| parse_mac(m.trim()))
        .unwrap_or_else(|| panic!("{test}: no MAC for port 1\n{out}"));

    // Idle: settle, then measure.
    std::thread::sleep(Duration::from_millis(500));
    let pid = l2fwd.pid();
    let (c0, t0) = (pmd_testkit::cpu_seconds(pid), Instant::now());
    std::thread::sleep(IDLE_WINDOW);
    let idle_pct = (pmd_testkit::cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;

    // Bursts with idle gaps: each must cross whole.
    let (inject, capture) = (links[0].1.to_string(), links[1].1.to_string());
    let dst = ns.mac(&inject);
    let frames = frame_set(dst, 1500, 4);
    let n = frames.len();
    let res = ns.run(move || {
        let inj = RawSock::open(&inject, ETH_P_ALL, Duration::from_millis(20));
        let cap = RawSock::open(&capture, ETH_P_ALL, Duration::from_millis(20));
        for b in 0..BURSTS {
            std::thread::sleep(GAP);
            one_way(&inj, &cap, &frames, Some(([2, 0, 0, 0, 0, 1], mac1)))
                .map_err(|e| format!("burst {b}: {e}"))?;
        }
        Ok::<(), String>(())
    });
    // Link down and up on port 1's wire: l2fwd, asleep, prints both changes.
    let link_events = res.as_ref().ok().map(|_| {
        let outer = links[1].1;
        ns.ip(&["link", "set", outer, "down"]);
        let down = l2fwd.wait_for("Port 1 link changed: down", 1, Duration::from_secs(5));
        ns.ip(&["link", "set", outer, "up"]);
        let up = l2fwd.wait_for("Port 1 link changed: up", 1, Duration::from_secs(5));
        down.and(up)
    });
    // Ctrl-C (ip netns exec execs l2fwd: the child is l2fwd itself).
    let status = l2fwd.interrupt(Duration::from_secs(5));
    let all = l2fwd.transcript();
    if let Err(e) = res {
        panic!("{test} ({pmd:?}): {e}\n{all}");
    }
    if let Some(Err(e)) = link_events {
        panic!("{test} ({pmd:?}): link events: {e}\n{all}");
    }
    assert!(status.is_some_and(|s| s.success()), "{test}: {all}");
    let out = l2fwd.stdout();
    let last = |label: &str| {
        *common::stat_values(&out, label)
            .last()
            .unwrap_or_else(|| panic!("no {label:?}\n{all}"))
    };
    assert!(
        last("Total packets received:") >= (BURSTS * n) as f64,
        "{all}"
    );
    assert_eq!(last("Total packets dropped:"), 0.0, "{all}");
    let (sleeps, a) = pmd_testkit::adaptive_line(&out, 0)
        .unwrap_or_else(|| panic!("{test}: no adaptive statistics\n{all}"));
    assert!(a.sleeps > 0 && a.intr_wakes > 0, "{test}: {sleeps}\n{all}");
    assert!(
        idle_pct < IDLE_MAX_PERCENT,
        "{test} ({pmd:?}): {idle_pct:.2}% of a core while idle\n{all}"
    );
    eprintln!(
        "{test}: {pmd:?}: idle {idle_pct:.2}% of a core over {IDLE_WINDOW:?}; {BURSTS} bursts of \
         {n} frames crossed intact; {sleeps}"
    );
}

/// A namespace with two veth pairs (`p0` <-> `o0`, `p1` <-> `o1`).
fn veth_ns(test: &str) -> Option<NetNs> {
    let ns = NetNs::new("l2fwda", test)?;
    ns.veth("p0", "o0");
    ns.veth("p1", "o1");
    Some(ns)
}

#[test]
fn af_packet_sleeps_when_idle_and_forwards_bursts() {
    const TEST: &str = "af_packet_sleeps_when_idle_and_forwards_bursts";
    if !have_root(TEST) {
        return;
    }
    let Some(ns) = veth_ns(TEST) else {
        return;
    };
    adaptive(TEST, &ns, Pmd::AfPacket, [("p0", "o0"), ("p1", "o1")]);
}

#[test]
fn af_xdp_sleeps_when_idle_and_forwards_bursts() {
    const TEST: &str = "af_xdp_sleeps_when_idle_and_forwards_bursts";
    if !have_root(TEST) {
        return;
    }
    let Some(ns) = veth_ns(TEST) else {
        return;
    };
    adaptive(TEST, &ns, Pmd::AfXdp, [("p0", "o0"), ("p1", "o1")]);
}

#[test]
fn tap_sleeps_when_idle_and_forwards_bursts() {
    const TEST: &str = "tap_sleeps_when_idle_and_forwards_bursts";
    if !have_root(TEST) {
        return;
    }
    let Some(ns) = NetNs::new("l2fwda", TEST) else {
        return;
    };
    for t in ["ta0", "ta1"] {
        ip(&["-n", ns.name(), "tuntap", "add", "mode", "tap", "name", t]).unwrap();
        ns.ip(&["link", "set", t, "up"]);
    }
    adaptive(TEST, &ns, Pmd::Tap, [("ta0", "ta0"), ("ta1", "ta1")]);
}

/// A PMD without rx interrupts (net_null) under `--idle-sleep`: l2fwd says so in one line
/// naming the port and the PMD, and that lcore keeps polling and forwarding.
#[test]
fn ports_without_interrupts_keep_polling_with_a_clear_message() {
    let prefix = unique("l2fwdt-nointr");
    let r = run_l2fwd(
        &[
            "-l",
            "0",
            "--no-huge",
            "--file-prefix",
            &prefix,
            "--vdev",
            "net_null0",
            "--vdev",
            "net_null1",
            "--",
            "-p",
            "0x3",
            "-q",
            "2",
            "-T",
            "0",
            "--duration",
            "1",
            "--idle-sleep",
            "100",
        ],
        Duration::from_secs(20),
    );
    let out = r.stdout.clone();
    assert_eq!(r.status.code(), Some(0), "{out}\n{}", r.stderr);
    assert!(
        out.contains("Lcore 0: port 0 (net_null) has no rx interrupts: this lcore keeps polling"),
        "{out}"
    );
    assert!(
        !out.contains("adaptive:"),
        "no sleeper for a polling lcore\n{out}"
    );
    let sent = common::stat_values(&out, "Total packets sent:");
    assert!(
        sent.last().is_some_and(|&n| n > 1000.0),
        "it kept forwarding\n{out}"
    );
}

/// Two in-process 82599 models under the unchanged ixgbe PMD, whose rx queues run on the
/// model's MSI-X vectors: l2fwd in adaptive mode forwards every generated frame exactly
/// once and sleeps on the vectors once the stream ends.
#[test]
fn ixgbe_model_ports_sleep_on_msix_and_forward_every_frame() {
    const N: u64 = 2000;
    let prefix = unique("l2fwdt-ixintr");
    let r = run_l2fwd(
        &[
            "--no-huge",
            "-l",
            "0",
            "--file-prefix",
            &prefix,
            "--vdev",
            &format!("net_ixgbe_model0,gen={N},flows=16"),
            "--vdev",
            "net_ixgbe_model1",
            "--",
            "-p",
            "0x3",
            "-q",
            "2",
            "-T",
            "0",
            "--txd",
            "4096",
            "--duration",
            "2",
            "--idle-sleep",
            "200",
        ],
        Duration::from_secs(30),
    );
    let out = r.stdout.clone();
    assert_eq!(r.status.code(), Some(0), "{out}\n{}", r.stderr);
    assert!(
        out.contains("Lcore 0: adaptive (sleeps after 200 µs without a packet)"),
        "{out}"
    );
    let last = |label: &str| *common::stat_values(&out, label).last().unwrap_or(&-1.0);
    assert_eq!(last("Total packets received:"), N as f64, "{out}");
    assert_eq!(last("Total packets sent:"), N as f64, "{out}");
    assert_eq!(last("Total packets dropped:"), 0.0, "{out}");
    let (line, a) = pmd_testkit::adaptive_line(&out, 0)
        .unwrap_or_else(|| panic!("no adaptive statistics\n{out}"));
    assert!(a.sleeps > 0, "{line}");
    eprintln!("ixgbe model: {N} frames forwarded; {line}");
}
