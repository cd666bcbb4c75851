//! Interop with DPDK 22.11's `dpdk-testpmd` as the peer, in the same private namespace:
//! testpmd drives the veth end `vb` (with `net_af_packet`, and with DPDK's own
//! `net_af_xdp`) in macswap mode; our AF_XDP port on `va` (UMEM and mbufs in hugepages)
//! sends 1000 frames and must get all 1000 back, byte for byte except for the swapped
//! MAC addresses. testpmd is killed and its runtime directory removed at the end, also
//! when the test fails. Needs root, AF_XDP, hugepages and `dpdk-testpmd`; otherwise it
//! prints why and passes (fails under `PMD_REQUIRE_ALL=1`).

mod common;

use common::*;
use pmd_core::ethdev::PortConf;
use pmd_core::mbuf::PktBatch;
use pmd_core::memory::MemoryConfig;
use pmd_core::Mempool;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const N: u32 = 1000;

/// testpmd in the namespace, with its log; killed and cleaned up on drop.
struct Testpmd {
    child: Child,
    prefix: String,
    log: PathBuf,
}

impl Testpmd {
    /// `ip netns exec NS dpdk-testpmd ... --vdev VDEV -- --forward-mode=macswap`, on CPU 1
    /// for forwarding (our side polls on the other CPU).
    fn start(ns: &str, vdev: &str, prefix: &str) -> Testpmd {
        let log = std::env::temp_dir().join(format!("{prefix}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "dpdk-testpmd"])
            .args(["-l", "0,1", "--main-lcore", "0", "--no-pci"])
            .args(["--no-huge", "-m", "256", "--file-prefix", prefix])
            .args(["--vdev", vdev])
            .args([
                "--",
                "--forward-mode=macswap",
                "--nb-cores=1",
                "--total-num-mbufs=8192",
                "--stats-period",
                "1",
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn dpdk-testpmd");
        let tp = Testpmd {
            child,
            prefix: prefix.to_string(),
            log,
        };
        // Forwarding runs once the first statistics block is printed.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !tp.log().contains("NIC statistics for port 0") {
            assert!(
                Instant::now() < deadline,
                "testpmd did not start forwarding; log:\n{}",
                tp.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        tp
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        // `ip netns exec` execs testpmd, so the child is testpmd itself.
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
        let _ = std::fs::remove_file(&self.log);
    }
}

fn frame(dst: [u8; 6], src: [u8; 6], seq: u32) -> Vec<u8> {
    let mut f = test_frame(dst, seq);
    f[6..12].copy_from_slice(&src);
    f
}

/// Sends N frames to testpmd on `vb` with our port on `va` and checks each comes back
/// once with its MAC addresses swapped.
fn macswap_round_trip(test: &str, peer_vdev: &str, tag: &str) {
    // One testpmd at a time: each wants a CPU of its own.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(ns) = netns(test, 1) else {
        return;
    };
    // Our side wants 16 free hugepages (UMEM and mbufs).
    let missing = pmd_testkit::dpdk_missing().or_else(|| pmd_testkit::hugepages_missing(16));
    if !pmd_testkit::require(test, missing) {
        return;
    }
    let prefix = format!("pmdafxdp{tag}{}", std::process::id());
    let tp = Testpmd::start(ns.name(), peer_vdev, &prefix);
    let peer_mac = ns.mac("vb");
    let log = tp.log.clone();
    let tag = tag.to_string();
    ns.run(move || {
        // Hugepage-backed UMEM and mbufs, as under the EAL.
        pmd_core::memory::configure(MemoryConfig {
            no_huge: false,
            ..MemoryConfig::default()
        });
        let mut port = open_port("net_af_xdp0,iface=va", PortConf::default());
        let pool = Mempool::create(&format!("afxdp-interop-{tag}"), 4096, 0).unwrap();
        assert!(pool.segment().is_huge());
        let mut rx = port.setup_rx_queue(0, 1024, &pool).unwrap();
        let mut tx = port.setup_tx_queue(0, 1024).unwrap();
        port.start().unwrap();
        assert!(port.wait_link_up(Duration::from_secs(2)).up);
        assert_eq!(xstat(&port, "q0_umem_hugepages"), 1);
        let ours = port.mac_addr().0;

        let mut next = 0u32;
        let mut got = vec![false; N as usize];
        let mut received = 0u32;
        let mut rb = PktBatch::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while received < N {
            assert!(
                Instant::now() < deadline,
                "timed out: sent {next}, received {received}; stats {:?}\ntestpmd log:\n{}",
                port.stats(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            // At most 256 in flight: testpmd's af_packet rings and ours never overflow.
            if next < N && next - received < 256 {
                let mut b = PktBatch::new();
                while b.len() < 32 && next < N && next - received < 256 {
                    let mut m = pool.alloc().expect("pool");
                    assert!(m.copy_from(&frame(peer_mac, ours, next)));
                    b.push(m).unwrap();
                    next += 1;
                }
                while !b.is_empty() {
                    tx.tx_burst(&mut b);
                    assert!(Instant::now() < deadline, "tx stuck");
                }
            }
            rx.rx_burst(&mut rb);
            for m in rb.iter() {
                let d = m.data();
                let seq = frame_seq(d).expect("a test frame");
                assert!(seq < N, "bad sequence {seq}");
                let want = frame(ours, peer_mac, seq);
                assert!(d == &want[..], "frame {seq} differs");
                assert!(!got[seq as usize], "duplicate frame {seq}");
                got[seq as usize] = true;
                received += 1;
            }
            rb.clear();
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(rx.rx_burst(&mut rb), 0, "nothing more comes back");
        let s = port.stats();
        eprintln!("{tag}: port stats {s:?}\nxstats {:?}", port.xstats());
        assert_eq!((s.ipackets, s.opackets), (u64::from(N), u64::from(N)));
        assert_eq!((s.ierrors, s.oerrors, s.imissed, s.rx_nombuf), (0, 0, 0, 0));
        port.stop().unwrap();
        drop((rx, tx, rb));
        port.close();
        assert_eq!(pool.stats().in_use, 0, "no leaked buffers");
    });
    let out = tp.log();
    assert!(out.contains("macswap"), "{out}");
    drop(tp);
    assert!(
        !std::path::Path::new(&format!("/var/run/dpdk/{prefix}")).exists(),
        "testpmd's runtime directory was removed"
    );
}

/// DPDK's `net_af_packet` on the peer end.
#[test]
fn macswap_through_dpdk_af_packet() {
    macswap_round_trip(
        "macswap_through_dpdk_af_packet",
        "net_af_packet0,iface=vb",
        "afp",
    );
}

/// DPDK's own `net_af_xdp` on the peer end (its libxdp program on `vb`, ours on `va`).
#[test]
fn macswap_through_dpdk_af_xdp() {
    macswap_round_trip("macswap_through_dpdk_af_xdp", "net_af_xdp0,iface=vb", "xdp");
}
