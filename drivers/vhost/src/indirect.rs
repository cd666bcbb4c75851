//! Indirect descriptor tables (`VIRTIO_F_INDIRECT_DESC`, virtio 1.2 §2.7.5.3 for split
//! rings, §2.8.19 for packed): a descriptor with the INDIRECT flag names a table of
//! descriptors in guest memory that stands for the rest of its chain. Both ring walkers
//! hand such a descriptor to [`walk_table`].
//!
//! The table is as untrusted as the ring: its length must be a whole number of
//! 16-byte entries, at most the ring's size of them (a chain is never longer than the
//! queue), and translate in one piece through the memory table; each entry is copied out
//! once before it is looked at. Split tables chain through `next` (bounded by the table,
//! at most one visit per entry, so a loop ends), packed tables are read in order. A table
//! entry never names another table.

use crate::burst::{ChainFault, Step};
use crate::mem::GuestMemory;

/// Descriptor flag (both layouts): the chain continues (split: at `next`).
pub(crate) const DESC_F_NEXT: u16 = 1;
/// Descriptor flag (both layouts): the buffer is device-writable.
pub(crate) const DESC_F_WRITE: u16 = 2;
/// Descriptor flag (both layouts): the buffer is a table of descriptors.
pub(crate) const DESC_F_INDIRECT: u16 = 4;

/// Bytes of one table entry (either layout).
const ENTRY: u32 = 16;

/// The layout of a table's entries: that of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// `addr` u64, `len` u32, `flags` u16, `next` u16; chained through `next`.
    Split,
    /// `addr` u64, `len` u32, `id` u16, `flags` u16; read in order. Only WRITE is a
    /// flag here (the others and `id` are reserved), and it is not checked either: the
    /// chain's direction is the ring's (device-readable on the guest's transmit ring),
    /// because DPDK's virtio driver marks every entry of its packed tables WRITE, the
    /// header's included. Reading a buffer marked writable, or writing one the guest
    /// named for receiving, harms nobody but a guest that lied.
    Packed,
}

/// How a chain's buffers are checked while they are handed over.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rules {
    /// Every buffer must be device-writable (else device-readable).
    pub writable: bool,
    /// Most bytes the buffers of the chain may add up to.
    pub limit: u64,
    /// Most entries a table may have (the ring's size).
    pub max_entries: u16,
}

/// One table entry, copied out of guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    addr: u64,
    len: u32,
    flags: u16,
    /// Split only: the next entry of the chain.
    next: u16,
}

/// Walks the table at guest address `addr`, `len` bytes, in `layout`: every buffer of it,
/// checked by `rules` (split entries for their direction too) (the sum continuing from `*total`), translated through `mem` and
/// handed to `f(host address, len)` in order until `f` says [`Step::Stop`] (returned) or
/// the table's chain ends ([`Step::Continue`]).
pub(crate) fn walk_table(
    mem: &GuestMemory,
    layout: Layout,
    addr: u64,
    len: u32,
    rules: Rules,
    total: &mut u64,
    f: &mut impl FnMut(*mut u8, usize) -> Step,
) -> Result<Step, ChainFault> {
    if len == 0 || !len.is_multiple_of(ENTRY) || len / ENTRY > u32::from(rules.max_entries) {
        return Err(ChainFault::Chain);
    }
    let count = (len / ENTRY) as u16;
    let table = mem.gpa(addr, u64::from(len)).ok_or(ChainFault::Addr)?;
    let mut i = 0u16;
    // Split: at most `count` entries visited, so a `next` loop ends here.
    for _ in 0..count {
        // SAFETY: i < count, so the 16 bytes at 16 * i lie inside the `len` bytes
        // translated at `table`.
        let e = unsafe { entry(table, i, layout) };
        if layout == Layout::Split
            && (e.flags & DESC_F_INDIRECT != 0 || (e.flags & DESC_F_WRITE != 0) != rules.writable)
        {
            return Err(ChainFault::Chain);
        }
        *total += u64::from(e.len);
        if *total > rules.limit {
            return Err(ChainFault::TooLong);
        }
        let p = mem.gpa(e.addr, u64::from(e.len)).ok_or(ChainFault::Addr)?;
        if f(p, e.len as usize) == Step::Stop {
            return Ok(Step::Stop);
        }
        match layout {
            Layout::Packed => i += 1,
            Layout::Split if e.flags & DESC_F_NEXT == 0 => return Ok(Step::Continue),
            Layout::Split if e.next >= count => return Err(ChainFault::Chain),
            Layout::Split => i = e.next,
        }
    }
    match layout {
        Layout::Packed => Ok(Step::Continue),
        // More links than entries: the table's chain loops.
        Layout::Split => Err(ChainFault::Chain),
    }
}

/// Entry `i` of the table at `table`, copied out and decoded.
///
/// # Safety
/// `table` must be valid for reads of `16 * (i + 1)` bytes. The guest may write them
/// meanwhile: they are copied raw, once.
#[inline(always)]
unsafe fn entry(table: *const u8, i: u16, layout: Layout) -> Entry {
    let mut b = [0u8; ENTRY as usize];
    // SAFETY: the caller vouches for these 16 bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(
            table.add(usize::from(i) * ENTRY as usize),
            b.as_mut_ptr(),
            b.len(),
        )
    };
    let u16_at = |k: usize| u16::from_le_bytes([b[k], b[k + 1]]);
    let (flags, next) = match layout {
        Layout::Split => (u16_at(12), u16_at(14)),
        Layout::Packed => (u16_at(14), 0),
    };
    Entry {
        addr: u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
        len: u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
        flags,
        next,
    }
}
