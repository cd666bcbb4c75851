//! Unix `SOCK_SEQPACKET` sockets (a filesystem path or an abstract name): one datagram
//! per message, file descriptors as `SCM_RIGHTS`. What memif's control channel and the
//! telemetry socket speak. The system calls (socket, socketpair, connect, bind, listen,
//! accept4, shutdown) are here, each behind a safe function.

use super::{check, owned_fd, Received};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// A socket address: a path, or a name in the abstract namespace (DPDK's
/// `socket-abstract=yes`, its default: the name is the path string without a trailing NUL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SockAddr {
    /// A filesystem path.
    Path(PathBuf),
    /// An abstract-namespace name.
    Abstract(String),
}

impl std::fmt::Display for SockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SockAddr::Path(p) => write!(f, "{}", p.display()),
            SockAddr::Abstract(n) => write!(f, "@{n}"),
        }
    }
}

impl SockAddr {
    /// Longest name that fits `sun_path` (with a leading NUL for abstract names, a
    /// trailing one for paths): 107 bytes.
    pub const MAX_LEN: usize =
        std::mem::size_of::<libc::sockaddr_un>() - std::mem::size_of::<libc::sa_family_t>() - 1;

    fn raw(&self) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
        let mut sa = libc::sockaddr_un {
            sun_family: libc::AF_UNIX as libc::sa_family_t,
            sun_path: [0; 108],
        };
        let (bytes, start) = match self {
            SockAddr::Path(p) => (p.as_os_str().as_encoded_bytes(), 0),
            SockAddr::Abstract(n) => (n.as_bytes(), 1),
        };
        if bytes.is_empty() || bytes.len() > Self::MAX_LEN || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "socket name {self} is empty, has a NUL or is longer than {} bytes",
                    Self::MAX_LEN
                ),
            ));
        }
        for (d, &s) in sa.sun_path[start..].iter_mut().zip(bytes) {
            *d = s as libc::c_char;
        }
        let path_len = start + bytes.len() + usize::from(start == 0);
        let len = std::mem::size_of::<libc::sa_family_t>() + path_len;
        Ok((sa, len as libc::socklen_t))
    }

    fn path(&self) -> Option<&Path> {
        match self {
            SockAddr::Path(p) => Some(p),
            SockAddr::Abstract(_) => None,
        }
    }
}

/// Waits up to `timeout_ms` for `fd` to be readable (or hung up); true if it is.
pub fn wait_readable(fd: RawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    match super::poll(&mut p, timeout_ms) {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// A connected `SOCK_SEQPACKET` socket: one datagram per message.
#[derive(Debug)]
pub struct SeqPacket {
    fd: OwnedFd,
}

impl SeqPacket {
    /// Connects to a listening socket.
    pub fn connect(addr: &SockAddr) -> io::Result<SeqPacket> {
        let fd = seqpacket()?;
        let (sa, len) = addr.raw()?;
        connect(fd.as_fd(), &sa, len)?;
        Ok(SeqPacket { fd })
    }

    /// Wraps a connected descriptor (e.g. one end of `socketpair`).
    pub fn from_fd(fd: OwnedFd) -> SeqPacket {
        SeqPacket { fd }
    }

    /// A connected pair, for tests.
    pub fn pair() -> io::Result<(SeqPacket, SeqPacket)> {
        let (a, b) = seqpacket_pair()?;
        Ok((SeqPacket::from_fd(a), SeqPacket::from_fd(b)))
    }

    /// The descriptor (for polling).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Sends one datagram with at most one descriptor. Never raises SIGPIPE.
    pub fn send(&self, msg: &[u8], fd: Option<RawFd>) -> io::Result<()> {
        super::send_with_fds(self.fd.as_fd(), msg, fd.as_slice())
    }

    /// Sends one datagram without waiting (`WouldBlock` while the peer's receive buffer is
    /// full). Never raises SIGPIPE.
    pub fn send_nowait(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: `msg` is a live buffer of `msg.len()` bytes the kernel only reads.
        let rc = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        check(rc).map(drop)
    }

    /// Receives one datagram into `buf` (blocking; poll first): how much came, whether
    /// it was cut to `buf.len()`, and the descriptors sent with it, owned.
    pub fn recv_into(&self, buf: &mut [u8]) -> io::Result<Received> {
        super::recv_with_fds(self.fd.as_fd(), buf)
    }

    /// Shuts the connection down (the peer sees end-of-file).
    pub fn shutdown(&self) {
        let _ = shutdown(self.fd.as_fd());
    }
}

impl AsFd for SeqPacket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A listening `SOCK_SEQPACKET` socket; a filesystem socket is removed when dropped.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    addr: SockAddr,
}

impl Listener {
    /// Binds and listens. A leftover socket file that nobody listens on any more is
    /// replaced; one that is in use is an error (`AddrInUse`), and so is a path that is
    /// not a socket (`AlreadyExists`; it is never removed).
    pub fn bind(addr: &SockAddr) -> io::Result<Listener> {
        if let Some(p) = addr.path() {
            if let Ok(meta) = std::fs::symlink_metadata(p) {
                if !meta.file_type().is_socket() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a socket", p.display()),
                    ));
                }
                match SeqPacket::connect(addr) {
                    Ok(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::AddrInUse,
                            format!("another process listens on {}", p.display()),
                        ))
                    }
                    Err(_) => {
                        let _ = std::fs::remove_file(p);
                    }
                }
            }
        }
        let fd = seqpacket()?;
        let (sa, len) = addr.raw()?;
        bind(fd.as_fd(), &sa, len)?;
        listen(fd.as_fd(), 8)?;
        Ok(Listener {
            fd,
            addr: addr.clone(),
        })
    }

    /// The descriptor (for polling).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Accepts one pending connection, if any (does not block).
    pub fn accept(&self) -> io::Result<Option<SeqPacket>> {
        if !wait_readable(self.raw(), 0)? {
            return Ok(None);
        }
        match accept(self.fd.as_fd()) {
            Ok(fd) => Ok(Some(SeqPacket::from_fd(fd))),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(p) = self.addr.path() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `len` bytes of `sa` as the kernel takes a socket address, or `EINVAL` if `len` is more
/// than the structure holds.
fn sockaddr(sa: &libc::sockaddr_un, len: libc::socklen_t) -> io::Result<*const libc::sockaddr> {
    if len as usize > size_of::<libc::sockaddr_un>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok((sa as *const libc::sockaddr_un).cast())
}

/// A new unix `SOCK_SEQPACKET` socket, close-on-exec.
fn seqpacket() -> io::Result<OwnedFd> {
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
fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
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
fn connect(sock: BorrowedFd<'_>, sa: &libc::sockaddr_un, len: libc::socklen_t) -> io::Result<()> {
    let sa = sockaddr(sa, len)?;
    // SAFETY: `sa` points at `len` bytes of a live sockaddr_un, which the kernel only reads.
    check(unsafe { libc::connect(sock.as_raw_fd(), sa, len) }).map(drop)
}

/// Binds `sock` to the first `len` bytes of `sa`.
fn bind(sock: BorrowedFd<'_>, sa: &libc::sockaddr_un, len: libc::socklen_t) -> io::Result<()> {
    let sa = sockaddr(sa, len)?;
    // SAFETY: as in `connect`.
    check(unsafe { libc::bind(sock.as_raw_fd(), sa, len) }).map(drop)
}

/// Lets `sock` accept connections, `backlog` of them pending at most.
fn listen(sock: BorrowedFd<'_>, backlog: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a live descriptor.
    check(unsafe { libc::listen(sock.as_raw_fd(), backlog) }).map(drop)
}

/// Accepts one connection on the listening `sock` (the new socket close-on-exec); blocks
/// unless one is pending or `sock` is non-blocking.
fn accept(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
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
fn shutdown(sock: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a live descriptor.
    check(unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RDWR) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_fds_and_truncation() {
        let (a, b) = SeqPacket::pair().unwrap();
        let (r, _w) = std::io::pipe().unwrap();
        a.send(&[7u8; 32], Some(r.as_raw_fd())).unwrap();
        let mut buf = [0u8; 64];
        let got = b.recv_into(&mut buf).unwrap();
        assert_eq!((got.len, got.truncated, got.fds.len()), (32, false, 1));
        a.send(&[1u8; 300], None).unwrap();
        let got = b.recv_into(&mut buf).unwrap();
        assert!(got.truncated && got.fds.is_empty());
        drop(a);
        assert_eq!(b.recv_into(&mut buf).unwrap().len, 0, "EOF");
    }

    #[test]
    fn abstract_and_path_listeners() {
        let name = format!("pmd-seqpacket-test-{}", std::process::id());
        let l = Listener::bind(&SockAddr::Abstract(name.clone())).unwrap();
        let c = SeqPacket::connect(&SockAddr::Abstract(name)).unwrap();
        let s = l.accept().unwrap().expect("pending connection");
        c.send(&[1u8; 10], None).unwrap();
        assert_eq!(s.recv_into(&mut [0u8; 16]).unwrap().len, 10);
        let p = std::env::temp_dir().join(format!("pmd-seqpacket-{}.sock", std::process::id()));
        let addr = SockAddr::Path(p.clone());
        let l2 = Listener::bind(&addr).unwrap();
        assert!(Listener::bind(&addr).is_err(), "in use");
        drop(l2);
        assert!(!p.exists(), "removed on drop");
        std::fs::write(&p, b"keep").unwrap();
        let e = Listener::bind(&addr).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"keep",
            "a file that is not a socket stays"
        );
        std::fs::remove_file(&p).unwrap();
        assert_eq!(SockAddr::MAX_LEN, 107);
        assert!(SockAddr::Path(PathBuf::from("x".repeat(200)))
            .raw()
            .is_err());
    }

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
}
