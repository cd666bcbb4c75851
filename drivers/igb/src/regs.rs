//! 82576 register offsets and bits used by the driver.
//!
//! Source: Intel 82576 GbE Controller Datasheet (rev. 2.x), section 8 (register
//! descriptions; table 8-2 is the register summary).

/// Device Control (8.2.1).
pub const CTRL: usize = 0x00000;
/// CTRL: set link up.
pub const CTRL_SLU: u32 = 1 << 6;
/// CTRL: device reset (self-clearing).
pub const CTRL_RST: u32 = 1 << 26;
/// CTRL: GIO master disable.
pub const CTRL_GIO_MASTER_DISABLE: u32 = 1 << 2;
/// Device Status (8.2.2).
pub const STATUS: usize = 0x00008;
/// STATUS: full duplex.
pub const STATUS_FD: u32 = 1 << 0;
/// STATUS: link up.
pub const STATUS_LU: u32 = 1 << 1;
/// STATUS: speed field shift (bits 7:6: 00 = 10, 01 = 100, 1x = 1000 Mb/s).
pub const STATUS_SPEED_SHIFT: u32 = 6;
/// STATUS: GIO master enable status.
pub const STATUS_GIO_MASTER_ENABLE: u32 = 1 << 19;
/// EEPROM/Flash Control (8.4.1).
pub const EECD: usize = 0x00010;
/// EECD: EEPROM auto-read done.
pub const EECD_AUTO_RD: u32 = 1 << 9;
/// Extended Device Control (8.2.3).
pub const CTRL_EXT: usize = 0x00018;
/// CTRL_EXT: driver loaded.
pub const CTRL_EXT_DRV_LOAD: u32 = 1 << 28;

/// MDI Control: PHY register access (8.2.4).
pub const MDIC: usize = 0x00020;
/// MDIC: data field (bits 15:0).
pub const MDIC_DATA_MASK: u32 = 0xffff;
/// MDIC: PHY register address shift (bits 20:16).
pub const MDIC_REG_SHIFT: u32 = 16;
/// MDIC: PHY address shift (bits 25:21).
pub const MDIC_PHY_SHIFT: u32 = 21;
/// MDIC: write opcode (bits 27:26 = 01b).
pub const MDIC_OP_WRITE: u32 = 1 << 26;
/// MDIC: read opcode (bits 27:26 = 10b).
pub const MDIC_OP_READ: u32 = 2 << 26;
/// MDIC: ready (the access completed).
pub const MDIC_READY: u32 = 1 << 28;
/// MDIC: error (no PHY answered).
pub const MDIC_ERROR: u32 = 1 << 30;
/// Address of the internal PHY on the MDIO bus.
pub const PHY_ADDR: u32 = 1;
/// PHY Control register (IEEE 802.3 clause 22 register 0; 82576 8.23.1).
pub const PHY_CTRL: u32 = 0;
/// PHY Control: restart auto-negotiation.
pub const PHY_CTRL_RESTART_AN: u16 = 1 << 9;
/// PHY Control: auto-negotiation enable.
pub const PHY_CTRL_AN_ENABLE: u16 = 1 << 12;

/// Interrupt Cause Read (8.8.1).
pub const ICR: usize = 0x000C0;
/// Interrupt Mask Clear (8.8.4).
pub const IMC: usize = 0x000D8;
/// Extended Interrupt Mask Clear (8.8.10).
pub const EIMC: usize = 0x01528;

/// Receive Control (8.10.1).
pub const RCTL: usize = 0x00100;
/// RCTL: receiver enable.
pub const RCTL_EN: u32 = 1 << 1;
/// RCTL: unicast promiscuous.
pub const RCTL_UPE: u32 = 1 << 3;
/// RCTL: multicast promiscuous.
pub const RCTL_MPE: u32 = 1 << 4;
/// RCTL: accept broadcast.
pub const RCTL_BAM: u32 = 1 << 15;
/// RCTL: strip Ethernet CRC.
pub const RCTL_SECRC: u32 = 1 << 26;
/// RCTL: long packets up to RLPML accepted (LPE).
pub const RCTL_LPE: u32 = 1 << 5;
/// Receive Long Packet Maximum Length (8.10.4; RLPML.RLPML in bits 13:0, bytes with CRC).
pub const RLPML: usize = 0x05004;
/// Largest frame the 82576 takes (jumbo frames up to 9.5 KB).
pub const MAX_FRAME: u32 = 9728;
/// Frame size at and below which long packets stay disabled.
pub const STD_MAX_FRAME: u32 = 1518;
/// CTRL: strip VLAN tags into the descriptor (VME; device-wide on the 82576).
pub const CTRL_VME: u32 = 1 << 30;
/// Transmit Control (8.12.1).
pub const TCTL: usize = 0x00400;
/// TCTL: transmit enable.
pub const TCTL_EN: u32 = 1 << 1;
/// TCTL: pad short packets.
pub const TCTL_PSP: u32 = 1 << 3;
/// TCTL: collision threshold field (bits 11:4), recommended 0x0F.
pub const TCTL_CT_SHIFT: u32 = 4;
/// TCTL: collision distance field (bits 21:12), 0x3F for full duplex.
pub const TCTL_COLD_SHIFT: u32 = 12;

/// Receive Address Low, entry 0 (8.10.13).
pub const RAL0: usize = 0x05400;
/// Receive Address High, entry 0 (8.10.14).
pub const RAH0: usize = 0x05404;
/// Multiple Receive Queues Command (8.10.9).
pub const MRQC: usize = 0x05818;
/// MRQC: multiple receive queues with RSS (field bits 2:0 = 010b, 8.10.9).
pub const MRQC_RSS_EN: u32 = 0x2;
/// MRQC: hash on IPv4 with TCP ports.
pub const MRQC_RSS_TCPIPV4: u32 = 1 << 16;
/// MRQC: hash on IPv4 addresses.
pub const MRQC_RSS_IPV4: u32 = 1 << 17;
/// MRQC: hash on IPv4 with UDP ports.
pub const MRQC_RSS_UDPIPV4: u32 = 1 << 22;
/// RSS Random Key register `i` (0..10) (8.10.12).
pub const fn rssrk(i: usize) -> usize {
    0x05C80 + 4 * i
}
/// Redirection Table register `i` (0..32), four 8-bit entries each (8.10.11).
pub const fn reta(i: usize) -> usize {
    0x05C00 + 4 * i
}

/// Receive Descriptor Base Address Low, queue `q` < 16 (8.10.x).
pub const fn rdbal(q: usize) -> usize {
    0x0C000 + 0x40 * q
}
/// Receive Descriptor Base Address High.
pub const fn rdbah(q: usize) -> usize {
    0x0C004 + 0x40 * q
}
/// Receive Descriptor Length.
pub const fn rdlen(q: usize) -> usize {
    0x0C008 + 0x40 * q
}
/// Split and Replication Receive Control.
pub const fn srrctl(q: usize) -> usize {
    0x0C00C + 0x40 * q
}
/// Receive Descriptor Head.
pub const fn rdh(q: usize) -> usize {
    0x0C010 + 0x40 * q
}
/// Receive Descriptor Tail.
pub const fn rdt(q: usize) -> usize {
    0x0C018 + 0x40 * q
}
/// Receive Descriptor Control.
pub const fn rxdctl(q: usize) -> usize {
    0x0C028 + 0x40 * q
}
/// RXDCTL / TXDCTL: queue enable.
pub const DCTL_ENABLE: u32 = 1 << 25;
/// SRRCTL: packet buffer size in 1 KiB units (bits 6:0).
pub const SRRCTL_BSIZEPKT_MASK: u32 = 0x7f;
/// SRRCTL: descriptor type advanced one-buffer (DESCTYPE = 001b, bits 27:25).
pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 1 << 25;
/// SRRCTL: drop packets when the queue has no descriptors.
pub const SRRCTL_DROP_EN: u32 = 1 << 31;

/// Transmit Descriptor Base Address Low, queue `q` < 16 (8.12.x).
pub const fn tdbal(q: usize) -> usize {
    0x0E000 + 0x40 * q
}
/// Transmit Descriptor Base Address High.
pub const fn tdbah(q: usize) -> usize {
    0x0E004 + 0x40 * q
}
/// Transmit Descriptor Length.
pub const fn tdlen(q: usize) -> usize {
    0x0E008 + 0x40 * q
}
/// Transmit Descriptor Head.
pub const fn tdh(q: usize) -> usize {
    0x0E010 + 0x40 * q
}
/// Transmit Descriptor Tail.
pub const fn tdt(q: usize) -> usize {
    0x0E018 + 0x40 * q
}
/// Transmit Descriptor Control.
pub const fn txdctl(q: usize) -> usize {
    0x0E028 + 0x40 * q
}

/// CRC Error Count (8.19.1).
pub const CRCERRS: usize = 0x04000;
/// Missed Packets Count (8.19.4).
pub const MPC: usize = 0x04010;
/// Receive Length Error Count.
pub const RLEC: usize = 0x04040;
/// Good Packets Received Count.
pub const GPRC: usize = 0x04074;
/// Good Packets Transmitted Count.
pub const GPTC: usize = 0x04080;
/// Good Octets Received Count Low.
pub const GORCL: usize = 0x04088;
/// Good Octets Received Count High.
pub const GORCH: usize = 0x0408C;
/// Good Octets Transmitted Count Low.
pub const GOTCL: usize = 0x04090;
/// Good Octets Transmitted Count High.
pub const GOTCH: usize = 0x04094;
/// Receive No Buffers Count.
pub const RNBC: usize = 0x040A0;

/// Size of BAR 0 (the register space, 128 KiB).
pub const BAR0_LEN: usize = 0x20000;
/// Queues per direction.
pub const MAX_QUEUES: u16 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    /// Values written down from the 82576 datasheet's register summary (table 8-2).
    #[test]
    fn offsets_match_the_datasheet() {
        assert_eq!(
            (CTRL, STATUS, EECD, CTRL_EXT, MDIC),
            (0x0, 0x8, 0x10, 0x18, 0x20)
        );
        assert_eq!((ICR, IMC, EIMC), (0xC0, 0xD8, 0x1528));
        assert_eq!(
            (RCTL, TCTL, RAL0, RAH0, MRQC),
            (0x100, 0x400, 0x5400, 0x5404, 0x5818)
        );
        assert_eq!((rssrk(0), reta(0), reta(31)), (0x5C80, 0x5C00, 0x5C7C));
        assert_eq!(
            (rdbal(0), rdbah(0), rdlen(0), srrctl(0)),
            (0xC000, 0xC004, 0xC008, 0xC00C)
        );
        assert_eq!(
            (rdh(0), rdt(0), rxdctl(0), rdt(1)),
            (0xC010, 0xC018, 0xC028, 0xC058)
        );
        assert_eq!((tdbal(0), tdbah(0), tdlen(0)), (0xE000, 0xE004, 0xE008));
        assert_eq!(
            (tdh(0), tdt(0), txdctl(0), tdt(15)),
            (0xE010, 0xE018, 0xE028, 0xE3D8)
        );
        assert_eq!(
            (CRCERRS, MPC, RLEC, GPRC, GPTC),
            (0x4000, 0x4010, 0x4040, 0x4074, 0x4080)
        );
        assert_eq!(
            (GORCL, GORCH, GOTCL, GOTCH, RNBC),
            (0x4088, 0x408C, 0x4090, 0x4094, 0x40A0)
        );
    }

    #[test]
    fn bits_match_the_datasheet() {
        assert_eq!((CTRL_SLU, CTRL_RST), (0x40, 0x0400_0000));
        assert_eq!((STATUS_LU, STATUS_GIO_MASTER_ENABLE), (0x2, 0x8_0000));
        assert_eq!(EECD_AUTO_RD, 0x200);
        assert_eq!(
            (MDIC_OP_WRITE, MDIC_OP_READ, MDIC_READY, MDIC_ERROR),
            (0x0400_0000, 0x0800_0000, 0x1000_0000, 0x4000_0000)
        );
        assert_eq!((PHY_CTRL_RESTART_AN, PHY_CTRL_AN_ENABLE), (0x200, 0x1000));
        assert_eq!(
            (RCTL_EN, RCTL_UPE, RCTL_MPE, RCTL_BAM, RCTL_SECRC),
            (0x2, 0x8, 0x10, 0x8000, 0x0400_0000)
        );
        assert_eq!((TCTL_EN, TCTL_PSP), (0x2, 0x8));
        assert_eq!(DCTL_ENABLE, 0x0200_0000);
        assert_eq!(
            (SRRCTL_DESCTYPE_ADV_ONEBUF, SRRCTL_DROP_EN),
            (0x0200_0000, 0x8000_0000)
        );
        assert_eq!((RCTL_LPE, RLPML, CTRL_VME), (0x20, 0x5004, 0x4000_0000));
    }
}
