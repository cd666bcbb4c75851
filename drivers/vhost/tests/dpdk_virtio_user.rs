//! DPDK's virtio-user front end (`dpdk-testpmd --vdev net_virtio_user0,path=...`, macswap)
//! against our vhost-user back end: the full frame set of a 9000-byte MTU (60..=9014
//! bytes, tagged and untagged) goes from our port to DPDK's and back over every queue
//! pair, each echo byte-exact with its MACs swapped and in order, with one and two queue
//! pairs, split and packed rings (`packed_vq=1`); our counters match, no error is counted, every buffer comes back. Needs root,
//! hugepages and `dpdk-testpmd`; otherwise it prints why and passes (and fails under
//! `PMD_REQUIRE_ALL=1`).

mod common;

use common::{hugepages_reason, swapped, transfer_expect, xstat};
use pmd_core::ethdev::{PortConf, RxOffloads, TxOffloads};
use pmd_core::options::EalOptions;
use pmd_core::{Eal, Mempool};
use pmd_testkit::dpdk::{peer_missing, Testpmd, TestpmdConf};
use std::time::Duration;

/// Runs the round trip with `queues` pairs, on packed rings if `packed`.
fn dpdk_front_end(test: &str, queues: u16, packed: bool) {
    if !pmd_testkit::require(test, peer_missing().or_else(hugepages_reason)) {
        return;
    }
    let _serial = common::one_at_a_time();
    let dir = pmd_testkit::TempDir::new("pmd-vhost-dpdk");
    let sock = dir.file("vhost.sock");
    let opts = EalOptions::builder()
        .lcores("0")
        .no_pci(true)
        .file_prefix(&pmd_testkit::unique("vhdpdk"))
        .vdev(&format!(
            "net_vhost0,iface={},queues={queues}",
            sock.display()
        ))
        .build()
        .unwrap();
    let mut eal = Eal::init(opts, &[&pmd_vhost::DRIVER]).unwrap();
    let pool = Mempool::create("vhost-dpdk", 8191, 0).unwrap();
    let idle = pool.stats().in_use;
    let port = eal.port_mut(0).unwrap();
    port.configure(&PortConf {
        rx_queues: queues,
        tx_queues: queues,
        rx_offloads: RxOffloads::SCATTER,
        tx_offloads: TxOffloads::MULTI_SEGS,
        mtu: Some(9000),
    })
    .unwrap();
    let mut rxs: Vec<_> = (0..queues)
        .map(|q| port.setup_rx_queue(q, 0, &pool).unwrap())
        .collect();
    let mut txs: Vec<_> = (0..queues)
        .map(|q| port.setup_tx_queue(q, 0).unwrap())
        .collect();
    port.start().unwrap();

    let log = dir.file("testpmd.log");
    let q = queues.to_string();
    let tp = Testpmd::spawn(&TestpmdConf {
        prefix: &pmd_testkit::unique("vhdpdkpeer"),
        log: Some(&log),
        // One memory region per hugepage file otherwise, more than vhost-user's 8.
        eal: &["--single-file-segments".into()],
        vdevs: &[format!(
            "net_virtio_user0,path={},queues={queues},queue_size=1024,packed_vq={}",
            sock.display(),
            u8::from(packed)
        )],
        app: &[
            "--forward-mode=macswap".into(),
            format!("--rxq={q}"),
            format!("--txq={q}"),
            "--nb-cores=1".into(),
            "--max-pkt-len=9600".into(),
            "--enable-scatter".into(),
            "--no-flush-rx".into(),
            "--stats-period".into(),
            "1".into(),
        ],
        ..Default::default()
    });
    let link = eal
        .port_mut(0)
        .unwrap()
        .wait_link_up(Duration::from_secs(30));
    assert!(
        link.up,
        "DPDK's virtio-user did not come up; log:\n{}",
        tp.log()
    );
    // Our link is up once DPDK's device runs its rings, which it does while testpmd still
    // configures the port; its start then drops what is already in the receive ring
    // (virtio's `virtqueue_rxvq_flush`). Traffic starts once testpmd forwards.
    assert!(
        tp.wait_for("packet forwarding - ports=", Duration::from_secs(30)),
        "testpmd did not start forwarding"
    );

    let frames = pmd_testkit::frames::frame_set([0x02, 0, 0, 0, 0, 0x02], 9000, 3);
    let echoes: Vec<Vec<u8>> = frames.iter().map(|f| swapped(f)).collect();
    for q in 0..usize::from(queues) {
        transfer_expect(
            &format!("queue {q} round trip"),
            &frames,
            &echoes,
            &pool,
            &mut txs[q],
            &mut rxs[q],
            || {},
        );
    }
    let n = frames.len() as u64 * u64::from(queues);
    let bytes = frames.iter().map(|f| f.len() as u64).sum::<u64>() * u64::from(queues);
    let s = eal.ports()[0].stats();
    assert_eq!(
        (s.ipackets, s.opackets, s.ibytes, s.obytes),
        (n, n, bytes, bytes),
        "{s:?}"
    );
    assert_eq!(
        (s.ierrors, s.oerrors, s.imissed, s.rx_nombuf),
        (0, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!(xstat(&eal, 0, "ctrl_refused"), 0);
    let features = xstat(&eal, 0, "features");
    assert_eq!(
        features & (1 << 34) != 0,
        packed,
        "RING_PACKED negotiated iff packed_vq=1"
    );
    // DPDK's virtio-user takes IN_ORDER, so on packed rings our receive bursts went
    // back to it as one used descriptor each, and it freed every buffer by them.
    assert_ne!(features & (1 << 35), 0, "IN_ORDER negotiated");
    drop(tp);
    // The front end went away: the link follows, and the rings are stopped.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while eal.ports()[0].link().up {
        assert!(std::time::Instant::now() < deadline, "link still up");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(xstat(&eal, 0, "ctrl_disconnects"), 1);
    eal.port_mut(0).unwrap().stop().unwrap();
    drop(rxs);
    drop(txs);
    drop(eal);
    assert_eq!(pool.stats().in_use, idle, "buffers not returned");
}

#[test]
fn dpdk_virtio_user_round_trip_one_queue_pair() {
    dpdk_front_end("dpdk_virtio_user_round_trip_one_queue_pair", 1, false);
}

#[test]
fn dpdk_virtio_user_round_trip_two_queue_pairs() {
    dpdk_front_end("dpdk_virtio_user_round_trip_two_queue_pairs", 2, false);
}

#[test]
fn dpdk_virtio_user_round_trip_packed_one_queue_pair() {
    dpdk_front_end("dpdk_virtio_user_round_trip_packed_one_queue_pair", 1, true);
}

#[test]
fn dpdk_virtio_user_round_trip_packed_two_queue_pairs() {
    dpdk_front_end(
        "dpdk_virtio_user_round_trip_packed_two_queue_pairs",
        2,
        true,
    );
}
