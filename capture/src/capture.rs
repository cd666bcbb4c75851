//! [`Capture`]: records the packets that pass a point of any app's data path (an rx or tx
//! burst) into a pcap file, without file I/O on the data path.
//!
//! A [`CaptureTap`] copies each burst's packets into buffers of the capture's own mempool
//! (bulk allocation, one copy per packet, one timestamp per burst) and hands the copies to
//! a writer thread through a bounded lock-free channel; the writer thread writes them to
//! the file and frees them. When the channel or the pool is full the burst is not recorded
//! and counted as dropped: the data path never waits for the disk.
//!
//! ```no_run
//! # fn demo(rx: &mut pmd_core::ethdev::RxQueueHandle) -> pmd_core::Result<()> {
//! let cap = pmd_capture::Capture::create("port0.pcap")?;
//! let mut tap = cap.tap();                  // one per lcore
//! let mut batch = pmd_core::PktBatch::new();
//! rx.rx_burst(&mut batch);
//! tap.record(&batch);                       // copies, never blocks
//! drop(tap);
//! let stats = cap.finish()?;                // flushes and closes the file
//! println!("{} packets written, {} dropped", stats.written, stats.dropped);
//! # Ok(()) }
//! ```

use crate::writer::{now, FileWriter};
use pmd_core::error::{Error, Result};
use pmd_core::mbuf::{Mbuf, PktBatch, BATCH_CAPACITY};
use pmd_core::mempool::{Mempool, MempoolConfig};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the writer thread sleeps when there is nothing to write.
const IDLE_SLEEP: Duration = Duration::from_micros(500);

/// Sizes of a capture's buffers.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    /// Packet copies in flight (the capture mempool's size).
    pub buffers: u32,
    /// Bursts in flight (the channel's capacity).
    pub bursts: usize,
    /// Bytes kept of each packet (longer ones are truncated; the record keeps the
    /// original length). Packets larger than one buffer of the capture's pool are copied
    /// as chains, so the default keeps every packet whole.
    pub snaplen: u16,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            buffers: 8191,
            bursts: 1024,
            snaplen: u16::MAX,
        }
    }
}

/// Counts of one capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packets handed to the writer thread.
    pub captured: u64,
    /// Packets not recorded: the channel or the buffer pool was full.
    pub dropped: u64,
    /// Packets written to the file.
    pub written: u64,
}

/// One burst on its way to the writer: copies, their original lengths, a timestamp.
struct Chunk {
    ts: Duration,
    pkts: PktBatch,
    orig: [u32; BATCH_CAPACITY],
}

/// A tap's counters (each tap writes only its own).
#[derive(Debug, Default)]
struct TapCounters {
    captured: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Shared {
    taps: Mutex<Vec<Arc<TapCounters>>>,
    written: AtomicU64,
    stop: AtomicBool,
}

/// A pcap file being written by a writer thread, fed by [`CaptureTap`]s.
pub struct Capture {
    path: PathBuf,
    tx: Option<SyncSender<Chunk>>,
    pool: Mempool,
    snaplen: usize,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("path", &self.path)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Capture {
    /// Creates `path` (truncating it) with default sizes and starts the writer thread.
    pub fn create(path: impl AsRef<Path>) -> Result<Capture> {
        Self::with_options(path, &CaptureOptions::default())
    }

    /// Like [`Capture::create`], with explicit sizes.
    pub fn with_options(path: impl AsRef<Path>, opts: &CaptureOptions) -> Result<Capture> {
        let path = path.as_ref().to_path_buf();
        let cerr = |msg: String| Error::Config(format!("pcap capture: {msg}"));
        if opts.bursts == 0 || opts.buffers == 0 || opts.snaplen < 14 {
            return Err(cerr(format!(
                "bad sizes {opts:?}: need bursts > 0, buffers > 0, snaplen >= 14"
            )));
        }
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let pool = Mempool::create_with(
            &format!("pcap_capture{}", SEQ.fetch_add(1, Ordering::Relaxed)),
            &MempoolConfig {
                size: opts.buffers,
                cache_size: 256.min(opts.buffers / 2),
                ..MempoolConfig::default()
            },
        )?;
        let file = FileWriter::create(&path).map_err(cerr)?;
        let (tx, rx) = sync_channel(opts.bursts);
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        let writer = std::thread::Builder::new()
            .name("pcap-capture".into())
            .spawn(move || write_loop(rx, file, &sh))
            .map_err(|e| Error::io("pcap capture: starting the writer thread", e))?;
        Ok(Capture {
            path,
            tx: Some(tx),
            pool,
            snaplen: usize::from(opts.snaplen),
            shared,
            writer: Some(writer),
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new tap feeding this capture: give one to each lcore that records packets.
    pub fn tap(&self) -> CaptureTap {
        let counters = Arc::new(TapCounters::default());
        self.shared
            .taps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(counters.clone());
        CaptureTap {
            tx: self.tx.clone(),
            pool: self.pool.clone(),
            snaplen: self.snaplen,
            counters,
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> CaptureStats {
        let taps = self.shared.taps.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = CaptureStats {
            written: self.shared.written.load(Ordering::Relaxed),
            ..CaptureStats::default()
        };
        for t in taps.iter() {
            s.captured += t.captured.load(Ordering::Relaxed);
            s.dropped += t.dropped.load(Ordering::Relaxed);
        }
        s
    }

    /// Writes what is queued, closes the file and returns the final counts. Drop the taps
    /// first: bursts they record afterwards are counted as dropped.
    pub fn finish(mut self) -> Result<CaptureStats> {
        self.stop()?;
        Ok(self.stats())
    }

    fn stop(&mut self) -> Result<()> {
        self.tx = None;
        self.shared.stop.store(true, Ordering::Release);
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(e))) => Err(Error::io(
                format!("pcap capture: writing {}", self.path.display()),
                e,
            )),
            Some(Err(_)) => Err(Error::Config(format!(
                "pcap capture: the writer thread of {} panicked",
                self.path.display()
            ))),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!("{e}");
        }
    }
}

/// The writer thread: drains the channel into the file until stopped and empty, or until
/// every sender is gone. Frees the copies as it goes.
fn write_loop(rx: Receiver<Chunk>, mut file: FileWriter, shared: &Shared) -> std::io::Result<()> {
    let mut result = Ok(());
    loop {
        match rx.try_recv() {
            Ok(chunk) => {
                if result.is_ok() {
                    let mut n = 0;
                    for (m, &orig) in chunk.pkts.iter().zip(&chunk.orig) {
                        let caplen = m.len() as u32;
                        if let Err(e) = file.write_segments(chunk.ts, orig, caplen, m.segments()) {
                            result = Err(std::io::Error::other(e));
                            break;
                        }
                        n += 1;
                    }
                    shared.written.fetch_add(n, Ordering::Relaxed);
                }
            }
            Err(TryRecvError::Empty) => {
                if shared.stop.load(Ordering::Acquire) {
                    break;
                }
                // Polling (rather than a blocking receive) keeps senders from ever having
                // to wake this thread: no system call on the data path.
                std::thread::sleep(IDLE_SLEEP);
            }
            Err(TryRecvError::Disconnected) => break,
        }
    }
    result.and(file.finish())
}

/// Copies the first `snaplen` bytes of `m` (every segment of a chain) into the fresh
/// buffer `c`, chaining buffers from `pool` past the first; false if the pool ran out.
#[inline]
fn copy_chain(c: &mut Mbuf, m: &Mbuf, snaplen: usize, pool: &Mempool) -> bool {
    let mut left = m.len().min(snaplen);
    let mut first = true;
    for seg in m.segments() {
        if left == 0 {
            break;
        }
        let piece = &seg[..seg.len().min(left)];
        left -= piece.len();
        // The first piece usually fits the buffer (a plain copy, as for one segment).
        if first && c.copy_from(piece) {
            first = false;
            continue;
        }
        first = false;
        if c.extend_from_slice(piece, pool).is_err() {
            return false;
        }
    }
    true
}

/// Records bursts into a [`Capture`]. `Send`: give one to each lcore.
pub struct CaptureTap {
    tx: Option<SyncSender<Chunk>>,
    pool: Mempool,
    snaplen: usize,
    counters: Arc<TapCounters>,
}

impl std::fmt::Debug for CaptureTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureTap")
            .field("captured", &self.counters.captured)
            .field("dropped", &self.counters.dropped)
            .finish()
    }
}

impl CaptureTap {
    /// Records a copy of every packet in `batch` (which is left untouched).
    #[inline]
    pub fn record(&mut self, batch: &PktBatch) {
        self.record_slice(batch.as_slice());
    }

    /// Records a copy of each packet of `pkts` (at most [`BATCH_CAPACITY`] are taken).
    pub fn record_slice(&mut self, pkts: &[Mbuf]) {
        let n = pkts.len().min(BATCH_CAPACITY);
        if n == 0 {
            return;
        }
        let Some(tx) = &self.tx else {
            self.drop_count(n);
            return;
        };
        let mut chunk = Chunk {
            ts: now(),
            pkts: PktBatch::new(),
            orig: [0; BATCH_CAPACITY],
        };
        let Some(copies) = self.pool.alloc_bulk(&mut chunk.pkts, n) else {
            self.drop_count(n);
            return;
        };
        for ((c, m), o) in copies.iter_mut().zip(pkts).zip(chunk.orig.iter_mut()) {
            *o = m.len() as u32;
            if !copy_chain(c, m, self.snaplen, &self.pool) {
                // The pool ran out for a chain's segments: the burst is not recorded
                // (`chunk` goes back to the pool on drop).
                self.drop_count(n);
                return;
            }
        }
        match tx.try_send(chunk) {
            Ok(()) => {
                let c = &self.counters.captured;
                c.store(c.load(Ordering::Relaxed) + n as u64, Ordering::Relaxed);
            }
            Err(_) => self.drop_count(n),
        }
    }

    #[cold]
    fn drop_count(&self, n: usize) {
        let d = &self.counters.dropped;
        d.store(d.load(Ordering::Relaxed) + n as u64, Ordering::Relaxed);
    }
}
