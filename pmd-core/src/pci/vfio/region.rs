//! Device regions: what `VFIO_DEVICE_GET_REGION_INFO` says about a BAR, the ROM or config
//! space, with bounded parsing of its capability chain (sparse-mmap areas, MSI-X
//! mappability, region type). How a BAR's areas are then mapped: `pci::sys::BarMapping`.

use super::error::VfioError;
use super::ioctl;
use crate::error::Result;
use std::mem::{offset_of, size_of};
use std::os::fd::BorrowedFd;
use vfio_bindings::bindings::vfio as sys;

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
const REGION_INFO_SIZE: usize = size_of::<sys::vfio_region_info>();
/// Size of `struct vfio_info_cap_header`.
const CAP_HEADER_SIZE: usize = size_of::<sys::vfio_info_cap_header>();
/// Size of one `struct vfio_region_sparse_mmap_area`.
const SPARSE_AREA_SIZE: usize = size_of::<sys::vfio_region_sparse_mmap_area>();
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
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
}

fn read_u64(buf: &[u8], at: usize) -> Option<u64> {
    buf.get(at..at.checked_add(8)?)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_ne_bytes)
}

fn round_up(v: u64, to: u64) -> Option<u64> {
    v.checked_add(to - 1).map(|x| x / to * to)
}

/// Parses the capability chain of a region-info buffer (`buf` holds the whole
/// `struct vfio_region_info` as returned with its `argsz`; `first` is its `cap_offset`).
///
/// Every offset and length is bounded by `buf`; offsets must strictly increase along the
/// chain (so a loop is an error, never a hang), headers must be 4-byte aligned and lie
/// after the fixed struct. Unknown capabilities are skipped.
pub fn parse_region_caps(buf: &[u8], first: u32) -> Result<RegionCaps> {
    let bad = |detail: String| VfioError::MalformedCapChain { detail };
    let mut caps = RegionCaps::default();
    let mut at = first as usize;
    let mut walked = 0usize;
    let mut prev_end = REGION_INFO_SIZE;
    while at != 0 {
        walked += 1;
        if walked > MAX_CAPS {
            return Err(bad(format!("more than {MAX_CAPS} capabilities")).into());
        }
        if at < prev_end {
            return Err(bad(format!(
                "capability at {at:#x} overlaps the previous one or the fixed header (ends at {prev_end:#x}); loop?"
            ))
            .into());
        }
        if !at.is_multiple_of(4) {
            return Err(bad(format!("capability offset {at:#x} is not 4-byte aligned")).into());
        }
        let (Some(id), Some(_version), Some(next)) = (
            read_u16(buf, at + offset_of!(sys::vfio_info_cap_header, id)),
            read_u16(buf, at + offset_of!(sys::vfio_info_cap_header, version)),
            read_u32(buf, at + offset_of!(sys::vfio_info_cap_header, next)),
        ) else {
            return Err(bad(format!(
                "capability header at {at:#x} lies outside the {}-byte buffer",
                buf.len()
            ))
            .into());
        };
        let body = at + CAP_HEADER_SIZE;
        match u32::from(id) {
            sys::VFIO_REGION_INFO_CAP_SPARSE_MMAP => {
                let nr = read_u32(
                    buf,
                    at + offset_of!(sys::vfio_region_info_cap_sparse_mmap, nr_areas),
                )
                .ok_or_else(|| bad(format!("sparse-mmap capability at {at:#x} is truncated")))?;
                if nr > MAX_SPARSE_AREAS {
                    return Err(bad(format!("sparse-mmap capability claims {nr} areas")).into());
                }
                // header, nr_areas, reserved, then the areas.
                let areas_at = at + offset_of!(sys::vfio_region_info_cap_sparse_mmap, areas);
                let mut areas = Vec::with_capacity(nr as usize);
                for i in 0..nr as usize {
                    let a = areas_at + i * SPARSE_AREA_SIZE;
                    let (Some(offset), Some(size)) = (
                        read_u64(
                            buf,
                            a + offset_of!(sys::vfio_region_sparse_mmap_area, offset),
                        ),
                        read_u64(buf, a + offset_of!(sys::vfio_region_sparse_mmap_area, size)),
                    ) else {
                        return Err(bad(format!(
                            "sparse-mmap area {i} of {nr} at {a:#x} lies outside the {}-byte buffer",
                            buf.len()
                        ))
                        .into());
                    };
                    areas.push(SparseArea { offset, size });
                }
                prev_end = areas_at + nr as usize * SPARSE_AREA_SIZE;
                caps.sparse = Some(areas);
            }
            sys::VFIO_REGION_INFO_CAP_TYPE => {
                let (Some(t), Some(s)) = (
                    read_u32(buf, at + offset_of!(sys::vfio_region_info_cap_type, type_)),
                    read_u32(
                        buf,
                        at + offset_of!(sys::vfio_region_info_cap_type, subtype),
                    ),
                ) else {
                    return Err(bad(format!("type capability at {at:#x} is truncated")).into());
                };
                caps.region_type = Some((t, s));
                prev_end = at + size_of::<sys::vfio_region_info_cap_type>();
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
            ))
            .into());
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
    let bad = |detail: String| VfioError::InvalidSparseArea { detail };
    let region_end =
        round_up(region_size, page).ok_or_else(|| bad("region size overflows".into()))?;
    let mut out: Vec<SparseArea> = areas.iter().copied().filter(|a| a.size != 0).collect();
    out.sort_by_key(|a| a.offset);
    let mut prev_end = 0u64;
    for a in &out {
        if !a.offset.is_multiple_of(page) {
            return Err(bad(format!("offset {:#x} is not page-aligned", a.offset)).into());
        }
        let end = round_up(a.size, page)
            .and_then(|s| a.offset.checked_add(s))
            .ok_or_else(|| bad(format!("area {:#x}+{:#x} overflows", a.offset, a.size)))?;
        if end > region_end {
            return Err(bad(format!(
                "area {:#x}..{end:#x} lies outside the {region_size:#x}-byte region",
                a.offset
            ))
            .into());
        }
        if a.offset < prev_end {
            return Err(bad(format!(
                "area at {:#x} overlaps the previous area",
                a.offset
            ))
            .into());
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
pub(super) fn region_from_buffer(buf: &[u8]) -> Result<RegionInfo> {
    let short = || VfioError::RegionInfoShort;
    let flags = read_u32(buf, offset_of!(sys::vfio_region_info, flags)).ok_or_else(short)?;
    let index = read_u32(buf, offset_of!(sys::vfio_region_info, index)).ok_or_else(short)?;
    let cap_offset =
        read_u32(buf, offset_of!(sys::vfio_region_info, cap_offset)).ok_or_else(short)?;
    let size = read_u64(buf, offset_of!(sys::vfio_region_info, size)).ok_or_else(short)?;
    let offset = read_u64(buf, offset_of!(sys::vfio_region_info, offset)).ok_or_else(short)?;
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

/// A zeroed `struct vfio_region_info` query buffer of `argsz` bytes (u64 storage: the
/// struct and its sparse areas need 8-byte alignment) with `argsz` and `index` set at
/// their offsets in the structure; the rest is the kernel's to fill.
pub(super) fn region_info_request(argsz: u32, index: u32) -> Vec<u64> {
    let len = (argsz.max(REGION_INFO_SIZE as u32) as usize).div_ceil(8) * 8;
    let mut bytes = vec![0u8; len];
    let mut put = |at: usize, v: u32| bytes[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    put(offset_of!(sys::vfio_region_info, argsz), argsz);
    put(offset_of!(sys::vfio_region_info, index), index);
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_ne_bytes(w)
        })
        .collect()
}

/// Queries region `index` of the device, growing the buffer to the size the kernel asks
/// for when the region has capabilities.
pub(super) fn query_region(device: BorrowedFd<'_>, index: u32) -> Result<RegionInfo> {
    let mut argsz = REGION_INFO_SIZE as u32;
    for _ in 0..3 {
        let mut buf = region_info_request(argsz, index);
        ioctl::device_get_region_info(device, &mut buf)
            .map_err(|source| VfioError::GetRegionInfo { index, source })?;
        let bytes: Vec<u8> = buf
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .take(argsz as usize)
            .collect();
        let returned = read_u32(&bytes, offset_of!(sys::vfio_region_info, argsz)).unwrap_or(0);
        if returned > argsz {
            if returned > MAX_REGION_INFO_BYTES {
                return Err(VfioError::RegionInfoTooLarge {
                    index,
                    bytes: returned,
                }
                .into());
            }
            argsz = returned;
            continue;
        }
        return region_from_buffer(&bytes);
    }
    Err(VfioError::RegionInfoGrowing { index }.into())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
