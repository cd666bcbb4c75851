//! 82599 register offsets and bits used by the driver.
//!
//! Source: Intel 82599 10 GbE Controller Datasheet (rev. 3.x), section 8.2.3 (register
//! descriptions) and table 8-1 (register summary). X540 and X550 keep these offsets for
//! everything used here (X540 datasheet section 8.2.4, X550 section 8.2.2).

/// Device Control (8.2.3.1.1).
pub const CTRL: usize = 0x00000;
/// CTRL: master disable (stop issuing DMA before reset).
pub const CTRL_MASTER_DISABLE: u32 = 1 << 2;
/// CTRL: link reset.
pub const CTRL_LRST: u32 = 1 << 3;
/// CTRL: device reset (self-clearing).
pub const CTRL_RST: u32 = 1 << 26;
/// Device Status (8.2.3.1.2).
pub const STATUS: usize = 0x00008;
/// STATUS: PCIe master enable status (0 = no DMA outstanding).
pub const STATUS_GIO_MASTER_ENABLE: u32 = 1 << 19;
/// Extended Device Control (8.2.3.1.3).
pub const CTRL_EXT: usize = 0x00018;
/// CTRL_EXT: no-snoop disable.
pub const CTRL_EXT_NS_DIS: u32 = 1 << 16;
/// CTRL_EXT: driver loaded (tells firmware a driver owns the device).
pub const CTRL_EXT_DRV_LOAD: u32 = 1 << 28;
/// EEPROM/Flash Control (8.2.3.2.1).
pub const EEC: usize = 0x10010;
/// EEC: EEPROM auto-read done.
pub const EEC_ARD: u32 = 1 << 9;

/// Extended Interrupt Cause Read (8.2.3.5.1).
pub const EICR: usize = 0x00800;
/// Extended Interrupt Mask Clear (8.2.3.5.4).
pub const EIMC: usize = 0x00888;
/// Extended Interrupt Mask Set/Read (8.2.3.5.3).
pub const EIMS: usize = 0x00880;
/// All interrupt causes (EIMC value masking everything).
pub const EIMC_ALL: u32 = 0x7fff_ffff;

/// Receive DMA Control (8.2.3.8.8).
pub const RDRXCTL: usize = 0x02F00;
/// RDRXCTL: DMA init done.
pub const RDRXCTL_DMAIDONE: u32 = 1 << 3;
/// RDRXCTL: strip the Ethernet CRC.
pub const RDRXCTL_CRCSTRIP: u32 = 1 << 1;
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
/// HLREG0: pad short frames on transmit.
pub const HLREG0_TXPADEN: u32 = 1 << 10;
/// HLREG0: accept jumbo frames up to MAXFRS.MFS (8.2.3.22.8).
pub const HLREG0_JUMBOEN: u32 = 1 << 2;
/// Max Frame Size (8.2.3.22.13): MFS in bits 31:16, bytes with CRC, without VLAN tags.
pub const MAXFRS: usize = 0x04268;
/// MAXFRS: shift of MFS.
pub const MAXFRS_MFS_SHIFT: u32 = 16;
/// Largest MFS the 82599 takes with jumbo frames (9.5 KB, 1.4.5 / 8.2.3.22.13).
pub const MAX_FRAME: u32 = 9728;
/// Frame size at and below which jumbo frames stay disabled.
pub const STD_MAX_FRAME: u32 = 1518;
/// Receive Checksum Control (8.2.3.7.5).
pub const RXCSUM: usize = 0x05000;
/// RXCSUM: IP payload checksum enable.
pub const RXCSUM_IPPCSE: u32 = 1 << 12;
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

/// Receive Address Low, entry 0 (8.2.3.7.9).
pub const RAL0: usize = 0x0A200;
/// Receive Address High, entry 0 (8.2.3.7.10).
pub const RAH0: usize = 0x0A204;
/// RAH: address valid.
pub const RAH_AV: u32 = 1 << 31;

/// Multiple Receive Queues Command (8.2.3.7.12).
pub const MRQC: usize = 0x0EC80;
/// MRQC: RSS only (MRQE = 0001b).
pub const MRQC_RSS_EN: u32 = 0x1;
/// MRQC: hash on IPv4 with TCP ports.
pub const MRQC_RSS_TCPIPV4: u32 = 1 << 16;
/// MRQC: hash on IPv4 addresses.
pub const MRQC_RSS_IPV4: u32 = 1 << 17;
/// MRQC: hash on IPv6 addresses.
pub const MRQC_RSS_IPV6: u32 = 1 << 20;
/// MRQC: hash on IPv6 with TCP ports.
pub const MRQC_RSS_TCPIPV6: u32 = 1 << 21;
/// MRQC: hash on IPv4 with UDP ports.
pub const MRQC_RSS_UDPIPV4: u32 = 1 << 22;
/// RSS Random Key register `i` (0..10) (8.2.3.7.15).
pub const fn rssrk(i: usize) -> usize {
    0x0EB80 + 4 * i
}
/// Redirection Table register `i` (0..32), four 8-bit entries each (8.2.3.7.14).
pub const fn reta(i: usize) -> usize {
    0x0EB00 + 4 * i
}

/// Receive Descriptor Base Address Low, queue `q` < 64 (8.2.3.8.1).
pub const fn rdbal(q: usize) -> usize {
    0x01000 + 0x40 * q
}
/// Receive Descriptor Base Address High (8.2.3.8.2).
pub const fn rdbah(q: usize) -> usize {
    0x01004 + 0x40 * q
}
/// Receive Descriptor Length (8.2.3.8.3).
pub const fn rdlen(q: usize) -> usize {
    0x01008 + 0x40 * q
}
/// Receive Descriptor Head (8.2.3.8.4).
pub const fn rdh(q: usize) -> usize {
    0x01010 + 0x40 * q
}
/// Split Receive Control (8.2.3.8.7).
pub const fn srrctl(q: usize) -> usize {
    0x01014 + 0x40 * q
}
/// Receive Descriptor Tail (8.2.3.8.5).
pub const fn rdt(q: usize) -> usize {
    0x01018 + 0x40 * q
}
/// Receive Descriptor Control (8.2.3.8.6).
pub const fn rxdctl(q: usize) -> usize {
    0x01028 + 0x40 * q
}
/// RXDCTL / TXDCTL: queue enable.
pub const DCTL_ENABLE: u32 = 1 << 25;
/// RXDCTL: strip VLAN tags of this queue's frames into the descriptor (VME, 8.2.3.8.6).
pub const RXDCTL_VME: u32 = 1 << 30;
/// SRRCTL: packet buffer size field, in 1 KiB units (bits 4:0).
pub const SRRCTL_BSIZEPKT_SHIFT: u32 = 10;
/// SRRCTL: descriptor type advanced one-buffer (DESCTYPE = 001b, bits 27:25).
pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 1 << 25;
/// SRRCTL: drop packets when no descriptor is available.
pub const SRRCTL_DROP_EN: u32 = 1 << 28;

/// Transmit Descriptor Base Address Low, queue `q` < 128 (8.2.3.9.5).
pub const fn tdbal(q: usize) -> usize {
    0x06000 + 0x40 * q
}
/// Transmit Descriptor Base Address High (8.2.3.9.6).
pub const fn tdbah(q: usize) -> usize {
    0x06004 + 0x40 * q
}
/// Transmit Descriptor Length (8.2.3.9.7).
pub const fn tdlen(q: usize) -> usize {
    0x06008 + 0x40 * q
}
/// Transmit Descriptor Head (8.2.3.9.8).
pub const fn tdh(q: usize) -> usize {
    0x06010 + 0x40 * q
}
/// Transmit Descriptor Tail (8.2.3.9.9).
pub const fn tdt(q: usize) -> usize {
    0x06018 + 0x40 * q
}
/// Transmit Descriptor Control (8.2.3.9.10).
pub const fn txdctl(q: usize) -> usize {
    0x06028 + 0x40 * q
}
/// DMA Tx Control (8.2.3.9.2).
pub const DMATXCTL: usize = 0x04A80;
/// DMATXCTL: transmit enable.
pub const DMATXCTL_TE: u32 = 1 << 0;
/// DCB Transmit Descriptor Plane Control and Status (8.2.3.10.1).
pub const RTTDCS: usize = 0x04900;
/// RTTDCS: DCB arbiters disable (set while configuring TX queues).
pub const RTTDCS_ARBDIS: u32 = 1 << 6;

/// CRC Error Count (8.2.3.23.1).
pub const CRCERRS: usize = 0x04000;
/// Missed Packets Count, packet buffer 0 (8.2.3.23.4).
pub const MPC0: usize = 0x03FA0;
/// Receive Length Error Count (8.2.3.23.10; also counts oversize).
pub const RLEC: usize = 0x04040;
/// Good Packets Received Count (8.2.3.23.18).
pub const GPRC: usize = 0x04074;
/// Good Packets Transmitted Count (8.2.3.23.22).
pub const GPTC: usize = 0x04080;
/// Good Octets Received Count Low / High (8.2.3.23.24, .25).
pub const GORCL: usize = 0x04088;
/// Good Octets Received Count High.
pub const GORCH: usize = 0x0408C;
/// Good Octets Transmitted Count Low (8.2.3.23.26).
pub const GOTCL: usize = 0x04090;
/// Good Octets Transmitted Count High.
pub const GOTCH: usize = 0x04094;
/// Receive No Buffers Count... (per queue: QPRDC; here the global missed counter above).
/// Receive Undersize Count (8.2.3.23.34).
pub const RUC: usize = 0x040A4;

/// Size of BAR 0 (the register space).
pub const BAR0_LEN: usize = 0x20000;

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
        assert_eq!((CTRL, STATUS, CTRL_EXT, EEC), (0x0, 0x8, 0x18, 0x10010));
        assert_eq!((EICR, EIMS, EIMC), (0x800, 0x880, 0x888));
        assert_eq!(
            (RDRXCTL, RXCTRL, FCTRL, HLREG0),
            (0x2F00, 0x3000, 0x5080, 0x4240)
        );
        assert_eq!(
            (AUTOC, LINKS, RXCSUM, MRQC),
            (0x42A0, 0x42A4, 0x5000, 0xEC80)
        );
        assert_eq!((RAL0, RAH0), (0xA200, 0xA204));
        assert_eq!(
            (rssrk(0), rssrk(9), reta(0), reta(31)),
            (0xEB80, 0xEBA4, 0xEB00, 0xEB7C)
        );
        assert_eq!(
            (rdbal(0), rdbah(0), rdlen(0), rdh(0)),
            (0x1000, 0x1004, 0x1008, 0x1010)
        );
        assert_eq!((srrctl(0), rdt(0), rxdctl(0)), (0x1014, 0x1018, 0x1028));
        assert_eq!((rdbal(1), rdt(63)), (0x1040, 0x1FD8));
        assert_eq!(
            (tdbal(0), tdbah(0), tdlen(0), tdh(0)),
            (0x6000, 0x6004, 0x6008, 0x6010)
        );
        assert_eq!((tdt(0), txdctl(0), tdt(1)), (0x6018, 0x6028, 0x6058));
        assert_eq!((DMATXCTL, RTTDCS), (0x4A80, 0x4900));
        assert_eq!(
            (CRCERRS, MPC0, RLEC, GPRC, GPTC),
            (0x4000, 0x3FA0, 0x4040, 0x4074, 0x4080)
        );
        assert_eq!(
            (GORCL, GORCH, GOTCL, GOTCH, RUC),
            (0x4088, 0x408C, 0x4090, 0x4094, 0x40A4)
        );
    }

    #[test]
    fn bits_match_the_datasheet() {
        assert_eq!(CTRL_RST, 0x0400_0000);
        assert_eq!(CTRL_MASTER_DISABLE, 0x4);
        assert_eq!(STATUS_GIO_MASTER_ENABLE, 0x8_0000);
        assert_eq!(EEC_ARD, 0x200);
        assert_eq!(RDRXCTL_DMAIDONE, 0x8);
        assert_eq!((FCTRL_MPE, FCTRL_UPE, FCTRL_BAM), (0x100, 0x200, 0x400));
        assert_eq!(LINKS_UP, 0x4000_0000);
        assert_eq!(DCTL_ENABLE, 0x0200_0000);
        assert_eq!(SRRCTL_DESCTYPE_ADV_ONEBUF, 0x0200_0000);
        assert_eq!(AUTOC_RESTART_AN, 0x1000);
        assert_eq!(RAH_AV, 0x8000_0000);
        assert_eq!(CTRL_EXT_DRV_LOAD, 0x1000_0000);
        assert_eq!(
            (HLREG0_JUMBOEN, MAXFRS, RXDCTL_VME),
            (0x4, 0x4268, 0x4000_0000)
        );
    }
}
