//! One check for the numbers typed on command lines: every app's and tool's numeric
//! options go through these parsers (as clap value parsers), so a negative, NaN,
//! infinite, overflowing or meaningless value is refused at the edge with one sentence
//! that says what is expected, and never wraps, saturates or panics later (a duration
//! turned into TSC ticks, a period multiplied by the TSC rate).

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// Longest duration and period accepted, in seconds: one year. Times the TSC rate of
/// any machine (below 100 GHz) this stays far below `u64::MAX` ticks.
pub const MAX_SECONDS: u64 = 365 * 24 * 3600;

/// A port mask in hexadecimal (`0x3` or `3`: ports 0 and 1), selecting at least one port
/// (DPDK's `-p PORTMASK`).
pub fn portmask(s: &str) -> Result<u64, String> {
    let hex = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    match u64::from_str_radix(hex, 16) {
        Ok(0) => Err("portmask selects no port".into()),
        Ok(v) if !hex.starts_with('+') => Ok(v),
        _ => Err(format!(
            "invalid portmask {s:?}: expected hexadecimal like 0x3"
        )),
    }
}

/// The ports of `mask` (bit N: port N), in order.
pub fn ports_of(mask: u64) -> Vec<u16> {
    (0..64u16).filter(|p| mask >> p & 1 == 1).collect()
}

/// A whole number of type `T` in `range`, written in decimal digits only (no sign, no
/// fraction, no exponent).
pub fn whole<T>(s: &str, range: RangeInclusive<T>) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display + Copy,
{
    let t = s;
    let expected = || {
        format!(
            "expected a whole number in {}..={}",
            range.start(),
            range.end()
        )
    };
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a whole number: {}", expected()));
    }
    match t.parse::<T>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(format!("{t} is out of range: {}", expected())),
    }
}

/// A decimal number (fractions allowed) that is finite and in `min..=max`; `what` names
/// the unit in the message (`seconds`, `Mpps`).
fn finite(s: &str, min: f64, min_inclusive: bool, max: f64, what: &str) -> Result<f64, String> {
    let t = s;
    let bound = if min_inclusive { ">=" } else { ">" };
    let expected = format!("expected a number of {what} {bound} {min} and <= {max}");
    // Rust's float parser takes "inf", "NaN" and "1e3"; only plain decimals are numbers
    // a user means here.
    let plain = !t.is_empty()
        && t.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && t.bytes().filter(|&b| b == b'.').count() <= 1
        && t != ".";
    let v = if plain { t.parse::<f64>().ok() } else { None };
    match v {
        Some(v) if v.is_finite() && (v > min || (min_inclusive && v == min)) && v <= max => Ok(v),
        Some(_) => Err(format!("{t} is out of range: {expected}")),
        None => Err(format!("{s:?} is not a decimal number: {expected}")),
    }
}

/// A duration in seconds: a decimal number (fractions allowed) above 0 and at most
/// [`MAX_SECONDS`] (`--duration`).
pub fn seconds(s: &str) -> Result<f64, String> {
    finite(s, 0.0, false, MAX_SECONDS as f64, "seconds")
}

/// A statistics period in whole seconds, 0 (none) to [`MAX_SECONDS`].
pub fn period(s: &str) -> Result<u64, String> {
    whole(s, 0..=MAX_SECONDS)
}

/// A rate in Mpps: 0 (as fast as possible) up to `max`.
pub fn rate_mpps(s: &str, max: f64) -> Result<f64, String> {
    finite(s, 0.0, true, max, "Mpps")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portmasks_are_hexadecimal_and_select_a_port() {
        assert_eq!(portmask("0x3"), Ok(3));
        assert_eq!(portmask("f"), Ok(15));
        assert_eq!(portmask("0XA"), Ok(10));
        for bad in ["0", "0x0", "0xzz", "", "+3", "-1"] {
            assert!(portmask(bad).is_err(), "{bad:?}");
        }
        assert_eq!(ports_of(0b1011), [0, 1, 3]);
    }

    #[test]
    fn whole_numbers_in_range() {
        assert_eq!(whole::<u16>("64", 1..=64), Ok(64));
        assert_eq!(whole::<u32>("7", 0..=9), Ok(7));
        for bad in ["", " 7", "-1", "+1", "1.5", "1e3", "0x10", "seven"] {
            let e = whole::<u16>(bad, 0..=100).unwrap_err();
            assert!(
                e.contains("is not a whole number") && e.contains("0..=100"),
                "{e}"
            );
        }
        for bad in ["65", "0", "99999999999999999999999"] {
            let e = whole::<u16>(bad, 1..=64).unwrap_err();
            assert!(
                e.contains("is out of range: expected a whole number in 1..=64"),
                "{e}"
            );
        }
        // One past the type wraps nowhere.
        assert!(whole::<u16>("65536", 0..=u16::MAX).is_err());
        assert!(whole::<u32>("4294967296", 0..=u32::MAX).is_err());
    }

    #[test]
    fn seconds_are_finite_positive_and_bounded() {
        assert_eq!(seconds("2.5"), Ok(2.5));
        assert_eq!(seconds("0.1"), Ok(0.1));
        assert_eq!(seconds("31536000"), Ok(31_536_000.0));
        for bad in [
            "-1", "NaN", "nan", "inf", "-inf", "infinity", "1e400", "", ".", "1.2.3", "1s",
        ] {
            let e = seconds(bad).unwrap_err();
            assert!(e.contains("is not a decimal number"), "{bad}: {e}");
            assert!(
                e.ends_with("expected a number of seconds > 0 and <= 31536000"),
                "{e}"
            );
        }
        for bad in ["0", "0.0", "31536001", "99999999999999999999999999999"] {
            let e = seconds(bad).unwrap_err();
            assert!(e.contains("is out of range"), "{bad}: {e}");
        }
    }

    #[test]
    fn periods_and_rates() {
        assert_eq!(period("0"), Ok(0));
        assert_eq!(period("10"), Ok(10));
        assert!(period("-1").is_err());
        assert!(period("18446744073709551615").is_err());
        assert!(period("1.5").is_err());
        assert_eq!(rate_mpps("0", 1e6), Ok(0.0));
        assert_eq!(rate_mpps("0.05", 1e6), Ok(0.05));
        for bad in ["-0.5", "NaN", "inf", "2000000"] {
            assert!(rate_mpps(bad, 1e6).is_err(), "{bad}");
        }
    }
}
