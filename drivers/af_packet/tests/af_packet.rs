//! End-to-end tests over a veth pair in a private network namespace per test.
//! They need root (CAP_NET_ADMIN for the namespace, CAP_NET_RAW for the sockets); without
//! it they print why and pass (and fail under `PMD_REQUIRE_ALL=1`).

use pmd_af_packet::DRIVER;
use pmd_core::devargs::VdevSpec;
use pmd_core::ethdev::{Device, Driver, Port, PortConf, QueueStats, RxQueueConf, TxQueueConf};
use pmd_core::mbuf::PktBatch;
use pmd_core::mempool::Mempool;
use pmd_testkit::{ip, NetNs, RawSock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ETHERTYPE_TEST: u16 = 0x88b5;

// ---- environment -----------------------------------------------------------------

/// How long the peer socket waits per receive: also how long "nothing more arrives" is
/// watched for.
const PEER_RECV_TIMEOUT: Duration = Duration::from_millis(50);

/// A private network namespace (see [`NetNs::new`]) holding a veth pair `va` <-> `vb`,
/// both up. `None` (with a message) if this host cannot make one.
fn netns(test: &str) -> Option<NetNs> {
    let ns = NetNs::new("pmdafp", test)?;
    ns.veth("va", "vb");
    Some(ns)
}

/// A plain `AF_PACKET` socket on the peer end `vb`, for ethertype 0x88b5.
fn open_peer() -> RawSock {
    RawSock::open("vb", ETHERTYPE_TEST, PEER_RECV_TIMEOUT)
}

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

/// An IPv4/UDP frame whose source port varies with `seq` (so flow hashing spreads it),
/// with `seq` in the payload.
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
    let n = format!("afp-{name}-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    Mempool::create(&n, 1024, 0).unwrap()
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

// ---- tests -----------------------------------------------------------------------

#[test]
fn receives_injected_frames_byte_for_byte() {
    let Some(ns) = netns("receives_injected_frames_byte_for_byte") else {
        return;
    };
    ns.run(|| {
        let mut port = open_port("net_af_packet0,iface=va", PortConf::default());
        let p = pool("rx");
        let mut rxq = port.setup_rx_queue(0, 0, &p).unwrap();
        let _txq = port.setup_tx_queue(0, 0).unwrap();
        port.start().unwrap();
        assert!(port.wait_link_up(Duration::from_secs(2)).up);
        let mac = port.mac_addr().0;

        const N: u32 = 300;
        let peer = open_peer();
        for seq in 0..N {
            peer.send(&test_frame(mac, seq));
        }

        let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut other = 0u64;
        let mut bytes = 0u64;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut batch = PktBatch::new();
        while got.len() < N as usize && Instant::now() < deadline {
            if rxq.rx_burst(&mut batch) == 0 {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            for m in batch.iter() {
                bytes += m.len() as u64;
                match frame_seq(m.data()) {
                    Some(s) => assert!(got.insert(s, m.data().to_vec()).is_none(), "dup {s}"),
                    None => other += 1,
                }
            }
            batch.clear();
        }
        assert_eq!(got.len(), N as usize, "received {} of {N}", got.len());
        for seq in 0..N {
            assert_eq!(got[&seq], test_frame(mac, seq), "frame {seq} differs");
        }
        // Nothing more arrives (no duplicates, no echo of anything).
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(rxq.rx_burst(&mut batch), 0);

        let s = port.stats();
        let want_bytes: u64 = (0..N).map(|s| frame_len(s) as u64).sum();
        assert_eq!(other, 0, "unexpected frames on the wire");
        assert_eq!(s.ipackets, u64::from(N));
        assert_eq!(s.ibytes, want_bytes);
        assert_eq!(bytes, want_bytes);
        assert_eq!((s.ierrors, s.imissed, s.rx_nombuf), (0, 0, 0));
        let xs = port.xstats();
        assert!(xs.iter().any(|(k, _)| k == "rx_q0_kernel_drops"), "{xs:?}");
        port.stop().unwrap();
        port.close();
    });
}

#[test]
fn transmits_frames_byte_for_byte() {
    let Some(ns) = netns("transmits_frames_byte_for_byte") else {
        return;
    };
    ns.run(|| {
        let mut port = open_port("net_af_packet0,iface=va", PortConf::default());
        let p = pool("tx");
        let _rxq = port.setup_rx_queue(0, 0, &p).unwrap();
        let mut txq = port.setup_tx_queue(0, 0).unwrap();
        port.start().unwrap();
        assert!(port.wait_link_up(Duration::from_secs(2)).up);

        let peer = open_peer();
        let dst = [0xff; 6];
        const N: u32 = 300;
        let mut next = 0u32;
        let mut batch = PktBatch::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while (next < N || !batch.is_empty()) && Instant::now() < deadline {
            let room = batch.spare().min((N - next) as usize);
            if room > 0 {
                let start = batch.len();
                p.alloc_bulk(&mut batch, room).unwrap();
                for m in &mut batch.as_mut_slice()[start..] {
                    assert!(m.copy_from(&test_frame(dst, next)));
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

        let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while got.len() < N as usize && Instant::now() < deadline {
            if let Some(f) = peer.recv() {
                let s = frame_seq(&f).expect("a test frame");
                assert!(got.insert(s, f).is_none(), "dup {s}");
            }
        }
        assert_eq!(got.len(), N as usize, "peer got {} of {N}", got.len());
        for seq in 0..N {
            assert_eq!(got[&seq], test_frame(dst, seq), "frame {seq} differs");
        }
        // Exactly N: nothing more shows up.
        assert!(peer.recv().is_none());

        let s = port.stats();
        let want_bytes: u64 = (0..N).map(|s| frame_len(s) as u64).sum();
        assert_eq!(s.opackets, u64::from(N));
        assert_eq!(s.obytes, want_bytes);
        assert_eq!(s.oerrors, 0);
        // Our own transmissions are not received back.
        assert_eq!(s.ipackets, 0);

        // A packet longer than a frame holds (2048 - 32) is dropped, counted, consumed;
        // the one after it still goes out.
        p.alloc_bulk(&mut batch, 2).unwrap();
        let mut big = test_frame(dst, 1000);
        big.resize(2017, 0xee);
        assert!(batch.as_mut_slice()[0].copy_from(&big));
        assert!(batch.as_mut_slice()[1].copy_from(&test_frame(dst, 1001)));
        assert_eq!(txq.tx_burst(&mut batch), 2);
        assert!(batch.is_empty());
        let s = port.stats();
        assert_eq!((s.opackets, s.oerrors), (u64::from(N) + 1, 1));
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = None;
        while last.is_none() && Instant::now() < deadline {
            last = peer.recv();
        }
        assert_eq!(last.as_deref().and_then(frame_seq), Some(1001));
    });
}

#[test]
fn two_queue_pairs_fan_out_without_duplicates() {
    let Some(ns) = netns("two_queue_pairs_fan_out_without_duplicates") else {
        return;
    };
    ns.run(|| {
        let conf = PortConf {
            rx_queues: 2,
            tx_queues: 2,
            ..Default::default()
        };
        let mut port = open_port("net_af_packet0,iface=va,qpairs=2", conf);
        assert_eq!(port.info().max_rx_queues, 2);
        let p = pool("fanout");
        let mut rxqs = vec![
            port.setup_rx_queue(0, 0, &p).unwrap(),
            port.setup_rx_queue(1, 0, &p).unwrap(),
        ];
        let txqs = [
            port.setup_tx_queue(0, 0).unwrap(),
            port.setup_tx_queue(1, 0).unwrap(),
        ];
        port.start().unwrap();
        assert!(port.wait_link_up(Duration::from_secs(2)).up);
        let mac = port.mac_addr().0;

        const N: u32 = 400;
        let peer = open_peer();
        for seq in 0..N {
            peer.send(&udp_frame(mac, seq));
        }
        let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut per_queue = [0usize; 2];
        let mut batch = PktBatch::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < N as usize && Instant::now() < deadline {
            let mut any = false;
            for (q, rxq) in rxqs.iter_mut().enumerate() {
                if rxq.rx_burst(&mut batch) > 0 {
                    any = true;
                }
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
        assert_eq!(got.len(), N as usize, "received {} of {N}", got.len());
        for seq in 0..N {
            assert_eq!(got[&seq], udp_frame(mac, seq), "frame {seq} differs");
        }
        assert!(
            per_queue.iter().all(|&n| n > 0),
            "fanout did not spread 400 flows: {per_queue:?}"
        );
        let s = port.stats();
        assert_eq!(s.ipackets, u64::from(N));
        drop(rxqs);

        // Reconfigured with one rx queue, everything lands on it.
        port.stop().unwrap();
        drop(txqs);
        port.configure(&PortConf {
            rx_queues: 1,
            tx_queues: 2,
            ..Default::default()
        })
        .unwrap();
        let mut rxq = port.setup_rx_queue(0, 0, &p).unwrap();
        let _t0 = port.setup_tx_queue(0, 0).unwrap();
        let _t1 = port.setup_tx_queue(1, 0).unwrap();
        port.start().unwrap();
        for seq in 0..100 {
            peer.send(&udp_frame(mac, seq));
        }
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while n < 100 && Instant::now() < deadline {
            n += rxq.rx_burst(&mut batch);
            batch.clear();
        }
        assert_eq!(n, 100);
    });
}

#[test]
fn bad_arguments_give_clear_errors() {
    let err = |spec: &str| probe(spec).err().expect("probe should fail").to_string();
    let e = err("net_af_packet0");
    assert!(e.contains("missing argument 'iface'"), "{e}");
    let e = err("net_af_packet0,iface=lo,qpairs=0");
    assert!(e.contains("qpairs=0") && e.contains("1..=16"), "{e}");
    let e = err("net_af_packet0,iface=lo,speed=fast");
    assert!(e.contains("unknown argument(s) 'speed'"), "{e}");
    assert!(e.contains("'iface'"), "{e}");
    let e = err("net_af_packet0,iface=lo,framecnt=511");
    assert!(e.contains("framecnt=511"), "{e}");
    let e = err("net_af_packet0,iface=pmdafpnosuch0");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(
            e,
            "net_af_packet0: interface 'pmdafpnosuch0' not found (see `ip link`)"
        );
    } else {
        assert!(e.contains("CAP_NET_RAW"), "{e}");
    }
}

#[test]
fn promiscuous_link_and_mac() {
    let Some(ns) = netns("promiscuous_link_and_mac") else {
        return;
    };
    let nsname = ns.name().to_string();
    let details = move |dev: &str| ip(&["-n", &nsname, "-d", "link", "show", dev]).unwrap();
    let d = details.clone();
    ns.run(move || {
        let mut port = open_port("net_af_packet0,iface=va", PortConf::default());
        let info = d("va");
        assert!(info.contains(&port.mac_addr().to_string()), "{info}");
        let link = port.wait_link_up(Duration::from_secs(2));
        assert!(link.up, "{link}");
        assert!(!port.promiscuous());
        assert!(info.contains("promiscuity 0"), "{info}");
        port.set_promiscuous(true).unwrap();
        port.set_promiscuous(true).unwrap();
        assert!(port.promiscuous());
        let info = d("va");
        assert!(info.contains("promiscuity 1"), "{info}");
        port.set_promiscuous(false).unwrap();
        assert!(!port.promiscuous());
        assert!(d("va").contains("promiscuity 0"));
        // Closing drops a membership left on.
        port.set_promiscuous(true).unwrap();
        port.close();
        assert!(d("va").contains("promiscuity 0"));
    });
    // Taking the peer down makes the link report down (without us changing state).
    ns.ip(&["link", "set", "vb", "down"]);
    ns.run(|| {
        let port = open_port("net_af_packet0,iface=va", PortConf::default());
        assert!(!port.link().up);
    });
}

#[test]
fn queues_stay_usable_after_the_device_is_closed() {
    let Some(ns) = netns("queues_stay_usable_after_the_device_is_closed") else {
        return;
    };
    ns.run(|| {
        let mut dev = probe("net_af_packet0,iface=va").unwrap();
        dev.configure(&PortConf::default()).unwrap();
        let p = pool("closed");
        let rx_stats = Arc::new(QueueStats::default());
        let tx_stats = Arc::new(QueueStats::default());
        let mut rxq = dev
            .setup_rx_queue(
                0,
                RxQueueConf {
                    offloads: Default::default(),
                    max_rx_pktlen: 1522,
                    port: 3,
                    nb_desc: 512,
                    pool: p.clone(),
                    stats: rx_stats.clone(),
                },
            )
            .unwrap();
        // One rx queue per ring.
        assert!(dev
            .setup_rx_queue(
                0,
                RxQueueConf {
                    offloads: Default::default(),
                    max_rx_pktlen: 1522,
                    port: 3,
                    nb_desc: 512,
                    pool: p.clone(),
                    stats: Arc::default(),
                },
            )
            .is_err());
        let mut txq = dev
            .setup_tx_queue(
                0,
                TxQueueConf {
                    offloads: Default::default(),
                    nb_desc: 512,
                    stats: tx_stats.clone(),
                },
            )
            .unwrap();
        let mac = dev.mac_addr().0;
        dev.start().unwrap();
        dev.stop().unwrap();
        dev.close();
        assert!(!dev.link().up);
        assert!(dev.set_promiscuous(true).is_err());
        drop(dev);

        let peer = open_peer();
        peer.send(&test_frame(mac, 7));
        let mut batch = PktBatch::new();
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(2);
        while n == 0 && Instant::now() < deadline {
            n = rxq.rx_burst(&mut batch, 32);
        }
        assert_eq!(n, 1);
        assert_eq!(batch.as_slice()[0].data(), &test_frame(mac, 7)[..]);
        assert_eq!(batch.as_slice()[0].port(), 3);
        batch.clear();
        p.alloc_bulk(&mut batch, 1).unwrap();
        batch.as_mut_slice()[0].copy_from(&test_frame([0xff; 6], 8));
        assert_eq!(txq.tx_burst(&mut batch), 1);
        let mut f = None;
        let deadline = Instant::now() + Duration::from_secs(2);
        while f.is_none() && Instant::now() < deadline {
            f = peer.recv();
        }
        assert_eq!(f.as_deref().and_then(frame_seq), Some(8));
        assert_eq!(rx_stats.snapshot().packets, 1);
        assert_eq!(tx_stats.snapshot().packets, 1);
    });
}

#[test]
fn small_rings_count_drops_and_apply_backpressure() {
    let Some(ns) = netns("small_rings_count_drops_and_apply_backpressure") else {
        return;
    };
    ns.run(|| {
        let mut port = open_port("net_af_packet0,iface=va,framecnt=16", PortConf::default());
        assert_eq!(port.info().default_desc, 16);
        let p = pool("small");
        let mut rxq = port.setup_rx_queue(0, 0, &p).unwrap();
        let mut txq = port.setup_tx_queue(0, 0).unwrap();
        port.start().unwrap();
        assert!(port.wait_link_up(Duration::from_secs(2)).up);
        let mac = port.mac_addr().0;
        let peer = open_peer();

        // 100 frames into a 16-frame ring that nobody drains: 84 are dropped by the kernel.
        for seq in 0..100 {
            peer.send(&test_frame(mac, seq));
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut batch = PktBatch::new();
        let mut got = Vec::new();
        while rxq.rx_burst(&mut batch) > 0 {
            got.extend(batch.iter().map(|m| frame_seq(m.data()).unwrap()));
            batch.clear();
        }
        assert_eq!(got, (0..16).collect::<Vec<_>>());
        // The kernel's drops are read when the statistics are: no later frame is needed.
        let s = port.stats();
        assert_eq!((s.ipackets, s.imissed), (16, 84));
        peer.send(&test_frame(mac, 100));
        let deadline = Instant::now() + Duration::from_secs(2);
        while batch.is_empty() && Instant::now() < deadline {
            rxq.rx_burst(&mut batch);
        }
        assert_eq!(frame_seq(batch.as_slice()[0].data()), Some(100));
        batch.clear();
        let s = port.stats();
        assert_eq!((s.ipackets, s.imissed), (17, 84));

        // 200 frames through a 16-frame tx ring: backpressure, but all go out in order.
        let dst = [0xff; 6];
        let mut next = 0u32;
        let deadline = Instant::now() + Duration::from_secs(5);
        while (next < 200 || !batch.is_empty()) && Instant::now() < deadline {
            let room = batch.spare().min((200 - next) as usize);
            if room > 0 {
                let start = batch.len();
                p.alloc_bulk(&mut batch, room).unwrap();
                for m in &mut batch.as_mut_slice()[start..] {
                    m.copy_from(&test_frame(dst, next));
                    next += 1;
                }
            }
            if txq.tx_burst(&mut batch) == 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        assert!(batch.is_empty());
        let mut seqs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while seqs.len() < 200 && Instant::now() < deadline {
            if let Some(f) = peer.recv() {
                seqs.push(frame_seq(&f).unwrap());
            }
        }
        assert_eq!(seqs, (0..200).collect::<Vec<_>>());
        assert_eq!(port.stats().opackets, 200);
    });
}

/// Sends one burst of `n` test frames on `txq`; returns how many it took (the rest are
/// freed).
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
    let Some(ns) = netns("interface_deleted_under_a_running_port") else {
        return;
    };
    ns.veth("wa", "wb");
    let nsname = ns.name().to_string();
    ns.run(move || {
        let p = pool("deleted");
        let idle = p.stats().in_use;
        let mut gone = open_port("net_af_packet0,iface=wa", PortConf::default());
        let mut rx0 = gone.setup_rx_queue(0, 0, &p).unwrap();
        let mut tx0 = gone.setup_tx_queue(0, 0).unwrap();
        gone.start().unwrap();
        let mut other = open_port("net_af_packet1,iface=va", PortConf::default());
        let mut rx1 = other.setup_rx_queue(0, 0, &p).unwrap();
        let mut tx1 = other.setup_tx_queue(0, 0).unwrap();
        other.start().unwrap();
        assert!(gone.wait_link_up(Duration::from_secs(5)).up);
        assert!(other.wait_link_up(Duration::from_secs(5)).up);
        let peer = open_peer();

        // Traffic out of the doomed port, then its interface (and its veth peer) goes
        // away mid-stream.
        assert_eq!(burst(&mut tx0, &p, 32), 32);
        ip(&["-n", &nsname, "link", "del", "wa"]).unwrap();
        let mut batch = PktBatch::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while gone.link().up || gone.stats().oerrors == 0 {
            assert!(
                Instant::now() < deadline,
                "link {}, stats {:?}",
                gone.link(),
                gone.stats()
            );
            // The kernel refuses to send: counted as errors; the ring fills and then
            // the frames are given back. Nothing is received.
            burst(&mut tx0, &p, 32);
            assert_eq!(rx0.rx_burst(&mut batch), 0);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!gone.link().up);
        let s = gone.stats();
        assert!(s.oerrors >= 1 && s.ipackets == 0, "{s:?}");

        // The other port still runs both ways.
        for s in 0..50 {
            let mut one = PktBatch::new();
            p.alloc_bulk(&mut one, 1).unwrap();
            assert!(one.as_mut_slice()[0].copy_from(&test_frame([0xff; 6], s)));
            assert_eq!(tx1.tx_burst(&mut one), 1, "the other port takes frame {s}");
        }
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
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while got < 50 && Instant::now() < deadline {
            batch.clear();
            got += rx1.rx_burst(&mut batch);
        }
        assert_eq!(got, 50, "the other port received");

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
