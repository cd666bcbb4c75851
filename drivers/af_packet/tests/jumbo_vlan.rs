//! Jumbo frames, VLAN tags, multi-segment packets and the MTU, end to end over a veth
//! pair with MTU 9000 in a private network namespace per test. They need root; without
//! it they print why and pass (and fail under `PMD_REQUIRE_ALL=1`).
//!
//! The peer end `vb` is watched by the testkit's `ETH_P_ALL` raw socket, which puts back
//! the VLAN tag the kernel reports beside each frame (`PACKET_AUXDATA`, as libpcap does),
//! so what it returns is the frame as it was on the wire.

use pmd_af_packet::DRIVER;
use pmd_core::devargs::VdevSpec;
use pmd_core::ethdev::{
    Device, Driver, Port, PortConf, QueueStats, RxOffloads, RxQueueConf, TxOffloads,
};
use pmd_core::mbuf::{Mbuf, PktBatch, RX_VLAN, RX_VLAN_STRIPPED, TX_QINQ, TX_VLAN};
use pmd_core::mempool::{Mempool, MempoolConfig};
use pmd_testkit::frames::{self, frame, ETH_P_ALL};
use pmd_testkit::{NetNs, RawSock};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Source MAC of every test frame (how the peer tells them from anything else).
const SRC: [u8; 6] = frames::INJECT_SRC;
const MCAST: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
const BCAST: [u8; 6] = [0xff; 6];

// ---- environment -----------------------------------------------------------------

/// A namespace with the veth pair `va` <-> `vb`, both up, both with MTU `mtu`.
fn netns(test: &str, mtu: u32) -> Option<NetNs> {
    let ns = NetNs::new("pmdafj", test)?;
    ns.veth("va", "vb");
    let m = mtu.to_string();
    for dev in ["va", "vb"] {
        ns.ip(&["link", "set", dev, "mtu", &m]);
    }
    Some(ns)
}

/// The peer end `vb`: the testkit's raw `ETH_P_ALL` socket (it puts back the VLAN tag
/// the kernel strips), keeping only the test frames.
struct Peer(RawSock);

impl Peer {
    fn open() -> Peer {
        Peer(RawSock::open("vb", ETH_P_ALL, Duration::from_millis(50)))
    }

    fn send(&self, frame: &[u8]) {
        self.0.send(frame);
    }

    /// The next test frame that arrived on `vb` (tag put back), or `None` after 50 ms.
    fn recv(&self) -> Option<Vec<u8>> {
        loop {
            let f = self.0.recv_incoming()?;
            if f.len() >= 12 && f[6..12] == SRC {
                return Some(f);
            }
        }
    }
}

// ---- test frames -----------------------------------------------------------------

/// Where `seq` sits: after the tags.
fn seq_of(f: &[u8]) -> u32 {
    frames::seq_of(f).expect("a test frame")
}

const Q: (u16, u16) = (0x8100, 0x0064); // VLAN 100
const OUTER: (u16, u16) = (0x88a8, 0x20c8); // PCP 1, VLAN 200
const INNER: (u16, u16) = (0x8100, 0x012c); // VLAN 300

/// Every kind of frame the tests pass: sizes 60 to a full 9000-MTU frame, odd sizes,
/// 802.1Q and QinQ tags (as large as the kernel carries), broadcast, multicast.
fn frame_set(dst: [u8; 6]) -> Vec<Vec<u8>> {
    type Tags = &'static [(u16, u16)];
    let specs: &[([u8; 6], Tags, usize)] = &[
        (dst, &[], 60),
        (dst, &[], 61),
        (dst, &[], 1001),
        (dst, &[], 1514),
        (dst, &[], 2049),
        (dst, &[], 4097),
        (dst, &[], 9014),
        (dst, &[Q], 64),
        (dst, &[Q], 1518),
        (dst, &[Q], 9018),
        (dst, &[OUTER, INNER], 68),
        (dst, &[OUTER, INNER], 1522),
        // The kernel takes at most MTU + 14 + 4 bytes from a raw socket unless the outer
        // TPID is 0x8100: a 9000-MTU QinQ frame of 802.1ad is 9014 bytes at most.
        (dst, &[OUTER, INNER], 9014),
        (BCAST, &[], 60),
        (BCAST, &[], 9014),
        (MCAST, &[], 1001),
        (MCAST, &[Q], 9018),
    ];
    specs
        .iter()
        .enumerate()
        .map(|(i, (d, tags, len))| frame(*d, tags, *len, i as u32))
        .collect()
}

// ---- port setup ------------------------------------------------------------------

fn pool_with(name: &str, buf_size: u16) -> Mempool {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = format!("afj-{name}-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    Mempool::create_with(
        &n,
        &MempoolConfig {
            size: 2048,
            cache_size: 0,
            buf_size,
        },
    )
    .unwrap()
}

fn probe(spec: &str) -> pmd_core::Result<Box<dyn Device>> {
    let vdev: VdevSpec = spec.parse().unwrap();
    DRIVER.probe(&vdev)
}

fn open_port(spec: &str, conf: PortConf) -> Port {
    let mut port = Port::new(0, "net_af_packet0", probe(spec).unwrap());
    port.configure(&conf).unwrap();
    port
}

/// Receives `n` packets (or until 5 s pass), as (bytes, segments, flags, vlan_tci).
fn receive(rxq: &mut pmd_core::ethdev::RxQueueHandle, n: usize) -> Vec<(Vec<u8>, u16, u64, u16)> {
    let mut out = Vec::new();
    let mut batch = PktBatch::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while out.len() < n && Instant::now() < deadline {
        if rxq.rx_burst(&mut batch) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for m in batch.iter() {
            assert_eq!(m.segments().map(<[u8]>::len).sum::<usize>(), m.len());
            out.push((m.to_vec(), m.nb_segs(), m.ol_flags(), m.vlan_tci()));
        }
        batch.clear();
    }
    out
}

// ---- tests -----------------------------------------------------------------------

/// Frames from the wire arrive byte for byte, tags included: the kernel's VLAN stripping
/// is undone. Frames longer than a 2048-byte buffer arrive as chains (SCATTER).
#[test]
fn receives_jumbo_and_tagged_frames_byte_exact_with_scatter() {
    let Some(ns) = netns(
        "receives_jumbo_and_tagged_frames_byte_exact_with_scatter",
        9000,
    ) else {
        return;
    };
    ns.run(|| {
        let mut port = open_port(
            "net_af_packet0,iface=va",
            PortConf {
                rx_offloads: RxOffloads::SCATTER,
                ..Default::default()
            },
        );
        assert_eq!(port.mtu(), 9000);
        let info = port.info();
        assert!(info.max_mtu >= 9000, "{info:?}");
        assert!(info
            .rx_offload_capa
            .contains(RxOffloads::VLAN_STRIP | RxOffloads::SCATTER));
        assert!(info
            .tx_offload_capa
            .contains(TxOffloads::MULTI_SEGS | TxOffloads::VLAN_INSERT));
        let p = pool_with("scatter", 2048 + 128);
        let mut rxq = port.setup_rx_queue(0, 0, &p).unwrap();
        let _txq = port.setup_tx_queue(0, 0).unwrap();
        port.start().unwrap();
        assert!(port.wait_link_up(Duration::from_secs(2)).up);
        let mac = port.mac_addr().0;

        let frames = frame_set(mac);
        let peer = Peer::open();
        for f in &frames {
            peer.send(f);
        }
        let got = receive(&mut rxq, frames.len());
        assert_eq!(
            got.len(),
            frames.len(),
            "received {} of {}",
            got.len(),
            frames.len()
        );
        for (i, (bytes, segs, flags, _)) in got.iter().enumerate() {
            let want = &frames[i];
            assert_eq!(bytes.len(), want.len(), "frame {i}: length");
            assert!(bytes == want, "frame {i} ({} bytes) differs", want.len());
            assert_eq!(
                *segs as usize,
                want.len().div_ceil(2048),
                "frame {i}: segments"
            );
            assert_eq!(flags & (RX_VLAN | RX_VLAN_STRIPPED), 0, "frame {i}: flags");
        }
        let s = port.stats();
        assert_eq!(s.ipackets, frames.len() as u64);
        assert_eq!(s.ibytes, frames.iter().map(|f| f.len() as u64).sum::<u64>());
        assert_eq!((s.ierrors, s.rx_nombuf, s.imissed), (0, 0, 0));
        port.stop().unwrap();
        port.close();
    });
}

/// With VLAN_STRIP the outer tag stays out: its TCI is in the metadata; a QinQ frame
/// keeps its inner tag in the data. One buffer holds a whole 9000-MTU frame.
#[test]
fn vlan_strip_keeps_the_tag_in_metadata() {
    let Some(ns) = netns("vlan_strip_keeps_the_tag_in_metadata", 9000) else {
        return;
    };
    ns.run(|| {
        let mut port = open_port(
            "net_af_packet0,iface=va",
            PortConf {
                rx_offloads: RxOffloads::VLAN_STRIP,
                ..Default::default()
            },
        );
        let p = pool_with("strip", 9216 + 128);
        let mut rxq = port.setup_rx_queue(0, 0, &p).unwrap();
        let _txq = port.setup_tx_queue(0, 0).unwrap();
        port.start().unwrap();
        assert!(port.wait_link_up(Duration::from_secs(2)).up);
        let mac = port.mac_addr().0;

        let frames = frame_set(mac);
        let peer = Peer::open();
        for f in &frames {
            peer.send(f);
        }
        let got = receive(&mut rxq, frames.len());
        assert_eq!(got.len(), frames.len());
        for (i, (bytes, segs, flags, tci)) in got.iter().enumerate() {
            let want = &frames[i];
            assert_eq!(*segs, 1, "frame {i}");
            let outer = u16::from_be_bytes([want[12], want[13]]);
            if outer == 0x8100 || outer == 0x88a8 {
                let mut stripped = want[..12].to_vec();
                stripped.extend_from_slice(&want[16..]);
                assert!(
                    *bytes == stripped,
                    "frame {i} ({} bytes) differs",
                    want.len()
                );
                assert_eq!(
                    flags & (RX_VLAN | RX_VLAN_STRIPPED),
                    RX_VLAN | RX_VLAN_STRIPPED
                );
                assert_eq!(*tci, u16::from_be_bytes([want[14], want[15]]), "frame {i}");
                assert_eq!(seq_of(bytes), i as u32);
            } else {
                assert!(bytes == want, "frame {i} differs");
                assert_eq!(flags & (RX_VLAN | RX_VLAN_STRIPPED), 0, "frame {i}");
            }
        }
        assert_eq!(port.stats().ierrors, 0);
    });
}

/// What the PMD sends arrives byte for byte: contiguous packets, chains built from a
/// small-buffer pool, tags in the data, and tags asked for with TX_VLAN / TX_QINQ.
#[test]
fn transmits_jumbo_chains_and_tags_byte_exact() {
    let Some(ns) = netns("transmits_jumbo_chains_and_tags_byte_exact", 9000) else {
        return;
    };
    ns.run(|| {
        let mut port = open_port(
            "net_af_packet0,iface=va",
            PortConf {
                tx_offloads: TxOffloads::MULTI_SEGS
                    | TxOffloads::VLAN_INSERT
                    | TxOffloads::QINQ_INSERT,
                rx_offloads: RxOffloads::SCATTER,
                ..Default::default()
            },
        );
        let big = pool_with("txbig", 9216 + 128);
        let small = pool_with("txsmall", 512 + 128);
        let _rxq = port.setup_rx_queue(0, 0, &small).unwrap();
        let mut txq = port.setup_tx_queue(0, 0).unwrap();
        port.start().unwrap();
        assert!(port.wait_link_up(Duration::from_secs(2)).up);
        let peer = Peer::open();
        let dst = [0x02, 0, 0, 0, 0xbb, 0x01];
        let frames = frame_set(dst);

        // (packet, what the wire must show)
        let mut cases: Vec<(Mbuf, Vec<u8>)> = Vec::new();
        for f in &frames {
            let m = Mbuf::from_slice(f, &big).unwrap();
            assert_eq!(m.nb_segs(), 1);
            cases.push((m, f.clone()));
            let c = Mbuf::from_slice(f, &small).unwrap();
            assert_eq!(usize::from(c.nb_segs()), f.len().div_ceil(512));
            cases.push((c, f.clone()));
        }
        // Tags asked for in the metadata, on untagged packets (one chained).
        let tagged = |plain: &[u8], tags: &[(u16, u16)]| {
            let mut w = plain[..12].to_vec();
            for (tpid, tci) in tags {
                w.extend_from_slice(&tpid.to_be_bytes());
                w.extend_from_slice(&tci.to_be_bytes());
            }
            w.extend_from_slice(&plain[12..]);
            w
        };
        for (i, len) in [(100u32, 60usize), (101, 1514), (102, 9014)] {
            let plain = frame(dst, &[], len, i);
            let mut m = Mbuf::from_slice(&plain, &small).unwrap();
            m.set_vlan_tci(Q.1);
            m.set_ol_flags(TX_VLAN);
            cases.push((m, tagged(&plain, &[Q])));
            if len + 8 <= 9014 {
                let mut m = Mbuf::from_slice(&plain, &big).unwrap();
                m.set_vlan_tci(INNER.1);
                m.set_vlan_tci_outer(OUTER.1);
                m.set_ol_flags(TX_VLAN | TX_QINQ);
                cases.push((m, tagged(&plain, &[OUTER, INNER])));
            }
        }
        let want: Vec<Vec<u8>> = cases.iter().map(|(_, w)| w.clone()).collect();
        let mut pending: Vec<Mbuf> = cases.into_iter().map(|(m, _)| m).collect();
        pending.reverse();

        let mut got = Vec::new();
        let mut batch = PktBatch::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while (got.len() < want.len()) && Instant::now() < deadline {
            // One packet at a time, so the peer's order is the send order.
            if batch.is_empty() {
                if let Some(m) = pending.pop() {
                    assert!(batch.push(m).is_ok());
                }
            }
            if !batch.is_empty() {
                txq.tx_burst(&mut batch);
            }
            if let Some(f) = peer.recv() {
                got.push(f);
            }
        }
        let lens = |v: &[Vec<u8>]| v.iter().map(|f| (f.len(), seq_of(f))).collect::<Vec<_>>();
        assert_eq!(
            lens(&got),
            lens(&want),
            "peer got {} of {}",
            got.len(),
            want.len()
        );
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.len(), w.len(), "packet {i}: length");
            assert!(g == w, "packet {i} ({} bytes) differs", w.len());
        }
        assert!(peer.recv().is_none(), "more than sent arrived");
        let s = port.stats();
        assert_eq!(s.opackets, want.len() as u64);
        assert_eq!(s.obytes, want.iter().map(|f| f.len() as u64).sum::<u64>());
        assert_eq!(s.oerrors, 0);
    });
}

/// Without SCATTER, a pool whose buffers cannot hold a frame of the MTU is refused at rx
/// queue setup; a queue set up anyway (below the port) counts such frames as errors.
#[test]
fn small_buffers_without_scatter_are_refused_or_counted() {
    let Some(ns) = netns("small_buffers_without_scatter_are_refused_or_counted", 9000) else {
        return;
    };
    ns.run(|| {
        let mut port = open_port("net_af_packet0,iface=va", PortConf::default());
        let p = pool_with("refuse", 2048 + 128);
        let e = match port.setup_rx_queue(0, 0, &p) {
            Ok(_) => panic!("a 2048-byte pool without SCATTER must be refused at MTU 9000"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("MTU 9000") && e.contains("SCATTER"), "{e}");
        port.setup_rx_queue_with(0, 0, &p, RxOffloads::SCATTER)
            .unwrap();
        port.close();

        // Straight on the device: no port check, so the queue sees a too-long frame.
        let mut dev = probe("net_af_packet0,iface=va").unwrap();
        dev.configure(&PortConf::default()).unwrap();
        let stats = Arc::new(QueueStats::default());
        let mut rxq = dev
            .setup_rx_queue(
                0,
                RxQueueConf {
                    port: 0,
                    nb_desc: 512,
                    pool: p.clone(),
                    stats: stats.clone(),
                    offloads: RxOffloads::NONE,
                    max_rx_pktlen: 9022,
                },
            )
            .unwrap();
        dev.start().unwrap();
        let mac = dev.mac_addr().0;
        let peer = Peer::open();
        peer.send(&frame(mac, &[], 9014, 1));
        peer.send(&frame(mac, &[], 2049, 2));
        peer.send(&frame(mac, &[], 2048, 3));
        let mut batch = PktBatch::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while batch.is_empty() && Instant::now() < deadline {
            rxq.rx_burst(&mut batch, 32);
        }
        std::thread::sleep(Duration::from_millis(20));
        rxq.rx_burst(&mut batch, 32);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.as_slice()[0].to_vec(), frame(mac, &[], 2048, 3));
        let s = stats.snapshot();
        assert_eq!((s.packets, s.errors), (1, 2));
    });
}

/// A chain the pool cannot supply segments for is dropped and counted (rx_nombuf); the
/// segments taken so far go back, and the next frame arrives.
#[test]
fn pool_exhaustion_while_chaining_is_counted() {
    let Some(ns) = netns("pool_exhaustion_while_chaining_is_counted", 9000) else {
        return;
    };
    ns.run(|| {
        let mut dev = probe("net_af_packet0,iface=va").unwrap();
        dev.configure(&PortConf::default()).unwrap();
        // 8 buffers of 512 bytes: a 9014-byte frame needs 18.
        let p = Mempool::create_with(
            "afj-exhaust",
            &MempoolConfig {
                size: 8,
                cache_size: 0,
                buf_size: 512 + 128,
            },
        )
        .unwrap();
        let stats = Arc::new(QueueStats::default());
        let mut rxq = dev
            .setup_rx_queue(
                0,
                RxQueueConf {
                    port: 0,
                    nb_desc: 512,
                    pool: p.clone(),
                    stats: stats.clone(),
                    offloads: RxOffloads::SCATTER,
                    max_rx_pktlen: 9022,
                },
            )
            .unwrap();
        dev.start().unwrap();
        let mac = dev.mac_addr().0;
        let peer = Peer::open();
        let mut batch = PktBatch::new();
        for (seq, len, want) in [(1, 9014, false), (2, 1514, true), (3, 9014, false)] {
            peer.send(&frame(mac, &[], len, seq));
            let deadline = Instant::now() + Duration::from_millis(500);
            while batch.is_empty() && Instant::now() < deadline {
                rxq.rx_burst(&mut batch, 32);
            }
            if want {
                assert_eq!(batch.len(), 1, "frame {seq}");
                assert_eq!(batch.as_slice()[0].to_vec(), frame(mac, &[], len, seq));
                assert_eq!(batch.as_slice()[0].nb_segs(), 3);
                batch.clear();
            } else {
                assert!(batch.is_empty(), "frame {seq}");
            }
        }
        let s = stats.snapshot();
        assert_eq!((s.packets, s.no_mbuf, s.errors), (1, 2, 0));
        // Every buffer is back in the pool.
        assert_eq!(p.stats().available, 8);
    });
}

/// The MTU is the kernel's: read, set through the port (rings regrow while no queue
/// holds them), checked at start, and refused at probe against a too-small framesz.
#[test]
fn mtu_is_the_interfaces() {
    let Some(ns) = netns("mtu_is_the_interfaces", 1500) else {
        return;
    };
    let nsname = ns.name().to_string();
    let link = move || pmd_testkit::ip(&["-n", &nsname, "link", "show", "va"]).unwrap();
    ns.run(move || {
        let mut port = Port::new(
            0,
            "net_af_packet0",
            probe("net_af_packet0,iface=va").unwrap(),
        );
        assert_eq!(port.mtu(), 1500);
        port.configure(&PortConf {
            mtu: Some(9000),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(port.mtu(), 9000);
        assert!(link().contains("mtu 9000"), "{}", link());
        // Frames of that MTU arrive whole (the rings were reopened with larger frames).
        let p = pool_with("mtu", 2048 + 128);
        let mut rxq = port
            .setup_rx_queue_with(0, 0, &p, RxOffloads::SCATTER)
            .unwrap();
        let _txq = port.setup_tx_queue(0, 0).unwrap();
        // With queues holding the rings, they cannot regrow: a clear error.
        let e = port.set_mtu(16000).unwrap_err().to_string();
        assert!(e.contains("MTU 16000") && e.contains("drop"), "{e}");
        port.start().unwrap();
        // vb still has MTU 1500 but the peer socket sends what it is given.
        let mac = port.mac_addr().0;
        let peer = Peer::open();
        let big = frame(mac, &[], 1514, 5);
        peer.send(&big);
        let got = receive(&mut rxq, 1);
        assert_eq!(got.len(), 1);
        assert!(got[0].0 == big);
        port.stop().unwrap();
        drop(rxq);
        port.close();

        // framesz given too small for the MTU: refused at probe, saying what to do.
        let e = probe("net_af_packet0,iface=va,framesz=2048")
            .err()
            .expect("framesz too small for the MTU")
            .to_string();
        assert!(
            e.contains("MTU 9000") && e.contains("framesz=2048") && e.contains("raise framesz"),
            "{e}"
        );
        assert!(probe("net_af_packet0,iface=va,framesz=9216").is_ok());
    });
    // An MTU raised behind the driver's back after probe: start refuses.
    let nsname = ns.name().to_string();
    ns.ip(&["link", "set", "va", "mtu", "1500"]);
    ns.run(move || {
        let mut port = open_port("net_af_packet0,iface=va", PortConf::default());
        let p = pool_with("mtu2", 2048 + 128);
        let _rxq = port
            .setup_rx_queue_with(0, 0, &p, RxOffloads::SCATTER)
            .unwrap();
        let _txq = port.setup_tx_queue(0, 0).unwrap();
        pmd_testkit::ip(&["-n", &nsname, "link", "set", "va", "mtu", "9000"]).unwrap();
        let e = port.start().unwrap_err().to_string();
        assert!(e.contains("MTU 9000") && e.contains("framesz"), "{e}");
    });
}
