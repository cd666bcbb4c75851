//! Interop with DPDK's vhost-user back end: `dpdk-testpmd` with `net_vhost0` in macswap
//! mode bounces every frame we send; we check each one comes back byte for byte with the
//! MAC addresses swapped. Needs root, hugepages and `dpdk-testpmd`; otherwise it prints
//! why and passes.

use pmd_core::ethdev::PortConf;
use pmd_core::mbuf::PktBatch;
use pmd_core::options::EalOptions;
use pmd_core::{Eal, Mempool};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const N: u32 = 1000;
const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const OURS: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// testpmd plus its socket and log; killed and removed on drop (also on panic).
struct Testpmd {
    child: Child,
    sock: PathBuf,
    log: PathBuf,
}

impl Testpmd {
    fn start(sock: &Path, prefix: &str, log: &Path) -> Testpmd {
        let _ = std::fs::remove_file(sock);
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new("dpdk-testpmd")
            .args(["-l", "0,1", "--main-lcore", "0", "--no-pci", "-m", "512"])
            .args(["--huge-dir", "/mnt/pmd-huge", "--file-prefix", prefix])
            .arg("--vdev")
            .arg(format!("net_vhost0,iface={},queues=1", sock.display()))
            .args([
                "--",
                "--forward-mode=macswap",
                "--nb-cores=1",
                "--stats-period",
                "1",
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn dpdk-testpmd");
        Testpmd {
            child,
            sock: sock.to_path_buf(),
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
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
        let _ = std::fs::remove_file(&self.sock);
        let _ = std::fs::remove_file(&self.log);
    }
}

fn skip_reason() -> Option<String> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (hugepages for DPDK)".into());
    }
    if Command::new("dpdk-testpmd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return Some("dpdk-testpmd is not installed (apt-get install dpdk)".into());
    }
    if !Path::new("/mnt/pmd-huge").exists() {
        return Some("no hugetlbfs mount at /mnt/pmd-huge".into());
    }
    None
}

fn frame(seq: u32) -> Vec<u8> {
    let len = 60 + (seq as usize * 37) % (1514 - 60 + 1);
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&PEER);
    f[6..12].copy_from_slice(&OURS);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (seq as usize * 7 + i) as u8;
    }
    f
}

#[test]
fn macswap_round_trip_through_dpdk_vhost() {
    if let Some(why) = skip_reason() {
        eprintln!("macswap_round_trip_through_dpdk_vhost: skipped: {why}");
        return;
    }
    let pid = std::process::id();
    let sock = PathBuf::from(format!("/tmp/pmd-virtio-interop-{pid}.sock"));
    let log = PathBuf::from(format!("/tmp/pmd-virtio-interop-{pid}.log"));
    let tp = Testpmd::start(&sock, &format!("pmdvirtio{pid}"), &log);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "testpmd did not create {} in time; log:\n{}",
            sock.display(),
            tp.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Our side: EAL with memfd hugepages, one virtio-user port, main lcore on CPU 0
    // (testpmd forwards on CPU 1).
    let opts = EalOptions::builder()
        .lcores("0")
        .no_pci(true)
        .file_prefix(&format!("pmdvu{pid}"))
        .vdev(&format!(
            "net_virtio_user0,path={},queue_size=256,mac=02:00:00:00:00:01",
            sock.display()
        ))
        .build()
        .unwrap();
    let mut eal = Eal::init(opts, &[&pmd_virtio::DRIVER]).unwrap();
    let pool = Mempool::create("virtio-interop", 2048, 0).unwrap();
    assert!(pool.segment().is_huge(), "test runs on hugepages");
    let port = eal.port_mut(0).unwrap();
    port.configure(&PortConf::default()).unwrap();
    let mut rx = port.setup_rx_queue(0, 0, &pool).unwrap();
    let mut tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    let link = port.wait_link_up(Duration::from_secs(5));
    assert!(link.up, "link down");
    let xs = port.xstats();
    let features = xs.iter().find(|(k, _)| k == "features").unwrap().1;
    eprintln!("negotiated features {features:#x}, xstats {xs:?}");
    assert!(features & (1 << 32) != 0, "VERSION_1 negotiated");

    let mut next = 0u32;
    let mut got = vec![false; N as usize];
    let mut received = 0u32;
    let mut rb = PktBatch::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while received < N {
        assert!(
            Instant::now() < deadline,
            "timed out: sent {next}, received {received}; stats {:?}\ntestpmd log:\n{}",
            port_stats(&eal),
            tp.log()
        );
        // Keep at most 128 frames in flight so the 256-entry rx ring never overflows.
        if next < N && next - received < 128 {
            let mut b = PktBatch::new();
            while b.len() < 32 && next < N && next - received < 128 {
                let mut m = pool.alloc().expect("pool");
                let f = frame(next);
                assert!(m.copy_from(&f));
                b.push(m).unwrap();
                next += 1;
            }
            while !b.is_empty() {
                tx.tx_burst(&mut b);
                assert!(Instant::now() < deadline, "tx stuck");
            }
        }
        rb.clear();
        rx.rx_burst(&mut rb);
        for m in rb.iter() {
            let d = m.data();
            assert!(d.len() >= 18, "runt of {} bytes", d.len());
            let seq = u32::from_be_bytes(d[14..18].try_into().unwrap());
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
    let s = port_stats(&eal);
    eprintln!("port stats: {s:?}");
    assert_eq!((s.ipackets, s.opackets), (N as u64, N as u64));
    assert_eq!((s.ierrors, s.oerrors, s.rx_nombuf), (0, 0, 0));
    let port = eal.port_mut(0).unwrap();
    port.stop().unwrap();
    drop(rx);
    drop(tx);
    drop(rb);
    assert_eq!(pool.stats().in_use, 0, "no leaked buffers");
    drop(tp);
}

fn port_stats(eal: &Eal) -> pmd_core::ethdev::EthStats {
    eal.ports()[0].stats()
}
