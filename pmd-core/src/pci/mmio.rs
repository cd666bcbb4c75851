//! Memory-mapped device registers: a mapped BAR ([`MmioRegion`]) and pre-validated 32-bit
//! register handles ([`Reg32`]) for the hot path.
//!
//! Every access is volatile. Offsets are checked once, when a handle is made (or on each
//! call of the `*_at` methods), so a wrong offset is an error, never an access outside
//! the mapping.
//!
//! A region is either mapped memory (a BAR through VFIO or UIO) or an in-process device
//! model ([`RegisterModel`]) that sees every access, the way hardware would; drivers cannot
//! tell the two apart.

use super::error::PciError;
use crate::error::Result;
use std::any::Any;
use std::ptr::NonNull;
use std::sync::Arc;

/// The register file of an in-process device model: receives every register access to
/// an [`MmioRegion`] made with [`MmioRegion::over_model`]. Offsets are already
/// bounds-checked and 4-byte aligned; 8- and 16-bit accesses reach the model as 32-bit
/// reads (and read-modify-writes) of the containing word.
pub trait RegisterModel: Send + Sync {
    /// A 32-bit register read (may have side effects, e.g. clear-on-read counters).
    fn read32(&self, offset: usize) -> u32;
    /// A 32-bit register write.
    fn write32(&self, offset: usize, value: u32);
}

/// A mapped memory BAR. Cheap to clone; the mapping lives as long as any clone or
/// [`Reg32`] made from it.
#[derive(Clone)]
pub struct MmioRegion {
    base: NonNull<u8>,
    len: usize,
    /// Set for a model-backed region: accesses go to it instead of `base`.
    model: Option<Arc<dyn RegisterModel>>,
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
            model: None,
            _owner: owner,
        }
    }

    /// A region of `len` bytes whose every access goes to `model` (an in-process device).
    pub fn over_model(model: Arc<dyn RegisterModel>, len: usize) -> MmioRegion {
        MmioRegion {
            base: NonNull::dangling(),
            len,
            model: Some(model),
            _owner: Arc::new(()),
        }
    }

    /// The containing word of a sub-word model access, and the bit shift within it.
    fn model_word(offset: usize) -> (usize, u32) {
        (offset & !3, (offset as u32 & 3) * 8)
    }

    fn read_model(m: &dyn RegisterModel, offset: usize, width: usize) -> u32 {
        let (word, shift) = Self::model_word(offset);
        let v = m.read32(word) >> shift;
        if width == 4 {
            v
        } else {
            v & ((1u32 << (width * 8)) - 1)
        }
    }

    fn write_model(m: &dyn RegisterModel, offset: usize, width: usize, value: u32) {
        if width == 4 {
            return m.write32(offset, value);
        }
        let (word, shift) = Self::model_word(offset);
        let mask = ((1u32 << (width * 8)) - 1) << shift;
        let old = m.read32(word);
        m.write32(word, (old & !mask) | ((value << shift) & mask));
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
            return Err(PciError::RegisterOffset {
                offset,
                width,
                len: self.len,
            }
            .into());
        }
        Ok(())
    }

    /// A handle to the 32-bit register at `offset`.
    pub fn reg32(&self, offset: usize) -> Result<Reg32> {
        self.check(offset, 4)?;
        Ok(Reg32 {
            ptr: match self.model {
                None => {
                    // SAFETY: offset + 4 <= len, checked above.
                    unsafe { self.base.add(offset) }.cast()
                }
                Some(_) => NonNull::dangling(),
            },
            offset,
            model: self.model.clone(),
            _region: self.clone(),
        })
    }

    /// Reads the 32-bit register at `offset`.
    pub fn read32_at(&self, offset: usize) -> Result<u32> {
        self.check(offset, 4)?;
        if let Some(m) = &self.model {
            return Ok(Self::read_model(&**m, offset, 4));
        }
        // SAFETY: in bounds and aligned (checked); the mapping is alive (we hold the owner).
        Ok(unsafe { self.base.add(offset).cast::<u32>().as_ptr().read_volatile() })
    }

    /// Writes the 32-bit register at `offset`.
    pub fn write32_at(&self, offset: usize, value: u32) -> Result<()> {
        self.check(offset, 4)?;
        if let Some(m) = &self.model {
            Self::write_model(&**m, offset, 4, value);
            return Ok(());
        }
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
        if let Some(m) = &self.model {
            return Ok(Self::read_model(&**m, offset, 2) as u16);
        }
        // SAFETY: as in read32_at.
        Ok(unsafe { self.base.add(offset).cast::<u16>().as_ptr().read_volatile() })
    }

    /// Writes the 16-bit register at `offset`.
    pub fn write16_at(&self, offset: usize, value: u16) -> Result<()> {
        self.check(offset, 2)?;
        if let Some(m) = &self.model {
            Self::write_model(&**m, offset, 2, value.into());
            return Ok(());
        }
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
        if let Some(m) = &self.model {
            return Ok(Self::read_model(&**m, offset, 1) as u8);
        }
        // SAFETY: as in read32_at.
        Ok(unsafe { self.base.add(offset).as_ptr().read_volatile() })
    }

    /// Writes the byte at `offset`.
    pub fn write8_at(&self, offset: usize, value: u8) -> Result<()> {
        self.check(offset, 1)?;
        if let Some(m) = &self.model {
            Self::write_model(&**m, offset, 1, value.into());
            return Ok(());
        }
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
    offset: usize,
    model: Option<Arc<dyn RegisterModel>>,
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
        if let Some(m) = &self.model {
            return m.read32(self.offset);
        }
        // SAFETY: validated at creation; the region is kept mapped by `_region`.
        unsafe { self.ptr.as_ptr().read_volatile() }
    }

    /// Volatile write.
    #[inline(always)]
    pub fn write(&self, value: u32) {
        if let Some(m) = &self.model {
            return m.write32(self.offset, value);
        }
        // SAFETY: as in read.
        unsafe { self.ptr.as_ptr().write_volatile(value) }
    }
}

/// Test support: an [`MmioRegion`] over ordinary memory, for device models and tests.
pub fn region_over_memory(len: usize) -> MmioRegion {
    let buf: Box<[u32]> = vec![0u32; len.div_ceil(4)].into_boxed_slice();
    let mut buf = buf;
    let base = NonNull::new(buf.as_mut_ptr() as *mut u8).expect("box pointer is non-null");
    // The Mutex makes the owner Sync; nobody locks it: accesses go through `base`.
    let owner: Arc<dyn Any + Send + Sync> = Arc::new(std::sync::Mutex::new(buf));
    // SAFETY: the boxed slice is owned by `owner` and never reallocated or freed before it.
    unsafe { MmioRegion::new(base, len, owner) }
}

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

    #[test]
    fn model_regions_see_every_access() {
        use std::sync::Mutex;
        #[derive(Default)]
        struct Log(Mutex<Vec<(char, usize, u32)>>, Mutex<[u32; 4]>);
        impl RegisterModel for Log {
            fn read32(&self, offset: usize) -> u32 {
                let v = self.1.lock().unwrap()[offset / 4];
                self.0.lock().unwrap().push(('r', offset, v));
                v
            }
            fn write32(&self, offset: usize, value: u32) {
                self.1.lock().unwrap()[offset / 4] = value;
                self.0.lock().unwrap().push(('w', offset, value));
            }
        }
        let log = Arc::new(Log::default());
        let r = MmioRegion::over_model(log.clone(), 16);
        r.write32_at(4, 0x1122_3344).unwrap();
        assert_eq!(r.read16_at(6).unwrap(), 0x1122);
        assert_eq!(r.read8_at(5).unwrap(), 0x33);
        r.write8_at(4, 0xaa).unwrap();
        assert_eq!(r.read32_at(4).unwrap(), 0x1122_33aa);
        r.write16_at(6, 0xbeef).unwrap();
        let reg = r.reg32(12).unwrap();
        reg.write(9);
        assert_eq!(reg.read(), 9);
        assert!(r.read32_at(16).is_err(), "bounds still checked");
        let l = log.0.lock().unwrap();
        assert_eq!(l[0], ('w', 4, 0x1122_3344));
        assert!(l.contains(&('w', 4, 0xbeef_33aa)));
        assert_eq!(l.last(), Some(&('r', 12, 9)));
    }
}
