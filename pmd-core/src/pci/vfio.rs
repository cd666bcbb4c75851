//! The VFIO backend: a device bound to `vfio-pci`, reached through a container
//! (`/dev/vfio/vfio`), its IOMMU group (`/dev/vfio/<N>`, or `/dev/vfio/noiommu-<N>` in
//! no-IOMMU mode) and the device file descriptor the group hands out.
//!
//! Written from the kernel's VFIO documentation (Documentation/driver-api/vfio.rst) and
//! the structures of `linux/vfio.h` (taken from `vfio-bindings`); the ioctl request
//! numbers are computed here ([`ioctl`]).
//!
//! - **Container** ([`VfioContainer`]): one IOMMU domain. Groups are attached to it and
//!   the IOMMU type is set once, when the first group is attached (type1 v2 with an
//!   IOMMU, or the no-IOMMU type). With an IOMMU the container registers a memory
//!   listener ([`crate::memory::add_listener`]) so every segment, existing and future,
//!   is DMA-mapped at its IOVA (`VFIO_IOMMU_MAP_DMA`) and unmapped when it goes away.
//!   When the last group leaves, the listener is removed first and all mappings undone.
//! - **Group** ([`VfioGroup`]): must be viable (all its devices bound to vfio-pci or
//!   unbound); shared by every device of the group that this process opens.
//! - **Device** ([`VfioDevice`]): config space by `pread`/`pwrite` at the config region's
//!   offset, BARs by `mmap` honouring sparse-mmap areas, interrupts with eventfds,
//!   function reset.
//!
//! BAR mappings with sparse areas (typically the BAR holding the MSI-X table on older
//! kernels): the whole BAR is first reserved with an anonymous `PROT_NONE` mapping and
//! only the mmappable areas are mapped over it with `MAP_FIXED`. A stray access to a hole
//! (e.g. the MSI-X table) therefore faults cleanly (SIGSEGV) instead of touching whatever
//! else might have been mapped at that address. Use [`VfioDevice::read_region`] /
//! [`VfioDevice::write_region`] to reach the holes through the kernel.

use super::backend::{BackendKind, IrqWait, PciBackend};
use super::mmio::MmioRegion;
use super::open::{bound_driver, HostPaths};
use super::uio::check_pa_segment;
use crate::error::{Error, MemoryError, Result};
use crate::memory::{self, IovaMode, SegmentEvent, SegmentInfo};
use crate::pci_addr::PciAddr;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Once, Weak};
use vfio_bindings::bindings::vfio as sys;

/// VFIO ioctl request numbers, computed with the kernel's `_IO(type, nr)` encoding
/// (direction and size fields are zero for every VFIO ioctl).
pub mod ioctl {
    /// The VFIO ioctl type, `';'`.
    pub const VFIO_TYPE: u32 = b';' as u32;
    /// The first VFIO ioctl number.
    pub const VFIO_BASE: u32 = 100;

    /// `_IO(ty, nr)`: no data direction, no size.
    pub const fn io(ty: u32, nr: u32) -> u64 {
        ((ty as u64) << 8) | nr as u64
    }

    /// Returns the API version (`VFIO_API_VERSION`), on the container.
    pub const VFIO_GET_API_VERSION: u64 = io(VFIO_TYPE, VFIO_BASE);
    /// Whether an extension (IOMMU type) is supported (> 0), on the container.
    pub const VFIO_CHECK_EXTENSION: u64 = io(VFIO_TYPE, VFIO_BASE + 1);
    /// Sets the IOMMU type, on the container, once a group is attached.
    pub const VFIO_SET_IOMMU: u64 = io(VFIO_TYPE, VFIO_BASE + 2);
    /// Reads `struct vfio_group_status`, on a group.
    pub const VFIO_GROUP_GET_STATUS: u64 = io(VFIO_TYPE, VFIO_BASE + 3);
    /// Attaches a group to a container (argument: pointer to the container fd).
    pub const VFIO_GROUP_SET_CONTAINER: u64 = io(VFIO_TYPE, VFIO_BASE + 4);
    /// Detaches a group from its container.
    pub const VFIO_GROUP_UNSET_CONTAINER: u64 = io(VFIO_TYPE, VFIO_BASE + 5);
    /// Returns a device fd for the device named by the string argument, on a group.
    pub const VFIO_GROUP_GET_DEVICE_FD: u64 = io(VFIO_TYPE, VFIO_BASE + 6);
    /// Reads `struct vfio_device_info`, on a device.
    pub const VFIO_DEVICE_GET_INFO: u64 = io(VFIO_TYPE, VFIO_BASE + 7);
    /// Reads `struct vfio_region_info` (plus capabilities), on a device.
    pub const VFIO_DEVICE_GET_REGION_INFO: u64 = io(VFIO_TYPE, VFIO_BASE + 8);
    /// Reads `struct vfio_irq_info`, on a device.
    pub const VFIO_DEVICE_GET_IRQ_INFO: u64 = io(VFIO_TYPE, VFIO_BASE + 9);
    /// Configures interrupts with `struct vfio_irq_set`, on a device.
    pub const VFIO_DEVICE_SET_IRQS: u64 = io(VFIO_TYPE, VFIO_BASE + 10);
    /// Resets the device (when `VFIO_DEVICE_FLAGS_RESET` is reported).
    pub const VFIO_DEVICE_RESET: u64 = io(VFIO_TYPE, VFIO_BASE + 11);
    /// Type1 IOMMU information, on the container (shares its number with the device
    /// ioctl `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`; the fd type tells them apart).
    pub const VFIO_IOMMU_GET_INFO: u64 = io(VFIO_TYPE, VFIO_BASE + 12);
    /// Maps memory for DMA with `struct vfio_iommu_type1_dma_map`, on the container.
    pub const VFIO_IOMMU_MAP_DMA: u64 = io(VFIO_TYPE, VFIO_BASE + 13);
    /// Unmaps DMA memory with `struct vfio_iommu_type1_dma_unmap`, on the container.
    pub const VFIO_IOMMU_UNMAP_DMA: u64 = io(VFIO_TYPE, VFIO_BASE + 14);
}

/// Issues an ioctl.
///
/// # Safety
/// `arg` must be what `req` expects on `fd`: a plain value, or the address of a live,
/// correctly laid out and sized buffer that the kernel may read and write for the
/// duration of the call.
unsafe fn raw_ioctl(
    fd: BorrowedFd<'_>,
    req: u64,
    arg: libc::c_ulong,
) -> std::io::Result<libc::c_int> {
    // SAFETY: forwarded to the caller's contract.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as libc::Ioctl, arg) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn page_size() -> usize {
    memory::page_size_4k()
}

fn round_up(v: u64, to: u64) -> Option<u64> {
    v.checked_add(to - 1).map(|x| x / to * to)
}

fn vfio_err(addr: impl std::fmt::Display, msg: impl Into<String>) -> Error {
    Error::driver(format!("vfio {addr}"), msg)
}

// ---------------------------------------------------------------------------------------
// Region information and its capability chain
// ---------------------------------------------------------------------------------------

/// One mmappable area of a region (from `VFIO_REGION_INFO_CAP_SPARSE_MMAP`), relative to
/// the start of the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseArea {
    /// Offset from the start of the region.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

/// What the capability chain of a region told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionCaps {
    /// The sparse-mmap areas, when the region has that capability (may be empty: then
    /// nothing of it may be mapped).
    pub sparse: Option<Vec<SparseArea>>,
    /// `VFIO_REGION_INFO_CAP_MSIX_MAPPABLE`: the MSI-X table may be mapped too.
    pub msix_mappable: bool,
    /// `VFIO_REGION_INFO_CAP_TYPE`: (type, subtype) of a device-specific region.
    pub region_type: Option<(u32, u32)>,
}

/// Size of `struct vfio_region_info` (the fixed part before capabilities).
const REGION_INFO_SIZE: usize = std::mem::size_of::<sys::vfio_region_info>();
/// Size of `struct vfio_info_cap_header`.
const CAP_HEADER_SIZE: usize = std::mem::size_of::<sys::vfio_info_cap_header>();
/// At most this many capabilities are walked (the kernel reports a handful).
const MAX_CAPS: usize = 64;
/// At most this many sparse areas are accepted.
const MAX_SPARSE_AREAS: u32 = 1024;
/// Largest `argsz` we allocate for a region-info query.
const MAX_REGION_INFO_BYTES: u32 = 1 << 20;

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    buf.get(at..at.checked_add(2)?)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    buf.get(at..at.checked_add(4)?)
        .map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
}

fn read_u64(buf: &[u8], at: usize) -> Option<u64> {
    buf.get(at..at.checked_add(8)?)
        .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
}

/// Parses the capability chain of a region-info buffer (`buf` holds the whole
/// `struct vfio_region_info` as returned with its `argsz`; `first` is its `cap_offset`).
///
/// Every offset and length is bounded by `buf`; offsets must strictly increase along the
/// chain (so a loop is an error, never a hang), headers must be 4-byte aligned and lie
/// after the fixed struct. Unknown capabilities are skipped.
pub fn parse_region_caps(buf: &[u8], first: u32) -> Result<RegionCaps> {
    let bad =
        |msg: String| Error::driver("vfio", format!("malformed region capability chain: {msg}"));
    let mut caps = RegionCaps::default();
    let mut at = first as usize;
    let mut walked = 0usize;
    let mut prev_end = REGION_INFO_SIZE;
    while at != 0 {
        walked += 1;
        if walked > MAX_CAPS {
            return Err(bad(format!("more than {MAX_CAPS} capabilities")));
        }
        if at < prev_end {
            return Err(bad(format!(
                "capability at {at:#x} overlaps the previous one or the fixed header (ends at {prev_end:#x}); loop?"
            )));
        }
        if !at.is_multiple_of(4) {
            return Err(bad(format!(
                "capability offset {at:#x} is not 4-byte aligned"
            )));
        }
        let (Some(id), Some(_version), Some(next)) = (
            read_u16(buf, at),
            read_u16(buf, at + 2),
            read_u32(buf, at + 4),
        ) else {
            return Err(bad(format!(
                "capability header at {at:#x} lies outside the {}-byte buffer",
                buf.len()
            )));
        };
        let body = at + CAP_HEADER_SIZE;
        match id as u32 {
            sys::VFIO_REGION_INFO_CAP_SPARSE_MMAP => {
                let nr = read_u32(buf, body).ok_or_else(|| {
                    bad(format!("sparse-mmap capability at {at:#x} is truncated"))
                })?;
                if nr > MAX_SPARSE_AREAS {
                    return Err(bad(format!("sparse-mmap capability claims {nr} areas")));
                }
                // header, nr_areas, reserved, then the areas.
                let areas_at = body + 8;
                let mut areas = Vec::with_capacity(nr as usize);
                for i in 0..nr as usize {
                    let a = areas_at + i * 16;
                    let (Some(offset), Some(size)) = (read_u64(buf, a), read_u64(buf, a + 8))
                    else {
                        return Err(bad(format!(
                            "sparse-mmap area {i} of {nr} at {a:#x} lies outside the {}-byte buffer",
                            buf.len()
                        )));
                    };
                    areas.push(SparseArea { offset, size });
                }
                prev_end = areas_at + nr as usize * 16;
                caps.sparse = Some(areas);
            }
            sys::VFIO_REGION_INFO_CAP_TYPE => {
                let (Some(t), Some(s)) = (read_u32(buf, body), read_u32(buf, body + 4)) else {
                    return Err(bad(format!("type capability at {at:#x} is truncated")));
                };
                caps.region_type = Some((t, s));
                prev_end = body + 8;
            }
            sys::VFIO_REGION_INFO_CAP_MSIX_MAPPABLE => {
                caps.msix_mappable = true;
                prev_end = body;
            }
            _ => prev_end = body,
        }
        let next = next as usize;
        if next != 0 && next <= at {
            return Err(bad(format!(
                "capability at {at:#x} points back to {next:#x} (loop)"
            )));
        }
        at = next;
    }
    Ok(caps)
}

/// Checks sparse-mmap areas against the region: each must start page-aligned, lie inside
/// the region (after rounding its length up to a page, which is what mmap maps), and not
/// overlap another. Zero-length areas are dropped. Returns the areas sorted by offset.
pub fn validate_sparse_areas(
    areas: &[SparseArea],
    region_size: u64,
    page: u64,
) -> Result<Vec<SparseArea>> {
    let bad = |msg: String| Error::driver("vfio", format!("invalid sparse-mmap area: {msg}"));
    let region_end =
        round_up(region_size, page).ok_or_else(|| bad("region size overflows".into()))?;
    let mut out: Vec<SparseArea> = areas.iter().copied().filter(|a| a.size != 0).collect();
    out.sort_by_key(|a| a.offset);
    let mut prev_end = 0u64;
    for a in &out {
        if !a.offset.is_multiple_of(page) {
            return Err(bad(format!("offset {:#x} is not page-aligned", a.offset)));
        }
        let end = round_up(a.size, page)
            .and_then(|s| a.offset.checked_add(s))
            .ok_or_else(|| bad(format!("area {:#x}+{:#x} overflows", a.offset, a.size)))?;
        if end > region_end {
            return Err(bad(format!(
                "area {:#x}..{end:#x} lies outside the {region_size:#x}-byte region",
                a.offset
            )));
        }
        if a.offset < prev_end {
            return Err(bad(format!(
                "area at {:#x} overlaps the previous area",
                a.offset
            )));
        }
        prev_end = end;
    }
    Ok(out)
}

/// A region of the device (BAR, ROM, config space, ...) as `VFIO_DEVICE_GET_REGION_INFO`
/// describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    /// Region index (`VFIO_PCI_*_REGION_INDEX`).
    pub index: u32,
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Size in bytes (0: not implemented).
    pub size: u64,
    /// Offset of the region within the device fd (for pread/pwrite/mmap).
    pub offset: u64,
    /// Parsed capabilities.
    pub caps: RegionCaps,
}

impl RegionInfo {
    /// Whether the region may be mmapped (at least partly).
    pub fn mmappable(&self) -> bool {
        self.flags & sys::VFIO_REGION_INFO_FLAG_MMAP != 0
    }
}

/// Builds a [`RegionInfo`] from a returned buffer (bounded parsing, see
/// [`parse_region_caps`]).
fn region_from_buffer(buf: &[u8]) -> Result<RegionInfo> {
    let short = || Error::driver("vfio", "region info shorter than struct vfio_region_info");
    let flags = read_u32(buf, 4).ok_or_else(short)?;
    let index = read_u32(buf, 8).ok_or_else(short)?;
    let cap_offset = read_u32(buf, 12).ok_or_else(short)?;
    let size = read_u64(buf, 16).ok_or_else(short)?;
    let offset = read_u64(buf, 24).ok_or_else(short)?;
    let caps = if flags & sys::VFIO_REGION_INFO_FLAG_CAPS != 0 && cap_offset != 0 {
        parse_region_caps(buf, cap_offset)?
    } else {
        RegionCaps::default()
    };
    Ok(RegionInfo {
        index,
        flags,
        size,
        offset,
        caps,
    })
}

// ---------------------------------------------------------------------------------------
// BAR mappings
// ---------------------------------------------------------------------------------------

/// A reserved address range covering one BAR, with the mmappable parts of the BAR mapped
/// over it; the rest stays `PROT_NONE`. Unmapped (all of it) on drop.
#[derive(Debug)]
struct BarMapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is only an address range owned by this value; accesses go through
// MmioRegion's volatile reads and writes.
unsafe impl Send for BarMapping {}
// SAFETY: as above.
unsafe impl Sync for BarMapping {}

impl BarMapping {
    /// Reserves `len` bytes (a multiple of the page size) of address space, inaccessible.
    fn reserve(len: usize) -> std::io::Result<BarMapping> {
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses; it overlaps
        // nothing of ours.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(p as *mut u8)
            .ok_or_else(|| std::io::Error::other("mmap returned NULL"))?;
        Ok(BarMapping { base, len })
    }

    /// Maps `len` bytes of `fd` at `file_offset` read/write over the reservation at
    /// `offset` (page-aligned; `len` is rounded up to pages and must stay inside).
    fn map_area(
        &mut self,
        offset: usize,
        len: usize,
        fd: BorrowedFd<'_>,
        file_offset: u64,
    ) -> std::io::Result<()> {
        let page = page_size();
        let len = len.div_ceil(page) * page;
        if !offset.is_multiple_of(page) || offset.checked_add(len).is_none_or(|e| e > self.len) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "area {offset:#x}+{len:#x} outside the {:#x}-byte reservation",
                    self.len
                ),
            ));
        }
        let off = libc::off_t::try_from(file_offset).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "file offset too large")
        })?;
        // SAFETY: base+offset..+len lies inside our own PROT_NONE reservation (checked
        // above), which nothing else uses, so MAP_FIXED replaces only that.
        let want = unsafe { self.base.as_ptr().add(offset) };
        // SAFETY: see above; fd is a live descriptor for the duration of the call.
        let p = unsafe {
            libc::mmap(
                want as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        if p as *mut u8 != want {
            return Err(std::io::Error::other("MAP_FIXED mapped at another address"));
        }
        Ok(())
    }
}

impl Drop for BarMapping {
    fn drop(&mut self) {
        // SAFETY: the whole range is ours (the reservation plus areas mapped over it);
        // no MmioRegion refers to it any more (they hold the Arc that owns us).
        unsafe { libc::munmap(self.base.as_ptr() as *mut libc::c_void, self.len) };
    }
}

// ---------------------------------------------------------------------------------------
// DMA mappings (type1 IOMMU)
// ---------------------------------------------------------------------------------------

/// Errors unless `to_pin` bytes fit under the soft memlock limit (`None`: unlimited) or
/// the process is root.
pub fn check_memlock(soft_limit: Option<u64>, is_root: bool, to_pin: u64) -> Result<()> {
    match soft_limit {
        Some(limit) if !is_root && limit < to_pin => Err(MemoryError::MemlockLimit {
            limit_kib: limit / 1024,
            pin_kib: to_pin.div_ceil(1024),
        }
        .into()),
        _ => Ok(()),
    }
}

fn memlock_soft_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid rlimit for the kernel to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0
        || r.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(r.rlim_cur)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[derive(Debug, Clone, Copy)]
struct DmaMapping {
    seg_id: u64,
    va: usize,
    len: u64,
}

/// The DMA half of a container: its fd and the table of IOMMU mappings. Shared with the
/// memory listener (which therefore never keeps the container or its groups alive).
#[derive(Debug)]
struct DmaState {
    fd: Arc<OwnedFd>,
    /// iova → mapping.
    maps: Mutex<BTreeMap<u64, DmaMapping>>,
}

impl DmaState {
    fn map_segment(&self, seg: &SegmentInfo) -> Result<()> {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        let len = seg.len as u64;
        if let Some(m) = maps.get(&seg.iova) {
            if m.va == seg.va && m.len == len {
                return Ok(()); // already mapped (listener and explicit dma_map overlap)
            }
        }
        if !seg.iova_contiguous {
            return Err(MemoryError::NotIovaContiguous {
                segment: seg.name.clone(),
            }
            .into());
        }
        let end = seg.iova.checked_add(len).ok_or(MemoryError::IovaOverflow)?;
        if let Some((&iova, m)) = maps.range(..end).next_back() {
            if iova + m.len > seg.iova {
                return Err(MemoryError::DmaOverlap {
                    segment: seg.name.clone(),
                    iova: seg.iova,
                    len,
                    existing: iova,
                }
                .into());
            }
        }
        let pinned: u64 = maps.values().map(|m| m.len).sum();
        check_memlock(memlock_soft_limit(), is_root(), pinned + len)?;
        let mut arg = sys::vfio_iommu_type1_dma_map {
            argsz: std::mem::size_of::<sys::vfio_iommu_type1_dma_map>() as u32,
            flags: sys::VFIO_DMA_MAP_FLAG_READ | sys::VFIO_DMA_MAP_FLAG_WRITE,
            vaddr: seg.va as u64,
            iova: seg.iova,
            size: len,
        };
        // SAFETY: VFIO_IOMMU_MAP_DMA takes a pointer to a vfio_iommu_type1_dma_map, which
        // `arg` is, with argsz set to its size; the memory it names is a live segment.
        unsafe {
            raw_ioctl(
                self.fd.as_fd(),
                ioctl::VFIO_IOMMU_MAP_DMA,
                &mut arg as *mut _ as libc::c_ulong,
            )
        }
        .map_err(|e| {
            let hint = match e.raw_os_error() {
                Some(libc::ENOMEM) => " (memlock limit? raise it with `ulimit -l unlimited`)",
                Some(libc::EINVAL) | Some(libc::ENOSPC) => {
                    " (IOVA beyond the IOMMU's address width? try --iova-mode pa)"
                }
                _ => "",
            };
            Error::io(
                format!(
                    "VFIO_IOMMU_MAP_DMA of segment {} (va {:#x}, iova {:#x}, {len} bytes){hint}",
                    seg.name, seg.va, seg.iova
                ),
                e,
            )
        })?;
        tracing::debug!(segment = seg.name, iova = seg.iova, len, "DMA-mapped");
        maps.insert(
            seg.iova,
            DmaMapping {
                seg_id: seg.id,
                va: seg.va,
                len,
            },
        );
        Ok(())
    }

    fn unmap_segment(&self, seg: &SegmentInfo) -> Result<()> {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        let key = maps
            .iter()
            .find(|(iova, m)| m.seg_id == seg.id || (**iova == seg.iova && m.va == seg.va))
            .map(|(iova, _)| *iova);
        let Some(iova) = key else { return Ok(()) };
        let m = maps.remove(&iova).expect("key just found");
        self.unmap_raw(iova, m.len).map_err(|e| {
            Error::io(
                format!(
                    "VFIO_IOMMU_UNMAP_DMA of segment {} (iova {iova:#x})",
                    seg.name
                ),
                e,
            )
        })
    }

    fn unmap_raw(&self, iova: u64, size: u64) -> std::io::Result<()> {
        let mut arg = sys::vfio_iommu_type1_dma_unmap {
            argsz: std::mem::size_of::<sys::vfio_iommu_type1_dma_unmap>() as u32,
            flags: 0,
            iova,
            size,
            data: Default::default(),
        };
        // SAFETY: VFIO_IOMMU_UNMAP_DMA takes a pointer to a vfio_iommu_type1_dma_unmap
        // (argsz = its fixed size, no dirty bitmap requested); `arg` is one.
        unsafe {
            raw_ioctl(
                self.fd.as_fd(),
                ioctl::VFIO_IOMMU_UNMAP_DMA,
                &mut arg as *mut _ as libc::c_ulong,
            )
        }?;
        Ok(())
    }

    fn unmap_all(&self) {
        let maps = std::mem::take(&mut *self.maps.lock().unwrap_or_else(|e| e.into_inner()));
        for (iova, m) in maps {
            if let Err(e) = self.unmap_raw(iova, m.len) {
                tracing::warn!(iova, "VFIO_IOMMU_UNMAP_DMA failed: {e}");
            }
        }
    }

    fn covers(&self, iova: u64, len: u64) -> bool {
        let maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        maps.range(..=iova).next_back().is_some_and(|(&start, m)| {
            iova.checked_add(len)
                .is_some_and(|end| end <= start + m.len)
        })
    }
}

// ---------------------------------------------------------------------------------------
// Container and groups
// ---------------------------------------------------------------------------------------

/// The IOMMU model of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IommuType {
    /// `VFIO_TYPE1v2_IOMMU`: a real IOMMU; memory is mapped per segment.
    Type1v2,
    /// `VFIO_NOIOMMU_IOMMU`: no translation or isolation; IOVA = physical address.
    NoIommu,
}

impl IommuType {
    fn raw(self) -> u32 {
        match self {
            IommuType::Type1v2 => sys::VFIO_TYPE1v2_IOMMU,
            IommuType::NoIommu => sys::VFIO_NOIOMMU_IOMMU,
        }
    }
}

#[derive(Debug, Default)]
struct ContainerState {
    iommu: Option<IommuType>,
    groups: HashMap<u32, Weak<VfioGroup>>,
    listener: Option<u64>,
}

/// A VFIO container (`/dev/vfio/vfio`): one IOMMU domain shared by the groups attached to
/// it. See the module documentation.
#[derive(Debug)]
pub struct VfioContainer {
    dev_vfio: PathBuf,
    dma: Arc<DmaState>,
    state: Mutex<ContainerState>,
}

static NOIOMMU_WARNING: Once = Once::new();

impl VfioContainer {
    /// Opens `<dev_vfio>/vfio` (normally `/dev/vfio/vfio`) and checks the API version.
    pub fn open_at(dev_vfio: &Path) -> Result<Arc<VfioContainer>> {
        let path = dev_vfio.join("vfio");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::driver(
                    "vfio",
                    format!(
                        "{} does not exist: vfio-pci is not loaded: `modprobe vfio-pci`",
                        path.display()
                    ),
                ),
                std::io::ErrorKind::PermissionDenied => Error::driver(
                    "vfio",
                    format!("permission denied opening {}: run as root", path.display()),
                ),
                _ => Error::io(format!("opening {}", path.display()), e),
            })?;
        let fd: OwnedFd = file.into();
        // SAFETY: VFIO_GET_API_VERSION takes no argument.
        let version =
            unsafe { raw_ioctl(fd.as_fd(), ioctl::VFIO_GET_API_VERSION, 0) }.map_err(|e| {
                Error::io(
                    format!(
                        "VFIO_GET_API_VERSION on {} (not a VFIO container?)",
                        path.display()
                    ),
                    e,
                )
            })?;
        if version as u32 != sys::VFIO_API_VERSION {
            return Err(Error::driver(
                "vfio",
                format!(
                    "unsupported VFIO API version {version} (expected {})",
                    sys::VFIO_API_VERSION
                ),
            ));
        }
        let container = VfioContainer {
            dev_vfio: dev_vfio.to_path_buf(),
            dma: Arc::new(DmaState {
                fd: Arc::new(fd),
                maps: Mutex::new(BTreeMap::new()),
            }),
            state: Mutex::new(ContainerState::default()),
        };
        if !container.supports(IommuType::Type1v2) && !container.supports(IommuType::NoIommu) {
            return Err(Error::driver(
                "vfio",
                "VFIO supports neither the type1v2 IOMMU nor no-IOMMU mode: load vfio_iommu_type1 \
                 (with the IOMMU enabled: intel_iommu=on iommu=pt) or enable no-IOMMU mode (`hugepage-setup noiommu on`)",
            ));
        }
        Ok(Arc::new(container))
    }

    /// The `/dev/vfio` directory this container was opened from.
    pub fn dev_vfio(&self) -> &Path {
        &self.dev_vfio
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.dma.fd.as_fd()
    }

    /// Whether the kernel supports IOMMU type `t` (`VFIO_CHECK_EXTENSION`).
    pub fn supports(&self, t: IommuType) -> bool {
        // SAFETY: VFIO_CHECK_EXTENSION takes the extension number by value.
        unsafe {
            raw_ioctl(
                self.fd(),
                ioctl::VFIO_CHECK_EXTENSION,
                t.raw() as libc::c_ulong,
            )
        }
        .is_ok_and(|r| r > 0)
    }

    /// The IOMMU type, once a group has been attached.
    pub fn iommu_type(&self) -> Option<IommuType> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).iommu
    }

    /// Number of live DMA mappings.
    pub fn dma_mapping_count(&self) -> usize {
        self.dma
            .maps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether `iova..iova+len` lies inside one DMA mapping of this container.
    pub fn is_dma_mapped(&self, iova: u64, len: u64) -> bool {
        self.dma.covers(iova, len)
    }

    /// Opens group `number` (its device node `path`), checks it is viable, attaches it to
    /// this container and, for the first group, sets the IOMMU type (and with an IOMMU,
    /// starts DMA-mapping every memory segment). Returns the already-open group if this
    /// process has it.
    pub fn attach_group(
        self: &Arc<Self>,
        loc: &GroupLocation,
        paths: &HostPaths,
        addr: PciAddr,
    ) -> Result<Arc<VfioGroup>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = st.groups.get(&loc.number).and_then(Weak::upgrade) {
            return Ok(g);
        }
        let want = if loc.noiommu {
            IommuType::NoIommu
        } else {
            IommuType::Type1v2
        };
        if let Some(have) = st.iommu {
            if have != want {
                return Err(vfio_err(
                    addr,
                    format!(
                        "cannot mix no-IOMMU and IOMMU-backed VFIO devices in one process (the container is {have:?}, group {} needs {want:?})",
                        loc.number
                    ),
                ));
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&loc.dev_path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => vfio_err(
                    addr,
                    format!(
                        "permission denied opening {p}: run as root, or give this user the group (`chown $USER {p}`) and raise its memlock limit",
                        p = loc.dev_path.display()
                    ),
                ),
                Some(libc::EBUSY) => vfio_err(
                    addr,
                    format!("{} is busy: another process (e.g. QEMU or another PMD app) has the group open", loc.dev_path.display()),
                ),
                Some(libc::ENOENT) => vfio_err(
                    addr,
                    format!("{} does not exist: is the device still bound to vfio-pci?", loc.dev_path.display()),
                ),
                _ => Error::io(format!("opening {}", loc.dev_path.display()), e),
            })?;
        let gfd: OwnedFd = file.into();
        let mut status = sys::vfio_group_status {
            argsz: std::mem::size_of::<sys::vfio_group_status>() as u32,
            flags: 0,
        };
        // SAFETY: VFIO_GROUP_GET_STATUS takes a pointer to a vfio_group_status with argsz set.
        unsafe {
            raw_ioctl(
                gfd.as_fd(),
                ioctl::VFIO_GROUP_GET_STATUS,
                &mut status as *mut _ as libc::c_ulong,
            )
        }
        .map_err(|e| {
            Error::io(
                format!("VFIO_GROUP_GET_STATUS on {}", loc.dev_path.display()),
                e,
            )
        })?;
        if status.flags & sys::VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(vfio_err(
                addr,
                group_not_viable_message(paths, loc.number, addr),
            ));
        }
        let cfd: libc::c_int = self.fd().as_raw_fd();
        // SAFETY: VFIO_GROUP_SET_CONTAINER takes a pointer to an int holding the container fd.
        unsafe {
            raw_ioctl(
                gfd.as_fd(),
                ioctl::VFIO_GROUP_SET_CONTAINER,
                &cfd as *const _ as libc::c_ulong,
            )
        }
        .map_err(|e| {
            Error::io(
                format!("VFIO_GROUP_SET_CONTAINER for group {}", loc.number),
                e,
            )
        })?;
        let group = Arc::new(VfioGroup {
            number: loc.number,
            noiommu: loc.noiommu,
            fd: Some(gfd),
            container: self.clone(),
        });
        if st.iommu.is_none() {
            if let Err(e) = self.set_iommu(&mut st, want) {
                // Dropping the group detaches it again; its Drop takes the state lock.
                drop(st);
                drop(group);
                return Err(e);
            }
        }
        st.groups.insert(loc.number, Arc::downgrade(&group));
        Ok(group)
    }

    fn set_iommu(&self, st: &mut ContainerState, t: IommuType) -> Result<()> {
        if !self.supports(t) {
            return Err(Error::driver(
                "vfio",
                match t {
                    IommuType::Type1v2 => "the kernel's VFIO has no type1v2 IOMMU support (VFIO_TYPE1v2_IOMMU); load vfio_iommu_type1".to_string(),
                    IommuType::NoIommu => "no-IOMMU mode is not enabled: `hugepage-setup noiommu on` (or echo Y > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode)".to_string(),
                },
            ));
        }
        // SAFETY: VFIO_SET_IOMMU takes the IOMMU type by value.
        unsafe { raw_ioctl(self.fd(), ioctl::VFIO_SET_IOMMU, t.raw() as libc::c_ulong) }
            .map_err(|e| Error::io(format!("VFIO_SET_IOMMU({t:?})"), e))?;
        match t {
            IommuType::NoIommu => NOIOMMU_WARNING.call_once(|| {
                tracing::warn!(
                    "VFIO no-IOMMU mode: the device has unrestricted DMA access to all memory (no isolation); use only on trusted devices and test systems"
                );
            }),
            IommuType::Type1v2 => {
                let dma = self.dma.clone();
                let id = memory::add_listener(Box::new(move |ev, seg| match ev {
                    SegmentEvent::Added => dma.map_segment(seg),
                    SegmentEvent::Removed => dma.unmap_segment(seg),
                }));
                match id {
                    Ok(id) => st.listener = Some(id),
                    Err(e) => {
                        self.dma.unmap_all();
                        return Err(e);
                    }
                }
            }
        }
        st.iommu = Some(t);
        Ok(())
    }

    /// Called by a group about to close: if it is the last one, stop mapping (listener
    /// first) and undo every mapping while the IOMMU is still set.
    fn group_closing(&self, st: &mut ContainerState, number: u32) {
        st.groups.remove(&number);
        st.groups.retain(|_, g| g.strong_count() > 0);
        if st.groups.is_empty() {
            if let Some(id) = st.listener.take() {
                memory::remove_listener(id);
            }
            self.dma.unmap_all();
            st.iommu = None;
        }
    }
}

impl Drop for VfioContainer {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = st.listener.take() {
            memory::remove_listener(id);
        }
        self.dma.unmap_all();
    }
}

/// Where a device's IOMMU group lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLocation {
    /// The group number (`iommu_group` link in sysfs).
    pub number: u32,
    /// Its device node: `/dev/vfio/<N>` or `/dev/vfio/noiommu-<N>`.
    pub dev_path: PathBuf,
    /// Whether this is a no-IOMMU group.
    pub noiommu: bool,
}

/// Finds the VFIO group of `addr`, checking on the way that the device exists, is bound
/// to vfio-pci, has an IOMMU group and that VFIO is loaded; every error says what to do.
pub fn locate_group(addr: PciAddr, paths: &HostPaths) -> Result<GroupLocation> {
    let dev = paths.device_dir(addr);
    if !dev.exists() {
        return Err(vfio_err(
            addr,
            format!("no such PCI device ({} does not exist)", dev.display()),
        ));
    }
    match bound_driver(&dev).as_deref() {
        Some("vfio-pci") => {}
        other => {
            let now = other.map_or("no driver".to_string(), |d| format!("driver {d}"));
            return Err(vfio_err(
                addr,
                format!("device is not bound to vfio-pci ({now}): bind it first: `hugepage-setup bind {addr} vfio-pci`"),
            ));
        }
    }
    let link = std::fs::read_link(dev.join("iommu_group")).map_err(|_| {
        vfio_err(
            addr,
            "no IOMMU group: enable the IOMMU (intel_iommu=on iommu=pt) or use no-IOMMU mode (`hugepage-setup noiommu on`) or uio_pci_generic",
        )
    })?;
    let number: u32 = link
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            vfio_err(
                addr,
                format!("unexpected iommu_group link {}", link.display()),
            )
        })?;
    let vfio_dir = paths.dev_vfio();
    if !vfio_dir.join("vfio").exists() {
        return Err(vfio_err(
            addr,
            format!(
                "{} does not exist: vfio-pci is not loaded: `modprobe vfio-pci`",
                vfio_dir.join("vfio").display()
            ),
        ));
    }
    let normal = vfio_dir.join(number.to_string());
    if normal.exists() {
        return Ok(GroupLocation {
            number,
            dev_path: normal,
            noiommu: false,
        });
    }
    let noiommu = vfio_dir.join(format!("noiommu-{number}"));
    if noiommu.exists() {
        return Ok(GroupLocation {
            number,
            dev_path: noiommu,
            noiommu: true,
        });
    }
    Err(vfio_err(
        addr,
        format!(
            "neither {} nor {} exists: rebind the device to vfio-pci (`hugepage-setup bind {addr} vfio-pci`)",
            normal.display(),
            noiommu.display()
        ),
    ))
}

/// The error text for a non-viable group: which other devices are in it and their drivers.
pub fn group_not_viable_message(paths: &HostPaths, group: u32, addr: PciAddr) -> String {
    let dir = paths.iommu_group_devices(group);
    let mut others: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if name == addr.to_string() {
                return None;
            }
            let driver = bound_driver(&e.path()).unwrap_or_else(|| "no driver".into());
            Some(format!("{name} ({driver})"))
        })
        .collect();
    others.sort();
    let list = if others.is_empty() {
        "none found".to_string()
    } else {
        others.join(", ")
    };
    format!(
        "IOMMU group {group} is not viable: every device in it must be bound to vfio-pci or unbound. \
         Other devices in the group: {list}. Bind them to vfio-pci (`hugepage-setup bind ADDR vfio-pci`) or unbind them"
    )
}

/// An open IOMMU group attached to a container.
#[derive(Debug)]
pub struct VfioGroup {
    number: u32,
    noiommu: bool,
    /// Always Some until drop (taken there so it closes under the container lock).
    fd: Option<OwnedFd>,
    container: Arc<VfioContainer>,
}

impl VfioGroup {
    /// The group number.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Whether this is a no-IOMMU group.
    pub fn is_noiommu(&self) -> bool {
        self.noiommu
    }

    /// The container the group is attached to.
    pub fn container(&self) -> &Arc<VfioContainer> {
        &self.container
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_ref().expect("group fd lives until drop").as_fd()
    }
}

impl Drop for VfioGroup {
    fn drop(&mut self) {
        let mut st = self
            .container
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.container.group_closing(&mut st, self.number);
        if let Some(fd) = self.fd.take() {
            // SAFETY: VFIO_GROUP_UNSET_CONTAINER takes no argument.
            let _ = unsafe { raw_ioctl(fd.as_fd(), ioctl::VFIO_GROUP_UNSET_CONTAINER, 0) };
            drop(fd);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Interrupts
// ---------------------------------------------------------------------------------------

/// Interrupt vectors a device offers per type (`VFIO_DEVICE_GET_IRQ_INFO`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IrqCounts {
    /// Legacy INTx lines (0 or 1).
    pub intx: u32,
    /// MSI vectors.
    pub msi: u32,
    /// MSI-X vectors.
    pub msix: u32,
}

/// An interrupt type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqType {
    /// Legacy INTx (level-triggered, masked by VFIO until unmasked).
    Intx,
    /// MSI.
    Msi,
    /// MSI-X.
    Msix,
}

impl IrqType {
    /// The VFIO IRQ index (`VFIO_PCI_*_IRQ_INDEX`).
    pub fn index(self) -> u32 {
        match self {
            IrqType::Intx => sys::VFIO_PCI_INTX_IRQ_INDEX,
            IrqType::Msi => sys::VFIO_PCI_MSI_IRQ_INDEX,
            IrqType::Msix => sys::VFIO_PCI_MSIX_IRQ_INDEX,
        }
    }
}

/// Picks MSI-X if it has `count` vectors, else MSI, else INTx (only for `count == 1`).
pub fn choose_irq_type(counts: IrqCounts, count: u32) -> Result<IrqType> {
    if count == 0 {
        return Err(Error::driver(
            "vfio",
            "enable_irqs: at least one vector is needed",
        ));
    }
    if counts.msix >= count {
        Ok(IrqType::Msix)
    } else if counts.msi >= count {
        Ok(IrqType::Msi)
    } else if count == 1 && counts.intx >= 1 {
        Ok(IrqType::Intx)
    } else {
        Err(Error::driver(
            "vfio",
            format!(
                "{count} interrupt vectors requested, but the device offers MSI-X {}, MSI {}, INTx {}",
                counts.msix, counts.msi, counts.intx
            ),
        ))
    }
}

/// `VFIO_DEVICE_SET_IRQS` with `data` (eventfds) after the header.
fn set_irqs(
    dev: &File,
    flags: u32,
    index: u32,
    start: u32,
    count: u32,
    data: &[i32],
) -> std::io::Result<()> {
    const HDR: usize = std::mem::size_of::<sys::vfio_irq_set>();
    let argsz = HDR + 4 * data.len();
    let mut buf = vec![0u32; argsz / 4];
    buf[0] = argsz as u32;
    buf[1] = flags;
    buf[2] = index;
    buf[3] = start;
    buf[4] = count;
    for (slot, fd) in buf[HDR / 4..].iter_mut().zip(data) {
        *slot = *fd as u32;
    }
    // SAFETY: VFIO_DEVICE_SET_IRQS takes a pointer to a vfio_irq_set followed by its
    // data; `buf` is argsz bytes, 4-byte aligned (the struct's alignment), laid out as
    // the five u32 header fields then one i32 per eventfd.
    unsafe {
        raw_ioctl(
            dev.as_fd(),
            ioctl::VFIO_DEVICE_SET_IRQS,
            buf.as_mut_ptr() as libc::c_ulong,
        )
    }?;
    Ok(())
}

/// Keeps interrupts enabled while any [`VfioIrq`] lives; disables them on drop.
#[derive(Debug)]
struct IrqGuard {
    dev: Arc<File>,
    index: u32,
}

impl Drop for IrqGuard {
    fn drop(&mut self) {
        let flags = sys::VFIO_IRQ_SET_DATA_NONE | sys::VFIO_IRQ_SET_ACTION_TRIGGER;
        if let Err(e) = set_irqs(&self.dev, flags, self.index, 0, 0, &[]) {
            tracing::warn!(index = self.index, "disabling VFIO interrupts failed: {e}");
        }
    }
}

/// Waits until `fd` is readable or `timeout_ms` passes; false on timeout or EINTR.
pub(crate) fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(Error::io("poll on interrupt fd", e));
    }
    if r > 0 && p.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
        return Err(Error::driver(
            "irq",
            "poll reported an error on the interrupt fd",
        ));
    }
    Ok(r > 0 && p.revents & libc::POLLIN != 0)
}

/// One enabled VFIO interrupt vector: an eventfd the kernel signals.
#[derive(Debug)]
pub struct VfioIrq {
    efd: File,
    /// For INTx: the device, to unmask after each wait.
    intx_dev: Option<Arc<File>>,
    _guard: Arc<IrqGuard>,
}

impl IrqWait for VfioIrq {
    fn fd(&self) -> BorrowedFd<'_> {
        self.efd.as_fd()
    }

    fn wait(&self, timeout_ms: i32) -> Result<u64> {
        if !poll_readable(self.efd.as_fd(), timeout_ms)? {
            return Ok(0);
        }
        let mut b = [0u8; 8];
        let n = match (&self.efd).read(&mut b) {
            Ok(8) => u64::from_ne_bytes(b),
            Ok(_) => 0,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(Error::io("reading interrupt eventfd", e)),
        };
        if let Some(dev) = &self.intx_dev {
            let flags = sys::VFIO_IRQ_SET_DATA_NONE | sys::VFIO_IRQ_SET_ACTION_UNMASK;
            set_irqs(dev, flags, sys::VFIO_PCI_INTX_IRQ_INDEX, 0, 1, &[])
                .map_err(|e| Error::io("unmasking INTx (VFIO_DEVICE_SET_IRQS)", e))?;
        }
        Ok(n)
    }
}

fn new_eventfd() -> Result<File> {
    // SAFETY: eventfd has no memory preconditions; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(Error::last_os("eventfd"));
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

// ---------------------------------------------------------------------------------------
// Device
// ---------------------------------------------------------------------------------------

/// A PCI function opened through VFIO. Implements [`PciBackend`].
#[derive(Debug)]
pub struct VfioDevice {
    addr: PciAddr,
    /// The device fd (closed before the group: field order matters).
    file: Arc<File>,
    flags: u32,
    num_regions: u32,
    regions: Vec<Option<RegionInfo>>,
    irqs: IrqCounts,
    bars: Mutex<[Option<MmioRegion>; 6]>,
    irq_state: Mutex<(Weak<IrqGuard>, Option<IrqType>)>,
    group: Arc<VfioGroup>,
}

impl VfioDevice {
    /// Opens `addr` through VFIO, in `container` (which is shared by all VFIO devices of a
    /// process; see [`super::open`]), reading sysfs and /dev under `paths`.
    pub fn open_in(
        addr: PciAddr,
        paths: &HostPaths,
        container: &Arc<VfioContainer>,
    ) -> Result<VfioDevice> {
        let loc = locate_group(addr, paths)?;
        let group = container.attach_group(&loc, paths, addr)?;
        let name = std::ffi::CString::new(addr.to_string()).expect("no NUL in an address");
        // SAFETY: VFIO_GROUP_GET_DEVICE_FD takes a pointer to a NUL-terminated device name.
        let fd = unsafe {
            raw_ioctl(
                group.fd(),
                ioctl::VFIO_GROUP_GET_DEVICE_FD,
                name.as_ptr() as libc::c_ulong,
            )
        }
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) => {
                vfio_err(addr, "device is already open (in this or another process)")
            }
            _ => Error::io(
                format!(
                    "VFIO_GROUP_GET_DEVICE_FD for {addr} in group {} (is it bound to vfio-pci?)",
                    loc.number
                ),
                e,
            ),
        })?;
        // SAFETY: the ioctl returned a fresh descriptor that nothing else owns.
        let file = Arc::new(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
        let mut info = sys::vfio_device_info {
            argsz: std::mem::size_of::<sys::vfio_device_info>() as u32,
            ..Default::default()
        };
        // SAFETY: VFIO_DEVICE_GET_INFO takes a pointer to a vfio_device_info with argsz set.
        unsafe {
            raw_ioctl(
                file.as_fd(),
                ioctl::VFIO_DEVICE_GET_INFO,
                &mut info as *mut _ as libc::c_ulong,
            )
        }
        .map_err(|e| Error::io(format!("VFIO_DEVICE_GET_INFO for {addr}"), e))?;
        if info.flags & sys::VFIO_DEVICE_FLAGS_PCI == 0 {
            return Err(vfio_err(addr, "VFIO reports a non-PCI device"));
        }
        if info.num_regions <= sys::VFIO_PCI_CONFIG_REGION_INDEX {
            return Err(vfio_err(
                addr,
                format!(
                    "device reports only {} regions (no config space)",
                    info.num_regions
                ),
            ));
        }
        let mut regions = Vec::new();
        for index in 0..info.num_regions.min(sys::VFIO_PCI_NUM_REGIONS) {
            match query_region(&file, index) {
                Ok(r) => regions.push(Some(r)),
                Err(e) if index == sys::VFIO_PCI_CONFIG_REGION_INDEX => return Err(e),
                Err(e) => {
                    tracing::debug!(%addr, index, "region info unavailable: {e}");
                    regions.push(None);
                }
            }
        }
        let irq_count = |index: u32| -> u32 {
            if index >= info.num_irqs {
                return 0;
            }
            let mut irq = sys::vfio_irq_info {
                argsz: std::mem::size_of::<sys::vfio_irq_info>() as u32,
                index,
                ..Default::default()
            };
            // SAFETY: VFIO_DEVICE_GET_IRQ_INFO takes a pointer to a vfio_irq_info with
            // argsz and index set.
            match unsafe {
                raw_ioctl(
                    file.as_fd(),
                    ioctl::VFIO_DEVICE_GET_IRQ_INFO,
                    &mut irq as *mut _ as libc::c_ulong,
                )
            } {
                Ok(_) if irq.flags & sys::VFIO_IRQ_INFO_EVENTFD != 0 => irq.count,
                _ => 0,
            }
        };
        let irqs = IrqCounts {
            intx: irq_count(sys::VFIO_PCI_INTX_IRQ_INDEX),
            msi: irq_count(sys::VFIO_PCI_MSI_IRQ_INDEX),
            msix: irq_count(sys::VFIO_PCI_MSIX_IRQ_INDEX),
        };
        tracing::debug!(%addr, group = loc.number, noiommu = loc.noiommu, ?irqs, flags = info.flags, "VFIO device open");
        Ok(VfioDevice {
            addr,
            file,
            flags: info.flags,
            num_regions: info.num_regions,
            regions,
            irqs,
            bars: Mutex::new(Default::default()),
            irq_state: Mutex::new((Weak::new(), None)),
            group,
        })
    }

    /// The group the device belongs to.
    pub fn group(&self) -> &Arc<VfioGroup> {
        &self.group
    }

    /// Number of regions the device reports.
    pub fn num_regions(&self) -> u32 {
        self.num_regions
    }

    /// Region `index` (`VFIO_PCI_*_REGION_INDEX`), if the device has it.
    pub fn region(&self, index: u32) -> Option<&RegionInfo> {
        self.regions.get(index as usize).and_then(Option::as_ref)
    }

    /// Interrupt vectors per type.
    pub fn irq_counts(&self) -> IrqCounts {
        self.irqs
    }

    /// The interrupt type in use, while interrupts are enabled.
    pub fn irq_type(&self) -> Option<IrqType> {
        let st = self.irq_state.lock().unwrap_or_else(|e| e.into_inner());
        st.0.upgrade().and(st.1)
    }

    /// Whether the device supports `VFIO_DEVICE_RESET`.
    pub fn supports_reset(&self) -> bool {
        self.flags & sys::VFIO_DEVICE_FLAGS_RESET != 0
    }

    /// Whether `iova..iova+len` is DMA-mapped in the device's IOMMU domain (always false
    /// in no-IOMMU mode, where nothing is mapped).
    pub fn is_dma_mapped(&self, iova: u64, len: u64) -> bool {
        self.group.container.is_dma_mapped(iova, len)
    }

    fn checked_region(&self, index: u32, offset: u64, len: usize, need: u32) -> Result<u64> {
        let r = self
            .region(index)
            .ok_or_else(|| vfio_err(self.addr, format!("region {index} does not exist")))?;
        if r.flags & need != need {
            return Err(vfio_err(
                self.addr,
                format!(
                    "region {index} does not allow this access (flags {:#x})",
                    r.flags
                ),
            ));
        }
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > r.size)
        {
            return Err(vfio_err(
                self.addr,
                format!(
                    "access {offset:#x}+{len} is outside region {index} ({:#x} bytes)",
                    r.size
                ),
            ));
        }
        Ok(r.offset + offset)
    }

    /// Reads `buf.len()` bytes at `offset` of region `index` through the kernel (pread):
    /// works for I/O-port BARs and for the parts of a BAR that cannot be mmapped.
    pub fn read_region(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<()> {
        let at = self.checked_region(index, offset, buf.len(), sys::VFIO_REGION_INFO_FLAG_READ)?;
        self.file.read_exact_at(buf, at).map_err(|e| {
            Error::io(
                format!("{}: reading region {index} at {offset:#x}", self.addr),
                e,
            )
        })
    }

    /// Writes `buf` at `offset` of region `index` through the kernel (pwrite).
    pub fn write_region(&self, index: u32, offset: u64, buf: &[u8]) -> Result<()> {
        let at = self.checked_region(index, offset, buf.len(), sys::VFIO_REGION_INFO_FLAG_WRITE)?;
        self.file.write_all_at(buf, at).map_err(|e| {
            Error::io(
                format!("{}: writing region {index} at {offset:#x}", self.addr),
                e,
            )
        })
    }

    fn bar_is_io(&self, bar: u8) -> bool {
        self.read_config32(0x10 + 4 * bar as u16)
            .is_ok_and(|v| v & 1 == 1)
    }
}

/// A zeroed `struct vfio_region_info` query buffer of `argsz` bytes (u64 storage: the
/// struct and its sparse areas need 8-byte alignment) with `argsz` and `index` set.
/// Layout: argsz (u32 @0), flags (u32 @4), index (u32 @8), cap_offset (u32 @12),
/// size (u64 @16), offset (u64 @24).
fn region_info_request(argsz: u32, index: u32) -> Vec<u64> {
    let mut buf = vec![0u64; (argsz.max(REGION_INFO_SIZE as u32) as usize).div_ceil(8)];
    let mut head = [0u8; 16];
    head[..4].copy_from_slice(&argsz.to_ne_bytes());
    head[8..12].copy_from_slice(&index.to_ne_bytes());
    buf[0] = u64::from_ne_bytes(head[..8].try_into().expect("8 bytes"));
    buf[1] = u64::from_ne_bytes(head[8..].try_into().expect("8 bytes"));
    buf
}

fn query_region(file: &File, index: u32) -> Result<RegionInfo> {
    let mut argsz = REGION_INFO_SIZE as u32;
    for _ in 0..3 {
        let mut buf = region_info_request(argsz, index);
        // SAFETY: VFIO_DEVICE_GET_REGION_INFO takes a pointer to a vfio_region_info whose
        // argsz says how many bytes (here: the whole, 8-aligned buffer) the kernel may write.
        unsafe {
            raw_ioctl(
                file.as_fd(),
                ioctl::VFIO_DEVICE_GET_REGION_INFO,
                buf.as_mut_ptr() as libc::c_ulong,
            )
        }
        .map_err(|e| Error::io(format!("VFIO_DEVICE_GET_REGION_INFO({index})"), e))?;
        let bytes: Vec<u8> = buf
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .take(argsz as usize)
            .collect();
        let returned = read_u32(&bytes, 0).unwrap_or(0);
        if returned > argsz {
            if returned > MAX_REGION_INFO_BYTES {
                return Err(Error::driver(
                    "vfio",
                    format!("region {index} info claims {returned} bytes"),
                ));
            }
            argsz = returned;
            continue;
        }
        return region_from_buffer(&bytes);
    }
    Err(Error::driver(
        "vfio",
        format!("region {index} info kept growing"),
    ))
}

impl PciBackend for VfioDevice {
    fn addr(&self) -> PciAddr {
        self.addr
    }

    fn kind(&self) -> BackendKind {
        if self.group.noiommu {
            BackendKind::VfioNoIommu
        } else {
            BackendKind::Vfio
        }
    }

    fn iova_mode(&self) -> IovaMode {
        if self.group.noiommu {
            IovaMode::Pa
        } else {
            IovaMode::Va
        }
    }

    fn read_config(&self, offset: u16, buf: &mut [u8]) -> Result<()> {
        self.read_region(sys::VFIO_PCI_CONFIG_REGION_INDEX, offset.into(), buf)
    }

    fn write_config(&self, offset: u16, buf: &[u8]) -> Result<()> {
        self.write_region(sys::VFIO_PCI_CONFIG_REGION_INDEX, offset.into(), buf)
    }

    fn map_bar(&self, bar: u8) -> Result<MmioRegion> {
        if bar > 5 {
            return Err(vfio_err(
                self.addr,
                format!("BAR {bar} does not exist (0..=5)"),
            ));
        }
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = &bars[bar as usize] {
            return Ok(r.clone());
        }
        let r = self
            .region(bar.into())
            .filter(|r| r.size > 0)
            .ok_or_else(|| vfio_err(self.addr, format!("BAR {bar} is not implemented")))?;
        if !r.mmappable() {
            return Err(vfio_err(
                self.addr,
                if self.bar_is_io(bar) {
                    format!("BAR {bar} is an I/O-port BAR and cannot be mmapped: use VfioDevice::read_region/write_region")
                } else {
                    format!("BAR {bar} cannot be mmapped (VFIO does not allow it)")
                },
            ));
        }
        let page = page_size() as u64;
        let areas = match &r.caps.sparse {
            Some(areas) => validate_sparse_areas(areas, r.size, page)?,
            None => vec![SparseArea {
                offset: 0,
                size: r.size,
            }],
        };
        if areas.is_empty() {
            return Err(vfio_err(
                self.addr,
                format!("BAR {bar} has no mmappable area"),
            ));
        }
        let size = usize::try_from(r.size).map_err(|_| vfio_err(self.addr, "BAR too large"))?;
        let total = size.div_ceil(page as usize) * page as usize;
        let mut mapping = BarMapping::reserve(total).map_err(|e| {
            Error::io(
                format!("{}: reserving {total:#x} bytes for BAR {bar}", self.addr),
                e,
            )
        })?;
        for a in &areas {
            mapping
                .map_area(
                    a.offset as usize,
                    a.size as usize,
                    self.file.as_fd(),
                    r.offset + a.offset,
                )
                .map_err(|e| {
                    Error::io(
                        format!(
                            "{}: mmap of BAR {bar} area {:#x}+{:#x}",
                            self.addr, a.offset, a.size
                        ),
                        e,
                    )
                })?;
        }
        if r.caps.sparse.is_some() {
            tracing::debug!(addr = %self.addr, bar, ?areas, "BAR mapped sparsely; the holes fault on access");
        }
        let base = mapping.base;
        // SAFETY: base..base+size lies in `mapping` (total >= size), which the region's
        // owner keeps mapped; the mmappable parts are device memory, the holes PROT_NONE.
        let region = unsafe { MmioRegion::new(base, size, Arc::new(mapping)) };
        bars[bar as usize] = Some(region.clone());
        Ok(region)
    }

    /// Through the kernel (pread on the BAR's region): works for I/O-port BARs.
    fn read_io(&self, bar: u8, offset: u64, buf: &mut [u8]) -> Result<()> {
        if bar > 5 {
            return Err(vfio_err(
                self.addr,
                format!("BAR {bar} does not exist (0..=5)"),
            ));
        }
        self.read_region(bar.into(), offset, buf)
    }

    /// Through the kernel (pwrite on the BAR's region): works for I/O-port BARs.
    fn write_io(&self, bar: u8, offset: u64, buf: &[u8]) -> Result<()> {
        if bar > 5 {
            return Err(vfio_err(
                self.addr,
                format!("BAR {bar} does not exist (0..=5)"),
            ));
        }
        self.write_region(bar.into(), offset, buf)
    }

    fn dma_map(&self, seg: &SegmentInfo) -> Result<()> {
        if self.group.noiommu {
            check_pa_segment(seg, "vfio no-IOMMU")
        } else {
            self.group.container.dma.map_segment(seg)
        }
    }

    fn dma_unmap(&self, seg: &SegmentInfo) -> Result<()> {
        if self.group.noiommu {
            Ok(())
        } else {
            self.group.container.dma.unmap_segment(seg)
        }
    }

    fn enable_irqs(&self, count: u32) -> Result<Vec<Box<dyn IrqWait>>> {
        let mut st = self.irq_state.lock().unwrap_or_else(|e| e.into_inner());
        if st.0.strong_count() > 0 {
            return Err(vfio_err(
                self.addr,
                "interrupts are already enabled; drop the previous IrqWait handles first",
            ));
        }
        let t = choose_irq_type(self.irqs, count)?;
        let efds = (0..count)
            .map(|_| new_eventfd())
            .collect::<Result<Vec<File>>>()?;
        let raw: Vec<i32> = efds.iter().map(|f| f.as_raw_fd()).collect();
        let flags = sys::VFIO_IRQ_SET_DATA_EVENTFD | sys::VFIO_IRQ_SET_ACTION_TRIGGER;
        set_irqs(&self.file, flags, t.index(), 0, count, &raw).map_err(|e| {
            Error::io(
                format!(
                    "{}: enabling {count} {t:?} interrupt(s) (VFIO_DEVICE_SET_IRQS)",
                    self.addr
                ),
                e,
            )
        })?;
        let guard = Arc::new(IrqGuard {
            dev: self.file.clone(),
            index: t.index(),
        });
        *st = (Arc::downgrade(&guard), Some(t));
        Ok(efds
            .into_iter()
            .map(|efd| {
                Box::new(VfioIrq {
                    efd,
                    intx_dev: (t == IrqType::Intx).then(|| self.file.clone()),
                    _guard: guard.clone(),
                }) as Box<dyn IrqWait>
            })
            .collect())
    }

    /// `VFIO_DEVICE_RESET` when the device supports it; otherwise nothing happens (logged
    /// at debug level) and the driver's own device reset must do.
    fn reset(&self) -> Result<()> {
        if !self.supports_reset() {
            tracing::debug!(addr = %self.addr, "device has no VFIO reset (no FLR/PM reset); skipped");
            return Ok(());
        }
        // SAFETY: VFIO_DEVICE_RESET takes no argument.
        unsafe { raw_ioctl(self.file.as_fd(), ioctl::VFIO_DEVICE_RESET, 0) }
            .map_err(|e| Error::io(format!("{}: VFIO_DEVICE_RESET", self.addr), e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn region_info_request_puts_the_index_after_the_flags() {
        let buf = region_info_request(32, 7);
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(bytes.len(), 32);
        assert_eq!(read_u32(&bytes, 0), Some(32), "argsz");
        assert_eq!(
            read_u32(&bytes, 4),
            Some(0),
            "flags are the kernel's to fill"
        );
        assert_eq!(read_u32(&bytes, 8), Some(7), "index");
        assert_eq!(std::mem::offset_of!(sys::vfio_region_info, index), 8);
    }

    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_vfio_h() {
        use ioctl::*;
        assert_eq!(VFIO_GET_API_VERSION, 0x3B64);
        assert_eq!(VFIO_CHECK_EXTENSION, 0x3B65);
        assert_eq!(VFIO_SET_IOMMU, 0x3B66);
        assert_eq!(VFIO_GROUP_GET_STATUS, 0x3B67);
        assert_eq!(VFIO_GROUP_SET_CONTAINER, 0x3B68);
        assert_eq!(VFIO_GROUP_UNSET_CONTAINER, 0x3B69);
        assert_eq!(VFIO_GROUP_GET_DEVICE_FD, 0x3B6A);
        assert_eq!(VFIO_DEVICE_GET_INFO, 0x3B6B);
        assert_eq!(VFIO_DEVICE_GET_REGION_INFO, 0x3B6C);
        assert_eq!(VFIO_DEVICE_GET_IRQ_INFO, 0x3B6D);
        assert_eq!(VFIO_DEVICE_SET_IRQS, 0x3B6E);
        assert_eq!(VFIO_DEVICE_RESET, 0x3B6F);
        assert_eq!(VFIO_IOMMU_GET_INFO, 0x3B70);
        assert_eq!(VFIO_IOMMU_MAP_DMA, 0x3B71);
        assert_eq!(VFIO_IOMMU_UNMAP_DMA, 0x3B72);
        assert_eq!(sys::VFIO_TYPE1v2_IOMMU, 3);
        assert_eq!(sys::VFIO_NOIOMMU_IOMMU, 8);
    }

    /// A region-info buffer: the fixed struct, then `tail` bytes appended (caps).
    fn region_buf(cap_offset: u32, size: u64, tail: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        let argsz = (REGION_INFO_SIZE + tail.len()) as u32;
        b.extend(argsz.to_ne_bytes());
        let flags = sys::VFIO_REGION_INFO_FLAG_READ
            | sys::VFIO_REGION_INFO_FLAG_WRITE
            | sys::VFIO_REGION_INFO_FLAG_MMAP
            | sys::VFIO_REGION_INFO_FLAG_CAPS;
        b.extend(flags.to_ne_bytes());
        b.extend(0u32.to_ne_bytes()); // index
        b.extend(cap_offset.to_ne_bytes());
        b.extend(size.to_ne_bytes());
        b.extend((1u64 << 40).to_ne_bytes()); // offset
        b.extend(tail);
        b
    }

    fn cap_header(id: u16, next: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(id.to_ne_bytes());
        b.extend(1u16.to_ne_bytes());
        b.extend(next.to_ne_bytes());
        b
    }

    fn sparse_cap(next: u32, areas: &[(u64, u64)], claimed: Option<u32>) -> Vec<u8> {
        let mut b = cap_header(sys::VFIO_REGION_INFO_CAP_SPARSE_MMAP as u16, next);
        b.extend(claimed.unwrap_or(areas.len() as u32).to_ne_bytes());
        b.extend(0u32.to_ne_bytes());
        for (o, s) in areas {
            b.extend(o.to_ne_bytes());
            b.extend(s.to_ne_bytes());
        }
        b
    }

    #[test]
    fn parses_sparse_and_msix_caps() {
        // sparse at 32 (16 + 2*16 = 48 bytes) then msix-mappable at 80.
        let mut tail = sparse_cap(80, &[(0, 0x2000), (0x3000, 0x1000)], None);
        tail.extend(cap_header(
            sys::VFIO_REGION_INFO_CAP_MSIX_MAPPABLE as u16,
            0,
        ));
        let buf = region_buf(32, 0x4000, &tail);
        let r = region_from_buffer(&buf).unwrap();
        assert_eq!(r.size, 0x4000);
        assert_eq!(r.offset, 1 << 40);
        assert!(r.mmappable());
        assert!(r.caps.msix_mappable);
        assert_eq!(
            r.caps.sparse.unwrap(),
            vec![
                SparseArea {
                    offset: 0,
                    size: 0x2000
                },
                SparseArea {
                    offset: 0x3000,
                    size: 0x1000
                }
            ]
        );
        // No caps at all.
        assert_eq!(
            parse_region_caps(&region_buf(0, 16, &[]), 0).unwrap(),
            RegionCaps::default()
        );
        // Unknown caps are skipped; the type cap is read.
        let mut tail = cap_header(77, 40);
        tail.extend(cap_header(sys::VFIO_REGION_INFO_CAP_TYPE as u16, 0));
        tail.extend(5u32.to_ne_bytes());
        tail.extend(6u32.to_ne_bytes());
        let caps = parse_region_caps(&region_buf(32, 16, &tail), 32).unwrap();
        assert_eq!(caps.region_type, Some((5, 6)));
    }

    #[test]
    fn malformed_cap_chains_are_errors_not_panics() {
        let sparse = sparse_cap(0, &[(0, 0x1000)], None);
        let buf = region_buf(32, 0x1000, &sparse);
        // First offset outside the buffer, inside the fixed header, unaligned, huge.
        for first in [buf.len() as u32, buf.len() as u32 - 4, 8, 33, u32::MAX] {
            assert!(parse_region_caps(&buf, first).is_err(), "first={first}");
        }
        // A cap pointing to itself, or back.
        let looped = region_buf(32, 0x1000, &cap_header(99, 32));
        let e = parse_region_caps(&looped, 32).unwrap_err().to_string();
        assert!(e.contains("loop"), "{e}");
        let mut two = cap_header(99, 40);
        two.extend(cap_header(99, 32));
        assert!(parse_region_caps(&region_buf(32, 16, &two), 32).is_err());
        // More areas claimed than present; absurd area count.
        let short = region_buf(32, 0x1000, &sparse_cap(0, &[(0, 0x1000)], Some(3)));
        assert!(parse_region_caps(&short, 32).is_err());
        let huge = region_buf(32, 0x1000, &sparse_cap(0, &[], Some(u32::MAX)));
        assert!(parse_region_caps(&huge, 32).is_err());
        // Truncated header; empty buffer; the next cap overlapping the sparse areas.
        let trunc = region_buf(32, 0x1000, &cap_header(1, 0)[..6]);
        assert!(parse_region_caps(&trunc, 32).is_err());
        assert!(parse_region_caps(&[], 32).is_err());
        assert!(region_from_buffer(&[0u8; 8]).is_err());
        let mut overlap = sparse_cap(56, &[(0, 0x1000), (0x1000, 0x1000)], None);
        overlap.extend(cap_header(99, 0));
        assert!(parse_region_caps(&region_buf(32, 0x1000, &overlap), 32).is_err());
        // A long (but well-formed, increasing) chain beyond MAX_CAPS is refused.
        let mut long = Vec::new();
        for i in 0..(MAX_CAPS as u32 + 2) {
            long.extend(cap_header(99, 32 + 8 * (i + 1)));
        }
        long.extend(cap_header(99, 0));
        assert!(parse_region_caps(&region_buf(32, 16, &long), 32).is_err());
        // Sparse cap with zero areas is valid: nothing mappable.
        let none = region_buf(32, 0x1000, &sparse_cap(0, &[], None));
        assert_eq!(parse_region_caps(&none, 32).unwrap().sparse, Some(vec![]));
    }

    #[test]
    fn sparse_areas_are_validated_against_the_region() {
        let a = |offset, size| SparseArea { offset, size };
        let page = 4096;
        assert_eq!(
            validate_sparse_areas(
                &[a(0x3000, 0x1000), a(0, 0x2000), a(0x2000, 0)],
                0x4000,
                page
            )
            .unwrap(),
            vec![a(0, 0x2000), a(0x3000, 0x1000)]
        );
        assert!(
            validate_sparse_areas(&[a(0x3000, 0x2000)], 0x4000, page).is_err(),
            "past the end"
        );
        assert!(
            validate_sparse_areas(&[a(0x5000, 0x1000)], 0x4000, page).is_err(),
            "outside"
        );
        assert!(
            validate_sparse_areas(&[a(0x100, 0x100)], 0x4000, page).is_err(),
            "unaligned"
        );
        assert!(
            validate_sparse_areas(&[a(0, 0x2000), a(0x1000, 0x1000)], 0x4000, page).is_err(),
            "overlap"
        );
        assert!(
            validate_sparse_areas(&[a(u64::MAX - 0xfff, 0x1000)], 0x4000, page).is_err(),
            "overflow"
        );
        assert!(
            validate_sparse_areas(&[a(0, u64::MAX)], u64::MAX, page).is_err(),
            "overflow 2"
        );
        // A sub-page BAR: the area's page-rounded mapping fits the page-rounded region.
        assert_eq!(
            validate_sparse_areas(&[a(0, 0x80)], 0x80, page).unwrap(),
            vec![a(0, 0x80)]
        );
        assert!(validate_sparse_areas(&[], 0x4000, page).unwrap().is_empty());
    }

    #[test]
    fn memlock_check_says_how_to_fix() {
        assert!(check_memlock(None, false, u64::MAX).is_ok());
        assert!(check_memlock(Some(64 << 10), true, 1 << 30).is_ok());
        assert!(check_memlock(Some(4 << 20), false, 2 << 20).is_ok());
        let e = check_memlock(Some(64 << 10), false, 2 << 20)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("memlock limit 64 KiB is below the 2048 KiB to pin for DMA"),
            "{e}"
        );
        assert!(e.contains("ulimit -l unlimited"), "{e}");
    }

    #[test]
    fn irq_type_choice() {
        let c = |intx, msi, msix| IrqCounts { intx, msi, msix };
        assert_eq!(choose_irq_type(c(1, 1, 4), 4).unwrap(), IrqType::Msix);
        assert_eq!(choose_irq_type(c(1, 8, 4), 5).unwrap(), IrqType::Msi);
        assert_eq!(choose_irq_type(c(1, 0, 0), 1).unwrap(), IrqType::Intx);
        assert!(choose_irq_type(c(1, 0, 0), 2).is_err());
        assert!(choose_irq_type(c(1, 1, 1), 0).is_err());
        assert!(choose_irq_type(c(0, 0, 0), 1)
            .unwrap_err()
            .to_string()
            .contains("MSI-X 0"));
        assert_eq!(IrqType::Msix.index(), 2);
        assert_eq!(IrqType::Intx.index(), 0);
    }

    #[test]
    fn missing_dev_vfio_says_modprobe() {
        let dir = std::env::temp_dir().join(format!("pmd-vfio-none-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = VfioContainer::open_at(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.contains("`modprobe vfio-pci`"), "{e}");
    }

    #[test]
    fn bar_reservation_maps_areas_and_rejects_outside() {
        let page = page_size();
        let mut m = BarMapping::reserve(4 * page).unwrap();
        // Map a memfd over the second page: readable/writable afterwards.
        // SAFETY: valid NUL-terminated name.
        let fd = unsafe { libc::memfd_create(c"pmd-bar-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: fresh descriptor we own.
        let f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        f.set_len(page as u64).unwrap();
        m.map_area(page, 16, f.as_fd(), 0).unwrap();
        // SAFETY: the second page is now a shared RW mapping of the memfd.
        unsafe { m.base.as_ptr().add(page).write_volatile(42) };
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(b[0], 42);
        assert!(m.map_area(4 * page, page, f.as_fd(), 0).is_err(), "outside");
        assert!(
            m.map_area(3 * page, 2 * page, f.as_fd(), 0).is_err(),
            "runs past"
        );
        assert!(m.map_area(1, page, f.as_fd(), 0).is_err(), "unaligned");
    }
}
