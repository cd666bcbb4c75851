//! Client mode (`client=1`): net_vhost connects to a front end that listens, DPDK's
//! (`net_virtio_user0,path=...,server=1` in `dpdk-testpmd`, macswap) or ours
//! (`server=1`). Connection attempts while nobody listens fail and are counted
//! (`ctrl_connect_failures`); the front end restarted, we connect again and traffic
//! resumes byte-exact; closing our port leaves the front end's socket alone. Every buffer
//! is back in the pool at the end. Needs root, hugepages (and `dpdk-testpmd` for the DPDK
//! test); otherwise it prints why and passes (and fails under `PMD_REQUIRE_ALL=1`).

mod common;

use common::{
    dpdk_virtio_user, hugepages_reason, swapped, transfer, transfer_expect, wait_link, xstat,
};
use pmd_core::devargs::VdevSpec;
use pmd_core::ethdev::{Driver, Port, PortConf, RxOffloads, TxOffloads};
use pmd_core::options::EalOptions;
use pmd_core::{Eal, Mempool};
use pmd_testkit::dpdk::peer_missing;
use std::time::{Duration, Instant};

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
    pmd_testkit::frames::frame_set([0x02, 0, 0, 0, 0, 0x04], 1500, 2)
}

/// Our port in client mode on `sock`, configured and started: the EAL, the pool (and
/// its idle count) and the queues.
fn client_port(
    sock: &std::path::Path,
    tag: &str,
) -> (
    Eal,
    Mempool,
    i64,
    pmd_core::ethdev::RxQueueHandle,
    pmd_core::ethdev::TxQueueHandle,
) {
    let opts = EalOptions::builder()
        .lcores("0")
        .no_pci(true)
        .file_prefix(&pmd_testkit::unique(tag))
        .vdev(&format!("net_vhost0,iface={},client=1", sock.display()))
        .build()
        .unwrap();
    let mut eal = Eal::init(opts, &[&pmd_vhost::DRIVER]).unwrap();
    let pool = Mempool::create(tag, 8191, 0).unwrap();
    let idle = pool.stats().in_use;
    let port = eal.port_mut(0).unwrap();
    port.configure(&conf()).unwrap();
    let rx = port.setup_rx_queue(0, 0, &pool).unwrap();
    let tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    (eal, pool, idle, rx, tx)
}

/// Waits until every connection made so far has ended (a connect may still succeed
/// while a dying front end's listening socket closes: it ends at once), returning how
/// many there were.
fn wait_all_ended(eal: &Eal) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (c, d) = (
            xstat(eal, 0, "ctrl_connects"),
            xstat(eal, 0, "ctrl_disconnects"),
        );
        if c == d && !eal.ports()[0].link().up {
            return c;
        }
        assert!(Instant::now() < deadline, "{c} connects, {d} disconnects");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `name` grew by at least `by` (connection attempts go on meanwhile).
fn wait_growth(eal: &Eal, name: &str, by: u64) {
    let from = xstat(eal, 0, name);
    let deadline = Instant::now() + Duration::from_secs(10);
    while xstat(eal, 0, name) < from + by {
        assert!(
            Instant::now() < deadline,
            "{name} stayed at {from}; {} connects, {} disconnects, link {}",
            xstat(eal, 0, "ctrl_connects"),
            xstat(eal, 0, "ctrl_disconnects"),
            eal.ports()[0].link().up
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn connects_to_dpdk_virtio_user_server_and_again_after_restart() {
    let test = "connects_to_dpdk_virtio_user_server_and_again_after_restart";
    if !pmd_testkit::require(test, peer_missing().or_else(hugepages_reason)) {
        return;
    }
    let _serial = common::one_at_a_time();
    let dir = pmd_testkit::TempDir::new("pmd-vhost-client");
    let sock = dir.file("virtio.sock");
    let log = dir.file("testpmd.log");
    let (mut eal, pool, idle, mut rx, mut tx) = client_port(&sock, "vhclient");
    // Nobody listens yet: the attempts are counted.
    wait_growth(&eal, "ctrl_connect_failures", 2);
    assert!(!eal.ports()[0].link().up);
    assert!(!sock.exists(), "a client creates no socket");
    let frames = frames();
    let echoes: Vec<Vec<u8>> = frames.iter().map(|f| swapped(f)).collect();
    let app = ["--max-pkt-len=9600".to_string(), "--enable-scatter".into()];
    let mut tp = None;
    let mut ended = 0;
    for round in 1..=2u64 {
        let t = tp.insert(dpdk_virtio_user(&sock, &log, ",server=1", "macswap", &app));
        wait_link(&eal, 0, true, 30, || t.log());
        assert!(
            t.wait_for("packet forwarding - ports=", Duration::from_secs(30)),
            "testpmd did not start forwarding:\n{}",
            t.log()
        );
        assert_eq!(xstat(&eal, 0, "ctrl_connects"), ended + 1);
        transfer_expect(
            &format!("round {round}"),
            &frames,
            &echoes,
            &pool,
            &mut tx,
            &mut rx,
            || {},
        );
        if round == 1 {
            t.kill9();
            ended = wait_all_ended(&eal);
            // Its socket is still there, nobody behind it: refused attempts, counted.
            wait_growth(&eal, "ctrl_connect_failures", 2);
            tp = None; // removes the socket
        }
    }
    assert_eq!(xstat(&eal, 0, "ctrl_refused"), 0);
    // Closing our port leaves the front end's socket alone.
    eal.port_mut(0).unwrap().close();
    assert!(sock.exists(), "the front end's socket left in place");
    drop(rx);
    drop(tx);
    drop(eal);
    drop(tp);
    assert_eq!(pool.stats().in_use, idle, "buffers not returned");
}

#[test]
fn connects_to_our_virtio_user_server_and_again_after_restart() {
    let test = "connects_to_our_virtio_user_server_and_again_after_restart";
    if !pmd_testkit::require(test, hugepages_reason()) {
        return;
    }
    let _serial = common::one_at_a_time();
    let dir = pmd_testkit::TempDir::new("pmd-vhost-client-ours");
    let sock = dir.file("virtio.sock");
    let (mut eal, pool, idle, mut rx, mut tx) = client_port(&sock, "vhclours");
    wait_growth(&eal, "ctrl_connect_failures", 1);
    let frames = frames();
    let mut ended = 0;
    let spec: VdevSpec = format!(
        "net_virtio_user0,path={},server=1,queue_size=256",
        sock.display()
    )
    .parse()
    .unwrap();
    for round in 1..=2u64 {
        // The front end probed outside the EAL's list, so that it can be closed and
        // probed again; its probe waits for our port to connect.
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
        assert_eq!(xstat(&eal, 0, "ctrl_connects"), ended + 1);
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
        if round == 2 {
            // Our port closed first: the front end's socket stays until it closes.
            eal.port_mut(0).unwrap().close();
            assert!(sock.exists(), "the front end's socket left in place");
        }
        fe.stop().unwrap();
        drop(fe_rx);
        drop(fe_tx);
        fe.close();
        drop(fe);
        assert!(!sock.exists(), "the front end removed its socket");
        if round == 1 {
            ended = wait_all_ended(&eal);
            wait_growth(&eal, "ctrl_connect_failures", 2);
        }
    }
    assert_eq!(xstat(&eal, 0, "ctrl_refused"), 0);
    drop(rx);
    drop(tx);
    drop(eal);
    assert_eq!(pool.stats().in_use, idle, "buffers not returned");
}
