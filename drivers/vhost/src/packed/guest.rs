//! Raw access to one packed virtqueue's three areas in guest memory (virtio 1.2 §2.8):
//! the descriptor ring (16 bytes an entry: `addr` u64, `len` u32, `id` u16, `flags` u16)
//! and the two event suppression structures (`off_wrap` u16, `flags` u16): the driver's,
//! which we read, and the device's, which we write. Little-endian fields.
//!
//! The guest writes these areas concurrently, so every access is a volatile or atomic
//! access through a raw pointer, never a Rust reference; every position is below the
//! ring's size, and the areas were translated with their full lengths and checked for
//! alignment before a [`PackedGuestRing`] was made ([`super::PackedRing::new`]).

use crate::burst::{ChainFault, ChainSink, Step};
use crate::indirect::{Layout, Table};
use crate::mem::GuestMemory;
use std::sync::atomic::{AtomicU16, Ordering};

// NEXT: the chain continues in the next position of the ring; WRITE: device-writable
// (in a used descriptor: the device wrote to it); INDIRECT: a table of descriptors.
pub(super) use crate::indirect::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};
/// Descriptor flag: available, compared with the driver's wrap counter.
pub(super) const DESC_F_AVAIL: u16 = 1 << 7;
/// Descriptor flag: used, compared with the wrap counter.
pub(super) const DESC_F_USED: u16 = 1 << 15;
/// Event suppression `flags`: notifications wanted.
pub(super) const EVENT_F_ENABLE: u16 = 0;
/// Event suppression `flags`: no notifications wanted.
pub(super) const EVENT_F_DISABLE: u16 = 1;
/// Event suppression `flags`: a notification when the position in `off_wrap` is used
/// (only with EVENT_IDX).
pub(super) const EVENT_F_DESC: u16 = 2;

/// Bytes of one descriptor.
pub(super) const DESC_SIZE: u64 = 16;
/// Bytes of an event suppression structure.
pub(super) const EVENT_SIZE: u64 = 4;

/// One descriptor, copied out of the ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Desc {
    /// Guest physical address of the buffer.
    pub addr: u64,
    /// Bytes of the buffer.
    pub len: u32,
    /// Buffer id (the driver's; read from a chain's last descriptor).
    pub id: u16,
    /// `DESC_F_*`.
    pub flags: u16,
}

/// Whether `flags` mark a descriptor available in the lap of wrap counter `wrap`:
/// AVAIL equal to it and USED different.
#[inline(always)]
pub(super) fn is_avail(flags: u16, wrap: bool) -> bool {
    (flags & DESC_F_AVAIL != 0) == wrap && (flags & DESC_F_USED != 0) != wrap
}

/// The flags of a used descriptor written in the lap of wrap counter `wrap`: AVAIL and
/// USED both equal to it, WRITE if the device wrote bytes.
#[inline(always)]
pub(super) fn used_flags(wrap: bool, len: u32) -> u16 {
    let w = if wrap { DESC_F_AVAIL | DESC_F_USED } else { 0 };
    w | if len > 0 { DESC_F_WRITE } else { 0 }
}

/// How a chain ended, walked from its first position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Walked {
    /// Ring positions it takes (1..=size).
    pub descs: u16,
    /// The buffer id from its last descriptor.
    pub id: u16,
    /// Why its packet is refused, if it is.
    pub fault: Option<ChainFault>,
}

/// The three areas of one packed ring, translated to host addresses.
#[derive(Debug)]
pub(super) struct PackedGuestRing {
    desc: *mut u8,
    driver: *mut u8,
    device: *mut u8,
    size: u16,
    /// INDIRECT_DESC was negotiated: a chain may end in a table.
    indirect: bool,
}

impl PackedGuestRing {
    /// The ring whose areas start at these host addresses.
    ///
    /// # Safety
    /// `desc` must be valid for `16 * size` bytes aligned to 16, `driver` and `device`
    /// for 4 bytes aligned to 4, for as long as the value lives (the caller keeps the
    /// memory table alive), and `size` at least 1. `indirect`: INDIRECT_DESC was
    /// negotiated.
    pub unsafe fn new(
        desc: *mut u8,
        driver: *mut u8,
        device: *mut u8,
        size: u16,
        indirect: bool,
    ) -> Self {
        debug_assert!(size > 0);
        PackedGuestRing {
            desc,
            driver,
            device,
            size,
            indirect,
        }
    }

    /// Entries.
    #[inline(always)]
    pub fn size(&self) -> u16 {
        self.size
    }

    /// INDIRECT_DESC was negotiated: walk with `TABLES` true.
    #[inline(always)]
    pub fn tables(&self) -> bool {
        self.indirect
    }

    /// The position after `pos` and its wrap counter.
    #[inline(always)]
    pub fn advance(&self, pos: u16, wrap: bool, n: u16) -> (u16, bool) {
        let p = u32::from(pos) + u32::from(n);
        let s = u32::from(self.size);
        if p >= s {
            ((p - s) as u16, !wrap)
        } else {
            (p as u16, wrap)
        }
    }

    /// Host address of descriptor `pos`'s first byte (`pos < size`, checked).
    #[inline(always)]
    fn at(&self, pos: u16) -> *mut u8 {
        // Callers pass positions below the size; the clamp keeps even a bug in bounds.
        let i = usize::from(pos.min(self.size - 1));
        // SAFETY: i < size: the 16 bytes lie inside the 16 * size-byte ring.
        unsafe { self.desc.add(i * DESC_SIZE as usize) }
    }

    /// The flags of descriptor `pos`, with acquire ordering: the rest of the chain the
    /// driver wrote before them is visible after this load.
    #[inline(always)]
    pub fn flags_acquire(&self, pos: u16) -> u16 {
        // SAFETY: offset 14 of a 16-aligned descriptor inside the ring: 2-aligned; the
        // driver stores it atomically; only loaded here.
        u16::from_le(
            unsafe { AtomicU16::from_ptr(self.at(pos).add(14).cast()) }.load(Ordering::Acquire),
        )
    }

    /// Descriptor `pos`, copied out with two volatile loads.
    #[inline(always)]
    pub fn desc(&self, pos: u16) -> Desc {
        // SAFETY: the 16 bytes at `at(pos)` lie inside the ring, 8-aligned; volatile
        // (the guest may write them while we read).
        let (a, b) = unsafe {
            let p = self.at(pos).cast::<u64>();
            (p.read_volatile(), p.add(1).read_volatile())
        };
        let b = u64::from_le(b);
        Desc {
            addr: u64::from_le(a),
            len: b as u32,
            id: (b >> 32) as u16,
            flags: (b >> 48) as u16,
        }
    }

    /// Writes the `id` and `len` of a used descriptor at `pos` (not yet its flags).
    #[inline(always)]
    pub fn set_used_body(&self, pos: u16, id: u16, len: u32) {
        // SAFETY: offsets 8 (u32) and 12 (u16) of a descriptor inside the ring, aligned;
        // volatile.
        unsafe {
            let p = self.at(pos);
            p.add(8).cast::<u32>().write_volatile(len.to_le());
            p.add(12).cast::<u16>().write_volatile(id.to_le());
        }
    }

    /// Stores the flags of descriptor `pos` with release ordering: the used
    /// descriptor's body (and every buffer written before) is visible to a driver that
    /// loads them.
    #[inline(always)]
    pub fn set_flags_release(&self, pos: u16, flags: u16) {
        // SAFETY: offset 14 of a descriptor inside the ring, 2-aligned; stored atomically.
        unsafe { AtomicU16::from_ptr(self.at(pos).add(14).cast()) }
            .store(flags.to_le(), Ordering::Release)
    }

    /// The driver's event suppression structure: (`off_wrap`, `flags`).
    #[inline(always)]
    pub fn driver_event(&self) -> (u16, u16) {
        // SAFETY: 4 bytes, 4-aligned, inside the translated area; volatile.
        unsafe {
            let p = self.driver.cast::<u16>();
            (
                u16::from_le(p.read_volatile()),
                u16::from_le(p.add(1).read_volatile()),
            )
        }
    }

    /// Sets the device's event suppression `flags`.
    pub fn set_device_event_flags(&self, flags: u16) {
        // SAFETY: offset 2 of the 4-byte, 4-aligned area; volatile.
        unsafe {
            self.device
                .cast::<u16>()
                .add(1)
                .write_volatile(flags.to_le())
        }
    }

    /// Walks the chain whose first descriptor is at `pos` (available, checked by the
    /// caller) through consecutive positions, wrapping at the end of the ring: at most
    /// `size` descriptors. Until the first fault, or until `f` says [`Step::Stop`], each
    /// descriptor must be device-writable if `writable` else device-readable (one with
    /// the INDIRECT flag, which must end the chain, stands for its [`Table`]'s buffers),
    /// the lengths are summed (u64) up to `limit`, and each buffer is translated with
    /// its length through `mem` and handed to `f` ([`ChainSink::take`]).
    /// After that the rest of the chain is only followed to its end, whose `id` must be
    /// below the size. Each descriptor is read once.
    ///
    /// `None` if no descriptor of the `size` ends the chain: the ring makes no sense.
    #[inline(always)]
    pub fn walk<const TABLES: bool>(
        &self,
        mem: &GuestMemory,
        pos: u16,
        writable: bool,
        limit: u64,
        f: &mut impl ChainSink,
    ) -> Option<Walked> {
        let mut i = pos;
        let mut total = 0u64;
        let mut fault = None;
        let mut feeding = true;
        for n in 1..=self.size {
            let d = self.desc(i);
            if feeding && fault.is_none() {
                if d.flags & DESC_F_INDIRECT != 0 {
                    // A table ends the chain (never with NEXT); its own WRITE flag is
                    // ignored, its id is the chain's.
                    // With `TABLES` false (not negotiated) none of the table code is
                    // compiled in (see the split ring's walker).
                    let fed = if !TABLES || d.flags & DESC_F_NEXT != 0 {
                        Err(ChainFault::Chain)
                    } else {
                        Table::new(mem, Layout::Packed, d.addr, d.len, self.size)
                            .and_then(|t| feed_table(mem, &t, limit, &mut total, f))
                    };
                    match fed {
                        Ok(step) => feeding = step == Step::Continue,
                        Err(e) => fault = Some(e),
                    }
                } else if (d.flags & DESC_F_WRITE != 0) != writable {
                    fault = Some(ChainFault::Chain);
                } else {
                    total += u64::from(d.len);
                    if total > limit {
                        fault = Some(ChainFault::TooLong);
                    } else {
                        match mem.gpa(d.addr, u64::from(d.len)) {
                            None => fault = Some(ChainFault::Addr),
                            Some(p) => {
                                // SAFETY: translated with its length; the memory table
                                // stays mapped for the burst.
                                let step = unsafe { f.take(p, d.len as usize) };
                                feeding = step == Step::Continue;
                            }
                        }
                    }
                }
            }
            if d.flags & DESC_F_NEXT == 0 {
                if fault.is_none() && d.id >= self.size {
                    fault = Some(ChainFault::Chain);
                }
                return Some(Walked {
                    descs: n,
                    id: d.id,
                    fault,
                });
            }
            i = self.advance(i, false, 1).0;
        }
        None
    }
}

/// The buffers of packed indirect table `t`, in order, to `f` (lengths summed on in
/// `total` up to `limit`); whether `f` wants more. Entry flags are not checked
/// ([`Layout::Packed`]). Out of line: the ring's own loop stays as small as it was
/// without tables.
#[inline(never)]
fn feed_table(
    mem: &GuestMemory,
    t: &Table,
    limit: u64,
    total: &mut u64,
    f: &mut impl ChainSink,
) -> Result<Step, ChainFault> {
    for k in 0..t.count() {
        let e = t.entry(k).ok_or(ChainFault::Chain)?;
        *total += u64::from(e.len);
        if *total > limit {
            return Err(ChainFault::TooLong);
        }
        let p = mem.gpa(e.addr, u64::from(e.len)).ok_or(ChainFault::Addr)?;
        // SAFETY: translated with its length; the memory table stays mapped for the
        // burst.
        if unsafe { f.take(p, e.len as usize) } == Step::Stop {
            return Ok(Step::Stop);
        }
    }
    Ok(Step::Continue)
}
