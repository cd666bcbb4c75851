//! Bounded polling of device registers during init: every wait has a deadline and a
//! message that says what did not happen.

use pmd_core::{Error, Result};
use std::time::{Duration, Instant};

/// Polls `cond` every `step` until it returns true or `timeout` passes; on timeout returns
/// an error `"{what} did not happen within {timeout}"` from `driver`.
pub fn poll_until(
    driver: &'static str,
    what: &str,
    timeout: Duration,
    step: Duration,
    mut cond: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if cond()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::driver(
                driver,
                format!("{what} did not happen within {} ms", timeout.as_millis()),
            ));
        }
        std::thread::sleep(step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn succeeds_when_the_condition_turns_true_and_times_out_otherwise() {
        let mut n = 0;
        poll_until("t", "x", Duration::from_secs(1), Duration::ZERO, || {
            n += 1;
            Ok(n == 3)
        })
        .unwrap();
        assert_eq!(n, 3);
        let e = poll_until(
            "t",
            "reset completion",
            Duration::from_millis(5),
            Duration::from_millis(1),
            || Ok(false),
        )
        .unwrap_err();
        assert!(e
            .to_string()
            .contains("reset completion did not happen within 5 ms"));
    }
}
