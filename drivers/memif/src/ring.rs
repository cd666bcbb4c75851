//! A memif ring inside a shared region (`memif.h`: `memif_ring_t`, `memif_desc_t`; DPDK
//! memif.rst "Descriptor format"): `cookie` u32 at 0, `flags` u16 at 4, `head` u16 at 6,
//! `tail` u16 at 64, then `2^log2` 16-byte descriptors from byte 128.
//!
//! `head` and `tail` are free-running 16-bit counters; slot = counter & mask. Whoever
//! produces descriptors on a ring moves one of them, the consumer the other (see
//! `rxtx.rs`). They are accessed as atomics (acquire/release pair with the peer);
//! descriptors and the other header fields with volatile loads and stores. A [`RingPtr`]
//! is created only after checking the whole ring lies inside its region, at an 8-byte
//! aligned offset, and descriptor indices are always masked.

use crate::proto::{DESC_SIZE, RING_FLAGS_OFF, RING_HDR_SIZE, RING_HEAD_OFF, RING_TAIL_OFF};
use crate::shm::Region;
use std::sync::atomic::AtomicU16;

/// One descriptor, as read from or written to a ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Desc {
    /// [`crate::proto::DESC_FLAG_NEXT`] or 0.
    pub flags: u16,
    /// Region holding the buffer.
    pub region: u16,
    /// Data length (or, on a ring the client fills with empty buffers, capacity).
    pub length: u32,
    /// Buffer offset in the region.
    pub offset: u32,
}

/// A bounds-checked view of one ring. Copyable; valid while the region it points into
/// is mapped (its owner keeps the region alive, see `session.rs`).
#[derive(Clone, Copy, Debug)]
pub struct RingPtr {
    base: *mut u8,
    size: u32,
    mask: u16,
}

// SAFETY: only an address; all accesses are atomic/volatile.
unsafe impl Send for RingPtr {}
// SAFETY: as above; shared references only allow those same accesses.
unsafe impl Sync for RingPtr {}

impl RingPtr {
    /// The ring at `offset` in `region` with `2^log2` descriptors, or `None` if it would
    /// not fit, is misaligned, or is larger than 2^15 descriptors.
    pub fn new(region: &Region, offset: u64, log2: u8) -> Option<RingPtr> {
        if log2 > 15 || !offset.is_multiple_of(8) {
            return None;
        }
        let size = 1u32 << log2;
        let bytes = RING_HDR_SIZE as u64 + DESC_SIZE as u64 * size as u64;
        if !region.contains(offset, bytes) {
            return None;
        }
        Some(RingPtr {
            // SAFETY: offset + bytes <= region length, so the pointer stays inside.
            base: unsafe { region.base().add(offset as usize) },
            size,
            mask: (size - 1) as u16,
        })
    }

    /// Number of descriptors.
    #[inline(always)]
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Slot mask (`size - 1`).
    #[inline(always)]
    pub fn mask(&self) -> u16 {
        self.mask
    }

    #[inline(always)]
    fn at<T>(&self, off: usize) -> *mut T {
        // SAFETY: callers pass header offsets < RING_HDR_SIZE or masked descriptor
        // offsets < RING_HDR_SIZE + size * DESC_SIZE, all inside the checked ring.
        unsafe { self.base.add(off) as *mut T }
    }

    /// The ring's `head` counter.
    #[inline(always)]
    pub fn head(&self) -> &AtomicU16 {
        // SAFETY: 2-byte aligned (ring offset is 8-aligned), inside the ring, and only
        // ever accessed atomically by us (the peer uses atomics as well).
        unsafe { AtomicU16::from_ptr(self.at(RING_HEAD_OFF)) }
    }

    /// The ring's `tail` counter.
    #[inline(always)]
    pub fn tail(&self) -> &AtomicU16 {
        // SAFETY: as for `head`.
        unsafe { AtomicU16::from_ptr(self.at(RING_TAIL_OFF)) }
    }

    /// The `cookie` field.
    pub fn cookie(&self) -> u32 {
        // SAFETY: aligned, inside the ring; volatile because the peer may write it.
        unsafe { self.at::<u32>(0).read_volatile() }
    }

    /// Sets the `cookie` field.
    pub fn set_cookie(&self, v: u32) {
        // SAFETY: as for `cookie`.
        unsafe { self.at::<u32>(0).write_volatile(v) }
    }

    /// The `flags` field.
    #[inline(always)]
    pub fn flags(&self) -> u16 {
        // SAFETY: aligned, inside the ring, volatile.
        unsafe { self.at::<u16>(RING_FLAGS_OFF).read_volatile() }
    }

    /// Sets the `flags` field.
    pub fn set_flags(&self, v: u16) {
        // SAFETY: as for `flags`.
        unsafe { self.at::<u16>(RING_FLAGS_OFF).write_volatile(v) }
    }

    #[inline(always)]
    fn desc_off(&self, slot: u16) -> usize {
        RING_HDR_SIZE + (slot & self.mask) as usize * DESC_SIZE
    }

    /// Reads descriptor `slot & mask` (each field once, volatile).
    #[inline(always)]
    pub fn desc(&self, slot: u16) -> Desc {
        let o = self.desc_off(slot);
        // SAFETY: masked descriptor inside the ring, 8-byte aligned; volatile reads of
        // memory the peer may write.
        unsafe {
            Desc {
                flags: self.at::<u16>(o).read_volatile(),
                region: self.at::<u16>(o + 2).read_volatile(),
                length: self.at::<u32>(o + 4).read_volatile(),
                offset: self.at::<u32>(o + 8).read_volatile(),
            }
        }
    }

    /// Writes descriptor `slot & mask` (metadata is left alone).
    #[inline(always)]
    pub fn set_desc(&self, slot: u16, d: Desc) {
        let o = self.desc_off(slot);
        // SAFETY: as in `desc`.
        unsafe {
            self.at::<u16>(o).write_volatile(d.flags);
            self.at::<u16>(o + 2).write_volatile(d.region);
            self.at::<u32>(o + 4).write_volatile(d.length);
            self.at::<u32>(o + 8).write_volatile(d.offset);
        }
    }

    /// Writes only the flags and length of descriptor `slot & mask` (what a server
    /// filling the client's buffers may change).
    #[inline(always)]
    pub fn set_desc_len(&self, slot: u16, flags: u16, length: u32) {
        let o = self.desc_off(slot);
        // SAFETY: as in `desc`.
        unsafe {
            self.at::<u16>(o).write_volatile(flags);
            self.at::<u32>(o + 4).write_volatile(length);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn bounds_and_layout() {
        let r = Region::create("ring-test", 8192, false).unwrap();
        assert!(RingPtr::new(&r, 0, 10).is_none(), "16 KiB ring in 8 KiB");
        assert!(RingPtr::new(&r, 4, 2).is_none(), "misaligned");
        assert!(
            RingPtr::new(&r, 8192 - 128 - 64 + 8, 2).is_none(),
            "runs past the end"
        );
        let ring = RingPtr::new(&r, 8192 - 128 - 64, 2).unwrap();
        ring.set_cookie(crate::proto::COOKIE);
        ring.head().store(5, Ordering::Relaxed);
        ring.tail().store(3, Ordering::Relaxed);
        ring.set_desc(
            6,
            Desc {
                flags: 1,
                region: 2,
                length: 3,
                offset: 4,
            },
        );
        let d = ring.desc(2); // 6 & 3
        assert_eq!((d.flags, d.region, d.length, d.offset), (1, 2, 3, 4));
        // SAFETY: reading back our own test mapping.
        let raw = unsafe { std::slice::from_raw_parts(r.base().add(8192 - 192), 192) };
        assert_eq!(&raw[0..4], &crate::proto::COOKIE.to_le_bytes());
        assert_eq!(&raw[6..8], &[5, 0]);
        assert_eq!(&raw[64..66], &[3, 0]);
        assert_eq!(
            &raw[128 + 32..128 + 44],
            &[1, 0, 2, 0, 3, 0, 0, 0, 4, 0, 0, 0]
        );
    }
}
