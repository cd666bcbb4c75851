//! The `split_used_ring` and `packed_used_ring` targets: a driver-side queue
//! ([`SplitQueue`], [`PackedQueue`]) in ordinary memory, and a hostile device writing
//! what the input says between the driver's operations: used elements (split) or used
//! descriptors (packed) with ids in flight, not in flight or out of range, lengths within
//! or beyond the buffer, used-index jumps, flags of the wrong wrap counter, and stray
//! writes anywhere in the queue's area. The driver must never panic, must return only
//! buffers it had in flight, must flag every length beyond a writable buffer, and must keep
//! its books: free descriptors plus those of the buffers in flight always make the queue
//! size, and the ids it would release at teardown are exactly the buffers still out.

use crate::virtqueue::packed::{VRING_PACKED_DESC_F_AVAIL, VRING_PACKED_DESC_F_USED};
use crate::virtqueue::{
    Layout, PackedLayout, PackedQueue, SplitQueue, UsedElem, Virtqueue, VRING_DESC_F_WRITE,
};
use pmd_core::memory::Segment;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;

/// Largest queue the targets build (entries).
const MAX_SIZE: u16 = 128;

thread_local! {
    /// The memory the queues live in, made once per thread (a queue zeroes its area).
    static MEM: Arc<Segment> = Arc::new(
        Segment::alloc("virtqueue-fuzz", Layout::new(MAX_SIZE).expect("size").total)
            .expect("a segment for the fuzzed queue"),
    );
}

/// The device's view of a queue's area: bounds-checked atomic stores at byte offsets.
struct Area {
    mem: Arc<Segment>,
    len: usize,
}

impl Area {
    /// The `len` bytes at the start of `mem` (where the queue was created).
    fn new(mem: Arc<Segment>, len: usize) -> Area {
        assert!(len <= mem.len());
        Area { mem, len }
    }

    /// Stores `v` at byte `off` (rounded down to a multiple of 2, wrapped into the area).
    fn store_u16(&self, off: usize, v: u16) {
        let off = (off % self.len) & !1;
        // SAFETY: off + 2 <= len <= the segment's length, off is even and the segment is
        // page-aligned; the driver side reads the same bytes only atomically or volatile.
        unsafe { (*(self.mem.as_ptr().add(off) as *const AtomicU16)).store(v, Ordering::Release) }
    }

    /// Stores `v` at byte `off` (a multiple of 4 inside the area).
    fn store_u32(&self, off: usize, v: u32) {
        assert!(off.is_multiple_of(4) && off + 4 <= self.len);
        // SAFETY: in bounds and 4-aligned (checked above; the segment is page-aligned).
        unsafe { (*(self.mem.as_ptr().add(off) as *const AtomicU32)).store(v, Ordering::Release) }
    }
}

/// The input, read a byte at a time (zeros once it runs out).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
}

/// What a hostile device can write.
trait Device {
    /// Hands back buffer `id` (any value) with `len` written, as the next used entry;
    /// `ndesc` is how many ring positions the device skips (packed), `flags` extra
    /// descriptor flags (packed).
    fn give_back(&mut self, id: u32, len: u32, ndesc: u16, flags: u16);
    /// Moves the used index by `delta` (split) or writes `v` as the next position's
    /// flags (packed).
    fn jump(&mut self, v: u16);
    /// Writes `v` at byte `off` of the area (anything: descriptors, rings, event fields).
    fn scribble(&mut self, off: usize, v: u16);
}

/// The device side of a split queue: the used ring.
struct SplitDevice {
    area: Area,
    used_off: usize,
    size: u16,
    used_idx: u16,
}

impl Device for SplitDevice {
    fn give_back(&mut self, id: u32, len: u32, _: u16, _: u16) {
        let slot = usize::from(self.used_idx & (self.size - 1));
        let at = self.used_off + 4 + 8 * slot;
        self.area.store_u32(at, id);
        self.area.store_u32(at + 4, len);
        self.jump(1);
    }

    fn jump(&mut self, delta: u16) {
        self.used_idx = self.used_idx.wrapping_add(delta);
        self.area.store_u16(self.used_off + 2, self.used_idx);
    }

    fn scribble(&mut self, off: usize, v: u16) {
        self.area.store_u16(off, v);
    }
}

/// The device side of a packed queue: its used position and wrap counter.
struct PackedDevice {
    area: Area,
    size: u16,
    pos: u16,
    wrap: bool,
}

impl Device for PackedDevice {
    fn give_back(&mut self, id: u32, len: u32, ndesc: u16, flags: u16) {
        let at = 16 * usize::from(self.pos);
        self.area.store_u32(at + 8, len);
        self.area.store_u16(at + 12, id as u16);
        let used = if self.wrap {
            VRING_PACKED_DESC_F_AVAIL | VRING_PACKED_DESC_F_USED
        } else {
            0
        };
        self.area
            .store_u16(at + 14, used | (flags & VRING_DESC_F_WRITE));
        self.pos += ndesc.clamp(1, self.size);
        if self.pos >= self.size {
            self.pos -= self.size;
            self.wrap = !self.wrap;
        }
    }

    fn jump(&mut self, v: u16) {
        self.area.store_u16(16 * usize::from(self.pos) + 14, v);
    }

    fn scribble(&mut self, off: usize, v: u16) {
        self.area.store_u16(off, v);
    }
}

/// A buffer the driver has in flight: (device-writable, bytes posted, descriptors).
type Posted = (bool, u32, u16);

/// The buffers in flight by id, with a bit per id (ids are below the queue size, at most
/// 128): the books are kept in fixed arrays and masks so that the harness costs little
/// next to the queue it checks.
struct Books {
    posted: [Posted; MAX_SIZE as usize],
    /// Ids in flight.
    mask: u128,
}

impl Books {
    fn new() -> Books {
        Books {
            posted: [(false, 0, 0); MAX_SIZE as usize],
            mask: 0,
        }
    }

    /// Records a new buffer `id`; it must be a free id below the queue size.
    fn insert(&mut self, id: u16, size: u16, p: Posted) {
        assert!(id < size, "id {id} of a queue of {size}");
        assert_eq!(self.mask & bit(id), 0, "id {id} given out twice");
        self.mask |= bit(id);
        self.posted[usize::from(id)] = p;
    }

    /// Takes buffer `id` back, if it is in flight.
    fn remove(&mut self, id: u16) -> Option<Posted> {
        if id >= MAX_SIZE || self.mask & bit(id) == 0 {
            return None;
        }
        self.mask &= !bit(id);
        Some(self.posted[usize::from(id)])
    }

    fn len(&self) -> usize {
        self.mask.count_ones() as usize
    }

    /// Descriptors held by the buffers in flight.
    fn descriptors(&self) -> usize {
        ids(self.mask)
            .map(|id| usize::from(self.posted[usize::from(id)].2))
            .sum()
    }
}

/// The bit of `id` in a mask of ids.
fn bit(id: u16) -> u128 {
    1u128 << id
}

/// The ids set in `mask`, lowest first.
fn ids(mut mask: u128) -> impl Iterator<Item = u16> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let id = mask.trailing_zeros() as u16;
            mask &= mask - 1;
            id
        })
    })
}

/// What one input did (for the fixed-seed tests to see the paths were reached).
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Buffers the driver took back.
    pub returned: u64,
    /// Errors it counted.
    pub errors: u64,
    /// Whether the queue ended broken.
    pub broken: bool,
}

/// One input against the split queue.
pub fn fuzz_split_used_ring(data: &[u8]) -> Outcome {
    let mut input = Input(data);
    let (size, event_idx) = header(&mut input);
    MEM.with(|mem| {
        let q = SplitQueue::new(mem.clone(), 0, 0, size, event_idx).expect("queue");
        let layout = Layout::new(size).expect("size");
        let dev = SplitDevice {
            area: Area::new(mem.clone(), layout.total),
            used_off: layout.used_off,
            size,
            used_idx: 0,
        };
        drive(q, dev, &mut input)
    })
}

/// One input against the packed queue.
pub fn fuzz_packed_used_ring(data: &[u8]) -> Outcome {
    let mut input = Input(data);
    let (size, event_idx) = header(&mut input);
    MEM.with(|mem| {
        let q = PackedQueue::new(mem.clone(), 0, 0, size, event_idx).expect("queue");
        let layout = PackedLayout::new(size).expect("size");
        let dev = PackedDevice {
            area: Area::new(mem.clone(), layout.total),
            size,
            pos: 0,
            wrap: true,
        };
        drive(q, dev, &mut input)
    })
}

/// Queue size (1..=128) and EVENT_IDX from the first byte.
fn header(input: &mut Input) -> (u16, bool) {
    let b = input.byte();
    (1 << (b & 7), b & 8 != 0)
}

/// How often (in operations) the driver's in-flight ids are compared in full with the
/// buffers posted; the counts are compared after every operation, and the ids once more
/// at the end of the input.
const FULL_CHECK_EVERY: usize = 8;

/// Runs the operations the input names, checking the driver's books after each.
fn drive<Q: Virtqueue, D: Device>(mut q: Q, mut dev: D, input: &mut Input) -> Outcome {
    let size = q.size();
    let mut posted = Books::new();
    // Descriptors of the buffers in `posted`, kept as they change.
    let mut in_use = 0usize;
    let mut ops = 0usize;
    let mut out = [UsedElem::default(); 8];
    let mut seen = Outcome::default();
    // Buffers published (the device may take them), and those it handed back that the
    // driver has not polled yet.
    let mut published: u128 = 0;
    let mut handed: u128 = 0;
    while !input.0.is_empty() {
        // Each operation is five bytes: the operation and four arguments.
        let op = input.byte();
        let a = [input.byte(), input.byte(), input.byte(), input.byte()];
        let v = u16::from_le_bytes([a[2], a[3]]);
        match op % 8 {
            0 => {
                let (len, writable) = (u32::from(a[0]) * 8, op & 8 != 0);
                match q.push(0x1000, len, writable) {
                    Some(id) => {
                        posted.insert(id, size, (writable, len, 1));
                        in_use += 1;
                    }
                    None => assert_eq!(q.num_free(), 0),
                }
            }
            1 => {
                let k = 1 + usize::from(op >> 3 & 3);
                let mut parts = [(0u64, 0u32); 4];
                for (i, p) in parts.iter_mut().enumerate() {
                    *p = (0x2000 * i as u64, u32::from(a[i]) * 4);
                }
                let parts = &parts[..k];
                let total = parts.iter().map(|p| p.1).sum();
                let writable = op & 0x20 != 0;
                match q.push_chain(parts, writable) {
                    Some(id) => {
                        posted.insert(id, size, (writable, total, k as u16));
                        in_use += k;
                    }
                    None => assert!(q.num_free() < k),
                }
            }
            2 => {
                q.publish();
                let _ = q.kick_needed();
                published |= posted.mask;
            }
            3 | 4 => {
                // A buffer back: one published and not handed back yet (bit 7 clear), else
                // any id (bit 6 set: also when there is nothing to hand back).
                let fresh = posted.mask & published & !handed;
                let pick = usize::from(a[0]) % (fresh.count_ones() as usize).max(1);
                let (id, ndesc, room) = match ids(fresh).nth(pick) {
                    Some(id) if a[0] & 0x80 == 0 => {
                        handed |= bit(id);
                        let (_, len, nd) = posted.posted[usize::from(id)];
                        (u32::from(id), nd, len)
                    }
                    _ if a[0] & 0xc0 == 0 => continue,
                    _ => (u32::from(v) % (u32::from(size) * 2 + 2), 1, 0),
                };
                let len = match a[1] % 4 {
                    0 => room,
                    1 => room / 2,
                    2 => room.saturating_add(1 + u32::from(a[2])),
                    _ => u32::from(v) << 16 | u32::from(v),
                };
                dev.give_back(id, len, ndesc, u16::from(op & 0x10) >> 3);
            }
            5 => dev.jump(u16::from_le_bytes([a[0], a[1]])),
            6 => dev.scribble(usize::from(u16::from_le_bytes([a[0], a[1]])), v),
            _ => {
                let k = 1 + usize::from(op >> 3) % out.len();
                let was_broken = q.is_broken();
                let (n, errors) = q.poll_used(&mut out[..k]);
                assert!(n <= k);
                if was_broken {
                    assert_eq!((n, errors), (0, 0), "a broken queue consumes nothing");
                }
                let mut refused = 0;
                for e in &out[..n] {
                    let Some((writable, len, ndesc)) = posted.remove(e.id) else {
                        panic!("buffer {} returned but not in flight", e.id);
                    };
                    handed &= !bit(e.id);
                    published &= !bit(e.id);
                    in_use -= usize::from(ndesc);
                    assert_eq!(e.ok, !writable || e.len <= len, "{e:?}");
                    refused += u64::from(!e.ok);
                }
                assert!(errors >= refused);
                seen.returned += n as u64;
                seen.errors += errors;
            }
        }
        // Free descriptors and those of the buffers in flight make the queue size.
        assert_eq!(q.num_free() + in_use, usize::from(size));
        assert_eq!(q.in_flight(), posted.len());
        ops += 1;
        if ops.is_multiple_of(FULL_CHECK_EVERY) {
            check_ids(&q, &posted);
        }
    }
    assert_eq!(in_use, posted.descriptors());
    check_ids(&q, &posted);
    seen.broken = q.is_broken();
    seen
}

/// The driver's in-flight ids (those it would release at teardown) are exactly the
/// buffers posted and not returned.
fn check_ids<Q: Virtqueue>(q: &Q, posted: &Books) {
    let ids = q.in_flight_ids();
    let mut mask = 0u128;
    for &id in &ids {
        assert!(id < MAX_SIZE && mask & bit(id) == 0, "{ids:?}");
        mask |= bit(id);
    }
    assert_eq!(mask, posted.mask, "{ids:?}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::xorshift;

    /// Operation streams of a device that mostly behaves: pushes, publishes, buffers
    /// handed back, polls; one input in four is hostile (bad ids, long lengths, index
    /// jumps, wrong flags, stray writes).
    fn inputs(seed: u64, n: usize) -> Vec<Vec<u8>> {
        let mut rnd = xorshift(seed);
        (0..n)
            .map(|_| {
                let hostile = rnd().is_multiple_of(4);
                let mut d = vec![rnd() as u8 & 0x0f];
                for _ in 0..rnd() % 120 {
                    let op = match rnd() % 64 {
                        0..=15 => 0,
                        16..=19 => 1,
                        20..=27 => 2,
                        28..=43 => 3,
                        44..=46 if hostile => 5,
                        47..=49 if hostile => 6,
                        _ => 7,
                    };
                    d.push(op | (rnd() as u8 & 0xf8));
                    let mask = if hostile && rnd().is_multiple_of(4) {
                        0xff
                    } else {
                        0x3f
                    };
                    for _ in 0..4 {
                        d.push(rnd() as u8 & mask);
                    }
                }
                d
            })
            .collect()
    }

    /// Runs `body` on the inputs; the device must have had buffers accepted, errors
    /// counted and queues stopped, each many times (so the paths were reached).
    fn run(seed: u64, body: fn(&[u8]) -> Outcome) {
        let (mut returned, mut errors, mut broken) = (0, 0, 0);
        for d in inputs(seed, 3000) {
            let o = body(&d);
            returned += o.returned;
            errors += o.errors;
            broken += u32::from(o.broken);
        }
        assert!(returned > 10_000, "{returned} buffers returned");
        assert!(errors > 1_000, "{errors} errors");
        // The hostile quarter stops queues; a behaving device never does.
        assert!((300..1000).contains(&broken), "{broken} queues stopped");
    }

    #[test]
    fn fixed_seed_fuzz_of_the_split_used_ring() {
        run(0x8a5c_d789_635d_2dff, fuzz_split_used_ring);
    }

    #[test]
    fn fixed_seed_fuzz_of_the_packed_used_ring() {
        run(0x1210_5cd7_2c18_d4b3, fuzz_packed_used_ring);
    }
}
