//! Many-flow IPv4/IPv6 UDP traffic for l3fwd's tests and benchmark, with the route files
//! (DPDK l3fwd's format) that route it, and pcap files to replay it through `net_pcap`.
//!
//! Flow `i` goes to network `i % 16` of DPDK l3fwd's default routes (198.18.K.0/24,
//! 2001:200:0:K::/64), from its own source address and port, so a table sees as many
//! distinct 5-tuples as there are flows.

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

/// Networks the flows are spread over (DPDK l3fwd's 16 default routes).
pub const NETS: u32 = 16;
/// Source MAC of every frame.
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
/// UDP destination port of every flow (DPDK's defaults use 9, discard).
pub const DPORT: u16 = 9;

/// The traffic to make.
#[derive(Clone, Copy, Debug)]
pub struct FlowSpec {
    /// Distinct flows (one frame each, in flow order).
    pub flows: u32,
    /// Frame length without FCS (at least 60; IPv6 frames are at least 62).
    pub len: usize,
    /// Percentage of IPv6 flows (every flow `i` with `i % 100 < v6_pct`).
    pub v6_pct: u32,
    /// Destination MAC of every frame.
    pub dst_mac: [u8; 6],
}

/// Whether flow `i` is IPv6.
pub fn is_v6(s: &FlowSpec, i: u32) -> bool {
    i % 100 < s.v6_pct
}

/// Flow `i`'s IPv4 addresses and source port: 10.x.y.z -> 198.18.(i%16).(1 + i/16 % 250).
pub fn flow4(i: u32) -> (Ipv4Addr, Ipv4Addr, u16) {
    let src = Ipv4Addr::from(0x0a00_0000 | (i & 0x00ff_ffff));
    let dst = Ipv4Addr::new(198, 18, (i % NETS) as u8, (1 + (i / NETS) % 250) as u8);
    (src, dst, 1024 + (i % 60_000) as u16)
}

/// Flow `i`'s IPv6 addresses and source port: 2001:db8::i -> 2001:200:0:(i%16)::(i/16 + 1).
pub fn flow6(i: u32) -> (Ipv6Addr, Ipv6Addr, u16) {
    let src = Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i));
    let dst = Ipv6Addr::new(
        0x2001,
        0x200,
        0,
        (i % NETS) as u16,
        0,
        0,
        ((i / NETS) >> 16) as u16,
        ((i / NETS) as u16).wrapping_add(1),
    );
    (src, dst, 1024 + (i % 60_000) as u16)
}

/// The frames of `s`, one per flow.
pub fn frames(s: &FlowSpec) -> Vec<Vec<u8>> {
    (0..s.flows)
        .map(|i| {
            if is_v6(s, i) {
                let (src, dst, sport) = flow6(i);
                let pad = s.len.saturating_sub(62);
                pmd_net::build::udp6(
                    s.dst_mac,
                    SRC_MAC,
                    src.octets(),
                    dst.octets(),
                    sport,
                    DPORT,
                    &vec![0x5a; pad],
                )
            } else {
                let (src, dst, sport) = flow4(i);
                let pad = s.len.saturating_sub(42);
                pmd_net::build::udp4(
                    s.dst_mac,
                    SRC_MAC,
                    src.octets(),
                    dst.octets(),
                    sport,
                    DPORT,
                    &vec![0x5a; pad],
                )
            }
        })
        .collect()
}

/// LPM routes: each of the 16 networks to `port` (IPv4, IPv6).
pub fn lpm_routes(port: u8) -> (String, String) {
    let mut v4 = String::from("# 198.18.K.0/24 -> one port\n");
    let mut v6 = String::from("# 2001:200:0:K::/64 -> one port\n");
    for k in 0..NETS {
        v4.push_str(&format!("R198.18.{k}.0/24 {port}\n"));
        v6.push_str(&format!("R2001:200:0:{k:x}::/64 {port}\n"));
    }
    (v4, v6)
}

/// Exact-match routes: every flow of `s` to `port` (IPv4, IPv6).
pub fn em_routes(s: &FlowSpec, port: u8) -> (String, String) {
    let (mut v4, mut v6) = (String::new(), String::new());
    for i in 0..s.flows {
        if is_v6(s, i) {
            let (src, dst, sport) = flow6(i);
            v6.push_str(&format!("R{dst} {src} {DPORT} {sport} 0x11 {port}\n"));
        } else {
            let (src, dst, sport) = flow4(i);
            v4.push_str(&format!("R{dst} {src} {DPORT} {sport} 0x11 {port}\n"));
        }
    }
    // A route file needs one route: a flow no frame belongs to.
    if v4.is_empty() {
        v4.push_str(&format!("R192.0.2.1 192.0.2.2 9 9 0x11 {port}\n"));
    }
    if v6.is_empty() {
        v6.push_str(&format!("R2001:db8::1 2001:db8::2 9 9 0x11 {port}\n"));
    }
    (v4, v6)
}

/// Writes `frames` to a pcap file (microsecond timestamps 1 µs apart).
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> std::io::Result<()> {
    let hdr = PcapHeader {
        snaplen: 65_535,
        datalink: pcap_file::DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let f = std::fs::File::create(path)?;
    let mut w = PcapWriter::with_header(f, hdr).map_err(std::io::Error::other)?;
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(
            Duration::from_micros(i as u64),
            f.len() as u32,
            f,
        ))
        .map_err(std::io::Error::other)?;
    }
    Ok(())
}

/// The frames of a pcap file.
pub fn read_pcap(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let f = std::fs::File::open(path)?;
    let mut r = PcapReader::new(f).map_err(std::io::Error::other)?;
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        v.push(p.map_err(std::io::Error::other)?.data.into_owned());
    }
    Ok(v)
}
