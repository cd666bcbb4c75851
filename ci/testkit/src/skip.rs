//! Tests that cannot run on this host: the one way to say so.
//!
//! A test that needs root, DPDK's `dpdk-testpmd`, a hugetlbfs mount or free hugepages
//! asks for them with [`require`] (or [`skip`]s outright) and returns when it gets
//! `false`. By default that prints `<test>: skipped: <why>` and the test reports `ok`; with
//! `PMD_REQUIRE_ALL=1` in the environment (`ci/test.sh` sets it when it runs as root) the
//! same message is a panic, so a host that lacks something CI expects fails loudly instead
//! of passing silently.
//!
//! The `*_missing` functions say what is missing, if anything, in words a user can act on.

use std::fmt::Display;
use std::io::Write;
use std::path::Path;

/// The environment variable that turns every skip into a failure when it is `1`.
pub const REQUIRE_ALL_ENV: &str = "PMD_REQUIRE_ALL";

/// Whether skips are failures in this run: `PMD_REQUIRE_ALL=1`.
pub fn require_all() -> bool {
    std::env::var_os(REQUIRE_ALL_ENV).is_some_and(|v| v == "1")
}

/// `test` cannot run here because of `why`: prints `<test>: skipped: <why>` to stderr, or,
/// under `PMD_REQUIRE_ALL=1`, panics with that message. The caller returns right after.
///
/// The line goes to the process's stderr, past the test harness's output capture, so that
/// a plain `cargo test` shows every skip next to the `ok` it would otherwise hide behind.
#[track_caller]
pub fn skip(test: &str, why: impl Display) {
    let line = skip_line(require_all(), test, &why);
    // Not eprintln!: the harness would capture it, and show it only for failed tests.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `true` when nothing `test` needs is missing (`missing` is `None`); otherwise
/// [`skip`]s `test` with the reason and returns `false`:
///
/// ```no_run
/// const TEST: &str = "peer_is_dpdk";
/// if !pmd_testkit::require(TEST, pmd_testkit::dpdk_missing()) {
///     return;
/// }
/// ```
#[track_caller]
pub fn require(test: &str, missing: Option<String>) -> bool {
    match missing {
        None => true,
        Some(why) => {
            skip(test, why);
            false
        }
    }
}

/// The line [`skip`] prints, `<test>: skipped: <why>`; under `require_all` a panic with
/// that line instead.
#[track_caller]
fn skip_line(require_all: bool, test: &str, why: &dyn Display) -> String {
    let line = format!("{test}: skipped: {why}");
    if require_all {
        panic!("{line} ({REQUIRE_ALL_ENV}=1: a skip is a failure)");
    }
    line
}

/// `Some("needs root (<for_what>)")` unless we run as root.
pub fn root_missing(for_what: &str) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    (euid != 0).then(|| format!("needs root ({for_what})"))
}

/// Why DPDK's `dpdk-testpmd` cannot be the peer of a test: not on `PATH`.
pub fn dpdk_missing() -> Option<String> {
    (!crate::on_path("dpdk-testpmd")).then(|| {
        "dpdk-testpmd is not installed (apt-get install dpdk, or ci/setup.sh --dpdk)".to_string()
    })
}

/// Why `dir` cannot serve as a hugetlbfs directory: it is not a hugetlbfs mount point.
pub fn hugetlbfs_missing(dir: &str) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    (!is_hugetlbfs_mount(&mounts, Path::new(dir)))
        .then(|| format!("no hugetlbfs mount at {dir} (ci/setup.sh mounts one)"))
}

/// Why a test cannot have `pages` hugepages of the default size: fewer are free.
pub fn hugepages_missing(pages: u64) -> Option<String> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let free = meminfo_value(&meminfo, "HugePages_Free:").unwrap_or(0);
    let size_kb = meminfo_value(&meminfo, "Hugepagesize:").unwrap_or(0);
    (free < pages).then(|| {
        format!(
            "needs {pages} free hugepages of {size_kb} kB, {free} free \
             (`pmd-setup reserve 1024`, or ci/setup.sh)"
        )
    })
}

/// Whether the text of /proc/mounts has a hugetlbfs mounted at `dir`.
fn is_hugetlbfs_mount(mounts: &str, dir: &Path) -> bool {
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_, at, fstype) = (f.next(), f.next(), f.next());
        fstype == Some("hugetlbfs") && at.is_some_and(|at| Path::new(at) == dir)
    })
}

/// The number after `key` in the text of /proc/meminfo (`HugePages_Free:   1024`).
fn meminfo_value(meminfo: &str, key: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_is_a_line_by_default() {
        let line = skip_line(false, "some_test", &"needs root (namespaces)");
        assert_eq!(line, "some_test: skipped: needs root (namespaces)");
    }

    #[test]
    #[should_panic(
        expected = "some_test: skipped: needs root (namespaces) (PMD_REQUIRE_ALL=1: a skip is a failure)"
    )]
    fn a_skip_fails_under_require_all() {
        skip_line(true, "some_test", &"needs root (namespaces)");
    }

    #[test]
    fn require_passes_through_when_nothing_is_missing() {
        // Under PMD_REQUIRE_ALL=1 a `false` here would have panicked instead.
        assert!(require("some_test", None));
    }

    #[test]
    fn finds_hugetlbfs_mounts_only() {
        let mounts = "proc /proc proc rw 0 0\n\
                      nodev /mnt/pmd-huge hugetlbfs rw,relatime,pagesize=2M 0 0\n\
                      tmpfs /dev/hugepages tmpfs rw 0 0\n";
        assert!(is_hugetlbfs_mount(mounts, Path::new("/mnt/pmd-huge")));
        assert!(is_hugetlbfs_mount(mounts, Path::new("/mnt/pmd-huge/")));
        assert!(!is_hugetlbfs_mount(mounts, Path::new("/dev/hugepages")));
        assert!(!is_hugetlbfs_mount(mounts, Path::new("/mnt")));
        assert!(!is_hugetlbfs_mount("", Path::new("/mnt/pmd-huge")));
    }

    #[test]
    fn reads_meminfo_values() {
        let meminfo = "MemFree:  100 kB\nHugePages_Total:    1024\n\
                       HugePages_Free:      12\nHugepagesize:       2048 kB\n";
        assert_eq!(meminfo_value(meminfo, "HugePages_Free:"), Some(12));
        assert_eq!(meminfo_value(meminfo, "Hugepagesize:"), Some(2048));
        assert_eq!(meminfo_value(meminfo, "HugePages_Rsvd:"), None);
        assert_eq!(
            meminfo_value("HugePages_Free: lots\n", "HugePages_Free:"),
            None
        );
    }

    #[test]
    fn missing_things_are_named() {
        let why = hugetlbfs_missing("/nonexistent/pmd-huge").unwrap();
        assert_eq!(
            why,
            "no hugetlbfs mount at /nonexistent/pmd-huge (ci/setup.sh mounts one)"
        );
        let why = hugepages_missing(u64::MAX).unwrap();
        assert!(
            why.starts_with(&format!("needs {} free hugepages of ", u64::MAX)),
            "{why}"
        );
        assert_eq!(hugepages_missing(0), None);
    }
}
