//! 82599 register offsets and bits used by the driver: the ones it shares with the 82576
//! ([`pmd_intel::regs`], re-exported here) and its own.
//!
//! Source: Intel 82599 10 GbE Controller Datasheet (rev. 3.x), section 8.2.3 (register
//! descriptions) and table 8-1 (register summary). X540 and X550 keep these offsets for
//! everything used here (X540 datasheet section 8.2.4, X550 section 8.2.2).

pub use pmd_intel::regs::*;
use pmd_intel::QueueLayout;

/// CTRL: link reset (set with CTRL.RST).
pub const CTRL_LRST: u32 = 1 << 3;
/// CTRL_EXT: no-snoop disable.
pub const CTRL_EXT_NS_DIS: u32 = 1 << 16;
/// EEPROM/Flash Control (8.2.3.2.1).
pub const EEC: usize = 0x10010;
/// EEC: EEPROM auto-read done.
pub const EEC_ARD: u32 = 1 << 9;

/// Extended Interrupt Cause Read (8.2.3.5.1).
pub const EICR: usize = 0x00800;
/// EICR and EIMS: link status change (8.2.3.5.1).
pub const EICR_LSC: u32 = 1 << 20;
/// Extended Interrupt Mask Clear (8.2.3.5.4).
pub const EIMC: usize = 0x00888;
/// All interrupt causes (EIMC value masking everything).
pub const EIMC_ALL: u32 = 0x7fff_ffff;
/// Extended Interrupt Mask Set/Read (8.2.3.5.3).
pub const EIMS: usize = 0x00880;
/// Extended Interrupt Auto Clear (8.2.3.5.7): a vector's EICR bit clears when it fires.
pub const EIAC: usize = 0x00810;
/// Extended Interrupt Auto Mask Enable (8.2.3.5.8): a vector's EIMS bit clears when it
/// fires (with GPIE.EIAME).
pub const EIAM: usize = 0x00890;
/// General Purpose Interrupt Enable (8.2.3.5.11).
pub const GPIE: usize = 0x00898;
/// GPIE: MSI-X mode (one vector per cause group, as IVAR maps them).
pub const GPIE_MSIX_MODE: u32 = 1 << 4;
/// GPIE: auto-mask enable (EIAM takes effect).
pub const GPIE_EIAME: u32 = 1 << 30;
/// GPIE: PBA support (the MSI-X pending bits are the PBA's).
pub const GPIE_PBA_SUPPORT: u32 = 1 << 31;
/// Interrupt Vector Allocation n (8.2.3.5.13): entries for rx queue 2n (bits 7:0), tx 2n
/// (15:8), rx 2n+1 (23:16), tx 2n+1 (31:24).
pub const fn ivar(n: usize) -> usize {
    0x00900 + 4 * n
}
/// Miscellaneous Interrupt Vector Allocation (8.2.3.5.14): other causes (LSC) in bits
/// 15:8.
pub const IVAR_MISC: usize = 0x00A00;

/// Receive DMA Control (8.2.3.8.8).
pub const RDRXCTL: usize = 0x02F00;
/// RDRXCTL: strip the Ethernet CRC.
pub const RDRXCTL_CRCSTRIP: u32 = 1 << 1;
/// RDRXCTL: DMA init done.
pub const RDRXCTL_DMAIDONE: u32 = 1 << 3;
/// Receive Control (8.2.3.8.10).
pub const RXCTRL: usize = 0x03000;
/// RXCTRL: receive enable.
pub const RXCTRL_RXEN: u32 = 1 << 0;
/// Filter Control (8.2.3.7.1).
pub const FCTRL: usize = 0x05080;
/// FCTRL: multicast promiscuous.
pub const FCTRL_MPE: u32 = 1 << 8;
/// FCTRL: unicast promiscuous.
pub const FCTRL_UPE: u32 = 1 << 9;
/// FCTRL: accept broadcast.
pub const FCTRL_BAM: u32 = 1 << 10;
/// MAC Core Control 0 (8.2.3.22.8).
pub const HLREG0: usize = 0x04240;
/// HLREG0: strip CRC.
pub const HLREG0_RXCRCSTRP: u32 = 1 << 1;
/// HLREG0: accept jumbo frames up to MAXFRS.MFS.
pub const HLREG0_JUMBOEN: u32 = 1 << 2;
/// HLREG0: pad short frames on transmit.
pub const HLREG0_TXPADEN: u32 = 1 << 10;
/// Max Frame Size (8.2.3.22.13): MFS in bits 31:16, bytes with CRC, without VLAN tags.
pub const MAXFRS: usize = 0x04268;
/// MAXFRS: shift of MFS.
pub const MAXFRS_MFS_SHIFT: u32 = 16;
/// Auto-Negotiation Control (8.2.3.22.19).
pub const AUTOC: usize = 0x042A0;
/// AUTOC: restart auto-negotiation.
pub const AUTOC_RESTART_AN: u32 = 1 << 12;
/// Link Status (8.2.3.22.20).
pub const LINKS: usize = 0x042A4;
/// LINKS: link up.
pub const LINKS_UP: u32 = 1 << 30;
/// LINKS: speed field shift (bits 29:28: 01 = 100 Mb/s, 10 = 1 Gb/s, 11 = 10 Gb/s).
pub const LINKS_SPEED_SHIFT: u32 = 28;

/// Receive Address Low, entry 0 (8.2.3.7.9; Receive Address High follows at +4).
pub const RAL0: usize = 0x0A200;

/// Multiple Receive Queues Command (8.2.3.7.12).
pub const MRQC: usize = 0x0EC80;
/// MRQC: RSS only (MRQE = 0001b).
pub const MRQC_RSS_EN: u32 = 0x1;
/// RSS Random Key register 0 of 10 (8.2.3.7.15).
pub const RSSRK0: usize = 0x0EB80;
/// Redirection Table register 0 of 32, four 8-bit entries each (8.2.3.7.14).
pub const RETA0: usize = 0x0EB00;

/// The queue register blocks: rx queue `q` < 64 at 0x01000 + 0x40 * q (RDBAL 8.2.3.8.1
/// to RXDCTL 8.2.3.8.6, SRRCTL at +0x14, 8.2.3.8.7), tx queue `q` < 128 at 0x06000 +
/// 0x40 * q (TDBAL 8.2.3.9.5 to TXDCTL 8.2.3.9.10).
pub const QUEUES: QueueLayout = QueueLayout::new(0x01000, 0x06000, 0x14);
/// RXDCTL: strip VLAN tags of this queue's frames into the descriptor (VME, 8.2.3.8.6).
pub const RXDCTL_VME: u32 = 1 << 30;
/// SRRCTL: drop packets when no descriptor is available.
pub const SRRCTL_DROP_EN: u32 = 1 << 28;

/// DMA Tx Control (8.2.3.9.2).
pub const DMATXCTL: usize = 0x04A80;
/// DMATXCTL: transmit enable.
pub const DMATXCTL_TE: u32 = 1 << 0;
/// DCB Transmit Descriptor Plane Control and Status (8.2.3.10.1).
pub const RTTDCS: usize = 0x04900;
/// RTTDCS: DCB arbiters disable (set while configuring TX queues).
pub const RTTDCS_ARBDIS: u32 = 1 << 6;

/// Missed Packets Count, packet buffer 0 (8.2.3.23.4).
pub const MPC0: usize = 0x03FA0;
/// Receive Undersize Count (8.2.3.23.34).
pub const RUC: usize = 0x040A4;

/// Most rx queues the driver uses (RSS spreads over at most 16).
pub const MAX_RX_QUEUES: u16 = 16;
/// Most tx queues the driver uses.
pub const MAX_TX_QUEUES: u16 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    /// Values written down from the 82599 datasheet's register summary (table 8-1) and
    /// the bit descriptions in 8.2.3; a typo in a constant fails here.
    #[test]
    fn offsets_match_the_datasheet() {
        assert_eq!((EEC, EICR, EIMC), (0x10010, 0x800, 0x888));
        assert_eq!(
            (RDRXCTL, RXCTRL, FCTRL, HLREG0),
            (0x2F00, 0x3000, 0x5080, 0x4240)
        );
        assert_eq!((AUTOC, LINKS, MRQC, RAL0), (0x42A0, 0x42A4, 0xEC80, 0xA200));
        assert_eq!((RSSRK0, RETA0), (0xEB80, 0xEB00));
        let q = QUEUES;
        assert_eq!(
            (q.rdbal(0), q.rdbah(0), q.rdlen(0), q.rdh(0)),
            (0x1000, 0x1004, 0x1008, 0x1010)
        );
        assert_eq!(
            (q.srrctl(0), q.rdt(0), q.rxdctl(0)),
            (0x1014, 0x1018, 0x1028)
        );
        assert_eq!((q.rdbal(1), q.rdt(63)), (0x1040, 0x1FD8));
        assert_eq!(
            (q.tdbal(0), q.tdbah(0), q.tdlen(0), q.tdh(0)),
            (0x6000, 0x6004, 0x6008, 0x6010)
        );
        assert_eq!((q.tdt(0), q.txdctl(0), q.tdt(1)), (0x6018, 0x6028, 0x6058));
        assert_eq!((DMATXCTL, RTTDCS, MAXFRS), (0x4A80, 0x4900, 0x4268));
        assert_eq!((MPC0, RUC), (0x3FA0, 0x40A4));
    }

    #[test]
    fn bits_match_the_datasheet() {
        assert_eq!((CTRL_LRST, CTRL_EXT_NS_DIS), (0x8, 0x1_0000));
        assert_eq!(
            (EEC_ARD, RDRXCTL_CRCSTRIP, RDRXCTL_DMAIDONE),
            (0x200, 0x2, 0x8)
        );
        assert_eq!((FCTRL_MPE, FCTRL_UPE, FCTRL_BAM), (0x100, 0x200, 0x400));
        assert_eq!(
            (HLREG0_RXCRCSTRP, HLREG0_JUMBOEN, HLREG0_TXPADEN),
            (0x2, 0x4, 0x400)
        );
        assert_eq!((LINKS_UP, AUTOC_RESTART_AN), (0x4000_0000, 0x1000));
        assert_eq!((RXDCTL_VME, SRRCTL_DROP_EN), (0x4000_0000, 0x1000_0000));
        assert_eq!((DMATXCTL_TE, RTTDCS_ARBDIS, MRQC_RSS_EN), (0x1, 0x40, 0x1));
    }
}
