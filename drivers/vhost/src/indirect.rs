//! Indirect descriptor tables (`VIRTIO_F_INDIRECT_DESC`, virtio 1.2 §2.7.5.3 for split
//! rings, §2.8.19 for packed): a descriptor with the INDIRECT flag names a table of
//! descriptors in guest memory that stands for the rest of its chain. Both ring walkers
//! check such a descriptor's table ([`Table::new`]) and then take their buffers from it.
//!
//! The table is as untrusted as the ring: its length must be a whole number of
//! 16-byte entries, at most the ring's size of them (a chain is never longer than the
//! queue), and translate in one piece through the memory table; each entry is copied out
//! once before it is looked at. Split tables chain through `next` (bounded by the table,
//! at most one visit per entry, so a loop ends), packed tables are read in order. A table
//! entry never names another table.

use crate::burst::ChainFault;
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

/// One table entry, copied out of guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Guest physical address of the buffer.
    pub addr: u64,
    /// Bytes of the buffer.
    pub len: u32,
    /// `DESC_F_*` (packed: reserved but WRITE).
    pub flags: u16,
    /// Split only: the next entry of the chain.
    pub next: u16,
}

/// A checked indirect table: whole entries, at most the ring's size of them, translated
/// in one piece. The ring walkers read its entries one at a time ([`Table::entry`]) and
/// hand the buffers over themselves, so that their per-buffer closure has one caller
/// and stays inlined into the bursts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Table {
    at: *const u8,
    count: u16,
    layout: Layout,
}

impl Table {
    /// The table at guest address `addr`, `len` bytes, of a ring of `max_entries`.
    #[inline]
    pub fn new(
        mem: &GuestMemory,
        layout: Layout,
        addr: u64,
        len: u32,
        max_entries: u16,
    ) -> Result<Table, ChainFault> {
        if len == 0 || !len.is_multiple_of(ENTRY) || len / ENTRY > u32::from(max_entries) {
            return Err(ChainFault::Chain);
        }
        let at = mem.gpa(addr, u64::from(len)).ok_or(ChainFault::Addr)?;
        Ok(Table {
            at,
            count: (len / ENTRY) as u16,
            layout,
        })
    }

    /// Entries (at least 1).
    #[inline(always)]
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Entry `i`, copied out and decoded; `None` beyond the table.
    #[inline]
    pub fn entry(&self, i: u16) -> Option<Entry> {
        if i >= self.count {
            return None;
        }
        let mut b = [0u8; ENTRY as usize];
        // SAFETY: i < count, so the 16 bytes at 16 * i lie inside the translated table,
        // which the walker's memory table keeps mapped. The guest may write them
        // meanwhile: they are copied raw, once.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.at.add(usize::from(i) * ENTRY as usize),
                b.as_mut_ptr(),
                b.len(),
            )
        };
        let u16_at = |k: usize| u16::from_le_bytes([b[k], b[k + 1]]);
        let (flags, next) = match self.layout {
            Layout::Split => (u16_at(12), u16_at(14)),
            Layout::Packed => (u16_at(14), 0),
        };
        Some(Entry {
            addr: u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            len: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            flags,
            next,
        })
    }
}
