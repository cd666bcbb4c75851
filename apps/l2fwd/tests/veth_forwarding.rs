//! l2fwd forwarding real frames between two veth pairs in a private network namespace:
//!
//! ```text
//!  inject/capture            l2fwd (af_packet)             capture/inject
//!  pa_out <==veth==> pa_in [port 0] <---> [port 1] pb_in <==veth==> pb_out
//! ```
//!
//! Needs root (CAP_NET_ADMIN for the namespace, CAP_NET_RAW for the sockets); without it
//! the test prints why and passes (and fails under `PMD_REQUIRE_ALL=1`).

mod common;

use common::{Proc, L2FWD};
use pmd_testkit::{fmt_mac, have_root, unique, NetNs, RawSock};
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

const ETHERTYPE_TEST: u16 = 0x88b5;
const N: u32 = 2000;
/// Source MAC of the injected frames (l2fwd must replace it).
const INJECT_SRC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
/// How long the capture socket waits per receive (also the granularity of the deadlines).
const RECV_TIMEOUT: Duration = Duration::from_millis(20);
/// How long an injection retries while the veth queue is full (`ENOBUFS`).
const SEND_PATIENCE: Duration = Duration::from_secs(2);

fn frame_len(seq: u32) -> usize {
    // 60..=1514, visiting many sizes.
    60 + (seq as usize * 37) % 1455
}

/// An Ethernet frame of ethertype 0x88b5: `seq` then a pattern derived from it.
fn test_frame(dst: [u8; 6], seq: u32) -> Vec<u8> {
    let len = frame_len(seq);
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&INJECT_SRC);
    f.extend_from_slice(&ETHERTYPE_TEST.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u32 ^ seq.wrapping_mul(0x9e37)) as u8);
    }
    f
}

/// Injects `N` frames on `inject_if` (addressed to `dst`) and captures them on
/// `capture_if`, checking that exactly `N` arrive, each sequence number once, with the
/// payload unchanged and the MACs rewritten to `want_dst`/`want_src`.
/// Runs in the namespace; the capture socket is open before the first frame is sent.
fn one_way(
    inject_if: &'static str,
    capture_if: &'static str,
    dst: [u8; 6],
    want_dst: [u8; 6],
    want_src: [u8; 6],
) -> Result<(), String> {
    let cap = RawSock::open(capture_if, ETHERTYPE_TEST, RECV_TIMEOUT);
    let inj = RawSock::open(inject_if, ETHERTYPE_TEST, RECV_TIMEOUT);
    let sent: Vec<Vec<u8>> = (0..N).map(|s| test_frame(dst, s)).collect();

    let (got, extra) = std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
            let mut extra = Vec::new(); // duplicates and foreign frames
            let deadline = Instant::now() + Duration::from_secs(6);
            while got.len() < N as usize && Instant::now() < deadline {
                let Some(f) = cap.recv_incoming() else {
                    continue;
                };
                if f.len() < 18 || f[12..14] != ETHERTYPE_TEST.to_be_bytes() {
                    continue; // not ours (the socket is bound to 0x88b5 anyway)
                }
                let seq = u32::from_be_bytes(f[14..18].try_into().unwrap());
                if seq >= N || got.contains_key(&seq) {
                    extra.push(f);
                } else {
                    got.insert(seq, f);
                }
            }
            // A short tail: nothing more may show up.
            let tail = Instant::now() + Duration::from_millis(150);
            while Instant::now() < tail {
                if let Some(f) = cap.recv_incoming() {
                    if f.len() >= 14 && f[12..14] == ETHERTYPE_TEST.to_be_bytes() {
                        extra.push(f);
                    }
                }
            }
            (got, extra)
        });
        for (i, f) in sent.iter().enumerate() {
            inj.send_retrying(f, SEND_PATIENCE);
            // Pace a little so neither the kernel backlog nor the PMD's ring overflows.
            if i % 64 == 63 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        receiver.join().expect("receiver thread panicked")
    });

    let dir = format!("{inject_if} -> {capture_if}");
    if got.len() != N as usize {
        let mut missing: Vec<u32> = (0..N).filter(|s| !got.contains_key(s)).collect();
        let n_missing = missing.len();
        missing.truncate(20);
        return Err(format!(
            "{dir}: received {} of {N} frames; {n_missing} missing (first: {missing:?}); {} extra",
            got.len(),
            extra.len()
        ));
    }
    if !extra.is_empty() {
        let seqs: Vec<String> = extra
            .iter()
            .take(10)
            .map(|f| format!("{:02x?}", &f[..f.len().min(18)]))
            .collect();
        return Err(format!(
            "{dir}: {} frames beyond the {N} expected (duplicates or strays), e.g. {seqs:?}",
            extra.len()
        ));
    }
    for (seq, orig) in sent.iter().enumerate() {
        let f = &got[&(seq as u32)];
        if f.len() != orig.len() {
            return Err(format!(
                "{dir}: frame {seq} is {} bytes, sent {}",
                f.len(),
                orig.len()
            ));
        }
        if f[..6] != want_dst || f[6..12] != want_src {
            return Err(format!(
                "{dir}: frame {seq} has dst {} src {}, want dst {} src {}",
                fmt_mac(&f[..6]),
                fmt_mac(&f[6..12]),
                fmt_mac(&want_dst),
                fmt_mac(&want_src)
            ));
        }
        if f[12..] != orig[12..] {
            let at = (12..f.len()).find(|&i| f[i] != orig[i]).unwrap();
            return Err(format!(
                "{dir}: frame {seq} ({} bytes) differs from what was sent at byte {at}",
                f.len()
            ));
        }
    }
    Ok(())
}

/// The pid to signal for a clean stop. `ip netns exec` execs the program, so normally
/// the child is l2fwd itself; checked through /proc.
fn is_l2fwd(pid: u32) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    comm.trim() == "l2fwd"
}

#[test]
fn forwards_both_ways_over_veth_then_stops_on_sigint() {
    const TEST: &str = "forwards_both_ways_over_veth_then_stops_on_sigint";
    if !have_root(TEST) {
        return;
    }
    let started = Instant::now();
    // Declared before the process so that it is dropped (deleted) after it is killed.
    let Some(ns) = NetNs::new("l2fwdt", TEST) else {
        return;
    };
    ns.veth("pa_in", "pa_out");
    ns.veth("pb_in", "pb_out");
    let mac_a = ns.mac("pa_in");
    let mac_b = ns.mac("pb_in");

    let prefix = unique("l2fwdt-veth");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), L2FWD])
        .args(["-l", "0", "--no-huge", "--file-prefix", &prefix])
        .args(["--vdev", "net_af_packet0,iface=pa_in"])
        .args(["--vdev", "net_af_packet1,iface=pb_in"])
        .args(["--", "-p", "0x3", "-q", "2", "-T", "1"]);
    let mut l2fwd = Proc::spawn(cmd);
    if let Err(e) = l2fwd.wait_for("Lcore ", 2, Duration::from_secs(10)) {
        panic!("{e}");
    }
    let out = l2fwd.stdout();
    assert!(out.contains("Lcore 0: RX port 0 -> TX port 1"), "{out}");
    assert!(out.contains("Lcore 0: RX port 1 -> TX port 0"), "{out}");
    assert!(
        out.contains(&format!("MAC {}", fmt_mac(&mac_a))),
        "port 0 should report pa_in's MAC {}\n{out}",
        fmt_mac(&mac_a)
    );

    // pa_out -> pa_in (port 0) -> port 1 (pb_in) -> pb_out, and back.
    let forward = ns.run(move || one_way("pa_out", "pb_out", mac_a, [2, 0, 0, 0, 0, 1], mac_b));
    if let Err(e) = forward {
        panic!("{e}\n{}", l2fwd.transcript());
    }
    let reverse = ns.run(move || one_way("pb_out", "pa_out", mac_b, [2, 0, 0, 0, 0, 0], mac_a));
    if let Err(e) = reverse {
        panic!("{e}\n{}", l2fwd.transcript());
    }

    // Ctrl-C: a clean stop with the final statistics (`ip netns exec` execs l2fwd, so
    // the child is l2fwd itself).
    assert!(is_l2fwd(l2fwd.pid()), "the child is not l2fwd itself");
    let Some(status) = l2fwd.interrupt(Duration::from_secs(5)) else {
        panic!(
            "l2fwd did not stop within 5 s of SIGINT\n{}",
            l2fwd.transcript()
        );
    };
    let out = l2fwd.stdout();
    let all = l2fwd.transcript();
    assert!(status.success(), "exit status {status}\n{all}");
    assert!(out.contains("Bye..."), "{all}");
    assert!(!all.contains("panicked"), "{all}");
    let last = |label: &str| {
        *common::stat_values(&out, label)
            .last()
            .unwrap_or_else(|| panic!("no {label:?} in the output\n{all}"))
    };
    let want = f64::from(2 * N);
    let received = last("Total packets received:");
    let sent = last("Total packets sent:");
    assert!(received >= want, "received {received} < {want}\n{all}");
    assert!(sent >= want, "sent {sent} < {want}\n{all}");
    assert_eq!(last("Total packets dropped:"), 0.0, "{all}");
    eprintln!("{TEST}: took {:?}", started.elapsed());
}
