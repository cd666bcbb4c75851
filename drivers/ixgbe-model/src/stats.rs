//! The model's own counters (what happened on its wire and in its DMA engine), readable
//! at any time without touching the device's clear-on-read registers.

use crate::hw::RX_QUEUES;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the model's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// Frames the generator has sent onto the wire (delivered or dropped).
    pub generated: u64,
    /// Frames the generator still has to send.
    pub gen_pending: u64,
    /// Frames given to `inject`.
    pub injected: u64,
    /// Frames written to receive queues (with or without an injected error).
    pub rx_delivered: u64,
    /// Frames written to each receive queue (64 entries).
    pub rx_delivered_per_queue: Vec<u64>,
    /// Bytes of the frames written to receive queues (without CRC).
    pub rx_bytes: u64,
    /// Delivered frames written back with the RXE error bit (`rx_error_every`).
    pub rx_errors_injected: u64,
    /// Frames dropped by the destination-address filter.
    pub dropped_filter: u64,
    /// Frames dropped for want of a free descriptor (also counted in MPC0).
    pub dropped_no_desc: u64,
    /// Frames for a receive queue that is disabled, stopped by a fault, or while bus
    /// mastering is off (also counted in MPC0).
    pub dropped_queue_off: u64,
    /// Frames that arrived while the link was down (nothing is counted in hardware).
    pub dropped_link_down: u64,
    /// Frames that arrived while receive was disabled (RXCTRL.RXEN clear).
    pub dropped_rx_disabled: u64,
    /// Frames dropped for their length: undersize (RUC) or oversize (ROC, RLEC).
    pub dropped_length: u64,
    /// Frames the transmit path put on the wire.
    pub tx_frames: u64,
    /// Bytes of those frames (without CRC).
    pub tx_bytes: u64,
    /// Transmitted frames lost because the link was down.
    pub tx_link_down: u64,
    /// Device accesses refused by the IOMMU; each stops its queue.
    pub dma_faults: u64,
    /// Other device-side errors: bad ring setup, unsupported descriptors, oversized
    /// transmit frames, invalid generator settings.
    pub errors: u64,
    /// MSI-X messages delivered: signals written to a vector's eventfd.
    pub interrupts: u64,
    /// Interrupt causes that reached no eventfd: a receive queue's IVAR entry named a
    /// vector above 15 (EICR_EX is not modelled), or a message was sent on a vector
    /// `enable_irqs` did not enable.
    pub interrupts_unrouted: u64,
    /// Each SR-IOV virtual function's counters, VF 0 first (empty without VFs).
    pub vfs: Vec<VfStats>,
}

/// One virtual function's counters: its traffic and its mailbox, as the PF saw them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VfStats {
    /// Frames written to the VF's receive queue (VFGPRC counts them too).
    pub rx_packets: u64,
    /// Bytes of those frames (without CRC; VFGORC adds 4 per frame).
    pub rx_bytes: u64,
    /// Multicast frames among them (VFMPRC).
    pub rx_multicast: u64,
    /// Frames for the VF while it was not clear to send (before its RESET message, after
    /// a VF or PF reset).
    pub rx_dropped_not_ready: u64,
    /// Frames for the VF's queue while it was disabled, stopped by a fault or described
    /// no usable ring, or while the VF's bus mastering was off.
    pub rx_dropped_queue_off: u64,
    /// Frames for the VF's queue while it had no free descriptor.
    pub rx_dropped_no_desc: u64,
    /// Frames longer than the VF's frame size (SET_LPE; 1518 bytes with CRC, 1522
    /// tagged, until it sends one), or shorter than 64 bytes.
    pub rx_dropped_length: u64,
    /// Frames the VF's transmit queues put on the wire (VFGPTC).
    pub tx_packets: u64,
    /// Bytes of those frames (without CRC; VFGOTC adds 4 per frame).
    pub tx_bytes: u64,
    /// Requests the VF raised (REQ writes).
    pub mbx_requests: u64,
    /// Requests answered with ACK.
    pub mbx_acked: u64,
    /// Requests answered with NACK.
    pub mbx_nacked: u64,
    /// Requests never acknowledged (the `Silent` fault, or a PF reset in progress).
    pub mbx_unanswered: u64,
    /// Requests answered with garbage (the `Garbage` fault).
    pub mbx_garbage: u64,
    /// Requests the PF acknowledged and dropped unanswered because they already carried
    /// ACK or NACK (as Linux's PF does with a message it "already processed").
    pub mbx_invalid: u64,
    /// Messages the PF sent unasked (PF_CONTROL_MSG after a PF reset).
    pub pf_messages: u64,
    /// VF resets: VFCTRL.RST writes and function-level resets.
    pub resets: u64,
}

impl VfStats {
    /// All receive-side drops of the VF together.
    pub fn rx_dropped(&self) -> u64 {
        self.rx_dropped_not_ready
            + self.rx_dropped_queue_off
            + self.rx_dropped_no_desc
            + self.rx_dropped_length
    }
}

/// The live counters behind [`VfStats`], plus the octet counts with CRC the VF's
/// statistics registers show.
#[derive(Debug, Default)]
pub(crate) struct VfCounters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    pub rx_octets: AtomicU64,
    pub rx_multicast: AtomicU64,
    pub rx_dropped_not_ready: AtomicU64,
    pub rx_dropped_queue_off: AtomicU64,
    pub rx_dropped_no_desc: AtomicU64,
    pub rx_dropped_length: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub tx_octets: AtomicU64,
    pub mbx_requests: AtomicU64,
    pub mbx_acked: AtomicU64,
    pub mbx_nacked: AtomicU64,
    pub mbx_unanswered: AtomicU64,
    pub mbx_garbage: AtomicU64,
    pub mbx_invalid: AtomicU64,
    pub pf_messages: AtomicU64,
    pub resets: AtomicU64,
}

impl VfCounters {
    /// A snapshot (each counter read once).
    pub fn snapshot(&self) -> VfStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        VfStats {
            rx_packets: g(&self.rx_packets),
            rx_bytes: g(&self.rx_bytes),
            rx_multicast: g(&self.rx_multicast),
            rx_dropped_not_ready: g(&self.rx_dropped_not_ready),
            rx_dropped_queue_off: g(&self.rx_dropped_queue_off),
            rx_dropped_no_desc: g(&self.rx_dropped_no_desc),
            rx_dropped_length: g(&self.rx_dropped_length),
            tx_packets: g(&self.tx_packets),
            tx_bytes: g(&self.tx_bytes),
            mbx_requests: g(&self.mbx_requests),
            mbx_acked: g(&self.mbx_acked),
            mbx_nacked: g(&self.mbx_nacked),
            mbx_unanswered: g(&self.mbx_unanswered),
            mbx_garbage: g(&self.mbx_garbage),
            mbx_invalid: g(&self.mbx_invalid),
            pf_messages: g(&self.pf_messages),
            resets: g(&self.resets),
        }
    }
}

impl ModelStats {
    /// All receive-side drops together.
    pub fn rx_dropped(&self) -> u64 {
        self.dropped_filter
            + self.dropped_no_desc
            + self.dropped_queue_off
            + self.dropped_link_down
            + self.dropped_rx_disabled
            + self.dropped_length
    }
}

/// The live counters behind [`ModelStats`].
#[derive(Debug)]
pub(crate) struct Counters {
    pub generated: AtomicU64,
    pub gen_pending: AtomicU64,
    pub injected: AtomicU64,
    pub rx_delivered: AtomicU64,
    pub rx_per_queue: Vec<AtomicU64>,
    pub rx_bytes: AtomicU64,
    pub rx_errors_injected: AtomicU64,
    pub dropped_filter: AtomicU64,
    pub dropped_no_desc: AtomicU64,
    pub dropped_queue_off: AtomicU64,
    pub dropped_link_down: AtomicU64,
    pub dropped_rx_disabled: AtomicU64,
    pub dropped_length: AtomicU64,
    pub tx_frames: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub tx_link_down: AtomicU64,
    pub dma_faults: AtomicU64,
    pub errors: AtomicU64,
    pub interrupts: AtomicU64,
    pub interrupts_unrouted: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        let z = || AtomicU64::new(0);
        Counters {
            generated: z(),
            gen_pending: z(),
            injected: z(),
            rx_delivered: z(),
            rx_per_queue: (0..RX_QUEUES).map(|_| z()).collect(),
            rx_bytes: z(),
            rx_errors_injected: z(),
            dropped_filter: z(),
            dropped_no_desc: z(),
            dropped_queue_off: z(),
            dropped_link_down: z(),
            dropped_rx_disabled: z(),
            dropped_length: z(),
            tx_frames: z(),
            tx_bytes: z(),
            tx_link_down: z(),
            dma_faults: z(),
            errors: z(),
            interrupts: z(),
            interrupts_unrouted: z(),
        }
    }
}

/// Adds `n` to a counter.
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    /// A consistent-enough snapshot (each counter read once).
    pub fn snapshot(&self) -> ModelStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ModelStats {
            generated: g(&self.generated),
            gen_pending: g(&self.gen_pending),
            injected: g(&self.injected),
            rx_delivered: g(&self.rx_delivered),
            rx_delivered_per_queue: self.rx_per_queue.iter().map(g).collect(),
            rx_bytes: g(&self.rx_bytes),
            rx_errors_injected: g(&self.rx_errors_injected),
            dropped_filter: g(&self.dropped_filter),
            dropped_no_desc: g(&self.dropped_no_desc),
            dropped_queue_off: g(&self.dropped_queue_off),
            dropped_link_down: g(&self.dropped_link_down),
            dropped_rx_disabled: g(&self.dropped_rx_disabled),
            dropped_length: g(&self.dropped_length),
            tx_frames: g(&self.tx_frames),
            tx_bytes: g(&self.tx_bytes),
            tx_link_down: g(&self.tx_link_down),
            dma_faults: g(&self.dma_faults),
            errors: g(&self.errors),
            interrupts: g(&self.interrupts),
            interrupts_unrouted: g(&self.interrupts_unrouted),
            vfs: Vec::new(),
        }
    }
}
