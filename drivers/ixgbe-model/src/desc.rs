//! The descriptor formats the model reads and writes, written down from the Intel 82599
//! 10 GbE Controller Datasheet: the advanced receive descriptor (7.1.6: read format and
//! write-back format) and the advanced transmit data and context descriptors (7.2.3.2).
//! A descriptor is 16 bytes, seen here as two little-endian 64-bit words.
//!
//! The driver's encoder (`pmd_intel::desc`) is not used: the model decodes what the
//! driver wrote with these definitions, so a field the driver puts in the wrong place is
//! read as the datasheet says, and the test that drives the real driver fails.

/// Bytes of one descriptor (receive and transmit alike).
pub const DESC_LEN: u64 = 16;

// ---- Receive, read format (7.1.6.1): word 0 packet buffer address, word 1 header
// buffer address (unused with one-buffer descriptors).

// ---- Receive, write-back format (7.1.6.2) ----

/// Write-back status (extended status, bits 19:0 of word 1) bit 0: descriptor done.
pub const RXD_STAT_DD: u32 = 1 << 0;
/// Status bit 1: end of packet (last descriptor of a frame).
pub const RXD_STAT_EOP: u32 = 1 << 1;
/// Status bit 3: the frame had a VLAN tag (stripped into the VLAN field).
pub const RXD_STAT_VP: u32 = 1 << 3;
/// Status bit 4: UDP checksum computed.
pub const RXD_STAT_UDPCS: u32 = 1 << 4;
/// Status bit 5: TCP/UDP checksum computed.
pub const RXD_STAT_L4CS: u32 = 1 << 5;
/// Status bit 6: IPv4 header checksum computed.
pub const RXD_STAT_IPCS: u32 = 1 << 6;
/// Extended errors (bits 31:20 of word 1) bit 29: RX data error (a MAC error: CRC,
/// length, symbol).
pub const RXD_ERR_RXE: u32 = 1 << 29;
/// Error bit 30: TCP/UDP checksum error.
pub const RXD_ERR_L4E: u32 = 1 << 30;
/// Error bit 31: IPv4 header checksum error.
pub const RXD_ERR_IPE: u32 = 1 << 31;

/// RSS type (bits 3:0 of word 0): no hash computed.
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

/// Packet type (bits 16:4 of word 0) with an IPv4 header.
pub const PTYPE_IPV4: u32 = 1 << 4;
/// Packet type: IPv6 header.
pub const PTYPE_IPV6: u32 = 1 << 6;
/// Packet type: TCP header.
pub const PTYPE_TCP: u32 = 1 << 8;
/// Packet type: UDP header.
pub const PTYPE_UDP: u32 = 1 << 9;

/// One receive write-back descriptor, field by field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxWriteBack {
    /// RSS type (word 0 bits 3:0).
    pub rss_type: u8,
    /// Packet type bits, already in place (word 0 bits 16:4, the `PTYPE_*` values).
    pub packet_type: u32,
    /// RSS hash (word 0 bits 63:32).
    pub rss_hash: u32,
    /// Extended status and errors (word 1 bits 31:0: `RXD_STAT_*` | `RXD_ERR_*`).
    pub status_error: u32,
    /// Bytes written to this descriptor's buffer (word 1 bits 47:32).
    pub length: u16,
    /// The stripped VLAN tag (word 1 bits 63:48).
    pub vlan: u16,
}

impl RxWriteBack {
    /// The two descriptor words, in the order the device writes them to memory.
    pub fn words(&self) -> [u64; 2] {
        let w0 = u64::from(self.rss_type & 0xF)
            | u64::from(self.packet_type & 0x1_FFF0)
            | u64::from(self.rss_hash) << 32;
        let w1 = u64::from(self.status_error)
            | u64::from(self.length) << 32
            | u64::from(self.vlan) << 48;
        [w0, w1]
    }
}

// ---- Transmit (7.2.3.2): word 0 buffer address (data) or vlan_macip_lens and a
// reserved dword (context); word 1 cmd_type_len (bits 31:0) and olinfo_status or
// mss_l4len_idx (bits 63:32).

/// cmd_type_len bits 23:20, DTYP: the descriptor type.
pub const TXD_DTYP_MASK: u32 = 0xF << 20;
/// DTYP 0011b: advanced data descriptor.
pub const TXD_DTYP_DATA: u32 = 0x3 << 20;
/// DTYP 0010b: advanced context descriptor.
pub const TXD_DTYP_CTXT: u32 = 0x2 << 20;
/// Data descriptor cmd_type_len bits 15:0, DTALEN: bytes in this buffer.
pub const TXD_DTALEN_MASK: u32 = 0xFFFF;
/// DCMD (bits 31:24) bit 24, EOP: last descriptor of the packet.
pub const TXD_CMD_EOP: u32 = 1 << 24;
/// DCMD bit 27, RS: report status (write DD back when done).
pub const TXD_CMD_RS: u32 = 1 << 27;
/// DCMD bit 29, DEXT: advanced (extended) descriptor.
pub const TXD_CMD_DEXT: u32 = 1 << 29;
/// DCMD bit 30, VLE: insert the context's VLAN tag.
pub const TXD_CMD_VLE: u32 = 1 << 30;
/// DCMD bit 31, TSE: TCP segmentation.
pub const TXD_CMD_TSE: u32 = 1 << 31;
/// Write-back STA (olinfo_status bits 3:0) bit 0: descriptor done.
pub const TXD_STAT_DD: u32 = 1 << 0;
/// olinfo_status bits 6:4, IDX: the context slot the packet uses.
pub const TXD_OLINFO_IDX_SHIFT: u32 = 4;
/// olinfo_status POPTS (bits 13:8) bit 8, IXSM: insert the IPv4 header checksum.
pub const TXD_POPTS_IXSM: u32 = 1 << 8;
/// POPTS bit 9, TXSM: insert the TCP/UDP checksum.
pub const TXD_POPTS_TXSM: u32 = 1 << 9;
/// olinfo_status bits 31:14, PAYLEN: the payload bytes of the whole packet (TSO: after
/// the headers).
pub const TXD_OLINFO_PAYLEN_SHIFT: u32 = 14;

/// Context vlan_macip_lens bits 8:0, IPLEN.
pub const CTX_IPLEN_MASK: u32 = 0x1FF;
/// Context vlan_macip_lens bits 15:9, MACLEN (shift; 7 bits).
pub const CTX_MACLEN_SHIFT: u32 = 9;
/// Width mask of MACLEN after the shift.
pub const CTX_MACLEN_MASK: u32 = 0x7F;
/// Context vlan_macip_lens bits 31:16: the VLAN tag.
pub const CTX_VLAN_SHIFT: u32 = 16;
/// Context type_tucmd_mlhl TUCMD bit 10: the packet is IPv4.
pub const CTX_TUCMD_IPV4: u32 = 1 << 10;
/// TUCMD bits 12:11, L4T: the L4 protocol.
pub const CTX_TUCMD_L4T_MASK: u32 = 3 << 11;
/// L4T 01b: TCP (00b is UDP).
pub const CTX_TUCMD_L4T_TCP: u32 = 1 << 11;
/// Context mss_l4len_idx bits 6:4, IDX: the slot this context loads.
pub const CTX_IDX_SHIFT: u32 = 4;
/// Context mss_l4len_idx bits 15:8, L4LEN (shift; 8 bits).
pub const CTX_L4LEN_SHIFT: u32 = 8;
/// Context mss_l4len_idx bits 31:16, MSS.
pub const CTX_MSS_SHIFT: u32 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_back_fields_land_where_the_datasheet_puts_them() {
        // 7.1.6.2: byte 0 bits 3:0 RSS type, bits 16:4 packet type, bytes 4-7 RSS hash,
        // bytes 8-11 status/errors, 12-13 length, 14-15 VLAN.
        let d = RxWriteBack {
            rss_type: RSS_TYPE_UDP_IPV4,
            packet_type: PTYPE_IPV4 | PTYPE_UDP,
            rss_hash: 0xdead_beef,
            status_error: RXD_STAT_DD | RXD_STAT_EOP | RXD_ERR_IPE,
            length: 60,
            vlan: 0x0123,
        };
        let [w0, w1] = d.words();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&w0.to_le_bytes());
        bytes[8..].copy_from_slice(&w1.to_le_bytes());
        assert_eq!(bytes[0] & 0xF, 7);
        assert_eq!(
            u16::from_le_bytes([bytes[0], bytes[1]]) >> 4,
            0x21,
            "IPv4 + UDP"
        );
        assert_eq!(&bytes[4..8], &0xdead_beefu32.to_le_bytes());
        assert_eq!(&bytes[8..12], &0x8000_0003u32.to_le_bytes());
        assert_eq!(&bytes[12..14], &60u16.to_le_bytes());
        assert_eq!(&bytes[14..16], &0x0123u16.to_le_bytes());
    }

    /// Bit positions as the descriptor tables of 7.1.6.2, 7.2.3.2.3 and 7.2.3.2.4 give
    /// them, typed in again.
    #[test]
    fn bits_match_the_datasheet() {
        assert_eq!(
            (
                RXD_STAT_DD,
                RXD_STAT_EOP,
                RXD_STAT_VP,
                RXD_STAT_UDPCS,
                RXD_STAT_L4CS,
                RXD_STAT_IPCS
            ),
            (0x1, 0x2, 0x8, 0x10, 0x20, 0x40)
        );
        assert_eq!(
            (RXD_ERR_RXE, RXD_ERR_L4E, RXD_ERR_IPE),
            (0x2000_0000, 0x4000_0000, 0x8000_0000)
        );
        assert_eq!(
            (
                RSS_TYPE_TCP_IPV4,
                RSS_TYPE_IPV4,
                RSS_TYPE_TCP_IPV6,
                RSS_TYPE_IPV6
            ),
            (1, 2, 3, 5)
        );
        assert_eq!((RSS_TYPE_UDP_IPV4, RSS_TYPE_UDP_IPV6), (7, 8));
        assert_eq!(
            (PTYPE_IPV4, PTYPE_IPV6, PTYPE_TCP, PTYPE_UDP),
            (0x10, 0x40, 0x100, 0x200)
        );
        assert_eq!(
            (TXD_DTYP_MASK, TXD_DTYP_DATA, TXD_DTYP_CTXT),
            (0x00F0_0000, 0x0030_0000, 0x0020_0000)
        );
        assert_eq!(
            (
                TXD_CMD_EOP,
                TXD_CMD_RS,
                TXD_CMD_DEXT,
                TXD_CMD_VLE,
                TXD_CMD_TSE
            ),
            (
                0x0100_0000,
                0x0800_0000,
                0x2000_0000,
                0x4000_0000,
                0x8000_0000
            )
        );
        assert_eq!((TXD_POPTS_IXSM, TXD_POPTS_TXSM), (0x100, 0x200));
        assert_eq!((TXD_OLINFO_IDX_SHIFT, TXD_OLINFO_PAYLEN_SHIFT), (4, 14));
        assert_eq!((CTX_TUCMD_IPV4, CTX_TUCMD_L4T_TCP), (0x400, 0x800));
        assert_eq!(
            (
                CTX_MACLEN_SHIFT,
                CTX_VLAN_SHIFT,
                CTX_L4LEN_SHIFT,
                CTX_MSS_SHIFT
            ),
            (9, 16, 8, 16)
        );
    }
}
