//! Kernel UAPI constants and structure layouts, transcribed by hand from the Linux headers
//! (Debian's `linux-libc-dev` 6.1, `/usr/include/linux/...`). Each item names its header.
//! Sizes and offsets are checked at compile time against the values `offsetof`/`sizeof`
//! give for the C definitions. Nothing here calls the kernel.

use std::mem::{offset_of, size_of};

// ---- linux/socket.h --------------------------------------------------------------

/// `AF_XDP` (linux/socket.h).
pub(crate) const AF_XDP: libc::c_int = 44;
/// `SOL_XDP` (linux/socket.h).
pub(crate) const SOL_XDP: libc::c_int = 283;

// ---- linux/if_xdp.h --------------------------------------------------------------

/// `sxdp_flags`: force copy mode.
pub(crate) const XDP_COPY: u16 = 1 << 1;
/// `sxdp_flags`: force zero-copy mode (fails if the driver cannot).
pub(crate) const XDP_ZEROCOPY: u16 = 1 << 2;
/// `sxdp_flags`: the kernel flags rings with `XDP_RING_NEED_WAKEUP` when it needs a kick.
pub(crate) const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
/// Ring `flags` bit: the kernel wants a `sendto`/`recvfrom`/`poll` to make progress.
pub(crate) const XDP_RING_NEED_WAKEUP: u32 = 1 << 0;

/// Socket option: read the ring offsets (`struct xdp_mmap_offsets`).
pub(crate) const XDP_MMAP_OFFSETS: libc::c_int = 1;
/// Socket option: size of the rx ring.
pub(crate) const XDP_RX_RING: libc::c_int = 2;
/// Socket option: size of the tx ring.
pub(crate) const XDP_TX_RING: libc::c_int = 3;
/// Socket option: register the UMEM (`struct xdp_umem_reg`).
pub(crate) const XDP_UMEM_REG: libc::c_int = 4;
/// Socket option: size of the fill ring.
pub(crate) const XDP_UMEM_FILL_RING: libc::c_int = 5;
/// Socket option: size of the completion ring.
pub(crate) const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
/// Socket option: read `struct xdp_statistics`.
pub(crate) const XDP_STATISTICS: libc::c_int = 7;
/// Socket option: read `struct xdp_options`.
pub(crate) const XDP_OPTIONS: libc::c_int = 8;
/// `xdp_options.flags`: the socket is in zero-copy mode.
pub(crate) const XDP_OPTIONS_ZEROCOPY: u32 = 1 << 0;

/// mmap offset of the rx ring.
pub(crate) const XDP_PGOFF_RX_RING: u64 = 0;
/// mmap offset of the tx ring.
pub(crate) const XDP_PGOFF_TX_RING: u64 = 0x8000_0000;
/// mmap offset of the fill ring.
pub(crate) const XDP_UMEM_PGOFF_FILL_RING: u64 = 0x1_0000_0000;
/// mmap offset of the completion ring.
pub(crate) const XDP_UMEM_PGOFF_COMPLETION_RING: u64 = 0x1_8000_0000;

/// `struct sockaddr_xdp`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SockaddrXdp {
    pub sxdp_family: u16,
    pub sxdp_flags: u16,
    pub sxdp_ifindex: u32,
    pub sxdp_queue_id: u32,
    pub sxdp_shared_umem_fd: u32,
}

/// `struct xdp_ring_offset`: where producer, consumer, descriptors and flags sit in a
/// ring's mapping.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct XdpRingOffset {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct XdpMmapOffsets {
    pub rx: XdpRingOffset,
    pub tx: XdpRingOffset,
    pub fr: XdpRingOffset,
    pub cr: XdpRingOffset,
}

/// `struct xdp_umem_reg`. The 6.1 header ends at `flags`; the 4 bytes of tail padding
/// are named here because kernels from 6.8 read them as `tx_metadata_len`, which must be 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct XdpUmemReg {
    pub addr: u64,
    pub len: u64,
    pub chunk_size: u32,
    pub headroom: u32,
    pub flags: u32,
    pub tx_metadata_len: u32,
}

/// `struct xdp_statistics`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct XdpStatistics {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// `struct xdp_options`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct XdpOptions {
    pub flags: u32,
}

/// `struct xdp_desc`: one rx or tx descriptor (UMEM address, length).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct XdpDesc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

const _: () = assert!(size_of::<SockaddrXdp>() == 16);
const _: () = assert!(size_of::<XdpMmapOffsets>() == 128);
const _: () = assert!(size_of::<XdpUmemReg>() == 32);
const _: () = assert!(size_of::<XdpStatistics>() == 48);
const _: () = assert!(size_of::<XdpDesc>() == 16);

// ---- linux/bpf.h, linux/bpf_common.h ---------------------------------------------

/// `XDP_PACKET_HEADROOM` (linux/bpf.h): room the kernel keeps in front of each rx frame.
pub(crate) const XDP_PACKET_HEADROOM: u32 = 256;

/// `enum bpf_cmd`: create a map.
pub(crate) const BPF_MAP_CREATE: libc::c_long = 0;
/// `enum bpf_cmd`: set a map element.
pub(crate) const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
/// `enum bpf_cmd`: delete a map element.
pub(crate) const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
/// `enum bpf_cmd`: load a program.
pub(crate) const BPF_PROG_LOAD: libc::c_long = 5;
/// `enum bpf_cmd`: attach a program through a link object.
pub(crate) const BPF_LINK_CREATE: libc::c_long = 28;
/// `enum bpf_cmd`: detach a link's program even if other fds refer to the link.
pub(crate) const BPF_LINK_DETACH: libc::c_long = 34;

/// `enum bpf_map_type`: an array of XDP sockets.
pub(crate) const BPF_MAP_TYPE_XSKMAP: u32 = 17;
/// `enum bpf_prog_type`: an XDP program.
pub(crate) const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`: attach to a network device's XDP hook.
pub(crate) const BPF_XDP: u32 = 37;
/// Map update flag: create or replace.
pub(crate) const BPF_ANY: u64 = 0;
/// `BPF_OBJ_NAME_LEN`.
pub(crate) const BPF_OBJ_NAME_LEN: usize = 16;

/// Instruction class: load (non-standard; used for 64-bit immediates).
pub(crate) const BPF_LD: u8 = 0x00;
/// Instruction class: load from memory into a register.
pub(crate) const BPF_LDX: u8 = 0x01;
/// Instruction class: jumps and calls.
pub(crate) const BPF_JMP: u8 = 0x05;
/// Instruction class: 64-bit arithmetic.
pub(crate) const BPF_ALU64: u8 = 0x07;
/// Size modifier: 32-bit word.
pub(crate) const BPF_W: u8 = 0x00;
/// Size modifier: 64-bit double word.
pub(crate) const BPF_DW: u8 = 0x18;
/// Mode modifier: immediate.
pub(crate) const BPF_IMM: u8 = 0x00;
/// Mode modifier: memory at register + offset.
pub(crate) const BPF_MEM: u8 = 0x60;
/// Source modifier: the immediate.
pub(crate) const BPF_K: u8 = 0x00;
/// ALU operation: move.
pub(crate) const BPF_MOV: u8 = 0xb0;
/// Jump operation: call a helper.
pub(crate) const BPF_CALL: u8 = 0x80;
/// Jump operation: return r0.
pub(crate) const BPF_EXIT: u8 = 0x90;
/// `src_reg` of a 64-bit immediate load whose immediate is a map fd.
pub(crate) const BPF_PSEUDO_MAP_FD: u8 = 1;
/// Helper number of `bpf_redirect_map` (its place in `__BPF_FUNC_MAPPER`).
pub(crate) const BPF_FUNC_REDIRECT_MAP: i32 = 51;
/// `enum xdp_action`: hand the packet to the kernel stack.
pub(crate) const XDP_PASS: i32 = 2;
/// `offsetof(struct xdp_md, rx_queue_index)`.
pub(crate) const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// `struct bpf_insn`. `regs` holds `dst_reg:4` in the low and `src_reg:4` in the high
/// nibble (bit-field order of little-endian targets).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BpfInsn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// The `BPF_MAP_CREATE` part of `union bpf_attr`, up to `map_ifindex`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MapCreateAttr {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub inner_map_fd: u32,
    pub numa_node: u32,
    pub map_name: [u8; BPF_OBJ_NAME_LEN],
    pub map_ifindex: u32,
}

/// The `BPF_MAP_*_ELEM` part of `union bpf_attr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MapElemAttr {
    pub map_fd: u32,
    pub _pad: u32,
    pub key: u64,
    pub value: u64,
    pub flags: u64,
}

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; BPF_OBJ_NAME_LEN],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
}

/// The `BPF_LINK_CREATE` part of `union bpf_attr`, up to `flags`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LinkCreateAttr {
    pub prog_fd: u32,
    pub target_ifindex: u32,
    pub attach_type: u32,
    pub flags: u32,
}

/// The `BPF_LINK_DETACH` part of `union bpf_attr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LinkDetachAttr {
    pub link_fd: u32,
}

const _: () = assert!(size_of::<BpfInsn>() == 8);
const _: () = assert!(offset_of!(MapCreateAttr, map_name) == 28);
const _: () = assert!(offset_of!(MapCreateAttr, map_ifindex) == 44);
const _: () = assert!(offset_of!(MapElemAttr, key) == 8);
const _: () = assert!(offset_of!(MapElemAttr, value) == 16);
const _: () = assert!(offset_of!(MapElemAttr, flags) == 24);
const _: () = assert!(offset_of!(ProgLoadAttr, insns) == 8);
const _: () = assert!(offset_of!(ProgLoadAttr, license) == 16);
const _: () = assert!(offset_of!(ProgLoadAttr, log_buf) == 32);
const _: () = assert!(offset_of!(ProgLoadAttr, prog_name) == 48);
const _: () = assert!(offset_of!(ProgLoadAttr, expected_attach_type) == 68);
const _: () = assert!(offset_of!(LinkCreateAttr, flags) == 12);

// ---- linux/if_link.h -------------------------------------------------------------

/// `XDP_FLAGS_SKB_MODE`: generic XDP, run on socket buffers by the core stack.
pub(crate) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP, run by the driver.
pub(crate) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

// ---- linux/sockios.h, linux/ethtool.h, linux/if_packet.h --------------------------

/// `SIOCGIFFLAGS`.
pub(crate) const SIOCGIFFLAGS: u64 = 0x8913;
/// `SIOCGIFHWADDR`.
pub(crate) const SIOCGIFHWADDR: u64 = 0x8927;
/// `SIOCGIFINDEX`.
pub(crate) const SIOCGIFINDEX: u64 = 0x8933;
/// `SIOCETHTOOL`.
pub(crate) const SIOCETHTOOL: u64 = 0x8946;
/// `ETHTOOL_GSET`: legacy link settings.
pub(crate) const ETHTOOL_GSET: u32 = 0x01;
/// `ETHTOOL_GCHANNELS`: channel (queue) counts.
pub(crate) const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// `struct ethtool_cmd` (the legacy `ETHTOOL_GSET` layout).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct EthtoolCmd {
    pub cmd: u32,
    pub supported: u32,
    pub advertising: u32,
    pub speed: u16,
    pub duplex: u8,
    pub port: u8,
    pub phy_address: u8,
    pub transceiver: u8,
    pub autoneg: u8,
    pub mdio_support: u8,
    pub maxtxpkt: u32,
    pub maxrxpkt: u32,
    pub speed_hi: u16,
    pub eth_tp_mdix: u8,
    pub eth_tp_mdix_ctrl: u8,
    pub lp_advertising: u32,
    pub reserved: [u32; 2],
}

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct EthtoolChannels {
    pub cmd: u32,
    pub max_rx: u32,
    pub max_tx: u32,
    pub max_other: u32,
    pub max_combined: u32,
    pub rx_count: u32,
    pub tx_count: u32,
    pub other_count: u32,
    pub combined_count: u32,
}

/// `PACKET_ADD_MEMBERSHIP` (linux/if_packet.h).
pub(crate) const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
/// `PACKET_DROP_MEMBERSHIP`.
pub(crate) const PACKET_DROP_MEMBERSHIP: libc::c_int = 2;
/// `PACKET_MR_PROMISC`.
pub(crate) const PACKET_MR_PROMISC: u16 = 1;

/// `struct packet_mreq`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PacketMreq {
    pub mr_ifindex: libc::c_int,
    pub mr_type: u16,
    pub mr_alen: u16,
    pub mr_address: [u8; 8],
}

const _: () = assert!(size_of::<EthtoolCmd>() == 44);
const _: () = assert!(size_of::<EthtoolChannels>() == 36);
const _: () = assert!(size_of::<PacketMreq>() == 16);
