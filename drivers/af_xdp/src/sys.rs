//! Thin, safe wrappers around the system calls the driver makes: sockets and their
//! options, `mmap`, interface ioctls, the `bpf(2)` call, and the wake-up kicks.
//! Layouts come from [`crate::uapi`].

use crate::uapi::{self, EthtoolChannels, EthtoolCmd, PacketMreq, SockaddrXdp};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(fd)?;
    // SAFETY: `fd` is a descriptor the kernel just created for us, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

// ---- sockets -----------------------------------------------------------------------

/// Opens an `AF_XDP` socket.
pub(crate) fn xdp_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments.
    owned(unsafe { libc::socket(uapi::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })
}

/// Opens an `AF_PACKET` socket with protocol 0: it receives nothing, and serves for
/// interface ioctls and the promiscuous-mode membership.
pub(crate) fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments.
    owned(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })
}

/// `setsockopt(fd, level, name, value)`.
pub(crate) fn setsockopt<T: Copy>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: passes a live value of the size given; the kernel only reads it.
    cvt(unsafe {
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
trait Plain: Copy + Default {}
impl Plain for uapi::XdpMmapOffsets {}
impl Plain for uapi::XdpStatistics {}
impl Plain for uapi::XdpOptions {}

/// `getsockopt` of an `SOL_XDP` option into a `T`; returns it and the length the kernel
/// wrote.
fn getsockopt_xdp<T: Plain>(fd: RawFd, name: libc::c_int) -> io::Result<(T, usize)> {
    let mut v = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`, a live `T`; `T: Plain` is
    // only implemented for structs of integers, valid for any bytes.
    cvt(unsafe { libc::getsockopt(fd, uapi::SOL_XDP, name, (&mut v as *mut T).cast(), &mut len) })?;
    Ok((v, len as usize))
}

/// The ring offsets (`XDP_MMAP_OFFSETS`); fails on kernels without the `flags` fields
/// (before 5.4, which lack need-wakeup too).
pub(crate) fn mmap_offsets(fd: RawFd) -> io::Result<uapi::XdpMmapOffsets> {
    let (off, len) = getsockopt_xdp::<uapi::XdpMmapOffsets>(fd, uapi::XDP_MMAP_OFFSETS)?;
    if len != size_of::<uapi::XdpMmapOffsets>() {
        return Err(io::Error::other(
            "the kernel reports no ring flags (XDP_MMAP_OFFSETS v1): it is older than 5.4 and \
             lacks need-wakeup; upgrade the kernel",
        ));
    }
    Ok(off)
}

/// The socket's `XDP_STATISTICS`.
pub(crate) fn xdp_statistics(fd: RawFd) -> io::Result<uapi::XdpStatistics> {
    getsockopt_xdp::<uapi::XdpStatistics>(fd, uapi::XDP_STATISTICS).map(|(s, _)| s)
}

/// Whether the bound socket runs in zero-copy mode (`XDP_OPTIONS`).
pub(crate) fn xdp_zero_copy(fd: RawFd) -> io::Result<bool> {
    let (o, _) = getsockopt_xdp::<uapi::XdpOptions>(fd, uapi::XDP_OPTIONS)?;
    Ok(o.flags & uapi::XDP_OPTIONS_ZEROCOPY != 0)
}

/// Binds an XDP socket to queue `queue` of interface `ifindex` with `flags`.
pub(crate) fn bind_xdp(fd: RawFd, ifindex: u32, queue: u32, flags: u16) -> io::Result<()> {
    let sa = SockaddrXdp {
        sxdp_family: uapi::AF_XDP as u16,
        sxdp_flags: flags,
        sxdp_ifindex: ifindex,
        sxdp_queue_id: queue,
        sxdp_shared_umem_fd: 0,
    };
    // SAFETY: `sa` is a valid sockaddr_xdp of the length passed.
    cvt(unsafe {
        libc::bind(
            fd,
            (&sa as *const SockaddrXdp).cast(),
            size_of::<SockaddrXdp>() as libc::socklen_t,
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

/// A shared mapping of part of a socket (one ring), unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory, only an address here; who may access
// which part of it is decided by the ring types built on top.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` at page offset `pgoff` (one of the `XDP_*PGOFF*` values).
    pub fn new(fd: RawFd, len: usize, pgoff: u64) -> io::Result<Mapping> {
        // SAFETY: a fresh shared mapping at an address of the kernel's choosing; nothing
        // else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Mapping { ptr, len })
    }

    /// Start of the mapping.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped; the ring types that point into it
        // own it and are being dropped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

// ---- bpf(2) ------------------------------------------------------------------------

/// Types that are one command's part of `union bpf_attr`.
pub(crate) trait BpfAttr: Copy {}
impl BpfAttr for uapi::MapCreateAttr {}
impl BpfAttr for uapi::MapElemAttr {}
impl BpfAttr for uapi::ProgLoadAttr {}
impl BpfAttr for uapi::LinkCreateAttr {}
impl BpfAttr for uapi::LinkDetachAttr {}

/// `bpf(cmd, attr, sizeof attr)`; returns the syscall's non-negative result.
///
/// # Safety
/// Every pointer stored in `attr` (as a `u64`) must point to memory that is valid for
/// what `cmd` does with it (read or written) for the duration of the call.
pub(crate) unsafe fn bpf<A: BpfAttr>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, properly laid out attribute struct of the size passed
    // (the kernel zero-extends shorter ones); its embedded pointers are the caller's
    // responsibility, as documented.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut A).cast::<libc::c_void>(),
            size_of::<A>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A `bpf(2)` call that returns a new file descriptor.
///
/// # Safety
/// As for [`bpf`].
pub(crate) unsafe fn bpf_fd<A: BpfAttr>(cmd: libc::c_long, attr: &mut A) -> io::Result<OwnedFd> {
    // SAFETY: forwarded contract.
    let fd = unsafe { bpf(cmd, attr) }?;
    let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::other("bpf returned a bad fd"))?;
    owned(fd)
}

// ---- interface ioctls ----------------------------------------------------------------

/// Longest interface name (IFNAMSIZ - 1).
pub(crate) const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

/// `struct ifreq`: the name plus a 24-byte union.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: IfReqData,
}

#[repr(C)]
#[derive(Clone, Copy)]
union IfReqData {
    flags: libc::c_short,
    ifindex: libc::c_int,
    mtu: libc::c_int,
    hwaddr: libc::sockaddr,
    ptr: *mut libc::c_void,
    _pad: [u8; 24],
}

const _: () = assert!(size_of::<IfReq>() == 40);

impl IfReq {
    fn new(name: &str) -> io::Result<IfReq> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > IFNAME_MAX || b.contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: IfReqData { _pad: [0; 24] },
        };
        for (d, s) in r.name.iter_mut().zip(b) {
            *d = *s as libc::c_char;
        }
        Ok(r)
    }

    /// `ioctl(fd, req, self)`.
    fn ioctl(&mut self, fd: RawFd, req: u64) -> io::Result<()> {
        // SAFETY: every request used here reads or writes one `struct ifreq` (or, for
        // SIOCETHTOOL, the buffer `data.ptr` points to, which callers keep alive).
        cvt(unsafe { libc::ioctl(fd, req as _, self as *mut IfReq) }).map(drop)
    }
}

/// Index of interface `name`.
pub(crate) fn if_index(fd: RawFd, name: &str) -> io::Result<u32> {
    let mut r = IfReq::new(name)?;
    r.ioctl(fd, uapi::SIOCGIFINDEX)?;
    // SAFETY: SIOCGIFINDEX filled in the ifindex member.
    let i = unsafe { r.data.ifindex };
    u32::try_from(i).map_err(|_| io::Error::other("negative ifindex"))
}

/// The interface's MTU.
pub(crate) fn if_mtu(fd: RawFd, name: &str) -> io::Result<u32> {
    let mut r = IfReq::new(name)?;
    r.ioctl(fd, libc::SIOCGIFMTU)?;
    // SAFETY: SIOCGIFMTU filled in the mtu member.
    let m = unsafe { r.data.mtu };
    u32::try_from(m).map_err(|_| io::Error::other("negative MTU"))
}

/// Interface flags (`IFF_*`).
pub(crate) fn if_flags(fd: RawFd, name: &str) -> io::Result<u32> {
    let mut r = IfReq::new(name)?;
    r.ioctl(fd, uapi::SIOCGIFFLAGS)?;
    // SAFETY: SIOCGIFFLAGS filled in the flags member.
    Ok(unsafe { r.data.flags } as u16 as u32)
}

/// The interface's hardware address.
pub(crate) fn if_hwaddr(fd: RawFd, name: &str) -> io::Result<[u8; 6]> {
    let mut r = IfReq::new(name)?;
    r.ioctl(fd, uapi::SIOCGIFHWADDR)?;
    // SAFETY: SIOCGIFHWADDR filled in the sockaddr member.
    let sa = unsafe { r.data.hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(mac)
}

/// `SIOCETHTOOL` with `buf` (whose first `u32` is the ethtool command).
fn ethtool<T>(fd: RawFd, name: &str, buf: &mut T) -> io::Result<()> {
    let mut r = IfReq::new(name)?;
    r.data.ptr = (buf as *mut T).cast();
    // `buf` outlives the call, as IfReq::ioctl requires.
    r.ioctl(fd, uapi::SIOCETHTOOL)
}

/// Speed (Mbit/s, 0 = unknown) and full duplex, through `ETHTOOL_GSET`.
pub(crate) fn if_speed(fd: RawFd, name: &str) -> io::Result<(u32, bool)> {
    let mut cmd = EthtoolCmd {
        cmd: uapi::ETHTOOL_GSET,
        ..EthtoolCmd::default()
    };
    ethtool(fd, name, &mut cmd)?;
    let speed = u32::from(cmd.speed) | (u32::from(cmd.speed_hi) << 16);
    Ok((if speed == u32::MAX { 0 } else { speed }, cmd.duplex == 1))
}

/// The interface's channel counts (`ethtool -l`).
pub(crate) fn if_channels(fd: RawFd, name: &str) -> io::Result<EthtoolChannels> {
    let mut ch = EthtoolChannels {
        cmd: uapi::ETHTOOL_GCHANNELS,
        ..EthtoolChannels::default()
    };
    ethtool(fd, name, &mut ch)?;
    Ok(ch)
}

/// Adds or drops a `PACKET_MR_PROMISC` membership of the `AF_PACKET` socket `fd`
/// (the kernel drops it when the socket closes, also on a crash).
pub(crate) fn set_promisc(fd: RawFd, ifindex: u32, on: bool) -> io::Result<()> {
    let mreq = PacketMreq {
        mr_ifindex: ifindex as libc::c_int,
        mr_type: uapi::PACKET_MR_PROMISC,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    let opt = if on {
        uapi::PACKET_ADD_MEMBERSHIP
    } else {
        uapi::PACKET_DROP_MEMBERSHIP
    };
    setsockopt(fd, libc::SOL_PACKET, opt, &mreq)
}

/// The fd of an owned descriptor.
pub(crate) fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}
