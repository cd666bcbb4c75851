//! The system calls of the control path that only memif makes, each behind a safe
//! function: `SOCK_SEQPACKET` unix sockets (socket, socketpair, connect, bind, listen,
//! accept4, shutdown), sealed memfds (memfd_create, `F_ADD_SEALS`/`F_GET_SEALS`) and the
//! non-blocking flag. Messages with descriptors, eventfds and poll are
//! `pmd_core::unix`'s. Shared-memory accesses are not system calls: they stay with the
//! ring layout (`ring.rs`) and the data path (`rxtx.rs`).

use pmd_core::unix::{check, owned_fd};
use std::ffi::CStr;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// `len` bytes of `sa` as the kernel takes a socket address, or `EINVAL` if `len` is more
/// than the structure holds.
fn sockaddr(sa: &libc::sockaddr_un, len: libc::socklen_t) -> io::Result<*const libc::sockaddr> {
    if len as usize > size_of::<libc::sockaddr_un>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok((sa as *const libc::sockaddr_un).cast())
}

/// A new unix `SOCK_SEQPACKET` socket, close-on-exec.
pub(crate) fn seqpacket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers and returns a new descriptor.
    unsafe {
        owned_fd(libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
        ))
    }
}

/// Two connected unix `SOCK_SEQPACKET` sockets, close-on-exec.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [RawFd; 2] = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors the kernel writes.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded: both are new descriptors nobody else owns.
    unsafe { Ok((owned_fd(fds[0])?, owned_fd(fds[1])?)) }
}

/// Connects `sock` to the first `len` bytes of `sa`.
pub(crate) fn connect(
    sock: BorrowedFd<'_>,
    sa: &libc::sockaddr_un,
    len: libc::socklen_t,
) -> io::Result<()> {
    let sa = sockaddr(sa, len)?;
    // SAFETY: `sa` points at `len` bytes of a live sockaddr_un, which the kernel only reads.
    check(unsafe { libc::connect(sock.as_raw_fd(), sa, len) }).map(drop)
}

/// Binds `sock` to the first `len` bytes of `sa`.
pub(crate) fn bind(
    sock: BorrowedFd<'_>,
    sa: &libc::sockaddr_un,
    len: libc::socklen_t,
) -> io::Result<()> {
    let sa = sockaddr(sa, len)?;
    // SAFETY: as in `connect`.
    check(unsafe { libc::bind(sock.as_raw_fd(), sa, len) }).map(drop)
}

/// Lets `sock` accept connections, `backlog` of them pending at most.
pub(crate) fn listen(sock: BorrowedFd<'_>, backlog: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a live descriptor.
    check(unsafe { libc::listen(sock.as_raw_fd(), backlog) }).map(drop)
}

/// Accepts one connection on the listening `sock` (the new socket close-on-exec); blocks
/// unless one is pending or `sock` is non-blocking.
pub(crate) fn accept(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address arguments are allowed (the peer's address is not wanted);
    // accept4 returns a new descriptor.
    unsafe {
        owned_fd(libc::accept4(
            sock.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        ))
    }
}

/// Shuts both directions of `sock` down (the peer sees end-of-file).
pub(crate) fn shutdown(sock: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a live descriptor.
    check(unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RDWR) }).map(drop)
}

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
    fn oversized_addresses_are_refused() {
        let sa = libc::sockaddr_un {
            sun_family: libc::AF_UNIX as libc::sa_family_t,
            sun_path: [0; 108],
        };
        let s = seqpacket().unwrap();
        let len = size_of::<libc::sockaddr_un>() as libc::socklen_t + 1;
        let e = connect(s.as_fd(), &sa, len).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        let e = bind(s.as_fd(), &sa, len).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

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
