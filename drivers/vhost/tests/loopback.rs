//! Our virtio-user front end (`net_virtio_user0`) against our vhost-user back end
//! (`net_vhost0`) in one process: the full frame set of a 9000-byte MTU (60..=9014
//! bytes, 802.1Q and QinQ tagged, broadcast, multicast) both ways over every queue pair,
//! byte-exact and in order, with one and two queue pairs, split and packed rings
//! (`packed_vq=1`); both ports' counters match
//! what was sent, nothing counted as an error, and every buffer is back in the pool when
//! the ports are closed. Needs root and hugepages; otherwise it prints why and passes
//! (and fails under `PMD_REQUIRE_ALL=1`).

mod common;

use common::{hugepages_reason, transfer, xstat};
use pmd_core::ethdev::{PortConf, RxOffloads, TxOffloads};
use pmd_core::options::EalOptions;
use pmd_core::{Eal, Mempool};
use std::time::Duration;

const VHOST: usize = 0;
const VIRTIO: usize = 1;

/// Runs the transfer with `queues` pairs, on packed rings if `packed`.
fn loopback(test: &str, queues: u16, packed: bool) {
    if !pmd_testkit::require(test, hugepages_reason()) {
        return;
    }
    let _serial = common::one_at_a_time();
    let dir = pmd_testkit::TempDir::new("pmd-vhost-loop");
    let sock = dir.file("vhost.sock");
    let opts = EalOptions::builder()
        .lcores("0")
        .no_pci(true)
        .file_prefix(&pmd_testkit::unique("vhloop"))
        .vdev(&format!(
            "net_vhost0,iface={},queues={queues}",
            sock.display()
        ))
        .vdev(&format!(
            "net_virtio_user0,path={},queues={queues},queue_size=256,packed_vq={}",
            sock.display(),
            u8::from(packed)
        ))
        .build()
        .unwrap();
    let mut eal = Eal::init(opts, &[&pmd_vhost::DRIVER, &pmd_virtio::DRIVER]).unwrap();
    let pool = Mempool::create("vhost-loop", 8191, 0).unwrap();
    let idle = pool.stats().in_use;
    let conf = PortConf {
        rx_queues: queues,
        tx_queues: queues,
        rx_offloads: RxOffloads::SCATTER,
        tx_offloads: TxOffloads::MULTI_SEGS,
        mtu: Some(9000),
    };
    let mut rxs = vec![vec![], vec![]];
    let mut txs = vec![vec![], vec![]];
    for p in [VHOST, VIRTIO] {
        let port = eal.port_mut(p as u16).unwrap();
        port.configure(&conf).unwrap();
        for q in 0..queues {
            rxs[p].push(port.setup_rx_queue(q, 0, &pool).unwrap());
            txs[p].push(port.setup_tx_queue(q, 0).unwrap());
        }
        port.start().unwrap();
    }
    for p in [VHOST, VIRTIO] {
        let link = eal
            .port_mut(p as u16)
            .unwrap()
            .wait_link_up(Duration::from_secs(10));
        assert!(link.up, "port {p}: link down");
    }
    // Both sides poll empty rings first (a front end that polls before traffic comes).
    let mut empty = pmd_core::mbuf::PktBatch::new();
    for _ in 0..100 {
        for p in [VHOST, VIRTIO] {
            for rx in rxs[p].iter_mut() {
                assert_eq!(rx.rx_burst(&mut empty), 0);
            }
        }
    }
    let frames = pmd_testkit::frames::frame_set([0x02, 0, 0, 0, 0, 0x01], 9000, 3);
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    for q in 0..usize::from(queues) {
        for (from, to) in [(VIRTIO, VHOST), (VHOST, VIRTIO)] {
            let (tx, rx) = (&mut txs[from][q], &mut rxs[to][q]);
            transfer(
                &format!("port {from} -> {to}, queue {q}"),
                &frames,
                &pool,
                tx,
                rx,
                || {},
            );
        }
    }
    let n = frames.len() as u64 * u64::from(queues);
    let b = bytes * u64::from(queues);
    for p in [VHOST, VIRTIO] {
        let s = eal.ports()[p].stats();
        assert_eq!((s.ipackets, s.opackets), (n, n), "port {p}: {s:?}");
        assert_eq!((s.ibytes, s.obytes), (b, b), "port {p}: {s:?}");
        assert_eq!(
            (s.ierrors, s.oerrors, s.imissed, s.rx_nombuf),
            (0, 0, 0, 0),
            "port {p}: {s:?}"
        );
    }
    for q in 0..queues {
        for name in ["bad_ring", "bad_addr", "bad_chain", "too_long"] {
            assert_eq!(xstat(&eal, VHOST, &format!("rx_q{q}_{name}")), 0);
            assert_eq!(xstat(&eal, VHOST, &format!("tx_q{q}_{name}")), 0);
        }
    }
    let features = xstat(&eal, VIRTIO, "features");
    let packed_negotiated = features & pmd_core::vnet::features::VIRTIO_F_RING_PACKED != 0;
    assert_eq!(
        packed_negotiated, packed,
        "ring layout: features {features:#x}"
    );
    assert_eq!(xstat(&eal, VHOST, "ctrl_connects"), 1);
    assert_eq!(xstat(&eal, VHOST, "ctrl_refused"), 0);
    for p in [VIRTIO, VHOST] {
        eal.port_mut(p as u16).unwrap().stop().unwrap();
    }
    drop(rxs);
    drop(txs);
    drop(eal);
    assert_eq!(pool.stats().in_use, idle, "buffers not returned");
    assert!(!sock.exists(), "socket removed when the port closed");
}

#[test]
fn virtio_user_to_vhost_and_back_one_queue_pair() {
    loopback("virtio_user_to_vhost_and_back_one_queue_pair", 1, false);
}

#[test]
fn virtio_user_to_vhost_and_back_two_queue_pairs() {
    loopback("virtio_user_to_vhost_and_back_two_queue_pairs", 2, false);
}

#[test]
fn virtio_user_to_vhost_and_back_packed_one_queue_pair() {
    loopback(
        "virtio_user_to_vhost_and_back_packed_one_queue_pair",
        1,
        true,
    );
}

#[test]
fn virtio_user_to_vhost_and_back_packed_two_queue_pairs() {
    loopback(
        "virtio_user_to_vhost_and_back_packed_two_queue_pairs",
        2,
        true,
    );
}
