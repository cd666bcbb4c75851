//! The control channel's transport: unix `SOCK_SEQPACKET` sockets (filesystem or abstract
//! address), one datagram per message, file descriptors as `SCM_RIGHTS` (DPDK memif.rst,
//! "Connection establishment"); the sockets are [`pmd_core::unix::seqpacket`]'s, the
//! message buffer memif's.

use crate::proto::MSG_SIZE;
use std::io;
use std::os::fd::OwnedFd;

pub use pmd_core::unix::seqpacket::{wait_readable, Listener, SeqPacket, SockAddr};

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

/// Receives one control message (blocking; poll first), into a buffer twice the message
/// size so a longer datagram is seen as truncated.
pub fn recv(sock: &SeqPacket) -> io::Result<Received> {
    let mut buf = [0u8; MSG_SIZE * 2];
    let got = sock.recv_into(&mut buf)?;
    Ok(Received {
        buf,
        len: got.len,
        truncated: got.truncated,
        fds_truncated: got.fds_truncated,
        fds: got.fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn messages_with_fds_and_oversized_ones() {
        let (a, b) = SeqPacket::pair().unwrap();
        let msg = [7u8; MSG_SIZE];
        let (r, _w) = std::io::pipe().unwrap();
        a.send(&msg, Some(r.as_raw_fd())).unwrap();
        let got = recv(&b).unwrap();
        assert_eq!(got.len, MSG_SIZE);
        assert!(!got.truncated);
        assert_eq!(got.fds.len(), 1);
        a.send(&[1u8; 300], None).unwrap();
        let got = recv(&b).unwrap();
        assert!(got.truncated && got.fds.is_empty());
        drop(a);
        assert_eq!(recv(&b).unwrap().len, 0, "EOF");
    }
}
