//! The four single-producer/single-consumer rings an XDP socket shares with the kernel,
//! as safe types: [`ProdRing`] (we produce: fill and tx) and [`ConsRing`] (we consume:
//! rx and completion).
//!
//! A ring is a mapping holding a producer index, a consumer index, a flags word and a
//! power-of-two array of descriptors; indices run freely and wrap modulo 2^32. The kernel
//! is a peer we do not trust: every descriptor index we touch is masked into the array,
//! and the number of entries the kernel's index claims is clamped to the ring size, so a
//! misbehaving kernel can hand us bad descriptors (which the data path validates) but
//! never make us access memory outside the mapping.

use crate::sys;
use crate::uapi::XdpDesc;
use libc::{xdp_ring_offset, XDP_RING_NEED_WAKEUP};
use memmap2::MmapRaw;
use std::io;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

/// Descriptor types a ring can hold: plain integers, any bit pattern valid.
pub(crate) trait Desc: Copy {}
impl Desc for u64 {}
impl Desc for XdpDesc {}

/// A mapped ring: the mapping and pointers to its parts, checked to lie inside it.
struct RingMap<T: Desc> {
    /// Keeps the memory mapped; everything below points into it.
    _map: MmapRaw,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    size: u32,
    _t: PhantomData<T>,
}

// SAFETY: the pointers lead into `map`, which the RingMap owns; one thread at a time uses
// a ring (the queue that owns it), and the kernel side is synchronised through atomics.
unsafe impl<T: Desc> Send for RingMap<T> {}

impl<T: Desc> RingMap<T> {
    /// Maps the ring of `size` entries (a power of two) at `pgoff` with layout `off`.
    fn new(fd: RawFd, pgoff: u64, off: &xdp_ring_offset, size: u32) -> io::Result<RingMap<T>> {
        if !size.is_power_of_two() {
            return Err(io::Error::other(format!(
                "ring size {size} is not a power of two"
            )));
        }
        let bad = |what: &str| {
            io::Error::other(format!(
                "kernel ring offsets: {what} (producer {}, consumer {}, desc {}, flags {})",
                off.producer, off.consumer, off.desc, off.flags
            ))
        };
        let desc_off = usize::try_from(off.desc).map_err(|_| bad("descriptors out of range"))?;
        let len = (size as usize)
            .checked_mul(size_of::<T>())
            .and_then(|b| b.checked_add(desc_off))
            .ok_or_else(|| bad("ring too large"))?;
        let word = |o: u64, what: &str| -> io::Result<usize> {
            let o = usize::try_from(o).map_err(|_| bad(what))?;
            if !o.is_multiple_of(4) || o.checked_add(4).is_none_or(|e| e > len) {
                return Err(bad(what));
            }
            Ok(o)
        };
        let (p, c, f) = (
            word(off.producer, "producer")?,
            word(off.consumer, "consumer")?,
            word(off.flags, "flags")?,
        );
        if !desc_off.is_multiple_of(align_of::<T>()) {
            return Err(bad("misaligned descriptors"));
        }
        let map = sys::map_ring(fd, len, pgoff)?;
        let base = map.as_mut_ptr();
        // SAFETY: every offset was checked above to leave its object (a 4-byte word, or
        // `size` descriptors) inside the `len`-byte mapping, properly aligned (the
        // mapping is page aligned).
        let (producer, consumer, flags, descs) = unsafe {
            (
                base.add(p).cast::<AtomicU32>().cast_const(),
                base.add(c).cast::<AtomicU32>().cast_const(),
                base.add(f).cast::<AtomicU32>().cast_const(),
                base.add(desc_off).cast::<T>(),
            )
        };
        debug_assert!(map.len() >= len);
        Ok(RingMap {
            _map: map,
            producer,
            consumer,
            flags,
            descs,
            size,
            _t: PhantomData,
        })
    }

    #[inline(always)]
    fn producer(&self) -> &AtomicU32 {
        // SAFETY: inside the mapping (checked in `new`), aligned, alive as long as `self`;
        // shared with the kernel, so accessed only atomically.
        unsafe { &*self.producer }
    }

    #[inline(always)]
    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.consumer }
    }

    #[inline(always)]
    fn flags(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.flags }
    }

    #[inline(always)]
    fn read(&self, idx: u32) -> T {
        let i = (idx & (self.size - 1)) as usize;
        // SAFETY: i < size: the slot is inside the mapping (checked in `new`); volatile
        // because the memory is shared with the kernel; any bits are a valid `T: Desc`.
        unsafe { self.descs.add(i).read_volatile() }
    }

    #[inline(always)]
    fn write(&self, idx: u32, v: T) {
        let i = (idx & (self.size - 1)) as usize;
        // SAFETY: as in `read`; the slot is ours (between the kernel's consumer index and
        // our producer index), so the kernel does not read it concurrently.
        unsafe { self.descs.add(i).write_volatile(v) }
    }
}

/// A ring we produce into (fill, tx).
pub(crate) struct ProdRing<T: Desc> {
    ring: RingMap<T>,
    /// Our producer index (published with `submit`).
    prod: u32,
    /// The kernel's consumer index plus the ring size, as last read: slots up to it are free.
    cons_limit: u32,
}

impl<T: Desc> ProdRing<T> {
    /// Maps a producer ring.
    pub fn new(fd: RawFd, pgoff: u64, off: &xdp_ring_offset, size: u32) -> io::Result<Self> {
        let ring = RingMap::<T>::new(fd, pgoff, off, size)?;
        let prod = ring.producer().load(Ordering::Relaxed);
        let cons_limit = ring.consumer().load(Ordering::Acquire).wrapping_add(size);
        Ok(ProdRing {
            ring,
            prod,
            cons_limit,
        })
    }

    /// Free slots, at most `want`; reads the kernel's consumer index only when the cached
    /// one does not show enough.
    #[inline(always)]
    pub fn free(&mut self, want: u32) -> u32 {
        let mut free = self.cons_limit.wrapping_sub(self.prod);
        if free < want {
            self.cons_limit = self
                .ring
                .consumer()
                .load(Ordering::Acquire)
                .wrapping_add(self.ring.size);
            free = self.cons_limit.wrapping_sub(self.prod);
        }
        // A consumer index ahead of ours (a confused kernel) must not grant more than a ring.
        free.min(self.ring.size).min(want)
    }

    /// Writes entry `i` (counted from the producer index) of those reserved with `free`.
    #[inline(always)]
    pub fn set(&mut self, i: u32, v: T) {
        self.ring.write(self.prod.wrapping_add(i), v)
    }

    /// Publishes `n` entries written with `set` (release: their contents first).
    #[inline(always)]
    pub fn submit(&mut self, n: u32) {
        self.prod = self.prod.wrapping_add(n);
        self.ring.producer().store(self.prod, Ordering::Release);
    }

    /// Entries published that the kernel has not consumed yet.
    #[inline(always)]
    pub fn pending(&self) -> u32 {
        let cons = self.ring.consumer().load(Ordering::Acquire);
        self.prod.wrapping_sub(cons).min(self.ring.size)
    }

    /// Whether the kernel asks for a wake-up call (`XDP_RING_NEED_WAKEUP`).
    #[inline(always)]
    pub fn needs_wakeup(&self) -> bool {
        self.ring.flags().load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }
}

/// A ring we consume from (rx, completion).
pub(crate) struct ConsRing<T: Desc> {
    ring: RingMap<T>,
    /// Our consumer index (published with `release`).
    cons: u32,
    /// The kernel's producer index as last read.
    prod: u32,
}

impl<T: Desc> ConsRing<T> {
    /// Maps a consumer ring.
    pub fn new(fd: RawFd, pgoff: u64, off: &xdp_ring_offset, size: u32) -> io::Result<Self> {
        let ring = RingMap::<T>::new(fd, pgoff, off, size)?;
        let cons = ring.consumer().load(Ordering::Relaxed);
        let prod = ring.producer().load(Ordering::Acquire);
        Ok(ConsRing { ring, cons, prod })
    }

    /// Ring size (entries).
    pub fn size(&self) -> u32 {
        self.ring.size
    }

    /// Entries ready, at most `max`; reads the kernel's producer index only when the
    /// cached one shows fewer than `max` (acquire: the entries' contents come with it).
    #[inline(always)]
    pub fn ready(&mut self, max: u32) -> u32 {
        let mut n = self.prod.wrapping_sub(self.cons);
        if n < max {
            self.prod = self.ring.producer().load(Ordering::Acquire);
            n = self.prod.wrapping_sub(self.cons);
        }
        n.min(self.ring.size).min(max)
    }

    /// Entry `i` (counted from the consumer index) of those `ready` reported.
    #[inline(always)]
    pub fn get(&self, i: u32) -> T {
        self.ring.read(self.cons.wrapping_add(i))
    }

    /// Gives `n` entries back to the kernel (release: our reads of them come first).
    #[inline(always)]
    pub fn release(&mut self, n: u32) {
        self.cons = self.cons.wrapping_add(n);
        self.ring.consumer().store(self.cons, Ordering::Release);
    }
}

/// A stand-in for the kernel side of a ring, for unit tests and the fuzz target
/// ([`crate::fuzzing`]).
pub(crate) mod fake {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// A memfd standing in for the kernel's ring memory, and a second mapping of it
    /// through which the test plays the kernel.
    pub(crate) struct FakeKernel {
        pub fd: OwnedFd,
        view: MmapRaw,
    }

    /// The ring layout the fake uses (u64 descriptors, 8 of them fit).
    pub(crate) const OFF: xdp_ring_offset = xdp_ring_offset {
        producer: 0,
        consumer: 64,
        desc: 192,
        flags: 128,
    };

    impl FakeKernel {
        pub fn new() -> FakeKernel {
            // SAFETY: plain syscalls on a fresh memfd we own.
            let fd = unsafe {
                let fd = libc::memfd_create(c"ring-test".as_ptr(), libc::MFD_CLOEXEC);
                assert!(fd >= 0);
                assert_eq!(libc::ftruncate(fd, 4096), 0);
                OwnedFd::from_raw_fd(fd)
            };
            let view = sys::map_ring(fd.as_raw_fd(), 4096, 0).unwrap();
            FakeKernel { fd, view }
        }

        pub fn word(&self, off: u64) -> &AtomicU32 {
            // SAFETY: 4-byte aligned offsets inside the 4096-byte mapping, which lives as
            // long as `self`.
            unsafe { &*self.view.as_mut_ptr().add(off as usize).cast::<AtomicU32>() }
        }

        pub fn slot(&self, i: usize) -> u64 {
            // SAFETY: slot i < 8 of the u64 array at offset 192, inside the mapping.
            unsafe {
                self.view
                    .as_mut_ptr()
                    .add(192 + 8 * i)
                    .cast::<u64>()
                    .read_volatile()
            }
        }

        pub fn set_slot(&self, i: usize, v: u64) {
            // SAFETY: as in `slot`.
            unsafe {
                self.view
                    .as_mut_ptr()
                    .add(192 + 8 * i)
                    .cast::<u64>()
                    .write_volatile(v)
            }
        }

        /// Descriptor `i` (< 8) of an rx or tx ring (16-byte `xdp_desc` slots at 192).
        pub fn desc(&self, i: usize) -> XdpDesc {
            assert!(i < 8);
            // SAFETY: slot i < 8 of the 16-byte array at offset 192 (ends at 320), inside
            // the mapping and 8-aligned.
            unsafe {
                self.view
                    .as_mut_ptr()
                    .add(192 + 16 * i)
                    .cast::<XdpDesc>()
                    .read_volatile()
            }
        }

        /// Writes descriptor `i` (< 8) of an rx or tx ring.
        pub fn set_desc(&self, i: usize, d: XdpDesc) {
            assert!(i < 8);
            // SAFETY: as in `desc`.
            unsafe {
                self.view
                    .as_mut_ptr()
                    .add(192 + 16 * i)
                    .cast::<XdpDesc>()
                    .write_volatile(d)
            }
        }

        /// Zeroes the ring memory (indexes, flags and slots), for a fresh ring.
        pub fn clear(&self) {
            // SAFETY: the 4096-byte mapping we own; rings mapped over it read it only
            // atomically or volatile.
            unsafe { std::ptr::write_bytes(self.view.as_mut_ptr(), 0, 4096) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeKernel, OFF};
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn producer_ring_publishes_and_respects_the_consumer() {
        let k = FakeKernel::new();
        let mut r = ProdRing::<u64>::new(k.fd.as_raw_fd(), 0, &OFF, 8).unwrap();
        assert_eq!(r.free(16), 8);
        for i in 0..5 {
            r.set(i, 100 + u64::from(i));
        }
        r.submit(5);
        assert_eq!(k.word(OFF.producer).load(Ordering::Acquire), 5);
        assert_eq!(
            (0..5).map(|i| k.slot(i)).collect::<Vec<_>>(),
            [100, 101, 102, 103, 104]
        );
        assert_eq!(r.pending(), 5);
        assert_eq!(r.free(8), 3, "three slots left until the kernel consumes");
        k.word(OFF.consumer).store(4, Ordering::Release);
        assert_eq!(r.free(8), 7);
        for i in 0..7 {
            r.set(i, 200 + u64::from(i));
        }
        r.submit(7);
        // Indices wrap around the 8 slots.
        assert_eq!(k.slot(5), 200);
        assert_eq!(k.slot(3), 206);
        assert!(!r.needs_wakeup());
        k.word(OFF.flags)
            .store(XDP_RING_NEED_WAKEUP, Ordering::Relaxed);
        assert!(r.needs_wakeup());
    }

    #[test]
    fn a_confused_kernel_never_grants_more_than_the_ring() {
        let k = FakeKernel::new();
        let mut p = ProdRing::<u64>::new(k.fd.as_raw_fd(), 0, &OFF, 8).unwrap();
        // A consumer index far ahead of our producer.
        k.word(OFF.consumer).store(1_000_000, Ordering::Release);
        assert_eq!(p.free(64), 8);
        assert_eq!(p.pending(), 8);
        // A producer index far ahead of our consumer: at most a ring's worth is ready.
        let k2 = FakeKernel::new();
        let mut c = ConsRing::<u64>::new(k2.fd.as_raw_fd(), 0, &OFF, 8).unwrap();
        k2.word(OFF.producer).store(u32::MAX - 3, Ordering::Release);
        assert_eq!(c.ready(64), 8);
        assert_eq!(c.ready(3), 3);
        k2.set_slot(7, 77);
        assert_eq!(c.get(7), 77);
        assert_eq!(c.get(15), 77, "indices are masked into the ring");
    }

    #[test]
    fn consumer_ring_reads_and_releases() {
        let k = FakeKernel::new();
        let mut c = ConsRing::<u64>::new(k.fd.as_raw_fd(), 0, &OFF, 8).unwrap();
        assert_eq!(c.ready(32), 0);
        for i in 0..3 {
            k.set_slot(i, 10 + i as u64);
        }
        k.word(OFF.producer).store(3, Ordering::Release);
        assert_eq!(c.ready(32), 3);
        assert_eq!((0..3).map(|i| c.get(i)).collect::<Vec<_>>(), [10, 11, 12]);
        c.release(3);
        assert_eq!(k.word(OFF.consumer).load(Ordering::Acquire), 3);
        assert_eq!(c.ready(32), 0);
    }

    #[test]
    fn bad_layouts_are_refused() {
        let k = FakeKernel::new();
        let fd = k.fd.as_raw_fd();
        assert!(
            ProdRing::<u64>::new(fd, 0, &OFF, 6).is_err(),
            "not a power of two"
        );
        let outside = xdp_ring_offset { flags: 4096, ..OFF };
        assert!(ConsRing::<u64>::new(fd, 0, &outside, 8).is_err());
        let misaligned = xdp_ring_offset {
            consumer: 66,
            ..OFF
        };
        assert!(ConsRing::<u64>::new(fd, 0, &misaligned, 8).is_err());
        let huge = xdp_ring_offset {
            desc: u64::MAX,
            ..OFF
        };
        assert!(ConsRing::<u64>::new(fd, 0, &huge, 8).is_err());
    }
}
