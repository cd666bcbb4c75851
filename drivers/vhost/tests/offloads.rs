//! Offloads (`tso=1`) between our virtio-user front end and our net_vhost back end in one
//! process, both directions: TCP and UDP checksum requests (the checksum field holding
//! garbage) arrive with valid checksums, flagged `RX_L4_CKSUM_GOOD`; a 64 KiB TCP
//! super-frame sent with `TX_TCP_SEG` arrives whole (`RX_LRO`, its `tso_segsz` kept) on a
//! port with `TCP_LRO`, or as MSS-sized segments with their own sequence numbers,
//! lengths and checksums on a port without it (cut by net_vhost's receive, or, towards a
//! front end without GUEST_TSO, by its transmit). Every buffer is back in the pool at the
//! end. Needs root and hugepages; otherwise it prints why and passes (and fails under
//! `PMD_REQUIRE_ALL=1`).

mod common;

use common::{
    check_segments, collect, hugepages_reason, l4_csum_at, l4_csum_ok, l4_frame, super_frame,
    xstat, MSS, SUPER_PAYLOAD,
};
use pmd_core::ethdev::{PortConf, RxOffloads, RxQueueHandle, TxOffloads, TxQueueHandle};
use pmd_core::mbuf::{
    PktBatch, TxOffload, RX_L4_CKSUM_GOOD, RX_LRO, TX_IPV4, TX_TCP_CKSUM, TX_UDP_CKSUM,
};
use pmd_core::options::EalOptions;
use pmd_core::{Eal, Mbuf, Mempool};
use std::time::{Duration, Instant};

const VHOST: usize = 0;
const VIRTIO: usize = 1;

/// Sends `m` (its flags and lengths set), preparing it first as DPDK apps do
/// (`rte_eth_tx_prepare`), until the queue takes it.
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

/// Our net_vhost (`tso=1`, port 0) and our virtio-user (port 1, rings of `queue_size`)
/// in one EAL, both with checksum and TSO transmit offloads (and `TCP_LRO` on receive if
/// `lro`), started with their links up; `None` (after saying why) when this machine
/// cannot run them.
struct Pair {
    eal: Eal,
    pool: Mempool,
    rxs: Vec<RxQueueHandle>,
    txs: Vec<TxQueueHandle>,
    _dir: pmd_testkit::TempDir,
    _serial: std::sync::MutexGuard<'static, ()>,
}

fn pair(test: &str, lro: bool, queue_size: u16) -> Option<Pair> {
    if !pmd_testkit::require(test, hugepages_reason()) {
        return None;
    }
    let serial = common::one_at_a_time();
    let dir = pmd_testkit::TempDir::new("pmd-vhost-offl");
    let sock = dir.file("vhost.sock");
    let opts = EalOptions::builder()
        .lcores("0")
        .no_pci(true)
        .file_prefix(&pmd_testkit::unique("vhoffl"))
        .vdev(&format!("net_vhost0,iface={},tso=1", sock.display()))
        .vdev(&format!(
            "net_virtio_user0,path={},queue_size={queue_size}",
            sock.display()
        ))
        .build()
        .unwrap();
    let mut eal = Eal::init(opts, &[&pmd_vhost::DRIVER, &pmd_virtio::DRIVER]).unwrap();
    let pool = Mempool::create(&pmd_testkit::unique("vhost-offl"), 8191, 0).unwrap();
    let mut rx_offloads = RxOffloads::SCATTER | RxOffloads::TCP_CKSUM | RxOffloads::UDP_CKSUM;
    if lro {
        rx_offloads |= RxOffloads::TCP_LRO;
    }
    let conf = PortConf {
        rx_queues: 1,
        tx_queues: 1,
        rx_offloads,
        tx_offloads: TxOffloads::MULTI_SEGS
            | TxOffloads::TCP_TSO
            | TxOffloads::TCP_CKSUM
            | TxOffloads::UDP_CKSUM,
        mtu: Some(9000),
    };
    let mut rxs = Vec::new();
    let mut txs = Vec::new();
    for p in [VHOST, VIRTIO] {
        let port = eal.port_mut(p as u16).unwrap();
        port.configure(&conf)
            .unwrap_or_else(|e| panic!("port {p}: {e}"));
        rxs.push(port.setup_rx_queue(0, 0, &pool).unwrap());
        txs.push(port.setup_tx_queue(0, 0).unwrap());
        port.start().unwrap();
    }
    for p in [VHOST, VIRTIO] {
        let link = eal.ports()[p].wait_link_up(Duration::from_secs(10));
        assert!(link.up, "port {p}: link down");
    }
    Some(Pair {
        eal,
        pool,
        rxs,
        txs,
        _dir: dir,
        _serial: serial,
    })
}

fn offloads(test: &str, lro: bool) {
    let Some(Pair {
        mut eal,
        pool,
        mut rxs,
        mut txs,
        _dir,
        _serial,
    }) = pair(test, lro, 256)
    else {
        return;
    };
    for (from, to) in [(VIRTIO, VHOST), (VHOST, VIRTIO)] {
        let what = format!("port {from} -> {to}");
        // Checksums: TCP and UDP, 18..1400 bytes of payload, garbage in the field.
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
            send(&mut txs[from], m);
            want.push(f);
        }
        let got = collect(&mut rxs[to], want.len(), common::PATIENCE, || {});
        assert_eq!(got.len(), want.len(), "{what}: checksum frames");
        for (i, (m, f)) in got.iter().zip(&want).enumerate() {
            let d = m.to_vec();
            assert!(l4_csum_ok(&d), "{what}: frame {i}: L4 checksum");
            assert!(d == *f, "{what}: frame {i} bytes differ");
            assert_ne!(
                m.ol_flags() & RX_L4_CKSUM_GOOD,
                0,
                "{what}: frame {i} flagged good"
            );
        }
        drop(got);

        // TSO: 64 KiB super-frames as mbuf chains. Our virtio-user asks for GUEST_TSO
        // only with TCP_LRO; without it net_vhost cuts them in software.
        const N: u32 = 4;
        let mut sent = Vec::new();
        for mark in 1..=N {
            let (f, m) = super_frame(mark, &pool);
            assert!(m.nb_segs() > 1);
            send(&mut txs[from], m);
            sent.push(f);
        }
        let per = if lro {
            1
        } else {
            SUPER_PAYLOAD.div_ceil(usize::from(MSS))
        };
        let got = collect(&mut rxs[to], per * sent.len(), common::PATIENCE, || {});
        assert_eq!(
            got.len(),
            per * sent.len(),
            "{what}: TSO packets; xstats {:?} / {:?}",
            eal.ports()[from].xstats(),
            eal.ports()[to].xstats()
        );
        for (k, f) in sent.iter().enumerate() {
            let mine = &got[k * per..(k + 1) * per];
            if lro {
                let m = &mine[0];
                assert_ne!(m.ol_flags() & RX_LRO, 0, "{what}: super-frame {k} RX_LRO");
                assert_eq!(m.tx_offload().tso_segsz, MSS, "{what}: super-frame {k} MSS");
                let d = m.to_vec();
                assert_eq!(d.len(), f.len(), "{what}: super-frame {k} length");
                // Whole, except the checksum fields the offload path rewrites (the TCP
                // one holds the pseudo-header sum for whoever segments it).
                assert_eq!(&d[..24], &f[..24], "{what}: super-frame {k} headers");
                assert_eq!(&d[26..50], &f[26..50], "{what}: super-frame {k} headers");
                assert!(d[52..] == f[52..], "{what}: super-frame {k} payload");
            } else {
                let segs: Vec<Vec<u8>> = mine.iter().map(Mbuf::to_vec).collect();
                check_segments(&format!("{what}: super-frame {k}"), f, &segs, MSS.into());
                if to == VHOST {
                    assert!(mine.iter().all(|m| m.ol_flags() & RX_L4_CKSUM_GOOD != 0));
                }
            }
        }
    }
    assert_eq!(xstat(&eal, VHOST, "tx_offload_errors"), 0);
    assert_eq!(
        xstat(&eal, VHOST, "tx_sw_segmented"),
        if lro { 0 } else { 4 },
        "super-frames to a front end without GUEST_TSO"
    );
    assert_eq!(xstat(&eal, VHOST, "rx_q0_too_long"), 0);
    assert_eq!(
        xstat(&eal, VHOST, "tx_gso_packets"),
        if lro { 4 } else { 0 }
    );
    assert_eq!(xstat(&eal, VHOST, "tx_csum_packets"), 64);
    let (whole, cut) = (
        xstat(&eal, VHOST, "rx_lro_packets"),
        xstat(&eal, VHOST, "rx_gso_segmented"),
    );
    assert_eq!((whole, cut), if lro { (4, 0) } else { (0, 4) });
    for p in [VHOST, VIRTIO] {
        let s = eal.ports()[p].stats();
        assert_eq!(
            (s.ierrors, s.oerrors, s.rx_nombuf),
            (0, 0, 0),
            "port {p}: {s:?}"
        );
    }
    for p in [VIRTIO, VHOST] {
        eal.port_mut(p as u16).unwrap().stop().unwrap();
    }
    drop(rxs);
    drop(txs);
    drop(eal);
    assert_eq!(pool.stats().in_use, 0, "buffers not returned");
}

#[test]
fn checksums_and_tso_both_ways_whole_with_lro() {
    offloads("checksums_and_tso_both_ways_whole_with_lro", true);
}

#[test]
fn checksums_and_tso_both_ways_segmented_without_lro() {
    offloads("checksums_and_tso_both_ways_segmented_without_lro", false);
}

/// Towards a front end without GUEST_TSO whose ring has room for fewer segments than a
/// burst of super-frames makes: the burst is taken whole, the segments that did not fit
/// wait in the queue and go first when the ring has room again, with the next burst
/// (here an empty one). Nothing is lost, reordered or counted twice.
#[test]
fn tso_segments_wait_for_room_in_the_guest_ring() {
    let test = "tso_segments_wait_for_room_in_the_guest_ring";
    // 64 receive buffers in the front end's ring; two super-frames make 92 segments.
    let Some(Pair {
        eal,
        pool,
        mut rxs,
        mut txs,
        _dir,
        _serial,
    }) = pair(test, false, 64)
    else {
        return;
    };
    let per = SUPER_PAYLOAD.div_ceil(usize::from(MSS));
    let (f1, m1) = super_frame(1, &pool);
    let (f2, m2) = super_frame(2, &pool);
    let mut b = PktBatch::new();
    b.push(m1).unwrap();
    b.push(m2).unwrap();
    assert_eq!(txs[VHOST].tx_prepare(&mut b), 2);
    assert_eq!(txs[VHOST].tx_burst(&mut b), 2, "both super-frames taken");
    let first = collect(&mut rxs[VIRTIO], 2 * per, Duration::from_millis(500), || {});
    assert!(
        first.len() < 2 * per,
        "the ring held {} of {} segments",
        first.len(),
        2 * per
    );
    let mut got: Vec<Vec<u8>> = first.iter().map(Mbuf::to_vec).collect();
    drop(first);
    // The front end has posted its buffers again; an empty burst sends what waits.
    let mut empty = PktBatch::new();
    assert_eq!(txs[VHOST].tx_burst(&mut empty), 0);
    let rest = collect(
        &mut rxs[VIRTIO],
        2 * per - got.len(),
        common::PATIENCE,
        || {
            let mut empty = PktBatch::new();
            txs[VHOST].tx_burst(&mut empty);
        },
    );
    got.extend(rest.iter().map(Mbuf::to_vec));
    drop(rest);
    assert_eq!(got.len(), 2 * per);
    check_segments("super-frame 1", &f1, &got[..per], MSS.into());
    check_segments("super-frame 2", &f2, &got[per..], MSS.into());
    assert_eq!(xstat(&eal, VHOST, "tx_sw_segmented"), 2);
    assert_eq!(xstat(&eal, VHOST, "tx_offload_errors"), 0);
    let s = eal.ports()[VHOST].stats();
    assert_eq!((s.opackets, s.oerrors), (2 * per as u64, 0));
    let mut eal = eal;
    for p in [VIRTIO, VHOST] {
        eal.port_mut(p as u16).unwrap().stop().unwrap();
    }
    drop((rxs, txs, eal));
    assert_eq!(pool.stats().in_use, 0, "buffers not returned");
}
