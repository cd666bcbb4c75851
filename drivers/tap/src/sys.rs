//! The kernel side of the tap device: `/dev/net/tun` and its ioctls (`linux/if_tun.h`,
//! constants from `libc`) and the frame reads and writes, behind small safe wrappers.
//! Interface requests (index, flags, MTU, MAC, driver) are `pmd_core::netif`'s. Every
//! `unsafe` block of the crate lives here.

use pmd_core::netif::IfReq;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub(crate) use pmd_core::netif::IFNAME_MAX;

/// Layer-2 (Ethernet) device.
pub(crate) const IFF_TAP: libc::c_short = libc::IFF_TAP as libc::c_short;
/// No packet information header in front of each frame.
pub(crate) const IFF_NO_PI: libc::c_short = libc::IFF_NO_PI as libc::c_short;
/// One fd per queue.
pub(crate) const IFF_MULTI_QUEUE: libc::c_short = libc::IFF_MULTI_QUEUE as libc::c_short;
/// Every frame read or written is preceded by a `struct virtio_net_hdr`.
pub(crate) const IFF_VNET_HDR: libc::c_short = libc::IFF_VNET_HDR as libc::c_short;

/// The tun character device.
pub(crate) const TUN_PATH: &CStr = c"/dev/net/tun";

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
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
    r.set_flags(flags);
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `r` is, alive and
    // writable for the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, r.as_mut_ptr()) })?;
    Ok(r.name())
}

/// Makes the interface of `fd` outlive its last fd (`on`), or not.
pub(crate) fn tun_set_persist(fd: &OwnedFd, on: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETPERSIST as _,
            libc::c_ulong::from(on),
        )
    })
    .map(drop)
}

/// The interface's flags as the kernel keeps them (`TUNGETIFF`): what the device really
/// does (e.g. whether it has `IFF_VNET_HDR`), whatever the last attach asked for.
pub(crate) fn tun_get_flags(fd: &OwnedFd) -> io::Result<libc::c_short> {
    let mut r = IfReq::new("x")?;
    // SAFETY: TUNGETIFF writes one `struct ifreq`, which `r` is, alive and writable.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF as _, r.as_mut_ptr()) })?;
    Ok(r.flags())
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
