//! l2fwd over two `net_null` ports: no root and no network needed. Each run stops by
//! itself with `--duration` and must report traffic in DPDK l2fwd's statistics format.

mod common;

use common::{run_l2fwd, stat_values, Finished};
use pmd_testkit::unique;
use std::time::Duration;

/// Runs l2fwd on net_null0 + net_null1 for 2.5 s with `extra_eal` and `extra_app` options.
fn run_null(tag: &str, extra_eal: &[&str], extra_app: &[&str]) -> Finished {
    let prefix = unique(&format!("l2fwdt-{tag}"));
    let mut args = vec!["-l", "0", "--file-prefix", &prefix];
    args.extend_from_slice(extra_eal);
    args.extend_from_slice(&["--vdev", "net_null0", "--vdev", "net_null1"]);
    args.extend_from_slice(&["--", "-p", "0x3", "-q", "2", "-T", "1", "--duration", "2.5"]);
    args.extend_from_slice(extra_app);
    run_l2fwd(&args, Duration::from_secs(20))
}

/// Exit 0, "Bye...", traffic in the final table and a positive rate somewhere.
fn check_forwarded(r: &Finished) {
    let all = r.transcript();
    assert_eq!(r.code(), Some(0), "{all}");
    assert!(!r.stderr.contains("panicked"), "{all}");
    assert!(
        r.stdout.contains("Lcore 0: RX port 0 -> TX port 1"),
        "{all}"
    );
    assert!(
        r.stdout.contains("Lcore 0: RX port 1 -> TX port 0"),
        "{all}"
    );
    assert!(
        r.stdout.trim_end().ends_with("Bye..."),
        "output should end with Bye...\n{all}"
    );
    let sent = stat_values(&r.stdout, "Total packets sent:");
    let received = stat_values(&r.stdout, "Total packets received:");
    let rates = stat_values(&r.stdout, "Total rate (Mpps):");
    // -T 1 over 2.5 s: at least the periodic tables at 1 s and 2 s, plus the final one.
    assert!(sent.len() >= 3, "expected >= 3 statistics tables\n{all}");
    assert_eq!(sent.len(), rates.len(), "{all}");
    let last = *sent.last().unwrap();
    assert!(last > 0.0, "nothing sent\n{all}");
    assert!(*received.last().unwrap() >= last, "{all}");
    assert!(
        sent.windows(2).all(|w| w[0] <= w[1]),
        "totals must not decrease: {sent:?}\n{all}"
    );
    assert!(rates.iter().any(|&r| r > 0.0), "no positive rate\n{all}");
}

#[test]
fn forwards_between_null_ports_without_hugepages() {
    check_forwarded(&run_null("null", &["--no-huge"], &[]));
}

#[test]
fn forwards_between_null_ports_without_mac_updating() {
    check_forwarded(&run_null("nomac", &["--no-huge"], &["--no-mac-updating"]));
}

#[test]
fn forwards_between_null_ports_on_hugepages() {
    if !pmd_testkit::require(
        "forwards_between_null_ports_on_hugepages",
        pmd_testkit::hugepages_missing(16),
    ) {
        return;
    }
    check_forwarded(&run_null("huge", &[], &[]));
}
