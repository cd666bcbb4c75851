//! The kernel side of the tap device: `/dev/net/tun` and its ioctls (`linux/if_tun.h`,
//! constants from `libc`) and the frame reads and writes, behind small safe wrappers.
//! Interface requests (index, flags, MTU, MAC, driver) are `pmd_core::netif`'s. Every
//! `unsafe` block of the crate lives here.

use pmd_core::netif::IfReq;
use pmd_core::unix::check;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

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
pub(crate) const TUN_PATH: &str = "/dev/net/tun";

// ---- tun fds ---------------------------------------------------------------------

/// Opens `/dev/net/tun`, non-blocking and close-on-exec (as `std` opens every file).
pub(crate) fn open_tun() -> io::Result<OwnedFd> {
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(TUN_PATH)?;
    Ok(tun.into())
}

/// Attaches `fd` to tap interface `name` (creating it if needed) with `flags`
/// (`IFF_TAP | IFF_NO_PI [| IFF_MULTI_QUEUE]`); returns the interface's actual name
/// (a `%d` in `name` is filled in by the kernel).
pub(crate) fn tun_set_iff(fd: &OwnedFd, name: &str, flags: libc::c_short) -> io::Result<String> {
    let mut r = IfReq::new(name)?;
    r.set_flags(flags);
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `r` is, alive and
    // writable for the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, r.as_mut_ptr()) })?;
    Ok(r.name())
}

/// Makes the interface of `fd` outlive its last fd (`on`), or not.
pub(crate) fn tun_set_persist(fd: &OwnedFd, on: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value.
    check(unsafe {
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
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF as _, r.as_mut_ptr()) })?;
    Ok(r.flags())
}

/// Sets the size of the virtio-net header in front of each frame (`TUNSETVNETHDRSZ`).
pub(crate) fn tun_set_vnet_hdr_sz(fd: &OwnedFd, size: libc::c_int) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which is live.
    check(unsafe {
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
    check(unsafe {
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
    check(n).map(|n| n as usize)
}

/// Most buffers one `readv`/`writev` takes (the kernel's `UIO_MAXIOV`).
pub(crate) const IOV_MAX: usize = crate::TX_MAX_SEGS as usize;

/// A reusable `iovec` array, allocated once per queue. Empty between calls: the addresses
/// of one [`readv`] or [`writev`] are not kept past it.
pub(crate) struct IoVecs(Vec<libc::iovec>);

// SAFETY: between calls the array is empty; during one it holds addresses of buffers the
// call borrows.
unsafe impl Send for IoVecs {}

impl IoVecs {
    /// An empty array with room for `n` entries (never grown past it on the data path).
    pub fn with_capacity(n: usize) -> IoVecs {
        IoVecs(Vec::with_capacity(n))
    }

    /// Fills the array with the buffers of `bufs`, in order (`EMSGSIZE` if there are more
    /// than its capacity or `IOV_MAX`), then makes `call` with it and empties it again.
    #[inline(always)]
    fn with<B: AsRef<[u8]>>(
        &mut self,
        bufs: impl Iterator<Item = B>,
        call: impl FnOnce(&[libc::iovec]) -> isize,
    ) -> io::Result<usize> {
        self.0.clear();
        let cap = self.0.capacity().min(IOV_MAX);
        for b in bufs {
            if self.0.len() == cap {
                self.0.clear();
                return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
            }
            let b = b.as_ref();
            self.0.push(libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            });
        }
        let n = call(&self.0);
        self.0.clear();
        check(n).map(|n| n as usize)
    }
}

impl std::fmt::Debug for IoVecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoVecs")
            .field("capacity", &self.0.capacity())
            .finish()
    }
}

/// Reads one frame scattered over `bufs` (in order) with one `readv`, using `iov` as the
/// array; returns the bytes copied. A frame larger than every buffer is cut short without
/// notice (tun returns the length copied, not the frame's): offer one byte more than a
/// frame may have to tell. `EMSGSIZE` without a system call if there are more buffers
/// than the array's capacity.
#[inline]
pub(crate) fn readv<'a>(
    fd: RawFd,
    iov: &mut IoVecs,
    bufs: impl Iterator<Item = &'a mut [u8]>,
) -> io::Result<usize> {
    iov.with(bufs, |v| {
        // SAFETY: every entry is a slice borrowed mutably for this call ('a outlives it),
        // so the kernel may write each one's length.
        unsafe { libc::readv(fd, v.as_ptr(), v.len() as libc::c_int) }
    })
}

/// Writes one frame gathered from `segs` (in order) with one `writev`, using `iov` as the
/// array; `EMSGSIZE` without a system call if there are more than its capacity.
#[inline]
pub(crate) fn writev<'a>(
    fd: RawFd,
    iov: &mut IoVecs,
    segs: impl Iterator<Item = &'a [u8]>,
) -> io::Result<usize> {
    iov.with(segs, |v| {
        // SAFETY: every entry is a slice borrowed for this call ('a outlives it); the
        // kernel only reads them.
        unsafe { libc::writev(fd, v.as_ptr(), v.len() as libc::c_int) }
    })
}
