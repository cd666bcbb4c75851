//! Memory-mapped device registers: a mapped BAR ([`MmioRegion`]) and pre-validated 32-bit
//! register handles ([`Reg32`]) for the hot path.
//!
//! Every access is volatile. Offsets are checked once, when a handle is made (or on each
//! call of the `*_at` methods), so a wrong offset is an error, never an access outside
//! the mapping.

use crate::error::{Error, Result};
use std::any::Any;
use std::ptr::NonNull;
use std::sync::Arc;

/// A mapped memory BAR. Cheap to clone; the mapping lives as long as any clone or
/// [`Reg32`] made from it.
#[derive(Clone)]
pub struct MmioRegion {
    base: NonNull<u8>,
    len: usize,
    /// Whatever owns the mapping (an mmap guard, a VFIO device, a test buffer).
    _owner: Arc<dyn Any + Send + Sync>,
}

// SAFETY: the region is device memory accessed only with volatile reads and writes; the
// owner keeps it mapped; sharing addresses between threads is fine (register access
// ordering is the driver's concern, as on hardware).
unsafe impl Send for MmioRegion {}
// SAFETY: as above.
unsafe impl Sync for MmioRegion {}

impl std::fmt::Debug for MmioRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioRegion")
            .field("base", &self.base)
            .field("len", &self.len)
            .finish()
    }
}

impl MmioRegion {
    /// Wraps a mapping of `len` bytes at `base`, kept alive by `owner`.
    ///
    /// # Safety
    /// `base..base+len` must stay mapped readable and writable for as long as `owner` lives,
    /// and must be device (or otherwise volatile-safe) memory.
    pub unsafe fn new(
        base: NonNull<u8>,
        len: usize,
        owner: Arc<dyn Any + Send + Sync>,
    ) -> MmioRegion {
        MmioRegion {
            base,
            len,
            _owner: owner,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: usize, width: usize) -> Result<()> {
        if !offset.is_multiple_of(width)
            || offset.checked_add(width).is_none_or(|end| end > self.len)
        {
            return Err(Error::driver(
                "mmio",
                format!("register offset {offset:#x} (width {width}) is outside the {:#x}-byte BAR or unaligned", self.len),
            ));
        }
        Ok(())
    }

    /// A handle to the 32-bit register at `offset`.
    pub fn reg32(&self, offset: usize) -> Result<Reg32> {
        self.check(offset, 4)?;
        Ok(Reg32 {
            // SAFETY: offset + 4 <= len, checked above.
            ptr: unsafe { self.base.add(offset) }.cast(),
            _region: self.clone(),
        })
    }

    /// Reads the 32-bit register at `offset`.
    pub fn read32_at(&self, offset: usize) -> Result<u32> {
        self.check(offset, 4)?;
        // SAFETY: in bounds and aligned (checked); the mapping is alive (we hold the owner).
        Ok(unsafe { self.base.add(offset).cast::<u32>().as_ptr().read_volatile() })
    }

    /// Writes the 32-bit register at `offset`.
    pub fn write32_at(&self, offset: usize, value: u32) -> Result<()> {
        self.check(offset, 4)?;
        // SAFETY: as in read32_at.
        unsafe {
            self.base
                .add(offset)
                .cast::<u32>()
                .as_ptr()
                .write_volatile(value)
        };
        Ok(())
    }

    /// Reads the 16-bit register at `offset`.
    pub fn read16_at(&self, offset: usize) -> Result<u16> {
        self.check(offset, 2)?;
        // SAFETY: as in read32_at.
        Ok(unsafe { self.base.add(offset).cast::<u16>().as_ptr().read_volatile() })
    }

    /// Writes the 16-bit register at `offset`.
    pub fn write16_at(&self, offset: usize, value: u16) -> Result<()> {
        self.check(offset, 2)?;
        // SAFETY: as in read32_at.
        unsafe {
            self.base
                .add(offset)
                .cast::<u16>()
                .as_ptr()
                .write_volatile(value)
        };
        Ok(())
    }

    /// Reads the byte at `offset`.
    pub fn read8_at(&self, offset: usize) -> Result<u8> {
        self.check(offset, 1)?;
        // SAFETY: as in read32_at.
        Ok(unsafe { self.base.add(offset).as_ptr().read_volatile() })
    }

    /// Writes the byte at `offset`.
    pub fn write8_at(&self, offset: usize, value: u8) -> Result<()> {
        self.check(offset, 1)?;
        // SAFETY: as in read32_at.
        unsafe { self.base.add(offset).as_ptr().write_volatile(value) };
        Ok(())
    }
}

/// A validated 32-bit register: reads and writes without further checks (for doorbells
/// and tails on the data path).
#[derive(Clone)]
pub struct Reg32 {
    ptr: NonNull<u32>,
    _region: MmioRegion,
}

// SAFETY: see MmioRegion.
unsafe impl Send for Reg32 {}
// SAFETY: see MmioRegion.
unsafe impl Sync for Reg32 {}

impl Reg32 {
    /// Volatile read.
    #[inline(always)]
    pub fn read(&self) -> u32 {
        // SAFETY: validated at creation; the region is kept mapped by `_region`.
        unsafe { self.ptr.as_ptr().read_volatile() }
    }

    /// Volatile write.
    #[inline(always)]
    pub fn write(&self, value: u32) {
        // SAFETY: as in read.
        unsafe { self.ptr.as_ptr().write_volatile(value) }
    }
}

/// Test support: an [`MmioRegion`] over ordinary memory, for device models and tests.
pub fn region_over_memory(len: usize) -> MmioRegion {
    let buf: Box<[u32]> = vec![0u32; len.div_ceil(4)].into_boxed_slice();
    let mut buf = buf;
    let base = NonNull::new(buf.as_mut_ptr() as *mut u8).expect("box pointer is non-null");
    let owner: Arc<dyn Any + Send + Sync> = Arc::new(MemoryOwner(std::sync::Mutex::new(buf)));
    // SAFETY: the boxed slice is owned by `owner` and never reallocated or freed before it.
    unsafe { MmioRegion::new(base, len, owner) }
}

struct MemoryOwner(#[allow(dead_code)] std::sync::Mutex<Box<[u32]>>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_alignment_are_checked() {
        let r = region_over_memory(64);
        r.write32_at(8, 0xdead_beef).unwrap();
        assert_eq!(r.read32_at(8).unwrap(), 0xdead_beef);
        assert_eq!(r.read16_at(8).unwrap(), 0xbeef);
        assert_eq!(r.read8_at(11).unwrap(), 0xde);
        assert!(r.read32_at(62).is_err(), "unaligned");
        assert!(r.read32_at(64).is_err(), "past the end");
        assert!(r.write32_at(usize::MAX - 1, 0).is_err(), "overflow");
        let reg = r.reg32(60).unwrap();
        reg.write(7);
        drop(r);
        assert_eq!(reg.read(), 7, "handle keeps the region alive");
        assert!(region_over_memory(4).reg32(4).is_err());
    }
}
