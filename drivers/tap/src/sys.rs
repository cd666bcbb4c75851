//! The kernel side: `/dev/net/tun` and interface ioctls (from `linux/if_tun.h`,
//! `linux/sockios.h`, `linux/ethtool.h`) behind small safe wrappers. Every `unsafe` block
//! of the crate lives here.

use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// ---- if_tun.h --------------------------------------------------------------------

const TUNSETIFF: u64 = 0x4004_54ca;
const TUNSETPERSIST: u64 = 0x4004_54cb;
/// Layer-2 (Ethernet) device.
pub(crate) const IFF_TAP: libc::c_short = 0x0002;
/// No packet information header in front of each frame.
pub(crate) const IFF_NO_PI: libc::c_short = 0x1000;
/// One fd per queue.
pub(crate) const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
/// Every frame read or written is preceded by a `struct virtio_net_hdr`.
pub(crate) const IFF_VNET_HDR: libc::c_short = libc::IFF_VNET_HDR as libc::c_short;

/// The tun character device.
pub(crate) const TUN_PATH: &CStr = c"/dev/net/tun";

// ---- sockios.h / if.h / ethtool.h ------------------------------------------------

const SIOCGIFFLAGS: u64 = 0x8913;
const SIOCGIFMTU: u64 = 0x8921;
const SIOCSIFMTU: u64 = 0x8922;
const SIOCSIFFLAGS: u64 = 0x8914;
const SIOCSIFHWADDR: u64 = 0x8924;
const SIOCGIFHWADDR: u64 = 0x8927;
const SIOCGIFINDEX: u64 = 0x8933;
const SIOCETHTOOL: u64 = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x3;
const ARPHRD_ETHER: libc::sa_family_t = 1;
/// Longest interface name (IFNAMSIZ - 1).
pub(crate) const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

/// `struct ifreq` (name plus the union, 40 bytes on 64-bit targets).
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

    fn name(&self) -> String {
        let bytes: Vec<u8> = self
            .name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// `struct ethtool_drvinfo`.
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

const _: () = assert!(size_of::<EthtoolDrvinfo>() == 196);

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn ioctl_ifreq(fd: RawFd, req: u64, r: &mut IfReq) -> io::Result<()> {
    // SAFETY: every request used with this helper reads and/or writes one `struct ifreq`,
    // which `r` is, alive and writable for the duration of the call.
    cvt(unsafe { libc::ioctl(fd, req as _, r as *mut IfReq) }).map(drop)
}

// ---- tun fds ---------------------------------------------------------------------

/// Opens `/dev/net/tun`, non-blocking and close-on-exec.
pub(crate) fn open_tun() -> io::Result<OwnedFd> {
    // SAFETY: a constant NUL-terminated path and plain flags.
    let fd = cvt(unsafe {
        libc::open(
            TUN_PATH.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `fd` was just returned by open() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attaches `fd` to tap interface `name` (creating it if needed) with `flags`
/// (`IFF_TAP | IFF_NO_PI [| IFF_MULTI_QUEUE]`); returns the interface's actual name
/// (a `%d` in `name` is filled in by the kernel).
pub(crate) fn tun_set_iff(fd: &OwnedFd, name: &str, flags: libc::c_short) -> io::Result<String> {
    let mut r = IfReq::new(name)?;
    r.data.flags = flags;
    ioctl_ifreq(fd.as_raw_fd(), TUNSETIFF, &mut r)?;
    Ok(r.name())
}

/// Makes the interface of `fd` outlive its last fd (`on`), or not.
pub(crate) fn tun_set_persist(fd: &OwnedFd, on: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETPERSIST as _, libc::c_ulong::from(on)) })
        .map(drop)
}

/// The interface's flags as the kernel keeps them (`TUNGETIFF`): what the device really
/// does (e.g. whether it has `IFF_VNET_HDR`), whatever the last attach asked for.
pub(crate) fn tun_get_flags(fd: &OwnedFd) -> io::Result<libc::c_short> {
    let mut r = IfReq::new("x")?;
    // SAFETY: TUNGETIFF writes one `struct ifreq`, which `r` is, alive and writable.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF as _, &mut r as *mut IfReq) })?;
    // SAFETY: the kernel filled in the flags member.
    Ok(unsafe { r.data.flags })
}

/// Sets the size of the virtio-net header in front of each frame (`TUNSETVNETHDRSZ`).
pub(crate) fn tun_set_vnet_hdr_sz(fd: &OwnedFd, size: libc::c_int) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which is live.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETVNETHDRSZ as _,
            &size as *const libc::c_int,
        )
    })
    .map(drop)
}

/// Tells the kernel which offloads the reader handles (`TUNSETOFFLOAD`, `TUN_F_*`): what
/// it may hand over with partial checksums or as GSO super-frames.
pub(crate) fn tun_set_offload(fd: &OwnedFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD as _,
            libc::c_ulong::from(flags),
        )
    })
    .map(drop)
}

/// Writes one frame.
#[inline(always)]
pub(crate) fn write(fd: RawFd, frame: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads `frame.len()` bytes from `frame`, which is live.
    let n = unsafe { libc::write(fd, frame.as_ptr().cast(), frame.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Most buffers one `readv`/`writev` takes (the kernel's `UIO_MAXIOV`).
pub(crate) const IOV_MAX: usize = crate::TX_MAX_SEGS as usize;

/// A reusable `iovec` array, allocated once per queue. The addresses it holds are only
/// meaningful while the buffers they were taken from are alive and unused elsewhere.
pub(crate) struct IoVecs(Vec<libc::iovec>);

// SAFETY: plain addresses; the queue that owns an `IoVecs` also owns (or borrows for the
// call) every buffer they point at, and only uses them inside the system call.
unsafe impl Send for IoVecs {}

impl IoVecs {
    /// An empty array with room for `n` entries (never grown past it on the data path).
    pub fn with_capacity(n: usize) -> IoVecs {
        IoVecs(Vec::with_capacity(n))
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Appends a buffer the kernel may write into.
    pub fn push_mut(&mut self, buf: &mut [u8]) {
        self.0.push(libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        });
    }

    /// Replaces entry `i` (< len) with a buffer the kernel may write into.
    #[inline(always)]
    pub fn set_mut(&mut self, i: usize, buf: &mut [u8]) {
        self.0[i] = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
    }
}

impl std::fmt::Debug for IoVecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoVecs")
            .field("len", &self.0.len())
            .finish()
    }
}

/// Reads one frame scattered over the buffers of `iov`, in order; returns the bytes copied.
/// A frame larger than every buffer is cut short without notice (tun returns the length
/// copied, not the frame's): offer one byte more than a frame may have to tell.
///
/// # Safety
/// Every entry of `iov` must describe live, writable memory that nothing else reads or
/// writes during the call.
#[inline]
pub(crate) unsafe fn readv(fd: RawFd, iov: &IoVecs) -> io::Result<usize> {
    // SAFETY: the caller vouches for every buffer; the kernel writes at most their lengths.
    let n = unsafe { libc::readv(fd, iov.0.as_ptr(), iov.0.len() as libc::c_int) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Writes one frame gathered from `segs` (in order) with one `writev`, using `iov` as the
/// array; `EMSGSIZE` without a system call if there are more than its capacity.
#[inline]
pub(crate) fn writev<'a>(
    fd: RawFd,
    iov: &mut IoVecs,
    segs: impl Iterator<Item = &'a [u8]>,
) -> io::Result<usize> {
    iov.0.clear();
    let cap = iov.0.capacity().min(IOV_MAX);
    for s in segs {
        if iov.0.len() == cap {
            iov.0.clear();
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        iov.0.push(libc::iovec {
            iov_base: s.as_ptr() as *mut libc::c_void,
            iov_len: s.len(),
        });
    }
    // SAFETY: every entry points at a slice borrowed for this call ('a outlives it); the
    // kernel only reads them.
    let n = unsafe { libc::writev(fd, iov.0.as_ptr(), iov.0.len() as libc::c_int) };
    // The addresses are not kept past the borrow.
    iov.0.clear();
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

// ---- interface ioctls ------------------------------------------------------------

/// A datagram socket for interface ioctls (receives nothing).
pub(crate) fn ctrl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Interface index of `name` in the network namespace of `fd`.
pub(crate) fn if_index(fd: &OwnedFd, name: &str) -> io::Result<libc::c_int> {
    let mut r = IfReq::new(name)?;
    ioctl_ifreq(fd.as_raw_fd(), SIOCGIFINDEX, &mut r)?;
    // SAFETY: the kernel filled in the ifindex member.
    Ok(unsafe { r.data.ifindex })
}

/// Interface flags (`IFF_*`).
pub(crate) fn if_flags(fd: &OwnedFd, name: &str) -> io::Result<u32> {
    let mut r = IfReq::new(name)?;
    ioctl_ifreq(fd.as_raw_fd(), SIOCGIFFLAGS, &mut r)?;
    // SAFETY: the kernel filled in the flags member.
    Ok(unsafe { r.data.flags } as u16 as u32)
}

/// Sets (`on`) or clears the interface flag bits `mask`.
pub(crate) fn if_set_flags(fd: &OwnedFd, name: &str, mask: u32, on: bool) -> io::Result<()> {
    let old = if_flags(fd, name)?;
    let new = if on { old | mask } else { old & !mask };
    if new == old {
        return Ok(());
    }
    let mut r = IfReq::new(name)?;
    r.data.flags = new as u16 as libc::c_short;
    ioctl_ifreq(fd.as_raw_fd(), SIOCSIFFLAGS, &mut r)
}

/// MTU of the interface.
pub(crate) fn if_mtu(fd: &OwnedFd, name: &str) -> io::Result<u32> {
    let mut r = IfReq::new(name)?;
    ioctl_ifreq(fd.as_raw_fd(), SIOCGIFMTU, &mut r)?;
    // SAFETY: the kernel filled in the mtu member.
    Ok(unsafe { r.data.mtu } as u32)
}

/// Sets the MTU of the interface.
pub(crate) fn if_set_mtu(fd: &OwnedFd, name: &str, mtu: u16) -> io::Result<()> {
    let mut r = IfReq::new(name)?;
    r.data.mtu = libc::c_int::from(mtu);
    ioctl_ifreq(fd.as_raw_fd(), SIOCSIFMTU, &mut r)
}

/// Hardware address of the interface.
pub(crate) fn if_hwaddr(fd: &OwnedFd, name: &str) -> io::Result<[u8; 6]> {
    let mut r = IfReq::new(name)?;
    ioctl_ifreq(fd.as_raw_fd(), SIOCGIFHWADDR, &mut r)?;
    // SAFETY: the kernel filled in the sockaddr member.
    let sa = unsafe { r.data.hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(mac)
}

/// Sets the hardware address of the interface.
pub(crate) fn if_set_hwaddr(fd: &OwnedFd, name: &str, mac: [u8; 6]) -> io::Result<()> {
    let mut r = IfReq::new(name)?;
    // SAFETY: all-zero is a valid sockaddr.
    let mut sa: libc::sockaddr = unsafe { std::mem::zeroed() };
    sa.sa_family = ARPHRD_ETHER;
    for (d, s) in sa.sa_data.iter_mut().zip(mac) {
        *d = s as libc::c_char;
    }
    r.data.hwaddr = sa;
    ioctl_ifreq(fd.as_raw_fd(), SIOCSIFHWADDR, &mut r)
}

/// The kernel driver of an interface and its bus info (ETHTOOL_GDRVINFO): a tap device
/// says `("tun", "tap")`, a tun device `("tun", "tun")`.
pub(crate) fn if_driver(fd: &OwnedFd, name: &str) -> io::Result<(String, String)> {
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    let mut r = IfReq::new(name)?;
    r.data.ptr = (&mut info as *mut EthtoolDrvinfo).cast();
    ioctl_ifreq(fd.as_raw_fd(), SIOCETHTOOL, &mut r)?;
    let s = |b: &[u8]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    Ok((s(&info.driver), s(&info.bus_info)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_names() {
        assert!(IfReq::new("").is_err());
        assert!(IfReq::new("abcdefghijklmnop").is_err());
        assert_eq!(IfReq::new("dtap0").unwrap().name(), "dtap0");
        assert_eq!(
            IfReq::new("abcdefghijklmno").unwrap().name(),
            "abcdefghijklmno"
        );
    }
}
