//! 82599 facts the model needs beyond the driver's register list (`pmd_ixgbe::regs`):
//! more receive-address entries, a few register bits, the descriptor fields the device
//! writes, and the limits of the register blocks.
//!
//! Source: Intel 82599 10 GbE Controller Datasheet (rev. 3.x). Section numbers are given
//! per item; `tests::values_match_the_datasheet` guards the numbers.

/// Receive Address Low of entry `n` < [`RAR_ENTRIES`] (8.2.3.7.9).
pub const fn ral(n: usize) -> usize {
    0x0A200 + 8 * n
}
/// Receive Address High of entry `n` (8.2.3.7.10).
pub const fn rah(n: usize) -> usize {
    0x0A204 + 8 * n
}
/// Entries in the receive address (unicast filter) table (7.1.1.1).
pub const RAR_ENTRIES: usize = 128;

/// EICR / EIMS: link status change cause (8.2.3.5.1, bit 20).
pub const EICR_LSC: u32 = 1 << 20;

/// HLREG0: jumbo frames enable; the maximum frame size is then MAXFRS.MFS (8.2.3.22.8).
pub const HLREG0_JUMBOEN: u32 = 1 << 2;
/// Max Frame Size register (MAC registers, 8.2.3.22); MFS in bits 31:16.
pub const MAXFRS: usize = 0x04268;
/// Shift of MAXFRS.MFS.
pub const MAXFRS_MFS_SHIFT: u32 = 16;
/// Largest standard frame including the 4-byte CRC (IEEE 802.3; the 82599's limit without
/// jumbo frames).
pub const STD_MAX_FRAME: usize = 1518;
/// Smallest legal frame including the CRC (8.2.3.23: "less than 64 bytes" is undersize).
pub const MIN_FRAME: usize = 64;
/// Bytes of the Ethernet CRC, which the model's frames omit and its octet counters add.
pub const CRC_LEN: usize = 4;

/// Receive Oversize Count (statistics registers, 8.2.3.23; clear on read).
pub const ROC: usize = 0x040AC;

/// SRRCTL: packet buffer size (BSIZEPACKET, bits 4:0, in 1 KiB units; 8.2.3.8.7).
pub const SRRCTL_BSIZEPKT_MASK: u32 = 0x1f;
/// SRRCTL: descriptor type field (DESCTYPE, bits 27:25).
pub const SRRCTL_DESCTYPE_MASK: u32 = 0x7 << 25;

/// LINKS: link speed 10 Gb/s (bits 29:28 = 11b; 8.2.3.22.20).
pub const LINKS_SPEED_10G: u32 = 0x3 << 28;

/// MRQC: the multiple-receive-queues mode field (MRQE, bits 3:0; 8.2.3.7.12).
pub const MRQC_MRQE_MASK: u32 = 0xf;
/// MRQC: hash on IPv6 with UDP ports (bit 23).
pub const MRQC_RSS_UDPIPV6: u32 = 1 << 23;

/// Descriptor ring bases are 128-byte aligned: RDBAL/TDBAL bits 6:0 are ignored
/// (8.2.3.8.1, 8.2.3.9.5).
pub const RING_BASE_IGNORED: u64 = 0x7f;
/// RDLEN/TDLEN: ring length in bytes, bits 19:7 (a multiple of 128; 8.2.3.8.3, 8.2.3.9.7).
pub const RING_LEN_MASK: u32 = 0x000F_FF80;
/// RDH/RDT/TDH/TDT: the descriptor index field (bits 15:0).
pub const RING_INDEX_MASK: u32 = 0xffff;
/// Bytes of one descriptor (7.1.6, 7.2.3.2).
pub const DESC_LEN: u64 = 16;

/// Receive queues the model serves: the 64 whose registers are at 0x01000 + 0x40 * q
/// (8.2.3.8; queues 64..127 live elsewhere and are not modelled).
pub const RX_QUEUES: usize = 64;
/// Transmit queues (8.2.3.9: 128, all at 0x06000 + 0x40 * q).
pub const TX_QUEUES: usize = 128;

/// Receive write-back error: RX data error (MAC error such as CRC; 7.1.6.2, bit 29).
pub const RXD_ERR_RXE: u32 = 1 << 29;
/// Receive write-back error: TCP/UDP checksum error (bit 30).
pub const RXD_ERR_L4E: u32 = 1 << 30;
/// Receive write-back error: IPv4 header checksum error (bit 31).
pub const RXD_ERR_IPE: u32 = 1 << 31;

/// Receive write-back RSS type (7.1.6.2, bits 3:0 of the first dword): no hash.
pub const RSS_TYPE_NONE: u8 = 0x0;
/// RSS type: hash over IPv4 addresses and TCP ports.
pub const RSS_TYPE_TCP_IPV4: u8 = 0x1;
/// RSS type: hash over IPv4 addresses.
pub const RSS_TYPE_IPV4: u8 = 0x2;
/// RSS type: hash over IPv6 addresses and TCP ports.
pub const RSS_TYPE_TCP_IPV6: u8 = 0x3;
/// RSS type: hash over IPv6 addresses.
pub const RSS_TYPE_IPV6: u8 = 0x5;
/// RSS type: hash over IPv4 addresses and UDP ports.
pub const RSS_TYPE_UDP_IPV4: u8 = 0x7;
/// RSS type: hash over IPv6 addresses and UDP ports.
pub const RSS_TYPE_UDP_IPV6: u8 = 0x8;

/// Receive write-back packet type (7.1.6.2, bits 16:4 of the first dword): IPv4 header.
pub const PTYPE_IPV4: u32 = 1 << 4;
/// Packet type: IPv6 header.
pub const PTYPE_IPV6: u32 = 1 << 6;
/// Packet type: TCP header.
pub const PTYPE_TCP: u32 = 1 << 8;
/// Packet type: UDP header.
pub const PTYPE_UDP: u32 = 1 << 9;

/// Transmit descriptor type field (DTYP, bits 23:20 of cmd_type_len; 7.2.3.2).
pub const TXD_DTYP_MASK: u32 = 0xf << 20;
/// DTYP of an advanced context descriptor (0010b; 7.2.3.2.3).
pub const TXD_DTYP_CTXT: u32 = 0x2 << 20;
/// Transmit data descriptor: data length (DTALEN, bits 15:0).
pub const TXD_DTALEN_MASK: u32 = 0xffff;

/// Largest frame the transmit path assembles from descriptors (the 82599's jumbo limit
/// is 15.5 KiB; TSO is not modelled). Longer frames are dropped as errors.
pub const TX_MAX_FRAME: usize = 15872;

/// PCI vendor id of Intel (PCIe configuration space, datasheet 9.3).
pub const VENDOR_INTEL: u16 = 0x8086;
/// PCI device id of the 82599 SFP+ (82599ES; the datasheet's device-id table, "82599 SFP").
pub const DEVICE_82599_SFP: u16 = 0x10FB;
/// PCI class code: network controller, Ethernet (02h/00h/00h; 9.3).
pub const CLASS_ETHERNET: u32 = 0x02_0000;

/// Transmit DCMD: insert the context's VLAN tag (VLE, 7.2.3.2.4).
pub const TXD_CMD_VLE: u32 = 1 << 30;
/// Transmit DCMD: TCP segmentation (TSE).
pub const TXD_CMD_TSE: u32 = 1 << 31;
/// Transmit olinfo: POPTS.IXSM (insert the IPv4 header checksum).
pub const TXD_POPTS_IXSM: u32 = 1 << 8;
/// Transmit olinfo: POPTS.TXSM (insert the TCP/UDP checksum).
pub const TXD_POPTS_TXSM: u32 = 1 << 9;
/// Transmit olinfo: the context slot (IDX, bits 6:4).
pub const TXD_OLINFO_IDX_SHIFT: u32 = 4;
/// Transmit olinfo: PAYLEN (bits 31:14).
pub const TXD_OLINFO_PAYLEN_SHIFT: u32 = 14;
/// Most bytes a TSO packet gathers (PAYLEN is 18 bits, plus headers).
pub const TX_MAX_TSO: usize = (1 << 18) + 512;

/// Context vlan_macip_lens (7.2.3.2.3): MACLEN shift (bits 15:9; IPLEN is 8:0).
pub const CTX_MACLEN_SHIFT: u32 = 9;
/// Context vlan_macip_lens: VLAN shift (bits 31:16).
pub const CTX_VLAN_SHIFT: u32 = 16;
/// Context TUCMD: IPv4 (bit 10 of type_tucmd_mlhl).
pub const CTX_TUCMD_IPV4: u32 = 1 << 10;
/// Context TUCMD: the L4T field (bits 12:11).
pub const CTX_TUCMD_L4T_MASK: u32 = 3 << 11;
/// Context TUCMD: L4T = TCP (01b; 00b is UDP).
pub const CTX_TUCMD_L4T_TCP: u32 = 1 << 11;
/// Context mss_l4len_idx: L4LEN shift (bits 15:8).
pub const CTX_L4LEN_SHIFT: u32 = 8;
/// Context mss_l4len_idx: MSS shift (bits 31:16).
pub const CTX_MSS_SHIFT: u32 = 16;
/// Context mss_l4len_idx: IDX shift (bits 6:4).
pub const CTX_IDX_SHIFT: u32 = 4;

/// RXDCTL: VLAN mode enable, strip the tag into the descriptor (8.2.3.8.6).
pub const RXDCTL_VME: u32 = 1 << 30;
/// Receive write-back status: VLAN packet (VP, 7.1.6.2).
pub const RXD_STAT_VP: u32 = 1 << 3;
/// Largest MAXFRS.MFS the model takes (9.5 KB jumbo frames, with CRC).
pub const MAX_MFS: usize = 9728;

/// TCP flags fixed per TSO frame.
pub const TCP_FIN: u8 = 0x01;
/// TCP PSH.
pub const TCP_PSH: u8 = 0x08;
/// TCP CWR.
pub const TCP_CWR: u8 = 0x80;

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers written down from the datasheet's register summary (table 8-1), the
    /// write-back descriptor tables (7.1.6.2) and the RSS type table; a typo fails here.
    #[test]
    fn values_match_the_datasheet() {
        assert_eq!(
            (ral(0), rah(0), ral(1), rah(127)),
            (0xA200, 0xA204, 0xA208, 0xA5FC)
        );
        assert_eq!((MAXFRS, ROC), (0x4268, 0x40AC));
        assert_eq!(EICR_LSC, 0x0010_0000);
        assert_eq!(HLREG0_JUMBOEN, 0x4);
        assert_eq!(LINKS_SPEED_10G, 0x3000_0000);
        assert_eq!(SRRCTL_DESCTYPE_MASK, 0x0E00_0000);
        assert_eq!(
            (RXD_ERR_RXE, RXD_ERR_L4E, RXD_ERR_IPE),
            (0x2000_0000, 0x4000_0000, 0x8000_0000)
        );
        assert_eq!(
            (
                RSS_TYPE_TCP_IPV4,
                RSS_TYPE_IPV4,
                RSS_TYPE_UDP_IPV4,
                RSS_TYPE_TCP_IPV6
            ),
            (1, 2, 7, 3)
        );
        assert_eq!((PTYPE_IPV4, PTYPE_TCP, PTYPE_UDP), (0x10, 0x100, 0x200));
        assert_eq!(TXD_DTYP_CTXT, 0x0020_0000);
        assert_eq!(pmd_intel::desc::TXD_DTYP_DATA & TXD_DTYP_MASK, 0x0030_0000);
        assert_eq!(RING_LEN_MASK & 0x7f, 0);
        assert_eq!((TXD_CMD_VLE, TXD_CMD_TSE), (0x4000_0000, 0x8000_0000));
        assert_eq!((TXD_POPTS_IXSM, TXD_POPTS_TXSM), (0x100, 0x200));
        assert_eq!((CTX_TUCMD_IPV4, CTX_TUCMD_L4T_TCP), (0x400, 0x800));
        assert_eq!((RXDCTL_VME, RXD_STAT_VP), (0x4000_0000, 0x8));
    }
}
