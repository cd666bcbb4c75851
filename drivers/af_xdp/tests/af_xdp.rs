//! End-to-end tests over veth pairs in private network namespaces (one per test): frames
//! injected by a raw socket on the peer end arrive at our AF_XDP port byte for byte, what
//! the port sends arrives at the peer byte for byte, with one and with two queues, in
//! native and generic XDP mode; nothing stays attached after stop, close, drop or a
//! crash; and failures say what to do. They need root and a kernel with AF_XDP; without
//! them they print why and pass (and fail under `PMD_REQUIRE_ALL=1`).

mod common;

use common::*;
use pmd_core::ethdev::PortConf;
use pmd_core::ethdev::TxQueueHandle;
use pmd_core::mbuf::PktBatch;
use pmd_core::mempool::{Mempool, MempoolConfig};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Sends `frames` through `txq` (retrying on backpressure for up to 5 s).
fn transmit(txq: &mut TxQueueHandle, pool: &Mempool, frames: &[Vec<u8>]) {
    let mut next = 0usize;
    let mut batch = PktBatch::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while (next < frames.len() || !batch.is_empty()) && Instant::now() < deadline {
        // One buffer per frame, or a chain when the pool's buffers are smaller.
        while batch.spare() > 0 && next < frames.len() {
            let m = pmd_core::Mbuf::from_slice(&frames[next], pool).unwrap();
            batch.push(m).unwrap();
            next += 1;
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

/// Collects what the peer receives until `n` frames or 3 s; then checks nothing more comes.
fn peer_collect(peer: &pmd_testkit::RawSock, n: usize) -> HashMap<u32, Vec<u8>> {
    let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while got.len() < n && Instant::now() < deadline {
        if let Some(f) = peer.recv() {
            let s = frame_seq(&f).expect("a test frame");
            assert!(got.insert(s, f).is_none(), "duplicate {s} at the peer");
        }
    }
    assert!(peer.recv().is_none(), "the peer got more than {n} frames");
    got
}

#[test]
fn receives_injected_frames_byte_for_byte() {
    let Some(ns) = netns("receives_injected_frames_byte_for_byte", 1) else {
        return;
    };
    let nsname = ns.name().to_string();
    ns.run(move || {
        let mut port = open_port("net_af_xdp0,iface=va", PortConf::default());
        let p = pool("rx");
        let (mut rxqs, _txqs) = start(&mut port, &p, 1);
        assert!(xdp_attached(&nsname, "va"));
        let mac = port.mac_addr().0;

        const N: u32 = 3000;
        // The peer sends while we receive (from a thread in the same namespace).
        let sender = std::thread::spawn(move || {
            let peer = open_peer();
            for seq in 0..N {
                peer.send_retrying(&test_frame(mac, seq), Duration::from_secs(2));
                if seq % 256 == 255 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        let (got, _) = receive(&mut rxqs, N as usize);
        sender.join().unwrap();
        assert_eq!(got.len(), N as usize, "received {} of {N}", got.len());
        for seq in 0..N {
            assert_eq!(got[&seq], test_frame(mac, seq), "frame {seq} differs");
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut batch = PktBatch::new();
        assert_eq!(rxqs[0].rx_burst(&mut batch), 0, "nothing more arrives");

        let s = port.stats();
        let want_bytes: u64 = (0..N).map(|s| frame_len(s) as u64).sum();
        assert_eq!((s.ipackets, s.ibytes), (u64::from(N), want_bytes));
        assert_eq!((s.ierrors, s.imissed, s.rx_nombuf), (0, 0, 0));
        // veth: native XDP, copy mode (no zero-copy support), no rx wake-ups needed.
        assert_eq!(xstat(&port, "xdp_attached"), 1);
        assert_eq!(xstat(&port, "xdp_native"), 1);
        assert_eq!(xstat(&port, "q0_zero_copy"), 0);
        assert_eq!(xstat(&port, "q0_rx_wakeups"), 0);
        assert_eq!(xstat(&port, "q0_kernel_rx_dropped"), 0);
        eprintln!("xstats: {:?}", port.xstats());
        port.close();
        assert!(!xdp_attached(&nsname, "va"));
    });
}

#[test]
fn transmits_frames_byte_for_byte() {
    let Some(ns) = netns("transmits_frames_byte_for_byte", 1) else {
        return;
    };
    ns.run(|| {
        let mut port = open_port("net_af_xdp0,iface=va", PortConf::default());
        let p = pool("tx");
        let (_rxqs, mut txqs) = start(&mut port, &p, 1);
        let peer = open_peer();
        let dst = [0xff; 6];
        const N: u32 = 1000;
        let frames: Vec<Vec<u8>> = (0..N).map(|s| test_frame(dst, s)).collect();
        transmit(&mut txqs[0], &p, &frames);
        let got = peer_collect(&peer, N as usize);
        assert_eq!(got.len(), N as usize, "peer got {} of {N}", got.len());
        for seq in 0..N {
            assert_eq!(got[&seq], frames[seq as usize], "frame {seq} differs");
        }
        let s = port.stats();
        let want_bytes: u64 = (0..N).map(|s| frame_len(s) as u64).sum();
        assert_eq!(
            (s.opackets, s.obytes, s.oerrors),
            (u64::from(N), want_bytes, 0)
        );
        assert_eq!(s.ipackets, 0, "our own transmissions are not received");
        // Copy mode keeps the tx ring flagged: one sendto per burst (of up to 32).
        let kicks = xstat(&port, "q0_tx_wakeups");
        assert!(kicks > 0 && kicks <= u64::from(N), "{kicks} tx wake-ups");

        // Too long for a frame (2048) or shorter than a header: dropped, counted, consumed;
        // the packet after them still goes out.
        let big_pool = Mempool::create_with(
            "afxdp-tx-big",
            &MempoolConfig {
                size: 8,
                cache_size: 0,
                buf_size: 4096,
            },
        )
        .unwrap();
        let mut batch = PktBatch::new();
        big_pool.alloc_bulk(&mut batch, 3).unwrap();
        let mut big = test_frame(dst, 5000);
        big.resize(2049, 0xee);
        assert!(batch.as_mut_slice()[0].copy_from(&big));
        assert!(batch.as_mut_slice()[1].copy_from(&[0u8; 10]));
        assert!(batch.as_mut_slice()[2].copy_from(&test_frame(dst, 5001)));
        assert_eq!(txqs[0].tx_burst(&mut batch), 3);
        assert!(batch.is_empty());
        let s = port.stats();
        assert_eq!((s.opackets, s.oerrors), (u64::from(N) + 1, 2));
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(2);
        while last.is_none() && Instant::now() < deadline {
            last = peer.recv();
        }
        assert_eq!(last.as_deref().and_then(frame_seq), Some(5001));
    });
}

#[test]
fn transmits_chains_whole_and_refuses_a_jumbo_mtu_at_start() {
    let Some(ns) = netns("transmits_chains_whole", 1) else {
        return;
    };
    ns.run(|| {
        let mut port = open_port("net_af_xdp0,iface=va", PortConf::default());
        // 200-byte buffers: every frame above 200 bytes leaves as a chain.
        let small = Mempool::create_with(
            "afxdp-chains",
            &MempoolConfig {
                size: 4096,
                cache_size: 0,
                buf_size: 200 + pmd_core::mbuf::HEADROOM,
            },
        )
        .unwrap();
        let p = pool("chains-rx");
        let (_rxqs, mut txqs) = start(&mut port, &p, 1);
        let peer = open_peer();
        const N: u32 = 300;
        let frames: Vec<Vec<u8>> = (0..N).map(|s| test_frame([0xff; 6], s)).collect();
        transmit(&mut txqs[0], &small, &frames);
        let got = peer_collect(&peer, N as usize);
        assert_eq!(got.len(), N as usize);
        for seq in 0..N {
            assert_eq!(got[&seq], frames[seq as usize], "frame {seq} differs");
        }
        assert_eq!(port.stats().oerrors, 0);
        assert_eq!(small.stats().in_use, 0);
        drop(txqs);
        drop(_rxqs);
        port.stop().unwrap();
    });
    // A 9000-byte MTU cannot fit a 2048-byte UMEM frame: start fails and says what to do.
    ns.ip(&["link", "set", "va", "mtu", "9000"]);
    ns.ip(&["link", "set", "vb", "mtu", "9000"]);
    let nsname = ns.name().to_string();
    ns.run(move || {
        let mut port = open_port("net_af_xdp0,iface=va", PortConf::default());
        assert_eq!(port.mtu(), 9000, "the port reports the interface's MTU");
        let big = Mempool::create_with(
            "afxdp-jumbo",
            &MempoolConfig {
                size: 2048,
                cache_size: 0,
                buf_size: 9216 + pmd_core::mbuf::HEADROOM,
            },
        )
        .unwrap();
        let _rx = port.setup_rx_queue(0, 0, &big).unwrap();
        let _tx = port.setup_tx_queue(0, 0).unwrap();
        let e = port.start().unwrap_err().to_string();
        assert!(e.contains("MTU 9000") && e.contains("lower the MTU"), "{e}");
        assert!(
            !xdp_attached(&nsname, "va"),
            "nothing attached after a refused start"
        );
    });
}

/// With two queues: flows from the peer spread over both sockets, each frame arrives once,
/// and both tx queues deliver to the peer.
#[test]
fn two_queues_receive_and_transmit() {
    let Some(ns) = netns("two_queues_receive_and_transmit", 2) else {
        return;
    };
    ns.run(|| {
        let conf = PortConf {
            rx_queues: 2,
            tx_queues: 2,
            ..Default::default()
        };
        let mut port = open_port("net_af_xdp0,iface=va,queue_count=2", conf);
        assert_eq!(port.info().max_rx_queues, 2);
        let p = pool("mq");
        let (mut rxqs, mut txqs) = start(&mut port, &p, 2);
        let mac = port.mac_addr().0;

        const N: u32 = 2000;
        // The veth peer picks its tx queue -- hence our rx queue -- by flow hash, which
        // needs the socket's protocol to be IPv4 for the ports to count.
        let senders: Vec<_> = (0..2u32)
            .map(|half| {
                std::thread::spawn(move || {
                    let peer = pmd_testkit::RawSock::open("vb", 0x0800, PEER_RECV_TIMEOUT);
                    for seq in (half * N / 2)..((half + 1) * N / 2) {
                        peer.send_retrying(&udp_frame(mac, seq), Duration::from_secs(2));
                        if seq % 128 == 127 {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                    }
                })
            })
            .collect();
        let (got, per_queue) = receive(&mut rxqs, N as usize);
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!(got.len(), N as usize, "received {} of {N}", got.len());
        for seq in 0..N {
            assert_eq!(got[&seq], udp_frame(mac, seq), "frame {seq} differs");
        }
        eprintln!("per queue: {per_queue:?}");
        assert!(
            per_queue.iter().all(|&n| n > 0),
            "not spread: {per_queue:?}"
        );
        let s = port.stats();
        assert_eq!((s.ipackets, s.ierrors, s.imissed), (u64::from(N), 0, 0));

        // Transmit: half through each queue.
        let peer = open_peer();
        let dst = [0xff; 6];
        let frames: Vec<Vec<u8>> = (0..N).map(|s| test_frame(dst, s)).collect();
        let (a, b) = frames.split_at(N as usize / 2);
        transmit(&mut txqs[0], &p, a);
        transmit(&mut txqs[1], &p, b);
        let got = peer_collect(&peer, N as usize);
        assert_eq!(got.len(), N as usize, "peer got {} of {N}", got.len());
        for seq in 0..N {
            assert_eq!(got[&seq], frames[seq as usize], "frame {seq} differs");
        }
        assert_eq!(port.stats().opackets, u64::from(N));
        assert!(xstat(&port, "q1_tx_wakeups") > 0);
    });
}

/// `xdp_mode=generic` runs the program on socket buffers (`xdpgeneric` in `ip link`);
/// frames still arrive and leave byte for byte.
#[test]
fn generic_xdp_mode_round_trip() {
    let Some(ns) = netns("generic_xdp_mode_round_trip", 1) else {
        return;
    };
    let nsname = ns.name().to_string();
    ns.run(move || {
        let mut port = open_port(
            "net_af_xdp0,iface=va,xdp_mode=generic,mode=copy",
            PortConf::default(),
        );
        let p = pool("generic");
        let (mut rxqs, mut txqs) = start(&mut port, &p, 1);
        let shown = pmd_testkit::ip(&["-n", &nsname, "link", "show", "dev", "va"]).unwrap();
        assert!(shown.contains("xdpgeneric"), "{shown}");
        assert_eq!(xstat(&port, "xdp_native"), 0);
        let mac = port.mac_addr().0;
        let peer = open_peer();
        const N: u32 = 200;
        for seq in 0..N {
            peer.send(&test_frame(mac, seq));
        }
        let (got, _) = receive(&mut rxqs, N as usize);
        assert_eq!(got.len(), N as usize);
        for seq in 0..N {
            assert_eq!(got[&seq], test_frame(mac, seq), "frame {seq} differs");
        }
        let frames: Vec<Vec<u8>> = (0..N).map(|s| test_frame([0xff; 6], s + N)).collect();
        transmit(&mut txqs[0], &p, &frames);
        let back = peer_collect(&peer, N as usize);
        assert_eq!(back.len(), N as usize);
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(&back[&(i as u32 + N)], f);
        }
        drop(port);
        assert!(!xdp_attached(&nsname, "va"), "dropping the port detaches");
    });
}

/// The program is attached only while started: stop, close and drop (without close)
/// each leave `ip link` clean, and a restart attaches again.
#[test]
fn detaches_on_stop_close_and_drop() {
    let Some(ns) = netns("detaches_on_stop_close_and_drop", 1) else {
        return;
    };
    let nsname = ns.name().to_string();
    ns.run(move || {
        let attached = || xdp_attached(&nsname, "va");
        let mut port = open_port("net_af_xdp0,iface=va", PortConf::default());
        assert!(!attached(), "probe and configure attach nothing");
        let p = pool("detach");
        let (mut rxqs, _txqs) = start(&mut port, &p, 1);
        assert!(attached());
        port.stop().unwrap();
        assert!(!attached(), "stop detaches");
        assert_eq!(xstat(&port, "xdp_attached"), 0);
        port.start().unwrap();
        assert!(attached(), "start attaches again");

        // Still receiving after the restart.
        let mac = port.mac_addr().0;
        let peer = open_peer();
        peer.send(&test_frame(mac, 1));
        let (got, _) = receive(&mut rxqs, 1);
        assert_eq!(got.len(), 1);

        port.close();
        assert!(!attached(), "close detaches");
        drop(port);
        drop(rxqs);
        drop(_txqs);

        // Dropped while started, without close.
        let mut dev = probe("net_af_xdp0,iface=va").unwrap();
        dev.configure(&PortConf::default()).unwrap();
        let q = dev
            .setup_rx_queue(
                0,
                pmd_core::ethdev::RxQueueConf {
                    offloads: Default::default(),
                    max_rx_pktlen: 1522,
                    port: 0,
                    nb_desc: 64,
                    pool: p.clone(),
                    stats: Default::default(),
                },
            )
            .unwrap();
        dev.start().unwrap();
        assert!(attached());
        drop(dev);
        assert!(!attached(), "dropping the device detaches");
        drop(q);
    });
}

/// Set by the parent of [`child_holds_the_port_until_killed`]: the namespace to enter.
const CHILD_NS_VAR: &str = "PMD_AF_XDP_TEST_CHILD_NS";

/// Not a test on its own: the child process of `detaches_when_the_process_is_killed`
/// (it does nothing unless that test started it).
#[test]
#[ignore = "helper process of detaches_when_the_process_is_killed"]
fn child_holds_the_port_until_killed() {
    let Ok(ns) = std::env::var(CHILD_NS_VAR) else {
        return;
    };
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
    // SAFETY: moves this thread into the namespace through an fd we hold open.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0);
    let mut port = open_port("net_af_xdp0,iface=va", PortConf::default());
    let p = pool("child");
    let _q = start(&mut port, &p, 1);
    println!("ATTACHED");
    std::thread::sleep(Duration::from_secs(60));
}

/// A process killed with SIGKILL leaves nothing attached: the bpf link dies with it.
#[test]
fn detaches_when_the_process_is_killed() {
    use std::io::BufRead;
    let Some(ns) = netns("detaches_when_the_process_is_killed", 1) else {
        return;
    };
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holds_the_port_until_killed",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_NS_VAR, ns.name())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut ready = false;
    while out.read_line(&mut line).unwrap_or(0) > 0 {
        if line.contains("ATTACHED") {
            ready = true;
            break;
        }
        line.clear();
    }
    let attached_before = ready && xdp_attached(ns.name(), "va");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ready, "the child did not attach");
    assert!(attached_before, "the child's program was not attached");
    let deadline = Instant::now() + Duration::from_secs(5);
    while xdp_attached(ns.name(), "va") {
        assert!(Instant::now() < deadline, "still attached after the kill");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A 64-entry rx ring that nobody drains: the kernel drops the rest, and the queue reports
/// the drops as missed (read from XDP_STATISTICS every 65536 bursts).
#[test]
fn kernel_drops_are_counted_as_missed() {
    let Some(ns) = netns("kernel_drops_are_counted_as_missed", 1) else {
        return;
    };
    ns.run(|| {
        let mut port = open_port("net_af_xdp0,iface=va", PortConf::default());
        let p = pool("drops");
        let mut rxq = port.setup_rx_queue(0, 64, &p).unwrap();
        let _txq = port.setup_tx_queue(0, 64).unwrap();
        port.start().unwrap();
        assert_eq!(xstat(&port, "q0_ring_size"), 64);
        let mac = port.mac_addr().0;
        let peer = open_peer();
        for seq in 0..200 {
            peer.send(&test_frame(mac, seq));
        }
        let mut batch = PktBatch::new();
        let mut got = Vec::new();
        for _ in 0..70_000 {
            rxq.rx_burst(&mut batch);
            got.extend(batch.iter().map(|m| frame_seq(m.data()).unwrap()));
            batch.clear();
        }
        assert_eq!(got, (0..64).collect::<Vec<_>>());
        // Copy mode runs out of fill-ring frames first (rx_dropped); zero-copy would see a
        // full rx ring.
        let kernel = xstat(&port, "q0_kernel_rx_dropped") + xstat(&port, "q0_kernel_rx_ring_full");
        assert_eq!(kernel, 136, "{:?}", port.xstats());
        let s = port.stats();
        assert_eq!((s.ipackets, s.imissed), (64, 136));
    });
}

/// Probe and setup failures name the problem and what to do.
#[test]
fn failures_say_what_to_do() {
    let err = |spec: &str| probe(spec).err().expect("probe should fail").to_string();
    let e = err("net_af_xdp0");
    assert!(e.contains("missing argument 'iface'"), "{e}");
    let e = err("net_af_xdp0,iface=lo,queue_count=0");
    assert!(e.contains("queue_count=0") && e.contains("1..=64"), "{e}");
    let e = err("net_af_xdp0,iface=lo,shared_umem=1");
    assert!(e.contains("unknown argument(s) 'shared_umem'"), "{e}");
    let e = err("net_af_xdp0,iface=lo,mode=turbo");
    assert!(e.contains("copy, zerocopy or auto"), "{e}");

    let Some(ns) = netns("failures_say_what_to_do", 1) else {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            // Unprivileged, probing fails at the first socket (nothing is loaded).
            let e = err("net_af_xdp0,iface=lo");
            assert!(e.contains("run as root"), "{e}");
        }
        return;
    };
    let nsname = ns.name().to_string();
    ns.run(move || {
        let e = err("net_af_xdp0,iface=pmdxdpnosuch0");
        assert_eq!(
            e,
            "net_af_xdp0: interface 'pmdxdpnosuch0' not found (see `ip link`)"
        );
        // Queue 1 on a one-queue veth.
        let e = err("net_af_xdp0,iface=va,queue_count=2");
        assert!(
            e.contains("has 1 channel(s)") && e.contains("ethtool -l va"),
            "{e}"
        );
        let e = err("net_af_xdp0,iface=va,start_queue=3");
        assert!(e.contains("queues 3..4"), "{e}");

        // veth has no zero-copy: forcing it fails at queue setup and says what to use.
        let mut port = open_port("net_af_xdp0,iface=va,mode=zerocopy", PortConf::default());
        let p = pool("zc");
        let e = port.setup_rx_queue(0, 64, &p).unwrap_err().to_string();
        assert!(
            e.contains("no AF_XDP zero-copy support") && e.contains("mode=copy"),
            "{e}"
        );
        drop(port);

        // Two ports on one queue: the second socket's bind is refused.
        let mut a = open_port("net_af_xdp0,iface=va", PortConf::default());
        let _qa = a.setup_rx_queue(0, 64, &p).unwrap();
        let mut b = open_port("net_af_xdp1,iface=va", PortConf::default());
        let e = b.setup_rx_queue(0, 64, &p).unwrap_err().to_string();
        assert!(e.contains("already used by another AF_XDP socket"), "{e}");
        drop(b);

        // Someone else's program on the interface: our attach is refused, theirs stays.
        let _ta = a.setup_tx_queue(0, 64).unwrap();
        a.start().unwrap();
        let mut c = probe("net_af_xdp2,iface=va").unwrap();
        c.configure(&PortConf::default()).unwrap();
        let e = c.start().unwrap_err().to_string();
        assert!(
            e.contains("another XDP program is attached") && e.contains("xdp off"),
            "{e}"
        );
        drop(c);
        assert!(xdp_attached(&nsname, "va"));
    });
}

/// Drops capabilities `caps` from the calling thread's effective set (the rest of the
/// process keeps them).
fn drop_caps(caps: &[u32]) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: capget fills the two data words of a version-3 header.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) };
    assert_eq!(rc, 0);
    for &c in caps {
        d[(c / 32) as usize].effective &= !(1 << (c % 32));
    }
    // SAFETY: capset reads the header and the two data words; it only affects this thread.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()) };
    assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
}

/// Without the capabilities, probing says to run as root: without CAP_NET_RAW at the
/// first socket, and with it but without CAP_BPF/CAP_NET_ADMIN/CAP_SYS_ADMIN at the map.
#[test]
fn unprivileged_probe_says_run_as_root() {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_NET_RAW: u32 = 13;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let Some(ns) = netns("unprivileged_probe_says_run_as_root", 1) else {
        return;
    };
    ns.run(|| {
        drop_caps(&[CAP_BPF, CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_PERFMON]);
        let e = probe("net_af_xdp0,iface=va").err().unwrap().to_string();
        assert!(
            e.contains("creating the XSKMAP was refused") && e.contains("run as root"),
            "{e}"
        );
        drop_caps(&[CAP_NET_RAW]);
        let e = probe("net_af_xdp0,iface=va").err().unwrap().to_string();
        assert!(
            e.contains("run as root") && e.contains("CAP_NET_RAW"),
            "{e}"
        );
    });
}

/// Registering a UMEM beyond the locked-memory limit (without CAP_IPC_LOCK) says to
/// raise the limit.
#[test]
fn memlock_limit_is_explained() {
    const CAP_IPC_LOCK: u32 = 14;
    let Some(ns) = netns("memlock_limit_is_explained", 1) else {
        return;
    };
    ns.run(|| {
        let mut port = open_port("net_af_xdp0,iface=va", PortConf::default());
        let p = pool("memlock");
        drop_caps(&[CAP_IPC_LOCK]);
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: reads this process's RLIMIT_MEMLOCK into a valid struct.
        let rc = unsafe { libc::prlimit(0, libc::RLIMIT_MEMLOCK, std::ptr::null(), &mut old) };
        assert_eq!(rc, 0);
        let low = libc::rlimit {
            rlim_cur: 64 << 10,
            rlim_max: old.rlim_max,
        };
        // SAFETY: sets this process's RLIMIT_MEMLOCK from a valid struct. Only threads
        // without CAP_IPC_LOCK (this one) are held to it; it is restored below.
        let r = unsafe { libc::prlimit(0, libc::RLIMIT_MEMLOCK, &low, std::ptr::null_mut()) };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        let e = port.setup_rx_queue(0, 512, &p).map(drop);
        // SAFETY: restores the limit read above.
        unsafe { libc::prlimit(0, libc::RLIMIT_MEMLOCK, &old, std::ptr::null_mut()) };
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains("locked-memory limit") && e.contains("ulimit -l"),
            "{e}"
        );
    });
}
