//! End-to-end tests of `net_tap`, each in a private network namespace that the test creates
//! and deletes (with every interface in it). The tap's kernel side is driven with a raw
//! `AF_PACKET` socket bound to the interface, or by DPDK's testpmd (`net_af_packet` on the
//! tap interface, macswap). They need root; without it they print why and pass (and fail
//! under `PMD_REQUIRE_ALL=1`).

use pmd_core::devargs::VdevSpec;
use pmd_core::ethdev::{Device, Driver, MacAddr, Port, PortConf};
use pmd_core::mbuf::PktBatch;
use pmd_core::mempool::Mempool;
use pmd_tap::DRIVER;
use pmd_testkit::{unique, NetNs, RawSock};
use std::collections::HashMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ETHERTYPE_TEST: u16 = 0x88b5;
const PEER_RECV_TIMEOUT: Duration = Duration::from_millis(50);

// ---- test frames -----------------------------------------------------------------

fn frame_len(seq: u32) -> usize {
    60 + (seq as usize * 37) % 1441
}

/// An Ethernet frame of ethertype 0x88b5 with `seq` in the payload and a pattern after it.
fn test_frame(dst: [u8; 6], seq: u32) -> Vec<u8> {
    let len = frame_len(seq);
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0xaa, 0x01]);
    f.extend_from_slice(&ETHERTYPE_TEST.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u32 ^ seq.wrapping_mul(7)) as u8);
    }
    f
}

/// An IPv4/UDP frame whose source port varies with `seq` (so the kernel's flow hash spreads
/// it over the queues), with `seq` in the payload.
fn udp_frame(dst: [u8; 6], seq: u32) -> Vec<u8> {
    let payload = 64 + (seq as usize * 13) % 400;
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0xaa, 0x02]);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (20 + 8 + payload) as u16;
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2,
    ];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let mut sum = 0u32;
    for w in ip.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&(10_000 + seq as u16).to_be_bytes());
    f.extend_from_slice(&9u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < 14 + total as usize {
        f.push(f.len() as u8 ^ seq as u8);
    }
    f
}

fn frame_seq(f: &[u8]) -> Option<u32> {
    if f.len() >= 18 && f[12..14] == ETHERTYPE_TEST.to_be_bytes() {
        return Some(u32::from_be_bytes(f[14..18].try_into().unwrap()));
    }
    if f.len() >= 46 && f[12..14] == [0x08, 0x00] && f[14 + 9] == 17 {
        return Some(u32::from_be_bytes(f[42..46].try_into().unwrap()));
    }
    None
}

// ---- port setup ------------------------------------------------------------------

fn pool(name: &str) -> Mempool {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = format!("tap-{name}-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    Mempool::create(&n, 2048, 0).unwrap()
}

fn probe(spec: &str) -> pmd_core::Result<Box<dyn Device>> {
    let vdev: VdevSpec = spec.parse().unwrap();
    assert_eq!(vdev.driver_prefix(), DRIVER.name());
    DRIVER.probe(&vdev)
}

fn open_port(spec: &str, conf: PortConf) -> Port {
    let dev = probe(spec).unwrap();
    let name = spec.split(',').next().unwrap().to_string();
    let mut port = Port::new(0, name, dev);
    port.configure(&conf).unwrap();
    port
}

/// Whether interface `dev` exists in namespace `ns`.
fn exists(ns: &NetNs, dev: &str) -> bool {
    pmd_testkit::ip(&["-n", ns.name(), "link", "show", dev]).is_ok()
}

/// Sends `frames` through `txq`, retrying what the queue leaves in the batch.
fn send_all(txq: &mut pmd_core::ethdev::TxQueueHandle, p: &Mempool, frames: &[Vec<u8>]) {
    let mut batch = PktBatch::new();
    let mut next = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while (next < frames.len() || !batch.is_empty()) && Instant::now() < deadline {
        let room = batch.spare().min(frames.len() - next);
        if room > 0 {
            let start = batch.len();
            p.alloc_bulk(&mut batch, room).unwrap();
            for m in &mut batch.as_mut_slice()[start..] {
                assert!(m.copy_from(&frames[next]));
                next += 1;
            }
        }
        let before = batch.len();
        let sent = txq.tx_burst(&mut batch);
        assert_eq!(before - batch.len(), sent);
        if sent == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(batch.is_empty(), "tx stalled with {} left", batch.len());
}

/// Receives on `rxqs` until `n` frames came or 5 s passed; returns them by sequence number
/// and how many each queue got. Fails on a duplicate or a frame without a sequence number.
fn receive(
    rxqs: &mut [pmd_core::ethdev::RxQueueHandle],
    n: usize,
) -> (HashMap<u32, Vec<u8>>, Vec<usize>) {
    let mut got = HashMap::new();
    let mut per_queue = vec![0; rxqs.len()];
    let mut batch = PktBatch::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < n && Instant::now() < deadline {
        let mut any = false;
        for (q, rxq) in rxqs.iter_mut().enumerate() {
            any |= rxq.rx_burst(&mut batch) > 0;
            for m in batch.iter() {
                let s = frame_seq(m.data()).expect("a test frame");
                assert!(got.insert(s, m.data().to_vec()).is_none(), "dup {s}");
                per_queue[q] += 1;
            }
            batch.clear();
        }
        if !any {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    (got, per_queue)
}

// ---- tests -----------------------------------------------------------------------

#[test]
fn both_directions_byte_for_byte_and_gone_after_close() {
    let Some(ns) = NetNs::new(
        "pmdtap",
        "both_directions_byte_for_byte_and_gone_after_close",
    ) else {
        return;
    };
    ns.run(|| {
        let mut port = open_port("net_tap0,iface=dtap0", PortConf::default());
        let p = pool("both");
        let mut rxq = port.setup_rx_queue(0, 0, &p).unwrap();
        let mut txq = port.setup_tx_queue(0, 0).unwrap();
        assert!(!port.link().up, "down before start");
        port.start().unwrap();
        assert!(port.wait_link_up(Duration::from_secs(2)).up);
        let mac = port.mac_addr().0;
        let peer = RawSock::open("dtap0", ETHERTYPE_TEST, PEER_RECV_TIMEOUT);

        // Port -> kernel: the interface receives exactly what we sent.
        const N: u32 = 300;
        let frames: Vec<Vec<u8>> = (0..N).map(|s| test_frame([0xff; 6], s)).collect();
        send_all(&mut txq, &p, &frames);
        let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while got.len() < N as usize && Instant::now() < deadline {
            if let Some(f) = peer.recv() {
                let s = frame_seq(&f).expect("a test frame");
                assert!(got.insert(s, f).is_none(), "dup {s}");
            }
        }
        assert_eq!(got.len(), N as usize, "kernel got {} of {N}", got.len());
        for s in 0..N {
            assert_eq!(got[&s], frames[s as usize], "frame {s} differs");
        }
        assert!(peer.recv().is_none(), "more than {N} frames");

        // Kernel -> port: we receive exactly what the interface sent.
        let frames: Vec<Vec<u8>> = (0..N).map(|s| test_frame(mac, 1000 + s)).collect();
        for f in &frames {
            peer.send_retrying(f, Duration::from_secs(2));
        }
        let (got, _) = receive(std::slice::from_mut(&mut rxq), N as usize);
        assert_eq!(got.len(), N as usize, "port got {} of {N}", got.len());
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(&got[&(1000 + i as u32)], f, "frame {i} differs");
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut batch = PktBatch::new();
        assert_eq!(rxq.rx_burst(&mut batch), 0, "more than {N} frames");

        let s = port.stats();
        let bytes = |seqs: std::ops::Range<u32>| seqs.map(|s| frame_len(s) as u64).sum::<u64>();
        assert_eq!((s.opackets, s.obytes), (u64::from(N), bytes(0..N)));
        assert_eq!(
            (s.ipackets, s.ibytes),
            (u64::from(N), bytes(1000..1000 + N))
        );
        assert_eq!((s.ierrors, s.oerrors, s.rx_nombuf), (0, 0, 0));

        // A runt is dropped and counted; the frame after it still goes out.
        p.alloc_bulk(&mut batch, 2).unwrap();
        assert!(batch.as_mut_slice()[0].copy_from(&[1, 2, 3]));
        assert!(batch.as_mut_slice()[1].copy_from(&test_frame([0xff; 6], 7)));
        assert_eq!(txq.tx_burst(&mut batch), 2);
        assert_eq!(port.stats().oerrors, 1);
        let f = (0..40).find_map(|_| peer.recv());
        assert_eq!(f.as_deref().and_then(frame_seq), Some(7));

        port.stop().unwrap();
        assert!(
            !port.link().up,
            "start raised the interface, stop takes it down"
        );
        drop((rxq, txq));
        port.close();
    });
    assert!(!exists(&ns, "dtap0"), "dtap0 should be gone after close");
}

#[test]
fn two_queues_on_a_multi_queue_tap() {
    let Some(ns) = NetNs::new("pmdtap", "two_queues_on_a_multi_queue_tap") else {
        return;
    };
    let nsname = ns.name().to_string();
    ns.run(move || {
        let conf = PortConf {
            rx_queues: 2,
            tx_queues: 2,
            ..Default::default()
        };
        let mut port = open_port("net_tap0,iface=dtapmq", conf);
        let info = pmd_testkit::ip(&["-n", &nsname, "-d", "link", "show", "dtapmq"]).unwrap();
        assert!(info.contains("multi_queue"), "{info}");
        let p = pool("mq");
        let mut rxqs = vec![
            port.setup_rx_queue(0, 0, &p).unwrap(),
            port.setup_rx_queue(1, 0, &p).unwrap(),
        ];
        let mut txqs = vec![
            port.setup_tx_queue(0, 0).unwrap(),
            port.setup_tx_queue(1, 0).unwrap(),
        ];
        port.start().unwrap();
        assert!(port.wait_link_up(Duration::from_secs(2)).up);
        let mac = port.mac_addr().0;
        let peer = RawSock::open("dtapmq", 0x0800, PEER_RECV_TIMEOUT);

        // 400 flows from the kernel: spread over both queues, each frame exactly once.
        const N: u32 = 400;
        for s in 0..N {
            peer.send_retrying(&udp_frame(mac, s), Duration::from_secs(2));
        }
        let (got, per_queue) = receive(&mut rxqs, N as usize);
        assert_eq!(got.len(), N as usize, "received {} of {N}", got.len());
        for s in 0..N {
            assert_eq!(got[&s], udp_frame(mac, s), "frame {s} differs");
        }
        assert!(
            per_queue.iter().all(|&n| n > 0),
            "400 flows not spread: {per_queue:?}"
        );

        // Both tx queues reach the kernel.
        let frames: Vec<Vec<u8>> = (0..N).map(|s| udp_frame([0xff; 6], 5000 + s)).collect();
        let (a, b) = frames.split_at(N as usize / 2);
        send_all(&mut txqs[0], &p, a);
        send_all(&mut txqs[1], &p, b);
        let mut seen: HashMap<u32, Vec<u8>> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while seen.len() < N as usize && Instant::now() < deadline {
            if let Some(f) = peer.recv() {
                let s = frame_seq(&f).expect("a test frame");
                assert!(seen.insert(s, f).is_none(), "dup {s}");
            }
        }
        assert_eq!(seen.len(), N as usize);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(&seen[&(5000 + i as u32)], f);
        }
        let xs = port.xstats();
        assert!(xs.contains(&("tap_queue_fds".to_string(), 2)), "{xs:?}");
        let s = port.stats();
        assert_eq!((s.ipackets, s.opackets), (u64::from(N), u64::from(N)));

        // Reconfigured to one queue, everything lands on it.
        port.stop().unwrap();
        drop((rxqs, txqs));
        port.configure(&PortConf::default()).unwrap();
        let mut rxq = port.setup_rx_queue(0, 0, &p).unwrap();
        let _txq = port.setup_tx_queue(0, 0).unwrap();
        port.start().unwrap();
        // A new socket: the old one holds ENETDOWN from the stop, reported on its next send.
        let peer = RawSock::open("dtapmq", 0x0800, PEER_RECV_TIMEOUT);
        for s in 0..100 {
            peer.send_retrying(&udp_frame(mac, s), Duration::from_secs(2));
        }
        let (got, _) = receive(std::slice::from_mut(&mut rxq), 100);
        assert_eq!(got.len(), 100);
    });
    assert!(!exists(&ns, "dtapmq"));
}

#[test]
fn existing_and_persistent_interfaces_stay() {
    let Some(ns) = NetNs::new("pmdtap", "existing_and_persistent_interfaces_stay") else {
        return;
    };
    // An existing single-queue tap: attached, one queue only, kept after close.
    ns.ip(&["tuntap", "add", "dev", "dtapold", "mode", "tap"]);
    let nsname = ns.name().to_string();
    ns.run(|| {
        let mut dev = probe("net_tap0,iface=dtapold").unwrap();
        assert_eq!(dev.info().max_rx_queues, 1);
        let e = dev
            .configure(&PortConf {
                rx_queues: 2,
                tx_queues: 2,
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
        assert!(e.contains("multi_queue"), "{e}");
        dev.configure(&PortConf::default()).unwrap();
        dev.close();
    });
    assert!(exists(&ns, "dtapold"), "an existing tap must stay");

    // persist=1: a created interface stays after close.
    ns.run(|| {
        let mut dev = probe("net_tap0,iface=dtapkeep,persist=1").unwrap();
        dev.close();
    });
    assert!(exists(&ns, "dtapkeep"), "persist=1 keeps the interface");
    // And it can be attached to again (multi-queue, as created).
    ns.run(|| {
        let dev = probe("net_tap0,iface=dtapkeep").unwrap();
        assert_eq!(dev.info().max_rx_queues, pmd_tap::MAX_QUEUES);
    });
    assert!(exists(&ns, "dtapkeep"));
    ns.ip(&["link", "del", "dtapkeep"]);

    // Names the kernel fills in.
    ns.run(move || {
        let dev = probe("net_tap0,iface=pmdt%d").unwrap();
        let out = pmd_testkit::ip(&["-n", &nsname, "-br", "link", "show"]).unwrap();
        assert!(out.contains("pmdt0"), "{out}");
        drop(dev);
    });
}

#[test]
fn mac_link_and_promiscuous_mode() {
    let Some(ns) = NetNs::new("pmdtap", "mac_link_and_promiscuous_mode") else {
        return;
    };
    let nsname = ns.name().to_string();
    let details = move |dev: &str| pmd_testkit::ip(&["-n", &nsname, "-d", "link", "show", dev]);
    let d = details.clone();
    ns.run(move || {
        let mut port = open_port("net_tap3,mac=fixed", PortConf::default());
        assert_eq!(port.mac_addr(), MacAddr([0, 0x64, 0x74, 0x61, 0x70, b'3']));
        let info = d("dtap3").unwrap();
        assert!(info.contains("00:64:74:61:70:33"), "{info}");
        assert!(!port.promiscuous());
        port.set_promiscuous(true).unwrap();
        assert!(port.promiscuous());
        assert!(d("dtap3").unwrap().contains("PROMISC"));
        port.set_promiscuous(false).unwrap();
        assert!(!port.promiscuous());
        assert!(!d("dtap3").unwrap().contains("PROMISC"));
        drop(port);

        let port = open_port(
            "net_tap1,iface=dtapm,mac=02:00:00:00:77:01",
            PortConf::default(),
        );
        assert_eq!(port.mac_addr(), "02:00:00:00:77:01".parse().unwrap());
        assert!(d("dtapm").unwrap().contains("02:00:00:00:77:01"));
    });
    assert!(details("dtap3").is_err() && details("dtapm").is_err());
}

#[test]
fn bad_arguments_and_wrong_devices_give_clear_errors() {
    let err = |spec: &str| probe(spec).err().expect("probe should fail").to_string();
    let e = err("net_tap0,iface=");
    assert!(e.contains("'iface' is empty"), "{e}");
    let e = err("net_tap0,iface=a/b");
    assert!(e.contains("invalid interface name"), "{e}");
    let e = err("net_tap0,iface=x,speed=fast");
    assert!(
        e.contains("unknown argument(s) 'speed'") && e.contains("'iface'"),
        "{e}"
    );
    let e = err("net_tap0,mac=1:2");
    assert!(e.contains("mac=1:2"), "{e}");

    let Some(ns) = NetNs::new(
        "pmdtap",
        "bad_arguments_and_wrong_devices_give_clear_errors",
    ) else {
        return;
    };
    ns.veth("va", "vb");
    ns.ip(&["tuntap", "add", "dev", "tun0", "mode", "tun"]);
    ns.ip(&["tuntap", "add", "dev", "dtapsq", "mode", "tap"]);
    ns.run(move || {
        let e = err("net_tap0,iface=va");
        assert_eq!(
            e,
            "net_tap0: interface 'va' exists and is not a tap device (driver 'veth'); \
             choose another name with iface=NAME"
        );
        let e = err("net_tap0,iface=tun0");
        assert!(e.contains("is a tun (layer 3) device"), "{e}");
        // A single-queue tap takes one user.
        let first = probe("net_tap0,iface=dtapsq").unwrap();
        let e = err("net_tap1,iface=dtapsq");
        assert!(e.contains("'dtapsq' is in use by another process"), "{e}");
        drop(first);
        probe("net_tap1,iface=dtapsq").unwrap();
    });
}

// ---- errors seen by other users: run in a child process --------------------------

/// Set in a child process: the spec to probe; the child prints the error and exits.
const CHILD_ENV: &str = "PMD_TAP_TEST_PROBE";

/// Not a test of its own: the body of the child processes below (does nothing otherwise).
#[test]
fn child_probe() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        match probe(&spec) {
            Ok(_) => println!("CHILD-RESULT: probed"),
            Err(e) => println!("CHILD-RESULT: {e}"),
        }
    }
}

/// Runs `exe` (a copy of this test binary) as `child_probe` through `cmd` (a command line
/// prefix) and returns what it printed after `CHILD-RESULT: `.
fn child_result(cmd: &mut Command, exe: &std::path::Path, spec: &str) -> String {
    let out = cmd
        .arg(exe)
        .args(["--exact", "child_probe", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec)
        .output()
        .expect("running the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.split_once("CHILD-RESULT: ").map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| {
            panic!(
                "no result from the child: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Removes a file when dropped (also when the test panics).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn unprivileged_and_missing_tun_errors() {
    let Some(ns) = NetNs::new("pmdtap", "unprivileged_and_missing_tun_errors") else {
        return;
    };
    // Not root: the kernel refuses TUNSETIFF. (A copy of the binary that the user can run.)
    let exe = std::env::current_exe().unwrap();
    let copy = std::env::temp_dir().join(unique("pmdtap-child"));
    std::fs::copy(&exe, &copy).unwrap();
    let cleanup = RemoveOnDrop(copy.clone());
    let r = child_result(
        Command::new("ip")
            .args(["netns", "exec", ns.name(), "setpriv"])
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"]),
        &copy,
        "net_tap0,iface=dtapnp",
    );
    drop(cleanup);
    assert!(
        r.starts_with("net_tap0: ") && r.contains("needs CAP_NET_ADMIN: run as root"),
        "{r}"
    );

    // No /dev/net/tun: an empty tmpfs over /dev/net in a private mount namespace.
    let r = child_result(
        Command::new("ip").args(["netns", "exec", ns.name()]).args([
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs none /dev/net && exec \"$0\" \"$@\"",
        ]),
        &exe,
        "net_tap0,iface=dtapnt",
    );
    assert!(
        r.contains("/dev/net/tun is missing") && r.contains("modprobe tun"),
        "{r}"
    );
}

// ---- interop with DPDK's testpmd ---------------------------------------------------

/// A process whose output is collected by a thread; killed (SIGINT, then SIGKILL) on drop.
struct Peer {
    child: Child,
    out: Arc<Mutex<String>>,
    prefix: String,
}

impl Peer {
    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return Ok(());
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!("testpmd exited ({st}):\n{}", self.output()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "no {needle:?} within {timeout:?}:\n{}",
            self.output()
        ))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid (not yet reaped: `wait` comes after).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}

#[test]
fn interop_with_dpdk_testpmd_macswap_over_af_packet() {
    let Some(ns) = NetNs::new("pmdtap", "interop_with_dpdk_testpmd_macswap_over_af_packet") else {
        return;
    };
    if !pmd_testkit::require(
        "interop_with_dpdk_testpmd_macswap_over_af_packet",
        pmd_testkit::dpdk_missing(),
    ) {
        return;
    }
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    // Our port lives in a thread inside the namespace; the peer starts once the tap is up.
    let ours = ns.spawn(move || {
        let mut port = open_port("net_tap0,iface=dtapdp", PortConf::default());
        let p = pool("dpdk");
        let mut rxq = port.setup_rx_queue(0, 0, &p).unwrap();
        let mut txq = port.setup_tx_queue(0, 0).unwrap();
        port.start().unwrap();
        assert!(port.wait_link_up(Duration::from_secs(2)).up);
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();

        const N: u32 = 500;
        let dst = [0x02, 0, 0, 0, 0xbb, 0x01];
        let frames: Vec<Vec<u8>> = (0..N).map(|s| test_frame(dst, s)).collect();
        let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
        for chunk in frames.chunks(50) {
            send_all(&mut txq, &p, chunk);
            let (g, _) = receive(std::slice::from_mut(&mut rxq), chunk.len());
            for (s, f) in g {
                assert!(got.insert(s, f).is_none(), "dup {s}");
            }
        }
        let (late, _) = receive(std::slice::from_mut(&mut rxq), 1);
        let s = port.stats();
        (got, late.len(), s.opackets, s.ipackets)
    });
    ready_rx.recv().expect("our port did not come up");

    let prefix = unique("pmdtapdpdk");
    let out = Arc::new(Mutex::new(String::new()));
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "stdbuf",
            "-oL",
            "-eL",
            "dpdk-testpmd",
        ])
        .args(["-l", "0,1", "--no-pci", "--no-huge", "-m", "512"])
        .args([
            "--file-prefix",
            &prefix,
            "--vdev",
            "net_af_packet0,iface=dtapdp",
        ])
        .args(["--", "--forward-mode=macswap", "--stats-period", "1"])
        .args(["--total-num-mbufs=4096", "--nb-cores=1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning dpdk-testpmd");
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let out = out.clone();
        std::thread::spawn(move || {
            let mut pipe = pipe;
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    let mut peer = Peer { child, out, prefix };
    peer.wait_for("Port statistics", Duration::from_secs(30))
        .unwrap();
    go_tx.send(()).unwrap();
    let (got, late, opackets, ipackets) = match ours.join() {
        Ok(v) => v,
        Err(p) => {
            eprintln!("testpmd output:\n{}", peer.output());
            std::panic::resume_unwind(p)
        }
    };
    let log = peer.output();
    drop(peer);
    assert_eq!(got.len(), 500, "got {} of 500 back\n{log}", got.len());
    for s in 0..500u32 {
        let mut want = test_frame([0x02, 0, 0, 0, 0xbb, 0x01], s);
        // macswap: destination and source exchanged, the rest untouched.
        let (d, rest) = want.split_at_mut(6);
        d.swap_with_slice(&mut rest[..6]);
        assert_eq!(got[&s], want, "frame {s} differs");
    }
    assert_eq!(late, 0, "more than 500 frames came back");
    assert_eq!((opackets, ipackets), (500, 500));
}

// ---- jumbo frames, chains and the MTU ------------------------------------------------

/// A test frame of exactly `len` bytes to `dst`, with `seq` after the ethertype.
fn sized_frame(dst: [u8; 6], seq: u32, len: usize) -> Vec<u8> {
    let mut f = test_frame(dst, seq);
    f.truncate(18);
    while f.len() < len {
        f.push(
            (f.len() as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_right(seq % 32) as u8,
        );
    }
    f
}

/// A pool of buffers with 512 bytes of data room each.
fn small_pool(name: &str) -> Mempool {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = format!("tapsmall-{name}-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    Mempool::create_with(
        &n,
        &pmd_core::mempool::MempoolConfig {
            size: 2048,
            cache_size: 0,
            buf_size: 512 + pmd_core::mbuf::HEADROOM,
        },
    )
    .unwrap()
}

const JUMBO_SIZES: [usize; 4] = [60, 1001, 1514, 9014];

#[test]
fn jumbo_frames_as_chains_both_ways_at_mtu_9000() {
    use pmd_core::ethdev::{RxOffloads, TxOffloads};
    use pmd_core::mbuf::Mbuf;
    let Some(ns) = NetNs::new("pmdtap", "jumbo_frames_as_chains_both_ways_at_mtu_9000") else {
        return;
    };
    let nsname = ns.name().to_string();
    ns.run(move || {
        let link = |dev: &str| pmd_testkit::ip(&["-n", &nsname, "link", "show", dev]).unwrap();
        let mut port = open_port("net_tap0,iface=dtapj", PortConf::default());
        let info = port.info();
        assert!(info.rx_offload_capa.contains(RxOffloads::SCATTER));
        assert!(info.tx_offload_capa.contains(TxOffloads::MULTI_SEGS));
        assert_eq!((info.min_mtu, info.max_mtu), (68, pmd_tap::MAX_MTU));
        assert_eq!(port.mtu(), 1500, "the kernel's MTU");
        let small = small_pool("jumbo");

        // 512-byte buffers without scatter are refused; with it, set up at MTU 1500 ...
        let e = port.setup_rx_queue(0, 0, &small).unwrap_err().to_string();
        assert!(e.contains("SCATTER"), "{e}");
        let mut rxq = port
            .setup_rx_queue_with(0, 0, &small, RxOffloads::SCATTER)
            .unwrap();
        let mut txq = port
            .setup_tx_queue_with(0, 0, TxOffloads::MULTI_SEGS)
            .unwrap();
        // ... then the MTU goes to 9000 (the queue grows its spare segments to match).
        let e = port.set_mtu(pmd_tap::MAX_MTU + 1).unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
        port.set_mtu(9000).unwrap();
        assert_eq!(port.mtu(), 9000);
        assert!(link("dtapj").contains("mtu 9000"), "{}", link("dtapj"));
        port.start().unwrap();
        assert!(port.wait_link_up(Duration::from_secs(2)).up);
        let mac = port.mac_addr().0;

        // Kernel -> port: each frame whole, as a chain of 512-byte segments.
        let peer = RawSock::open("dtapj", ETHERTYPE_TEST, PEER_RECV_TIMEOUT);
        let frames: Vec<Vec<u8>> = JUMBO_SIZES
            .iter()
            .enumerate()
            .map(|(i, &len)| sized_frame(mac, i as u32, len))
            .collect();
        for _ in 0..3 {
            for f in &frames {
                peer.send_retrying(f, Duration::from_secs(2));
            }
        }
        let mut got = Vec::new();
        let mut batch = PktBatch::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 3 * frames.len() && Instant::now() < deadline {
            if rxq.rx_burst(&mut batch) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            for m in batch.iter() {
                assert_eq!(m.segments().map(<[u8]>::len).sum::<usize>(), m.len());
                got.push((m.to_vec(), m.nb_segs()));
            }
            batch.clear();
        }
        assert_eq!(got.len(), 3 * frames.len());
        for (i, (bytes, segs)) in got.iter().enumerate() {
            let want = &frames[i % frames.len()];
            assert_eq!(bytes, want, "frame {i} ({} bytes) differs", want.len());
            assert_eq!(usize::from(*segs), want.len().div_ceil(512), "frame {i}");
        }
        let s = port.stats();
        let total: u64 = 3 * JUMBO_SIZES.iter().map(|&l| l as u64).sum::<u64>();
        assert_eq!(
            (s.ipackets, s.ibytes, s.ierrors, s.rx_nombuf),
            (12, total, 0, 0)
        );

        // Port -> kernel: chains of 512-byte segments arrive whole.
        let big = RawSock::open("dtapj", ETHERTYPE_TEST, Duration::from_millis(50));
        let frames: Vec<Vec<u8>> = JUMBO_SIZES
            .iter()
            .enumerate()
            .map(|(i, &len)| sized_frame([0xff; 6], 100 + i as u32, len))
            .collect();
        for f in &frames {
            let m = Mbuf::from_slice(f, &small).unwrap();
            assert_eq!(usize::from(m.nb_segs()), f.len().div_ceil(512));
            batch.push(m).unwrap();
        }
        assert_eq!(txq.tx_burst(&mut batch), frames.len());
        for (i, want) in frames.iter().enumerate() {
            let f = (0..40).find_map(|_| big.recv());
            assert_eq!(f.as_ref(), Some(want), "frame {i} ({} bytes)", want.len());
        }
        assert!(big.recv().is_none(), "more than {} frames", frames.len());
        let s = port.stats();
        let total: u64 = JUMBO_SIZES.iter().map(|&l| l as u64).sum();
        assert_eq!((s.opackets, s.obytes, s.oerrors), (4, total, 0));

        port.stop().unwrap();
        drop((rxq, txq));
        assert_eq!(
            small.stats().in_use,
            0,
            "every segment went back to the pool"
        );
        port.close();
    });
    assert!(!exists(&ns, "dtapj"));
}

#[test]
fn frames_larger_than_a_buffer_without_scatter_are_counted_errors() {
    use pmd_core::ethdev::{QueueStats, RxOffloads, RxQueueConf};
    let Some(ns) = NetNs::new(
        "pmdtap",
        "frames_larger_than_a_buffer_without_scatter_are_counted_errors",
    ) else {
        return;
    };
    ns.run(|| {
        // At the driver level: a port would refuse 512-byte buffers at MTU 1500 without
        // scatter, but a frame larger than the buffers must still never arrive cut short.
        let mut dev = probe("net_tap0,iface=dtapns").unwrap();
        dev.configure(&PortConf::default()).unwrap();
        let small = small_pool("noscatter");
        let stats = Arc::new(QueueStats::default());
        let mut rxq = dev
            .setup_rx_queue(
                0,
                RxQueueConf {
                    port: 0,
                    nb_desc: 64,
                    pool: small.clone(),
                    stats: stats.clone(),
                    offloads: RxOffloads::NONE,
                    max_rx_pktlen: 1522,
                },
            )
            .unwrap();
        dev.start().unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while !dev.link().up && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mac = dev.mac_addr().0;
        let peer = RawSock::open("dtapns", ETHERTYPE_TEST, PEER_RECV_TIMEOUT);
        // 512 bytes fit exactly; 513, 1001 and 1514 do not.
        let sizes = [60usize, 513, 512, 1001, 1514, 61];
        for (i, &len) in sizes.iter().enumerate() {
            peer.send_retrying(&sized_frame(mac, i as u32, len), Duration::from_secs(2));
        }
        let mut got = Vec::new();
        let mut batch = PktBatch::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while (got.len() < 3 || stats.snapshot().errors < 3) && Instant::now() < deadline {
            rxq.rx_burst(&mut batch, 32);
            got.extend(batch.iter().map(|m| (m.to_vec(), m.nb_segs())));
            batch.clear();
            std::thread::sleep(Duration::from_millis(1));
        }
        let want: Vec<(Vec<u8>, u16)> = [(0, 60), (2, 512), (5, 61)]
            .iter()
            .map(|&(i, len)| (sized_frame(mac, i, len), 1))
            .collect();
        assert_eq!(got, want);
        let c = stats.snapshot();
        assert_eq!((c.packets, c.bytes, c.errors), (3, 60 + 512 + 61, 3));
        dev.stop().unwrap();
        drop(rxq);
        dev.close();
        assert_eq!(small.stats().in_use, 0);
    });
    assert!(!exists(&ns, "dtapns"));
}

/// Sends one burst of `n` test frames on `txq`; what the queue leaves is freed.
fn burst(txq: &mut pmd_core::ethdev::TxQueueHandle, p: &Mempool, n: usize) -> usize {
    let mut batch = PktBatch::new();
    p.alloc_bulk(&mut batch, n).unwrap();
    for (i, m) in batch.as_mut_slice().iter_mut().enumerate() {
        assert!(m.copy_from(&test_frame([0xff; 6], i as u32)));
    }
    txq.tx_burst(&mut batch)
}

#[test]
fn interface_deleted_under_a_running_port() {
    let Some(ns) = NetNs::new("pmdtap", "interface_deleted_under_a_running_port") else {
        return;
    };
    let nsname = ns.name().to_string();
    ns.run(move || {
        let p = pool("deleted");
        let idle = p.stats().in_use;
        let mut gone = open_port("net_tap0,iface=dtapgone", PortConf::default());
        let mut rx0 = gone.setup_rx_queue(0, 0, &p).unwrap();
        let mut tx0 = gone.setup_tx_queue(0, 0).unwrap();
        gone.start().unwrap();
        let mut other = open_port("net_tap1,iface=dtapstay", PortConf::default());
        let mut rx1 = other.setup_rx_queue(0, 0, &p).unwrap();
        let mut tx1 = other.setup_tx_queue(0, 0).unwrap();
        other.start().unwrap();
        assert!(gone.wait_link_up(Duration::from_secs(2)).up);
        assert!(other.wait_link_up(Duration::from_secs(2)).up);
        let peer = RawSock::open("dtapstay", ETHERTYPE_TEST, PEER_RECV_TIMEOUT);

        // Traffic out of the doomed port, then its interface goes away mid-stream.
        assert_eq!(burst(&mut tx0, &p, 32), 32);
        pmd_testkit::ip(&["-n", &nsname, "link", "del", "dtapgone"]).unwrap();
        let mut batch = PktBatch::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while gone.link().up || gone.stats().oerrors == 0 || gone.stats().ierrors == 0 {
            assert!(
                Instant::now() < deadline,
                "link {}, stats {:?}",
                gone.link(),
                gone.stats()
            );
            // Every frame is taken and counted as an error; rx finds nothing and counts
            // the failed read.
            assert_eq!(burst(&mut tx0, &p, 8), 8);
            assert_eq!(rx0.rx_burst(&mut batch), 0);
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = gone.stats();
        assert!(s.oerrors >= 8 && s.ierrors >= 1, "{s:?}");

        // The other port still runs both ways.
        let frames: Vec<Vec<u8>> = (0..50).map(|s| test_frame([0xff; 6], s)).collect();
        send_all(&mut tx1, &p, &frames);
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen < 50 && Instant::now() < deadline {
            if peer.recv().is_some() {
                seen += 1;
            }
        }
        assert_eq!(seen, 50, "the other port's frames");
        let mac = other.mac_addr().0;
        for s in 0..50 {
            peer.send_retrying(&test_frame(mac, 500 + s), Duration::from_secs(2));
        }
        let (got, _) = receive(std::slice::from_mut(&mut rx1), 50);
        assert_eq!(got.len(), 50, "the other port received");

        // Stopping and closing the port without its interface neither fails nor panics,
        // and every buffer is back.
        gone.stop().unwrap();
        other.stop().unwrap();
        drop((rx0, tx0, rx1, tx1, batch));
        gone.close();
        other.close();
        assert_eq!(p.stats().in_use, idle, "buffers not returned");
    });
}
