//! The packed virtqueue, driver side (virtio 1.1+, section 2.8 "Packed Virtqueues";
//! feature `VIRTIO_F_RING_PACKED`, bit 34).
//!
//! One queue of `size` entries (a power of two here, so it shares [`super::split`]'s sizing)
//! lives in one area of shared memory:
//!
//! | part | size | alignment |
//! |---|---|---|
//! | descriptor ring: `size` × {addr u64, len u32, id u16, flags u16} | 16 × size | 16 |
//! | driver event suppression: {off_wrap u16, flags u16} | 4 | 4 |
//! | device event suppression: {off_wrap u16, flags u16} | 4 | 4 |
//!
//! Both sides walk the same ring. The driver makes a descriptor available by writing it
//! with `AVAIL` = its avail wrap counter and `USED` = the inverse; the device hands it back
//! by overwriting a descriptor (in ring order) with its buffer `id`, the written `len` and
//! `AVAIL` = `USED` = its used wrap counter. A buffer is one descriptor or a chain of
//! `k` consecutive ones linked with `NEXT` (transmit of multi-segment packets), each
//! carrying the buffer id (the spec reads it from the last); the device writes one used
//! descriptor for the chain, at the chain's first position, and the next one `k`
//! positions later. The driver remembers each id's `k` in private memory, so free ring
//! positions (`size` minus descriptors in use) and free buffer ids are tracked apart.
//!
//! Batches: descriptors pushed since the last [`PackedQueue::publish`] are written
//! completely except for the first one's flags, which `publish` stores last with release
//! ordering, so the device sees the whole batch at once.
//!
//! The ring is written by an untrusted peer. [`PackedQueue::poll_used`] reads each
//! descriptor's flags once (acquire) and classifies them against the used wrap counter
//! `w`: (`AVAIL`, `USED`) = (w, w) is used, (w, !w) is still ours and pending; anything
//! else on a position we published is a wrap counter mismatch (where nothing is
//! outstanding the position holds the previous lap: the device's used flags or a chain's
//! non-first descriptor, which the device never overwrites). A used descriptor while
//! nothing is outstanding (the device claims one we never made available), an `id` out of
//! range or not in flight, or a wrap mismatch count one error each and mark the queue
//! broken: it stops consuming. A `len` larger than a device-writable buffer is returned
//! with `ok == false` and counted, as in the split queue.
//!
//! Notifications: our (driver) event suppression says `DISABLE` (we poll), except while a
//! thread sleeps on the queue ([`PackedQueue::enable_intr`]: `ENABLE`, or with
//! `VIRTIO_F_EVENT_IDX` `DESC` at the next position to consume, moved along by
//! [`PackedQueue::poll_used`] until [`PackedQueue::disable_intr`]). Kicks follow
//! the device's suppression structure: `ENABLE` always, `DISABLE` never, `DESC` (only with
//! `VIRTIO_F_EVENT_IDX`) when the descriptor at its `off_wrap` was among those just
//! published. Anything unexpected means "kick": a spurious kick is harmless, a missing
//! one stalls the device.

use super::{
    ring_addrs, AddrMode, QueueError, RingAddrs, UsedElem, MAX_QUEUE_SIZE, RING_ALIGN,
    VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use pmd_core::memory::Segment;
use std::sync::atomic::{fence, AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;

/// Packed descriptor flag: available (compared with the wrap counters).
pub const VRING_PACKED_DESC_F_AVAIL: u16 = 1 << 7;
/// Packed descriptor flag: used (compared with the wrap counters).
pub const VRING_PACKED_DESC_F_USED: u16 = 1 << 15;
/// Event suppression flags: notifications wanted for every change.
pub const RING_EVENT_FLAGS_ENABLE: u16 = 0;
/// Event suppression flags: no notifications wanted.
pub const RING_EVENT_FLAGS_DISABLE: u16 = 1;
/// Event suppression flags: a notification when the descriptor at `off_wrap` changes
/// (only with `VIRTIO_F_EVENT_IDX`).
pub const RING_EVENT_FLAGS_DESC: u16 = 2;
/// Bit of `off_wrap` (and of the vhost-user ring base) carrying a wrap counter.
pub const WRAP_BIT: u16 = 1 << 15;

const BOTH: u16 = VRING_PACKED_DESC_F_AVAIL | VRING_PACKED_DESC_F_USED;

/// One packed descriptor, as laid out in shared memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackedDesc {
    /// Buffer address (guest-physical for the device).
    pub addr: u64,
    /// Buffer length (driver) or bytes written (device).
    pub len: u32,
    /// Buffer id.
    pub id: u16,
    /// `VRING_DESC_F_*` and `VRING_PACKED_DESC_F_*` flags.
    pub flags: u16,
}

/// Byte offsets of the parts of a packed queue of a given size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedLayout {
    /// Entries.
    pub size: u16,
    /// Offset of the driver event suppression structure (the ring is at 0).
    pub driver_event_off: usize,
    /// Offset of the device event suppression structure.
    pub device_event_off: usize,
    /// Bytes the whole queue needs (a multiple of [`RING_ALIGN`]).
    pub total: usize,
}

impl PackedLayout {
    /// The layout for `size` entries, or `None` unless `size` is a power of two in
    /// `1..=MAX_QUEUE_SIZE`.
    pub fn new(size: u16) -> Option<PackedLayout> {
        if size == 0 || !size.is_power_of_two() || size > MAX_QUEUE_SIZE {
            return None;
        }
        let ring = 16 * size as usize;
        Some(PackedLayout {
            size,
            driver_event_off: ring,
            device_event_off: ring + 4,
            total: (ring + 8).div_ceil(RING_ALIGN) * RING_ALIGN,
        })
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    in_flight: bool,
    writable: bool,
    /// Bytes posted (the whole chain's).
    len: u32,
    /// Ring positions (descriptors) the buffer takes.
    ndesc: u16,
}

/// The driver side of one packed virtqueue (single-threaded: owned by one lcore).
pub struct PackedQueue {
    mem: Arc<Segment>,
    base: *mut u8,
    layout: PackedLayout,
    index: u16,
    event_idx: bool,
    free: Vec<u16>,
    slots: Vec<Slot>,
    /// Ring positions taken by buffers pushed and not yet returned.
    desc_used: u16,
    /// Next ring position to fill, and the avail wrap counter for it.
    next_avail: u16,
    avail_wrap: bool,
    /// First unpublished position and the flags it gets at publish.
    head: u16,
    head_flags: u16,
    /// Descriptors pushed and not yet published.
    pending: u16,
    /// Next ring position the device hands back, and the used wrap counter for it.
    next_used: u16,
    used_wrap: bool,
    /// Published descriptors the device has not handed back.
    outstanding: u16,
    /// Published position (in `0..2 × size`, see [`PackedQueue::lin`]) at the last
    /// notification decision.
    kick_base: u16,
    broken: bool,
    /// Used-buffer notifications wanted ([`PackedQueue::enable_intr`]).
    intr: bool,
}

// SAFETY: the queue owns its view of the ring memory (kept alive by the Arc); moving it to
// another thread moves that single-threaded ownership.
unsafe impl Send for PackedQueue {}

impl std::fmt::Debug for PackedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedQueue")
            .field("index", &self.index)
            .field("size", &self.layout.size)
            .field("free", &self.free.len())
            .field("next_avail", &self.next_avail)
            .field("avail_wrap", &self.avail_wrap)
            .field("next_used", &self.next_used)
            .field("used_wrap", &self.used_wrap)
            .field("broken", &self.broken)
            .finish()
    }
}

/// Flags making a descriptor available in lap `wrap`.
#[inline(always)]
fn avail_flags(wrap: bool) -> u16 {
    if wrap {
        VRING_PACKED_DESC_F_AVAIL
    } else {
        VRING_PACKED_DESC_F_USED
    }
}

impl PackedQueue {
    /// Creates queue `index` of `size` entries at `offset` (a multiple of [`RING_ALIGN`])
    /// in `mem`, zeroes its area, sets the driver event suppression to `DISABLE`, and
    /// starts at position 0 with both wrap counters 1. `event_idx` says whether
    /// `VIRTIO_F_EVENT_IDX` was negotiated (it enables the device's `DESC` mode).
    pub fn new(
        mem: Arc<Segment>,
        offset: usize,
        index: u16,
        size: u16,
        event_idx: bool,
    ) -> Result<PackedQueue, QueueError> {
        let layout = PackedLayout::new(size).ok_or(QueueError::BadSize(size))?;
        if !offset.is_multiple_of(RING_ALIGN)
            || offset
                .checked_add(layout.total)
                .is_none_or(|end| end > mem.len())
        {
            return Err(QueueError::OutOfBounds {
                offset,
                needed: layout.total,
                segment: mem.len(),
            });
        }
        // SAFETY: offset + total <= mem.len() was checked above.
        let base = unsafe { mem.as_ptr().add(offset) };
        // SAFETY: the area is inside the segment and nobody else uses it yet.
        unsafe { std::ptr::write_bytes(base, 0, layout.total) };
        let q = PackedQueue {
            mem,
            base,
            layout,
            index,
            event_idx,
            free: (0..size).rev().collect(),
            slots: vec![Slot::default(); size as usize],
            desc_used: 0,
            next_avail: 0,
            avail_wrap: true,
            head: 0,
            head_flags: 0,
            pending: 0,
            next_used: 0,
            used_wrap: true,
            outstanding: 0,
            kick_base: 0,
            broken: false,
            intr: false,
        };
        q.event_u16(q.layout.driver_event_off + 2)
            .store(RING_EVENT_FLAGS_DISABLE, Ordering::Relaxed);
        Ok(q)
    }

    /// The u16 at byte `off` of the area (event structures), as an atomic.
    #[inline(always)]
    fn event_u16(&self, off: usize) -> &AtomicU16 {
        debug_assert!(off + 2 <= self.layout.total && off.is_multiple_of(2));
        // SAFETY: in bounds of the area, 2-aligned (the area is 4096-aligned), and the
        // memory lives as long as `self.mem`.
        unsafe { &*(self.base.add(off) as *const AtomicU16) }
    }

    /// Pointer to descriptor `pos` (< size).
    #[inline(always)]
    fn desc_ptr(&self, pos: u16) -> *mut PackedDesc {
        debug_assert!(pos < self.layout.size);
        // SAFETY: pos < size: inside the descriptor ring.
        unsafe { (self.base as *mut PackedDesc).add(pos as usize) }
    }

    /// The flags of descriptor `pos` (< size), as an atomic.
    #[inline(always)]
    fn flags_at(&self, pos: u16) -> &AtomicU16 {
        // SAFETY: the flags field of an in-bounds, 16-aligned descriptor: 2-aligned, alive
        // as long as `self.mem`.
        unsafe { &*(std::ptr::addr_of_mut!((*self.desc_ptr(pos)).flags) as *const AtomicU16) }
    }

    /// A position and its wrap counter as one number in `0..2 × size`: lap 1 (the first)
    /// is `pos`, lap 0 is `size + pos`. Differences modulo `2 × size` count descriptors.
    #[inline(always)]
    fn lin(&self, pos: u16, wrap: bool) -> u16 {
        if wrap {
            pos
        } else {
            pos + self.layout.size
        }
    }

    /// The published position in `lin` form.
    #[inline(always)]
    fn published_lin(&self) -> u16 {
        if self.pending > 0 {
            // The head is the first unpublished position; its lap is the one its flags say.
            self.lin(self.head, self.head_flags & VRING_PACKED_DESC_F_AVAIL != 0)
        } else {
            self.lin(self.next_avail, self.avail_wrap)
        }
    }

    /// The driver event suppression's `off_wrap`: the next position to consume and its
    /// used wrap counter (where the device's next used descriptor goes).
    #[inline(always)]
    fn write_event_off_wrap(&self) {
        let wrap = if self.used_wrap { WRAP_BIT } else { 0 };
        self.event_u16(self.layout.driver_event_off)
            .store(self.next_used | wrap, Ordering::Relaxed);
    }

    /// Asks the device for a notification when it hands a descriptor back (driver event
    /// suppression `ENABLE`, or with `EVENT_IDX` `DESC` at the next position to consume),
    /// then looks at that descriptor again: true if it is already used (the caller polls
    /// instead of sleeping). The full fence pairs with the device's between writing a used
    /// descriptor and reading our wish, so either the device sees the request and
    /// signals, or this sees the descriptor. A broken queue consumes nothing: false.
    pub fn enable_intr(&mut self) -> bool {
        self.intr = true;
        let flags = if self.event_idx {
            self.write_event_off_wrap();
            RING_EVENT_FLAGS_DESC
        } else {
            RING_EVENT_FLAGS_ENABLE
        };
        self.event_u16(self.layout.driver_event_off + 2)
            .store(flags, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let w = if self.used_wrap { BOTH } else { 0 };
        !self.broken && self.flags_at(self.next_used).load(Ordering::Acquire) & BOTH == w
    }

    /// Suppresses used-buffer notifications again (`DISABLE`, the polling state the queue
    /// starts in). A notification already on its way may still arrive.
    pub fn disable_intr(&mut self) {
        self.intr = false;
        self.event_u16(self.layout.driver_event_off + 2)
            .store(RING_EVENT_FLAGS_DISABLE, Ordering::Relaxed);
    }

    /// Queue index on the device.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// Entries.
    pub fn size(&self) -> u16 {
        self.layout.size
    }

    /// Ring positions (descriptors) free: a chain of `k` parts needs `k`. Free buffer ids
    /// are never fewer (each buffer takes at least one position).
    #[inline(always)]
    pub fn num_free(&self) -> usize {
        (self.layout.size - self.desc_used) as usize
    }

    /// Buffers handed to the device (pushed) and not yet returned.
    #[inline(always)]
    pub fn in_flight(&self) -> usize {
        self.layout.size as usize - self.free.len()
    }

    /// Whether the device broke the protocol and the queue stopped consuming.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The vhost-user ring base of the next published position: bits 0–14 the position,
    /// bit 15 the avail wrap counter (`SET_VRING_BASE` / `GET_VRING_BASE` for packed rings).
    pub fn avail_idx(&self) -> u16 {
        let lin = self.published_lin();
        let size = self.layout.size;
        if lin >= size {
            lin - size
        } else {
            lin | WRAP_BIT
        }
    }

    /// The memory segment holding the queue.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.mem
    }

    /// Addresses in the address space `mode` names: `desc` is the descriptor ring, `avail`
    /// the driver event suppression structure and `used` the device's (what
    /// `SET_VRING_ADDR` carries for packed rings).
    pub fn addrs(&self, mode: AddrMode) -> RingAddrs {
        ring_addrs(
            &self.mem,
            self.base,
            mode,
            (self.index, self.layout.size),
            [
                0,
                self.layout.driver_event_off,
                self.layout.device_event_off,
            ],
        )
    }

    /// Posts one buffer (not visible to the device until [`PackedQueue::publish`]);
    /// returns its id, or `None` if none is free.
    #[inline(always)]
    pub fn push(&mut self, addr: u64, len: u32, writable: bool) -> Option<u16> {
        if self.desc_used == self.layout.size {
            return None;
        }
        let id = self.free.pop()?;
        self.slots[id as usize] = Slot {
            in_flight: true,
            writable,
            len,
            ndesc: 1,
        };
        self.desc_used += 1;
        let flags = avail_flags(self.avail_wrap) | if writable { VRING_DESC_F_WRITE } else { 0 };
        self.write_next(addr, len, id, flags);
        Some(id)
    }

    /// Posts one buffer made of `parts` (address, length): consecutive descriptors linked
    /// with [`VRING_DESC_F_NEXT`], all carrying the buffer id. Returns the id, or `None`
    /// (nothing posted) if `parts` is empty or fewer than `parts.len()` positions are free.
    pub fn push_chain(&mut self, parts: &[(u64, u32)], writable: bool) -> Option<u16> {
        let n = parts.len();
        if n == 0 || n > self.num_free() {
            return None;
        }
        let id = self.free.pop()?;
        let wflag = if writable { VRING_DESC_F_WRITE } else { 0 };
        let mut total = 0u32;
        for (i, &(addr, len)) in parts.iter().enumerate() {
            total = total.saturating_add(len);
            let next = if i + 1 < n { VRING_DESC_F_NEXT } else { 0 };
            self.write_next(addr, len, id, avail_flags(self.avail_wrap) | wflag | next);
        }
        self.slots[id as usize] = Slot {
            in_flight: true,
            writable,
            len: total,
            ndesc: n as u16,
        };
        self.desc_used += n as u16;
        Some(id)
    }

    /// Writes one descriptor at the next available position (`flags` with the avail/used
    /// bits of the current wrap) and advances past it. The first of a batch only gets its
    /// flags at [`PackedQueue::publish`].
    #[inline(always)]
    fn write_next(&mut self, addr: u64, len: u32, id: u16, flags: u16) {
        let pos = self.next_avail;
        let d = self.desc_ptr(pos);
        // SAFETY: an in-bounds descriptor past the published position: the device does not
        // read it before the head's flags are stored at publish.
        unsafe {
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*d).addr), addr);
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*d).len), len);
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*d).id), id);
        }
        if self.pending == 0 {
            self.head = pos;
            self.head_flags = flags;
        } else {
            // Not the head: the device cannot reach it before the head's release store.
            self.flags_at(pos).store(flags, Ordering::Relaxed);
        }
        self.pending += 1;
        self.next_avail += 1;
        if self.next_avail == self.layout.size {
            self.next_avail = 0;
            self.avail_wrap = !self.avail_wrap;
        }
    }

    /// Makes every pushed buffer visible to the device (release store of the first
    /// pushed descriptor's flags).
    #[inline(always)]
    pub fn publish(&mut self) {
        if self.pending == 0 {
            return;
        }
        self.flags_at(self.head)
            .store(self.head_flags, Ordering::Release);
        self.outstanding += self.pending;
        self.pending = 0;
    }

    /// Whether the device wants a notification for what was published since the last
    /// call (call after [`PackedQueue::publish`]; a full fence orders the publish before
    /// reading the device's suppression structure).
    #[inline(always)]
    pub fn kick_needed(&mut self) -> bool {
        let old = self.kick_base;
        let new = self.published_lin();
        if old == new {
            return false;
        }
        self.kick_base = new;
        fence(Ordering::SeqCst);
        // SAFETY: the device event structure is 4 bytes at a 4-aligned offset inside the
        // area; one 32-bit load gives a consistent {off_wrap, flags} snapshot.
        let ev = unsafe {
            (*(self.base.add(self.layout.device_event_off) as *const AtomicU32))
                .load(Ordering::Relaxed)
        };
        let (off_wrap, flags) = (ev as u16, (ev >> 16) as u16 & 3);
        match flags {
            RING_EVENT_FLAGS_DISABLE => false,
            RING_EVENT_FLAGS_DESC if self.event_idx => {
                let size = self.layout.size;
                let off = off_wrap & !WRAP_BIT;
                if off >= size {
                    return true; // nonsense offset: kick rather than stall
                }
                let event = self.lin(off, off_wrap & WRAP_BIT != 0);
                let span = 2 * size;
                let dist = |a: u16, b: u16| (a + span - b) % span;
                dist(event, old) < dist(new, old)
            }
            _ => true,
        }
    }

    #[inline(always)]
    fn fail(&mut self, what: &'static str, flags: u16) -> u64 {
        tracing::warn!(
            queue = self.index,
            position = self.next_used,
            used_wrap = self.used_wrap,
            flags = format_args!("{flags:#06x}"),
            outstanding = self.outstanding,
            "packed ring: {what}; queue stops"
        );
        self.broken = true;
        1
    }

    /// Takes up to `out.len()` used buffers, validated, into `out`; returns
    /// `(taken, errors)`. A protocol violation (see the module documentation) counts one
    /// error and stops the queue; a `len` too large for a writable buffer is returned with
    /// `ok == false` and counts one error.
    #[inline]
    pub fn poll_used(&mut self, out: &mut [UsedElem]) -> (usize, u64) {
        if self.broken {
            return (0, 0);
        }
        let mut n = 0;
        let mut errors = 0;
        while n < out.len() {
            let pos = self.next_used;
            let flags = self.flags_at(pos).load(Ordering::Acquire);
            let w = if self.used_wrap { BOTH } else { 0 };
            let f = flags & BOTH;
            if f != w {
                // (w, !w) is ours, still pending. Where nothing is outstanding the position
                // holds the previous lap: (!w, !w) written by the device, or (!w, w) where
                // the driver made a chain's non-first descriptor available (the device
                // writes only one used descriptor per chain). Anything else is invalid.
                let pending = f == w ^ VRING_PACKED_DESC_F_USED;
                if !(pending || self.outstanding == 0) {
                    errors += self.fail("descriptor flags do not match the wrap counter", flags);
                }
                break;
            }
            if self.outstanding == 0 {
                errors += self.fail("used descriptor where none was made available", flags);
                break;
            }
            let d = self.desc_ptr(pos);
            // SAFETY: an in-bounds descriptor; the acquire load above orders these reads
            // after the device's writes of the same descriptor.
            let (id, len) = unsafe {
                (
                    std::ptr::read_volatile(std::ptr::addr_of!((*d).id)),
                    std::ptr::read_volatile(std::ptr::addr_of!((*d).len)),
                )
            };
            let outstanding = self.outstanding;
            let Some(s) = self
                .slots
                .get_mut(id as usize)
                .filter(|s| s.in_flight && s.ndesc <= outstanding)
            else {
                errors += self.fail("used id out of range, not in flight or unpublished", flags);
                break;
            };
            s.in_flight = false;
            let ok = !s.writable || len <= s.len;
            if !ok {
                errors += 1;
            }
            let k = s.ndesc;
            self.free.push(id);
            out[n] = UsedElem { id, len, ok };
            n += 1;
            // The device skips the rest of the chain: the next used descriptor is k on.
            self.outstanding -= k;
            self.desc_used -= k;
            self.next_used += k;
            if self.next_used >= self.layout.size {
                self.next_used -= self.layout.size;
                self.used_wrap = !self.used_wrap;
            }
        }
        if self.intr && self.event_idx && n > 0 {
            // Still armed: the event moves to the new next position.
            self.write_event_off_wrap();
        }
        (n, errors)
    }

    /// Ids of all buffers still in flight (for releasing what they own on teardown).
    pub fn in_flight_ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.in_flight)
            .map(|(i, _)| i as u16)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A test-side device on a packed ring: reads available descriptors and writes used
    /// ones in the same memory, like a vhost back end would.
    pub(crate) struct SimPackedDevice {
        ring: *mut PackedDesc,
        dev_event: *mut u8,
        drv_event: *mut u8,
        size: u16,
        avail_pos: u16,
        avail_wrap: bool,
        used_pos: u16,
        pub(crate) used_wrap: bool,
    }

    impl SimPackedDevice {
        pub(crate) fn new(q: &PackedQueue) -> SimPackedDevice {
            SimPackedDevice::at(q.addrs(AddrMode::Va))
        }

        /// A device on the ring at these (virtual) addresses.
        pub(crate) fn at(a: RingAddrs) -> SimPackedDevice {
            SimPackedDevice {
                ring: a.desc as *mut PackedDesc,
                drv_event: a.avail as *mut u8,
                dev_event: a.used as *mut u8,
                size: a.size,
                avail_pos: 0,
                avail_wrap: true,
                used_pos: 0,
                used_wrap: true,
            }
        }

        fn flags(&self, pos: u16) -> &AtomicU16 {
            assert!(pos < self.size);
            // SAFETY: test-only; an in-bounds descriptor's flags.
            unsafe {
                &*(std::ptr::addr_of_mut!((*self.ring.add(pos as usize)).flags) as *const AtomicU16)
            }
        }

        /// Takes every newly available buffer: (id, descriptor).
        pub(crate) fn take_avail(&mut self) -> Vec<(u16, PackedDesc)> {
            let mut out = Vec::new();
            loop {
                let f = self.flags(self.avail_pos).load(Ordering::Acquire);
                let a = f & VRING_PACKED_DESC_F_AVAIL != 0;
                let u = f & VRING_PACKED_DESC_F_USED != 0;
                if a != self.avail_wrap || u == self.avail_wrap {
                    break;
                }
                // SAFETY: in bounds, published (acquire above).
                let d = unsafe { std::ptr::read_volatile(self.ring.add(self.avail_pos as usize)) };
                out.push((d.id, d));
                self.avail_pos += 1;
                if self.avail_pos == self.size {
                    self.avail_pos = 0;
                    self.avail_wrap = !self.avail_wrap;
                }
            }
            out
        }

        /// Writes a used descriptor with explicit flags at the used position (hostile tests
        /// use any flags); advances the position.
        pub(crate) fn write_raw(&mut self, id: u16, len: u32, flags: u16) {
            let p = self.ring.wrapping_add(self.used_pos as usize);
            // SAFETY: in bounds.
            unsafe {
                std::ptr::write_volatile(std::ptr::addr_of_mut!((*p).id), id);
                std::ptr::write_volatile(std::ptr::addr_of_mut!((*p).len), len);
            }
            self.flags(self.used_pos).store(flags, Ordering::Release);
            self.used_pos += 1;
            if self.used_pos == self.size {
                self.used_pos = 0;
                self.used_wrap = !self.used_wrap;
            }
        }

        /// Returns one buffer, correctly flagged.
        pub(crate) fn complete(&mut self, id: u16, len: u32) {
            let f = if self.used_wrap { BOTH } else { 0 };
            self.write_raw(id, len, f);
        }

        /// Returns several buffers as one batch: bodies and later flags first, the first
        /// descriptor's flags last (what a batching back end does).
        pub(crate) fn complete_batch(&mut self, elems: &[(u16, u32)]) {
            let first = self.used_pos;
            let first_wrap = self.used_wrap;
            for (i, &(id, len)) in elems.iter().enumerate() {
                let f = if self.used_wrap { BOTH } else { 0 };
                let p = self.ring.wrapping_add(self.used_pos as usize);
                // SAFETY: in bounds.
                unsafe {
                    std::ptr::write_volatile(std::ptr::addr_of_mut!((*p).id), id);
                    std::ptr::write_volatile(std::ptr::addr_of_mut!((*p).len), len);
                }
                if i > 0 {
                    self.flags(self.used_pos).store(f, Ordering::Relaxed);
                }
                self.used_pos += 1;
                if self.used_pos == self.size {
                    self.used_pos = 0;
                    self.used_wrap = !self.used_wrap;
                }
            }
            if !elems.is_empty() {
                let f = if first_wrap { BOTH } else { 0 };
                self.flags(first).store(f, Ordering::Release);
            }
        }

        /// Returns a chain of `k` descriptors as one used descriptor; the next used one
        /// goes `k` positions on.
        pub(crate) fn complete_chain(&mut self, id: u16, len: u32, k: u16) {
            self.complete(id, len);
            for _ in 1..k {
                self.used_pos += 1;
                if self.used_pos == self.size {
                    self.used_pos = 0;
                    self.used_wrap = !self.used_wrap;
                }
            }
        }

        /// Writes flags at any position (hostile tests).
        pub(crate) fn poke_flags(&self, pos: u16, f: u16) {
            self.flags(pos).store(f, Ordering::Release);
        }

        /// Sets the device event suppression structure.
        pub(crate) fn set_event(&self, off_wrap: u16, flags: u16) {
            // SAFETY: test-only; the 4-byte device event structure.
            unsafe {
                (*(self.dev_event as *const AtomicU16)).store(off_wrap, Ordering::Relaxed);
                (*(self.dev_event.add(2) as *const AtomicU16)).store(flags, Ordering::Relaxed);
            }
        }

        /// The driver event suppression flags.
        pub(crate) fn driver_event_flags(&self) -> u16 {
            // SAFETY: test-only; the driver event structure's flags.
            unsafe { (*(self.drv_event.add(2) as *const AtomicU16)).load(Ordering::Relaxed) }
        }

        /// The driver event suppression `off_wrap`.
        pub(crate) fn driver_event_off_wrap(&self) -> u16 {
            // SAFETY: test-only; the driver event structure's off_wrap.
            unsafe { (*(self.drv_event as *const AtomicU16)).load(Ordering::Relaxed) }
        }
    }

    #[test]
    fn interrupts_enable_and_recheck() {
        for event_idx in [false, true] {
            let mut q = queue(8, event_idx);
            let mut dev = SimPackedDevice::new(&q);
            let mut out = [UsedElem::default(); 8];
            assert!(!q.enable_intr(), "nothing posted, nothing used");
            let armed = if event_idx {
                RING_EVENT_FLAGS_DESC
            } else {
                RING_EVENT_FLAGS_ENABLE
            };
            assert_eq!(dev.driver_event_flags(), armed);
            if event_idx {
                assert_eq!(dev.driver_event_off_wrap(), WRAP_BIT, "position 0, lap 1");
            }
            q.disable_intr();
            assert_eq!(dev.driver_event_flags(), RING_EVENT_FLAGS_DISABLE);
            // Twelve rounds of five: both counters wrap; the event follows while armed.
            for round in 0..12 {
                for _ in 0..5 {
                    q.push(1, 64, true).unwrap();
                }
                q.publish();
                let got = dev.take_avail();
                assert!(!q.enable_intr(), "round {round}: available is not used");
                dev.complete(got[0].0, 1);
                assert!(q.enable_intr(), "round {round}: a used descriptor is seen");
                for (id, _) in &got[1..] {
                    dev.complete(*id, 1);
                }
                assert_eq!(q.poll_used(&mut out), (5, 0));
                assert!(!q.enable_intr(), "round {round}: all consumed");
                if event_idx {
                    let wrap = if q.used_wrap { WRAP_BIT } else { 0 };
                    assert_eq!(dev.driver_event_off_wrap(), q.next_used | wrap);
                }
                q.disable_intr();
                assert_eq!(dev.driver_event_flags(), RING_EVENT_FLAGS_DISABLE);
            }
        }
    }

    fn queue(size: u16, event_idx: bool) -> PackedQueue {
        let l = PackedLayout::new(size).unwrap();
        let mem = Arc::new(Segment::alloc("pvq-test", l.total).unwrap());
        PackedQueue::new(mem, 0, 0, size, event_idx).unwrap()
    }

    #[test]
    fn layout_follows_the_spec() {
        assert_eq!(std::mem::size_of::<PackedDesc>(), 16);
        let l = PackedLayout::new(256).unwrap();
        assert_eq!(
            (l.driver_event_off, l.device_event_off, l.total),
            (4096, 4100, 8192)
        );
        let l = PackedLayout::new(8).unwrap();
        assert_eq!(
            (l.driver_event_off, l.device_event_off, l.total),
            (128, 132, 4096)
        );
        for bad in [0, 3, 100, 8192] {
            assert!(PackedLayout::new(bad).is_none(), "{bad}");
        }
        let mem = Arc::new(Segment::alloc("pvq-small", 4096).unwrap());
        assert!(PackedQueue::new(mem.clone(), 0, 0, 512, false).is_err());
        assert!(
            PackedQueue::new(mem, 16, 0, 8, false).is_err(),
            "misaligned"
        );
    }

    #[test]
    fn addresses_and_base_for_vhost_user() {
        let mut q = queue(8, false);
        let a = q.addrs(AddrMode::Va);
        assert_eq!(a.avail - a.desc, 128, "avail = driver event area");
        assert_eq!(a.used - a.desc, 132, "used = device event area");
        let dev = SimPackedDevice::new(&q);
        assert_eq!(dev.driver_event_flags(), RING_EVENT_FLAGS_DISABLE);
        assert_eq!(q.avail_idx(), 0x8000, "position 0, wrap counter 1");
        for _ in 0..3 {
            q.push(0, 1, false).unwrap();
        }
        assert_eq!(q.avail_idx(), 0x8000, "unpublished pushes do not count");
        q.publish();
        assert_eq!(q.avail_idx(), 0x8003);
        let mut dev = dev;
        let mut out = [UsedElem::default(); 8];
        for (id, _) in dev.take_avail() {
            dev.complete(id, 0);
        }
        assert_eq!(q.poll_used(&mut out).0, 3);
        for _ in 0..5 {
            q.push(0, 1, false).unwrap();
        }
        q.publish();
        assert_eq!(q.avail_idx(), 0, "position 0, wrap counter 0");
        q.push(0, 1, false).unwrap();
        q.publish();
        assert_eq!(q.avail_idx(), 1);
    }

    /// Many rounds with varying batch sizes, out-of-order completion and batched used
    /// writes: positions wrap many times.
    fn rounds(size: u16, rounds: u32) {
        let mut q = queue(size, false);
        let mut dev = SimPackedDevice::new(&q);
        let mut out = vec![UsedElem::default(); size as usize];
        let mut seq = 0u64;
        for round in 0..rounds {
            let k = (round as usize * 7 + 1) % size as usize + 1;
            let mut posted = std::collections::HashMap::new();
            for _ in 0..k {
                let writable = !seq.is_multiple_of(3);
                let id = q
                    .push(0x10_0000 + seq, 100 + (seq % 50) as u32, writable)
                    .unwrap();
                posted.insert(id, (seq, writable));
                seq += 1;
            }
            assert_eq!(q.num_free(), size as usize - k);
            q.publish();
            let got = dev.take_avail();
            assert_eq!(got.len(), k);
            for (id, d) in &got {
                let (s, w) = posted[id];
                assert_eq!(d.addr, 0x10_0000 + s);
                assert_eq!(d.len, 100 + (s % 50) as u32);
                assert_eq!(d.flags & VRING_DESC_F_WRITE != 0, w);
            }
            // Complete in reverse order, half as one batch, half one by one.
            let mut done: Vec<(u16, u32)> = got.iter().rev().map(|(id, _)| (*id, 7)).collect();
            let tail = done.split_off(done.len() / 2);
            dev.complete_batch(&done);
            for (id, len) in tail {
                dev.complete(id, len);
            }
            // Harvest in pieces of at most 5.
            let mut taken = 0;
            while taken < k {
                let (n, err) = q.poll_used(&mut out[..5]);
                assert_eq!(err, 0, "round {round}");
                assert!(n > 0, "round {round}: stuck at {taken}/{k}");
                for e in &out[..n] {
                    assert!(e.ok && e.len == 7);
                    assert!(posted.remove(&e.id).is_some(), "id {} twice", e.id);
                }
                taken += n;
            }
            assert!(posted.is_empty());
            assert_eq!(q.poll_used(&mut out), (0, 0));
            assert_eq!(q.num_free(), size as usize);
        }
        assert!(!q.is_broken());
    }

    #[test]
    fn round_trip_and_wrap_around_size_8() {
        rounds(8, 20_000);
    }

    #[test]
    fn round_trip_and_wrap_around_size_256() {
        rounds(256, 2_000);
    }

    #[test]
    fn keeps_ring_full_across_laps() {
        // Steady state with the ring always nearly full (like rx): refill as buffers return.
        let mut q = queue(8, false);
        let mut dev = SimPackedDevice::new(&q);
        let mut out = [UsedElem::default(); 8];
        while q.push(1, 64, true).is_some() {}
        q.publish();
        for _ in 0..10_000 {
            let got = dev.take_avail();
            for (id, _) in got.iter().take(3) {
                dev.complete(*id, 10);
            }
            let rest: Vec<_> = got[3.min(got.len())..].to_vec();
            let (n, e) = q.poll_used(&mut out);
            assert_eq!((n, e), (3.min(got.len()), 0));
            for _ in 0..n {
                q.push(1, 64, true).unwrap();
            }
            q.publish();
            for (id, _) in rest {
                dev.complete(id, 10);
            }
            let (n, e) = q.poll_used(&mut out);
            assert_eq!(e, 0);
            for _ in 0..n {
                q.push(1, 64, true).unwrap();
            }
            q.publish();
            assert_eq!(q.num_free(), 0);
        }
        assert!(!q.is_broken());
    }

    #[test]
    fn hostile_used_flag_on_descriptor_never_made_available() {
        let mut q = queue(8, false);
        let dev = SimPackedDevice::new(&q);
        let mut out = [UsedElem::default(); 8];
        // Nothing published; the device marks position 0 used (wrap 1).
        dev.poke_flags(0, BOTH);
        assert_eq!(q.poll_used(&mut out), (0, 1));
        assert!(q.is_broken());
        assert_eq!(
            q.poll_used(&mut out),
            (0, 0),
            "broken queue consumes nothing"
        );

        // Runs past what was published: two published, three marked used.
        let mut q = queue(8, false);
        let mut dev = SimPackedDevice::new(&q);
        let a = q.push(1, 64, true).unwrap();
        let b = q.push(2, 64, true).unwrap();
        q.publish();
        q.push(3, 64, true).unwrap(); // pushed, never published
        dev.take_avail();
        dev.complete(a, 1);
        dev.complete(b, 1);
        dev.complete(5, 1);
        assert_eq!(q.poll_used(&mut out), (2, 1));
        assert!(q.is_broken());
        assert_eq!(q.in_flight(), 1);
    }

    #[test]
    fn hostile_id_out_of_range_or_not_in_flight() {
        for bad in [8u16, 9999, u16::MAX] {
            let mut q = queue(8, false);
            let mut dev = SimPackedDevice::new(&q);
            let a = q.push(1, 64, true).unwrap();
            q.push(2, 64, true).unwrap();
            q.publish();
            dev.take_avail();
            dev.complete(a, 10);
            dev.complete(bad, 10);
            let mut out = [UsedElem::default(); 8];
            assert_eq!(q.poll_used(&mut out), (1, 1), "id {bad}");
            assert_eq!(out[0].id, a);
            assert!(q.is_broken());
        }
        // Duplicate (no longer in flight) and never posted.
        for dup in [true, false] {
            let mut q = queue(8, false);
            let mut dev = SimPackedDevice::new(&q);
            let ids: Vec<u16> = (0..4).map(|i| q.push(i, 64, true).unwrap()).collect();
            q.publish();
            dev.take_avail();
            dev.complete(ids[0], 1);
            dev.complete(if dup { ids[0] } else { 7 }, 1);
            let mut out = [UsedElem::default(); 8];
            assert_eq!(q.poll_used(&mut out), (1, 1));
            assert!(q.is_broken());
            assert_eq!(q.in_flight(), 3);
            let mut ids = q.in_flight_ids().collect::<Vec<_>>();
            ids.sort();
            assert_eq!(ids.len(), 3, "the rest stay owned for release");
        }
    }

    #[test]
    fn hostile_len_too_large() {
        let mut q = queue(8, false);
        let mut dev = SimPackedDevice::new(&q);
        let w = q.push(1, 64, true).unwrap();
        let r = q.push(2, 64, false).unwrap();
        q.publish();
        dev.take_avail();
        dev.complete(w, 65);
        dev.complete(r, 100_000); // ignored for device-readable buffers
        let mut out = [UsedElem::default(); 8];
        assert_eq!(q.poll_used(&mut out), (2, 1));
        assert_eq!((out[0].id, out[0].ok), (w, false));
        assert_eq!((out[1].id, out[1].ok), (r, true));
        assert_eq!(q.num_free(), 8, "bad-length buffers are still reclaimed");
        assert!(!q.is_broken());
    }

    #[test]
    fn hostile_wrap_counter_mismatch() {
        // (!w, !w) and (!w, w) on a published position, in the first lap and after a wrap.
        for (laps, bad) in [
            (0, 0u16),
            (0, VRING_PACKED_DESC_F_USED),
            (1, BOTH),
            (1, VRING_PACKED_DESC_F_AVAIL),
        ] {
            let mut q = queue(8, false);
            let mut dev = SimPackedDevice::new(&q);
            let mut out = [UsedElem::default(); 8];
            for _ in 0..laps * 8 {
                q.push(1, 64, true).unwrap();
                q.publish();
                let (id, _) = dev.take_avail()[0];
                dev.complete(id, 1);
                assert_eq!(q.poll_used(&mut out), (1, 0));
            }
            let id = q.push(1, 64, true).unwrap();
            q.publish();
            dev.take_avail();
            dev.write_raw(id, 1, bad);
            assert_eq!(q.poll_used(&mut out), (0, 1), "laps {laps} flags {bad:#x}");
            assert!(q.is_broken());
            assert_eq!(q.in_flight(), 1);
        }
        // A correct completion in the second lap is not mistaken for stale flags.
        let mut q = queue(8, false);
        let mut dev = SimPackedDevice::new(&q);
        let mut out = [UsedElem::default(); 8];
        for _ in 0..9 {
            q.push(1, 64, true).unwrap();
            q.publish();
            let (id, _) = dev.take_avail()[0];
            dev.complete(id, 1);
            assert_eq!(q.poll_used(&mut out), (1, 0));
        }
    }

    #[test]
    fn hostile_garbage_never_panics() {
        // The device writes random flags, ids and lengths anywhere; the queue counts errors,
        // never panics, and its bookkeeping stays consistent.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut broken = 0;
        for _ in 0..200 {
            let mut q = queue(8, true);
            let mut dev = SimPackedDevice::new(&q);
            let mut out = [UsedElem::default(); 8];
            for _ in 0..50 {
                for _ in 0..rnd() % 4 {
                    let _ = q.push(1, 64, rnd() % 2 == 0);
                }
                q.publish();
                dev.take_avail();
                match rnd() % 4 {
                    0 => dev.poke_flags((rnd() % 8) as u16, rnd() as u16),
                    1 => dev.write_raw(rnd() as u16 % 10, rnd() as u32 % 100, rnd() as u16),
                    2 => dev.set_event(rnd() as u16, rnd() as u16),
                    _ => {
                        let ids: Vec<u16> = q.in_flight_ids().collect();
                        if let Some(&id) = ids.first() {
                            dev.complete(id, rnd() as u32 % 100);
                        }
                    }
                }
                let _ = q.kick_needed();
                let (n, _) = q.poll_used(&mut out);
                assert!(n <= 8);
                assert_eq!(q.num_free() + q.in_flight(), 8);
                assert_eq!(q.in_flight_ids().count(), q.in_flight());
            }
            broken += q.is_broken() as u32;
        }
        assert!(broken > 0, "the garbage did trip the checks");
    }

    #[test]
    fn chains_take_consecutive_positions_and_return_whole() {
        for size in [8u16, 64] {
            let mut q = queue(size, false);
            let mut dev = SimPackedDevice::new(&q);
            let mut out = vec![UsedElem::default(); size as usize];
            assert_eq!(q.push_chain(&[], false), None);
            let mut seq = 0u64;
            for round in 0..5_000u32 {
                // A few chains of 1..=5 parts, as many as fit: positions wrap mid-chain.
                let mut posted = Vec::new();
                let mut want = 0usize;
                for j in 0..3u32 {
                    let k = ((round + j) % 5 + 1) as usize;
                    let parts: Vec<(u64, u32)> =
                        (0..k).map(|i| (seq + i as u64, 1 + i as u32)).collect();
                    seq += k as u64;
                    let free = q.num_free();
                    match q.push_chain(&parts, false) {
                        Some(id) => {
                            assert_eq!(q.num_free(), free - k);
                            posted.push((id, parts));
                            want += k;
                        }
                        None => assert!(k > free, "refused only without room"),
                    }
                }
                q.publish();
                let got = dev.take_avail();
                assert_eq!(got.len(), want, "one ring descriptor per part");
                let mut at = 0;
                for (id, parts) in &posted {
                    for (i, p) in parts.iter().enumerate() {
                        let d = got[at].1;
                        assert_eq!(d.id, *id, "every descriptor carries the buffer id");
                        assert_eq!((d.addr, d.len), *p);
                        assert_eq!(d.flags & VRING_DESC_F_NEXT != 0, i + 1 < parts.len());
                        at += 1;
                    }
                }
                for (id, parts) in &posted {
                    dev.complete_chain(*id, 0, parts.len() as u16);
                }
                let (n, e) = q.poll_used(&mut out);
                assert_eq!((n, e), (posted.len(), 0), "round {round}");
                assert_eq!(q.num_free(), size as usize);
                assert_eq!(q.in_flight(), 0);
            }
            assert!(!q.is_broken());
        }
    }

    #[test]
    fn hostile_chain_completion_past_what_was_published() {
        // One 3-descriptor chain published; the device claims a second one at +3.
        let mut q = queue(8, false);
        let mut dev = SimPackedDevice::new(&q);
        let a = q.push_chain(&[(1, 1), (2, 2), (3, 3)], false).unwrap();
        q.publish();
        let b = q.push_chain(&[(4, 4), (5, 5)], false).unwrap(); // never published
        dev.take_avail();
        dev.complete_chain(a, 0, 3);
        dev.complete(b, 0);
        let mut out = [UsedElem::default(); 8];
        assert_eq!(q.poll_used(&mut out), (1, 1));
        assert_eq!(out[0].id, a);
        assert!(q.is_broken());
        assert_eq!(q.in_flight(), 1, "b stays owned for release");
    }

    #[test]
    fn kicks_follow_device_event_suppression() {
        let mut q = queue(8, false);
        let dev = SimPackedDevice::new(&q);
        assert!(!q.kick_needed(), "nothing published");
        q.push(0, 1, false).unwrap();
        q.publish();
        assert!(q.kick_needed(), "ENABLE (zeroed) kicks");
        assert!(!q.kick_needed(), "nothing new since");
        dev.set_event(0, RING_EVENT_FLAGS_DISABLE);
        q.push(0, 1, false).unwrap();
        q.publish();
        assert!(!q.kick_needed());
        // DESC without EVENT_IDX negotiated is not valid: kick anyway.
        dev.set_event(5, RING_EVENT_FLAGS_DESC);
        q.push(0, 1, false).unwrap();
        q.publish();
        assert!(q.kick_needed());
    }

    #[test]
    fn kicks_follow_desc_event() {
        let mut q = queue(8, true);
        let mut dev = SimPackedDevice::new(&q);
        let mut out = [UsedElem::default(); 8];
        // The device wants a kick when position 2 of lap 1 becomes available.
        dev.set_event(2 | WRAP_BIT, RING_EVENT_FLAGS_DESC);
        q.push(0, 1, false).unwrap();
        q.push(0, 1, false).unwrap();
        q.publish();
        assert!(!q.kick_needed(), "positions 0, 1");
        q.push(0, 1, false).unwrap();
        q.publish();
        assert!(q.kick_needed(), "position 2");
        q.push(0, 1, false).unwrap();
        q.publish();
        assert!(!q.kick_needed(), "position 3");
        for (id, _) in dev.take_avail() {
            dev.complete(id, 0);
        }
        assert_eq!(q.poll_used(&mut out).0, 4);
        // Event at position 1 of lap 0 (after the wrap): published 4..=7 then 0..=1.
        dev.set_event(1, RING_EVENT_FLAGS_DESC);
        for _ in 0..4 {
            q.push(0, 1, false).unwrap();
        }
        q.publish();
        assert!(!q.kick_needed(), "positions 4..=7 of lap 1");
        for (id, _) in dev.take_avail() {
            dev.complete(id, 0);
        }
        assert_eq!(q.poll_used(&mut out).0, 4);
        q.push(0, 1, false).unwrap();
        q.push(0, 1, false).unwrap();
        q.publish();
        assert!(q.kick_needed(), "position 1 of lap 0 in this batch");
        // Same offset, wrong lap: no kick.
        dev.set_event(3 | WRAP_BIT, RING_EVENT_FLAGS_DESC);
        q.push(0, 1, false).unwrap();
        q.push(0, 1, false).unwrap();
        q.publish();
        assert!(!q.kick_needed(), "position 3 of lap 1 is not now");
        // Nonsense offset: kick.
        dev.set_event(100, RING_EVENT_FLAGS_DESC);
        for (id, _) in dev.take_avail() {
            dev.complete(id, 0);
        }
        q.poll_used(&mut out);
        q.push(0, 1, false).unwrap();
        q.publish();
        assert!(q.kick_needed());
    }
}
