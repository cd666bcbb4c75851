//! State shared by the device, its control thread and its queues: one [`RingSlot`] per
//! virtqueue, through which the control thread hands a configured ring to the queue that
//! runs it and takes it back, and the link state.
//!
//! A slot is a three-state flag plus the ring's configuration. A queue *enters* a slot for
//! one burst (IDLE → BUSY, one compare-and-swap; it fails when the ring is stopped) and
//! leaves it (BUSY → IDLE, one release store, publishing the next available index it would
//! process). The control thread stops a ring by moving IDLE → STOPPED; when a burst holds
//! it, BUSY → STOPPING, and the burst's leave completes the stop (STOPPING → STOPPED). So
//! after `stop` returns no burst touches the ring until `start` hands it out again, and the
//! index it returns is exact (GET_VRING_BASE). A queue thread that never leaves (stopped
//! mid-burst) delays `stop` by at most a second; its ring still never runs again until
//! started. `ci/loom.sh` model-checks the protocol (`loom_*` tests below). A new configuration
//! bumps the slot's generation, and the queue rebuilds its view of the ring at its next
//! burst. Queues keep the memory table alive through the configuration's `Arc`, so a
//! ring stopped or replaced never has its memory unmapped under a burst.

use crate::vring::{RingControl, VringConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
// The slot's own synchronisation: loom's under `--cfg loom` (ci/loom.sh), so the model
// checker explores the real protocol.
#[cfg(loom)]
use loom::sync::{
    atomic::{AtomicU32, AtomicU64 as GenCounter, AtomicU8},
    Mutex,
};
#[cfg(not(loom))]
use std::sync::{
    atomic::{AtomicU32, AtomicU64 as GenCounter, AtomicU8},
    Mutex,
};

const IDLE: u8 = 0;
const BUSY: u8 = 1;
const STOPPED: u8 = 2;
/// A stop was asked while a burst held the ring; the burst's leave completes it.
const STOPPING: u8 = 3;

/// How long `stop` waits for a burst to leave a ring before it goes on anyway (a burst
/// takes microseconds; only a queue thread that stopped mid-burst would hold it longer).
const STOP_WAIT: Duration = Duration::from_secs(1);

/// One virtqueue as the control thread and its queue share it.
#[derive(Debug)]
pub struct RingSlot {
    state: AtomicU8,
    gen: GenCounter,
    /// The next available index the queue would process (u16, or packed with the wrap
    /// counter in bit 15), published when it leaves.
    last_avail: AtomicU32,
    cfg: Mutex<Option<VringConfig>>,
}

impl Default for RingSlot {
    fn default() -> RingSlot {
        RingSlot {
            state: AtomicU8::new(STOPPED),
            gen: GenCounter::new(0),
            last_avail: AtomicU32::new(0),
            cfg: Mutex::new(None),
        }
    }
}

impl RingSlot {
    /// Data path: takes the ring for one burst; false if it is not running.
    #[inline(always)]
    pub fn enter(&self) -> bool {
        self.state
            .compare_exchange(IDLE, BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Data path: ends the burst `enter` began, with the next available index.
    #[inline(always)]
    pub fn leave(&self, last_avail: u16) {
        self.last_avail
            .store(u32::from(last_avail), Ordering::Relaxed);
        self.leave_unchanged();
    }

    /// Data path: ends a burst that did not run the ring (it could not be built, or it
    /// is broken), leaving the published index as it was.
    #[inline(always)]
    pub fn leave_unchanged(&self) {
        if self
            .state
            .compare_exchange(BUSY, IDLE, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            self.finish_stop();
        }
    }

    /// A stop came while this burst ran: completes it.
    #[cold]
    fn finish_stop(&self) {
        let _ =
            self.state
                .compare_exchange(STOPPING, STOPPED, Ordering::Release, Ordering::Relaxed);
    }

    /// Data path, inside a burst: the configuration's generation.
    #[inline(always)]
    pub fn generation(&self) -> u64 {
        self.gen.load(Ordering::Relaxed)
    }

    /// Data path, inside a burst (cold): the current configuration.
    pub fn config(&self) -> Option<VringConfig> {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the ring is handed out (running).
    pub fn running(&self) -> bool {
        self.state.load(Ordering::Acquire) != STOPPED
    }

    fn start(&self, cfg: VringConfig) {
        self.stop();
        self.last_avail
            .store(u32::from(cfg.base), Ordering::Relaxed);
        *self.cfg.lock().unwrap_or_else(|e| e.into_inner()) = Some(cfg);
        self.gen.fetch_add(1, Ordering::Relaxed);
        self.state.store(IDLE, Ordering::Release);
    }

    fn stop(&self) -> Option<u16> {
        let deadline = Instant::now() + STOP_WAIT;
        loop {
            match self
                .state
                .compare_exchange(IDLE, STOPPED, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) | Err(STOPPED) if self.cfg_taken() => return None,
                Ok(_) | Err(STOPPED) => break,
                Err(BUSY) => {
                    // Ask the burst to stop the ring as it leaves (or it left meanwhile:
                    // the next round takes IDLE).
                    let _ = self.state.compare_exchange(
                        BUSY,
                        STOPPING,
                        Ordering::Acquire,
                        Ordering::Acquire,
                    );
                }
                Err(_) if !cfg!(loom) && Instant::now() >= deadline => {
                    // The queue's thread holds the ring and does not come back; it stays
                    // stopped (its leave completes the stop) and the index is its last.
                    tracing::warn!("vhost: a queue held its ring for {STOP_WAIT:?}");
                    break;
                }
                Err(_) => yield_now(),
            }
        }
        self.cfg.lock().unwrap_or_else(|e| e.into_inner()).take();
        Some(self.last_avail.load(Ordering::Relaxed) as u16)
    }

    /// Whether the ring was already stopped (no configuration handed out).
    fn cfg_taken(&self) -> bool {
        self.cfg.lock().unwrap_or_else(|e| e.into_inner()).is_none()
    }
}

/// Lets the queue's thread run (loom's yield under the model checker).
fn yield_now() {
    #[cfg(not(loom))]
    std::thread::yield_now();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Control-plane counters (xstats).
#[derive(Debug, Default)]
pub struct CtrlCounters {
    /// Front ends that connected.
    pub connects: AtomicU64,
    /// Connections that ended (any reason).
    pub disconnects: AtomicU64,
    /// Connections we ended because the front end broke the protocol.
    pub refused: AtomicU64,
    /// Client mode: failed connection attempts.
    pub connect_failures: AtomicU64,
}

/// What the device, its control thread and its queues share.
#[derive(Debug)]
pub struct Shared {
    rings: Box<[RingSlot]>,
    link_up: AtomicBool,
    /// The virtio features of the last ring started (what the front end negotiated).
    features: AtomicU64,
    /// Counters.
    pub counters: CtrlCounters,
    last_reason: Mutex<String>,
}

impl Shared {
    /// State for `queue_pairs` pairs (two rings each).
    pub fn new(queue_pairs: u16) -> Shared {
        Shared {
            rings: (0..2 * usize::from(queue_pairs))
                .map(|_| RingSlot::default())
                .collect(),
            link_up: AtomicBool::new(false),
            features: AtomicU64::new(0),
            counters: CtrlCounters::default(),
            last_reason: Mutex::new(String::new()),
        }
    }

    /// Ring `index`'s slot, if it exists.
    pub fn ring(&self, index: u16) -> Option<&RingSlot> {
        self.rings.get(usize::from(index))
    }

    /// Rings (twice the queue pairs).
    pub fn rings(&self) -> usize {
        self.rings.len()
    }

    /// Whether the front end has the first queue pair running.
    pub fn link_up(&self) -> bool {
        self.link_up.load(Ordering::Acquire)
    }

    /// Why the last connection ended ("" if none ended yet).
    pub fn last_reason(&self) -> String {
        self.last_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records why a connection ended.
    pub fn set_reason(&self, r: &str) {
        *self.last_reason.lock().unwrap_or_else(|e| e.into_inner()) = r.to_string();
    }

    /// The virtio features the front end negotiated (0 before its first ring starts).
    pub fn features(&self) -> u64 {
        self.features.load(Ordering::Relaxed)
    }

    /// Stops every ring (a disconnect, or the device stopping).
    pub fn stop_all(&self) {
        for r in self.rings.iter() {
            r.stop();
        }
        self.set_link(false);
    }
}

impl RingControl for Shared {
    fn start(&self, cfg: VringConfig) {
        if let Some(r) = self.ring(cfg.index) {
            self.features.store(cfg.features, Ordering::Relaxed);
            r.start(cfg);
        }
    }

    fn stop(&self, index: u16) -> Option<u16> {
        self.ring(index)?.stop()
    }

    fn set_link(&self, up: bool) {
        self.link_up.store(up, Ordering::Release);
    }
}

/// Model checks of the slot protocol under loom (`ci/loom.sh`): a stop racing a burst.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::mem::GuestMemory;
    use loom::sync::Arc;

    fn cfg(base: u16) -> VringConfig {
        VringConfig {
            index: 0,
            size: 256,
            base,
            addrs: Default::default(),
            features: 0,
            mem: std::sync::Arc::new(GuestMemory::default()),
            call: None,
            kick: None,
            log: None,
        }
    }

    /// Whatever the interleaving, `stop` returns the index of a burst that entered before
    /// it (or the base if none did), no burst enters after it, and the configuration is
    /// gone.
    #[test]
    fn loom_stop_racing_a_burst() {
        loom::model(|| {
            let slot = Arc::new(RingSlot::default());
            slot.start(cfg(7));
            let q = slot.clone();
            let burst = loom::thread::spawn(move || {
                if q.enter() {
                    q.leave(9);
                    true
                } else {
                    false
                }
            });
            let got = slot.stop();
            let entered = burst.join().unwrap();
            assert!(!slot.enter(), "a stopped ring is not entered");
            assert!(slot.config().is_none());
            assert!(
                (entered && got == Some(9)) || (!entered && got == Some(7)),
                "entered {entered}, stop returned {got:?}"
            );
        });
    }

    /// A restart while a burst runs on the old configuration: the burst leaves without
    /// stopping the new one, and the next burst sees the new generation.
    #[test]
    fn loom_restart_while_a_burst_runs() {
        loom::model(|| {
            let slot = Arc::new(RingSlot::default());
            slot.start(cfg(1));
            let g1 = slot.generation();
            let q = slot.clone();
            let burst = loom::thread::spawn(move || {
                if q.enter() {
                    q.leave(3);
                }
            });
            slot.start(cfg(5));
            burst.join().unwrap();
            assert!(slot.enter(), "running after the restart");
            assert_ne!(slot.generation(), g1);
            assert_eq!(slot.config().unwrap().base, 5);
            slot.leave(5);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::GuestMemory;
    use std::sync::Arc;

    fn cfg(index: u16, base: u16) -> VringConfig {
        VringConfig {
            index,
            size: 256,
            base,
            addrs: Default::default(),
            features: 0,
            mem: Arc::new(GuestMemory::default()),
            call: None,
            kick: None,
            log: None,
        }
    }

    #[test]
    fn a_ring_runs_between_start_and_stop() {
        let s = Shared::new(1);
        let r = s.ring(1).unwrap();
        assert!(!r.enter(), "stopped until started");
        assert_eq!(s.stop(1), None, "not running");
        s.start(cfg(1, 7));
        let g = r.generation();
        assert!(r.enter());
        assert!(!r.enter(), "one burst at a time");
        assert_eq!(r.config().unwrap().base, 7);
        r.leave(42);
        assert_eq!(s.stop(1), Some(42));
        assert!(!r.enter() && r.config().is_none());
        s.start(cfg(1, 3));
        assert_ne!(r.generation(), g, "a new configuration is a new generation");
        assert_eq!(s.stop(1), Some(3), "never entered: the base");
        assert_eq!(s.stop(9), None, "no such ring");
        s.start(cfg(9, 0));
        assert!(s.ring(9).is_none());
    }

    #[test]
    fn stop_waits_for_the_burst() {
        let s = Arc::new(Shared::new(1));
        s.start(cfg(0, 0));
        assert!(s.ring(0).unwrap().enter());
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.stop(0));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished(), "stop waits while a burst holds the ring");
        s.ring(0).unwrap().leave(5);
        assert_eq!(t.join().unwrap(), Some(5));
    }
}
