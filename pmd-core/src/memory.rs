//! Memory segments for packet buffers and rings: hugepages (hugetlbfs or
//! `memfd_create(MFD_HUGETLB)`) or, with `--no-huge`, ordinary shared memory.
//!
//! Every segment is backed by a file descriptor (so later a vhost-user or memif peer can
//! map it), populated and locked up front (no page faults on the data path), and knows the
//! IOVA of each byte: the virtual address in IOVA-as-VA mode, or the physical address read
//! from `/proc/self/pagemap` in IOVA-as-PA mode. Hugetlbfs files are unlinked right after
//! creation, so no stale file survives an exit or a crash.
//!
//! Live segments are listed in a process-wide registry ([`segments`]), the seam where DMA
//! mapping (VFIO) attaches.
//!
//! The IOVA mode is decided once, by EAL initialisation, and handed to [`configure`] with
//! the rest of the allocator's settings (segments are made in it) and to each PCI device
//! as it is opened. From then on each segment carries the mode it was made in
//! ([`Segment::iova_mode`], [`SegmentInfo::iova_mode`]) and each device the mode it is
//! given (`PciBackend::iova_mode`): code that hands addresses to devices reads it there,
//! never back from the configuration.

use crate::error::{Error, MemoryError, Result};
use std::fmt;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

/// IOVA mode: how device DMA addresses relate to process addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IovaMode {
    /// IOVA = virtual address (IOMMU/VFIO).
    Va,
    /// IOVA = physical address (needs pinned hugepages).
    Pa,
}

impl FromStr for IovaMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "va" => Ok(Self::Va),
            "pa" => Ok(Self::Pa),
            _ => Err("expected 'va' or 'pa'".to_string()),
        }
    }
}

impl fmt::Display for IovaMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Va => "va",
            Self::Pa => "pa",
        })
    }
}

/// How segments are allocated; set once by EAL initialisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Use ordinary (4 KiB page) shared memory instead of hugepages.
    pub no_huge: bool,
    /// Allocate hugepages as files in this hugetlbfs mount instead of with `memfd_create`.
    pub huge_dir: Option<PathBuf>,
    /// Prefix for file and memfd names (`--file-prefix`).
    pub file_prefix: String,
    /// What IOVAs new segments get (the EAL's decision); read a segment's own mode
    /// rather than this.
    pub iova_mode: IovaMode,
    /// Upper bound on all segments together (`-m`), in bytes.
    pub limit_bytes: Option<u64>,
}

impl Default for MemoryConfig {
    /// Ordinary memory, IOVA as VA: what unit tests and tools get without an EAL.
    fn default() -> Self {
        MemoryConfig {
            no_huge: true,
            huge_dir: None,
            file_prefix: "pmd".into(),
            iova_mode: IovaMode::Va,
            limit_bytes: None,
        }
    }
}

static CONFIG: RwLock<Option<MemoryConfig>> = RwLock::new(None);
static USED: AtomicU64 = AtomicU64::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
static REGISTRY: Mutex<Vec<SegmentInfo>> = Mutex::new(Vec::new());

/// What happened to a segment, as told to listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentEvent {
    /// The segment was mapped (or existed when the listener was added).
    Added,
    /// The segment is about to be unmapped.
    Removed,
}

/// A callback told about every segment (e.g. to DMA-map it for a device).
pub type SegmentListener = Box<dyn Fn(SegmentEvent, &SegmentInfo) -> Result<()> + Send + Sync>;

static LISTENERS: Mutex<Vec<(u64, SegmentListener)>> = Mutex::new(Vec::new());
static NEXT_LISTENER: AtomicU64 = AtomicU64::new(1);

/// Registers `f`: it is called at once with [`SegmentEvent::Added`] for every live segment,
/// then for every segment added or removed later. If it fails for a live segment it is not
/// registered and the error is returned; if it fails for a new segment, that allocation
/// fails. Returns an id for [`remove_listener`].
pub fn add_listener(f: SegmentListener) -> Result<u64> {
    let mut listeners = LISTENERS.lock().unwrap_or_else(|e| e.into_inner());
    for seg in segments() {
        f(SegmentEvent::Added, &seg)?;
    }
    let id = NEXT_LISTENER.fetch_add(1, Ordering::Relaxed);
    listeners.push((id, f));
    Ok(id)
}

/// Unregisters a listener (it is not told about anything after this returns).
pub fn remove_listener(id: u64) {
    LISTENERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(i, _)| *i != id);
}

fn notify(event: SegmentEvent, seg: &SegmentInfo) -> Result<()> {
    let listeners = LISTENERS.lock().unwrap_or_else(|e| e.into_inner());
    let mut first_err = None;
    for (_, f) in listeners.iter() {
        if let Err(e) = f(event, seg) {
            tracing::warn!(segment = seg.name, ?event, "segment listener failed: {e}");
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Sets the process-wide memory configuration (done by [`crate::Eal::init`]).
pub fn configure(cfg: MemoryConfig) {
    *CONFIG.write().unwrap_or_else(|e| e.into_inner()) = Some(cfg);
}

/// The current process-wide memory configuration.
pub fn config() -> MemoryConfig {
    CONFIG
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

/// Bytes currently held by all live segments.
pub fn used_bytes() -> u64 {
    USED.load(Ordering::Relaxed)
}

/// A description of a live segment, for DMA mapping and diagnostics.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// Unique id within the process.
    pub id: u64,
    /// What the segment holds (e.g. the mempool name).
    pub name: String,
    /// Start virtual address.
    pub va: usize,
    /// Length in bytes (a multiple of `page_size`).
    pub len: usize,
    /// Page size backing the segment.
    pub page_size: usize,
    /// IOVA of the first byte.
    pub iova: u64,
    /// Whether IOVAs are contiguous over the whole segment.
    pub iova_contiguous: bool,
    /// What the IOVAs are: virtual or physical addresses.
    pub iova_mode: IovaMode,
    /// The backing file descriptor, valid while the segment lives (for sharing the memory
    /// with a peer process, e.g. vhost-user's SET_MEM_TABLE). Offset 0 maps `va`.
    pub fd: std::os::fd::RawFd,
}

/// Live segments (a snapshot).
pub fn segments() -> Vec<SegmentInfo> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A mapped, populated, locked region of memory with a known IOVA per byte.
#[derive(Debug)]
pub struct Segment {
    id: u64,
    va: NonNull<u8>,
    len: usize,
    page_size: usize,
    fd: OwnedFd,
    /// The IOVA mode the segment was made in.
    iova_mode: IovaMode,
    /// Physical address of each page in IOVA-as-PA mode; empty in IOVA-as-VA mode.
    page_pa: Vec<u64>,
}

// SAFETY: the segment owns its mapping; the raw pointer is only an address.
unsafe impl Send for Segment {}
// SAFETY: shared access hands out only addresses; writing through them is the caller's
// (unsafe) business, coordinated by the structures built on top (mempool).
unsafe impl Sync for Segment {}

impl Segment {
    /// Allocates at least `len` bytes under the process-wide configuration.
    pub fn alloc(name: &str, len: usize) -> Result<Segment> {
        Self::alloc_with(name, len, &config())
    }

    /// Allocates at least `len` bytes under an explicit configuration.
    pub fn alloc_with(name: &str, len: usize, cfg: &MemoryConfig) -> Result<Segment> {
        if len == 0 {
            return Err(MemoryError::ZeroLength {
                segment: name.to_string(),
            }
            .into());
        }
        let page_size = if cfg.no_huge {
            page_size_4k()
        } else {
            match &cfg.huge_dir {
                Some(dir) => hugetlbfs_page_size(dir)?,
                None => default_hugepage_size()?,
            }
        };
        let len = len.div_ceil(page_size) * page_size;
        reserve_budget(len as u64, cfg.limit_bytes)?;
        let made = if cfg!(miri) {
            Self::map_for_miri(name, len, page_size, cfg)
        } else {
            Self::map(name, len, page_size, cfg)
        };
        if made.is_err() {
            USED.fetch_sub(len as u64, Ordering::Relaxed);
        }
        let seg = made?;
        let info = seg.info(name);
        REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(info.clone());
        // On failure `seg` drops here, which tells the listeners it is gone again.
        notify(SegmentEvent::Added, &info)?;
        Ok(seg)
    }

    /// Allocates room for `count` elements of `elt` bytes each under the process-wide
    /// configuration, and says where each element goes ([`ElementLayout::offset`]).
    pub fn alloc_elements(
        name: &str,
        count: usize,
        elt: usize,
    ) -> Result<(Segment, ElementLayout)> {
        Self::alloc_elements_with(name, count, elt, &config())
    }

    /// [`Segment::alloc_elements`] in a segment another process can map safely: a memfd
    /// sealed against resizing, on hugepages unless `--no-huge`, also when `--huge-dir`
    /// names a hugetlbfs mount (whose files cannot be sealed: a peer could truncate one
    /// under us). A kernel without hugetlb memfds gets the configured kind instead.
    pub fn alloc_shareable_elements(
        name: &str,
        count: usize,
        elt: usize,
    ) -> Result<(Segment, ElementLayout)> {
        let cfg = config();
        let memfd = MemoryConfig {
            huge_dir: None,
            ..cfg.clone()
        };
        match Self::alloc_elements_with(name, count, elt, &memfd) {
            Err(_) if cfg.huge_dir.is_some() => Self::alloc_elements_with(name, count, elt, &cfg),
            made => made,
        }
    }

    fn alloc_elements_with(
        name: &str,
        count: usize,
        elt: usize,
        cfg: &MemoryConfig,
    ) -> Result<(Segment, ElementLayout)> {
        let layout = ElementLayout::new(elt, cfg);
        let seg = Self::alloc_with(name, layout.bytes(count), cfg)?;
        Ok((seg, layout))
    }

    /// What [`Segment::map`] is under Miri only (`cargo miri test`, see `ci/miri.sh`):
    /// Miri runs neither `memfd_create` nor a shared file mapping, so the segment is private
    /// anonymous memory and its descriptor an eventfd that holds no memory. That is enough
    /// for the pool, ring and buffer tests Miri checks, none of which shares a segment.
    fn map_for_miri(
        name: &str,
        len: usize,
        page_size: usize,
        cfg: &MemoryConfig,
    ) -> Result<Segment> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // SAFETY: eventfd takes no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            return Err(Error::io(format!("eventfd for {name}"), err));
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: a fresh private anonymous mapping at an address chosen by the kernel.
        let va = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if va == libc::MAP_FAILED {
            let err = std::io::Error::last_os_error();
            return Err(Error::io(
                format!("mapping {len} bytes of memory for {name}"),
                err,
            ));
        }
        Ok(Segment {
            id,
            va: NonNull::new(va as *mut u8).ok_or(MemoryError::NullMapping)?,
            len,
            page_size,
            fd,
            iova_mode: cfg.iova_mode,
            page_pa: Vec::new(),
        })
    }

    fn map(name: &str, len: usize, page_size: usize, cfg: &MemoryConfig) -> Result<Segment> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        // Memfds allow sealing: once sized, they are sealed against resizing, so a peer
        // process a driver passes one to (memif) can map it without fearing SIGBUS.
        let sealing = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        let fd = if cfg.no_huge {
            memfd(&format!("{}-{name}", cfg.file_prefix), sealing)?
        } else if let Some(dir) = &cfg.huge_dir {
            hugetlbfs_file(dir, &cfg.file_prefix, id)?
        } else {
            let shift = page_size.trailing_zeros();
            let flags = libc::MFD_CLOEXEC | libc::MFD_HUGETLB | (shift << libc::MFD_HUGE_SHIFT);
            let name = format!("{}-{name}", cfg.file_prefix);
            // Kernels before 4.16 refuse sealing on hugetlb memfds: those get none.
            memfd(&name, flags | libc::MFD_ALLOW_SEALING).or_else(|_| memfd(&name, flags))?
        };
        // SAFETY: fd is a valid open descriptor we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            let err = std::io::Error::last_os_error();
            return Err(if cfg.no_huge {
                Error::io(format!("sizing {len} bytes of memory for {name}"), err)
            } else {
                hugepage_shortage(name, len, page_size)
            });
        }
        if cfg.huge_dir.is_none() {
            // A kernel that refuses leaves the memfd unsealed: only sharing it is affected.
            let _ =
                crate::unix::memfd::add_seals(fd.as_fd(), libc::F_SEAL_SHRINK | libc::F_SEAL_GROW);
        }
        // SAFETY: mapping a fresh shared file mapping at an address chosen by the kernel.
        let va = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if va == libc::MAP_FAILED {
            let err = std::io::Error::last_os_error();
            return Err(if cfg.no_huge {
                Error::io(format!("mapping {len} bytes of memory for {name}"), err)
            } else {
                hugepage_shortage(name, len, page_size)
            });
        }
        let va = NonNull::new(va as *mut u8).ok_or(MemoryError::NullMapping)?;
        // SAFETY: va..va+len is our mapping.
        if unsafe { libc::mlock(va.as_ptr() as *const libc::c_void, len) } != 0 {
            tracing::debug!(
                segment = name,
                "mlock failed ({}); memory stays populated but unlocked",
                std::io::Error::last_os_error()
            );
        }
        let mut seg = Segment {
            id,
            va,
            len,
            page_size,
            fd,
            iova_mode: cfg.iova_mode,
            page_pa: Vec::new(),
        };
        if cfg.iova_mode == IovaMode::Pa {
            seg.page_pa = physical_addresses(seg.va.as_ptr() as usize, len, page_size)?;
        }
        Ok(seg)
    }

    fn info(&self, name: &str) -> SegmentInfo {
        SegmentInfo {
            id: self.id,
            name: name.to_string(),
            va: self.va.as_ptr() as usize,
            len: self.len,
            page_size: self.page_size,
            iova: self.iova_at(0),
            iova_contiguous: self
                .page_pa
                .windows(2)
                .all(|w| w[1] == w[0] + self.page_size as u64),
            iova_mode: self.iova_mode,
            fd: self.fd.as_raw_fd(),
        }
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.va.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: segments are never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Size of the pages backing this segment.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Whether the segment is backed by hugepages.
    pub fn is_huge(&self) -> bool {
        self.page_size > page_size_4k()
    }

    /// The backing file descriptor (for sharing the memory with a peer process).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// What this segment's IOVAs are: virtual or physical addresses.
    pub fn iova_mode(&self) -> IovaMode {
        self.iova_mode
    }

    /// IOVA of the byte at `offset` (clamped to the segment).
    #[inline]
    pub fn iova_at(&self, offset: usize) -> u64 {
        let offset = offset.min(self.len - 1);
        match self.page_pa.get(offset / self.page_size) {
            Some(pa) => pa + (offset % self.page_size) as u64,
            None => self.va.as_ptr() as u64 + offset as u64,
        }
    }
}

/// Where equal-sized elements go in a segment. In IOVA-as-PA mode an element must not
/// straddle pages (they need not be physically contiguous), so elements no larger than a
/// page are laid out page by page; otherwise they follow each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementLayout {
    elt: usize,
    page: usize,
    /// Elements per page when laid out page by page; 0 when they follow each other.
    per_page: usize,
}

impl ElementLayout {
    /// The layout of `elt`-byte elements in segments made under `cfg` (pages of the
    /// default hugepage size, or 4 KiB with `no_huge`).
    pub fn new(elt: usize, cfg: &MemoryConfig) -> ElementLayout {
        let page = if cfg.no_huge {
            page_size_4k()
        } else {
            default_hugepage_size().unwrap_or(2 << 20)
        };
        let paged = cfg.iova_mode == IovaMode::Pa && elt <= page;
        ElementLayout {
            elt,
            page,
            per_page: if paged { (page / elt.max(1)).max(1) } else { 0 },
        }
    }

    /// Bytes `count` elements take.
    pub fn bytes(&self, count: usize) -> usize {
        match self.per_page {
            0 => count * self.elt,
            per => count.div_ceil(per) * self.page,
        }
    }

    /// Offset of element `i` from the start of the segment.
    pub fn offset(&self, i: usize) -> usize {
        match self.per_page {
            0 => i * self.elt,
            per => i / per * self.page + i % per * self.elt,
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        let info = REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|s| s.id == self.id)
            .cloned();
        if let Some(info) = info {
            let _ = notify(SegmentEvent::Removed, &info);
        }
        // SAFETY: unmapping our own mapping; nothing refers to it any more (owners of the
        // segment guarantee that before dropping it).
        unsafe { libc::munmap(self.va.as_ptr() as *mut libc::c_void, self.len) };
        USED.fetch_sub(self.len as u64, Ordering::Relaxed);
        REGISTRY
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s.id != self.id);
    }
}

fn reserve_budget(len: u64, limit: Option<u64>) -> Result<()> {
    let prev = USED.fetch_add(len, Ordering::Relaxed);
    if let Some(limit) = limit {
        if prev + len > limit {
            USED.fetch_sub(len, Ordering::Relaxed);
            return Err(MemoryError::LimitExceeded {
                in_use_mib: prev >> 20,
                requested_mib: len.div_ceil(1 << 20),
                limit_mib: limit >> 20,
            }
            .into());
        }
    }
    Ok(())
}

fn memfd(name: &str, flags: libc::c_uint) -> Result<OwnedFd> {
    // NULs are replaced first, so the conversion cannot fail.
    let cname = std::ffi::CString::new(name.replace('\0', "_")).unwrap_or_default();
    // SAFETY: valid NUL-terminated name; the returned fd is checked.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), flags) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        let hint = if flags & libc::MFD_HUGETLB != 0 {
            " (this kernel may not support hugetlb memfds; pass --huge-dir with a hugetlbfs mount)"
        } else {
            ""
        };
        return Err(Error::io(format!("memfd_create{hint}"), err));
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn hugetlbfs_file(dir: &Path, prefix: &str, id: u64) -> Result<OwnedFd> {
    let path = dir.join(format!("{prefix}map_{}_{id}", std::process::id()));
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io(format!("creating hugepage file {}", path.display()), e))?;
    // Unlink at once: the mapping keeps the pages, and nothing is left behind on exit or crash.
    let _ = fs::remove_file(&path);
    Ok(OwnedFd::from(file))
}

fn hugepage_shortage(name: &str, len: usize, page_size: usize) -> Error {
    let need = len / page_size;
    let size_kb = page_size / 1024;
    let free = hugepage_pools()
        .into_iter()
        .find(|p| p.size_kb as usize == size_kb)
        .map(|p| p.free)
        .unwrap_or(0);
    let total_needed = need as u64
        + hugepage_pools()
            .iter()
            .find(|p| p.size_kb as usize == size_kb)
            .map(|p| p.total - p.free)
            .unwrap_or(0);
    MemoryError::HugepageShortage {
        segment: name.to_string(),
        need,
        size_kb,
        free,
        total_needed,
    }
    .into()
}

/// The system page size (4 KiB on x86_64).
pub fn page_size_4k() -> usize {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as usize
    } else {
        4096
    }
}

/// The kernel's default hugepage size (`Hugepagesize` in /proc/meminfo).
pub fn default_hugepage_size() -> Result<usize> {
    let meminfo =
        fs::read_to_string("/proc/meminfo").map_err(|e| Error::io("reading /proc/meminfo", e))?;
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("Hugepagesize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| MemoryError::NoHugepageSupport.into())
}

/// One hugepage pool of the kernel (one page size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugepagePool {
    /// Page size in KiB.
    pub size_kb: u64,
    /// Pages reserved (`nr_hugepages`).
    pub total: u64,
    /// Pages not in use.
    pub free: u64,
}

/// The hugepage pools of the system, from /sys/kernel/mm/hugepages.
pub fn hugepage_pools() -> Vec<HugepagePool> {
    hugepage_pools_in(Path::new("/sys/kernel/mm/hugepages"))
}

/// The hugepage pools described under `root` (a sysfs `hugepages` directory).
pub fn hugepage_pools_in(root: &Path) -> Vec<HugepagePool> {
    let read = |dir: &Path, f: &str| -> u64 {
        fs::read_to_string(dir.join(f))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut pools: Vec<HugepagePool> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size_kb = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let dir = e.path();
            Some(HugepagePool {
                size_kb,
                total: read(&dir, "nr_hugepages"),
                free: read(&dir, "free_hugepages"),
            })
        })
        .collect();
    pools.sort_by_key(|p| p.size_kb);
    pools
}

/// A mounted hugetlbfs file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugetlbfsMount {
    /// Mount point.
    pub path: PathBuf,
    /// Page size in bytes (from the `pagesize=` option, else the default size).
    pub page_size: usize,
}

/// Parses hugetlbfs mounts out of the text of /proc/mounts.
pub fn parse_hugetlbfs_mounts(mounts: &str, default_page: usize) -> Vec<HugetlbfsMount> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_src, path, fstype, opts) = (f.next()?, f.next()?, f.next()?, f.next()?);
            if fstype != "hugetlbfs" {
                return None;
            }
            let page_size = opts
                .split(',')
                .find_map(|o| o.strip_prefix("pagesize="))
                .and_then(parse_size)
                .unwrap_or(default_page);
            Some(HugetlbfsMount {
                path: PathBuf::from(path.replace("\\040", " ")),
                page_size,
            })
        })
        .collect()
}

/// Hugetlbfs mounts of this system.
pub fn hugetlbfs_mounts() -> Vec<HugetlbfsMount> {
    let text = fs::read_to_string("/proc/mounts").unwrap_or_default();
    parse_hugetlbfs_mounts(&text, default_hugepage_size().unwrap_or(2 << 20))
}

/// Parses sizes like `2M`, `1G`, `2048k` or `4096` (bytes).
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>().ok()?.checked_mul(mult)
}

fn hugetlbfs_page_size(dir: &Path) -> Result<usize> {
    let canon = dir
        .canonicalize()
        .map_err(|e| Error::io(format!("--huge-dir {}", dir.display()), e))?;
    hugetlbfs_mounts()
        .into_iter()
        .find(|m| m.path == canon)
        .map(|m| m.page_size)
        .ok_or_else(|| {
            MemoryError::NotHugetlbfs {
                dir: dir.to_path_buf(),
            }
            .into()
        })
}

/// Physical address of the byte at `va` (which must be mapped and touched), from
/// /proc/self/pagemap; needs root (CAP_SYS_ADMIN).
pub fn virt_to_phys(va: usize) -> Result<u64> {
    let small = page_size_4k();
    let base = va - va % small;
    Ok(physical_addresses(base, small, small)?[0] + (va - base) as u64)
}

/// Physical address of each page of `va..va+len`, from /proc/self/pagemap.
fn physical_addresses(va: usize, len: usize, page_size: usize) -> Result<Vec<u64>> {
    use std::os::unix::fs::FileExt;
    let f = fs::File::open("/proc/self/pagemap")
        .map_err(|e| Error::io("opening /proc/self/pagemap", e))?;
    let small = page_size_4k();
    (0..len / page_size)
        .map(|i| {
            let addr = va + i * page_size;
            let mut entry = [0u8; 8];
            f.read_exact_at(&mut entry, (addr / small * 8) as u64)
                .map_err(|e| Error::io("reading /proc/self/pagemap", e))?;
            let entry = u64::from_le_bytes(entry);
            let present = entry >> 63 == 1;
            let pfn = entry & ((1 << 55) - 1);
            if !present || pfn == 0 {
                return Err(MemoryError::NoPhysicalAddresses.into());
            }
            Ok(pfn * small as u64 + (addr % small) as u64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_segment_is_usable_and_registered() {
        let seg = Segment::alloc_with("t-ordinary", 10_000, &MemoryConfig::default()).unwrap();
        assert_eq!(seg.len() % seg.page_size(), 0);
        assert!(seg.len() >= 10_000);
        // SAFETY: writing inside our own fresh mapping.
        unsafe { seg.as_ptr().add(9_999).write(7) };
        assert_eq!(seg.iova_at(0), seg.as_ptr() as u64);
        assert_eq!(seg.iova_at(100), seg.as_ptr() as u64 + 100);
        assert!(segments().iter().any(|s| s.name == "t-ordinary"));
        let used = used_bytes();
        drop(seg);
        assert!(used_bytes() < used);
        assert!(!segments().iter().any(|s| s.name == "t-ordinary"));
    }

    #[test]
    fn listeners_see_existing_and_new_segments() {
        use std::sync::{Arc, Mutex as M};
        let before = Segment::alloc_with("t-listen-old", 4096, &MemoryConfig::default()).unwrap();
        let seen: Arc<M<Vec<(SegmentEvent, String)>>> = Arc::default();
        let s2 = seen.clone();
        let id = add_listener(Box::new(move |ev, seg| {
            if seg.name.starts_with("t-listen") {
                s2.lock().unwrap().push((ev, seg.name.clone()));
            }
            Ok(())
        }))
        .unwrap();
        let after = Segment::alloc_with("t-listen-new", 4096, &MemoryConfig::default()).unwrap();
        drop(after);
        remove_listener(id);
        drop(before);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                (SegmentEvent::Added, "t-listen-old".to_string()),
                (SegmentEvent::Added, "t-listen-new".to_string()),
                (SegmentEvent::Removed, "t-listen-new".to_string()),
            ]
        );
    }

    #[test]
    fn a_failing_listener_fails_the_allocation() {
        let id = add_listener(Box::new(|ev, seg| {
            if ev == SegmentEvent::Added && seg.name == "t-refused" {
                return Err(Error::Config("refused by test".into()));
            }
            Ok(())
        }))
        .unwrap();
        let r = Segment::alloc_with("t-refused", 4096, &MemoryConfig::default());
        remove_listener(id);
        assert!(r.unwrap_err().to_string().contains("refused by test"));
        assert!(!segments().iter().any(|s| s.name == "t-refused"));
    }

    #[test]
    fn segments_carry_their_iova_mode() {
        let seg = Segment::alloc_with("t-mode", 4096, &MemoryConfig::default()).unwrap();
        assert_eq!(seg.iova_mode(), IovaMode::Va);
        let info = segments().into_iter().find(|s| s.name == "t-mode").unwrap();
        assert_eq!(info.iova_mode, IovaMode::Va);
        assert_eq!("PA".parse::<IovaMode>(), Ok(IovaMode::Pa));
        assert_eq!(IovaMode::Va.to_string(), "va");
        assert!("x".parse::<IovaMode>().is_err());
    }

    #[test]
    fn elements_do_not_straddle_pages_in_pa_mode() {
        let va = MemoryConfig::default();
        let pa = MemoryConfig {
            iova_mode: IovaMode::Pa,
            ..MemoryConfig::default()
        };
        let page = page_size_4k();
        let elt = page / 3 + 64;
        let l = ElementLayout::new(elt, &va);
        assert_eq!((l.bytes(5), l.offset(2)), (5 * elt, 2 * elt));
        let l = ElementLayout::new(elt, &pa);
        assert_eq!(l.bytes(5), 3 * page);
        assert_eq!(
            (l.offset(1), l.offset(2), l.offset(3)),
            (elt, page, page + elt)
        );
        for i in 0..5 {
            assert!(l.offset(i) % page + elt <= page, "{i}");
        }
        // Larger than a page: they follow each other.
        let l = ElementLayout::new(page + 64, &pa);
        assert_eq!(l.offset(1), page + 64);
    }

    #[test]
    fn limit_is_enforced() {
        let cfg = MemoryConfig {
            limit_bytes: Some(0),
            ..MemoryConfig::default()
        };
        let err = Segment::alloc_with("t-limit", 4096, &cfg).unwrap_err();
        assert!(err.to_string().contains("raise -m"), "{err}");
    }

    #[test]
    fn parses_mounts_and_sizes() {
        let text = "nodev /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n\
                    proc /proc proc rw 0 0\n\
                    nodev /mnt/huge\\0401g hugetlbfs rw,pagesize=1024M 0 0\n\
                    nodev /mnt/h hugetlbfs rw 0 0\n";
        let m = parse_hugetlbfs_mounts(text, 2 << 20);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].page_size, 2 << 20);
        assert_eq!(m[1].path, PathBuf::from("/mnt/huge 1g"));
        assert_eq!(m[1].page_size, 1 << 30);
        assert_eq!(m[2].page_size, 2 << 20);
        assert_eq!(parse_size("2048k"), Some(2 << 20));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("99999999999999999G"), None);
    }

    #[test]
    fn reads_pool_counts_from_a_fake_sysfs() {
        let dir = std::env::temp_dir().join(format!("pmd-hp-{}", std::process::id()));
        let p = dir.join("hugepages-2048kB");
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("nr_hugepages"), "16\n").unwrap();
        fs::write(p.join("free_hugepages"), "5\n").unwrap();
        fs::create_dir_all(dir.join("junk")).unwrap();
        let pools = hugepage_pools_in(&dir);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            pools,
            vec![HugepagePool {
                size_kb: 2048,
                total: 16,
                free: 5
            }]
        );
    }

    #[test]
    fn hugepage_shortage_message_says_what_to_do() {
        let e = hugepage_shortage("pool0", 8 << 20, 2 << 20).to_string();
        assert!(e.contains("need 4 x 2048 kB"), "{e}");
        assert!(e.contains("nr_hugepages") && e.contains("--no-huge"), "{e}");
    }
}
