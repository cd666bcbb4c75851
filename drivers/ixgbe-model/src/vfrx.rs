//! Receive to SR-IOV virtual functions, as the 82599's pool selection does it for a
//! Linux PF's settings (7.10.3.3, VMDq pools): a unicast frame to a VF's address goes to
//! that VF only; a broadcast frame goes to every VF that is clear to send, and a
//! multicast frame to those whose mode and multicast hashes take it, as well as to the
//! PF. A VF's frames land in its receive queue 0 (no RSS), if it is clear to send and
//! the frame fits its frame size; the ring handling is the PF's ([`crate::rx`]).

use crate::conf::MacAddr;
use crate::device::Device;
use crate::engine::Engine;
use crate::hw::{CRC_LEN, MIN_FRAME};
use crate::lock;
use crate::packet::parse;
use crate::rss::NO_RSS;
use crate::rx::{ring_route, take, Route, RxOutcome};
use crate::stats::bump;

/// The destination address of `frame`, if it has one.
fn dst(frame: &[u8]) -> Option<MacAddr> {
    frame.get(..6)?.try_into().ok()
}

/// The VF whose address `frame` is sent to (unicast only), if any.
pub(crate) fn unicast_owner(dev: &Device, frame: &[u8]) -> Option<u8> {
    if dev.vfs.list.is_empty() {
        return None;
    }
    let dst = dst(frame)?;
    if dst[0] & 1 != 0 {
        return None;
    }
    dev.vfs
        .list
        .iter()
        .find(|vf| lock(&vf.core).pf.mac == Some(dst))
        .map(|vf| vf.index)
}

/// Where a frame for VF `vf` goes: the link must be up, the VF clear to send and its
/// bus mastering on, and the frame must fit its frame size; then its queue 0 decides.
pub(crate) fn route(dev: &Device, engine: &Engine, vf: u8, frame: &[u8]) -> Route {
    use RxOutcome::*;
    let Some(v) = dev.vfs.get(vf) else {
        return Route::Drop(Filtered, None);
    };
    if !dev.link_is_up() {
        return Route::Drop(LinkDown, None);
    }
    let parsed = parse(frame);
    let wire_len = frame.len() + CRC_LEN;
    if wire_len < MIN_FRAME {
        return Route::Drop(Undersize, Some(vf));
    }
    let (cts, max) = {
        let core = lock(&v.core);
        (core.pf.cts, core.pf.max_frame(parsed.vlan))
    };
    if !cts {
        return Route::Drop(VfNotReady { vf }, Some(vf));
    }
    if wire_len > max {
        return Route::Drop(Oversize, Some(vf));
    }
    let queue = v.queue(0);
    if !v.dma_allowed(dev) {
        return Route::Drop(QueueOff { queue }, Some(vf));
    }
    ring_route(dev, engine, frame, queue, parsed, NO_RSS, Some(vf))
}

/// Hands a broadcast or multicast frame to every VF that takes it (delivered or dropped
/// and counted per VF). Nothing happens while the link is down: the frame never came.
pub(crate) fn replicate(dev: &Device, engine: &mut Engine, frame: &[u8]) {
    if dev.vfs.list.is_empty() {
        return;
    }
    let Some(dst) = dst(frame) else {
        return;
    };
    if dst[0] & 1 == 0 || !dev.link_is_up() {
        return;
    }
    for vf in &dev.vfs.list {
        if !lock(&vf.core).pf.takes_group(&dst) {
            continue;
        }
        let r = route(dev, engine, vf.index, frame);
        take(dev, engine, frame, r);
    }
}

/// Counts a frame dropped on its way to VF `vf`, in the VF's counters.
pub(crate) fn account_drop(dev: &Device, engine: &mut Engine, vf: u8, o: RxOutcome) -> RxOutcome {
    let Some(v) = dev.vfs.get(vf) else {
        return o;
    };
    let c = &v.counters;
    match o {
        RxOutcome::VfNotReady { .. } => bump(&c.rx_dropped_not_ready, 1),
        RxOutcome::Undersize | RxOutcome::Oversize => bump(&c.rx_dropped_length, 1),
        RxOutcome::QueueOff { .. } => bump(&c.rx_dropped_queue_off, 1),
        RxOutcome::BadRing { queue } => {
            if let Some(s) = engine.rx_stopped.get_mut(queue) {
                *s = true;
            }
            bump(&c.rx_dropped_queue_off, 1);
            bump(&dev.counters.errors, 1);
        }
        RxOutcome::NoDescriptor { .. } => bump(&c.rx_dropped_no_desc, 1),
        _ => {}
    }
    o
}

/// Counts a frame of `len` bytes (without CRC) to `dst` written to VF `vf`'s queue.
pub(crate) fn count_delivered(dev: &Device, vf: u8, len: usize, dst: &MacAddr) {
    let Some(v) = dev.vfs.get(vf) else {
        return;
    };
    let c = &v.counters;
    bump(&c.rx_packets, 1);
    bump(&c.rx_bytes, len as u64);
    bump(&c.rx_octets, (len + CRC_LEN) as u64);
    if dst[0] & 1 != 0 && *dst != [0xff; 6] {
        bump(&c.rx_multicast, 1);
    }
}
