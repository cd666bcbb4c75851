//! DMA mappings of a type1 IOMMU container: the table of what is mapped, the memlock
//! check before pinning more, and the map/unmap calls.

use super::error::VfioError;
use super::ioctl;
use crate::error::Result;
use crate::memory::SegmentInfo;
use crate::pci::sys::{is_root, memlock_soft_limit};
use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

/// Errors unless `to_pin` bytes fit under the soft memlock limit (`None`: unlimited) or
/// the process is root.
pub fn check_memlock(soft_limit: Option<u64>, is_root: bool, to_pin: u64) -> Result<()> {
    match soft_limit {
        Some(limit) if !is_root && limit < to_pin => {
            Err(VfioError::MemlockLimit { limit, to_pin }.into())
        }
        _ => Ok(()),
    }
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
pub(super) struct DmaState {
    fd: OwnedFd,
    /// iova → mapping.
    maps: Mutex<BTreeMap<u64, DmaMapping>>,
}

impl DmaState {
    /// An empty table over the container descriptor `fd`.
    pub(super) fn new(fd: OwnedFd) -> DmaState {
        DmaState {
            fd,
            maps: Mutex::new(BTreeMap::new()),
        }
    }

    /// The container descriptor.
    pub(super) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Maps `seg` at its IOVA (a no-op when it is mapped already).
    pub(super) fn map_segment(&self, seg: &SegmentInfo) -> Result<()> {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        let len = seg.len as u64;
        if let Some(m) = maps.get(&seg.iova) {
            if m.va == seg.va && m.len == len {
                return Ok(()); // already mapped (listener and explicit dma_map overlap)
            }
        }
        if !seg.iova_contiguous {
            return Err(VfioError::NotIovaContiguous {
                segment: seg.name.clone(),
            }
            .into());
        }
        let end = seg.iova.checked_add(len).ok_or(VfioError::IovaOverflow)?;
        if let Some((&iova, m)) = maps.range(..end).next_back() {
            if iova + m.len > seg.iova {
                return Err(VfioError::DmaOverlap {
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
        ioctl::iommu_map_dma(self.fd(), seg.va as u64, seg.iova, len).map_err(|source| {
            VfioError::MapDma {
                segment: seg.name.clone(),
                va: seg.va,
                iova: seg.iova,
                len,
                source,
            }
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

    /// Unmaps `seg` (nothing to do when it is not mapped).
    pub(super) fn unmap_segment(&self, seg: &SegmentInfo) -> Result<()> {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        let key = maps
            .iter()
            .find(|(iova, m)| m.seg_id == seg.id || (**iova == seg.iova && m.va == seg.va))
            .map(|(iova, _)| *iova);
        let Some(iova) = key else { return Ok(()) };
        let Some(m) = maps.remove(&iova) else {
            return Ok(());
        };
        ioctl::iommu_unmap_dma(self.fd(), iova, m.len).map_err(|source| {
            VfioError::UnmapDma {
                segment: seg.name.clone(),
                iova,
                source,
            }
            .into()
        })
    }

    /// Undoes every mapping (logging failures).
    pub(super) fn unmap_all(&self) {
        let maps = std::mem::take(&mut *self.maps.lock().unwrap_or_else(|e| e.into_inner()));
        for (iova, m) in maps {
            if let Err(e) = ioctl::iommu_unmap_dma(self.fd(), iova, m.len) {
                tracing::warn!(iova, "VFIO_IOMMU_UNMAP_DMA failed: {e}");
            }
        }
    }

    /// Number of live mappings.
    pub(super) fn count(&self) -> usize {
        self.maps.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether `iova..iova+len` lies inside one mapping.
    pub(super) fn covers(&self, iova: u64, len: u64) -> bool {
        let maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        maps.range(..=iova).next_back().is_some_and(|(&start, m)| {
            iova.checked_add(len)
                .is_some_and(|end| end <= start + m.len)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
