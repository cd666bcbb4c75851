//! Counters that add up: l2fwd on null, ring and memif ports, read from its final
//! statistics. For every port pair (p, q): what p received, plus what the app sent first
//! out of q, equals what q sent, dropped and lost to tx errors; and the pool has as many
//! buffers in use at the end as before the ports were set up. Ring and memif ports are
//! wired back to back and carry a fixed population of `--tx-first` frames. No root or
//! hugepages needed.

mod common;

use common::{run_l2fwd, Finished};
use pmd_testkit::unique;
use std::time::Duration;

/// Counters of one port in the final statistics.
#[derive(Debug, Default, Clone, Copy)]
struct PortCounts {
    sent: u64,
    received: u64,
    dropped: u64,
    rx_lost: u64,
    tx_errors: u64,
    first: u64,
}

/// The number after `label` on `line`.
fn after(line: &str, label: &str) -> Option<u64> {
    let i = line.find(label)?;
    let word = line[i + label.len()..].split_whitespace().next()?;
    word.trim_end_matches(':').parse().ok()
}

/// Per-port counters of the final table (the last one printed), with the error line and
/// the `--tx-first` frames each port sent.
fn final_counts(out: &str, ports: usize) -> Vec<PortCounts> {
    let mut c = vec![PortCounts::default(); ports];
    let last = out
        .rsplit("Port statistics ====")
        .next()
        .expect("a statistics table");
    let mut port = None;
    for line in last.lines() {
        if let Some(p) = after(line, "Statistics for port ") {
            port = Some(p as usize);
        }
        let Some(p) = port else { continue };
        if let Some(v) = after(line, "Packets sent:") {
            c[p].sent = v;
        } else if let Some(v) = after(line, "Packets received:") {
            c[p].received = v;
        } else if let Some(v) = after(line, "Packets dropped:") {
            c[p].dropped = v;
        }
    }
    for line in out.lines() {
        if let (Some(p), true) = (after(line, "Port "), line.contains(" errors: ")) {
            let k = |label| after(line, label).expect(label);
            let pc = &mut c[p as usize];
            pc.rx_lost = k("rx-missed ") + k("rx-errors ") + k("rx-nombuf ");
            pc.tx_errors = k("tx-errors ");
        } else if let (Some(p), Some(n)) = (after(line, "Port "), after(line, ": sent ")) {
            c[p as usize].first = n;
        }
    }
    c
}

/// The "in use" figure of every `mempool mbuf_pool:` line, in output order.
fn pool_in_use(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|l| after(l, "mempool mbuf_pool:"))
        .collect()
}

/// Checks a finished run of two paired ports; returns the counters.
fn check_adds_up(r: &Finished) -> Vec<PortCounts> {
    let all = r.transcript();
    assert_eq!(r.code(), Some(0), "{all}");
    assert!(!r.stderr.contains("warning: mempool"), "{all}");
    let c = final_counts(&r.stdout, 2);
    for (p, q) in [(0, 1), (1, 0)] {
        assert_eq!(
            c[p].received + c[q].first,
            c[q].sent + c[q].dropped + c[q].tx_errors,
            "port {p}: received + first frames out of port {q} = port {q}'s sent + dropped \
             + tx errors: {c:?}\n{all}"
        );
    }
    let pool = pool_in_use(&r.stdout);
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
    c
}

/// Runs l2fwd on two ports (`vdevs`) for 1 s with `extra` options.
fn run(tag: &str, vdevs: [&str; 2], extra: &[&str]) -> Finished {
    let prefix = unique(&format!("l2fwd-cnt-{tag}"));
    let mut args = vec!["-l", "0", "--no-huge", "--file-prefix", &prefix];
    for v in &vdevs {
        args.extend_from_slice(&["--vdev", v]);
    }
    args.extend_from_slice(&["--", "-p", "0x3", "-q", "2", "-T", "0", "--duration", "1"]);
    args.extend_from_slice(extra);
    run_l2fwd(&args, Duration::from_secs(30))
}

/// Ports wired back to back carry the `--tx-first` frames round and round: they moved,
/// and what is still on the wire at the end (freed with the queues) is at most what
/// went in.
fn check_loop(c: &[PortCounts], all: &str) {
    let first: u64 = c.iter().map(|p| p.first).sum();
    assert!(first > 0, "no first frames went out\n{all}");
    let received: u64 = c.iter().map(|p| p.received + p.rx_lost).sum();
    let sent: u64 = c.iter().map(|p| p.sent).sum();
    assert!(received > 10 * first, "the frames did not go round\n{all}");
    assert!(sent >= received && sent - received <= first, "{c:?}\n{all}");
}

#[test]
fn null_ports_counters_add_up() {
    let r = run("null", ["net_null0", "net_null1"], &[]);
    let c = check_adds_up(&r);
    assert!(c[0].received > 0 && c[1].received > 0, "{}", r.transcript());
}

#[test]
fn ring_ports_counters_add_up() {
    let r = run(
        "ring",
        ["net_ring0,rx=a,tx=b", "net_ring1,rx=b,tx=a"],
        &["--tx-first", "64"],
    );
    let c = check_adds_up(&r);
    check_loop(&c, &r.transcript());
}

#[test]
fn memif_ports_counters_add_up() {
    let sock = unique("l2fwd-cnt-memif");
    let server = format!("net_memif0,role=server,socket={sock}");
    let client = format!("net_memif1,role=client,socket={sock}");
    let r = run("memif", [&server, &client], &["--tx-first", "64"]);
    let c = check_adds_up(&r);
    check_loop(&c, &r.transcript());
}
