//! Lcores: threads pinned to CPUs, each with a unique lcore id, and a cooperative stop flag.
//!
//! The lcore id of the running thread is what per-lcore structures (mempool caches) are
//! indexed by. An id is held by at most one live thread at a time: it is claimed before the
//! thread starts and released when the thread's [`LcoreGuard`] drops.

use crate::error::{Error, Result};
use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Once;
use std::thread::JoinHandle;

/// The largest number of lcores (ids `0..MAX_LCORE`).
pub const MAX_LCORE: usize = 128;

/// Sentinel for "this thread is not an lcore".
const NO_LCORE: u32 = u32::MAX;

thread_local! {
    static LCORE_ID: Cell<u32> = const { Cell::new(NO_LCORE) };
}

static CLAIMED: [AtomicBool; MAX_LCORE] = [const { AtomicBool::new(false) }; MAX_LCORE];
static STOP: AtomicBool = AtomicBool::new(false);
static SIGNALS: AtomicU32 = AtomicU32::new(0);

/// The lcore id of the calling thread, or `None` for a thread that is not an lcore.
#[inline(always)]
pub fn current() -> Option<u32> {
    let id = LCORE_ID.with(Cell::get);
    (id != NO_LCORE).then_some(id)
}

/// The raw lcore id of the calling thread (`u32::MAX` when it is not an lcore).
#[inline(always)]
pub(crate) fn current_raw() -> u32 {
    LCORE_ID.with(Cell::get)
}

/// Proof that the current thread holds an lcore id; releasing it on drop.
/// Not `Send`: it must be dropped on the thread that registered.
#[derive(Debug)]
pub struct LcoreGuard {
    id: u32,
    _not_send: PhantomData<*const ()>,
}

impl LcoreGuard {
    /// The lcore id held.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl Drop for LcoreGuard {
    fn drop(&mut self) {
        LCORE_ID.with(|c| c.set(NO_LCORE));
        CLAIMED[self.id as usize].store(false, Ordering::Release);
    }
}

fn claim(id: u32) -> Result<()> {
    let slot = CLAIMED.get(id as usize).ok_or_else(|| Error::Lcore {
        lcore: id,
        msg: format!("lcore ids must be below {MAX_LCORE}"),
    })?;
    slot.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .map(|_| ())
        .map_err(|_| Error::Lcore {
            lcore: id,
            msg: "already in use by another thread".into(),
        })
}

/// Makes the calling thread lcore `id`, until the returned guard is dropped.
///
/// Fails if `id` is out of range, already held by another thread, or if this thread
/// already is an lcore.
pub fn register_current_thread(id: u32) -> Result<LcoreGuard> {
    if let Some(cur) = current() {
        return Err(Error::Lcore {
            lcore: id,
            msg: format!("this thread already is lcore {cur}"),
        });
    }
    claim(id)?;
    LCORE_ID.with(|c| c.set(id));
    Ok(LcoreGuard {
        id,
        _not_send: PhantomData,
    })
}

/// Pins the calling thread to `cpu`. Returns false if the OS refused.
pub fn pin_current_thread(cpu: u32) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu as usize })
}

/// Starts a thread that runs `f` as lcore `id`, pinned to `cpu`.
///
/// The id is claimed before the thread starts, so a clash is reported here, not inside
/// the thread. The thread is named `lcore-<id>`.
pub fn spawn<F, R>(id: u32, cpu: u32, f: F) -> Result<JoinHandle<R>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    claim(id)?;
    let builder = std::thread::Builder::new().name(format!("lcore-{id}"));
    let spawned = builder.spawn(move || {
        LCORE_ID.with(|c| c.set(id));
        let _guard = LcoreGuard {
            id,
            _not_send: PhantomData,
        };
        if !pin_current_thread(cpu) {
            tracing::warn!(lcore = id, cpu, "could not pin lcore thread to its CPU");
        }
        f()
    });
    spawned.map_err(|e| {
        CLAIMED[id as usize].store(false, Ordering::Release);
        Error::io(format!("spawning lcore {id}"), e)
    })
}

/// True once a stop was requested (Ctrl-C, SIGTERM or [`request_stop`]).
/// Forwarding loops poll this once per iteration.
#[inline(always)]
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Asks every lcore loop to stop.
pub fn request_stop() {
    STOP.store(true, Ordering::Relaxed);
}

/// Clears the stop flag (for applications that run several phases).
pub fn clear_stop() {
    STOP.store(false, Ordering::Relaxed);
    SIGNALS.store(0, Ordering::Relaxed);
}

/// Installs SIGINT and SIGTERM handlers that set the stop flag. A third signal terminates
/// the process at once (exit code 130), so a stuck application can always be interrupted.
/// (Not the second: `timeout` and shells deliver one signal twice, to the process and to
/// its group.) Idempotent.
pub fn install_signal_handlers() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // SAFETY: the handler only loads/stores an atomic and calls `_exit`, both of
            // which are async-signal-safe.
            let r = unsafe {
                signal_hook::low_level::register(sig, || {
                    STOP.store(true, Ordering::Relaxed);
                    if SIGNALS.fetch_add(1, Ordering::Relaxed) >= 2 {
                        signal_hook::low_level::exit(130);
                    }
                })
            };
            if let Err(e) = r {
                result = Err(Error::io("installing signal handlers", e));
            }
        }
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_and_release() {
        std::thread::spawn(|| {
            assert_eq!(current(), None);
            let g = register_current_thread(100).unwrap();
            assert_eq!(current(), Some(100));
            assert!(register_current_thread(101).is_err(), "one id per thread");
            drop(g);
            assert_eq!(current(), None);
            let _g = register_current_thread(100).expect("id released on drop");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn spawned_thread_knows_its_id() {
        let h = spawn(111, 0, current).unwrap();
        assert_eq!(h.join().unwrap(), Some(111));
        assert!(register_current_thread(MAX_LCORE as u32).is_err());
    }

    #[test]
    fn spawn_reports_clash_synchronously() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let h = spawn(120, 0, move || {
            rx.recv().ok();
        })
        .unwrap();
        assert!(matches!(
            spawn(120, 0, || ()),
            Err(Error::Lcore { lcore: 120, .. })
        ));
        tx.send(()).unwrap();
        h.join().unwrap();
    }
}
