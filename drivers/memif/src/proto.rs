//! memif 2.0 wire format: control messages and shared-memory ring layout constants.
//!
//! Sources (layouts re-derived from the specification, not copied):
//! - DPDK `doc/guides/nics/memif.rst`, sections "Connection establishment", "Shared memory
//!   format" and "Descriptor format";
//! - the protocol header `memif.h` shared by libmemif, VPP and DPDK (`memif_msg_t` and its
//!   payloads, `memif_desc_t`, `memif_ring_t`).
//!
//! Every control message is one fixed-size 128-byte datagram: a 16-bit type followed
//! directly (packed, no padding) by the type's payload; the rest is zero. Integers are in
//! host byte order (the peers share a host); this module supports little-endian hosts.
//!
//! [`parse`] only checks structure (size, type); what a field may hold in a given state is
//! checked by the handshakes (`handshake.rs`), which also turn every failure into the
//! reason string of a DISCONNECT.

use std::fmt;

#[cfg(target_endian = "big")]
compile_error!("memif messages are host-endian; this implementation supports little-endian hosts");

/// Ring header magic (`memif.h`: MEMIF_COOKIE).
pub const COOKIE: u32 = 0x03E3_1F20;
/// Protocol version 2.0 as carried in HELLO and INIT (`major << 8 | minor`).
pub const VERSION: u16 = 2 << 8;
/// Size of every control message (`memif_msg_t`, 128-byte aligned and sized).
pub const MSG_SIZE: usize = 128;
/// Length of name fields (application and interface names).
pub const NAME_SIZE: usize = 32;
/// Length of the INIT secret field.
pub const SECRET_SIZE: usize = 24;
/// Length of the DISCONNECT reason string.
pub const REASON_SIZE: usize = 96;
/// Bytes of a ring header before the descriptors (three 64-byte cache-line marks:
/// cookie/flags/head on line 0, tail on line 1, descriptors from line 2).
pub const RING_HDR_SIZE: usize = 128;
/// Offset of `head` (u16) in a ring header.
pub const RING_HEAD_OFF: usize = 6;
/// Offset of `flags` (u16) in a ring header.
pub const RING_FLAGS_OFF: usize = 4;
/// Offset of `tail` (u16) in a ring header.
pub const RING_TAIL_OFF: usize = 64;
/// Size of one descriptor: flags u16, region u16, length u32, offset u32, metadata u32.
pub const DESC_SIZE: usize = 16;
/// Descriptor flag: the packet continues in the next descriptor.
pub const DESC_FLAG_NEXT: u16 = 1;
/// Ring flag set by the receiving side: do not signal the interrupt eventfd (poll mode).
pub const RING_FLAG_MASK_INT: u16 = 1;
/// ADD_RING flag: the ring carries client-to-server traffic (S2M in the old names).
pub const ADD_RING_FLAG_C2S: u16 = 1;
/// Largest ring this implementation accepts or offers (log2), as DPDK.
pub const MAX_LOG2_RING_SIZE: u8 = 14;
/// INIT interface mode: Ethernet (the only one supported, as in DPDK).
pub const MODE_ETHERNET: u8 = 0;

/// Message type codes (`memif_msg_type_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum MsgType {
    /// Acknowledges INIT, ADD_REGION and ADD_RING.
    Ack = 1,
    /// Server to client: configuration limits.
    Hello = 2,
    /// Client to server: version, interface id, mode, secret.
    Init = 3,
    /// Client to server: a shared memory region (fd attached).
    AddRegion = 4,
    /// Client to server: a ring (interrupt eventfd attached).
    AddRing = 5,
    /// Client to server: finish the handshake.
    Connect = 6,
    /// Server to client: the handshake is complete.
    Connected = 7,
    /// Either side: the connection is over, with a reason.
    Disconnect = 8,
}

impl MsgType {
    fn from_u16(v: u16) -> Option<MsgType> {
        Some(match v {
            1 => MsgType::Ack,
            2 => MsgType::Hello,
            3 => MsgType::Init,
            4 => MsgType::AddRegion,
            5 => MsgType::AddRing,
            6 => MsgType::Connect,
            7 => MsgType::Connected,
            8 => MsgType::Disconnect,
            _ => return None,
        })
    }
}

/// A fixed-size, NUL-padded byte string from a message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FixedStr<const N: usize>(pub [u8; N]);

impl<const N: usize> FixedStr<N> {
    /// From text, truncated so at least one NUL remains.
    pub fn new(s: &str) -> Self {
        let mut b = [0u8; N];
        let n = s.len().min(N.saturating_sub(1));
        b[..n].copy_from_slice(&s.as_bytes()[..n]);
        FixedStr(b)
    }

    /// The bytes before the first NUL.
    pub fn bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(N);
        &self.0[..end]
    }

    /// Printable text (non-printable bytes shown as `?`), for logs and xstats.
    pub fn lossy(&self) -> String {
        self.bytes()
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '?'
                }
            })
            .collect()
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.lossy())
    }
}

/// A 32-byte name field.
pub type Name = FixedStr<NAME_SIZE>;

/// HELLO (server to client): the server's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Server application name.
    pub name: Name,
    /// Lowest protocol version the server speaks.
    pub min_version: u16,
    /// Highest protocol version the server speaks.
    pub max_version: u16,
    /// Highest region index the server accepts.
    pub max_region: u16,
    /// Highest server-to-client ring index (M2S in the old names).
    pub max_s2c_ring: u16,
    /// Highest client-to-server ring index (S2M in the old names).
    pub max_c2s_ring: u16,
    /// Largest ring size the server accepts, log2.
    pub max_log2_ring_size: u8,
}

/// INIT (client to server): which interface the client wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Init {
    /// Protocol version the client uses.
    pub version: u16,
    /// Interface id (must match the server's `id`).
    pub id: u32,
    /// Interface mode ([`MODE_ETHERNET`]).
    pub mode: u8,
    /// Optional shared secret.
    pub secret: FixedStr<SECRET_SIZE>,
    /// Client application name.
    pub name: Name,
}

/// ADD_REGION (client to server); the region's fd travels as SCM_RIGHTS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddRegion {
    /// Region index (regions are added in order 0, 1, ...).
    pub index: u16,
    /// Region size in bytes.
    pub size: u64,
}

/// ADD_RING (client to server); the ring's interrupt eventfd travels as SCM_RIGHTS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddRing {
    /// [`ADD_RING_FLAG_C2S`] for client-to-server rings.
    pub flags: u16,
    /// Ring index within its direction (= queue id).
    pub index: u16,
    /// Region holding the ring.
    pub region: u16,
    /// Offset of the ring header in that region.
    pub offset: u32,
    /// Ring size, log2.
    pub log2_ring_size: u8,
    /// Private header size (not used by anyone; must be 0 here).
    pub private_hdr_size: u16,
}

/// DISCONNECT (either side).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disconnect {
    /// Error code (0 in practice).
    pub code: u32,
    /// Why.
    pub reason: FixedStr<REASON_SIZE>,
}

/// A decoded control message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// ACK.
    Ack,
    /// HELLO.
    Hello(Hello),
    /// INIT.
    Init(Init),
    /// ADD_REGION.
    AddRegion(AddRegion),
    /// ADD_RING.
    AddRing(AddRing),
    /// CONNECT with the client's interface name.
    Connect(Name),
    /// CONNECTED with the server's interface name.
    Connected(Name),
    /// DISCONNECT.
    Disconnect(Disconnect),
}

impl Msg {
    /// The message's type.
    pub fn kind(&self) -> MsgType {
        match self {
            Msg::Ack => MsgType::Ack,
            Msg::Hello(_) => MsgType::Hello,
            Msg::Init(_) => MsgType::Init,
            Msg::AddRegion(_) => MsgType::AddRegion,
            Msg::AddRing(_) => MsgType::AddRing,
            Msg::Connect(_) => MsgType::Connect,
            Msg::Connected(_) => MsgType::Connected,
            Msg::Disconnect(_) => MsgType::Disconnect,
        }
    }

    /// The message's protocol name.
    pub fn name(&self) -> &'static str {
        type_name(self.kind())
    }

    /// Encodes the message as one 128-byte datagram.
    pub fn encode(&self) -> [u8; MSG_SIZE] {
        let mut w = Writer {
            b: [0u8; MSG_SIZE],
            at: 0,
        };
        w.u16(self.kind() as u16);
        match self {
            Msg::Ack => {}
            Msg::Hello(h) => {
                w.bytes(&h.name.0);
                w.u16(h.min_version);
                w.u16(h.max_version);
                w.u16(h.max_region);
                w.u16(h.max_s2c_ring);
                w.u16(h.max_c2s_ring);
                w.u8(h.max_log2_ring_size);
            }
            Msg::Init(i) => {
                w.u16(i.version);
                w.u32(i.id);
                w.u8(i.mode);
                w.bytes(&i.secret.0);
                w.bytes(&i.name.0);
            }
            Msg::AddRegion(r) => {
                w.u16(r.index);
                w.u64(r.size);
            }
            Msg::AddRing(r) => {
                w.u16(r.flags);
                w.u16(r.index);
                w.u16(r.region);
                w.u32(r.offset);
                w.u8(r.log2_ring_size);
                w.u16(r.private_hdr_size);
            }
            Msg::Connect(n) | Msg::Connected(n) => w.bytes(&n.0),
            Msg::Disconnect(d) => {
                w.u32(d.code);
                w.bytes(&d.reason.0);
            }
        }
        w.b
    }
}

/// The protocol name of a message type.
pub fn type_name(t: MsgType) -> &'static str {
    match t {
        MsgType::Ack => "ACK",
        MsgType::Hello => "HELLO",
        MsgType::Init => "INIT",
        MsgType::AddRegion => "ADD_REGION",
        MsgType::AddRing => "ADD_RING",
        MsgType::Connect => "CONNECT",
        MsgType::Connected => "CONNECTED",
        MsgType::Disconnect => "DISCONNECT",
    }
}

/// Why a datagram is not a control message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not exactly [`MSG_SIZE`] bytes (the size received, saturated).
    Size(usize),
    /// Type 0 (NONE) or a type beyond DISCONNECT.
    UnknownType(u16),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Size(n) => write!(f, "Invalid message size {n} (expected {MSG_SIZE})"),
            ParseError::UnknownType(t) => write!(f, "Unknown message type {t}"),
        }
    }
}

/// Decodes one datagram. Needs exactly [`MSG_SIZE`] bytes and a known type; field values
/// are checked later, against the connection state.
pub fn parse(buf: &[u8]) -> Result<Msg, ParseError> {
    let b: &[u8; MSG_SIZE] = buf.try_into().map_err(|_| ParseError::Size(buf.len()))?;
    let mut r = Reader { b, at: 0 };
    let t = r.u16();
    let kind = MsgType::from_u16(t).ok_or(ParseError::UnknownType(t))?;
    Ok(match kind {
        MsgType::Ack => Msg::Ack,
        MsgType::Hello => Msg::Hello(Hello {
            name: FixedStr(r.arr()),
            min_version: r.u16(),
            max_version: r.u16(),
            max_region: r.u16(),
            max_s2c_ring: r.u16(),
            max_c2s_ring: r.u16(),
            max_log2_ring_size: r.u8(),
        }),
        MsgType::Init => Msg::Init(Init {
            version: r.u16(),
            id: r.u32(),
            mode: r.u8(),
            secret: FixedStr(r.arr()),
            name: FixedStr(r.arr()),
        }),
        MsgType::AddRegion => Msg::AddRegion(AddRegion {
            index: r.u16(),
            size: r.u64(),
        }),
        MsgType::AddRing => Msg::AddRing(AddRing {
            flags: r.u16(),
            index: r.u16(),
            region: r.u16(),
            offset: r.u32(),
            log2_ring_size: r.u8(),
            private_hdr_size: r.u16(),
        }),
        MsgType::Connect => Msg::Connect(FixedStr(r.arr())),
        MsgType::Connected => Msg::Connected(FixedStr(r.arr())),
        MsgType::Disconnect => Msg::Disconnect(Disconnect {
            code: r.u32(),
            reason: FixedStr(r.arr()),
        }),
    })
}

/// Sequential little-endian reads from a full message. Every payload ends well before
/// byte 128 (the longest, DISCONNECT, at 102; the unit tests pin every field offset).
struct Reader<'a> {
    b: &'a [u8; MSG_SIZE],
    at: usize,
}

impl Reader<'_> {
    fn arr<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        // `get` keeps this panic-free even if a layout constant were wrong.
        if let Some(s) = self.b.get(self.at..self.at + N) {
            out.copy_from_slice(s);
        }
        self.at += N;
        out
    }
    fn u8(&mut self) -> u8 {
        self.arr::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.arr())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.arr())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.arr())
    }
}

struct Writer {
    b: [u8; MSG_SIZE],
    at: usize,
}

impl Writer {
    fn bytes(&mut self, v: &[u8]) {
        if let Some(d) = self.b.get_mut(self.at..self.at + v.len()) {
            d.copy_from_slice(v);
        }
        self.at += v.len();
    }
    fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

/// Bytes a ring of `2^log2` descriptors occupies (header plus descriptors).
pub fn ring_bytes(log2: u8) -> u64 {
    RING_HDR_SIZE as u64 + ((DESC_SIZE as u64) << log2.min(31))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_offsets() {
        let h = Msg::Hello(Hello {
            name: Name::new("DPDK 22.11.11"),
            min_version: VERSION,
            max_version: VERSION,
            max_region: 255,
            max_s2c_ring: 255,
            max_c2s_ring: 255,
            max_log2_ring_size: 14,
        });
        let b = h.encode();
        // As captured from dpdk-testpmd 22.11.11's HELLO.
        assert_eq!(&b[..2], &[2, 0]);
        assert_eq!(&b[2..15], b"DPDK 22.11.11");
        assert_eq!(&b[34..45], &[0, 2, 0, 2, 0xff, 0, 0xff, 0, 0xff, 0, 14]);
        assert_eq!(parse(&b).unwrap(), h);
        let r = Msg::AddRing(AddRing {
            flags: 1,
            index: 3,
            region: 0,
            offset: 0x1234_5678,
            log2_ring_size: 10,
            private_hdr_size: 0,
        });
        let b = r.encode();
        assert_eq!(
            &b[..15],
            &[5, 0, 1, 0, 3, 0, 0, 0, 0x78, 0x56, 0x34, 0x12, 10, 0, 0]
        );
        assert_eq!(parse(&b).unwrap(), r);
        let d = Msg::Disconnect(Disconnect {
            code: 7,
            reason: FixedStr::new("bye"),
        });
        let b = d.encode();
        assert_eq!(&b[..9], &[8, 0, 7, 0, 0, 0, b'b', b'y', b'e']);
        assert_eq!(parse(&b).unwrap(), d);
        let i = Msg::Init(Init {
            version: VERSION,
            id: 0x0102_0304,
            mode: 0,
            secret: FixedStr::new("s3cret"),
            name: Name::new("pmd-rs"),
        });
        let b = i.encode();
        assert_eq!(&b[..9], &[3, 0, 0, 2, 4, 3, 2, 1, 0]);
        assert_eq!(&b[9..15], b"s3cret");
        assert_eq!(&b[33..39], b"pmd-rs");
        assert_eq!(parse(&b).unwrap(), i);
        let a = Msg::AddRegion(AddRegion {
            index: 1,
            size: 1 << 33,
        });
        assert_eq!(parse(&a.encode()).unwrap(), a);
    }

    #[test]
    fn rejects_bad_size_and_type() {
        assert_eq!(parse(&[0u8; 127]), Err(ParseError::Size(127)));
        assert_eq!(parse(&[0u8; 129]), Err(ParseError::Size(129)));
        assert_eq!(parse(&[0u8; 128]), Err(ParseError::UnknownType(0)));
        let mut b = [0u8; 128];
        b[0] = 9;
        assert_eq!(parse(&b), Err(ParseError::UnknownType(9)));
    }

    #[test]
    fn names_are_sanitised() {
        let n = Name::new("a\u{1}b");
        assert_eq!(n.lossy(), "a?b");
        let long = Name::new(&"x".repeat(40));
        assert_eq!(long.bytes().len(), 31);
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(ring_bytes(0), 128 + 16);
        assert_eq!(ring_bytes(10), 128 + 16 * 1024);
    }
}
