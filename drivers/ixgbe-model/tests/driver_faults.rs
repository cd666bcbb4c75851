//! Each injected fault as the ixgbe driver reports it through the ethdev API: a link that
//! stays down or flaps, descriptors written back with RXE, a transmit ring that stalls,
//! receive DMA outside the mapped memory. Every case ends in a clear state or a counted
//! event within a bounded time, never a hang.

use pmd_core::ethdev::{Port, PortConf};
use pmd_core::mbuf::PktBatch;
use pmd_core::Mempool;
use pmd_ixgbe_model::{Faults, Generator, Model82599, ModelConf};
use std::time::{Duration, Instant};

const MAC: [u8; 6] = [0x02, 0x1b, 0x21, 0x10, 0x20, 0x30];

fn model(faults: Faults, gen: Option<u64>) -> Model82599 {
    Model82599::new(ModelConf {
        mac: MAC,
        faults,
        generator: gen.map(|n| Generator::new(n, MAC)),
        ..ModelConf::default()
    })
    .unwrap()
}

fn port(m: &Model82599, name: &str) -> Port {
    let dev = pmd_ixgbe::probe(m.backend(), name).unwrap();
    Port::new(0, name, Box::new(dev))
}

/// Receives until `n` packets came or `secs` passed (at least one burst); returns the
/// count.
fn receive(rx: &mut pmd_core::ethdev::RxQueueHandle, n: u64, secs: u64) -> u64 {
    let mut got = 0;
    let mut b = PktBatch::new();
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        got += rx.rx_burst(&mut b) as u64;
        b.clear();
        if got >= n || Instant::now() >= end {
            return got;
        }
    }
}

#[test]
fn a_link_that_stays_down_is_reported_down_and_start_does_not_hang() {
    let m = model(
        Faults {
            link_down: true,
            ..Faults::default()
        },
        None,
    );
    let mut p = port(&m, "linkdown0");
    let pool = Mempool::create("fault-link", 1024, 0).unwrap();
    p.configure(&PortConf::default()).unwrap();
    let _rx = p.setup_rx_queue(0, 128, &pool).unwrap();
    let _tx = p.setup_tx_queue(0, 128).unwrap();
    let t = Instant::now();
    p.start().unwrap();
    assert!(t.elapsed() < pmd_ixgbe::LINK_WAIT + Duration::from_secs(1));
    assert!(!p.link().up);
    // The link comes back: the port sees it without a restart.
    m.set_link(true);
    let up = p.wait_link_up(Duration::from_secs(2));
    assert!(up.up, "link after set_link(true): {up}");
    assert_eq!(up.speed_mbps, 10_000);
    m.set_link(false);
    assert!(!p.link().up, "link flap reported");
    p.stop().unwrap();
}

#[test]
fn descriptors_with_rxe_are_counted_as_errors_and_dropped() {
    const N: u64 = 400;
    let m = model(
        Faults {
            rx_error_every: Some(4),
            ..Faults::default()
        },
        Some(N),
    );
    let mut p = port(&m, "rxe0");
    let pool = Mempool::create("fault-rxe", 2048, 0).unwrap();
    p.configure(&PortConf::default()).unwrap();
    let mut rx = p.setup_rx_queue(0, 512, &pool).unwrap();
    let _tx = p.setup_tx_queue(0, 128).unwrap();
    p.start().unwrap();
    let mut got = 0;
    let end = Instant::now() + Duration::from_secs(10);
    while p.stats().ipackets + p.stats().ierrors < N && Instant::now() < end {
        got += receive(&mut rx, N, 0);
    }
    let s = p.stats();
    assert_eq!(got, N * 3 / 4, "every 4th frame is bad");
    assert_eq!(s.ipackets, N * 3 / 4);
    assert_eq!(s.ierrors, N / 4, "bad frames counted: {s:?}");
    p.stop().unwrap();
}

#[test]
fn a_stalled_transmit_ring_fills_and_keeps_what_it_could_not_send() {
    let m = model(
        Faults {
            tx_stall: true,
            ..Faults::default()
        },
        None,
    );
    let mut p = port(&m, "stall0");
    let pool = Mempool::create("fault-stall", 1024, 0).unwrap();
    p.configure(&PortConf::default()).unwrap();
    let _rx = p.setup_rx_queue(0, 64, &pool).unwrap();
    let mut tx = p.setup_tx_queue(0, 64).unwrap();
    p.start().unwrap();
    let mut sent = 0;
    let mut b = PktBatch::new();
    for _ in 0..10 {
        while b.len() < 32 {
            let mut mb = pool.alloc().unwrap();
            mb.append(60).unwrap().fill(1);
            b.push(mb).unwrap();
        }
        sent += tx.tx_burst(&mut b);
    }
    assert_eq!(
        sent, 63,
        "a 64-slot ring takes 63 and no more while stalled"
    );
    assert_eq!(b.len(), 32, "the rest stays with the caller");
    assert_eq!(m.stats().tx_frames, 0);
    // Released: the device completes the ring and the queue takes packets again.
    m.set_tx_stall(false);
    let end = Instant::now() + Duration::from_secs(5);
    while !b.is_empty() && Instant::now() < end {
        tx.tx_burst(&mut b);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(b.is_empty(), "transmit resumed after the stall");
    let end = Instant::now() + Duration::from_secs(5);
    while m.stats().tx_frames < 95 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(m.stats().tx_frames, 95);
    p.stop().unwrap();
}

#[test]
fn a_reset_that_never_completes_fails_probe_within_a_bound() {
    let m = model(
        Faults {
            reset_hang: true,
            ..Faults::default()
        },
        None,
    );
    let t = Instant::now();
    let err = pmd_ixgbe::probe(m.backend(), "hang0")
        .unwrap_err()
        .to_string();
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(
        err.contains("hang0") && err.contains("did not happen"),
        "{err}"
    );
}
