//! l3fwd and DPDK 22.11's l3fwd example, given the same route files and the same pcap of
//! many IPv4/IPv6 flows through `net_pcap`, send the same packets: each reads `in.pcap`
//! on port 0 and records what it sends on ports 0 and 1 (`net_pcap` `tx_pcap`), routes
//! sending everything to port 1.
//!
//! The one deliberate difference: this l3fwd decrements an IPv6 packet's hop limit
//! (RFC 8200), DPDK's example leaves it; so IPv6 packets must differ in that byte only,
//! by one. DPDK's example is built from dpdk-doc's sources with one change: it does not
//! ask the ports for the rx checksum offload, which `net_pcap` does not have
//! (`ci/lib.sh`'s `dpdk_l3fwd`; its forwarding never reads the result).

use pmd_testkit::dpdk::{peer_missing, Testpmd, TestpmdConf};
use pmd_testkit::flows::{self, FlowSpec};
use pmd_testkit::{require, telemetry, unique, Proc, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const L3FWD: &str = env!("CARGO_BIN_EXE_l3fwd");

/// DPDK's l3fwd example, built once (`ci/lib.sh`), or why it cannot be.
fn dpdk_l3fwd() -> Result<PathBuf, String> {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_dpdk_l3fwd).clone()
}

fn build_dpdk_l3fwd() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let out = Command::new("bash")
        .current_dir(&root)
        .args(["-c", "source ci/lib.sh && dpdk_l3fwd \"$1\"", "-"])
        .arg(target.join("dpdk-examples"))
        .output()
        .map_err(|e| format!("running bash: {e}"))?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || path.is_empty() {
        return Err(format!(
            "DPDK's l3fwd example does not build (ci/setup.sh --dpdk installs dpdk-doc): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(PathBuf::from(path))
}

/// The two ports: port 0 replays `in.pcap` and records into `<tag>0.pcap`; port 1
/// records into `<tag>1.pcap`.
fn vdevs(dir: &Path, tag: &str) -> Vec<String> {
    let d = dir.display();
    vec![
        format!("net_pcap0,rx_pcap={d}/in.pcap,tx_pcap={d}/{tag}0.pcap"),
        format!("net_pcap1,tx_pcap={d}/{tag}1.pcap"),
    ]
}

fn app_args(lookup: &str, dir: &Path, extra: &[&str]) -> Vec<String> {
    let d = dir.display();
    let mut a: Vec<String> = vec![
        "-p".into(),
        "0x3".into(),
        "--config=(0,0,0),(1,0,0)".into(),
        format!("--lookup={lookup}"),
        format!("--rule_ipv4={d}/{lookup}_v4.cfg"),
        format!("--rule_ipv6={d}/{lookup}_v6.cfg"),
        "--parse-ptype".into(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Runs both on the traffic of `specs` and compares what they sent.
fn same_output(test: &str, lookup: &str, specs: &[FlowSpec], extra: &[&str]) {
    if !require(test, peer_missing().or_else(telemetry::missing)) {
        return;
    }
    let dpdk = match dpdk_l3fwd() {
        Ok(p) => p,
        Err(why) => {
            require(test, Some(why));
            return;
        }
    };
    let dir = TempDir::new("l3fwd-same");
    let d = dir.path();
    let frames: Vec<Vec<u8>> = specs.iter().flat_map(flows::frames).collect();
    flows::write_pcap(&d.join("in.pcap"), &frames).unwrap();
    let (l4, l6) = flows::lpm_routes(1);
    let (e4, e6) = flows::em_routes(&specs[0], 1);
    for (name, text) in [("lpm_v4", l4), ("lpm_v6", l6), ("em_v4", e4), ("em_v6", e6)] {
        std::fs::write(d.join(format!("{name}.cfg")), text).unwrap();
    }

    // Ours: stops by itself.
    let mut cmd = Command::new(L3FWD);
    cmd.args(["-l", "0", "--no-huge", "-m", "256", "--no-pci"])
        .args(["--file-prefix", &unique("l3same")]);
    for v in vdevs(d, "ours") {
        cmd.args(["--vdev", &v]);
    }
    cmd.arg("--")
        .args(app_args(lookup, d, extra))
        .args(["--duration", "1.5"]);
    let mut ours = Proc::spawn(cmd);
    let st = ours
        .wait(Duration::from_secs(30))
        .expect("l3fwd did not stop");
    assert!(st.success(), "{}", ours.transcript());
    let out = ours.stdout();
    let received = format!(
        "l3fwd: received {}, forwarded {}",
        frames.len(),
        frames.len()
    );
    assert!(out.contains(&received), "want {received:?}\n{out}");

    // DPDK's: stopped (SIGINT, which closes its pcap files) when dropped, once its
    // telemetry says port 1 sent as many packets as ours.
    {
        let app = app_args(lookup, d, extra);
        let prefix = unique("l3samedpdk");
        let peer = Testpmd::spawn(&TestpmdConf {
            prefix: &prefix,
            log: Some(&d.join("dpdk.log")),
            vdevs: &vdevs(d, "dpdk"),
            app: &app,
            program: Some(&dpdk),
            // DPDK's l3fwd gives each port a tx queue per EAL lcore; net_pcap has one.
            lcores: Some("0"),
            ..Default::default()
        });
        assert!(
            telemetry::wait_socket(&prefix),
            "no telemetry socket:\n{}",
            peer.log()
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let sent =
            || telemetry::query(&prefix, "/ethdev/stats,1")["/ethdev/stats"]["opackets"].as_u64();
        while sent() != Some(frames.len() as u64) {
            assert!(
                Instant::now() < deadline,
                "DPDK's l3fwd sent {:?}:\n{}",
                sent(),
                peer.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    for port in 0..2 {
        let ours = flows::read_pcap(&d.join(format!("ours{port}.pcap"))).unwrap();
        let theirs = flows::read_pcap(&d.join(format!("dpdk{port}.pcap"))).unwrap();
        assert_eq!(
            ours.len(),
            theirs.len(),
            "{test}: packets sent on port {port}"
        );
        let (mut v4, mut v6) = (0, 0);
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(
                a.len(),
                b.len(),
                "{test}: packet {i} on port {port}: length"
            );
            if a[12..14] == [0x86, 0xdd] {
                // The hop limit (byte 21): ours one lower; everything else the same.
                assert_eq!(a[21] + 1, b[21], "{test}: packet {i}: hop limit");
                assert_eq!(
                    (&a[..21], &a[22..]),
                    (&b[..21], &b[22..]),
                    "{test}: packet {i}"
                );
                v6 += 1;
            } else {
                assert_eq!(a, b, "{test}: packet {i} on port {port}");
                v4 += 1;
            }
        }
        if port == 1 {
            assert_eq!(
                ours.len(),
                frames.len(),
                "{test}: everything goes to port 1"
            );
            let want6 = frames.iter().filter(|f| f[12..14] == [0x86, 0xdd]).count();
            assert_eq!((v4, v6), (frames.len() - want6, want6), "{test}");
        }
    }
}

fn spec(flows: u32, len: usize, v6_pct: u32) -> FlowSpec {
    FlowSpec {
        flows,
        len,
        v6_pct,
        dst_mac: [0x02, 0x70, 0x63, 0x61, 0x70, 0x00],
    }
}

#[test]
fn lpm_sends_what_dpdks_l3fwd_sends() {
    const TEST: &str = "lpm_sends_what_dpdks_l3fwd_sends";
    same_output(TEST, "lpm", &[spec(700, 60, 30), spec(700, 1000, 30)], &[]);
}

#[test]
fn em_ipv4_sends_what_dpdks_l3fwd_sends() {
    const TEST: &str = "em_ipv4_sends_what_dpdks_l3fwd_sends";
    same_output(TEST, "em", &[spec(700, 60, 0), spec(700, 500, 0)], &[]);
}

#[test]
fn em_ipv6_sends_what_dpdks_l3fwd_sends() {
    const TEST: &str = "em_ipv6_sends_what_dpdks_l3fwd_sends";
    // DPDK's example fills its IPv6 flow table only with --ipv6 (ours always does).
    same_output(
        TEST,
        "em",
        &[spec(500, 62, 100), spec(500, 300, 100)],
        &["--ipv6"],
    );
}
