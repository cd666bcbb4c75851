//! Virtqueues, driver side: the ring layouts a virtio device and its driver share
//! (virtio 1.x section 2.6 "Virtqueues").
//!
//! - [`split`]: the split virtqueue (descriptor table, available and used rings);
//! - [`packed`]: the packed virtqueue (`VIRTIO_F_RING_PACKED`, one descriptor ring).
//!
//! Both are shared with an untrusted device: the driver side validates everything it
//! reads back.
//! [`Virtqueue`] is the interface the net layer uses; [`SplitQueue`] and
//! [`packed::PackedQueue`] implement it, and the rx/tx queues are generic over it, so the
//! choice costs nothing per packet (static dispatch, one monomorphized copy per layout).

pub mod packed;
pub mod split;

pub use packed::{PackedLayout, PackedQueue};
pub use split::{Layout, SplitQueue};

use pmd_core::memory::Segment;

/// Descriptor flag: the buffer continues in another descriptor (split: the one named by
/// `next`; packed: the next one in the ring).
pub const VRING_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the buffer is device-writable (otherwise device-readable).
pub const VRING_DESC_F_WRITE: u16 = 2;
/// Largest queue size this driver accepts (keeps the `used_event` trick valid).
pub const MAX_QUEUE_SIZE: u16 = 4096;
/// Alignment of a queue's area (and of a split queue's used ring).
pub const RING_ALIGN: usize = 4096;

/// Where the parts of a queue are, in the address space the device uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingAddrs {
    /// Queue index on the device.
    pub index: u16,
    /// Entries.
    pub size: u16,
    /// Descriptor table address.
    pub desc: u64,
    /// Available ring address.
    pub avail: u64,
    /// Used ring address.
    pub used: u64,
}

/// Which addresses the device understands: our virtual addresses (virtio-user, whose
/// "guest physical" space is our address space) or IOVAs (a real device doing DMA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrMode {
    /// Process virtual addresses.
    Va,
    /// IO virtual addresses as reported by the memory segments.
    Iova,
}

/// One used element that passed validation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsedElem {
    /// Descriptor id (head of the buffer), in flight until now.
    pub id: u16,
    /// Bytes the device says it wrote.
    pub len: u32,
    /// False if `len` exceeded the posted writable length: the buffer is back in the
    /// driver's hands but its contents must not be used (already counted as an error).
    pub ok: bool,
}

/// Why a queue could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The size is not a power of two in `1..=MAX_QUEUE_SIZE`.
    #[error("queue size {0} is not a power of two in 1..={max}", max = MAX_QUEUE_SIZE)]
    BadSize(u16),
    /// The area does not fit in the memory segment.
    #[error("queue area at offset {offset} needs {needed} bytes, segment has {segment}")]
    OutOfBounds {
        /// Offset asked for.
        offset: usize,
        /// Bytes needed.
        needed: usize,
        /// Segment length.
        segment: usize,
    },
}

/// The driver side of a virtqueue, split or packed: what the net layer needs. All methods
/// are meant to be statically dispatched (generic code), never through `dyn`.
pub trait Virtqueue: Send + 'static {
    /// Queue index on the device.
    fn index(&self) -> u16;
    /// Entries.
    fn size(&self) -> u16;
    /// Descriptors free now (a chain of `k` parts needs `k`).
    fn num_free(&self) -> usize;
    /// Buffers pushed and not yet returned.
    fn in_flight(&self) -> usize;
    /// Whether the device broke the protocol and the queue stopped consuming.
    fn is_broken(&self) -> bool;
    /// The value the device starts (or resumes) at, as `SET_VRING_BASE` carries it: the
    /// free-running avail index (split), or position | avail wrap counter << 15 (packed).
    fn avail_idx(&self) -> u16;
    /// Ring addresses for the transport (packed: desc = ring, avail = driver event
    /// suppression, used = device event suppression).
    fn addrs(&self, mode: AddrMode) -> RingAddrs;
    /// Posts one single-descriptor buffer (visible after [`Virtqueue::publish`]); returns
    /// its id, or `None` if none is free.
    fn push(&mut self, addr: u64, len: u32, writable: bool) -> Option<u16>;
    /// Posts one buffer of several descriptors (a chain, one per part); returns its id,
    /// or `None` (nothing posted) unless `parts.len()` descriptors are free.
    fn push_chain(&mut self, parts: &[(u64, u32)], writable: bool) -> Option<u16>;
    /// Makes every pushed buffer visible to the device.
    fn publish(&mut self);
    /// Whether the device wants a notification for what was published since the last call.
    fn kick_needed(&mut self) -> bool;
    /// Takes up to `out.len()` validated used buffers; returns `(taken, errors)`.
    fn poll_used(&mut self, out: &mut [UsedElem]) -> (usize, u64);
    /// Ids of all buffers still in flight.
    fn in_flight_ids(&self) -> Vec<u16>;
    /// Asks the device to notify when it returns a buffer, then checks once more: true if
    /// returned buffers are already waiting (see [`SplitQueue::enable_intr`],
    /// [`PackedQueue::enable_intr`]).
    fn enable_intr(&mut self) -> bool;
    /// Suppresses those notifications again (the state a queue starts in).
    fn disable_intr(&mut self);
}

macro_rules! impl_virtqueue {
    ($t:ty) => {
        impl Virtqueue for $t {
            #[inline(always)]
            fn index(&self) -> u16 {
                <$t>::index(self)
            }
            #[inline(always)]
            fn size(&self) -> u16 {
                <$t>::size(self)
            }
            #[inline(always)]
            fn num_free(&self) -> usize {
                <$t>::num_free(self)
            }
            #[inline(always)]
            fn in_flight(&self) -> usize {
                <$t>::in_flight(self)
            }
            #[inline(always)]
            fn is_broken(&self) -> bool {
                <$t>::is_broken(self)
            }
            #[inline(always)]
            fn avail_idx(&self) -> u16 {
                <$t>::avail_idx(self)
            }
            #[inline(always)]
            fn addrs(&self, mode: AddrMode) -> RingAddrs {
                <$t>::addrs(self, mode)
            }
            #[inline(always)]
            fn push(&mut self, addr: u64, len: u32, writable: bool) -> Option<u16> {
                <$t>::push(self, addr, len, writable)
            }
            #[inline]
            fn push_chain(&mut self, parts: &[(u64, u32)], writable: bool) -> Option<u16> {
                <$t>::push_chain(self, parts, writable)
            }
            #[inline(always)]
            fn publish(&mut self) {
                <$t>::publish(self)
            }
            #[inline(always)]
            fn kick_needed(&mut self) -> bool {
                <$t>::kick_needed(self)
            }
            #[inline(always)]
            fn poll_used(&mut self, out: &mut [UsedElem]) -> (usize, u64) {
                <$t>::poll_used(self, out)
            }
            fn in_flight_ids(&self) -> Vec<u16> {
                <$t>::in_flight_ids(self).collect()
            }
            fn enable_intr(&mut self) -> bool {
                <$t>::enable_intr(self)
            }
            fn disable_intr(&mut self) {
                <$t>::disable_intr(self)
            }
        }
    };
}

impl_virtqueue!(SplitQueue);
impl_virtqueue!(PackedQueue);

/// The addresses of a ring's three parts (`parts` are byte offsets from `base`, which lies
/// in `mem`) in the address space `mode` names, for queue `index` of `size` entries.
pub(crate) fn ring_addrs(
    mem: &Segment,
    base: *mut u8,
    mode: AddrMode,
    (index, size): (u16, u16),
    parts: [usize; 3],
) -> RingAddrs {
    let off = base as usize - mem.as_ptr() as usize;
    let at = |o: usize| match mode {
        AddrMode::Va => base as u64 + o as u64,
        AddrMode::Iova => mem.iova_at(off + o),
    };
    RingAddrs {
        index,
        size,
        desc: at(parts[0]),
        avail: at(parts[1]),
        used: at(parts[2]),
    }
}
