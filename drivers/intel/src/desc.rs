//! Advanced receive and transmit descriptors, 16 bytes each.
//!
//! Layouts: Intel 82599 10 GbE Controller Datasheet, section 7.1.6 (advanced receive
//! descriptors, read and write-back formats) and 7.2.3.2.4 (advanced transmit data
//! descriptor); the 82576 GbE Controller Datasheet, sections 7.1.5 and 7.2.2.3, uses the
//! same layouts. Every field is little-endian.

/// An advanced receive descriptor as two 64-bit words.
///
/// Read format (driver → device): `w0` = packet buffer address, `w1` = header buffer
/// address (0: no header split). Write-back format (device → driver): `w0` = packet
/// type/RSS type (bits 31:0) and RSS hash (bits 63:32); `w1` = extended status (bits
/// 19:0) and extended errors (bits 31:20), packet length (bits 47:32), VLAN tag (63:48).
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxDesc {
    /// Buffer address (read) / packet info and RSS hash (write-back).
    pub w0: u64,
    /// Header address (read) / status, errors, length, VLAN (write-back).
    pub w1: u64,
}

/// Receive write-back status: descriptor done.
pub const RXD_STAT_DD: u32 = 1 << 0;
/// Receive write-back status: end of packet.
pub const RXD_STAT_EOP: u32 = 1 << 1;
/// Receive write-back status: VLAN packet (tag in the VLAN field).
pub const RXD_STAT_VP: u32 = 1 << 3;
/// Receive write-back status: UDP checksum calculated.
pub const RXD_STAT_UDPCS: u32 = 1 << 4;
/// Receive write-back status: L4 (TCP/UDP) checksum calculated.
pub const RXD_STAT_L4CS: u32 = 1 << 5;
/// Receive write-back status: IPv4 checksum calculated.
pub const RXD_STAT_IPCS: u32 = 1 << 6;

/// The DPDK-layout packet type ([`pmd_core::mbuf::ptype`]) of a write-back packet type
/// field ([`RxDesc::packet_type`]); 0 (unknown) when the device reported none.
#[inline(always)]
pub fn ptype_of(field: u16) -> u32 {
    use pmd_core::mbuf::ptype::*;
    if field == 0 {
        return 0;
    }
    if field & (1 << 11) != 0 {
        return L2_ETHER;
    }
    let l3 = match field & 0xf {
        0 => 0,
        f if f & 0x4 != 0 => {
            if f & 0x8 != 0 {
                L3_IPV6_EXT
            } else {
                L3_IPV6
            }
        }
        f if f & 0x2 != 0 => L3_IPV4_EXT,
        _ => L3_IPV4,
    };
    let l4 = match (field >> 4) & 0x7 {
        0 => 0,
        f if f & 0x1 != 0 => L4_TCP,
        f if f & 0x2 != 0 => L4_UDP,
        _ => L4_SCTP,
    };
    L2_ETHER | l3 | l4
}

impl RxDesc {
    /// The read format: post a buffer at `addr`.
    #[inline(always)]
    pub fn read(addr: u64) -> RxDesc {
        RxDesc { w0: addr, w1: 0 }
    }

    /// Write-back: status and error bits (bits 31:0 of `w1`).
    #[inline(always)]
    pub fn status_error(&self) -> u32 {
        self.w1 as u32
    }

    /// Write-back: packet length in bytes.
    #[inline(always)]
    pub fn length(&self) -> u16 {
        (self.w1 >> 32) as u16
    }

    /// Write-back: VLAN tag.
    #[inline(always)]
    pub fn vlan(&self) -> u16 {
        (self.w1 >> 48) as u16
    }

    /// Write-back: RSS type (bits 3:0 of `w0`; 0 = no hash computed).
    #[inline(always)]
    pub fn rss_type(&self) -> u8 {
        (self.w0 & 0xf) as u8
    }

    /// Write-back: the packet type field (bits 16:4 of `w0`): bit 0 IPv4, 1 IPv4 with
    /// options, 2 IPv6, 3 IPv6 with extension headers, 4 TCP, 5 UDP, 6 SCTP; bit 11 set:
    /// not IP (an L2 packet) (82599 and 82576 datasheets, advanced rx write-back).
    #[inline(always)]
    pub fn packet_type(&self) -> u16 {
        ((self.w0 >> 4) & 0x1fff) as u16
    }

    /// Write-back: RSS hash.
    #[inline(always)]
    pub fn rss_hash(&self) -> u32 {
        (self.w0 >> 32) as u32
    }

    /// Builds a write-back descriptor (for device models and tests).
    pub fn write_back(
        status_error: u32,
        length: u16,
        vlan: u16,
        rss_type: u8,
        hash: u32,
    ) -> RxDesc {
        RxDesc {
            w0: u64::from(rss_type & 0xf) | u64::from(hash) << 32,
            w1: u64::from(status_error) | u64::from(length) << 32 | u64::from(vlan) << 48,
        }
    }
}

/// An advanced transmit descriptor as two 64-bit words.
///
/// Data descriptor (driver → device): `w0` = buffer address; `w1` bits 15:0 = data length
/// (DTALEN), 23:20 = descriptor type (DTYP, 0011b = data), 31:24 = command (DCMD), 35:32 =
/// status (STA, DD is bit 32 in write-back), 45:40 = POPTS, 63:46 = PAYLEN. Write-back:
/// `w1` bit 32 (STA.DD) set by the device when the descriptor had RS set.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxDesc {
    /// Buffer address.
    pub w0: u64,
    /// cmd_type_len (bits 31:0) and olinfo_status (bits 63:32).
    pub w1: u64,
}

/// Transmit descriptor type: advanced data descriptor (DTYP = 0011b, bits 23:20).
pub const TXD_DTYP_DATA: u32 = 0x3 << 20;
/// Transmit command: end of packet.
pub const TXD_CMD_EOP: u32 = 1 << 24;
/// Transmit command: insert the Ethernet FCS (CRC).
pub const TXD_CMD_IFCS: u32 = 1 << 25;
/// Transmit command: report status (the device writes DD back).
pub const TXD_CMD_RS: u32 = 1 << 27;
/// Transmit command: descriptor extension (advanced format).
pub const TXD_CMD_DEXT: u32 = 1 << 29;
/// Transmit write-back status: descriptor done (bit 0 of olinfo_status).
pub const TXD_STAT_DD: u32 = 1 << 0;
/// Shift of PAYLEN within olinfo_status.
pub const TXD_PAYLEN_SHIFT: u32 = 14;

/// Transmit command: insert the VLAN tag of the context descriptor (VLE).
pub const TXD_CMD_VLE: u32 = 1 << 30;
/// Transmit command: TCP segmentation (TSE).
pub const TXD_CMD_TSE: u32 = 1 << 31;
/// Transmit olinfo: shift of the context index (IDX, bits 6:4).
pub const TXD_IDX_SHIFT: u32 = 4;
/// Transmit olinfo: insert the IPv4 header checksum (POPTS.IXSM).
pub const TXD_POPTS_IXSM: u32 = 1 << 8;
/// Transmit olinfo: insert the TCP/UDP checksum (POPTS.TXSM).
pub const TXD_POPTS_TXSM: u32 = 1 << 9;
/// Largest PAYLEN (18 bits): the most bytes one (TSO) packet may carry.
pub const TXD_PAYLEN_MAX: u32 = (1 << 18) - 1;

/// Context descriptor type (DTYP = 0010b, bits 23:20 of type_tucmd_mlhl).
pub const TXD_DTYP_CTXT: u32 = 0x2 << 20;
/// Context vlan_macip_lens: shift of MACLEN (bits 15:9; IPLEN is bits 8:0).
pub const CTX_MACLEN_SHIFT: u32 = 9;
/// Context vlan_macip_lens: shift of the VLAN tag (bits 31:16).
pub const CTX_VLAN_SHIFT: u32 = 16;
/// Context TUCMD: the packet is IPv4 (bit 10 of type_tucmd_mlhl).
pub const CTX_TUCMD_IPV4: u32 = 1 << 10;
/// Context TUCMD: L4 type TCP (L4T = 01b, bits 12:11; 00b is UDP).
pub const CTX_TUCMD_L4T_TCP: u32 = 1 << 11;
/// Context mss_l4len_idx: shift of L4LEN (bits 15:8).
pub const CTX_L4LEN_SHIFT: u32 = 8;
/// Context mss_l4len_idx: shift of MSS (bits 31:16).
pub const CTX_MSS_SHIFT: u32 = 16;
/// Context mss_l4len_idx: shift of IDX (bits 6:4), the context slot.
pub const CTX_IDX_SHIFT: u32 = 4;
/// Longest MACLEN (7 bits).
pub const CTX_MACLEN_MAX: u32 = 0x7f;
/// Longest IPLEN (9 bits).
pub const CTX_IPLEN_MAX: u32 = 0x1ff;

/// L4 protocol of a transmit context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CtxL4 {
    /// No L4 offload.
    #[default]
    None,
    /// TCP checksum (and segmentation with TSO).
    Tcp,
    /// UDP checksum.
    Udp,
}

/// The offload context of an advanced context descriptor (82599 7.2.3.2.3, 82576
/// 7.2.2.2): what the data descriptors that follow it use. Fields that the requested
/// offloads do not need are zero, so equal requests compare equal (context caching).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxContext {
    /// VLAN tag to insert (with VLE in the data descriptor).
    pub vlan: u16,
    /// MAC header length (MACLEN, 7 bits).
    pub l2_len: u8,
    /// IP header length (IPLEN, 9 bits).
    pub l3_len: u16,
    /// L4 header length (L4LEN, TSO only).
    pub l4_len: u8,
    /// Maximum segment size (MSS, TSO only).
    pub mss: u16,
    /// The packet is IPv4 (TUCMD.IPV4).
    pub ipv4: bool,
    /// L4 protocol (TUCMD.L4T).
    pub l4: CtxL4,
}

impl TxContext {
    /// The context descriptor for slot `idx`.
    pub fn descriptor(&self, idx: u32) -> TxDesc {
        let vlan_macip_lens = u32::from(self.l3_len) & CTX_IPLEN_MAX
            | (u32::from(self.l2_len) & CTX_MACLEN_MAX) << CTX_MACLEN_SHIFT
            | u32::from(self.vlan) << CTX_VLAN_SHIFT;
        let mut tucmd = TXD_DTYP_CTXT | TXD_CMD_DEXT;
        if self.ipv4 {
            tucmd |= CTX_TUCMD_IPV4;
        }
        if self.l4 == CtxL4::Tcp {
            tucmd |= CTX_TUCMD_L4T_TCP;
        }
        let mss_l4len_idx = u32::from(self.mss) << CTX_MSS_SHIFT
            | u32::from(self.l4_len) << CTX_L4LEN_SHIFT
            | (idx & 0x7) << CTX_IDX_SHIFT;
        TxDesc {
            w0: u64::from(vlan_macip_lens),
            w1: u64::from(tucmd) | u64::from(mss_l4len_idx) << 32,
        }
    }
}

impl TxDesc {
    /// A single-buffer data descriptor for a whole packet of `len` bytes at `addr`.
    #[inline(always)]
    pub fn data(addr: u64, len: u16, rs: bool) -> TxDesc {
        let cmd = TXD_DTYP_DATA
            | TXD_CMD_DEXT
            | TXD_CMD_IFCS
            | TXD_CMD_EOP
            | if rs { TXD_CMD_RS } else { 0 }
            | u32::from(len);
        let olinfo = u32::from(len) << TXD_PAYLEN_SHIFT;
        TxDesc {
            w0: addr,
            w1: u64::from(cmd) | u64::from(olinfo) << 32,
        }
    }

    /// One data descriptor of a packet: `len` bytes at `addr`, with `cmd` (VLE, TSE,
    /// EOP, RS; DTYP, DEXT and IFCS are added) and `olinfo` (PAYLEN, POPTS, IDX).
    #[inline(always)]
    pub fn data_seg(addr: u64, len: u16, cmd: u32, olinfo: u32) -> TxDesc {
        let cmd = TXD_DTYP_DATA | TXD_CMD_DEXT | TXD_CMD_IFCS | cmd | u32::from(len);
        TxDesc {
            w0: addr,
            w1: u64::from(cmd) | u64::from(olinfo) << 32,
        }
    }

    /// cmd_type_len.
    #[inline(always)]
    pub fn cmd_type_len(&self) -> u32 {
        self.w1 as u32
    }

    /// olinfo_status (holds STA.DD after write-back).
    #[inline(always)]
    pub fn olinfo_status(&self) -> u32 {
        (self.w1 >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_type_fields_map_to_dpdks_layout() {
        use pmd_core::mbuf::ptype::*;
        for (field, want) in [
            (0u16, 0),
            (0x01 | 0x20, L2_ETHER | L3_IPV4 | L4_UDP),
            (0x01 | 0x02 | 0x10, L2_ETHER | L3_IPV4_EXT | L4_TCP),
            (0x04 | 0x20, L2_ETHER | L3_IPV6 | L4_UDP),
            (0x04 | 0x08, L2_ETHER | L3_IPV6_EXT),
            (0x01 | 0x40, L2_ETHER | L3_IPV4 | L4_SCTP),
            (1 << 11 | 0x3 << 8, L2_ETHER),
        ] {
            assert_eq!(ptype_of(field), want, "{field:#x}");
        }
        let mut d = RxDesc::write_back(RXD_STAT_DD, 60, 0, 0, 0);
        d.w0 |= 0x21 << 4;
        assert_eq!(d.packet_type(), 0x21);
        assert!(is_ipv4(ptype_of(d.packet_type())));
    }

    #[test]
    fn layouts_are_16_bytes() {
        assert_eq!(std::mem::size_of::<RxDesc>(), 16);
        assert_eq!(std::mem::size_of::<TxDesc>(), 16);
        assert_eq!(std::mem::align_of::<RxDesc>(), 16);
    }

    #[test]
    fn rx_write_back_fields() {
        // 82599 datasheet 7.1.6.2: length in bytes 12-13, VLAN in 14-15, status in 8-11,
        // RSS hash in 4-7, RSS type in bits 3:0 of byte 0.
        let d = RxDesc::write_back(RXD_STAT_DD | RXD_STAT_EOP, 60, 0x123, 1, 0xdead_beef);
        // SAFETY: RxDesc is repr(C), 16 bytes of plain integers.
        let bytes: [u8; 16] = unsafe { std::mem::transmute(d) };
        assert_eq!(&bytes[12..14], &60u16.to_le_bytes());
        assert_eq!(&bytes[14..16], &0x123u16.to_le_bytes());
        assert_eq!(bytes[8] & 3, 3);
        assert_eq!(&bytes[4..8], &0xdead_beefu32.to_le_bytes());
        assert_eq!(d.length(), 60);
        assert_eq!(d.vlan(), 0x123);
        assert_eq!(d.rss_type(), 1);
        assert_eq!(d.rss_hash(), 0xdead_beef);
    }

    #[test]
    fn tx_data_descriptor_fields() {
        // 82599 datasheet 7.2.3.2.4: DTALEN 15:0, DTYP 23:20 = 0011b, DCMD 31:24 with
        // EOP (24), IFCS (25), RS (27), DEXT (29); PAYLEN in olinfo 31:14.
        let d = TxDesc::data(0x1000, 64, true);
        assert_eq!(d.w0, 0x1000);
        assert_eq!(d.cmd_type_len(), 0x2b30_0040);
        assert_eq!(d.olinfo_status(), 64 << 14);
        assert_eq!(TxDesc::data(0, 1514, false).cmd_type_len(), 0x2330_05ea);
    }

    #[test]
    fn tx_context_descriptor_fields() {
        // 82599 datasheet 7.2.3.2.3 (82576 7.2.2.2 is the same): IPLEN 8:0, MACLEN 15:9,
        // VLAN 31:16; TUCMD.IPV4 bit 10, L4T 12:11 (01b TCP), DTYP 23:20 = 0010b, DEXT
        // bit 29; IDX 6:4, L4LEN 15:8, MSS 31:16 of mss_l4len_idx.
        let c = TxContext {
            vlan: 0x0123,
            l2_len: 14,
            l3_len: 20,
            l4_len: 20,
            mss: 1460,
            ipv4: true,
            l4: CtxL4::Tcp,
        };
        let d = c.descriptor(0);
        // SAFETY: TxDesc is repr(C), 16 bytes of plain integers.
        let bytes: [u8; 16] = unsafe { std::mem::transmute(d) };
        assert_eq!(
            &bytes[0..4],
            &(20u32 | 14 << 9 | 0x0123 << 16).to_le_bytes()
        );
        assert_eq!(&bytes[4..8], &[0; 4], "SEQNUM_SEED unused");
        assert_eq!(
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
            0x2020_0c00
        );
        assert_eq!(
            u32::from_le_bytes(bytes[12..16].try_into().unwrap()),
            1460 << 16 | 20 << 8
        );
        let udp = TxContext {
            l2_len: 18,
            l3_len: 40,
            l4: CtxL4::Udp,
            ..Default::default()
        };
        let d = udp.descriptor(1);
        assert_eq!(d.w0 as u32, 40 | 18 << 9);
        assert_eq!(d.cmd_type_len(), 0x2020_0000, "IPv6/UDP: no TUCMD bits");
        assert_eq!(d.olinfo_status(), 1 << 4);
    }

    #[test]
    fn tx_offload_data_descriptor_fields() {
        // DCMD VLE bit 30, TSE bit 31; POPTS IXSM bit 8, TXSM bit 9 of olinfo_status.
        let d = TxDesc::data_seg(
            0x2000,
            100,
            TXD_CMD_VLE | TXD_CMD_TSE | TXD_CMD_EOP,
            1000 << TXD_PAYLEN_SHIFT | TXD_POPTS_IXSM | TXD_POPTS_TXSM,
        );
        assert_eq!(d.cmd_type_len(), 0xE330_0064);
        assert_eq!(d.olinfo_status(), 0x00FA_0300);
    }
}
