//! The system calls of the control path that only memif makes, each behind a safe
//! function: sealed memfds (memfd_create, `F_ADD_SEALS`/`F_GET_SEALS`) and the
//! non-blocking flag. Sockets, messages with descriptors, eventfds and poll are
//! `pmd_core::unix`'s. Shared-memory accesses are not system calls: they stay with the
//! ring layout (`ring.rs`) and the data path (`rxtx.rs`).

use pmd_core::unix::{check, owned_fd};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// A new, empty memfd named `name` with `flags` (`MFD_*`).
pub(crate) fn memfd_create(name: &CStr, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a live NUL-terminated string the kernel only reads; memfd_create
    // returns a new descriptor.
    unsafe { owned_fd(libc::memfd_create(name.as_ptr(), flags)) }
}

/// Adds the seals `seals` (`F_SEAL_*`) to the memfd `fd`.
pub(crate) fn add_seals(fd: BorrowedFd<'_>, seals: libc::c_int) -> io::Result<()> {
    // SAFETY: F_ADD_SEALS takes an int by value.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map(drop)
}

/// The seals (`F_SEAL_*`) of `fd`; `EINVAL` if it is not a file that takes seals.
pub(crate) fn seals(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: F_GET_SEALS takes no argument.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) })
}

/// Makes reads and writes on `fd` non-blocking (`O_NONBLOCK`).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: F_SETFL takes an int by value.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn memfd_seals_and_flags() {
        let fd = memfd_create(c"sys-test", libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING).unwrap();
        assert_eq!(seals(fd.as_fd()).unwrap() & libc::F_SEAL_SHRINK, 0);
        add_seals(fd.as_fd(), libc::F_SEAL_SHRINK).unwrap();
        assert_ne!(seals(fd.as_fd()).unwrap() & libc::F_SEAL_SHRINK, 0);
        let (r, _w) = std::io::pipe().unwrap();
        assert!(seals(r.as_fd()).is_err(), "a pipe takes no seals");
        set_nonblocking(r.as_fd()).unwrap();
        let mut b = [0u8; 1];
        let e = std::io::Read::read(&mut &r, &mut b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }
}
