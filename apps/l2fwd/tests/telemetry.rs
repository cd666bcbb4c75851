//! DPDK's `dpdk-telemetry.py` reads a running l2fwd as it reads DPDK's testpmd: every
//! command of issue 14 is answered, keyed and shaped as DPDK 22.11 answers it (compared
//! live, [`pmd_testkit::telemetry::compare_with_dpdk`]); the counters move while l2fwd
//! forwards; l2fwd's own `/l2fwd/stats` is listed and answered; `--no-telemetry` opens
//! no socket; the runtime directory is gone after l2fwd exits. Needs `dpdk-testpmd` and
//! `dpdk-telemetry.py` (ci/setup.sh --dpdk) and root (DPDK's runtime directory).

use pmd_testkit::telemetry::{compare_with_dpdk, missing, query, wait_socket};
use pmd_testkit::Proc;
use pmd_testkit::{require, root_missing, unique};
use std::process::Command;
use std::time::Duration;

fn l2fwd(prefix: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_l2fwd"));
    cmd.args(["-l", "0", "--no-huge", "--file-prefix", prefix])
        .args(extra)
        .args(["--vdev", "net_null0", "--vdev", "net_null1"])
        .args(["--", "-p", "0x3", "-q", "2", "-T", "0", "--duration", "60"]);
    Proc::spawn(cmd)
}

fn stop(mut c: Proc) {
    let status = c.interrupt(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        c.stderr()
    );
}

#[test]
fn dpdk_telemetry_py_reads_l2fwd_as_it_reads_dpdk() {
    let test = "dpdk_telemetry_py_reads_l2fwd_as_it_reads_dpdk";
    if !require(test, missing()) {
        return;
    }
    let prefix = unique("pmd-tel-l2fwd");
    let child = l2fwd(&prefix, &[]);
    assert!(wait_socket(&prefix), "no telemetry socket");
    let ours = compare_with_dpdk(&prefix);
    assert_eq!(
        ours.get("/ethdev/list")["/ethdev/list"],
        serde_json::json!([0, 1])
    );
    assert!(ours.get("/ethdev/stats,0")["/ethdev/stats"]["ipackets"].as_u64() > Some(0));
    assert_eq!(
        ours.get("/ethdev/info,0")["/ethdev/info"]["name"],
        "net_null0"
    );
    assert_eq!(
        ours.get("/eal/app_params")["/eal/app_params"],
        serde_json::json!(["-p", "0x3", "-q", "2", "-T", "0", "--duration", "60"])
    );
    let listed = ours.get("/")["/"].as_array().unwrap().clone();
    assert!(
        listed.contains(&serde_json::json!("/l2fwd/stats")),
        "{listed:?}"
    );
    let s = query(&prefix, "/l2fwd/stats,1");
    assert!(s["/l2fwd/stats"]["sent"].as_u64() > Some(0), "{s}");
    assert_eq!(
        query(&prefix, "/l2fwd/stats,5")["/l2fwd/stats"],
        serde_json::Value::Null
    );
    stop(child);
    assert!(
        !pmd_core::telemetry::runtime_dir(&prefix).exists(),
        "runtime directory left behind"
    );
}

#[test]
fn no_telemetry_opens_no_socket() {
    let test = "no_telemetry_opens_no_socket";
    if !require(test, root_missing("DPDK's runtime directory")) {
        return;
    }
    let prefix = unique("pmd-tel-off");
    let child = l2fwd(&prefix, &["--no-telemetry"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(!pmd_core::telemetry::runtime_dir(&prefix).exists());
    stop(child);
}

/// Sends `req` to `addr` and returns the whole response.
fn http(addr: std::net::SocketAddr, req: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).expect("connect to the metrics port");
    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    c.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

/// A port nobody listens on now.
fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `--metrics` serves the Prometheus text format while l2fwd forwards (with the socket
/// off: metrics need no root): every sample line is `name{labels} value` under its HELP
/// and TYPE, the port and queue counters move, the pool is there; other paths, methods
/// and a malformed request get their HTTP errors; a bad address is refused at the edge
/// and a taken one fails the start, each with one line and exit code 2.
#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let addr = free_port();
    let prefix = unique("pmd-metrics");
    let child = l2fwd(&prefix, &["--no-telemetry", "--metrics", &addr.to_string()]);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < end, "metrics never listened");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let r = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = r.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let mut typed = std::collections::HashSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (name, rest) = line.split_once('{').unwrap_or_else(|| panic!("{line}"));
        let (_labels, value) = rest.rsplit_once("} ").unwrap_or_else(|| panic!("{line}"));
        assert!(typed.contains(name), "{name} has no TYPE line");
        value.parse::<u64>().unwrap_or_else(|_| panic!("{line}"));
    }
    let sample = |name: &str, labels: &str| -> u64 {
        body.lines()
            .find(|l| l.starts_with(&format!("{name}{{{labels}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}{{{labels}...}} in\n{body}"))
    };
    assert!(sample("pmd_port_rx_packets_total", "port=\"0\",name=\"net_null0\"") > 0);
    assert!(
        sample(
            "pmd_queue_tx_packets_total",
            "port=\"1\",name=\"net_null1\",queue=\"0\""
        ) > 0
    );
    assert_eq!(sample("pmd_port_link_up", "port=\"0\""), 1);
    assert_eq!(sample("pmd_mempool_size", "pool=\"mbuf_pool\""), 8192);
    assert!(
        body.contains("pmd_port_xstat{port=\"0\",name=\"net_null0\",xstat=\"rx_good_packets\"}")
    );
    assert!(http(addr, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(http(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    assert!(http(addr, "hello\r\n\r\n").starts_with("HTTP/1.1 400"));
    // A second l2fwd on the same address: refused at start, in one line.
    let out = Command::new(env!("CARGO_BIN_EXE_l2fwd"))
        .args([
            "-l",
            "0",
            "--no-huge",
            "--no-telemetry",
            "--metrics",
            &addr.to_string(),
        ])
        .args(["--vdev", "net_null0", "--", "-p", "0x1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--metrics") && err.contains("free IP:PORT"),
        "{err}"
    );
    stop(child);
    let out = Command::new(env!("CARGO_BIN_EXE_l2fwd"))
        .args(["--metrics", "localhost", "--", "-p", "0x1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("IP:PORT"), "{err}");
}
