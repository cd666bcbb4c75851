//! The split virtqueue, driver side (virtio 1.x, section 2.7 "Split Virtqueues").
//!
//! One queue of `size` entries (a power of two) lives in one area of shared memory:
//!
//! | part | size | alignment |
//! |---|---|---|
//! | descriptor table: `size` × {addr u64, len u32, flags u16, next u16} | 16 × size | 16 |
//! | available ring: flags u16, idx u16, ring\[size\] u16, used_event u16 | 6 + 2 × size | 2 |
//! | used ring: flags u16, idx u16, ring\[size\] {id u32, len u32}, avail_event u16 | 6 + 8 × size | 4 |
//!
//! The used ring starts on a 4096-byte boundary (what legacy virtio-pci requires; modern
//! devices only need 4), so the same layout serves every transport.
//!
//! The used ring is written by an untrusted peer. [`SplitQueue::poll_used`] reads `used.idx`
//! once (acquire), refuses an index that ran further ahead than the buffers in flight
//! (the queue is then marked broken and stops consuming), and checks every element: `id`
//! must be below the queue size and name a descriptor that is actually in flight, and for
//! device-writable buffers `len` must not exceed what was posted. Bad elements are counted,
//! never trusted. The free list and the in-flight bookkeeping live in private memory, so a
//! peer scribbling on the shared descriptor table cannot corrupt them.
//!
//! Notifications: without `VIRTIO_F_EVENT_IDX` the driver sets
//! [`VRING_AVAIL_F_NO_INTERRUPT`] (it polls) and kicks only while the device leaves
//! [`VRING_USED_F_NO_NOTIFY`] clear; with it, `used_event` is kept half the index space
//! ahead (no interrupts) and kicks follow `avail_event` (the `vring_need_event` rule).
//! [`SplitQueue::enable_intr`] asks for interrupts while a thread sleeps (flags cleared,
//! or `used_event` = the next used index to consume, kept there by
//! [`SplitQueue::poll_used`] until [`SplitQueue::disable_intr`]).

use super::{
    ring_addrs, AddrMode, QueueError, RingAddrs, UsedElem, MAX_QUEUE_SIZE, RING_ALIGN,
    VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use pmd_core::memory::Segment;
use std::sync::atomic::{fence, AtomicU16, Ordering};
use std::sync::Arc;

/// Available-ring flag: the driver does not want used-buffer notifications.
pub const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used-ring flag: the device does not want available-buffer notifications (kicks).
pub const VRING_USED_F_NO_NOTIFY: u16 = 1;

/// One descriptor of the descriptor table, as laid out in shared memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    /// Buffer address (guest-physical for the device).
    pub addr: u64,
    /// Buffer length in bytes.
    pub len: u32,
    /// `VRING_DESC_F_*` flags.
    pub flags: u16,
    /// Next descriptor of a chain (with [`VRING_DESC_F_NEXT`]).
    pub next: u16,
}

/// Byte offsets of the three parts of a split queue of a given size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Entries.
    pub size: u16,
    /// Offset of the available ring (the descriptor table is at 0).
    pub avail_off: usize,
    /// Offset of the used ring.
    pub used_off: usize,
    /// Bytes the whole queue needs (a multiple of [`RING_ALIGN`]).
    pub total: usize,
}

const fn align_up(v: usize, a: usize) -> usize {
    (v + a - 1) & !(a - 1)
}

impl Layout {
    /// The layout for `size` entries, or `None` unless `size` is a power of two in
    /// `1..=MAX_QUEUE_SIZE`.
    pub fn new(size: u16) -> Option<Layout> {
        if size == 0 || !size.is_power_of_two() || size > MAX_QUEUE_SIZE {
            return None;
        }
        let n = size as usize;
        let avail_off = 16 * n;
        let used_off = align_up(avail_off + 6 + 2 * n, RING_ALIGN);
        let total = align_up(used_off + 6 + 8 * n, RING_ALIGN);
        Some(Layout {
            size,
            avail_off,
            used_off,
            total,
        })
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// True for the head descriptor of a buffer in flight (never for the rest of a chain,
    /// so a device naming a non-head id is caught).
    in_flight: bool,
    writable: bool,
    /// Bytes posted (the whole chain's for a head).
    len: u32,
    /// Descriptors in the buffer's chain (1 for a single descriptor).
    ndesc: u16,
    /// Next descriptor of the chain (private copy: the shared table is not trusted).
    next: u16,
}

/// Reads and writes of the used ring and the descriptor table are volatile: the peer
/// changes them concurrently.
///
/// The driver side of one split virtqueue (single-threaded: owned by one lcore).
pub struct SplitQueue {
    mem: Arc<Segment>,
    base: *mut u8,
    layout: Layout,
    index: u16,
    mask: u16,
    event_idx: bool,
    free: Vec<u16>,
    slots: Vec<Slot>,
    /// Buffers (chains) in flight.
    bufs_in_flight: usize,
    /// Next available index to write (shadow of `avail.idx` once published).
    avail_idx: u16,
    /// `avail.idx` at the last notification decision.
    kick_base: u16,
    /// Next used index to consume.
    last_used: u16,
    broken: bool,
    /// Used-buffer notifications wanted ([`SplitQueue::enable_intr`]).
    intr: bool,
}

// SAFETY: the queue owns its view of the ring memory (kept alive by the Arc); moving it to
// another thread moves that single-threaded ownership.
unsafe impl Send for SplitQueue {}

impl std::fmt::Debug for SplitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitQueue")
            .field("index", &self.index)
            .field("size", &self.layout.size)
            .field("free", &self.free.len())
            .field("avail_idx", &self.avail_idx)
            .field("last_used", &self.last_used)
            .field("broken", &self.broken)
            .finish()
    }
}

/// `vring_need_event`: whether moving an index from `old` to `new` crosses `event`.
#[inline(always)]
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

impl SplitQueue {
    /// Creates queue `index` of `size` entries at `offset` (a multiple of [`RING_ALIGN`])
    /// in `mem`, zeroes its area, and starts at index 0. `event_idx` says whether
    /// `VIRTIO_F_EVENT_IDX` was negotiated.
    pub fn new(
        mem: Arc<Segment>,
        offset: usize,
        index: u16,
        size: u16,
        event_idx: bool,
    ) -> Result<SplitQueue, QueueError> {
        let layout = Layout::new(size).ok_or(QueueError::BadSize(size))?;
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
        let q = SplitQueue {
            mem,
            base,
            layout,
            index,
            mask: size - 1,
            event_idx,
            free: (0..size).rev().collect(),
            slots: vec![Slot::default(); size as usize],
            bufs_in_flight: 0,
            avail_idx: 0,
            kick_base: 0,
            last_used: 0,
            broken: false,
            intr: false,
        };
        if event_idx {
            q.write_used_event();
        } else {
            q.avail_u16(0)
                .store(VRING_AVAIL_F_NO_INTERRUPT, Ordering::Relaxed);
        }
        Ok(q)
    }

    /// The `n`-th u16 of the available ring (0 = flags, 1 = idx, 2.. = ring, 2 + size =
    /// used_event), as an atomic.
    #[inline(always)]
    fn avail_u16(&self, n: usize) -> &AtomicU16 {
        debug_assert!(n < 3 + self.layout.size as usize);
        // SAFETY: in bounds of the avail ring (n < 3 + size), 2-aligned (the avail ring is at
        // a multiple of 16 and entries are u16), and the memory lives as long as `self.mem`.
        unsafe { &*(self.base.add(self.layout.avail_off + 2 * n) as *const AtomicU16) }
    }

    /// The used ring's idx (n = 1) or flags (n = 0), or avail_event (n = 2 + 4 × size).
    #[inline(always)]
    fn used_u16(&self, n: usize) -> &AtomicU16 {
        debug_assert!(n < 3 + 4 * self.layout.size as usize);
        // SAFETY: in bounds of the used ring, 2-aligned, memory alive as above.
        unsafe { &*(self.base.add(self.layout.used_off + 2 * n) as *const AtomicU16) }
    }

    /// `used_event`: the next index to consume while interrupts are wanted (the device
    /// signals when it adds that entry), else half the index space ahead (never reached:
    /// at most `size` entries are ever outstanding).
    #[inline(always)]
    fn write_used_event(&self) {
        let ev = if self.intr {
            self.last_used
        } else {
            self.last_used.wrapping_add(0x8000)
        };
        self.avail_u16(2 + self.layout.size as usize)
            .store(ev, Ordering::Relaxed);
    }

    /// Asks the device for a notification when it adds a used buffer (clears
    /// [`VRING_AVAIL_F_NO_INTERRUPT`], or with `EVENT_IDX` sets `used_event` to the next
    /// index to consume), then looks at `used.idx` again: true if used buffers are already
    /// waiting (the caller polls instead of sleeping). The full fence pairs with the
    /// device's between publishing `used.idx` and reading our wish, so either the device
    /// sees the request and signals, or this sees its used entries. A broken queue
    /// consumes nothing: false.
    pub fn enable_intr(&mut self) -> bool {
        self.intr = true;
        if self.event_idx {
            self.write_used_event();
        } else {
            self.avail_u16(0).store(0, Ordering::Relaxed);
        }
        fence(Ordering::SeqCst);
        !self.broken && self.used_u16(1).load(Ordering::Acquire) != self.last_used
    }

    /// Suppresses used-buffer notifications again (the polling state the queue starts
    /// in). A notification already on its way may still arrive.
    pub fn disable_intr(&mut self) {
        self.intr = false;
        if self.event_idx {
            self.write_used_event();
        } else {
            self.avail_u16(0)
                .store(VRING_AVAIL_F_NO_INTERRUPT, Ordering::Relaxed);
        }
    }

    /// Queue index on the device.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// Entries.
    pub fn size(&self) -> u16 {
        self.layout.size
    }

    /// Descriptors free for [`SplitQueue::push`].
    #[inline(always)]
    pub fn num_free(&self) -> usize {
        self.free.len()
    }

    /// Buffers (descriptor chains) handed to the device (pushed) and not yet returned.
    #[inline(always)]
    pub fn in_flight(&self) -> usize {
        self.bufs_in_flight
    }

    /// Whether the device broke the protocol badly enough (used index ran ahead of the
    /// buffers in flight) that the queue stopped consuming used elements.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The next available index the driver will publish (for `SET_VRING_BASE`-style
    /// transports, the device's starting point is this value before any push).
    pub fn avail_idx(&self) -> u16 {
        self.avail_idx
    }

    /// The memory segment holding the queue.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.mem
    }

    /// Addresses of the three parts, in the address space `mode` names.
    pub fn addrs(&self, mode: AddrMode) -> RingAddrs {
        ring_addrs(
            &self.mem,
            self.base,
            mode,
            (self.index, self.layout.size),
            [0, self.layout.avail_off, self.layout.used_off],
        )
    }

    /// Posts one buffer (not visible to the device until [`SplitQueue::publish`]);
    /// returns its descriptor id, or `None` if no descriptor is free.
    #[inline(always)]
    pub fn push(&mut self, addr: u64, len: u32, writable: bool) -> Option<u16> {
        let id = self.free.pop()?;
        self.slots[id as usize] = Slot {
            in_flight: true,
            writable,
            len,
            ndesc: 1,
            next: 0,
        };
        self.bufs_in_flight += 1;
        let d = Desc {
            addr,
            len,
            flags: if writable { VRING_DESC_F_WRITE } else { 0 },
            next: 0,
        };
        // SAFETY: id < size, so the descriptor is inside the table, which is 16-aligned.
        unsafe { std::ptr::write_volatile((self.base as *mut Desc).add(id as usize), d) };
        let slot = 2 + (self.avail_idx & self.mask) as usize;
        self.avail_u16(slot).store(id, Ordering::Relaxed);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Some(id)
    }

    /// Posts one buffer made of `parts` (address, length) linked with
    /// [`VRING_DESC_F_NEXT`], one descriptor each; returns the head's id (what the used
    /// ring will name), or `None` (nothing posted) if `parts` is empty or fewer than
    /// `parts.len()` descriptors are free.
    pub fn push_chain(&mut self, parts: &[(u64, u32)], writable: bool) -> Option<u16> {
        let n = parts.len();
        if n == 0 || n > self.free.len() || n > self.layout.size as usize {
            return None;
        }
        let flags = if writable { VRING_DESC_F_WRITE } else { 0 };
        let head = *self.free.last()?;
        let mut total = 0u32;
        let mut prev: Option<u16> = None;
        for &(addr, len) in parts {
            // Cannot fail: n <= free.len().
            let id = self.free.pop()?;
            total = total.saturating_add(len);
            if let Some(p) = prev {
                self.slots[p as usize].next = id;
                // SAFETY: p < size: inside the descriptor table; only `next` and `flags`
                // of a descriptor not yet published are rewritten.
                unsafe {
                    let d = (self.base as *mut Desc).add(p as usize);
                    std::ptr::write_volatile(std::ptr::addr_of_mut!((*d).next), id);
                    std::ptr::write_volatile(
                        std::ptr::addr_of_mut!((*d).flags),
                        flags | VRING_DESC_F_NEXT,
                    );
                }
            }
            self.slots[id as usize] = Slot {
                in_flight: false,
                writable,
                len,
                ndesc: 0,
                next: 0,
            };
            let d = Desc {
                addr,
                len,
                flags,
                next: 0,
            };
            // SAFETY: id < size, so the descriptor is inside the table, which is 16-aligned.
            unsafe { std::ptr::write_volatile((self.base as *mut Desc).add(id as usize), d) };
            prev = Some(id);
        }
        let h = &mut self.slots[head as usize];
        h.in_flight = true;
        h.len = total;
        h.ndesc = n as u16;
        self.bufs_in_flight += 1;
        let slot = 2 + (self.avail_idx & self.mask) as usize;
        self.avail_u16(slot).store(head, Ordering::Relaxed);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Some(head)
    }

    /// Makes every pushed buffer visible to the device (release store of `avail.idx`).
    #[inline(always)]
    pub fn publish(&mut self) {
        self.avail_u16(1).store(self.avail_idx, Ordering::Release);
    }

    /// Whether the device wants a notification for what was published since the last
    /// call (call after [`SplitQueue::publish`]; a full fence orders the publish before
    /// reading the device's suppression state).
    #[inline(always)]
    pub fn kick_needed(&mut self) -> bool {
        let old = self.kick_base;
        let new = self.avail_idx;
        if old == new {
            return false;
        }
        self.kick_base = new;
        fence(Ordering::SeqCst);
        if self.event_idx {
            let ev = self
                .used_u16(2 + 4 * self.layout.size as usize)
                .load(Ordering::Relaxed);
            need_event(ev, new, old)
        } else {
            self.used_u16(0).load(Ordering::Relaxed) & VRING_USED_F_NO_NOTIFY == 0
        }
    }

    /// Takes up to `out.len()` used elements, validated, into `out`; returns
    /// `(taken, errors)`. Each bad element (id out of range or not in flight) and a
    /// used index that ran ahead of the buffers in flight count one error; an element whose
    /// `len` is too large is returned with `ok == false` and counts one error.
    #[inline]
    pub fn poll_used(&mut self, out: &mut [UsedElem]) -> (usize, u64) {
        if self.broken {
            return (0, 0);
        }
        let used_idx = self.used_u16(1).load(Ordering::Acquire);
        let mut pending = used_idx.wrapping_sub(self.last_used) as usize;
        if pending == 0 {
            return (0, 0);
        }
        let mut errors = 0;
        if pending > self.in_flight() {
            tracing::warn!(
                queue = self.index,
                used_idx,
                last_used = self.last_used,
                in_flight = self.in_flight(),
                "device moved used.idx past the buffers in flight; queue stops"
            );
            self.broken = true;
            return (0, 1);
        }
        pending = pending.min(out.len());
        let used_ring = self.layout.used_off + 4;
        let mut n = 0;
        for _ in 0..pending {
            let slot = (self.last_used & self.mask) as usize;
            self.last_used = self.last_used.wrapping_add(1);
            // SAFETY: slot < size: the element is inside the used ring, 4-aligned.
            let (id, len) = unsafe {
                let p = self.base.add(used_ring + 8 * slot) as *const u32;
                (
                    std::ptr::read_volatile(p),
                    std::ptr::read_volatile(p.add(1)),
                )
            };
            let Some(s) = self.slots.get_mut(id as usize).filter(|s| s.in_flight) else {
                errors += 1;
                continue;
            };
            s.in_flight = false;
            let ok = !s.writable || len <= s.len;
            if !ok {
                errors += 1;
            }
            let (ndesc, mut next) = (s.ndesc, s.next);
            self.free.push(id as u16);
            // The rest of a chain, from the private links (each was set at push_chain).
            for _ in 1..ndesc {
                self.free.push(next);
                next = self.slots[next as usize].next;
            }
            self.bufs_in_flight -= 1;
            out[n] = UsedElem {
                id: id as u16,
                len,
                ok,
            };
            n += 1;
        }
        if self.event_idx {
            self.write_used_event();
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

    /// A test-side device: reads the available ring and writes the used ring in the same
    /// memory, like a vhost back end would.
    pub(crate) struct SimDevice {
        desc: *mut u8,
        avail: *mut u8,
        used: *mut u8,
        size: u16,
        pub(crate) last_avail: u16,
        pub(crate) used_idx: u16,
        pub(crate) event_idx: bool,
    }

    impl SimDevice {
        pub(crate) fn new(q: &SplitQueue) -> SimDevice {
            SimDevice::at(q.addrs(AddrMode::Va), q.event_idx)
        }

        /// A device on the ring at these (virtual) addresses.
        pub(crate) fn at(a: RingAddrs, event_idx: bool) -> SimDevice {
            SimDevice {
                desc: a.desc as *mut u8,
                avail: a.avail as *mut u8,
                used: a.used as *mut u8,
                size: a.size,
                last_avail: 0,
                used_idx: 0,
                event_idx,
            }
        }

        fn u16_at(&self, base: *mut u8, off: usize) -> &AtomicU16 {
            // SAFETY: test-only; offsets computed from the layout, inside the area.
            unsafe { &*(base.add(off) as *const AtomicU16) }
        }

        /// Takes every newly available buffer: (id, descriptor).
        pub(crate) fn take_avail(&mut self) -> Vec<(u16, Desc)> {
            let idx = self.u16_at(self.avail, 2).load(Ordering::Acquire);
            let mut out = Vec::new();
            while self.last_avail != idx {
                let slot = (self.last_avail & (self.size - 1)) as usize;
                let id = self
                    .u16_at(self.avail, 4 + 2 * slot)
                    .load(Ordering::Relaxed);
                assert!(id < self.size);
                // SAFETY: id < size: inside the descriptor table.
                let d =
                    unsafe { std::ptr::read_volatile((self.desc as *const Desc).add(id as usize)) };
                out.push((id, d));
                self.last_avail = self.last_avail.wrapping_add(1);
            }
            if self.event_idx {
                self.set_avail_event(self.last_avail);
            }
            out
        }

        /// Writes a used element at the current used index (not yet published).
        pub(crate) fn write_elem(&mut self, id: u32, len: u32) {
            let slot = (self.used_idx & (self.size - 1)) as usize;
            // SAFETY: slot < size, inside the used ring.
            unsafe {
                let p = self.used.add(4 + 8 * slot) as *mut u32;
                std::ptr::write_volatile(p, id);
                std::ptr::write_volatile(p.add(1), len);
            }
            self.used_idx = self.used_idx.wrapping_add(1);
        }

        /// Publishes the used index.
        pub(crate) fn publish(&self) {
            self.set_used_idx(self.used_idx);
        }

        /// Writes any used index (hostile tests).
        pub(crate) fn set_used_idx(&self, v: u16) {
            self.u16_at(self.used, 2).store(v, Ordering::Release);
        }

        /// Completes one buffer and publishes.
        pub(crate) fn complete(&mut self, id: u16, len: u32) {
            self.write_elem(id as u32, len);
            self.publish();
        }

        pub(crate) fn set_used_flags(&self, f: u16) {
            self.u16_at(self.used, 0).store(f, Ordering::Relaxed);
        }

        pub(crate) fn set_avail_event(&self, v: u16) {
            self.u16_at(self.used, 4 + 8 * self.size as usize)
                .store(v, Ordering::Relaxed);
        }

        pub(crate) fn avail_flags(&self) -> u16 {
            self.u16_at(self.avail, 0).load(Ordering::Relaxed)
        }

        pub(crate) fn used_event(&self) -> u16 {
            self.u16_at(self.avail, 4 + 2 * self.size as usize)
                .load(Ordering::Relaxed)
        }
    }

    fn queue(size: u16, event_idx: bool) -> SplitQueue {
        let l = Layout::new(size).unwrap();
        let mem = Arc::new(Segment::alloc("vq-test", l.total).unwrap());
        SplitQueue::new(mem, 0, 0, size, event_idx).unwrap()
    }

    #[test]
    fn layout_follows_the_spec() {
        let l = Layout::new(256).unwrap();
        assert_eq!(l.avail_off, 4096);
        assert_eq!(l.used_off, 8192);
        assert_eq!(l.total, 12288);
        assert_eq!(std::mem::size_of::<Desc>(), 16);
        for bad in [0, 3, 100, 8192] {
            assert!(Layout::new(bad).is_none(), "{bad}");
        }
        let l = Layout::new(1).unwrap();
        assert_eq!((l.avail_off, l.used_off, l.total), (16, 4096, 8192));
    }

    #[test]
    fn rejects_area_outside_segment() {
        let mem = Arc::new(Segment::alloc("vq-small", 4096).unwrap());
        let e = SplitQueue::new(mem.clone(), 0, 0, 256, false).unwrap_err();
        assert!(matches!(e, QueueError::OutOfBounds { .. }), "{e}");
        assert!(SplitQueue::new(mem, 0, 0, 6, false).is_err());
    }

    #[test]
    fn round_trip_and_wrap_around() {
        let mut q = queue(8, false);
        let mut dev = SimDevice::new(&q);
        assert_eq!(dev.avail_flags(), VRING_AVAIL_F_NO_INTERRUPT);
        let mut out = [UsedElem::default(); 8];
        // Well past 2^16 operations, with varying batch sizes: indices wrap.
        let mut next_len = 1u32;
        for round in 0..40_000u32 {
            let k = (round % 8 + 1) as usize;
            let mut posted = Vec::new();
            for _ in 0..k {
                let id = q.push(0x1000 + next_len as u64, 100, true).unwrap();
                posted.push(id);
                next_len += 1;
            }
            q.publish();
            let got = dev.take_avail();
            assert_eq!(got.len(), k);
            for (id, d) in &got {
                assert_eq!(d.flags, VRING_DESC_F_WRITE);
                assert_eq!(d.len, 100);
                dev.write_elem(*id as u32, 60);
            }
            dev.publish();
            let (n, err) = q.poll_used(&mut out);
            assert_eq!((n, err), (k, 0));
            for (e, id) in out[..n].iter().zip(&posted) {
                assert_eq!((e.id, e.len, e.ok), (*id, 60, true));
            }
            assert_eq!(q.num_free(), 8);
        }
        assert!(dev.used_idx < 40_000u32.wrapping_mul(4) as u16 || dev.used_idx > 0);
        assert!(!q.is_broken());
    }

    #[test]
    fn starts_near_wrap() {
        let mut q = queue(4, false);
        let mut dev = SimDevice::new(&q);
        // Bring both sides to 65534 then cross 0.
        let mut out = [UsedElem::default(); 4];
        for _ in 0..(65534 / 2) {
            q.push(1, 1, false).unwrap();
            q.push(2, 1, false).unwrap();
            q.publish();
            for (id, _) in dev.take_avail() {
                dev.complete(id, 0);
            }
            assert_eq!(q.poll_used(&mut out).0, 2);
        }
        assert_eq!(q.avail_idx(), 65534);
        for _ in 0..4 {
            q.push(3, 1, false).unwrap();
        }
        q.publish();
        let got = dev.take_avail();
        assert_eq!(got.len(), 4);
        for (id, _) in got {
            dev.complete(id, 0);
        }
        assert_eq!(dev.used_idx, 2);
        assert_eq!(q.poll_used(&mut out), (4, 0));
    }

    #[test]
    fn hostile_id_out_of_range_and_not_in_flight() {
        let mut q = queue(8, false);
        let mut dev = SimDevice::new(&q);
        let a = q.push(1, 64, true).unwrap();
        q.push(2, 64, true).unwrap();
        q.publish();
        dev.take_avail();
        dev.write_elem(9999, 10); // out of range
        dev.write_elem(a as u32, 10); // good
        dev.write_elem(a as u32, 10); // no longer in flight
        dev.publish();
        let mut out = [UsedElem::default(); 8];
        // Three elements but only two in flight: the index ran ahead -> broken.
        assert_eq!(q.poll_used(&mut out), (0, 1));
        assert!(q.is_broken());
        assert_eq!(q.poll_used(&mut out), (0, 0));

        let mut q = queue(8, false);
        let mut dev = SimDevice::new(&q);
        let ids: Vec<u16> = (0..4).map(|i| q.push(i, 64, true).unwrap()).collect();
        q.publish();
        dev.take_avail();
        dev.write_elem(ids[0] as u32, 10);
        dev.write_elem(8, 10); // id == size: out of range
        dev.write_elem(ids[0] as u32, 10); // duplicate: not in flight any more
        dev.write_elem(7, 10); // never posted
        dev.publish();
        let (n, err) = q.poll_used(&mut out);
        assert_eq!((n, err), (1, 3));
        assert_eq!(out[0].id, ids[0]);
        assert_eq!(q.in_flight(), 3);
        // The rest still complete normally afterwards.
        for id in &ids[1..] {
            dev.write_elem(*id as u32, 1);
        }
        dev.publish();
        assert_eq!(q.poll_used(&mut out), (3, 0));
        assert_eq!(q.num_free(), 8);
    }

    #[test]
    fn hostile_len_too_large() {
        let mut q = queue(8, false);
        let mut dev = SimDevice::new(&q);
        let w = q.push(1, 64, true).unwrap();
        let r = q.push(2, 64, false).unwrap();
        q.publish();
        dev.take_avail();
        dev.write_elem(w as u32, 65);
        // Device-readable buffers report a written length that is ignored.
        dev.write_elem(r as u32, 100_000);
        dev.publish();
        let mut out = [UsedElem::default(); 8];
        assert_eq!(q.poll_used(&mut out), (2, 1));
        assert_eq!((out[0].id, out[0].ok), (w, false));
        assert_eq!((out[1].id, out[1].ok), (r, true));
        assert_eq!(q.num_free(), 8, "bad-length buffers are still reclaimed");
    }

    #[test]
    fn hostile_index_jump_beyond_size() {
        let mut q = queue(8, false);
        let dev = SimDevice::new(&q);
        for i in 0..8 {
            q.push(i, 64, true).unwrap();
        }
        q.publish();
        dev.set_used_idx(9);
        let mut out = [UsedElem::default(); 8];
        assert_eq!(q.poll_used(&mut out), (0, 1));
        assert!(q.is_broken());
        assert_eq!(q.in_flight(), 8, "nothing was reclaimed on a bogus index");
        // Backwards jump (a huge forward distance modulo 2^16) is caught too.
        let mut q = queue(8, false);
        let dev = SimDevice::new(&q);
        q.push(0, 64, true).unwrap();
        q.publish();
        dev.set_used_idx(0xffff);
        assert_eq!(q.poll_used(&mut out), (0, 1));
    }

    #[test]
    fn partial_harvest_respects_out_len() {
        let mut q = queue(8, false);
        let mut dev = SimDevice::new(&q);
        for i in 0..6 {
            q.push(i, 64, true).unwrap();
        }
        q.publish();
        for (id, _) in dev.take_avail() {
            dev.write_elem(id as u32, 1);
        }
        dev.publish();
        let mut out = [UsedElem::default(); 4];
        assert_eq!(q.poll_used(&mut out), (4, 0));
        assert_eq!(q.poll_used(&mut out), (2, 0));
        assert_eq!(q.poll_used(&mut out), (0, 0));
    }

    #[test]
    fn kicks_follow_no_notify_flag() {
        let mut q = queue(8, false);
        let dev = SimDevice::new(&q);
        assert!(!q.kick_needed(), "nothing published");
        q.push(0, 1, false).unwrap();
        q.publish();
        assert!(q.kick_needed());
        assert!(!q.kick_needed(), "nothing new since");
        dev.set_used_flags(VRING_USED_F_NO_NOTIFY);
        q.push(0, 1, false).unwrap();
        q.publish();
        assert!(!q.kick_needed());
    }

    #[test]
    fn chains_link_descriptors_and_return_whole() {
        let mut q = queue(8, false);
        let mut dev = SimDevice::new(&q);
        let mut out = [UsedElem::default(); 8];
        assert_eq!(q.push_chain(&[], false), None);
        assert_eq!(
            q.push_chain(&[(1, 1); 9], false),
            None,
            "more than the ring"
        );
        // Many rounds of mixed chain lengths: the free list must come back whole.
        for round in 0..5_000u32 {
            let k = (round % 5 + 1) as usize;
            let parts: Vec<(u64, u32)> = (0..k)
                .map(|i| (0x1000 * i as u64 + 1, 10 + i as u32))
                .collect();
            let head = q.push_chain(&parts, false).unwrap();
            let single = q.push(0x9999, 5, false).unwrap();
            assert_eq!(q.num_free(), 8 - k - 1);
            if k + 1 < 8 {
                assert_eq!(q.push_chain(&[(0, 1); 8], false), None, "does not fit");
                assert_eq!(q.num_free(), 8 - k - 1, "nothing taken");
            }
            q.publish();
            let got = dev.take_avail();
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].0, head);
            // Walk the chain as a device would.
            let mut d = got[0].1;
            for (i, p) in parts.iter().enumerate() {
                assert_eq!((d.addr, d.len), *p);
                if i + 1 < k {
                    assert_eq!(d.flags, VRING_DESC_F_NEXT);
                    assert!(d.next < 8);
                    // SAFETY: test: d.next < size, inside the table.
                    d = unsafe {
                        std::ptr::read_volatile((dev.desc as *const Desc).add(d.next as usize))
                    };
                } else {
                    assert_eq!(d.flags, 0);
                }
            }
            dev.write_elem(single as u32, 0);
            dev.write_elem(head as u32, 0);
            dev.publish();
            assert_eq!(q.poll_used(&mut out), (2, 0));
            assert_eq!((out[0].id, out[1].id), (single, head));
            assert_eq!(q.num_free(), 8);
            assert_eq!(q.in_flight(), 0);
        }
    }

    #[test]
    fn hostile_chain_member_id_is_not_in_flight() {
        let mut q = queue(8, false);
        let mut dev = SimDevice::new(&q);
        let head = q.push_chain(&[(1, 1), (2, 2), (3, 3)], false).unwrap();
        let other = q.push(4, 4, false).unwrap();
        q.publish();
        let got = dev.take_avail();
        let member = got[0].1.next;
        dev.write_elem(member as u32, 0); // a chain member, not a head
        dev.write_elem(head as u32, 0);
        dev.publish();
        let mut out = [UsedElem::default(); 8];
        assert_eq!(q.poll_used(&mut out), (1, 1));
        assert_eq!(out[0].id, head);
        assert_eq!(q.num_free(), 7, "the chain's three descriptors are back");
        dev.complete(other, 0);
        assert_eq!(q.poll_used(&mut out), (1, 0));
        assert_eq!(q.num_free(), 8);
    }

    #[test]
    fn need_event_rule() {
        assert!(need_event(0, 1, 0));
        assert!(
            !need_event(5, 5, 0),
            "event 5 is crossed only when moving past 5"
        );
        assert!(need_event(5, 6, 0));
        assert!(need_event(0xffff, 1, 0xfffe), "wraps");
        assert!(!need_event(10, 20, 11));
    }

    #[test]
    fn interrupts_enable_and_recheck() {
        for event_idx in [false, true] {
            let mut q = queue(8, event_idx);
            let mut dev = SimDevice::new(&q);
            let mut out = [UsedElem::default(); 8];
            let polling = |dev: &SimDevice, q: &SplitQueue| {
                if event_idx {
                    assert_eq!(dev.used_event(), q.last_used.wrapping_add(0x8000));
                } else {
                    assert_eq!(dev.avail_flags(), VRING_AVAIL_F_NO_INTERRUPT);
                }
            };
            polling(&dev, &q);
            for round in 0..20 {
                for _ in 0..5 {
                    q.push(1, 64, true).unwrap();
                }
                q.publish();
                let got = dev.take_avail();
                assert!(!q.enable_intr(), "round {round}: nothing used yet");
                if event_idx {
                    assert_eq!(dev.used_event(), q.last_used, "the next entry signals");
                } else {
                    assert_eq!(dev.avail_flags(), 0);
                }
                dev.complete(got[0].0, 1);
                assert!(q.enable_intr(), "round {round}: a used entry is seen");
                // Polled while armed: still armed, for the entry after.
                assert_eq!(q.poll_used(&mut out), (1, 0));
                if event_idx {
                    assert_eq!(dev.used_event(), q.last_used);
                } else {
                    assert_eq!(dev.avail_flags(), 0);
                }
                for (id, _) in &got[1..] {
                    dev.write_elem(*id as u32, 1);
                }
                dev.publish();
                q.disable_intr();
                polling(&dev, &q);
                assert_eq!(q.poll_used(&mut out), (4, 0));
                polling(&dev, &q);
            }
        }
    }

    #[test]
    fn kicks_follow_avail_event() {
        let mut q = queue(8, true);
        let mut dev = SimDevice::new(&q);
        assert_eq!(dev.avail_flags(), 0, "flags unused with EVENT_IDX");
        assert_eq!(dev.used_event(), 0x8000, "no interrupts wanted");
        // avail_event = 0: the device wants a kick when idx moves past 0.
        q.push(0, 1, false).unwrap();
        q.publish();
        assert!(q.kick_needed());
        let first = dev.take_avail(); // the device sets avail_event = 1 (it has seen entry 0)
        q.push(0, 1, false).unwrap();
        q.push(0, 1, false).unwrap();
        q.publish();
        assert!(q.kick_needed(), "crossed avail_event 1");
        // Device keeps avail_event at 1 (it polls): no more kicks for a long time.
        dev.set_avail_event(1);
        q.push(0, 1, false).unwrap();
        q.publish();
        assert!(!q.kick_needed());
        // Used event moves with what the driver consumed.
        for (id, _) in first.into_iter().chain(dev.take_avail()) {
            dev.write_elem(id as u32, 0);
        }
        dev.publish();
        let mut out = [UsedElem::default(); 8];
        assert_eq!(q.poll_used(&mut out), (4, 0));
        assert_eq!(dev.used_event(), 4u16.wrapping_add(0x8000));
    }
}
