//! The synchronisation primitives of the lock-free structures ([`crate::ring`],
//! [`crate::mempool`]): the standard library's in normal builds, the `loom` model
//! checker's under `--cfg loom` (see `ci/loom.sh`), so loom explores the interleavings of
//! the real ring and pool code rather than of a copy.
//!
//! In normal builds everything here is a re-export or an `#[inline(always)]` wrapper with
//! the same machine code as the direct use: the hot path pays nothing for the shim.

use std::mem::MaybeUninit;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};

/// Memory orderings (loom uses the standard library's).
pub(crate) use std::sync::atomic::Ordering;

/// The body of a wait loop: a CPU pause normally; under loom a yield, so the model
/// runs the thread being waited for instead of spinning forever.
#[inline(always)]
pub(crate) fn spin_loop() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

#[cfg(not(loom))]
type Cell<T> = std::cell::UnsafeCell<MaybeUninit<T>>;
#[cfg(loom)]
type Cell<T> = loom::cell::UnsafeCell<MaybeUninit<T>>;

/// A fixed array of `Copy` elements that threads hand to each other by index: each
/// index range is written by the one thread that reserved it and read later by the one
/// that reserved it for reading, ordered by atomics outside this type. Normally a run is
/// copied in one go; under loom slot by slot, through loom's cells, so that the model
/// reports any access the atomics do not order (a data race).
pub(crate) struct Slots<T> {
    cells: Box<[Cell<T>]>,
}

impl<T: Copy> Slots<T> {
    /// `len` uninitialised slots.
    pub(crate) fn new(len: usize) -> Self {
        Slots {
            cells: (0..len).map(|_| Cell::new(MaybeUninit::uninit())).collect(),
        }
    }

    /// Copies `src` into slots `at..at + src.len()`.
    ///
    /// # Safety
    /// The range lies inside the array, and no other thread accesses it until this call
    /// is ordered before its access (by a release/acquire pair).
    #[inline(always)]
    pub(crate) unsafe fn write(&self, at: usize, src: &[T]) {
        debug_assert!(at + src.len() <= self.cells.len());
        #[cfg(not(loom))]
        {
            let base = self.cells.as_ptr() as *mut T;
            // SAFETY: `UnsafeCell<MaybeUninit<T>>` has the layout of `T`, so the cells are
            // an array of `T`; the range is in bounds and ours (the caller's contract), and
            // `src`, a shared borrow, cannot overlap cells we may write.
            unsafe { crate::copy::copy_run_raw(base.add(at), src.as_ptr(), src.len()) };
        }
        #[cfg(loom)]
        for (cell, v) in self.cells[at..at + src.len()].iter().zip(src) {
            // SAFETY: the slot is ours (the caller's contract); loom checks that claim.
            cell.with_mut(|p| unsafe { p.write(MaybeUninit::new(*v)) });
        }
    }

    /// Copies slots `at..at + dst.len()` into `dst`.
    ///
    /// # Safety
    /// As [`Slots::write`], and every slot of the range was written before (ordered by a
    /// release/acquire pair with the writer).
    #[inline(always)]
    pub(crate) unsafe fn read(&self, at: usize, dst: &mut [T]) {
        debug_assert!(at + dst.len() <= self.cells.len());
        #[cfg(not(loom))]
        {
            let base = self.cells.as_ptr() as *const T;
            // SAFETY: as in `write`; the slots are initialised by the caller's contract,
            // and `dst`, a unique borrow, cannot overlap the cells.
            unsafe { crate::copy::copy_run_raw(dst.as_mut_ptr(), base.add(at), dst.len()) };
        }
        #[cfg(loom)]
        for (cell, v) in self.cells[at..at + dst.len()].iter().zip(dst) {
            // SAFETY: the slot is ours and initialised (the caller's contract); loom checks
            // that the write is ordered before this read.
            *v = cell.with(|p| unsafe { (*p).assume_init() });
        }
    }
}
