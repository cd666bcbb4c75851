//! Interop with DPDK 22.11's `net_memif` in both roles: `dpdk-testpmd` in macswap mode
//! bounces every frame we send; each must come back byte for byte with the MAC addresses
//! swapped. Needs root, hugepages at /mnt/pmd-huge and `dpdk-testpmd` (Debian package
//! `dpdk`); otherwise each test prints why and passes (and fails under `PMD_REQUIRE_ALL=1`).
//! testpmd runs `--in-memory` (no hugepage files) and is stopped, and its runtime directory
//! and socket removed, at the end, also when the test fails.

mod common;

use common::{side, wait_for, Side};
use pmd_core::mbuf::PktBatch;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const N: u32 = 2000;
const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const OURS: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Why DPDK cannot be the peer here, if it cannot.
fn skip_reason() -> Option<String> {
    pmd_testkit::root_missing("hugepages for DPDK")
        .or_else(pmd_testkit::dpdk_missing)
        .or_else(|| pmd_testkit::hugetlbfs_missing("/mnt/pmd-huge"))
}

/// `dpdk-testpmd` with one memif port; killed and cleaned up on drop.
struct Testpmd {
    child: Child,
    prefix: String,
    sock: Option<PathBuf>,
    log: PathBuf,
    cmd: String,
}

impl Testpmd {
    fn start(vdev: &str, prefix: &str, sock: Option<PathBuf>) -> Testpmd {
        let log = std::env::temp_dir().join(format!("{prefix}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let args: Vec<String> = [
            "-l",
            "0,1",
            "--main-lcore",
            "0",
            "--no-pci",
            "-m",
            "512",
            "--huge-dir",
            "/mnt/pmd-huge",
            // No hugepage files (they would stay pinned in the mount after testpmd exits);
            // the prefix still names the process and its runtime directory.
            "--in-memory",
            "--file-prefix",
            prefix,
            "--log-level=pmd.net.memif:debug",
            "--vdev",
            vdev,
            "--",
            "--forward-mode=macswap",
            "--nb-cores=1",
            // testpmd drains rx queues when forwarding starts; frames we send as soon as
            // the link is up must not be thrown away.
            "--no-flush-rx",
            "--total-num-mbufs=16384",
            "--stats-period",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let cmd = format!("dpdk-testpmd {}", args.join(" "));
        eprintln!("starting: {cmd}");
        let child = Command::new("dpdk-testpmd")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn dpdk-testpmd");
        Testpmd {
            child,
            prefix: prefix.into(),
            sock,
            log,
            cmd,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.alive() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
        if let Some(s) = &self.sock {
            let _ = std::fs::remove_file(s);
        }
        if std::thread::panicking() {
            eprintln!(
                "testpmd command: {}\ntestpmd log:\n{}",
                self.cmd,
                self.log()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

fn frame(seq: u32) -> Vec<u8> {
    common::frame(PEER, OURS, 1, seq)
}

/// Sends N frames of varied sizes and checks all N come back, MACs swapped.
fn round_trip(s: &mut Side, tp: &mut Testpmd) {
    // Frames sent before testpmd's forwarding lcore runs would be counted but not echoed.
    wait_for(30, "testpmd to start forwarding", || {
        tp.log().contains("packet forwarding - ports=")
    });
    let mut next = 0u32;
    let mut got = vec![false; N as usize];
    let mut received = 0u32;
    let mut rb = PktBatch::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received < N {
        assert!(
            Instant::now() < deadline && tp.alive(),
            "sent {next}, received {received}; stats {:?}, xstats {:?}",
            s.port.stats(),
            s.port.xstats()
        );
        if next < N && next - received < 256 {
            let mut b = PktBatch::new();
            while b.len() < 32 && next < N && next - received < 256 {
                let mut m = s.pool.alloc().expect("pool");
                assert!(m.copy_from(&frame(next)));
                b.push(m).unwrap();
                next += 1;
            }
            while !b.is_empty() {
                s.tx[0].tx_burst(&mut b);
                assert!(Instant::now() < deadline, "tx stuck");
            }
        }
        rb.clear();
        s.rx[0].rx_burst(&mut rb);
        for m in rb.iter() {
            let d = m.data();
            let seq = common::seq_of(d);
            assert!(seq < N, "bad sequence {seq}");
            let mut want = frame(seq);
            want[..6].copy_from_slice(&OURS);
            want[6..12].copy_from_slice(&PEER);
            assert_eq!(d.len(), want.len(), "length of frame {seq}");
            assert!(d == &want[..], "contents of frame {seq}");
            assert!(!got[seq as usize], "duplicate frame {seq}");
            got[seq as usize] = true;
            received += 1;
        }
    }
    let st = s.port.stats();
    eprintln!("port stats {st:?}");
    assert_eq!((st.ipackets, st.opackets), (N as u64, N as u64));
    assert_eq!((st.ierrors, st.oerrors, st.rx_nombuf), (0, 0, 0));
}

#[test]
fn our_server_dpdk_client_abstract_socket() {
    if !pmd_testkit::require("our_server_dpdk_client_abstract_socket", skip_reason()) {
        return;
    }
    let pid = std::process::id();
    let name = format!("/tmp/pmd-memif-interop-s-{pid}.sock");
    // Abstract namespace (DPDK's default): nothing on disk.
    let mut s = side(0, &format!("net_memif0,role=server,socket={name}"), 1);
    let mut tp = Testpmd::start(
        &format!("net_memif0,role=client,socket={name}"),
        &format!("pmdmemifc{pid}"),
        None,
    );
    wait_for(30, "link up with DPDK's client", || s.port.link().up);
    round_trip(&mut s, &mut tp);
    drop(tp);
    wait_for(10, "link down after testpmd exits", || !s.port.link().up);
    s.finish();
}

#[test]
fn our_client_dpdk_server_path_socket() {
    if !pmd_testkit::require("our_client_dpdk_server_path_socket", skip_reason()) {
        return;
    }
    let pid = std::process::id();
    let path = PathBuf::from(format!("/tmp/pmd-memif-interop-c-{pid}.sock"));
    let _ = std::fs::remove_file(&path);
    let mut tp = Testpmd::start(
        &format!(
            "net_memif0,role=server,socket={},socket-abstract=no",
            path.display()
        ),
        &format!("pmdmemifs{pid}"),
        Some(path.clone()),
    );
    // Our client retries until testpmd listens.
    let mut s = side(
        0,
        &format!(
            "net_memif0,role=client,socket={},socket-abstract=no",
            path.display()
        ),
        1,
    );
    wait_for(30, "link up with DPDK's server", || s.port.link().up);
    round_trip(&mut s, &mut tp);
    s.finish();
    drop(tp);
}

#[test]
fn our_client_small_buffers_dpdk_server_chains() {
    if !pmd_testkit::require("our_client_small_buffers_dpdk_server_chains", skip_reason()) {
        return;
    }
    let pid = std::process::id();
    let name = format!("/tmp/pmd-memif-interop-z-{pid}.sock");
    let mut tp = Testpmd::start(
        &format!("net_memif0,role=server,socket={name}"),
        &format!("pmdmemifz{pid}"),
        None,
    );
    // 512-byte buffers: frames longer than that travel as descriptor chains both ways.
    let mut s = side(
        0,
        &format!("net_memif0,role=client,socket={name},bsize=512"),
        1,
    );
    wait_for(30, "link up with DPDK's server", || s.port.link().up);
    round_trip(&mut s, &mut tp);
    s.finish();
    drop(tp);
}
