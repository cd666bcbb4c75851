//! Offloads through `PACKET_VNET_HDR`, against the kernel's own TCP over a veth pair
//! between two private namespaces (`va` 10.77.0.1 in A, `vb` 10.77.0.2 in B):
//!
//! - rx: a kernel TCP flow B -> A arrives at the port on `va` as GSO super-frames (veth
//!   has TSO on by default); with `TCP_LRO` they are delivered whole (`RX_LRO`), without
//!   it cut into MSS-sized packets with valid checksums; either way every payload byte is
//!   seen.
//! - tx: a 10,000-byte TCP super-frame sent with `TX_TCP_SEG` (MSS 1000) leaves `va` as
//!   ten valid segments (the kernel segments it: `va` has TSO and checksumming off).
//!
//! Need root; without it they print why and pass (and fail under `PMD_REQUIRE_ALL=1`).

use pmd_af_packet::DRIVER;
use pmd_core::ethdev::{Driver, Port, PortConf, RxOffloads, TxOffloads};
use pmd_core::mbuf::{Mbuf, PktBatch, RX_LRO, TX_IPV4, TX_IP_CKSUM, TX_TCP_SEG};
use pmd_core::mempool::Mempool;
use pmd_testkit::{NetNs, RawSock};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Namespaces A (`va` 10.77.0.1) and B (`vb` 10.77.0.2), a veth pair between them.
fn two_ns(test: &str) -> Option<(NetNs, NetNs)> {
    let a = NetNs::new("afpva", test)?;
    let b = NetNs::new("afpvb", test)?;
    a.veth("va", "vb");
    a.ip(&["link", "set", "vb", "netns", b.name()]);
    for (ns, dev, addr) in [(&a, "va", "10.77.0.1/24"), (&b, "vb", "10.77.0.2/24")] {
        ns.ip(&["addr", "add", addr, "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
        ns.ip(&["link", "set", "lo", "up"]);
    }
    Some((a, b))
}

fn open_port(conf: PortConf) -> Port {
    let dev = DRIVER
        .probe(&"net_af_packet0,iface=va".parse().unwrap())
        .unwrap();
    let mut port = Port::new(0, "net_af_packet0".to_string(), dev);
    port.configure(&conf).unwrap();
    port
}

fn sum16(b: &[u8], mut acc: u32) -> u32 {
    for c in b.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// For an untagged Ethernet/IPv4/TCP frame: (source port, TCP payload), after checking
/// that the IPv4 and TCP checksums are valid.
fn tcp_checked(f: &[u8]) -> Option<(u16, &[u8])> {
    if f.len() < 54 || f[12..14] != [0x08, 0x00] || f[23] != 6 {
        return None;
    }
    let ihl = usize::from(f[14] & 15) * 4;
    let tot = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let ip = &f[14..14 + tot];
    assert_eq!(fold(sum16(&ip[..ihl], 0)), 0xffff, "IPv4 checksum");
    let tcp = &ip[ihl..];
    let mut ph = sum16(&ip[12..20], 6);
    ph += tcp.len() as u32;
    assert_eq!(fold(sum16(tcp, ph)), 0xffff, "TCP checksum");
    let doff = usize::from(tcp[12] >> 4) * 4;
    Some((u16::from_be_bytes([tcp[0], tcp[1]]), &tcp[doff..]))
}

/// A received packet: its offload flags, `tso_segsz` and bytes.
type Received = (u64, u16, Vec<u8>);
/// A port's xstats.
type Xstats = Vec<(String, u64)>;

const FLOW_BYTES: usize = 4 << 20;
const FLOW_PORT: u16 = 5301;

/// Runs a kernel TCP flow of [`FLOW_BYTES`] from B to A while polling the port on `va`
/// with `rx_offloads`; returns every packet received (as bytes) and the port's xstats.
fn rx_flow(test: &str, rx_offloads: RxOffloads) -> Option<(Vec<Received>, Xstats)> {
    let (a, b) = two_ns(test)?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let out = a.spawn(move || {
        let mut port = open_port(PortConf {
            rx_offloads,
            ..Default::default()
        });
        let pool = Mempool::create(&pmd_testkit::unique("afpv"), 4096, 0).unwrap();
        let mut rxq = port.setup_rx_queue(0, 0, &pool).unwrap();
        let _txq = port.setup_tx_queue(0, 0).unwrap();
        port.start().unwrap();
        // The kernel's end of the flow, in A (this thread's namespace).
        let l = TcpListener::bind(("10.77.0.1", FLOW_PORT)).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = vec![0u8; 1 << 16];
            let mut n = 0;
            while let Ok(k) = s.read(&mut buf) {
                if k == 0 {
                    break;
                }
                n += k;
            }
            d.store(true, Ordering::Release);
            n
        });
        ready_tx.send(()).unwrap();
        let mut pkts = Vec::new();
        let mut batch = PktBatch::new();
        let end = Instant::now() + Duration::from_secs(20);
        let mut quiet_since = None;
        while Instant::now() < end {
            if rxq.rx_burst(&mut batch) == 0 {
                if done.load(Ordering::Acquire) {
                    let q = *quiet_since.get_or_insert_with(Instant::now);
                    if q.elapsed() > Duration::from_millis(100) {
                        break;
                    }
                }
                std::thread::yield_now();
                continue;
            }
            quiet_since = None;
            for m in batch.iter() {
                let segsz = m.tx_offload().tso_segsz;
                pkts.push((m.ol_flags(), segsz, m.to_vec()));
            }
            batch.clear();
        }
        assert_eq!(server.join().unwrap(), FLOW_BYTES);
        let xs = port.xstats();
        port.stop().unwrap();
        port.close();
        (pkts, xs)
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    b.run(|| {
        let mut s = TcpStream::connect(("10.77.0.1", FLOW_PORT)).unwrap();
        let data = vec![0x5au8; FLOW_BYTES];
        s.write_all(&data).unwrap();
    });
    let r = out.join().unwrap();
    drop((a, b));
    Some(r)
}

fn xstat(xs: &[(String, u64)], name: &str) -> u64 {
    xs.iter().find(|(n, _)| n == name).map(|x| x.1).unwrap_or(0)
}

/// TCP payload bytes of the flow's data packets (client port to the server).
fn flow_payload(f: &[u8]) -> usize {
    match tcp_checked(f) {
        Some((src, p)) if src != FLOW_PORT => p.len(),
        _ => 0,
    }
}

/// With `TCP_LRO`, the kernel's super-frames arrive whole: `RX_LRO` chains longer than a
/// frame, with their MSS, and far fewer packets than MSS-sized frames would take.
#[test]
fn rx_gso_super_frames_kept_whole_with_lro() {
    let Some((pkts, xs)) = rx_flow(
        "rx_gso_super_frames_kept_whole_with_lro",
        RxOffloads::TCP_LRO,
    ) else {
        return;
    };
    let lro: Vec<_> = pkts.iter().filter(|p| p.0 & RX_LRO != 0).collect();
    assert!(!lro.is_empty(), "no super-frame; xstats {xs:?}");
    let mut payload = 0usize;
    for (_, segsz, f) in &lro {
        assert!(f.len() > 1514, "an RX_LRO packet of {} bytes", f.len());
        assert!((1..=1448).contains(segsz), "tso_segsz {segsz}");
        // The checksum field holds the pseudo-header sum (partial): payload read directly.
        let ihl = usize::from(f[14] & 15) * 4;
        let doff = usize::from(f[14 + ihl + 12] >> 4) * 4;
        payload += f.len() - 14 - ihl - doff;
    }
    for (_, _, f) in pkts.iter().filter(|p| p.0 & RX_LRO == 0) {
        payload += flow_payload(f);
    }
    // The port is a second listener beside the kernel's stack: on a busy machine its ring
    // can overflow while TCP still delivers everything. Every byte is seen, or the loss is
    // counted.
    let missed = xstat(&xs, "rx_missed_errors");
    assert!(
        payload >= FLOW_BYTES || missed > 0,
        "{payload} payload bytes seen and nothing counted as missed; xstats {xs:?}"
    );
    assert!(pkts.len() < FLOW_BYTES / 1448 / 2, "{} packets", pkts.len());
    assert_eq!(xstat(&xs, "vnet_hdr"), 1);
    assert_eq!(xstat(&xs, "rx_lro_packets"), lro.len() as u64);
    assert_eq!(
        xs.iter()
            .filter(|(n, v)| n.starts_with("rx_vnet_err") && *v > 0)
            .count(),
        0
    );
    println!("LRO: {} packets, {} super-frames", pkts.len(), lro.len());
}

/// Without `TCP_LRO` (vnet headers on for `TCP_CKSUM`), the super-frames are cut into
/// MSS-sized packets in software, every checksum valid.
#[test]
fn rx_gso_super_frames_segmented_without_lro() {
    let Some((pkts, xs)) = rx_flow(
        "rx_gso_super_frames_segmented_without_lro",
        RxOffloads::TCP_CKSUM,
    ) else {
        return;
    };
    let mut payload = 0usize;
    for (flags, _, f) in &pkts {
        assert_eq!(flags & RX_LRO, 0);
        assert!(f.len() <= 1514, "a packet of {} bytes", f.len());
        payload += flow_payload(f);
    }
    // Every byte is seen, or the loss is counted (as with LRO above).
    let missed = xstat(&xs, "rx_missed_errors");
    assert!(
        payload >= FLOW_BYTES || missed > 0,
        "{payload} payload bytes seen and nothing counted as missed; xstats {xs:?}"
    );
    assert!(xstat(&xs, "rx_gso_segmented") > 0, "{xs:?}");
    assert!(pkts.len() >= FLOW_BYTES / 1448 || missed > 0);
    println!(
        "no LRO: {} packets, {} super-frames segmented",
        pkts.len(),
        xstat(&xs, "rx_gso_segmented")
    );
}

/// A TCP super-frame with `TX_TCP_SEG` leaves as MSS-sized segments: the peer sees ten
/// valid packets whose payloads, in order, are the original.
#[test]
fn tx_tcp_seg_gives_valid_mss_segments_at_the_peer() {
    let Some((a, b)) = two_ns("tx_tcp_seg_gives_valid_mss_segments_at_the_peer") else {
        return;
    };
    // The kernel segments (and checksums) in software what va cannot offload.
    let st = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            a.name(),
            "ethtool",
            "-K",
            "va",
            "tso",
            "off",
            "tx",
            "off",
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running ethtool");
    assert!(st.success(), "ethtool -K va tso off tx off");
    let vb_mac = b.mac("vb");
    let peer = b.run(|| RawSock::open("vb", 0x0800, Duration::from_millis(200)));
    const PAYLOAD: usize = 10_000;
    const MSS: u16 = 1000;
    let payload: Vec<u8> = (0..PAYLOAD).map(|i| (i * 7 + i / 251) as u8).collect();
    let sent = payload.clone();
    a.run(move || {
        let payload = sent;
        let mut port = open_port(PortConf {
            tx_offloads: TxOffloads::TCP_TSO | TxOffloads::IPV4_CKSUM,
            ..Default::default()
        });
        let pool = Mempool::create(&pmd_testkit::unique("afpvt"), 256, 0).unwrap();
        let _rxq = port.setup_rx_queue(0, 0, &pool).unwrap();
        let mut txq = port.setup_tx_queue(0, 0).unwrap();
        port.start().unwrap();
        let mut f = Vec::new();
        f.extend_from_slice(&vb_mac);
        f.extend_from_slice(&port.mac_addr().0);
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = [
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 77, 0, 1, 10, 77, 0, 2,
        ];
        ip[2..4].copy_from_slice(&((40 + PAYLOAD) as u16).to_be_bytes());
        f.extend_from_slice(&ip);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&4000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5000u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x18; // ACK | PSH
        tcp[14..16].copy_from_slice(&1024u16.to_be_bytes());
        f.extend_from_slice(&tcp);
        f.extend_from_slice(&payload);
        let mut m = Mbuf::from_slice(&f, &pool).unwrap();
        assert!(m.nb_segs() > 1);
        m.set_ol_flags(TX_TCP_SEG | TX_IPV4 | TX_IP_CKSUM);
        m.set_tx_offload(pmd_testkit::frames::tcp4_tso(MSS));
        let mut batch = PktBatch::new();
        batch.push(m).map_err(|_| ()).unwrap();
        assert_eq!(txq.tx_prepare(&mut batch), 1);
        assert_eq!(txq.tx_burst(&mut batch), 1);
        let xs = port.xstats();
        assert_eq!(xstat(&xs, "tx_gso_packets"), 1, "{xs:?}");
        port.stop().unwrap();
        port.close();
    });
    let mut got = Vec::new();
    let mut segs = 0;
    while let Some(f) = peer.recv() {
        let Some((4000, p)) = tcp_checked(&f) else {
            continue;
        };
        let seq = u32::from_be_bytes([f[38], f[39], f[40], f[41]]);
        assert_eq!(seq as usize, 1000 + got.len(), "segments in order");
        assert!(p.len() <= usize::from(MSS));
        got.extend_from_slice(p);
        segs += 1;
    }
    assert_eq!(segs, PAYLOAD / usize::from(MSS), "segments at the peer");
    assert!(got == payload, "the payloads put together are the original");
    drop(peer);
}
