//! testpmd on two in-process 82599 models driven by the ixgbe PMD: a generated stream on
//! port 0 is forwarded to port 1 exactly, with 1 queue and with 4 queues under RSS (each
//! queue gets a share, none is lost).

use std::process::Command;

const N: u64 = 4000;

fn run(queues: u16) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_testpmd"))
        .args(["--no-huge", "-l", "0"])
        .args(["--vdev", &format!("net_ixgbe_model0,gen={N},flows=64")])
        .args(["--vdev", "net_ixgbe_model1"])
        .arg("--")
        .args([&format!("--rxq={queues}"), &format!("--txq={queues}")])
        .args(["--txd=1024", "--duration=4"])
        .output()
        .expect("run testpmd");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    text
}

/// The numbers after `key` in each line of `block` that has it.
fn values(block: &str, key: &str) -> Vec<u64> {
    block
        .lines()
        .filter_map(|l| l.split(key).nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect()
}

fn port_block(out: &str, port: u16) -> &str {
    let start = out
        .find(&format!("Forward statistics for port {port} "))
        .unwrap_or_else(|| panic!("no statistics for port {port}\n{out}"));
    &out[start..start + 300.min(out.len() - start)]
}

#[test]
fn one_queue_forwards_every_generated_frame() {
    let out = run(1);
    assert_eq!(values(port_block(&out, 0), "RX-packets:"), vec![N], "{out}");
    assert_eq!(values(port_block(&out, 1), "TX-packets:"), vec![N], "{out}");
    assert_eq!(values(port_block(&out, 1), "TX-dropped:"), vec![0], "{out}");
}

#[test]
fn rss_spreads_flows_over_four_queues_and_loses_none() {
    let out = run(4);
    let mut per_queue = Vec::new();
    for q in 0..4 {
        let key = format!("RX Port= 0/Queue= {q} -> TX Port= 1/Queue= {q}");
        let at = out
            .find(&key)
            .unwrap_or_else(|| panic!("no stream {key}\n{out}"));
        let rx = values(&out[at..at + 200], "RX-packets:")[0];
        per_queue.push(rx);
    }
    assert!(
        per_queue.iter().all(|&n| n > 0),
        "every queue gets flows: {per_queue:?}"
    );
    assert_eq!(per_queue.iter().sum::<u64>(), N, "{per_queue:?}");
    assert_eq!(values(port_block(&out, 1), "TX-packets:"), vec![N], "{out}");
}
