//! The traffic generator: the link partner sending numbered frames into the receive
//! path, as fast as the receive queues take them.

use crate::conf::Generator;
use crate::device::Device;
use crate::engine::Engine;
use crate::rx;
use crate::stats::bump;
use std::sync::atomic::Ordering;

/// Frames sent per pass at most (bounds how long the engine lock is held).
const BUDGET: usize = 256;

/// A generator in progress.
#[derive(Debug)]
pub(crate) struct GenState {
    conf: Generator,
    next: u64,
    /// A frame that found its queue full and waits for a descriptor.
    waiting: Option<Vec<u8>>,
}

/// Arms `g`, replacing any generator in progress.
pub(crate) fn start(dev: &Device, engine: &mut Engine, g: Generator) {
    dev.counters.gen_pending.store(g.frames, Ordering::Relaxed);
    engine.gen = Some(GenState {
        conf: g,
        next: 0,
        waiting: None,
    });
}

/// Sends what the receive path accepts; returns the number of frames sent.
pub(crate) fn poll(dev: &Device, engine: &mut Engine) -> usize {
    let Some(mut st) = engine.gen.take() else {
        return 0;
    };
    let mut sent = 0;
    // The partner sends nothing while the link is down.
    while st.next < st.conf.frames && sent < BUDGET && dev.link_is_up() {
        let frame = st.waiting.take().unwrap_or_else(|| st.conf.frame(st.next));
        let taken = if st.conf.drop_when_full {
            Some(rx::receive(dev, engine, &frame))
        } else {
            rx::receive_or_wait(dev, engine, &frame)
        };
        if taken.is_none() {
            st.waiting = Some(frame);
            break;
        }
        st.next += 1;
        sent += 1;
        bump(&dev.counters.generated, 1);
        dev.counters.gen_pending.fetch_sub(1, Ordering::Relaxed);
    }
    if st.next < st.conf.frames {
        engine.gen = Some(st);
    }
    sent
}
