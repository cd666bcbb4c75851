//! The system calls of the control path that only memif makes, each behind a safe
//! function: the non-blocking flag. Sealed memfds, sockets, messages with descriptors,
//! eventfds and poll are `pmd_core::unix`'s. Shared-memory accesses are not system calls: they stay with the
//! ring layout (`ring.rs`) and the data path (`rxtx.rs`).

use pmd_core::unix::check;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

pub(crate) use pmd_core::unix::memfd::{add_seals, create as memfd_create, seals};

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
