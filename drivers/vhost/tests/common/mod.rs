//! Shared by the integration tests: ports' queues, sending a set of frames through one
//! queue pair and checking they arrive on the other side byte for byte and in order, and
//! reading stats and xstats.

#![allow(dead_code)]

use pmd_core::ethdev::{RxQueueHandle, TxQueueHandle};
use pmd_core::mbuf::PktBatch;
use pmd_core::{Eal, Mbuf, Mempool};
use std::time::{Duration, Instant};

/// The EAL of each test claims lcore 0: tests of one file take turns. Hold the guard
/// until the EAL is dropped.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a transfer may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Why the tests that run our EAL on hugepages cannot run here.
pub fn hugepages_reason() -> Option<String> {
    pmd_testkit::root_missing("hugepages").or_else(|| pmd_testkit::hugepages_missing(64))
}

/// Sends `frames` on `tx` and receives them on `rx` (polling `also` in between, e.g. a
/// forwarder in the middle); every frame must arrive once, in order, byte-exact.
pub fn transfer(
    what: &str,
    frames: &[Vec<u8>],
    pool: &Mempool,
    tx: &mut TxQueueHandle,
    rx: &mut RxQueueHandle,
    also: impl FnMut(),
) {
    transfer_expect(what, frames, frames, pool, tx, rx, also)
}

/// [`transfer`], where frame `i` must come back as `expect[i]` (e.g. with its MAC
/// addresses swapped by a peer).
pub fn transfer_expect(
    what: &str,
    frames: &[Vec<u8>],
    expect: &[Vec<u8>],
    pool: &Mempool,
    tx: &mut TxQueueHandle,
    rx: &mut RxQueueHandle,
    mut also: impl FnMut(),
) {
    let deadline = Instant::now() + PATIENCE;
    let (mut sent, mut got) = (0usize, 0usize);
    let mut out = PktBatch::new();
    let mut inb = PktBatch::new();
    while got < frames.len() {
        assert!(
            Instant::now() < deadline,
            "{what}: timed out: sent {sent}, received {got} of {}",
            frames.len()
        );
        while sent < frames.len() && out.len() < 32 {
            let m = Mbuf::from_slice(&frames[sent], pool).expect("pool");
            out.push(m).unwrap();
            sent += 1;
        }
        tx.tx_burst(&mut out);
        also();
        inb.clear();
        rx.rx_burst(&mut inb);
        for m in inb.iter() {
            assert!(got < frames.len(), "{what}: more frames than sent");
            let want = &expect[got];
            let have = m.to_vec();
            assert_eq!(
                have.len(),
                want.len(),
                "{what}: frame {got} length ({} segments)",
                m.nb_segs()
            );
            assert!(have == *want, "{what}: frame {got} bytes differ");
            got += 1;
        }
        // Frames the tx queue did not take are sent again next round (in order).
        sent -= out.len();
        out.clear();
    }
}

/// Port `p`'s xstat `name`.
pub fn xstat(eal: &Eal, p: usize, name: &str) -> u64 {
    eal.ports()[p]
        .xstats()
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("port {p}: no xstat {name}"))
        .1
}

/// The frame as a MAC-swapping peer returns it.
pub fn swapped(f: &[u8]) -> Vec<u8> {
    let mut s = f.to_vec();
    s[..6].copy_from_slice(&f[6..12]);
    s[6..12].copy_from_slice(&f[..6]);
    s
}
