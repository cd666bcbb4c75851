//! The unmodified ixgbe driver's rx interrupts against the model's MSI-X: the driver
//! enables one vector per rx queue at configure (MSI-X mode, IVAR, auto-mask and
//! auto-clear); an armed queue with nothing pending stays quiet; a frame the model writes
//! back wakes it once (the vector auto-masks: a second frame without re-arming does not);
//! and 2000 rounds with the frame timed around the arming never lose a wake-up (a frame
//! written back before the unmask leaves its cause pending, which fires at the unmask).

mod common;

use common::{rx_conf, tx_conf};
use pmd_core::ethdev::{Device, PortConf, RxQueue};
use pmd_core::intr::Armed;
use pmd_core::mbuf::PktBatch;
use pmd_core::Mempool;
use pmd_ixgbe_model::{Model82599, ModelConf};
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const MAC: [u8; 6] = [0x02, 0x1b, 0x21, 0x99, 0x88, 0x01];

/// Whether `fd` becomes readable within `ms` milliseconds.
fn readable(fd: BorrowedFd<'_>, ms: u64) -> bool {
    pmd_core::unix::readable(fd, Duration::from_millis(ms)).expect("poll")
}

/// A non-IP broadcast frame (RSS leaves it on queue 0) carrying `seq`.
fn frame(seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[..6].fill(0xff);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x33]);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    f
}

/// Receives exactly frame `seq` on `rx` within a second.
fn recv_one(rx: &mut dyn RxQueue, seq: u32) {
    let mut b = PktBatch::new();
    let end = Instant::now() + Duration::from_secs(1);
    while b.is_empty() {
        assert!(Instant::now() < end, "frame {seq} never arrived");
        rx.rx_burst(&mut b, 32);
    }
    assert_eq!(b.len(), 1, "one frame at a time");
    assert_eq!(&b.iter().next().unwrap().data()[14..18], &seq.to_be_bytes());
}

#[test]
fn ixgbe_rx_interrupts_wake_once_per_arm_and_never_get_lost() {
    let model = Arc::new(
        Model82599::new(ModelConf {
            mac: MAC,
            ..ModelConf::default()
        })
        .unwrap(),
    );
    let mut dev = pmd_ixgbe::probe(model.backend(), "intr0").unwrap();
    dev.configure(&PortConf {
        rx_queues: 2,
        tx_queues: 1,
        ..Default::default()
    })
    .unwrap();
    let pool = Mempool::create("drv-intr", 2048, 0).unwrap();
    let mut rxq: Vec<Box<dyn RxQueue>> = (0..2)
        .map(|q| dev.setup_rx_queue(q, rx_conf(&pool)).unwrap())
        .collect();
    let txq = dev.setup_tx_queue(0, tx_conf()).unwrap();
    dev.start().unwrap();
    assert!(rxq.iter().all(|q| q.has_intr()), "one vector per rx queue");
    let rx = &mut rxq[0];

    // Nothing pending: asleep and quiet.
    assert_eq!(rx.intr_enable().unwrap(), Armed::Sleep);
    let fd = rx.intr_fd().unwrap();
    assert!(!readable(fd, 50), "no frame, yet the vector fired");
    // One frame: one wake-up; the vector auto-masked, so a second frame is not signalled.
    model.inject(&frame(0));
    assert!(
        readable(rx.intr_fd().unwrap(), 1000),
        "the frame did not fire the vector"
    );
    rx.intr_disable();
    recv_one(rx.as_mut(), 0);
    model.inject(&frame(1));
    assert!(
        !readable(rx.intr_fd().unwrap(), 50),
        "a disarmed queue's vector fired"
    );
    recv_one(rx.as_mut(), 1);
    // Written back while disarmed, then armed: Ready, or the pending cause fires.
    model.inject(&frame(2));
    std::thread::sleep(Duration::from_millis(20));
    match rx.intr_enable().unwrap() {
        Armed::Ready => {}
        Armed::Sleep => panic!("a frame was waiting, the queue said sleep"),
    }
    assert!(
        readable(rx.intr_fd().unwrap(), 1000),
        "the pending cause did not fire at the unmask"
    );
    rx.intr_disable();
    recv_one(rx.as_mut(), 2);

    // The race, 2000 rounds.
    const ROUNDS: u32 = 2000;
    let go = Arc::new(Barrier::new(2));
    let (go2, m2) = (go.clone(), model.clone());
    let sender = std::thread::spawn(move || {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for seq in 0..ROUNDS {
            go2.wait();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let spin = Instant::now() + Duration::from_nanos(x % 40_000);
            while Instant::now() < spin {
                std::hint::spin_loop();
            }
            m2.inject(&frame(100 + seq));
            go2.wait();
        }
    });
    let (mut slept, mut ready) = (0u32, 0u32);
    for seq in 0..ROUNDS {
        go.wait();
        match rx.intr_enable().unwrap() {
            Armed::Ready => ready += 1,
            Armed::Sleep => {
                slept += 1;
                assert!(
                    readable(rx.intr_fd().unwrap(), 1000),
                    "round {seq}: armed and asleep, the frame came and no interrupt woke us"
                );
            }
        }
        rx.intr_disable();
        recv_one(rx.as_mut(), 100 + seq);
        go.wait();
    }
    sender.join().unwrap();
    println!("{ROUNDS} rounds: {slept} slept and were woken, {ready} found the frame when arming");
    assert!(slept > 0, "the race never ran with the receiver asleep");
    assert_eq!(model.stats().rx_dropped(), 0);
    dev.stop().unwrap();
    drop(rxq);
    drop(txq);
    dev.close();
    assert_eq!(pool.stats().in_use, 0, "buffers not returned");
}

/// The link-state-change cause on the other-causes vector, through the ethdev API: the
/// port's link descriptor stays quiet while nothing changes, fires when the model takes
/// the link down, is quiet again once `link_changed` acknowledged it, and `link_wait`
/// sleeps on it until the link is back; each interrupt is counted in `link_interrupts`.
#[test]
fn ixgbe_link_changes_fire_the_link_interrupt() {
    let model = Model82599::new(ModelConf {
        mac: MAC,
        ..ModelConf::default()
    })
    .unwrap();
    let dev = pmd_ixgbe::probe(model.backend(), "lsc0").unwrap();
    let mut p = pmd_core::ethdev::Port::new(0, "lsc0", Box::new(dev));
    let pool = Mempool::create("drv-lsc", 1024, 0).unwrap();
    p.configure(&PortConf::default()).unwrap();
    let _rx = p.setup_rx_queue(0, 128, &pool).unwrap();
    let _tx = p.setup_tx_queue(0, 128).unwrap();
    p.start().unwrap();
    assert!(
        p.wait_link_up(Duration::from_secs(5)).up,
        "link never came up"
    );
    let interrupts = |p: &pmd_core::ethdev::Port| {
        p.xstats()
            .into_iter()
            .find(|(k, _)| k == "link_interrupts")
            .map(|(_, v)| v)
            .expect("xstat link_interrupts")
    };
    // Whatever the link coming up raised is acknowledged here.
    p.link_changed();
    let base = interrupts(&p);
    let fd = p.link_fd().expect("the port has a link interrupt");
    assert!(!readable(fd, 50), "the link did not change, yet it fired");

    model.set_link(false);
    assert!(readable(fd, 2000), "taking the link down did not fire");
    assert_eq!(p.link_changed().map(|l| l.up), Some(false));
    assert!(!readable(fd, 50), "acknowledged, yet it fires again");

    model.set_link(true);
    let l = p.link_wait(Duration::from_secs(5));
    assert!(l.up, "link_wait returned {l} before the link came back");
    assert_eq!(p.link_changed().map(|l| l.up), Some(true));
    assert!(
        interrupts(&p) >= base + 2,
        "down and up were not both interrupts: {} then {}",
        base,
        interrupts(&p)
    );
    p.stop().unwrap();
}
