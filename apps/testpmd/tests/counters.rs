//! Counters that add up: testpmd (io forwarding) on null, ring and memif ports, read
//! from its final forward statistics. For every port pair (p, q): what p received, plus
//! the `--tx-first` burst sent out of q, equals q's TX-packets + TX-dropped; and the pool
//! has as many buffers in use at the end as before the ports were set up. Ring and memif
//! ports are wired back to back and carry the fixed population of the `--tx-first`
//! bursts. No root or hugepages needed.

use pmd_testkit::unique;
use std::process::Command;

/// The `--tx-first` burst (testpmd's default --burst), per stream.
const BURST: u64 = 32;

/// Exit code, stdout and stderr of one testpmd run.
fn testpmd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_testpmd"))
        .args(args)
        .output()
        .expect("run testpmd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Forward counters of one port in the final statistics.
#[derive(Debug, Default, Clone, Copy)]
struct PortCounts {
    rx: u64,
    rx_lost: u64,
    tx: u64,
    tx_dropped: u64,
}

/// The number after `label` in `text`, if any.
fn after(text: &str, label: &str) -> Option<u64> {
    let i = text.find(label)?;
    text[i + label.len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Per-port counters of the final forward statistics.
fn final_counts(out: &str, ports: usize) -> Vec<PortCounts> {
    (0..ports)
        .map(|p| {
            let block = out
                .split(&format!("Forward statistics for port {p:<2}"))
                .nth(1)
                .and_then(|b| b.split("\n\n").next())
                .unwrap_or_else(|| panic!("no final statistics for port {p}\n{out}"));
            let k = |label| after(block, label).unwrap_or_else(|| panic!("{label}\n{block}"));
            PortCounts {
                rx: k("RX-packets:"),
                rx_lost: k("RX-dropped:")
                    + after(block, "RX-error:").unwrap_or(0)
                    + after(block, "RX-nombufs:").unwrap_or(0),
                tx: k("TX-packets:"),
                tx_dropped: k("TX-dropped:"),
            }
        })
        .collect()
}

/// Runs testpmd on two ports (`vdevs`) for 1 s in io mode (with `--tx-first` if asked), checks
/// the counters and the pool; returns the counters.
fn run(tag: &str, vdevs: [&str; 2], tx_first: bool) -> Vec<PortCounts> {
    let prefix = unique(&format!("testpmd-cnt-{tag}"));
    let mut args = vec!["-l", "0", "--no-huge", "--file-prefix", &prefix];
    for v in &vdevs {
        args.extend_from_slice(&["--vdev", v]);
    }
    args.extend_from_slice(&["--", "--forward-mode=io", "--duration=1"]);
    if tx_first {
        args.push("--tx-first");
    }
    let (code, out, err) = testpmd(&args);
    let all = format!("--- stdout ---\n{out}\n--- stderr ---\n{err}");
    assert_eq!(code, 0, "{all}");
    assert!(!err.contains("warning: mempool"), "{all}");
    let c = final_counts(&out, 2);
    let first = if tx_first { BURST } else { 0 };
    for (p, q) in [(0, 1), (1, 0)] {
        assert_eq!(
            c[p].rx + first,
            c[q].tx + c[q].tx_dropped,
            "port {p}: RX-packets + first burst out of port {q} = port {q}'s TX-packets + \
             TX-dropped: {c:?}\n{all}"
        );
    }
    let pool: Vec<u64> = out
        .lines()
        .filter_map(|l| after(l, "mempool mbuf_pool:"))
        .collect();
    assert_eq!(
        pool.len(),
        2,
        "pool line at the start and at the end\n{all}"
    );
    assert_eq!(
        pool[0], pool[1],
        "pool in use back to its start value\n{all}"
    );
    assert_eq!(pool[1], 0, "{all}");
    if tx_first {
        // The bursts went round; what is still on the wire at the end (freed with the
        // queues) is at most what went in.
        let received: u64 = c.iter().map(|p| p.rx + p.rx_lost).sum();
        let sent: u64 = c.iter().map(|p| p.tx).sum();
        assert!(received > 10 * BURST, "the bursts did not go round\n{all}");
        assert!(
            sent >= received && sent - received <= 2 * BURST,
            "{c:?}\n{all}"
        );
    }
    c
}

#[test]
fn null_ports_counters_add_up() {
    let c = run("null", ["net_null0", "net_null1"], false);
    assert!(c[0].rx > 0 && c[1].rx > 0, "{c:?}");
}

#[test]
fn ring_ports_counters_add_up() {
    run("ring", ["net_ring0,rx=a,tx=b", "net_ring1,rx=b,tx=a"], true);
}

#[test]
fn memif_ports_counters_add_up() {
    let sock = unique("testpmd-cnt-memif");
    let server = format!("net_memif0,role=server,socket={sock}");
    let client = format!("net_memif1,role=client,socket={sock}");
    run("memif", [&server, &client], true);
}
