//! Quiescent-state-based reclamation (DPDK's `rte_rcu_qsbr`), for tables that one writer
//! changes while lcores read them without locks (route tables, flow tables).
//!
//! The writer counts epochs. Each reader ([`QsbrReader`], one per lcore) records, at a
//! quiescent point (between bursts, holding nothing it read from the table), the epoch it
//! saw there. Something the writer unlinked in epoch `e` may be reused once every live
//! reader has recorded `e` or later: [`Deferred`] keeps such items (slot or group
//! indices) until then.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The epochs and readers of one table.
#[derive(Debug, Default)]
pub struct Qsbr {
    epoch: AtomicU64,
    slots: Mutex<Vec<Weak<AtomicU64>>>,
}

impl Qsbr {
    /// A new reader, at the current epoch (it cannot hold anything unlinked before).
    pub fn register(self: &Arc<Self>) -> QsbrReader {
        let slot = Arc::new(AtomicU64::new(self.epoch.load(Ordering::SeqCst)));
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|w| w.strong_count() > 0);
        slots.push(Arc::downgrade(&slot));
        QsbrReader {
            qsbr: self.clone(),
            slot,
        }
    }

    /// Starts a new epoch (call it after unlinking what is to be reused); returns it.
    pub fn advance(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The oldest epoch a live reader may still be in (`u64::MAX` with none).
    pub fn oldest(&self) -> u64 {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|w| w.strong_count() > 0);
        slots
            .iter()
            .filter_map(Weak::upgrade)
            .map(|s| s.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }
}

/// One reader of a table: `Send`, owned by the lcore that looks up.
#[derive(Debug)]
pub struct QsbrReader {
    qsbr: Arc<Qsbr>,
    slot: Arc<AtomicU64>,
}

impl QsbrReader {
    /// Records that this reader holds nothing it read from the table.
    #[inline]
    pub fn quiescent(&self) {
        self.slot
            .store(self.qsbr.epoch.load(Ordering::SeqCst), Ordering::Release);
    }
}

/// A writer's pool of item indices (`0..n`): free, freed by the change under way, and
/// waiting for the readers.
#[derive(Debug)]
pub struct Deferred {
    free: Vec<u32>,
    freed_now: Vec<u32>,
    waiting: VecDeque<(u32, u64)>,
    wait: Duration,
    qsbr: Arc<Qsbr>,
}

impl Deferred {
    /// `n` free items; `alloc` waits up to `wait` for readers when only waiting ones are
    /// left.
    pub fn new(n: u32, wait: Duration, qsbr: Arc<Qsbr>) -> Deferred {
        Deferred {
            free: (0..n).rev().collect(),
            freed_now: Vec::new(),
            waiting: VecDeque::new(),
            wait,
            qsbr,
        }
    }

    /// A free item, or `None` if all are in use or still wait for readers.
    pub fn alloc(&mut self) -> Option<u32> {
        if self.free.is_empty() {
            self.reclaim();
            let deadline = Instant::now() + self.wait;
            while self.free.is_empty() && !self.waiting.is_empty() && Instant::now() < deadline {
                std::thread::yield_now();
                self.reclaim();
            }
        }
        self.free.pop()
    }

    /// Gives back an item nothing links to any more (readers may still hold it).
    pub fn free(&mut self, i: u32) {
        self.freed_now.push(i);
    }

    /// Ends a change: what it freed waits for every reader to pass a quiescent point.
    pub fn end_change(&mut self) {
        if !self.freed_now.is_empty() {
            let e = self.qsbr.advance();
            self.waiting
                .extend(self.freed_now.drain(..).map(|i| (i, e)));
        }
    }

    /// Items freed but not reusable yet.
    pub fn waiting(&self) -> usize {
        self.waiting.len() + self.freed_now.len()
    }

    fn reclaim(&mut self) {
        let oldest = self.qsbr.oldest();
        while let Some(&(i, e)) = self.waiting.front() {
            if e > oldest {
                break;
            }
            self.free.push(i);
            self.waiting.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_waits_for_every_live_reader() {
        let q = Arc::new(Qsbr::default());
        let mut d = Deferred::new(1, Duration::ZERO, q.clone());
        let (a, b) = (q.register(), q.register());
        let i = d.alloc().unwrap();
        d.free(i);
        d.end_change();
        assert_eq!(d.alloc(), None);
        a.quiescent();
        assert_eq!(d.alloc(), None, "b has not passed a quiescent point");
        drop(b);
        assert_eq!(d.alloc(), Some(i));
        assert_eq!(d.waiting(), 0);
    }
}
