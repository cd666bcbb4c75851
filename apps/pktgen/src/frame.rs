//! Generated frames: Ethernet + IPv4 + UDP with a pktgen payload header (magic, sequence
//! number, TSC timestamp) that the receive side recognises to count loss and latency.

use pmd_core::csum;
use pmd_net::build::Frame4;
use std::net::Ipv4Addr;

/// Offset of the payload header (after Ethernet 14 + IPv4 20 + UDP 8).
pub const PAYLOAD: usize = 42;
/// Marks our frames in the payload (with IPv4/UDP in the headers).
pub const MAGIC: u16 = 0x5047; // "PG"
/// Length of the payload header: magic (2), sequence (8), timestamp (8); a 60-byte frame
/// (64 with the FCS) holds it exactly.
pub const HDR: usize = 18;

/// What varies per frame.
#[derive(Clone, Copy, Debug)]
pub struct FrameSpec {
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Source address of flow 0.
    pub src_ip: Ipv4Addr,
    /// Destination address.
    pub dst_ip: Ipv4Addr,
    /// UDP source port of flow 0.
    pub sport: u16,
    /// UDP destination port.
    pub dport: u16,
}

/// A frame template per size: headers filled, the flow fields and payload header
/// patched per packet.
#[derive(Clone, Debug)]
pub struct Template {
    bytes: Vec<u8>,
    /// The IPv4 header checksum with flow 0's source address.
    ip_csum: u16,
}

impl Template {
    /// A template of `len` bytes (without FCS, at least 60).
    pub fn new(spec: &FrameSpec, len: usize) -> Template {
        let len = len.max(PAYLOAD + HDR);
        let mut f = vec![0u8; len];
        // UDP checksum 0: none (allowed for IPv4); the payload changes per frame.
        let hdrs = Frame4 {
            dont_fragment: false,
            l4_checksum: false,
            ..Frame4::udp(
                spec.dst_mac,
                spec.src_mac,
                spec.src_ip.octets(),
                spec.dst_ip.octets(),
                spec.sport,
                spec.dport,
            )
        };
        // Cannot fail: the template holds the headers and at most a jumbo frame.
        let _ = hdrs.write(&mut f);
        let ip_csum = u16::from_be_bytes([f[24], f[25]]);
        f[PAYLOAD..PAYLOAD + 2].copy_from_slice(&MAGIC.to_be_bytes());
        Template { bytes: f, ip_csum }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Writes the frame for `flow`, `seq` and timestamp `tsc` into `out` (its length).
    #[inline]
    pub fn write(&self, out: &mut [u8], flow: u32, seq: u64, tsc: u64) {
        out.copy_from_slice(&self.bytes);
        if flow != 0 {
            // Source address + flow and source port + flow; the IPv4 checksum is
            // updated incrementally (RFC 1624) for the address change.
            let a = u32::from_be_bytes([out[26], out[27], out[28], out[29]]).wrapping_add(flow);
            let old = u32::from_be_bytes([
                self.bytes[26],
                self.bytes[27],
                self.bytes[28],
                self.bytes[29],
            ]);
            out[26..30].copy_from_slice(&a.to_be_bytes());
            let mut sum = u32::from(!self.ip_csum);
            for w in [old >> 16, old & 0xffff] {
                sum += !w & 0xffff;
            }
            sum += (a >> 16) + (a & 0xffff);
            let folded = csum::fold(u64::from(sum));
            out[24..26].copy_from_slice(&(!folded).to_be_bytes());
            let p = u16::from_be_bytes([out[34], out[35]]).wrapping_add(flow as u16);
            out[34..36].copy_from_slice(&p.to_be_bytes());
        }
        out[PAYLOAD + 2..PAYLOAD + 10].copy_from_slice(&seq.to_be_bytes());
        out[PAYLOAD + 10..PAYLOAD + 18].copy_from_slice(&tsc.to_be_bytes());
    }
}

/// The (sequence, timestamp) of one of our frames, or None for other traffic.
#[inline]
pub fn parse(frame: &[u8]) -> Option<(u64, u64)> {
    let h = frame.get(PAYLOAD..PAYLOAD + HDR)?;
    if h[..2] != MAGIC.to_be_bytes() || frame[12..14] != [0x08, 0x00] || frame[23] != 17 {
        return None;
    }
    let seq = u64::from_be_bytes(h[2..10].try_into().ok()?);
    let ts = u64::from_be_bytes(h[10..18].try_into().ok()?);
    Some((seq, ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FrameSpec {
        FrameSpec {
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_mac: [2, 0, 0, 0, 0, 1],
            src_ip: "198.18.0.1".parse().unwrap(),
            dst_ip: "198.19.0.1".parse().unwrap(),
            sport: 1024,
            dport: 4321,
        }
    }

    #[test]
    fn frames_carry_flow_seq_and_timestamp_with_valid_ip_checksums() {
        let t = Template::new(&spec(), 60);
        assert_eq!(t.len(), 60, "64-byte frames on the wire");
        let t = Template::new(&spec(), 128);
        let mut out = vec![0u8; t.len()];
        for flow in [0u32, 1, 255, 256, 65535] {
            t.write(&mut out, flow, 42 + u64::from(flow), 7);
            assert_eq!(
                csum::ones_complement_sum(&out[14..34]),
                0xffff,
                "flow {flow}"
            );
            let src = u32::from_be_bytes([out[26], out[27], out[28], out[29]]);
            assert_eq!(src, u32::from(spec().src_ip) + flow);
            assert_eq!(parse(&out), Some((42 + u64::from(flow), 7)));
        }
        assert_eq!(parse(&out[..50]), None, "short");
        out[PAYLOAD] ^= 1;
        assert_eq!(parse(&out), None, "not ours");
    }
}
