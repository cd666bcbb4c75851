//! When a freed group may be reused: quiescent-state-based reclamation. The writer counts
//! epochs; each reader keeps, in its own slot, the epoch it last saw at a quiescent point
//! (between bursts, holding nothing it looked up). A group freed in epoch `e` is reused
//! once every live reader's slot has reached `e`.

use crate::dir::Groups;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The readers of one table.
#[derive(Debug, Default)]
pub(crate) struct Readers {
    epoch: AtomicU64,
    slots: Mutex<Vec<Weak<AtomicU64>>>,
}

impl Readers {
    /// A new reader's slot, at the current epoch (it cannot hold anything older).
    pub(crate) fn register(&self) -> Arc<AtomicU64> {
        let slot = Arc::new(AtomicU64::new(self.epoch.load(Ordering::SeqCst)));
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|w| w.strong_count() > 0);
        slots.push(Arc::downgrade(&slot));
        slot
    }

    /// Records that the reader of `slot` is at a quiescent point.
    #[inline]
    pub(crate) fn quiescent(&self, slot: &AtomicU64) {
        slot.store(self.epoch.load(Ordering::SeqCst), Ordering::Release);
    }

    /// Starts a new epoch (after the writer unlinked what it frees); returns it.
    fn advance(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The oldest epoch a live reader may still be in (`u64::MAX` with no reader).
    fn oldest(&self) -> u64 {
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

/// The writer's groups: free, freed by the change under way, and waiting for readers.
#[derive(Debug)]
pub(crate) struct Reclaimer {
    free: Vec<u32>,
    freed_now: Vec<u32>,
    waiting: VecDeque<(u32, u64)>,
    total: usize,
    wait: Duration,
    readers: Arc<Readers>,
}

impl Reclaimer {
    pub(crate) fn new(total: usize, wait: Duration, readers: Arc<Readers>) -> Reclaimer {
        Reclaimer {
            free: (0..total as u32).rev().collect(),
            freed_now: Vec::new(),
            waiting: VecDeque::new(),
            total,
            wait,
            readers,
        }
    }

    /// Ends a change: the groups it freed wait for every reader to pass a quiescent
    /// point in a later epoch.
    pub(crate) fn end_change(&mut self) {
        if !self.freed_now.is_empty() {
            let e = self.readers.advance();
            self.waiting
                .extend(self.freed_now.drain(..).map(|g| (g, e)));
        }
    }

    /// Makes the waiting groups every reader has moved past free.
    fn reclaim(&mut self) {
        let oldest = self.readers.oldest();
        while let Some(&(g, e)) = self.waiting.front() {
            if e > oldest {
                break;
            }
            self.free.push(g);
            self.waiting.pop_front();
        }
    }

    pub(crate) fn total(&self) -> usize {
        self.total
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len() + self.freed_now.len()
    }
}

impl Groups for Reclaimer {
    fn alloc(&mut self) -> Option<u32> {
        if self.free.is_empty() {
            self.reclaim();
            // Readers between quiescent points hold the waiting groups: give them the
            // configured time to pass one.
            let deadline = Instant::now() + self.wait;
            while self.free.is_empty() && !self.waiting.is_empty() && Instant::now() < deadline {
                std::thread::yield_now();
                self.reclaim();
            }
        }
        self.free.pop()
    }

    fn free(&mut self, g: u32) {
        self.freed_now.push(g);
    }
}
