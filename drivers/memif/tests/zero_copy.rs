//! memif zero-copy (`zero-copy=yes`, a client) against our server in the same process:
//! the client's pools made after its probe keep their data rooms apart and are shared as
//! regions after region 0, the server reads the client's packets from its mbufs and
//! writes the packets it sends into mbufs the client offered. Frames cross byte for byte
//! both ways, with 1 and 2 queues, and as descriptor and mbuf chains (jumbo frames from
//! 1000-byte buffers); every buffer comes back, also when the server goes away while the
//! rings hold mbufs. A chain of more segments than the ring has slots is copied; a frame
//! the server can never fit in the mbufs offered is dropped and counted. A pool made
//! before the probe is not
//! shared: packets from it are copied (`tx_q0_zc_copied`), and a receive queue on it
//! receives by copying. One test function: the pool made "before the probe" must be
//! made before any zero-copy probe of this process.

mod common;

use common::{both_ways, exchange, frame_upto, side_with, wait_for, Side, MAC_A, MAC_B};
use pmd_core::ethdev::{Driver, Port, PortConf};
use pmd_core::mbuf::PktBatch;
use pmd_core::mempool::MempoolConfig;
use pmd_core::Mempool;
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The server's and the client's MAC addresses.
const MAC_S: [u8; 6] = MAC_A;
const MAC_C: [u8; 6] = MAC_B;

fn socket() -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("socket=pmd-memif-zc-{}-{n}", std::process::id())
}

/// A server and a zero-copy client on a fresh socket, linked up.
fn pair(queues: u16, data_room: Option<u16>, extra: &str) -> (Side, Side) {
    let sock = socket();
    let server = side_with(
        0,
        &format!("net_memif0,role=server,{sock}{extra}"),
        queues,
        data_room,
    );
    let client = side_with(
        1,
        &format!("net_memif1,role=client,zero-copy=yes,{sock}{extra}"),
        queues,
        data_room,
    );
    for s in [&server, &client] {
        wait_for(10, "link up", || s.port.link().up);
    }
    (server, client)
}

/// A client port on `sock` whose receive queue uses `pool`.
fn client_on(
    sock: &str,
    pool: &Mempool,
) -> (
    Port,
    pmd_core::ethdev::RxQueueHandle,
    pmd_core::ethdev::TxQueueHandle,
) {
    let spec = format!("net_memif3,role=client,zero-copy=yes,{sock}");
    let dev = pmd_memif::DRIVER
        .probe(&spec.parse().expect("spec"))
        .expect("probe");
    let mut port = Port::new(3, "net_memif3", dev);
    port.configure(&PortConf::default()).expect("configure");
    let rx = port.setup_rx_queue(0, 0, pool).expect("rx queue");
    let tx = port.setup_tx_queue(0, 0).expect("tx queue");
    port.start().expect("start");
    (port, rx, tx)
}

fn xstat(p: &Port, name: &str) -> u64 {
    p.xstats()
        .into_iter()
        .find(|(k, _)| k == name)
        .map_or_else(|| panic!("no xstat {name}"), |x| x.1)
}

#[test]
fn zero_copy_client_moves_frames_in_place() {
    // Made before any zero-copy probe: its data stays with its headers, not shared.
    let early = Mempool::create_with(
        &format!("memif-zc-early-{}", std::process::id()),
        &MempoolConfig {
            size: 2048,
            cache_size: 0,
            buf_size: pmd_core::mbuf::DEFAULT_BUF_SIZE,
        },
    )
    .expect("pool");
    assert!(early.data_segment().is_none());

    // In place both ways, 1 and 2 queues, frames of 60..=1514 bytes.
    // (The pools hold 4096 buffers; each receive ring holds ring-size mbufs offered and
    // each transmit ring up to ring-size sent: 512-slot rings with 2 queues.)
    for (queues, extra) in [(1u16, ""), (2, ",rsize=9")] {
        let (server, client) = pair(queues, None, extra);
        assert!(
            client.pool.data_segment().is_some(),
            "a pool made after the probe is apart"
        );
        // Region 0 and at least the client's pool.
        assert!(client.xstat("regions") >= 2, "{:?}", client.port.xstats());
        let (server, client) = both_ways(server, client, 20_000, 1514);
        for q in 0..queues {
            assert_eq!(client.xstat(&format!("tx_q{q}_zc_copied")), 0);
            // Exactly the first lap arrives in the ring's own buffers (offered at
            // connect); every descriptor after it in the mbufs offered in their place.
            let copied = client.xstat(&format!("rx_q{q}_zc_copied"));
            assert_eq!(copied, 512 << (2 - queues), "rx_q{q}_zc_copied");
        }
        // The server goes away: once the client's queues let go of the session, the
        // mbufs its rings held (offered for receive, sent and not yet passed) are back.
        assert!(client.pool.stats().in_use > 0, "the rings hold mbufs");
        server.finish();
        let mut client = client;
        wait_for(10, "client link down", || !client.port.link().up);
        let mut b = PktBatch::new();
        for q in 0..usize::from(queues) {
            client.rx[q].rx_burst(&mut b);
            client.tx[q].tx_flush();
        }
        assert_eq!(client.pool.stats().in_use, 0, "the rings' mbufs came back");
        client.finish();
    }

    // Jumbo frames from 1000-byte buffers: mbuf chains leave as one descriptor per
    // segment, and arrive in chains of the mbufs offered (SCATTER).
    let (server, client) = pair(1, Some(1000), ",rsize=8");
    let (server, client) = both_ways(server, client, 3_000, 9014);
    assert_eq!(client.xstat("tx_q0_zc_copied"), 0);
    assert_eq!(client.xstat("rx_q0_zc_copied"), 256);
    server.finish();
    client.finish();

    // A chain of more segments than the ring has slots (10 of 1000 bytes, 8 slots) is
    // copied into the ring's 2048-byte buffers instead; the other way, the server drops
    // what can never fit the 8 mbufs offered, and counts it.
    let (server, mut client) = pair(1, Some(1000), ",rsize=3");
    let f = |seq| frame_upto(MAC_S, MAC_C, 2, seq, 9014);
    let t = std::thread::spawn(move || {
        let mut server = server;
        exchange(&mut server, 0, 300, 1, 2, f, f, 60);
        server
    });
    exchange(&mut client, 300, 0, 2, 1, f, f, 60);
    let mut server = t.join().expect("server thread");
    let long = (0..300).filter(|&s| f(s).len() > 8 * 1000);
    assert_eq!(client.xstat("tx_q0_zc_copied"), long.count() as u64);
    // 8 small frames take the first lap of the client's ring (its own 2048-byte
    // buffers); then the 8 slots are offered mbufs of 1000 bytes.
    let mut b = PktBatch::new();
    for _ in 0..8 {
        b.push(pmd_core::Mbuf::from_slice(&[7u8; 60], &server.pool).expect("room"))
            .unwrap();
    }
    assert_eq!(server.tx[0].tx_burst(&mut b), 8);
    let mut got = 0;
    wait_for(10, "8 frames at the client", || {
        b.clear();
        got += client.rx[0].rx_burst(&mut b);
        got == 8
    });
    b.clear();
    b.push(pmd_core::Mbuf::from_slice(&[7u8; 9000], &server.pool).expect("room"))
        .unwrap();
    server.tx[0].tx_burst(&mut b);
    assert!(b.is_empty());
    assert_eq!(server.xstat("tx_q0_too_long"), 1);
    drop(b);
    server.finish();
    client.finish();

    // The pool made before the probe: sent from by copying, received into by copying.
    let sock = socket();
    let server = side_with(0, &format!("net_memif0,role=server,{sock}"), 1, None);
    let (mut port, mut rx, mut tx) = client_on(&sock, &early);
    wait_for(10, "link up", || port.link().up && server.port.link().up);
    let mut server = server;
    let n = 500u32;
    let mut sent = 0u32;
    let mut got_server = 0u32;
    let mut got_client = 0u32;
    let mut b = PktBatch::new();
    let mut sb = PktBatch::new();
    let mut rb = PktBatch::new();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while got_server < n || got_client < n {
        assert!(
            std::time::Instant::now() < end,
            "timed out: {sent} {got_server} {got_client}"
        );
        if sent < n && b.is_empty() && sb.is_empty() {
            let f = frame_upto(MAC_S, MAC_C, 1, sent, 1514);
            b.push(pmd_core::Mbuf::from_slice(&f, &early).expect("room"))
                .unwrap();
            let g = frame_upto(MAC_C, MAC_S, 2, sent, 1514);
            sb.push(pmd_core::Mbuf::from_slice(&g, &server.pool).expect("room"))
                .unwrap();
            sent += 1;
        }
        tx.tx_burst(&mut b);
        server.tx[0].tx_burst(&mut sb);
        rb.clear();
        server.rx[0].rx_burst(&mut rb);
        for m in rb.iter() {
            assert_eq!(m.to_vec(), frame_upto(MAC_S, MAC_C, 1, got_server, 1514));
            got_server += 1;
        }
        rb.clear();
        rx.rx_burst(&mut rb);
        for m in rb.iter() {
            assert!(early.owns(m), "received into the queue's pool");
            assert_eq!(m.to_vec(), frame_upto(MAC_C, MAC_S, 2, got_client, 1514));
            got_client += 1;
        }
    }
    assert_eq!(xstat(&port, "tx_q0_zc_copied"), u64::from(n));
    port.stop().unwrap();
    drop((rx, tx));
    drop((b, sb, rb));
    assert_eq!(early.stats().in_use, 0, "leaked buffers");
    server.finish();
}
