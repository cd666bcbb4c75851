//! Packet types ([`crate::Mbuf::packet_type`]): what a driver that classifies packets in
//! hardware found, in DPDK's `RTE_PTYPE_*` layout (so values read the same in both):
//! bits 3:0 the L2 type, 7:4 the L3 type, 11:8 the L4 type. Zero: unknown (software
//! PMDs do not classify; parse the headers, e.g. with `pmd-net`).

/// Mask of the L2 type.
pub const L2_MASK: u32 = 0x0000_000f;
/// Ethernet.
pub const L2_ETHER: u32 = 0x0000_0001;
/// Mask of the L3 type.
pub const L3_MASK: u32 = 0x0000_00f0;
/// IPv4 without options.
pub const L3_IPV4: u32 = 0x0000_0010;
/// IPv4 with options.
pub const L3_IPV4_EXT: u32 = 0x0000_0030;
/// IPv6 without extension headers.
pub const L3_IPV6: u32 = 0x0000_0040;
/// IPv6 with extension headers.
pub const L3_IPV6_EXT: u32 = 0x0000_00c0;
/// Mask of the L4 type.
pub const L4_MASK: u32 = 0x0000_0f00;
/// TCP.
pub const L4_TCP: u32 = 0x0000_0100;
/// UDP.
pub const L4_UDP: u32 = 0x0000_0200;
/// SCTP.
pub const L4_SCTP: u32 = 0x0000_0400;

/// Whether `t` says IPv4 (with or without options).
#[inline(always)]
pub fn is_ipv4(t: u32) -> bool {
    t & 0x10 != 0 && t & 0x40 == 0
}

/// Whether `t` says IPv6 (with or without extension headers).
#[inline(always)]
pub fn is_ipv6(t: u32) -> bool {
    t & 0x40 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_versions_read_from_the_l3_bits() {
        for (t, v4, v6) in [
            (L2_ETHER | L3_IPV4 | L4_UDP, true, false),
            (L2_ETHER | L3_IPV4_EXT, true, false),
            (L2_ETHER | L3_IPV6 | L4_TCP, false, true),
            (L2_ETHER | L3_IPV6_EXT, false, true),
            (L2_ETHER, false, false),
            (0, false, false),
        ] {
            assert_eq!((is_ipv4(t), is_ipv6(t)), (v4, v6), "{t:#x}");
        }
    }
}
