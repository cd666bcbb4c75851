//! A receiver whose pool is empty: every frame the peer sent is counted once, either
//! in `ipackets` or in `rx_nombuf`, however often the receiver polls while it has no
//! buffer. Both roles receive (server: client-to-server ring; client: server-to-client
//! ring, whose buffers it offers again after dropping). No root or hugepages needed.

mod common;

use common::{frame, side, wait_for, Side};
use pmd_core::mbuf::PktBatch;
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];

/// Sends frames `first..first + n` from `from` (all must be taken by the ring).
fn send(from: &mut Side, first: u32, n: u32) {
    let mut b = PktBatch::new();
    let mut seq = first;
    while seq < first + n {
        while seq < first + n && b.spare() > 0 {
            let m = pmd_core::Mbuf::from_slice(&frame(MAC_A, MAC_B, 1, seq), &from.pool)
                .expect("sender's pool has room");
            b.push(m).unwrap();
            seq += 1;
        }
        let len = b.len();
        assert_eq!(
            from.tx[0].tx_burst(&mut b),
            len,
            "the ring takes every frame"
        );
    }
}

/// Polls `to` `polls` times; returns how many packets arrived.
fn poll(to: &mut Side, polls: u32) -> u64 {
    let mut got = 0u64;
    let mut b = PktBatch::new();
    for _ in 0..polls {
        got += to.rx[0].rx_burst(&mut b) as u64;
        b.clear();
    }
    got
}

/// Frames sent to a receiver without buffers are each counted once in `rx_nombuf`;
/// once buffers are back, the next frames arrive and the counters add up to what was
/// sent.
fn starved_receiver(receiver_is_server: bool) {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let sock = format!("socket=pmd-memif-nombuf-{}-{n}", std::process::id());
    let (rrole, srole) = if receiver_is_server {
        ("server", "client")
    } else {
        ("client", "server")
    };
    // The server binds at probe, so probe it first.
    let (mut rx_side, mut tx_side) = if receiver_is_server {
        let r = side(0, &format!("net_memif0,role={rrole},{sock}"), 1);
        (r, side(1, &format!("net_memif1,role={srole},{sock}"), 1))
    } else {
        let t = side(1, &format!("net_memif1,role={srole},{sock}"), 1);
        (side(0, &format!("net_memif0,role={rrole},{sock}"), 1), t)
    };
    for s in [&rx_side, &tx_side] {
        wait_for(10, "link up", || s.port.link().up);
    }

    // A client offers its ring's buffers when it polls: let it, before the frames come.
    assert_eq!(poll(&mut rx_side, 1), 0);
    // Take every buffer of the receiver's pool.
    let mut hoard = Vec::new();
    while let Some(m) = rx_side.pool.alloc() {
        hoard.push(m);
    }
    // 100 frames (more than one 32-packet burst), polled 50 times without buffers.
    send(&mut tx_side, 0, 100);
    assert_eq!(poll(&mut rx_side, 50), 0, "no buffer, no packet");
    let st = rx_side.port.stats();
    assert_eq!(st.rx_nombuf, 100, "each frame counted once: {st:?}");
    assert_eq!(st.ipackets, 0, "{st:?}");

    // Buffers back: the next frames arrive, the dropped ones are not counted again.
    drop(hoard);
    send(&mut tx_side, 100, 40);
    let mut got = 0;
    wait_for(10, "40 frames", || {
        got += poll(&mut rx_side, 1);
        got >= 40
    });
    let st = rx_side.port.stats();
    assert_eq!(
        (st.ipackets, st.rx_nombuf, st.ierrors),
        (40, 100, 0),
        "{st:?}"
    );
    let sent = tx_side.port.stats();
    assert_eq!(
        st.ipackets + st.rx_nombuf + st.ierrors,
        sent.opackets,
        "received + no buffer + errors = sent: {st:?} {sent:?}"
    );
    rx_side.finish();
    tx_side.finish();
}

#[test]
fn server_without_buffers_counts_each_frame_once() {
    starved_receiver(true);
}

#[test]
fn client_without_buffers_counts_each_frame_once() {
    starved_receiver(false);
}
