//! Bounded lock-free rings of `Copy` elements (pointers, indices), with bulk
//! (all-or-nothing) and burst (as many as fit) enqueue and dequeue.
//!
//! The algorithm is the classic two-index-pair ring: producers and consumers each have a
//! `head` (reserved up to) and a `tail` (published up to), on separate cache lines.
//! Multi-producer enqueue reserves with a CAS on the producer head, copies, then waits for
//! earlier producers to publish before moving the tail; single-producer enqueue skips the CAS.
//!
//! Safety comes from the handle types: [`Ring`] is the multi-producer/multi-consumer ring
//! and may be shared freely; [`spsc`] returns a [`Producer`]/[`Consumer`] pair whose methods
//! take `&mut self`, so the single-producer/single-consumer fast paths can never race.
//!
//! Memory ordering: a thread that reserves with a CAS first reads the head with acquire,
//! and a successful CAS releases, so the tail it checks free (or available) room against
//! is never older than the one the previous reserver checked. A thread that publishes
//! after earlier reservers waits for their tail with acquire, so its release of the tail
//! carries their slot writes (or reads) along to the other side. The atomics come from
//! `crate::sync`, so the `loom_*` tests check this very code.

use crate::sync::{spin_loop, AtomicU32, Ordering, Slots};
use crossbeam_utils::CachePadded;
use std::sync::Arc;

/// The largest ring capacity (elements).
pub const MAX_CAPACITY: usize = 1 << 30;

#[derive(Debug, Default)]
struct HeadTail {
    head: AtomicU32,
    tail: AtomicU32,
}

/// The shared ring storage. All element transfer goes through its unsafe methods, whose
/// callers guarantee the producer/consumer discipline.
pub(crate) struct RingCore<T> {
    prod: CachePadded<HeadTail>,
    cons: CachePadded<HeadTail>,
    mask: u32,
    capacity: u32,
    slots: Slots<T>,
}

// SAFETY: elements are moved between threads (T: Send), and every slot is accessed only by
// the producer that reserved it (between head reservation and tail publication) or by the
// consumer that reserved it, as ordered by the acquire/release pairs on the tails.
unsafe impl<T: Send> Sync for RingCore<T> {}
// SAFETY: as above; the storage itself may move between threads.
unsafe impl<T: Send> Send for RingCore<T> {}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Amount {
    /// Exactly n or nothing.
    Bulk,
    /// Up to n.
    Burst,
}

impl<T: Copy> RingCore<T> {
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return None;
        }
        let size = capacity.next_power_of_two();
        Some(RingCore {
            prod: CachePadded::new(HeadTail::default()),
            cons: CachePadded::new(HeadTail::default()),
            mask: (size - 1) as u32,
            capacity: capacity as u32,
            slots: Slots::new(size),
        })
    }

    /// Copies `src` into the slots starting at ring index `at` (wrapping).
    ///
    /// # Safety
    /// The caller owns slots `at..at + src.len()` (reserved, not yet published).
    #[inline(always)]
    unsafe fn write_slots(&self, at: u32, src: &[T]) {
        let size = self.mask as usize + 1;
        let idx = (at & self.mask) as usize;
        let first = src.len().min(size - idx);
        // SAFETY: idx + first <= size and the remainder starts at slot 0; both ranges lie in
        // `slots`, and the caller owns them.
        unsafe {
            self.slots.write(idx, &src[..first]);
            self.slots.write(0, &src[first..]);
        }
    }

    /// Copies slots starting at ring index `at` into `dst`.
    ///
    /// # Safety
    /// The caller owns slots `at..at + dst.len()`, which hold published elements.
    #[inline(always)]
    unsafe fn read_slots(&self, at: u32, dst: &mut [T]) {
        let size = self.mask as usize + 1;
        let idx = (at & self.mask) as usize;
        let first = dst.len().min(size - idx);
        let (run, rest) = dst.split_at_mut(first);
        // SAFETY: as in write_slots; the slots were initialised by the producer that
        // published them (acquire on the producer tail).
        unsafe {
            self.slots.read(idx, run);
            self.slots.read(0, rest);
        }
    }

    #[inline(always)]
    fn grant(amount: Amount, want: u32, avail: u32) -> u32 {
        match amount {
            Amount::Bulk if avail < want => 0,
            _ => want.min(avail),
        }
    }

    /// Single-producer enqueue.
    ///
    /// # Safety
    /// No other thread may enqueue concurrently.
    #[inline(always)]
    unsafe fn enqueue_sp(&self, src: &[T], amount: Amount) -> usize {
        let head = self.prod.head.load(Ordering::Relaxed);
        let cons_tail = self.cons.tail.load(Ordering::Acquire);
        let free = self.capacity.wrapping_add(cons_tail).wrapping_sub(head);
        let n = Self::grant(amount, src.len().min(u32::MAX as usize) as u32, free);
        if n == 0 {
            return 0;
        }
        // SAFETY: slots head..head+n are free (consumers are behind cons_tail + capacity)
        // and we are the only producer.
        unsafe { self.write_slots(head, &src[..n as usize]) };
        let next = head.wrapping_add(n);
        self.prod.head.store(next, Ordering::Relaxed);
        self.prod.tail.store(next, Ordering::Release);
        n as usize
    }

    /// Multi-producer enqueue.
    #[inline(always)]
    fn enqueue_mp(&self, src: &[T], amount: Amount) -> usize {
        let want = src.len().min(u32::MAX as usize) as u32;
        // Acquire, with the release of a successful CAS: the consumer tail read below is at
        // least the one the producer that moved the head here checked against.
        let mut head = self.prod.head.load(Ordering::Acquire);
        let n = loop {
            let cons_tail = self.cons.tail.load(Ordering::Acquire);
            let free = self.capacity.wrapping_add(cons_tail).wrapping_sub(head);
            let n = Self::grant(amount, want, free);
            if n == 0 {
                return 0;
            }
            match self.prod.head.compare_exchange_weak(
                head,
                head.wrapping_add(n),
                Ordering::Release,
                Ordering::Acquire,
            ) {
                Ok(_) => break n,
                Err(cur) => head = cur,
            }
        };
        // SAFETY: the CAS reserved slots head..head+n for this producer alone, and they are
        // free because cons_tail + capacity >= head + n.
        unsafe { self.write_slots(head, &src[..n as usize]) };
        // Publish in reservation order: wait for producers that reserved before us, with
        // acquire, so our release below also publishes their slots.
        while self.prod.tail.load(Ordering::Acquire) != head {
            spin_loop();
        }
        self.prod
            .tail
            .store(head.wrapping_add(n), Ordering::Release);
        n as usize
    }

    /// Single-consumer dequeue.
    ///
    /// # Safety
    /// No other thread may dequeue concurrently.
    #[inline(always)]
    unsafe fn dequeue_sc(&self, dst: &mut [T], amount: Amount) -> usize {
        let head = self.cons.head.load(Ordering::Relaxed);
        let prod_tail = self.prod.tail.load(Ordering::Acquire);
        let avail = prod_tail.wrapping_sub(head);
        let n = Self::grant(amount, dst.len().min(u32::MAX as usize) as u32, avail);
        if n == 0 {
            return 0;
        }
        // SAFETY: slots head..head+n were published by producers and we are the only consumer.
        unsafe { self.read_slots(head, &mut dst[..n as usize]) };
        let next = head.wrapping_add(n);
        self.cons.head.store(next, Ordering::Relaxed);
        self.cons.tail.store(next, Ordering::Release);
        n as usize
    }

    /// Multi-consumer dequeue.
    #[inline(always)]
    fn dequeue_mc(&self, dst: &mut [T], amount: Amount) -> usize {
        let want = dst.len().min(u32::MAX as usize) as u32;
        // Acquire, as in enqueue_mp: the producer tail read below is at least the one the
        // consumer that moved the head here checked against.
        let mut head = self.cons.head.load(Ordering::Acquire);
        let n = loop {
            let prod_tail = self.prod.tail.load(Ordering::Acquire);
            let avail = prod_tail.wrapping_sub(head);
            let n = Self::grant(amount, want, avail);
            if n == 0 {
                return 0;
            }
            match self.cons.head.compare_exchange_weak(
                head,
                head.wrapping_add(n),
                Ordering::Release,
                Ordering::Acquire,
            ) {
                Ok(_) => break n,
                Err(cur) => head = cur,
            }
        };
        // SAFETY: the CAS reserved published slots head..head+n for this consumer alone.
        unsafe { self.read_slots(head, &mut dst[..n as usize]) };
        // Acquire, as in enqueue_mp: our release below tells producers that the earlier
        // consumers' reads are done too.
        while self.cons.tail.load(Ordering::Acquire) != head {
            spin_loop();
        }
        self.cons
            .tail
            .store(head.wrapping_add(n), Ordering::Release);
        n as usize
    }

    /// Multi-consumer bulk dequeue (all of `out` or nothing).
    #[inline(always)]
    pub(crate) fn dequeue_mc_bulk(&self, out: &mut [T]) -> bool {
        out.is_empty() || self.dequeue_mc(out, Amount::Bulk) != 0
    }

    /// Multi-producer bulk enqueue (all of `src` or nothing).
    #[inline(always)]
    pub(crate) fn enqueue_mp_bulk(&self, src: &[T]) -> bool {
        src.is_empty() || self.enqueue_mp(src, Amount::Bulk) != 0
    }

    /// Elements in the ring (a snapshot).
    pub(crate) fn len(&self) -> usize {
        self.count()
    }

    fn count(&self) -> usize {
        // Consumer tail first: the consumer that stored it had read a producer tail at
        // least as far, and the acquire makes our read below see that far too, so the
        // difference cannot go negative (which would read as a full ring).
        let cons_tail = self.cons.tail.load(Ordering::Acquire);
        let prod_tail = self.prod.tail.load(Ordering::Acquire);
        (prod_tail.wrapping_sub(cons_tail)).min(self.capacity) as usize
    }
}

/// A multi-producer, multi-consumer ring; share it by reference or `Arc`.
pub struct Ring<T> {
    core: RingCore<T>,
}

impl<T: Copy + Send> Ring<T> {
    /// Creates a ring holding up to `capacity` elements (1 ..= [`MAX_CAPACITY`]).
    pub fn new(capacity: usize) -> Option<Self> {
        RingCore::new(capacity).map(|core| Ring { core })
    }

    /// Enqueues all of `objs` or nothing; returns whether they were enqueued.
    #[inline]
    pub fn enqueue_bulk(&self, objs: &[T]) -> bool {
        objs.is_empty() || self.core.enqueue_mp(objs, Amount::Bulk) != 0
    }

    /// Enqueues as many of `objs` (from the front) as fit; returns how many.
    #[inline]
    pub fn enqueue_burst(&self, objs: &[T]) -> usize {
        self.core.enqueue_mp(objs, Amount::Burst)
    }

    /// Fills all of `out` or nothing; returns whether it was filled.
    #[inline]
    pub fn dequeue_bulk(&self, out: &mut [T]) -> bool {
        out.is_empty() || self.core.dequeue_mc(out, Amount::Bulk) != 0
    }

    /// Fills the front of `out` with as many elements as are available; returns how many.
    #[inline]
    pub fn dequeue_burst(&self, out: &mut [T]) -> usize {
        self.core.dequeue_mc(out, Amount::Burst)
    }

    /// Elements currently in the ring (a snapshot).
    pub fn len(&self) -> usize {
        self.core.count()
    }

    /// Whether the ring is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most elements the ring holds.
    pub fn capacity(&self) -> usize {
        self.core.capacity as usize
    }
}

/// The producing end of a single-producer/single-consumer ring.
pub struct Producer<T> {
    core: Arc<RingCore<T>>,
}

/// The consuming end of a single-producer/single-consumer ring.
pub struct Consumer<T> {
    core: Arc<RingCore<T>>,
}

/// Creates a single-producer/single-consumer ring of `capacity` elements and returns its
/// two ends. Each end can move to another thread; `&mut self` keeps each end single-threaded.
pub fn spsc<T: Copy + Send>(capacity: usize) -> Option<(Producer<T>, Consumer<T>)> {
    let core = Arc::new(RingCore::new(capacity)?);
    Some((Producer { core: core.clone() }, Consumer { core }))
}

impl<T: Copy + Send> Producer<T> {
    /// Enqueues all of `objs` or nothing; returns whether they were enqueued.
    #[inline]
    pub fn enqueue_bulk(&mut self, objs: &[T]) -> bool {
        // SAFETY: `&mut self` on the only Producer of this ring makes us the sole producer.
        objs.is_empty() || unsafe { self.core.enqueue_sp(objs, Amount::Bulk) } != 0
    }

    /// Enqueues as many of `objs` as fit; returns how many.
    #[inline]
    pub fn enqueue_burst(&mut self, objs: &[T]) -> usize {
        // SAFETY: sole producer, as above.
        unsafe { self.core.enqueue_sp(objs, Amount::Burst) }
    }

    /// Free slots (a snapshot). Only this end enqueues, so an enqueue of up to this many
    /// elements right after takes them all.
    pub fn free_count(&self) -> usize {
        self.core.capacity as usize - self.core.count()
    }

    /// Elements in the ring (a snapshot).
    pub fn len(&self) -> usize {
        self.core.count()
    }

    /// Whether the ring is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: Copy + Send> Consumer<T> {
    /// Fills all of `out` or nothing; returns whether it was filled.
    #[inline]
    pub fn dequeue_bulk(&mut self, out: &mut [T]) -> bool {
        // SAFETY: `&mut self` on the only Consumer of this ring makes us the sole consumer.
        out.is_empty() || unsafe { self.core.dequeue_sc(out, Amount::Bulk) } != 0
    }

    /// Fills the front of `out` with what is available; returns how many.
    #[inline]
    pub fn dequeue_burst(&mut self, out: &mut [T]) -> usize {
        // SAFETY: sole consumer, as above.
        unsafe { self.core.dequeue_sc(out, Amount::Burst) }
    }

    /// Elements in the ring (a snapshot). Only this end dequeues, so a dequeue of up to
    /// this many right after gets them all; what the producer wrote beside them (before
    /// enqueueing) is visible once this returns.
    pub fn len(&self) -> usize {
        self.core.count()
    }

    /// Whether the ring is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_capacity() {
        assert!(Ring::<u64>::new(0).is_none());
        assert!(Ring::<u64>::new(MAX_CAPACITY + 1).is_none());
        assert_eq!(Ring::<u64>::new(5).unwrap().capacity(), 5);
    }

    #[test]
    fn bulk_is_all_or_nothing_and_burst_is_partial() {
        let r = Ring::<u32>::new(6).unwrap();
        assert!(r.enqueue_bulk(&[1, 2, 3, 4]));
        assert!(!r.enqueue_bulk(&[5, 6, 7]), "only 2 free");
        assert_eq!(r.len(), 4);
        assert_eq!(r.enqueue_burst(&[5, 6, 7]), 2);
        assert_eq!(r.len(), 6);
        let mut out = [0u32; 8];
        assert!(!r.dequeue_bulk(&mut out), "only 6 available");
        assert_eq!(r.dequeue_burst(&mut out), 6);
        assert_eq!(&out[..6], &[1, 2, 3, 4, 5, 6]);
        assert!(r.is_empty());
        assert_eq!(r.dequeue_burst(&mut out), 0);
    }

    #[test]
    fn wraps_around_many_times_in_order() {
        let (mut p, mut c) = spsc::<u64>(7).unwrap();
        let mut next_in = 0u64;
        let mut next_out = 0u64;
        let mut buf = [0u64; 5];
        // Fewer rounds under Miri, whose interpreter is slow; still many wraps of 8 slots.
        let rounds = if cfg!(miri) { 200 } else { 10_000u64 };
        for round in 0..rounds {
            let k = (round % 5 + 1) as usize;
            let src: Vec<u64> = (next_in..next_in + k as u64).collect();
            let n = p.enqueue_burst(&src);
            next_in += n as u64;
            let m = c.dequeue_burst(&mut buf[..(round % 4 + 1) as usize]);
            for v in &buf[..m] {
                assert_eq!(*v, next_out);
                next_out += 1;
            }
        }
        while let m @ 1.. = c.dequeue_burst(&mut buf) {
            for v in &buf[..m] {
                assert_eq!(*v, next_out);
                next_out += 1;
            }
        }
        assert_eq!(next_in, next_out);
    }

    #[test]
    fn spsc_across_threads_preserves_order() {
        let (mut p, mut c) = spsc::<u64>(64).unwrap();
        // Under Miri (slow, but it checks every access for races) a few wraps suffice.
        const N: u64 = if cfg!(miri) { 1_000 } else { 200_000 };
        let t = std::thread::spawn(move || {
            let mut i = 0;
            while i < N {
                let batch: Vec<u64> = (i..(i + 8).min(N)).collect();
                i += p.enqueue_burst(&batch) as u64;
            }
        });
        let mut expect = 0;
        let mut buf = [0u64; 16];
        while expect < N {
            let n = c.dequeue_burst(&mut buf);
            for v in &buf[..n] {
                assert_eq!(*v, expect);
                expect += 1;
            }
        }
        t.join().unwrap();
    }

    #[test]
    fn mpmc_loses_and_duplicates_nothing() {
        let r = Arc::new(Ring::<u64>::new(128).unwrap());
        const PER: u64 = if cfg!(miri) { 500 } else { 50_000 };
        let producers: Vec<_> = (0..2u64)
            .map(|p| {
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut i = 0;
                    while i < PER {
                        let v = [p * PER + i, p * PER + i + 1];
                        if r.enqueue_bulk(&v) {
                            i += 2;
                        } else {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let consumed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let r = r.clone();
                let consumed = consumed.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut buf = [0u64; 8];
                    while consumed.load(Ordering::Relaxed) < 2 * PER {
                        let n = r.dequeue_burst(&mut buf);
                        if n == 0 {
                            std::thread::yield_now();
                        } else {
                            consumed.fetch_add(n as u64, Ordering::Relaxed);
                            got.extend_from_slice(&buf[..n]);
                        }
                    }
                    got
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        let mut all: Vec<u64> = consumers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all.len() as u64, 2 * PER);
        assert!(all.iter().enumerate().all(|(i, v)| *v == i as u64));
    }
}

/// Model checks of the head/tail protocol under loom (`RUSTFLAGS="--cfg loom"`, see
/// `ci/loom.sh`): every interleaving of small rings whose indexes wrap, up to the
/// preemption bound, with loom reporting unordered slot accesses (data races) and the
/// tests the loss, duplication or reordering of elements. Each thread makes a fixed number
/// of attempts (no waiting in the test itself, which would multiply the interleavings);
/// what is left is drained after the joins.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::thread;

    /// A ring of `capacity` whose indexes start one short of the wrap.
    fn wrapping_ring(capacity: usize) -> Ring<u32> {
        let r = Ring::new(capacity).unwrap();
        for _ in 0..capacity.next_power_of_two() - 1 {
            assert!(r.enqueue_bulk(&[0]));
            assert!(r.dequeue_bulk(&mut [0]));
        }
        r
    }

    /// Everything left in `r`, in order.
    fn drain(r: &Ring<u32>) -> Vec<u32> {
        let mut out = vec![0; r.capacity()];
        let n = r.dequeue_burst(&mut out);
        out.truncate(n);
        out
    }

    /// Whether the elements of `from` appear in `got` in `from`'s order.
    fn in_order(got: &[u32], from: &[u32]) -> bool {
        got.iter()
            .filter(|v| from.contains(v))
            .eq(from.iter().filter(|v| got.contains(v)))
    }

    #[test]
    fn loom_mp_mc_ring_loses_duplicates_and_reorders_nothing() {
        loom::model(|| {
            // Two producers and two consumers on two slots, two attempts each.
            let r = Arc::new(wrapping_ring(2));
            let producers = [vec![10, 11], vec![20, 21]].map(|vals| {
                let r = r.clone();
                thread::spawn(move || {
                    let mut sent = 0;
                    for _ in 0..2 {
                        sent += r.enqueue_burst(&vals[sent..]);
                    }
                    vals[..sent].to_vec()
                })
            });
            let take = |r: &Ring<u32>| {
                let mut got = Vec::new();
                for _ in 0..2 {
                    let mut buf = [0; 1];
                    let n = r.dequeue_burst(&mut buf);
                    assert!(r.len() <= r.capacity());
                    got.extend_from_slice(&buf[..n]);
                }
                got
            };
            let other = {
                let r = r.clone();
                thread::spawn(move || take(&r))
            };
            let mine = take(&r);
            let sent = producers.map(|p| p.join().unwrap()).concat();
            let theirs = other.join().unwrap();
            let rest = drain(&r);
            for got in [&mine, &theirs, &rest] {
                assert!(
                    in_order(got, &[10, 11]) && in_order(got, &[20, 21]),
                    "{got:?}"
                );
            }
            let mut got = [mine, theirs, rest].concat();
            got.sort_unstable();
            let mut sent = sent;
            sent.sort_unstable();
            assert_eq!(got, sent);
        });
    }

    #[test]
    fn loom_mp_bulk_enqueue_publishes_in_reservation_order() {
        loom::model(|| {
            // Two bulks of two into four slots: the producer that reserved second must not
            // publish before the first, or the consumer reads unwritten slots (a race
            // loom reports) or an element out of order.
            let r = Arc::new(wrapping_ring(4));
            let producers = [[1, 2], [3, 4]].map(|vals| {
                let r = r.clone();
                thread::spawn(move || assert!(r.enqueue_bulk(&vals)))
            });
            let mut buf = [0; 4];
            let n = r.dequeue_burst(&mut buf);
            for p in producers {
                p.join().unwrap();
            }
            let got = [&buf[..n], &drain(&r)].concat();
            assert!(got == [1, 2, 3, 4] || got == [3, 4, 1, 2], "{got:?}");
        });
    }

    #[test]
    fn loom_sp_sc_ring_delivers_in_order() {
        loom::model(|| {
            // Three elements offered twice to two slots, taken twice.
            let (mut p, mut c) = spsc::<u32>(2).unwrap();
            // Indexes one short of the wrap.
            assert!(p.enqueue_bulk(&[0]) && c.dequeue_bulk(&mut [0]));
            let producer = thread::spawn(move || {
                let vals = [1, 2, 3];
                let mut sent = 0;
                for _ in 0..2 {
                    sent += p.enqueue_burst(&vals[sent..]);
                    assert!(p.free_count() <= 2);
                }
                (p, sent)
            });
            let mut got = Vec::new();
            let mut buf = [0; 2];
            for _ in 0..2 {
                let n = c.dequeue_burst(&mut buf);
                got.extend_from_slice(&buf[..n]);
            }
            let (_p, sent) = producer.join().unwrap();
            let n = c.dequeue_burst(&mut buf);
            got.extend_from_slice(&buf[..n]);
            assert_eq!(got, [1, 2, 3][..sent]);
            assert!(c.is_empty());
        });
    }
}
