//! Keys of the common flows: the IPv4 and IPv6 5-tuples, packed into 64-bit words (the
//! table compares words, not bytes).

use std::net::{Ipv4Addr, Ipv6Addr};

/// An IPv4 flow: addresses, ports and protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FiveTuple4 {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Source port (0 for protocols without ports).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IP protocol number.
    pub proto: u8,
}

impl FiveTuple4 {
    /// The table key.
    #[inline]
    pub fn key(&self) -> [u64; 2] {
        [
            u64::from(u32::from(self.src)) << 32 | u64::from(u32::from(self.dst)),
            u64::from(self.sport) << 32 | u64::from(self.dport) << 16 | u64::from(self.proto),
        ]
    }

    /// The flow in the other direction (addresses and ports swapped).
    pub fn reverse(&self) -> FiveTuple4 {
        FiveTuple4 {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }
}

/// An IPv6 flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FiveTuple6 {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Next header (protocol) number.
    pub proto: u8,
}

impl FiveTuple6 {
    /// The table key.
    #[inline]
    pub fn key(&self) -> [u64; 5] {
        let (s, d) = (u128::from(self.src), u128::from(self.dst));
        [
            (s >> 64) as u64,
            s as u64,
            (d >> 64) as u64,
            d as u64,
            u64::from(self.sport) << 32 | u64::from(self.dport) << 16 | u64::from(self.proto),
        ]
    }
}
