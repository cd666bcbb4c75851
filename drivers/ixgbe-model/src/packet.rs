//! Parsing a received frame the way the 82599's receive parser does, as far as the model
//! needs it: destination MAC, one optional 802.1Q tag, IPv4 or IPv6 addresses, TCP/UDP
//! ports, and the IPv4 header and TCP/UDP checksums (the datasheet's receive checksum
//! offload, reported in the write-back status and error bits of 7.1.6.2).
//! Malformed headers simply end the parse; nothing here can fail.

use crate::frame::pseudo_sum;
use pmd_core::csum;

/// A transport header the receive path recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// Ports and checksum verdict of a TCP or UDP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct L4 {
    /// Which protocol.
    pub proto: Transport,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Whether the checksum verified (None: not checked, e.g. a UDP checksum of zero).
    pub csum_ok: Option<bool>,
}

/// The network layer of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum L3 {
    /// Not IP, or a truncated IP header.
    Other,
    /// IPv4.
    V4 {
        /// Source address.
        src: [u8; 4],
        /// Destination address.
        dst: [u8; 4],
        /// Whether the header checksum verified.
        header_ok: bool,
        /// A fragment (MF set or a non-zero offset): ports are not parsed.
        fragment: bool,
        /// The transport header, when complete.
        l4: Option<L4>,
    },
    /// IPv6 (TCP or UDP directly after the fixed header; extension headers end the parse).
    V6 {
        /// Source address.
        src: [u8; 16],
        /// Destination address.
        dst: [u8; 16],
        /// The transport header, when complete.
        l4: Option<L4>,
    },
}

/// What the model knows about a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// Destination MAC address.
    pub dst: [u8; 6],
    /// Whether an 802.1Q tag follows the source address.
    pub vlan: bool,
    /// The network layer.
    pub l3: L3,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parses `frame` (without CRC). A frame shorter than an Ethernet header yields an
/// all-zero destination and no network layer.
pub(crate) fn parse(frame: &[u8]) -> Parsed {
    let mut p = Parsed {
        dst: [0; 6],
        vlan: false,
        l3: L3::Other,
    };
    if let Some(d) = frame.get(..6) {
        p.dst.copy_from_slice(d);
    }
    let mut at = 12;
    let mut ethertype = be16(frame, at);
    if ethertype == Some(ETHERTYPE_VLAN) {
        p.vlan = true;
        at += 4;
        ethertype = be16(frame, at);
    }
    let l3 = frame.get(at + 2..).unwrap_or(&[]);
    p.l3 = match ethertype {
        Some(ETHERTYPE_IPV4) => parse_v4(l3),
        Some(ETHERTYPE_IPV6) => parse_v6(l3),
        _ => L3::Other,
    };
    p
}

fn parse_v4(ip: &[u8]) -> L3 {
    let Some(&vihl) = ip.first() else {
        return L3::Other;
    };
    let ihl = usize::from(vihl & 0xf) * 4;
    if vihl >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return L3::Other;
    }
    let (Some(total), Some(frag)) = (be16(ip, 2), be16(ip, 6)) else {
        return L3::Other;
    };
    let mut src = [0; 4];
    let mut dst = [0; 4];
    src.copy_from_slice(&ip[12..16]);
    dst.copy_from_slice(&ip[16..20]);
    let header_ok = csum::ones_complement_sum(&ip[..ihl]) == 0xffff;
    let fragment = frag & 0x3fff != 0;
    let total = usize::from(total);
    let l4 = if fragment || total < ihl || total > ip.len() {
        None
    } else {
        parse_l4(ip[9], &ip[ihl..total], &src, &dst)
    };
    L3::V4 {
        src,
        dst,
        header_ok,
        fragment,
        l4,
    }
}

fn parse_v6(ip: &[u8]) -> L3 {
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return L3::Other;
    }
    let mut src = [0; 16];
    let mut dst = [0; 16];
    src.copy_from_slice(&ip[8..24]);
    dst.copy_from_slice(&ip[24..40]);
    let payload = usize::from(be16(ip, 4).unwrap_or(0));
    let l4 = ip
        .get(40..40 + payload)
        .and_then(|seg| parse_l4(ip[6], seg, &src, &dst));
    L3::V6 { src, dst, l4 }
}

/// Parses a TCP (6) or UDP (17) segment and verifies its checksum.
fn parse_l4(proto: u8, seg: &[u8], src: &[u8], dst: &[u8]) -> Option<L4> {
    let (proto, min, csum_at) = match proto {
        6 => (Transport::Tcp, 20, 16),
        17 => (Transport::Udp, 8, 6),
        _ => return None,
    };
    if seg.len() < min {
        return None;
    }
    let stored = be16(seg, csum_at)?;
    let csum_ok = if proto == Transport::Udp && stored == 0 {
        None
    } else {
        let num = if proto == Transport::Tcp { 6 } else { 17 };
        Some(csum::fold(pseudo_sum(src, dst, num, seg)) == 0xffff)
    };
    Some(L4 {
        proto,
        src_port: be16(seg, 0)?,
        dst_port: be16(seg, 2)?,
        csum_ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{ipv4_frame, Ipv4Flow, L4Proto};

    const FLOW: Ipv4Flow = Ipv4Flow {
        src_ip: [10, 1, 2, 3],
        dst_ip: [10, 4, 5, 6],
        src_port: 1000,
        dst_port: 2000,
        proto: L4Proto::Udp,
    };

    #[test]
    fn parses_ipv4_udp_and_checks_checksums() {
        let mut f = ipv4_frame([2; 6], [4; 6], &FLOW, &[1, 2, 3]);
        let p = parse(&f);
        assert_eq!(p.dst, [2; 6]);
        let L3::V4 {
            src,
            dst,
            header_ok,
            fragment,
            l4: Some(l4),
        } = p.l3
        else {
            panic!("{p:?}")
        };
        assert_eq!(
            (src, dst, header_ok, fragment),
            ([10, 1, 2, 3], [10, 4, 5, 6], true, false)
        );
        assert_eq!(
            (l4.proto, l4.src_port, l4.dst_port, l4.csum_ok),
            (Transport::Udp, 1000, 2000, Some(true))
        );
        // Corrupt the payload, then the IP header.
        f[44] ^= 0xff;
        assert!(matches!(
            parse(&f).l3,
            L3::V4 {
                l4: Some(L4 {
                    csum_ok: Some(false),
                    ..
                }),
                ..
            }
        ));
        f[22] ^= 1;
        assert!(matches!(
            parse(&f).l3,
            L3::V4 {
                header_ok: false,
                ..
            }
        ));
    }

    #[test]
    fn handles_vlan_fragments_zero_udp_checksums_and_garbage() {
        let f = ipv4_frame([2; 6], [4; 6], &FLOW, &[9; 20]);
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        tagged.extend_from_slice(&f[12..]);
        let p = parse(&tagged);
        assert!(p.vlan);
        assert!(matches!(p.l3, L3::V4 { l4: Some(_), .. }));
        let mut frag = f.clone();
        frag[20] |= 0x20; // MF
        assert!(matches!(
            parse(&frag).l3,
            L3::V4 {
                fragment: true,
                l4: None,
                ..
            }
        ));
        let mut zero = f.clone();
        zero[40] = 0;
        zero[41] = 0;
        assert!(matches!(
            parse(&zero).l3,
            L3::V4 {
                l4: Some(L4 { csum_ok: None, .. }),
                ..
            }
        ));
        for n in 0..f.len() {
            let _ = parse(&f[..n]);
        }
        assert_eq!(parse(&[0xff; 3]).l3, L3::Other);
    }

    #[test]
    fn parses_ipv6_tcp() {
        let mut f = vec![2u8; 12];
        f.extend_from_slice(&[0x86, 0xdd]);
        let mut ip = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
        ip.extend_from_slice(&[0x11; 16]);
        ip.extend_from_slice(&[0x22; 16]);
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&80u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&443u16.to_be_bytes());
        tcp[12] = 0x50;
        let c = crate::frame::l4_checksum(&[0x11; 16], &[0x22; 16], 6, &tcp);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&tcp);
        let L3::V6 {
            src, l4: Some(l4), ..
        } = parse(&f).l3
        else {
            panic!()
        };
        assert_eq!(src, [0x11; 16]);
        assert_eq!(
            (l4.proto, l4.src_port, l4.dst_port, l4.csum_ok),
            (Transport::Tcp, 80, 443, Some(true))
        );
    }
}
