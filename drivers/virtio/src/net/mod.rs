//! The virtio-net PMD over any [`Transport`](crate::transport::Transport): feature
//! negotiation, receive and transmit queues on split
//! ([`SplitQueue`](crate::virtqueue::SplitQueue)) or packed
//! ([`PackedQueue`](crate::virtqueue::PackedQueue)) virtqueues, and the ethdev
//! [`Device`](pmd_core::ethdev::Device) glue.
//!
//! - [`device`]: [`VirtioNet`], the ethdev device: negotiation, queue setup, start and
//!   stop, the control commands;
//! - `rx` and `tx`: the receive and transmit queues (reached through the device's
//!   `setup_rx_queue` / `setup_tx_queue`); rx queues have interrupts
//!   ([`pmd_core::intr`]) when the transport gives the queue's used-buffer eventfd
//!   ([`Transport::call_source`](crate::transport::Transport::call_source): virtio-user);
//! - [`hdr`]: the virtio-net header a device writes in front of every received frame,
//!   validated before use;
//! - [`ctrl`]: the control virtqueue, for devices that serve one;
//! - `watch`: the link of a device whose transport can reconnect (virtio-user): the
//!   thread that notices the device went away and hands a new one the rings.
//!
//! Ring layout: split by default; packed when [`NetOptions::packed_vq`] asks for it and the
//! device offers `VIRTIO_F_RING_PACKED` (otherwise split, with a warning). The rx/tx queues
//! are generic over [`Virtqueue`], so either layout is statically dispatched per packet.
//!
//! Memory: the rings of all queues live in one segment allocated at `configure`; buffers
//! live in mempool segments. Everything must exist before `start` (the vhost-user
//! transport sends its memory table then): see the crate documentation.

pub mod ctrl;
pub mod device;
pub mod features;
pub mod hdr;
mod rx;
mod tx;
mod watch;

pub use device::VirtioNet;
pub use features::*;
pub use hdr::{net_hdr_len, NET_HDR_LEN, NET_HDR_LEN_LEGACY};

use crate::transport::{CallSource, Notifier};
use crate::virtqueue::Virtqueue;
use hdr::NetCounters;
use pmd_core::ethdev::MacAddr;
use pmd_core::mbuf::{PktBatch, RawMbuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Largest frame the PMD takes: a jumbo frame with room to spare (DPDK's virtio allows
/// more; this is what is tested).
pub const MAX_FRAME: u32 = 9728;

/// Most descriptors (segments) one transmitted packet may take.
pub const TX_SEG_MAX: u16 = 64;

/// Settings of a virtio-net device that do not come from the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConf {
    /// Driver name reported in [`DevInfo`](pmd_core::ethdev::DevInfo) (`net_virtio_user`
    /// or `net_virtio`).
    pub driver: &'static str,
    /// Device name (the vdev name).
    pub name: String,
    /// Descriptors per queue (the most a queue may use; a power of two).
    pub queue_size: u16,
    /// Queue pairs the application may configure.
    pub queue_pairs: u16,
    /// MAC address to use when the transport has none.
    pub mac: MacAddr,
}

/// Driver options that change what is negotiated (vdev arguments beyond [`NetConf`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetOptions {
    /// Ask for packed virtqueues (`VIRTIO_F_RING_PACKED`; DPDK's `packed_vq=1`). Used when
    /// the device offers them; split otherwise.
    pub packed_vq: bool,
}

/// What a device hands each of its receive and transmit queues at setup.
struct QueueCtx {
    /// Negotiated feature bits.
    features: u64,
    /// Length of the virtio-net header on this device.
    hdr_len: usize,
    /// Descriptors carry process addresses (vhost-user), else IOVAs (PCI).
    va: bool,
    /// The queue's doorbell.
    notifier: Arc<dyn Notifier>,
    /// What the device signals for used buffers, if the transport has it (rx interrupts;
    /// transmit queues ignore it).
    call: Option<Arc<dyn CallSource>>,
    /// True while the device may touch queue memory; a queue dropped meanwhile leaks its
    /// in-flight buffers rather than hand them back to the pool.
    active: Arc<AtomicBool>,
    /// Header errors and transmit fallbacks of the port.
    counters: Arc<NetCounters>,
}

/// Frees the buffers a queue still owns, unless the device may still be using them.
fn release<Q: Virtqueue>(vq: &Q, bufs: &mut [RawMbuf], active: &AtomicBool, what: &str) {
    let ids: Vec<u16> = vq.in_flight_ids();
    if ids.is_empty() {
        return;
    }
    if active.load(Ordering::Acquire) {
        tracing::warn!(
            queue = vq.index(),
            buffers = ids.len(),
            "{what} queue dropped while the device runs: leaking its in-flight buffers \
             (stop the port first)"
        );
        return;
    }
    let mut b = PktBatch::new();
    for id in ids {
        let raw = std::mem::replace(&mut bufs[id as usize], RawMbuf::NULL);
        if raw.is_null() {
            continue;
        }
        if b.spare() == 0 {
            b.clear();
        }
        b.spare_raw()[0] = raw;
        // SAFETY: the queue owned this buffer (taken out of its shadow array just now).
        unsafe { b.commit_raw(1) };
    }
}
