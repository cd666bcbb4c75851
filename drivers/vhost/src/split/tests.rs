//! A tiny driver (the guest's side of the ring, written by hand from the spec) over a
//! memfd-backed memory table, against the device side: frames both ways byte-exact,
//! chain layouts, MRG_RXBUF, offload headers, index wrap, notifications and hostile
//! rings.

use super::guest::{DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};
use super::*;
use crate::burst::{
    F_EVENT_IDX, F_GUEST_CSUM, F_GUEST_ECN, F_GUEST_TSO4, F_MRG_RXBUF, F_VERSION_1,
};
use crate::mem::tests::{memfd, GuestBytes};
use crate::mem::RegionDesc;
use crate::vring::VringAddrs;
use pmd_core::ethdev::QueueStats;
use pmd_core::mbuf::{
    PktBatch, DEFAULT_BUF_SIZE, RX_L4_CKSUM_GOOD, TX_IPV4, TX_TCP_CKSUM, TX_TCP_SEG,
};
use pmd_core::mempool::MempoolConfig;
use pmd_core::vnet::{RxProcessor, VnetStats};
use pmd_core::vnet::{VnetHdr, F_NEEDS_CSUM, GSO_TCPV4};
use pmd_core::Mempool;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicU64;

/// Guest physical and front-end virtual address of the region's first byte.
pub(crate) const GPA: u64 = 0x10_0000;
pub(crate) const UVA: u64 = 0x7f00_0000_0000;
/// Region size and where the ring areas and the buffers are in it.
pub(crate) const REGION: u64 = 4 << 20;
const DESC_OFF: u64 = 0;
const AVAIL_OFF: u64 = 0x1_0000;
const USED_OFF: u64 = 0x2_0000;
const BUF_OFF: u64 = 0x4_0000;

const VERSION_1: u64 = F_VERSION_1;

/// The driver side of one ring.
pub(super) struct Guest {
    pub mem: Arc<GuestMemory>,
    pub size: u16,
    /// The driver's available index.
    pub avail: u16,
    /// Used entries read so far.
    pub used_seen: u16,
    /// Next descriptor to hand out.
    next_desc: u16,
    /// Bump allocator over the buffer area.
    next_buf: u64,
}

pub(crate) fn memory() -> Arc<GuestMemory> {
    let d = RegionDesc {
        guest_phys_addr: GPA,
        memory_size: REGION,
        userspace_addr: UVA,
        mmap_offset: 0,
    };
    Arc::new(GuestMemory::build(&[d], vec![memfd(REGION, true)]).unwrap())
}

/// Byte access to the ring's memory ([`GuestBytes`]) goes to the guest memory.
impl std::ops::Deref for Guest {
    type Target = GuestMemory;

    fn deref(&self) -> &GuestMemory {
        &self.mem
    }
}

impl Guest {
    pub fn new(size: u16) -> Guest {
        Guest::with_start(size, 0)
    }

    /// A ring whose indexes start at `start` (both the used and the available index).
    pub fn with_start(size: u16, start: u16) -> Guest {
        let g = Guest {
            mem: memory(),
            size,
            avail: start,
            used_seen: start,
            next_desc: 0,
            next_buf: BUF_OFF,
        };
        g.w16(GPA + USED_OFF + 2, start);
        g.w16(GPA + AVAIL_OFF + 2, start);
        g
    }

    pub fn cfg(&self, features: u64, call: Option<Arc<OwnedFd>>) -> VringConfig {
        VringConfig {
            index: 0,
            size: self.size,
            base: self.avail,
            addrs: VringAddrs {
                desc: UVA + DESC_OFF,
                avail: UVA + AVAIL_OFF,
                used: UVA + USED_OFF,
                ..Default::default()
            },
            features,
            mem: self.mem.clone(),
            call,
            kick: None,
            log: None,
        }
    }

    /// A buffer of `len` bytes in the buffer area (wrapping around it).
    pub fn buf(&mut self, len: u64) -> u64 {
        if self.next_buf + len > REGION {
            self.next_buf = BUF_OFF;
        }
        let a = GPA + self.next_buf;
        self.next_buf += len.div_ceil(64) * 64;
        a
    }

    pub fn set_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..].copy_from_slice(&next.to_le_bytes());
        self.write(GPA + DESC_OFF + 16 * u64::from(i), &b);
    }

    /// Puts `head` in the next available slot (not yet published).
    pub fn push_avail(&mut self, head: u16) {
        let slot = u64::from(self.avail % self.size);
        self.w16(GPA + AVAIL_OFF + 4 + 2 * slot, head);
        self.avail = self.avail.wrapping_add(1);
    }

    /// Publishes the available index.
    pub fn publish(&self) {
        self.w16(GPA + AVAIL_OFF + 2, self.avail);
    }

    /// Sets the published available index to anything.
    pub fn set_avail_idx(&self, v: u16) {
        self.w16(GPA + AVAIL_OFF + 2, v);
    }

    /// Posts a chain of buffers `(gpa, len, writable)` and publishes it; returns the head.
    pub fn post(&mut self, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (k, &(addr, len, w)) in bufs.iter().enumerate() {
            let i = (head + k as u16) % self.size;
            let last = k + 1 == bufs.len();
            let flags = if w { DESC_F_WRITE } else { 0 } | if last { 0 } else { DESC_F_NEXT };
            self.set_desc(i, addr, len, flags, (i + 1) % self.size);
        }
        self.next_desc = (head + bufs.len() as u16) % self.size;
        self.push_avail(head);
        self.publish();
        head
    }

    /// Posts `bytes` cut at `cuts` (lengths of the first pieces; the rest is the last),
    /// as a device-readable chain.
    pub fn post_readable(&mut self, bytes: &[u8], cuts: &[usize]) -> u16 {
        let mut bufs = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&usize::MAX)) {
            let n = c.min(bytes.len() - at);
            let a = self.buf(n.max(1) as u64);
            self.write(a, &bytes[at..at + n]);
            bufs.push((a, n as u32, false));
            at += n;
            if at == bytes.len() {
                break;
            }
        }
        self.post(&bufs)
    }

    /// Posts a device-writable chain of buffers of these lengths; returns their addresses.
    pub fn post_writable(&mut self, lens: &[u32]) -> Vec<u64> {
        let bufs: Vec<_> = lens
            .iter()
            .map(|&l| (self.buf(u64::from(l)), l, true))
            .collect();
        self.post(&bufs);
        bufs.iter().map(|b| b.0).collect()
    }

    pub fn used_idx(&self) -> u16 {
        self.r16(GPA + USED_OFF + 2)
    }

    pub fn used_flags(&self) -> u16 {
        self.r16(GPA + USED_OFF)
    }

    pub fn avail_event(&self) -> u16 {
        self.r16(GPA + USED_OFF + 4 + 8 * u64::from(self.size))
    }

    pub fn set_used_event(&self, v: u16) {
        self.w16(GPA + AVAIL_OFF + 4 + 2 * u64::from(self.size), v);
    }

    pub fn set_avail_flags(&self, v: u16) {
        self.w16(GPA + AVAIL_OFF, v);
    }

    /// The used elements published since the last call.
    pub fn used(&mut self) -> Vec<(u32, u32)> {
        let idx = self.used_idx();
        let mut v = Vec::new();
        while self.used_seen != idx {
            let slot = u64::from(self.used_seen % self.size);
            let e = GPA + USED_OFF + 4 + 8 * slot;
            v.push((self.r32(e), self.r32(e + 4)));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        v
    }
}

pub(crate) fn pool(name: &str, n: u32, buf_size: u16) -> Mempool {
    Mempool::create_with(
        name,
        &MempoolConfig {
            size: n,
            cache_size: 0,
            buf_size,
        },
    )
    .unwrap()
}

/// The counters a queue passes to its bursts.
pub(crate) struct Counters {
    pub stats: QueueStats,
    pub errors: RingErrors,
    pub proc: RxProcessor,
    pub vstats: VnetStats,
}

impl Counters {
    pub fn new() -> Counters {
        Counters {
            stats: QueueStats::default(),
            errors: RingErrors::default(),
            proc: RxProcessor {
                lro: true,
                stats: Arc::new(VnetStats::default()),
            },
            vstats: VnetStats::default(),
        }
    }

    pub fn rx(&self, scatter: bool) -> RxCtx<'_> {
        RxCtx {
            stats: &self.stats,
            errors: &self.errors,
            vnet: &self.proc,
            scatter,
            port: 3,
        }
    }

    pub fn tx(&self) -> TxCtx<'_> {
        TxCtx {
            stats: &self.stats,
            errors: &self.errors,
            vnet: &self.vstats,
        }
    }

    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// bad_ring, bad_addr, bad_chain, too_long.
    pub fn errs(&self) -> [u64; 4] {
        let e = &self.errors;
        [
            Self::get(&e.bad_ring),
            Self::get(&e.bad_addr),
            Self::get(&e.bad_chain),
            Self::get(&e.too_long),
        ]
    }
}

pub(crate) fn frame(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// An Ethernet/IPv4/TCP frame with `payload` bytes (checksum fields zero).
pub(crate) fn tcp4(payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; 54 + payload];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    f[46] = 0x50;
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

#[test]
fn refuses_bad_sizes_and_areas() {
    let g = Guest::new(256);
    for size in [0u16, 3, 100, 65535] {
        let mut c = g.cfg(VERSION_1, None);
        c.size = size;
        assert_eq!(SplitRing::new(&c).unwrap_err(), RingSetupError::Size(size));
    }
    let mut c = g.cfg(VERSION_1, None);
    c.addrs.desc += 8;
    assert!(matches!(
        SplitRing::new(&c),
        Err(RingSetupError::Area { area: "desc", .. })
    ));
    let mut c = g.cfg(VERSION_1, None);
    c.addrs.used = UVA + REGION - 8;
    assert!(matches!(
        SplitRing::new(&c),
        Err(RingSetupError::Area { area: "used", .. })
    ));
    let mut c = g.cfg(VERSION_1, None);
    c.addrs.avail = 1;
    let e = SplitRing::new(&c).unwrap_err();
    assert!(e.to_string().contains("avail"), "{e}");
    let r = SplitRing::new(&g.cfg(VERSION_1, None)).unwrap();
    assert_eq!(r.last_avail(), 0);
    assert!(!r.is_broken());
}

#[test]
fn guest_to_host_frames_byte_exact_in_every_layout() {
    let mut g = Guest::new(256);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1, None)).unwrap();
    let pool = pool("vh-rx-exact", 512, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    let hdr = [0u8; 12];
    let mut sent = Vec::new();
    for (k, &len) in [64usize, 60, 1514, 2048, 2049, 4000, 9000]
        .iter()
        .enumerate()
    {
        let f = frame(len, k as u8);
        let mut bytes = hdr.to_vec();
        bytes.extend_from_slice(&f);
        // Header alone, header sharing the first buffer, header split over two, many
        // small pieces.
        let layouts: [&[usize]; 4] = [&[12], &[], &[5], &[12, 7, 100, 1]];
        for cuts in layouts {
            g.post_readable(&bytes, cuts);
            sent.push(f.clone());
        }
    }
    let mut got = Vec::new();
    let mut batch = PktBatch::new();
    while got.len() < sent.len() {
        let n = ring.dequeue(&mut batch, 32, &pool, &c.rx(true));
        assert!(n > 0);
        for m in batch.iter() {
            assert_eq!(m.port(), 3);
            got.push(m.to_vec());
        }
        batch.clear();
    }
    assert_eq!(got, sent);
    let used = g.used();
    assert_eq!(used.len(), sent.len());
    assert!(used.iter().all(|&(id, len)| id < 256 && len == 0));
    assert_eq!(c.errs(), [0; 4]);
    let s = c.stats.snapshot();
    assert_eq!(s.packets, sent.len() as u64);
    assert_eq!(s.bytes, sent.iter().map(|f| f.len() as u64).sum::<u64>());
    assert_eq!(pool.stats().in_use, 0);
    assert_eq!(ring.last_avail(), sent.len() as u16);
}

#[test]
fn guest_to_host_legacy_header_is_ten_bytes() {
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(0, None)).unwrap();
    let pool = pool("vh-rx-legacy", 16, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    let f = frame(100, 9);
    let mut bytes = vec![0u8; 10];
    bytes.extend_from_slice(&f);
    g.post_readable(&bytes, &[10]);
    let mut batch = PktBatch::new();
    assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(false)), 1);
    assert_eq!(batch.as_slice()[0].to_vec(), f);
}

#[test]
fn guest_to_host_without_scatter_drops_long_frames() {
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1, None)).unwrap();
    let pool = pool("vh-rx-noscatter", 16, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    let mut bytes = vec![0u8; 12];
    bytes.extend_from_slice(&frame(9000, 1));
    g.post_readable(&bytes, &[12]);
    let mut small = vec![0u8; 12];
    small.extend_from_slice(&frame(1000, 2));
    g.post_readable(&small, &[]);
    let mut batch = PktBatch::new();
    assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(false)), 1);
    assert_eq!(batch.as_slice()[0].len(), 1000);
    assert_eq!(c.errs(), [0, 0, 0, 1]);
    assert_eq!(c.stats.snapshot().errors, 1);
    assert_eq!(g.used().len(), 2);
    drop(batch);
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn guest_to_host_stops_without_mbufs_and_leaves_the_chain() {
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1, None)).unwrap();
    let pool = pool("vh-rx-nombuf", 3, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    for k in 0..3u8 {
        let mut b = vec![0u8; 12];
        b.extend_from_slice(&frame(if k == 1 { 3000 } else { 100 }, k));
        g.post_readable(&b, &[]);
    }
    let mut batch = PktBatch::new();
    // The first takes one mbuf, the second needs two but only one is left after the
    // head: the chain stays available.
    let _hold = pool.alloc().unwrap();
    assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(true)), 1);
    assert_eq!(c.stats.snapshot().no_mbuf, 1);
    assert_eq!(g.used().len(), 1);
    assert_eq!(ring.last_avail(), 1);
    drop(_hold);
    batch.clear();
    assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(true)), 2);
    assert_eq!(batch.as_slice()[0].len(), 3000);
    assert_eq!(g.used().len(), 2);
    drop(batch);
    assert_eq!(pool.stats().in_use, 0);
}

/// Host to guest: sends `frames` (as mbufs from `pool`), returns what was consumed.
fn send(ring: &mut SplitRing, frames: &[Vec<u8>], pool: &Mempool, c: &Counters) -> usize {
    let mut batch = PktBatch::new();
    for f in frames {
        batch.push(Mbuf::from_slice(f, pool).unwrap()).unwrap();
    }
    ring.enqueue(batch.as_slice(), &c.tx())
}

#[test]
fn host_to_guest_frames_byte_exact_one_chain_each() {
    let mut g = Guest::new(64);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1, None)).unwrap();
    // Small buffers: the mbufs are chains, copied segment by segment.
    let pool = pool("vh-tx-exact", 512, 512 + pmd_core::mbuf::HEADROOM);
    let c = Counters::new();
    let frames: Vec<_> = [64usize, 1514, 2049, 9000]
        .iter()
        .map(|&l| frame(l, l as u8))
        .collect();
    // Header in its own buffer then one data buffer; and all in one buffer.
    let mut layouts = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if i % 2 == 0 {
            layouts.push(g.post_writable(&[12, f.len() as u32 + 100]));
        } else {
            layouts.push(g.post_writable(&[f.len() as u32 + 12]));
        }
    }
    assert_eq!(send(&mut ring, &frames, &pool, &c), frames.len());
    let used = g.used();
    assert_eq!(used.len(), frames.len());
    for ((f, bufs), (_, len)) in frames.iter().zip(&layouts).zip(&used) {
        assert_eq!(*len as usize, f.len() + 12);
        let (hdr, data) = if bufs.len() == 2 {
            (g.read(bufs[0], 12), g.read(bufs[1], f.len()))
        } else {
            let all = g.read(bufs[0], f.len() + 12);
            (all[..12].to_vec(), all[12..].to_vec())
        };
        assert_eq!(hdr, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(&data, f);
    }
    assert_eq!(c.stats.snapshot().packets, 4);
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn host_to_guest_header_in_any_buffer_layout() {
    // The legacy 10-byte header (no VERSION_1, no MRG_RXBUF), whole in the first buffer.
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(0, None)).unwrap();
    let pool = pool("vh-tx-hdr", 64, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    let f = frame(60, 3);
    let b = g.post_writable(&[200]);
    assert_eq!(send(&mut ring, std::slice::from_ref(&f), &pool, &c), 1);
    assert_eq!(g.used()[0].1, 70);
    let got = g.read(b[0], 70);
    assert_eq!(&got[..10], &[0; 10]);
    assert_eq!(&got[10..], &f[..]);

    // MRG_RXBUF: the 12-byte header cut across chains of 4 and 7 bytes, `num_buffers`
    // (stream bytes 10 and 11) landing in the second and third chain.
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1 | F_MRG_RXBUF, None)).unwrap();
    let bufs: Vec<u64> = [4u32, 7, 100]
        .iter()
        .map(|&l| g.post_writable(&[l])[0])
        .collect();
    assert_eq!(send(&mut ring, std::slice::from_ref(&f), &pool, &c), 1);
    let used = g.used();
    let lens: Vec<u32> = used.iter().map(|u| u.1).collect();
    assert_eq!(lens, [4, 7, 61]);
    let mut stream = Vec::new();
    for (a, l) in bufs.iter().zip(lens) {
        stream.extend(g.read(*a, l as usize));
    }
    assert_eq!(&stream[..10], &[0; 10]);
    assert_eq!(&stream[10..12], &3u16.to_le_bytes());
    assert_eq!(&stream[12..], &f[..]);
    assert_eq!(c.errs(), [0; 4]);
    assert_eq!(pool.stats().in_use, 0);
}

/// An indirect table of split-layout entries `(addr, len, flags, next)`, written to a
/// fresh buffer; returns its address and length.
fn split_table(g: &mut Guest, entries: &[(u64, u32, u16, u16)]) -> (u64, u32) {
    let mut t = Vec::new();
    for &(addr, len, flags, next) in entries {
        t.extend_from_slice(&addr.to_le_bytes());
        t.extend_from_slice(&len.to_le_bytes());
        t.extend_from_slice(&flags.to_le_bytes());
        t.extend_from_slice(&next.to_le_bytes());
    }
    let at = g.buf(t.len() as u64);
    g.write(at, &t);
    (at, t.len() as u32)
}

/// Posts a one-descriptor chain naming the table `(addr, len)` with `flags` besides
/// INDIRECT; returns the head.
fn post_table(g: &mut Guest, (addr, len): (u64, u32), flags: u16) -> u16 {
    // Posted as a plain buffer, then made a table before any burst looks.
    let head = g.post(&[(addr, len, false)]);
    g.set_desc(head, addr, len, DESC_F_INDIRECT | flags, 0);
    head
}

#[test]
fn indirect_tables_both_ways() {
    let f = frame(300, 4);
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1 | F_INDIRECT_DESC, None)).unwrap();
    let pool = pool("vh-indirect", 64, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    // Guest to host: header, then the frame in two pieces, chained 0 -> 2 -> 1 in the
    // table; the table descriptor's own WRITE flag is ignored.
    let (hdr, p1, p2) = (g.buf(12), g.buf(100), g.buf(200));
    g.write(hdr, &[0; 12]);
    g.write(p1, &f[..100]);
    g.write(p2, &f[100..]);
    let t = split_table(
        &mut g,
        &[
            (hdr, 12, DESC_F_NEXT, 2),
            (p2, 200, 0, 0),
            (p1, 100, DESC_F_NEXT, 1),
        ],
    );
    post_table(&mut g, t, DESC_F_WRITE);
    let mut batch = PktBatch::new();
    assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(false)), 1);
    assert_eq!(batch.as_slice()[0].to_vec(), f);
    drop(batch);
    assert_eq!(g.used().len(), 1);

    // Host to guest: a table of two device-writable buffers.
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1 | F_INDIRECT_DESC, None)).unwrap();
    let (b0, b1) = (g.buf(12), g.buf(400));
    let t = split_table(
        &mut g,
        &[
            (b0, 12, DESC_F_WRITE | DESC_F_NEXT, 1),
            (b1, 400, DESC_F_WRITE, 0),
        ],
    );
    let head = post_table(&mut g, t, 0);
    assert_eq!(send(&mut ring, std::slice::from_ref(&f), &pool, &c), 1);
    assert_eq!(g.used(), [(u32::from(head), 312)]);
    assert_eq!(g.read(b0, 12), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(g.read(b1, 300), f);
    assert_eq!(c.errs(), [0; 4]);
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn hostile_indirect_tables_are_counted_and_returned() {
    // [bad_ring, bad_addr, bad_chain, too_long] after one chain set up by `post`.
    fn one(post: impl FnOnce(&mut Guest)) -> [u64; 4] {
        let mut g = Guest::new(4);
        let mut ring = SplitRing::new(&g.cfg(VERSION_1 | F_INDIRECT_DESC, None)).unwrap();
        let pool = pool("vh-indirect-bad", 16, DEFAULT_BUF_SIZE);
        let c = Counters::new();
        post(&mut g);
        let mut batch = PktBatch::new();
        assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(false)), 0);
        assert_eq!(g.used().len(), 1, "the chain goes back");
        assert_eq!(pool.stats().in_use, 0);
        c.errs()
    }
    let chain = [0, 0, 1, 0];
    let addr = [0, 1, 0, 0];
    let buf = |g: &mut Guest| g.buf(64);
    // A table followed by NEXT.
    assert_eq!(
        one(|g| {
            let b = buf(g);
            let t = split_table(g, &[(b, 64, 0, 0)]);
            post_table(g, t, DESC_F_NEXT);
        }),
        chain
    );
    // Not a whole number of entries; empty; more entries than the ring (5 > 4).
    for len in [40, 0] {
        assert_eq!(
            one(|g| {
                let b = buf(g);
                let (t, _) = split_table(g, &[(b, 64, 0, 0), (b, 64, 0, 0), (b, 64, 0, 0)]);
                post_table(g, (t, len), 0);
            }),
            chain,
            "table of {len} bytes"
        );
    }
    assert_eq!(
        one(|g| {
            let b = buf(g);
            let t = split_table(g, &[(b, 1, DESC_F_NEXT, 1); 5]);
            post_table(g, t, 0);
        }),
        chain
    );
    // A nested table; a loop inside the table; a `next` beyond it.
    for entries in [
        [(0, 64, DESC_F_INDIRECT, 0), (0, 64, 0, 0)],
        [(0, 64, DESC_F_NEXT, 1), (0, 64, DESC_F_NEXT, 0)],
        [(0, 64, DESC_F_NEXT, 2), (0, 64, 0, 0)],
    ] {
        assert_eq!(
            one(|g| {
                let b = buf(g);
                let e: Vec<_> = entries.iter().map(|&(_, l, f, n)| (b, l, f, n)).collect();
                let t = split_table(g, &e);
                post_table(g, t, 0);
            }),
            chain,
            "{entries:?}"
        );
    }
    // A device-writable buffer in the table of a driver-to-device chain.
    assert_eq!(
        one(|g| {
            let b = buf(g);
            let t = split_table(g, &[(b, 64, DESC_F_WRITE, 0)]);
            post_table(g, t, 0);
        }),
        chain
    );
    // The table outside guest memory; a buffer in it outside guest memory.
    assert_eq!(
        one(|g| {
            post_table(g, (GPA + REGION, 32), 0);
        }),
        addr
    );
    assert_eq!(
        one(|g| {
            let t = split_table(g, &[(GPA + REGION - 8, 64, 0, 0)]);
            post_table(g, t, 0);
        }),
        addr
    );
    // Without INDIRECT_DESC negotiated, a table is a bad chain.
    let mut g = Guest::new(4);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1, None)).unwrap();
    let pool = pool("vh-indirect-off", 16, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    let b = g.buf(64);
    let t = split_table(&mut g, &[(b, 64, 0, 0)]);
    post_table(&mut g, t, 0);
    let mut batch = PktBatch::new();
    assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(false)), 0);
    assert_eq!(c.errs(), chain);
}

#[test]
fn host_to_guest_merges_buffers() {
    let mut g = Guest::new(64);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1 | F_MRG_RXBUF, None)).unwrap();
    let pool = pool("vh-tx-mrg", 256, 1000 + pmd_core::mbuf::HEADROOM);
    let c = Counters::new();
    let mut bufs = Vec::new();
    for _ in 0..10 {
        bufs.push(g.post_writable(&[1500])[0]);
    }
    let f = frame(9000, 5);
    let small = frame(64, 6);
    assert_eq!(send(&mut ring, &[f.clone(), small.clone()], &pool, &c), 2);
    let used = g.used();
    // 9012 bytes over 1500-byte buffers: 7 chains (6 full and 12 bytes), then the small one.
    assert_eq!(used.len(), 8);
    let lens: Vec<u32> = used.iter().map(|u| u.1).collect();
    assert_eq!(lens, [1500, 1500, 1500, 1500, 1500, 1500, 12, 76]);
    let mut stream = Vec::new();
    for (a, (_, l)) in bufs.iter().zip(&used[..7]) {
        stream.extend(g.read(*a, *l as usize));
    }
    assert_eq!(&stream[10..12], &7u16.to_le_bytes());
    assert_eq!(&stream[12..], &f[..]);
    let s = g.read(bufs[7], 76);
    assert_eq!(&s[10..12], &1u16.to_le_bytes());
    assert_eq!(&s[12..], &small[..]);
    // Two buffers left: a 9000-byte frame does not fit, the burst stops, nothing used.
    assert_eq!(send(&mut ring, std::slice::from_ref(&f), &pool, &c), 0);
    assert_eq!(g.used().len(), 0);
    assert_eq!(c.errs(), [0; 4]);
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn host_to_guest_too_long_for_every_buffer_is_dropped() {
    // Without MRG_RXBUF: a frame longer than the chain is dropped, the chain stays.
    let mut g = Guest::new(4);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1, None)).unwrap();
    let pool = pool("vh-tx-long", 64, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    let a = g.post_writable(&[200])[0];
    let small = frame(100, 1);
    assert_eq!(
        send(&mut ring, &[frame(1000, 0), small.clone()], &pool, &c),
        2
    );
    assert_eq!(c.errs(), [0, 0, 0, 1]);
    assert_eq!(g.used(), [(0, 112)]);
    assert_eq!(g.read(a + 12, 100), small);
    // With MRG_RXBUF: the whole ring offered and still too small.
    let mut g = Guest::new(4);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1 | F_MRG_RXBUF, None)).unwrap();
    let c = Counters::new();
    for _ in 0..4 {
        g.post_writable(&[100]);
    }
    assert_eq!(
        send(&mut ring, &[frame(1000, 0), frame(50, 1)], &pool, &c),
        2
    );
    assert_eq!(c.errs(), [0, 0, 0, 1]);
    assert_eq!(g.used().len(), 1);
    // No buffers at all: nothing consumed.
    let mut g = Guest::new(4);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1, None)).unwrap();
    assert_eq!(send(&mut ring, &[frame(10, 0)], &pool, &c), 0);
    assert_eq!(g.used().len(), 0);
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn offload_headers_both_ways() {
    // Guest to host: a partial TCP checksum is completed.
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1, None)).unwrap();
    let pool = pool("vh-offload", 256, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    let f = tcp4(100);
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 16,
        ..Default::default()
    };
    let mut bytes = h.to_bytes().to_vec();
    bytes.extend_from_slice(&[0, 0]);
    bytes.extend_from_slice(&f);
    g.post_readable(&bytes, &[12]);
    let mut batch = PktBatch::new();
    assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(false)), 1);
    let m = &batch.as_slice()[0];
    assert_ne!(m.ol_flags() & RX_L4_CKSUM_GOOD, 0);
    assert_ne!(&m.data()[50..52], &[0, 0]);
    assert_eq!(c.proc.stats.rx_csum_completed.load(Ordering::Relaxed), 1);
    // A refused header (GSO without NEEDS_CSUM) drops the packet and is counted.
    let bad = VnetHdr {
        gso_type: pmd_core::vnet::GSO_TCPV4,
        gso_size: 1000,
        ..Default::default()
    };
    let mut bytes = bad.to_bytes().to_vec();
    bytes.extend_from_slice(&[0, 0]);
    bytes.extend_from_slice(&f);
    g.post_readable(&bytes, &[]);
    batch.clear();
    assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(false)), 0);
    assert_eq!(c.proc.stats.total_errors(), 1);
    assert_eq!(c.stats.snapshot().errors, 1);
    drop(batch);

    // Host to guest: checksum and TSO requests become the header, if negotiated.
    let features = VERSION_1 | F_GUEST_CSUM | F_GUEST_TSO4;
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(features, None)).unwrap();
    let c = Counters::new();
    let mut csum = Mbuf::from_slice(&f, &pool).unwrap();
    csum.set_ol_flags(TX_IPV4 | TX_TCP_CKSUM);
    csum.set_tx_offload(pmd_core::mbuf::TxOffload {
        l2_len: 14,
        l3_len: 20,
        l4_len: 20,
        ..Default::default()
    });
    let big = tcp4(8000);
    let mut tso = Mbuf::from_slice(&big, &pool).unwrap();
    tso.set_ol_flags(TX_IPV4 | TX_TCP_SEG);
    tso.set_tx_offload(pmd_core::mbuf::TxOffload {
        l2_len: 14,
        l3_len: 20,
        l4_len: 20,
        tso_segsz: 1448,
        ..Default::default()
    });
    let a = g.post_writable(&[200])[0];
    let b = g.post_writable(&[9000])[0];
    let pkts = [csum, tso];
    assert_eq!(ring.enqueue(&pkts, &c.tx()), 2);
    let h1 = VnetHdr::from_bytes(&g.read(a, 10).try_into().unwrap());
    assert_eq!(
        (h1.flags, h1.csum_start, h1.csum_offset),
        (F_NEEDS_CSUM, 34, 16)
    );
    let h2 = VnetHdr::from_bytes(&g.read(b, 10).try_into().unwrap());
    assert_eq!(
        (h2.gso_type, h2.gso_size, h2.hdr_len),
        (GSO_TCPV4, 1448, 54)
    );
    assert_eq!(g.read(b + 12, big.len()), big);
    assert_eq!(c.vstats.tx_gso_packets.load(Ordering::Relaxed), 1);
    assert_eq!(c.vstats.tx_csum_packets.load(Ordering::Relaxed), 1);
    // A super-frame with CWR needs GUEST_ECN too.
    let mut cwr = big.clone();
    cwr[47] |= 0x80;
    let mut ecn = Mbuf::from_slice(&cwr, &pool).unwrap();
    ecn.set_ol_flags(TX_IPV4 | TX_TCP_SEG);
    ecn.set_tx_offload(pkts[1].tx_offload());
    g.post_writable(&[9000]);
    assert_eq!(ring.enqueue(std::slice::from_ref(&ecn), &c.tx()), 1);
    assert_eq!(c.vstats.tx_offload_errors.load(Ordering::Relaxed), 1);
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(features | F_GUEST_ECN, None)).unwrap();
    let e = g.post_writable(&[9000])[0];
    assert_eq!(ring.enqueue(std::slice::from_ref(&ecn), &c.tx()), 1);
    let h3 = VnetHdr::from_bytes(&g.read(e, 10).try_into().unwrap());
    assert_eq!(h3.gso_type, GSO_TCPV4 | pmd_core::vnet::GSO_ECN);
    drop(ecn);
    // Not negotiated: dropped and counted, nothing used.
    let c = Counters::new();
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1, None)).unwrap();
    g.post_writable(&[9000]);
    assert_eq!(ring.enqueue(&pkts, &c.tx()), 2);
    assert_eq!(c.vstats.tx_offload_errors.load(Ordering::Relaxed), 2);
    assert_eq!(g.used().len(), 0);
    drop(pkts);
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn guest_super_frames_are_segmented_across_bursts() {
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1, None)).unwrap();
    let pool = pool("vh-rx-gso", 256, DEFAULT_BUF_SIZE);
    let mut c = Counters::new();
    c.proc.lro = false;
    // A 10 000-byte TCPv4 super-frame of 1000-byte segments: 10 packets.
    let mut f = tcp4(10_000);
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1000,
        csum_start: 34,
        csum_offset: 16,
    };
    f[16..18].copy_from_slice(&0u16.to_be_bytes());
    let mut bytes = h.to_bytes().to_vec();
    bytes.extend_from_slice(&[0, 0]);
    bytes.extend_from_slice(&f);
    g.post_readable(&bytes, &[12, 3000]);
    let mut small = vec![0u8; 12];
    small.extend_from_slice(&frame(64, 1));
    g.post_readable(&small, &[]);
    let mut batch = PktBatch::new();
    let mut lens = Vec::new();
    // Bursts of 4: the segments come out over three bursts, the last with the next
    // frame; no new chain is taken while segments wait.
    for want in [4, 4, 3, 0] {
        assert_eq!(ring.dequeue(&mut batch, 4, &pool, &c.rx(true)), want);
        lens.extend(batch.iter().map(|m| m.len()));
        batch.clear();
    }
    assert_eq!(lens, [[1054; 10].as_slice(), &[64]].concat());
    assert_eq!(c.proc.stats.rx_gso_segments.load(Ordering::Relaxed), 10);
    assert_eq!(c.stats.snapshot().packets, 11);
    assert_eq!(g.used().len(), 2);
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn indexes_wrap_at_65535() {
    for start in [65530u16, 65535] {
        let mut g = Guest::with_start(8, start);
        let mut ring = SplitRing::new(&g.cfg(VERSION_1 | F_MRG_RXBUF, None)).unwrap();
        assert_eq!(ring.last_avail(), start);
        let pool = pool("vh-wrap", 64, DEFAULT_BUF_SIZE);
        let c = Counters::new();
        let mut batch = PktBatch::new();
        for k in 0..20u8 {
            let f = frame(60 + usize::from(k), k);
            let mut b = vec![0u8; 12];
            b.extend_from_slice(&f);
            g.post_readable(&b, &[12]);
            assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(false)), 1);
            assert_eq!(batch.pop().unwrap().to_vec(), f);
            let a = g.post_writable(&[2048])[0];
            assert_eq!(send(&mut ring, std::slice::from_ref(&f), &pool, &c), 1);
            assert_eq!(g.read(a + 12, f.len()), f);
            assert_eq!(g.used().len(), 2);
        }
        assert_eq!(ring.last_avail(), start.wrapping_add(40));
        assert_eq!(g.used_idx(), start.wrapping_add(40));
        assert_eq!(c.errs(), [0; 4]);
        assert_eq!(pool.stats().in_use, 0);
    }
}

#[test]
fn follows_the_used_index_when_it_differs_from_the_base() {
    let mut g = Guest::with_start(16, 7);
    let mut cfg = g.cfg(VERSION_1, None);
    cfg.base = 3;
    let mut ring = SplitRing::new(&cfg).unwrap();
    assert_eq!(ring.last_avail(), 7);
    let pool = pool("vh-resume", 16, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    let mut b = vec![0u8; 12];
    b.extend_from_slice(&frame(64, 0));
    g.post_readable(&b, &[]);
    let mut batch = PktBatch::new();
    assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(false)), 1);
    assert_eq!(c.errors.resumed.load(Ordering::Relaxed), 1);
    assert_eq!(ring.last_avail(), 8);
}

/// Reads and clears an eventfd's count (0 if none pending).
pub(crate) fn take_signals(fd: &OwnedFd) -> u64 {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd.
    let rc = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    if rc == 8 {
        v
    } else {
        0
    }
}

#[test]
fn notifications_follow_the_guests_wishes() {
    let pool = pool("vh-notify", 64, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    let one = vec![frame(64, 1)];
    // Without EVENT_IDX: kicks off (NO_NOTIFY), interrupts unless NO_INTERRUPT.
    let call = Arc::new(pmd_core::unix::eventfd().unwrap());
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1, Some(call.clone()))).unwrap();
    assert_eq!(g.used_flags(), 1);
    g.post_writable(&[2048]);
    assert_eq!(send(&mut ring, &one, &pool, &c), 1);
    assert_eq!(take_signals(&call), 1);
    g.set_avail_flags(1);
    g.post_writable(&[2048]);
    assert_eq!(send(&mut ring, &one, &pool, &c), 1);
    assert_eq!(take_signals(&call), 0);
    // Nothing used: no signal.
    g.set_avail_flags(0);
    assert_eq!(send(&mut ring, &one, &pool, &c), 0);
    assert_eq!(take_signals(&call), 0);

    // EVENT_IDX: a signal only when the used index passes used_event.
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1 | F_EVENT_IDX, Some(call.clone()))).unwrap();
    assert_eq!(g.avail_event(), 0xffff);
    g.set_used_event(2); // wake me when entry 2 is used
    for _ in 0..6 {
        g.post_writable(&[2048]);
    }
    let mut signals = Vec::new();
    for _ in 0..3 {
        assert_eq!(send(&mut ring, &one, &pool, &c), 1);
        signals.push(take_signals(&call));
    }
    assert_eq!(signals, [0, 0, 1]);
    assert_eq!(g.avail_event(), 2);
    // A burst of two passing used_event 4 signals once; one not reaching 7 does not.
    g.set_used_event(4);
    assert_eq!(
        send(&mut ring, &[one[0].clone(), one[0].clone()], &pool, &c),
        2
    );
    assert_eq!(take_signals(&call), 1);
    g.set_used_event(7);
    assert_eq!(send(&mut ring, &one, &pool, &c), 1);
    assert_eq!(take_signals(&call), 0);
    // Receive bursts signal the same way.
    let mut b = vec![0u8; 12];
    b.extend_from_slice(&frame(64, 0));
    g.set_used_event(6);
    g.post_readable(&b, &[]);
    let mut batch = PktBatch::new();
    assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(false)), 1);
    assert_eq!(take_signals(&call), 1);
    // No call fd: never a signal (nothing to check but that it runs).
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1, None)).unwrap();
    g.post_writable(&[2048]);
    assert_eq!(send(&mut ring, &one, &pool, &c), 1);
    drop(batch);
    assert_eq!(pool.stats().in_use, 0);
}

/// Runs one hostile guest-to-host chain set up by `setup` on a fresh 16-entry ring;
/// returns the counters, checking that nothing was delivered, every chain came back
/// (len 0) and every mbuf is back in the pool.
fn hostile_rx(setup: impl FnOnce(&mut Guest)) -> [u64; 4] {
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1, None)).unwrap();
    let pool = pool("vh-hostile-rx", 64, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    setup(&mut g);
    let mut batch = PktBatch::new();
    for _ in 0..3 {
        assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(true)), 0);
    }
    let used = g.used();
    assert!(used.iter().all(|&(id, len)| id < 16 && len == 0));
    if c.errs()[0] == 0 {
        assert_eq!(used.len(), 1, "the bad chain goes back");
        assert_eq!(c.stats.snapshot().errors, 1);
    } else {
        assert!(ring.is_broken());
        assert!(used.is_empty());
    }
    assert_eq!(pool.stats().in_use, 0);
    c.errs()
}

#[test]
fn hostile_guest_to_host_chains_are_counted_and_returned() {
    // avail idx jumps by more than the ring: broken, counted once.
    assert_eq!(hostile_rx(|g| g.set_avail_idx(17)), [1, 0, 0, 0]);
    // A head beyond the table.
    assert_eq!(
        hostile_rx(|g| {
            g.push_avail(16);
            g.publish();
        }),
        [1, 0, 0, 0]
    );
    // A chain that loops on itself, and one through two descriptors.
    let ok_buf = GPA + BUF_OFF;
    assert_eq!(
        hostile_rx(|g| {
            g.set_desc(0, ok_buf, 100, DESC_F_NEXT, 0);
            g.push_avail(0);
            g.publish();
        }),
        [0, 0, 1, 0]
    );
    assert_eq!(
        hostile_rx(|g| {
            g.set_desc(3, ok_buf, 100, DESC_F_NEXT, 5);
            g.set_desc(5, ok_buf, 100, DESC_F_NEXT, 3);
            g.push_avail(3);
            g.publish();
        }),
        [0, 0, 1, 0]
    );
    // next beyond the table.
    assert_eq!(
        hostile_rx(|g| {
            g.set_desc(0, ok_buf, 100, DESC_F_NEXT, 16);
            g.push_avail(0);
            g.publish();
        }),
        [0, 0, 1, 0]
    );
    // An address outside every region; a length running past the region; a length that
    // wraps the address space.
    for (addr, len) in [
        (0u64, 100u32),
        (GPA + REGION - 50, 100),
        (u64::MAX - 10, 100),
    ] {
        assert_eq!(
            hostile_rx(|g| {
                g.set_desc(0, addr, len, 0, 0);
                g.push_avail(0);
                g.publish();
            }),
            [0, 1, 0, 0]
        );
    }
    // A device-writable buffer in a driver-to-device chain; an indirect descriptor.
    for flags in [DESC_F_WRITE, DESC_F_INDIRECT] {
        assert_eq!(
            hostile_rx(|g| {
                g.set_desc(0, ok_buf, 100, flags, 0);
                g.push_avail(0);
                g.publish();
            }),
            [0, 0, 1, 0]
        );
    }
    // Too short for the header, and exactly the header (no frame).
    for len in [8u32, 12] {
        assert_eq!(
            hostile_rx(|g| {
                g.set_desc(0, ok_buf, len, 0, 0);
                g.push_avail(0);
                g.publish();
            }),
            [0, 0, 1, 0]
        );
    }
    // Lengths adding up past the largest frame (each buffer valid).
    assert_eq!(
        hostile_rx(|g| {
            g.set_desc(0, ok_buf, 40_000, DESC_F_NEXT, 1);
            g.set_desc(1, ok_buf, 40_000, 0, 0);
            g.push_avail(0);
            g.publish();
        }),
        [0, 0, 0, 1]
    );
    // Lengths that would wrap a u32 sum: u32::MAX twice (the first is refused as too
    // long before its address is even looked at).
    assert_eq!(
        hostile_rx(|g| {
            g.set_desc(0, ok_buf, u32::MAX, DESC_F_NEXT, 1);
            g.set_desc(1, ok_buf, u32::MAX, 0, 0);
            g.push_avail(0);
            g.publish();
        }),
        [0, 0, 0, 1]
    );
}

/// A hostile set-up of the guest's ring.
type SetUp<'a> = dyn Fn(&mut Guest) + 'a;

#[test]
fn hostile_host_to_guest_chains_are_counted_and_returned() {
    let pool = pool("vh-hostile-tx", 64, DEFAULT_BUF_SIZE);
    let ok_buf = GPA + BUF_OFF;
    let cases: [(&SetUp<'_>, [u64; 4]); 5] = [
        // A device-readable buffer in a device-to-driver chain.
        (&|g| g.set_desc(0, ok_buf, 2048, 0, 0), [0, 0, 1, 0]),
        // Outside every region.
        (&|g| g.set_desc(0, 8, 2048, DESC_F_WRITE, 0), [0, 1, 0, 0]),
        // A loop of small buffers.
        (
            &|g| g.set_desc(0, ok_buf, 4, DESC_F_WRITE | DESC_F_NEXT, 0),
            [0, 0, 1, 0],
        ),
        // next beyond the table after a small buffer.
        (
            &|g| g.set_desc(0, ok_buf, 4, DESC_F_WRITE | DESC_F_NEXT, 99),
            [0, 0, 1, 0],
        ),
        // An indirect descriptor.
        (
            &|g| g.set_desc(0, ok_buf, 64, DESC_F_WRITE | DESC_F_INDIRECT, 0),
            [0, 0, 1, 0],
        ),
    ];
    for (mrg, (setup, want)) in [false, true]
        .into_iter()
        .flat_map(|m| cases.iter().map(move |c| (m, c)))
    {
        let mut g = Guest::new(16);
        let features = VERSION_1 | if mrg { F_MRG_RXBUF } else { 0 };
        let mut ring = SplitRing::new(&g.cfg(features, None)).unwrap();
        let c = Counters::new();
        setup(&mut g);
        g.push_avail(0);
        g.publish();
        assert_eq!(send(&mut ring, &[frame(100, 0)], &pool, &c), 1, "dropped");
        assert_eq!(c.errs(), *want);
        assert_eq!(g.used(), [(0, 0)]);
        assert!(!ring.is_broken());
    }
    // With MRG_RXBUF, a bad chain after a good one: both go back empty.
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1 | F_MRG_RXBUF, None)).unwrap();
    let c = Counters::new();
    g.post_writable(&[100]);
    g.set_desc(1, 8, 100, DESC_F_WRITE, 0);
    g.push_avail(1);
    g.publish();
    assert_eq!(send(&mut ring, &[frame(150, 0)], &pool, &c), 1);
    assert_eq!(g.used(), [(0, 0), (1, 0)]);
    assert_eq!(c.errs(), [0, 1, 0, 0]);
    // A jump of the available index and a head out of range break the ring.
    let g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1, None)).unwrap();
    g.set_avail_idx(40);
    assert_eq!(send(&mut ring, &[frame(100, 0)], &pool, &c), 0);
    assert!(ring.is_broken());
    let mut g = Guest::new(16);
    let mut ring = SplitRing::new(&g.cfg(VERSION_1, None)).unwrap();
    g.push_avail(300);
    g.publish();
    assert_eq!(send(&mut ring, &[frame(100, 0)], &pool, &c), 0);
    assert!(ring.is_broken());
    assert_eq!(c.errs()[0], 2);
    assert_eq!(pool.stats().in_use, 0);
}

/// A migration: with a dirty log in the configuration, every page a burst changes is
/// logged (buffers, used entries, `used.idx`, `avail_event`, MRG_RXBUF's `num_buffers`
/// written after its buffer) and nothing else is; a receive logs the used ring only.
#[test]
fn a_migration_logs_every_page_the_device_writes() {
    use crate::dirty::tests::{check_log, log, pages};
    use std::collections::BTreeSet;
    let used_pages = |g: &Guest| pages(GPA + USED_OFF, 6 + 8 * u64::from(g.size));
    for features in [VERSION_1 | F_MRG_RXBUF | F_EVENT_IDX, VERSION_1] {
        // Host to guest, buffers straddling pages.
        let mut g = Guest::new(64);
        let dirty = log(4096);
        let mut cfg = g.cfg(features, None);
        cfg.log = Some(dirty.clone());
        let mut ring = SplitRing::new(&cfg).unwrap();
        let pool = pool("vh-tx-log", 256, 1000 + pmd_core::mbuf::HEADROOM);
        let c = Counters::new();
        let mut allowed: BTreeSet<u64> = used_pages(&g).collect();
        g.buf(3000);
        let mrg = features & F_MRG_RXBUF != 0;
        let len = if mrg { 1500 } else { 9100 };
        for _ in 0..12 {
            let a = g.post_writable(&[len])[0];
            allowed.extend(pages(a, u64::from(len)));
        }
        // After the driver's writes: only the device's are compared.
        let before = g.read(GPA, REGION as usize);
        // The front end's sync: only the burst's marks are left.
        dirty.clear();
        let frames: Vec<_> = [64usize, 1514, 9000].iter().map(|&l| frame(l, 9)).collect();
        assert_eq!(send(&mut ring, &frames, &pool, &c), 3);
        let after = g.read(GPA, REGION as usize);
        let changed = check_log(&dirty, GPA, &before, &after, &allowed);
        assert!(changed >= 4, "{changed} pages changed");
        assert_eq!(g.used().len(), if mrg { 10 } else { 3 });
        // Guest to host: the used ring only (the buffers are read).
        let mut g = Guest::new(64);
        let dirty = log(4096);
        let mut cfg = g.cfg(features, None);
        cfg.log = Some(dirty.clone());
        let mut ring = SplitRing::new(&cfg).unwrap();
        for k in 0..5 {
            let mut bytes = vec![0u8; 12];
            bytes.extend(frame(1514, k));
            g.post_readable(&bytes, &[12]);
        }
        let before = g.read(GPA, REGION as usize);
        dirty.clear();
        let mut batch = PktBatch::new();
        assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(true)), 5);
        let after = g.read(GPA, REGION as usize);
        let allowed: BTreeSet<u64> = used_pages(&g).collect();
        assert_eq!(check_log(&dirty, GPA, &before, &after, &allowed), 1);
        batch.clear();
        assert_eq!(pool.stats().in_use, 0);
    }
}
