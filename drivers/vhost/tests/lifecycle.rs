//! Port stop/start and close while a front end (our virtio-user) is connected: nothing
//! hangs, no descriptor leaks (the process's open fds come back to the count before each
//! connection), the socket file is removed at close in server mode and left alone in
//! client mode. Needs root and hugepages; otherwise it prints why and passes (and fails
//! under `PMD_REQUIRE_ALL=1`).

mod common;

use common::{hugepages_reason, open_fds, transfer, wait_link, xstat};
use pmd_core::devargs::VdevSpec;
use pmd_core::ethdev::{Driver, Port, PortConf, RxOffloads, TxOffloads};
use pmd_core::mbuf::PktBatch;
use pmd_core::options::EalOptions;
use pmd_core::{Eal, Mbuf, Mempool};
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest a stop, start or close may take.
const QUICK: Duration = Duration::from_secs(3);

fn conf() -> PortConf {
    PortConf {
        rx_queues: 1,
        tx_queues: 1,
        rx_offloads: RxOffloads::SCATTER,
        tx_offloads: TxOffloads::MULTI_SEGS,
        mtu: Some(9000),
    }
}

/// Runs `f`, failing if it takes longer than [`QUICK`].
fn quickly<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    assert!(t.elapsed() < QUICK, "{what} took {:?}", t.elapsed());
    r
}

/// Our virtio-user on `sock` (`extra` appended to its devargs), probed outside the EAL's
/// list so that it can be closed and probed again; configured and started.
fn front_end(
    sock: &Path,
    extra: &str,
    pool: &Mempool,
) -> (
    Port,
    pmd_core::ethdev::RxQueueHandle,
    pmd_core::ethdev::TxQueueHandle,
) {
    let spec: VdevSpec = format!(
        "net_virtio_user0,path={},queue_size=256{extra}",
        sock.display()
    )
    .parse()
    .unwrap();
    let mut fe = Port::new(
        1,
        "net_virtio_user0",
        pmd_virtio::DRIVER.probe(&spec).unwrap(),
    );
    fe.configure(&conf()).unwrap();
    let rx = fe.setup_rx_queue(0, 0, pool).unwrap();
    let tx = fe.setup_tx_queue(0, 0).unwrap();
    fe.start().unwrap();
    assert!(
        fe.wait_link_up(Duration::from_secs(10)).up,
        "front end link"
    );
    (fe, rx, tx)
}

/// Waits until every connection made so far has ended and the link is down.
fn wait_all_ended(eal: &Eal) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (c, d) = (
            xstat(eal, 0, "ctrl_connects"),
            xstat(eal, 0, "ctrl_disconnects"),
        );
        if c == d && !eal.ports()[0].link().up {
            return;
        }
        assert!(Instant::now() < deadline, "{c} connects, {d} disconnects");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (a client's connection attempt holds a socket for a moment) until the open
/// descriptors are `fds` again.
fn fds_back(fds: &[String], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let now = open_fds();
        if now == fds {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: descriptors {now:?}, before {fds:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn lifecycle(test: &str, client: bool) {
    if !pmd_testkit::require(test, hugepages_reason()) {
        return;
    }
    let _serial = common::one_at_a_time();
    let dir = pmd_testkit::TempDir::new("pmd-vhost-life");
    let sock = dir.file("vhost.sock");
    let (ours, theirs) = if client {
        (",client=1", ",server=1")
    } else {
        ("", "")
    };
    let opts = EalOptions::builder()
        .lcores("0")
        .no_pci(true)
        .file_prefix(&pmd_testkit::unique("vhlife"))
        .vdev(&format!("net_vhost0,iface={}{ours}", sock.display()))
        .build()
        .unwrap();
    let mut eal = Eal::init(opts, &[&pmd_vhost::DRIVER]).unwrap();
    let pool = Mempool::create("vhost-life", 4095, 0).unwrap();
    let idle = pool.stats().in_use;
    let port = eal.port_mut(0).unwrap();
    port.configure(&conf()).unwrap();
    let mut rx = port.setup_rx_queue(0, 0, &pool).unwrap();
    let mut tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    let frames = pmd_testkit::frames::frame_set([0x02, 0, 0, 0, 0, 0x05], 1500, 1);
    let fds = open_fds();
    for round in 1..=3 {
        let (mut fe, mut fe_rx, mut fe_tx) = front_end(&sock, theirs, &pool);
        wait_link(&eal, 0, true, 10, String::new);
        for cycle in 1..=2 {
            let what = format!("round {round}, cycle {cycle}");
            transfer(
                &format!("{what}: to us"),
                &frames,
                &pool,
                &mut fe_tx,
                &mut rx,
                || {},
            );
            transfer(
                &format!("{what}: to it"),
                &frames,
                &pool,
                &mut tx,
                &mut fe_rx,
                || {},
            );
            // Stopped with frames in the front end's tx ring.
            let mut b = PktBatch::new();
            for f in &frames[..16] {
                b.push(Mbuf::from_slice(f, &pool).unwrap()).unwrap();
            }
            fe_tx.tx_burst(&mut b);
            quickly("stop", || eal.port_mut(0).unwrap().stop().unwrap());
            // Stopped: nothing moves, and the front end keeps its connection.
            let mut inb = PktBatch::new();
            assert_eq!(rx.rx_burst(&mut inb), 0, "{what}: rx while stopped");
            assert_eq!(tx.tx_burst(&mut b), 0, "{what}: tx while stopped");
            assert!(fe.link().up, "{what}: the connection stays while stopped");
            drop(b);
            quickly("start", || eal.port_mut(0).unwrap().start().unwrap());
            // What the front end sent before the stop is still there.
            let got = common::collect(&mut rx, 16, common::PATIENCE, || {});
            assert_eq!(got.len(), 16, "{what}: frames queued before the stop");
            for (m, f) in got.iter().zip(&frames) {
                assert!(m.to_vec() == *f, "{what}: a frame queued before the stop");
            }
        }
        if round < 3 {
            fe.stop().unwrap();
            drop(fe_rx);
            drop(fe_tx);
            fe.close();
            drop(fe);
            wait_all_ended(&eal);
            // The queues let go of the departed front end's memory and eventfds at
            // their next burst.
            let mut inb = PktBatch::new();
            rx.rx_burst(&mut inb);
            inb.push(Mbuf::from_slice(&frames[0], &pool).unwrap())
                .unwrap();
            assert_eq!(tx.tx_burst(&mut inb), 0);
            drop(inb);
            fds_back(&fds, &format!("round {round}: after the front end went"));
            continue;
        }
        // The last round: our port closed while the front end is connected.
        quickly("close", || eal.port_mut(0).unwrap().close());
        assert_eq!(
            sock.exists(),
            client,
            "server mode removes its socket at close, client mode leaves the front end's"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while fe.link().up {
            assert!(Instant::now() < deadline, "the front end still sees a link");
            std::thread::sleep(Duration::from_millis(20));
        }
        fe.stop().unwrap();
        drop(fe_rx);
        drop(fe_tx);
        fe.close();
    }
    let s = eal.ports()[0].stats();
    assert_eq!((s.ierrors, s.oerrors, s.rx_nombuf), (0, 0, 0), "{s:?}");
    drop(rx);
    drop(tx);
    // The listening socket (server mode) and the control thread's descriptors are gone
    // with the port.
    let after = open_fds();
    assert!(
        after.len() < fds.len() || client,
        "{after:?} open after close, {fds:?} before"
    );
    assert!(
        after.len() <= fds.len(),
        "{after:?} open after close, {fds:?} before"
    );
    drop(eal);
    assert_eq!(pool.stats().in_use, idle, "buffers not returned");
}

#[test]
fn stop_start_close_while_connected_server_mode() {
    lifecycle("stop_start_close_while_connected_server_mode", false);
}

#[test]
fn stop_start_close_while_connected_client_mode() {
    lifecycle("stop_start_close_while_connected_client_mode", true);
}
