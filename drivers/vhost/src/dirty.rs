//! Dirty-page logging for live migration (the vhost-user spec's "Migration" section).
//!
//! While a VMM migrates its VM it copies guest memory page by page to the destination,
//! and pages written after their copy must be sent again. The back end writes guest
//! memory behind the VMM's back (packets into receive buffers, used ring entries), so
//! during a migration it reports each page it writes in a log the VMM shares with it:
//!
//! - `VHOST_F_LOG_ALL`, negotiated with SET_FEATURES (the VMM sets it when the migration
//!   starts and clears it at the end), turns logging on;
//! - SET_LOG_BASE (with `VHOST_USER_PROTOCOL_F_LOG_SHMFD`) passes the log: a file
//!   descriptor and a `{mmap_size, mmap_offset}` description, a bitmap of `mmap_size`
//!   bytes at `mmap_offset` in the file. Bit `p % 8` of byte `p / 8` stands for the 4 KiB
//!   guest physical page `p`; the back end sets bits with atomic ORs (the VMM clears them
//!   with atomic exchanges while it copies). The back end replies once it writes the new
//!   log, so the VMM can free the old one (it sends a bigger log when memory is added).
//!
//! [`DirtyLog`] is the mapped bitmap. Everything in its description is front-end input:
//! a size of 0, an offset and size that wrap, a file shorter than they say or that is not
//! a regular file, are refused ([`LogError`]) before anything is mapped. A page beyond the
//! bitmap is not marked; it is counted (`ctrl_log_outside`): the VMM sizes the log for all
//! of guest memory, so only a front end that lies about one or the other gets there.
//!
//! What a ring logs: every buffer it writes into, whole (`Logged`, which over-reports
//! the unwritten tail of a buffer, harmless: the VMM sends the page once more), and the
//! parts of its own areas it writes. Ring areas are logged at the guest physical address
//! the memory table gives their front-end address ([`GuestMemory::uva_to_gpa`]; regions
//! overlap in neither address space, so the answer is unique) rather than at the
//! `log_guest_addr` of SET_VRING_ADDR: that field names only a split ring's used ring,
//! while a packed ring's device writes its descriptor ring.

use crate::burst::{ChainSink, Step, TxStream};
use crate::mem::{map_file, FileMapError, GuestMemory};
use memmap2::MmapRaw;
use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

/// Bytes of guest memory one bit of the log stands for.
pub const LOG_PAGE: u64 = 4096;

/// Largest log taken: a bitmap of 1 GiB covers 32 TiB of guest memory.
pub const MAX_LOG_SIZE: u64 = 1 << 30;

/// SET_LOG_BASE's payload with `LOG_SHMFD`: where the bitmap is in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogDesc {
    /// Bytes of the bitmap.
    pub mmap_size: u64,
    /// Offset of its first byte in the file.
    pub mmap_offset: u64,
}

/// Why a dirty log was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogError {
    /// SET_LOG_BASE without `LOG_SHMFD` negotiated, or in the 8-byte form (a log address
    /// in the front end's own memory, which a back end in another process cannot use).
    NoShmfd,
    /// SET_LOG_BASE without a file descriptor.
    NoFd,
    /// A bitmap of 0 bytes or more than [`MAX_LOG_SIZE`].
    Size(u64),
    /// `mmap_offset + mmap_size` wraps around 2^64.
    Wraps,
    /// The descriptor is not a regular file (memfd, tmpfs or hugetlbfs file).
    NotAFile,
    /// The bitmap needs `need` bytes of a file that has `has`.
    FileTooShort {
        /// `mmap_offset + mmap_size`.
        need: u64,
        /// The file's size.
        has: u64,
    },
    /// Mapping the bitmap failed (errno text).
    Map(String),
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogError::NoShmfd => f.write_str("the log must be shared memory (LOG_SHMFD)"),
            LogError::NoFd => f.write_str("no file descriptor for the log"),
            LogError::Size(s) => write!(f, "log of {s} bytes (1..={MAX_LOG_SIZE})"),
            LogError::Wraps => f.write_str("log offset and size wrap the file"),
            LogError::NotAFile => f.write_str("the log's fd is not a memory file"),
            LogError::FileTooShort { need, has } => {
                write!(f, "the log needs {need} bytes of a {has}-byte file")
            }
            LogError::Map(e) => write!(f, "mmap of the log failed: {e}"),
        }
    }
}

impl std::error::Error for LogError {}

/// A mapped dirty-page bitmap, shared with the front end.
pub struct DirtyLog {
    /// First byte of the bitmap.
    bits: *mut u8,
    /// Bytes of the bitmap.
    len: u64,
    /// Pages asked to be marked beyond the bitmap.
    outside: Arc<AtomicU64>,
    /// Keeps the mapping alive; unmapped when the log is dropped.
    _map: MmapRaw,
}

impl fmt::Debug for DirtyLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirtyLog").field("len", &self.len).finish()
    }
}

// SAFETY: `bits` points into the mapping this value owns, valid for `len` bytes; it is
// only accessed through atomic ORs and loads (the front end accesses it concurrently).
unsafe impl Send for DirtyLog {}
// SAFETY: as above; the value itself is immutable after `map`.
unsafe impl Sync for DirtyLog {}

impl DirtyLog {
    /// Checks the description against the file and maps the bitmap; pages beyond it are
    /// counted in `outside`. The descriptor is consumed (closed on every path; the
    /// mapping keeps the memory).
    pub fn map(d: LogDesc, fd: OwnedFd, outside: Arc<AtomicU64>) -> Result<DirtyLog, LogError> {
        if d.mmap_size == 0 || d.mmap_size > MAX_LOG_SIZE {
            return Err(LogError::Size(d.mmap_size));
        }
        let (_file, map) = map_file(fd, d.mmap_offset, d.mmap_size).map_err(|e| match e {
            FileMapError::Wraps => LogError::Wraps,
            FileMapError::NotAFile => LogError::NotAFile,
            FileMapError::TooShort { need, has } => LogError::FileTooShort { need, has },
            FileMapError::Map(e) => LogError::Map(e),
        })?;
        Ok(DirtyLog {
            bits: map.as_mut_ptr(),
            len: d.mmap_size,
            outside,
            _map: map,
        })
    }

    /// Bytes of the bitmap.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the bitmap is empty (never: [`DirtyLog::map`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Marks every page of guest physical `[gpa, gpa + len)` dirty (release: the bytes
    /// written there before are visible to a front end that sees the bit). Pages beyond
    /// the bitmap are counted instead.
    #[inline]
    pub fn mark(&self, gpa: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = gpa / LOG_PAGE;
        let last = gpa.saturating_add(len - 1) / LOG_PAGE;
        for page in first..=last {
            let byte = page / 8;
            if byte >= self.len {
                self.outside.fetch_add(last - page + 1, Ordering::Relaxed);
                return;
            }
            // SAFETY: byte < len: inside the mapped bitmap; accessed atomically only (the
            // front end clears bits concurrently with atomic exchanges).
            unsafe { AtomicU8::from_ptr(self.bits.add(byte as usize)) }
                .fetch_or(1 << (page % 8), Ordering::Release);
        }
    }

    /// Whether the page holding guest physical `gpa` is marked.
    pub fn is_dirty(&self, gpa: u64) -> bool {
        let page = gpa / LOG_PAGE;
        let byte = page / 8;
        // SAFETY: byte < len, inside the bitmap; an atomic load.
        byte < self.len
            && unsafe { AtomicU8::from_ptr(self.bits.add(byte as usize)) }.load(Ordering::Acquire)
                & (1 << (page % 8))
                != 0
    }
}

#[cfg(test)]
impl DirtyLog {
    /// Clears every bit, as the front end's sync does while it copies.
    pub(crate) fn clear(&self) {
        for byte in 0..self.len as usize {
            // SAFETY: byte < len, inside the bitmap; atomic.
            unsafe { AtomicU8::from_ptr(self.bits.add(byte)) }.swap(0, Ordering::AcqRel);
        }
    }
}

/// A chain sink that hands each buffer on to `sink`, then with `LOG` marks it, whole, in
/// the log (when there is one). Without `LOG` it compiles to `sink` alone: the transmit
/// bursts always walk through it.
pub(crate) struct Logged<'a, S, const LOG: bool> {
    sink: &'a mut S,
    log: Option<&'a DirtyLog>,
    mem: &'a GuestMemory,
}

impl<'a, S, const LOG: bool> Logged<'a, S, LOG> {
    /// `sink`, logging into `ring`'s log (if any) the buffers translated through `mem`.
    #[inline(always)]
    pub fn new(sink: &'a mut S, ring: Option<&'a RingLog>, mem: &'a GuestMemory) -> Self {
        Logged {
            sink,
            log: ring.map(|r| &*r.log),
            mem,
        }
    }
}

impl<S: ChainSink, const LOG: bool> ChainSink for Logged<'_, S, LOG> {
    #[inline(always)]
    unsafe fn take(&mut self, p: *mut u8, n: usize) -> Step {
        // SAFETY: the caller's contract, passed on.
        let step = unsafe { self.sink.take(p, n) };
        if LOG {
            if let (Some(log), Some(gpa)) = (self.log, self.mem.host_to_gpa(p)) {
                log.mark(gpa, n as u64);
            }
        }
        step
    }
}

/// Marks again the bytes of `num_buffers` [`TxStream::set_num_buffers`] wrote after the
/// buffers were logged (a page copied between the first mark and that write would miss
/// it).
#[inline]
pub(crate) fn log_num_buffers(stream: &TxStream<'_>, log: &DirtyLog, mem: &GuestMemory) {
    for p in stream.num_buffers_at() {
        if let Some(gpa) = mem.host_to_gpa(p) {
            log.mark(gpa, 1);
        }
    }
}

/// The parts of a ring's areas the device writes, as guest physical spans, and the log
/// they go to.
#[derive(Debug, Clone)]
pub(crate) struct RingLog {
    /// The log.
    pub log: Arc<DirtyLog>,
    /// Guest physical address of the area the device writes entries into: the used
    /// ring (split) or the descriptor ring (packed).
    pub entries: u64,
    /// Guest physical address of the other area the device writes: the used ring's
    /// header (split: the same as `entries`) or the device event suppression area
    /// (packed).
    pub events: u64,
}

impl RingLog {
    /// The log of a ring whose written areas are at front-end addresses `entries` and
    /// `events` (both translated already, so both have a guest physical address).
    pub fn new(
        log: Option<&Arc<DirtyLog>>,
        mem: &GuestMemory,
        entries: u64,
        events: u64,
    ) -> Option<RingLog> {
        Some(RingLog {
            log: log?.clone(),
            entries: mem.uva_to_gpa(entries)?,
            events: mem.uva_to_gpa(events)?,
        })
    }

    /// Marks `[off, off + len)` of the entries area.
    #[inline]
    pub fn entries(&self, off: u64, len: u64) {
        self.log.mark(self.entries + off, len);
    }

    /// Marks `[off, off + len)` of the events area.
    #[inline]
    pub fn events(&self, off: u64, len: u64) {
        self.log.mark(self.events + off, len);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mem::tests::memfd;

    /// A log of `len` bytes at offset 0 of a fresh memfd.
    pub(crate) fn log(len: u64) -> Arc<DirtyLog> {
        let d = LogDesc {
            mmap_size: len,
            mmap_offset: 0,
        };
        Arc::new(DirtyLog::map(d, memfd(len, true), Arc::default()).unwrap())
    }

    /// The guest physical pages `[gpa, gpa + len)` touches.
    pub(crate) fn pages(gpa: u64, len: u64) -> impl Iterator<Item = u64> {
        gpa / LOG_PAGE..(gpa + len).div_ceil(LOG_PAGE)
    }

    /// The oracle of the ring tests: every page of the region at guest physical `gpa`
    /// whose bytes differ between `before` and `after` is marked, and every marked page
    /// is one of `allowed` (pages the device may write: the ring areas it writes and the
    /// buffers it was given for writing). Returns how many pages changed.
    pub(crate) fn check_log(
        log: &DirtyLog,
        gpa: u64,
        before: &[u8],
        after: &[u8],
        allowed: &std::collections::BTreeSet<u64>,
    ) -> usize {
        let mut changed = 0;
        for (k, (b, a)) in before
            .chunks(LOG_PAGE as usize)
            .zip(after.chunks(LOG_PAGE as usize))
            .enumerate()
        {
            let page = gpa / LOG_PAGE + k as u64;
            if a != b {
                changed += 1;
                assert!(
                    log.is_dirty(page * LOG_PAGE),
                    "page {page:#x} changed unlogged"
                );
            }
        }
        let top = (gpa + before.len() as u64) / LOG_PAGE;
        for page in 0..top.max(log.len() * 8) {
            if log.is_dirty(page * LOG_PAGE) {
                assert!(
                    allowed.contains(&page),
                    "page {page:#x} logged, never written"
                );
            }
        }
        changed
    }

    #[test]
    fn marks_pages_atomically_and_counts_those_beyond() {
        let outside = Arc::new(AtomicU64::new(0));
        let fd = memfd(8192, false);
        let d = LogDesc {
            mmap_size: 2,
            mmap_offset: 4097,
        };
        let l = DirtyLog::map(d, fd, outside.clone()).unwrap();
        assert_eq!(l.len(), 2);
        l.mark(0x3000, 1);
        assert!(l.is_dirty(0x3fff) && !l.is_dirty(0x2fff) && !l.is_dirty(0x4000));
        // A span over a page boundary marks both pages.
        l.mark(0x5fff, 2);
        assert!(l.is_dirty(0x5000) && l.is_dirty(0x6000) && !l.is_dirty(0x7000));
        l.mark(0x9000, 0);
        assert!(!l.is_dirty(0x9000));
        // 2 bytes hold 16 pages: page 15 is the last; 14..=17 marks two, counts two.
        l.mark(14 * LOG_PAGE, 4 * LOG_PAGE);
        assert!(l.is_dirty(15 * LOG_PAGE));
        assert!(!l.is_dirty(16 * LOG_PAGE));
        assert_eq!(outside.load(Ordering::Relaxed), 2);
        l.mark(u64::MAX - 10, 100);
        assert_eq!(outside.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn refuses_bad_descriptions() {
        let at = |size, offset| LogDesc {
            mmap_size: size,
            mmap_offset: offset,
        };
        let map = |d, fd| DirtyLog::map(d, fd, Arc::default()).map(|_| ());
        assert_eq!(map(at(0, 0), memfd(4096, false)), Err(LogError::Size(0)));
        assert_eq!(
            map(at(MAX_LOG_SIZE + 1, 0), memfd(4096, false)),
            Err(LogError::Size(MAX_LOG_SIZE + 1))
        );
        assert_eq!(
            map(at(4096, u64::MAX - 100), memfd(4096, false)),
            Err(LogError::Wraps)
        );
        assert_eq!(
            map(at(4096, 1), memfd(4096, false)),
            Err(LogError::FileTooShort {
                need: 4097,
                has: 4096
            })
        );
        let (r, _w) = std::io::pipe().unwrap();
        assert_eq!(map(at(64, 0), r.into()), Err(LogError::NotAFile));
        assert_eq!(map(at(4096, 0), memfd(4096, false)), Ok(()));
    }
}
