//! Interop with DPDK 22.11's `net_memif` in both roles: `dpdk-testpmd` in macswap mode
//! bounces every frame we send; each must come back byte for byte with the MAC addresses
//! swapped. Needs root, hugepages at /mnt/pmd-huge and `dpdk-testpmd` (Debian package
//! `dpdk`); otherwise each test prints why and passes (and fails under `PMD_REQUIRE_ALL=1`).
//! testpmd runs `--in-memory` (no hugepage files) and is stopped, and its runtime directory
//! and socket removed, at the end, also when the test fails.

mod common;

use common::testpmd::{skip_reason, Testpmd};
use common::{side, wait_for, Side};
use pmd_core::mbuf::PktBatch;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const N: u32 = 2000;
const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const OURS: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn frame(seq: u32) -> Vec<u8> {
    common::frame(PEER, OURS, 1, seq)
}

/// Sends N frames of varied sizes and checks all N come back, MACs swapped.
fn round_trip(s: &mut Side, tp: &mut Testpmd) {
    tp.wait_forwarding();
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

/// DPDK's testpmd as a memif server on an abstract socket named by `tag`, and our
/// client on it with `args`, linked up.
fn dpdk_server_our_client(tag: &str, args: &str) -> (Side, Testpmd) {
    let pid = std::process::id();
    let name = format!("/tmp/pmd-memif-interop-{tag}-{pid}.sock");
    let tp = Testpmd::start(
        &format!("net_memif0,role=server,socket={name}"),
        &format!("pmdmemif{tag}{pid}"),
        None,
    );
    let s = side(
        0,
        &format!("net_memif0,role=client,socket={name},{args}"),
        1,
    );
    wait_for(30, "link up with DPDK's server", || s.port.link().up);
    (s, tp)
}

#[test]
fn our_client_small_buffers_dpdk_server_chains() {
    if !pmd_testkit::require("our_client_small_buffers_dpdk_server_chains", skip_reason()) {
        return;
    }
    // 512-byte buffers: frames longer than that travel as descriptor chains both ways.
    let (mut s, mut tp) = dpdk_server_our_client("z", "bsize=512");
    round_trip(&mut s, &mut tp);
    s.finish();
    drop(tp);
}

#[test]
fn our_zero_copy_client_dpdk_server() {
    if !pmd_testkit::require("our_zero_copy_client_dpdk_server", skip_reason()) {
        return;
    }
    // Zero-copy: DPDK's server maps our pool's data segment (region 1) and reads and
    // writes the frames in our mbufs.
    let (mut s, mut tp) = dpdk_server_our_client("zc", "zero-copy=yes");
    assert!(s.pool.data_segment().is_some());
    assert!(s.xstat("regions") >= 2, "{:?}", s.port.xstats());
    round_trip(&mut s, &mut tp);
    assert_eq!(s.xstat("tx_q0_zc_copied"), 0);
    // Only the first lap of the 1024-slot receive ring came in the ring's own buffers:
    // the rest of the 2000 frames arrived in the mbufs offered in their place.
    let copied = s.xstat("rx_q0_zc_copied");
    assert!(copied <= 1024, "rx_q0_zc_copied {copied}");
    s.finish();
    drop(tp);
}
