//! Memory files shared with another process (memfd_create(2)) and their seals
//! (`F_ADD_SEALS`/`F_GET_SEALS`, fcntl(2)): a peer that maps a memfd sealed against
//! shrinking cannot turn our accesses into SIGBUS by truncating it.

use super::{check, owned_fd};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// A new, empty memfd named `name` with `flags` (`MFD_*`).
pub fn create(name: &CStr, flags: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a live NUL-terminated string the kernel only reads; memfd_create
    // returns a new descriptor.
    unsafe { owned_fd(libc::memfd_create(name.as_ptr(), flags)) }
}

/// Adds the seals `seals` (`F_SEAL_*`) to the memfd `fd`.
pub fn add_seals(fd: BorrowedFd<'_>, seals: libc::c_int) -> io::Result<()> {
    // SAFETY: F_ADD_SEALS takes an int by value.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map(drop)
}

/// The seals (`F_SEAL_*`) of `fd`; `EINVAL` if it is not a file that takes seals.
pub fn seals(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: F_GET_SEALS takes no argument.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn seals_are_added_and_read_back() {
        let fd = create(c"memfd-test", libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING).unwrap();
        assert_eq!(seals(fd.as_fd()).unwrap() & libc::F_SEAL_SHRINK, 0);
        add_seals(fd.as_fd(), libc::F_SEAL_SHRINK).unwrap();
        assert_ne!(seals(fd.as_fd()).unwrap() & libc::F_SEAL_SHRINK, 0);
        let (r, _w) = std::io::pipe().unwrap();
        assert!(seals(r.as_fd()).is_err(), "a pipe takes no seals");
    }
}
