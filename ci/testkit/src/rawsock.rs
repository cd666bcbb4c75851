//! A plain raw `AF_PACKET` socket, to inject frames into an interface and capture what
//! arrives on it.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Largest frame [`RawSock::recv`] and [`RawSock::recv_incoming`] accept (larger ones
/// panic rather than being cut short): a 64 KiB GSO frame plus tags.
const RECV_BUF: usize = 65536 + 64;

/// A raw `AF_PACKET` socket bound to one interface and one ethertype. Closed on drop.
pub struct RawSock {
    fd: OwnedFd,
}

impl RawSock {
    /// Opens the socket on `iface` (in the calling thread's network namespace, see
    /// [`crate::NetNs::run`]) for ethertype `proto`, with a 16 MiB receive buffer (best
    /// effort: it needs `CAP_NET_ADMIN`) and a receive timeout of `recv_timeout`: how long
    /// each receive ([`RawSock::recv`], [`RawSock::recv_incoming`]) waits for a frame.
    ///
    /// Panics if the socket cannot be opened or bound, or `recv_timeout` is under 1 µs
    /// (the kernel would take it as "wait forever").
    pub fn open(iface: &str, proto: u16, recv_timeout: Duration) -> RawSock {
        let tv = libc::timeval {
            tv_sec: recv_timeout.as_secs() as libc::time_t,
            tv_usec: recv_timeout.subsec_micros() as libc::suseconds_t,
        };
        assert!(
            tv.tv_sec > 0 || tv.tv_usec > 0,
            "receive timeout {recv_timeout:?} would block forever"
        );
        let cname = CString::new(iface).unwrap();

        // SAFETY: socket(2) has no memory preconditions.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto.to_be())) };
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        // SAFETY: `fd` is a freshly opened descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };

        // SAFETY: `cname` is a valid NUL-terminated string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        assert!(ifindex > 0, "no interface {iface}");
        // SAFETY: sockaddr_ll is plain old data, for which all zero bytes are valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: binds our socket to a fully initialised address of the length given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "bind {iface}: {}", io::Error::last_os_error());

        let big: libc::c_int = 16 << 20;
        // Best effort: without it the default buffer applies, which is fine for short bursts.
        let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &big);
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
            .unwrap_or_else(|e| panic!("SO_RCVTIMEO on {iface}: {e}"));
        // The kernel strips a received frame's VLAN tag into metadata; with the aux data
        // the receive puts it back, so what the test sees is the frame on the wire.
        let one: libc::c_int = 1;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_AUXDATA, &one)
            .unwrap_or_else(|e| panic!("PACKET_AUXDATA on {iface}: {e}"));
        RawSock { fd }
    }

    /// Sends one whole frame in a single attempt; panics if the kernel does not take all
    /// of it (e.g. `ENOBUFS` when the device queue is full: see [`RawSock::send_retrying`]).
    pub fn send(&self, frame: &[u8]) {
        if let Err(e) = self.try_send(frame) {
            panic!("send of {} bytes: {e}", frame.len());
        }
    }

    /// Sends one whole frame; while the kernel answers `ENOBUFS` (the device queue is
    /// full: the frame was not sent) waits 1 ms and tries again, for up to `patience`.
    /// Panics on any other error, or `ENOBUFS` after `patience`.
    pub fn send_retrying(&self, frame: &[u8], patience: Duration) {
        let deadline = Instant::now() + patience;
        loop {
            match self.try_send(frame) {
                Ok(()) => return,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("send of {} bytes: {e}", frame.len()),
            }
        }
    }

    /// Sends straight to the device's driver, past the qdisc layer (`PACKET_QDISC_BYPASS`,
    /// what DPDK's `qdisc_bypass` devarg sets): the kernel's shortest transmit path.
    pub fn bypass_qdisc(&self) -> io::Result<()> {
        let one: libc::c_int = 1;
        setsockopt(&self.fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one)
    }

    /// Sends `n` (at most 1024) copies of `frame` with one `sendmmsg` call; returns how many
    /// the kernel took (fewer when the device queue filled: `ENOBUFS` after the first).
    pub fn send_copies(&self, frame: &[u8], n: usize) -> io::Result<usize> {
        let n = n.min(1024);
        let mut iov = libc::iovec {
            iov_base: frame.as_ptr() as *mut libc::c_void,
            iov_len: frame.len(),
        };
        // SAFETY: mmsghdr is plain old data, for which all zero bytes are valid.
        let mut hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        hdr.msg_hdr.msg_iov = &mut iov;
        hdr.msg_hdr.msg_iovlen = 1;
        let mut msgs = vec![hdr; n];
        // SAFETY: every message names the one live iovec above (the kernel only reads the
        // frame through it), and `msgs` holds `n` initialised headers.
        let sent =
            unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }

    fn try_send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sends from a live buffer of the length given.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != frame.len() {
            return Err(io::Error::other(format!("short send: {n} bytes")));
        }
        Ok(())
    }

    /// One frame the socket saw on the interface, or `None` after the receive timeout.
    ///
    /// A socket bound to one ethertype only sees frames arriving on the interface; one
    /// opened for `ETH_P_ALL` also sees those that other sockets or the kernel send out of
    /// it (never its own).
    pub fn recv(&self) -> Option<Vec<u8>> {
        self.recv_with_type().map(|(frame, _)| frame)
    }

    /// Like [`RawSock::recv`], skipping frames sent out of the interface (packet type
    /// `PACKET_OUTGOING`, which only an `ETH_P_ALL` socket sees): one frame that arrived
    /// on the interface, or `None` when a receive times out.
    pub fn recv_incoming(&self) -> Option<Vec<u8>> {
        loop {
            let (frame, pkttype) = self.recv_with_type()?;
            if pkttype != libc::PACKET_OUTGOING {
                return Some(frame);
            }
        }
    }

    /// One frame and its `sll_pkttype`, or `None` after the receive timeout; a VLAN tag
    /// the kernel stripped is put back after the MAC addresses.
    /// Panics if the frame is longer than [`RECV_BUF`].
    fn recv_with_type(&self) -> Option<(Vec<u8>, u8)> {
        let mut buf = vec![0u8; RECV_BUF];
        // SAFETY: sockaddr_ll is plain old data, for which all zero bytes are valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        // Room for one PACKET_AUXDATA control message, 8-byte aligned.
        let mut ctrl = [0u64; 16];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain old data, for which all zero bytes are valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut sll as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctrl.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&ctrl) as _;
        // SAFETY: every pointer in `msg` is to a live buffer of the length given; with
        // MSG_TRUNC the kernel still writes at most `buf.len()` bytes.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC) };
        if n < 0 {
            return None;
        }
        assert!(n as usize <= buf.len(), "frame of {n} bytes truncated");
        buf.truncate(n as usize);
        if let Some(tag) = stripped_tag(&msg) {
            if buf.len() >= 12 {
                buf.splice(12..12, tag);
            }
        }
        Some((buf, sll.sll_pkttype))
    }
}

/// The VLAN tag (TPID and TCI, wire order) the kernel reported as stripped in a
/// received message's `PACKET_AUXDATA`, if any.
fn stripped_tag(msg: &libc::msghdr) -> Option<[u8; 4]> {
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk its control buffer within
    // msg_controllen.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !c.is_null() {
        // SAFETY: `c` points at a control message header inside the buffer.
        let h = unsafe { &*c };
        if h.cmsg_level == libc::SOL_PACKET && h.cmsg_type == libc::PACKET_AUXDATA {
            // SAFETY: a PACKET_AUXDATA message carries a tpacket_auxdata (read unaligned).
            let aux: libc::tpacket_auxdata =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast()) };
            if aux.tp_status & libc::TP_STATUS_VLAN_VALID == 0 {
                return None;
            }
            let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                aux.tp_vlan_tpid
            } else {
                0x8100
            };
            let [a, b] = tpid.to_be_bytes();
            let [x, y] = aux.tp_vlan_tci.to_be_bytes();
            return Some([a, b, x, y]);
        }
        // SAFETY: as above.
        c = unsafe { libc::CMSG_NXTHDR(msg, c) };
    }
    None
}

/// `setsockopt(fd, level, name, value)`.
fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: passes a live value of the size given; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "would block forever")]
    fn zero_receive_timeout_is_refused() {
        RawSock::open("lo", 0x88b5, Duration::ZERO);
    }

    #[test]
    #[should_panic(expected = "would block forever")]
    fn sub_microsecond_receive_timeout_is_refused() {
        RawSock::open("lo", 0x88b5, Duration::from_nanos(999));
    }
}
