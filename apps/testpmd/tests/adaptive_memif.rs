//! testpmd in adaptive mode (`--idle-sleep`) on a memif port whose peer is a memif
//! client in this test process: idle, it sleeps on the ring's interrupt eventfd and uses
//! under 2% of a core over 5 s (user + system time from /proc/PID/stat); bursts with
//! idle gaps between them all come back (macswap), exactly as many as were sent; its
//! final statistics show the sleeps and the interrupt wakes. Needs nothing special:
//! memif is unix sockets and memfd memory, testpmd runs with `--no-huge`.

use pmd_core::ethdev::{Port, PortConf, RxQueueHandle, TxQueueHandle};
use pmd_core::mbuf::PktBatch;
use pmd_core::Mempool;
use pmd_testkit::unique;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const OURS: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const BURSTS: u64 = 3;
const PER_BURST: u64 = 512;

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

#[test]
fn testpmd_sleeps_on_memif_interrupts_when_idle_and_echoes_every_burst() {
    let sock = unique("pmd-tpmd-adapt");
    let out = std::env::temp_dir().join(format!("{sock}.out"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_testpmd"))
        .args(["-l", "0", "--no-huge", "--file-prefix", &unique("tpmda")])
        .args(["--vdev", &format!("net_memif0,role=server,socket={sock}")])
        .args([
            "--",
            "--forward-mode=macswap",
            "--duration=60",
            "--stats-period=0",
        ])
        .args(["--idle-sleep", "200", "--max-sleep-ms", "100"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start testpmd");

    let drv = pmd_drivers::ALL
        .iter()
        .find(|d| d.name() == "net_memif")
        .expect("memif driver");
    let vdev = format!("net_memif0,role=client,socket={sock}")
        .parse()
        .unwrap();
    let mut port = Port::new(0, "net_memif0", drv.probe(&vdev).expect("probe"));
    let pool = Mempool::create(&unique("memif-adapt"), 4096, 0).expect("pool");
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
    let pid = child.id();
    let (c0, t0) = (pmd_testkit::cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let idle_pct = (pmd_testkit::cpu_seconds(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0;

    let mut echoed = 0;
    for _ in 0..BURSTS {
        std::thread::sleep(Duration::from_millis(400));
        echoed += burst(&mut rx, &mut tx, &pool, PER_BURST);
    }
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    assert!(status.success(), "{status}\n{text}");
    assert_eq!(echoed, BURSTS * PER_BURST);
    let line = text
        .lines()
        .find(|l| l.starts_with("Lcore 0 adaptive: "))
        .unwrap_or_else(|| panic!("no adaptive statistics\n{text}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(nums[1] > 0 && nums[2] > 0, "{line}");
    assert!(
        idle_pct < 2.0,
        "{idle_pct:.2}% of a core while idle\n{text}"
    );
    let st = port.stats();
    assert_eq!((st.ipackets, st.opackets), (echoed, echoed), "{st:?}");
    eprintln!("testpmd on memif: idle {idle_pct:.2}% of a core over 5 s; {echoed} echoed; {line}");
    port.stop().unwrap();
    drop((rx, tx));
    assert_eq!(pool.stats().in_use, 0, "buffers not returned");
}
