//! Helpers shared by the examples' integration tests: starting an example inside a
//! namespace, reading its final counters, sending a frame across it, checking IPv4/UDP
//! checksums in full.
//!
//! Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use pmd_core::csum;
use pmd_testkit::{NetNs, Proc, RawSock};
use std::time::{Duration, Instant};

/// The ethertypes the tests send.
pub const ETH_P_IP: u16 = 0x0800;
/// See [`ETH_P_IP`].
pub const ETH_P_ARP: u16 = 0x0806;
/// How long a frame that should cross may take, and how long one that should not is
/// waited for.
pub const PASS: Duration = Duration::from_secs(2);
/// See [`PASS`].
pub const REFUSED: Duration = Duration::from_millis(300);

/// Starts example `bin` in `ns` ([`NetNs::start_app`]), waiting for `ready`.
pub fn start(ns: &NetNs, bin: &str, eal: &[&str], app: &[&str], ready: &str) -> Proc {
    ns.start_app(bin, eal, app, ready)
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

/// The number after the last `label` in `out` ([`pmd_testkit::number_after`]).
pub fn count(out: &str, label: &str) -> u64 {
    pmd_testkit::number_after(out, label)
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

/// Raw sockets on `iface` for IPv4 and for ARP.
pub fn ip_and_arp(iface: &str) -> (RawSock, RawSock) {
    let t = Duration::from_millis(20);
    (
        RawSock::open(iface, ETH_P_IP, t),
        RawSock::open(iface, ETH_P_ARP, t),
    )
}

/// A payload of `len` bytes that numbers the frame.
pub fn payload(seq: u16, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u16 ^ seq.wrapping_mul(31)) as u8)
        .collect()
}

/// Sends `frame` on `inj` and gives what `cap` receives within `wait` (the first
/// frame; nothing else is expected on these links).
pub fn cross(inj: &RawSock, cap: &RawSock, frame: &[u8], wait: Duration) -> Option<Vec<u8>> {
    inj.send(frame);
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Some(f) = cap.recv_incoming() {
            return Some(f);
        }
    }
    None
}

/// Sends an ARP request from `mac` on `from`; fine if `to` receives it unchanged.
pub fn arp_crosses(from: &RawSock, to: &RawSock, mac: [u8; 6]) -> Result<(), String> {
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&mac);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&mac);
    arp.extend_from_slice(&[10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1]);
    arp.resize(60, 0);
    match cross(from, to, &arp, PASS) {
        Some(f) if f == arp => Ok(()),
        other => Err(format!("ARP: sent {arp:02x?}, got {other:02x?}")),
    }
}
