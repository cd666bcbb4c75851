//! Lcores: threads pinned to CPUs, each with a unique lcore id, and a cooperative stop flag;
//! the lcore lists (`-l 0-3`, `--lcores 0@2,1`) that name them, and the CPUs they may use.
//!
//! The lcore id of the running thread is what per-lcore structures (mempool caches) are
//! indexed by. An id is held by at most one live thread at a time: it is claimed before the
//! thread starts and released when the thread's [`LcoreGuard`] drops.

use crate::error::{Error, LcoreError, Result};
use std::cell::Cell;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Once, OnceLock};
use std::thread::JoinHandle;

/// The largest number of lcores (ids `0..MAX_LCORE`).
pub const MAX_LCORE: usize = 128;
/// Largest lcore id accepted in an lcore list.
pub const MAX_LCORE_ID: u32 = MAX_LCORE as u32 - 1;
/// Largest CPU number accepted on the right of `N@C` (Linux `CPU_SETSIZE` - 1).
pub const MAX_CPU_ID: u32 = 1023;

/// Sentinel for "this thread is not an lcore".
const NO_LCORE: u32 = u32::MAX;

#[cfg(not(loom))]
thread_local! {
    static LCORE_ID: Cell<u32> = const { Cell::new(NO_LCORE) };
}
// loom runs its model threads on one OS thread; its thread-locals are per model thread.
#[cfg(loom)]
loom::thread_local! {
    static LCORE_ID: Cell<u32> = Cell::new(NO_LCORE);
}

static CLAIMED: [AtomicBool; MAX_LCORE] = [const { AtomicBool::new(false) }; MAX_LCORE];
static STOP: AtomicBool = AtomicBool::new(false);
static SIGNALS: AtomicU32 = AtomicU32::new(0);
/// The stop eventfd ([`stop_fd`]), created on first use.
static STOP_EVENT: OnceLock<Option<OwnedFd>> = OnceLock::new();
/// Its number once created (-1 before), for the signal handler, which may not touch the
/// `OnceLock`.
static STOP_FD: AtomicI32 = AtomicI32::new(-1);

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
    let slot = CLAIMED
        .get(id as usize)
        .ok_or_else(|| Error::lcore(id, LcoreError::IdOutOfRange { max: MAX_LCORE }))?;
    slot.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .map(|_| ())
        .map_err(|_| Error::lcore(id, LcoreError::InUse))
}

/// Makes the calling thread lcore `id`, until the returned guard is dropped.
///
/// Fails if `id` is out of range, already held by another thread, or if this thread
/// already is an lcore.
pub fn register_current_thread(id: u32) -> Result<LcoreGuard> {
    if let Some(current) = current() {
        return Err(Error::lcore(id, LcoreError::ThreadAlreadyLcore { current }));
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

/// How long [`idle_until_stop`] sleeps between two looks at the clock: short enough for a
/// prompt stop and on-time reports, long enough that an idle main lcore, which may share
/// its CPU with a forwarding thread (its own process's or a peer's), wakes 20 times a
/// second rather than hundreds.
pub const IDLE_TICK: std::time::Duration = std::time::Duration::from_millis(50);

/// The main lcore's loop while it forwards nothing: calls `tick` with the TSC every
/// [`IDLE_TICK`] until a stop is requested (which wakes it), or `tick` returns true (then
/// it requests the stop itself). [`idle_until_stop_or`] with no other event.
pub fn idle_until_stop(mut tick: impl FnMut(u64) -> bool) {
    idle_until_stop_or(&[], |now, _| tick(now));
}

/// [`idle_until_stop`] that also wakes when one of `events` fires (ports' link
/// interrupts, [`crate::ethdev::Port::link_fd`], watched edge-triggered): `tick` gets the
/// TSC and whether an event woke it, so a link change is acted on at once rather than at
/// the next [`IDLE_TICK`]. The stop request wakes it too.
pub fn idle_until_stop_or(
    events: &[std::os::fd::BorrowedFd<'_>],
    mut tick: impl FnMut(u64, bool) -> bool,
) {
    const EVENT: u64 = 0;
    const STOP: u64 = 1;
    let ep = crate::unix::Epoll::new().and_then(|ep| {
        for fd in events {
            ep.watch_edge(*fd, EVENT)?;
        }
        if let Some(fd) = stop_fd() {
            ep.watch(fd, STOP)?;
        }
        Ok(ep)
    });
    let mut fired = false;
    while !stop_requested() {
        if tick(crate::tsc::rdtsc(), fired) {
            request_stop();
            return;
        }
        fired = match &ep {
            Ok(ep) => {
                let mut tokens = [0u64; 4];
                let n = ep.wait(&mut tokens, Some(IDLE_TICK)).unwrap_or(0);
                tokens[..n].contains(&EVENT)
            }
            Err(_) => {
                std::thread::sleep(IDLE_TICK);
                false
            }
        };
    }
}

/// Asks every lcore loop to stop, and wakes the loops sleeping on [`stop_fd`].
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
    ring_stop_fd();
}

/// Signals the stop eventfd if it exists. Async-signal-safe: an atomic load and write(2).
fn ring_stop_fd() {
    let fd = STOP_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one = 1u64;
        // SAFETY: `fd` is the stop eventfd, which lives as long as the process (a static
        // that is never dropped); the kernel reads the 8 bytes of a live u64. A full count
        // (EAGAIN) already means "stop".
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

/// A descriptor that becomes readable once a stop is requested (by [`request_stop`] or a
/// signal handler of [`install_signal_handlers`]), for lcores that sleep in a wait on
/// descriptors ([`crate::intr`]). `None` if no eventfd could be created (the process is
/// out of descriptors): such a sleeper must wake on a timeout to look at
/// [`stop_requested`].
pub fn stop_fd() -> Option<BorrowedFd<'static>> {
    STOP_EVENT
        .get_or_init(|| {
            let fd = crate::unix::eventfd().ok()?;
            STOP_FD.store(fd.as_raw_fd(), Ordering::SeqCst);
            // A stop requested before the number was published did not ring it.
            if STOP.load(Ordering::SeqCst) {
                let _ = crate::unix::eventfd_signal(fd.as_fd());
            }
            Some(fd)
        })
        .as_ref()
        .map(|fd| fd.as_fd())
}

/// Clears the stop flag (for applications that run several phases).
pub fn clear_stop() {
    STOP.store(false, Ordering::SeqCst);
    SIGNALS.store(0, Ordering::Relaxed);
    if let Some(Some(fd)) = STOP_EVENT.get() {
        crate::unix::eventfd_drain(fd.as_fd());
    }
}

/// Installs SIGINT and SIGTERM handlers that set the stop flag. A third signal terminates
/// the process at once (exit code 130), so a stuck application can always be interrupted.
/// (Not the second: `timeout` and shells deliver one signal twice, to the process and to
/// its group.) Idempotent.
pub fn install_signal_handlers() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        // Created here, before any handler can run, so the handler only reads its number.
        let _ = stop_fd();
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // SAFETY: the handler only loads/stores atomics, writes to an eventfd and
            // calls `_exit`, all of which are async-signal-safe.
            let r = unsafe {
                signal_hook::low_level::register(sig, || {
                    STOP.store(true, Ordering::SeqCst);
                    ring_stop_fd();
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

/// A logical core: an EAL worker id pinned to a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lcore {
    /// Lcore id (0..=[`MAX_LCORE_ID`]).
    pub id: u32,
    /// CPU the lcore's thread is pinned to.
    pub cpu: u32,
}

/// One lcore per available CPU, id == cpu, capped at [`MAX_LCORE`].
pub fn default_lcores() -> Vec<Lcore> {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let n = u32::try_from(n).unwrap_or(u32::MAX).min(MAX_LCORE_ID + 1);
    (0..n).map(|id| Lcore { id, cpu: id }).collect()
}

/// Parses a non-empty string of ASCII digits as `u32`, with a readable error.
pub(crate) fn parse_number(s: &str) -> std::result::Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{s}' is not a non-negative decimal number"));
    }
    s.parse().map_err(|_| format!("number '{s}' is too large"))
}

/// Parses an lcore id and checks it against [`MAX_LCORE_ID`].
fn parse_lcore_id(s: &str) -> std::result::Result<u32, String> {
    let too_big = || format!("lcore id '{s}' exceeds the maximum lcore id {MAX_LCORE_ID}");
    let id = parse_number(s).map_err(|e| {
        if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() {
            too_big()
        } else {
            e
        }
    })?;
    if id > MAX_LCORE_ID {
        return Err(too_big());
    }
    Ok(id)
}

/// Parses one lcore list entry: `N`, `N-M` or (if `allow_at`) `N@C`.
fn parse_lcore_entry(entry: &str, allow_at: bool) -> std::result::Result<Vec<Lcore>, String> {
    if entry.is_empty() {
        return Err("empty entry in lcore list (stray ',')".to_string());
    }
    if let Some((id, cpu)) = entry.split_once('@') {
        if !allow_at {
            return Err(format!(
                "'{entry}': -l does not support '@' CPU mapping; use --lcores for N@C"
            ));
        }
        if id.contains('-') {
            return Err(format!(
                "'{entry}': '@' maps a single lcore; write each lcore as N@C"
            ));
        }
        let id = parse_lcore_id(id)?;
        let cpu = parse_number(cpu)?;
        if cpu > MAX_CPU_ID {
            return Err(format!("CPU {cpu} exceeds the maximum CPU id {MAX_CPU_ID}"));
        }
        return Ok(vec![Lcore { id, cpu }]);
    }
    let (lo, hi) = match entry.split_once('-') {
        Some((lo, hi)) => (parse_lcore_id(lo)?, parse_lcore_id(hi)?),
        None => {
            let id = parse_lcore_id(entry)?;
            (id, id)
        }
    };
    if hi < lo {
        return Err(format!(
            "range '{entry}' is reversed; write it as {hi}-{lo}"
        ));
    }
    Ok((lo..=hi).map(|id| Lcore { id, cpu: id }).collect())
}

/// Parses an lcore list (`-l` syntax: `N` and `N-M`, comma-separated; with `allow_at`,
/// `--lcores` syntax, which adds `N@C`), rejecting duplicates, and sorts it by id. The
/// error says what is wrong with the list.
pub fn parse_lcore_list(list: &str, allow_at: bool) -> std::result::Result<Vec<Lcore>, String> {
    if list.is_empty() {
        return Err("the lcore list is empty; expected e.g. 0-3 or 0,2,4".to_string());
    }
    let mut lcores: Vec<Lcore> = Vec::new();
    for entry in list.split(',') {
        for lcore in parse_lcore_entry(entry, allow_at)? {
            if lcores.iter().any(|l| l.id == lcore.id) {
                return Err(format!("lcore {} is listed more than once", lcore.id));
            }
            lcores.push(lcore);
        }
    }
    lcores.sort();
    Ok(lcores)
}

/// The online CPUs, from `/sys/devices/system/cpu/online` (empty if unreadable).
pub fn online_cpus() -> Vec<u32> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    parse_cpu_list(&text)
}

/// Parses the kernel's CPU list format (`0-3,8,10-11`), skipping entries it cannot read.
fn parse_cpu_list(text: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let mut it = part.splitn(2, '-');
        let a = it.next().and_then(|v| v.parse::<u32>().ok());
        let b = it.next().and_then(|v| v.parse::<u32>().ok()).or(a);
        if let (Some(a), Some(b)) = (a, b) {
            cpus.extend(a..=b.min(a + 4096));
        }
    }
    cpus
}

/// Fails for the first lcore whose CPU is not online (passes when the online CPUs cannot
/// be read).
pub fn check_online(lcores: &[Lcore]) -> Result<()> {
    let online = online_cpus();
    if online.is_empty() {
        return Ok(());
    }
    match lcores.iter().find(|l| !online.contains(&l.cpu)) {
        Some(l) => Err(Error::lcore(
            l.id,
            LcoreError::CpuOffline { cpu: l.cpu, online },
        )),
        None => Ok(()),
    }
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

    #[test]
    fn cpu_check_names_the_bad_cpu() {
        let err = check_online(&[Lcore { id: 0, cpu: 4000 }])
            .unwrap_err()
            .to_string();
        assert!(err.contains("CPU 4000 is not online"), "{err}");
        assert!(check_online(&[Lcore { id: 0, cpu: 0 }]).is_ok());
    }

    #[test]
    fn reads_the_kernel_cpu_list() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), [0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list(""), Vec::<u32>::new());
        assert_eq!(parse_cpu_list("x,2"), [2]);
    }

    #[test]
    fn lcore_lists() {
        let l = parse_lcore_list("7,2-3,0", false).unwrap();
        assert_eq!(l.iter().map(|l| l.id).collect::<Vec<_>>(), [0, 2, 3, 7]);
        assert!(l.iter().all(|l| l.id == l.cpu));
        let l = parse_lcore_list("1@4,0", true).unwrap();
        assert_eq!(l, [Lcore { id: 0, cpu: 0 }, Lcore { id: 1, cpu: 4 }]);
        for (bad, allow_at) in [("", false), ("0@1", false), ("3-1", false), ("0,0", false)] {
            assert!(parse_lcore_list(bad, allow_at).is_err(), "{bad}");
        }
        assert_eq!(default_lcores().first(), Some(&Lcore { id: 0, cpu: 0 }));
    }
}
