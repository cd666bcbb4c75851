//! The model's IOMMU: the only way the model touches host memory.
//!
//! A segment listener (`pmd_core::memory::add_listener`) tells the model about every
//! live memory segment; each becomes a window from its IOVA range to its virtual
//! addresses. Every device access (descriptor read, buffer read or write, write-back)
//! must fall entirely inside one mapped window, else it is refused as a [`DmaFault`] and
//! no memory is touched. Accesses run under a read lock of the table and the listener
//! removes a segment under the write lock, so a segment can never be unmapped while the
//! model is copying into it.

use crate::lock_read;
use crate::lock_write;
use pmd_core::memory::{SegmentEvent, SegmentInfo};
use pmd_core::{Error, Result};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::RwLock;

/// A refused device access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaFault {
    /// The device address.
    pub iova: u64,
    /// The length of the access.
    pub len: usize,
}

impl std::fmt::Display for DmaFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DMA of {} bytes at IOVA {:#x} is outside every mapped segment",
            self.len, self.iova
        )
    }
}

/// One segment as the device sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    id: u64,
    iova: u64,
    va: usize,
    len: usize,
}

impl Window {
    fn of(seg: &SegmentInfo) -> Window {
        Window {
            id: seg.id,
            iova: seg.iova,
            va: seg.va,
            len: seg.len,
        }
    }

    /// The virtual address of `iova..iova+len` if the range lies inside this window.
    fn translate(&self, iova: u64, len: usize) -> Option<usize> {
        let off = iova.checked_sub(self.iova)?;
        let end = off.checked_add(len as u64)?;
        (end <= self.len as u64).then(|| self.va + off as usize)
    }
}

#[derive(Debug, Default)]
struct Tables {
    /// Segments alive according to the listener.
    live: Vec<Window>,
    /// Segments the device may reach (live ones, unless explicitly unmapped).
    mapped: Vec<Window>,
}

/// The table of windows and the checked accessors.
#[derive(Debug, Default)]
pub(crate) struct Iommu {
    tables: RwLock<Tables>,
}

impl Iommu {
    /// The segment listener's work: a new segment is live and mapped; a removed one is
    /// gone (after every access in progress has finished).
    pub fn on_segment(&self, ev: SegmentEvent, seg: &SegmentInfo) {
        let mut t = lock_write(&self.tables);
        t.live.retain(|w| w.id != seg.id);
        t.mapped.retain(|w| w.id != seg.id);
        // A segment whose IOVAs are not contiguous (IOVA-as-PA on small pages) cannot be
        // one window; the device never reaches it.
        if ev == SegmentEvent::Added && seg.iova_contiguous {
            t.live.push(Window::of(seg));
            t.mapped.push(Window::of(seg));
        }
    }

    /// Maps a live segment again after [`Iommu::unmap`] (`PciBackend::dma_map`). Refuses
    /// anything that is not a live segment, so no caller can open the device onto
    /// arbitrary memory.
    pub fn map(&self, seg: &SegmentInfo) -> Result<()> {
        let mut t = lock_write(&self.tables);
        let Some(w) = t.live.iter().copied().find(|w| *w == Window::of(seg)) else {
            return Err(Error::driver(
                "ixgbe-model",
                format!(
                    "dma_map: segment {} ({} bytes at {:#x}) is not a live memory segment",
                    seg.name, seg.len, seg.va
                ),
            ));
        };
        if !t.mapped.contains(&w) {
            t.mapped.push(w);
        }
        Ok(())
    }

    /// Takes a segment out of the device's reach (`PciBackend::dma_unmap`).
    pub fn unmap(&self, seg: &SegmentInfo) {
        lock_write(&self.tables).mapped.retain(|w| w.id != seg.id);
    }

    /// Runs `f` on the host address of `iova..iova+len` while the mapping is held.
    fn with<R>(&self, iova: u64, len: usize, f: impl FnOnce(usize) -> R) -> Result<R, DmaFault> {
        let t = lock_read(&self.tables);
        let va = t
            .mapped
            .iter()
            .find_map(|w| w.translate(iova, len))
            .ok_or(DmaFault { iova, len })?;
        Ok(f(va))
    }

    /// Device read of `dst.len()` bytes at `iova`.
    pub fn read(&self, iova: u64, dst: &mut [u8]) -> Result<(), DmaFault> {
        if dst.is_empty() {
            return Ok(());
        }
        self.with(iova, dst.len(), |va| {
            // SAFETY: va..va+len lies inside a live segment mapping (checked by `with`,
            // which holds the table lock so the segment cannot be unmapped meanwhile) and
            // cannot overlap `dst`, a Rust buffer of the model. The driver may write the
            // same memory concurrently: that is the DMA contract, as with hardware.
            unsafe { std::ptr::copy_nonoverlapping(va as *const u8, dst.as_mut_ptr(), dst.len()) }
        })
    }

    /// Device write of `src` at `iova`.
    pub fn write(&self, iova: u64, src: &[u8]) -> Result<(), DmaFault> {
        if src.is_empty() {
            return Ok(());
        }
        self.with(iova, src.len(), |va| {
            // SAFETY: as in `read`: the range is inside a live mapped segment and does not
            // overlap `src`.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), va as *mut u8, src.len()) }
        })
    }

    /// Device read of a 16-byte descriptor at `iova` as two little-endian words.
    pub fn read_desc(&self, iova: u64) -> Result<[u64; 2], DmaFault> {
        let mut b = [0u8; 16];
        self.read(iova, &mut b)?;
        fence(Ordering::Acquire);
        let (lo, hi) = b.split_at(8);
        Ok([le64(lo), le64(hi)])
    }

    /// Writes the 64-bit word `v` at `iova` (little-endian) with release ordering: every
    /// earlier device write (the packet data, the descriptor's other word) is visible
    /// before it. Descriptor status words go last through this.
    pub fn write_u64_release(&self, iova: u64, v: u64) -> Result<(), DmaFault> {
        self.with(iova, 8, |va| {
            if va % 8 == 0 {
                // SAFETY: va is 8-aligned and va..va+8 is inside a live mapped segment
                // (checked by `with`, which holds the table lock for the whole access).
                let word = unsafe { AtomicU64::from_ptr(va as *mut u64) };
                word.store(v.to_le(), Ordering::Release)
            } else {
                fence(Ordering::Release);
                // SAFETY: as above, without the alignment: a byte copy.
                unsafe { std::ptr::copy_nonoverlapping(v.to_le_bytes().as_ptr(), va as *mut u8, 8) }
            }
        })
    }
}

fn le64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: u64, buf: &mut [u8]) -> SegmentInfo {
        SegmentInfo {
            id,
            name: format!("t{id}"),
            va: buf.as_mut_ptr() as usize,
            len: buf.len(),
            page_size: 4096,
            iova: buf.as_ptr() as u64,
            iova_contiguous: true,
            iova_mode: pmd_core::memory::IovaMode::Va,
            fd: -1,
        }
    }

    #[test]
    fn accesses_must_fall_inside_one_window() {
        let mut a = vec![0u8; 64];
        let mut b = vec![0u8; 64];
        let (sa, sb) = (seg(1, &mut a), seg(2, &mut b));
        let io = Iommu::default();
        io.on_segment(SegmentEvent::Added, &sa);
        io.write(sa.iova + 60, &[1, 2, 3, 4]).unwrap();
        let f = io.write(sa.iova + 61, &[1, 2, 3, 4]).unwrap_err();
        assert_eq!(
            f,
            DmaFault {
                iova: sa.iova + 61,
                len: 4
            }
        );
        assert!(f.to_string().contains("outside every mapped segment"));
        assert!(
            io.read(sb.iova, &mut [0; 1]).is_err(),
            "b was never announced"
        );
        assert!(io.read(u64::MAX - 1, &mut [0; 4]).is_err(), "no overflow");
        assert!(
            io.map(&sb).is_err(),
            "dma_map of a segment that is not live"
        );
        io.on_segment(SegmentEvent::Added, &sb);
        io.unmap(&sb);
        assert!(io.read(sb.iova, &mut [0; 1]).is_err(), "unmapped");
        io.map(&sb).unwrap();
        io.write_u64_release(sb.iova + 3, 0x0304).unwrap();
        io.write_u64_release(sb.iova + 8, 0x0102).unwrap();
        assert_eq!(io.read_desc(sb.iova).unwrap(), [0x0003_0400_0000, 0x0102]);
        io.on_segment(SegmentEvent::Removed, &sa);
        assert!(io.read(sa.iova, &mut [0; 1]).is_err(), "removed");
        assert_eq!(&a[60..64], &[1, 2, 3, 4]);
        assert_eq!(io.read(0, &mut []), Ok(()), "empty accesses touch nothing");
    }
}
