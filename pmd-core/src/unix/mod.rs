//! Unix system-call plumbing shared by the crates' `sys` modules and by the drivers that
//! talk to another process over a unix socket (memif, vhost-user): the result of a system
//! call as an [`io::Result`] ([`check`], [`owned_fd`]), messages that carry file
//! descriptors (`SCM_RIGHTS`, unix(7)), eventfds (eventfd(2)) as doorbells, waiting on
//! descriptors (poll(2), and epoll(7) in [`Epoll`]), periodic timers ([`Timer`]), and a
//! listening socket at a path ([`Listener`]). Each system call is behind a safe function;
//! every `unsafe` block these need is in this module.
//!
//! Descriptors to send are given as [`RawFd`]s: the kernel checks each one (`EBADF`), so a
//! wrong number cannot touch our memory. Received descriptors come back as [`OwnedFd`]s,
//! close-on-exec, so none leaks whatever the caller does with the message.

mod epoll;
mod listener;
pub mod memfd;
pub mod seqpacket;

pub use epoll::{Epoll, Timer, Watched};
pub use listener::{ListenError, Listener};

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Most descriptors one message carries: the kernel's `SCM_MAX_FD` (include/net/scm.h).
/// A message received with more has the rest closed by the kernel and
/// [`Received::fds_truncated`] set.
pub const MAX_FDS: usize = 253;

/// Bytes of ancillary data for one `SCM_RIGHTS` message of [`MAX_FDS`] descriptors.
// SAFETY: CMSG_SPACE is a size computation; it touches no memory.
const CONTROL_LEN: usize =
    unsafe { libc::CMSG_SPACE((MAX_FDS * size_of::<RawFd>()) as u32) } as usize;

/// An ancillary-data buffer aligned for `struct cmsghdr` (whose first member is a
/// `size_t`).
#[repr(C, align(8))]
struct ControlBuf([u8; CONTROL_LEN]);

const _: () = assert!(std::mem::align_of::<ControlBuf>() >= std::mem::align_of::<libc::cmsghdr>());

/// The value a system call returned, or the error it reported: a negative return means
/// failure, with the reason in `errno` (read at once, before another call can change it).
#[inline]
pub fn check<T: Copy + Default + PartialOrd>(rc: T) -> io::Result<T> {
    if rc < T::default() {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The descriptor a system call that creates one returned, now owned (closed on drop), or
/// the error it reported.
///
/// # Safety
/// `rc` must be what a call that returns a new descriptor on success (`socket`, `open`,
/// `accept4`, `eventfd`, ...) just returned, or one such descriptor that nothing else
/// owns or closes.
#[inline]
pub unsafe fn owned_fd(rc: libc::c_int) -> io::Result<OwnedFd> {
    let fd = check(rc)?;
    // SAFETY: the caller's contract: a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A `msghdr` over one buffer, without ancillary data.
fn msghdr(iov: &mut libc::iovec) -> libc::msghdr {
    // SAFETY: `msghdr` is pointers and integers, for which all-zero bytes are a valid
    // value (null pointers, zero lengths); glibc's has private padding fields, so it
    // cannot be written as a literal.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_iov = iov;
    mh.msg_iovlen = 1;
    mh
}

/// Sends `bytes` as one message on the connected unix socket `sock`, with `fds` as one
/// `SCM_RIGHTS` control message when there are any. Never raises `SIGPIPE` (a closed peer
/// is `EPIPE`); retried on `EINTR`. A message the kernel takes only in part is an error
/// (`WriteZero`), as are more than [`MAX_FDS`] descriptors (`InvalidInput`).
pub fn send_with_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} file descriptors, at most {MAX_FDS}", fds.len()),
        ));
    }
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut ctl = ControlBuf([0; CONTROL_LEN]);
    let mut mh = msghdr(&mut iov);
    if !fds.is_empty() {
        let fd_bytes = size_of_val(fds) as u32;
        // SAFETY: a size computation.
        mh.msg_controllen = unsafe { libc::CMSG_SPACE(fd_bytes) } as _;
        mh.msg_control = ctl.0.as_mut_ptr().cast();
        // SAFETY: `msg_control` points at `msg_controllen` bytes of `ctl` (at most
        // CONTROL_LEN, as fds.len() <= MAX_FDS), aligned for a cmsghdr, so CMSG_FIRSTHDR
        // is a non-null header inside it whose data area holds `fd_bytes` bytes.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&mh);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(fd_bytes) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(c),
                fd_bytes as usize,
            );
        }
    }
    let sent = loop {
        // SAFETY: `mh` describes live buffers (`bytes`, read only, and `ctl`) for the call.
        match check(unsafe { libc::sendmsg(sock.as_raw_fd(), &mh, libc::MSG_NOSIGNAL) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r? as usize,
        }
    };
    if sent != bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short send: {sent} of {} bytes", bytes.len()),
        ));
    }
    Ok(())
}

/// What [`recv_with_fds`] received.
#[derive(Debug)]
pub struct Received {
    /// Bytes written to the buffer; 0 means the peer closed the connection.
    pub len: usize,
    /// The datagram was longer than the buffer (`MSG_TRUNC`; the rest is lost).
    pub truncated: bool,
    /// Descriptors that came with the message, in order, close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// More descriptors were sent than fit (`MSG_CTRUNC`; the kernel closed the rest).
    pub fds_truncated: bool,
}

/// Receives one message (one datagram on a datagram or seqpacket socket; what is there,
/// up to `buf.len()` bytes, on a stream socket) and the descriptors sent with it, from
/// the unix socket `sock`. Blocks unless the socket is non-blocking or has a timeout;
/// retried on `EINTR`.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut ctl = ControlBuf([0; CONTROL_LEN]);
    let mut mh = msghdr(&mut iov);
    mh.msg_control = ctl.0.as_mut_ptr().cast();
    mh.msg_controllen = CONTROL_LEN as _;
    let len = loop {
        // SAFETY: `mh` describes live, writable buffers (`buf` and `ctl`) of the lengths
        // given; received descriptors are made close-on-exec.
        match check(unsafe { libc::recvmsg(sock.as_raw_fd(), &mut mh, libc::MSG_CMSG_CLOEXEC) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r? as usize,
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the walk stays within the `msg_controllen` bytes of `ctl` the kernel wrote
    // (CMSG_FIRSTHDR/CMSG_NXTHDR return null past them); each header is the kernel's, and
    // the payload of an SCM_RIGHTS one is an array of descriptors that are now ours.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&mh);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let header = data.offset_from(c.cast::<u8>()) as usize;
                let count = ((*c).cmsg_len as usize).saturating_sub(header) / size_of::<RawFd>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    if fd >= 0 {
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&mh, c);
        }
    }
    Ok(Received {
        len,
        truncated: mh.msg_flags & libc::MSG_TRUNC != 0,
        fds,
        fds_truncated: mh.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

/// A new eventfd: count zero, non-blocking, close-on-exec.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers and returns a new descriptor.
    unsafe { owned_fd(libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)) }
}

/// Adds one to the count of the eventfd `fd` (rings the doorbell). A full count
/// (`EAGAIN` on a non-blocking eventfd) means a signal is already pending, so it is not
/// an error.
#[inline]
pub fn eventfd_signal(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one = 1u64;
    // SAFETY: the kernel reads the 8 bytes of a live u64.
    let rc = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    match check(rc) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        r => r.map(drop),
    }
}

/// Reads and resets the count of the non-blocking eventfd (or timerfd) `fd`: how many
/// signals were pending, 0 if none (or if the read failed: nothing is pending then that
/// a caller could act on).
pub fn eventfd_drain(fd: BorrowedFd<'_>) -> u64 {
    let mut n = 0u64;
    // SAFETY: the kernel writes at most the 8 bytes of a live u64.
    let rc = unsafe { libc::read(fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
    if rc == 8 {
        n
    } else {
        0
    }
}

/// `poll(2)`: waits up to `timeout_ms` (-1: forever) for an event on any of `fds`, and
/// returns how many have one (0 on timeout); each entry's `revents` says which. An entry
/// with a negative `fd` is ignored. `EINTR` is returned as an error (kind `Interrupted`)
/// for the caller to decide.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a live, writable array of `fds.len()` pollfds for the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    check(rc).map(|n| n as usize)
}

/// Whether `fd` is readable, or becomes so within `timeout` (0: a look now): poll(2) for
/// POLLIN, resumed with the time left after a signal.
pub fn readable(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<bool> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut p = [libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        match poll(&mut p, ms) {
            Ok(n) => return Ok(n > 0 && p[0].revents & libc::POLLIN != 0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::{UnixDatagram, UnixStream};

    #[test]
    fn descriptors_travel_with_the_message() {
        let (a, b) = UnixStream::pair().unwrap();
        let f = std::fs::File::open("/dev/null").unwrap();
        let e = eventfd().unwrap();
        send_with_fds(a.as_fd(), b"hello", &[f.as_raw_fd(), e.as_raw_fd()]).unwrap();
        let mut buf = [0u8; 16];
        let got = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..got.len], b"hello");
        assert!(!got.truncated && !got.fds_truncated);
        assert_eq!(got.fds.len(), 2);
        // The second one is the same eventfd: a signal through it shows on ours.
        eventfd_signal(got.fds[1].as_fd()).unwrap();
        let mut p = [libc::pollfd {
            fd: e.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        assert_eq!(poll(&mut p, 0).unwrap(), 1);
        let cloexec =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", got.fds[0].as_raw_fd()))
                .unwrap();
        let flags = cloexec
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
            .unwrap();
        assert_ne!(
            flags & libc::O_CLOEXEC as u32,
            0,
            "received fds are close-on-exec"
        );
        drop(a);
        assert_eq!(recv_with_fds(b.as_fd(), &mut buf).unwrap().len, 0, "EOF");
    }

    #[test]
    fn truncation_and_limits_are_reported() {
        let (a, b) = UnixDatagram::pair().unwrap();
        send_with_fds(a.as_fd(), &[1u8; 300], &[]).unwrap();
        let mut buf = [0u8; 256];
        let got = recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert!(got.truncated && got.fds.is_empty());
        assert_eq!(got.len, 256);
        let too_many = vec![0; MAX_FDS + 1];
        let e = send_with_fds(a.as_fd(), b"x", &too_many).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = send_with_fds(a.as_fd(), b"x", &[-1]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn eventfd_counts_saturate_quietly() {
        let e = eventfd().unwrap();
        let mut p = [libc::pollfd {
            fd: e.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        assert_eq!(poll(&mut p, 0).unwrap(), 0, "starts quiet");
        // Raise the count to its maximum (0xffff_ffff_ffff_fffe): one more signal would
        // block, which counts as delivered.
        let mut f = std::fs::File::from(e.try_clone().unwrap());
        f.write_all(&(u64::MAX - 1).to_ne_bytes()).unwrap();
        eventfd_signal(e.as_fd()).unwrap();
        assert_eq!(poll(&mut p, 0).unwrap(), 1);
        assert_ne!(p[0].revents & libc::POLLIN, 0);
    }
}
