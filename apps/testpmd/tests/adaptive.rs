//! testpmd in adaptive mode (`--idle-sleep`) on a port whose far end this test process
//! drives: idle, testpmd sleeps on the port's rx interrupt and uses under 2% of a core over
//! 5 s (user + system time from /proc/PID/stat); bursts with idle gaps between them all come
//! back (macswap), exactly as many as were sent; its final statistics show the sleeps and
//! the interrupt wakes.
//! - memif: testpmd serves, the test is the memif client (the ring's interrupt eventfd).
//!   Needs nothing special: unix sockets and memfd memory, testpmd runs `--no-huge`.
//! - virtio-user against DPDK's net_vhost: testpmd's virtio-user port is DPDK testpmd's
//!   vhost port 0, which DPDK forwards (io) to its vhost port 1, our test's virtio-user
//!   (the vring's call eventfd). Needs root, hugepages and `dpdk-testpmd`.

use pmd_core::ethdev::{Port, PortConf, RxQueueHandle, TxQueueHandle};
use pmd_core::mbuf::PktBatch;
use pmd_core::Mempool;
use pmd_testkit::{unique, Proc};
use std::process::Command;
use std::time::{Duration, Instant};

const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const OURS: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const BURSTS: u64 = 3;

/// Sends `n` frames and waits for their `n` echoes (MACs swapped); returns the echoes.
fn burst(rx: &mut RxQueueHandle, tx: &mut TxQueueHandle, pool: &Mempool, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut sent, mut echoed) = (0u64, 0u64);
    let mut rb = PktBatch::new();
    while echoed < n {
        assert!(
            Instant::now() < deadline,
            "sent {sent}, {echoed} of {n} came back"
        );
        if sent < n {
            let mut b = PktBatch::new();
            let k = (n - sent).min(32) as usize;
            pool.alloc_bulk(&mut b, k).expect("pool");
            for m in b.as_mut_slice().iter_mut() {
                let mut f = vec![0u8; 60];
                f[..6].copy_from_slice(&PEER);
                f[6..12].copy_from_slice(&OURS);
                f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
                assert!(m.copy_from(&f));
            }
            sent += tx.tx_burst(&mut b) as u64;
        }
        rb.clear();
        rx.rx_burst(&mut rb);
        for m in rb.iter() {
            assert_eq!((&m.data()[..6], &m.data()[6..12]), (&OURS[..], &PEER[..]));
            echoed += 1;
        }
    }
    echoed
}

/// Runs testpmd (macswap, adaptive) on `testpmd_vdev` and the test's end on `peer_vdev`
/// (probed with `pmd_drivers`' `driver`); checks idle CPU, exact echoes of bursts of
/// `per_burst` frames (no more than testpmd's receive ring holds: the burst lands while
/// it sleeps) and the sleeps.
fn adaptive_echo(tag: &str, testpmd_vdev: &str, driver: &str, peer_vdev: &str, per_burst: u64) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_testpmd"));
    cmd.args(["-l", "0", "--no-huge", "--file-prefix", &unique("tpmda")])
        .args(["--vdev", testpmd_vdev])
        .args([
            "--",
            "--forward-mode=macswap",
            "--duration=60",
            "--stats-period=0",
        ])
        .args(["--idle-sleep", "200", "--max-sleep-ms", "100"]);
    let mut child = Proc::spawn(cmd);

    let drv = pmd_drivers::ALL
        .iter()
        .find(|d| d.name() == driver)
        .expect("driver");
    let vdev = peer_vdev.parse().unwrap();
    let mut port = Port::new(0, driver, drv.probe(&vdev).expect("probe"));
    let pool = Mempool::create(&unique(tag), 4096, 0).expect("pool");
    port.configure(&PortConf::default()).expect("configure");
    let mut rx = port.setup_rx_queue(0, 0, &pool).expect("rx queue");
    let mut tx = port.setup_tx_queue(0, 0).expect("tx queue");
    port.start().expect("start");
    let up = Instant::now() + Duration::from_secs(10);
    while !port.link().up {
        assert!(Instant::now() < up, "no link to testpmd");
        std::thread::sleep(Duration::from_millis(10));
    }

    std::thread::sleep(Duration::from_millis(500));
    let pid = child.pid();
    let (c0, t0) = (pmd_testkit::cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let idle_pct = (pmd_testkit::cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;

    let mut echoed = 0;
    for _ in 0..BURSTS {
        std::thread::sleep(Duration::from_millis(400));
        echoed += burst(&mut rx, &mut tx, &pool, per_burst);
    }
    let status = child.interrupt(Duration::from_secs(10));
    let text = child.stdout();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{text}{}",
        child.stderr()
    );
    assert_eq!(echoed, BURSTS * per_burst);
    let (line, a) = pmd_testkit::adaptive_line(&text, 0)
        .unwrap_or_else(|| panic!("no adaptive statistics\n{text}"));
    assert!(a.sleeps > 0 && a.intr_wakes > 0, "{line}");
    assert!(
        idle_pct < 2.0,
        "{idle_pct:.2}% of a core while idle\n{text}"
    );
    let st = port.stats();
    assert_eq!((st.ipackets, st.opackets), (echoed, echoed), "{st:?}");
    eprintln!("testpmd on {driver}'s peer: idle {idle_pct:.2}% of a core over 5 s; {echoed} echoed; {line}");
    port.stop().unwrap();
    drop((rx, tx));
    assert_eq!(pool.stats().in_use, 0, "buffers not returned");
}

#[test]
fn testpmd_sleeps_on_memif_interrupts_when_idle_and_echoes_every_burst() {
    let sock = unique("pmd-tpmd-adapt");
    adaptive_echo(
        "memif-adapt",
        &format!("net_memif0,role=server,socket={sock}"),
        "net_memif",
        &format!("net_memif0,role=client,socket={sock}"),
        512,
    );
}

#[test]
fn testpmd_sleeps_on_virtio_user_interrupts_against_dpdk_vhost() {
    let test = "testpmd_sleeps_on_virtio_user_interrupts_against_dpdk_vhost";
    if !pmd_testkit::require(test, pmd_testkit::dpdk::peer_missing()) {
        return;
    }
    let prefix = unique("tpmdavh");
    let a = std::env::temp_dir().join(format!("{prefix}-a.sock"));
    let b = std::env::temp_dir().join(format!("{prefix}-b.sock"));
    let dpdk = pmd_testkit::dpdk::Testpmd::spawn(&pmd_testkit::dpdk::TestpmdConf {
        prefix: &prefix,
        vdevs: &[
            format!("net_vhost0,iface={},queues=1", a.display()),
            format!("net_vhost1,iface={},queues=1", b.display()),
        ],
        // A stats period keeps it running without a terminal (else it waits for Enter,
        // reads end-of-file and exits).
        app: &[
            "--forward-mode=io".into(),
            "--nb-cores=1".into(),
            "--stats-period=1".into(),
        ],
        owned: &[&a, &b],
        ..Default::default()
    });
    let end = Instant::now() + Duration::from_secs(20);
    while !(a.exists() && b.exists()) {
        assert!(
            Instant::now() < end,
            "DPDK's vhost sockets never appeared\n{}",
            dpdk.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    adaptive_echo(
        "vu-adapt",
        &format!("net_virtio_user0,path={}", a.display()),
        "net_virtio_user",
        &format!("net_virtio_user1,path={}", b.display()),
        // testpmd's virtio-user receive ring has 256 entries.
        200,
    );
    drop(dpdk);
}
