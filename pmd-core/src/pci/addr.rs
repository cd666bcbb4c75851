//! PCI addresses in the `DDDD:BB:DD.F` form used by DPDK and Linux sysfs.

use std::fmt;
use std::str::FromStr;

/// Largest valid PCI device number (5 bits).
const MAX_DEVICE: u8 = 0x1f;
/// Largest valid PCI function number (3 bits).
const MAX_FUNCTION: u8 = 7;

/// A PCI address: domain, bus, device and function.
///
/// Parses from `DDDD:BB:DD.F` (domain may have 4 to 8 hex digits) or the short
/// form `BB:DD.F` (domain 0). Displays as `0000:03:00.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddr {
    /// PCI domain (segment).
    pub domain: u32,
    /// Bus number.
    pub bus: u8,
    /// Device number, at most 0x1f.
    pub device: u8,
    /// Function number, at most 7.
    pub function: u8,
}

/// Error returned when a string is not a valid PCI address.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("invalid PCI address \"{input}\": expected DDDD:BB:DD.F like 0000:03:00.0 ({reason})")]
pub struct PciAddrError {
    /// The text that failed to parse.
    pub input: String,
    /// What exactly was wrong with it.
    pub reason: &'static str,
}

impl PciAddr {
    /// Creates an address from its parts, checking the device and function ranges.
    pub fn new(domain: u32, bus: u8, device: u8, function: u8) -> Option<Self> {
        (device <= MAX_DEVICE && function <= MAX_FUNCTION).then_some(Self {
            domain,
            bus,
            device,
            function,
        })
    }
}

/// Parses exactly `min..=max` hex digits; anything else yields `None`.
fn parse_hex(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// Parses exactly two hex digits into a byte.
fn parse_hex_byte(s: &str) -> Option<u8> {
    parse_hex(s, 2, 2).and_then(|v| u8::try_from(v).ok())
}

impl FromStr for PciAddr {
    type Err = PciAddrError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| PciAddrError {
            input: input.to_string(),
            reason,
        };
        let (head, function) = input
            .rsplit_once('.')
            .ok_or_else(|| err("missing '.F' function part"))?;
        let parts: Vec<&str> = head.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [d, b, dev] => (
                parse_hex(d, 4, 8).ok_or_else(|| err("domain must be 4 to 8 hex digits"))?,
                *b,
                *dev,
            ),
            [b, dev] => (0, *b, *dev),
            _ => return Err(err("expected 2 or 3 ':'-separated fields before '.'")),
        };
        let bus = parse_hex_byte(bus).ok_or_else(|| err("bus must be 2 hex digits"))?;
        let device = parse_hex_byte(device)
            .filter(|d| *d <= MAX_DEVICE)
            .ok_or_else(|| err("device must be 2 hex digits, at most 1f"))?;
        let function = match function.as_bytes() {
            [b @ b'0'..=b'7'] => b - b'0',
            _ => return Err(err("function must be one digit 0-7")),
        };
        Ok(Self {
            domain,
            bus,
            device,
            function,
        })
    }
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<PciAddr, PciAddrError> {
        s.parse()
    }

    #[test]
    fn full_form() {
        let a = p("0000:03:00.0").unwrap();
        assert_eq!(a, PciAddr::new(0, 3, 0, 0).unwrap());
        assert_eq!(a.to_string(), "0000:03:00.0");
    }

    #[test]
    fn short_form_means_domain_zero() {
        let a = p("03:1f.7").unwrap();
        assert_eq!(a, PciAddr::new(0, 3, 0x1f, 7).unwrap());
        assert_eq!(a.to_string(), "0000:03:1f.7");
    }

    #[test]
    fn hex_is_case_insensitive_and_display_lowercase() {
        let a = p("ABCD:Ef:1A.3").unwrap();
        assert_eq!(a, PciAddr::new(0xabcd, 0xef, 0x1a, 3).unwrap());
        assert_eq!(a.to_string(), "abcd:ef:1a.3");
    }

    #[test]
    fn long_domain() {
        let a = p("12345678:00:00.1").unwrap();
        assert_eq!(a.domain, 0x1234_5678);
        assert_eq!(a.to_string(), "12345678:00:00.1");
        assert_eq!(p("10000:00:00.0").unwrap().domain, 0x10000);
        assert_eq!(p("ffffffff:ff:1f.7").unwrap().domain, u32::MAX);
    }

    #[test]
    fn round_trip() {
        for s in ["0000:00:00.0", "0001:ff:1f.7", "beef:80:0a.4"] {
            assert_eq!(p(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn ordering_is_by_domain_bus_device_function() {
        let mut v = [
            p("0001:00:00.0").unwrap(),
            p("0000:01:00.0").unwrap(),
            p("0000:00:01.0").unwrap(),
            p("0000:00:00.1").unwrap(),
        ];
        v.sort();
        let s: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(
            s,
            [
                "0000:00:00.1",
                "0000:00:01.0",
                "0000:01:00.0",
                "0001:00:00.0"
            ]
        );
    }

    #[test]
    fn error_message_names_input_and_form() {
        let e = p("0000:00:1f").unwrap_err();
        assert_eq!(e.input, "0000:00:1f");
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "invalid PCI address \"0000:00:1f\": expected DDDD:BB:DD.F like 0000:03:00.0"
            ),
            "{msg}"
        );
    }

    #[test]
    fn rejects_bad_inputs() {
        let bad = [
            "",
            ".",
            ":.",
            "0000:00:1f",
            "0000:00:20.0",
            "0000:00:ff.0",
            "0000:00:00.8",
            "0000:00:00.a",
            "0000:00:00.",
            "0000:00:00.00",
            "0000:00:00.-1",
            "000:00:00.0",
            "123456789:00:00.0",
            "0000:0:00.0",
            "0000:000:00.0",
            "0000:00:0.0",
            "0000:00:000.0",
            "0000:+0:00.0",
            "+000:00:00.0",
            "0000:00:00:00.0",
            "00:00",
            "g000:00:00.0",
            "0000:zz:00.0",
            " 0000:00:00.0",
            "0000:00:00.0 ",
            "0000:00:00.0,foo=1",
            "0000:00.00:0",
            "0000:00:00.٣",
            "é0000:00:00.0",
            "0000:é:00.0",
            "::.0",
        ];
        for s in bad {
            assert!(p(s).is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn new_checks_ranges() {
        assert!(PciAddr::new(0, 0, 0x20, 0).is_none());
        assert!(PciAddr::new(0, 0, 0, 8).is_none());
        assert!(PciAddr::new(0, 0xff, 0x1f, 7).is_some());
    }
}
