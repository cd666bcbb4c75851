//! The model thread and the data-path state it works on: one pass runs the transmit
//! queues and the generator; between passes the thread spins briefly, then yields, then
//! parks (woken early by doorbell writes), so an idle model costs almost no CPU.

use crate::device::Device;
use crate::gen::GenState;
use crate::hw::{RX_QUEUES, TX_QUEUES};
use crate::{gen, irq, lock, tx};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Idle passes spent spinning before yielding.
const SPIN_PASSES: u32 = 64;
/// Idle passes (in total) before parking.
const YIELD_PASSES: u32 = 128;
/// Idle passes (in total) parked briefly before parking longer.
const SHORT_PARK_PASSES: u32 = 1024;
const SHORT_PARK: Duration = Duration::from_micros(100);
const LONG_PARK: Duration = Duration::from_millis(1);

/// A transmit queue's progress through a frame spread over descriptors.
#[derive(Debug, Default)]
pub(crate) struct TxQueueState {
    /// The frame gathered so far (up to EOP).
    pub pending: Vec<u8>,
    /// The frame grew past the maximum: drop it at EOP.
    pub oversize: bool,
    /// Stopped by a fault until the queue is disabled and enabled again.
    pub stopped: bool,
    /// Offloads asked for by the first data descriptor of the frame in progress.
    pub req: Option<crate::offload::Request>,
    /// The two context slots (7.2.3.2.3, IDX 0 and 1).
    pub ctx: [Option<crate::offload::Ctx>; 2],
}

/// Everything the data path keeps between frames.
#[derive(Debug)]
pub(crate) struct Engine {
    /// Per rx queue: stopped by a fault (until re-enabled).
    pub rx_stopped: Vec<bool>,
    /// Per tx queue state.
    pub tx: Vec<TxQueueState>,
    /// Frames delivered so far (for `rx_error_every`).
    pub rx_seen: u64,
    /// The running generator, if any.
    pub gen: Option<GenState>,
    /// Receive queues (bit q: queue q) that wrote descriptors back since the last time
    /// their interrupt causes were raised. Whoever releases the engine lock after a
    /// delivery takes them and raises them ([`irq::rx_written_back`]), so no eventfd is
    /// signalled under this lock.
    pub rx_written: u64,
}

impl Engine {
    /// No queue stopped, nothing pending, no generator.
    pub fn new() -> Engine {
        Engine {
            rx_stopped: vec![false; RX_QUEUES],
            tx: (0..TX_QUEUES).map(|_| TxQueueState::default()).collect(),
            rx_seen: 0,
            gen: None,
            rx_written: 0,
        }
    }

    /// A device reset: queue state goes, the generator (the link partner) stays.
    pub fn reset(&mut self) {
        self.rx_stopped.iter_mut().for_each(|s| *s = false);
        self.rx_written = 0;
        self.tx
            .iter_mut()
            .for_each(|t| *t = TxQueueState::default());
    }

    /// RXDCTL.ENABLE changed: a fault stop ends.
    pub fn rx_queue_toggled(&mut self, q: usize) {
        if let Some(s) = self.rx_stopped.get_mut(q) {
            *s = false;
        }
    }

    /// TXDCTL.ENABLE changed: a half-gathered frame and a fault stop end.
    pub fn tx_queue_toggled(&mut self, q: usize) {
        if let Some(t) = self.tx.get_mut(q) {
            *t = TxQueueState::default();
        }
    }
}

/// One pass over the data path; returns whether anything was done.
pub(crate) fn pass(dev: &Device) -> bool {
    dev.tick_if_armed();
    crate::pfmbx::tick(dev);
    let keep = dev.wire.wants_frames();
    let mut out = Vec::new();
    let (work, written) = {
        let mut engine = lock(&dev.engine);
        let work =
            tx::poll(dev, &mut engine, keep.then_some(&mut out)) + gen::poll(dev, &mut engine);
        (work, std::mem::take(&mut engine.rx_written))
    };
    // Once per pass: the write-backs of the pass are in memory already.
    irq::rx_written_back(dev, written);
    dev.wire.emit(out);
    work > 0
}

/// The model thread: passes until told to stop.
pub(crate) fn run(dev: Arc<Device>) {
    let mut idle = 0u32;
    while !dev.stop.load(Ordering::Acquire) {
        if pass(&dev) {
            idle = 0;
            continue;
        }
        idle = idle.saturating_add(1);
        if idle < SPIN_PASSES {
            std::hint::spin_loop();
        } else if idle < YIELD_PASSES {
            std::thread::yield_now();
        } else if idle < SHORT_PARK_PASSES {
            std::thread::park_timeout(SHORT_PARK);
        } else {
            std::thread::park_timeout(LONG_PARK);
        }
    }
}
