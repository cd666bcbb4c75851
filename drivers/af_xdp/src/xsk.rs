//! One XDP socket: its UMEM, its four rings, bound to one queue of the interface.
//!
//! Set-up order (the kernel's): register the UMEM (`XDP_UMEM_REG`), size the fill,
//! completion, rx and tx rings (`setsockopt`), read their layout (`XDP_MMAP_OFFSETS`) and
//! map them, put every rx frame on the fill ring, then bind with `XDP_USE_NEED_WAKEUP` and
//! `XDP_ZEROCOPY` or `XDP_COPY`. What the kernel chose is read back (`XDP_OPTIONS`).
//!
//! The rings are split by direction: [`RxRings`] (rx + fill) and [`TxRings`] (tx +
//! completion + the free tx frames). An rx and a tx queue each take their half out of the
//! socket for as long as they live, so each ring has exactly one user-space side.

use crate::ring::{ConsRing, ProdRing};
use crate::sys;
use crate::uapi::XdpDesc;
use crate::umem::Umem;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How to bind: the `mode=` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BindMode {
    /// `XDP_COPY`: the kernel copies between its buffers and the UMEM.
    Copy,
    /// `XDP_ZEROCOPY`: the driver DMAs straight into the UMEM; fails if it cannot.
    ZeroCopy,
    /// Zero-copy if the driver supports it, else copy.
    Auto,
}

/// Where setting up a socket failed, for the error message.
#[derive(Debug)]
pub(crate) struct XskError {
    /// The step (`XDP_UMEM_REG`, `bind`, ...).
    pub step: &'static str,
    /// The OS error.
    pub err: io::Error,
}

/// What a socket is created with.
#[derive(Clone, Debug)]
pub(crate) struct XskConfig {
    /// Interface index.
    pub ifindex: u32,
    /// Interface queue to bind to.
    pub queue: u32,
    /// Entries of each ring (a power of two); also the rx and the tx frame count.
    pub ring_size: u32,
    /// UMEM frame size (2048 or 4096).
    pub frame_size: u32,
    /// Bind mode.
    pub bind: BindMode,
    /// Preferred busy polling's NAPI budget; 0: off.
    pub busy_budget: u16,
}

/// The rx half: rx ring and fill ring.
pub(crate) struct RxRings {
    pub rx: ConsRing<XdpDesc>,
    pub fill: ProdRing<u64>,
    /// Received frames waiting for room on the fill ring (the kernel publishes its fill
    /// consumer index a moment after the rx producer index); never more than `rx_frames`.
    pub stash: Vec<u64>,
    /// The number of rx frames.
    pub rx_frames: usize,
}

impl RxRings {
    /// Puts `frames` (and any stashed before them) back on the fill ring in one update;
    /// what does not fit yet is stashed for the next call. Returns frames lost because
    /// the stash was full (only possible if the kernel handed a frame out twice).
    #[inline(always)]
    pub fn refill(&mut self, frames: &[u64]) -> u64 {
        let stashed = self.stash.len();
        let free = self.fill.free((stashed + frames.len()) as u32) as usize;
        let from_stash = free.min(stashed);
        let from_new = (free - from_stash).min(frames.len());
        for (i, &a) in self.stash[..from_stash]
            .iter()
            .chain(&frames[..from_new])
            .enumerate()
        {
            self.fill.set(i as u32, a);
        }
        self.fill.submit((from_stash + from_new) as u32);
        if from_stash > 0 {
            self.stash.drain(..from_stash);
        }
        let mut lost = 0;
        for &a in &frames[from_new..] {
            if self.stash.len() < self.rx_frames {
                self.stash.push(a);
            } else {
                lost += 1;
            }
        }
        lost
    }
}

/// The tx half: tx ring, completion ring, and the tx frames not in flight.
pub(crate) struct TxRings {
    pub tx: ProdRing<XdpDesc>,
    pub comp: ConsRing<u64>,
    /// Free tx frames (UMEM addresses); never holds more than the tx frame count.
    pub free: Vec<u64>,
    /// Per tx frame (in UMEM order): posted on the tx ring and not completed yet. Only
    /// such a frame may come back on the completion ring; a kernel completing a frame
    /// twice would otherwise put it on the free list twice, and two packets into it.
    pub sent: Vec<bool>,
}

/// Counters the queues keep for xstats (single writer each).
#[derive(Debug, Default)]
pub(crate) struct KickCounters {
    /// `recvfrom` wake-ups on the rx side.
    pub rx: AtomicU64,
    /// `sendto` wake-ups on the tx side.
    pub tx: AtomicU64,
    /// Busy-poll calls (`recvfrom`) on the rx side.
    pub busy_polls: AtomicU64,
}

impl KickCounters {
    /// Adds one to `c` (single writer: a plain load and store).
    #[inline(always)]
    pub fn bump(c: &AtomicU64) {
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

/// A bound XDP socket. Field order is drop order: the ring mappings go first, then the
/// socket, then the UMEM.
pub(crate) struct Xsk {
    rx: Mutex<Option<RxRings>>,
    tx: Mutex<Option<TxRings>>,
    fd: OwnedFd,
    umem: Umem,
    queue: u32,
    ring_size: u32,
    zero_copy: bool,
    /// The busy-polling budget the kernel took (0: busy polling off).
    busy_budget: u16,
    /// Wake-up counts.
    pub kicks: KickCounters,
}

impl std::fmt::Debug for Xsk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xsk")
            .field("fd", &self.fd)
            .field("queue", &self.queue)
            .field("ring_size", &self.ring_size)
            .field("zero_copy", &self.zero_copy)
            .finish()
    }
}

fn step(step: &'static str) -> impl FnOnce(io::Error) -> XskError {
    move |err| XskError { step, err }
}

impl Xsk {
    /// Creates, sets up and binds a socket over `umem`, which must hold `cfg.ring_size`
    /// rx frames followed by as many tx frames of `cfg.frame_size` bytes.
    pub fn open(cfg: &XskConfig, umem: Umem) -> Result<Xsk, XskError> {
        let n = cfg.ring_size;
        debug_assert_eq!(umem.rx_frames(), n);
        debug_assert_eq!(umem.len(), u64::from(2 * n) * u64::from(cfg.frame_size));
        let fd = sys::xdp_socket().map_err(step("socket(AF_XDP)"))?;
        let raw = sys::raw(&fd);
        let reg = libc::xdp_umem_reg {
            addr: umem.addr(),
            len: umem.len(),
            chunk_size: cfg.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        sys::setsockopt(raw, libc::SOL_XDP, libc::XDP_UMEM_REG, &reg)
            .map_err(step("XDP_UMEM_REG"))?;
        let size = n as libc::c_int;
        for (opt, name) in [
            (libc::XDP_UMEM_FILL_RING, "XDP_UMEM_FILL_RING"),
            (libc::XDP_UMEM_COMPLETION_RING, "XDP_UMEM_COMPLETION_RING"),
            (libc::XDP_RX_RING, "XDP_RX_RING"),
            (libc::XDP_TX_RING, "XDP_TX_RING"),
        ] {
            sys::setsockopt(raw, libc::SOL_XDP, opt, &size).map_err(step(name))?;
        }
        let off = sys::mmap_offsets(raw).map_err(step("XDP_MMAP_OFFSETS"))?;
        let mut fill = ProdRing::<u64>::new(raw, libc::XDP_UMEM_PGOFF_FILL_RING, &off.fr, n)
            .map_err(step("mmap of the fill ring"))?;
        let comp = ConsRing::<u64>::new(raw, libc::XDP_UMEM_PGOFF_COMPLETION_RING, &off.cr, n)
            .map_err(step("mmap of the completion ring"))?;
        // libc types the rx and tx ring offsets as `off_t` (both are positive).
        let rx = ConsRing::<XdpDesc>::new(raw, libc::XDP_PGOFF_RX_RING as u64, &off.rx, n)
            .map_err(step("mmap of the rx ring"))?;
        let tx = ProdRing::<XdpDesc>::new(raw, libc::XDP_PGOFF_TX_RING as u64, &off.tx, n)
            .map_err(step("mmap of the tx ring"))?;

        // Every rx frame starts on the fill ring, which holds exactly that many: it can
        // never overflow, however frames come back.
        let got = fill.free(n);
        for i in 0..got {
            fill.set(i, umem.frame_addr(i));
        }
        fill.submit(got);
        let mut free = Vec::with_capacity(n as usize);
        free.extend((0..n).rev().map(|i| umem.frame_addr(n + i)));

        bind(raw, cfg)?;
        let zero_copy = sys::xdp_zero_copy(raw).map_err(step("XDP_OPTIONS"))?;
        let busy_budget = prefer_busy_poll(raw, cfg);
        Ok(Xsk {
            rx: Mutex::new(Some(RxRings {
                rx,
                fill,
                stash: Vec::with_capacity(n as usize),
                rx_frames: n as usize,
            })),
            tx: Mutex::new(Some(TxRings {
                tx,
                comp,
                sent: vec![false; free.len()],
                free,
            })),
            fd,
            umem,
            queue: cfg.queue,
            ring_size: n,
            zero_copy,
            busy_budget,
            kicks: KickCounters::default(),
        })
    }

    /// The socket fd.
    #[inline(always)]
    pub fn fd(&self) -> RawFd {
        sys::raw(&self.fd)
    }

    /// The socket, to wait on (poll(2) reports it readable while the rx ring holds
    /// descriptors).
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }

    /// The packet memory.
    #[inline(always)]
    pub fn umem(&self) -> &Umem {
        &self.umem
    }

    /// Entries per ring.
    pub fn ring_size(&self) -> u32 {
        self.ring_size
    }

    /// Whether the kernel runs the socket in zero-copy mode.
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The preferred busy-polling budget in force (0: off).
    pub fn busy_budget(&self) -> u16 {
        self.busy_budget
    }

    /// Takes the rx half; `None` if an rx queue holds it.
    pub fn take_rx(&self) -> Option<RxRings> {
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Gives the rx half back.
    pub fn put_rx(&self, r: RxRings) {
        *self.rx.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    }

    /// Takes the tx half; `None` if a tx queue holds it.
    pub fn take_tx(&self) -> Option<TxRings> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Gives the tx half back.
    pub fn put_tx(&self, t: TxRings) {
        *self.tx.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
    }

    /// The kernel's counters for this socket.
    pub fn statistics(&self) -> io::Result<libc::xdp_statistics> {
        sys::xdp_statistics(self.fd())
    }
}

/// How long one busy-poll call may spin on the queue's NAPI context when it finds nothing
/// (`SO_BUSY_POLL`, microseconds; DPDK's value).
const BUSY_POLL_USECS: libc::c_int = 20;

/// Preferred busy polling (Linux 5.11+): the socket's NAPI context is polled by the
/// queue's own `recvfrom` calls, `cfg.busy_budget` packets at most per call, and the
/// kernel leaves it to them while they keep coming (with the interface's
/// `napi_defer_hard_irqs` and `gro_flush_timeout` set, its interrupts stay off meanwhile).
/// Returns the budget set, or 0 if it is off: asked so, or refused by the kernel (logged;
/// the socket then works as without it).
fn prefer_busy_poll(fd: RawFd, cfg: &XskConfig) -> u16 {
    if cfg.busy_budget == 0 {
        return 0;
    }
    let set = [
        (libc::SO_PREFER_BUSY_POLL, "SO_PREFER_BUSY_POLL", 1),
        (libc::SO_BUSY_POLL, "SO_BUSY_POLL", BUSY_POLL_USECS),
        (
            libc::SO_BUSY_POLL_BUDGET,
            "SO_BUSY_POLL_BUDGET",
            libc::c_int::from(cfg.busy_budget),
        ),
    ];
    for (opt, name, v) in set {
        if let Err(e) = sys::setsockopt(fd, libc::SOL_SOCKET, opt, &v) {
            tracing::warn!(
                "queue {}: preferred busy polling off: {name}: {e} (needs Linux 5.11 and \
                 CAP_NET_ADMIN; busy_budget=0 says so without this warning)",
                cfg.queue
            );
            for (opt, _, _) in set {
                let _ = sys::setsockopt(fd, libc::SOL_SOCKET, opt, &0 as &libc::c_int);
            }
            return 0;
        }
    }
    cfg.busy_budget
}

/// How long a bind that finds the queue busy is retried: the kernel releases a closed
/// socket's hold on its queue from a work item, a moment after the close.
const BUSY_PATIENCE: Duration = Duration::from_millis(500);

/// Binds per `cfg.bind`; in Auto mode tries zero-copy first and falls back to copy when
/// the driver cannot (the kernel leaves the socket unbound after a failed bind).
fn bind(fd: RawFd, cfg: &XskConfig) -> Result<(), XskError> {
    let deadline = Instant::now() + BUSY_PATIENCE;
    loop {
        match bind_once(fd, cfg) {
            Err(e) if e.err.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

fn bind_once(fd: RawFd, cfg: &XskConfig) -> Result<(), XskError> {
    let nw = libc::XDP_USE_NEED_WAKEUP;
    let attempt = |flags: u16, what: &'static str| {
        sys::bind_xdp(fd, cfg.ifindex, cfg.queue, flags | nw).map_err(step(what))
    };
    match cfg.bind {
        BindMode::Copy => attempt(libc::XDP_COPY, "bind (XDP_COPY)"),
        BindMode::ZeroCopy => attempt(libc::XDP_ZEROCOPY, "bind (XDP_ZEROCOPY)"),
        BindMode::Auto => match attempt(libc::XDP_ZEROCOPY, "bind (XDP_ZEROCOPY)") {
            Err(e) if matches!(e.err.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) => {
                tracing::debug!(
                    "queue {}: no zero-copy ({}); binding in copy mode",
                    cfg.queue,
                    e.err
                );
                attempt(libc::XDP_COPY, "bind (XDP_COPY)")
            }
            r => r,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::fake::{FakeKernel, OFF};
    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering;

    /// The kernel publishes its fill-ring consumer index after the rx producer index, so
    /// the fill ring can look full for a moment: frames wait in the stash, in order, and
    /// none is lost.
    #[test]
    fn refill_stashes_what_does_not_fit_yet() {
        let (kf, kr) = (FakeKernel::new(), FakeKernel::new());
        let mut r = RxRings {
            rx: ConsRing::new(kr.fd.as_raw_fd(), 0, &OFF, 8).unwrap(),
            fill: ProdRing::new(kf.fd.as_raw_fd(), 0, &OFF, 8).unwrap(),
            stash: Vec::with_capacity(8),
            rx_frames: 8,
        };
        // All 8 frames start on the fill ring.
        assert_eq!(r.refill(&[0, 1, 2, 3, 4, 5, 6, 7]), 0);
        assert!(r.stash.is_empty());
        // The kernel took 3 (rx) but has not published its consumer index yet.
        assert_eq!(r.refill(&[0, 1, 2]), 0);
        assert_eq!(r.stash, [0, 1, 2]);
        assert_eq!(r.refill(&[]), 0, "still no room");
        // Now it has: stashed frames go first, then new ones.
        kf.word(OFF.consumer).store(5, Ordering::Release);
        assert_eq!(r.refill(&[3, 4]), 0);
        assert!(r.stash.is_empty());
        assert_eq!(kf.word(OFF.producer).load(Ordering::Acquire), 13);
        assert_eq!(
            (8..13).map(|i| kf.slot(i % 8)).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        // A kernel handing out more frames than exist: the excess is lost, counted.
        assert_eq!(r.refill(&[9; 12]), 4);
        assert_eq!(r.stash.len(), 8);
    }
}
