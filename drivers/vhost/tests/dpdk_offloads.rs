//! Offloads (`tso=1`) against DPDK's virtio-user front end in `dpdk-testpmd` (csum
//! forwarding with hardware TCP/UDP checksums and TSO at 1448 bytes, LRO and receive
//! checksums on): our TCP and UDP checksum requests reach DPDK (which forwards them back
//! with checksums it asks of us in turn) and arrive with valid, flagged checksums; our
//! 64 KiB TCP super-frames sent with `TX_TCP_SEG` arrive at DPDK whole (its LRO), come
//! back with DPDK's TSO request, and arrive whole (`RX_LRO`) on our port with `TCP_LRO`,
//! or as MSS-sized segments with their own sequence numbers, lengths and checksums
//! without it. Every buffer is back in the pool at the end. Needs root, hugepages and
//! `dpdk-testpmd`; otherwise it prints why and passes (and fails under
//! `PMD_REQUIRE_ALL=1`).

mod common;

use common::{
    check_segments, collect, dpdk_virtio_user, hugepages_reason, ip_csum_ok, l4_csum_at,
    l4_csum_ok, l4_frame, super_frame, wait_link, xstat, MSS, SUPER_PAYLOAD, TCP_HDRS,
};
use pmd_core::ethdev::{PortConf, RxOffloads, TxOffloads, TxQueueHandle};
use pmd_core::mbuf::{
    PktBatch, TxOffload, RX_L4_CKSUM_GOOD, RX_LRO, TX_IPV4, TX_TCP_CKSUM, TX_UDP_CKSUM,
};
use pmd_core::options::EalOptions;
use pmd_core::{Eal, Mbuf, Mempool};
use pmd_testkit::dpdk::peer_missing;
use std::time::{Duration, Instant};

/// testpmd's commands before forwarding: checksums by the port (IPv4 in software: virtio
/// has no such offload) and TSO at `MSS`.
const TESTPMD_COMMANDS: &str = "port stop 0\n\
    csum set ip sw 0\n\
    csum set tcp hw 0\n\
    csum set udp hw 0\n\
    tso set 1448 0\n\
    port start 0\n";

/// Prepares (as DPDK apps do) and sends `m` until the queue takes it.
fn send(tx: &mut TxQueueHandle, m: Mbuf) {
    let mut b = PktBatch::new();
    b.push(m).unwrap();
    assert_eq!(tx.tx_prepare(&mut b), 1, "tx_prepare refused the packet");
    let deadline = Instant::now() + common::PATIENCE;
    while !b.is_empty() {
        assert!(Instant::now() < deadline, "the tx queue took nothing");
        tx.tx_burst(&mut b);
    }
}

/// `f` as the csum engine sends it back: its MAC addresses those of `echo`.
fn readdressed(f: &[u8], echo: &[u8]) -> Vec<u8> {
    let mut w = f.to_vec();
    w[..12].copy_from_slice(&echo[..12]);
    w
}

fn dpdk_offloads(test: &str, lro: bool) {
    if !pmd_testkit::require(test, peer_missing().or_else(hugepages_reason)) {
        return;
    }
    let _serial = common::one_at_a_time();
    let dir = pmd_testkit::TempDir::new("pmd-vhost-dpdk-offl");
    let sock = dir.file("vhost.sock");
    let log = dir.file("testpmd.log");
    let cmds = dir.file("testpmd.cmds");
    std::fs::write(&cmds, TESTPMD_COMMANDS).unwrap();
    let opts = EalOptions::builder()
        .lcores("0")
        .no_pci(true)
        .file_prefix(&pmd_testkit::unique("vhdoffl"))
        .vdev(&format!("net_vhost0,iface={},tso=1", sock.display()))
        .build()
        .unwrap();
    let mut eal = Eal::init(opts, &[&pmd_vhost::DRIVER]).unwrap();
    let pool = Mempool::create("vhost-dpdk-offl", 8191, 0).unwrap();
    let idle = pool.stats().in_use;
    let mut rx_offloads = RxOffloads::SCATTER | RxOffloads::TCP_CKSUM | RxOffloads::UDP_CKSUM;
    if lro {
        rx_offloads |= RxOffloads::TCP_LRO;
    }
    let port = eal.port_mut(0).unwrap();
    port.configure(&PortConf {
        rx_queues: 1,
        tx_queues: 1,
        rx_offloads,
        tx_offloads: TxOffloads::MULTI_SEGS
            | TxOffloads::TCP_TSO
            | TxOffloads::TCP_CKSUM
            | TxOffloads::UDP_CKSUM,
        mtu: Some(9000),
    })
    .unwrap();
    let mut rx = port.setup_rx_queue(0, 0, &pool).unwrap();
    let mut tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    let app = [
        "--max-pkt-len=9600".to_string(),
        // SCATTER | TCP_LRO | TCP_CKSUM | UDP_CKSUM (virtio checks no IPv4 checksums)
        "--rx-offloads=0x201c".into(),
        // UDP_CKSUM | TCP_CKSUM | TCP_TSO | MULTI_SEGS
        "--tx-offloads=0x802c".into(),
        format!("--cmdline-file={}", cmds.display()),
    ];
    let tp = dpdk_virtio_user(&sock, &log, "", "csum", &app);
    wait_link(&eal, 0, true, 30, || tp.log());
    assert!(
        tp.wait_for("packet forwarding - ports=", Duration::from_secs(30)),
        "testpmd did not start forwarding:\n{}",
        tp.log()
    );

    // Checksums: TCP and UDP, garbage in the field.
    let mut want = Vec::new();
    for mark in 0..64u32 {
        let tcp = mark % 2 == 0;
        let f = l4_frame(tcp, mark, 18 + (mark as usize * 97) % 1400);
        let mut m = Mbuf::from_slice(&f, &pool).unwrap();
        let at = l4_csum_at(&f);
        m.data_mut()[at..at + 2].copy_from_slice(&[0xab, 0xcd]);
        m.set_ol_flags(TX_IPV4 | if tcp { TX_TCP_CKSUM } else { TX_UDP_CKSUM });
        m.set_tx_offload(TxOffload {
            l2_len: 14,
            l3_len: 20,
            l4_len: if tcp { 20 } else { 8 },
            ..Default::default()
        });
        send(&mut tx, m);
        want.push(f);
    }
    let got = collect(&mut rx, want.len(), common::PATIENCE, || {});
    assert_eq!(got.len(), want.len(), "checksum frames; log:\n{}", tp.log());
    for (i, (m, f)) in got.iter().zip(&want).enumerate() {
        let d = m.to_vec();
        let tcp = f[23] == 6;
        if tcp && m.ol_flags() & RX_LRO != 0 {
            // DPDK's TSO request on a frame shorter than a segment, kept whole by our
            // LRO: flagged, its TCP checksum field the pseudo-header sum.
            let at = l4_csum_at(f);
            assert!(d[..at] == readdressed(f, &d)[..at], "frame {i} headers");
            assert!(d[at + 2..] == f[at + 2..], "frame {i} payload");
        } else {
            assert!(l4_csum_ok(&d), "frame {i}: L4 checksum");
            assert!(ip_csum_ok(&d), "frame {i}: IPv4 checksum");
            assert!(d == readdressed(f, &d), "frame {i} bytes differ");
            assert_ne!(m.ol_flags() & RX_L4_CKSUM_GOOD, 0, "frame {i} flagged good");
        }
    }
    drop(got);

    // TSO: 64 KiB super-frames as mbuf chains.
    let mut sent = Vec::new();
    for mark in 1..=4u32 {
        let (f, m) = super_frame(mark, &pool);
        send(&mut tx, m);
        sent.push(f);
    }
    let per = if lro {
        1
    } else {
        SUPER_PAYLOAD.div_ceil(usize::from(MSS))
    };
    let got = collect(&mut rx, per * sent.len(), common::PATIENCE, || {});
    assert_eq!(
        got.len(),
        per * sent.len(),
        "TSO packets; xstats {:?}; log:\n{}",
        eal.ports()[0].xstats(),
        tp.log()
    );
    for (k, f) in sent.iter().enumerate() {
        let mine = &got[k * per..(k + 1) * per];
        let f = readdressed(f, &mine[0].to_vec());
        if lro {
            let m = &mine[0];
            assert_ne!(m.ol_flags() & RX_LRO, 0, "super-frame {k} RX_LRO");
            assert_eq!(m.tx_offload().tso_segsz, MSS, "super-frame {k} MSS");
            let d = m.to_vec();
            assert_eq!(d.len(), f.len(), "super-frame {k} length");
            assert_eq!(&d[..24], &f[..24], "super-frame {k} headers");
            assert_eq!(&d[26..50], &f[26..50], "super-frame {k} headers");
            assert!(d[TCP_HDRS..] == f[TCP_HDRS..], "super-frame {k} payload");
        } else {
            let segs: Vec<Vec<u8>> = mine.iter().map(Mbuf::to_vec).collect();
            check_segments(&format!("super-frame {k}"), &f, &segs, MSS.into());
        }
    }
    drop(got);
    assert_eq!(xstat(&eal, 0, "tx_offload_errors"), 0);
    assert_eq!(xstat(&eal, 0, "tx_gso_packets"), 4);
    let s = eal.ports()[0].stats();
    assert_eq!((s.ierrors, s.oerrors, s.rx_nombuf), (0, 0, 0), "{s:?}");
    eal.port_mut(0).unwrap().stop().unwrap();
    drop(rx);
    drop(tx);
    drop(tp);
    drop(eal);
    assert_eq!(pool.stats().in_use, idle, "buffers not returned");
}

#[test]
fn dpdk_virtio_user_checksums_and_tso_whole_with_lro() {
    dpdk_offloads("dpdk_virtio_user_checksums_and_tso_whole_with_lro", true);
}

#[test]
fn dpdk_virtio_user_checksums_and_tso_segmented_without_lro() {
    dpdk_offloads(
        "dpdk_virtio_user_checksums_and_tso_segmented_without_lro",
        false,
    );
}

/// DPDK's virtio-user without receive checksum offloads and LRO negotiates neither
/// GUEST_CSUM nor GUEST_TSO: our checksum requests are completed in software before the
/// frames reach it, our super-frames are cut into MSS-sized segments (each with its own
/// checksums), and testpmd's macswap brings them all back, in order and byte-exact.
#[test]
fn dpdk_virtio_user_without_guest_csum_gets_checksums_done() {
    let test = "dpdk_virtio_user_without_guest_csum_gets_checksums_done";
    if !pmd_testkit::require(test, peer_missing().or_else(hugepages_reason)) {
        return;
    }
    let _serial = common::one_at_a_time();
    let dir = pmd_testkit::TempDir::new("pmd-vhost-dpdk-nocsum");
    let sock = dir.file("vhost.sock");
    let log = dir.file("testpmd.log");
    let opts = EalOptions::builder()
        .lcores("0")
        .no_pci(true)
        .file_prefix(&pmd_testkit::unique("vhdnocsum"))
        .vdev(&format!("net_vhost0,iface={},tso=1", sock.display()))
        .build()
        .unwrap();
    let mut eal = Eal::init(opts, &[&pmd_vhost::DRIVER]).unwrap();
    let pool = Mempool::create("vhost-dpdk-nocsum", 4095, 0).unwrap();
    let idle = pool.stats().in_use;
    let port = eal.port_mut(0).unwrap();
    port.configure(&PortConf {
        rx_queues: 1,
        tx_queues: 1,
        rx_offloads: RxOffloads::SCATTER,
        tx_offloads: TxOffloads::MULTI_SEGS
            | TxOffloads::TCP_CKSUM
            | TxOffloads::UDP_CKSUM
            | TxOffloads::TCP_TSO,
        mtu: None,
    })
    .unwrap();
    let mut rx = port.setup_rx_queue(0, 0, &pool).unwrap();
    let mut tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    let tp = dpdk_virtio_user(&sock, &log, "", "macswap", &[]);
    wait_link(&eal, 0, true, 30, || tp.log());
    assert!(
        tp.wait_for("packet forwarding - ports=", Duration::from_secs(30)),
        "testpmd did not start forwarding:\n{}",
        tp.log()
    );
    let mut want = Vec::new();
    for mark in 0..64u32 {
        let tcp = mark % 2 == 0;
        let f = l4_frame(tcp, mark, 18 + (mark as usize * 97) % 1400);
        let mut m = Mbuf::from_slice(&f, &pool).unwrap();
        let at = l4_csum_at(&f);
        m.data_mut()[at..at + 2].copy_from_slice(&[0xab, 0xcd]);
        m.set_ol_flags(TX_IPV4 | if tcp { TX_TCP_CKSUM } else { TX_UDP_CKSUM });
        m.set_tx_offload(TxOffload {
            l2_len: 14,
            l3_len: 20,
            l4_len: if tcp { 20 } else { 8 },
            ..Default::default()
        });
        send(&mut tx, m);
        want.push(f);
    }
    let got = collect(&mut rx, want.len(), common::PATIENCE, || {});
    assert_eq!(got.len(), want.len(), "frames; log:\n{}", tp.log());
    for (i, (m, f)) in got.iter().zip(&want).enumerate() {
        let d = m.to_vec();
        assert!(l4_csum_ok(&d), "frame {i}: L4 checksum");
        assert!(d == common::swapped(f), "frame {i} bytes differ");
    }
    drop(got);
    // Two 64 KiB super-frames: 92 segments, more than DPDK's ring may have room for at
    // once (what does not fit waits in our queue; empty bursts send it).
    let mut whole = Vec::new();
    for mark in 1..=2u32 {
        let (f, m) = super_frame(mark, &pool);
        send(&mut tx, m);
        whole.push(f);
    }
    let per = SUPER_PAYLOAD.div_ceil(usize::from(MSS));
    let got = collect(&mut rx, 2 * per, common::PATIENCE, || {
        tx.tx_burst(&mut PktBatch::new());
    });
    assert_eq!(got.len(), 2 * per, "segments; log:\n{}", tp.log());
    let segs: Vec<Vec<u8>> = got.iter().map(|m| common::swapped(&m.to_vec())).collect();
    drop(got);
    for (k, f) in whole.iter().enumerate() {
        let mine = &segs[k * per..(k + 1) * per];
        check_segments(&format!("super-frame {k}"), f, mine, MSS.into());
    }
    assert_eq!(xstat(&eal, 0, "tx_sw_segmented"), 2);
    assert_eq!(xstat(&eal, 0, "tx_gso_packets"), 0);
    assert_eq!(xstat(&eal, 0, "tx_offload_errors"), 0);
    assert_eq!(
        xstat(&eal, 0, "tx_csum_packets"),
        0,
        "no partial checksum sent"
    );
    let s = eal.ports()[0].stats();
    assert_eq!((s.opackets, s.oerrors), (64 + 2 * per as u64, 0));
    eal.port_mut(0).unwrap().stop().unwrap();
    drop(rx);
    drop(tx);
    drop(tp);
    drop(eal);
    assert_eq!(pool.stats().in_use, idle, "buffers not returned");
}
