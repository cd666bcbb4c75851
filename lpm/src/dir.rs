//! The DIR-24-8 table both address families share: a first level indexed by the top 24
//! bits of the key, then groups of 256 entries, one per further 8 bits (one level for
//! IPv4, up to thirteen for IPv6). Keys are 128-bit, left-aligned (an IPv4 address is
//! the top 32 bits).
//!
//! An entry is one `u32`, so readers load it atomically and never see half an update:
//!
//! | bits | field |
//! |---|---|
//! | 31 | valid |
//! | 30 | extended: the low bits are a group index, not a next hop |
//! | 22..=29 | depth of the rule the entry came from (0..=128) |
//! | 0..=21 | next hop, or group index |
//!
//! The writer fills a group before it stores the entry that points to it (release), and a
//! reader loads a first-level entry with acquire, so a reader never follows a pointer to a
//! group that is not ready. Groups the writer frees are reused only once every reader has
//! passed a quiescent point after the free (`pmd_core::qsbr`).

use std::sync::atomic::{AtomicU32, Ordering};

pub(crate) const VALID: u32 = 1 << 31;
pub(crate) const EXT: u32 = 1 << 30;
const DEPTH_SHIFT: u32 = 22;
pub(crate) const VALUE_MASK: u32 = (1 << DEPTH_SHIFT) - 1;
/// Bits the first level indexes.
pub(crate) const L0_BITS: u32 = 24;
/// Entries of a group.
pub(crate) const GROUP: usize = 256;

/// The largest next hop an entry holds.
pub const MAX_NEXT_HOP: u32 = VALUE_MASK;

#[inline(always)]
pub(crate) fn entry(next_hop: u32, depth: u8) -> u32 {
    VALID | u32::from(depth) << DEPTH_SHIFT | next_hop
}

#[inline(always)]
fn depth_of(e: u32) -> u8 {
    (e >> DEPTH_SHIFT) as u8
}

/// What a paint does to the entries of a range.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Paint {
    /// A rule of `depth` added: entries from rules no longer than it take `value`.
    Add { depth: u8, value: u32 },
    /// The rule of `depth` deleted: its entries take `value` (the covering rule's entry,
    /// or 0: no route).
    Delete { depth: u8, value: u32 },
}

impl Paint {
    #[inline]
    fn applies(self, e: u32) -> Option<u32> {
        match self {
            Paint::Add { depth, value } if e & VALID == 0 || depth_of(e) <= depth => Some(value),
            Paint::Delete { depth, value } if e & VALID != 0 && depth_of(e) == depth => Some(value),
            _ => None,
        }
    }
}

/// The tables.
#[derive(Debug)]
pub(crate) struct Dir {
    pub(crate) l0: Entries,
    pub(crate) groups: Entries,
    /// Key bits (32 or 128).
    bits: u32,
}

/// Why a change could not be made.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NoGroup;

/// The writer's group allocator.
pub(crate) trait Groups {
    /// A free group, or `None` if every one is in use (or waits for readers).
    fn alloc(&mut self) -> Option<u32>;
    /// Gives back a group no entry points to any more.
    fn free(&mut self, g: u32);
}

impl Groups for pmd_core::qsbr::Deferred {
    fn alloc(&mut self) -> Option<u32> {
        pmd_core::qsbr::Deferred::alloc(self)
    }

    fn free(&mut self, g: u32) {
        pmd_core::qsbr::Deferred::free(self, g)
    }
}

/// A zeroed array of entries in its own anonymous mapping, which the kernel is asked to
/// back with transparent huge pages: the first level is 64 MiB looked up at random, and
/// with 4 KiB pages nearly every lookup would also miss the TLB (DPDK puts `rte_lpm` in
/// hugepage memory for the same reason). Untouched pages cost nothing.
pub(crate) struct Entries {
    map: memmap2::MmapMut,
    len: usize,
}

impl std::fmt::Debug for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Entries({})", self.len)
    }
}

impl Entries {
    fn zeroed(len: usize) -> Entries {
        let bytes = (len * 4).max(1);
        let map = memmap2::MmapOptions::new()
            .len(bytes)
            .map_anon()
            .unwrap_or_else(|e| panic!("mapping {bytes} bytes for a route table: {e}"));
        // Only a hint: without transparent huge pages the table works on small pages.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        Entries { map, len }
    }
}

impl std::ops::Deref for Entries {
    type Target = [AtomicU32];

    #[inline(always)]
    fn deref(&self) -> &[AtomicU32] {
        // SAFETY: the mapping is page aligned, at least len * 4 bytes, zero-filled at
        // creation and alive as long as `self`; AtomicU32 has u32's size, alignment and
        // bit validity, and every access to the memory goes through these atomics.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<AtomicU32>(), self.len) }
    }
}

impl Dir {
    pub(crate) fn new(bits: u32, groups: usize) -> Dir {
        Dir {
            l0: Entries::zeroed(1 << L0_BITS),
            groups: Entries::zeroed(groups * GROUP),
            bits,
        }
    }

    /// Bits of the key covered once level `level` is looked at.
    fn end_bit(level: u32) -> u32 {
        L0_BITS + 8 * level
    }

    /// Index, at `level`, of `key` (within the first level, or within a group).
    fn index(key: u128, level: u32) -> usize {
        if level == 0 {
            (key >> (128 - L0_BITS)) as usize
        } else {
            (key >> (128 - Self::end_bit(level))) as usize & (GROUP - 1)
        }
    }

    fn slot(&self, level: u32, group: u32, idx: usize) -> &AtomicU32 {
        if level == 0 {
            &self.l0[idx]
        } else {
            &self.groups[group as usize * GROUP + idx]
        }
    }

    /// Applies `paint` to the range of `key/depth`, allocating groups on the way down.
    pub(crate) fn paint(
        &self,
        key: u128,
        depth: u8,
        paint: Paint,
        alloc: &mut dyn Groups,
    ) -> Result<(), NoGroup> {
        self.paint_at(0, 0, key, depth, paint, alloc)
    }

    fn paint_at(
        &self,
        level: u32,
        group: u32,
        key: u128,
        depth: u8,
        paint: Paint,
        alloc: &mut dyn Groups,
    ) -> Result<(), NoGroup> {
        let end = Self::end_bit(level);
        let first = Self::index(key, level);
        if u32::from(depth) <= end {
            // The walk came down only while depth was past the previous level's end, so
            // the range is 1 to 2^(end - depth) entries of this level, starting at
            // `first` (the key's bits past `depth` are zero).
            let count = 1usize << (end - u32::from(depth));
            for idx in first..first + count {
                self.apply(level, group, idx, paint, alloc);
            }
            return Ok(());
        }
        debug_assert!(end < self.bits);
        let slot = self.slot(level, group, first);
        let e = slot.load(Ordering::Relaxed);
        let child = if e & EXT != 0 {
            e & VALUE_MASK
        } else {
            if matches!(paint, Paint::Delete { .. }) {
                // Nothing more specific than this entry was ever added below it.
                return Ok(());
            }
            let g = alloc.alloc().ok_or(NoGroup)?;
            for c in &self.groups[g as usize * GROUP..][..GROUP] {
                c.store(e, Ordering::Relaxed);
            }
            // The group is full before anyone can reach it.
            slot.store(EXT | g, Ordering::Release);
            g
        };
        let painted = self.paint_at(level + 1, child, key, depth, paint, alloc);
        // Also when a deeper level ran out of groups: the groups linked on the way down
        // hold only copies of their parents' entries and go back at once.
        self.collapse(level, group, first, alloc);
        painted
    }

    /// Paints entry `idx` of `level` (and everything below it).
    fn apply(&self, level: u32, group: u32, idx: usize, paint: Paint, alloc: &mut dyn Groups) {
        let slot = self.slot(level, group, idx);
        let e = slot.load(Ordering::Relaxed);
        if e & EXT != 0 {
            let child = e & VALUE_MASK;
            for i in 0..GROUP {
                self.apply(level + 1, child, i, paint, alloc);
            }
            self.collapse(level, group, idx, alloc);
        } else if let Some(v) = paint.applies(e) {
            slot.store(v, Ordering::Release);
        }
    }

    /// Replaces the group entry `idx` of `level` points to by one entry when all of the
    /// group's entries are the same rule's, from a rule no longer than the group's
    /// parent entry covers; the group is freed.
    fn collapse(&self, level: u32, group: u32, idx: usize, alloc: &mut dyn Groups) {
        let slot = self.slot(level, group, idx);
        let e = slot.load(Ordering::Relaxed);
        if e & EXT == 0 {
            return;
        }
        let child = e & VALUE_MASK;
        let entries = &self.groups[child as usize * GROUP..][..GROUP];
        let v = entries[0].load(Ordering::Relaxed);
        if v & EXT != 0
            || (v & VALID != 0 && u32::from(depth_of(v)) > Self::end_bit(level))
            || entries.iter().any(|c| c.load(Ordering::Relaxed) != v)
        {
            return;
        }
        slot.store(v, Ordering::Release);
        alloc.free(child);
    }

    /// The groups an entry of the first level points to, in use (for tests and stats).
    pub(crate) fn groups_in_use(&self) -> usize {
        fn count(d: &Dir, e: u32) -> usize {
            if e & EXT == 0 {
                return 0;
            }
            let g = (e & VALUE_MASK) as usize;
            1 + d.groups[g * GROUP..][..GROUP]
                .iter()
                .map(|c| count(d, c.load(Ordering::Relaxed)))
                .sum::<usize>()
        }
        self.l0
            .iter()
            .map(|c| count(self, c.load(Ordering::Relaxed)))
            .sum()
    }

    /// The entry `key` resolves to (any key width: the walk stops at a plain entry).
    #[inline]
    pub(crate) fn resolve(&self, key: u128) -> u32 {
        let mut e = self.l0[Self::index(key, 0)].load(Ordering::Acquire);
        let mut level = 1;
        while e & EXT != 0 {
            let idx = (e & VALUE_MASK) as usize * GROUP + Self::index(key, level);
            e = match self.groups.get(idx) {
                Some(c) => c.load(Ordering::Acquire),
                None => return 0,
            };
            level += 1;
        }
        e
    }
}
