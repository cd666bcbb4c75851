//! The forwarding loop one lcore runs.

use pmd_capture::CaptureTap;
use pmd_core::ethdev::{MacAddr, PortId, RxQueueHandle, TxQueueHandle};
use pmd_core::intr::{IdleSleeper, Slept};
use pmd_core::mbuf::PktBatch;
use pmd_core::{lcore, tsc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One rx queue and the tx queue its packets go out on.
pub struct Task {
    rx: RxQueueHandle,
    tx: TxQueueHandle,
    dst_port: PortId,
    /// Destination then source MAC, written over the first 12 bytes of each frame.
    macs: Option<[u8; 12]>,
    dropped: Arc<Vec<AtomicU64>>,
    /// `--pcap-capture` taps, if any: `None` keeps the default loop unchanged.
    capture: Option<Box<Taps>>,
}

/// Capture taps of one task: what its rx queue receives, what it hands to its tx queue.
struct Taps {
    rx: Option<CaptureTap>,
    tx: Option<CaptureTap>,
}

impl Task {
    /// A task forwarding from `rx` to `tx` (port `dst_port`, whose MAC is `dst_mac`).
    pub fn new(
        rx: RxQueueHandle,
        tx: TxQueueHandle,
        dst_port: PortId,
        dst_mac: MacAddr,
        mac_updating: bool,
        dropped: Arc<Vec<AtomicU64>>,
    ) -> Task {
        let macs = mac_updating.then(|| {
            let mut m = [0u8; 12];
            m[..6].copy_from_slice(&MacAddr([0x02, 0, 0, 0, 0, dst_port as u8]).0);
            m[6..].copy_from_slice(&dst_mac.0);
            m
        });
        Task {
            rx,
            tx,
            dst_port,
            macs,
            dropped,
            capture: None,
        }
    }

    /// The port this task receives on.
    pub fn rx_port(&self) -> PortId {
        self.rx.port()
    }

    /// Records what this task receives (`rx`) and what it transmits (`tx`, after the MAC
    /// rewrite) into captures.
    pub fn set_capture(&mut self, rx: Option<CaptureTap>, tx: Option<CaptureTap>) {
        self.capture = (rx.is_some() || tx.is_some()).then(|| Box::new(Taps { rx, tx }));
    }

    /// The PMD of this task's rx queue.
    pub fn rx_driver(&self) -> &'static str {
        self.rx.driver()
    }

    /// The port this task transmits on.
    pub fn dst_port(&self) -> PortId {
        self.dst_port
    }

    /// Sends up to `n` 64-byte frames (broadcast, EtherType 0x88b5, the local
    /// experimental type) on this task's tx queue; returns how many went out.
    pub fn send_first(&mut self, pool: &pmd_core::Mempool, n: u32) -> u32 {
        let mut sent = 0;
        let mut batch = PktBatch::new();
        let mut tries = 0;
        while sent < n && tries < 1000 {
            let want = ((n - sent) as usize).min(pmd_core::mbuf::DEFAULT_BURST);
            if pool.alloc_bulk(&mut batch, want).is_none() {
                break;
            }
            for m in batch.iter_mut() {
                let Some(f) = m.append(60) else { continue };
                f.fill(0);
                f[..6].fill(0xff);
                if let Some(macs) = &self.macs {
                    f[6..12].copy_from_slice(&macs[6..]);
                }
                f[12..14].copy_from_slice(&[0x88, 0xb5]);
            }
            if let Some(t) = self.capture.as_mut().and_then(|c| c.tx.as_mut()) {
                t.record(&batch);
            }
            sent += self.tx.tx_burst(&mut batch) as u32;
            batch.clear();
            tries += 1;
        }
        sent
    }

    /// One rx burst, MAC rewrite and tx burst; unsent packets are dropped and counted.
    /// Returns how many packets were received. With `CAPTURE`, also feeds the capture
    /// taps (without it, the loop is the same as before captures existed).
    #[inline(always)]
    fn poll<const CAPTURE: bool>(&mut self, batch: &mut PktBatch) -> usize {
        let n = self.rx.rx_burst(batch);
        if n == 0 {
            // Idle: let the tx queue flush anything it holds back.
            self.tx.tx_flush();
            return 0;
        }
        if CAPTURE {
            if let Some(t) = self.capture.as_mut().and_then(|c| c.rx.as_mut()) {
                t.record(batch);
            }
        }
        if let Some(macs) = &self.macs {
            for m in batch.iter_mut() {
                if let Some(hdr) = m.data_mut().get_mut(..12) {
                    hdr.copy_from_slice(macs);
                }
            }
        }
        if CAPTURE {
            if let Some(t) = self.capture.as_mut().and_then(|c| c.tx.as_mut()) {
                t.record(batch);
            }
        }
        self.tx.tx_burst(batch);
        if !batch.is_empty() {
            self.dropped[self.dst_port as usize].fetch_add(batch.len() as u64, Ordering::Relaxed);
            batch.clear();
        }
        n
    }
}

impl AsMut<RxQueueHandle> for Task {
    fn as_mut(&mut self) -> &mut RxQueueHandle {
        &mut self.rx
    }
}

/// Polls `tasks` round-robin until a stop is requested. `tick`, if given, is called with
/// the TSC once per loop and may ask the loop to stop by returning true. Gives the tasks
/// back, so their queues outlive the ports' stop (a device must stop before its queues
/// and their buffers go away). With `BUSY`, also returns the TSC ticks spent in polls
/// that received packets (the forwarding work, without idle polling). With `CAPTURE`,
/// tasks feed their `--pcap-capture` taps. With a `sleeper` (`--idle-sleep`), the lcore
/// sleeps on its queues' interrupts after that many passes without a packet.
pub fn run<const BUSY: bool, const CAPTURE: bool>(
    mut tasks: Vec<Task>,
    mut tick: Option<&mut dyn FnMut(u64, bool) -> bool>,
    mut sleeper: Option<&mut IdleSleeper>,
) -> (Vec<Task>, u64) {
    let mut batch = PktBatch::new();
    let mut busy = 0u64;
    // A port's link interrupt ended the last sleep: the tick looks at the links now.
    let mut link_event = false;
    while !lcore::stop_requested() {
        let mut got = 0;
        for t in tasks.iter_mut() {
            if BUSY {
                let t0 = tsc::rdtsc();
                let n = t.poll::<CAPTURE>(&mut batch);
                if n > 0 {
                    busy += tsc::rdtsc() - t0;
                }
                got += n;
            } else {
                got += t.poll::<CAPTURE>(&mut batch);
            }
        }
        if let Some(s) = sleeper.as_mut() {
            if s.after_pass(got) {
                match s.sleep(&mut tasks) {
                    Ok(Slept::Unsupported(i)) => eprintln!(
                        "l2fwd: port {} ({}) has no rx interrupts: this lcore polls",
                        tasks[i].rx_port(),
                        tasks[i].rx_driver()
                    ),
                    Ok(Slept::Link) => link_event = true,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!(
                            "l2fwd: sleeping on rx interrupts failed ({e}): this lcore polls"
                        );
                        sleeper = None;
                    }
                }
            }
        }
        if let Some(tick) = tick.as_mut() {
            if tick(tsc::rdtsc(), std::mem::take(&mut link_event)) {
                lcore::request_stop();
            }
        }
    }
    (tasks, busy)
}
