//! The capture rings: one memfd that the capturing app creates and maps, and sends to
//! the capture tool, which maps it too. It holds one ring per captured queue and
//! direction, each with a single producer (the lcore that owns the queue) and a single
//! consumer (the tool).
//!
//! Layout of ring `i` at `i * (HEADER + size)`:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | `head`: bytes ever written (producer) |
//! | 8..32 | `packets`, `drops`, `filtered`: the producer's counters |
//! | 64..72 | `tail`: bytes ever consumed (consumer) |
//! | 128..136 | magic `PMDPDMP1` |
//! | 136..144 | `size` of the data area, a power of two |
//! | 256.. | data: records |
//!
//! A record is 8-byte aligned: `caplen: u32`, `orig_len: u32`, `ts_ns: u64` (little
//! endian, nanoseconds since the Unix epoch), then `caplen` bytes padded to 8. A record
//! never wraps: when one does not fit before the end of the data area, the producer
//! writes a header with `caplen == u32::MAX` there (if 16 bytes are left) and starts
//! again at 0; both sides skip a stretch of fewer than 16 bytes at the end.
//!
//! Each side treats the other's index as untrusted: a producer that finds `tail` behind
//! zero or ahead of `head` drops (and counts) what it would write, and a consumer that
//! finds `head` out of range or a record that does not fit refuses the ring.

use crate::mbuf::BATCH_CAPACITY;
use memmap2::{MmapOptions, MmapRaw};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes before each ring's data area.
pub const HEADER: usize = 256;
/// Bytes of a record's header.
pub const RECORD_HEADER: usize = 16;
/// Smallest data area: four records of the largest snapshot fit.
pub const MIN_SIZE: usize = 1 << 18;
/// Largest data area of one ring.
pub const MAX_SIZE: usize = 1 << 28;
/// Largest memfd of one capture.
const MAX_TOTAL: usize = 1 << 32;
/// The largest snapshot length (bytes kept of each packet).
pub const MAX_SNAPLEN: u32 = 65_535;
const MAGIC: u64 = u64::from_le_bytes(*b"PMDPDMP1");
const WRAP: u32 = u32::MAX;

// Header words (u64 index).
const W_HEAD: usize = 0;
const W_PACKETS: usize = 1;
const W_DROPS: usize = 2;
const W_FILTERED: usize = 3;
const W_TAIL: usize = 8;
const W_MAGIC: usize = 16;
const W_SIZE: usize = 17;

/// Bytes a record of `caplen` bytes takes.
#[inline(always)]
pub const fn record_len(caplen: usize) -> usize {
    RECORD_HEADER + caplen.next_multiple_of(8)
}

/// A ring's counters, as its producer last published them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingCounters {
    /// Packets written to the ring.
    pub packets: u64,
    /// Packets that passed the filter but found the ring full.
    pub drops: u64,
    /// Packets the filter rejected.
    pub filtered: u64,
}

impl std::ops::AddAssign for RingCounters {
    fn add_assign(&mut self, o: RingCounters) {
        self.packets += o.packets;
        self.drops += o.drops;
        self.filtered += o.filtered;
    }
}

/// A mapped set of rings.
#[derive(Debug)]
pub struct RingSet {
    map: MmapRaw,
    fd: OwnedFd,
    rings: usize,
    size: usize,
}

// SAFETY: the mapping is shared memory that is only accessed through atomics (the header
// words) and raw, bounds-checked copies (the data areas), coordinated by the head/tail
// protocol; no Rust reference to the data areas is ever made, so threads may share it.
unsafe impl Send for RingSet {}
// SAFETY: as for Send.
unsafe impl Sync for RingSet {}

impl RingSet {
    /// Creates `rings` rings of `size` data bytes each in a new memfd, sealed so that
    /// nobody can resize it.
    pub fn create(rings: usize, size: usize) -> io::Result<RingSet> {
        let total =
            Self::total(rings, size).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (map, fd) = if cfg!(miri) {
            // Miri runs neither memfd_create nor a shared file mapping: private anonymous
            // memory and an eventfd that holds none are enough for the protocol tests.
            let map = MmapOptions::new().len(total).map_anon()?;
            (MmapRaw::from(map), crate::unix::eventfd()?)
        } else {
            let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
            let file = File::from(crate::unix::memfd::create(c"pmd-pdump", flags)?);
            file.set_len(total as u64)?;
            let fd = OwnedFd::from(file);
            crate::unix::memfd::add_seals(
                fd.as_fd(),
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            )?;
            (MmapOptions::new().len(total).map_raw(&fd)?, fd)
        };
        let set = RingSet {
            map,
            fd,
            rings,
            size,
        };
        for r in 0..rings {
            set.word(r, W_MAGIC).store(MAGIC, Ordering::Relaxed);
            set.word(r, W_SIZE).store(size as u64, Ordering::Relaxed);
        }
        Ok(set)
    }

    /// Maps the rings another process created in `fd`: `rings` of `size` bytes, as it
    /// announced. Refuses a descriptor that is not a memfd of that size sealed against
    /// shrinking, or rings without the magic and size.
    pub fn open(fd: OwnedFd, rings: usize, size: usize) -> Result<RingSet, String> {
        let total = Self::total(rings, size)?;
        let file = File::from(fd);
        let st = file
            .metadata()
            .map_err(|e| format!("capture memory: {e}"))?;
        if !st.file_type().is_file() || (st.len() as usize) < total {
            return Err(format!(
                "capture memory: not a memory file of {total} bytes"
            ));
        }
        let fd = OwnedFd::from(file);
        if !crate::unix::memfd::seals(fd.as_fd()).is_ok_and(|s| s & libc::F_SEAL_SHRINK != 0) {
            return Err("capture memory: not sealed against shrinking".into());
        }
        let map = MmapOptions::new()
            .len(total)
            .map_raw(&fd)
            .map_err(|e| format!("capture memory: mmap: {e}"))?;
        let set = RingSet {
            map,
            fd,
            rings,
            size,
        };
        for r in 0..rings {
            if set.word(r, W_MAGIC).load(Ordering::Relaxed) != MAGIC
                || set.word(r, W_SIZE).load(Ordering::Relaxed) != size as u64
            {
                return Err(format!("capture memory: ring {r} has no valid header"));
            }
        }
        Ok(set)
    }

    /// Bytes of `rings` rings of `size`, or why that is not a valid set.
    fn total(rings: usize, size: usize) -> Result<usize, String> {
        if !(MIN_SIZE..=MAX_SIZE).contains(&size) || !size.is_power_of_two() {
            return Err(format!(
                "capture ring of {size} bytes: a power of two from {} KiB to {} MiB",
                MIN_SIZE >> 10,
                MAX_SIZE >> 20
            ));
        }
        rings
            .checked_mul(HEADER + size)
            .filter(|&t| rings > 0 && t <= MAX_TOTAL)
            .ok_or_else(|| format!("{rings} capture rings of {size} bytes: too many"))
    }

    /// The memfd (sent to the tool).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Number of rings.
    pub fn rings(&self) -> usize {
        self.rings
    }

    /// Data bytes of each ring.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Header word `w` of ring `r` (both checked by the callers' constants and ring
    /// indices below `rings`).
    #[inline(always)]
    fn word(&self, r: usize, w: usize) -> &AtomicU64 {
        assert!(r < self.rings && w < HEADER / 8);
        // SAFETY: the offset is inside the mapping (r < rings, w < HEADER / 8), 8-byte
        // aligned (the mapping is page aligned, HEADER + size is a multiple of 8), and
        // the word is only ever accessed atomically, by either process.
        unsafe {
            &*self
                .map
                .as_mut_ptr()
                .add(r * (HEADER + self.size) + w * 8)
                .cast::<AtomicU64>()
        }
    }

    /// Copies `bytes` into ring `r`'s data area at `pos`; nothing if it would not fit.
    #[inline(always)]
    fn write(&self, r: usize, pos: usize, bytes: &[u8]) {
        if r >= self.rings || pos > self.size || bytes.len() > self.size - pos {
            debug_assert!(false, "capture ring write out of bounds");
            return;
        }
        // SAFETY: [pos, pos + len) lies in ring r's data area (checked above), which
        // only this ring's producer writes, and only between tail and tail + size, where
        // the consumer does not read; `bytes` is a live slice elsewhere.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map
                    .as_mut_ptr()
                    .add(r * (HEADER + self.size) + HEADER + pos),
                bytes.len(),
            )
        }
    }

    /// Copies ring `r`'s data at `[pos, pos + out.len())` into `out`; false if that is
    /// outside the data area.
    fn read(&self, r: usize, pos: usize, out: &mut [u8]) -> bool {
        if r >= self.rings || pos > self.size || out.len() > self.size - pos {
            return false;
        }
        // SAFETY: the range lies in ring r's data area (checked above), which the
        // producer does not write between tail and head; `out` is our own buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.map
                    .as_mut_ptr()
                    .add(r * (HEADER + self.size) + HEADER + pos),
                out.as_mut_ptr(),
                out.len(),
            )
        }
        true
    }

    /// Ring `r`'s counters.
    pub fn counters(&self, r: usize) -> RingCounters {
        RingCounters {
            packets: self.word(r, W_PACKETS).load(Ordering::Relaxed),
            drops: self.word(r, W_DROPS).load(Ordering::Relaxed),
            filtered: self.word(r, W_FILTERED).load(Ordering::Relaxed),
        }
    }
}

/// What happened to one packet given to [`Producer::stage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum Outcome {
    #[default]
    Written,
    Dropped,
    Filtered,
}

/// A packet as a producer copies it.
pub(crate) trait Capturable {
    /// Its length on the wire.
    fn wire_len(&self) -> usize;
    /// Hands its first `n` bytes to `put`, in pieces.
    fn copy_out(&self, n: usize, put: &mut dyn FnMut(&[u8]));
}

/// The writing side of one ring, owned by the lcore that owns the queue.
#[derive(Debug)]
pub(crate) struct Producer {
    set: std::sync::Arc<RingSet>,
    ring: usize,
    /// Bytes written and published.
    head: u64,
    /// The consumer's tail as last read: reread only when it leaves too little room, so
    /// a burst that fits does not touch the consumer's cache line.
    tail: u64,
    counters: RingCounters,
    /// Per packet of the last staged burst: the head after it, and what happened to it.
    ends: [u64; BATCH_CAPACITY],
    outcome: [Outcome; BATCH_CAPACITY],
}

impl Producer {
    pub(crate) fn new(set: std::sync::Arc<RingSet>, ring: usize) -> Producer {
        let head = set.word(ring, W_HEAD).load(Ordering::Relaxed);
        let counters = set.counters(ring);
        // The tool may have written any tail before the first burst: one outside
        // [head - size, head] is taken as "all read" (a fresh ring holds nothing unread).
        let tail = set.word(ring, W_TAIL).load(Ordering::Acquire);
        let tail = if tail > head || head - tail > set.size as u64 {
            head
        } else {
            tail
        };
        Producer {
            set,
            ring,
            head,
            tail,
            counters,
            ends: [0; BATCH_CAPACITY],
            outcome: [Outcome::Written; BATCH_CAPACITY],
        }
    }

    /// Writes records for (at most [`BATCH_CAPACITY`] of) `pkts` after the published
    /// head without publishing them; `keep` says whether a packet passes the filter,
    /// `now` gives the burst's timestamp (read once, and only if a record is written).
    #[inline]
    pub(crate) fn stage<P: Capturable>(
        &mut self,
        pkts: &[P],
        now: impl Fn() -> u64,
        snaplen: u32,
        keep: impl Fn(&P) -> bool,
    ) {
        let set = &*self.set;
        let size = set.size as u64;
        let mut reread = false;
        let mut ts_ns = None;
        let mut h = self.head;
        let staged = self.ends.iter_mut().zip(self.outcome.iter_mut());
        for (p, (end, out)) in pkts.iter().zip(staged) {
            *out = if !keep(p) {
                Outcome::Filtered
            } else {
                let orig = p.wire_len();
                let caplen = orig.min(snaplen as usize);
                let need = record_len(caplen) as u64;
                let pos = h & (size - 1);
                let to_end = size - pos;
                let skip = if to_end < need { to_end } else { 0 };
                let mut fits = h + skip + need - self.tail <= size;
                if !fits && !reread {
                    reread = true;
                    let t = set.word(self.ring, W_TAIL).load(Ordering::Acquire);
                    // A consumer that wrote a tail outside [head - size, head] broke the
                    // protocol: the old one is kept, so nothing it has not read is
                    // overwritten (and what does not fit is counted as dropped).
                    if t >= self.tail && t <= self.head {
                        self.tail = t;
                        fits = h + skip + need - t <= size;
                    }
                }
                if !fits {
                    Outcome::Dropped
                } else {
                    let ts_ns = *ts_ns.get_or_insert_with(&now);
                    let mut pos = pos as usize;
                    if skip > 0 {
                        if skip >= RECORD_HEADER as u64 {
                            set.write(self.ring, pos, &record_header(WRAP, 0, 0));
                        }
                        h += skip;
                        pos = 0;
                    }
                    set.write(
                        self.ring,
                        pos,
                        &record_header(caplen as u32, orig as u32, ts_ns),
                    );
                    let mut at = pos + RECORD_HEADER;
                    p.copy_out(caplen, &mut |piece| {
                        set.write(self.ring, at, piece);
                        at += piece.len();
                    });
                    h += need;
                    Outcome::Written
                }
            };
            *end = h;
        }
    }

    /// Publishes the first `n` records of the last [`Producer::stage`] and counts them.
    #[inline]
    pub(crate) fn commit(&mut self, n: usize) {
        let Some(&end) = n.checked_sub(1).and_then(|i| self.ends.get(i)) else {
            return;
        };
        let before = self.counters;
        for o in &self.outcome[..n] {
            match o {
                // Wrapping: the counters' first values came from shared memory.
                Outcome::Written => self.counters.packets = self.counters.packets.wrapping_add(1),
                Outcome::Dropped => self.counters.drops = self.counters.drops.wrapping_add(1),
                Outcome::Filtered => {
                    self.counters.filtered = self.counters.filtered.wrapping_add(1)
                }
            }
        }
        // Only what changed is stored: a burst the ring had no room for writes one word.
        let set = &*self.set;
        if end != self.head {
            self.head = end;
            set.word(self.ring, W_HEAD).store(end, Ordering::Release);
        }
        let c = self.counters;
        for (w, now, was) in [
            (W_PACKETS, c.packets, before.packets),
            (W_DROPS, c.drops, before.drops),
            (W_FILTERED, c.filtered, before.filtered),
        ] {
            if now != was {
                set.word(self.ring, w).store(now, Ordering::Relaxed);
            }
        }
    }
}

fn record_header(caplen: u32, orig: u32, ts_ns: u64) -> [u8; RECORD_HEADER] {
    let mut h = [0u8; RECORD_HEADER];
    h[0..4].copy_from_slice(&caplen.to_le_bytes());
    h[4..8].copy_from_slice(&orig.to_le_bytes());
    h[8..16].copy_from_slice(&ts_ns.to_le_bytes());
    h
}

/// One record read by a [`Consumer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The packet's length on the wire.
    pub orig_len: u32,
    /// When the app saw it, in nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Its first bytes (at most the snapshot length).
    pub data: &'a [u8],
}

/// The reading side of one ring (the capture tool).
#[derive(Debug)]
pub struct Consumer {
    set: std::sync::Arc<RingSet>,
    ring: usize,
    tail: u64,
    buf: Vec<u8>,
}

impl Consumer {
    /// Reads ring `ring` of `set`.
    pub fn new(set: std::sync::Arc<RingSet>, ring: usize) -> Consumer {
        let tail = set.word(ring, W_TAIL).load(Ordering::Relaxed);
        Consumer {
            set,
            ring,
            tail,
            buf: Vec::new(),
        }
    }

    /// The ring's counters.
    pub fn counters(&self) -> RingCounters {
        self.set.counters(self.ring)
    }

    /// Hands each record published so far (at most `max`) to `f`, then frees their room;
    /// how many there were, or why the ring is unreadable (the producer broke the
    /// protocol: the capture should end).
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(Record<'_>)) -> Result<usize, String> {
        let set = &*self.set;
        let size = set.size as u64;
        let head = set.word(self.ring, W_HEAD).load(Ordering::Acquire);
        if head < self.tail || head - self.tail > size {
            return Err(format!(
                "capture ring {}: head {head} out of range (tail {})",
                self.ring, self.tail
            ));
        }
        let mut n = 0;
        let mut hdr = [0u8; RECORD_HEADER];
        while self.tail < head && n < max {
            let pos = (self.tail & (size - 1)) as usize;
            let to_end = set.size - pos;
            if to_end < RECORD_HEADER {
                self.tail += to_end as u64;
                continue;
            }
            set.read(self.ring, pos, &mut hdr);
            let caplen = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
            if caplen == WRAP {
                self.tail += to_end as u64;
                continue;
            }
            let need = record_len(caplen as usize);
            if caplen > MAX_SNAPLEN || need > to_end || self.tail + need as u64 > head {
                return Err(format!(
                    "capture ring {}: a record of {caplen} bytes does not fit",
                    self.ring
                ));
            }
            self.buf.resize(caplen as usize, 0);
            set.read(self.ring, pos + RECORD_HEADER, &mut self.buf);
            f(Record {
                orig_len: u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]),
                ts_ns: u64::from_le_bytes(hdr[8..16].try_into().unwrap_or_default()),
                data: &self.buf,
            });
            self.tail += need as u64;
            n += 1;
        }
        set.word(self.ring, W_TAIL)
            .store(self.tail, Ordering::Release);
        Ok(n)
    }

    /// Sets the ring's tail to `tail` as a consumer would (tests of a misbehaving one).
    #[doc(hidden)]
    pub fn force_tail(&mut self, tail: u64) {
        self.tail = tail;
        self.set
            .word(self.ring, W_TAIL)
            .store(tail, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    impl Capturable for Vec<u8> {
        fn wire_len(&self) -> usize {
            self.len()
        }
        fn copy_out(&self, n: usize, put: &mut dyn FnMut(&[u8])) {
            // In two pieces, as a chain would give them.
            let (a, b) = self[..n].split_at(n / 2);
            put(a);
            put(b);
        }
    }

    fn produce(p: &mut Producer, pkts: &[Vec<u8>], snaplen: u32) -> Vec<Outcome> {
        p.stage(pkts, || 7, snaplen, |_| true);
        p.commit(pkts.len());
        p.outcome[..pkts.len()].to_vec()
    }

    fn drain_all(c: &mut Consumer) -> Vec<(u32, Vec<u8>)> {
        let mut v = Vec::new();
        c.drain(usize::MAX, |r| v.push((r.orig_len, r.data.to_vec())))
            .unwrap();
        v
    }

    #[test]
    fn records_cross_the_ring_in_order_and_wrap() {
        let set = Arc::new(RingSet::create(2, MIN_SIZE).unwrap());
        let mut p = Producer::new(set.clone(), 1);
        let mut c = Consumer::new(set.clone(), 1);
        let mut seen = 0u64;
        // 1000-byte packets: many laps around a 256 KiB ring, with wrap markers.
        for round in 0..100u8 {
            let pkts: Vec<Vec<u8>> = (0..32)
                .map(|i| vec![round ^ i; 1000 + i as usize])
                .collect();
            assert!(produce(&mut p, &pkts, 65535)
                .iter()
                .all(|o| *o == Outcome::Written));
            let got = drain_all(&mut c);
            assert_eq!(got.len(), 32);
            for (i, (orig, data)) in got.iter().enumerate() {
                assert_eq!(*orig as usize, 1000 + i);
                assert_eq!(data, &pkts[i]);
            }
            seen += 32;
        }
        assert_eq!(c.counters().packets, seen);
        assert_eq!(set.counters(0), RingCounters::default());
    }

    #[test]
    fn a_full_ring_drops_and_counts_and_snaplen_truncates() {
        let set = Arc::new(RingSet::create(1, MIN_SIZE).unwrap());
        let mut p = Producer::new(set.clone(), 0);
        let mut c = Consumer::new(set.clone(), 0);
        let big: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 9000]).collect();
        let out = produce(&mut p, &big, 65535);
        let written = out.iter().filter(|o| **o == Outcome::Written).count();
        assert_eq!(written, MIN_SIZE / record_len(9000));
        assert_eq!(c.counters().drops as usize, 64 - written);
        assert_eq!(drain_all(&mut c).len(), written);
        // Snapshot length: records keep the wire length.
        produce(&mut p, &[vec![9u8; 300]], 100);
        let got = drain_all(&mut c);
        assert_eq!(got, vec![(300, vec![9u8; 100])]);
    }

    #[test]
    fn staged_records_are_published_only_when_committed() {
        let set = Arc::new(RingSet::create(1, MIN_SIZE).unwrap());
        let mut p = Producer::new(set.clone(), 0);
        let mut c = Consumer::new(set.clone(), 0);
        let pkts: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 64]).collect();
        p.stage(&pkts, || 1, 65535, |v| v[0] != 2);
        assert_eq!(p.outcome[2], Outcome::Filtered);
        // A tx burst that sent 3 of 4: only those are published and counted.
        p.commit(3);
        let got = drain_all(&mut c);
        assert_eq!(got.iter().map(|r| r.1[0]).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(
            c.counters(),
            RingCounters {
                packets: 2,
                drops: 0,
                filtered: 1
            }
        );
        // Nothing sent: nothing published.
        p.stage(&pkts, || 1, 65535, |_| true);
        p.commit(0);
        assert!(drain_all(&mut c).is_empty());
    }

    #[test]
    fn a_consumer_that_lies_about_its_tail_gets_drops_not_overwrites() {
        let set = Arc::new(RingSet::create(1, MIN_SIZE).unwrap());
        let mut p = Producer::new(set.clone(), 0);
        let mut c = Consumer::new(set.clone(), 0);
        produce(&mut p, &[vec![1u8; 100]], 65535);
        // Tails ahead of the head are ignored: the producer keeps the last sane one
        // (0), so it never writes over the record not yet read, and drops the rest.
        for bad in [u64::MAX, 1 << 40] {
            c.force_tail(bad);
            let out = produce(&mut p, &vec![vec![2u8; 9000]; 64], 65535);
            assert!(out.contains(&Outcome::Dropped));
            assert!(p.head <= MIN_SIZE as u64, "head {} past one lap", p.head);
        }
        assert!(set.counters(0).drops > 64);
        c.force_tail(0);
        assert_eq!(drain_all(&mut c)[0], (100, vec![1u8; 100]));
    }

    #[test]
    fn garbage_written_before_the_first_burst_is_survived() {
        let set = Arc::new(RingSet::create(1, MIN_SIZE).unwrap());
        // The tool writes a tail ahead of the head and huge counters before the queue
        // makes its producer.
        set.word(0, W_TAIL).store(u64::MAX, Ordering::Release);
        set.word(0, W_PACKETS).store(u64::MAX, Ordering::Relaxed);
        let mut p = Producer::new(set.clone(), 0);
        assert_eq!(
            produce(&mut p, &[vec![3u8; 64]], 65535),
            vec![Outcome::Written]
        );
        assert_eq!(set.counters(0).packets, 0, "wrapped, not a panic");
        let mut c = Consumer::new(set.clone(), 0);
        c.force_tail(0);
        assert_eq!(drain_all(&mut c), vec![(64, vec![3u8; 64])]);
    }

    #[test]
    fn a_producer_that_breaks_the_layout_is_refused() {
        let set = Arc::new(RingSet::create(1, MIN_SIZE).unwrap());
        let mut c = Consumer::new(set.clone(), 0);
        // A head beyond one lap.
        set.word(0, W_HEAD)
            .store(MIN_SIZE as u64 + 8, Ordering::Release);
        assert!(c.drain(10, |_| {}).is_err());
        // A record longer than the snapshot limit.
        set.word(0, W_HEAD).store(64, Ordering::Release);
        set.write(0, 0, &record_header(MAX_SNAPLEN + 1, 0, 0));
        assert!(c.drain(10, |_| {}).is_err());
        // A record that claims more than was published.
        set.write(0, 0, &record_header(100, 100, 0));
        assert!(c.drain(10, |_| {}).is_err());
    }

    #[test]
    #[cfg_attr(miri, ignore = "maps a memfd")]
    fn mapping_someone_elses_descriptor_checks_it() {
        let set = RingSet::create(2, MIN_SIZE).unwrap();
        let fd = set.fd().try_clone_to_owned().unwrap();
        // Announced larger than it is.
        assert!(RingSet::open(fd.try_clone().unwrap(), 3, MIN_SIZE).is_err());
        assert!(RingSet::open(fd.try_clone().unwrap(), 2, MIN_SIZE * 2).is_err());
        let other = RingSet::open(fd, 2, MIN_SIZE).unwrap();
        assert_eq!(other.rings(), 2);
        // Not a memfd.
        let (r, _w) = std::io::pipe().unwrap();
        assert!(RingSet::open(OwnedFd::from(r), 1, MIN_SIZE).is_err());
        // Sizes that are not a power of two, or too small.
        assert!(RingSet::create(1, MIN_SIZE + 8).is_err());
        assert!(RingSet::create(1, 4096).is_err());
        assert!(RingSet::create(0, MIN_SIZE).is_err());
    }
}
