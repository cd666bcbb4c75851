//! Exact-match flow tables (DPDK's `rte_hash` in its lock-free mode): fixed-size keys,
//! such as an IPv4 or IPv6 5-tuple, mapped to a 64-bit value, with one writer and any
//! number of readers that never wait.
//!
//! - Capacity is fixed at creation; nothing is allocated as flows come and go.
//! - A key lives in one of two buckets of 8 ways, picked by its hash, and never moves
//!   while it is in the table, so a reader that looks for it never misses it. A key
//!   whose two buckets are full is refused and counted (with buckets sized for twice the
//!   capacity, this is rare before the table is full).
//! - The writer publishes a flow by storing its way's slot, then its signature (release);
//!   a reader loads the signature (acquire), then the slot and the key. A slot the writer
//!   freed is reused only after every reader has passed a quiescent point
//!   ([`pmd_core::qsbr`]), so a reader never reads a key being overwritten.
//! - Expiry by age: readers note when they saw a flow (`lookup_touch`, a store only when
//!   the time changed); the writer removes flows older than a limit (`expire`).
//!
//! ```
//! use pmd_flow::{FiveTuple4, FlowConfig, FlowTable4};
//! let mut t = FlowTable4::new(&FlowConfig { capacity: 1024, ..FlowConfig::default() }).unwrap();
//! let k = FiveTuple4 { src: [10, 0, 0, 1].into(), dst: [10, 0, 0, 2].into(), sport: 1234, dport: 80, proto: 6 };
//! t.insert(&k.key(), 7, 0).unwrap();
//! let r = t.reader();                    // one per lcore
//! assert_eq!(r.lookup(&k.key()), Some(7));
//! r.quiescent();                         // between bursts
//! ```

#![warn(missing_docs)]

mod key;

pub use key::{FiveTuple4, FiveTuple6};

use pmd_core::qsbr::{Deferred, Qsbr, QsbrReader};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Ways of a bucket.
pub const WAYS: usize = 8;

/// An exact-match table of IPv4 5-tuples ([`FiveTuple4::key`]).
pub type FlowTable4 = FlowTable<2>;
/// An exact-match table of IPv6 5-tuples ([`FiveTuple6::key`]).
pub type FlowTable6 = FlowTable<5>;

/// Sizes of a table.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    /// Most flows held.
    pub capacity: u32,
    /// How long `insert` waits for readers to pass a quiescent point when the only free
    /// slots are ones they may still hold; zero: refuse at once.
    pub reclaim_wait: Duration,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            capacity: 1 << 16,
            reclaim_wait: Duration::from_secs(1),
        }
    }
}

/// Why a change was refused (the table is as it was).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The table holds `capacity` flows (or the freed slots still wait for readers).
    #[error("the flow table is full ({0} flows): raise its capacity or expire flows")]
    Full(u32),
    /// Both buckets the key may live in are full.
    #[error("both buckets of this key are full: raise the capacity")]
    Buckets,
    /// The flow to delete is not in the table.
    #[error("no such flow")]
    NotFound,
    /// The configuration cannot be built.
    #[error("bad configuration: {0}")]
    Config(String),
}

/// Refusals so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Flows in the table.
    pub flows: u32,
    /// Inserts refused: the table was full.
    pub full: u64,
    /// Inserts refused: both buckets of the key were full.
    pub buckets_full: u64,
    /// Flows removed by `expire`.
    pub expired: u64,
}

/// Eight ways: a signature (0: empty) and a slot each; one cache line.
#[repr(C, align(64))]
#[derive(Debug, Default)]
struct Bucket {
    sig: [AtomicU32; WAYS],
    slot: [AtomicU32; WAYS],
}

/// What readers and the writer share.
#[derive(Debug)]
struct Shared<const W: usize> {
    buckets: Box<[Bucket]>,
    mask: usize,
    keys: Box<[[AtomicU64; W]]>,
    values: Box<[AtomicU64]>,
    seen: Box<[AtomicU64]>,
}

/// A key's hash: two buckets and a signature.
#[derive(Clone, Copy, Debug)]
struct Hashed {
    b: [usize; 2],
    sig: u32,
}

/// Mixes the key's words (a multiply-rotate hash: keys from the wire are not chosen to
/// collide by anyone who benefits, and buckets are bounded either way).
#[inline(always)]
fn hash<const W: usize>(key: &[u64; W], mask: usize) -> Hashed {
    let mut h: u64 = 0x243f_6a88_85a3_08d3;
    for &w in key {
        h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(0xd6e8_feb8_6659_fd93);
    h ^= h >> 29;
    let b0 = h as usize & mask;
    let mut b1 = (h >> 36) as usize & mask;
    if b1 == b0 {
        b1 ^= 1 & mask;
    }
    Hashed {
        b: [b0, b1],
        sig: ((h >> 8) as u32) | 1,
    }
}

impl<const W: usize> Shared<W> {
    /// The slot holding `key`, and where it is.
    #[inline(always)]
    fn find(&self, key: &[u64; W], h: Hashed) -> Option<(u32, usize, usize)> {
        for b in h.b {
            let bucket = &self.buckets[b];
            for way in 0..WAYS {
                if bucket.sig[way].load(Ordering::Acquire) != h.sig {
                    continue;
                }
                // Acquire: a way reused since the signature was read holds a new slot,
                // and the new slot's key is whole once its number is seen.
                let s = bucket.slot[way].load(Ordering::Acquire);
                let Some(k) = self.keys.get(s as usize) else {
                    continue;
                };
                if k.iter()
                    .zip(key)
                    .all(|(a, &b)| a.load(Ordering::Relaxed) == b)
                {
                    return Some((s, b, way));
                }
            }
        }
        None
    }
}

/// A flow table: the writer's handle.
#[derive(Debug)]
pub struct FlowTable<const W: usize> {
    shared: Arc<Shared<W>>,
    slots: Deferred,
    qsbr: Arc<Qsbr>,
    capacity: u32,
    stats: FlowStats,
}

impl<const W: usize> FlowTable<W> {
    /// An empty table for `capacity` flows (two bucket ways per flow).
    pub fn new(cfg: &FlowConfig) -> Result<Self, FlowError> {
        if cfg.capacity == 0 || cfg.capacity > 1 << 30 {
            return Err(FlowError::Config(format!(
                "capacity {}: 1 to 2^30 flows",
                cfg.capacity
            )));
        }
        let nbuckets = (cfg.capacity as usize * 2)
            .div_ceil(WAYS)
            .next_power_of_two()
            .max(2);
        let n = cfg.capacity as usize;
        let qsbr = Arc::new(Qsbr::default());
        Ok(FlowTable {
            shared: Arc::new(Shared {
                buckets: (0..nbuckets).map(|_| Bucket::default()).collect(),
                mask: nbuckets - 1,
                keys: (0..n)
                    .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                    .collect(),
                values: (0..n).map(|_| AtomicU64::new(0)).collect(),
                seen: (0..n).map(|_| AtomicU64::new(0)).collect(),
            }),
            slots: Deferred::new(cfg.capacity, cfg.reclaim_wait, qsbr.clone()),
            qsbr,
            capacity: cfg.capacity,
            stats: FlowStats::default(),
        })
    }

    /// Adds the flow `key` -> `value` seen at `now` (or sets the value of the flow that is
    /// there).
    pub fn insert(&mut self, key: &[u64; W], value: u64, now: u64) -> Result<(), FlowError> {
        let sh = &*self.shared;
        let h = hash(key, sh.mask);
        if let Some((s, _, _)) = sh.find(key, h) {
            sh.values[s as usize].store(value, Ordering::Relaxed);
            sh.seen[s as usize].store(now, Ordering::Relaxed);
            return Ok(());
        }
        if self.stats.flows >= self.capacity {
            self.stats.full += 1;
            return Err(FlowError::Full(self.capacity));
        }
        // The emptier of the two buckets.
        let empty =
            |b: usize| (0..WAYS).find(|&w| sh.buckets[b].sig[w].load(Ordering::Relaxed) == 0);
        let free_ways = |b: usize| {
            (0..WAYS)
                .filter(|&w| sh.buckets[b].sig[w].load(Ordering::Relaxed) == 0)
                .count()
        };
        let b = if free_ways(h.b[1]) > free_ways(h.b[0]) {
            h.b[1]
        } else {
            h.b[0]
        };
        let Some(way) = empty(b) else {
            self.stats.buckets_full += 1;
            return Err(FlowError::Buckets);
        };
        let Some(s) = self.slots.alloc() else {
            self.stats.full += 1;
            return Err(FlowError::Full(self.capacity));
        };
        let i = s as usize;
        for (k, &w) in sh.keys[i].iter().zip(key) {
            k.store(w, Ordering::Relaxed);
        }
        sh.values[i].store(value, Ordering::Relaxed);
        sh.seen[i].store(now, Ordering::Relaxed);
        // Release: a reader that still holds this way's old signature and sees the new
        // slot number sees its whole key.
        sh.buckets[b].slot[way].store(s, Ordering::Release);
        // Everything above is visible to a reader that sees the signature.
        sh.buckets[b].sig[way].store(h.sig, Ordering::Release);
        self.stats.flows += 1;
        Ok(())
    }

    /// Removes the flow `key`.
    pub fn remove(&mut self, key: &[u64; W]) -> Result<(), FlowError> {
        let sh = &*self.shared;
        let (s, b, way) = sh
            .find(key, hash(key, sh.mask))
            .ok_or(FlowError::NotFound)?;
        self.unlink(s, b, way);
        self.slots.end_change();
        Ok(())
    }

    fn unlink(&mut self, s: u32, b: usize, way: usize) {
        self.shared.buckets[b].sig[way].store(0, Ordering::Release);
        self.slots.free(s);
        self.stats.flows -= 1;
    }

    /// Removes every flow last seen before `now - max_age`; how many.
    pub fn expire(&mut self, now: u64, max_age: u64) -> usize {
        self.expire_with(now, max_age, |_, _| {})
    }

    /// [`FlowTable::expire`], calling `gone` with the key and value of each flow it
    /// removes (to free what the value names, such as a NAT port).
    pub fn expire_with(
        &mut self,
        now: u64,
        max_age: u64,
        mut gone: impl FnMut(&[u64; W], u64),
    ) -> usize {
        let sh = self.shared.clone();
        let mut n = 0;
        for (b, bucket) in sh.buckets.iter().enumerate() {
            for way in 0..WAYS {
                if bucket.sig[way].load(Ordering::Relaxed) == 0 {
                    continue;
                }
                let s = bucket.slot[way].load(Ordering::Relaxed);
                if now.saturating_sub(sh.seen[s as usize].load(Ordering::Relaxed)) > max_age {
                    let key = sh.keys[s as usize]
                        .each_ref()
                        .map(|w| w.load(Ordering::Relaxed));
                    gone(&key, sh.values[s as usize].load(Ordering::Relaxed));
                    self.unlink(s, b, way);
                    n += 1;
                }
            }
        }
        self.slots.end_change();
        self.stats.expired += n as u64;
        n
    }

    /// The value of flow `key`.
    pub fn lookup(&self, key: &[u64; W]) -> Option<u64> {
        let sh = &*self.shared;
        sh.find(key, hash(key, sh.mask))
            .map(|(s, _, _)| sh.values[s as usize].load(Ordering::Relaxed))
    }

    /// Flows and refusals.
    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    /// A lookup handle for another thread.
    pub fn reader(&self) -> FlowReader<W> {
        FlowReader {
            shared: self.shared.clone(),
            qsbr: self.qsbr.register(),
        }
    }
}

/// Looks up a [`FlowTable`] from another thread while the writer changes it.
#[derive(Debug)]
pub struct FlowReader<const W: usize> {
    shared: Arc<Shared<W>>,
    qsbr: QsbrReader,
}

impl<const W: usize> FlowReader<W> {
    /// The value of flow `key`.
    #[inline]
    pub fn lookup(&self, key: &[u64; W]) -> Option<u64> {
        let sh = &*self.shared;
        sh.find(key, hash(key, sh.mask))
            .map(|(s, _, _)| sh.values[s as usize].load(Ordering::Relaxed))
    }

    /// The value of flow `key`, noting that it was seen at `now` (for `expire`; a store
    /// only when the flow's time changes, so use a coarse clock).
    #[inline]
    pub fn lookup_touch(&self, key: &[u64; W], now: u64) -> Option<u64> {
        let sh = &*self.shared;
        let (s, _, _) = sh.find(key, hash(key, sh.mask))?;
        let seen = &sh.seen[s as usize];
        if seen.load(Ordering::Relaxed) != now {
            seen.store(now, Ordering::Relaxed);
        }
        Some(sh.values[s as usize].load(Ordering::Relaxed))
    }

    /// Looks up each key of `keys` into the same place of `values` (`None`: no flow):
    /// every key's buckets are hashed and fetched before any is searched.
    #[inline]
    pub fn lookup_bulk(&self, keys: &[[u64; W]], values: &mut [Option<u64>]) {
        const CHUNK: usize = 16;
        let sh = &*self.shared;
        for (keys, values) in keys.chunks(CHUNK).zip(values.chunks_mut(CHUNK)) {
            let mut hs = [Hashed { b: [0; 2], sig: 0 }; CHUNK];
            for (h, k) in hs.iter_mut().zip(keys) {
                *h = hash(k, sh.mask);
                pmd_core::prefetch::read(&sh.buckets[h.b[0]]);
                pmd_core::prefetch::read(&sh.buckets[h.b[1]]);
            }
            for ((v, k), h) in values.iter_mut().zip(keys).zip(&hs) {
                *v = sh
                    .find(k, *h)
                    .map(|(s, _, _)| sh.values[s as usize].load(Ordering::Relaxed));
            }
        }
    }

    /// Records that this reader holds nothing it read from the table (between bursts).
    #[inline]
    pub fn quiescent(&self) {
        self.qsbr.quiescent()
    }
}
