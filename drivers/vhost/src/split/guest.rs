//! Raw access to one split virtqueue's three areas in guest memory (virtio 1.1 §2.6):
//! the descriptor table (16 bytes an entry: `addr` u64, `len` u32, `flags` u16, `next`
//! u16), the available ring (`flags`, `idx`, `ring[size]`, `used_event`, all u16) and the
//! used ring (`flags` u16, `idx` u16, `ring[size]` of `{id: u32, len: u32}`,
//! `avail_event` u16); little-endian fields.
//!
//! The guest writes these areas concurrently, so every access is a volatile or atomic
//! access through a raw pointer, never a Rust reference; every index is masked to the
//! ring, and the areas were translated with their full lengths and checked for alignment
//! before a [`GuestRing`] was made ([`super::SplitRing::new`]).

use crate::burst::{ChainFault, ChainSink, Step};
use crate::indirect::{Layout, Table};
use crate::mem::GuestMemory;
use std::sync::atomic::{AtomicU16, Ordering};

pub(super) use crate::indirect::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};
/// `avail.flags`: the driver asks not to be interrupted (without EVENT_IDX).
pub(super) const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// `used.flags`: the device asks not to be notified (without EVENT_IDX).
pub(super) const USED_F_NO_NOTIFY: u16 = 1;

/// Bytes of one descriptor.
pub(super) const DESC_SIZE: u64 = 16;
/// Bytes of one used element.
const USED_ELEM_SIZE: usize = 8;
/// Offset of the entries of the available and used rings (after `flags` and `idx`).
const RING_OFF: usize = 4;

/// One descriptor, copied out of the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Desc {
    /// Guest physical address of the buffer.
    pub addr: u64,
    /// Bytes of the buffer.
    pub len: u32,
    /// `DESC_F_*`.
    pub flags: u16,
    /// Next descriptor of the chain (with [`DESC_F_NEXT`]).
    pub next: u16,
}

/// The three areas of one split ring, translated to host addresses.
#[derive(Debug)]
pub(super) struct GuestRing {
    desc: *mut u8,
    avail: *mut u8,
    used: *mut u8,
    size: u16,
    /// INDIRECT_DESC was negotiated: a chain may end in a table.
    indirect: bool,
}

impl GuestRing {
    /// The ring whose areas start at these host addresses.
    ///
    /// # Safety
    /// `desc` must be valid for `16 * size` bytes aligned to 16, `avail` for
    /// `6 + 2 * size` bytes aligned to 2, `used` for `6 + 8 * size` bytes aligned to 4,
    /// for as long as the value lives (the caller keeps the memory table alive), and
    /// `size` a power of two.
    /// `indirect`: INDIRECT_DESC was negotiated.
    pub unsafe fn new(
        desc: *mut u8,
        avail: *mut u8,
        used: *mut u8,
        size: u16,
        indirect: bool,
    ) -> GuestRing {
        debug_assert!(size.is_power_of_two());
        GuestRing {
            desc,
            avail,
            used,
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

    #[inline(always)]
    fn slot(&self, i: u16) -> usize {
        usize::from(i & (self.size - 1))
    }

    /// `avail.idx`, with acquire ordering: entries and descriptors the driver wrote
    /// before it are visible after this load.
    #[inline(always)]
    pub fn avail_idx(&self) -> u16 {
        // SAFETY: 2-aligned and inside the available ring (offset 2 of >= 6 bytes); the
        // driver updates it with atomic stores; only loaded here.
        u16::from_le(
            unsafe { AtomicU16::from_ptr(self.avail.add(2).cast()) }.load(Ordering::Acquire),
        )
    }

    /// `avail.flags`.
    #[inline(always)]
    pub fn avail_flags(&self) -> u16 {
        // SAFETY: 2-aligned, inside the available ring; volatile (the guest writes it).
        u16::from_le(unsafe { self.avail.cast::<u16>().read_volatile() })
    }

    /// The head the available ring holds at position `i` (masked).
    #[inline(always)]
    pub fn avail_head(&self, i: u16) -> u16 {
        // SAFETY: slot < size, so 4 + 2 * slot + 2 <= 6 + 2 * size; 2-aligned; volatile.
        u16::from_le(unsafe {
            self.avail
                .add(RING_OFF + 2 * self.slot(i))
                .cast::<u16>()
                .read_volatile()
        })
    }

    /// `used_event` (after the available ring's entries; EVENT_IDX).
    #[inline(always)]
    pub fn used_event(&self) -> u16 {
        // SAFETY: offset 4 + 2 * size, the last two of the 6 + 2 * size bytes; 2-aligned.
        u16::from_le(unsafe {
            self.avail
                .add(RING_OFF + 2 * usize::from(self.size))
                .cast::<u16>()
                .read_volatile()
        })
    }

    /// Starts loading descriptor `i`'s line (masked). Only a hint.
    #[inline(always)]
    pub fn prefetch_desc(&self, i: u16) {
        // In bounds: slot < size, inside the 16 * size-byte table.
        pmd_core::prefetch::read(self.desc.wrapping_add(self.slot(i) * DESC_SIZE as usize));
    }

    /// Descriptor `i` (masked), copied out with two volatile loads.
    #[inline(always)]
    pub fn desc(&self, i: u16) -> Desc {
        // SAFETY: slot < size, so the 16 bytes lie inside the 16 * size-byte table, which
        // is 16-aligned; volatile (the guest may write it while we read).
        let (a, b) = unsafe {
            let p = self
                .desc
                .add(self.slot(i) * DESC_SIZE as usize)
                .cast::<u64>();
            (p.read_volatile(), p.add(1).read_volatile())
        };
        let b = u64::from_le(b);
        Desc {
            addr: u64::from_le(a),
            len: b as u32,
            flags: (b >> 32) as u16,
            next: (b >> 48) as u16,
        }
    }

    /// `used.idx` as the guest's memory holds it (read once, when the ring starts).
    pub fn used_idx(&self) -> u16 {
        // SAFETY: 2-aligned, inside the used ring; only we write it, atomically.
        u16::from_le(
            unsafe { AtomicU16::from_ptr(self.used.add(2).cast()) }.load(Ordering::Acquire),
        )
    }

    /// Writes used element `i` (masked): chain `id`, `len` bytes written.
    #[inline(always)]
    pub fn set_used_elem(&self, i: u16, id: u16, len: u32) {
        // SAFETY: slot < size: the 8 bytes lie inside the used ring's entries; 4-aligned
        // (the ring is, and 4 + 8 * slot is); volatile.
        unsafe {
            let p = self
                .used
                .add(RING_OFF + USED_ELEM_SIZE * self.slot(i))
                .cast::<u32>();
            p.write_volatile(u32::from(id).to_le());
            p.add(1).write_volatile(len.to_le());
        }
    }

    /// Rewrites the length of used element `i` (masked).
    pub fn set_used_len(&self, i: u16, len: u32) {
        // SAFETY: as for `set_used_elem`.
        unsafe {
            self.used
                .add(RING_OFF + USED_ELEM_SIZE * self.slot(i) + 4)
                .cast::<u32>()
                .write_volatile(len.to_le())
        }
    }

    /// Publishes `used.idx` with release ordering: the elements written before it are
    /// visible to a driver that loads it.
    #[inline(always)]
    pub fn publish_used(&self, idx: u16) {
        // SAFETY: 2-aligned, inside the used ring; stored atomically.
        unsafe { AtomicU16::from_ptr(self.used.add(2).cast()) }
            .store(idx.to_le(), Ordering::Release)
    }

    /// Sets `used.flags`.
    pub fn set_used_flags(&self, flags: u16) {
        // SAFETY: 2-aligned (the ring is 4-aligned), inside the used ring; volatile.
        unsafe { self.used.cast::<u16>().write_volatile(flags.to_le()) }
    }

    /// Sets `avail_event` (after the used ring's entries; EVENT_IDX).
    #[inline(always)]
    pub fn set_avail_event(&self, v: u16) {
        // SAFETY: offset 4 + 8 * size, the last two of the 6 + 8 * size bytes; 2-aligned.
        unsafe {
            self.used
                .add(RING_OFF + USED_ELEM_SIZE * usize::from(self.size))
                .cast::<u16>()
                .write_volatile(v.to_le())
        }
    }

    /// Walks the chain from `head` (< size, checked by the caller): at most `size`
    /// descriptors, each `next` checked against the table, an indirect table only as the
    /// last descriptor and with INDIRECT_DESC negotiated (its entries then followed the
    /// same way, inside the [`Table`]: [`walk_table`]), every buffer device-writable if
    /// `writable` else device-readable, their lengths summed (u64) up to `limit`, each
    /// buffer translated with its length through `mem`, and handed to `f`
    /// ([`ChainSink::take`]) in order until it says [`Step::Stop`] or the chain ends.
    /// Each descriptor is read once.
    #[inline(always)]
    pub fn walk<const TABLES: bool>(
        &self,
        mem: &GuestMemory,
        head: u16,
        writable: bool,
        limit: u64,
        f: &mut impl ChainSink,
    ) -> Result<(), ChainFault> {
        let mut idx = head;
        let mut total = 0u64;
        // A descriptor naming an indirect table leaves the loop and is taken up after
        // it. With `TABLES` false (INDIRECT_DESC not negotiated) it is a bad chain and
        // none of the table code is compiled in: its mere presence (a call, even cold
        // and after the loop) costs the 64-byte transmit burst a fifth of its rate.
        let mut table = None;
        for _ in 0..self.size {
            let d = self.desc(idx);
            if d.flags & DESC_F_INDIRECT != 0 {
                if !TABLES {
                    return Err(ChainFault::Chain);
                }
                table = Some(d);
                break;
            }
            if (d.flags & DESC_F_WRITE != 0) != writable {
                return Err(ChainFault::Chain);
            }
            total += u64::from(d.len);
            if total > limit {
                return Err(ChainFault::TooLong);
            }
            let p = mem.gpa(d.addr, u64::from(d.len)).ok_or(ChainFault::Addr)?;
            // SAFETY: `p` was translated with its length; the memory table stays mapped
            // for the burst.
            if unsafe { f.take(p, d.len as usize) } == Step::Stop || d.flags & DESC_F_NEXT == 0 {
                return Ok(());
            }
            if d.next >= self.size {
                return Err(ChainFault::Chain);
            }
            idx = d.next;
        }
        match table {
            Some(d) => self.walk_indirect(mem, d, writable, limit, total, f),
            // More descriptors than the table holds: the chain loops.
            None => Err(ChainFault::Chain),
        }
    }

    /// The rest of a chain from descriptor `d`, which names an indirect table: the table
    /// must be allowed (INDIRECT_DESC negotiated) and end the chain (no NEXT; its own
    /// WRITE flag is ignored). Cold and out of line.
    #[cold]
    #[inline(never)]
    fn walk_indirect(
        &self,
        mem: &GuestMemory,
        d: Desc,
        writable: bool,
        limit: u64,
        total: u64,
        f: &mut impl ChainSink,
    ) -> Result<(), ChainFault> {
        if d.flags & DESC_F_NEXT != 0 {
            return Err(ChainFault::Chain);
        }
        let t = Table::new(mem, Layout::Split, d.addr, d.len, self.size)?;
        walk_table(mem, &t, writable, limit, total, f)
    }
}

/// The rest of a chain from its indirect table `t`: the walk of [`GuestRing::walk`] over
/// the table's entries (`next` below the table's count, at most that many entries, no
/// table inside), the lengths summed on from `total`.
#[inline(always)]
fn walk_table(
    mem: &GuestMemory,
    t: &Table,
    writable: bool,
    limit: u64,
    mut total: u64,
    f: &mut impl ChainSink,
) -> Result<(), ChainFault> {
    let mut idx = 0;
    for _ in 0..t.count() {
        let e = t.entry(idx).ok_or(ChainFault::Chain)?;
        if e.flags & DESC_F_INDIRECT != 0 || (e.flags & DESC_F_WRITE != 0) != writable {
            return Err(ChainFault::Chain);
        }
        total += u64::from(e.len);
        if total > limit {
            return Err(ChainFault::TooLong);
        }
        let p = mem.gpa(e.addr, u64::from(e.len)).ok_or(ChainFault::Addr)?;
        // SAFETY: as in the ring's loop.
        if unsafe { f.take(p, e.len as usize) } == Step::Stop || e.flags & DESC_F_NEXT == 0 {
            return Ok(());
        }
        if e.next >= t.count() {
            return Err(ChainFault::Chain);
        }
        idx = e.next;
    }
    // More links than entries: the table's chain loops.
    Err(ChainFault::Chain)
}
