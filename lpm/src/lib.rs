//! Longest-prefix-match route tables for IPv4 ([`Lpm4`]) and IPv6 ([`Lpm6`]), in the
//! DIR-24-8 layout of DPDK's `rte_lpm`: a lookup is one load from a 2^24-entry first level
//! (the top 24 bits of the address), plus one load per further 8 bits when a route is
//! longer than /24.
//!
//! One writer, many readers, no lock on either side:
//! - the writer owns the table (`add`, `delete`, `&mut self`) and updates it in place,
//!   entry by entry with atomic stores, so readers see every address resolve to its old
//!   route or its new one, never to anything else;
//! - readers are [`Reader4`]/[`Reader6`] handles (`Send`, one per lcore) that look up
//!   without waiting, and call `quiescent()` between bursts: a group of 256 entries the
//!   writer no longer needs is reused only after every reader has passed a quiescent
//!   point since ([`pmd_core::qsbr`], as DPDK's `rte_rcu_qsbr`).
//!
//! ```
//! use pmd_lpm::{Lpm4, LpmConfig};
//! use std::net::Ipv4Addr;
//! let mut lpm = Lpm4::new(&LpmConfig::default()).unwrap();
//! lpm.add(Ipv4Addr::new(10, 0, 0, 0), 8, 1).unwrap();
//! lpm.add(Ipv4Addr::new(10, 1, 2, 0), 24, 2).unwrap();
//! let r = lpm.reader();                  // move it to an lcore
//! assert_eq!(r.lookup(Ipv4Addr::new(10, 1, 2, 3).into()), Some(2));
//! assert_eq!(r.lookup(Ipv4Addr::new(10, 9, 9, 9).into()), Some(1));
//! assert_eq!(r.lookup(Ipv4Addr::new(11, 0, 0, 1).into()), None);
//! r.quiescent();                         // between bursts
//! ```

#![warn(missing_docs)]

mod dir;

use dir::{entry, Dir, Paint, EXT, GROUP, VALID, VALUE_MASK};
use pmd_core::qsbr::{Deferred, Qsbr, QsbrReader};
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub use dir::MAX_NEXT_HOP;

/// Sizes of a table, fixed at creation (no allocation when routes change).
#[derive(Clone, Debug)]
pub struct LpmConfig {
    /// Most routes held.
    pub max_rules: usize,
    /// Groups of 256 entries for routes longer than /24 (each /24 with longer routes in
    /// it takes one; for IPv6 each further byte of a long route may take one more).
    pub tbl8_groups: usize,
    /// How long `add` waits, when every group is in use but some wait for readers, for
    /// the readers to pass a quiescent point (DPDK's blocking reclamation); zero: it
    /// fails at once (DPDK's defer-queue mode).
    pub reclaim_wait: std::time::Duration,
}

impl Default for LpmConfig {
    fn default() -> Self {
        LpmConfig {
            max_rules: 1 << 20,
            tbl8_groups: 1 << 12,
            reclaim_wait: std::time::Duration::from_secs(1),
        }
    }
}

/// Why a change was refused (the table is as it was).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LpmError {
    /// A prefix length beyond the address.
    #[error("prefix length {depth} is beyond {max}")]
    Depth {
        /// The length given.
        depth: u8,
        /// The address's bits.
        max: u8,
    },
    /// A next hop that does not fit an entry.
    #[error("next hop {0} is beyond {MAX_NEXT_HOP}")]
    NextHop(u32),
    /// `max_rules` routes are in the table.
    #[error("the table holds its {0} routes already: raise max_rules or delete one")]
    Full(usize),
    /// No group of 256 entries is free.
    #[error(
        "all {total} tbl8 groups are in use ({waiting} wait for readers to pass a \
         quiescent point): raise tbl8_groups"
    )]
    NoGroup {
        /// Groups in the table.
        total: usize,
        /// Freed groups not yet reusable.
        waiting: usize,
    },
    /// The route to delete is not in the table.
    #[error("no route {0}")]
    NotFound(String),
    /// The configuration cannot be built.
    #[error("bad configuration: {0}")]
    Config(String),
}

/// What both families share: the table, the routes, the groups.
#[derive(Debug)]
struct Core {
    dir: Arc<Dir>,
    bits: u8,
    rules: HashMap<(u8, u128), u32>,
    max_rules: usize,
    groups: Deferred,
    total_groups: usize,
    qsbr: Arc<Qsbr>,
}

fn mask(key: u128, depth: u8) -> u128 {
    if depth == 0 {
        0
    } else {
        key & (u128::MAX << (128 - u32::from(depth)))
    }
}

impl Core {
    fn new(bits: u8, cfg: &LpmConfig) -> Result<Core, LpmError> {
        if cfg.tbl8_groups > (VALUE_MASK as usize) + 1 || cfg.max_rules == 0 {
            return Err(LpmError::Config(format!(
                "max_rules > 0 and tbl8_groups <= {}",
                VALUE_MASK as usize + 1
            )));
        }
        let qsbr = Arc::new(Qsbr::default());
        Ok(Core {
            dir: Arc::new(Dir::new(u32::from(bits), cfg.tbl8_groups)),
            bits,
            rules: HashMap::new(),
            max_rules: cfg.max_rules,
            groups: Deferred::new(cfg.tbl8_groups as u32, cfg.reclaim_wait, qsbr.clone()),
            total_groups: cfg.tbl8_groups,
            qsbr,
        })
    }

    fn check(&self, depth: u8, next_hop: Option<u32>) -> Result<(), LpmError> {
        if depth > self.bits {
            return Err(LpmError::Depth {
                depth,
                max: self.bits,
            });
        }
        match next_hop {
            Some(nh) if nh > MAX_NEXT_HOP => Err(LpmError::NextHop(nh)),
            _ => Ok(()),
        }
    }

    fn add(&mut self, key: u128, depth: u8, next_hop: u32) -> Result<(), LpmError> {
        self.check(depth, Some(next_hop))?;
        let key = mask(key, depth);
        if self.rules.len() >= self.max_rules && !self.rules.contains_key(&(depth, key)) {
            return Err(LpmError::Full(self.max_rules));
        }
        let old = self.rules.insert((depth, key), next_hop);
        let paint = Paint::Add {
            depth,
            value: entry(next_hop, depth),
        };
        let res = self.dir.paint(key, depth, paint, &mut self.groups);
        self.groups.end_change();
        if res.is_err() {
            // Nothing was painted: the walk stopped at the missing group, and the groups
            // it linked on the way down (copies of their parents' entries) were
            // collapsed again on the way back up.
            match old {
                Some(nh) => self.rules.insert((depth, key), nh),
                None => self.rules.remove(&(depth, key)),
            };
            return Err(LpmError::NoGroup {
                total: self.total_groups,
                waiting: self.groups.waiting(),
            });
        }
        Ok(())
    }

    fn delete(&mut self, key: u128, depth: u8, show: impl Fn() -> String) -> Result<(), LpmError> {
        self.check(depth, None)?;
        let key = mask(key, depth);
        if self.rules.remove(&(depth, key)).is_none() {
            return Err(LpmError::NotFound(show()));
        }
        // The next longest route that covers the deleted one takes its place.
        let value = (0..depth)
            .rev()
            .find_map(|d| self.rules.get(&(d, mask(key, d))).map(|&nh| entry(nh, d)))
            .unwrap_or(0);
        // A delete allocates no group.
        let _ = self
            .dir
            .paint(key, depth, Paint::Delete { depth, value }, &mut self.groups);
        self.groups.end_change();
        Ok(())
    }

    fn reader(&self) -> (Arc<Dir>, QsbrReader) {
        (self.dir.clone(), self.qsbr.register())
    }
}

/// Resolves a raw entry to a next hop.
#[inline(always)]
fn hop(e: u32) -> Option<u32> {
    (e & VALID != 0).then_some(e & VALUE_MASK)
}

/// An IPv4 lookup in `dir`: one load, two for routes longer than /24.
#[inline(always)]
fn lookup4(dir: &Dir, ip: u32) -> u32 {
    second4(dir, dir.l0[(ip >> 8) as usize].load(Ordering::Acquire), ip)
}

/// The entry of `ip` given its first-level entry `e`: `e` itself, or the entry of the
/// group it points to.
#[inline(always)]
fn second4(dir: &Dir, e: u32, ip: u32) -> u32 {
    if e & EXT == 0 {
        return e;
    }
    let idx = (e & VALUE_MASK) as usize * GROUP + (ip & 0xff) as usize;
    dir.groups.get(idx).map_or(0, |c| c.load(Ordering::Acquire))
}

/// Looks up `ips` into `hops` (`miss` where no route covers the address), first-level
/// loads first so that the memory accesses of a burst overlap.
#[inline]
fn lookup4_bulk(dir: &Dir, ips: &[u32], hops: &mut [u32], miss: u32) {
    // Eight first-level loads in flight, then their second levels: wider groups spill
    // the raw entries to the stack and measured slower (ci/bench-lpm.sh).
    const CHUNK: usize = 8;
    for (ips, hops) in ips.chunks(CHUNK).zip(hops.chunks_mut(CHUNK)) {
        let mut raw = [0u32; CHUNK];
        for (r, &ip) in raw.iter_mut().zip(ips) {
            *r = dir.l0[(ip >> 8) as usize].load(Ordering::Acquire);
        }
        for ((h, &r), &ip) in hops.iter_mut().zip(&raw).zip(ips) {
            *h = hop(second4(dir, r, ip)).unwrap_or(miss);
        }
    }
}

/// An IPv4 route table (DPDK's `rte_lpm`): the writer's handle.
#[derive(Debug)]
pub struct Lpm4(Core);

impl Lpm4 {
    /// An empty table of the given sizes (64 MiB for the first level, 1 KiB per group).
    pub fn new(cfg: &LpmConfig) -> Result<Lpm4, LpmError> {
        Core::new(32, cfg).map(Lpm4)
    }

    /// Adds (or replaces) the route `prefix/depth` -> `next_hop`; the bits of `prefix`
    /// past `depth` are ignored.
    pub fn add(&mut self, prefix: Ipv4Addr, depth: u8, next_hop: u32) -> Result<(), LpmError> {
        self.0
            .add(u128::from(u32::from(prefix)) << 96, depth, next_hop)
    }

    /// Deletes the route `prefix/depth`; addresses it covered fall back to the next
    /// longest route.
    pub fn delete(&mut self, prefix: Ipv4Addr, depth: u8) -> Result<(), LpmError> {
        self.0
            .delete(u128::from(u32::from(prefix)) << 96, depth, || {
                format!("{prefix}/{depth}")
            })
    }

    /// The next hop of `ip` (an address in host order), if a route covers it.
    #[inline]
    pub fn lookup(&self, ip: u32) -> Option<u32> {
        hop(lookup4(&self.0.dir, ip))
    }

    /// Routes in the table.
    pub fn len(&self) -> usize {
        self.0.rules.len()
    }

    /// Whether the table has no route.
    pub fn is_empty(&self) -> bool {
        self.0.rules.is_empty()
    }

    /// Groups of 256 entries in use.
    pub fn groups_in_use(&self) -> usize {
        self.0.dir.groups_in_use()
    }

    /// A lookup handle for another thread.
    pub fn reader(&self) -> Reader4 {
        let (dir, qsbr) = self.0.reader();
        Reader4 { dir, qsbr }
    }
}

/// Looks up an [`Lpm4`] from another thread while the writer changes it.
#[derive(Debug)]
pub struct Reader4 {
    dir: Arc<Dir>,
    qsbr: QsbrReader,
}

impl Reader4 {
    /// The next hop of `ip` (host order), if a route covers it.
    #[inline]
    pub fn lookup(&self, ip: u32) -> Option<u32> {
        hop(lookup4(&self.dir, ip))
    }

    /// Looks up each address of `ips` into the same place of `hops` (as far as both go),
    /// writing `miss` where no route covers the address (DPDK's `rte_lpm_lookup_bulk`).
    #[inline]
    pub fn lookup_bulk(&self, ips: &[u32], hops: &mut [u32], miss: u32) {
        lookup4_bulk(&self.dir, ips, hops, miss)
    }

    /// Says that this thread holds nothing it looked up in the table's groups: call it
    /// between bursts (the writer reuses a freed group once every reader has).
    #[inline]
    pub fn quiescent(&self) {
        self.qsbr.quiescent()
    }
}

/// An IPv6 route table (DPDK's `rte_lpm6`): the writer's handle.
#[derive(Debug)]
pub struct Lpm6(Core);

impl Lpm6 {
    /// An empty table of the given sizes.
    pub fn new(cfg: &LpmConfig) -> Result<Lpm6, LpmError> {
        Core::new(128, cfg).map(Lpm6)
    }

    /// Adds (or replaces) the route `prefix/depth` -> `next_hop`.
    pub fn add(&mut self, prefix: Ipv6Addr, depth: u8, next_hop: u32) -> Result<(), LpmError> {
        self.0.add(u128::from(prefix), depth, next_hop)
    }

    /// Deletes the route `prefix/depth`.
    pub fn delete(&mut self, prefix: Ipv6Addr, depth: u8) -> Result<(), LpmError> {
        self.0
            .delete(u128::from(prefix), depth, || format!("{prefix}/{depth}"))
    }

    /// The next hop of `ip`, if a route covers it.
    #[inline]
    pub fn lookup(&self, ip: Ipv6Addr) -> Option<u32> {
        hop(self.0.dir.resolve(u128::from(ip)))
    }

    /// Routes in the table.
    pub fn len(&self) -> usize {
        self.0.rules.len()
    }

    /// Whether the table has no route.
    pub fn is_empty(&self) -> bool {
        self.0.rules.is_empty()
    }

    /// Groups of 256 entries in use.
    pub fn groups_in_use(&self) -> usize {
        self.0.dir.groups_in_use()
    }

    /// A lookup handle for another thread.
    pub fn reader(&self) -> Reader6 {
        let (dir, qsbr) = self.0.reader();
        Reader6 { dir, qsbr }
    }
}

/// Looks up an [`Lpm6`] from another thread while the writer changes it.
#[derive(Debug)]
pub struct Reader6 {
    dir: Arc<Dir>,
    qsbr: QsbrReader,
}

impl Reader6 {
    /// The next hop of `ip`, if a route covers it.
    #[inline]
    pub fn lookup(&self, ip: Ipv6Addr) -> Option<u32> {
        hop(self.dir.resolve(u128::from(ip)))
    }

    /// Looks up each address of `ips` into the same place of `hops`, `miss` where no
    /// route covers it.
    pub fn lookup_bulk(&self, ips: &[Ipv6Addr], hops: &mut [u32], miss: u32) {
        for (h, ip) in hops.iter_mut().zip(ips) {
            *h = self.lookup(*ip).unwrap_or(miss);
        }
    }

    /// As [`Reader4::quiescent`].
    #[inline]
    pub fn quiescent(&self) {
        self.qsbr.quiescent()
    }
}
