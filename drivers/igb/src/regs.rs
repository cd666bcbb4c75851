//! 82576 register offsets and bits used by the driver: the ones it shares with the 82599
//! ([`pmd_intel::regs`], re-exported here) and its own.
//!
//! Source: Intel 82576 GbE Controller Datasheet (rev. 2.x), section 8 (register
//! descriptions; table 8-2 is the register summary).

pub use pmd_intel::regs::*;
use pmd_intel::QueueLayout;

/// CTRL: set link up.
pub const CTRL_SLU: u32 = 1 << 6;
/// STATUS: full duplex.
pub const STATUS_FD: u32 = 1 << 0;
/// STATUS: link up.
pub const STATUS_LU: u32 = 1 << 1;
/// STATUS: speed field shift (bits 7:6: 00 = 10, 01 = 100, 1x = 1000 Mb/s).
pub const STATUS_SPEED_SHIFT: u32 = 6;
/// EEPROM/Flash Control (8.4.1).
pub const EECD: usize = 0x00010;
/// EECD: EEPROM auto-read done.
pub const EECD_AUTO_RD: u32 = 1 << 9;

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
/// ICR and IMS: link status change (8.8.1).
pub const ICR_LSC: u32 = 1 << 2;
/// ICR and IMS: receive descriptor written back (8.8.1).
pub const ICR_RXDW: u32 = 1 << 7;
/// Interrupt Mask Set/Read (8.8.3).
pub const IMS: usize = 0x000D0;
/// Interrupt Mask Clear (8.8.4).
pub const IMC: usize = 0x000D8;
/// Extended Interrupt Mask Clear (8.8.10).
pub const EIMC: usize = 0x01528;
/// Extended Interrupt Mask Set/Read (8.8.9).
pub const EIMS: usize = 0x01524;
/// Extended Interrupt Auto Clear (8.8.11): a vector's EICR bit clears when it fires.
pub const EIAC: usize = 0x0152C;
/// Extended Interrupt Auto Mask (8.8.12): a vector's EIMS bit clears when it fires (with
/// GPIE.EIAME).
pub const EIAM: usize = 0x01530;
/// Extended Interrupt Cause Read (8.8.7).
pub const EICR: usize = 0x01580;
/// General Purpose Interrupt Enable (8.8.15).
pub const GPIE: usize = 0x01514;
/// GPIE: non-selective interrupt clear on read (ICR reads clear every cause).
pub const GPIE_NSICR: u32 = 1 << 0;
/// GPIE: MSI-X mode (one vector per cause group, as IVAR maps them).
pub const GPIE_MSIX_MODE: u32 = 1 << 4;
/// GPIE: auto-mask enable (EIAM takes effect).
pub const GPIE_EIAME: u32 = 1 << 30;
/// GPIE: PBA support.
pub const GPIE_PBA: u32 = 1 << 31;
/// Interrupt Vector Allocation n (8.8.16, n = 0..=7): rx queue n (bits 7:0), tx n (15:8),
/// rx n+8 (23:16), tx n+8 (31:24); vector in the low bits of an entry, bit 7 valid.
pub const fn ivar(n: usize) -> usize {
    0x01700 + 4 * n
}
/// Miscellaneous Interrupt Vector Allocation (8.8.17): other causes (link) in bits 15:8.
pub const IVAR_MISC: usize = 0x01740;

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

/// Receive Address Low, entry 0 (8.10.13; Receive Address High follows at +4).
pub const RAL0: usize = 0x05400;
/// Multiple Receive Queues Command (8.10.9).
pub const MRQC: usize = 0x05818;
/// MRQC: multiple receive queues with RSS (field bits 2:0 = 010b, 8.10.9).
pub const MRQC_RSS_EN: u32 = 0x2;
/// RSS Random Key register 0 of 10 (8.10.12).
pub const RSSRK0: usize = 0x05C80;
/// Redirection Table register 0 of 32, four 8-bit entries each (8.10.11).
pub const RETA0: usize = 0x05C00;

/// The queue register blocks: rx queue `q` < 16 at 0x0C000 + 0x40 * q (RDBAL to
/// RXDCTL, SRRCTL at +0x0C; 8.10.x), tx queue `q` < 16 at 0x0E000 + 0x40 * q (TDBAL to
/// TXDCTL; 8.12.x).
pub const QUEUES: QueueLayout = QueueLayout::new(0x0C000, 0x0E000, 0x0C);
/// SRRCTL: drop packets when the queue has no descriptors.
pub const SRRCTL_DROP_EN: u32 = 1 << 31;

/// Missed Packets Count (8.19.4).
pub const MPC: usize = 0x04010;
/// Receive No Buffers Count.
pub const RNBC: usize = 0x040A0;

/// Queues per direction.
pub const MAX_QUEUES: u16 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    /// Values written down from the 82576 datasheet's register summary (table 8-2).
    #[test]
    fn offsets_match_the_datasheet() {
        assert_eq!(
            (EECD, MDIC, ICR, IMC, EIMC),
            (0x10, 0x20, 0xC0, 0xD8, 0x1528)
        );
        assert_eq!(
            (RCTL, TCTL, RAL0, MRQC, RLPML),
            (0x100, 0x400, 0x5400, 0x5818, 0x5004)
        );
        assert_eq!((RSSRK0, RETA0), (0x5C80, 0x5C00));
        let q = QUEUES;
        assert_eq!(
            (q.rdbal(0), q.rdbah(0), q.rdlen(0), q.srrctl(0)),
            (0xC000, 0xC004, 0xC008, 0xC00C)
        );
        assert_eq!(
            (q.rdh(0), q.rdt(0), q.rxdctl(0), q.rdt(1)),
            (0xC010, 0xC018, 0xC028, 0xC058)
        );
        assert_eq!(
            (q.tdbal(0), q.tdbah(0), q.tdlen(0)),
            (0xE000, 0xE004, 0xE008)
        );
        assert_eq!(
            (q.tdh(0), q.tdt(0), q.txdctl(0), q.tdt(15)),
            (0xE010, 0xE018, 0xE028, 0xE3D8)
        );
        assert_eq!((MPC, RNBC), (0x4010, 0x40A0));
    }

    #[test]
    fn bits_match_the_datasheet() {
        assert_eq!((CTRL_SLU, CTRL_VME), (0x40, 0x4000_0000));
        assert_eq!((STATUS_FD, STATUS_LU), (0x1, 0x2));
        assert_eq!(EECD_AUTO_RD, 0x200);
        assert_eq!(
            (MDIC_OP_WRITE, MDIC_OP_READ, MDIC_READY, MDIC_ERROR),
            (0x0400_0000, 0x0800_0000, 0x1000_0000, 0x4000_0000)
        );
        assert_eq!((PHY_CTRL_RESTART_AN, PHY_CTRL_AN_ENABLE), (0x200, 0x1000));
        assert_eq!(
            (RCTL_EN, RCTL_UPE, RCTL_MPE, RCTL_LPE, RCTL_BAM, RCTL_SECRC),
            (0x2, 0x8, 0x10, 0x20, 0x8000, 0x0400_0000)
        );
        assert_eq!((TCTL_EN, TCTL_PSP), (0x2, 0x8));
        assert_eq!((MRQC_RSS_EN, SRRCTL_DROP_EN), (0x2, 0x8000_0000));
    }
}
