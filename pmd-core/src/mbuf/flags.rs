//! Offload flags carried in `ol_flags` and the tx offload lengths ([`TxOffload`]).
//!
//! The bit positions are DPDK's (`RTE_MBUF_F_*`), so a DPDK user reads the same numbers in
//! dumps and logs. Receive flags say what the device (or driver) found; transmit flags ask
//! the device (or the software fallback in [`crate::offload`]) to do something.

/// Receive: the packet carries a VLAN tag; with [`RX_VLAN_STRIPPED`] the tag is in
/// `vlan_tci` and no longer in the data.
pub const RX_VLAN: u64 = 1 << 0;
/// Receive: `rss_hash` holds a valid RSS hash.
pub const RX_RSS_HASH: u64 = 1 << 1;
/// Receive: the L4 checksum was checked and is bad.
pub const RX_L4_CKSUM_BAD: u64 = 1 << 3;
/// Receive: the IP checksum was checked and is bad.
pub const RX_IP_CKSUM_BAD: u64 = 1 << 4;
/// Receive: the outer IP checksum is bad.
pub const RX_OUTER_IP_CKSUM_BAD: u64 = 1 << 5;
/// Receive: the VLAN tag was stripped from the data into `vlan_tci`.
pub const RX_VLAN_STRIPPED: u64 = 1 << 6;
/// Receive: the IP checksum was checked and is good.
pub const RX_IP_CKSUM_GOOD: u64 = 1 << 7;
/// Receive: the L4 checksum was checked and is good.
pub const RX_L4_CKSUM_GOOD: u64 = 1 << 8;
/// Receive: both VLAN tags of a QinQ frame were stripped (outer in `vlan_tci_outer`).
pub const RX_QINQ_STRIPPED: u64 = 1 << 15;
/// Receive: the packet was coalesced from several (LRO/GRO); `tso_segsz` holds the
/// original segment size.
pub const RX_LRO: u64 = 1 << 16;
/// Receive: the packet carries two VLAN tags.
pub const RX_QINQ: u64 = 1 << 20;

/// Receive: mask of the IP checksum state (neither bit: unknown; both: not checked but
/// the data is valid).
pub const RX_IP_CKSUM_MASK: u64 = RX_IP_CKSUM_GOOD | RX_IP_CKSUM_BAD;
/// Receive: IP checksum state unknown (no flag set).
pub const RX_IP_CKSUM_UNKNOWN: u64 = 0;
/// Receive: mask of the L4 checksum state (neither bit: unknown; both: not checked but
/// the data is valid, e.g. a partial checksum from a local sender).
pub const RX_L4_CKSUM_MASK: u64 = RX_L4_CKSUM_GOOD | RX_L4_CKSUM_BAD;
/// Receive: L4 checksum state unknown (no flag set).
pub const RX_L4_CKSUM_UNKNOWN: u64 = 0;
/// Receive: the L4 checksum field holds only the pseudo-header sum (a packet from a
/// local sender that left the checksum to an offload); the data is valid.
pub const RX_L4_CKSUM_NONE: u64 = RX_L4_CKSUM_MASK;

/// Transmit: segment the packet as UDP (UFO) into `tso_segsz`-byte payloads.
pub const TX_UDP_SEG: u64 = 1 << 42;
/// Transmit: insert two VLAN tags (`vlan_tci_outer`, then `vlan_tci`).
pub const TX_QINQ: u64 = 1 << 49;
/// Transmit: segment the packet as TCP (TSO) into `tso_segsz`-byte payloads; implies
/// [`TX_TCP_CKSUM`].
pub const TX_TCP_SEG: u64 = 1 << 50;
/// Transmit: no L4 checksum requested (the 2-bit L4 field is 0).
pub const TX_L4_NO_CKSUM: u64 = 0;
/// Transmit: compute the TCP checksum.
pub const TX_TCP_CKSUM: u64 = 1 << 52;
/// Transmit: compute the SCTP CRC (no PMD here has it).
pub const TX_SCTP_CKSUM: u64 = 2 << 52;
/// Transmit: compute the UDP checksum.
pub const TX_UDP_CKSUM: u64 = 3 << 52;
/// Transmit: mask of the 2-bit L4 checksum request.
pub const TX_L4_MASK: u64 = 3 << 52;
/// Transmit: compute the IPv4 header checksum.
pub const TX_IP_CKSUM: u64 = 1 << 54;
/// Transmit: the packet is IPv4 (needed with checksum and TSO flags).
pub const TX_IPV4: u64 = 1 << 55;
/// Transmit: the packet is IPv6.
pub const TX_IPV6: u64 = 1 << 56;
/// Transmit: insert the VLAN tag in `vlan_tci`.
pub const TX_VLAN: u64 = 1 << 57;
/// Transmit: compute the outer IPv4 header checksum.
pub const TX_OUTER_IP_CKSUM: u64 = 1 << 58;
/// Transmit: the outer header is IPv4.
pub const TX_OUTER_IPV4: u64 = 1 << 59;
/// Transmit: the outer header is IPv6.
pub const TX_OUTER_IPV6: u64 = 1 << 60;

/// Every transmit flag that asks for work (checksums, segmentation, tag insertion).
pub const TX_OFFLOAD_MASK: u64 =
    TX_UDP_SEG | TX_QINQ | TX_TCP_SEG | TX_L4_MASK | TX_IP_CKSUM | TX_VLAN | TX_OUTER_IP_CKSUM;

/// Names of the flags set in `flags`, for logs and dumps (DPDK's spelling without the
/// `RTE_MBUF_F_` prefix).
pub fn flag_names(flags: u64) -> Vec<&'static str> {
    const SINGLE: &[(u64, &str)] = &[
        (RX_VLAN, "RX_VLAN"),
        (RX_RSS_HASH, "RX_RSS_HASH"),
        (RX_OUTER_IP_CKSUM_BAD, "RX_OUTER_IP_CKSUM_BAD"),
        (RX_VLAN_STRIPPED, "RX_VLAN_STRIPPED"),
        (RX_QINQ_STRIPPED, "RX_QINQ_STRIPPED"),
        (RX_LRO, "RX_LRO"),
        (RX_QINQ, "RX_QINQ"),
        (TX_UDP_SEG, "TX_UDP_SEG"),
        (TX_QINQ, "TX_QINQ"),
        (TX_TCP_SEG, "TX_TCP_SEG"),
        (TX_IP_CKSUM, "TX_IP_CKSUM"),
        (TX_IPV4, "TX_IPV4"),
        (TX_IPV6, "TX_IPV6"),
        (TX_VLAN, "TX_VLAN"),
        (TX_OUTER_IP_CKSUM, "TX_OUTER_IP_CKSUM"),
        (TX_OUTER_IPV4, "TX_OUTER_IPV4"),
        (TX_OUTER_IPV6, "TX_OUTER_IPV6"),
    ];
    let mut v: Vec<&'static str> = SINGLE
        .iter()
        .filter(|(b, _)| flags & b != 0)
        .map(|&(_, n)| n)
        .collect();
    match flags & RX_IP_CKSUM_MASK {
        RX_IP_CKSUM_GOOD => v.push("RX_IP_CKSUM_GOOD"),
        RX_IP_CKSUM_BAD => v.push("RX_IP_CKSUM_BAD"),
        RX_IP_CKSUM_MASK => v.push("RX_IP_CKSUM_NONE"),
        _ => {}
    }
    match flags & RX_L4_CKSUM_MASK {
        RX_L4_CKSUM_GOOD => v.push("RX_L4_CKSUM_GOOD"),
        RX_L4_CKSUM_BAD => v.push("RX_L4_CKSUM_BAD"),
        RX_L4_CKSUM_MASK => v.push("RX_L4_CKSUM_NONE"),
        _ => {}
    }
    match flags & TX_L4_MASK {
        TX_TCP_CKSUM => v.push("TX_TCP_CKSUM"),
        TX_SCTP_CKSUM => v.push("TX_SCTP_CKSUM"),
        TX_UDP_CKSUM => v.push("TX_UDP_CKSUM"),
        _ => {}
    }
    v
}

/// Header lengths and the segment size a transmit offload works from (DPDK's
/// `tx_offload` fields). Meaningful only while a `TX_*` flag that needs them is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TxOffload {
    /// L2 header length (Ethernet plus tags; for tunnels, the inner L2 after the outer
    /// headers).
    pub l2_len: u8,
    /// L4 header length (TCP with options; 8 for UDP).
    pub l4_len: u8,
    /// L3 header length (IPv4 with options, IPv6 with extension headers).
    pub l3_len: u16,
    /// Payload bytes per segment for TSO/UFO (and, on receive with [`RX_LRO`], the
    /// original segment size).
    pub tso_segsz: u16,
    /// Outer L2 length of a tunnelled packet.
    pub outer_l2_len: u8,
    /// Padding, always 0.
    pub reserved: u8,
    /// Outer L3 length of a tunnelled packet.
    pub outer_l3_len: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_bits() {
        assert_eq!(
            flag_names(RX_VLAN | RX_VLAN_STRIPPED | RX_IP_CKSUM_GOOD | RX_L4_CKSUM_BAD),
            [
                "RX_VLAN",
                "RX_VLAN_STRIPPED",
                "RX_IP_CKSUM_GOOD",
                "RX_L4_CKSUM_BAD"
            ]
        );
        assert_eq!(
            flag_names(TX_IPV4 | TX_IP_CKSUM | TX_UDP_CKSUM),
            ["TX_IP_CKSUM", "TX_IPV4", "TX_UDP_CKSUM"]
        );
        assert!(flag_names(0).is_empty());
        // The flags asking for work are all in the mask; the packet-type hints are not.
        assert_eq!(TX_OFFLOAD_MASK & (TX_IPV4 | TX_IPV6), 0);
        assert_ne!(TX_OFFLOAD_MASK & TX_TCP_CKSUM, 0);
    }
}
