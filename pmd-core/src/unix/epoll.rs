//! Waiting on many descriptors at once (epoll(7)) and periodic timers as descriptors
//! (timerfd_create(2)): the system calls behind [`crate::intr`]. Each is a safe method;
//! the `unsafe` blocks they need are here.

use super::{check, owned_fd};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// An epoll instance (close-on-exec). Descriptors are watched level-triggered for
/// readability; each carries a caller's token that [`Epoll::wait`] hands back.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

/// What [`Epoll::watch`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watched {
    /// The descriptor was not watched before.
    Added,
    /// It was: only its token was replaced.
    Updated,
}

impl Epoll {
    /// A new, empty epoll instance.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers and returns a new descriptor.
        let fd = unsafe { owned_fd(libc::epoll_create1(libc::EPOLL_CLOEXEC))? };
        Ok(Epoll { fd })
    }

    fn ctl(&self, op: libc::c_int, fd: BorrowedFd<'_>, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a live epoll_event for the call; the kernel checks both fds.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd.as_raw_fd(), &mut ev) };
        check(rc).map(drop)
    }

    /// Watches `fd` for readability under `token`, or gives it the new token if it is
    /// already watched. A descriptor is dropped from the set by the kernel when its last
    /// copy closes, so watching again after a reconnect (same number, new file) adds it.
    pub fn watch(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<Watched> {
        self.watch_with(fd, token, libc::EPOLLIN as u32)
    }

    /// Watches `fd` edge-triggered under `token`: [`Epoll::wait`] reports it once per
    /// event (for an eventfd, once per write), not for as long as it stays readable. For
    /// a source whose acknowledgement belongs to someone else (a port's link interrupt,
    /// acknowledged by [`crate::ethdev::Port::link_changed`]), so the waiter does not spin.
    pub fn watch_edge(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<Watched> {
        self.watch_with(fd, token, (libc::EPOLLIN | libc::EPOLLET) as u32)
    }

    fn watch_with(&self, fd: BorrowedFd<'_>, token: u64, events: u32) -> io::Result<Watched> {
        match self.ctl(libc::EPOLL_CTL_ADD, fd, token, events) {
            Ok(()) => Ok(Watched::Added),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => self
                .ctl(libc::EPOLL_CTL_MOD, fd, token, events)
                .map(|()| Watched::Updated),
            Err(e) => Err(e),
        }
    }

    /// Stops watching `fd`; not watched is not an error.
    pub fn unwatch(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        match self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r,
        }
    }

    /// Waits up to `timeout` (`None`: until an event) for readable descriptors and writes
    /// the tokens of up to `tokens.len()` of them; returns how many (0 on timeout). A
    /// signal that interrupts the wait returns 0, as a timeout does, so the caller looks
    /// at its stop flag.
    pub fn wait(&self, tokens: &mut [u64], timeout: Option<Duration>) -> io::Result<usize> {
        const MAX: usize = 64;
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; MAX];
        let n = tokens.len().min(MAX);
        let ms = match timeout {
            None => -1,
            // Rounded up, so a short timeout does not become a busy loop of 0 ms waits.
            Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32,
        };
        // SAFETY: `evs` has room for `n <= MAX` events, written by the kernel.
        let rc = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), evs.as_mut_ptr(), n as i32, ms) };
        match check(rc) {
            Ok(k) => {
                let k = k as usize;
                for (t, e) in tokens.iter_mut().zip(&evs[..k]) {
                    *t = e.u64;
                }
                Ok(k)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// A periodic timer as a descriptor (CLOCK_MONOTONIC, non-blocking, close-on-exec):
/// readable once a period has passed, until [`Timer::ack`].
#[derive(Debug)]
pub struct Timer {
    fd: OwnedFd,
}

impl Timer {
    /// A timer that first fires after `period` and then every `period` (at least 1 µs).
    pub fn periodic(period: Duration) -> io::Result<Timer> {
        // SAFETY: timerfd_create takes no pointers and returns a new descriptor.
        let fd = unsafe {
            owned_fd(libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            ))?
        };
        let period = period.max(Duration::from_micros(1));
        let ts = libc::timespec {
            tv_sec: period.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(period.subsec_nanos() as i32),
        };
        let spec = libc::itimerspec {
            it_interval: ts,
            it_value: ts,
        };
        // SAFETY: `spec` is a live itimerspec; the old value is not asked for (null).
        let rc = unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        check(rc)?;
        Ok(Timer { fd })
    }

    /// The descriptor to watch.
    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// How many periods passed since the last call (0 if none): makes the descriptor
    /// unreadable until the next one.
    pub fn ack(&self) -> u64 {
        super::eventfd_drain(self.fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unix::{eventfd, eventfd_signal};
    use std::os::fd::AsFd;

    #[test]
    fn tokens_of_readable_descriptors_come_back() {
        let ep = Epoll::new().unwrap();
        let a = eventfd().unwrap();
        let b = eventfd().unwrap();
        assert_eq!(ep.watch(a.as_fd(), 7).unwrap(), Watched::Added);
        assert_eq!(ep.watch(b.as_fd(), 8).unwrap(), Watched::Added);
        assert_eq!(ep.watch(b.as_fd(), 9).unwrap(), Watched::Updated);
        let mut t = [0u64; 4];
        assert_eq!(ep.wait(&mut t, Some(Duration::ZERO)).unwrap(), 0);
        eventfd_signal(b.as_fd()).unwrap();
        assert_eq!(ep.wait(&mut t, Some(Duration::from_secs(1))).unwrap(), 1);
        assert_eq!(t[0], 9);
        // Level-triggered: still readable until drained.
        assert_eq!(ep.wait(&mut t, Some(Duration::ZERO)).unwrap(), 1);
        assert_eq!(crate::unix::eventfd_drain(b.as_fd()), 1);
        assert_eq!(ep.wait(&mut t, Some(Duration::ZERO)).unwrap(), 0);
        ep.unwatch(a.as_fd()).unwrap();
        ep.unwatch(a.as_fd()).unwrap();
        eventfd_signal(a.as_fd()).unwrap();
        assert_eq!(ep.wait(&mut t, Some(Duration::ZERO)).unwrap(), 0);
    }

    #[test]
    fn a_closed_descriptor_leaves_the_set() {
        let ep = Epoll::new().unwrap();
        let a = eventfd().unwrap();
        ep.watch(a.as_fd(), 1).unwrap();
        eventfd_signal(a.as_fd()).unwrap();
        drop(a);
        let mut t = [0u64; 4];
        assert_eq!(ep.wait(&mut t, Some(Duration::ZERO)).unwrap(), 0);
        // A new descriptor that may reuse the number is added, not "updated".
        let b = eventfd().unwrap();
        assert_eq!(ep.watch(b.as_fd(), 2).unwrap(), Watched::Added);
    }

    #[test]
    fn a_timer_fires_every_period() {
        let ep = Epoll::new().unwrap();
        let tm = Timer::periodic(Duration::from_millis(5)).unwrap();
        ep.watch(tm.fd(), 3).unwrap();
        let mut t = [0u64; 1];
        assert_eq!(ep.wait(&mut t, Some(Duration::from_secs(5))).unwrap(), 1);
        assert_eq!(t[0], 3);
        assert!(tm.ack() >= 1);
        assert_eq!(tm.ack(), 0);
    }
}
