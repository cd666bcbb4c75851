//! The two things that take time on the device: completing a software reset and
//! auto-negotiating the link. Both are deadlines checked lazily (on register accesses
//! and on each pass of the model thread), so no timer thread is needed.

use std::time::{Duration, Instant};

/// How long CTRL.RST takes to self-clear (datasheet 4.6.3.2 asks software to wait at
/// least 1 ms after setting it).
pub(crate) const RESET_TIME: Duration = Duration::from_millis(1);
/// How long auto-negotiation takes after AUTOC.Restart_AN (a model choice: short, so
/// tests do not wait; real links take up to hundreds of milliseconds).
pub(crate) const AN_TIME: Duration = Duration::from_millis(10);

/// Reset and link deadlines.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// When a pending software reset completes (None: none pending, or it hangs).
    pub reset_done_at: Option<Instant>,
    /// When auto-negotiation completes (None: not restarted since the last reset).
    pub an_done_at: Option<Instant>,
    /// The link is held down (the `link_down` fault or `set_link(false)`).
    pub forced_down: bool,
    /// The link state last reported in LINKS (a change raises EICR.LSC).
    pub reported_up: bool,
}

impl Timers {
    /// Whether the link is up at `now`.
    pub fn link_up(&self, now: Instant) -> bool {
        !self.forced_down && self.an_done_at.is_some_and(|t| now >= t)
    }

    /// Whether a deadline is still ahead (the model must keep checking).
    pub fn armed(&self, now: Instant) -> bool {
        self.reset_done_at.is_some() || self.an_done_at.is_some_and(|t| now < t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_needs_negotiation_and_no_force() {
        let now = Instant::now();
        let mut t = Timers::default();
        assert!(!t.link_up(now) && !t.armed(now));
        t.an_done_at = Some(now + AN_TIME);
        assert!(!t.link_up(now) && t.armed(now));
        assert!(t.link_up(now + AN_TIME) && !t.armed(now + AN_TIME));
        t.forced_down = true;
        assert!(!t.link_up(now + AN_TIME));
    }
}
