//! testpmd in macswap mode on an af_packet port over a veth pair in a private network
//! namespace: every injected frame comes back once, byte for byte, with its MACs swapped.
//! Needs root; without it the test says why and passes (and fails under `PMD_REQUIRE_ALL=1`).

use pmd_testkit::{have_root, unique, NetNs, RawSock};
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TEST: &str = "macswap_echoes_every_frame_over_veth";
const ETHERTYPE: u16 = 0x88b5;
const N: u32 = 1000;
const SRC: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 0x01];

fn frame(dst: [u8; 6], seq: u32) -> Vec<u8> {
    let len = 60 + (seq as usize * 53) % 1455;
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&SRC);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u32).wrapping_mul(seq | 1) as u8);
    }
    f
}

#[test]
fn macswap_echoes_every_frame_over_veth() {
    if !have_root(TEST) {
        return;
    }
    let Some(ns) = NetNs::new("tpmdt", TEST) else {
        return;
    };
    ns.veth("t_in", "t_out");
    let mac_in = ns.mac("t_in");
    let prefix = unique("tpmdt");
    let child = Command::new("ip")
        .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_testpmd")])
        .args(["-l", "0", "--no-huge", "--file-prefix", &prefix])
        .args(["--vdev", "net_af_packet0,iface=t_in"])
        .args(["--", "--forward-mode=macswap", "--duration=10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start testpmd");
    std::thread::sleep(Duration::from_millis(1000)); // testpmd up and polling
    let receiver = ns.spawn(move || {
        let sock = RawSock::open("t_out", ETHERTYPE, Duration::from_millis(20));
        let mut seen = HashSet::new();
        let mut bad = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(8);
        while seen.len() < N as usize && Instant::now() < deadline {
            if let Some(f) = sock.recv_incoming() {
                check(&f, mac_in, &mut seen, &mut bad);
            }
        }
        (seen.len(), bad)
    });
    std::thread::sleep(Duration::from_millis(100)); // receiver socket open
    ns.run(move || {
        let sock = RawSock::open("t_out", ETHERTYPE, Duration::from_millis(20));
        for seq in 0..N {
            sock.send_retrying(&frame(mac_in, seq), Duration::from_secs(2));
            if seq % 64 == 63 {
                std::thread::sleep(Duration::from_millis(2)); // let testpmd keep up
            }
        }
    });
    let result = receiver.join().expect("receiver");
    let out = child.wait_with_output().expect("testpmd output");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let (got, bad) = result;
    assert!(bad.is_empty(), "wrong frames: {bad:?}\n{text}");
    assert_eq!(got, N as usize, "{text}");
}

fn check(f: &[u8], mac_in: [u8; 6], seen: &mut HashSet<u32>, bad: &mut Vec<String>) {
    let seq = u32::from_be_bytes([f[14], f[15], f[16], f[17]]);
    let mut want = frame(mac_in, seq);
    let (d, s) = want.split_at_mut(6);
    d.swap_with_slice(&mut s[..6]);
    if f != want.as_slice() {
        bad.push(format!("seq {seq}: {} bytes, want {}", f.len(), want.len()));
    } else if !seen.insert(seq) {
        bad.push(format!("seq {seq} twice"));
    }
}
