//! What the control plane hands the data path for one virtqueue, and the counters the
//! data path keeps for it.
//!
//! Rings are numbered as the front end numbers them: ring `2q` is the guest's receive
//! queue of pair `q` (our transmit queue `q` fills it), ring `2q + 1` the guest's transmit
//! queue (our receive queue `q` empties it).

use crate::dirty::DirtyLog;
use crate::mem::GuestMemory;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Ring addresses from SET_VRING_ADDR, in the front end's virtual address space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VringAddrs {
    /// Descriptor table (split) or descriptor ring (packed).
    pub desc: u64,
    /// Available ring (split) or driver event suppression area (packed).
    pub avail: u64,
    /// Used ring (split) or device event suppression area (packed).
    pub used: u64,
    /// Guest physical address of the used ring, for dirty logging (not used: ring areas
    /// are logged at the guest physical address the memory table gives them, see
    /// [`crate::dirty`]).
    pub log: u64,
    /// `VHOST_VRING_F_LOG` and reserved bits.
    pub flags: u32,
}

/// A ring ready to run: everything the front end configured for it.
#[derive(Clone, Debug)]
pub struct VringConfig {
    /// Ring index (`2q` guest rx, `2q + 1` guest tx).
    pub index: u16,
    /// Entries (SET_VRING_NUM): a power of two up to 32768 for split rings.
    pub size: u16,
    /// Next available index to process (SET_VRING_BASE). Packed rings: bits 0..=14 the
    /// index, bit 15 the wrap counter.
    pub base: u16,
    /// Where the ring lives.
    pub addrs: VringAddrs,
    /// Negotiated virtio feature bits (VERSION_1, MRG_RXBUF, EVENT_IDX, RING_PACKED,
    /// offloads).
    pub features: u64,
    /// The memory table the addresses are translated through.
    pub mem: Arc<GuestMemory>,
    /// The eventfd to signal when used buffers were added and the guest wants to know.
    pub call: Option<Arc<OwnedFd>>,
    /// The eventfd the front end kicks (`None`: NOFD, it expects polling). Read only while
    /// a receive queue sleeps.
    pub kick: Option<Arc<OwnedFd>>,
    /// The dirty log every write into guest memory is reported in: `Some` while
    /// `VHOST_F_LOG_ALL` is negotiated and the front end passed a log (a migration runs).
    pub log: Option<Arc<DirtyLog>>,
}

impl VringConfig {
    /// Whether a feature bit was negotiated.
    pub fn has(&self, feature: u64) -> bool {
        self.features & feature != 0
    }
}

/// Data-path error counters of one ring (single writer: the queue that runs it).
#[derive(Debug, Default)]
pub struct RingErrors {
    /// The available index moved by more than the ring size, or an available entry named
    /// a descriptor beyond the table (packed: a chain that does not end within the ring):
    /// the ring is stopped until the front end resets it.
    pub bad_ring: AtomicU64,
    /// A descriptor's buffer lay outside every memory region (or wrapped): the packet was
    /// dropped and its chain returned.
    pub bad_addr: AtomicU64,
    /// A chain was longer than the ring, looped, or had buffers of the wrong direction,
    /// or a buffer too short for the virtio-net header: dropped, chain returned.
    pub bad_chain: AtomicU64,
    /// Guest to host: a packet longer than the port accepts (a 64 KiB super-frame,
    /// `split::MAX_RX_FRAME`, or one mbuf without the SCATTER offload). Host to guest:
    /// longer than the guest's buffers.
    pub too_long: AtomicU64,
    /// The ring started from the used ring's index rather than the base it was given (a
    /// front end that resumed after a reconnect). Not an error: the ring runs.
    pub resumed: AtomicU64,
}

/// How the control plane starts and stops rings on the data path. The device's shared
/// state implements it for the queues; unit tests use a recording double.
pub trait RingControl {
    /// Hands ring `cfg.index` to its queue, which starts processing it at its next burst
    /// (a ring already running is replaced).
    fn start(&self, cfg: VringConfig);
    /// Takes ring `index` back, waiting until no burst uses it. Returns the next
    /// available index the queue would have processed (packed: bit 15 the wrap counter),
    /// or `None` if the ring was not running.
    fn stop(&self, index: u16) -> Option<u16>;
    /// Link state: up when the front end has the first queue pair running.
    fn set_link(&self, up: bool);
}
