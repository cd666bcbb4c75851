//! The control channel's transport: unix `SOCK_SEQPACKET` sockets (filesystem or abstract
//! address), one datagram per message, file descriptors as `SCM_RIGHTS` (DPDK memif.rst,
//! "Connection establishment").

use crate::proto::MSG_SIZE;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// Most file descriptors accepted with one message (memif sends at most one; extra ones
/// are received, then closed, and the message is rejected).
const MAX_FDS: usize = 4;

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
        // SAFETY: sockaddr_un is plain data; all-zero is a valid value.
        let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
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

fn seqpacket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits up to `timeout_ms` for `fd` to be readable (or hung up); true if it is.
pub fn wait_readable(fd: RawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(r > 0)
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
        let fd = seqpacket()?;
        let (sa, len) = addr.raw()?;
        // SAFETY: `sa` is a valid sockaddr_un of `len` bytes.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_un as *const libc::sockaddr,
                len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SeqPacket { fd })
    }

    /// Wraps a connected descriptor (e.g. one end of `socketpair`).
    pub fn from_fd(fd: OwnedFd) -> SeqPacket {
        SeqPacket { fd }
    }

    /// A connected pair, for tests.
    pub fn pair() -> io::Result<(SeqPacket, SeqPacket)> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: two fresh descriptors we own.
        Ok(unsafe {
            (
                SeqPacket::from_fd(OwnedFd::from_raw_fd(fds[0])),
                SeqPacket::from_fd(OwnedFd::from_raw_fd(fds[1])),
            )
        })
    }

    /// The descriptor (for polling).
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Sends one datagram with at most one descriptor. Never raises SIGPIPE.
    pub fn send(&self, msg: &[u8], fd: Option<RawFd>) -> io::Result<()> {
        let mut iov = libc::iovec {
            iov_base: msg.as_ptr() as *mut libc::c_void,
            iov_len: msg.len(),
        };
        // u64 storage keeps the control buffer aligned for cmsghdr.
        let mut ctl = [0u64; 4];
        // SAFETY: msghdr is plain data; all-zero is valid.
        let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        if let Some(fd) = fd {
            // SAFETY: CMSG_SPACE is a pure size computation.
            let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
            debug_assert!(space <= std::mem::size_of_val(&ctl));
            mh.msg_control = ctl.as_mut_ptr() as *mut libc::c_void;
            mh.msg_controllen = space as _;
            // SAFETY: the control buffer is large enough for one cmsghdr carrying one fd,
            // and CMSG_FIRSTHDR/CMSG_DATA point inside it.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&mh);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut RawFd, fd);
            }
        }
        // SAFETY: `mh` points at live buffers for the duration of the call.
        let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &mh, libc::MSG_NOSIGNAL) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != msg.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
        }
        Ok(())
    }

    /// Receives one datagram (blocking; poll first). Descriptors come back owned.
    pub fn recv(&self) -> io::Result<Received> {
        let mut out = Received {
            buf: [0u8; MSG_SIZE * 2],
            len: 0,
            truncated: false,
            fds: Vec::new(),
            fds_truncated: false,
        };
        let mut iov = libc::iovec {
            iov_base: out.buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: out.buf.len(),
        };
        let mut ctl = [0u64; 8];
        // SAFETY: plain data; all-zero is valid.
        let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = ctl.as_mut_ptr() as *mut libc::c_void;
        mh.msg_controllen = std::mem::size_of_val(&ctl) as _;
        // SAFETY: `mh` points at live buffers; received descriptors are close-on-exec.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut mh, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        out.len = n as usize;
        out.truncated = mh.msg_flags & libc::MSG_TRUNC != 0;
        out.fds_truncated = mh.msg_flags & libc::MSG_CTRUNC != 0;
        // SAFETY: walking the control messages the kernel wrote into `ctl`, within
        // `msg_controllen`; each SCM_RIGHTS payload is an array of ints.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&mh);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c) as *const u8;
                    let hdr = data.offset_from(c as *const u8) as usize;
                    let payload = ((*c).cmsg_len as usize).saturating_sub(hdr);
                    let n = payload / std::mem::size_of::<RawFd>();
                    for i in 0..n {
                        let fd = std::ptr::read_unaligned((data as *const RawFd).add(i));
                        if fd >= 0 {
                            out.fds.push(OwnedFd::from_raw_fd(fd));
                        }
                    }
                }
                c = libc::CMSG_NXTHDR(&mh, c);
            }
        }
        if out.fds.len() > MAX_FDS {
            out.fds_truncated = true;
        }
        Ok(out)
    }

    /// Shuts the connection down (the peer sees end-of-file).
    pub fn shutdown(&self) {
        // SAFETY: plain syscall on our descriptor.
        unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR) };
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
    /// replaced; one that is in use is an error (`AddrInUse`).
    pub fn bind(addr: &SockAddr) -> io::Result<Listener> {
        if let Some(p) = addr.path() {
            if p.exists() {
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
        // SAFETY: valid sockaddr_un of `len` bytes.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_un as *const libc::sockaddr,
                len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain syscalls on our descriptor.
        if unsafe { libc::listen(fd.as_raw_fd(), 8) } != 0 {
            return Err(io::Error::last_os_error());
        }
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
        // SAFETY: plain syscall; null address arguments are allowed.
        let fd = unsafe {
            libc::accept4(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e),
            };
        }
        // SAFETY: a fresh descriptor we own.
        Ok(Some(SeqPacket::from_fd(unsafe {
            OwnedFd::from_raw_fd(fd)
        })))
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
        assert_eq!(SockAddr::MAX_LEN, 107);
        assert!(SockAddr::Path(PathBuf::from("x".repeat(200)))
            .raw()
            .is_err());
    }
}
