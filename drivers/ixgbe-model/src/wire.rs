//! The model's wire out: transmitted frames go to an optional sink callback and into a
//! bounded capture of the most recent frames.

use crate::lock;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// A callback that receives every transmitted frame (without CRC). It runs on the model
/// thread, outside the model's locks, so it may call back into the model (e.g. `inject`
/// for a loopback). A sink that holds a model handle keeps the model (and its thread)
/// alive until it is removed with `set_sink(None)`.
pub type Sink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Where transmitted frames go.
pub(crate) struct Wire {
    capture: Mutex<VecDeque<Vec<u8>>>,
    limit: usize,
    sink: Mutex<Option<Sink>>,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire").field("limit", &self.limit).finish()
    }
}

impl Wire {
    /// A wire keeping the last `limit` frames.
    pub fn new(limit: usize) -> Wire {
        Wire {
            capture: Mutex::new(VecDeque::new()),
            limit,
            sink: Mutex::new(None),
        }
    }

    /// Whether frames need to be copied out at all.
    pub fn wants_frames(&self) -> bool {
        self.limit > 0 || lock(&self.sink).is_some()
    }

    /// Replaces the sink.
    pub fn set_sink(&self, sink: Option<Sink>) {
        *lock(&self.sink) = sink;
    }

    /// Hands frames to the sink and the capture.
    pub fn emit(&self, frames: Vec<Vec<u8>>) {
        if frames.is_empty() {
            return;
        }
        let sink = lock(&self.sink).clone();
        if let Some(sink) = sink {
            for f in &frames {
                sink(f);
            }
        }
        if self.limit == 0 {
            return;
        }
        let mut cap = lock(&self.capture);
        for f in frames {
            if cap.len() == self.limit {
                cap.pop_front();
            }
            cap.push_back(f);
        }
    }

    /// The captured frames, oldest first.
    pub fn captured(&self) -> Vec<Vec<u8>> {
        lock(&self.capture).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn keeps_the_last_frames_and_feeds_the_sink() {
        let w = Wire::new(2);
        assert!(w.wants_frames());
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        w.set_sink(Some(Arc::new(move |f: &[u8]| {
            s.fetch_add(f.len(), Ordering::Relaxed);
        })));
        w.emit(vec![vec![1], vec![2, 2], vec![3, 3, 3]]);
        assert_eq!(w.captured(), vec![vec![2, 2], vec![3, 3, 3]]);
        assert_eq!(seen.load(Ordering::Relaxed), 6);
        let none = Wire::new(0);
        assert!(!none.wants_frames());
        none.emit(vec![vec![1]]);
        assert!(none.captured().is_empty());
    }
}
