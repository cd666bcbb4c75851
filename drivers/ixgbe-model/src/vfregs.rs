//! The register map of an 82599 virtual function's BAR 0 and the words of the PF/VF
//! mailbox, written down from the Intel 82599 10 GbE Controller Datasheet (rev. 3.x,
//! 8.3 "Virtual Function Registers" and 7.10.3.7 "VF to PF mailbox") and the message
//! protocol of Linux's ixgbe PF driver (`ixgbe_sriov.c`, `mbx.h`), which is what a VF
//! driver talks to on a real host.
//!
//! As with [`crate::regs`], the model keeps its own copy: it does not read the VF
//! driver's. `tests::offsets_and_bits_match_the_datasheet` guards the numbers.

/// Bytes of a VF's BAR 0 (16 KiB).
pub const VF_BAR0_LEN: usize = 0x4000;

/// VF Control Register.
pub const VFCTRL: usize = 0x0000;
/// VFCTRL bit 26: reset this VF (its queues stop; the PF learns of it).
pub const VFCTRL_RST: u32 = 0x0400_0000;
/// VF Status Register (reads 0 in the model).
pub const VFSTATUS: usize = 0x0008;
/// VF Link Status Register: a copy of the port's LINKS.
pub const VFLINKS: usize = 0x0010;
/// VFLINKS bit 30: link up.
pub const VFLINKS_UP: u32 = 0x4000_0000;
/// VFLINKS bits 29:28 = 11b: 10 Gb/s.
pub const VFLINKS_SPEED_10G: u32 = 0x3000_0000;

/// VF Extended Interrupt Cause (the model raises no VF interrupt: it reads 0).
pub const VTEICR: usize = 0x0100;
/// VF Extended Interrupt Mask Clear (write only).
pub const VTEIMC: usize = 0x010C;

/// Word 0 of the mailbox buffer; word `i` < [`MBX_WORDS`] at `VFMBMEM + 4 * i`.
pub const VFMBMEM: usize = 0x0200;
/// Words in the mailbox buffer.
pub const MBX_WORDS: usize = 16;
/// The VF's mailbox control register.
pub const VFMAILBOX: usize = 0x02FC;

/// VFMAILBOX bits, VF side (7.10.3.7).
pub mod mbx {
    /// VF writes it: a message is in the buffer (reads 0).
    pub const REQ: u32 = 0x01;
    /// VF writes it: the PF's message was read (reads 0).
    pub const ACK: u32 = 0x02;
    /// The VF holds the buffer.
    pub const VFU: u32 = 0x04;
    /// The PF holds the buffer.
    pub const PFU: u32 = 0x08;
    /// The PF wrote a message (clears when read).
    pub const PFSTS: u32 = 0x10;
    /// The PF took the VF's message (clears when read).
    pub const PFACK: u32 = 0x20;
    /// A PF reset is in progress (a level, cleared by the PF).
    pub const RSTI: u32 = 0x40;
    /// A PF or VF reset completed (clears when read).
    pub const RSTD: u32 = 0x80;
    /// The bits a read clears.
    pub const READ_CLEARS: u32 = PFSTS | PFACK | RSTD;
}

/// Message words of Linux's ixgbe PF (`mbx.h`): word 0 is type (bits 15:0), information
/// (bits 23:16) and, in answers, ACK/NACK and CTS.
pub mod msg {
    /// Type field of word 0.
    pub const TYPE_MASK: u32 = 0xFFFF;
    /// Shift of the information field (bits 23:16).
    pub const INFO_SHIFT: u32 = 16;
    /// Mask of the information field.
    pub const INFO_MASK: u32 = 0xFF << INFO_SHIFT;
    /// Answer: done (Linux's `IXGBE_VT_MSGTYPE_SUCCESS`).
    pub const ACK: u32 = 0x8000_0000;
    /// Answer: refused (`IXGBE_VT_MSGTYPE_FAILURE`).
    pub const NACK: u32 = 0x4000_0000;
    /// The PF takes requests from this VF (it answered the VF's reset since).
    pub const CTS: u32 = 0x2000_0000;

    /// Reset: the answer has the MAC address in words 1-2 and the multicast filter type
    /// in word 3.
    pub const RESET: u32 = 0x01;
    /// Set the VF's MAC address (words 1-2).
    pub const SET_MAC_ADDR: u32 = 0x02;
    /// Multicast hashes: count in the information field, u16 hashes from word 1.
    pub const SET_MULTICAST: u32 = 0x03;
    /// Add (information field non-zero) or remove VLAN word 1.
    pub const SET_VLAN: u32 = 0x04;
    /// Largest receive frame, bytes with CRC, in word 1.
    pub const SET_LPE: u32 = 0x05;
    /// Mailbox API version (word 1, see [`super::api`]).
    pub const API_NEGOTIATE: u32 = 0x08;
    /// Queue counts (API 1.1 and later).
    pub const GET_QUEUES: u32 = 0x09;
    /// Broadcast/multicast/promiscuous mode (API 1.2 and later), mode in word 1.
    pub const UPDATE_XCAST_MODE: u32 = 0x0C;
    /// PF to VF, unasked: a control notice (CTS tells whether the VF may go on).
    pub const PF_CONTROL_MSG: u32 = 0x0100;

    /// Most multicast hashes a SET_MULTICAST carries (`IXGBE_MAX_VF_MC_ENTRIES`).
    pub const MAX_MC_HASHES: usize = 30;
    /// Smallest frame size SET_LPE takes (`ETH_MIN_MTU`).
    pub const MIN_LPE: u32 = 68;
    /// Largest frame size SET_LPE takes (`IXGBE_MAX_JUMBO_FRAME_SIZE`).
    pub const MAX_LPE: u32 = 9728;
    /// The multicast filter type the RESET answer reports (word 3): 0, destination
    /// address bits 47:36.
    pub const MC_FILTER_TYPE: u32 = 0;
}

/// Mailbox API versions as API_NEGOTIATE carries them (an enumeration, not "1.x").
pub mod api {
    /// API 1.0 (the version after every VF reset).
    pub const V1_0: u32 = 0;
    /// API 1.1: GET_QUEUES.
    pub const V1_1: u32 = 2;
    /// API 1.2: UPDATE_XCAST_MODE up to all-multicast.
    pub const V1_2: u32 = 3;
    /// API 1.3: promiscuous mode may be asked for (the 82599 refuses it).
    pub const V1_3: u32 = 4;
}

/// UPDATE_XCAST_MODE modes.
pub mod xcast {
    /// Broadcast only.
    pub const NONE: u32 = 0;
    /// Broadcast and the registered multicast hashes (the mode after a reset).
    pub const MULTI: u32 = 1;
    /// Broadcast and all multicast.
    pub const ALLMULTI: u32 = 2;
    /// Everything (refused on the 82599).
    pub const PROMISC: u32 = 3;
}

/// Queue pairs a VF has.
pub const VF_QUEUES: usize = 2;
/// Start of the VF's receive queue blocks.
pub const VF_RX_BASE: usize = 0x1000;
/// Start of the VF's transmit queue blocks.
pub const VF_TX_BASE: usize = 0x2000;
/// Bytes between two VF queues' register blocks.
pub const VF_QUEUE_STRIDE: usize = 0x40;

/// Receive Descriptor Base Address Low of VF queue `q`.
pub const fn vfrdbal(q: usize) -> usize {
    VF_RX_BASE + VF_QUEUE_STRIDE * q
}
/// Receive Descriptor Base Address High.
pub const fn vfrdbah(q: usize) -> usize {
    vfrdbal(q) + 0x04
}
/// Receive Descriptor Length.
pub const fn vfrdlen(q: usize) -> usize {
    vfrdbal(q) + 0x08
}
/// Receive Descriptor Head.
pub const fn vfrdh(q: usize) -> usize {
    vfrdbal(q) + 0x10
}
/// Split Receive Control.
pub const fn vfsrrctl(q: usize) -> usize {
    vfrdbal(q) + 0x14
}
/// Receive Descriptor Tail.
pub const fn vfrdt(q: usize) -> usize {
    vfrdbal(q) + 0x18
}
/// Receive Descriptor Control.
pub const fn vfrxdctl(q: usize) -> usize {
    vfrdbal(q) + 0x28
}
/// Transmit Descriptor Base Address Low of VF queue `q`.
pub const fn vftdbal(q: usize) -> usize {
    VF_TX_BASE + VF_QUEUE_STRIDE * q
}
/// Transmit Descriptor Base Address High.
pub const fn vftdbah(q: usize) -> usize {
    vftdbal(q) + 0x04
}
/// Transmit Descriptor Length.
pub const fn vftdlen(q: usize) -> usize {
    vftdbal(q) + 0x08
}
/// Transmit Descriptor Head.
pub const fn vftdh(q: usize) -> usize {
    vftdbal(q) + 0x10
}
/// Transmit Descriptor Tail.
pub const fn vftdt(q: usize) -> usize {
    vftdbal(q) + 0x18
}
/// Transmit Descriptor Control.
pub const fn vftxdctl(q: usize) -> usize {
    vftdbal(q) + 0x28
}

/// Offsets inside a VF receive queue block that are queue registers (the block's other
/// words hold the statistics below, or nothing).
pub const VF_RX_QUEUE_REGS: &[usize] = &[0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18, 0x28, 0x2C];
/// Offsets inside a VF transmit queue block that are queue registers.
pub const VF_TX_QUEUE_REGS: &[usize] = &[0x00, 0x04, 0x08, 0x0C, 0x10, 0x18, 0x28, 0x38, 0x3C];

// ---- Statistics: free-running, wrapping, not cleared by reads ----

/// Good Packets Received Count (32 bits).
pub const VFGPRC: usize = 0x101C;
/// Good Packets Transmitted Count (32 bits).
pub const VFGPTC: usize = 0x201C;
/// Good Octets Received Count, bits 31:0 (read first: it latches bits 35:32).
pub const VFGORC_LSB: usize = 0x1020;
/// Good Octets Received Count, bits 35:32.
pub const VFGORC_MSB: usize = 0x1024;
/// Good Octets Transmitted Count, bits 31:0 (read first).
pub const VFGOTC_LSB: usize = 0x2020;
/// Good Octets Transmitted Count, bits 35:32.
pub const VFGOTC_MSB: usize = 0x2024;
/// Multicast Packets Received Count (32 bits).
pub const VFMPRC: usize = 0x1034;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_bits_match_the_datasheet() {
        assert_eq!(VF_BAR0_LEN, 16 * 1024);
        assert_eq!((VFCTRL, VFSTATUS, VFLINKS), (0x0, 0x8, 0x10));
        assert_eq!(
            (VTEICR, VTEIMC, VFMBMEM, VFMAILBOX),
            (0x100, 0x10C, 0x200, 0x2FC)
        );
        assert_eq!(VFCTRL_RST, 1 << 26);
        assert_eq!((VFLINKS_UP, VFLINKS_SPEED_10G), (1 << 30, 3 << 28));
        assert_eq!(
            (mbx::REQ, mbx::ACK, mbx::VFU, mbx::PFU),
            (0x1, 0x2, 0x4, 0x8)
        );
        assert_eq!(
            (
                mbx::PFSTS,
                mbx::PFACK,
                mbx::RSTI,
                mbx::RSTD,
                mbx::READ_CLEARS
            ),
            (0x10, 0x20, 0x40, 0x80, 0xB0)
        );
        assert_eq!(
            (
                vfrdbal(0),
                vfrdbah(0),
                vfrdlen(0),
                vfrdh(0),
                vfsrrctl(0),
                vfrdt(0),
                vfrxdctl(0)
            ),
            (0x1000, 0x1004, 0x1008, 0x1010, 0x1014, 0x1018, 0x1028)
        );
        assert_eq!(
            (
                vftdbal(1),
                vftdbah(1),
                vftdlen(1),
                vftdh(1),
                vftdt(1),
                vftxdctl(1)
            ),
            (0x2040, 0x2044, 0x2048, 0x2050, 0x2058, 0x2068)
        );
        assert_eq!(
            (VFGPRC, VFGPTC, VFGORC_LSB, VFGORC_MSB, VFGOTC_LSB, VFGOTC_MSB, VFMPRC),
            (0x101C, 0x201C, 0x1020, 0x1024, 0x2020, 0x2024, 0x1034)
        );
        assert_eq!((msg::ACK, msg::NACK, msg::CTS), (1 << 31, 1 << 30, 1 << 29));
        assert_eq!(
            (
                msg::RESET,
                msg::SET_MAC_ADDR,
                msg::SET_MULTICAST,
                msg::SET_VLAN,
                msg::SET_LPE
            ),
            (1, 2, 3, 4, 5)
        );
        assert_eq!(
            (
                msg::API_NEGOTIATE,
                msg::GET_QUEUES,
                msg::UPDATE_XCAST_MODE,
                msg::PF_CONTROL_MSG
            ),
            (8, 9, 0xC, 0x100)
        );
        assert_eq!((api::V1_0, api::V1_1, api::V1_2, api::V1_3), (0, 2, 3, 4));
    }
}
