//! Virtual device specifications (`--vdev net_null0,size=64,copy=1`) and the one typed
//! parser drivers read their arguments with.
//!
//! A driver takes a [`VdevSpec`], checks its keys with [`VdevSpec::check_known`], then
//! reads each argument through [`VdevSpec::get`]: a [`Devarg`] parses the value as the
//! type the driver wants (a 0/1 flag, yes/no, a switch, an integer in a range, one of
//! named choices, a non-empty text or path, or anything with [`FromStr`], such as a MAC
//! address) and reports a bad value as a [`DevargsError`] that names the device, the key
//! and the value.

use crate::error::{DevargsError, VdevSpecError};
use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;

/// A virtual device specification such as `net_null0,size=64,copy=1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VdevSpec {
    /// Device name, `[A-Za-z0-9_]+`, e.g. `net_null0`.
    pub name: String,
    /// `key=value` arguments in the order given.
    pub args: Vec<(String, String)>,
}

impl VdevSpec {
    /// The driver name: the device name without trailing digits (`net_null0` -> `net_null`).
    pub fn driver_prefix(&self) -> &str {
        self.name.trim_end_matches(|c: char| c.is_ascii_digit())
    }

    /// The value of argument `key`, if given.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Argument `key`, to be read as a typed value.
    pub fn get<'a>(&'a self, key: &'a str) -> Devarg<'a> {
        Devarg {
            vdev: &self.name,
            key,
            value: self.arg(key),
        }
    }

    /// Parses argument `key` as `T`; `Ok(None)` if it was not given.
    pub fn parse_arg<T>(&self, key: &str) -> Result<Option<T>, DevargsError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.get(key).parse()
    }

    /// Fails if any argument key is not in `known`, listing the unknown and known keys.
    pub fn check_known(&self, known: &[&str]) -> Result<(), DevargsError> {
        let unknown: Vec<String> = self
            .args
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(DevargsError::Unknown {
            vdev: self.name.clone(),
            unknown,
            known: known.iter().map(ToString::to_string).collect(),
        })
    }
}

/// True if `name` is a valid vdev name: non-empty `[A-Za-z0-9_]+`.
fn valid_vdev_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses one `key=value` vdev argument.
fn parse_vdev_arg(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        None if arg.is_empty() => Err("empty argument (stray ',')".to_string()),
        None => Err(format!("argument '{arg}' must be key=value")),
        Some(("", _)) => Err(format!("argument '{arg}' has an empty key")),
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
    }
}

impl FromStr for VdevSpec {
    type Err = VdevSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| VdevSpecError {
            spec: spec.to_string(),
            reason,
        };
        let mut parts = spec.split(',');
        let name = parts.next().unwrap_or_default();
        if !valid_vdev_name(name) {
            return Err(err(format!(
                "device name '{name}' must be non-empty and contain only A-Z, a-z, 0-9 and '_'; expected NAME[,key=value...]"
            )));
        }
        let mut args: Vec<(String, String)> = Vec::new();
        for part in parts {
            let (k, v) = parse_vdev_arg(part).map_err(&err)?;
            if args.iter().any(|(old, _)| *old == k) {
                return Err(err(format!("argument '{k}' given more than once")));
            }
            args.push((k, v));
        }
        Ok(Self {
            name: name.to_string(),
            args,
        })
    }
}

impl fmt::Display for VdevSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        self.args
            .iter()
            .try_for_each(|(k, v)| write!(f, ",{k}={v}"))
    }
}

/// One argument of a vdev, given or not, read as a typed value by its methods. Each
/// returns `Ok(None)` when the argument was not given, so a default is one
/// `unwrap_or` away.
#[derive(Debug, Clone, Copy)]
pub struct Devarg<'a> {
    vdev: &'a str,
    key: &'a str,
    value: Option<&'a str>,
}

impl<'a> Devarg<'a> {
    /// The value as typed, if given.
    pub fn value(&self) -> Option<&'a str> {
        self.value
    }

    /// The value parsed as `T` (a number, a MAC address, ...): a value that does not
    /// parse is [`DevargsError::Malformed`].
    pub fn parse<T>(&self) -> Result<Option<T>, DevargsError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        let Some(value) = self.value else {
            return Ok(None);
        };
        value
            .parse()
            .map(Some)
            .map_err(|e: T::Err| DevargsError::Malformed {
                vdev: self.vdev.to_string(),
                key: self.key.to_string(),
                value: value.to_string(),
                reason: e.to_string(),
            })
    }

    /// An integer within `range` ([`DevargsError::OutOfRange`] outside it).
    pub fn int_in<T>(&self, range: RangeInclusive<T>) -> Result<Option<T>, DevargsError>
    where
        T: FromStr + PartialOrd + fmt::Display,
        T::Err: fmt::Display,
    {
        match self.parse::<T>()? {
            Some(n) if !range.contains(&n) => Err(DevargsError::OutOfRange {
                vdev: self.vdev.to_string(),
                key: self.key.to_string(),
                value: self.value.unwrap_or_default().to_string(),
                range: format!("{}..={}", range.start(), range.end()),
            }),
            n => Ok(n),
        }
    }

    /// A flag written as the number `0` or `1`.
    pub fn flag(&self) -> Result<Option<bool>, DevargsError> {
        match self.parse::<u8>()? {
            None => Ok(None),
            Some(0) => Ok(Some(false)),
            Some(1) => Ok(Some(true)),
            Some(_) => Err(self.reject("use 0 or 1")),
        }
    }

    /// A flag written as `yes` or `no`.
    pub fn yes_no(&self) -> Result<Option<bool>, DevargsError> {
        match self.value {
            None => Ok(None),
            Some("yes") => Ok(Some(true)),
            Some("no") => Ok(Some(false)),
            Some(_) => Err(self.reject("use yes or no")),
        }
    }

    /// A switch: on when given bare (`key=`) or as `1`/`yes`/`true`, off as
    /// `0`/`no`/`false`.
    pub fn switch(&self) -> Result<Option<bool>, DevargsError> {
        match self.value {
            None => Ok(None),
            Some("" | "1" | "yes" | "true") => Ok(Some(true)),
            Some("0" | "no" | "false") => Ok(Some(false)),
            Some(_) => Err(self.reject(format!("use {0} or {0}=0|1", self.key))),
        }
    }

    /// One of named choices: each entry lists the names of one value (the first is the
    /// one error messages suggest).
    pub fn choice<T: Copy>(&self, choices: &[(&[&str], T)]) -> Result<Option<T>, DevargsError> {
        let Some(value) = self.value else {
            return Ok(None);
        };
        if let Some((_, v)) = choices.iter().find(|(names, _)| names.contains(&value)) {
            return Ok(Some(*v));
        }
        let names: Vec<&str> = choices
            .iter()
            .filter_map(|(names, _)| names.first().copied())
            .collect();
        let expected = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            Some((only, _)) => only.to_string(),
            None => "nothing".to_string(),
        };
        Err(self.reject(format!("use {expected}")))
    }

    /// A text that must not be empty when given (`hint` says what to give).
    pub fn text(&self, hint: &str) -> Result<Option<&'a str>, DevargsError> {
        match self.value {
            Some("") => Err(DevargsError::Empty {
                vdev: self.vdev.to_string(),
                key: self.key.to_string(),
                hint: hint.to_string(),
            }),
            v => Ok(v),
        }
    }

    /// A file path, which must not be empty when given.
    pub fn path(&self) -> Result<Option<PathBuf>, DevargsError> {
        Ok(self.text("name a file")?.map(PathBuf::from))
    }

    /// The error for this argument not being given (`hint` says what to give).
    pub fn missing(&self, hint: &str) -> DevargsError {
        DevargsError::Missing {
            vdev: self.vdev.to_string(),
            key: self.key.to_string(),
            hint: hint.to_string(),
        }
    }

    /// The error for a value the driver cannot use (`expected` says what to give).
    pub fn reject(&self, expected: impl Into<String>) -> DevargsError {
        DevargsError::Rejected {
            vdev: self.vdev.to_string(),
            key: self.key.to_string(),
            value: self.value.unwrap_or_default().to_string(),
            expected: expected.into(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn spec(s: &str) -> VdevSpec {
        s.parse().unwrap()
    }

    #[test]
    fn name_args_and_display() {
        let v = spec("net_null0,size=64,copy=1");
        assert_eq!(v.name, "net_null0");
        assert_eq!(v.driver_prefix(), "net_null");
        assert_eq!(v.arg("size"), Some("64"));
        assert_eq!(v.arg("copy"), Some("1"));
        assert_eq!(v.arg("nope"), None);
        assert_eq!(v.parse_arg::<u32>("size").unwrap(), Some(64));
        assert_eq!(v.parse_arg::<u32>("nope").unwrap(), None);
        assert!(v.check_known(&["size", "copy"]).is_ok());
        assert_eq!(v.to_string(), "net_null0,size=64,copy=1");
        assert_eq!(spec("net_tap1,iface=").arg("iface"), Some(""));
    }

    #[test]
    fn vdev_value_may_contain_equals() {
        let v: VdevSpec = "x,path=/a=b".parse().unwrap();
        assert_eq!(v.arg("path"), Some("/a=b"));
    }

    #[test]
    fn vdev_parse_arg_error() {
        let v: VdevSpec = "net_null0,size=big".parse().unwrap();
        let e = v.parse_arg::<u32>("size").unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("net_null0") && m.contains("size") && m.contains("big"),
            "{m}"
        );
    }

    #[test]
    fn vdev_check_known_error() {
        let v: VdevSpec = "net_null0,size=1,bogus=2,zzz=3".parse().unwrap();
        let e = v.check_known(&["size", "copy"]).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("'bogus', 'zzz'") && m.contains("'size', 'copy'"),
            "{m}"
        );
        let m = v.check_known(&[]).unwrap_err().to_string();
        assert!(m.contains("none"), "{m}");
    }

    /// Vdev specifications that are not well formed (shared with the options tests).
    pub(crate) const MALFORMED: [&str; 10] = [
        "",
        ",a=1",
        "net null",
        "net-null0",
        "net_null0,size",
        "net_null0,=1",
        "net_null0,",
        "net_null0,,a=1",
        "net_null0,a=1,a=2",
        "nét0",
    ];

    #[test]
    fn syntax_errors() {
        for bad in MALFORMED {
            assert!(bad.parse::<VdevSpec>().is_err(), "{bad:?}");
        }
        let m = "net_null0,size"
            .parse::<VdevSpec>()
            .unwrap_err()
            .to_string();
        assert!(m.starts_with("invalid --vdev 'net_null0,size'"), "{m}");
        assert!(m.contains("key=value"), "{m}");
    }

    #[test]
    fn driver_prefix_edge_cases() {
        let v: VdevSpec = "net_null".parse().unwrap();
        assert_eq!(v.driver_prefix(), "net_null");
        let v: VdevSpec = "eth12".parse().unwrap();
        assert_eq!(v.driver_prefix(), "eth");
        let v: VdevSpec = "123".parse().unwrap();
        assert_eq!(v.driver_prefix(), "");
    }

    #[test]
    fn integers_in_a_range() {
        let v = spec("d0,q=4,big=70000,neg=-1,x=abc");
        assert_eq!(v.get("q").int_in(1u16..=16).unwrap(), Some(4));
        assert_eq!(v.get("none").int_in(1u16..=16).unwrap(), None);
        let e = v.get("q").int_in(5u16..=16).unwrap_err();
        assert_eq!(e.to_string(), "d0: q=4 is out of range: use 5..=16");
        // Not of the type: malformed, naming the key.
        for key in ["big", "neg", "x"] {
            let e = v.get(key).int_in(0u16..=10).unwrap_err();
            assert!(matches!(e, DevargsError::Malformed { .. }), "{key}: {e}");
            assert!(e.to_string().contains(&format!("'{key}'")), "{e}");
        }
    }

    #[test]
    fn flags_yes_no_and_switches() {
        let v = spec("d0,a=0,b=1,c=2,d=x,y=yes,n=no,m=maybe,s=,t=true,f=false");
        assert_eq!(v.get("a").flag().unwrap(), Some(false));
        assert_eq!(v.get("b").flag().unwrap(), Some(true));
        assert_eq!(v.get("z").flag().unwrap(), None);
        assert_eq!(
            v.get("c").flag().unwrap_err().to_string(),
            "d0: c=2: use 0 or 1"
        );
        assert!(matches!(
            v.get("d").flag().unwrap_err(),
            DevargsError::Malformed { .. }
        ));
        assert_eq!(v.get("y").yes_no().unwrap(), Some(true));
        assert_eq!(v.get("n").yes_no().unwrap(), Some(false));
        assert_eq!(
            v.get("m").yes_no().unwrap_err().to_string(),
            "d0: m=maybe: use yes or no"
        );
        assert_eq!(v.get("s").switch().unwrap(), Some(true));
        assert_eq!(v.get("t").switch().unwrap(), Some(true));
        assert_eq!(v.get("f").switch().unwrap(), Some(false));
        assert_eq!(v.get("a").switch().unwrap(), Some(false));
        assert_eq!(
            v.get("c").switch().unwrap_err().to_string(),
            "d0: c=2: use c or c=0|1"
        );
    }

    #[test]
    fn choices() {
        #[derive(Clone, Copy, Debug, PartialEq)]
        enum M {
            Copy,
            Zc,
            Auto,
        }
        let choices: &[(&[&str], M)] = &[
            (&["copy"], M::Copy),
            (&["zerocopy", "zc"], M::Zc),
            (&["auto"], M::Auto),
        ];
        let v = spec("d0,a=zc,b=copy,c=fast");
        assert_eq!(v.get("a").choice(choices).unwrap(), Some(M::Zc));
        assert_eq!(v.get("b").choice(choices).unwrap(), Some(M::Copy));
        assert_eq!(v.get("n").choice(choices).unwrap(), None);
        assert_eq!(
            v.get("c").choice(choices).unwrap_err().to_string(),
            "d0: c=fast: use copy, zerocopy or auto"
        );
        let two: &[(&[&str], bool)] = &[(&["on"], true), (&["off"], false)];
        assert_eq!(
            v.get("c").choice(two).unwrap_err().to_string(),
            "d0: c=fast: use on or off"
        );
    }

    #[test]
    fn texts_paths_and_missing() {
        let v = spec("d0,f=/tmp/x,e=");
        assert_eq!(v.get("f").path().unwrap(), Some(PathBuf::from("/tmp/x")));
        assert_eq!(v.get("n").path().unwrap(), None);
        assert_eq!(
            v.get("e").path().unwrap_err().to_string(),
            "d0: argument 'e' is empty: name a file"
        );
        assert_eq!(v.get("f").text("x").unwrap(), Some("/tmp/x"));
        assert_eq!(
            v.get("n").missing("give n=1").to_string(),
            "d0: missing argument 'n': give n=1"
        );
        assert_eq!(
            v.get("f").reject("not that").to_string(),
            "d0: f=/tmp/x: not that"
        );
    }
}
