//! The front end's memory table (SET_MEM_TABLE): up to [`MAX_REGIONS`] regions, each a
//! file descriptor the front end passed, mapped here, and the two address spaces through
//! which it names bytes in them: guest physical addresses (descriptor buffers) and the
//! front end's own virtual addresses (ring addresses in SET_VRING_ADDR).
//!
//! Everything in a table is input from an untrusted peer. [`GuestMemory::build`] refuses
//! empty regions, address ranges that wrap, regions that overlap in either address space,
//! and files too short for `mmap_offset + memory_size` (touching a mapping past its file's
//! end raises SIGBUS). Translation ([`GuestMemory::gpa`], [`GuestMemory::uva`]) answers
//! only for a whole `[addr, addr + len)` inside one region, so a buffer can never reach
//! outside what was mapped. A front end can still shrink an unsealed file after the check
//! (QEMU's memfd back end seals its files; hugetlbfs files cannot be sealed):
//! [`GuestMemory::unsealed`] counts the regions open to that, for the xstats.
//!
//! Bytes behind translated addresses are shared with the guest, which writes them
//! concurrently: they are only ever read and written through raw copies, volatile and
//! atomic accesses, never through Rust references.

use memmap2::{MmapOptions, MmapRaw};
use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Most regions in one SET_MEM_TABLE (the protocol's fixed array).
pub const MAX_REGIONS: usize = 8;

/// One region as SET_MEM_TABLE describes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionDesc {
    /// Guest physical address of the first byte.
    pub guest_phys_addr: u64,
    /// Bytes.
    pub memory_size: u64,
    /// The front end's virtual address of the first byte.
    pub userspace_addr: u64,
    /// Offset of the first byte in the file.
    pub mmap_offset: u64,
}

/// Why a memory table was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemError {
    /// More regions than the protocol allows, or none.
    RegionCount(usize),
    /// Region `i` has size 0.
    Empty(usize),
    /// Region `i`'s guest, user or file range wraps around 2^64.
    Wraps(usize),
    /// Regions `i` and `j` overlap in guest physical or front-end virtual addresses.
    Overlap(usize, usize),
    /// Region `i`'s descriptor is not a regular file (memfd, hugetlbfs or tmpfs file).
    NotAFile(usize),
    /// Region `i` needs `need` bytes of a file that has `has`.
    FileTooShort {
        /// The region.
        region: usize,
        /// `mmap_offset + memory_size`.
        need: u64,
        /// The file's size.
        has: u64,
    },
    /// Mapping region `i` failed (errno text).
    Map(usize, String),
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemError::RegionCount(n) => write!(f, "{n} memory regions (1..={MAX_REGIONS})"),
            MemError::Empty(i) => write!(f, "memory region {i} is empty"),
            MemError::Wraps(i) => write!(f, "memory region {i} wraps the address space"),
            MemError::Overlap(i, j) => write!(f, "memory regions {i} and {j} overlap"),
            MemError::NotAFile(i) => write!(f, "memory region {i}: fd is not a memory file"),
            MemError::FileTooShort { region, need, has } => write!(
                f,
                "memory region {region} needs {need} bytes of a {has}-byte file"
            ),
            MemError::Map(i, e) => write!(f, "memory region {i}: mmap failed: {e}"),
        }
    }
}

impl std::error::Error for MemError {}

/// One mapped region.
struct Region {
    desc: RegionDesc,
    /// Address of the region's first byte (`mmap_offset` into the file).
    host: *mut u8,
    /// Whether the file is sealed against shrinking.
    sealed: bool,
    /// Keeps the mapping alive; unmapped when the table is dropped.
    _map: MmapRaw,
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("desc", &self.desc)
            .field("sealed", &self.sealed)
            .finish()
    }
}

/// A mapped memory table. Queues hold it through an `Arc` while they use addresses it
/// translated, so a new table or a disconnect never unmaps memory under a burst.
#[derive(Debug, Default)]
pub struct GuestMemory {
    regions: Box<[Region]>,
}

// SAFETY: the raw pointers point into mappings this value owns; they are only turned
// into accesses by code that bounds-checked them through `gpa`/`uva`, and the memory is
// shared with another process anyway (every access is a raw copy, volatile or atomic).
unsafe impl Send for GuestMemory {}
// SAFETY: as above; `GuestMemory` itself is immutable after `build`.
unsafe impl Sync for GuestMemory {}

impl GuestMemory {
    /// Checks and maps a table: one fd per region, in order. The fds are consumed (the
    /// mappings keep the memory; the descriptors are closed on every path).
    pub fn build(descs: &[RegionDesc], fds: Vec<OwnedFd>) -> Result<GuestMemory, MemError> {
        if descs.is_empty() || descs.len() > MAX_REGIONS || fds.len() != descs.len() {
            return Err(MemError::RegionCount(descs.len()));
        }
        for (i, d) in descs.iter().enumerate() {
            if d.memory_size == 0 {
                return Err(MemError::Empty(i));
            }
            let wraps = |a: u64| a.checked_add(d.memory_size).is_none();
            if wraps(d.guest_phys_addr) || wraps(d.userspace_addr) || wraps(d.mmap_offset) {
                return Err(MemError::Wraps(i));
            }
            for (j, e) in descs.iter().enumerate().take(i) {
                let overlap = |a: u64, b: u64| a < b + e.memory_size && b < a + d.memory_size;
                if overlap(d.guest_phys_addr, e.guest_phys_addr)
                    || overlap(d.userspace_addr, e.userspace_addr)
                {
                    return Err(MemError::Overlap(j, i));
                }
            }
        }
        let mut regions = Vec::with_capacity(descs.len());
        for (i, (d, fd)) in descs.iter().zip(fds).enumerate() {
            regions.push(map_region(i, *d, fd)?);
        }
        Ok(GuestMemory {
            regions: regions.into_boxed_slice(),
        })
    }

    /// The regions' descriptions, in table order.
    pub fn regions(&self) -> impl Iterator<Item = RegionDesc> + '_ {
        self.regions.iter().map(|r| r.desc)
    }

    /// Regions whose file the front end could still shrink (not sealed).
    pub fn unsealed(&self) -> usize {
        self.regions.iter().filter(|r| !r.sealed).count()
    }

    /// Whether the table has no region (before the first SET_MEM_TABLE).
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Host address of guest physical `[addr, addr + len)`, if it lies inside one region.
    #[inline(always)]
    pub fn gpa(&self, addr: u64, len: u64) -> Option<*mut u8> {
        for r in self.regions.iter() {
            if let Some(p) = span(r, r.desc.guest_phys_addr, addr, len) {
                return Some(p);
            }
        }
        None
    }

    /// Starts loading the buffer at guest physical `addr` for reading (`WRITE` false) or
    /// writing: its first line (a virtio-net header of `hdr_len` bytes) and the line after
    /// the header (where a front end that places the header in its buffer's headroom
    /// starts the frame). Only a hint: an address outside every region is skipped, and a
    /// prefetch never faults.
    #[inline(always)]
    pub fn prefetch_buffer<const WRITE: bool>(&self, addr: u64, hdr_len: usize) {
        if let Some(p) = self.gpa(addr, hdr_len as u64 + 1) {
            for a in [p, p.wrapping_add(hdr_len)] {
                if WRITE {
                    pmd_core::prefetch::write(a);
                } else {
                    pmd_core::prefetch::read(a);
                }
            }
        }
    }

    /// Host address of front-end virtual `[addr, addr + len)`, if inside one region.
    pub fn uva(&self, addr: u64, len: u64) -> Option<*mut u8> {
        self.regions
            .iter()
            .find_map(|r| span(r, r.desc.userspace_addr, addr, len))
    }

    /// Guest physical address of the byte at front-end virtual `addr`, if it is in a
    /// region (dirty logging of ring areas, which are named by front-end addresses).
    pub fn uva_to_gpa(&self, addr: u64) -> Option<u64> {
        self.back_to_gpa(addr, |r| r.desc.userspace_addr)
    }

    /// Guest physical address of the byte at host address `p`, if it is in a region's
    /// mapping (dirty logging of buffers, which the ring walkers hand on as host
    /// addresses). Only compares addresses.
    pub fn host_to_gpa(&self, p: *const u8) -> Option<u64> {
        self.back_to_gpa(p as u64, |r| r.host as u64)
    }

    /// Guest physical address of `addr` in the address space where region `r` starts at
    /// `start(r)`, if it is in a region.
    fn back_to_gpa(&self, addr: u64, start: impl Fn(&Region) -> u64) -> Option<u64> {
        self.regions.iter().find_map(|r| {
            let off = addr.checked_sub(start(r))?;
            (off < r.desc.memory_size).then(|| r.desc.guest_phys_addr + off)
        })
    }
}

/// `[addr, addr + len)` in region `r` whose first byte is at `start` in that address space.
#[inline(always)]
fn span(r: &Region, start: u64, addr: u64, len: u64) -> Option<*mut u8> {
    let off = addr.checked_sub(start)?;
    let end = off.checked_add(len)?;
    if end > r.desc.memory_size {
        return None;
    }
    // SAFETY: off + len <= memory_size, and the mapping covers memory_size bytes from
    // `host` (checked against the file and mapped in `map_region`).
    Some(unsafe { r.host.add(off as usize) })
}

/// Why [`map_file`] refused a file the front end passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileMapError {
    /// `offset + len` wraps around 2^64, or `len` does not fit the address space.
    Wraps,
    /// Not a regular file (memfd, hugetlbfs or tmpfs file).
    NotAFile,
    /// The span needs `need` bytes of a file that has `has`.
    TooShort {
        /// `offset + len`.
        need: u64,
        /// The file's size.
        has: u64,
    },
    /// mmap failed (errno text).
    Map(String),
}

/// Checks that `fd` is a regular file holding `[offset, offset + len)` and maps that span
/// shared; the file comes back too (its seals may be asked). The size is checked first:
/// touching a mapping past its file's end raises SIGBUS. Serves the memory table's
/// regions and the dirty log; the descriptor is consumed on every path.
pub(crate) fn map_file(
    fd: OwnedFd,
    offset: u64,
    len: u64,
) -> Result<(File, MmapRaw), FileMapError> {
    let need = offset.checked_add(len).ok_or(FileMapError::Wraps)?;
    let file = File::from(fd);
    let st = file.metadata().map_err(|_| FileMapError::NotAFile)?;
    if !st.file_type().is_file() {
        return Err(FileMapError::NotAFile);
    }
    if st.len() < need {
        return Err(FileMapError::TooShort {
            need,
            has: st.len(),
        });
    }
    let len = usize::try_from(len).map_err(|_| FileMapError::Wraps)?;
    let map = MmapOptions::new()
        .offset(offset)
        .len(len)
        .map_raw(&file)
        .map_err(|e| FileMapError::Map(e.to_string()))?;
    Ok((file, map))
}

/// Checks region `i`'s file and maps `[mmap_offset, mmap_offset + memory_size)` of it.
fn map_region(i: usize, d: RegionDesc, fd: OwnedFd) -> Result<Region, MemError> {
    let (file, map) = map_file(fd, d.mmap_offset, d.memory_size).map_err(|e| match e {
        FileMapError::Wraps => MemError::Wraps(i),
        FileMapError::NotAFile => MemError::NotAFile(i),
        FileMapError::TooShort { need, has } => MemError::FileTooShort {
            region: i,
            need,
            has,
        },
        FileMapError::Map(e) => MemError::Map(i, e),
    })?;
    let sealed = seals(&file).is_some_and(|s| s & libc::F_SEAL_SHRINK != 0);
    Ok(Region {
        desc: d,
        host: map.as_mut_ptr(),
        sealed,
        _map: map,
    })
}

/// The file's seals (`F_GET_SEALS`), if it supports sealing.
fn seals(file: &File) -> Option<i32> {
    // SAFETY: F_GET_SEALS takes no argument and only reads the descriptor's state; the
    // descriptor is valid for the call (borrowed from `file`).
    let rc = unsafe { libc::fcntl(file.as_fd().as_raw_fd(), libc::F_GET_SEALS) };
    (rc >= 0).then_some(rc)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A memfd of `len` bytes (sealed against shrinking if `seal`).
    pub(crate) fn memfd(len: u64, seal: bool) -> OwnedFd {
        // SAFETY: a valid NUL-terminated name and flags; the result is checked.
        let fd = unsafe { libc::memfd_create(c"vhost-test".as_ptr(), libc::MFD_ALLOW_SEALING) };
        assert!(fd >= 0);
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let f = File::from(fd);
        f.set_len(len).unwrap();
        if seal {
            // SAFETY: F_ADD_SEALS with a seal mask on our descriptor.
            let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) };
            assert_eq!(rc, 0);
        }
        f.into()
    }

    /// Test access to guest memory by guest-physical address (the test is its only
    /// writer), shared by the split and packed ring tests' driver sides.
    pub(crate) trait GuestBytes {
        /// Copies `bytes` to `gpa`.
        fn write(&self, gpa: u64, bytes: &[u8]);
        /// The `len` bytes at `gpa`.
        fn read(&self, gpa: u64, len: usize) -> Vec<u8>;
        /// Writes a little-endian u16.
        fn w16(&self, gpa: u64, v: u16) {
            self.write(gpa, &v.to_le_bytes());
        }
        /// Reads a little-endian u16.
        fn r16(&self, gpa: u64) -> u16 {
            u16::from_le_bytes(self.read(gpa, 2).try_into().unwrap())
        }
        /// Reads a little-endian u32.
        fn r32(&self, gpa: u64) -> u32 {
            u32::from_le_bytes(self.read(gpa, 4).try_into().unwrap())
        }
    }

    impl GuestBytes for GuestMemory {
        fn write(&self, gpa: u64, bytes: &[u8]) {
            let p = self
                .gpa(gpa, bytes.len() as u64)
                .expect("inside the test region");
            // SAFETY: translated with its length; the test is the only writer.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) }
        }

        fn read(&self, gpa: u64, len: usize) -> Vec<u8> {
            let p = self.gpa(gpa, len as u64).expect("inside the test region");
            let mut v = vec![0u8; len];
            // SAFETY: as for `write`.
            unsafe { std::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), len) };
            v
        }
    }

    fn desc(gpa: u64, size: u64, uva: u64, off: u64) -> RegionDesc {
        RegionDesc {
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: uva,
            mmap_offset: off,
        }
    }

    #[test]
    fn translates_only_whole_spans_inside_a_region() {
        let fd = memfd(3 * 4096, true);
        let mut f = File::from(fd.try_clone().unwrap());
        f.write_all(&[0u8; 4096]).unwrap();
        f.write_all(b"second page").unwrap();
        let m = GuestMemory::build(&[desc(0x10_0000, 8192, 0x7f00_0000, 4096)], vec![fd]).unwrap();
        assert_eq!(m.unsealed(), 0);
        let p = m.gpa(0x10_0000, 11).unwrap();
        let mut got = [0u8; 11];
        // SAFETY: 11 bytes inside the mapping (translated above).
        unsafe { std::ptr::copy_nonoverlapping(p, got.as_mut_ptr(), 11) };
        assert_eq!(&got, b"second page");
        assert_eq!(m.uva(0x7f00_0000, 1), Some(p));
        assert!(m.gpa(0x10_0000, 8192).is_some());
        assert!(m.gpa(0x10_0000, 8193).is_none());
        assert!(m.gpa(0x10_0000 + 8191, 2).is_none());
        assert!(m.gpa(0x0f_ffff, 1).is_none());
        assert!(m.gpa(0x10_0000, u64::MAX).is_none());
        assert!(m.gpa(u64::MAX, 1).is_none());
        assert!(m.uva(0x10_0000, 1).is_none());
        // Back from either address space to guest physical (dirty logging).
        assert_eq!(m.uva_to_gpa(0x7f00_0000 + 8191), Some(0x10_0000 + 8191));
        assert_eq!(m.uva_to_gpa(0x7f00_0000 + 8192), None);
        assert_eq!(m.uva_to_gpa(0x7eff_ffff), None);
        assert_eq!(m.host_to_gpa(p.wrapping_add(100)), Some(0x10_0000 + 100));
        assert_eq!(m.host_to_gpa(p.wrapping_add(8192)), None);
        assert_eq!(m.host_to_gpa(p.wrapping_sub(1)), None);
    }

    #[test]
    fn refuses_bad_tables() {
        let fds = |n: usize| (0..n).map(|_| memfd(8192, false)).collect::<Vec<_>>();
        let a = desc(0, 4096, 0x1000_0000, 0);
        assert_eq!(
            GuestMemory::build(&[], vec![]).unwrap_err(),
            MemError::RegionCount(0)
        );
        assert_eq!(
            GuestMemory::build(&[a; 9], fds(9)).unwrap_err(),
            MemError::RegionCount(9)
        );
        assert_eq!(
            GuestMemory::build(&[desc(0, 0, 0, 0)], fds(1)).unwrap_err(),
            MemError::Empty(0)
        );
        assert_eq!(
            GuestMemory::build(&[desc(u64::MAX - 10, 4096, 0, 0)], fds(1)).unwrap_err(),
            MemError::Wraps(0)
        );
        assert_eq!(
            GuestMemory::build(&[desc(0, 4096, 0, u64::MAX - 4000)], fds(1)).unwrap_err(),
            MemError::Wraps(0)
        );
        // Overlap in guest addresses, then in user addresses.
        let b = desc(4095, 4096, 0x2000_0000, 0);
        assert_eq!(
            GuestMemory::build(&[a, b], fds(2)).unwrap_err(),
            MemError::Overlap(0, 1)
        );
        let c = desc(0x10_0000, 4096, 0x1000_0fff, 0);
        assert_eq!(
            GuestMemory::build(&[a, c], fds(2)).unwrap_err(),
            MemError::Overlap(0, 1)
        );
        assert_eq!(
            GuestMemory::build(&[desc(0, 8192, 0, 4096)], fds(1)).unwrap_err(),
            MemError::FileTooShort {
                region: 0,
                need: 12288,
                has: 8192
            }
        );
        let (r, _w) = std::io::pipe().unwrap();
        assert_eq!(
            GuestMemory::build(&[a], vec![r.into()]).unwrap_err(),
            MemError::NotAFile(0)
        );
        let ok = GuestMemory::build(&[a, desc(4096, 4096, 0x1000_1000, 0)], fds(2)).unwrap();
        assert_eq!(ok.unsealed(), 2);
        assert_eq!(ok.regions().count(), 2);
    }
}
