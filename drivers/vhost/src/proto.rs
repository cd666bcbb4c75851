//! The vhost-user wire format, back-end side: what the front end sends, checked before it
//! is believed (QEMU `docs/interop/vhost-user.rst`).
//!
//! A message is a 12-byte header `{request u32, flags u32, size u32}` (native byte order)
//! followed by `size` payload bytes; file descriptors travel as `SCM_RIGHTS` ancillary data
//! of the same `sendmsg`, so they arrive with the header's bytes. Reading one
//! ([`read_message`]) goes: the header (and any descriptors) with one `recvmsg`; the
//! request code must be known and the version 1 ([`parse_header`]); the size must be one
//! the request carries, checked before a payload byte is read (and never more than
//! [`MAX_PAYLOAD`]); then the payload, and [`decode`] checks the descriptor count for that
//! request and turns the bytes into a typed [`Body`]. Every refusal closes the
//! descriptors that came with the message (they are [`OwnedFd`]s from the start) and says
//! how many it closed.

use crate::dirty::LogDesc;
use crate::mem::{RegionDesc, MAX_REGIONS};
use crate::vring::VringAddrs;
use pmd_core::unix;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Protocol version carried in bits 0–1 of `flags`.
pub const VERSION: u32 = 0x1;
/// Mask of the version bits in `flags`.
pub const VERSION_MASK: u32 = 0x3;
/// `flags` bit: the message is a reply.
pub const FLAG_REPLY: u32 = 0x4;
/// `flags` bit: the front end wants a REPLY_ACK status.
pub const FLAG_NEED_REPLY: u32 = 0x8;
/// Header bytes.
pub const HDR_LEN: usize = 12;
/// Largest payload read: the biggest request we take apart is a full memory table
/// (8 + 8 × 32 bytes); configuration-space messages are at most 12 + 256.
pub const MAX_PAYLOAD: usize = 12 + 256;
/// Bit in SET_VRING_KICK/CALL/ERR payloads: no descriptor attached.
pub const VRING_NOFD: u64 = 1 << 8;
/// Bits 0–7 of SET_VRING_KICK/CALL/ERR payloads: the ring index.
pub const VRING_INDEX_MASK: u64 = 0xff;

/// Virtio feature bit 30, reused by vhost-user: the back end takes protocol features.
pub const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;
/// Virtio feature bit 26 (vhost): dirty-page logging of every write.
pub const VHOST_F_LOG_ALL: u64 = 1 << 26;

/// Protocol feature bits (GET/SET_PROTOCOL_FEATURES).
pub mod protocol {
    /// GET_QUEUE_NUM and several queue pairs.
    pub const MQ: u64 = 1 << 0;
    /// The dirty log is shared memory passed with SET_LOG_BASE.
    pub const LOG_SHMFD: u64 = 1 << 1;
    /// SEND_RARP after a migration.
    pub const RARP: u64 = 1 << 2;
    /// A status reply to any request flagged NEED_REPLY.
    pub const REPLY_ACK: u64 = 1 << 3;
    /// NET_SET_MTU.
    pub const NET_MTU: u64 = 1 << 4;
    /// SET_BACKEND_REQ_FD: a socket for back-end initiated requests.
    pub const BACKEND_REQ: u64 = 1 << 5;
    /// SET_VRING_ENDIAN for legacy devices of the other byte order.
    pub const CROSS_ENDIAN: u64 = 1 << 6;
    /// Crypto sessions.
    pub const CRYPTO_SESSION: u64 = 1 << 7;
    /// Postcopy migration (userfaultfd).
    pub const PAGEFAULT: u64 = 1 << 8;
    /// GET_CONFIG / SET_CONFIG.
    pub const CONFIG: u64 = 1 << 9;
    /// Descriptors on the back-end request channel.
    pub const BACKEND_SEND_FD: u64 = 1 << 10;
    /// Host notifiers mapped into the guest.
    pub const HOST_NOTIFIER: u64 = 1 << 11;
    /// GET/SET_INFLIGHT_FD.
    pub const INFLIGHT_SHMFD: u64 = 1 << 12;
    /// RESET_DEVICE.
    pub const RESET_DEVICE: u64 = 1 << 13;
    /// VRING_KICK messages instead of eventfds.
    pub const INBAND_NOTIFICATIONS: u64 = 1 << 14;
    /// GET_MAX_MEM_SLOTS, ADD_MEM_REG, REM_MEM_REG.
    pub const CONFIGURE_MEM_SLOTS: u64 = 1 << 15;
    /// SET_STATUS / GET_STATUS.
    pub const STATUS: u64 = 1 << 16;
}

macro_rules! requests {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $text:literal;)*) => {
        /// Front-end request codes: the spec's whole list.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum Request {
            $($(#[$doc])* $name = $code,)*
        }

        impl Request {
            /// Every request, in code order.
            pub const ALL: &'static [Request] = &[$(Request::$name),*];

            /// The request with this code, if the spec has one.
            pub fn from_code(code: u32) -> Option<Request> {
                match code {
                    $($code => Some(Request::$name),)*
                    _ => None,
                }
            }

            /// Protocol name, for messages.
            pub fn name(self) -> &'static str {
                match self {
                    $(Request::$name => $text,)*
                }
            }
        }
    };
}

requests! {
    /// Device feature bits (reply u64).
    GetFeatures = 1, "GET_FEATURES";
    /// Negotiated feature bits (u64).
    SetFeatures = 2, "SET_FEATURES";
    /// Session start.
    SetOwner = 3, "SET_OWNER";
    /// Deprecated: disable every ring.
    ResetOwner = 4, "RESET_OWNER";
    /// Memory table, one descriptor per region.
    SetMemTable = 5, "SET_MEM_TABLE";
    /// Dirty log memory (u64 or log description, one descriptor with LOG_SHMFD).
    SetLogBase = 6, "SET_LOG_BASE";
    /// Eventfd to signal log changes.
    SetLogFd = 7, "SET_LOG_FD";
    /// Ring size (vring state).
    SetVringNum = 8, "SET_VRING_NUM";
    /// Ring addresses (vring address).
    SetVringAddr = 9, "SET_VRING_ADDR";
    /// Next available index (vring state).
    SetVringBase = 10, "SET_VRING_BASE";
    /// Stop a ring, reply its next available index (vring state).
    GetVringBase = 11, "GET_VRING_BASE";
    /// The eventfd the front end kicks (u64, descriptor unless NOFD).
    SetVringKick = 12, "SET_VRING_KICK";
    /// The eventfd the back end signals (u64, descriptor unless NOFD).
    SetVringCall = 13, "SET_VRING_CALL";
    /// The eventfd for ring errors (u64, descriptor unless NOFD).
    SetVringErr = 14, "SET_VRING_ERR";
    /// Protocol feature bits (reply u64).
    GetProtocolFeatures = 15, "GET_PROTOCOL_FEATURES";
    /// Negotiated protocol feature bits (u64).
    SetProtocolFeatures = 16, "SET_PROTOCOL_FEATURES";
    /// Queues the back end supports (reply u64).
    GetQueueNum = 17, "GET_QUEUE_NUM";
    /// Enable or disable a ring (vring state).
    SetVringEnable = 18, "SET_VRING_ENABLE";
    /// Announce the guest's MAC after a migration (u64).
    SendRarp = 19, "SEND_RARP";
    /// The MTU the guest is told (u64).
    NetSetMtu = 20, "NET_SET_MTU";
    /// Socket for back-end initiated requests (one descriptor).
    SetBackendReqFd = 21, "SET_BACKEND_REQ_FD";
    /// IOTLB update or invalidation.
    IotlbMsg = 22, "IOTLB_MSG";
    /// Ring byte order for legacy devices (vring state).
    SetVringEndian = 23, "SET_VRING_ENDIAN";
    /// Read device configuration space.
    GetConfig = 24, "GET_CONFIG";
    /// Write device configuration space.
    SetConfig = 25, "SET_CONFIG";
    /// Create a crypto session.
    CreateCryptoSession = 26, "CREATE_CRYPTO_SESSION";
    /// Close a crypto session (u64).
    CloseCryptoSession = 27, "CLOSE_CRYPTO_SESSION";
    /// Postcopy migration is coming.
    PostcopyAdvise = 28, "POSTCOPY_ADVISE";
    /// Postcopy migration started.
    PostcopyListen = 29, "POSTCOPY_LISTEN";
    /// Postcopy migration ended.
    PostcopyEnd = 30, "POSTCOPY_END";
    /// Get the in-flight tracking buffer.
    GetInflightFd = 31, "GET_INFLIGHT_FD";
    /// Set the in-flight tracking buffer (one descriptor).
    SetInflightFd = 32, "SET_INFLIGHT_FD";
    /// vhost-user-gpu socket (one descriptor).
    GpuSetSocket = 33, "GPU_SET_SOCKET";
    /// Disable every ring and reset the device.
    ResetDevice = 34, "RESET_DEVICE";
    /// In-band kick (vring state).
    VringKick = 35, "VRING_KICK";
    /// Most memory slots (reply u64).
    GetMaxMemSlots = 36, "GET_MAX_MEM_SLOTS";
    /// Add one memory region (one descriptor).
    AddMemReg = 37, "ADD_MEM_REG";
    /// Remove one memory region.
    RemMemReg = 38, "REM_MEM_REG";
    /// Device status byte (u64).
    SetStatus = 39, "SET_STATUS";
    /// Device status byte (reply u64).
    GetStatus = 40, "GET_STATUS";
    /// Look up a shared object by UUID.
    GetSharedObject = 41, "GET_SHARED_OBJECT";
    /// Device state transfer pipe (one descriptor).
    SetDeviceStateFd = 42, "SET_DEVICE_STATE_FD";
    /// Result of the device state transfer.
    CheckDeviceState = 43, "CHECK_DEVICE_STATE";
}

/// Payload sizes a request may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SizeRule {
    /// Exactly this many bytes.
    Exact(usize),
    /// Any of these two.
    Either(usize, usize),
    /// A memory table: the header and 1..=8 regions (or the whole fixed array).
    MemTable,
    /// At most this many bytes (requests we refuse anyway, but whose framing we check).
    AtMost(usize),
}

/// Descriptors a request may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FdRule {
    /// None.
    None,
    /// Exactly one.
    One,
    /// One or none.
    AtMostOne,
    /// One per memory region.
    PerRegion,
    /// One, or none when the payload has [`VRING_NOFD`].
    UnlessNofd,
}

/// Bytes of one memory region description.
const REGION_LEN: usize = 32;
/// Bytes of a vring state.
const STATE_LEN: usize = 8;
/// Bytes of a vring address description.
const ADDR_LEN: usize = 40;

impl Request {
    fn size_rule(self) -> SizeRule {
        use Request::*;
        use SizeRule::*;
        match self {
            GetFeatures | SetOwner | ResetOwner | GetProtocolFeatures | GetQueueNum
            | SetBackendReqFd | PostcopyAdvise | PostcopyListen | PostcopyEnd | GpuSetSocket
            | ResetDevice | GetMaxMemSlots | GetStatus | CheckDeviceState => Exact(0),
            SetFeatures | SetProtocolFeatures | SetVringKick | SetVringCall | SetVringErr
            | SendRarp | NetSetMtu | SetStatus | CloseCryptoSession => Exact(8),
            SetVringNum | SetVringBase | GetVringBase | SetVringEnable | SetVringEndian
            | VringKick => Exact(STATE_LEN),
            SetVringAddr => Exact(ADDR_LEN),
            SetMemTable => MemTable,
            SetLogBase => Either(8, 16),
            SetLogFd => Either(0, 8),
            AddMemReg | RemMemReg => Exact(8 + REGION_LEN),
            SetDeviceStateFd => Exact(8),
            GetSharedObject => Exact(16),
            IotlbMsg | GetConfig | SetConfig | CreateCryptoSession | GetInflightFd
            | SetInflightFd => AtMost(MAX_PAYLOAD),
        }
    }

    fn fd_rule(self) -> FdRule {
        use FdRule::*;
        use Request::*;
        match self {
            SetMemTable => PerRegion,
            SetVringKick | SetVringCall | SetVringErr => UnlessNofd,
            SetLogFd | SetBackendReqFd | SetInflightFd | GpuSetSocket | AddMemReg
            | SetDeviceStateFd => One,
            SetLogBase | RemMemReg => AtMostOne,
            _ => None,
        }
    }

    /// Whether the request has its own reply (so REPLY_ACK adds none).
    pub fn has_reply(self) -> bool {
        matches!(
            self,
            Request::GetFeatures
                | Request::GetProtocolFeatures
                | Request::GetQueueNum
                | Request::GetVringBase
                | Request::GetConfig
                | Request::GetMaxMemSlots
                | Request::GetStatus
                | Request::GetInflightFd
                | Request::PostcopyAdvise
                | Request::PostcopyEnd
                | Request::GetSharedObject
                | Request::CheckDeviceState
                | Request::IotlbMsg
                | Request::SetLogBase
        )
    }
}

/// Why a message was refused before it reached the protocol state machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// A request code the spec does not have.
    #[error("unknown request code {0}")]
    UnknownRequest(u32),
    /// Flags without version 1, with the reply bit, or with undefined bits.
    #[error("{req}: bad flags {flags:#x} (version 1, no reply bit, only NEED_REPLY)")]
    BadFlags {
        /// The request.
        req: &'static str,
        /// The flags.
        flags: u32,
    },
    /// A payload size the request does not carry.
    #[error("{req}: payload of {size} bytes, not what the request carries")]
    PayloadSize {
        /// The request.
        req: &'static str,
        /// The header's size field.
        size: u32,
    },
    /// A memory table with a region count outside 1..=8.
    #[error("SET_MEM_TABLE with {0} regions (1..={MAX_REGIONS})")]
    RegionCount(u32),
    /// More or fewer descriptors than the request takes.
    #[error("{req}: {got} file descriptors, it takes {want}")]
    FdCount {
        /// The request.
        req: &'static str,
        /// Descriptors received.
        got: usize,
        /// What the request takes.
        want: &'static str,
    },
    /// More descriptors than one message can carry (the kernel closed the rest).
    #[error("more file descriptors than a message can carry")]
    FdsTruncated,
    /// Descriptors that arrived with payload bytes instead of the header's.
    #[error("{0}: file descriptors arrived after the header")]
    FdsAfterHeader(&'static str),
    /// Bits set in a SET_VRING_KICK/CALL/ERR payload beyond the index and NOFD.
    #[error("{req}: reserved bits in {value:#x}")]
    ReservedBits {
        /// The request.
        req: &'static str,
        /// The payload.
        value: u64,
    },
}

/// A refused message: the reason and how many descriptors that came with it were closed.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Why.
    pub error: ProtoError,
    /// Descriptors closed with the message.
    pub fds_closed: usize,
}

/// A checked header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The request.
    pub request: Request,
    /// Flags (version 1, maybe NEED_REPLY).
    pub flags: u32,
    /// Payload bytes that follow (checked against the request).
    pub size: usize,
}

impl Header {
    /// Whether the front end asked for a REPLY_ACK status.
    pub fn need_reply(&self) -> bool {
        self.flags & FLAG_NEED_REPLY != 0
    }
}

/// Checks a header: a known request, version 1 without the reply bit, and a payload size
/// the request carries. Nothing after the header has been read when this refuses.
pub fn parse_header(b: &[u8; HDR_LEN]) -> Result<Header, ProtoError> {
    let word = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let (code, flags, size) = (word(0), word(4), word(8));
    let request = Request::from_code(code).ok_or(ProtoError::UnknownRequest(code))?;
    if flags & VERSION_MASK != VERSION || flags & !(VERSION_MASK | FLAG_NEED_REPLY) != 0 {
        return Err(ProtoError::BadFlags {
            req: request.name(),
            flags,
        });
    }
    let n = size as usize;
    let ok = match request.size_rule() {
        SizeRule::Exact(e) => n == e,
        SizeRule::Either(a, b) => n == a || n == b,
        SizeRule::MemTable => {
            (8 + REGION_LEN..=8 + MAX_REGIONS * REGION_LEN).contains(&n)
                && (n - 8).is_multiple_of(REGION_LEN)
        }
        SizeRule::AtMost(m) => n <= m,
    };
    if !ok {
        return Err(ProtoError::PayloadSize {
            req: request.name(),
            size,
        });
    }
    Ok(Header {
        request,
        flags,
        size: n,
    })
}

/// A vring state `{index, num}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VringState {
    /// Ring index.
    pub index: u32,
    /// Size, base or enable flag, by request.
    pub num: u32,
}

/// A SET_VRING_ADDR payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VringAddrMsg {
    /// Ring index.
    pub index: u32,
    /// The addresses and flags.
    pub addrs: VringAddrs,
}

/// A SET_VRING_KICK/CALL/ERR payload and its descriptor.
#[derive(Debug)]
pub struct VringFd {
    /// Ring index (bits 0–7).
    pub index: u8,
    /// The eventfd; `None` when the payload has [`VRING_NOFD`].
    pub fd: Option<OwnedFd>,
}

/// A decoded payload.
#[derive(Debug)]
pub enum Body {
    /// No payload.
    Empty,
    /// A u64.
    U64(u64),
    /// A vring state.
    State(VringState),
    /// Vring addresses.
    Addr(VringAddrMsg),
    /// A ring's eventfd.
    VringFd(VringFd),
    /// A memory table and its descriptors, in order.
    MemTable(Vec<RegionDesc>, Vec<OwnedFd>),
    /// SET_LOG_BASE's log description (the 16-byte form) and its descriptor, if any.
    LogBase(LogDesc, Option<OwnedFd>),
    /// A request the back end does not take apart (it refuses them): its descriptors, to
    /// be closed.
    Other(Vec<OwnedFd>),
}

/// One checked message.
#[derive(Debug)]
pub struct Message {
    /// The header.
    pub header: Header,
    /// The payload.
    pub body: Body,
}

fn u64_at(p: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p[i..i + 8]);
    u64::from_ne_bytes(b)
}

fn u32_at(p: &[u8], i: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&p[i..i + 4]);
    u32::from_ne_bytes(b)
}

/// Checks the descriptors against the request and decodes the payload (`payload.len()`
/// must be `header.size`). Refusals close every descriptor.
pub fn decode(header: Header, payload: &[u8], fds: Vec<OwnedFd>) -> Result<Message, Rejected> {
    let req = header.request;
    let reject = |error: ProtoError, fds: Vec<OwnedFd>| Rejected {
        error,
        fds_closed: fds.len(),
    };
    if payload.len() != header.size {
        let size = payload.len() as u32;
        return Err(reject(
            ProtoError::PayloadSize {
                req: req.name(),
                size,
            },
            fds,
        ));
    }
    let count = |want: &'static str, ok: bool, fds: Vec<OwnedFd>| {
        if ok {
            Ok(fds)
        } else {
            let got = fds.len();
            Err(reject(
                ProtoError::FdCount {
                    req: req.name(),
                    got,
                    want,
                },
                fds,
            ))
        }
    };
    let n = fds.len();
    let fds = match req.fd_rule() {
        FdRule::None => count("none", n == 0, fds)?,
        FdRule::One => count("exactly one", n == 1, fds)?,
        FdRule::AtMostOne => count("at most one", n <= 1, fds)?,
        FdRule::PerRegion | FdRule::UnlessNofd => fds,
    };
    let body = match req {
        Request::SetMemTable => {
            let regions = u32_at(payload, 0);
            let r = regions as usize;
            if r == 0 || r > MAX_REGIONS || 8 + r * REGION_LEN > payload.len() {
                return Err(reject(ProtoError::RegionCount(regions), fds));
            }
            let fds = count("one per region", n == r, fds)?;
            let descs = (0..r)
                .map(|i| {
                    let at = 8 + i * REGION_LEN;
                    RegionDesc {
                        guest_phys_addr: u64_at(payload, at),
                        memory_size: u64_at(payload, at + 8),
                        userspace_addr: u64_at(payload, at + 16),
                        mmap_offset: u64_at(payload, at + 24),
                    }
                })
                .collect();
            Body::MemTable(descs, fds)
        }
        Request::SetVringKick | Request::SetVringCall | Request::SetVringErr => {
            let value = u64_at(payload, 0);
            if value & !(VRING_INDEX_MASK | VRING_NOFD) != 0 {
                return Err(reject(
                    ProtoError::ReservedBits {
                        req: req.name(),
                        value,
                    },
                    fds,
                ));
            }
            let nofd = value & VRING_NOFD != 0;
            let mut fds = if nofd {
                count("none with NOFD", n == 0, fds)?
            } else {
                count("exactly one without NOFD", n == 1, fds)?
            };
            Body::VringFd(VringFd {
                index: (value & VRING_INDEX_MASK) as u8,
                fd: fds.pop(),
            })
        }
        Request::SetLogBase if payload.len() == 16 => {
            let mut fds = fds;
            Body::LogBase(
                LogDesc {
                    mmap_size: u64_at(payload, 0),
                    mmap_offset: u64_at(payload, 8),
                },
                fds.pop(),
            )
        }
        Request::SetVringAddr => Body::Addr(VringAddrMsg {
            index: u32_at(payload, 0),
            addrs: VringAddrs {
                flags: u32_at(payload, 4),
                desc: u64_at(payload, 8),
                used: u64_at(payload, 16),
                avail: u64_at(payload, 24),
                log: u64_at(payload, 32),
            },
        }),
        _ if !fds.is_empty() => Body::Other(fds),
        _ => match req.size_rule() {
            SizeRule::Exact(0) => Body::Empty,
            SizeRule::Exact(8) if is_state(req) => Body::State(VringState {
                index: u32_at(payload, 0),
                num: u32_at(payload, 4),
            }),
            SizeRule::Exact(8) => Body::U64(u64_at(payload, 0)),
            _ => Body::Other(Vec::new()),
        },
    };
    Ok(Message { header, body })
}

fn is_state(req: Request) -> bool {
    matches!(
        req,
        Request::SetVringNum
            | Request::SetVringBase
            | Request::GetVringBase
            | Request::SetVringEnable
            | Request::SetVringEndian
            | Request::VringKick
    )
}

/// A reply message: header (version 1, reply bit) and payload.
pub fn encode_reply(req: Request, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HDR_LEN + payload.len());
    m.extend_from_slice(&(req as u32).to_ne_bytes());
    m.extend_from_slice(&(VERSION | FLAG_REPLY).to_ne_bytes());
    m.extend_from_slice(&(payload.len() as u32).to_ne_bytes());
    m.extend_from_slice(payload);
    m
}

/// A u64 reply (GET_FEATURES, GET_PROTOCOL_FEATURES, GET_QUEUE_NUM, REPLY_ACK status).
pub fn reply_u64(req: Request, v: u64) -> Vec<u8> {
    encode_reply(req, &v.to_ne_bytes())
}

/// A vring state reply (GET_VRING_BASE).
pub fn reply_state(req: Request, s: VringState) -> Vec<u8> {
    let mut p = [0u8; STATE_LEN];
    p[..4].copy_from_slice(&s.index.to_ne_bytes());
    p[4..].copy_from_slice(&s.num.to_ne_bytes());
    encode_reply(req, &p)
}

/// Why reading a message failed.
#[derive(Debug)]
pub enum ReadError {
    /// The front end closed the connection between messages.
    Closed,
    /// The message was refused (its descriptors are closed).
    Rejected(Rejected),
    /// The stop flag was raised while a message was arriving.
    Stopped,
    /// The rest of a started message did not arrive in time, or the socket failed.
    Io(io::Error),
}

/// How long the rest of a message may take once its first byte arrived.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads one message from `sock`, whose read timeout must be short (the caller's tick):
/// the header with its descriptors, the checks of [`parse_header`], the payload, then
/// [`decode`]. Returns `Ok(None)` if nothing arrived within the socket's timeout. A
/// message must arrive whole within [`MESSAGE_TIMEOUT`]; `stop` is looked at between
/// reads.
pub fn read_message(sock: &UnixStream, stop: &AtomicBool) -> Result<Option<Message>, ReadError> {
    let mut hdr = [0u8; HDR_LEN];
    let mut fds = Vec::new();
    let mut got = 0;
    let mut truncated = false;
    let mut deadline = None;
    while got < HDR_LEN {
        match unix::recv_with_fds(sock.as_fd(), &mut hdr[got..]) {
            Ok(r) => {
                fds.extend(r.fds);
                truncated |= r.fds_truncated;
                if r.len == 0 {
                    return Err(if got == 0 && fds.is_empty() {
                        ReadError::Closed
                    } else {
                        ReadError::Io(io::ErrorKind::UnexpectedEof.into())
                    });
                }
                got += r.len;
                deadline.get_or_insert_with(|| Instant::now() + MESSAGE_TIMEOUT);
            }
            Err(e) if is_timeout(&e) => {
                if deadline.is_none() {
                    return Ok(None);
                }
                wait_more(stop, deadline)?;
            }
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    let reject = |error: ProtoError, fds: Vec<OwnedFd>| {
        ReadError::Rejected(Rejected {
            error,
            fds_closed: fds.len(),
        })
    };
    if truncated {
        return Err(reject(ProtoError::FdsTruncated, fds));
    }
    let header = match parse_header(&hdr) {
        Ok(h) => h,
        Err(e) => return Err(reject(e, fds)),
    };
    let mut payload = [0u8; MAX_PAYLOAD];
    let payload = &mut payload[..header.size];
    let mut got = 0;
    while got < payload.len() {
        match unix::recv_with_fds(sock.as_fd(), &mut payload[got..]) {
            Ok(r) if r.len == 0 => return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(r) => {
                // Descriptors belong with the header's bytes: any arriving later make the
                // message malformed.
                if !r.fds.is_empty() || r.fds_truncated {
                    let mut all = fds;
                    all.extend(r.fds);
                    return Err(reject(
                        ProtoError::FdsAfterHeader(header.request.name()),
                        all,
                    ));
                }
                got += r.len;
            }
            Err(e) if is_timeout(&e) => wait_more(stop, deadline)?,
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    decode(header, payload, fds)
        .map(Some)
        .map_err(ReadError::Rejected)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// After a read timed out in the middle of a message: stop, give up, or go on.
fn wait_more(stop: &AtomicBool, deadline: Option<Instant>) -> Result<(), ReadError> {
    if stop.load(Ordering::Relaxed) {
        return Err(ReadError::Stopped);
    }
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Err(ReadError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            "a message did not arrive whole",
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, RawFd};
    use std::time::Duration;

    /// A request as a front end sends it.
    pub(crate) fn msg(code: u32, flags: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        for w in [code, flags, payload.len() as u32] {
            m.extend_from_slice(&w.to_ne_bytes());
        }
        m.extend_from_slice(payload);
        m
    }

    /// A memfd of `len` bytes named `name`: tests count the descriptors open on it
    /// ([`open_named`]), which other tests running in parallel cannot disturb.
    pub(crate) fn named_fd(name: &str, len: u64) -> OwnedFd {
        let c = std::ffi::CString::new(name).unwrap();
        // SAFETY: a valid NUL-terminated name and flags; the result is checked.
        let fd = unsafe { unix::owned_fd(libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC)) };
        let f = std::fs::File::from(fd.unwrap());
        f.set_len(len).unwrap();
        f.into()
    }

    /// Descriptors of this process open on memfds named `name`.
    pub(crate) fn open_named(name: &str) -> usize {
        let tag = format!("/memfd:{name} ");
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|l| l.to_string_lossy().starts_with(&tag))
            .count()
    }

    fn pair() -> (UnixStream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        (a, b)
    }

    fn send(sock: &UnixStream, bytes: &[u8], fds: &[RawFd]) {
        unix::send_with_fds(sock.as_fd(), bytes, fds).unwrap();
    }

    fn read(sock: &UnixStream) -> Result<Option<Message>, ReadError> {
        read_message(sock, &AtomicBool::new(false))
    }

    fn rejected(r: Result<Option<Message>, ReadError>) -> Rejected {
        match r {
            Err(ReadError::Rejected(r)) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn every_code_round_trips_and_unknown_codes_are_errors() {
        for (i, r) in Request::ALL.iter().enumerate() {
            assert_eq!(*r as u32, i as u32 + 1);
            assert_eq!(Request::from_code(*r as u32), Some(*r));
        }
        assert_eq!(Request::from_code(0), None);
        assert_eq!(Request::from_code(44), None);
        let h = msg(1000, 1, &[]);
        assert_eq!(
            parse_header(&h[..12].try_into().unwrap()),
            Err(ProtoError::UnknownRequest(1000))
        );
    }

    #[test]
    fn headers_are_checked_before_the_payload() {
        let h = |code, flags, size: u32| {
            let mut b = [0u8; 12];
            b[..4].copy_from_slice(&(code as u32).to_ne_bytes());
            b[4..8].copy_from_slice(&(flags as u32).to_ne_bytes());
            b[8..].copy_from_slice(&size.to_ne_bytes());
            parse_header(&b)
        };
        assert!(h(1, 1, 0).is_ok());
        assert!(h(2, 9, 8).unwrap().need_reply());
        assert!(matches!(h(1, 0, 0), Err(ProtoError::BadFlags { .. })));
        assert!(matches!(h(1, 5, 0), Err(ProtoError::BadFlags { .. })));
        assert!(matches!(h(1, 0x11, 0), Err(ProtoError::BadFlags { .. })));
        assert!(matches!(h(2, 1, 4), Err(ProtoError::PayloadSize { .. })));
        assert!(matches!(h(9, 1, 39), Err(ProtoError::PayloadSize { .. })));
        assert!(matches!(h(5, 1, 8), Err(ProtoError::PayloadSize { .. })));
        assert!(h(5, 1, 8 + 32).is_ok());
        assert!(h(5, 1, 8 + 8 * 32).is_ok());
        assert!(matches!(
            h(5, 1, 8 + 9 * 32),
            Err(ProtoError::PayloadSize { .. })
        ));
        assert!(matches!(
            h(5, 1, 8 + 33),
            Err(ProtoError::PayloadSize { .. })
        ));
        assert!(matches!(
            h(24, 1, u32::MAX),
            Err(ProtoError::PayloadSize { .. })
        ));
    }

    #[test]
    fn reads_messages_with_their_descriptors() {
        let (a, b) = pair();
        assert!(read(&b).unwrap().is_none(), "nothing yet");
        let e = unix::eventfd().unwrap();
        send(&a, &msg(13, 1, &3u64.to_ne_bytes()), &[e.as_raw_fd()]);
        let m = read(&b).unwrap().unwrap();
        match m.body {
            Body::VringFd(VringFd {
                index: 3,
                fd: Some(_),
            }) => {}
            other => panic!("{other:?}"),
        }
        send(&a, &msg(12, 1, &(VRING_NOFD | 1).to_ne_bytes()), &[]);
        match read(&b).unwrap().unwrap().body {
            Body::VringFd(VringFd { index: 1, fd: None }) => {}
            other => panic!("{other:?}"),
        }
        let mut addr = [0u8; 40];
        addr[..4].copy_from_slice(&2u32.to_ne_bytes());
        addr[8..16].copy_from_slice(&0x1000u64.to_ne_bytes());
        addr[16..24].copy_from_slice(&0x3000u64.to_ne_bytes());
        addr[24..32].copy_from_slice(&0x2000u64.to_ne_bytes());
        send(&a, &msg(9, 1, &addr), &[]);
        match read(&b).unwrap().unwrap().body {
            Body::Addr(VringAddrMsg { index: 2, addrs }) => {
                assert_eq!(
                    (addrs.desc, addrs.avail, addrs.used),
                    (0x1000, 0x2000, 0x3000)
                )
            }
            other => panic!("{other:?}"),
        }
        drop(a);
        assert!(matches!(read(&b), Err(ReadError::Closed)));
    }

    #[test]
    fn descriptors_on_messages_that_take_none_are_closed() {
        let (a, b) = pair();
        let e = named_fd("proto-none", 0);
        // GET_FEATURES with a descriptor, SET_VRING_KICK with NOFD and a descriptor,
        // SET_VRING_CALL without NOFD and none, SET_MEM_TABLE with fewer than regions.
        send(&a, &msg(1, 1, &[]), &[e.as_raw_fd()]);
        let r = rejected(read(&b));
        assert!(matches!(r.error, ProtoError::FdCount { got: 1, .. }));
        assert_eq!(r.fds_closed, 1);
        send(
            &a,
            &msg(12, 1, &(VRING_NOFD | 1).to_ne_bytes()),
            &[e.as_raw_fd()],
        );
        assert_eq!(rejected(read(&b)).fds_closed, 1);
        send(&a, &msg(13, 1, &1u64.to_ne_bytes()), &[]);
        assert!(matches!(
            rejected(read(&b)).error,
            ProtoError::FdCount { got: 0, .. }
        ));
        let mut table = vec![0u8; 8 + 64];
        table[0] = 2;
        send(&a, &msg(5, 1, &table), &[e.as_raw_fd()]);
        assert_eq!(rejected(read(&b)).fds_closed, 1);
        drop(e);
        assert_eq!(
            open_named("proto-none"),
            0,
            "every received descriptor was closed"
        );
    }

    #[test]
    fn too_many_descriptors_are_refused_and_closed() {
        let (a, b) = pair();
        let e = named_fd("proto-many", 0);
        let mut table = vec![0u8; 8 + 32];
        table[0] = 1;
        send(&a, &msg(5, 1, &table), &[e.as_raw_fd(); 9]);
        let r = rejected(read(&b));
        assert!(matches!(r.error, ProtoError::FdCount { got: 9, .. }));
        assert_eq!(r.fds_closed, 9);
        send(&a, &msg(12, 1, &0u64.to_ne_bytes()), &[e.as_raw_fd(); 2]);
        assert_eq!(rejected(read(&b)).fds_closed, 2);
        drop(e);
        assert_eq!(open_named("proto-many"), 0);
    }

    #[test]
    fn oversized_and_wrong_sizes_are_refused_unread() {
        // Each on its own connection: after a refusal the rest of the stream is not
        // framed any more (the back end disconnects).
        let refuse = |bytes: &[u8]| {
            let (a, b) = pair();
            send(&a, bytes, &[]);
            rejected(read(&b)).error
        };
        // A size field of 4 GiB: refused from the header alone.
        let mut h = msg(24, 1, &[]);
        h[8..12].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(matches!(
            refuse(&h),
            ProtoError::PayloadSize { size: u32::MAX, .. }
        ));
        assert!(matches!(
            refuse(&msg(8, 1, &[0; 12])),
            ProtoError::PayloadSize { .. }
        ));
        assert_eq!(refuse(&msg(77, 1, &[])), ProtoError::UnknownRequest(77));
        assert!(matches!(
            refuse(&msg(13, 1, &(1u64 << 9).to_ne_bytes())),
            ProtoError::ReservedBits { .. }
        ));
        let mut table = vec![0u8; 8 + 32];
        table[0] = 2;
        assert_eq!(refuse(&msg(5, 1, &table)), ProtoError::RegionCount(2));
    }

    #[test]
    fn a_message_cut_short_times_out_and_stop_is_seen() {
        let (a, b) = pair();
        send(&a, &msg(2, 1, &[])[..8], &[]);
        let stop = AtomicBool::new(true);
        assert!(matches!(read_message(&b, &stop), Err(ReadError::Stopped)));
        let (a, b) = pair();
        let m = msg(2, 1, &7u64.to_ne_bytes());
        send(&a, &m[..14], &[]);
        drop(a);
        assert!(matches!(read(&b), Err(ReadError::Io(_))));
    }

    #[test]
    fn replies_are_encoded() {
        let r = reply_u64(Request::GetFeatures, 0x1_0000_0001);
        assert_eq!(r.len(), 20);
        assert_eq!(&r[..4], &1u32.to_ne_bytes());
        assert_eq!(&r[4..8], &5u32.to_ne_bytes());
        assert_eq!(&r[8..12], &8u32.to_ne_bytes());
        assert_eq!(&r[12..], &0x1_0000_0001u64.to_ne_bytes());
        let s = reply_state(Request::GetVringBase, VringState { index: 1, num: 7 });
        assert_eq!(&s[12..16], &1u32.to_ne_bytes());
        assert_eq!(&s[16..], &7u32.to_ne_bytes());
    }
}
