//! 82599 facts that are neither a register nor a descriptor field: the PCI identity,
//! frame-size limits and how many queues the model serves (Intel 82599 10 GbE Controller
//! Datasheet, rev. 3.x; section numbers per item). Register offsets and bits are in
//! [`crate::regs`], descriptor layouts in [`crate::desc`].

/// Largest standard frame including the 4-byte CRC (IEEE 802.3; the 82599's limit without
/// jumbo frames).
pub const STD_MAX_FRAME: usize = 1518;
/// Smallest legal frame including the CRC (8.2.3.23: "less than 64 bytes" is undersize).
pub const MIN_FRAME: usize = 64;
/// Bytes of the Ethernet CRC, which the model's frames omit and its octet counters add.
pub const CRC_LEN: usize = 4;
/// Largest MAXFRS.MFS the model takes (9.5 KB jumbo frames, with CRC).
pub const MAX_MFS: usize = 9728;

/// Receive queues the model serves: the 64 whose registers are at 0x01000 + 0x40 * q
/// (8.2.3.8; queues 64..127 live elsewhere and are not modelled).
pub const RX_QUEUES: usize = 64;
/// Transmit queues (8.2.3.9: 128, all at 0x06000 + 0x40 * q).
pub const TX_QUEUES: usize = 128;

/// Most SR-IOV virtual functions a model offers (the 82599 has 64; a handful is what
/// tests need, and each VF's PCI function number is its index).
pub const MAX_VFS: usize = 8;
/// The first model queue the VFs own: VF n owns rx and tx queues
/// `VF_QUEUE_BASE + 2n` and `VF_QUEUE_BASE + 2n + 1` (its "pool", at the top of the 64
/// receive queues, which the PF's RSS, with its 16-queue redirection table, never uses).
pub const VF_QUEUE_BASE: usize = RX_QUEUES - 2 * MAX_VFS;

/// The model queue behind queue `q` of VF `vf`.
pub const fn vf_queue(vf: usize, q: usize) -> usize {
    VF_QUEUE_BASE + 2 * vf + q
}

/// Largest frame the transmit path assembles from descriptors (the 82599's jumbo limit
/// is 15.5 KiB). Longer frames are dropped as errors.
pub const TX_MAX_FRAME: usize = 15872;
/// Most bytes a TSO packet gathers (PAYLEN is 18 bits, plus headers).
pub const TX_MAX_TSO: usize = (1 << 18) + 512;

/// PCI vendor id of Intel (PCIe configuration space, datasheet 9.3).
pub const VENDOR_INTEL: u16 = 0x8086;
/// PCI device id of the 82599 SFP+ (82599ES; the datasheet's device-id table, "82599 SFP").
pub const DEVICE_82599_SFP: u16 = 0x10FB;
/// PCI device id of an 82599 SR-IOV virtual function (the datasheet's device-id table,
/// "82599 Virtual Function").
pub const DEVICE_82599_VF: u16 = 0x10ED;
/// PCI class code: network controller, Ethernet (02h/00h/00h; 9.3).
pub const CLASS_ETHERNET: u32 = 0x02_0000;

/// TCP flags fixed per TSO frame.
pub const TCP_FIN: u8 = 0x01;
/// TCP PSH.
pub const TCP_PSH: u8 = 0x08;
/// TCP CWR.
pub const TCP_CWR: u8 = 0x80;

/// MSI-X table entries of the 82599 (its MSI-X capability's table size; datasheet 7.3):
/// the most vectors `enable_irqs` gives.
pub const MSIX_VECTORS: usize = 64;
/// Vectors whose causes the model delivers: the ones with an RTxQ bit in EICR/EIMS
/// (0..15). Vectors 16..63 would need EICR_EX/EIMS_EX, which are not modelled.
pub const EICR_VECTORS: usize = 16;
