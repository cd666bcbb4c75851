//! The device side of a packed virtqueue (virtio 1.2 §2.8): [`PackedRing`], used by the
//! one queue thread that runs the ring, with the same interface as
//! [`crate::split::SplitRing`].
//!
//! One ring of descriptors is shared by both sides. The driver makes a chain available
//! by writing its descriptors in consecutive positions (wrapping at the end, linked with
//! NEXT, the buffer id in the last one) and, last, the first one's flags: AVAIL equal to
//! its wrap counter, USED different. We take chains in ring order from our position and
//! wrap counter (which SET_VRING_BASE gives: bits 0..=14 the position, bit 15 the
//! counter); each chain taken gets exactly one used descriptor, written at the chain's
//! first position with its id, the bytes written and AVAIL = USED = the wrap counter of
//! that position, and the next chain starts after it. Taking chains in order keeps our
//! used position equal to the available one, so one position and counter serve both.
//!
//! Everything in the ring is written by an untrusted guest. A chain is walked with at
//! most `size` descriptors, buffers of the right direction only, an INDIRECT table
//! only as the chain's last descriptor and with INDIRECT_DESC negotiated (its entries
//! checked the same way, `indirect`), lengths summed in u64 and bounded, every
//! buffer translated with its length through the memory table, and its id below the
//! size. A bad chain costs only its packet: it is counted
//! ([`RingErrors`]) and goes back to the guest like every other chain. A chain that does
//! not end within the ring makes the ring unusable: it is stopped and counted
//! (`bad_ring`) until the control plane starts it again. A burst takes at most `size`
//! positions, so a driver that flips flags behind us cannot keep it going.
//!
//! Used descriptors of a burst are staged and written at its end: each one's id and
//! length, then the flags of all but the first with release stores, then the first's
//! (release): a driver that reads them in order sees the whole burst at once, and never
//! a used descriptor of a packet that was not finished (a packet spread over several
//! chains with MRG_RXBUF).
//!
//! With `IN_ORDER` negotiated, a receive burst (whose chains are all used with length 0)
//! is returned by one used descriptor, as virtio 1.2 allows (Packed Virtqueues,
//! "In-order use of descriptors"): written at the burst's first position with the
//! buffer id of its last chain; the driver frees every chain up to that id and skips to
//! the position after the burst, where our next used descriptor goes. The descriptors
//! in between keep the driver's flags, which are not available in the next lap. One
//! descriptor line per burst crosses back to the driver instead of every line the burst
//! took.
//!
//! During a migration (a dirty log in the configuration, [`crate::dirty`]) every buffer
//! written, every used descriptor and the device event suppression area are logged after
//! they are written; the transmit burst runs a copy of its code with the logging compiled
//! in.
//!
//! Notifications: we poll, so the device event suppression says DISABLE. After a burst
//! that used chains the call eventfd is signalled if the driver's event suppression asks:
//! ENABLE always, DISABLE never, DESC (with EVENT_IDX) when its `off_wrap` position was
//! among those just used; anything else signals (a spurious interrupt is harmless).

mod guest;
mod rx;
mod tx;

#[cfg(test)]
mod tests;

use crate::burst::{
    area, bump, hdr_len, RingSetupError, F_EVENT_IDX, F_INDIRECT_DESC, MAX_RING_SIZE,
};
use crate::dirty::RingLog;
use crate::mem::GuestMemory;
use crate::vring::{RingErrors, VringConfig};
use guest::{
    is_avail, used_flags, PackedGuestRing, DESC_SIZE, EVENT_F_DESC, EVENT_F_DISABLE,
    EVENT_F_ENABLE, EVENT_SIZE,
};
use pmd_core::mbuf::Mbuf;
use pmd_core::vnet::features::VIRTIO_F_IN_ORDER;
use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

/// Bit 15 of a packed ring's base: the wrap counter.
pub const BASE_WRAP: u16 = 1 << 15;

/// A used descriptor waiting for the end of the burst.
#[derive(Clone, Copy, Debug)]
struct Staged {
    pos: u16,
    id: u16,
    len: u32,
    /// The wrap counter of `pos`'s lap.
    wrap: bool,
}

/// The device's side of one packed virtqueue.
pub struct PackedRing {
    ring: PackedGuestRing,
    /// Keeps the memory the ring and its buffers live in mapped.
    mem: Arc<GuestMemory>,
    /// Position of the next chain to take (and of its used descriptor).
    next: u16,
    /// The wrap counter of `next`'s lap.
    wrap: bool,
    /// Bytes of the virtio-net header: 12 with VERSION_1 or MRG_RXBUF, else 10.
    hdr_len: usize,
    features: u64,
    call: Option<Arc<OwnedFd>>,
    /// Stopped: the guest's ring made no sense.
    broken: bool,
    /// Used descriptors of the current burst (capacity `size`, allocated once).
    staged: Vec<Staged>,
    /// Segments of a received super-frame cut in software that did not fit the burst
    /// (capacity [`pmd_core::vnet::MAX_SW_SEGS`], allocated once).
    pending: VecDeque<Mbuf>,
    /// The dirty log and the guest physical addresses of the descriptor ring and the
    /// device event suppression area, during a migration.
    log: Option<RingLog>,
}

// SAFETY: the raw pointers in `ring` point into the memory table `mem` keeps mapped; the
// ring is used by one thread at a time (`&mut self` for every burst).
unsafe impl Send for PackedRing {}

impl std::fmt::Debug for PackedRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedRing")
            .field("size", &self.ring.size())
            .field("next", &self.next)
            .field("wrap", &self.wrap)
            .field("broken", &self.broken)
            .finish()
    }
}

impl PackedRing {
    /// Sets up the ring `cfg` describes: the size must be a power of two up to 32768,
    /// the descriptor ring (16 × size, 16-aligned) and both event suppression areas (4
    /// bytes, 4-aligned) must translate, and the base's position (bits 0..=14) must be
    /// inside the ring. Starts there, with the wrap counter of bit 15.
    pub fn new(cfg: &VringConfig) -> Result<PackedRing, RingSetupError> {
        let size = cfg.size;
        if !size.is_power_of_two() || size > MAX_RING_SIZE {
            return Err(RingSetupError::Size(size));
        }
        let index = cfg.base & !BASE_WRAP;
        if index >= size {
            return Err(RingSetupError::Base { index, size });
        }
        let mem = cfg.mem.clone();
        let desc = area(
            &mem,
            "desc",
            cfg.addrs.desc,
            DESC_SIZE * u64::from(size),
            16,
        )?;
        let driver = area(&mem, "driver", cfg.addrs.avail, EVENT_SIZE, 4)?;
        let device = area(&mem, "device", cfg.addrs.used, EVENT_SIZE, 4)?;
        let indirect = cfg.features & F_INDIRECT_DESC != 0;
        // SAFETY: each area was translated with its full length inside one region of
        // `mem` (kept alive by the ring) and is aligned; size >= 1.
        let ring = unsafe { PackedGuestRing::new(desc, driver, device, size, indirect) };
        ring.set_device_event_flags(EVENT_F_DISABLE);
        let log = RingLog::new(cfg.log.as_ref(), &mem, cfg.addrs.desc, cfg.addrs.used);
        let r = PackedRing {
            ring,
            mem,
            next: index,
            wrap: cfg.base & BASE_WRAP != 0,
            hdr_len: hdr_len(cfg.features),
            features: cfg.features,
            call: cfg.call.clone(),
            broken: false,
            staged: Vec::with_capacity(usize::from(size)),
            pending: VecDeque::with_capacity(pmd_core::vnet::MAX_SW_SEGS),
            log,
        };
        r.log_device_event();
        Ok(r)
    }

    /// During a migration: logs the device event suppression area (after a write).
    fn log_device_event(&self) {
        if let Some(l) = &self.log {
            l.events(0, EVENT_SIZE);
        }
    }

    /// During a migration: logs the used descriptors staged for this burst (after they
    /// were written). Out of line: a burst without a log pays one test.
    #[cold]
    #[inline(never)]
    fn log_staged(&self, l: &RingLog) {
        for s in &self.staged {
            l.entries(u64::from(s.pos) * DESC_SIZE, DESC_SIZE);
        }
    }

    /// The next position the ring would process with the wrap counter in bit 15
    /// (GET_VRING_BASE).
    pub fn last_avail(&self) -> u16 {
        self.next | if self.wrap { BASE_WRAP } else { 0 }
    }

    /// Whether the ring stopped because the guest's ring made no sense.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    #[inline(always)]
    fn has(&self, f: u64) -> bool {
        self.features & f != 0
    }

    /// Rx interrupts: asks the driver to kick us for its next chain (device event flags
    /// ENABLE), then fences (pairing with the driver's barrier between making a chain
    /// available and reading our flags) and looks again. True if something is waiting:
    /// do not sleep.
    pub fn arm(&self) -> bool {
        if self.broken {
            return false;
        }
        self.ring.set_device_event_flags(EVENT_F_ENABLE);
        self.log_device_event();
        fence(Ordering::SeqCst);
        !self.pending.is_empty() || self.available(self.next, self.wrap)
    }

    /// Back to polling: kicks suppressed again.
    pub fn disarm(&self) {
        self.ring.set_device_event_flags(EVENT_F_DISABLE);
        self.log_device_event();
    }

    /// Whether the chain at (`pos`, `wrap`) is available.
    #[inline(always)]
    fn available(&self, pos: u16, wrap: bool) -> bool {
        is_avail(self.ring.flags_acquire(pos), wrap)
    }

    /// Starts loading the buffers of the next `n` available chains (taking each as one
    /// descriptor); see [`Self::prefetch_buffer`].
    #[inline(always)]
    fn prefetch_burst<const WRITE: bool>(&self, n: usize) {
        let n = n.min(usize::from(self.ring.size())) as u16;
        let (mut pos, mut wrap) = (self.next, self.wrap);
        for _ in 0..n {
            if !self.available(pos, wrap) {
                break;
            }
            self.prefetch_buffer::<WRITE>(pos);
            (pos, wrap) = self.ring.advance(pos, wrap, 1);
        }
    }

    /// How many positions from ours on are available, up to `max` (at most the size):
    /// only the flags are loaded, so the misses on descriptor lines the driver wrote on
    /// another core overlap. Chains made available stay so until we use them, so the
    /// count holds for the burst.
    #[inline(always)]
    fn available_run(&self, max: usize) -> usize {
        let n = max.min(usize::from(self.ring.size()));
        let (mut pos, mut wrap) = (self.next, self.wrap);
        for k in 0..n {
            if !self.available(pos, wrap) {
                return k;
            }
            (pos, wrap) = self.ring.advance(pos, wrap, 1);
        }
        n
    }

    /// Starts loading the first buffer of descriptor `pos`, for reading (`WRITE` false:
    /// our receive) or writing (our transmit), so that cache misses on lines the guest
    /// touched on another core overlap instead of stalling one copy each; see
    /// [`GuestMemory::prefetch_buffer`]. Only a hint: the burst checks everything again.
    #[inline(always)]
    fn prefetch_buffer<const WRITE: bool>(&self, pos: u16) {
        self.mem
            .prefetch_buffer::<WRITE>(self.ring.desc(pos).addr, self.hdr_len);
    }

    /// Burst end of a receive: with IN_ORDER, the staged chains (all of length 0, in
    /// ring order from the burst's first position) become one used descriptor there with
    /// the last chain's id; then [`Self::finish`].
    #[inline(always)]
    fn finish_dequeue(&mut self, old: (u16, bool)) {
        if self.has(VIRTIO_F_IN_ORDER) {
            if let Some(last) = self.staged.last().map(|s| s.id) {
                self.staged.truncate(1);
                self.staged[0].id = last;
            }
        }
        self.finish(old);
    }

    /// Stages the used descriptor of the chain at `pos` (lap `wrap`).
    #[inline(always)]
    fn stage(&mut self, pos: u16, wrap: bool, id: u16, len: u32) {
        // Within capacity: a burst takes at most `size` positions, each chain at least one.
        self.staged.push(Staged { pos, id, len, wrap });
    }

    /// Stops the ring (counted once).
    #[cold]
    fn break_ring(&mut self, errors: &RingErrors) {
        self.broken = true;
        bump(&errors.bad_ring, 1);
    }

    /// Burst end: writes the staged used descriptors (the first one's flags last) and
    /// signals the driver if it wants to know. `old` is where the burst started.
    #[inline(always)]
    fn finish(&mut self, old: (u16, bool)) {
        let Some((first, rest)) = self.staged.split_first() else {
            return;
        };
        for s in rest {
            self.ring.set_used_body(s.pos, s.id, s.len);
            self.ring
                .set_flags_release(s.pos, used_flags(s.wrap, s.len));
        }
        self.ring.set_used_body(first.pos, first.id, first.len);
        self.ring
            .set_flags_release(first.pos, used_flags(first.wrap, first.len));
        if let Some(l) = &self.log {
            self.log_staged(l);
        }
        self.staged.clear();
        if self.call.is_some() {
            // The used descriptors must be visible before the driver's wish is read
            // (the driver's barrier pairs with this one).
            fence(Ordering::SeqCst);
            if self.wants_interrupt(old) {
                self.signal();
            }
        }
    }

    /// Whether the driver wants an interrupt for the positions used from `old` to ours.
    #[inline(always)]
    fn wants_interrupt(&self, old: (u16, bool)) -> bool {
        let (off_wrap, flags) = self.ring.driver_event();
        match flags & 3 {
            EVENT_F_ENABLE => true,
            EVENT_F_DISABLE => false,
            EVENT_F_DESC if self.has(F_EVENT_IDX) => {
                let size = u32::from(self.ring.size());
                let lin = |pos: u16, wrap: bool| {
                    (u32::from(pos) + if wrap { 0 } else { size }) % (2 * size)
                };
                let event = lin(off_wrap & !BASE_WRAP, off_wrap & BASE_WRAP != 0);
                let (o, n) = (lin(old.0, old.1), lin(self.next, self.wrap));
                let dist = |x: u32| (x + 2 * size - o) % (2 * size);
                dist(event) < dist(n)
            }
            _ => true,
        }
    }

    #[cold]
    fn signal(&self) {
        if let Some(fd) = &self.call {
            // A failed write cannot be helped on the data path; the guest polls or
            // times out.
            let _ = pmd_core::unix::eventfd_signal(fd.as_fd());
        }
    }
}
