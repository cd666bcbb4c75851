//! The device side of a split virtqueue (virtio 1.1 §2.6): [`SplitRing`], used by the
//! one queue thread that runs the ring.
//!
//! - Guest to host ([`SplitRing::dequeue`], our receive): chains of device-readable
//!   buffers, each a virtio-net header and a frame, copied into mbufs.
//! - Host to guest ([`SplitRing::enqueue`], our transmit): packets copied into chains of
//!   device-writable buffers behind a virtio-net header.
//!
//! Everything in the ring is written by an untrusted guest. Per burst the available
//! index is read once (acquire) and must not run more than the ring size ahead of us,
//! else the ring is broken: counted (`bad_ring`) and left alone until the control plane
//! starts it again; the same for a head beyond the descriptor table. A chain is walked
//! with every `next` checked, at most `size` descriptors (a loop ends there), buffers of
//! the right direction only, lengths summed in u64 and bounded, and every buffer
//! translated with its length through the memory table ([`GuestMemory::gpa`]). A bad
//! chain costs only its packet: it is counted ([`RingErrors`]) and goes back to the guest
//! like every other chain. The used index is published once per burst (release).
//!
//! Notifications: we poll, so the guest is asked not to kick us (`used.flags`
//! NO_NOTIFY, or with EVENT_IDX an `avail_event` one behind what we consumed, which a
//! driver following the rule never crosses). After a burst that used buffers the call
//! eventfd is signalled only if the guest wants it: with EVENT_IDX when the new used index
//! passed its `used_event`, otherwise unless `avail.flags` has NO_INTERRUPT.
//!
//! During a migration (a dirty log in the configuration, [`crate::dirty`]) every buffer
//! written and the used ring's written parts are logged; the transmit burst then runs a
//! copy of its code with the logging compiled in, so the one without costs nothing.
//!
//! The hot path allocates nothing (besides mbufs), takes no lock and makes no system
//! call but the call eventfd write. With INDIRECT_DESC a chain may end in a table of
//! descriptors (`indirect`); without it such a descriptor is a bad chain.

mod guest;
mod rx;
mod tx;

#[cfg(test)]
pub(crate) mod tests;

pub use crate::burst::{RingSetupError, RxCtx, TxCtx, MAX_RING_SIZE, MAX_RX_FRAME};

use crate::burst::{area, bump, hdr_len, F_EVENT_IDX, F_INDIRECT_DESC};
use crate::dirty::RingLog;
use crate::mem::GuestMemory;
use crate::vring::{RingErrors, VringConfig};
use guest::{GuestRing, DESC_SIZE, USED_F_NO_NOTIFY};
use pmd_core::mbuf::Mbuf;
use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

/// Bytes of the used ring's `flags` and `idx`, before its entries.
const RING_HDR: u64 = 4;
/// Bytes of one used ring entry.
const USED_ELEM: u64 = 8;

/// How many chains ahead of the one being worked on [`SplitRing::prefetch_ahead`] looks.
const AHEAD: u16 = 4;

/// The device's side of one split virtqueue.
pub struct SplitRing {
    ring: GuestRing,
    /// Keeps the memory the ring and its buffers live in mapped.
    mem: Arc<GuestMemory>,
    /// Next available entry to take; also the used index to publish (every chain taken
    /// gets exactly one used element, in order).
    next: u16,
    /// Bytes of the virtio-net header: 12 with VERSION_1 or MRG_RXBUF, else 10.
    hdr_len: usize,
    features: u64,
    call: Option<Arc<OwnedFd>>,
    /// Stopped: the guest's indexes made no sense.
    broken: bool,
    /// Started from the used index rather than the given base; counted at the first burst.
    resumed: bool,
    /// Segments of a received super-frame cut in software that did not fit the burst
    /// (capacity [`pmd_core::vnet::MAX_SW_SEGS`], allocated once).
    pending: VecDeque<Mbuf>,
    /// The dirty log and the used ring's guest physical address, during a migration.
    log: Option<RingLog>,
}

// SAFETY: the raw pointers in `ring` point into the memory table `mem` keeps mapped; the
// ring is used by one thread at a time (`&mut self` for every burst).
unsafe impl Send for SplitRing {}

impl std::fmt::Debug for SplitRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitRing")
            .field("size", &self.ring.size())
            .field("next", &self.next)
            .field("broken", &self.broken)
            .finish()
    }
}

impl SplitRing {
    /// Sets up the ring `cfg` describes: the size must be a power of two up to 32768 and
    /// the three areas must translate with their full lengths and alignment. Starts at
    /// `cfg.base`, unless the used ring's index differs (a front end that resumed after
    /// a reconnect): then at the used index, and `RingErrors::resumed` counts it at the
    /// first burst.
    pub fn new(cfg: &VringConfig) -> Result<SplitRing, RingSetupError> {
        let size = cfg.size;
        if !size.is_power_of_two() || size > MAX_RING_SIZE {
            return Err(RingSetupError::Size(size));
        }
        let n = u64::from(size);
        let mem = cfg.mem.clone();
        let desc = area(&mem, "desc", cfg.addrs.desc, DESC_SIZE * n, 16)?;
        let avail = area(&mem, "avail", cfg.addrs.avail, 6 + 2 * n, 2)?;
        let used = area(&mem, "used", cfg.addrs.used, 6 + 8 * n, 4)?;
        let indirect = cfg.features & F_INDIRECT_DESC != 0;
        // SAFETY: each area was translated with its full length inside one region of
        // `mem` (kept alive by the ring) and is aligned; `size` is a power of two.
        let ring = unsafe { GuestRing::new(desc, avail, used, size, indirect) };
        let used_idx = ring.used_idx();
        let resumed = used_idx != cfg.base;
        let hdr_len = hdr_len(cfg.features);
        let log = RingLog::new(cfg.log.as_ref(), &mem, cfg.addrs.used, cfg.addrs.used);
        let r = SplitRing {
            ring,
            mem,
            next: used_idx,
            hdr_len,
            features: cfg.features,
            call: cfg.call.clone(),
            broken: false,
            resumed,
            pending: VecDeque::with_capacity(pmd_core::vnet::MAX_SW_SEGS),
            log,
        };
        r.suppress_kicks();
        r.log_used_fields();
        Ok(r)
    }

    /// The next available index the ring would process (GET_VRING_BASE).
    pub fn last_avail(&self) -> u16 {
        self.next
    }

    /// Whether the ring stopped because the guest's indexes made no sense.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    #[inline(always)]
    fn has(&self, f: u64) -> bool {
        self.features & f != 0
    }

    /// Asks the guest not to kick us: NO_NOTIFY, or an `avail_event` one behind what we
    /// consumed (EVENT_IDX; the driver kicks only when its index passes it).
    #[inline(always)]
    fn suppress_kicks(&self) {
        if self.has(F_EVENT_IDX) {
            self.ring.set_avail_event(self.next.wrapping_sub(1));
        } else {
            self.ring.set_used_flags(USED_F_NO_NOTIFY);
        }
    }

    /// Rx interrupts: asks the guest to kick us for the next buffer it makes available
    /// (clears NO_NOTIFY, or with EVENT_IDX sets `avail_event` to the next index we
    /// take), then fences (pairing with the driver's barrier between publishing its index
    /// and reading ours) and reads the available index again. True if something is
    /// waiting: do not sleep.
    pub fn arm(&self) -> bool {
        if self.broken {
            return false;
        }
        if self.has(F_EVENT_IDX) {
            self.ring.set_avail_event(self.next);
        } else {
            self.ring.set_used_flags(0);
        }
        self.log_used_fields();
        fence(Ordering::SeqCst);
        !self.pending.is_empty() || self.ring.avail_idx() != self.next
    }

    /// Back to polling: kicks suppressed again.
    pub fn disarm(&self) {
        self.suppress_kicks();
        self.log_used_fields();
    }

    /// During a migration: logs the used ring's fields besides its entries (`flags`,
    /// `idx`, and `avail_event` after the entries).
    #[inline(always)]
    fn log_used_fields(&self) {
        if let Some(l) = &self.log {
            l.entries(0, RING_HDR);
            l.entries(RING_HDR + USED_ELEM * u64::from(self.ring.size()), 2);
        }
    }

    /// During a migration: logs the used ring's entries `[old, self.next)` and its other
    /// fields (a burst's end). Out of line: a burst without a log pays one test.
    #[cold]
    #[inline(never)]
    fn log_used(&self, l: &RingLog, old: u16) {
        let size = self.ring.size();
        let mut n = self.next.wrapping_sub(old).min(size);
        let mut slot = old & (size - 1);
        while n > 0 {
            // Up to the end of the entries, then from the first.
            let k = n.min(size - slot);
            l.entries(
                RING_HDR + USED_ELEM * u64::from(slot),
                USED_ELEM * u64::from(k),
            );
            n -= k;
            slot = 0;
        }
        self.log_used_fields();
    }

    /// Burst start: counts a resume once; the available index if the ring runs and it
    /// moved by at most the ring size (else the ring is broken and counted).
    #[inline(always)]
    fn begin(&mut self, errors: &RingErrors) -> Option<u16> {
        if self.resumed {
            self.resumed = false;
            bump(&errors.resumed, 1);
        }
        if self.broken {
            return None;
        }
        let avail = self.ring.avail_idx();
        if avail.wrapping_sub(self.next) > self.ring.size() {
            self.break_ring(errors);
            return None;
        }
        Some(avail)
    }

    /// Our transmit: asks for the buffer [`AHEAD`] chains on (the packet that many on,
    /// when each takes one chain) for writing, so that its stores do not wait for the
    /// guest's core to give the lines up; see [`Self::prefetch_chain`].
    #[inline(always)]
    fn prefetch_ahead(&self, avail: u16) {
        if avail.wrapping_sub(self.next) > AHEAD {
            self.prefetch_chain::<true>(self.next.wrapping_add(AHEAD));
        }
    }

    /// Starts loading the first buffer of the chain in available entry `idx`, for
    /// reading (`WRITE` false: our receive) or writing (our transmit); see
    /// [`GuestMemory::prefetch_buffer`]. Only a hint: a chain whose head is beyond the
    /// ring is skipped; the burst checks everything again.
    #[inline(always)]
    fn prefetch_chain<const WRITE: bool>(&self, idx: u16) {
        let head = self.ring.avail_head(idx);
        if head < self.ring.size() {
            self.mem
                .prefetch_buffer::<WRITE>(self.ring.desc(head).addr, self.hdr_len);
        }
    }

    /// Stops the ring (counted once).
    #[cold]
    fn break_ring(&mut self, errors: &RingErrors) {
        self.broken = true;
        bump(&errors.bad_ring, 1);
    }

    /// Burst end: publishes the used index if chains were used since `old`, keeps kicks
    /// suppressed and signals the guest if it wants to know.
    #[inline(always)]
    fn finish(&mut self, old: u16) {
        if self.next == old {
            return;
        }
        self.ring.publish_used(self.next);
        if self.has(F_EVENT_IDX) {
            // `avail_event` follows what we consumed; NO_NOTIFY (no EVENT_IDX) was set
            // when the ring started and only we write `used.flags`.
            self.suppress_kicks();
        }
        if let Some(l) = &self.log {
            // After the writes: a page the front end copies between a mark and its
            // write would miss the write.
            self.log_used(l, old);
        }
        if self.call.is_some() {
            // The used index must be visible before the guest's wish is read (the
            // guest's barrier pairs with this one).
            fence(Ordering::SeqCst);
            if self.wants_interrupt(old, self.next) {
                self.signal();
            }
        }
    }

    /// Whether the guest wants an interrupt for used entries `[old, new)`.
    #[inline(always)]
    fn wants_interrupt(&self, old: u16, new: u16) -> bool {
        if self.has(F_EVENT_IDX) {
            need_event(self.ring.used_event(), new, old)
        } else {
            self.ring.avail_flags() & guest::AVAIL_F_NO_INTERRUPT == 0
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

/// The spec's `vring_need_event`: whether moving the index from `old` to `new` passed
/// `event` (the entry after which the other side asked to be told).
#[inline(always)]
fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}
