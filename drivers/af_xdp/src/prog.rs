//! The XDP side: an `XSKMAP` (queue index -> XDP socket), the redirect program,
//! hand-assembled here (no clang, no libbpf), and its attachment to the interface through
//! a bpf link.
//!
//! The program is the C one-liner
//!
//! ```c
//! SEC("xdp") int redirect(struct xdp_md *ctx)
//! {
//!     return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
//! }
//! ```
//!
//! in five instructions (the map load takes two slots). The low bits of the third
//! argument are the action when the map has no socket at that index (kernels 5.3+), so
//! traffic on queues we do not serve goes on to the kernel stack.
//!
//! A bpf link (`BPF_LINK_CREATE`, kernels 5.9+) holds the attachment: closing its fd
//! detaches the program, so a crashed process leaves nothing attached.

use crate::sys;
use crate::uapi::{self, BpfInsn};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

/// eBPF registers used (r0, the helper's result, is what `exit` returns).
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;

/// Encodes one instruction.
const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

/// The redirect program for the `XSKMAP` whose fd is `map_fd`.
pub(crate) fn redirect_program(map_fd: RawFd) -> [BpfInsn; 6] {
    use uapi::*;
    [
        // r2 = *(u32 *)(r1 + offsetof(struct xdp_md, rx_queue_index))
        //   r1 holds the context on entry; r2 becomes the helper's key argument.
        insn(BPF_LDX | BPF_MEM | BPF_W, R2, R1, XDP_MD_RX_QUEUE_INDEX, 0),
        // r1 = map (64-bit immediate load, two slots; src_reg = BPF_PSEUDO_MAP_FD makes
        //   the verifier replace the fd with the map's address): the map argument.
        insn(BPF_LD | BPF_IMM | BPF_DW, R1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        //   second slot: the upper 32 bits of the immediate, zero.
        insn(0, 0, 0, 0, 0),
        // r3 = XDP_PASS: the flags argument, whose low bits are the fallback action.
        insn(BPF_ALU64 | BPF_MOV | BPF_K, R3, 0, 0, XDP_PASS),
        // call bpf_redirect_map(r1 = map, r2 = key, r3 = flags); result in r0.
        insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        // exit: return r0 (XDP_REDIRECT, or XDP_PASS without a socket at the index).
        insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    ]
}

fn obj_name(s: &str) -> [u8; uapi::BPF_OBJ_NAME_LEN] {
    let mut n = [0u8; uapi::BPF_OBJ_NAME_LEN];
    for (d, c) in n.iter_mut().zip(s.bytes().take(uapi::BPF_OBJ_NAME_LEN - 1)) {
        *d = c;
    }
    n
}

/// An `XSKMAP` with one slot per queue index.
#[derive(Debug)]
pub(crate) struct XskMap {
    fd: OwnedFd,
    entries: u32,
}

impl XskMap {
    /// Creates a map for queue indices `0..entries`.
    pub fn create(entries: u32) -> io::Result<XskMap> {
        let fd = sys::map_create(uapi::MapCreateAttr {
            map_type: uapi::BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: entries,
            map_name: obj_name("pmd_xsks"),
            ..Default::default()
        })?;
        Ok(XskMap { fd, entries })
    }

    /// Points slot `queue` at the XDP socket `xsk`.
    pub fn set(&self, queue: u32, xsk: RawFd) -> io::Result<()> {
        sys::map_update_u32(self.fd.as_fd(), queue, xsk as u32, uapi::BPF_ANY)
    }

    /// Empties slot `queue` (no error if it was empty).
    pub fn clear(&self, queue: u32) -> io::Result<()> {
        match sys::map_delete_u32(self.fd.as_fd(), queue) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r.map(drop),
        }
    }

    /// Number of slots.
    pub fn entries(&self) -> u32 {
        self.entries
    }
}

/// Why loading the program failed, with the verifier's log when there is one.
#[derive(Debug)]
pub(crate) struct LoadError {
    pub err: io::Error,
    pub log: String,
}

/// The loaded redirect program and its map.
#[derive(Debug)]
pub(crate) struct XdpProgram {
    fd: OwnedFd,
    map: XskMap,
}

const LICENSE: &CStr = c"GPL";

impl XdpProgram {
    /// Loads the redirect program for `map` (the "GPL" license: the helpers need it).
    pub fn load(map: XskMap) -> Result<XdpProgram, LoadError> {
        match Self::load_with_log(&map, None) {
            Ok(fd) => Ok(XdpProgram { fd, map }),
            Err(err) => {
                // Load again with the verifier's log, to say why.
                let mut log = vec![0u8; 64 * 1024];
                let _ = Self::load_with_log(&map, Some(&mut log));
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                Err(LoadError {
                    err,
                    log: String::from_utf8_lossy(&log[..end]).trim().to_string(),
                })
            }
        }
    }

    fn load_with_log(map: &XskMap, log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
        let attr = uapi::ProgLoadAttr {
            prog_type: uapi::BPF_PROG_TYPE_XDP,
            prog_name: obj_name("pmd_xsk_redir"),
            expected_attach_type: uapi::BPF_XDP,
            ..Default::default()
        };
        let insns = redirect_program(map.fd.as_raw_fd());
        sys::prog_load(attr, &insns, LICENSE, log)
    }

    /// The socket map.
    pub fn map(&self) -> &XskMap {
        &self.map
    }
}

/// Where the program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttachMode {
    /// In the driver (`XDP_FLAGS_DRV_MODE`), before any socket buffer is built.
    Native,
    /// In the core stack on socket buffers (`XDP_FLAGS_SKB_MODE`); works on any device.
    Generic,
    /// Native if the driver supports it, generic otherwise.
    Auto,
}

/// An attached program; dropping it detaches the program.
#[derive(Debug)]
pub(crate) struct XdpLink {
    fd: OwnedFd,
    native: bool,
}

/// Why attaching failed: the error of the native and/or generic attempt.
#[derive(Debug)]
pub(crate) struct AttachError {
    pub native: Option<io::Error>,
    pub generic: Option<io::Error>,
}

impl AttachError {
    /// The errno of the last attempt.
    pub fn errno(&self) -> Option<i32> {
        self.generic
            .as_ref()
            .or(self.native.as_ref())
            .and_then(io::Error::raw_os_error)
    }
}

impl std::fmt::Display for AttachError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.native, &self.generic) {
            (Some(n), Some(g)) => write!(f, "native mode: {n}; generic mode: {g}"),
            (Some(n), None) => write!(f, "native mode: {n}"),
            (None, Some(g)) => write!(f, "generic mode: {g}"),
            (None, None) => write!(f, "not attempted"),
        }
    }
}

impl XdpLink {
    /// Attaches `prog` to interface `ifindex` in `mode` (Auto: native, then generic).
    pub fn attach(
        prog: &XdpProgram,
        ifindex: u32,
        mode: AttachMode,
    ) -> Result<XdpLink, AttachError> {
        let try_mode = |native: bool| -> io::Result<XdpLink> {
            let fd = sys::link_create(uapi::LinkCreateAttr {
                prog_fd: prog.fd.as_raw_fd() as u32,
                target_ifindex: ifindex,
                attach_type: uapi::BPF_XDP,
                flags: if native {
                    uapi::XDP_FLAGS_DRV_MODE
                } else {
                    uapi::XDP_FLAGS_SKB_MODE
                },
            })?;
            Ok(XdpLink { fd, native })
        };
        let mut e = AttachError {
            native: None,
            generic: None,
        };
        if mode != AttachMode::Generic {
            match try_mode(true) {
                Ok(l) => return Ok(l),
                // Someone else's program is attached: generic mode would fail the same way.
                Err(err)
                    if err.raw_os_error() == Some(libc::EBUSY) || mode == AttachMode::Native =>
                {
                    e.native = Some(err);
                    return Err(e);
                }
                Err(err) => e.native = Some(err),
            }
        }
        match try_mode(false) {
            Ok(l) => Ok(l),
            Err(err) => {
                e.generic = Some(err);
                Err(e)
            }
        }
    }

    /// Whether the program runs in the driver (native) rather than generic mode.
    pub fn native(&self) -> bool {
        self.native
    }
}

impl Drop for XdpLink {
    fn drop(&mut self) {
        // Detach now even if a forked child still shares the fd; closing it (right after)
        // is what detaches when nothing else does, e.g. when the process dies.
        let _ = sys::link_detach(self.fd.as_fd());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of each instruction, as clang would emit them for the C program.
    #[test]
    fn encodes_the_redirect_program() {
        let p = redirect_program(7);
        let bytes: Vec<[u8; 8]> = p
            .iter()
            .map(|i| {
                let mut b = [0u8; 8];
                b[0] = i.code;
                b[1] = i.regs;
                b[2..4].copy_from_slice(&i.off.to_le_bytes());
                b[4..8].copy_from_slice(&i.imm.to_le_bytes());
                b
            })
            .collect();
        assert_eq!(
            bytes,
            vec![
                [0x61, 0x12, 16, 0, 0, 0, 0, 0], // r2 = *(u32 *)(r1 + 16)
                [0x18, 0x11, 0, 0, 7, 0, 0, 0],  // r1 = map fd 7 (pseudo)
                [0, 0, 0, 0, 0, 0, 0, 0],        //   upper half
                [0xb7, 0x03, 0, 0, 2, 0, 0, 0],  // r3 = 2 (XDP_PASS)
                [0x85, 0, 0, 0, 51, 0, 0, 0],    // call 51 (bpf_redirect_map)
                [0x95, 0, 0, 0, 0, 0, 0, 0],     // exit
            ]
        );
        assert_eq!(obj_name("pmd_xsk_redir_long_name")[15], 0);
    }
}
