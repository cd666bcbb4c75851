//! Shared memory regions (DPDK memif.rst, "Shared memory format"): the client creates them
//! as sealed memfds and passes the fds in ADD_REGION; the server maps what it receives,
//! after checking that the descriptor really is a memory file that can hold the region
//! and that the peer cannot shrink it underneath us (which would turn our accesses into
//! SIGBUS).
//!
//! A [`Region`] hands out only raw addresses inside bounds it has checked; every access
//! to the memory behind them is volatile, atomic or a raw copy (the peer writes it
//! concurrently), never a Rust reference. The mapping is a plain shared read-write one of
//! the whole file (also of a hugetlb memfd, whose pages need no mapping flag), made and
//! unmapped by `memmap2`. The exception is a zero-copy client's pool region
//! ([`Region::share_pool`]): its bytes are the pool's packet buffers, which the
//! application reads and writes through its mbufs (the crate docs say what that trusts
//! the server with).

use crate::sys;
use memmap2::{MmapOptions, MmapRaw};
use pmd_core::Mempool;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// Largest region we create or map (the protocol's descriptor offsets are 32-bit).
pub const MAX_REGION_SIZE: u64 = 1 << 32;

/// A mapped shared memory region. Accesses through its addresses are coordinated by the
/// ring protocol; the owners of the region (sessions, held by queues through `Arc`) keep
/// it mapped while anything uses them.
#[derive(Debug)]
pub struct Region {
    /// Where the region's bytes are in this process.
    map: Mapping,
    /// Bytes usable by descriptors and rings (what ADD_REGION announced).
    len: u64,
    fd: OwnedFd,
}

/// How a region is mapped here.
#[derive(Debug)]
enum Mapping {
    /// A mapping of our own: `len` bytes rounded up to the backing page size.
    Own(MmapRaw),
    /// The data segment of one of our pools, shared in place (zero-copy client): the
    /// pool's handle keeps it mapped.
    Pool(Mempool, *mut u8),
}

// SAFETY: the pointer of `Mapping::Pool` is the base of the pool's data segment, which the
// handle next to it keeps mapped; it is only an address (accesses are the data path's).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

fn huge_page_size() -> Option<usize> {
    pmd_core::memory::default_hugepage_size().ok()
}

impl Region {
    /// Creates a region of at least `len` bytes in a new memfd, sealed against shrinking,
    /// on hugepages if `huge` and the kernel allows (otherwise ordinary shared memory).
    /// The announced size is rounded up to the page size (a hugetlb mapping must be).
    pub fn create(name: &str, len: u64, huge: bool) -> io::Result<Region> {
        if len == 0 || len > MAX_REGION_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("region of {len} bytes: must be 1..=4 GiB"),
            ));
        }
        let cname = std::ffi::CString::new(name.replace('\0', "_"))
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad memfd name"))?;
        let base_flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        let mut attempt = Vec::new();
        if huge {
            if let Some(hp) = huge_page_size() {
                let shift = hp.trailing_zeros();
                attempt.push((
                    base_flags | libc::MFD_HUGETLB | (shift << libc::MFD_HUGE_SHIFT),
                    hp,
                ));
            }
        }
        attempt.push((base_flags, pmd_core::memory::page_size_4k()));
        let mut last = io::Error::other("no attempt");
        for (flags, page) in attempt {
            match Self::create_with(&cname, len, flags, page) {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn create_with(
        cname: &std::ffi::CStr,
        len: u64,
        flags: u32,
        page: usize,
    ) -> io::Result<Region> {
        let file = File::from(sys::memfd_create(cname, flags)?);
        let map_len = (len as usize).next_multiple_of(page);
        file.set_len(map_len as u64)?;
        let fd = OwnedFd::from(file);
        sys::add_seals(fd.as_fd(), libc::F_SEAL_SHRINK)?;
        let map = Mapping::Own(map(&fd, map_len)?);
        Ok(Region {
            map,
            len: map_len as u64,
            fd,
        })
    }

    /// The data segment of `pool` as a region, shared in place: the peer reads and
    /// writes packet bytes in the pool's buffers (a zero-copy client). Only the data
    /// rooms are shared, never the buffer headers ([`pmd_core::mempool::keep_data_apart`]).
    /// `None` if the pool keeps its data with its headers, or its segment cannot be
    /// announced (larger than 4 GiB, or a file that is not a sealed memfd: `--huge-dir`).
    pub fn share_pool(pool: &Mempool) -> Option<Region> {
        let seg = pool.data_segment()?;
        let len = seg.len() as u64;
        let sealed = sys::seals(seg.fd().as_fd()).is_ok_and(|s| s & libc::F_SEAL_SHRINK != 0);
        if len > MAX_REGION_SIZE || !sealed {
            return None;
        }
        let fd = seg.fd().try_clone().ok()?;
        Some(Region {
            map: Mapping::Pool(pool.clone(), seg.as_ptr()),
            len,
            fd,
        })
    }

    /// The pool whose data segment this region is, if it is one.
    pub fn pool(&self) -> Option<&Mempool> {
        match &self.map {
            Mapping::Pool(p, _) => Some(p),
            Mapping::Own(_) => None,
        }
    }

    /// Maps a region the peer announced as `size` bytes in `fd`. Refuses (with a short
    /// reason fit for a DISCONNECT message) anything but a regular memory file of at
    /// least that size, sealed against shrinking.
    pub fn map_peer(fd: OwnedFd, size: u64) -> Result<Region, String> {
        if size == 0 || size > MAX_REGION_SIZE {
            return Err(format!("Invalid region size {size}"));
        }
        let file = File::from(fd);
        let st = file
            .metadata()
            .map_err(|_| "Region fd: fstat failed".to_string())?;
        if !st.file_type().is_file() {
            return Err("Region fd is not a memory file".into());
        }
        let fd = OwnedFd::from(file);
        if !sys::seals(fd.as_fd()).is_ok_and(|s| s & libc::F_SEAL_SHRINK != 0) {
            return Err("Region fd must be a memfd sealed with F_SEAL_SHRINK".into());
        }
        let page = (st.blksize() as usize).max(pmd_core::memory::page_size_4k());
        let map_len = (size as usize).next_multiple_of(page);
        // Only [0, size) is ever accessed, so the file must cover that much; the mapping
        // itself is rounded up to whole pages.
        if st.len() < size {
            return Err(format!(
                "Region size {size} exceeds its file ({} bytes)",
                st.len()
            ));
        }
        let map = map(&fd, map_len).map_err(|e| format!("Region mmap failed: {e}"))?;
        Ok(Region {
            map: Mapping::Own(map),
            len: size,
            fd,
        })
    }

    /// Usable bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false (regions are never empty).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The backing descriptor (sent in ADD_REGION).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Base address, for bounds-checked views ([`crate::ring::RingPtr`], buffer copies).
    pub fn base(&self) -> *mut u8 {
        match &self.map {
            Mapping::Own(m) => m.as_mut_ptr(),
            Mapping::Pool(_, base) => *base,
        }
    }

    /// Whether `[offset, offset + len)` lies inside the region.
    #[inline(always)]
    pub fn contains(&self, offset: u64, len: u64) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len)
    }
}

/// Maps the first `len` bytes of `fd`, shared and read-write.
fn map(fd: &OwnedFd, len: usize) -> io::Result<MmapRaw> {
    MmapOptions::new().len(len).map_raw(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_map_as_peer() {
        let r = Region::create("memif-test", 10_000, false).unwrap();
        assert_eq!(r.len(), 12_288);
        let dup = r.fd().try_clone().unwrap();
        let p = Region::map_peer(dup, 10_000).unwrap();
        assert!(p.contains(0, 10_000) && !p.contains(9_999, 2) && !p.contains(u64::MAX, 2));
        let dup = r.fd().try_clone().unwrap();
        assert!(Region::map_peer(dup, 1 << 20)
            .unwrap_err()
            .contains("exceeds"));
    }

    #[test]
    fn refuses_unsealed_and_odd_fds() {
        let file = File::from(sys::memfd_create(c"plain", libc::MFD_CLOEXEC).unwrap());
        file.set_len(4096).unwrap();
        assert!(Region::map_peer(file.into(), 4096)
            .unwrap_err()
            .contains("sealed"));
        let (r, _w) = std::io::pipe().unwrap();
        assert!(Region::map_peer(r.into(), 4096)
            .unwrap_err()
            .contains("not a memory"));
    }
}
