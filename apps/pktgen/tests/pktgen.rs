//! pktgen end to end: exact counts and latency over ring ports and over a veth pair with
//! af_packet ports, JSON output, rate limiting, CLI errors.

use pmd_testkit::{have_root, unique, NetNs};
use std::process::Command;

fn pktgen(pre: &[&str], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pktgen"))
        .args(pre)
        .arg("--")
        .args(args)
        .output()
        .expect("run pktgen");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The number after `"key":` in a flat JSON object.
fn json_num(json: &str, key: &str) -> f64 {
    let rest = json
        .split(&format!("\"{key}\":"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {key} in {json}"));
    rest.split([',', '}'])
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("bad {key} in {json}"))
}

#[test]
fn loopback_ring_delivers_every_frame_with_latency() {
    let (code, out, err) = pktgen(
        &["--no-huge", "-l", "0", "--vdev", "net_ring0"],
        &[
            "--count",
            "50000",
            "--size",
            "60,124,1514",
            "--flows",
            "8",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let json = out.lines().last().unwrap();
    assert_eq!(json_num(json, "sent"), 50000.0, "{json}");
    assert_eq!(json_num(json, "received"), 50000.0, "{json}");
    assert_eq!(json_num(json, "lost"), 0.0);
    assert_eq!(json_num(json, "reordered"), 0.0);
    // Sizes cycle: 16667 + 16667 + 16666 frames of 60, 124, 1514 bytes.
    assert_eq!(
        json_num(json, "sent_bytes"),
        (16667 * 60 + 16667 * 124 + 16666 * 1514) as f64
    );
    assert!(json_num(json, "p50") > 0.0, "{json}");
    assert!(json_num(json, "max") >= json_num(json, "p99"));
}

#[test]
fn jumbo_sizes_are_sent_whole() {
    let (code, out, err) = pktgen(
        &["--no-huge", "-l", "0", "--vdev", "net_ring0"],
        &["--count", "3000", "--size", "60,9014,9216", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let json = out.lines().last().unwrap();
    assert_eq!(json_num(json, "received"), 3000.0, "{json}");
    assert_eq!(json_num(json, "lost"), 0.0);
    assert_eq!(
        json_num(json, "sent_bytes"),
        (1000 * (60 + 9014 + 9216)) as f64
    );
    let (code, _, err) = pktgen(
        &["--no-huge", "-l", "0", "--vdev", "net_ring0"],
        &["--count", "1", "--size", "9217"],
    );
    assert_eq!(code, 2, "{err}");
}

#[test]
fn rate_limit_holds_and_two_ports_work() {
    let (code, out, err) = pktgen(
        &[
            "--no-huge",
            "-l",
            "0,1",
            "--vdev",
            "net_ring0,rx=pa,tx=pb",
            "--vdev",
            "net_ring1,rx=pb,tx=pa",
        ],
        &["--rate", "0.2", "--duration", "1", "--json", "-T", "0"],
    );
    assert_eq!(code, 0, "{err}");
    let json = out.lines().last().unwrap();
    let mpps = json_num(json, "tx_mpps");
    assert!(
        (0.15..=0.21).contains(&mpps),
        "rate {mpps} for --rate 0.2: {json}"
    );
    assert!(
        json_num(json, "received") >= json_num(json, "sent") - 64.0,
        "{json}"
    );
}

#[test]
fn veth_pair_with_af_packet_counts_exactly() {
    const TEST: &str = "veth_pair_with_af_packet_counts_exactly";
    if !have_root(TEST) {
        return;
    }
    let Some(ns) = NetNs::new("pktgent", TEST) else {
        return;
    };
    ns.veth("pg_a", "pg_b");
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_pktgen")])
        .args(["--no-huge", "-l", "0", "--file-prefix", &unique("pktgent")])
        .args([
            "--vdev",
            "net_af_packet0,iface=pg_a",
            "--vdev",
            "net_af_packet1,iface=pg_b",
        ])
        .args([
            "--", "--count", "5000", "--rate", "0.05", "--size", "60,1000", "--json", "-T", "0",
        ])
        .output()
        .expect("run pktgen");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = text.lines().last().unwrap();
    assert_eq!(json_num(json, "sent"), 5000.0, "{json}");
    assert_eq!(json_num(json, "received"), 5000.0, "{json}");
    assert_eq!(json_num(json, "lost"), 0.0, "{json}");
}

#[test]
fn bad_ports_are_named() {
    let (code, _, err) = pktgen(
        &["--no-huge", "-l", "0", "--vdev", "net_ring0"],
        &["--rx-port", "3"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("--rx-port 3: only 1 port"), "{err}");
    let (code, _, err) = pktgen(&["--no-huge", "-l", "0"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("no Ethernet ports"), "{err}");
}

#[test]
fn numbers_that_make_no_sense_are_refused_before_any_port_starts() {
    for (args, want) in [
        (&["--rate=-0.5"][..], "is not a decimal number"),
        (&["--rate", "NaN"], "is not a decimal number"),
        (&["--rate", "inf"], "is not a decimal number"),
        (
            &["--rate", "1000000"],
            "expected a number of Mpps >= 0 and <= 100000",
        ),
        (&["--duration=-3"], "is not a decimal number"),
        (&["--duration", "0"], "is out of range"),
        (&["--duration", "1e999"], "is not a decimal number"),
        (&["-T", "18446744073709551615"], "is out of range"),
        (&["--count", "18446744073709551616"], "is out of range"),
        (
            &["--tx-port", "65536"],
            "expected a whole number in 0..=65535",
        ),
        (
            &["--sport", "70000"],
            "expected a whole number in 0..=65535",
        ),
        (&["--flows", "0"], "expected a whole number in 1..=65536"),
        (&["--size", "59"], "expected a whole number in 60..=9216"),
        (&["--burst", "65"], "expected a whole number in 1..=64"),
    ] {
        let (code, _, err) = pktgen(&["--no-huge", "-l", "0", "--vdev", "net_ring0"], args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        // Refused before the EAL initialised: no device was even probed.
        assert!(!err.contains("probed"), "{args:?}: {err}");
    }
}

/// A classic pcap file (microsecond timestamps, Ethernet) of `frames`.
fn write_pcap(path: &std::path::Path, frames: &[Vec<u8>]) {
    let mut b = Vec::new();
    b.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&65535u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        b.extend_from_slice(&(i as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(&(f.len() as u32).to_le_bytes());
        b.extend_from_slice(f);
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn replays_a_pcap_in_a_loop() {
    let dir = std::env::temp_dir().join(unique("pktgen-pcap"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("in.pcap");
    let frames: Vec<Vec<u8>> = (0..7u8)
        .map(|i| vec![i; 60 + usize::from(i) * 100])
        .collect();
    write_pcap(&path, &frames);
    let (code, out, err) = pktgen(
        &["--no-huge", "-l", "0", "--vdev", "net_ring0"],
        &[
            "--pcap",
            path.to_str().unwrap(),
            "--count",
            "700",
            "--json",
            "-T",
            "0",
        ],
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 0, "{err}");
    let json = out.lines().last().unwrap();
    assert_eq!(json_num(json, "sent"), 700.0, "{json}");
    assert_eq!(json_num(json, "received"), 700.0, "{json}");
    let per_cycle: usize = frames.iter().map(Vec::len).sum();
    assert_eq!(json_num(json, "sent_bytes"), (per_cycle * 100) as f64);
    assert!(err.contains("Replaying 7 frames"), "{err}");
}
