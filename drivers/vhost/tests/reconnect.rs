//! Front ends that go away and come back, server mode (we listen). DPDK's virtio-user in
//! `dpdk-testpmd` (macswap) is killed with SIGKILL while frames flow: our link goes down,
//! the tx queue gives packets back and counts them in `tx_q0_link_down`, the next testpmd
//! connects and the round trip is byte-exact again. Our own virtio-user port closed and
//! probed again: the same. Every buffer is back in the pool at the end. Needs root,
//! hugepages (and `dpdk-testpmd` for the DPDK test); otherwise it prints why and passes
//! (and fails under `PMD_REQUIRE_ALL=1`).

mod common;

use common::{
    dpdk_virtio_user, hugepages_reason, pump, swapped, transfer, transfer_expect, wait_link,
    wait_xstat, xstat,
};
use pmd_core::devargs::VdevSpec;
use pmd_core::ethdev::{Driver, Port, PortConf, RxOffloads, TxOffloads};
use pmd_core::mbuf::PktBatch;
use pmd_core::options::EalOptions;
use pmd_core::{Eal, Mbuf, Mempool};
use pmd_testkit::dpdk::peer_missing;
use std::time::Duration;

fn conf() -> PortConf {
    PortConf {
        rx_queues: 1,
        tx_queues: 1,
        rx_offloads: RxOffloads::SCATTER,
        tx_offloads: TxOffloads::MULTI_SEGS,
        mtu: Some(9000),
    }
}

/// Frames of 60..=1514 bytes for the round trips.
fn frames() -> Vec<Vec<u8>> {
    pmd_testkit::frames::frame_set([0x02, 0, 0, 0, 0, 0x03], 1500, 2)
}

/// A burst sent while no front end runs the ring is given back whole and counted.
fn tx_while_down(eal: &Eal, pool: &Mempool, tx: &mut pmd_core::ethdev::TxQueueHandle) {
    let before = xstat(eal, 0, "tx_q0_link_down");
    let mut b = PktBatch::new();
    for _ in 0..16 {
        b.push(Mbuf::from_slice(&[0xee; 64], pool).unwrap())
            .unwrap();
    }
    assert_eq!(tx.tx_burst(&mut b), 0, "nothing sent without a front end");
    assert_eq!(b.len(), 16, "every packet given back");
    assert_eq!(xstat(eal, 0, "tx_q0_link_down"), before + 16);
}

#[test]
fn dpdk_virtio_user_killed_mid_traffic_then_restarted() {
    let test = "dpdk_virtio_user_killed_mid_traffic_then_restarted";
    if !pmd_testkit::require(test, peer_missing().or_else(hugepages_reason)) {
        return;
    }
    let _serial = common::one_at_a_time();
    let dir = pmd_testkit::TempDir::new("pmd-vhost-recon");
    let sock = dir.file("vhost.sock");
    let log = dir.file("testpmd.log");
    let opts = EalOptions::builder()
        .lcores("0")
        .no_pci(true)
        .file_prefix(&pmd_testkit::unique("vhrecon"))
        .vdev(&format!("net_vhost0,iface={}", sock.display()))
        .build()
        .unwrap();
    let mut eal = Eal::init(opts, &[&pmd_vhost::DRIVER]).unwrap();
    let pool = Mempool::create("vhost-recon", 8191, 0).unwrap();
    let idle = pool.stats().in_use;
    let port = eal.port_mut(0).unwrap();
    port.configure(&conf()).unwrap();
    let mut rx = port.setup_rx_queue(0, 0, &pool).unwrap();
    let mut tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    let frames = frames();
    let echoes: Vec<Vec<u8>> = frames.iter().map(|f| swapped(f)).collect();
    let app = ["--max-pkt-len=9600".to_string(), "--enable-scatter".into()];
    for round in 1..=2u64 {
        let mut tp = dpdk_virtio_user(&sock, &log, "", "macswap", &app);
        wait_link(&eal, 0, true, 30, || tp.log());
        assert!(
            tp.wait_for("packet forwarding - ports=", Duration::from_secs(30)),
            "testpmd did not start forwarding:\n{}",
            tp.log()
        );
        transfer_expect(
            &format!("round {round}"),
            &frames,
            &echoes,
            &pool,
            &mut tx,
            &mut rx,
            || {},
        );
        assert_eq!(xstat(&eal, 0, "ctrl_connects"), round);
        // Frames in flight both ways when it dies.
        pump(
            &format!("round {round}: echoes"),
            &frames[3],
            &pool,
            &mut tx,
            &mut rx,
            |n| n >= 200,
        );
        tp.kill9();
        let mut gone = false;
        pump(
            &format!("round {round}: link down after SIGKILL"),
            &frames[3],
            &pool,
            &mut tx,
            &mut rx,
            |_| {
                gone = !eal.ports()[0].link().up;
                gone
            },
        );
        wait_xstat(&eal, 0, "ctrl_disconnects", round, 10);
        assert_eq!(xstat(&eal, 0, "ctrl_refused"), 0);
        tx_while_down(&eal, &pool, &mut tx);
        drop(tp);
    }
    let s = eal.ports()[0].stats();
    assert_eq!((s.ierrors, s.rx_nombuf), (0, 0), "{s:?}");
    for name in ["bad_ring", "bad_addr", "bad_chain", "too_long"] {
        assert_eq!(xstat(&eal, 0, &format!("rx_q0_{name}")), 0, "{name}");
        assert_eq!(xstat(&eal, 0, &format!("tx_q0_{name}")), 0, "{name}");
    }
    eal.port_mut(0).unwrap().stop().unwrap();
    drop(rx);
    drop(tx);
    drop(eal);
    assert_eq!(pool.stats().in_use, idle, "buffers not returned");
}

#[test]
fn our_virtio_user_closed_then_probed_again() {
    let test = "our_virtio_user_closed_then_probed_again";
    if !pmd_testkit::require(test, hugepages_reason()) {
        return;
    }
    let _serial = common::one_at_a_time();
    let dir = pmd_testkit::TempDir::new("pmd-vhost-reopen");
    let sock = dir.file("vhost.sock");
    let front_end = format!("net_virtio_user0,path={},queue_size=256", sock.display());
    let opts = EalOptions::builder()
        .lcores("0")
        .no_pci(true)
        .file_prefix(&pmd_testkit::unique("vhreopen"))
        .vdev(&format!("net_vhost0,iface={}", sock.display()))
        .build()
        .unwrap();
    let mut eal = Eal::init(opts, &[&pmd_vhost::DRIVER]).unwrap();
    let pool = Mempool::create("vhost-reopen", 8191, 0).unwrap();
    let idle = pool.stats().in_use;
    let port = eal.port_mut(0).unwrap();
    port.configure(&conf()).unwrap();
    let mut rx = port.setup_rx_queue(0, 0, &pool).unwrap();
    let mut tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    let frames = frames();
    for round in 1..=3u64 {
        // The front end probed outside the EAL's list, so that it can be closed and
        // probed again.
        let spec: VdevSpec = front_end.parse().unwrap();
        let mut fe = Port::new(
            1,
            "net_virtio_user0",
            pmd_virtio::DRIVER.probe(&spec).unwrap(),
        );
        fe.configure(&conf()).unwrap();
        let mut fe_rx = fe.setup_rx_queue(0, 0, &pool).unwrap();
        let mut fe_tx = fe.setup_tx_queue(0, 0).unwrap();
        fe.start().unwrap();
        assert!(
            fe.wait_link_up(Duration::from_secs(10)).up,
            "front end link"
        );
        wait_link(&eal, 0, true, 10, String::new);
        assert_eq!(xstat(&eal, 0, "ctrl_connects"), round);
        transfer(
            &format!("round {round}: to us"),
            &frames,
            &pool,
            &mut fe_tx,
            &mut rx,
            || {},
        );
        transfer(
            &format!("round {round}: to it"),
            &frames,
            &pool,
            &mut tx,
            &mut fe_rx,
            || {},
        );
        // Closed with frames in its rings both ways.
        pump(
            &format!("round {round}: echoes"),
            &frames[3],
            &pool,
            &mut tx,
            &mut fe_rx,
            |n| n >= 100,
        );
        let mut b = PktBatch::new();
        for f in &frames[..32] {
            b.push(Mbuf::from_slice(f, &pool).unwrap()).unwrap();
        }
        fe_tx.tx_burst(&mut b);
        drop(b);
        fe.stop().unwrap();
        drop(fe_rx);
        drop(fe_tx);
        fe.close();
        drop(fe);
        wait_link(&eal, 0, false, 10, String::new);
        // The link goes down at the front end's GET_VRING_BASE, the connection ends after.
        wait_xstat(&eal, 0, "ctrl_disconnects", round, 10);
        tx_while_down(&eal, &pool, &mut tx);
        // What the closed front end had sent us is ours now, or was dropped with it.
        let mut inb = PktBatch::new();
        rx.rx_burst(&mut inb);
    }
    assert_eq!(xstat(&eal, 0, "ctrl_refused"), 0);
    eal.port_mut(0).unwrap().stop().unwrap();
    drop(rx);
    drop(tx);
    drop(eal);
    assert_eq!(pool.stats().in_use, idle, "buffers not returned");
}
