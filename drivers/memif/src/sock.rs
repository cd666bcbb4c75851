//! The control channel's transport: unix `SOCK_SEQPACKET` sockets (filesystem or abstract
//! address), one datagram per message, file descriptors as `SCM_RIGHTS` (DPDK memif.rst,
//! "Connection establishment"). The system calls are in `sys.rs` and
//! [`pmd_core::unix`].

use crate::proto::MSG_SIZE;
use crate::sys;
use pmd_core::unix;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
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
    match unix::poll(&mut p, timeout_ms) {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// One received datagram.
#[derive(Debug)]
pub struct Received {
    /// The bytes (only `len` of them are valid).
    pub buf: [u8; MSG_SIZE * 2],
    /// Bytes received; 0 means the peer closed the connection.
    pub len: usize,
    /// The datagram was longer than the buffer.
    pub truncated: bool,
    /// Descriptors that came with it (owned: closed when dropped).
    pub fds: Vec<OwnedFd>,
    /// More descriptors were sent than fit (the kernel closed the rest).
    pub fds_truncated: bool,
}

impl Received {
    /// The datagram's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len.min(self.buf.len())]
    }
}

/// A connected control channel.
#[derive(Debug)]
pub struct SeqPacket {
    fd: OwnedFd,
}

impl SeqPacket {
    /// Connects to a listening memif server.
    pub fn connect(addr: &SockAddr) -> io::Result<SeqPacket> {
        let fd = sys::seqpacket()?;
        let (sa, len) = addr.raw()?;
        sys::connect(fd.as_fd(), &sa, len)?;
        Ok(SeqPacket { fd })
    }

    /// Wraps a connected descriptor (e.g. one end of `socketpair`).
    pub fn from_fd(fd: OwnedFd) -> SeqPacket {
        SeqPacket { fd }
    }

    /// A connected pair, for tests.
    pub fn pair() -> io::Result<(SeqPacket, SeqPacket)> {
        let (a, b) = sys::seqpacket_pair()?;
        Ok((SeqPacket::from_fd(a), SeqPacket::from_fd(b)))
    }

    /// The descriptor (for polling).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Sends one datagram with at most one descriptor. Never raises SIGPIPE.
    pub fn send(&self, msg: &[u8], fd: Option<RawFd>) -> io::Result<()> {
        unix::send_with_fds(self.fd.as_fd(), msg, fd.as_slice())
    }

    /// Receives one datagram (blocking; poll first). Descriptors come back owned.
    pub fn recv(&self) -> io::Result<Received> {
        let mut buf = [0u8; MSG_SIZE * 2];
        let got = unix::recv_with_fds(self.fd.as_fd(), &mut buf)?;
        Ok(Received {
            buf,
            len: got.len,
            truncated: got.truncated,
            fds_truncated: got.fds_truncated,
            fds: got.fds,
        })
    }

    /// Shuts the connection down (the peer sees end-of-file).
    pub fn shutdown(&self) {
        let _ = sys::shutdown(self.fd.as_fd());
    }
}

/// A listening socket; a filesystem socket is removed when dropped.
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
        let fd = sys::seqpacket()?;
        let (sa, len) = addr.raw()?;
        sys::bind(fd.as_fd(), &sa, len)?;
        sys::listen(fd.as_fd(), 8)?;
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
        match sys::accept(self.fd.as_fd()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fds_travel_and_sizes_are_reported() {
        let (a, b) = SeqPacket::pair().unwrap();
        let msg = [7u8; MSG_SIZE];
        let (r, _w) = std::io::pipe().unwrap();
        a.send(&msg, Some(r.as_raw_fd())).unwrap();
        let got = b.recv().unwrap();
        assert_eq!(got.len, MSG_SIZE);
        assert!(!got.truncated);
        assert_eq!(got.fds.len(), 1);
        a.send(&[1u8; 300], None).unwrap();
        let got = b.recv().unwrap();
        assert!(got.truncated && got.fds.is_empty());
        drop(a);
        assert_eq!(b.recv().unwrap().len, 0, "EOF");
    }

    #[test]
    fn abstract_and_path_listeners() {
        let name = format!("pmd-memif-sock-test-{}", std::process::id());
        let l = Listener::bind(&SockAddr::Abstract(name.clone())).unwrap();
        let c = SeqPacket::connect(&SockAddr::Abstract(name)).unwrap();
        let s = l.accept().unwrap().expect("pending connection");
        c.send(&[1u8; MSG_SIZE], None).unwrap();
        assert_eq!(s.recv().unwrap().len, MSG_SIZE);
        let p = std::env::temp_dir().join(format!("pmd-memif-sock-{}.sock", std::process::id()));
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
}
