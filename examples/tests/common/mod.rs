//! Helpers shared by the examples' integration tests: starting an example inside a
//! namespace, reading its final counters, checking IPv4/UDP checksums in full.
//!
//! Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use pmd_core::csum;
use pmd_testkit::{unique, NetNs, Proc};
use std::process::Command;
use std::time::Duration;

/// Starts `bin` inside `ns` on lcore 0 without hugepages, with its own file prefix, the
/// EAL arguments `eal` and the application's `app`; waits for `ready` on its stdout,
/// and checks that the pid is the example itself (`ip netns exec` execs it), so that
/// [`Proc::interrupt`] reaches it.
pub fn start(ns: &NetNs, bin: &str, eal: &[&str], app: &[&str], ready: &str) -> Proc {
    let name = bin.rsplit('/').next().unwrap_or(bin);
    let prefix = unique(&format!("pmdex-{name}"));
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), bin])
        .args([
            "-l",
            "0",
            "--no-huge",
            "-m",
            "256",
            "--file-prefix",
            &prefix,
        ])
        .args(eal)
        .arg("--")
        .args(app);
    let mut p = Proc::spawn(cmd);
    if let Err(e) = p.wait_for(ready, 1, Duration::from_secs(10)) {
        panic!("{name}: {e}");
    }
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", p.pid())).unwrap_or_default();
    assert_eq!(comm.trim(), name, "the child is not the example itself");
    p
}

/// Stops `p` with Ctrl-C; its stdout after a clean exit (status 0, "Bye", no panic).
pub fn stop(p: &mut Proc) -> String {
    let status = p.interrupt(Duration::from_secs(10));
    let all = p.transcript();
    assert!(
        status.is_some_and(|s| s.success()),
        "no clean exit ({status:?})\n{all}"
    );
    assert!(!all.contains("panicked"), "{all}");
    let out = p.stdout();
    assert!(out.contains("\nBye\n"), "{all}");
    out
}

/// The number at the end of the last line of `out` that starts with `label`.
pub fn count(out: &str, label: &str) -> u64 {
    out.lines()
        .rev()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no number after {label:?} in\n{out}"))
}

/// Checks an untagged Ethernet/IPv4/UDP frame's two checksums by recomputing them over
/// the whole header and the whole datagram (with the pseudo-header).
pub fn check_udp4_checksums(f: &[u8]) -> Result<(), String> {
    let hl = usize::from(f.get(14).ok_or("too short")? & 0xf) * 4;
    let ip = f.get(14..14 + hl).ok_or("IPv4 header cut short")?;
    if csum::ones_complement_sum(ip) != 0xffff {
        return Err(format!("IPv4 header checksum wrong: {:02x?}", ip));
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let udp = f.get(14 + hl..14 + total).ok_or("UDP datagram cut short")?;
    if udp[6..8] == [0, 0] {
        return Ok(()); // no checksum
    }
    let mut acc = csum::add(0, &ip[12..20]);
    acc = csum::add(acc, &[0, ip[9]]);
    acc = csum::add(acc, &(udp.len() as u16).to_be_bytes());
    acc = csum::add(acc, udp);
    match csum::fold(acc) {
        0xffff => Ok(()),
        s => Err(format!("UDP checksum wrong (sum {s:#06x})")),
    }
}
