//! Our memif server against our memif client, each side in its own thread: an exact
//! number of frames each way, checked byte for byte, with 1 and 2 queues, both
//! role assignments, filesystem and abstract sockets, chained descriptors (small
//! `bsize`), and reconnects after either side goes away. No root or hugepages needed.

mod common;

use common::{both_ways, exchange, frame, side, side_with, wait_for, Side, MAC_A, MAC_B};
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A fresh socket argument: abstract name, or a path under the temp dir.
fn socket(abstract_ns: bool) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    if abstract_ns {
        format!("socket=pmd-memif-loop-{pid}-{n}")
    } else {
        let p = std::env::temp_dir().join(format!("pmd-memif-loop-{pid}-{n}.sock"));
        format!("socket={},socket-abstract=no", p.display())
    }
}

/// `n` frames each way between a server and a client; `a_is_server` picks which of the
/// two threads holds the server.
fn run(a_is_server: bool, queues: u16, n: u32, extra: &str, abstract_ns: bool) {
    run_with(a_is_server, queues, n, extra, abstract_ns, None, 1514);
}

/// [`run`] with pools of `data_room`-byte buffers and SCATTER (see `side_with`), and
/// frames of up to `max_len` bytes.
fn run_with(
    a_is_server: bool,
    queues: u16,
    n: u32,
    extra: &str,
    abstract_ns: bool,
    data_room: Option<u16>,
    max_len: usize,
) {
    let sock = socket(abstract_ns);
    let role = |server: bool| if server { "server" } else { "client" };
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(",{extra}")
    };
    let spec_a = format!("net_memif0,role={},{sock}{extra}", role(a_is_server));
    let spec_b = format!("net_memif1,role={},{sock}{extra}", role(!a_is_server));
    // The server binds at probe, so probe it first.
    let side = |id, spec: &str| side_with(id, spec, queues, data_room);
    let (a, b) = if a_is_server {
        let a = side(0, &spec_a);
        (a, side(1, &spec_b))
    } else {
        let b = side(1, &spec_b);
        (side(0, &spec_a), b)
    };
    for s in [&a, &b] {
        wait_for(10, "link up", || s.port.link().up);
        assert_eq!(s.xstat("rings_c2s"), queues as u64);
        assert_eq!(s.xstat("rings_s2c"), queues as u64);
    }
    let (a, b) = both_ways(a, b, n, max_len);
    a.finish();
    b.finish();
}

#[test]
fn server_a_client_b_one_queue() {
    run(true, 1, 20_000, "", true);
}

#[test]
fn client_a_server_b_one_queue_path_socket() {
    run(false, 1, 20_000, "", false);
}

#[test]
fn server_a_client_b_two_queues() {
    run(true, 2, 20_000, "", true);
}

#[test]
fn client_a_server_b_two_queues() {
    run(false, 2, 20_000, "", true);
}

#[test]
fn chained_descriptors_small_ring() {
    // 256-byte buffers: frames of up to 1514 bytes span up to 6 descriptors; 64-slot
    // rings wrap many times.
    run(true, 2, 5_000, "bsize=256,rsize=6", true);
    run(false, 1, 5_000, "bsize=256,rsize=6", true);
}

#[test]
fn jumbo_frames_as_mbuf_chains_both_ways() {
    // Frames of 60..=9014 bytes (a 9000-byte MTU) from 1000-byte buffers: every frame
    // above 1000 bytes leaves as an mbuf chain, crosses as a descriptor chain (2048-byte
    // memif buffers) and arrives as an mbuf chain, byte for byte.
    run_with(true, 1, 3_000, "", true, Some(1000), 9014);
    run_with(false, 2, 3_000, "bsize=4096", true, Some(1000), 9014);
}

#[test]
fn id_and_secret_must_match() {
    let sock = socket(true);
    let srv = side(
        0,
        &format!("net_memif0,role=server,{sock},id=5,secret=pw"),
        1,
    );
    let bad_id = side(
        1,
        &format!("net_memif1,role=client,{sock},id=6,secret=pw"),
        1,
    );
    wait_for(10, "a rejected attempt", || srv.xstat("ctrl_rejected") >= 1);
    assert!(!bad_id.port.link().up && !srv.port.link().up);
    bad_id.finish();
    let before = srv.xstat("ctrl_rejected");
    let bad_secret = side(
        2,
        &format!("net_memif2,role=client,{sock},id=5,secret=px"),
        1,
    );
    wait_for(10, "a rejected attempt", || {
        srv.xstat("ctrl_rejected") > before
    });
    assert!(!bad_secret.port.link().up);
    bad_secret.finish();
    let good = side(
        3,
        &format!("net_memif3,role=client,{sock},id=5,secret=pw"),
        1,
    );
    wait_for(10, "link up", || good.port.link().up && srv.port.link().up);
    good.finish();
    srv.finish();
}

/// Sends `n` frames from `from` to `to` (one queue), checked byte for byte.
fn one_way(from: &mut Side, to: &mut Side, n: u32, dir: u8) {
    std::thread::scope(|sc| {
        sc.spawn(|| {
            exchange(
                from,
                n,
                0,
                dir,
                0,
                |_| Vec::new(),
                |s| frame(MAC_A, MAC_B, dir, s),
                30,
            )
        });
        exchange(
            to,
            0,
            n,
            0,
            dir,
            |s| frame(MAC_A, MAC_B, dir, s),
            |_| Vec::new(),
            30,
        );
    });
}

#[test]
fn reconnects_after_either_side_restarts() {
    let sock = socket(true);
    let mut srv = side(0, &format!("net_memif0,role=server,{sock}"), 1);
    let mut cli = side(1, &format!("net_memif1,role=client,{sock}"), 1);
    wait_for(10, "link up", || srv.port.link().up && cli.port.link().up);
    one_way(&mut cli, &mut srv, 1000, 1);
    // The client goes away and comes back.
    cli.port.stop().unwrap();
    wait_for(10, "server link down", || !srv.port.link().up);
    assert_eq!(srv.xstat("ctrl_peer_disconnects"), 1);
    cli.port.start().unwrap();
    wait_for(10, "link up again", || {
        srv.port.link().up && cli.port.link().up
    });
    one_way(&mut srv, &mut cli, 1000, 2);
    // The server goes away: the client retries until it is back.
    srv.port.stop().unwrap();
    wait_for(10, "client link down", || !cli.port.link().up);
    std::thread::sleep(std::time::Duration::from_millis(500));
    srv.port.start().unwrap();
    wait_for(10, "link up a third time", || {
        srv.port.link().up && cli.port.link().up
    });
    one_way(&mut cli, &mut srv, 1000, 3);
    assert_eq!(srv.xstat("ctrl_connects"), 3);
    assert_eq!(cli.xstat("ctrl_connects"), 3);
    cli.finish();
    srv.finish();
}

/// A client offers its receive buffers when the connection completes, not at its first
/// poll: a server can send a full burst before the client has ever polled, and nothing is
/// given back or lost.
#[test]
fn server_sends_before_the_clients_first_poll() {
    let sock = socket(true);
    let mut server = side(0, &format!("net_memif0,role=server,{sock}"), 1);
    let mut client = side(1, &format!("net_memif1,role=client,{sock}"), 1);
    for s in [&server, &client] {
        wait_for(10, "link up", || s.port.link().up);
    }
    let mut b = pmd_core::mbuf::PktBatch::new();
    for seq in 0..32 {
        let mut m = server.pool.alloc().expect("pool");
        assert!(m.copy_from(&frame(MAC_A, MAC_B, 1, seq)));
        b.push(m).unwrap();
    }
    assert_eq!(
        server.tx[0].tx_burst(&mut b),
        32,
        "the client offered no buffer yet"
    );
    let mut got = 0;
    let mut rb = pmd_core::mbuf::PktBatch::new();
    wait_for(10, "32 frames at the client", || {
        got += client.rx[0].rx_burst(&mut rb);
        rb.clear();
        got == 32
    });
    let st = server.port.stats();
    assert_eq!((st.opackets, st.oerrors), (32, 0), "{st:?}");
    server.finish();
    client.finish();
}
