//! Registers the 82576 and the 82599 share: same offset, same bits. Each chip's own map
//! (`pmd_igb::regs`, `pmd_ixgbe::regs`) re-exports these next to what is its alone.
//!
//! Sources: Intel 82576 GbE Controller Datasheet (rev. 2.x), table 8-2 and chapter 8;
//! Intel 82599 10 GbE Controller Datasheet (rev. 3.x), table 8-1 and section 8.2.3.

/// Size of BAR 0, the register space (128 KiB on both chips).
pub const BAR0_LEN: usize = 0x2_0000;

/// Device Control (82576 8.2.1, 82599 8.2.3.1.1).
pub const CTRL: usize = 0x0_0000;
/// CTRL bit 2: PCIe master disable (stop issuing DMA, before a reset).
pub const CTRL_MASTER_DISABLE: u32 = 1 << 2;
/// CTRL bit 26: device reset (self-clearing).
pub const CTRL_RST: u32 = 1 << 26;
/// Device Status (82576 8.2.2, 82599 8.2.3.1.2).
pub const STATUS: usize = 0x0_0008;
/// STATUS bit 19: PCIe master enable status (0 = master disabled, no DMA outstanding).
pub const STATUS_GIO_MASTER_ENABLE: u32 = 1 << 19;
/// Extended Device Control (82576 8.2.3, 82599 8.2.3.1.3).
pub const CTRL_EXT: usize = 0x0_0018;
/// CTRL_EXT bit 28: driver loaded (tells firmware a driver owns the device).
pub const CTRL_EXT_DRV_LOAD: u32 = 1 << 28;

/// MRQC bit 16: RSS hashes TCP over IPv4 (addresses and ports).
pub const MRQC_RSS_TCPIPV4: u32 = 1 << 16;
/// MRQC bit 17: RSS hashes IPv4 addresses.
pub const MRQC_RSS_IPV4: u32 = 1 << 17;
/// MRQC bit 20: RSS hashes IPv6 addresses.
pub const MRQC_RSS_IPV6: u32 = 1 << 20;
/// MRQC bit 21: RSS hashes TCP over IPv6.
pub const MRQC_RSS_TCPIPV6: u32 = 1 << 21;
/// MRQC bit 22: RSS hashes UDP over IPv4.
pub const MRQC_RSS_UDPIPV4: u32 = 1 << 22;

/// SRRCTL DESCTYPE (bits 27:25) = 001b: advanced descriptors, one buffer.
pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 1 << 25;

/// CRC Error Count (82576 8.19.1, 82599 8.2.3.23.1; clear on read, as all below).
pub const CRCERRS: usize = 0x0_4000;
/// Receive Length Error Count.
pub const RLEC: usize = 0x0_4040;
/// Good Packets Received Count.
pub const GPRC: usize = 0x0_4074;
/// Good Packets Transmitted Count.
pub const GPTC: usize = 0x0_4080;
/// Good Octets Received Count, low register (read first).
pub const GORCL: usize = 0x0_4088;
/// Good Octets Received Count, high register.
pub const GORCH: usize = 0x0_408C;
/// Good Octets Transmitted Count, low register (read first).
pub const GOTCL: usize = 0x0_4090;
/// Good Octets Transmitted Count, high register.
pub const GOTCH: usize = 0x0_4094;

/// Largest frame (bytes with CRC, without VLAN tags) at and below which jumbo frames stay
/// off: 1518, the IEEE 802.3 maximum.
pub const STD_MAX_FRAME: u32 = 1518;
/// Largest frame both chips take with jumbo frames on (9.5 KB; 82576 RLPML, 82599
/// MAXFRS.MFS).
pub const JUMBO_MAX_FRAME: u32 = 9728;

#[cfg(test)]
mod tests {
    use super::*;

    /// Values as both register summaries print them; a typo fails here.
    #[test]
    fn offsets_and_bits_match_both_datasheets() {
        assert_eq!((CTRL, STATUS, CTRL_EXT), (0x0, 0x8, 0x18));
        assert_eq!(
            (CRCERRS, RLEC, GPRC, GPTC),
            (0x4000, 0x4040, 0x4074, 0x4080)
        );
        assert_eq!(
            (GORCL, GORCH, GOTCL, GOTCH),
            (0x4088, 0x408C, 0x4090, 0x4094)
        );
        assert_eq!(
            (CTRL_MASTER_DISABLE, CTRL_RST, STATUS_GIO_MASTER_ENABLE),
            (0x4, 0x0400_0000, 0x8_0000)
        );
        assert_eq!(CTRL_EXT_DRV_LOAD, 0x1000_0000);
        assert_eq!(
            (MRQC_RSS_TCPIPV4, MRQC_RSS_IPV4, MRQC_RSS_IPV6),
            (0x1_0000, 0x2_0000, 0x10_0000)
        );
        assert_eq!((MRQC_RSS_TCPIPV6, MRQC_RSS_UDPIPV4), (0x20_0000, 0x40_0000));
        assert_eq!(SRRCTL_DESCTYPE_ADV_ONEBUF, 0x0200_0000);
    }
}
