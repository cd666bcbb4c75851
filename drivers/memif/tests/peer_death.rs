//! Peers that die: DPDK 22.11's `net_memif` (in `dpdk-testpmd`, macswap) is killed with
//! SIGKILL while frames are in flight, then started again. Our port must see the link go
//! down, count what it could not send, keep its other ports running, come back up with
//! the new peer (a server accepts the new client, a client reconnects to the new server),
//! forward again, and its pool must be back at the in-use count it had before traffic.
//! Needs root, hugepages at /mnt/pmd-huge and `dpdk-testpmd`; otherwise each test prints
//! why and passes (and fails under `PMD_REQUIRE_ALL=1`).

mod common;

use common::testpmd::{skip_reason, Testpmd};
use common::{side, wait_for, Side};
use pmd_core::mbuf::PktBatch;
use std::time::{Duration, Instant};

const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const OURS: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Sends frames and receives the echoes until `done(side, received)`; frames the port
/// gives back are dropped (freed), none is asserted to come back. Echoes must be our
/// frames with the MACs swapped. Returns how many came back.
fn pump(s: &mut Side, what: &str, mut done: impl FnMut(&Side, u64) -> bool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut seq, mut received) = (0u32, 0u64);
    let mut rb = PktBatch::new();
    while !done(s, received) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: received {received}; stats {:?}, xstats {:?}",
            s.port.stats(),
            s.port.xstats()
        );
        let mut b = PktBatch::new();
        while b.len() < 32 {
            let m = pmd_core::Mbuf::from_slice(&common::frame(PEER, OURS, 1, seq), &s.pool)
                .expect("pool has room");
            b.push(m).unwrap();
            seq = seq.wrapping_add(1);
        }
        s.tx[0].tx_burst(&mut b);
        drop(b);
        rb.clear();
        s.rx[0].rx_burst(&mut rb);
        for m in rb.iter() {
            let d = m.data();
            assert_eq!((&d[..6], &d[6..12]), (&OURS[..], &PEER[..]), "echo's MACs");
            received += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    received
}

/// A second memif link in the same process (server and client on their own socket),
/// to show the other ports keep running while one peer is dead.
struct OtherPorts {
    a: Side,
    b: Side,
}

impl OtherPorts {
    fn new(first_id: u16, sock: &str) -> OtherPorts {
        let a = side(
            first_id,
            &format!("net_memif0,role=server,socket={sock}"),
            1,
        );
        let b = side(
            first_id + 1,
            &format!("net_memif1,role=client,socket={sock}"),
            1,
        );
        wait_for(30, "the other ports' link", || {
            a.port.link().up && b.port.link().up
        });
        OtherPorts { a, b }
    }

    /// 256 frames from one to the other all arrive.
    fn forward(&mut self) {
        let (mut sent, mut got) = (0u32, 0u32);
        let mut rb = PktBatch::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while got < 256 {
            assert!(
                Instant::now() < deadline,
                "other ports: {got} of 256 frames"
            );
            let mut b = PktBatch::new();
            while sent < 256 && b.len() < 32 {
                let f = common::frame(OURS, PEER, 2, sent);
                b.push(pmd_core::Mbuf::from_slice(&f, &self.a.pool).unwrap())
                    .unwrap();
                sent += 1;
            }
            while !b.is_empty() {
                self.a.tx[0].tx_burst(&mut b);
                rb.clear();
                got += self.b.rx[0].rx_burst(&mut rb) as u32;
            }
            rb.clear();
            got += self.b.rx[0].rx_burst(&mut rb) as u32;
        }
    }

    fn finish(self) {
        self.b.finish();
        self.a.finish();
    }
}

/// Kills `tp` mid-stream, checks what our port `s` must show while the peer is dead,
/// then starts the peer again with `restart` and checks traffic flows again.
fn kill_and_restart(
    s: &mut Side,
    other: &mut OtherPorts,
    mut tp: Testpmd,
    restart: impl Fn() -> Testpmd,
) {
    wait_for(30, "link up with DPDK", || s.port.link().up);
    tp.wait_forwarding();
    let base = s.pool.stats().in_use;
    pump(s, "1000 echoes", |_, n| n >= 1000);
    // Frames are in flight both ways in the rings now.
    let before_kill = s.port.stats();
    let connects = s.xstat("ctrl_connects");
    tp.kill9();
    pump(s, "link down after SIGKILL", |s, _| !s.port.link().up);
    // While down, tx gives every frame back and counts it; nothing counts as sent.
    let down = s.port.stats();
    assert!(down.opackets >= before_kill.opackets);
    pump(s, "link-down tx counted", |s, _| {
        s.xstat("tx_q0_link_down") >= 320
    });
    assert!(!s.port.link().up);
    assert_eq!(s.port.stats().opackets, down.opackets);
    assert!(s.xstat("ctrl_disconnects") >= 1);
    assert_eq!(s.xstat("link_up"), 0);
    other.forward();
    assert_eq!(
        s.pool.stats().in_use,
        base,
        "buffers held while the peer is dead"
    );
    drop(tp);

    let tp = restart();
    wait_for(60, "link up with the restarted DPDK peer", || {
        s.port.link().up
    });
    assert_eq!(s.xstat("ctrl_connects"), connects + 1);
    tp.wait_forwarding();
    let again = pump(s, "1000 echoes from the restarted peer", |_, n| n >= 1000);
    assert!(again >= 1000);
    other.forward();
    // Let the last echoes arrive, then everything the port held is back.
    let settle = Instant::now() + Duration::from_millis(500);
    let mut rb = PktBatch::new();
    while Instant::now() < settle {
        rb.clear();
        s.rx[0].rx_burst(&mut rb);
    }
    drop(rb);
    assert_eq!(s.pool.stats().in_use, base, "pool in use after the restart");
    drop(tp);
    wait_for(10, "link down after the restarted peer exits", || {
        !s.port.link().up
    });
}

#[test]
fn our_server_survives_dpdk_client_killed_and_restarted() {
    if !pmd_testkit::require(
        "our_server_survives_dpdk_client_killed_and_restarted",
        skip_reason(),
    ) {
        return;
    }
    let pid = std::process::id();
    let name = format!("/tmp/pmd-memif-death-s-{pid}.sock");
    let mut s = side(0, &format!("net_memif0,role=server,socket={name}"), 1);
    let mut other = OtherPorts::new(1, &format!("/tmp/pmd-memif-death-so-{pid}.sock"));
    let start = || {
        Testpmd::start(
            &format!("net_memif0,role=client,socket={name}"),
            &format!("pmdmemifdc{pid}"),
            None,
        )
    };
    kill_and_restart(&mut s, &mut other, start(), start);
    s.finish();
    other.finish();
}

#[test]
fn our_client_reconnects_to_dpdk_server_killed_and_restarted() {
    if !pmd_testkit::require(
        "our_client_reconnects_to_dpdk_server_killed_and_restarted",
        skip_reason(),
    ) {
        return;
    }
    let pid = std::process::id();
    // Abstract socket: the name goes away with the killed process (a socket file would
    // stay behind and keep the restarted testpmd from binding it).
    let name = format!("/tmp/pmd-memif-death-c-{pid}.sock");
    let start = || {
        Testpmd::start(
            &format!("net_memif0,role=server,socket={name}"),
            &format!("pmdmemifds{pid}"),
            None,
        )
    };
    let tp = start();
    let mut s = side(0, &format!("net_memif0,role=client,socket={name}"), 1);
    let mut other = OtherPorts::new(1, &format!("/tmp/pmd-memif-death-co-{pid}.sock"));
    kill_and_restart(&mut s, &mut other, tp, start);
    s.finish();
    other.finish();
}
