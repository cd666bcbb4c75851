//! State shared by the device, its control thread and its queues: one [`RingSlot`] per
//! virtqueue, through which the control thread hands a configured ring to the queue that
//! runs it and takes it back, and the link state.
//!
//! A slot is a three-state flag plus the ring's configuration. A queue *enters* a slot for
//! one burst (IDLE → BUSY, one compare-and-swap; it fails when the ring is stopped) and
//! leaves it (BUSY → IDLE, one release store, publishing the next available index it would
//! process). The control thread stops a ring by moving IDLE → STOPPED, waiting while a
//! burst holds it, so after `stop` returns no burst touches the ring until `start` hands
//! it out again; the index it returns is exact (GET_VRING_BASE). A new configuration
//! bumps the slot's generation, and the queue rebuilds its view of the ring at its next
//! burst. Queues keep the memory table alive through the configuration's `Arc`, so a
//! ring stopped or replaced never has its memory unmapped under a burst.

use crate::vring::{RingControl, VringConfig};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const IDLE: u8 = 0;
const BUSY: u8 = 1;
const STOPPED: u8 = 2;

/// How long `stop` waits for a burst to leave a ring before it goes on anyway (a burst
/// takes microseconds; only a queue thread that stopped mid-burst would hold it longer).
const STOP_WAIT: Duration = Duration::from_secs(1);

/// One virtqueue as the control thread and its queue share it.
#[derive(Debug)]
pub struct RingSlot {
    state: AtomicU8,
    gen: AtomicU64,
    /// The next available index the queue would process (u16, or packed with the wrap
    /// counter in bit 15), published when it leaves.
    last_avail: AtomicU32,
    cfg: Mutex<Option<VringConfig>>,
}

impl Default for RingSlot {
    fn default() -> RingSlot {
        RingSlot {
            state: AtomicU8::new(STOPPED),
            gen: AtomicU64::new(0),
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
        self.state.store(IDLE, Ordering::Release);
    }

    /// Data path: ends a burst that did not run the ring (it could not be built, or it
    /// is broken), leaving the published index as it was.
    #[inline(always)]
    pub fn leave_unchanged(&self) {
        self.state.store(IDLE, Ordering::Release);
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
                Ok(_) => break,
                Err(STOPPED) => return None,
                Err(_) if Instant::now() >= deadline => {
                    tracing::warn!("vhost: a queue held its ring for {STOP_WAIT:?}; stopping it");
                    self.state.store(STOPPED, Ordering::Release);
                    break;
                }
                Err(_) => std::thread::yield_now(),
            }
        }
        self.cfg.lock().unwrap_or_else(|e| e.into_inner()).take();
        Some(self.last_avail.load(Ordering::Relaxed) as u16)
    }
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
