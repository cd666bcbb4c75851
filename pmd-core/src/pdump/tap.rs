//! Where captures meet the data path: each port has a [`PortTap`] that holds the port's
//! capture [`Session`], if any; each queue handle has a [`QueueTap`] that notices a new
//! or ended session at its next burst (one relaxed load of the tap's generation per
//! burst while nothing changes) and then writes the burst's packets into its ring.

use super::bpf::Filter;
use super::ring::{Capturable, Producer, RingSet};
use crate::mbuf::{Mbuf, BATCH_CAPACITY};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Which way packets go through a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Received (`rx_burst`).
    Rx,
    /// Sent (`tx_burst`: the packets the PMD took).
    Tx,
}

impl Dir {
    /// `rx` or `tx`.
    pub fn name(self) -> &'static str {
        match self {
            Dir::Rx => "rx",
            Dir::Tx => "tx",
        }
    }
}

/// One capture of one port: its rings and what to keep.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) set: Arc<RingSet>,
    /// Rings of the rx queues (`0..rx`), then of the tx queues (`rx..rx + tx`); 0 for a
    /// direction not captured.
    pub(crate) rx: u16,
    pub(crate) tx: u16,
    pub(crate) snaplen: u32,
    pub(crate) filter: Option<Filter>,
}

impl Session {
    /// The ring of queue `q` in direction `dir`, if captured.
    fn ring(&self, dir: Dir, q: u16) -> Option<usize> {
        match dir {
            Dir::Rx if q < self.rx => Some(usize::from(q)),
            Dir::Tx if q < self.tx => Some(usize::from(self.rx) + usize::from(q)),
            _ => None,
        }
    }
}

/// A port's capture point: shared by the port, its queue handles and the capture server.
#[derive(Debug)]
pub struct PortTap {
    id: u16,
    name: String,
    /// Bumped after every change of `session`.
    gen: AtomicU32,
    session: Mutex<Option<Arc<Session>>>,
    /// Configured queues: rx in the high half, tx in the low.
    queues: AtomicU32,
}

impl PortTap {
    pub(crate) fn new(id: u16, name: &str) -> PortTap {
        PortTap {
            id,
            name: name.to_string(),
            gen: AtomicU32::new(0),
            session: Mutex::new(None),
            queues: AtomicU32::new(0),
        }
    }

    /// The port's id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The port's device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Configured rx and tx queues.
    pub fn queues(&self) -> (u16, u16) {
        let q = self.queues.load(Ordering::Relaxed);
        ((q >> 16) as u16, q as u16)
    }

    pub(crate) fn set_queues(&self, rx: u16, tx: u16) {
        self.queues
            .store(u32::from(rx) << 16 | u32::from(tx), Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Session>>> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs `s` unless a capture is running already (false then).
    pub(crate) fn start(&self, s: Arc<Session>) -> bool {
        {
            let mut cur = self.lock();
            if cur.is_some() {
                return false;
            }
            *cur = Some(s);
        }
        self.gen.fetch_add(1, Ordering::Release);
        true
    }

    /// Ends the running capture: queues stop writing at their next burst.
    pub(crate) fn stop(&self) {
        self.lock().take();
        self.gen.fetch_add(1, Ordering::Release);
    }

    /// Whether a capture is running.
    pub fn capturing(&self) -> bool {
        self.lock().is_some()
    }
}

/// A queue handle's view of its port's capture.
#[derive(Debug)]
pub(crate) struct QueueTap {
    point: Arc<PortTap>,
    dir: Dir,
    queue: u16,
    gen: u32,
    active: Option<Box<Active>>,
}

/// A running capture as one queue writes it.
#[derive(Debug)]
struct Active {
    session: Arc<Session>,
    producer: Producer,
}

impl Capturable for Mbuf {
    #[inline]
    fn wire_len(&self) -> usize {
        self.len()
    }

    /// Every segment of a chain, up to `n` bytes.
    #[inline]
    fn copy_out(&self, n: usize, put: &mut dyn FnMut(&[u8])) {
        let mut left = n;
        for seg in self.segments() {
            if left == 0 {
                break;
            }
            let piece = &seg[..seg.len().min(left)];
            put(piece);
            left -= piece.len();
        }
    }
}

impl QueueTap {
    pub(crate) fn new(point: Arc<PortTap>, dir: Dir, queue: u16) -> QueueTap {
        QueueTap {
            point,
            dir,
            queue,
            // Different from any generation, so the first burst looks.
            gen: u32::MAX,
            active: None,
        }
    }

    /// Whether a capture of this queue runs (after noticing a change of the port's).
    #[inline(always)]
    pub(crate) fn on(&mut self) -> bool {
        let g = self.point.gen.load(Ordering::Relaxed);
        if g != self.gen {
            self.refresh(g);
        }
        self.active.is_some()
    }

    #[cold]
    fn refresh(&mut self, g: u32) {
        self.gen = g;
        let session = self.point.lock().clone();
        self.active = session.and_then(|s| {
            let ring = s.ring(self.dir, self.queue)?;
            Some(Box::new(Active {
                producer: Producer::new(s.set.clone(), ring),
                session: s,
            }))
        });
    }

    /// Copies `pkts` (received, or about to be sent) into the ring, unpublished; then
    /// [`QueueTap::commit`] publishes those that count. Call only after [`QueueTap::on`].
    #[inline]
    pub(crate) fn stage(&mut self, pkts: &[Mbuf]) {
        let Some(a) = self.active.as_deref_mut() else {
            return;
        };
        let s = &*a.session;
        a.producer.stage(pkts, now_ns, s.snaplen, |m| {
            s.filter.as_ref().is_none_or(|f| f.matches(m))
        });
    }

    /// Publishes the first `n` staged packets.
    #[inline]
    pub(crate) fn commit(&mut self, n: usize) {
        if let Some(a) = self.active.as_deref_mut() {
            a.producer.commit(n.min(BATCH_CAPACITY));
        }
    }
}

/// Nanoseconds since the Unix epoch (the vDSO's clock: no system call): the time base of
/// the records, which the capture tool also uses for its statistics.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
