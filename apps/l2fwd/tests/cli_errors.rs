//! Bad command lines give clear messages and the right exit codes, never a panic.
//! (2: EAL or application option errors; 1: failures while setting up; 0: help.)

mod common;

use common::{run_l2fwd, Finished};
use pmd_testkit::unique;
use std::time::Duration;

/// Runs l2fwd with `--no-huge`, a unique file prefix, then `args`.
fn l2fwd(args: &[&str]) -> Finished {
    let prefix = unique("l2fwdt-cli");
    let mut all = vec!["--no-huge", "--file-prefix", &prefix];
    all.extend_from_slice(args);
    let r = run_l2fwd(&all, Duration::from_secs(10));
    let t = r.transcript();
    assert!(!t.contains("panicked"), "{t}");
    assert!(r.code().is_some(), "killed by a signal\n{t}");
    r
}

/// Asserts `r` failed with `code` (or any failure if `None`) and stderr has every `needles`.
fn assert_fails(r: &Finished, code: Option<i32>, needles: &[&str]) {
    let t = r.transcript();
    match code {
        Some(c) => assert_eq!(r.code(), Some(c), "{t}"),
        None => assert_ne!(r.code(), Some(0), "{t}"),
    }
    for n in needles {
        assert!(r.stderr.contains(n), "stderr should mention {n:?}\n{t}");
    }
    assert!(!r.stdout.contains("Bye..."), "{t}");
}

const TWO_NULLS: [&str; 4] = ["--vdev", "net_null0", "--vdev", "net_null1"];

#[test]
fn unknown_eal_option_is_named() {
    let r = l2fwd(&["--bogus", "--vdev", "net_null0", "--", "-p", "0x1"]);
    assert_fails(&r, Some(2), &["'--bogus'"]);
}

#[test]
fn reversed_lcore_range() {
    let r = l2fwd(&["-l", "5-2", "--vdev", "net_null0", "--", "-p", "0x1"]);
    assert_fails(&r, Some(2), &["5-2", "-l"]);
}

#[test]
fn unknown_driver_lists_the_drivers() {
    let r = l2fwd(&["-l", "0", "--vdev", "net_nothing0", "--", "-p", "0x1"]);
    assert_fails(
        &r,
        None,
        &[
            "no driver named",
            "net_nothing",
            "net_null",
            "net_ring",
            "net_af_packet",
        ],
    );
}

#[test]
fn odd_number_of_ports_in_portmask() {
    // DPDK's l2fwd accepts an odd portmask with a notice: the odd port out forwards to
    // itself.
    let mut args = vec!["-l", "0"];
    args.extend_from_slice(&TWO_NULLS);
    args.extend_from_slice(&["--", "-p", "0x1", "-T", "0", "--duration", "0.2"]);
    let r = l2fwd(&args);
    let t = r.transcript();
    assert_eq!(r.code(), Some(0), "{t}");
    assert!(
        r.stdout
            .contains("Notice: odd number of ports in portmask."),
        "{t}"
    );
    assert!(r.stdout.contains("RX port 0 -> TX port 0"), "{t}");
}

/// Runs l2fwd with `app` after `--` on two ports of `vdev` and asserts exit code 2, one
/// line on stderr with all of `needles`, and that no port was set up.
fn refused(vdev: &str, app: &[&str], needles: &[&str]) -> Finished {
    let (a, b) = (format!("{vdev}0"), format!("{vdev}1"));
    let mut args = vec!["-l", "0", "--vdev", &a, "--vdev", &b, "--", "-p", "0x3"];
    args.extend_from_slice(app);
    let r = l2fwd(&args);
    assert_fails(&r, Some(2), needles);
    let t = r.transcript();
    assert!(!r.stdout.contains("Port 0"), "a port was set up\n{t}");
    assert!(
        r.stderr
            .lines()
            .any(|l| needles.iter().all(|n| l.contains(n))),
        "one line should say all of {needles:?}\n{t}"
    );
    r
}

#[test]
fn numbers_that_make_no_sense_are_refused() {
    for (opt, bad, why) in [
        ("--duration", "-1", "is not a decimal number"),
        ("--duration", "NaN", "is not a decimal number"),
        ("--duration", "inf", "is not a decimal number"),
        ("--duration", "0", "is out of range"),
        ("--duration", "1e999", "is not a decimal number"),
        ("--duration", "99999999999", "is out of range"),
        (
            "-T",
            "86401",
            "is out of range: expected a whole number in 0..=86400",
        ),
        ("-T", "18446744073709551616", "is out of range"),
        ("-q", "0", "expected a whole number in 1..=16"),
        ("--rxd", "65536", "expected a whole number in 0..=65535"),
        ("--txd", "-1", ""),
        (
            "--tx-first",
            "4294967296",
            "expected a whole number in 0..=4294967295",
        ),
        (
            "--max-pkt-len",
            "63",
            "expected a whole number in 64..=65535",
        ),
    ] {
        let arg = format!("{opt}={bad}");
        let mut needles = vec![opt];
        if !why.is_empty() {
            needles.push(why);
        }
        // Refused before the EAL initialised: no device was even probed.
        let r = refused("net_null", &[&arg], &needles);
        assert!(!r.stderr.contains("probed"), "{}", r.transcript());
    }
}

#[test]
fn descriptor_counts_outside_the_pmd_limits_are_refused() {
    // The ixgbe PMD (over its in-process model) takes powers of two in 64..=4096.
    let limits =
        "net_ixgbe takes 64..=4096 descriptors per queue, a power of two (0: its default, 512)";
    for (opt, n) in [("--rxd", "100"), ("--txd", "32"), ("--rxd", "8192")] {
        let want = format!("l2fwd: {opt} {n} does not fit port 0: {limits}");
        refused("net_ixgbe_model", &[opt, n], &[&want]);
    }
}

#[test]
fn portmask_names_a_missing_port() {
    let mut args = vec!["-l", "0"];
    args.extend_from_slice(&TWO_NULLS);
    args.extend_from_slice(&["--", "-p", "0x4"]);
    assert_fails(&l2fwd(&args), None, &["port 2", "does not exist"]);
}

#[test]
fn missing_portmask() {
    let mut args = vec!["-l", "0"];
    args.extend_from_slice(&TWO_NULLS);
    assert_fails(&l2fwd(&args), Some(2), &["-p"]);
    // Same with an empty application part.
    args.push("--");
    assert_fails(&l2fwd(&args), Some(2), &["-p"]);
}

#[test]
fn help_lists_options_and_drivers() {
    let r = l2fwd(&["-h"]);
    let t = r.transcript();
    assert_eq!(r.code(), Some(0), "{t}");
    for want in [
        "--vdev",
        "--no-huge",
        "-l",
        "net_af_packet",
        "net_null",
        "-p",
    ] {
        assert!(r.stdout.contains(want), "help should list {want:?}\n{t}");
    }
}

#[test]
fn bad_vdev_argument_names_it() {
    let r = l2fwd(&["-l", "0", "--vdev", "net_null0,size=3", "--", "-p", "0x1"]);
    assert_fails(&r, None, &["net_null0", "size"]);
}

/// The first PCI function of this machine that is not a network controller, with its
/// sysfs directory (reading sysfs only).
fn non_network_pci_device() -> Option<(String, std::path::PathBuf)> {
    let mut devs: Vec<_> = std::fs::read_dir("/sys/bus/pci/devices")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    devs.sort();
    devs.into_iter().find_map(|d| {
        let class = std::fs::read_to_string(d.join("class")).ok()?;
        let class = u32::from_str_radix(class.trim().trim_start_matches("0x"), 16).ok()?;
        let name = d.file_name()?.to_str()?.to_string();
        (class >> 16 != 0x02).then_some((name, d))
    })
}

#[test]
fn non_network_pci_device_is_refused_without_binding_advice() {
    const TEST: &str = "non_network_pci_device_is_refused_without_binding_advice";
    let Some((addr, dir)) = non_network_pci_device() else {
        pmd_testkit::skip(TEST, "this machine has no PCI function that is not a NIC");
        return;
    };
    let driver = || std::fs::read_link(dir.join("driver")).ok();
    let before = driver();
    let r = l2fwd(&["-l", "0", "-a", &addr, "--", "-p", "0x1"]);
    assert_fails(
        &r,
        Some(2),
        &[
            &format!("pci {addr}: class "),
            "is not a network controller (class 02xxxx)",
        ],
    );
    assert!(!r.stderr.contains("pmd-setup bind"), "{}", r.transcript());
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.transcript());
    assert_eq!(driver(), before, "the device's binding changed");
}
