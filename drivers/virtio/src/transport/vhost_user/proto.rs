//! The vhost-user protocol, front-end side: message framing, payload encodings, file
//! descriptor passing, and strict checking of everything the back end sends.
//!
//! Every message starts with a 12-byte header `{request u32, flags u32, size u32}`
//! (native byte order, little-endian on every host we run on); bits 0–1 of `flags` carry
//! the protocol version (1), bit 2 marks a reply, bit 3 asks for a reply (REPLY_ACK).
//! `size` is the payload length. File descriptors travel as `SCM_RIGHTS` ancillary data
//! of the same `sendmsg` ([`pmd_core::unix::send_with_fds`]).

use pmd_core::error::{Error, Result};
use pmd_core::unix;
use std::io::{self, ErrorKind, Read};
use std::os::fd::{AsFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Protocol version carried in `flags`.
pub const VHOST_USER_VERSION: u32 = 0x1;
/// Mask of the version bits in `flags`.
pub const VHOST_USER_VERSION_MASK: u32 = 0x3;
/// `flags` bit: this message is a reply.
pub const VHOST_USER_REPLY: u32 = 0x4;
/// `flags` bit: the sender wants a REPLY_ACK answer.
pub const VHOST_USER_NEED_REPLY: u32 = 0x8;
/// Header size in bytes.
pub const HDR_LEN: usize = 12;
/// Largest payload this front end accepts from a back end.
pub const MAX_PAYLOAD: usize = 4096;
/// Most memory regions in one SET_MEM_TABLE (the protocol's fixed limit).
pub const MAX_REGIONS: usize = 8;
/// Bit in SET_VRING_KICK/CALL payloads: no file descriptor attached.
pub const VRING_NOFD_MASK: u64 = 1 << 8;

/// Feature bit (in GET/SET_FEATURES): protocol features are supported.
pub const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;
/// Protocol feature: multiple queues (GET_QUEUE_NUM).
pub const PROTOCOL_F_MQ: u64 = 1 << 0;
/// Protocol feature: replies to messages flagged NEED_REPLY.
pub const PROTOCOL_F_REPLY_ACK: u64 = 1 << 3;
/// Protocol features this front end can use.
pub const SUPPORTED_PROTOCOL_FEATURES: u64 = PROTOCOL_F_MQ | PROTOCOL_F_REPLY_ACK;

/// Front-end request codes used by this driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Request {
    /// Get the device's virtio feature bits (reply u64).
    GetFeatures = 1,
    /// Set the negotiated feature bits (u64).
    SetFeatures = 2,
    /// Claim the back end for this connection.
    SetOwner = 3,
    /// Memory regions, one fd each.
    SetMemTable = 5,
    /// Ring size (vring state).
    SetVringNum = 8,
    /// Ring addresses (vring address).
    SetVringAddr = 9,
    /// First available index to process (vring state).
    SetVringBase = 10,
    /// Stop a ring and get its next available index (vring state reply).
    GetVringBase = 11,
    /// The eventfd the front end kicks (u64 index + fd).
    SetVringKick = 12,
    /// The eventfd the back end signals (u64 index + fd).
    SetVringCall = 13,
    /// Protocol feature bits (reply u64).
    GetProtocolFeatures = 15,
    /// Set protocol feature bits (u64).
    SetProtocolFeatures = 16,
    /// Number of queues the back end supports (reply u64).
    GetQueueNum = 17,
    /// Enable or disable a ring (vring state).
    SetVringEnable = 18,
}

impl Request {
    /// Protocol name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Request::GetFeatures => "GET_FEATURES",
            Request::SetFeatures => "SET_FEATURES",
            Request::SetOwner => "SET_OWNER",
            Request::SetMemTable => "SET_MEM_TABLE",
            Request::SetVringNum => "SET_VRING_NUM",
            Request::SetVringAddr => "SET_VRING_ADDR",
            Request::SetVringBase => "SET_VRING_BASE",
            Request::GetVringBase => "GET_VRING_BASE",
            Request::SetVringKick => "SET_VRING_KICK",
            Request::SetVringCall => "SET_VRING_CALL",
            Request::GetProtocolFeatures => "GET_PROTOCOL_FEATURES",
            Request::SetProtocolFeatures => "SET_PROTOCOL_FEATURES",
            Request::GetQueueNum => "GET_QUEUE_NUM",
            Request::SetVringEnable => "SET_VRING_ENABLE",
        }
    }
}

/// One memory region of SET_MEM_TABLE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegion {
    /// Guest physical address (for virtio-user: our virtual address).
    pub guest_phys_addr: u64,
    /// Bytes.
    pub memory_size: u64,
    /// Front-end virtual address.
    pub userspace_addr: u64,
    /// Offset of the region in the file.
    pub mmap_offset: u64,
    /// The file descriptor to map.
    pub fd: RawFd,
}

/// Builds a message: header plus payload.
pub fn encode(req: Request, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HDR_LEN + payload.len());
    m.extend_from_slice(&(req as u32).to_le_bytes());
    m.extend_from_slice(&(VHOST_USER_VERSION | flags).to_le_bytes());
    m.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    m.extend_from_slice(payload);
    m
}

/// Vring state payload `{index u32, num u32}`.
pub fn vring_state(index: u32, num: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&index.to_le_bytes());
    b[4..].copy_from_slice(&num.to_le_bytes());
    b
}

/// Vring address payload `{index u32, flags u32, desc u64, used u64, avail u64, log u64}`.
pub fn vring_addr(index: u32, desc: u64, used: u64, avail: u64) -> [u8; 40] {
    let mut b = [0u8; 40];
    b[..4].copy_from_slice(&index.to_le_bytes());
    b[8..16].copy_from_slice(&desc.to_le_bytes());
    b[16..24].copy_from_slice(&used.to_le_bytes());
    b[24..32].copy_from_slice(&avail.to_le_bytes());
    b
}

/// Memory table payload `{nregions u32, padding u32, regions[n]}`.
pub fn mem_table(regions: &[MemRegion]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + 32 * regions.len());
    b.extend_from_slice(&(regions.len() as u32).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    for r in regions {
        for v in [
            r.guest_phys_addr,
            r.memory_size,
            r.userspace_addr,
            r.mmap_offset,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    b
}

/// A connection to a vhost-user back end.
#[derive(Debug)]
pub struct Conn {
    sock: UnixStream,
    what: String,
    reply_ack: bool,
    broken: bool,
}

impl Conn {
    /// Wraps a connected socket; `what` names it in errors. Replies must arrive within
    /// `timeout`.
    pub fn new(sock: UnixStream, what: impl Into<String>, timeout: Duration) -> Result<Conn> {
        let what = what.into();
        sock.set_read_timeout(Some(timeout))
            .and_then(|_| sock.set_write_timeout(Some(timeout)))
            .map_err(|e| Error::io(format!("{what}: setting socket timeouts"), e))?;
        Ok(Conn {
            sock,
            what,
            reply_ack: false,
            broken: false,
        })
    }

    /// Turns REPLY_ACK on (once negotiated): set requests then wait for a status.
    pub fn set_reply_ack(&mut self, on: bool) {
        self.reply_ack = on;
    }

    /// The socket (for liveness checks).
    pub fn socket(&self) -> &UnixStream {
        &self.sock
    }

    /// An error about this connection that is not a transport failure (e.g. a back
    /// end that offers less than it must).
    pub fn refuse(&self, msg: impl std::fmt::Display) -> Error {
        self.err(msg)
    }

    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::driver(&self.what, format!("vhost-user: {msg}"))
    }

    /// Sends one message with optional file descriptors (at most [`MAX_REGIONS`], the
    /// protocol's limit).
    pub fn send(&mut self, req: Request, flags: u32, payload: &[u8], fds: &[RawFd]) -> Result<()> {
        if self.broken {
            return Err(self.err(format!(
                "cannot send {}: the connection is unusable after an earlier protocol error",
                req.name()
            )));
        }
        let sent = if fds.len() > MAX_REGIONS {
            Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!("{} file descriptors, at most {MAX_REGIONS}", fds.len()),
            ))
        } else {
            unix::send_with_fds(self.sock.as_fd(), &encode(req, flags, payload), fds)
        };
        sent.map_err(|e| self.err(format!("sending {}: {e}", req.name())))
    }

    /// Receives the reply to `req`; it must carry exactly `len` payload bytes.
    pub fn recv_reply(&mut self, req: Request, len: usize) -> Result<Vec<u8>> {
        let mut hdr = [0u8; HDR_LEN];
        self.read_exact(&mut hdr, req)?;
        let code = u32::from_le_bytes(hdr[0..4].try_into().unwrap());
        let flags = u32::from_le_bytes(hdr[4..8].try_into().unwrap());
        let size = u32::from_le_bytes(hdr[8..12].try_into().unwrap()) as usize;
        if size > MAX_PAYLOAD {
            self.broken = true;
            return Err(self.err(format!(
                "reply to {} has size field {size}, more than the {MAX_PAYLOAD}-byte maximum \
                 (malformed message)",
                req.name()
            )));
        }
        let mut payload = vec![0u8; size];
        self.read_exact(&mut payload, req)?;
        if code != req as u32 {
            self.broken = true;
            return Err(self.err(format!(
                "expected a reply to {} ({}), the back end answered request {code}",
                req.name(),
                req as u32
            )));
        }
        if flags & VHOST_USER_VERSION_MASK != VHOST_USER_VERSION || flags & VHOST_USER_REPLY == 0 {
            self.broken = true;
            return Err(self.err(format!(
                "reply to {} has flags {flags:#x}: expected version 1 with the reply bit",
                req.name()
            )));
        }
        if size != len {
            return Err(self.err(format!(
                "reply to {} carries {size} payload bytes, expected {len}",
                req.name()
            )));
        }
        Ok(payload)
    }

    fn read_exact(&mut self, buf: &mut [u8], req: Request) -> Result<()> {
        match self.sock.read_exact(buf) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.broken = true;
                let msg = match e.kind() {
                    ErrorKind::UnexpectedEof => {
                        format!(
                            "the back end closed the connection instead of answering {}",
                            req.name()
                        )
                    }
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                        format!("timed out waiting for the reply to {}", req.name())
                    }
                    _ => format!("reading the reply to {}: {e}", req.name()),
                };
                Err(self.err(msg))
            }
        }
    }

    /// Sends a request without payload reply, waiting for the REPLY_ACK status if
    /// negotiated.
    pub fn set(&mut self, req: Request, payload: &[u8], fds: &[RawFd]) -> Result<()> {
        let flags = if self.reply_ack {
            VHOST_USER_NEED_REPLY
        } else {
            0
        };
        self.send(req, flags, payload, fds)?;
        if self.reply_ack {
            let status = self.recv_u64(req)?;
            if status != 0 {
                return Err(self.err(format!(
                    "the back end rejected {} (status {status})",
                    req.name()
                )));
            }
        }
        Ok(())
    }

    fn recv_u64(&mut self, req: Request) -> Result<u64> {
        let p = self.recv_reply(req, 8)?;
        Ok(u64::from_le_bytes(p[..8].try_into().unwrap()))
    }

    /// A request whose reply is a u64 (GET_FEATURES, GET_PROTOCOL_FEATURES, GET_QUEUE_NUM).
    pub fn get_u64(&mut self, req: Request) -> Result<u64> {
        self.send(req, 0, &[], &[])?;
        self.recv_u64(req)
    }

    /// SET_* with a u64 payload.
    pub fn set_u64(&mut self, req: Request, v: u64) -> Result<()> {
        self.set(req, &v.to_le_bytes(), &[])
    }

    /// GET_VRING_BASE: stops ring `index` and returns its next available index.
    pub fn get_vring_base(&mut self, index: u32) -> Result<u32> {
        let req = Request::GetVringBase;
        self.send(req, 0, &vring_state(index, 0), &[])?;
        let p = self.recv_reply(req, 8)?;
        let got = u32::from_le_bytes(p[..4].try_into().unwrap());
        if got != index {
            return Err(self.err(format!(
                "reply to GET_VRING_BASE is for ring {got}, asked for {index}"
            )));
        }
        Ok(u32::from_le_bytes(p[4..8].try_into().unwrap()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn encodings() {
        let m = encode(Request::SetVringNum, 0, &vring_state(1, 256));
        assert_eq!(m.len(), 20);
        assert_eq!(&m[0..4], &8u32.to_le_bytes());
        assert_eq!(&m[4..8], &1u32.to_le_bytes());
        assert_eq!(&m[8..12], &8u32.to_le_bytes());
        assert_eq!(&m[12..16], &1u32.to_le_bytes());
        assert_eq!(&m[16..20], &256u32.to_le_bytes());
        let a = vring_addr(3, 0x1000, 0x3000, 0x2000);
        assert_eq!(&a[8..16], &0x1000u64.to_le_bytes());
        assert_eq!(&a[16..24], &0x3000u64.to_le_bytes(), "used before avail");
        assert_eq!(&a[24..32], &0x2000u64.to_le_bytes());
        let t = mem_table(&[MemRegion {
            guest_phys_addr: 1,
            memory_size: 2,
            userspace_addr: 3,
            mmap_offset: 0,
            fd: 5,
        }]);
        assert_eq!(t.len(), 8 + 32);
        assert_eq!(&t[0..4], &1u32.to_le_bytes());
    }

    #[test]
    fn fds_travel_with_the_message() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut conn = Conn::new(a, "test", Duration::from_secs(1)).unwrap();
        let f = std::fs::File::open("/dev/null").unwrap();
        let kick = 3u64.to_le_bytes();
        conn.send(Request::SetVringKick, 0, &kick, &[f.as_raw_fd()])
            .unwrap();
        let mut buf = [0u8; 64];
        let got = unix::recv_with_fds(b.as_fd(), &mut buf).unwrap();
        assert_eq!(
            &buf[..got.len],
            &encode(Request::SetVringKick, 0, &kick)[..]
        );
        assert_eq!(got.fds.len(), 1);
        let e = conn
            .send(
                Request::SetMemTable,
                0,
                &[],
                &[f.as_raw_fd(); MAX_REGIONS + 1],
            )
            .unwrap_err();
        assert!(
            e.to_string().contains("9 file descriptors, at most 8"),
            "{e}"
        );
    }
}
