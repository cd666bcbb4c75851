//! The system calls the PCI backends make besides VFIO's ioctls (those are in
//! `vfio::ioctl`), each behind a safe function or type: `poll(2)` on interrupt
//! descriptors, `eventfd(2)`, the memlock limit and effective uid for DMA pinning, and the
//! address-space layout of a VFIO BAR ([`BarMapping`]).
//!
//! BAR mappings with sparse areas (typically the BAR holding the MSI-X table on older
//! kernels): the whole BAR is first reserved with an anonymous `PROT_NONE` mapping and only
//! the mmappable areas are mapped over it with `MAP_FIXED`. A stray access to a hole (e.g.
//! the MSI-X table) therefore faults cleanly (SIGSEGV) instead of touching whatever else
//! might have been mapped at that address. These two mappings use `mmap(2)` directly:
//! `memmap2` offers neither a `PROT_NONE` reservation nor `MAP_FIXED`.

use super::error::PciError;
use crate::error::Result;
use crate::memory;
use crate::unix;
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// For `IrqWait` implementations: waits until `fd` is readable or `timeout_ms` passes;
/// false on timeout or EINTR.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> Result<bool> {
    let mut p = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    let r = match unix::poll(&mut p, timeout_ms) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(false),
        Err(e) => return Err(PciError::io("poll on interrupt fd", e).into()),
    };
    if r > 0 && p[0].revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
        return Err(PciError::PollError.into());
    }
    Ok(r > 0 && p[0].revents & libc::POLLIN != 0)
}

/// A new non-blocking, close-on-exec eventfd with a zero count.
pub(crate) fn eventfd_nonblocking() -> std::io::Result<File> {
    unix::eventfd().map(File::from)
}

/// The soft `RLIMIT_MEMLOCK` in bytes (None: unlimited or unreadable).
pub(crate) fn memlock_soft_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid rlimit for the kernel to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0
        || r.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(r.rlim_cur)
}

/// Whether the process runs as root (effective uid 0).
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A reserved address range covering one BAR, with the mmappable parts of the BAR mapped
/// over it; the rest stays `PROT_NONE`. Unmapped (all of it) on drop.
#[derive(Debug)]
pub(crate) struct BarMapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is only an address range owned by this value; accesses go through
// MmioRegion's volatile reads and writes.
unsafe impl Send for BarMapping {}
// SAFETY: as above.
unsafe impl Sync for BarMapping {}

impl BarMapping {
    /// Reserves `len` bytes (a multiple of the page size) of address space, inaccessible.
    pub(crate) fn reserve(len: usize) -> std::io::Result<BarMapping> {
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses; it overlaps
        // nothing of ours.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(p as *mut u8)
            .ok_or_else(|| std::io::Error::other("mmap returned NULL"))?;
        Ok(BarMapping { base, len })
    }

    /// The start of the reservation.
    pub(crate) fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Maps `len` bytes of `fd` at `file_offset` read/write over the reservation at
    /// `offset` (page-aligned; `len` is rounded up to pages and must stay inside).
    pub(crate) fn map_area(
        &mut self,
        offset: usize,
        len: usize,
        fd: BorrowedFd<'_>,
        file_offset: u64,
    ) -> std::io::Result<()> {
        let page = memory::page_size_4k();
        let len = len.div_ceil(page) * page;
        if !offset.is_multiple_of(page) || offset.checked_add(len).is_none_or(|e| e > self.len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "area {offset:#x}+{len:#x} outside the {:#x}-byte reservation",
                    self.len
                ),
            ));
        }
        let off = libc::off_t::try_from(file_offset).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "file offset too large")
        })?;
        // SAFETY: base+offset..+len lies inside our own PROT_NONE reservation (checked
        // above), which nothing else uses, so MAP_FIXED replaces only that.
        let want = unsafe { self.base.as_ptr().add(offset) };
        // SAFETY: see above; fd is a live descriptor for the duration of the call.
        let p = unsafe {
            libc::mmap(
                want as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        if p as *mut u8 != want {
            return Err(std::io::Error::other("MAP_FIXED mapped at another address"));
        }
        Ok(())
    }
}

impl Drop for BarMapping {
    fn drop(&mut self) {
        // SAFETY: the whole range is ours (the reservation plus areas mapped over it);
        // no MmioRegion refers to it any more (they hold the Arc that owns us).
        unsafe { libc::munmap(self.base.as_ptr() as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::FileExt;

    #[test]
    fn poll_readable_sees_data_and_times_out() {
        let (mut tx, rx) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(!poll_readable(rx.as_fd(), 0).unwrap(), "nothing sent yet");
        tx.write_all(b"x").unwrap();
        assert!(poll_readable(rx.as_fd(), 1000).unwrap());
    }

    #[test]
    fn eventfds_start_quiet_and_limits_read() {
        let e = eventfd_nonblocking().unwrap();
        assert!(!poll_readable(e.as_fd(), 0).unwrap());
        (&e).write_all(&1u64.to_ne_bytes()).unwrap();
        assert!(poll_readable(e.as_fd(), 0).unwrap());
        if let Some(l) = memlock_soft_limit() {
            assert!(l > 0);
        }
        let _ = is_root();
    }

    #[test]
    fn bar_reservation_maps_areas_and_rejects_outside() {
        let page = memory::page_size_4k();
        let mut m = BarMapping::reserve(4 * page).unwrap();
        // Map a memfd over the second page: readable/writable afterwards.
        // SAFETY: valid NUL-terminated name.
        let fd = unsafe { libc::memfd_create(c"pmd-bar-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: fresh descriptor we own.
        let f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        f.set_len(page as u64).unwrap();
        m.map_area(page, 16, f.as_fd(), 0).unwrap();
        // SAFETY: the second page is now a shared RW mapping of the memfd.
        unsafe { m.base.as_ptr().add(page).write_volatile(42) };
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(b[0], 42);
        assert!(m.map_area(4 * page, page, f.as_fd(), 0).is_err(), "outside");
        assert!(
            m.map_area(3 * page, 2 * page, f.as_fd(), 0).is_err(),
            "runs past"
        );
        assert!(m.map_area(1, page, f.as_fd(), 0).is_err(), "unaligned");
    }
}
