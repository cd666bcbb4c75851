//! Rx interrupts of net_vhost's receive queues ([`pmd_core::intr`]). A receive queue
//! empties the guest's transmit ring; armed, it asks the guest to kick us (split:
//! `used.flags` without NO_NOTIFY, or `avail_event` at the next index with EVENT_IDX;
//! packed: the device event flags ENABLE) and sleeps on the ring's kick eventfd.
//!
//! - Our virtio-user front end (`net_virtio_user0`) against our back end in one process,
//!   split and packed rings (EVENT_IDX negotiated): armed with nothing pending the queue
//!   says `Sleep` and the kick eventfd stays quiet; a burst of [`N`] frames from the front
//!   end makes it readable; after `intr_disable` the queue holds exactly those frames,
//!   byte-exact; disarmed, the front end does not kick.
//! - The lost-wake-up loop: [`ROUNDS`] times a sender thread (owning the front end's tx
//!   queue) sends one frame after a pseudo-random spin while the receiver arms; a queue
//!   that said `Sleep` must be woken within a second, and the frame is there at once.
//! - DPDK's virtio-user in `dpdk-testpmd` (macswap, no EVENT_IDX: the NO_NOTIFY path on
//!   split rings), split and packed: [`DPDK_ROUNDS`] times our tx queue sends a frame and
//!   the echo wakes our armed rx queue (or is there when arming). Needs `dpdk-testpmd`.
//!
//! Every test ends with the ports' counters matching what was sent, no error counted,
//! and every buffer back in the pool. Needs root and hugepages; otherwise the tests
//! print why and pass (and fail under `PMD_REQUIRE_ALL=1`).

mod common;

use common::{hugepages_reason, swapped, xstat};
use pmd_core::ethdev::{PortConf, RxQueueHandle, TxQueueHandle};
use pmd_core::intr::Armed;
use pmd_core::mbuf::PktBatch;
use pmd_core::options::EalOptions;
use pmd_core::{Eal, Mbuf, Mempool};
use pmd_testkit::dpdk::peer_missing;
use pmd_testkit::frames::{frame, seq_of};
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const VHOST: usize = 0;
const VIRTIO: usize = 1;
/// Frames of the "front end sends a burst" step.
const N: usize = 32;
/// Rounds of the lost-wake-up loop.
const ROUNDS: u32 = 2000;
/// Rounds against DPDK's front end.
const DPDK_ROUNDS: u32 = 1000;
/// The longest a wake-up may take.
const WAKE_MS: u64 = 1000;
/// How long a quiet eventfd is watched.
const QUIET_MS: u64 = 50;
/// Where our frames are addressed to.
const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Whether `fd` becomes readable within `ms` milliseconds.
fn readable(fd: BorrowedFd<'_>, ms: u64) -> bool {
    pmd_core::unix::readable(fd, Duration::from_millis(ms)).expect("poll")
}

/// Frame `seq`: 60 to about 1400 bytes, its number after the ethertype.
fn test_frame(seq: u32) -> Vec<u8> {
    frame(DST, &[], 60 + (seq as usize * 37) % 1340, seq)
}

/// Sends every frame of `frames` on `tx`, retrying what the queue did not take.
fn send_all(tx: &mut TxQueueHandle, pool: &Mempool, frames: &[Vec<u8>]) {
    let mut b = PktBatch::new();
    for f in frames {
        b.push(Mbuf::from_slice(f, pool).expect("pool")).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.is_empty() {
        assert!(
            Instant::now() < deadline,
            "tx queue took {} of {}",
            frames.len() - b.len(),
            frames.len()
        );
        tx.tx_burst(&mut b);
    }
}

/// Receives until `want.len()` frames came (at most a second), checks they are `want`
/// byte for byte and in order, and that nothing more is there.
fn receive_exactly(what: &str, rx: &mut RxQueueHandle, want: &[Vec<u8>]) {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut b = PktBatch::new();
    while got.len() < want.len() {
        assert!(
            Instant::now() < deadline,
            "{what}: received {} of {} frames",
            got.len(),
            want.len()
        );
        b.clear();
        rx.rx_burst(&mut b);
        got.extend(b.iter().map(|m| m.to_vec()));
    }
    b.clear();
    assert_eq!(
        rx.rx_burst(&mut b),
        0,
        "{what}: more than {} frames",
        want.len()
    );
    assert_eq!(got.len(), want.len(), "{what}: frames");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: frame {i} length");
        assert!(
            g == w,
            "{what}: frame {i} bytes differ (seq {:?})",
            seq_of(g)
        );
    }
}

/// A rendezvous of the two threads of the lost-wake-up loop (a `Barrier` for two that
/// fails after 10 s instead of hanging when the other side died).
struct Rendezvous {
    state: Mutex<(u64, u32)>,
    cv: Condvar,
}

impl Rendezvous {
    fn new() -> Rendezvous {
        Rendezvous {
            state: Mutex::new((0, 0)),
            cv: Condvar::new(),
        }
    }

    fn wait(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let generation = s.0;
        s.1 += 1;
        if s.1 == 2 {
            *s = (generation + 1, 0);
            self.cv.notify_all();
            return;
        }
        let (_s, t) = self
            .cv
            .wait_timeout_while(s, Duration::from_secs(10), |s| s.0 == generation)
            .unwrap_or_else(|e| e.into_inner());
        assert!(
            !t.timed_out(),
            "the other thread never came to the rendezvous"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Our virtio-user against our vhost, one process.

/// Both ports of one process, started, links up: the vhost rx queue and the virtio-user
/// tx queue under test, the other two queues kept open.
struct Loopback {
    eal: Eal,
    pool: Mempool,
    idle: i64,
    /// The vhost port's receive queue (the guest's transmit ring).
    rx: RxQueueHandle,
    /// The virtio-user port's transmit queue.
    tx: Option<TxQueueHandle>,
    others: (RxQueueHandle, TxQueueHandle),
    sock: PathBuf,
    _dir: pmd_testkit::TempDir,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Loopback {
    /// `None` if the test cannot run here (it was skipped).
    fn open(test: &str, packed: bool) -> Option<Loopback> {
        if !pmd_testkit::require(test, hugepages_reason()) {
            return None;
        }
        let serial = common::one_at_a_time();
        let dir = pmd_testkit::TempDir::new("pmd-vhost-intr");
        let sock = dir.file("vhost.sock");
        let opts = EalOptions::builder()
            .lcores("0")
            .no_pci(true)
            .file_prefix(&pmd_testkit::unique("vhintr"))
            .vdev(&format!("net_vhost0,iface={}", sock.display()))
            .vdev(&format!(
                "net_virtio_user0,path={},queue_size=256,packed_vq={}",
                sock.display(),
                u8::from(packed)
            ))
            .build()
            .unwrap();
        let mut eal = Eal::init(opts, &[&pmd_vhost::DRIVER, &pmd_virtio::DRIVER]).unwrap();
        let pool = Mempool::create("vhost-intr", 4095, 0).unwrap();
        let idle = pool.stats().in_use;
        let mut rxs = Vec::new();
        let mut txs = Vec::new();
        for p in [VHOST, VIRTIO] {
            let port = eal.port_mut(p as u16).unwrap();
            port.configure(&PortConf::default()).unwrap();
            rxs.push(port.setup_rx_queue(0, 0, &pool).unwrap());
            txs.push(port.setup_tx_queue(0, 0).unwrap());
            port.start().unwrap();
        }
        for p in [VHOST, VIRTIO] {
            let link = eal
                .port_mut(p as u16)
                .unwrap()
                .wait_link_up(Duration::from_secs(10));
            assert!(link.up, "port {p}: link down");
        }
        let features = xstat(&eal, VIRTIO, "features");
        assert_eq!(
            features & pmd_core::vnet::features::VIRTIO_F_RING_PACKED != 0,
            packed,
            "ring layout: features {features:#x}"
        );
        eprintln!("{test}: negotiated features {features:#x}");
        let virtio_tx = txs.pop().unwrap();
        let virtio_rx = rxs.pop().unwrap();
        let vhost_tx = txs.pop().unwrap();
        let vhost_rx = rxs.pop().unwrap();
        Some(Loopback {
            eal,
            pool,
            idle,
            rx: vhost_rx,
            tx: Some(virtio_tx),
            others: (virtio_rx, vhost_tx),
            sock,
            _dir: dir,
            _serial: serial,
        })
    }

    /// Checks both ports' counters against `frames` sent from virtio-user to vhost (and
    /// nothing the other way), no error counted; closes the ports and checks every
    /// buffer came back and the socket is gone.
    fn finish(self, frames: u64, bytes: u64) {
        let Loopback {
            mut eal,
            pool,
            idle,
            rx,
            tx,
            others,
            sock,
            _dir,
            _serial,
        } = self;
        let s = eal.ports()[VHOST].stats();
        assert_eq!(
            (s.ipackets, s.ibytes, s.opackets),
            (frames, bytes, 0),
            "vhost: {s:?}"
        );
        let s = eal.ports()[VIRTIO].stats();
        assert_eq!(
            (s.opackets, s.obytes, s.ipackets),
            (frames, bytes, 0),
            "virtio-user: {s:?}"
        );
        for p in [VHOST, VIRTIO] {
            let s = eal.ports()[p].stats();
            assert_eq!(
                (s.ierrors, s.oerrors, s.imissed, s.rx_nombuf),
                (0, 0, 0, 0),
                "port {p}: {s:?}"
            );
        }
        for name in ["bad_ring", "bad_addr", "bad_chain", "too_long"] {
            assert_eq!(xstat(&eal, VHOST, &format!("rx_q0_{name}")), 0, "{name}");
            assert_eq!(xstat(&eal, VHOST, &format!("tx_q0_{name}")), 0, "{name}");
        }
        assert_eq!(xstat(&eal, VHOST, "ctrl_connects"), 1);
        assert_eq!(xstat(&eal, VHOST, "ctrl_refused"), 0);
        for p in [VIRTIO, VHOST] {
            eal.port_mut(p as u16).unwrap().stop().unwrap();
        }
        drop(rx);
        drop(tx);
        drop(others);
        drop(eal);
        assert_eq!(pool.stats().in_use, idle, "buffers not returned");
        assert!(!sock.exists(), "socket removed when the port closed");
    }
}

/// Step 1: armed with nothing pending → Sleep and a quiet kick eventfd; the front end
/// sends a burst of `N` → readable within a second; after `intr_disable` exactly those
/// frames; disarmed, the front end does not kick; armed again after traffic, the same.
fn sleep_then_wake(test: &str, packed: bool) {
    let Some(mut l) = Loopback::open(test, packed) else {
        return;
    };
    let (pool, rx) = (l.pool.clone(), &mut l.rx);
    let tx = l.tx.as_mut().unwrap();
    assert!(rx.has_intr(), "net_vhost rx queues have interrupts");
    assert_eq!(rx.intr_enable().unwrap(), Armed::Sleep, "nothing pending");
    let fd = rx
        .intr_fd()
        .expect("the kick eventfd of the ring the front end runs");
    assert!(!readable(fd, QUIET_MS), "armed, nothing sent, yet kicked");

    let burst: Vec<Vec<u8>> = (0..N as u32).map(test_frame).collect();
    send_all(tx, &pool, &burst);
    let t = Instant::now();
    assert!(
        readable(rx.intr_fd().unwrap(), WAKE_MS),
        "armed and asleep: no kick within 1 s for {N} frames"
    );
    let woke = t.elapsed();
    rx.intr_disable();
    assert!(
        !readable(rx.intr_fd().unwrap(), 0),
        "intr_disable consumed the kick"
    );
    receive_exactly("the burst", rx, &burst);

    // Disarmed: the front end is asked not to kick.
    let more: Vec<Vec<u8>> = (100..104).map(test_frame).collect();
    send_all(tx, &pool, &more);
    assert!(
        !readable(rx.intr_fd().unwrap(), QUIET_MS),
        "disarmed, yet the front end kicked"
    );
    receive_exactly("sent while disarmed", rx, &more);

    // Armed again after the ring moved on: asleep, quiet, woken by one frame.
    assert_eq!(rx.intr_enable().unwrap(), Armed::Sleep, "nothing pending");
    assert!(
        !readable(rx.intr_fd().unwrap(), QUIET_MS),
        "kicked for nothing"
    );
    let last = vec![test_frame(200)];
    send_all(tx, &pool, &last);
    assert!(
        readable(rx.intr_fd().unwrap(), WAKE_MS),
        "re-armed: no kick within 1 s"
    );
    rx.intr_disable();
    receive_exactly("sent while re-armed", rx, &last);
    eprintln!("{test}: woken {woke:?} after a burst of {N}");

    let all: Vec<&Vec<u8>> = burst.iter().chain(&more).chain(&last).collect();
    let bytes = all.iter().map(|f| f.len() as u64).sum();
    l.finish(all.len() as u64, bytes);
}

/// Step 2: the lost-wake-up loop (see the file's comment).
fn lost_wakeup(test: &str, packed: bool) {
    let Some(mut l) = Loopback::open(test, packed) else {
        return;
    };
    let rx = &mut l.rx;
    assert!(rx.has_intr());
    let go = Arc::new(Rendezvous::new());
    let sender = {
        let go = go.clone();
        let pool = l.pool.clone();
        let mut tx = l.tx.take().unwrap();
        std::thread::spawn(move || {
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            for seq in 0..ROUNDS {
                go.wait();
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let spin = Instant::now() + Duration::from_nanos(x % 40_000);
                while Instant::now() < spin {
                    std::hint::spin_loop();
                }
                send_all(&mut tx, &pool, &[test_frame(seq)]);
                go.wait();
            }
            tx
        })
    };
    let (mut slept, mut ready, mut late_kicks) = (0u32, 0u32, 0u32);
    let mut worst = Duration::ZERO;
    let mut b = PktBatch::new();
    for seq in 0..ROUNDS {
        go.wait();
        match rx.intr_enable().unwrap() {
            Armed::Ready => ready += 1,
            Armed::Sleep => {
                slept += 1;
                let t = Instant::now();
                assert!(
                    readable(rx.intr_fd().unwrap(), WAKE_MS),
                    "round {seq}: armed and asleep, the frame came and no kick woke us"
                );
                worst = worst.max(t.elapsed());
            }
        }
        rx.intr_disable();
        // Woken by the kick (which follows the frame's publication) or told Ready (the
        // ring showed it): the frame is there at once.
        b.clear();
        assert_eq!(rx.rx_burst(&mut b), 1, "round {seq}: the frame is there");
        let m = b.iter().next().unwrap().to_vec();
        assert!(m == test_frame(seq), "round {seq}: frame {:?}", seq_of(&m));
        b.clear();
        go.wait();
        // The sender's burst is over. A Ready round may leave its kick behind (the
        // sender read our flags while we were armed, and kicked after we drained): not a
        // wake-up of the next round's frame, so it is consumed here.
        if readable(rx.intr_fd().unwrap(), 0) {
            late_kicks += 1;
            rx.intr_disable();
        }
    }
    let tx = sender.join().unwrap();
    l.tx = Some(tx);
    println!(
        "{test}: {ROUNDS} rounds: {slept} slept and were woken (slowest {worst:?}), \
         {ready} found the frame when arming; {late_kicks} kicks came after a Ready round"
    );
    assert_eq!(slept + ready, ROUNDS);
    assert!(slept > 0, "the race was never run with the receiver asleep");
    let bytes = (0..ROUNDS).map(|s| test_frame(s).len() as u64).sum();
    l.finish(u64::from(ROUNDS), bytes);
}

#[test]
fn split_vhost_rx_sleeps_then_wakes_for_a_burst() {
    sleep_then_wake("split_vhost_rx_sleeps_then_wakes_for_a_burst", false);
}

#[test]
fn packed_vhost_rx_sleeps_then_wakes_for_a_burst() {
    sleep_then_wake("packed_vhost_rx_sleeps_then_wakes_for_a_burst", true);
}

#[test]
fn split_vhost_rx_never_loses_a_wakeup() {
    lost_wakeup("split_vhost_rx_never_loses_a_wakeup", false);
}

#[test]
fn packed_vhost_rx_never_loses_a_wakeup() {
    lost_wakeup("packed_vhost_rx_never_loses_a_wakeup", true);
}

// ---------------------------------------------------------------------------------------
// DPDK's virtio-user (testpmd, macswap) against our vhost.

/// How the frames of the DPDK rounds reached us.
#[derive(Debug, Default)]
struct Wakes {
    /// Arming found the echo already there.
    ready: u32,
    /// Asleep, woken by the kick, the echo there.
    woken: u32,
    /// Woken by a kick, nothing there yet (a kick of an earlier echo, sent after we
    /// drained): armed again.
    spurious: u32,
}

/// Sleeps on `rx` (already armed, with the outcome `armed`) until a frame is there,
/// re-arming after a wake without one; each sleep must end within a second. Returns the
/// frame.
fn await_frame(what: &str, rx: &mut RxQueueHandle, mut armed: Armed, w: &mut Wakes) -> Vec<u8> {
    let mut b = PktBatch::new();
    for _ in 0..100 {
        if armed == Armed::Sleep {
            assert!(
                readable(rx.intr_fd().unwrap(), WAKE_MS),
                "{what}: armed and asleep, no kick within 1 s"
            );
        }
        rx.intr_disable();
        b.clear();
        match (rx.rx_burst(&mut b), armed) {
            (0, Armed::Ready) => panic!("{what}: Ready, yet nothing to receive"),
            (0, Armed::Sleep) => w.spurious += 1,
            (n, a) => {
                assert_eq!(n, 1, "{what}: one frame at a time");
                match a {
                    Armed::Ready => w.ready += 1,
                    Armed::Sleep => w.woken += 1,
                }
                return b.iter().next().unwrap().to_vec();
            }
        }
        armed = rx.intr_enable().unwrap();
    }
    panic!("{what}: 100 wake-ups without the frame: {w:?}");
}

fn with_dpdk(test: &str, packed: bool) {
    if !pmd_testkit::require(test, peer_missing().or_else(hugepages_reason)) {
        return;
    }
    let _serial = common::one_at_a_time();
    let dir = pmd_testkit::TempDir::new("pmd-vhost-intr-dpdk");
    let sock = dir.file("vhost.sock");
    let log = dir.file("testpmd.log");
    let opts = EalOptions::builder()
        .lcores("0")
        .no_pci(true)
        .file_prefix(&pmd_testkit::unique("vhintrdpdk"))
        .vdev(&format!("net_vhost0,iface={}", sock.display()))
        .build()
        .unwrap();
    let mut eal = Eal::init(opts, &[&pmd_vhost::DRIVER]).unwrap();
    let pool = Mempool::create("vhost-intr-dpdk", 4095, 0).unwrap();
    let idle = pool.stats().in_use;
    let port = eal.port_mut(0).unwrap();
    port.configure(&PortConf::default()).unwrap();
    let mut rx = port.setup_rx_queue(0, 0, &pool).unwrap();
    let mut tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    let extra = if packed { ",packed_vq=1" } else { "" };
    let tp = common::dpdk_virtio_user(&sock, &log, extra, "macswap", &[]);
    common::wait_link(&eal, 0, true, 30, || tp.log());
    assert!(
        tp.wait_for("packet forwarding - ports=", Duration::from_secs(30)),
        "testpmd did not start forwarding:\n{}",
        tp.log()
    );
    let features = xstat(&eal, 0, "features");
    eprintln!("{test}: negotiated features {features:#x}");
    assert_eq!(
        features & pmd_core::vnet::features::VIRTIO_F_RING_PACKED != 0,
        packed,
        "RING_PACKED negotiated iff packed_vq=1"
    );

    // A first echo, polled: testpmd forwards.
    let (mut frames, mut bytes) = (0u64, 0u64);
    let warm = test_frame(1_000_000);
    send_all(&mut tx, &pool, std::slice::from_ref(&warm));
    let got = common::collect(&mut rx, 1, Duration::from_secs(10), || {});
    assert_eq!(got.len(), 1, "no echo; testpmd log:\n{}", tp.log());
    assert!(got[0].to_vec() == swapped(&warm), "the echo differs");
    drop(got);
    frames += 1;
    bytes += warm.len() as u64;

    assert!(rx.has_intr());
    // DPDK's front end kicks the ring as it starts, before any frame: a kick no sleep
    // waited for, consumed here as a sleeper's first disarm would.
    let startup_kick = rx.intr_fd().is_some_and(|f| readable(f, 0));
    rx.intr_disable();
    assert_eq!(rx.intr_enable().unwrap(), Armed::Sleep, "nothing pending");
    let fd = rx
        .intr_fd()
        .expect("DPDK's virtio-user sent a kick eventfd");
    assert!(!readable(fd, QUIET_MS), "armed, nothing sent, yet kicked");
    rx.intr_disable();

    // Even rounds arm before sending (the echo finds us asleep); odd rounds send, spin
    // 0..~20 µs and arm, racing the echo.
    let mut w = Wakes::default();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut racing_woken = 0u32;
    for seq in 0..DPDK_ROUNDS {
        let f = test_frame(seq);
        let what = format!("round {seq}");
        let armed = if seq % 2 == 0 {
            let a = rx.intr_enable().unwrap();
            assert_eq!(a, Armed::Sleep, "{what}: nothing pending before sending");
            send_all(&mut tx, &pool, std::slice::from_ref(&f));
            a
        } else {
            send_all(&mut tx, &pool, std::slice::from_ref(&f));
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let spin = Instant::now() + Duration::from_nanos(x % 20_000);
            while Instant::now() < spin {
                std::hint::spin_loop();
            }
            rx.intr_enable().unwrap()
        };
        let woken = w.woken;
        let echo = await_frame(&what, &mut rx, armed, &mut w);
        if seq % 2 == 1 && w.woken > woken {
            racing_woken += 1;
        }
        assert_eq!(echo.len(), f.len(), "{what}: echo length");
        assert!(
            echo == swapped(&f),
            "{what}: echo differs ({:?})",
            seq_of(&echo)
        );
        frames += 1;
        bytes += f.len() as u64;
    }
    println!(
        "{test}: {DPDK_ROUNDS} echoes: {w:?} (odd rounds woken: {}); kick pending before \
         the first arming: {startup_kick}",
        racing_woken
    );
    assert_eq!(w.ready + w.woken, DPDK_ROUNDS);
    assert!(w.woken > 0, "no round slept");

    let s = eal.ports()[0].stats();
    assert_eq!(
        (s.ipackets, s.opackets, s.ibytes, s.obytes),
        (frames, frames, bytes, bytes),
        "{s:?}"
    );
    assert_eq!(
        (s.ierrors, s.oerrors, s.imissed, s.rx_nombuf),
        (0, 0, 0, 0),
        "{s:?}"
    );
    for name in ["bad_ring", "bad_addr", "bad_chain", "too_long"] {
        assert_eq!(xstat(&eal, 0, &format!("rx_q0_{name}")), 0, "{name}");
        assert_eq!(xstat(&eal, 0, &format!("tx_q0_{name}")), 0, "{name}");
    }
    assert_eq!(xstat(&eal, 0, "ctrl_refused"), 0);
    drop(tp);
    common::wait_link(&eal, 0, false, 10, String::new);
    eal.port_mut(0).unwrap().stop().unwrap();
    drop(rx);
    drop(tx);
    drop(eal);
    assert_eq!(pool.stats().in_use, idle, "buffers not returned");
    assert!(!sock.exists(), "socket removed when the port closed");
}

#[test]
fn split_vhost_rx_wakes_for_dpdk_echoes() {
    with_dpdk("split_vhost_rx_wakes_for_dpdk_echoes", false);
}

#[test]
fn packed_vhost_rx_wakes_for_dpdk_echoes() {
    with_dpdk("packed_vhost_rx_wakes_for_dpdk_echoes", true);
}
