//! Bodies of the `eal_options` and `devargs` fuzz targets (`fuzz/fuzz_targets/`), shared
//! with fixed-seed unit tests. They call only the public parsers: any argv vector and any
//! vdev string must give a value or an error, never a panic, and whatever is accepted must
//! read back the same when written out again.

use crate::devargs::VdevSpec;
use crate::ethdev::MacAddr;
use crate::options::{EalOptions, ParsedArgs};
use std::collections::HashSet;

/// Longest vdev specification [`fuzz_devargs`] reads.
pub const MAX_VDEV_SPEC: usize = 1024;

/// Argv items an input byte below 0x20 stands for, so that short inputs reach the
/// options' values rather than dying on an unknown option.
const ARGV_WORDS: [&str; 32] = [
    "-l",
    "--lcores",
    "--main-lcore",
    "-a",
    "-b",
    "--allow",
    "--block",
    "--vdev",
    "--no-huge",
    "-m",
    "--huge-dir",
    "--file-prefix",
    "--iova-mode",
    "--no-pci",
    "--log-level",
    "-n",
    "-h",
    "--",
    "0-3",
    "1@2,0",
    "0000:00:01.0",
    "00:02.1",
    "net_null0",
    "net_ring0,nodeaction=a:0:CREATE",
    "va",
    "pa",
    "lib.eal:debug",
    "8",
    "/mnt/huge",
    "-l0",
    "--vdev=net_null1,size=64",
    "-m=1",
];

/// Splits an input into argv items at NUL bytes; an item of one byte below 0x20 is the
/// word `ARGV_WORDS` gives it, anything else is the item's text (invalid UTF-8
/// replaced, as a shell would never pass it to `EalOptions::parse` otherwise).
pub fn argv_from_bytes(data: &[u8]) -> Vec<String> {
    let mut argv = vec!["fuzz".to_string()];
    for item in data.split(|&b| b == 0) {
        match item {
            [b] if *b < 0x20 => argv.push(ARGV_WORDS[usize::from(*b)].to_string()),
            _ => argv.push(String::from_utf8_lossy(item).into_owned()),
        }
    }
    argv
}

/// Writes parsed options back as an argv vector (the `--long=value` spelling, lcores as
/// `N@C`) that must parse to the same result.
pub fn argv_of(p: &ParsedArgs) -> Vec<String> {
    let e = &p.eal;
    let mut argv = vec![p.app_args.first().cloned().unwrap_or_default()];
    let lcores: Vec<String> = e
        .lcores
        .iter()
        .map(|l| format!("{}@{}", l.id, l.cpu))
        .collect();
    argv.push(format!("--lcores={}", lcores.join(",")));
    argv.push(format!("--main-lcore={}", e.main_lcore));
    argv.extend(e.allow.iter().map(|a| format!("--allow={a}")));
    argv.extend(e.block.iter().map(|a| format!("--block={a}")));
    argv.extend(e.vdevs.iter().map(|v| format!("--vdev={v}")));
    if e.no_huge {
        argv.push("--no-huge".to_string());
    }
    if let Some(m) = e.memory_mb {
        argv.push(format!("-m{m}"));
    }
    if let Some(d) = &e.huge_dir {
        argv.push(format!("--huge-dir={}", d.display()));
    }
    argv.push(format!("--file-prefix={}", e.file_prefix));
    if let Some(m) = e.iova_mode {
        argv.push(format!("--iova-mode={m}"));
    }
    if e.no_pci {
        argv.push("--no-pci".to_string());
    }
    argv.push(format!("--log-level={}", e.log_level));
    if let Some(n) = e.mem_channels {
        argv.push(format!("-n{n}"));
    }
    if e.help {
        argv.push("--help".to_string());
    }
    if e.no_telemetry {
        argv.push("--no-telemetry".to_string());
    }
    if let Some(a) = e.metrics {
        argv.push(format!("--metrics={a}"));
    }
    argv.push("--".to_string());
    argv.extend(p.app_args.iter().skip(1).cloned());
    argv
}

/// The `eal_options` target: an argv vector ([`argv_from_bytes`]) through
/// [`EalOptions::parse`]. Accepted options keep their invariants (lcores sorted and
/// unique, the main lcore among them, vdev names unique) and re-parse to the same value
/// from [`argv_of`]; an error has a message.
pub fn fuzz_eal_options(data: &[u8]) {
    let argv = argv_from_bytes(data);
    let parsed = match EalOptions::parse(&argv) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let e = &parsed.eal;
    assert!(e.lcores.windows(2).all(|w| w[0].id < w[1].id), "{e:?}");
    assert!(e.lcores.iter().any(|l| l.id == e.main_lcore), "{e:?}");
    let names: HashSet<&str> = e.vdevs.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names.len(), e.vdevs.len());
    assert_eq!(parsed.app_args.first(), argv.first());
    let again = argv_of(&parsed);
    match EalOptions::parse(&again) {
        // The options and the app's arguments, not the spelling (`eal_args`).
        Ok(p) => assert_eq!(
            (p.eal, p.app_args),
            (parsed.eal, parsed.app_args),
            "{argv:?} -> {again:?}"
        ),
        Err(err) => panic!("{argv:?} was accepted but its rewrite {again:?} is not: {err}"),
    }
}

/// The `devargs` target: the input as a vdev specification through [`VdevSpec`]'s parser
/// and every typed reading of each of its arguments. An accepted spec prints back to
/// itself; typed readings agree with the text (a flag is `0`/`1`, an integer lies in its
/// range, a MAC address prints back to one that parses the same).
pub fn fuzz_devargs(data: &[u8]) {
    // A --vdev value is one argv item; past this length the parser's duplicate-key check
    // (quadratic in the argument count) only slows the fuzzer down.
    if data.len() > MAX_VDEV_SPEC {
        return;
    }
    let text = String::from_utf8_lossy(data);
    let spec: VdevSpec = match text.parse() {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert_eq!(spec.to_string(), text, "a spec prints as it was written");
    assert_eq!(spec.to_string().parse::<VdevSpec>().as_ref(), Ok(&spec));
    assert!(!spec.name.is_empty());
    assert!(!spec.driver_prefix().ends_with(|c: char| c.is_ascii_digit()));
    let keys: HashSet<&str> = spec.args.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), spec.args.len(), "keys are unique");
    for (k, v) in &spec.args {
        assert!(!k.is_empty() && !k.contains(',') && !k.contains('='));
        assert!(!v.contains(','));
        let a = spec.get(k);
        assert_eq!(a.value(), Some(v.as_str()));
        match a.flag() {
            Ok(f) => assert_eq!(f, Some(v.parse::<u8>().unwrap() == 1)),
            Err(e) => assert!(e.to_string().contains(k.as_str())),
        }
        if let Ok(Some(b)) = a.yes_no() {
            assert_eq!(b, v == "yes");
        }
        assert_eq!(
            a.switch().is_ok(),
            matches!(v.as_str(), "" | "0" | "1" | "yes" | "no" | "true" | "false")
        );
        if let Ok(Some(n)) = a.int_in(1u32..=4096) {
            assert!((1..=4096).contains(&n));
        }
        let _ = a.int_in(i64::MIN..=0);
        let _ = a.parse::<f64>();
        if let Ok(Some(m)) = a.parse::<MacAddr>() {
            assert_eq!(m.to_string().parse::<MacAddr>().ok(), Some(m));
        }
        assert_eq!(a.text("x").is_err(), v.is_empty());
        assert_eq!(a.path().ok().flatten().is_some(), !v.is_empty());
        let _ = a.choice(&[(&["on", "1"][..], true), (&["off"][..], false)]);
        assert!(!a.missing("x").to_string().is_empty());
    }
    let known: Vec<&str> = keys.iter().copied().collect();
    assert!(spec.check_known(&known).is_ok());
    if let Some(((k, _), rest)) = spec.args.split_first() {
        let fewer: Vec<&str> = rest.iter().map(|(k, _)| k.as_str()).collect();
        let e = spec.check_known(&fewer).unwrap_err().to_string();
        assert!(e.contains(k.as_str()), "{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic input generator (xorshift64).
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// The `eal_options` body on argv vectors made mostly of option words and values
    /// (mixed with random text), so that many of them parse.
    #[test]
    fn fixed_seed_fuzz_of_the_eal_options() {
        let mut rnd = xorshift(0x5851_f42d_4c95_7f2d);
        let mut accepted = 0;
        for _ in 0..5000 {
            let mut d = Vec::new();
            for _ in 0..rnd() % 8 {
                match rnd() % 4 {
                    0 => d.extend(
                        (0..rnd() % 12).map(|_| b"0123456789-@,:.abnlm=_"[(rnd() % 22) as usize]),
                    ),
                    _ => d.push((rnd() % 32) as u8),
                }
                d.push(0);
            }
            d.pop();
            if EalOptions::parse(&argv_from_bytes(&d)).is_ok() {
                accepted += 1;
            }
            fuzz_eal_options(&d);
        }
        assert!(accepted > 200, "only {accepted} argv vectors parsed");
    }

    /// The `devargs` body on specs built from names, keys and values of a small alphabet.
    #[test]
    fn fixed_seed_fuzz_of_the_devargs() {
        let mut rnd = xorshift(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"net_l0019a:fF,=,=yes";
        let mut accepted = 0;
        for _ in 0..5000 {
            let d: Vec<u8> = (0..rnd() % 40)
                .map(|_| alphabet[(rnd() % alphabet.len() as u64) as usize])
                .collect();
            if String::from_utf8_lossy(&d).parse::<VdevSpec>().is_ok() {
                accepted += 1;
            }
            fuzz_devargs(&d);
        }
        assert!(accepted > 200, "only {accepted} specs parsed");
        fuzz_devargs(b"net_x0,mac=02:00:00:00:00:01,n=1,f=");
        fuzz_devargs(&[0xff, b',', b'a']);
    }
}
