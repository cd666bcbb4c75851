//! Typed, zero-copy views of packet headers, for apps built on pmd-core: Ethernet with
//! 802.1Q/802.1ad tags, ARP, IPv4, IPv6, UDP, TCP and ICMP, read and edited in place in a
//! packet's bytes (`Mbuf::data_mut()`), with checksums kept right by incremental updates
//! (RFC 1624) instead of sums over the whole packet.
//!
//! [`Headers::parse`] finds where each layer starts (DPDK's packet type); the views check
//! the lengths they need when made (`new`), so their getters cannot read past the buffer,
//! and a truncated or lying header is an error to count, never a panic.
//!
//! ```
//! use pmd_net::{Headers, Ipv4, L3, L4};
//! let mut frame = pmd_net::build::udp4([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2],
//!     [10, 0, 0, 1], [10, 0, 0, 2], 1234, 53, &[0u8; 18]);
//! let h = Headers::parse(&frame).unwrap();
//! assert_eq!((h.l3, h.l4), (L3::Ipv4, L4::Udp));
//! let mut ip = Ipv4::new(&mut frame[h.l3_offset..]).unwrap();
//! ip.decrement_ttl();                      // the header checksum follows
//! assert!(ip.checksum_ok());
//! ```

#![warn(missing_docs)]

pub mod build;
mod ether;
mod ip;
mod l4;

pub use ether::{Ether, MacAddr};
pub use ip::{Ipv4, Ipv6};
pub use l4::{Tcp, Udp};

/// Ethertypes this crate knows.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// An 802.1Q VLAN tag.
    pub const VLAN: u16 = pmd_core::offload::TPID_8021Q;
    /// An 802.1ad service tag (QinQ's outer tag).
    pub const QINQ: u16 = pmd_core::offload::TPID_8021AD;
}

/// IP protocol numbers this crate knows.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// Why a header cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The buffer ends before the header does.
    #[error("truncated: {need} bytes needed, {have} there")]
    Truncated {
        /// Bytes the header needs.
        need: usize,
        /// Bytes in the buffer.
        have: usize,
    },
    /// A field contradicts the header or the buffer (version, header or total length).
    #[error("malformed header: {0}")]
    Malformed(&'static str),
}

fn need(buf: &[u8], n: usize) -> Result<(), NetError> {
    if buf.len() < n {
        Err(NetError::Truncated {
            need: n,
            have: buf.len(),
        })
    } else {
        Ok(())
    }
}

/// The network layer of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L3 {
    /// IPv4.
    Ipv4,
    /// IPv6.
    Ipv6,
    /// ARP.
    Arp,
    /// Another ethertype.
    Other(u16),
}

/// The transport layer of an IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// ICMP or ICMPv6.
    Icmp,
    /// Another protocol, or none (not IP, or a non-first IPv4 fragment).
    Other(u8),
}

/// Where each layer of a frame starts, and what it is (DPDK's packet type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headers {
    /// VLAN tags between the MAC addresses and the ethertype (0, 1 or 2).
    pub vlan_tags: u8,
    /// The network layer.
    pub l3: L3,
    /// Where it starts.
    pub l3_offset: usize,
    /// The transport layer.
    pub l4: L4,
    /// Where it starts (0 when there is none).
    pub l4_offset: usize,
}

impl Headers {
    /// Parses a frame's Ethernet header, up to two VLAN tags, and an IPv4 or IPv6 header
    /// (IPv6 extension headers are not followed: their next header is reported as
    /// `L4::Other`). Errors: the frame is cut inside a header it announces, or the IP
    /// header's lengths are wrong.
    pub fn parse(frame: &[u8]) -> Result<Headers, NetError> {
        need(frame, 14)?;
        let mut at = 12;
        let mut tags = 0;
        let mut et = u16::from_be_bytes([frame[12], frame[13]]);
        while (et == ethertype::VLAN || et == ethertype::QINQ) && tags < 2 {
            need(frame, at + 6)?;
            at += 4;
            tags += 1;
            et = u16::from_be_bytes([frame[at], frame[at + 1]]);
        }
        let l3_offset = at + 2;
        let (l3, l4, l4_offset) = match et {
            ethertype::IPV4 => {
                let ip = Ipv4::new(&frame[l3_offset..])?;
                let l4 = if ip.is_later_fragment() {
                    L4::Other(ip.protocol())
                } else {
                    l4_of(ip.protocol())
                };
                (L3::Ipv4, l4, l3_offset + ip.header_len())
            }
            ethertype::IPV6 => {
                let ip = Ipv6::new(&frame[l3_offset..])?;
                (L3::Ipv6, l4_of(ip.next_header()), l3_offset + 40)
            }
            ethertype::ARP => (L3::Arp, L4::Other(0), 0),
            other => (L3::Other(other), L4::Other(0), 0),
        };
        let l4_offset = if matches!(l4, L4::Other(_)) {
            0
        } else {
            l4_offset
        };
        Ok(Headers {
            vlan_tags: tags,
            l3,
            l3_offset,
            l4,
            l4_offset,
        })
    }
}

impl Headers {
    /// The packet type in DPDK's layout ([`pmd_core::mbuf::ptype`]), as a driver that
    /// classifies in hardware would report it: for software ports, or to check one.
    /// (IPv4 options show as `L3_IPV4_EXT`; IPv6 extension headers are not followed.)
    pub fn ptype(&self) -> u32 {
        use pmd_core::mbuf::ptype::*;
        let l3 = match self.l3 {
            L3::Ipv4 if self.l4_offset != 0 && self.l4_offset - self.l3_offset > 20 => L3_IPV4_EXT,
            L3::Ipv4 => L3_IPV4,
            L3::Ipv6 => L3_IPV6,
            _ => 0,
        };
        let l4 = match self.l4 {
            L4::Tcp => L4_TCP,
            L4::Udp => L4_UDP,
            _ => 0,
        };
        L2_ETHER | l3 | l4
    }
}

fn l4_of(p: u8) -> L4 {
    match p {
        proto::UDP => L4::Udp,
        proto::TCP => L4::Tcp,
        proto::ICMP | proto::ICMPV6 => L4::Icmp,
        other => L4::Other(other),
    }
}
