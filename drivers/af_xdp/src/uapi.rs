//! Kernel UAPI constants and structure layouts that `libc` lacks, transcribed by hand from
//! the Linux headers (Debian's `linux-libc-dev` 6.1, `/usr/include/linux/...`); each item
//! names its header. Sizes and offsets are checked at compile time against the values
//! `offsetof`/`sizeof` give for the C definitions. What `libc` has (`AF_XDP`, `SOL_XDP`,
//! the `if_xdp.h` options, flags, ring offsets and structures, the classic BPF opcode
//! fields) is used from there. Nothing here calls the kernel.

use std::mem::{offset_of, size_of};

/// `struct xdp_desc` (`libc`'s): one rx or tx descriptor (UMEM address, length, options).
pub(crate) use libc::xdp_desc as XdpDesc;

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
pub(crate) const BPF_LD: u8 = libc::BPF_LD as u8;
/// Instruction class: load from memory into a register.
pub(crate) const BPF_LDX: u8 = libc::BPF_LDX as u8;
/// Instruction class: jumps and calls.
pub(crate) const BPF_JMP: u8 = libc::BPF_JMP as u8;
/// Instruction class: 64-bit arithmetic (eBPF only).
pub(crate) const BPF_ALU64: u8 = 0x07;
/// Size modifier: 32-bit word.
pub(crate) const BPF_W: u8 = libc::BPF_W as u8;
/// Size modifier: 64-bit double word (eBPF only).
pub(crate) const BPF_DW: u8 = 0x18;
/// Mode modifier: immediate.
pub(crate) const BPF_IMM: u8 = libc::BPF_IMM as u8;
/// Mode modifier: memory at register + offset.
pub(crate) const BPF_MEM: u8 = libc::BPF_MEM as u8;
/// Source modifier: the immediate.
pub(crate) const BPF_K: u8 = libc::BPF_K as u8;
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
