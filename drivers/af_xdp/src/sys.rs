//! Thin, safe wrappers around the system calls the driver makes: the XDP socket and its
//! options, the ring mappings, the `bpf(2)` call, and the wake-up kicks. Layouts come
//! from `libc` and [`crate::uapi`]; interface requests are `pmd_core::netif`'s.

use crate::uapi;
use memmap2::{MmapOptions, MmapRaw};
use pmd_core::unix::{check, owned_fd};
use std::ffi::CStr;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

pub(crate) use pmd_core::netif::IFNAME_MAX;

// ---- sockets -----------------------------------------------------------------------

/// Opens an `AF_XDP` socket.
pub(crate) fn xdp_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers and returns a new descriptor.
    unsafe {
        owned_fd(libc::socket(
            libc::AF_XDP,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            0,
        ))
    }
}

/// `setsockopt(fd, level, name, value)`.
pub(crate) fn setsockopt<T: Copy>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: passes a live value of the size given; the kernel only reads it.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Integer-only `repr(C)` structures the kernel may fill with any bytes.
trait Plain: Copy {}
impl Plain for libc::xdp_mmap_offsets {}
impl Plain for libc::xdp_statistics {}
impl Plain for libc::xdp_options {}

/// `getsockopt` of an `SOL_XDP` option into a `T`; returns it and the length the kernel
/// wrote.
fn getsockopt_xdp<T: Plain>(fd: RawFd, name: libc::c_int) -> io::Result<(T, usize)> {
    let mut v = MaybeUninit::<T>::zeroed();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`, a live `T`-sized buffer.
    check(unsafe { libc::getsockopt(fd, libc::SOL_XDP, name, v.as_mut_ptr().cast(), &mut len) })?;
    // SAFETY: `T: Plain` is only implemented for structs of integers, valid for any
    // bytes, and every byte is initialised (zeroed, then maybe written by the kernel).
    Ok((unsafe { v.assume_init() }, len as usize))
}

/// The ring offsets (`XDP_MMAP_OFFSETS`); fails on kernels without the `flags` fields
/// (before 5.4, which lack need-wakeup too).
pub(crate) fn mmap_offsets(fd: RawFd) -> io::Result<libc::xdp_mmap_offsets> {
    let (off, len) = getsockopt_xdp::<libc::xdp_mmap_offsets>(fd, libc::XDP_MMAP_OFFSETS)?;
    if len != size_of::<libc::xdp_mmap_offsets>() {
        return Err(io::Error::other(
            "the kernel reports no ring flags (XDP_MMAP_OFFSETS v1): it is older than 5.4 and \
             lacks need-wakeup; upgrade the kernel",
        ));
    }
    Ok(off)
}

/// The socket's `XDP_STATISTICS`.
pub(crate) fn xdp_statistics(fd: RawFd) -> io::Result<libc::xdp_statistics> {
    getsockopt_xdp::<libc::xdp_statistics>(fd, libc::XDP_STATISTICS).map(|(s, _)| s)
}

/// Whether the bound socket runs in zero-copy mode (`XDP_OPTIONS`).
pub(crate) fn xdp_zero_copy(fd: RawFd) -> io::Result<bool> {
    let (o, _) = getsockopt_xdp::<libc::xdp_options>(fd, libc::XDP_OPTIONS)?;
    Ok(o.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
}

/// Binds an XDP socket to queue `queue` of interface `ifindex` with `flags`.
pub(crate) fn bind_xdp(fd: RawFd, ifindex: u32, queue: u32, flags: u16) -> io::Result<()> {
    let sa = libc::sockaddr_xdp {
        sxdp_family: libc::AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: 0,
    };
    // SAFETY: `sa` is a valid sockaddr_xdp of the length passed.
    check(unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_xdp).cast(),
            size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Asks the kernel to transmit what the tx ring holds (`sendto` with no data).
#[inline]
pub(crate) fn kick_tx(fd: RawFd) -> io::Result<()> {
    // SAFETY: a zero-length, non-blocking send with no buffer and no address.
    let rc = unsafe {
        libc::sendto(
            fd,
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Wakes the driver up to refill from the fill ring (`recvfrom` with no buffer).
#[inline]
pub(crate) fn kick_rx(fd: RawFd) -> io::Result<()> {
    // SAFETY: a zero-length, non-blocking receive with no buffer and no address.
    let rc = unsafe {
        libc::recvfrom(
            fd,
            std::ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

// ---- mmap --------------------------------------------------------------------------

/// Maps `len` bytes of `fd` at page offset `pgoff` (one of the `XDP_*PGOFF*` values),
/// shared and read-write, with its pages populated up front (`MAP_POPULATE`) so that the
/// data path takes no page faults. Unmapped when the result is dropped.
pub(crate) fn map_ring(fd: RawFd, len: usize, pgoff: u64) -> io::Result<MmapRaw> {
    MmapOptions::new()
        .offset(pgoff)
        .len(len)
        .populate()
        .map_raw(fd)
}

// ---- bpf(2) ------------------------------------------------------------------------

/// Types that are one command's part of `union bpf_attr`.
trait BpfAttr: Copy {}
impl BpfAttr for uapi::MapCreateAttr {}
impl BpfAttr for uapi::MapElemAttr {}
impl BpfAttr for uapi::ProgLoadAttr {}
impl BpfAttr for uapi::LinkCreateAttr {}
impl BpfAttr for uapi::LinkDetachAttr {}

/// `bpf(cmd, attr, sizeof attr)`; returns the syscall's non-negative result.
///
/// # Safety
/// `attr` must be `cmd`'s part of `union bpf_attr`, and every pointer stored in it (as a
/// `u64`) must point to memory that is valid for what `cmd` does with it (read or
/// written) for the duration of the call.
unsafe fn bpf<A: BpfAttr>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, properly laid out attribute struct of the size passed
    // (the kernel zero-extends shorter ones); its embedded pointers are the caller's
    // responsibility, as documented.
    check(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut A).cast::<libc::c_void>(),
            size_of::<A>() as libc::c_uint,
        )
    })
}

/// A `bpf(2)` call that returns a new file descriptor.
///
/// # Safety
/// As for [`bpf`].
unsafe fn bpf_fd<A: BpfAttr>(cmd: libc::c_long, attr: &mut A) -> io::Result<OwnedFd> {
    // SAFETY: forwarded contract.
    let fd = unsafe { bpf(cmd, attr) }?;
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::other("bpf returned a bad fd"))?;
    // SAFETY: the command returns a new descriptor on success.
    unsafe { owned_fd(fd) }
}

/// `BPF_MAP_CREATE`: a new map as `attr` describes it.
pub(crate) fn map_create(mut attr: uapi::MapCreateAttr) -> io::Result<OwnedFd> {
    // SAFETY: the map-create attributes hold no pointers.
    unsafe { bpf_fd(uapi::BPF_MAP_CREATE, &mut attr) }
}

/// `BPF_MAP_UPDATE_ELEM` on a map with `u32` keys and values: sets `key` to `value` as
/// `flags` (`BPF_ANY`, ...) allow.
pub(crate) fn map_update_u32(
    map: BorrowedFd<'_>,
    key: u32,
    value: u32,
    flags: u64,
) -> io::Result<()> {
    let mut attr = uapi::MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags,
        ..Default::default()
    };
    // SAFETY: key and value point to live u32s that the kernel only reads during the
    // call (the map's key and value size; a map with larger ones makes the kernel read
    // past them, which cannot change our memory).
    unsafe { bpf(uapi::BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
}

/// `BPF_MAP_DELETE_ELEM` on a map with `u32` keys: empties `key` (`ENOENT` if it was).
pub(crate) fn map_delete_u32(map: BorrowedFd<'_>, key: u32) -> io::Result<()> {
    let mut attr = uapi::MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: &key as *const u32 as u64,
        ..Default::default()
    };
    // SAFETY: key points to a live u32 the kernel only reads during the call.
    unsafe { bpf(uapi::BPF_MAP_DELETE_ELEM, &mut attr) }.map(drop)
}

/// `BPF_PROG_LOAD` of `insns` under `license`, with the rest of `attr` (type, name,
/// attach type) as given; the verifier's log goes to `log` when there is one (its
/// pointer and size fields of `attr` are set here).
pub(crate) fn prog_load(
    mut attr: uapi::ProgLoadAttr,
    insns: &[uapi::BpfInsn],
    license: &CStr,
    log: Option<&mut [u8]>,
) -> io::Result<OwnedFd> {
    attr.insns = insns.as_ptr() as u64;
    attr.insn_cnt = u32::try_from(insns.len()).map_err(|_| io::Error::other("program too long"))?;
    attr.license = license.as_ptr() as u64;
    (attr.log_level, attr.log_size, attr.log_buf) = match log {
        Some(buf) => (
            1,
            u32::try_from(buf.len()).unwrap_or(u32::MAX),
            buf.as_mut_ptr() as u64,
        ),
        None => (0, 0, 0),
    };
    // SAFETY: `insns` and `license` are live for the call and only read; `log_buf`, when
    // set, is a live buffer of at least `log_size` bytes the kernel may write.
    unsafe { bpf_fd(uapi::BPF_PROG_LOAD, &mut attr) }
}

/// `BPF_LINK_CREATE`: attaches a program as `attr` says; the link holds the attachment.
pub(crate) fn link_create(mut attr: uapi::LinkCreateAttr) -> io::Result<OwnedFd> {
    // SAFETY: the link-create attributes hold no pointers.
    unsafe { bpf_fd(uapi::BPF_LINK_CREATE, &mut attr) }
}

/// `BPF_LINK_DETACH`: detaches the program of `link` even if other descriptors refer to
/// the link.
pub(crate) fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = uapi::LinkDetachAttr {
        link_fd: link.as_raw_fd() as u32,
    };
    // SAFETY: the link-detach attributes hold no pointers.
    unsafe { bpf(uapi::BPF_LINK_DETACH, &mut attr) }.map(drop)
}

/// The fd of an owned descriptor.
pub(crate) fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}
