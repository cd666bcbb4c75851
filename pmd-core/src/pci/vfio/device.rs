//! A PCI function opened through VFIO ([`VfioDevice`]): config space by `pread`/`pwrite`
//! at the config region's offset, BARs by `mmap` honouring sparse-mmap areas (see
//! [`super::region`]), interrupts with eventfds, function reset.

use super::container::{VfioContainer, VfioGroup};
use super::error::VfioError;
use super::group::locate_group;
use super::ioctl::{self, IrqType};
use super::irq::{self, choose_irq_type, IrqCounts, IrqGuard};
use super::region::{query_region, validate_sparse_areas, RegionInfo, SparseArea};
use crate::error::Result;
use crate::memory::IovaMode;
use crate::memory::{self, SegmentInfo};
use crate::pci::access::check_pa_segment;
use crate::pci::addr::PciAddr;
use crate::pci::backend::{IrqWait, PciBackend};
use crate::pci::error::{Origin, PciError};
use crate::pci::kind::BackendKind;
use crate::pci::mmio::MmioRegion;
use crate::pci::sys::BarMapping;
use crate::pci::sysfs::SysfsRoot;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, Weak};
use vfio_bindings::bindings::vfio as sys;

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
    /// What the IOVAs the device is given are (PA in no-IOMMU mode).
    iova_mode: IovaMode,
    group: Arc<VfioGroup>,
}

fn at(addr: PciAddr) -> Origin {
    Origin::Vfio(Some(addr))
}

impl VfioDevice {
    /// Opens `addr` through VFIO, in `container` (which is shared by all VFIO devices of a
    /// process; see the `open` module), reading sysfs and /dev under `root`. `iova_mode`
    /// is what the IOVAs of the process's memory segments are (the EAL's choice): the
    /// IOMMU maps each segment at its IOVA, so the device sees that mode (without an
    /// IOMMU it sees physical addresses whatever is asked).
    pub fn open_in(
        addr: PciAddr,
        root: &SysfsRoot,
        container: &Arc<VfioContainer>,
        iova_mode: IovaMode,
    ) -> Result<VfioDevice> {
        let loc = locate_group(addr, root)?;
        let group = container.attach_group(&loc, root, addr)?;
        // A PCI address has no NUL byte.
        let name = std::ffi::CString::new(addr.to_string()).unwrap_or_default();
        let gfd = group
            .fd()
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EBADF));
        let fd = gfd
            .and_then(|g| ioctl::group_get_device_fd(g, &name))
            .map_err(|source| match source.raw_os_error() {
                Some(libc::EBUSY) => VfioError::DeviceBusy { addr },
                _ => VfioError::GetDeviceFd {
                    addr,
                    group: loc.number,
                    source,
                },
            })?;
        let file = Arc::new(File::from(fd));
        let info = ioctl::device_get_info(file.as_fd())
            .map_err(|source| VfioError::GetDeviceInfo { addr, source })?;
        if info.flags & sys::VFIO_DEVICE_FLAGS_PCI == 0 {
            return Err(VfioError::NotPci { addr }.into());
        }
        if info.num_regions <= sys::VFIO_PCI_CONFIG_REGION_INDEX {
            return Err(VfioError::NoConfigRegion {
                addr,
                regions: info.num_regions,
            }
            .into());
        }
        let mut regions = Vec::new();
        for index in 0..info.num_regions.min(sys::VFIO_PCI_NUM_REGIONS) {
            match query_region(file.as_fd(), index) {
                Ok(r) => regions.push(Some(r)),
                Err(e) if index == sys::VFIO_PCI_CONFIG_REGION_INDEX => return Err(e),
                Err(e) => {
                    tracing::debug!(%addr, index, "region info unavailable: {e}");
                    regions.push(None);
                }
            }
        }
        let irqs = IrqCounts::query(file.as_fd(), info.num_irqs);
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
            iova_mode: if group.is_noiommu() {
                IovaMode::Pa
            } else {
                iova_mode
            },
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
        self.group.container().is_dma_mapped(iova, len)
    }

    fn checked_region(&self, index: u32, offset: u64, len: usize, need: u32) -> Result<u64> {
        let r = self.region(index).ok_or(VfioError::NoRegion {
            addr: self.addr,
            index,
        })?;
        if r.flags & need != need {
            return Err(VfioError::RegionAccess {
                addr: self.addr,
                index,
                flags: r.flags,
            }
            .into());
        }
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > r.size)
        {
            return Err(VfioError::OutsideRegion {
                addr: self.addr,
                index,
                offset,
                len,
                size: r.size,
            }
            .into());
        }
        Ok(r.offset + offset)
    }

    /// Reads `buf.len()` bytes at `offset` of region `index` through the kernel (pread):
    /// works for I/O-port BARs and for the parts of a BAR that cannot be mmapped.
    pub fn read_region(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<()> {
        let at = self.checked_region(index, offset, buf.len(), sys::VFIO_REGION_INFO_FLAG_READ)?;
        self.file.read_exact_at(buf, at).map_err(|e| {
            PciError::io(
                format!("{}: reading region {index} at {offset:#x}", self.addr),
                e,
            )
            .into()
        })
    }

    /// Writes `buf` at `offset` of region `index` through the kernel (pwrite).
    pub fn write_region(&self, index: u32, offset: u64, buf: &[u8]) -> Result<()> {
        let at = self.checked_region(index, offset, buf.len(), sys::VFIO_REGION_INFO_FLAG_WRITE)?;
        self.file.write_all_at(buf, at).map_err(|e| {
            PciError::io(
                format!("{}: writing region {index} at {offset:#x}", self.addr),
                e,
            )
            .into()
        })
    }

    fn bar_is_io(&self, bar: u8) -> bool {
        self.read_config32(0x10 + 4 * bar as u16)
            .is_ok_and(|v| v & 1 == 1)
    }

    fn check_bar(&self, bar: u8) -> Result<()> {
        if bar > 5 {
            return Err(PciError::NoSuchBar {
                at: at(self.addr),
                bar,
            }
            .into());
        }
        Ok(())
    }
}

impl PciBackend for VfioDevice {
    fn addr(&self) -> PciAddr {
        self.addr
    }

    fn kind(&self) -> BackendKind {
        if self.group.is_noiommu() {
            BackendKind::VfioNoIommu
        } else {
            BackendKind::Vfio
        }
    }

    fn iova_mode(&self) -> IovaMode {
        self.iova_mode
    }

    fn read_config(&self, offset: u16, buf: &mut [u8]) -> Result<()> {
        self.read_region(sys::VFIO_PCI_CONFIG_REGION_INDEX, offset.into(), buf)
    }

    fn write_config(&self, offset: u16, buf: &[u8]) -> Result<()> {
        self.write_region(sys::VFIO_PCI_CONFIG_REGION_INDEX, offset.into(), buf)
    }

    fn map_bar(&self, bar: u8) -> Result<MmioRegion> {
        self.check_bar(bar)?;
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = &bars[bar as usize] {
            return Ok(r.clone());
        }
        let r =
            self.region(bar.into())
                .filter(|r| r.size > 0)
                .ok_or(PciError::BarNotImplemented {
                    at: at(self.addr),
                    bar,
                })?;
        if !r.mmappable() {
            let addr = self.addr;
            return Err(if self.bar_is_io(bar) {
                VfioError::IoBarNotMappable { addr, bar }
            } else {
                VfioError::BarNotMappable { addr, bar }
            }
            .into());
        }
        let page = memory::page_size_4k() as u64;
        let areas = match &r.caps.sparse {
            Some(areas) => validate_sparse_areas(areas, r.size, page)?,
            None => vec![SparseArea {
                offset: 0,
                size: r.size,
            }],
        };
        if areas.is_empty() {
            return Err(VfioError::NoMappableArea {
                addr: self.addr,
                bar,
            }
            .into());
        }
        let size =
            usize::try_from(r.size).map_err(|_| PciError::BarTooLarge { at: at(self.addr) })?;
        let total = size.div_ceil(page as usize) * page as usize;
        let mut mapping = BarMapping::reserve(total).map_err(|e| {
            PciError::io(
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
                    PciError::io(
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
        let base = mapping.base();
        // SAFETY: base..base+size lies in `mapping` (total >= size), which the region's
        // owner keeps mapped; the mmappable parts are device memory, the holes PROT_NONE.
        let region = unsafe { MmioRegion::new(base, size, Arc::new(mapping)) };
        bars[bar as usize] = Some(region.clone());
        Ok(region)
    }

    /// Through the kernel (pread on the BAR's region): works for I/O-port BARs.
    fn read_io(&self, bar: u8, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_bar(bar)?;
        self.read_region(bar.into(), offset, buf)
    }

    /// Through the kernel (pwrite on the BAR's region): works for I/O-port BARs.
    fn write_io(&self, bar: u8, offset: u64, buf: &[u8]) -> Result<()> {
        self.check_bar(bar)?;
        self.write_region(bar.into(), offset, buf)
    }

    fn dma_map(&self, seg: &SegmentInfo) -> Result<()> {
        if self.group.is_noiommu() {
            check_pa_segment(seg, "vfio no-IOMMU")
        } else {
            self.group.container().dma().map_segment(seg)
        }
    }

    fn dma_unmap(&self, seg: &SegmentInfo) -> Result<()> {
        if self.group.is_noiommu() {
            Ok(())
        } else {
            self.group.container().dma().unmap_segment(seg)
        }
    }

    fn enable_irqs(&self, count: u32) -> Result<Vec<Box<dyn IrqWait>>> {
        let mut st = self.irq_state.lock().unwrap_or_else(|e| e.into_inner());
        if st.0.strong_count() > 0 {
            return Err(VfioError::IrqsBusy { addr: self.addr }.into());
        }
        let t = choose_irq_type(self.irqs, count)?;
        let efds = irq::new_eventfds(count)?;
        let (guard, handles) =
            irq::enable(&self.file, t, efds).map_err(|source| VfioError::SetIrqs {
                addr: self.addr,
                count,
                irq: t,
                source,
            })?;
        *st = (Arc::downgrade(&guard), Some(t));
        Ok(handles
            .into_iter()
            .map(|h| Box::new(h) as Box<dyn IrqWait>)
            .collect())
    }

    /// `VFIO_DEVICE_RESET` when the device supports it; otherwise nothing happens (logged
    /// at debug level) and the driver's own device reset must do.
    fn reset(&self) -> Result<()> {
        if !self.supports_reset() {
            tracing::debug!(addr = %self.addr, "device has no VFIO reset (no FLR/PM reset); skipped");
            return Ok(());
        }
        ioctl::device_reset(self.file.as_fd()).map_err(|source| VfioError::Reset {
            addr: self.addr,
            source,
        })?;
        Ok(())
    }
}
