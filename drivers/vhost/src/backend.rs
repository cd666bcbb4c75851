//! The protocol state machine of one vhost-user connection ([`Backend`]), and [`serve`],
//! which runs a connection: read a message, handle it, reply.
//!
//! The back end drives the data path only through [`RingControl`]: a ring is handed over
//! (`start`) once it is complete — a size, addresses that translate through the current
//! memory table with their full lengths, a memory table, a kick descriptor (or NOFD
//! polling) — and enabled. Without `VHOST_USER_F_PROTOCOL_FEATURES` negotiated a ring is
//! enabled by its SET_VRING_KICK; with it, only by SET_VRING_ENABLE 1 (the spec's "Ring
//! states"). Any change to a running ring takes it back first (`stop`) and hands it over
//! again afterwards; GET_VRING_BASE stops it until the next SET_VRING_KICK. A ring that
//! is started but disabled is not handed over at all (the spec allows processing it
//! without side effects; front ends disable the queues the guest does not use). The link
//! is up while rings 0 and 1 run.
//!
//! Everything in a message is front-end input: ring indexes are checked against the
//! `2 × queues` rings, sizes are powers of two up to 32768, feature bits must have been
//! offered, and descriptors are counted and closed on every path ([`ControlStats`]). A
//! refused message is an `Err(`[`Refusal`]`)` (after a non-zero REPLY_ACK status when the
//! front end asked for one); the caller disconnects.
//!
//! Offered features: `VERSION_1`, `MRG_RXBUF`, `EVENT_IDX`, `ANY_LAYOUT`, `CTRL_VQ` (served
//! by the VMM or virtio-user, never by us), `MQ` with more than one queue pair,
//! `VHOST_USER_F_PROTOCOL_FEATURES`, and with `tso` the checksum and
//! TSO bits both ways. `ANY_LAYOUT` is offered because a `VERSION_1` device must accept any
//! framing of header and data in descriptors anyway (virtio 1.2 section 2.7.4), so the
//! data path cannot rely on a layout; the bit only tells a legacy driver the same.
//! `RING_PACKED` is offered: with it negotiated a ring's addresses name a descriptor ring
//! (16 × size bytes) and the driver and device event suppression areas (4 bytes each),
//! and its base (SET_VRING_BASE, GET_VRING_BASE) holds the next position in bits 0..=14
//! and the wrap counter in bit 15; a position beyond the ring is refused when the ring
//! would start. `IN_ORDER` is offered: both layouts use chains in the order they were
//! made available and give each its own used entry, so a front end that negotiates it
//! (DPDK's virtio-user does) may free descriptors in order without walking them.
//! `INDIRECT_DESC` is offered: a chain may end in a table of descriptors, checked like
//! the ring (`indirect`). `VHOST_F_LOG_ALL` is offered: while it is negotiated and a log
//! was passed (SET_LOG_BASE with `LOG_SHMFD`, answered once the rings write the new log),
//! the rings report every write into guest memory in it ([`crate::dirty`]), so a VMM can
//! migrate its VM live. SET_LOG_FD is taken and its descriptor closed (nothing signals
//! it). Protocol features: `MQ`, `REPLY_ACK` and `LOG_SHMFD`.

use crate::dirty::{DirtyLog, LogError};
use crate::mem::{GuestMemory, MemError};
use crate::proto::{
    self, protocol, Body, Header, Message, ProtoError, ReadError, Rejected, Request, VringAddrMsg,
    VringFd, VringState, VHOST_F_LOG_ALL, VHOST_USER_F_PROTOCOL_FEATURES,
};
use crate::vring::{RingControl, VringAddrs, VringConfig};
use pmd_core::unix;
use pmd_core::vnet::features::*;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Protocol features offered.
pub const OFFERED_PROTOCOL_FEATURES: u64 = protocol::MQ | protocol::REPLY_ACK | protocol::LOG_SHMFD;
/// Largest split ring (virtio 1.2 section 2.7: `Queue Size` at most 32768).
pub const MAX_RING_SIZE: u32 = 32768;
/// Smallest MTU NET_SET_MTU may set (IPv4's minimum datagram).
pub const MIN_MTU: u64 = 68;
/// Largest MTU NET_SET_MTU may set (the virtio-net `mtu` field is 16 bits).
pub const MAX_MTU: u64 = 65535;
/// How often [`serve`] looks at its stop flag while the socket is quiet.
pub const TICK: Duration = Duration::from_millis(50);

/// The virtio features offered for `queues` pairs, with or without offloads.
pub fn offered_features(queues: u16, tso: bool) -> u64 {
    let mut f = VIRTIO_F_VERSION_1
        | VIRTIO_NET_F_MRG_RXBUF
        | VIRTIO_F_EVENT_IDX
        | VIRTIO_F_ANY_LAYOUT
        | VIRTIO_F_RING_PACKED
        | VIRTIO_F_IN_ORDER
        | VIRTIO_F_INDIRECT_DESC
        | VHOST_F_LOG_ALL
        | VHOST_USER_F_PROTOCOL_FEATURES;
    if queues > 1 {
        f |= VIRTIO_NET_F_MQ;
    }
    // The control queue is never the back end's: the VMM (QEMU) or virtio-user serves
    // it, turning VQ_PAIRS_SET into SET_VRING_ENABLE. Offered like DPDK's back end does,
    // since a front end needs it to use more than one queue pair.
    f |= VIRTIO_NET_F_CTRL_VQ;
    if tso {
        f |= VIRTIO_NET_F_CSUM
            | VIRTIO_NET_F_GUEST_CSUM
            | VIRTIO_NET_F_HOST_TSO4
            | VIRTIO_NET_F_HOST_TSO6
            | VIRTIO_NET_F_GUEST_TSO4
            | VIRTIO_NET_F_GUEST_TSO6;
    }
    f
}

/// Why the back end refused a message (the connection is then closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Malformed: unknown request, bad flags or size, wrong descriptor count.
    #[error("{0}")]
    Message(#[from] ProtoError),
    /// SET_FEATURES with bits that were not offered.
    #[error("SET_FEATURES: bits {0:#x} were not offered")]
    Features(u64),
    /// SET_PROTOCOL_FEATURES with bits that were not offered.
    #[error("SET_PROTOCOL_FEATURES: bits {0:#x} were not offered")]
    ProtocolFeatures(u64),
    /// A memory table that [`GuestMemory::build`] refused.
    #[error("SET_MEM_TABLE: {0}")]
    MemTable(MemError),
    /// A ring index beyond the rings offered.
    #[error("{req}: ring {index}, there are {rings}")]
    RingIndex {
        /// The request.
        req: &'static str,
        /// The index.
        index: u32,
        /// Rings offered (`2 × queues`).
        rings: usize,
    },
    /// SET_VRING_NUM with a size that is not a power of two in 1..=32768.
    #[error("SET_VRING_NUM: ring size {0} (a power of two up to 32768)")]
    RingSize(u32),
    /// SET_VRING_BASE with an index beyond 16 bits.
    #[error("SET_VRING_BASE: base {0} does not fit 16 bits")]
    RingBase(u32),
    /// A ring area outside every region (with its full size) or misaligned.
    #[error("ring {index}: the {area} is outside the memory table or misaligned")]
    RingAddr {
        /// The ring.
        index: u16,
        /// Which area: descriptor table, available ring, used ring.
        area: &'static str,
    },
    /// Packed ring: the position in the base (bits 0..=14) is not inside the ring.
    #[error("ring {index}: packed base position {base} is beyond the ring's {size} entries")]
    PackedBase {
        /// The ring.
        index: u16,
        /// The position from the base.
        base: u16,
        /// The ring's entries.
        size: u16,
    },
    /// SET_VRING_ENABLE with a value other than 0 or 1.
    #[error("SET_VRING_ENABLE: {0} (0 or 1)")]
    Enable(u32),
    /// NET_SET_MTU outside 68..=65535.
    #[error("NET_SET_MTU: {0} (68..=65535)")]
    Mtu(u64),
    /// SET_LOG_BASE with a log that [`DirtyLog::map`] refused, or without LOG_SHMFD.
    #[error("SET_LOG_BASE: {0}")]
    Logging(LogError),
    /// A request this back end does not serve.
    #[error("{0}: not supported")]
    Unsupported(&'static str),
}

impl Refusal {
    /// Names of the refusal kinds, in [`Refusal::kind`] order (xstats names).
    pub const KINDS: [&'static str; 12] = [
        "malformed",
        "features",
        "protocol_features",
        "mem_table",
        "ring_index",
        "ring_size",
        "ring_base",
        "ring_addr",
        "enable",
        "mtu",
        "logging",
        "unsupported",
    ];

    /// The kind's index in [`Refusal::KINDS`].
    pub fn kind(&self) -> usize {
        match self {
            Refusal::Message(_) => 0,
            Refusal::Features(_) => 1,
            Refusal::ProtocolFeatures(_) => 2,
            Refusal::MemTable(_) => 3,
            Refusal::RingIndex { .. } => 4,
            Refusal::RingSize(_) => 5,
            Refusal::RingBase(_) | Refusal::PackedBase { .. } => 6,
            Refusal::RingAddr { .. } => 7,
            Refusal::Enable(_) => 8,
            Refusal::Mtu(_) => 9,
            Refusal::Logging(_) => 10,
            Refusal::Unsupported(_) => 11,
        }
    }
}

/// Control-plane counters of one device (all connections), for xstats.
#[derive(Debug, Default)]
pub struct ControlStats {
    /// Messages received (handled or refused).
    pub messages: AtomicU64,
    /// Messages refused, by [`Refusal::kind`].
    pub refused: [AtomicU64; Refusal::KINDS.len()],
    /// Descriptors from the front end closed by the control plane: refused with their
    /// message, replaced, consumed by a memory table, or dropped at a reset.
    pub fds_closed: AtomicU64,
    /// SEND_RARP requests (accepted and ignored).
    pub rarp: AtomicU64,
    /// Dirty logs taken (SET_LOG_BASE accepted: one per migration, more if the VMM
    /// resized the log).
    pub log_bases: AtomicU64,
    /// Pages the rings were to log beyond the log's end (not marked; only a front end
    /// whose log is smaller than its memory table causes them).
    pub log_outside: Arc<AtomicU64>,
}

impl ControlStats {
    /// The counters as `(name, value)` pairs.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut v = vec![
            ("ctrl_messages".to_string(), get(&self.messages)),
            ("ctrl_fds_closed".to_string(), get(&self.fds_closed)),
            ("ctrl_rarp".to_string(), get(&self.rarp)),
            ("ctrl_log_bases".to_string(), get(&self.log_bases)),
            ("ctrl_log_outside".to_string(), get(&self.log_outside)),
        ];
        for (name, c) in Refusal::KINDS.iter().zip(&self.refused) {
            v.push((format!("ctrl_refused_{name}"), get(c)));
        }
        v
    }

    /// Refusals of all kinds.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// A ring's kick source.
#[derive(Debug)]
enum Kick {
    /// An eventfd the front end writes when it made buffers available and we did not
    /// suppress kicks: read only by a receive queue that sleeps (rx interrupts).
    Fd {
        /// The descriptor, closed when replaced or at a reset (and by the data path's
        /// last copy of the ring's configuration).
        fd: Arc<OwnedFd>,
    },
    /// NOFD: the front end expects polling.
    Polled,
}

/// What the front end configured for one ring.
#[derive(Debug, Default)]
struct Ring {
    size: Option<u16>,
    addrs: Option<VringAddrs>,
    base: u16,
    kick: Option<Kick>,
    call: Option<Arc<OwnedFd>>,
    err: Option<OwnedFd>,
    enabled: bool,
    running: bool,
}

impl Ring {
    /// Descriptors this ring holds.
    fn fds(&self) -> u64 {
        u64::from(matches!(self.kick, Some(Kick::Fd { .. })))
            + u64::from(self.call.is_some())
            + u64::from(self.err.is_some())
    }
}

/// What handling a message produced.
#[derive(Debug)]
pub struct Response {
    /// Bytes to send back (a reply, or a REPLY_ACK status).
    pub reply: Option<Vec<u8>>,
    /// `Some` if the message was refused: the connection must be closed.
    pub refusal: Option<Refusal>,
}

/// The protocol state of one connection.
#[derive(Debug)]
pub struct Backend {
    queues: u16,
    offered: u64,
    features: u64,
    protocol_features: u64,
    mem: Option<Arc<GuestMemory>>,
    /// The dirty log from SET_LOG_BASE; the rings write it while LOG_ALL is negotiated.
    log: Option<Arc<DirtyLog>>,
    rings: Vec<Ring>,
    mtu: Option<u16>,
    link_up: bool,
    stats: Arc<ControlStats>,
}

impl Backend {
    /// A back end offering `queues` pairs (`2 × queues` rings), with offloads if `tso`,
    /// counting into `stats`.
    pub fn new(queues: u16, tso: bool, stats: Arc<ControlStats>) -> Backend {
        let queues = queues.max(1);
        Backend {
            queues,
            offered: offered_features(queues, tso),
            features: 0,
            protocol_features: 0,
            mem: None,
            log: None,
            rings: (0..2 * queues as usize).map(|_| Ring::default()).collect(),
            mtu: None,
            link_up: false,
            stats,
        }
    }

    /// Virtio features offered.
    pub fn offered(&self) -> u64 {
        self.offered
    }

    /// Virtio features the front end set (SET_FEATURES).
    pub fn features(&self) -> u64 {
        self.features
    }

    /// Protocol features the front end set.
    pub fn protocol_features(&self) -> u64 {
        self.protocol_features
    }

    /// The MTU from NET_SET_MTU, if any.
    pub fn mtu(&self) -> Option<u16> {
        self.mtu
    }

    /// Whether ring `index` is handed to the data path.
    pub fn running(&self, index: usize) -> bool {
        self.rings.get(index).is_some_and(|r| r.running)
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<ControlStats> {
        &self.stats
    }

    /// Counts a message refused while it was read (its descriptors are already closed).
    pub fn note_rejected(&self, r: &Rejected) {
        ControlStats::add(&self.stats.messages, 1);
        ControlStats::add(&self.stats.fds_closed, r.fds_closed as u64);
        ControlStats::add(
            &self.stats.refused[Refusal::Message(r.error.clone()).kind()],
            1,
        );
    }

    /// Handles one message: its reply, or a refusal (with a non-zero REPLY_ACK status if
    /// the front end asked for one).
    pub fn handle(&mut self, msg: Message, rc: &dyn RingControl) -> Response {
        ControlStats::add(&self.stats.messages, 1);
        let Header { request, .. } = msg.header;
        let need_reply = msg.header.need_reply();
        let result = self.dispatch(request, msg.body, rc);
        self.update_link(rc);
        let ack =
            need_reply && self.protocol_features & protocol::REPLY_ACK != 0 && !request.has_reply();
        match result {
            Ok(reply) => Response {
                reply: reply.or_else(|| ack.then(|| proto::reply_u64(request, 0))),
                refusal: None,
            },
            Err(r) => {
                ControlStats::add(&self.stats.refused[r.kind()], 1);
                Response {
                    reply: ack.then(|| proto::reply_u64(request, 1)),
                    refusal: Some(r),
                }
            }
        }
    }

    /// After a disconnect: takes every ring back, drops the memory table, closes every
    /// descriptor and forgets what was negotiated.
    pub fn reset(&mut self, rc: &dyn RingControl) {
        for i in 0..self.rings.len() {
            self.stop(i, rc);
        }
        let fds: u64 = self.rings.iter().map(Ring::fds).sum();
        ControlStats::add(&self.stats.fds_closed, fds);
        self.rings.iter_mut().for_each(|r| *r = Ring::default());
        self.mem = None;
        self.log = None;
        self.features = 0;
        self.protocol_features = 0;
        self.mtu = None;
        self.update_link(rc);
    }

    fn dispatch(
        &mut self,
        req: Request,
        body: Body,
        rc: &dyn RingControl,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        use Request as R;
        match (req, body) {
            (R::GetFeatures, Body::Empty) => return Ok(Some(proto::reply_u64(req, self.offered))),
            (R::SetFeatures, Body::U64(f)) => {
                if f & !self.offered != 0 {
                    return Err(Refusal::Features(f & !self.offered));
                }
                if f != self.features {
                    self.reconfigure_all(rc, |b| b.features = f)?;
                }
            }
            (R::SetOwner, Body::Empty) => {}
            (R::ResetOwner, Body::Empty) => {
                // Deprecated; the spec recommends disabling every ring, nothing more.
                for i in 0..self.rings.len() {
                    self.stop(i, rc);
                    self.rings[i].enabled = false;
                }
            }
            (R::GetProtocolFeatures, Body::Empty) => {
                return Ok(Some(proto::reply_u64(req, OFFERED_PROTOCOL_FEATURES)))
            }
            (R::SetProtocolFeatures, Body::U64(f)) => {
                if f & !OFFERED_PROTOCOL_FEATURES != 0 {
                    return Err(Refusal::ProtocolFeatures(f & !OFFERED_PROTOCOL_FEATURES));
                }
                self.protocol_features = f;
            }
            (R::GetQueueNum, Body::Empty) => {
                return Ok(Some(proto::reply_u64(req, u64::from(self.queues))))
            }
            (R::SetMemTable, Body::MemTable(descs, fds)) => {
                let n = fds.len() as u64;
                let built = GuestMemory::build(&descs, fds);
                // Mapped or refused, the descriptors are closed now.
                ControlStats::add(&self.stats.fds_closed, n);
                let mem = Arc::new(built.map_err(Refusal::MemTable)?);
                self.reconfigure_all(rc, |b| b.mem = Some(mem))?;
            }
            (R::SetVringNum, Body::State(VringState { index, num })) => {
                let i = self.ring_index(req, index)?;
                if !num.is_power_of_two() || num > MAX_RING_SIZE {
                    return Err(Refusal::RingSize(num));
                }
                self.reconfigure(i, rc, |r| r.size = Some(num as u16))?;
            }
            (R::SetVringAddr, Body::Addr(VringAddrMsg { index, addrs })) => {
                let i = self.ring_index(req, index)?;
                if let (Some(size), Some(mem)) = (self.rings[i].size, &self.mem) {
                    check_layout_addrs(i as u16, size, &addrs, mem, self.features)?;
                }
                self.reconfigure(i, rc, |r| r.addrs = Some(addrs))?;
            }
            (R::SetVringBase, Body::State(VringState { index, num })) => {
                let i = self.ring_index(req, index)?;
                let base = u16::try_from(num).map_err(|_| Refusal::RingBase(num))?;
                self.reconfigure(i, rc, |r| r.base = base)?;
            }
            (R::GetVringBase, Body::State(VringState { index, .. })) => {
                let i = self.ring_index(req, index)?;
                self.stop(i, rc);
                // Stopped until the next SET_VRING_KICK.
                let r = &mut self.rings[i];
                if let Some(Kick::Fd { .. }) = r.kick.take() {
                    ControlStats::add(&self.stats.fds_closed, 1);
                }
                let s = VringState {
                    index,
                    num: u32::from(r.base),
                };
                return Ok(Some(proto::reply_state(req, s)));
            }
            (R::SetVringKick, Body::VringFd(VringFd { index, fd })) => {
                let i = self.ring_index_or_close(req, index, &fd)?;
                let kick_enables = self.features & VHOST_USER_F_PROTOCOL_FEATURES == 0;
                let stats = self.stats.clone();
                self.reconfigure(i, rc, |r| {
                    let new = Some(fd.map_or(Kick::Polled, |fd| Kick::Fd { fd: Arc::new(fd) }));
                    if let Some(Kick::Fd { .. }) = std::mem::replace(&mut r.kick, new) {
                        ControlStats::add(&stats.fds_closed, 1);
                    }
                    if kick_enables {
                        r.enabled = true;
                    }
                })?;
            }
            (R::SetVringCall, Body::VringFd(VringFd { index, fd })) => {
                let i = self.ring_index_or_close(req, index, &fd)?;
                let stats = self.stats.clone();
                self.reconfigure(i, rc, |r| {
                    if std::mem::replace(&mut r.call, fd.map(Arc::new)).is_some() {
                        ControlStats::add(&stats.fds_closed, 1);
                    }
                })?;
            }
            (R::SetVringErr, Body::VringFd(VringFd { index, fd })) => {
                let i = self.ring_index_or_close(req, index, &fd)?;
                // Not part of what the data path uses: no restart.
                if std::mem::replace(&mut self.rings[i].err, fd).is_some() {
                    ControlStats::add(&self.stats.fds_closed, 1);
                }
            }
            (R::SetVringEnable, Body::State(VringState { index, num })) => {
                let i = self.ring_index(req, index)?;
                match num {
                    1 => {
                        self.rings[i].enabled = true;
                        self.try_start(i, rc)?;
                    }
                    0 => {
                        self.stop(i, rc);
                        self.rings[i].enabled = false;
                    }
                    n => return Err(Refusal::Enable(n)),
                }
            }
            (R::SendRarp, Body::U64(_)) => ControlStats::add(&self.stats.rarp, 1),
            (R::NetSetMtu, Body::U64(m)) => {
                if !(MIN_MTU..=MAX_MTU).contains(&m) {
                    return Err(Refusal::Mtu(m));
                }
                self.mtu = Some(m as u16);
            }
            (R::SetLogBase, Body::LogBase(desc, fd)) => {
                let Some(fd) = fd else {
                    return Err(Refusal::Logging(LogError::NoFd));
                };
                // Mapped or refused, the descriptor is closed now.
                ControlStats::add(&self.stats.fds_closed, 1);
                if self.protocol_features & protocol::LOG_SHMFD == 0 {
                    return Err(Refusal::Logging(LogError::NoShmfd));
                }
                let outside = self.stats.log_outside.clone();
                let log = Arc::new(DirtyLog::map(desc, fd, outside).map_err(Refusal::Logging)?);
                // The rings write the new log before the reply: the front end may free
                // the old one when it has it.
                self.reconfigure_all(rc, |b| b.log = Some(log))?;
                ControlStats::add(&self.stats.log_bases, 1);
                tracing::info!(
                    "vhost-user: dirty log of {} bytes taken (the front end migrates its VM)",
                    desc.mmap_size
                );
                return Ok(Some(proto::encode_reply(req, &[])));
            }
            (R::SetLogBase, body) => {
                // The 8-byte form: a log address in the front end's own memory.
                self.close_body(body);
                return Err(Refusal::Logging(LogError::NoShmfd));
            }
            (R::SetLogFd, body) => self.close_body(body),
            (_, body) => {
                self.close_body(body);
                return Err(Refusal::Unsupported(req.name()));
            }
        }
        Ok(None)
    }

    /// Closes (and counts) the descriptors of a message that keeps none (refused, or
    /// SET_LOG_FD).
    fn close_body(&self, body: Body) {
        let n = match body {
            Body::Other(fds) | Body::MemTable(_, fds) => fds.len(),
            Body::VringFd(VringFd { fd, .. }) | Body::LogBase(_, fd) => usize::from(fd.is_some()),
            Body::Empty | Body::U64(_) | Body::State(_) | Body::Addr(_) => 0,
        };
        ControlStats::add(&self.stats.fds_closed, n as u64);
    }

    fn ring_index(&self, req: Request, index: u32) -> Result<usize, Refusal> {
        let i = index as usize;
        if i < self.rings.len() {
            Ok(i)
        } else {
            Err(Refusal::RingIndex {
                req: req.name(),
                index,
                rings: self.rings.len(),
            })
        }
    }

    /// [`Backend::ring_index`] for a message with a descriptor: a refusal counts it as
    /// closed (the caller drops it).
    fn ring_index_or_close(
        &self,
        req: Request,
        index: u8,
        fd: &Option<OwnedFd>,
    ) -> Result<usize, Refusal> {
        self.ring_index(req, u32::from(index)).inspect_err(|_| {
            ControlStats::add(&self.stats.fds_closed, u64::from(fd.is_some()));
        })
    }

    /// Takes ring `i` back from the data path if it runs, keeping the base it reached.
    fn stop(&mut self, i: usize, rc: &dyn RingControl) {
        let r = &mut self.rings[i];
        if r.running {
            if let Some(base) = rc.stop(i as u16) {
                r.base = base;
            }
            r.running = false;
        }
    }

    /// Changes ring `i` with it stopped, then starts it if it is complete.
    fn reconfigure(
        &mut self,
        i: usize,
        rc: &dyn RingControl,
        change: impl FnOnce(&mut Ring),
    ) -> Result<(), Refusal> {
        self.stop(i, rc);
        change(&mut self.rings[i]);
        self.try_start(i, rc)
    }

    /// Changes what every ring depends on (features, memory table) with the rings
    /// stopped, then starts those that are complete.
    fn reconfigure_all(
        &mut self,
        rc: &dyn RingControl,
        change: impl FnOnce(&mut Backend),
    ) -> Result<(), Refusal> {
        for i in 0..self.rings.len() {
            self.stop(i, rc);
        }
        change(self);
        for i in 0..self.rings.len() {
            self.try_start(i, rc)?;
        }
        Ok(())
    }

    /// Hands ring `i` to the data path if it is enabled and complete and its areas
    /// translate through the memory table.
    fn try_start(&mut self, i: usize, rc: &dyn RingControl) -> Result<(), Refusal> {
        let r = &self.rings[i];
        if r.running || !r.enabled || r.kick.is_none() {
            return Ok(());
        }
        let (Some(size), Some(addrs), Some(mem)) = (r.size, r.addrs, &self.mem) else {
            return Ok(());
        };
        check_layout_addrs(i as u16, size, &addrs, mem, self.features)?;
        let packed_pos = r.base & !crate::packed::BASE_WRAP;
        if self.features & VIRTIO_F_RING_PACKED != 0 && packed_pos >= size {
            return Err(Refusal::PackedBase {
                index: i as u16,
                base: packed_pos,
                size,
            });
        }
        rc.start(VringConfig {
            index: i as u16,
            size,
            base: r.base,
            addrs,
            features: self.features,
            mem: mem.clone(),
            call: r.call.clone(),
            kick: match &r.kick {
                Some(Kick::Fd { fd }) => Some(fd.clone()),
                _ => None,
            },
            log: self
                .log
                .clone()
                .filter(|_| self.features & VHOST_F_LOG_ALL != 0),
        });
        self.rings[i].running = true;
        Ok(())
    }

    fn update_link(&mut self, rc: &dyn RingControl) {
        let up = self.running(0) && self.running(1);
        if up != self.link_up {
            self.link_up = up;
            rc.set_link(up);
        }
    }
}

/// Checks that the three areas of a split ring of `size` entries lie inside the memory
/// table with their full sizes (virtio 1.2 section 2.7: descriptor table 16 × size,
/// available ring 6 + 2 × size, used ring 6 + 8 × size, event fields included) and are
/// aligned (16, 2, 4), both as front-end addresses and where they are mapped here.
pub fn check_addrs(
    index: u16,
    size: u16,
    a: &VringAddrs,
    mem: &GuestMemory,
) -> Result<(), Refusal> {
    let n = u64::from(size);
    let areas = [
        ("descriptor table", a.desc, 16 * n, 16u64),
        ("available ring", a.avail, 6 + 2 * n, 2),
        ("used ring", a.used, 6 + 8 * n, 4),
    ];
    check_areas(index, &areas, mem)
}

/// Checks that the three areas of a packed ring of `size` entries lie inside the memory
/// table with their full sizes and alignment (virtio 1.2 section 2.8: descriptor ring
/// 16 × size bytes aligned to 16, driver and device event suppression areas 4 bytes each
/// aligned to 4), both as front-end addresses and where they are mapped here.
pub fn check_packed_addrs(
    index: u16,
    size: u16,
    a: &VringAddrs,
    mem: &GuestMemory,
) -> Result<(), Refusal> {
    let areas = [
        ("descriptor ring", a.desc, 16 * u64::from(size), 16u64),
        ("driver event suppression area", a.avail, 4, 4),
        ("device event suppression area", a.used, 4, 4),
    ];
    check_areas(index, &areas, mem)
}

/// [`check_packed_addrs`] if `features` has `VIRTIO_F_RING_PACKED`, else
/// [`check_addrs`].
pub fn check_layout_addrs(
    index: u16,
    size: u16,
    a: &VringAddrs,
    mem: &GuestMemory,
    features: u64,
) -> Result<(), Refusal> {
    if features & VIRTIO_F_RING_PACKED != 0 {
        check_packed_addrs(index, size, a, mem)
    } else {
        check_addrs(index, size, a, mem)
    }
}

/// Checks each `(name, address, length, alignment)` area.
fn check_areas(
    index: u16,
    areas: &[(&'static str, u64, u64, u64)],
    mem: &GuestMemory,
) -> Result<(), Refusal> {
    for &(area, addr, len, align) in areas {
        let ok = addr % align == 0
            && mem
                .uva(addr, len)
                .is_some_and(|p| (p as usize).is_multiple_of(align as usize));
        if !ok {
            return Err(Refusal::RingAddr { index, area });
        }
    }
    Ok(())
}

/// Why [`serve`] returned.
#[derive(Debug)]
pub enum Ended {
    /// The front end closed the connection.
    PeerClosed,
    /// A message was refused.
    Refused(Refusal),
    /// The stop flag was raised.
    Stopped,
    /// The socket failed, or a message did not arrive whole in time.
    Io(io::Error),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::PeerClosed => f.write_str("the front end closed the connection"),
            Ended::Refused(r) => write!(f, "refused: {r}"),
            Ended::Stopped => f.write_str("the port was closed"),
            Ended::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

/// Runs one connection until it ends: reads each message (looking at `stop` at least
/// every [`TICK`]), handles it, writes its reply. On return every ring is taken back and
/// the back end is reset ([`Backend::reset`]), whatever ended the connection.
pub fn serve(
    sock: &UnixStream,
    backend: &mut Backend,
    rc: &dyn RingControl,
    stop: &AtomicBool,
) -> Ended {
    let ended = serve_messages(sock, backend, rc, stop);
    backend.reset(rc);
    ended
}

fn serve_messages(
    sock: &UnixStream,
    backend: &mut Backend,
    rc: &dyn RingControl,
    stop: &AtomicBool,
) -> Ended {
    let timeouts = sock
        .set_read_timeout(Some(TICK))
        .and_then(|_| sock.set_write_timeout(Some(proto::MESSAGE_TIMEOUT)));
    if let Err(e) = timeouts {
        return Ended::Io(e);
    }
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ended::Stopped;
        }
        let msg = match proto::read_message(sock, stop) {
            Ok(None) => continue,
            Ok(Some(m)) => m,
            Err(ReadError::Closed) => return Ended::PeerClosed,
            Err(ReadError::Stopped) => return Ended::Stopped,
            Err(ReadError::Io(e)) => return Ended::Io(e),
            Err(ReadError::Rejected(r)) => {
                backend.note_rejected(&r);
                return Ended::Refused(Refusal::Message(r.error));
            }
        };
        tracing::debug!("vhost-user: {} {:?}", msg.header.request.name(), msg.body);
        let resp = backend.handle(msg, rc);
        if let Some(reply) = resp.reply {
            if let Err(e) = unix::send_with_fds(sock.as_fd(), &reply, &[]) {
                return Ended::Io(e);
            }
        }
        if let Some(r) = resp.refusal {
            return Ended::Refused(r);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mem::tests::memfd;
    use crate::mem::RegionDesc;
    use crate::proto::tests::{msg, named_fd, open_named};
    use crate::proto::{FLAG_NEED_REPLY, VRING_NOFD};
    use std::collections::BTreeMap;
    use std::os::fd::{AsRawFd, RawFd};
    use std::sync::Mutex;

    /// A `RingControl` that records what it was told; a stopped ring reports its base
    /// advanced by `progress`.
    #[derive(Debug, Default)]
    pub(crate) struct Recorder {
        pub(crate) running: Mutex<BTreeMap<u16, VringConfig>>,
        pub(crate) starts: AtomicU64,
        pub(crate) link: Mutex<Vec<bool>>,
        pub(crate) progress: u16,
    }

    impl RingControl for Recorder {
        fn start(&self, cfg: VringConfig) {
            self.starts.fetch_add(1, Ordering::Relaxed);
            self.running.lock().unwrap().insert(cfg.index, cfg);
        }
        fn stop(&self, index: u16) -> Option<u16> {
            let cfg = self.running.lock().unwrap().remove(&index)?;
            Some(cfg.base.wrapping_add(self.progress))
        }
        fn set_link(&self, up: bool) {
            self.link.lock().unwrap().push(up);
        }
    }

    impl Recorder {
        pub(crate) fn running(&self) -> Vec<u16> {
            self.running.lock().unwrap().keys().copied().collect()
        }
    }

    /// Where the test table lives: one 64 KiB region.
    pub(crate) const GPA: u64 = 0x10_0000;
    pub(crate) const UVA: u64 = 0x7f00_0000_0000;
    pub(crate) const LEN: u64 = 65536;

    pub(crate) fn state(index: u32, num: u32) -> Vec<u8> {
        let mut p = index.to_ne_bytes().to_vec();
        p.extend_from_slice(&num.to_ne_bytes());
        p
    }

    pub(crate) fn addr(index: u32, desc: u64, avail: u64, used: u64) -> Vec<u8> {
        let mut p = index.to_ne_bytes().to_vec();
        p.extend_from_slice(&0u32.to_ne_bytes());
        for v in [desc, used, avail, 0] {
            p.extend_from_slice(&v.to_ne_bytes());
        }
        p
    }

    pub(crate) fn table(regions: &[RegionDesc]) -> Vec<u8> {
        let mut p = (regions.len() as u32).to_ne_bytes().to_vec();
        p.extend_from_slice(&0u32.to_ne_bytes());
        for r in regions {
            for v in [
                r.guest_phys_addr,
                r.memory_size,
                r.userspace_addr,
                r.mmap_offset,
            ] {
                p.extend_from_slice(&v.to_ne_bytes());
            }
        }
        p
    }

    pub(crate) fn region(gpa: u64, size: u64, uva: u64) -> RegionDesc {
        RegionDesc {
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: uva,
            mmap_offset: 0,
        }
    }

    /// A test harness: a back end, its recorder, and messages fed as bytes.
    struct Harness {
        b: Backend,
        rc: Recorder,
        /// Name of the memfds this test passes (see [`open_named`]).
        tag: &'static str,
    }

    impl Harness {
        fn new(queues: u16, tag: &'static str) -> Harness {
            Harness {
                tag,
                b: Backend::new(queues, true, Arc::new(ControlStats::default())),
                rc: Recorder {
                    progress: 7,
                    ..Recorder::default()
                },
            }
        }

        /// Feeds one message (parsed and decoded like [`proto::read_message`]).
        fn send(&mut self, code: u32, flags: u32, payload: &[u8], fds: Vec<OwnedFd>) -> Response {
            let bytes = msg(code, flags, payload);
            let h = match proto::parse_header(&bytes[..12].try_into().unwrap()) {
                Ok(h) => h,
                Err(e) => {
                    self.b.note_rejected(&Rejected {
                        error: e.clone(),
                        fds_closed: fds.len(),
                    });
                    return Response {
                        reply: None,
                        refusal: Some(Refusal::Message(e)),
                    };
                }
            };
            match proto::decode(h, &bytes[12..], fds) {
                Ok(m) => self.b.handle(m, &self.rc),
                Err(r) => {
                    self.b.note_rejected(&r);
                    Response {
                        reply: None,
                        refusal: Some(Refusal::Message(r.error)),
                    }
                }
            }
        }

        fn ok(&mut self, code: u32, payload: &[u8], fds: Vec<OwnedFd>) -> Option<Vec<u8>> {
            let r = self.send(code, 1, payload, fds);
            assert!(r.refusal.is_none(), "request {code}: {:?}", r.refusal);
            r.reply
        }

        fn refused(&mut self, code: u32, payload: &[u8], fds: Vec<OwnedFd>) -> Refusal {
            let r = self.send(code, 1, payload, fds);
            r.refusal
                .unwrap_or_else(|| panic!("request {code} was accepted"))
        }

        fn u64_reply(&mut self, code: u32) -> u64 {
            let r = self.ok(code, &[], vec![]).unwrap();
            assert_eq!(r.len(), 20);
            u64::from_ne_bytes(r[12..].try_into().unwrap())
        }

        /// Memory table of one region.
        fn table(&mut self) {
            let t = table(&[region(GPA, LEN, UVA)]);
            assert!(self.ok(5, &t, vec![named_fd(self.tag, LEN)]).is_none());
        }

        /// Ring `i` of 256 entries at offset `i × 16 KiB` of the table, configured in
        /// QEMU's order (`vhost_virtqueue_start`: num, base, addresses, kick, then call).
        fn ring(&mut self, i: u32) {
            let at = UVA + u64::from(i) * 16384;
            self.ok(8, &state(i, 256), vec![]);
            self.ok(10, &state(i, 0), vec![]);
            self.ok(9, &addr(i, at, at + 4096, at + 8192), vec![]);
            self.ok(12, &u64::from(i).to_ne_bytes(), vec![named_fd(self.tag, 0)]);
            self.ok(13, &u64::from(i).to_ne_bytes(), vec![named_fd(self.tag, 0)]);
        }

        fn nothing_running(&self) {
            assert!(self.rc.running().is_empty(), "{:?}", self.rc.running());
            assert!((0..self.b.rings.len()).all(|i| !self.b.running(i)));
        }
    }

    #[test]
    fn qemu_like_negotiation() {
        let mut h = Harness::new(2, "be-qemu");
        h.ok(3, &[], vec![]);
        let offered = h.u64_reply(1);
        assert_eq!(offered, h.b.offered());
        assert_ne!(offered & VHOST_USER_F_PROTOCOL_FEATURES, 0);
        assert_ne!(offered & VIRTIO_NET_F_MQ, 0);
        assert_ne!(offered & VIRTIO_F_RING_PACKED, 0);
        assert_ne!(offered & VIRTIO_F_INDIRECT_DESC, 0);
        assert_ne!(offered & VIRTIO_F_IN_ORDER, 0);
        assert_eq!(offered & VIRTIO_NET_F_CTRL_RX, 0);
        assert_eq!(h.u64_reply(15), OFFERED_PROTOCOL_FEATURES);
        h.ok(16, &OFFERED_PROTOCOL_FEATURES.to_ne_bytes(), vec![]);
        assert_eq!(h.u64_reply(17), 2);
        // Start: features, table (acknowledged), rings, then enables.
        let acked = h.send(2, 1 | FLAG_NEED_REPLY, &offered.to_ne_bytes(), vec![]);
        assert_eq!(acked.reply.unwrap()[12..], 0u64.to_ne_bytes());
        let t = table(&[region(GPA, LEN, UVA)]);
        let acked = h.send(5, 1 | FLAG_NEED_REPLY, &t, vec![named_fd(h.tag, LEN)]);
        assert_eq!(acked.reply.unwrap()[12..], 0u64.to_ne_bytes());
        for i in 0..4 {
            h.ring(i);
        }
        h.nothing_running();
        assert!(h.rc.link.lock().unwrap().is_empty());
        for i in 0..4 {
            h.ok(18, &state(i, 1), vec![]);
        }
        assert_eq!(h.rc.running(), [0, 1, 2, 3]);
        assert_eq!(*h.rc.link.lock().unwrap(), [true]);
        let cfg = h.rc.running.lock().unwrap()[&1].clone();
        assert_eq!((cfg.size, cfg.base, cfg.features), (256, 0, offered));
        assert!(cfg.call.is_some());
        // Stop: GET_VRING_BASE answers where the data path got to.
        for i in 0..4 {
            let r = h.ok(11, &state(i, 0), vec![]).unwrap();
            assert_eq!(r[12..], state(i, 7)[..]);
        }
        h.nothing_running();
        assert_eq!(*h.rc.link.lock().unwrap(), [true, false]);
        // A stopped ring answers its last base again.
        let r = h.ok(11, &state(0, 0), vec![]).unwrap();
        assert_eq!(r[12..], state(0, 7)[..]);
        assert_eq!(h.b.stats().refused_total(), 0);
    }

    /// SET_LOG_BASE's 16-byte payload.
    fn log_desc(size: u64, offset: u64) -> Vec<u8> {
        let mut p = size.to_ne_bytes().to_vec();
        p.extend_from_slice(&offset.to_ne_bytes());
        p
    }

    /// The logs the running rings were handed, by ring (`None`: not logging).
    fn ring_logs(h: &Harness) -> Vec<Option<u64>> {
        let running = h.rc.running.lock().unwrap();
        running
            .values()
            .map(|c| c.log.as_ref().map(|l| l.len()))
            .collect()
    }

    #[test]
    fn qemu_like_migration_logs_while_log_all_is_negotiated() {
        let mut h = Harness::new(1, "be-mig");
        let offered = h.b.offered();
        assert_ne!(offered & VHOST_F_LOG_ALL, 0, "LOG_ALL offered");
        assert_ne!(
            h.u64_reply(15) & protocol::LOG_SHMFD,
            0,
            "LOG_SHMFD offered"
        );
        h.ok(16, &OFFERED_PROTOCOL_FEATURES.to_ne_bytes(), vec![]);
        let base = offered & !VHOST_F_LOG_ALL;
        h.ok(2, &base.to_ne_bytes(), vec![]);
        h.table();
        for i in 0..2 {
            h.ring(i);
            h.ok(18, &state(i, 1), vec![]);
        }
        assert_eq!(ring_logs(&h), [None, None]);
        // Migration starts (QEMU's order: the log, then LOG_ALL). The log is answered by
        // an empty reply, not a REPLY_ACK status, and the rings do not log yet.
        let starts = h.rc.starts.load(Ordering::Relaxed);
        let r = h.send(
            6,
            1 | FLAG_NEED_REPLY,
            &log_desc(4096, 0),
            vec![named_fd(h.tag, 4096)],
        );
        assert!(r.refusal.is_none(), "{:?}", r.refusal);
        let reply = r.reply.unwrap();
        assert_eq!(reply.len(), 12, "an empty reply");
        assert_eq!(u32::from_ne_bytes(reply[..4].try_into().unwrap()), 6);
        assert_eq!(ring_logs(&h), [None, None]);
        assert_eq!(h.rc.starts.load(Ordering::Relaxed), starts + 2, "restarted");
        h.ok(2, &offered.to_ne_bytes(), vec![]);
        assert_eq!(ring_logs(&h), [Some(4096), Some(4096)]);
        // A bigger log (memory added during the migration) replaces it; the old one is
        // unmapped once the rings let go of it.
        h.ok(6, &log_desc(8192, 4096), vec![named_fd(h.tag, 12288)]);
        assert_eq!(ring_logs(&h), [Some(8192), Some(8192)]);
        let maps = || {
            std::fs::read_to_string("/proc/self/maps")
                .unwrap()
                .matches("/memfd:be-mig")
                .count()
        };
        assert_eq!(maps(), 2, "the table and the new log are mapped");
        // SET_LOG_FD: taken, its descriptor closed.
        h.ok(7, &[], vec![named_fd(h.tag, 0)]);
        // Migration ends (cancelled: the VM goes on here): LOG_ALL off, rings not logging.
        h.ok(2, &base.to_ne_bytes(), vec![]);
        assert_eq!(ring_logs(&h), [None, None]);
        assert_eq!(h.b.stats().log_bases.load(Ordering::Relaxed), 2);
        assert_eq!(h.b.stats().refused_total(), 0);
        // A disconnect drops the log and the table.
        h.b.reset(&h.rc);
        assert_eq!(maps(), 0);
        assert_eq!(open_named(h.tag), 0);
    }

    #[test]
    fn hostile_logs_are_refused_and_their_descriptors_closed() {
        let mut h = Harness::new(1, "be-log");
        h.ok(16, &OFFERED_PROTOCOL_FEATURES.to_ne_bytes(), vec![]);
        let cases: [(Vec<u8>, Option<u64>, LogError); 6] = [
            (log_desc(0, 0), Some(4096), LogError::Size(0)),
            (
                log_desc(crate::dirty::MAX_LOG_SIZE + 1, 0),
                Some(4096),
                LogError::Size(crate::dirty::MAX_LOG_SIZE + 1),
            ),
            // Log size overflow: offset + size wraps.
            (log_desc(4096, u64::MAX - 4095), Some(4096), LogError::Wraps),
            (
                log_desc(4096, 4096),
                Some(4096),
                LogError::FileTooShort {
                    need: 8192,
                    has: 4096,
                },
            ),
            (log_desc(4096, 0), None, LogError::NoFd),
            (log_desc(64, 0), Some(0), LogError::NotAFile),
        ];
        let mut given = 0;
        for (payload, file, want) in cases {
            let fds = match file {
                Some(0) => {
                    let (r, _w) = std::io::pipe().unwrap();
                    vec![OwnedFd::from(r)]
                }
                Some(len) => vec![named_fd(h.tag, len)],
                None => vec![],
            };
            given += fds.len() as u64;
            assert_eq!(h.refused(6, &payload, fds), Refusal::Logging(want));
            assert_eq!(open_named(h.tag), 0);
            assert_eq!(h.b.stats().fds_closed.load(Ordering::Relaxed), given);
        }
        assert_eq!(h.b.stats().log_bases.load(Ordering::Relaxed), 0);
        assert_eq!(
            h.b.stats().refused[Refusal::Logging(LogError::NoFd).kind()].load(Ordering::Relaxed),
            6
        );
        // Two descriptors on a log: refused before the back end sees it.
        assert!(matches!(
            h.refused(
                6,
                &log_desc(4096, 0),
                vec![named_fd(h.tag, 4096), named_fd(h.tag, 4096)]
            ),
            Refusal::Message(ProtoError::FdCount { .. })
        ));
        assert_eq!(open_named(h.tag), 0);
    }

    #[test]
    fn virtio_user_like_negotiation_over_a_socket() {
        let (fe, be) = UnixStream::pair().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let rc = Arc::new(Recorder::default());
        let stats = Arc::new(ControlStats::default());
        let server = {
            let (stop, rc, stats) = (stop.clone(), rc.clone(), stats.clone());
            std::thread::spawn(move || {
                let mut b = Backend::new(1, false, stats);
                serve(&be, &mut b, &*rc, &stop)
            })
        };
        let send = |code: u32, flags: u32, payload: &[u8], fds: &[RawFd]| {
            unix::send_with_fds(fe.as_fd(), &msg(code, flags, payload), fds).unwrap();
        };
        let recv = |len: usize| {
            let mut b = vec![0u8; 12 + len];
            std::io::Read::read_exact(&mut &fe, &mut b).unwrap();
            b
        };
        // Our virtio-user: SET_OWNER, GET_FEATURES, GET/SET_PROTOCOL_FEATURES,
        // GET_QUEUE_NUM, then with REPLY_ACK every set is acknowledged.
        send(3, 1, &[], &[]);
        send(1, 1, &[], &[]);
        let f = u64::from_ne_bytes(recv(8)[12..].try_into().unwrap());
        assert_eq!(f, offered_features(1, false));
        send(15, 1, &[], &[]);
        recv(8);
        send(16, 1, &OFFERED_PROTOCOL_FEATURES.to_ne_bytes(), &[]);
        send(17, 1, &[], &[]);
        assert_eq!(recv(8)[12..], 1u64.to_ne_bytes());
        let set = |code: u32, payload: &[u8], fds: &[RawFd]| {
            send(code, 1 | FLAG_NEED_REPLY, payload, fds);
            let r = recv(8);
            assert_eq!(r[..4], code.to_ne_bytes());
            assert_eq!(r[12..], 0u64.to_ne_bytes(), "request {code} acknowledged");
        };
        set(2, &f.to_ne_bytes(), &[]);
        let mem = memfd(LEN, false);
        set(5, &table(&[region(UVA, LEN, UVA)]), &[mem.as_raw_fd()]);
        let (call, kick) = (unix::eventfd().unwrap(), unix::eventfd().unwrap());
        for i in 0..2u32 {
            let at = UVA + u64::from(i) * 16384;
            set(8, &state(i, 256), &[]);
            set(10, &state(i, 0), &[]);
            set(9, &addr(i, at, at + 4096, at + 8192), &[]);
            set(13, &u64::from(i).to_ne_bytes(), &[call.as_raw_fd()]);
            set(12, &u64::from(i).to_ne_bytes(), &[kick.as_raw_fd()]);
        }
        assert!(rc.running().is_empty(), "disabled until SET_VRING_ENABLE");
        for i in 0..2 {
            set(18, &state(i, 1), &[]);
        }
        assert_eq!(rc.running(), [0, 1]);
        assert_eq!(*rc.link.lock().unwrap(), [true]);
        // Stop: disable, GET_VRING_BASE.
        for i in 0..2 {
            set(18, &state(i, 0), &[]);
        }
        assert!(rc.running().is_empty());
        send(11, 1, &state(1, 0), &[]);
        assert_eq!(recv(8)[12..], state(1, 0)[..]);
        // A bad request: REPLY_ACK says no, then the connection ends.
        send(8, 1 | FLAG_NEED_REPLY, &state(0, 3), &[]);
        assert_ne!(recv(8)[12..], 0u64.to_ne_bytes());
        match server.join().unwrap() {
            Ended::Refused(Refusal::RingSize(3)) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(
            stats.refused[Refusal::RingSize(3).kind()].load(Ordering::Relaxed),
            1
        );
        assert!(stats.messages.load(Ordering::Relaxed) >= 20);
    }

    #[test]
    fn serve_sees_the_stop_flag_and_a_closed_peer() {
        let (fe, be) = UnixStream::pair().unwrap();
        let stop = AtomicBool::new(false);
        let rc = Recorder::default();
        let mut b = Backend::new(1, false, Arc::new(ControlStats::default()));
        std::thread::scope(|s| {
            let t = s.spawn(|| serve(&be, &mut b, &rc, &stop));
            std::thread::sleep(Duration::from_millis(60));
            let t0 = std::time::Instant::now();
            stop.store(true, Ordering::Relaxed);
            assert!(matches!(t.join().unwrap(), Ended::Stopped));
            assert!(t0.elapsed() < Duration::from_millis(200));
        });
        stop.store(false, Ordering::Relaxed);
        drop(fe);
        assert!(matches!(serve(&be, &mut b, &rc, &stop), Ended::PeerClosed));
    }

    #[test]
    fn without_protocol_features_a_kick_enables_and_changes_restart_rings() {
        let mut h = Harness::new(1, "be-restart");
        h.ok(
            2,
            &(VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MRG_RXBUF).to_ne_bytes(),
            vec![],
        );
        h.table();
        h.ring(0);
        h.ring(1);
        assert_eq!(h.rc.running(), [0, 1]);
        assert_eq!(*h.rc.link.lock().unwrap(), [true]);
        // A new call fd on a running ring: stopped, restarted with the base reached.
        // (QEMU's order already did so once: the kick started it, the call restarted it.)
        let starts = h.rc.starts.load(Ordering::Relaxed);
        let base = h.rc.running.lock().unwrap()[&0].base;
        assert_eq!(base, 7);
        h.ok(13, &0u64.to_ne_bytes(), vec![named_fd(h.tag, 0)]);
        assert_eq!(h.rc.starts.load(Ordering::Relaxed), starts + 1);
        assert_eq!(h.rc.running.lock().unwrap()[&0].base, base + 7);
        // A new memory table restarts both with the new table.
        h.table();
        assert_eq!(h.rc.running(), [0, 1]);
        assert_eq!(h.rc.starts.load(Ordering::Relaxed), starts + 3);
        // A polled kick (NOFD) also starts a ring; the old kick fd is closed.
        let closed = h.b.stats().fds_closed.load(Ordering::Relaxed);
        h.ok(12, &(VRING_NOFD | 1).to_ne_bytes(), vec![]);
        assert_eq!(h.b.stats().fds_closed.load(Ordering::Relaxed), closed + 1);
        assert!(h.b.running(1));
        // Reset: everything stopped, every fd closed.
        assert_eq!(open_named(h.tag), 3, "kick 0, call 0, call 1");
        h.b.reset(&h.rc);
        h.nothing_running();
        assert_eq!(*h.rc.link.lock().unwrap(), [true, false]);
        assert_eq!(open_named(h.tag), 0);
        assert_eq!(h.b.stats().fds_closed.load(Ordering::Relaxed), closed + 4);
    }

    #[test]
    fn hostile_memory_tables() {
        let mut h = Harness::new(1, "be-mem");
        let fds = |n: usize| (0..n).map(|_| named_fd("be-mem", 8192)).collect::<Vec<_>>();
        let a = region(0, 4096, UVA);
        // Overlap (guest addresses), overflow (wrap), a file too short, too many regions.
        let cases: Vec<(Vec<RegionDesc>, MemError)> = vec![
            (
                vec![a, region(4095, 4096, UVA + 0x10000)],
                MemError::Overlap(0, 1),
            ),
            (vec![region(u64::MAX - 100, 4096, UVA)], MemError::Wraps(0)),
            (
                vec![region(0, 16384, UVA)],
                MemError::FileTooShort {
                    region: 0,
                    need: 16384,
                    has: 8192,
                },
            ),
        ];
        for (regions, want) in cases {
            let n = regions.len();
            let got = h.refused(5, &table(&regions), fds(n));
            assert_eq!(got, Refusal::MemTable(want));
        }
        let nine: Vec<RegionDesc> = (0..9)
            .map(|i| region(i * 4096, 4096, UVA + i * 4096))
            .collect();
        let mut p = table(&nine);
        p.truncate(8 + 8 * 32);
        assert_eq!(
            h.refused(5, &p, fds(9)),
            Refusal::Message(ProtoError::RegionCount(9))
        );
        assert_eq!(open_named("be-mem"), 0);
        assert!(h.b.mem.is_none());
        h.nothing_running();
        assert_eq!(
            h.b.stats().fds_closed.load(Ordering::Relaxed),
            2 + 1 + 1 + 9
        );
        assert_eq!(h.b.stats().refused[3].load(Ordering::Relaxed), 3);
    }

    #[test]
    fn hostile_ring_fields() {
        let mut h = Harness::new(1, "be-ring");
        h.ok(2, &VIRTIO_F_VERSION_1.to_ne_bytes(), vec![]);
        h.table();
        // Queue index beyond the 2 rings, in each request that names one.
        assert!(matches!(
            h.refused(8, &state(2, 256), vec![]),
            Refusal::RingIndex { index: 2, .. }
        ));
        assert!(matches!(
            h.refused(9, &addr(255, UVA, UVA, UVA), vec![]),
            Refusal::RingIndex { .. }
        ));
        assert!(matches!(
            h.refused(10, &state(u32::MAX, 0), vec![]),
            Refusal::RingIndex { .. }
        ));
        assert!(matches!(
            h.refused(11, &state(9, 0), vec![]),
            Refusal::RingIndex { .. }
        ));
        assert!(matches!(
            h.refused(18, &state(2, 1), vec![]),
            Refusal::RingIndex { .. }
        ));
        for code in [12, 13, 14] {
            let e = named_fd(h.tag, 0);
            assert!(matches!(
                h.refused(code, &2u64.to_ne_bytes(), vec![e]),
                Refusal::RingIndex { .. }
            ));
        }
        // Sizes: not a power of two, zero, too big.
        for n in [0, 3, 255, 65536, 1 << 31] {
            assert_eq!(h.refused(8, &state(0, n), vec![]), Refusal::RingSize(n));
        }
        assert_eq!(
            h.refused(10, &state(0, 65536), vec![]),
            Refusal::RingBase(65536)
        );
        assert_eq!(h.refused(18, &state(0, 2), vec![]), Refusal::Enable(2));
        // Addresses outside every region, straddling its end, misaligned.
        h.ok(8, &state(0, 256), vec![]);
        let end = UVA + LEN;
        for (d, a, u, area) in [
            (0x1000, UVA + 4096, UVA + 8192, "descriptor table"),
            (end - 4095, UVA + 4096, UVA + 8192, "descriptor table"),
            (UVA + 8, UVA + 4096, UVA + 8192, "descriptor table"),
            (UVA, end - 100, UVA + 8192, "available ring"),
            (UVA, UVA + 4097, UVA + 8192, "available ring"),
            (UVA, UVA + 4096, end - 2048, "used ring"),
            (UVA, UVA + 4096, UVA + 8194, "used ring"),
            (UVA, UVA + 4096, u64::MAX - 3, "used ring"),
        ] {
            assert_eq!(
                h.refused(9, &addr(0, d, a, u), vec![]),
                Refusal::RingAddr { index: 0, area },
                "{d:#x} {a:#x} {u:#x}"
            );
        }
        // Addresses set before the size are checked when the ring would start: a size
        // too big for where the rings are.
        h.ok(9, &addr(1, end - 4096 * 2, end - 4096, end - 2048), vec![]);
        h.ok(12, &(VRING_NOFD | 1).to_ne_bytes(), vec![]);
        assert!(matches!(
            h.refused(8, &state(1, 1024), vec![]),
            Refusal::RingAddr { index: 1, .. }
        ));
        assert_eq!(open_named(h.tag), 0, "every refused descriptor was closed");
        assert_eq!(h.b.stats().fds_closed.load(Ordering::Relaxed), 1 + 3);
        h.nothing_running();
        assert_eq!(h.b.stats().refused_total(), 5 + 3 + 5 + 2 + 8 + 1);
    }

    #[test]
    fn packed_rings_base_and_areas() {
        let mut h = Harness::new(1, "be-packed");
        let f = VIRTIO_F_VERSION_1 | VIRTIO_F_RING_PACKED;
        h.ok(2, &f.to_ne_bytes(), vec![]);
        h.table();
        let end = UVA + LEN;
        // The packed layout: a 16 × 256-byte descriptor ring and two 4-byte event
        // suppression areas, which may sit where a split ring's would not fit.
        h.ok(8, &state(0, 256), vec![]);
        for (d, a, u, area) in [
            (end - 4096 + 16, UVA, UVA + 4, "descriptor ring"),
            (UVA + 8, UVA + 8192, UVA + 8196, "descriptor ring"),
            (UVA, end - 2, UVA + 8196, "driver event suppression area"),
            (UVA, UVA + 8194, UVA + 8196, "driver event suppression area"),
            (UVA, UVA + 8192, end, "device event suppression area"),
        ] {
            assert_eq!(
                h.refused(9, &addr(0, d, a, u), vec![]),
                Refusal::RingAddr { index: 0, area },
                "{d:#x} {a:#x} {u:#x}"
            );
        }
        h.ok(9, &addr(0, end - 4096, end - 8, end - 4), vec![]);
        // Base: position 5 of the lap with wrap counter 1 (bit 15); a position beyond
        // the ring is refused when the ring would start.
        h.ok(10, &state(0, 0x8000 | 5), vec![]);
        h.ok(12, &VRING_NOFD.to_ne_bytes(), vec![]);
        let cfg = h.rc.running.lock().unwrap()[&0].clone();
        assert_eq!((cfg.base, cfg.features), (0x8005, f));
        // GET_VRING_BASE answers the data path's position and wrap counter.
        let r = h.ok(11, &state(0, 0), vec![]).unwrap();
        assert_eq!(r[12..], state(0, 0x8005 + 7)[..]);
        h.ok(10, &state(0, 0x8000 | 256), vec![]);
        assert_eq!(
            h.refused(12, &VRING_NOFD.to_ne_bytes(), vec![]),
            Refusal::PackedBase {
                index: 0,
                base: 256,
                size: 256
            }
        );
        assert_eq!(
            Refusal::PackedBase {
                index: 0,
                base: 256,
                size: 256
            }
            .kind(),
            Refusal::RingBase(0).kind()
        );
        h.nothing_running();
        assert_eq!(open_named(h.tag), 0, "every descriptor was closed");
    }

    #[test]
    fn hostile_features_and_unsupported_requests() {
        let mut h = Harness::new(1, "be-feat");
        let offered = h.b.offered();
        assert_eq!(
            h.refused(2, &(offered | VIRTIO_NET_F_CTRL_RX).to_ne_bytes(), vec![]),
            Refusal::Features(VIRTIO_NET_F_CTRL_RX)
        );
        assert_eq!(
            h.refused(2, &(1u64 << 24).to_ne_bytes(), vec![]),
            Refusal::Features(1 << 24)
        );
        assert_eq!(
            h.refused(16, &(1u64 << 2).to_ne_bytes(), vec![]),
            Refusal::ProtocolFeatures(1 << 2)
        );
        // A log without LOG_SHMFD negotiated, or in the 8-byte form: refused, descriptors
        // closed.
        let mut log = 4096u64.to_ne_bytes().to_vec();
        log.extend_from_slice(&0u64.to_ne_bytes());
        assert_eq!(
            h.refused(6, &log, vec![named_fd(h.tag, 4096)]),
            Refusal::Logging(LogError::NoShmfd)
        );
        assert_eq!(
            h.refused(6, &log[..8], vec![named_fd(h.tag, 4096)]),
            Refusal::Logging(LogError::NoShmfd)
        );
        // Unknown and unsupported requests.
        assert_eq!(
            h.refused(99, &[], vec![]),
            Refusal::Message(ProtoError::UnknownRequest(99))
        );
        assert_eq!(
            h.refused(21, &[], vec![named_fd(h.tag, 0)]),
            Refusal::Unsupported("SET_BACKEND_REQ_FD")
        );
        assert_eq!(
            h.refused(24, &[0; 12], vec![]),
            Refusal::Unsupported("GET_CONFIG")
        );
        // Payload size wrong for the request; descriptors on a message that takes none.
        assert!(matches!(
            h.refused(2, &[0; 4], vec![]),
            Refusal::Message(ProtoError::PayloadSize { .. })
        ));
        assert!(matches!(
            h.refused(3, &[], vec![named_fd(h.tag, 0)]),
            Refusal::Message(ProtoError::FdCount { .. })
        ));
        assert_eq!(
            h.refused(20, &10u64.to_ne_bytes(), vec![]),
            Refusal::Mtu(10)
        );
        h.ok(20, &9000u64.to_ne_bytes(), vec![]);
        assert_eq!(h.b.mtu(), Some(9000));
        h.ok(19, &[0x52, 0x54, 0, 0, 0, 1, 0, 0], vec![]);
        assert_eq!(h.b.stats().rarp.load(Ordering::Relaxed), 1);
        assert_eq!(open_named(h.tag), 0);
        assert_eq!(h.b.stats().fds_closed.load(Ordering::Relaxed), 4);
        assert_eq!(h.b.features(), 0);
        h.nothing_running();
    }

    #[test]
    fn refusals_are_acknowledged_with_a_failure_status() {
        let mut h = Harness::new(1, "be-ack");
        h.ok(16, &protocol::REPLY_ACK.to_ne_bytes(), vec![]);
        let r = h.send(8, 1 | FLAG_NEED_REPLY, &state(5, 256), vec![]);
        assert!(matches!(r.refusal, Some(Refusal::RingIndex { .. })));
        assert_eq!(r.reply.unwrap()[12..], 1u64.to_ne_bytes());
        // GET_VRING_BASE has its own reply: no status added.
        let r = h.send(11, 1 | FLAG_NEED_REPLY, &state(0, 0), vec![]);
        assert_eq!(r.reply.unwrap().len(), 20);
    }
}
