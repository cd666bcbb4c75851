//! Test support shared by the workspace's integration tests (a dev-dependency only):
//!
//! - [`skip`] and [`require`]: the one way a test says it cannot run here (printed, or a
//!   failure under `PMD_REQUIRE_ALL=1`), with [`root_missing`], [`dpdk_missing`],
//!   [`hugetlbfs_missing`] and [`hugepages_missing`] naming what is missing;
//! - [`have_root`]: whether the namespace/raw-socket tests can run (a [`require`] of root);
//! - [`unique`]: names unique to the test process (file prefixes, namespaces);
//! - [`number_after`]: a count in an app's final statistics;
//! - [`adaptive_line`]: the `Lcore N adaptive:` statistics an app prints at exit;
//! - [`ip`]: runs the `ip` tool;
//! - [`NetNs`]: a private network namespace (IPv6 off) with veth pairs, deleted on drop;
//! - [`RawSock`]: a raw `AF_PACKET` socket on one interface, to inject and capture frames;
//! - [`parse_mac`] and [`fmt_mac`]: MAC addresses as `aa:bb:cc:dd:ee:ff`;
//! - [`perf`]: the tx-only / rx-only loop of the PMDs' `*_perf` examples;
//! - [`dpdk`]: `dpdk-testpmd` as a peer process, cleaned up on drop;
//! - [`telemetry`]: `dpdk-telemetry.py` against an app, beside DPDK's own answers;
//! - [`flows`]: many-flow IPv4/IPv6 traffic, its route files and pcap files (l3fwd);
//! - [`frames`]: jumbo, odd, tagged, broadcast and multicast test frames, and a check that
//!   each crosses a forwarder once and intact.
//!
//! Everything panics on unexpected failures (it is for tests). Tests that need something
//! of the host call [`require`], [`have_root`] or [`NetNs::new`] first and return when they
//! get `false`/`None`: each has then printed `<test>: skipped: <why>`, or, under
//! `PMD_REQUIRE_ALL=1`, panicked with that message.

pub mod dpdk;
pub mod flows;
pub mod frames;
mod netns;
pub mod perf;
mod process;
mod rawsock;
mod skip;
pub mod telemetry;
mod tempdir;

pub use netns::NetNs;
pub use process::Proc;
pub use rawsock::RawSock;
pub use skip::{
    dpdk_missing, hugepages_missing, hugetlbfs_missing, require, require_all, root_missing, skip,
    REQUIRE_ALL_ENV,
};
pub use tempdir::TempDir;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether `program` is an executable file in a `PATH` directory. Probing DPDK's
/// `dpdk-testpmd` by running it (`-v`, `--version`) starts its EAL, which leaves
/// The number right after the last `label` in `text` (spaces skipped): a count in an
/// app's final statistics, e.g. `number_after(out, "no route")` in
/// `l3fwd: received 10, forwarded 8, dropped: no route 2`.
pub fn number_after(text: &str, label: &str) -> Option<u64> {
    let at = text.rfind(label)? + label.len();
    text[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// /var/run/dpdk/rte behind; this only looks.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|d| {
            std::fs::metadata(d.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Whether we run as root; if not, [`skip`]s `test` (which fails it under
/// `PMD_REQUIRE_ALL=1`).
#[track_caller]
pub fn have_root(test: &str) -> bool {
    require(
        test,
        root_missing("network namespaces and AF_PACKET sockets"),
    )
}

/// A name unique to this test process and call: `{prefix}-{pid}-{n}`, where `n` counts
/// the calls in this process (shared with [`NetNs::new`], which names namespaces this way).
///
/// For example `unique("l2fwdt-null")` gives `l2fwdt-null-1234-0`, then `l2fwdt-null-1234-1`.
pub fn unique(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// User + system CPU time process `pid` has used so far, in seconds (/proc/PID/stat).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading stat");
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf takes no pointers.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// Runs `ip args`, returning its stdout, or an error with its stderr.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Parses a MAC address written as six colon-separated hexadecimal bytes
/// (`02:00:00:00:aa:01`, as `ip link` prints it). `None` unless there are exactly six.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Formats bytes (normally a 6-byte MAC address, e.g. `&frame[..6]`) as lower-case
/// hexadecimal pairs joined by colons: `02:00:00:00:aa:01`.
pub fn fmt_mac(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Finds lcore `lcore`'s adaptive line in an app's output (its `--idle-sleep` statistics
/// at exit, [`pmd_core::intr::SleepStats`]'s `Display`): the line, and its counts.
pub fn adaptive_line(out: &str, lcore: u32) -> Option<(String, pmd_core::intr::SleepStats)> {
    let prefix = format!("Lcore {lcore} adaptive: ");
    let line = out.lines().find(|l| l.starts_with(&prefix))?;
    let n: Vec<u64> = line[prefix.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let at = |i: usize| n.get(i).copied().unwrap_or(0);
    Some((
        line.to_string(),
        pmd_core::intr::SleepStats {
            sleeps: at(0),
            intr_wakes: at(1),
            timeouts: at(2),
            ready_at_arm: at(3),
            spurious: at(4),
            throttled: at(5),
            link_wakes: at(6),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_carry_prefix_and_pid() {
        let pid = std::process::id();
        let a = unique("tk-a");
        let b = unique("tk-a");
        assert_ne!(a, b);
        for name in [&a, &b] {
            let rest = name.strip_prefix(&format!("tk-a-{pid}-")).expect(name);
            assert!(rest.parse::<u32>().is_ok(), "{name}");
        }
        // Later calls count up, also across prefixes and threads.
        let n = |s: &str| s.rsplit('-').next().unwrap().parse::<u32>().unwrap();
        assert!(n(&b) > n(&a));
        let from_threads: Vec<String> = (0..8)
            .map(|_| std::thread::spawn(|| unique("tk-t")))
            .map(|h| h.join().unwrap())
            .collect();
        let mut seqs: Vec<u32> = from_threads.iter().map(|s| n(s)).collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 8, "{from_threads:?}");
        assert!(unique("x").starts_with(&format!("x-{pid}-")));
    }

    #[test]
    fn parses_macs() {
        assert_eq!(
            parse_mac("02:00:00:00:aa:01"),
            Some([0x02, 0, 0, 0, 0xaa, 0x01])
        );
        assert_eq!(
            parse_mac("FF:ff:Ff:00:0:9"),
            Some([0xff, 0xff, 0xff, 0, 0, 9])
        );
        assert_eq!(
            parse_mac("de:ad:be:ef:00:01"),
            Some([0xde, 0xad, 0xbe, 0xef, 0, 1])
        );
    }

    #[test]
    fn rejects_bad_macs() {
        for bad in [
            "",
            "02:00:00:00:aa",
            "02:00:00:00:aa:01:02",
            "02:00:00:00:aa:",
            ":02:00:00:00:aa",
            "02:00:00:00:aa:0g",
            "02:00:00:00:aa:100",
            "02-00-00-00-aa-01",
            "020000:00:aa:01",
            "link/ether",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_macs() {
        assert_eq!(fmt_mac(&[0x02, 0, 0, 0, 0xaa, 0x01]), "02:00:00:00:aa:01");
        assert_eq!(fmt_mac(&[0xff; 6]), "ff:ff:ff:ff:ff:ff");
        assert_eq!(fmt_mac(&[]), "");
        assert_eq!(fmt_mac(&[0xab]), "ab");
    }

    #[test]
    fn format_and_parse_round_trip() {
        for mac in [[0u8; 6], [0xff; 6], [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]] {
            assert_eq!(parse_mac(&fmt_mac(&mac)), Some(mac));
        }
    }
}
