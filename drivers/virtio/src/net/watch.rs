//! The link of a device whose transport can reconnect (virtio-user): who notices the
//! device went away, and who hands a new one the rings.
//!
//! A [`Watcher`] thread runs while the port is started (as DPDK's interrupt thread
//! does for virtio-user's server mode), so an application that never asks for the link
//! still gets its back end back; `link_get` does the same check when it is called. Both
//! go through the transport's mutex, and count a loss once ([`LinkState`]).
//!
//! Where the rings resume: at the used index of each split ring, read from the ring
//! segment. Chains after it (posted receive buffers, frames not yet sent) are then
//! processed by the new device, so no buffer is lost. Packed rings keep their position
//! in their queues and are not resumed.

use crate::transport::{RingSetup, Transport};
use crate::virtqueue::RingAddrs;
use pmd_core::memory::Segment;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// The transport, shared by the device and its watcher.
pub(super) type SharedTransport = Arc<Mutex<Box<dyn Transport>>>;

/// Locks the transport (a panic elsewhere does not make it unusable).
pub(super) fn lock(t: &SharedTransport) -> MutexGuard<'_, Box<dyn Transport>> {
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// How often the watcher looks at the link.
const PERIOD: Duration = Duration::from_millis(100);

/// What the device and its watcher know of the link.
#[derive(Debug, Default)]
pub(super) struct LinkState {
    /// Times the device was found gone after it had been up (xstat `device_lost`).
    pub lost: AtomicU64,
    /// Whether the last look found the device there.
    seen_up: AtomicBool,
}

impl LinkState {
    /// Records what a look at the link found; counts an up-to-down change once.
    pub fn observe(&self, up: bool, name: &str) {
        if self.seen_up.swap(up, Ordering::AcqRel) && !up {
            self.lost.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(device = name, "the device went away: link down");
        }
    }

    /// Forgets the last look (at start: the link has not been seen yet).
    pub fn reset(&self) {
        self.seen_up.store(false, Ordering::Relaxed);
    }
}

/// The used index of the split ring at `addrs` (in this process's address space),
/// read from `seg`; `None` if the address is not inside it.
pub(super) fn used_index(seg: &Segment, addrs: &RingAddrs) -> Option<u16> {
    let off = addrs.used.checked_sub(seg.as_ptr() as u64)? + 2;
    if off % 2 != 0 || off + 2 > seg.len() as u64 {
        return None;
    }
    // SAFETY: 2 aligned bytes inside the ring segment, which the caller's `seg` keeps
    // mapped; the used index is only ever accessed atomically.
    let idx = unsafe { &*(seg.as_ptr().add(off as usize) as *const AtomicU16) };
    Some(idx.load(Ordering::Acquire))
}

/// The split rings the device ran, to resume on a new one.
#[derive(Clone, Debug)]
pub(super) struct Resumable {
    /// The ring segment.
    pub seg: Arc<Segment>,
    /// Every started ring, in queue order.
    pub rings: Vec<RingAddrs>,
}

impl Resumable {
    /// Lets the transport look for a new device and restart every ring on it where the
    /// old one left it; true when the link is up again.
    pub fn resume(&self, t: &dyn Transport, name: &str) -> bool {
        let mut setups = Vec::with_capacity(self.rings.len());
        for addrs in &self.rings {
            let Some(base) = used_index(&self.seg, addrs) else {
                return false;
            };
            setups.push(RingSetup {
                addrs: *addrs,
                base,
            });
        }
        match t.reconnect(&setups) {
            Ok(up) => up,
            Err(e) => {
                tracing::warn!(device = name, "a new device did not come up: {e}");
                false
            }
        }
    }
}

/// The watcher thread of a started port.
#[derive(Debug)]
pub(super) struct Watcher {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Starts looking at the link every [`PERIOD`].
    pub fn spawn(
        name: &str,
        transport: SharedTransport,
        what: Resumable,
        state: Arc<LinkState>,
    ) -> std::io::Result<Watcher> {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let dev = name.to_string();
        let handle = std::thread::Builder::new()
            .name(format!("{name}-link"))
            .spawn(move || {
                while !nap(PERIOD, &st) {
                    let t = lock(&transport);
                    let up = t.link_up() || what.resume(t.as_ref(), &dev);
                    state.observe(up, &dev);
                }
            })?;
        Ok(Watcher {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Watcher {
    /// Stops the thread and waits for it (a reconnect under way finishes first).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Sleeps up to `d`, returning early (true) when stopped.
fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let step = Duration::from_millis(10);
    let mut left = d;
    while !left.is_zero() {
        if stop.load(Ordering::Acquire) {
            return true;
        }
        std::thread::sleep(step.min(left));
        left = left.saturating_sub(step);
    }
    stop.load(Ordering::Acquire)
}
