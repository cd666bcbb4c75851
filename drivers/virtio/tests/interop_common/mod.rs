//! Shared by the interop tests (`interop.rs`: split rings, `interop_packed.rs`: packed
//! rings): DPDK's vhost-user back end, `dpdk-testpmd` with `net_vhost0` in macswap mode,
//! bounces every frame we send; we check each one comes back byte for byte with the MAC
//! addresses swapped. Needs root, hugepages and `dpdk-testpmd`; otherwise it prints why
//! and passes (and fails under `PMD_REQUIRE_ALL=1`).

#![allow(dead_code)]

pub mod chains;
pub mod offloads;
pub mod peers;

use pmd_core::devargs::VdevSpec;
use pmd_core::ethdev::{Device, Driver, MacAddr, PortConf, RxOffloads};
use pmd_core::mbuf::PktBatch;
use pmd_core::options::EalOptions;
use pmd_core::{Eal, Mempool};
use pmd_virtio::net::{NetConf, NetOptions, VirtioNet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const N: u32 = 1000;
/// Frames after the stop/start.
const RESTART_N: u32 = 300;
const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const OURS: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// testpmd's `net_vhost0` on our socket; stopped, and what it left removed, on drop
/// (also on panic).
pub struct Testpmd(pmd_testkit::dpdk::Testpmd);

impl Testpmd {
    fn start(sock: &Path, prefix: &str, log: &Path) -> Testpmd {
        Self::start_mode(sock, prefix, log, "macswap")
    }

    /// testpmd's net_vhost with forwarding mode `mode` (macswap, rxonly, ...).
    pub fn start_mode(sock: &Path, prefix: &str, log: &Path, mode: &str) -> Testpmd {
        Self::start_queues(sock, prefix, log, mode, 1)
    }

    /// testpmd's net_vhost with `queues` queue pairs (`--rxq/--txq` as many, one
    /// forwarding core) and forwarding mode `mode`.
    pub fn start_queues(sock: &Path, prefix: &str, log: &Path, mode: &str, queues: u16) -> Testpmd {
        Self::start_args(sock, prefix, log, mode, queues, "", &[])
    }

    /// The general form: `vdev_extra` is appended to the net_vhost arguments (e.g.
    /// `,tso=1`), `extra` to testpmd's own (e.g. `--max-pkt-len=9600`). With
    /// `client=1` net_vhost connects to our socket: the socket file is ours, left alone.
    pub fn start_args(
        sock: &Path,
        prefix: &str,
        log: &Path,
        mode: &str,
        queues: u16,
        vdev_extra: &str,
        extra: &[&str],
    ) -> Testpmd {
        let client = vdev_extra.contains("client=1");
        if !client {
            let _ = std::fs::remove_file(sock);
        }
        let mut app = vec![
            format!("--forward-mode={mode}"),
            format!("--rxq={queues}"),
            format!("--txq={queues}"),
            "--nb-cores=1".into(),
            "--stats-period".into(),
            "1".into(),
        ];
        app.extend(extra.iter().map(|a| a.to_string()));
        let owned: &[&Path] = if client { &[] } else { &[sock] };
        Testpmd(pmd_testkit::dpdk::Testpmd::spawn(
            &pmd_testkit::dpdk::TestpmdConf {
                prefix,
                log: Some(log),
                vdevs: &[format!(
                    "net_vhost0,iface={},queues={queues}{vdev_extra}",
                    sock.display()
                )],
                app: &app,
                owned,
                ..Default::default()
            },
        ))
    }

    /// Kills testpmd with SIGKILL (no chance to say goodbye) and reaps it; the drop
    /// still removes what it left behind.
    pub fn kill9(&mut self) {
        self.0.kill9();
    }

    /// testpmd's output so far.
    pub fn log(&self) -> String {
        self.0.log()
    }
}

/// Why DPDK's vhost-user back end cannot run here, if it cannot.
pub fn skip_reason() -> Option<String> {
    pmd_testkit::dpdk::peer_missing()
}

fn frame(seq: u32) -> Vec<u8> {
    frame_upto(seq, 1514)
}

/// Frame `seq` of 60..=`max` bytes.
fn frame_upto(seq: u32, max: usize) -> Vec<u8> {
    let len = 60 + (seq as usize * 37) % (max - 60 + 1);
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

/// `net_virtio_user` as the crate's driver builds it, plus `packed_vq=0|1` (DPDK's name):
/// the test-side stand-in until `lib.rs` parses that argument itself.
pub struct PackedAwareDriver;

impl Driver for PackedAwareDriver {
    fn name(&self) -> &'static str {
        pmd_virtio::DRIVER_NAME
    }
    fn description(&self) -> &'static str {
        "net_virtio_user with packed_vq=0|1 (test driver)"
    }
    fn probe(&self, vdev: &VdevSpec) -> pmd_core::Result<Box<dyn Device>> {
        vdev.check_known(&["path", "queue_size", "mac", "packed_vq"])?;
        let path = vdev.arg("path").expect("path=");
        let queue_size = vdev.parse_arg::<u16>("queue_size")?.unwrap_or(256);
        let mac = vdev.parse_arg::<MacAddr>("mac")?.unwrap_or(MacAddr(OURS));
        let packed_vq = vdev.parse_arg::<u8>("packed_vq")?.unwrap_or(0) == 1;
        let t = pmd_virtio::user::VirtioUser::connect(&vdev.name, Path::new(path), 1, mac)?;
        let dev = VirtioNet::with_options(
            NetConf {
                driver: pmd_virtio::DRIVER_NAME,
                name: vdev.name.clone(),
                queue_size,
                queue_pairs: 1,
                mac,
            },
            NetOptions { packed_vq },
            Box::new(t),
        )?;
        Ok(Box::new(dev))
    }
}

/// The 1000-frame macswap round trip; `packed` asks for packed rings (and checks they
/// were negotiated).
pub fn macswap_round_trip(test: &str, packed: bool) {
    round_trip(test, packed, false)
}

/// [`macswap_round_trip`] with frames up to 9014 bytes (a 9000-byte MTU): sent from
/// single 9 KiB buffers, received into 2 KiB buffers that the device merges
/// (MRG_RXBUF) and the PMD chains (SCATTER).
pub fn jumbo_round_trip(test: &str, packed: bool) {
    round_trip(test, packed, true)
}

fn round_trip(test: &str, packed: bool, jumbo: bool) {
    let max_len = if jumbo { 9014 } else { 1514 };
    let frame = |seq| frame_upto(seq, max_len);
    if !pmd_testkit::require(test, skip_reason()) {
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
    let conf = PortConf {
        rx_offloads: if jumbo {
            RxOffloads::SCATTER
        } else {
            RxOffloads::NONE
        },
        mtu: jumbo.then_some(9000),
        ..Default::default()
    };
    let (mut eal, (pool, tx_pool), mut rx, mut tx) =
        open_port(&sock, &format!("pmdvu{pid}"), packed, &conf, || {
            let pool = Mempool::create("virtio-interop", 2048, 0).unwrap();
            assert!(pool.segment().is_huge(), "test runs on hugepages");
            let tx_pool = if jumbo {
                Mempool::create_with(
                    "virtio-interop-tx",
                    &pmd_core::mempool::MempoolConfig {
                        size: 512,
                        cache_size: 0,
                        buf_size: 9216 + pmd_core::mbuf::HEADROOM,
                    },
                )
                .unwrap()
            } else {
                pool.clone()
            };
            (pool, tx_pool)
        });
    let port = eal.port_mut(0).unwrap();
    let xs = port.xstats();
    let features = xs.iter().find(|(k, _)| k == "features").unwrap().1;
    eprintln!("negotiated features {features:#x}, xstats {xs:?}");
    assert!(features & (1 << 32) != 0, "VERSION_1 negotiated");
    let offered = xs.iter().find(|(k, _)| k == "device_features").unwrap().1;
    assert_eq!(
        features & (1 << 34) != 0,
        packed,
        "RING_PACKED negotiated iff asked for (offered {offered:#x})"
    );

    // Phase 0: N frames. Phase 1: after a stop/start (the rings resume where
    // GET_VRING_BASE said), RESTART_N more.
    let total = N + RESTART_N;
    let mut next = 0u32;
    let mut got = vec![false; total as usize];
    let mut received = 0u32;
    let mut merged = 0u32;
    let mut rb = PktBatch::new();
    for (phase, end) in [N, total].into_iter().enumerate() {
        if phase == 1 {
            let port = eal.port_mut(0).unwrap();
            port.stop().unwrap();
            port.start().unwrap();
            assert!(
                port.wait_link_up(Duration::from_secs(5)).up,
                "link down after restart"
            );
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while received < end {
            assert!(
                Instant::now() < deadline,
                "timed out: sent {next}, received {received}; stats {:?}\ntestpmd log:\n{}",
                port_stats(&eal),
                tp.log()
            );
            // Keep few enough frames in flight that the 256-entry rx ring never overflows
            // (a jumbo frame takes up to five of its 2 KiB buffers).
            let window = if jumbo { 32 } else { 128 };
            if next < end && next - received < window {
                let mut b = PktBatch::new();
                while b.len() < 32 && next < end && next - received < window {
                    let mut m = tx_pool.alloc().expect("pool");
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
                let whole = m.to_vec();
                let d = &whole[..];
                assert!(d.len() >= 18, "runt of {} bytes", d.len());
                if d.len() > 2048 {
                    merged += 1;
                }
                let seq = u32::from_be_bytes(d[14..18].try_into().unwrap());
                assert!(seq < end, "bad sequence {seq}");
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
        assert_eq!((s.ipackets, s.opackets), (end as u64, end as u64));
        assert_eq!((s.ierrors, s.oerrors, s.rx_nombuf), (0, 0, 0));
    }
    if jumbo {
        assert!(
            merged > 500,
            "{merged} frames arrived as chains of merged buffers"
        );
    }
    let port = eal.port_mut(0).unwrap();
    port.stop().unwrap();
    drop(rx);
    drop(tx);
    drop(rb);
    assert_eq!(pool.stats().in_use, 0, "no leaked buffers");
    assert_eq!(tx_pool.stats().in_use, 0, "no leaked buffers");
    drop(tp);
}

fn port_stats(eal: &Eal) -> pmd_core::ethdev::EthStats {
    eal.ports()[0].stats()
}

/// Blasts 64-byte frames for `secs` seconds through a `packed_vq=1` port into testpmd's
/// `rxonly` net_vhost; prints our tx rate and testpmd's log tail (its Rx-pps lines).
pub fn packed_tx_rate(secs: u64) {
    if !pmd_testkit::require("packed_tx_rate", skip_reason()) {
        return;
    }
    let pid = std::process::id();
    let sock = PathBuf::from(format!("/tmp/pmd-virtio-rate-{pid}.sock"));
    let log = PathBuf::from(format!("/tmp/pmd-virtio-rate-{pid}.log"));
    let tp = Testpmd::start_mode(&sock, &format!("pmdvrate{pid}"), &log, "rxonly");
    while !sock.exists() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let opts = EalOptions::builder()
        .lcores("0")
        .no_pci(true)
        .file_prefix(&format!("pmdvur{pid}"))
        .vdev(&format!(
            "net_virtio_user0,path={},queue_size=256,packed_vq=1",
            sock.display()
        ))
        .build()
        .unwrap();
    let mut eal = Eal::init(opts, &[&PackedAwareDriver]).unwrap();
    let pool = Mempool::create("virtio-rate", 8191, 256).unwrap();
    let port = eal.port_mut(0).unwrap();
    port.configure(&PortConf::default()).unwrap();
    let _rx = port.setup_rx_queue(0, 0, &pool).unwrap();
    let mut tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    assert!(port.wait_link_up(Duration::from_secs(5)).up);
    let mut f = frame(0);
    f.resize(64, 0);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut b = PktBatch::new();
    while start.elapsed() < Duration::from_secs(secs) {
        while b.len() < 32 {
            let Some(mut m) = pool.alloc() else { break };
            assert!(m.copy_from(&f));
            b.push(m).unwrap();
        }
        sent += tx.tx_burst(&mut b) as u64;
    }
    let mpps = sent as f64 / start.elapsed().as_secs_f64() / 1e6;
    eprintln!("packed tx {mpps:.2} Mpps (ours, 64 B, {secs} s)");
    b.clear();
    let port = eal.port_mut(0).unwrap();
    port.stop().unwrap();
    let l = tp.log();
    let rx: Vec<&str> = l.lines().filter(|x| x.contains("Rx-pps")).collect();
    eprintln!("testpmd Rx-pps samples: {rx:?}");
}

/// Waits for testpmd's socket.
pub fn wait_socket(tp: &Testpmd, sock: &Path) {
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
}

/// Multiqueue: testpmd's net_vhost with `queues=2` (macswap, `--rxq=2 --txq=2`), our port
/// with `queues=2` and 2 rx + 2 tx queues. CTRL_VQ and MQ must be negotiated (the control
/// queue emulated by virtio-user: VQ_PAIRS_SET 2 at start), frames go out alternately on
/// both tx queues and every one must come back, byte for byte, on one of our rx queues
/// (which one is the back end's choice; the total is counted). Then a stop/start.
pub fn mq_round_trip(test: &str) {
    if !pmd_testkit::require(test, skip_reason()) {
        return;
    }
    let pid = std::process::id();
    let sock = PathBuf::from(format!("/tmp/pmd-virtio-mq-{pid}.sock"));
    let log = PathBuf::from(format!("/tmp/pmd-virtio-mq-{pid}.log"));
    let tp = Testpmd::start_queues(&sock, &format!("pmdvmq{pid}"), &log, "macswap", 2);
    wait_socket(&tp, &sock);
    let opts = EalOptions::builder()
        .lcores("0")
        .no_pci(true)
        .file_prefix(&format!("pmdvumq{pid}"))
        .vdev(&format!(
            "net_virtio_user0,path={},queues=2,queue_size=256,mac=02:00:00:00:00:01",
            sock.display()
        ))
        .build()
        .unwrap();
    let mut eal = Eal::init(opts, &[&pmd_virtio::DRIVER]).unwrap();
    let pool = Mempool::create("virtio-mq", 4096, 0).unwrap();
    let port = eal.port_mut(0).unwrap();
    assert_eq!(port.info().max_rx_queues, 2);
    port.configure(&PortConf {
        rx_queues: 2,
        tx_queues: 2,
        ..Default::default()
    })
    .unwrap();
    let mut rxs = vec![
        port.setup_rx_queue(0, 0, &pool).unwrap(),
        port.setup_rx_queue(1, 0, &pool).unwrap(),
    ];
    let mut txs = vec![
        port.setup_tx_queue(0, 0).unwrap(),
        port.setup_tx_queue(1, 0).unwrap(),
    ];
    port.start().unwrap();
    assert!(port.wait_link_up(Duration::from_secs(5)).up, "link down");
    let xs = port.xstats();
    let get = |k: &str| xs.iter().find(|(n, _)| n == k).map(|x| x.1);
    let features = get("features").unwrap();
    eprintln!(
        "negotiated features {features:#x} ({}), xstats {xs:?}",
        pmd_virtio::net::feature_names(features)
    );
    assert!(features & (1 << 17) != 0, "CTRL_VQ negotiated");
    assert!(features & (1 << 22) != 0, "MQ negotiated");
    assert_eq!(get("ctrl_mode"), Some(2), "emulated by virtio-user");
    assert_eq!(get("ctrl_active_pairs"), Some(2), "VQ_PAIRS_SET 2 at start");
    assert_eq!(get("ctrl_commands_ok"), Some(1));
    // No receive filtering on vhost-user: staying promiscuous is fine, leaving is an
    // error that says why.
    port.set_promiscuous(true).unwrap();
    let e = port.set_promiscuous(false).unwrap_err().to_string();
    assert!(e.contains("CTRL_RX") && e.contains("promiscuous"), "{e}");
    assert!(port.promiscuous());

    let total = N + RESTART_N;
    let mut next = 0u32;
    let mut got = vec![false; total as usize];
    let mut received = 0u32;
    let mut per_rxq = [0u32; 2];
    let mut per_txq = [0u32; 2];
    let mut rb = PktBatch::new();
    for (phase, end) in [N, total].into_iter().enumerate() {
        if phase == 1 {
            let port = eal.port_mut(0).unwrap();
            port.stop().unwrap();
            port.start().unwrap();
            assert!(
                port.wait_link_up(Duration::from_secs(5)).up,
                "link down after restart"
            );
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while received < end {
            assert!(
                Instant::now() < deadline,
                "timed out: sent {next}, received {received} (per rx queue {per_rxq:?}); \
                 stats {:?}\ntestpmd log:\n{}",
                port_stats(&eal),
                tp.log()
            );
            // Alternate tx queues by burst; at most 128 in flight (256-entry rx rings).
            if next < end && next - received < 128 {
                let q = ((next / 16) % 2) as usize;
                let mut b = PktBatch::new();
                while b.len() < 16 && next < end && next - received < 128 {
                    let mut m = pool.alloc().expect("pool");
                    assert!(m.copy_from(&frame(next)));
                    b.push(m).unwrap();
                    next += 1;
                }
                per_txq[q] += b.len() as u32;
                while !b.is_empty() {
                    txs[q].tx_burst(&mut b);
                    assert!(Instant::now() < deadline, "tx stuck");
                }
            }
            for (qi, rx) in rxs.iter_mut().enumerate() {
                rb.clear();
                rx.rx_burst(&mut rb);
                for m in rb.iter() {
                    let d = m.data();
                    assert!(d.len() >= 18, "runt of {} bytes", d.len());
                    let seq = u32::from_be_bytes(d[14..18].try_into().unwrap());
                    assert!(seq < end, "bad sequence {seq}");
                    let mut want = frame(seq);
                    want[..6].copy_from_slice(&OURS);
                    want[6..12].copy_from_slice(&PEER);
                    assert_eq!(d.len(), want.len(), "length of frame {seq}");
                    assert!(d == &want[..], "contents of frame {seq}");
                    assert!(!got[seq as usize], "duplicate frame {seq}");
                    got[seq as usize] = true;
                    received += 1;
                    per_rxq[qi] += 1;
                }
            }
        }
        let s = port_stats(&eal);
        eprintln!("phase {phase}: per tx queue {per_txq:?}, per rx queue {per_rxq:?}, stats {s:?}");
        assert_eq!((s.ipackets, s.opackets), (end as u64, end as u64));
        assert_eq!((s.ierrors, s.oerrors, s.rx_nombuf), (0, 0, 0));
    }
    assert!(per_txq.iter().all(|&n| n > 0), "both tx queues used");
    let port = eal.port_mut(0).unwrap();
    assert_eq!(
        port.xstats()
            .iter()
            .find(|(k, _)| k == "ctrl_commands_ok")
            .unwrap()
            .1,
        2,
        "VQ_PAIRS_SET again at the restart"
    );
    port.stop().unwrap();
    drop(rxs);
    drop(txs);
    drop(rb);
    assert_eq!(pool.stats().in_use, 0, "no leaked buffers");
    drop(tp);
}

/// Our side of an offload scenario: EAL, a `net_virtio_user0` port on testpmd's socket
/// (`packed` asks for packed rings), configured with `conf`, one rx queue on `pool`.
/// `pools` makes the rx pool and anything else (before the port starts: the back end
/// learns the memory table at start).
pub fn open_port<T>(
    sock: &Path,
    prefix: &str,
    packed: bool,
    conf: &PortConf,
    pools: impl FnOnce() -> (Mempool, T),
) -> (
    Eal,
    (Mempool, T),
    pmd_core::ethdev::RxQueueHandle,
    pmd_core::ethdev::TxQueueHandle,
) {
    let opts = EalOptions::builder()
        .lcores("0")
        .no_pci(true)
        .file_prefix(prefix)
        .vdev(&format!(
            "net_virtio_user0,path={},queue_size=256,mac=02:00:00:00:00:01{}",
            sock.display(),
            if packed { ",packed_vq=1" } else { "" }
        ))
        .build()
        .unwrap();
    let mut eal = Eal::init(opts, &[&PackedAwareDriver]).unwrap();
    let (pool, extra) = pools();
    let port = eal.port_mut(0).unwrap();
    port.configure(conf).unwrap();
    let rx = port.setup_rx_queue(0, 0, &pool).unwrap();
    let tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    assert!(port.wait_link_up(Duration::from_secs(5)).up, "link down");
    (eal, (pool, extra), rx, tx)
}

/// An xstat of port 0.
pub fn xstat(eal: &Eal, name: &str) -> u64 {
    eal.ports()[0]
        .xstats()
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no xstat {name}"))
        .1
}

/// Port 0's stats.
pub fn stats(eal: &Eal) -> pmd_core::ethdev::EthStats {
    port_stats(eal)
}

/// A 60..=9014-byte test frame (what the jumbo round trip sends).
pub fn jumbo_frame(seq: u32) -> Vec<u8> {
    frame_upto(seq, 9014)
}

/// The frame as it comes back from macswap.
pub fn swapped(mut f: Vec<u8>) -> Vec<u8> {
    f[..6].copy_from_slice(&OURS);
    f[6..12].copy_from_slice(&PEER);
    f
}

/// Our MAC and testpmd's peer MAC as the frames carry them.
pub const MACS: ([u8; 6], [u8; 6]) = (OURS, PEER);
