//! The model's register map: every BAR 0 offset and bit it gives a meaning to, written
//! down from the Intel 82599 10 GbE Controller Datasheet (rev. 3.x), chapter 8 (table 8-1,
//! the register summary, and the register descriptions of 8.2.3).
//!
//! The driver keeps its own list (`pmd_ixgbe::regs`); the model does not read it, so a
//! wrong offset on either side shows up as a device that does not do what the driver
//! asked. `tests::offsets_and_bits_match_the_datasheet` guards the numbers here.

/// Bytes of BAR 0, the memory-mapped register space (128 KiB).
pub const BAR0_LEN: usize = 0x2_0000;

// ---- General control and status (8.2.3.1, 8.2.3.2) ----

/// Device Control Register.
pub const CTRL: usize = 0x0_0000;
/// CTRL bit 2, PCIe master disable: stop issuing DMA (read back in STATUS bit 19).
pub const CTRL_MASTER_DISABLE: u32 = 0x0000_0004;
/// CTRL bit 3, link reset (self-clearing).
pub const CTRL_LRST: u32 = 0x0000_0008;
/// CTRL bit 26, device reset (self-clearing once the reset completes).
pub const CTRL_RST: u32 = 0x0400_0000;
/// Device Status Register.
pub const STATUS: usize = 0x0_0008;
/// STATUS bit 19, PCIe master enable status: 0 once master disable is set and no DMA
/// is outstanding.
pub const STATUS_GIO_MASTER_ENABLE: u32 = 0x0008_0000;
/// EEPROM/Flash Control Register.
pub const EEC: usize = 0x1_0010;
/// EEC bit 9, auto-read done: the EEPROM was loaded after reset (read only).
pub const EEC_ARD: u32 = 0x0000_0200;

// ---- Interrupts (8.2.3.5) ----

/// Extended Interrupt Cause Read (clear on read; write 1 to clear).
pub const EICR: usize = 0x0_0800;
/// EICR bit 20, link status change.
pub const EICR_LSC: u32 = 0x0010_0000;
/// Extended Interrupt Mask Set/Read.
pub const EIMS: usize = 0x0_0880;
/// Extended Interrupt Mask Clear (write only).
pub const EIMC: usize = 0x0_0888;
/// Extended Interrupt Cause Set (write 1 to set the EICR bit; the cause then fires as a
/// real one would).
pub const EICS: usize = 0x0_0808;
/// Extended Interrupt Auto Clear: in MSI-X mode, EICR bits cleared when their message is
/// sent.
pub const EIAC: usize = 0x0_0810;
/// Extended Interrupt Auto Mask Enable: with GPIE.EIAME, EIMS bits cleared when their
/// message is sent.
pub const EIAM: usize = 0x0_0890;
/// General Purpose Interrupt Enable.
pub const GPIE: usize = 0x0_0898;
/// GPIE bit 4, Multiple_MSIX: MSI-X mode (the RTxQ bits of EICR are the vectors).
pub const GPIE_MSIX_MODE: u32 = 0x0000_0010;
/// GPIE bit 5, OCD (Other Clear Disable): an EICR read clears only the other-cause bits
/// (29:16), not the RTxQ bits.
pub const GPIE_OCD: u32 = 0x0000_0020;
/// GPIE bit 30, EIAME: auto-mask (EIAM) applies when an MSI-X message is sent.
pub const GPIE_EIAME: u32 = 0x4000_0000;
/// GPIE bit 31, PBA_support (stored; the pending bit array is not modelled).
pub const GPIE_PBA_SUPPORT: u32 = 0x8000_0000;
/// EICR bits 15:0, RTxQ: in MSI-X mode the causes of vectors 0..15 (vectors 16..63 have
/// EICR_EX/EIMS_EX at 0x00A90.., which the model does not implement).
pub const EICR_RTXQ: u32 = 0x0000_FFFF;
/// EICR bits 29:16: the other causes (flow director, rx miss, PCI exception, mailbox,
/// LSC, LinkSec, manageability, SDP, ECC), delivered on IVAR_MISC's other-causes vector.
pub const EICR_OTHER: u32 = 0x3FFF_0000;
/// Extended Interrupt Throttle of vector `n` < [`EITR_LOW`]: stored only, the model does
/// not throttle (every cause fires at once). EITR 24..127 live at 0x12300, not modelled.
pub const fn eitr(n: usize) -> usize {
    0x0_0820 + 4 * n
}
/// EITR registers in the low block at 0x00820.
pub const EITR_LOW: usize = 24;
/// Interrupt Vector Allocation `n` < [`IVAR_REGS`]: four 8-bit entries, bits 7:0 rx
/// queue 2n, 15:8 tx queue 2n, 23:16 rx queue 2n+1, 31:24 tx queue 2n+1.
pub const fn ivar(n: usize) -> usize {
    0x0_0900 + 4 * n
}
/// IVAR registers (128 queues of each direction, two per register).
pub const IVAR_REGS: usize = 64;
/// An IVAR entry's bit 7: the entry is valid.
pub const IVAR_ALLOC_VAL: u32 = 0x80;
/// An IVAR entry's bits 5:0: the MSI-X vector.
pub const IVAR_VECTOR_MASK: u32 = 0x3F;
/// Miscellaneous Interrupt Vector Allocation: bits 7:0 the TCP timer entry, bits 15:8 the
/// other-causes entry (vector in 14:8, valid bit 15).
pub const IVAR_MISC: usize = 0x0_0A00;
/// Shift of IVAR_MISC's other-causes entry.
pub const IVAR_MISC_OTHER_SHIFT: u32 = 8;
/// An IVAR_MISC entry's bits 6:0: the MSI-X vector.
pub const IVAR_MISC_VECTOR_MASK: u32 = 0x7F;

// ---- Receive DMA and filters (8.2.3.7, 8.2.3.8) ----

/// Receive DMA Control Register.
pub const RDRXCTL: usize = 0x0_2F00;
/// RDRXCTL bit 3, DMA initialisation done after reset (read only).
pub const RDRXCTL_DMAIDONE: u32 = 0x0000_0008;
/// Receive Control Register.
pub const RXCTRL: usize = 0x0_3000;
/// RXCTRL bit 0, receive enable.
pub const RXCTRL_RXEN: u32 = 0x0000_0001;
/// Filter Control Register.
pub const FCTRL: usize = 0x0_5080;
/// FCTRL bit 8, multicast promiscuous.
pub const FCTRL_MPE: u32 = 0x0000_0100;
/// FCTRL bit 9, unicast promiscuous.
pub const FCTRL_UPE: u32 = 0x0000_0200;
/// FCTRL bit 10, accept broadcast.
pub const FCTRL_BAM: u32 = 0x0000_0400;

/// Receive Address Low of entry `n` < [`RAR_ENTRIES`] (address bytes 0-3).
pub const fn ral(n: usize) -> usize {
    0x0_A200 + 8 * n
}
/// Receive Address High of entry `n` (address bytes 4-5 in bits 15:0).
pub const fn rah(n: usize) -> usize {
    0x0_A204 + 8 * n
}
/// RAH bit 31, address valid.
pub const RAH_AV: u32 = 0x8000_0000;
/// Entries in the receive address (exact unicast filter) table.
pub const RAR_ENTRIES: usize = 128;

/// Multiple Receive Queues Command Register.
pub const MRQC: usize = 0x0_EC80;
/// MRQC bits 3:0, MRQE: the multiple-queue mode.
pub const MRQC_MRQE_MASK: u32 = 0x0000_000F;
/// MRQE value 0001b: RSS only.
pub const MRQC_MRQE_RSS: u32 = 0x0000_0001;
/// MRQC bit 16: hash TCP over IPv4 (addresses and ports).
pub const MRQC_RSS_TCPIPV4: u32 = 0x0001_0000;
/// MRQC bit 17: hash IPv4 addresses.
pub const MRQC_RSS_IPV4: u32 = 0x0002_0000;
/// MRQC bit 20: hash IPv6 addresses.
pub const MRQC_RSS_IPV6: u32 = 0x0010_0000;
/// MRQC bit 21: hash TCP over IPv6.
pub const MRQC_RSS_TCPIPV6: u32 = 0x0020_0000;
/// MRQC bit 22: hash UDP over IPv4.
pub const MRQC_RSS_UDPIPV4: u32 = 0x0040_0000;
/// MRQC bit 23: hash UDP over IPv6.
pub const MRQC_RSS_UDPIPV6: u32 = 0x0080_0000;
/// RSS Random Key register `i` < 10: key bytes 4i (bits 7:0) to 4i+3 (bits 31:24).
pub const fn rssrk(i: usize) -> usize {
    0x0_EB80 + 4 * i
}
/// Redirection Table register `i` < 32: table entries 4i (bits 7:0) to 4i+3.
pub const fn reta(i: usize) -> usize {
    0x0_EB00 + 4 * i
}

// ---- Per-queue receive registers (8.2.3.8): queue q < 64 at 0x01000 + 0x40 * q ----

/// Start of the receive queue blocks of queues 0..63.
pub const RX_QUEUE_BASE: usize = 0x0_1000;
/// Start of the transmit queue blocks (8.2.3.9).
pub const TX_QUEUE_BASE: usize = 0x0_6000;
/// Bytes between the register blocks of two consecutive queues.
pub const QUEUE_STRIDE: usize = 0x40;

/// Receive Descriptor Base Address Low of queue `q`.
pub const fn rdbal(q: usize) -> usize {
    RX_QUEUE_BASE + QUEUE_STRIDE * q
}
/// Receive Descriptor Base Address High.
pub const fn rdbah(q: usize) -> usize {
    rdbal(q) + 0x04
}
/// Receive Descriptor Length (bytes).
pub const fn rdlen(q: usize) -> usize {
    rdbal(q) + 0x08
}
/// Receive Descriptor Head.
pub const fn rdh(q: usize) -> usize {
    rdbal(q) + 0x10
}
/// Split Receive Control.
pub const fn srrctl(q: usize) -> usize {
    rdbal(q) + 0x14
}
/// Receive Descriptor Tail.
pub const fn rdt(q: usize) -> usize {
    rdbal(q) + 0x18
}
/// Receive Descriptor Control.
pub const fn rxdctl(q: usize) -> usize {
    rdbal(q) + 0x28
}
/// RXDCTL / TXDCTL bit 25: queue enable (reads back as written once done).
pub const DCTL_ENABLE: u32 = 0x0200_0000;
/// RXDCTL bit 30, VME: strip VLAN tags into the write-back descriptor.
pub const RXDCTL_VME: u32 = 0x4000_0000;
/// SRRCTL bits 4:0, BSIZEPACKET: receive buffer size in 1 KiB units.
pub const SRRCTL_BSIZEPKT_MASK: u32 = 0x0000_001F;
/// SRRCTL bits 27:25, DESCTYPE.
pub const SRRCTL_DESCTYPE_MASK: u32 = 0x0E00_0000;
/// DESCTYPE 001b: advanced descriptors, one buffer.
pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 0x0200_0000;

// ---- Per-queue transmit registers (8.2.3.9): queue q < 128 ----

/// Transmit Descriptor Base Address Low of queue `q`.
pub const fn tdbal(q: usize) -> usize {
    TX_QUEUE_BASE + QUEUE_STRIDE * q
}
/// Transmit Descriptor Base Address High.
pub const fn tdbah(q: usize) -> usize {
    tdbal(q) + 0x04
}
/// Transmit Descriptor Length (bytes).
pub const fn tdlen(q: usize) -> usize {
    tdbal(q) + 0x08
}
/// Transmit Descriptor Head.
pub const fn tdh(q: usize) -> usize {
    tdbal(q) + 0x10
}
/// Transmit Descriptor Tail.
pub const fn tdt(q: usize) -> usize {
    tdbal(q) + 0x18
}
/// Transmit Descriptor Control.
pub const fn txdctl(q: usize) -> usize {
    tdbal(q) + 0x28
}
/// DMA Tx Control Register.
pub const DMATXCTL: usize = 0x0_4A80;
/// DMATXCTL bit 0, transmit enable.
pub const DMATXCTL_TE: u32 = 0x0000_0001;

/// Ring bases are 128-byte aligned: bits 6:0 of RDBAL/TDBAL are ignored.
pub const RING_BASE_IGNORED: u64 = 0x7F;
/// RDLEN/TDLEN bits 19:7: the ring length in bytes, a multiple of 128.
pub const RING_LEN_MASK: u32 = 0x000F_FF80;
/// RDH/RDT/TDH/TDT bits 15:0: a descriptor index.
pub const RING_INDEX_MASK: u32 = 0x0000_FFFF;

// ---- MAC (8.2.3.22) ----

/// MAC Core Control 0.
pub const HLREG0: usize = 0x0_4240;
/// HLREG0 bit 2, jumbo frames: accept frames up to MAXFRS.MFS.
pub const HLREG0_JUMBOEN: u32 = 0x0000_0004;
/// HLREG0 bit 10, pad transmitted frames shorter than 64 bytes.
pub const HLREG0_TXPADEN: u32 = 0x0000_0400;
/// Max Frame Size: MFS in bits 31:16, bytes with CRC.
pub const MAXFRS: usize = 0x0_4268;
/// Shift of MAXFRS.MFS.
pub const MAXFRS_MFS_SHIFT: u32 = 16;
/// Auto-Negotiation Control Register.
pub const AUTOC: usize = 0x0_42A0;
/// AUTOC bit 12, restart auto-negotiation (self-clearing).
pub const AUTOC_RESTART_AN: u32 = 0x0000_1000;
/// Link Status Register (read only).
pub const LINKS: usize = 0x0_42A4;
/// LINKS bit 30, link up.
pub const LINKS_UP: u32 = 0x4000_0000;
/// Shift of the LINKS speed field (bits 29:28).
pub const LINKS_SPEED_SHIFT: u32 = 28;
/// LINKS speed 11b: 10 Gb/s.
pub const LINKS_SPEED_10G: u32 = 0x3 << LINKS_SPEED_SHIFT;

// ---- Statistics (8.2.3.23; clear on read) ----

/// CRC Error Count.
pub const CRCERRS: usize = 0x0_4000;
/// Receive Length Error Count.
pub const RLEC: usize = 0x0_4040;
/// Good Packets Received Count.
pub const GPRC: usize = 0x0_4074;
/// Good Packets Transmitted Count.
pub const GPTC: usize = 0x0_4080;
/// Good Octets Received Count, low 32 bits (read first).
pub const GORCL: usize = 0x0_4088;
/// Good Octets Received Count, high 4 bits.
pub const GORCH: usize = 0x0_408C;
/// Good Octets Transmitted Count, low 32 bits (read first).
pub const GOTCL: usize = 0x0_4090;
/// Good Octets Transmitted Count, high 4 bits.
pub const GOTCH: usize = 0x0_4094;
/// Receive Undersize Count.
pub const RUC: usize = 0x0_40A4;
/// Receive Oversize Count.
pub const ROC: usize = 0x0_40AC;
/// Missed Packets Count of packet buffer `n` < 8.
pub const fn mpc(n: usize) -> usize {
    0x0_3FA0 + 4 * n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offsets and bits as table 8-1 and the bit tables of 8.2.3 print them, typed in
    /// again as literals: a slip in a definition above fails here.
    #[test]
    fn offsets_and_bits_match_the_datasheet() {
        assert_eq!((CTRL, STATUS, EEC), (0x0, 0x8, 0x10010));
        assert_eq!((EICR, EIMS, EIMC), (0x800, 0x880, 0x888));
        assert_eq!((EICS, EIAC, EIAM, GPIE), (0x808, 0x810, 0x890, 0x898));
        assert_eq!((eitr(0), eitr(23)), (0x820, 0x87C));
        assert_eq!((ivar(0), ivar(63), IVAR_MISC), (0x900, 0x9FC, 0xA00));
        assert_eq!((RDRXCTL, RXCTRL, FCTRL), (0x2F00, 0x3000, 0x5080));
        assert_eq!(
            (HLREG0, MAXFRS, AUTOC, LINKS),
            (0x4240, 0x4268, 0x42A0, 0x42A4)
        );
        assert_eq!(
            (ral(0), rah(0), ral(1), rah(127)),
            (0xA200, 0xA204, 0xA208, 0xA5FC)
        );
        assert_eq!((MRQC, rssrk(0), rssrk(9)), (0xEC80, 0xEB80, 0xEBA4));
        assert_eq!((reta(0), reta(31)), (0xEB00, 0xEB7C));
        assert_eq!(
            (
                rdbal(0),
                rdbah(0),
                rdlen(0),
                rdh(0),
                srrctl(0),
                rdt(0),
                rxdctl(0)
            ),
            (0x1000, 0x1004, 0x1008, 0x1010, 0x1014, 0x1018, 0x1028)
        );
        assert_eq!((rdbal(1), rdt(63), rxdctl(63)), (0x1040, 0x1FD8, 0x1FE8));
        assert_eq!(
            (tdbal(0), tdbah(0), tdlen(0), tdh(0), tdt(0), txdctl(0)),
            (0x6000, 0x6004, 0x6008, 0x6010, 0x6018, 0x6028)
        );
        assert_eq!((tdt(1), txdctl(127)), (0x6058, 0x7FE8));
        assert_eq!(DMATXCTL, 0x4A80);
        assert_eq!(
            (CRCERRS, RLEC, GPRC, GPTC, GORCL, GORCH, GOTCL, GOTCH),
            (0x4000, 0x4040, 0x4074, 0x4080, 0x4088, 0x408C, 0x4090, 0x4094)
        );
        assert_eq!((RUC, ROC, mpc(0), mpc(7)), (0x40A4, 0x40AC, 0x3FA0, 0x3FBC));

        assert_eq!(
            (CTRL_MASTER_DISABLE, CTRL_LRST, CTRL_RST),
            (1 << 2, 1 << 3, 1 << 26)
        );
        assert_eq!((STATUS_GIO_MASTER_ENABLE, EEC_ARD), (1 << 19, 1 << 9));
        assert_eq!(EICR_LSC, 1 << 20);
        assert_eq!(
            (GPIE_MSIX_MODE, GPIE_OCD, GPIE_EIAME, GPIE_PBA_SUPPORT),
            (1 << 4, 1 << 5, 1 << 30, 1 << 31)
        );
        assert_eq!((EICR_RTXQ, EICR_OTHER), (0xFFFF, ((1 << 14) - 1) << 16));
        assert_eq!((IVAR_ALLOC_VAL, IVAR_VECTOR_MASK), (1 << 7, 0x3F));
        assert_eq!((IVAR_MISC_OTHER_SHIFT, IVAR_MISC_VECTOR_MASK), (8, 0x7F));
        assert_eq!((RDRXCTL_DMAIDONE, RXCTRL_RXEN), (1 << 3, 1));
        assert_eq!((FCTRL_MPE, FCTRL_UPE, FCTRL_BAM), (1 << 8, 1 << 9, 1 << 10));
        assert_eq!(RAH_AV, 1 << 31);
        assert_eq!(
            (MRQC_RSS_TCPIPV4, MRQC_RSS_IPV4, MRQC_RSS_IPV6),
            (1 << 16, 1 << 17, 1 << 20)
        );
        assert_eq!(
            (MRQC_RSS_TCPIPV6, MRQC_RSS_UDPIPV4, MRQC_RSS_UDPIPV6),
            (1 << 21, 1 << 22, 1 << 23)
        );
        assert_eq!((DCTL_ENABLE, RXDCTL_VME), (1 << 25, 1 << 30));
        assert_eq!(
            (
                SRRCTL_BSIZEPKT_MASK,
                SRRCTL_DESCTYPE_MASK,
                SRRCTL_DESCTYPE_ADV_ONEBUF
            ),
            (0x1F, 7 << 25, 1 << 25)
        );
        assert_eq!((HLREG0_JUMBOEN, HLREG0_TXPADEN), (1 << 2, 1 << 10));
        assert_eq!(
            (AUTOC_RESTART_AN, LINKS_UP, LINKS_SPEED_10G),
            (1 << 12, 1 << 30, 3 << 28)
        );
        assert_eq!(RING_LEN_MASK, ((1 << 13) - 1) << 7, "bits 19:7");
    }
}
