//! Sleeping until traffic comes: rx interrupts and the adaptive poll loop.
//!
//! A PMD whose queue can wake a thread implements [`crate::ethdev::RxQueue::intr_enable`],
//! `intr_disable` and `intr_fd`: a descriptor that becomes readable when a packet arrives
//! while the queue is armed (a socket's own readability, an eventfd a peer or the kernel
//! signals, an MSI-X vector's eventfd). Applications use them through
//! [`crate::ethdev::RxQueueHandle`], or let an [`IdleSleeper`] do it:
//!
//! ```text
//! loop {
//!     let got = poll every queue once;
//!     if sleeper.after_pass(got) {          // no packet for `idle` µs
//!         sleeper.sleep(&mut queues);       // arm all, re-check, wait, disarm
//!     }
//! }
//! ```
//!
//! No lost wake-up: arming is "enable, then look at the ring again" inside the PMD
//! ([`Armed::Ready`] when something came in between), with the barrier the ring's
//! protocol pairs with the producer's; a packet that arrives after that makes the
//! descriptor readable, and epoll is level-triggered. The sleep also ends on a stop
//! request ([`crate::lcore::stop_fd`]) and after [`AdaptiveConf::max_sleep`] at the latest,
//! so a queue whose source changed while it slept (a peer that reconnected) is re-armed
//! on its new descriptor. After such a timeout the idle stretch goes on: one pass, and it
//! sleeps again. An interrupt that keeps firing without packets is counted
//! ([`SleepStats::spurious`]) and throttled: after [`SPURIOUS_LIMIT`] such wakes in a row
//! the sleeper waits a millisecond before arming again.

use crate::ethdev::RxQueueHandle;
use crate::unix::Epoll;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

pub use crate::ethdev::{Armed, IntrError};

/// Wakes in a row without a packet after which the sleeper throttles.
pub const SPURIOUS_LIMIT: u32 = 8;
/// The pause of a throttled sleeper before it arms again.
const THROTTLE: Duration = Duration::from_millis(1);
/// The epoll token of the stop eventfd (queues use their index).
const STOP_TOKEN: u64 = u64::MAX;
/// The epoll token of the link interrupts watched ([`IdleSleeper::watch_link`]).
const LINK_TOKEN: u64 = u64::MAX - 1;
/// Most queues one sleeper arms (one epoll token each).
pub const MAX_QUEUES: usize = 64;

/// When the adaptive loop sleeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveConf {
    /// How long the queues must have received nothing before the lcore sleeps. Shorter
    /// saves more CPU at low rates and costs a wake-up (tens of µs) per packet that finds
    /// the lcore asleep; traffic with gaps shorter than this never sleeps.
    pub idle: Duration,
    /// Longest sleep; the loop then polls once and sleeps again.
    pub max_sleep: Duration,
}

impl Default for AdaptiveConf {
    /// 300 µs without a packet (l3fwd-power's suspend threshold), at most 100 ms asleep.
    fn default() -> Self {
        AdaptiveConf {
            idle: Duration::from_micros(300),
            max_sleep: Duration::from_millis(100),
        }
    }
}

/// What an [`IdleSleeper`] did, for the application's final statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SleepStats {
    /// Sleeps begun (every queue armed, nothing waiting).
    pub sleeps: u64,
    /// Sleeps ended by a queue's interrupt.
    pub intr_wakes: u64,
    /// Sleeps that reached `max_sleep`.
    pub timeouts: u64,
    /// Arming that found packets already waiting (the race the re-check closes).
    pub ready_at_arm: u64,
    /// Interrupt wakes after which the queues had nothing.
    pub spurious: u64,
    /// Pauses taken because interrupts kept firing without packets.
    pub throttled: u64,
    /// Sleeps ended by a port's link interrupt ([`IdleSleeper::watch_link`]).
    pub link_wakes: u64,
}

impl std::fmt::Display for SleepStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sleeps, {} woken by rx interrupt, {} timeouts, {} found packets when arming, \
             {} spurious wakes, {} throttled, {} woken by a link change",
            self.sleeps,
            self.intr_wakes,
            self.timeouts,
            self.ready_at_arm,
            self.spurious,
            self.throttled,
            self.link_wakes
        )
    }
}

/// Why an lcore cannot sleep on its queues ([`IdleSleeper::for_queues`]): it polls.
#[derive(Debug, thiserror::Error)]
pub enum NoSleep {
    /// A queue's PMD has no rx interrupts.
    #[error("port {port} ({pmd}) has no rx interrupts")]
    NoIntr {
        /// The queue's port.
        port: crate::ethdev::PortId,
        /// Its PMD.
        pmd: &'static str,
    },
    /// The epoll set could not be made.
    #[error("no epoll set ({0})")]
    Epoll(#[from] io::Error),
}

/// What one [`IdleSleeper::sleep`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slept {
    /// Woke on an interrupt.
    Intr,
    /// Woke after `max_sleep`.
    Timeout,
    /// A stop was requested.
    Stop,
    /// A watched port's link interrupt fired ([`IdleSleeper::watch_link`]): the caller
    /// looks at its ports' links ([`crate::ethdev::Port::link_changed`]).
    Link,
    /// A queue had packets when armed: did not sleep.
    Ready,
    /// A queue has no interrupts (this queue index): the lcore polls, and never sleeps.
    Unsupported(usize),
}

/// The adaptive poll loop's state for one lcore: once its queues received nothing for
/// [`AdaptiveConf::idle`], arms every queue and sleeps.
#[derive(Debug)]
pub struct IdleSleeper {
    conf: AdaptiveConf,
    ep: Epoll,
    /// [`AdaptiveConf::idle`] in TSC ticks.
    idle_ticks: u64,
    /// TSC of the first empty pass of the current idle stretch (0: none yet).
    idle_since: u64,
    /// The last sleep ended on an interrupt and no packet came since.
    woke_by_intr: bool,
    /// The last sleep timed out: the idle stretch goes on, sleep again after one pass.
    resume: bool,
    /// The descriptor watched under each queue's token (-1: none), so arming does not
    /// re-register it every time; forgotten after a timeout, which covers a descriptor
    /// closed and its number reused (a peer that reconnected) at the cost of one
    /// `max_sleep`.
    watched: [RawFd; MAX_QUEUES],
    spurious_run: u32,
    /// A queue without interrupts: never sleep.
    poll_only: bool,
    stats: SleepStats,
}

impl IdleSleeper {
    /// A sleeper with its own epoll set, which also watches the stop request.
    pub fn new(conf: AdaptiveConf) -> io::Result<IdleSleeper> {
        let ep = Epoll::new()?;
        if let Some(fd) = crate::lcore::stop_fd() {
            ep.watch(fd, STOP_TOKEN)?;
        }
        Ok(IdleSleeper {
            idle_ticks: (conf.idle.as_nanos() * u128::from(crate::tsc::hz()) / 1_000_000_000)
                as u64,
            idle_since: 0,
            resume: false,
            watched: [-1; MAX_QUEUES],
            conf,
            ep,
            woke_by_intr: false,
            spurious_run: 0,
            poll_only: false,
            stats: SleepStats::default(),
        })
    }

    /// A sleeper for an lcore polling `queues`, if every one of them has rx interrupts
    /// (one without would starve while the others sleep).
    pub fn for_queues<Q: AsMut<RxQueueHandle>>(
        conf: AdaptiveConf,
        queues: &mut [Q],
    ) -> Result<IdleSleeper, NoSleep> {
        if let Some(q) = queues
            .iter_mut()
            .map(|q| q.as_mut())
            .find(|q| !q.has_intr())
        {
            return Err(NoSleep::NoIntr {
                port: q.port(),
                pmd: q.driver(),
            });
        }
        Ok(IdleSleeper::new(conf)?)
    }

    /// Also ends sleeps on `fd`, a port's link interrupt ([`crate::ethdev::Port::link_fd`]),
    /// watched edge-triggered: a sleep ends once per interrupt ([`Slept::Link`]), and
    /// acknowledging it is left to [`crate::ethdev::Port::link_changed`]. For the lcore
    /// that prints or acts on link changes.
    pub fn watch_link(&mut self, fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
        self.ep.watch_edge(fd, LINK_TOKEN).map(drop)
    }

    /// [`IdleSleeper::watch_link`] for each port of `ids` (indexes into `ports`) that has a
    /// link interrupt; returns the ports whose descriptor could not be watched, with why
    /// (their links are left to the caller's periodic look).
    pub fn watch_links(
        &mut self,
        ports: &[crate::ethdev::Port],
        ids: &[crate::ethdev::PortId],
    ) -> Vec<(crate::ethdev::PortId, io::Error)> {
        ids.iter()
            .filter_map(|&p| {
                let fd = ports.get(usize::from(p))?.link_fd()?;
                self.watch_link(fd).err().map(|e| (p, e))
            })
            .collect()
    }

    /// Records one pass over the queues that received `got` packets; true when it is
    /// time to [`IdleSleeper::sleep`] (nothing came for [`AdaptiveConf::idle`]). Reads
    /// the TSC on empty passes only.
    #[inline(always)]
    pub fn after_pass(&mut self, got: usize) -> bool {
        if got > 0 {
            self.idle_since = 0;
            self.woke_by_intr = false;
            self.resume = false;
            self.spurious_run = 0;
            return false;
        }
        if self.poll_only {
            return false;
        }
        if self.resume {
            return true;
        }
        let now = crate::tsc::rdtsc();
        if self.idle_since == 0 {
            self.idle_since = now;
        }
        now.wrapping_sub(self.idle_since) >= self.idle_ticks
    }

    /// What this sleeper did so far.
    pub fn stats(&self) -> SleepStats {
        self.stats
    }

    /// Arms every queue of `queues` (at most [`MAX_QUEUES`]) and sleeps until one's
    /// interrupt fires, a stop is requested or `max_sleep` passes; then disarms them all.
    /// Does not sleep if a queue had packets when armed, or if one has no interrupts
    /// (then it never sleeps again: the lcore polls).
    pub fn sleep<Q: AsMut<RxQueueHandle>>(&mut self, queues: &mut [Q]) -> io::Result<Slept> {
        self.idle_since = 0;
        self.resume = false;
        if self.woke_by_intr {
            self.stats.spurious += 1;
            self.spurious_run += 1;
            if self.spurious_run >= SPURIOUS_LIMIT {
                self.stats.throttled += 1;
                std::thread::sleep(THROTTLE);
            }
        }
        self.woke_by_intr = false;
        let n = queues.len().min(MAX_QUEUES);
        let queues = &mut queues[..n];
        let mut armed = 0;
        let mut outcome = None;
        for (i, q) in queues.iter_mut().enumerate() {
            let q = q.as_mut();
            match q.intr_enable_raw() {
                Ok(Armed::Sleep) => {
                    armed += 1;
                    if let Some(fd) = q.intr_fd() {
                        let raw = fd.as_raw_fd();
                        if self.watched[i] != raw {
                            if let Err(e) = self.ep.watch(fd, i as u64) {
                                outcome = Some(Err(e));
                                break;
                            }
                            self.watched[i] = raw;
                        }
                    }
                }
                Ok(Armed::Ready) => {
                    armed += 1;
                    self.stats.ready_at_arm += 1;
                    outcome = Some(Ok(Slept::Ready));
                    break;
                }
                Err(IntrError::Unsupported) => {
                    self.poll_only = true;
                    outcome = Some(Ok(Slept::Unsupported(i)));
                    break;
                }
                Err(IntrError::Io(e)) => {
                    outcome = Some(Err(e));
                    break;
                }
            }
        }
        let outcome = match outcome {
            Some(o) => o,
            None => self.wait(),
        };
        for q in queues[..armed].iter_mut() {
            q.as_mut().intr_disable();
        }
        outcome
    }

    /// The wait itself, every queue armed.
    fn wait(&mut self) -> io::Result<Slept> {
        if crate::lcore::stop_requested() {
            return Ok(Slept::Stop);
        }
        self.stats.sleeps += 1;
        let mut tokens = [0u64; 8];
        let n = self.ep.wait(&mut tokens, Some(self.conf.max_sleep))?;
        if tokens[..n].contains(&STOP_TOKEN) || crate::lcore::stop_requested() {
            return Ok(Slept::Stop);
        }
        let tokens = &tokens[..n];
        if !tokens.is_empty() && tokens.iter().all(|&t| t == LINK_TOKEN) {
            self.stats.link_wakes += 1;
            // Not traffic: as after a timeout, one pass and back to sleep.
            self.resume = true;
            return Ok(Slept::Link);
        }
        if n == 0 {
            self.stats.timeouts += 1;
            self.resume = true;
            self.watched.fill(-1);
            return Ok(Slept::Timeout);
        }
        self.stats.intr_wakes += 1;
        self.woke_by_intr = true;
        Ok(Slept::Intr)
    }
}

impl AsMut<RxQueueHandle> for RxQueueHandle {
    fn as_mut(&mut self) -> &mut RxQueueHandle {
        self
    }
}
