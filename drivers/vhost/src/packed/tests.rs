//! A tiny packed-ring driver (the guest's side, written by hand from virtio 1.2 §2.8)
//! over a memfd-backed memory table, against the device side: frames both ways
//! byte-exact, chains (also across the end of the ring), MRG_RXBUF, the ring wrapping
//! many times, notifications and hostile descriptors.

use super::guest::{DESC_F_AVAIL, DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_USED, DESC_F_WRITE};
use super::*;
use crate::burst::{RxCtx, F_INDIRECT_DESC, F_MRG_RXBUF, F_VERSION_1};
use crate::mem::tests::GuestBytes;
use crate::split::tests::{frame, memory, pool, take_signals, tcp4, Counters, GPA, REGION, UVA};
use crate::vring::VringAddrs;
use pmd_core::mbuf::{PktBatch, DEFAULT_BUF_SIZE, HEADROOM, TX_IPV4, TX_TCP_SEG};
use pmd_core::vnet::{VnetHdr, GSO_TCPV4};
use pmd_core::Mempool;
use std::collections::HashMap;

/// Where the ring areas and the buffers are in the region.
const DESC_OFF: u64 = 0;
const DRIVER_OFF: u64 = 0x1_0000;
const DEVICE_OFF: u64 = 0x1_0010;
const BUF_OFF: u64 = 0x4_0000;

const VERSION_1: u64 = F_VERSION_1;
const EVENT_IDX: u64 = crate::burst::F_EVENT_IDX;

/// The driver side of one packed ring.
struct Driver {
    mem: Arc<GuestMemory>,
    size: u16,
    /// Next position to make available, and the driver's avail wrap counter.
    next: u16,
    wrap: bool,
    /// Next position where a used descriptor is expected, and its wrap counter.
    used_pos: u16,
    used_wrap: bool,
    /// Positions each outstanding buffer id takes.
    outstanding: HashMap<u16, u16>,
    /// Outstanding buffer ids in the order they were made available.
    order: std::collections::VecDeque<u16>,
    /// Bump allocator over the buffer area.
    next_buf: u64,
}

/// Byte access to the ring's memory ([`GuestBytes`]) goes to the guest memory.
impl std::ops::Deref for Driver {
    type Target = GuestMemory;

    fn deref(&self) -> &GuestMemory {
        &self.mem
    }
}

impl Driver {
    fn new(size: u16) -> Driver {
        Driver::at(size, 0, true)
    }

    /// A ring whose driver starts at position `pos` of lap `wrap` (a resumed ring).
    fn at(size: u16, pos: u16, wrap: bool) -> Driver {
        let d = Driver {
            mem: memory(),
            size,
            next: pos,
            wrap,
            used_pos: pos,
            used_wrap: wrap,
            outstanding: HashMap::new(),
            order: Default::default(),
            next_buf: BUF_OFF,
        };
        // Descriptors of the previous lap: used, as a device would have left them.
        for i in 0..size {
            let lap = if i < pos { wrap } else { !wrap };
            let f = if lap { DESC_F_AVAIL | DESC_F_USED } else { 0 };
            d.w16(GPA + DESC_OFF + 16 * u64::from(i) + 14, f);
        }
        d
    }

    fn cfg(&self, features: u64, call: Option<Arc<OwnedFd>>) -> VringConfig {
        VringConfig {
            index: 0,
            size: self.size,
            base: self.next | if self.wrap { BASE_WRAP } else { 0 },
            addrs: VringAddrs {
                desc: UVA + DESC_OFF,
                avail: UVA + DRIVER_OFF,
                used: UVA + DEVICE_OFF,
                ..Default::default()
            },
            features: features | pmd_core::vnet::features::VIRTIO_F_RING_PACKED,
            mem: self.mem.clone(),
            call,
            kick: None,
            log: None,
        }
    }

    fn ring(&self, features: u64) -> PackedRing {
        PackedRing::new(&self.cfg(features, None)).unwrap()
    }

    /// A buffer of `len` bytes in the buffer area (wrapping around it).
    fn buf(&mut self, len: u64) -> u64 {
        if self.next_buf + len > REGION {
            self.next_buf = BUF_OFF;
        }
        let a = GPA + self.next_buf;
        self.next_buf += len.div_ceil(64) * 64;
        a
    }

    /// Writes descriptor `i` whole (flags included).
    fn set_desc(&self, i: u16, addr: u64, len: u32, id: u16, flags: u16) {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&id.to_le_bytes());
        b[14..].copy_from_slice(&flags.to_le_bytes());
        self.write(GPA + DESC_OFF + 16 * u64::from(i), &b);
    }

    /// AVAIL/USED bits that make a descriptor available in lap `wrap`.
    fn avail_bits(wrap: bool) -> u16 {
        if wrap {
            DESC_F_AVAIL
        } else {
            DESC_F_USED
        }
    }

    /// Posts raw descriptors `(addr, len, flags without AVAIL/USED)` from the next
    /// position, all with buffer id `id`, the first one's flags last; returns the id.
    fn post_raw(&mut self, descs: &[RawDesc], id: u16) -> u16 {
        let (first, mut pos, mut wrap) = (self.next, self.next, self.wrap);
        let mut first_flags = 0;
        for (k, &(addr, len, flags)) in descs.iter().enumerate() {
            let f = flags | Self::avail_bits(wrap);
            if k == 0 {
                // Everything but the flags, which stay as they were for now.
                first_flags = f;
                let old = self.r16(GPA + DESC_OFF + 16 * u64::from(pos) + 14);
                self.set_desc(pos, addr, len, id, old);
            } else {
                self.set_desc(pos, addr, len, id, f);
            }
            pos += 1;
            if pos == self.size {
                pos = 0;
                wrap = !wrap;
            }
        }
        // The first descriptor's flags make the chain available.
        self.w16(GPA + DESC_OFF + 16 * u64::from(first) + 14, first_flags);
        (self.next, self.wrap) = (pos, wrap);
        self.outstanding.insert(id, descs.len() as u16);
        self.order.push_back(id);
        id
    }

    /// Posts a chain of buffers `(gpa, len, writable)`; its id is its first position.
    fn post(&mut self, bufs: &[(u64, u32, bool)]) -> u16 {
        let id = self.next;
        let descs: Vec<_> = bufs
            .iter()
            .enumerate()
            .map(|(k, &(a, l, w))| {
                let next = if k + 1 < bufs.len() { DESC_F_NEXT } else { 0 };
                (a, l, next | if w { DESC_F_WRITE } else { 0 })
            })
            .collect();
        self.post_raw(&descs, id)
    }

    /// Posts `bytes` cut at `cuts` (lengths of the first pieces) as a readable chain.
    fn post_readable(&mut self, bytes: &[u8], cuts: &[usize]) -> u16 {
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
    fn post_writable(&mut self, lens: &[u32]) -> Vec<u64> {
        let bufs: Vec<_> = lens
            .iter()
            .map(|&l| (self.buf(u64::from(l)), l, true))
            .collect();
        self.post(&bufs);
        bufs.iter().map(|b| b.0).collect()
    }

    /// The used descriptor at the expected position, if the device wrote one there:
    /// (id, len, flags).
    fn next_used(&self) -> Option<(u16, u32, u16)> {
        let at = GPA + DESC_OFF + 16 * u64::from(self.used_pos);
        let flags = self.r16(at + 14);
        let (a, u) = (flags & DESC_F_AVAIL != 0, flags & DESC_F_USED != 0);
        (a == self.used_wrap && u == self.used_wrap)
            .then(|| (self.r16(at + 12), self.r32(at + 8), flags))
    }

    /// The used descriptors written since the last call: (id, len, flags).
    fn used(&mut self) -> Vec<(u16, u32, u16)> {
        let mut v = Vec::new();
        while let Some((id, len, flags)) = self.next_used() {
            let n = self
                .outstanding
                .remove(&id)
                .unwrap_or_else(|| panic!("id {id} used but not outstanding"));
            self.order.retain(|&o| o != id);
            v.push((id, len, flags));
            self.skip_used(n);
        }
        v
    }

    /// Moves the expected used position `n` descriptors on.
    fn skip_used(&mut self, n: u16) {
        let p = self.used_pos + n;
        if p >= self.size {
            self.used_pos = p - self.size;
            self.used_wrap = !self.used_wrap;
        } else {
            self.used_pos = p;
        }
    }

    /// The used descriptors written since the last call, read as an IN_ORDER driver
    /// does: each one returns every outstanding chain up to and including its id, and
    /// the next one is expected after those chains. Returns (id, len, flags, chains
    /// it returned).
    fn used_in_order(&mut self) -> Vec<(u16, u32, u16, usize)> {
        let mut v = Vec::new();
        while let Some((id, len, flags)) = self.next_used() {
            assert!(self.order.contains(&id), "id {id} used but not outstanding");
            let mut chains = 0;
            while let Some(o) = self.order.pop_front() {
                let n = self.outstanding.remove(&o).unwrap();
                self.skip_used(n);
                chains += 1;
                if o == id {
                    break;
                }
            }
            v.push((id, len, flags, chains));
        }
        v
    }

    fn set_driver_event(&self, off_wrap: u16, flags: u16) {
        self.w16(GPA + DRIVER_OFF, off_wrap);
        self.w16(GPA + DRIVER_OFF + 2, flags);
    }

    fn device_event_flags(&self) -> u16 {
        self.r16(GPA + DEVICE_OFF + 2)
    }
}

/// Host to guest: sends `frames` (as mbufs from `pool`), returns what was consumed.
fn send(ring: &mut PackedRing, frames: &[Vec<u8>], pool: &Mempool, c: &Counters) -> usize {
    let mut batch = PktBatch::new();
    for f in frames {
        batch.push(Mbuf::from_slice(f, pool).unwrap()).unwrap();
    }
    ring.enqueue(batch.as_slice(), &c.tx())
}

/// Guest to host: receives everything available, returns the frames.
fn receive(ring: &mut PackedRing, pool: &Mempool, rx: &RxCtx<'_>) -> Vec<Vec<u8>> {
    let mut batch = PktBatch::new();
    let mut got = Vec::new();
    loop {
        let n = ring.dequeue(&mut batch, 32, pool, rx);
        if n == 0 {
            return got;
        }
        got.extend(batch.iter().map(|m| m.to_vec()));
        batch.clear();
    }
}

fn with_hdr(f: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 12];
    b.extend_from_slice(f);
    b
}

#[test]
fn refuses_bad_sizes_areas_and_bases() {
    let d = Driver::new(256);
    for size in [0u16, 3, 100, 65535] {
        let mut c = d.cfg(VERSION_1, None);
        c.size = size;
        assert_eq!(PackedRing::new(&c).unwrap_err(), RingSetupError::Size(size));
    }
    for (desc, driver, device, area) in [
        (UVA + 8, UVA + DRIVER_OFF, UVA + DEVICE_OFF, "desc"),
        (
            UVA + REGION - 16 * 255,
            UVA + DRIVER_OFF,
            UVA + DEVICE_OFF,
            "desc",
        ),
        (UVA, UVA + DRIVER_OFF + 2, UVA + DEVICE_OFF, "driver"),
        (UVA, UVA + DRIVER_OFF, UVA + REGION - 2, "device"),
        (UVA, 0, UVA + DEVICE_OFF, "driver"),
    ] {
        let mut c = d.cfg(VERSION_1, None);
        c.addrs = VringAddrs {
            desc,
            avail: driver,
            used: device,
            ..Default::default()
        };
        match PackedRing::new(&c) {
            Err(RingSetupError::Area { area: a, .. }) => assert_eq!(a, area),
            other => panic!("{area}: {other:?}"),
        }
    }
    let mut c = d.cfg(VERSION_1, None);
    c.base = 256 | BASE_WRAP;
    assert_eq!(
        PackedRing::new(&c).unwrap_err(),
        RingSetupError::Base {
            index: 256,
            size: 256
        }
    );
    let r = d.ring(VERSION_1);
    assert_eq!(r.last_avail(), BASE_WRAP, "position 0, wrap counter 1");
    assert!(!r.is_broken());
    assert_eq!(d.device_event_flags(), EVENT_F_DISABLE, "kicks suppressed");
}

#[test]
fn guest_to_host_frames_byte_exact_in_every_layout() {
    let mut d = Driver::new(256);
    let mut ring = d.ring(VERSION_1);
    let pool = pool("vhp-rx-exact", 512, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    let mut sent = Vec::new();
    for (k, &len) in [60usize, 64, 1514, 2048, 2049, 4000, 9000]
        .iter()
        .enumerate()
    {
        let f = frame(len, k as u8);
        let bytes = with_hdr(&f);
        let layouts: [&[usize]; 4] = [&[12], &[], &[5], &[12, 7, 100, 1]];
        for cuts in layouts {
            d.post_readable(&bytes, cuts);
            sent.push(f.clone());
        }
    }
    let got = receive(&mut ring, &pool, &c.rx(true));
    assert_eq!(got, sent);
    let used = d.used();
    assert_eq!(used.len(), sent.len());
    assert!(used
        .iter()
        .all(|&(_, len, f)| len == 0 && f & DESC_F_WRITE == 0));
    assert_eq!(c.errs(), [0; 4]);
    let s = c.stats.snapshot();
    assert_eq!(s.packets, sent.len() as u64);
    assert_eq!(s.bytes, sent.iter().map(|f| f.len() as u64).sum::<u64>());
    assert_eq!(pool.stats().in_use, 0);
    assert_eq!(ring.last_avail(), (d.next) | BASE_WRAP);
}

/// Whether descriptor `pos` still holds the flags the driver made it available with
/// in lap `wrap`.
fn still_available(d: &Driver, pos: u16, wrap: bool) -> bool {
    let f = d.r16(GPA + DESC_OFF + 16 * u64::from(pos) + 14);
    f & (DESC_F_AVAIL | DESC_F_USED) == Driver::avail_bits(wrap)
}

#[test]
fn in_order_guest_to_host_bursts_are_returned_by_one_used_descriptor() {
    let in_order = pmd_core::vnet::features::VIRTIO_F_IN_ORDER;
    let mut d = Driver::new(16);
    let mut ring = d.ring(VERSION_1 | in_order);
    let pool = pool("vhp-rx-inorder", 256, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    let mut sent = Vec::new();
    // Chains of 1, 2, 3, 1 and 2 descriptors: positions 0, 1, 3, 6 and 7 (9 in all).
    let post = |d: &mut Driver, sent: &mut Vec<Vec<u8>>, k: usize, cuts: &[usize]| {
        let f = frame(60 + 100 * k, k as u8);
        let id = d.post_readable(&with_hdr(&f), cuts);
        sent.push(f);
        id
    };
    let mut ids = Vec::new();
    for (k, cuts) in [&[][..], &[12], &[12, 30], &[], &[40]].iter().enumerate() {
        ids.push(post(&mut d, &mut sent, k, cuts));
    }
    assert_eq!(ids, [0, 1, 3, 6, 7]);
    let got = receive(&mut ring, &pool, &c.rx(true));
    assert_eq!(got, sent[..5]);
    // One used descriptor at the burst's first position, with the last chain's id.
    for &id in &ids[1..] {
        assert!(still_available(&d, id, true), "position {id} was written");
    }
    let used = d.used_in_order();
    assert_eq!(used.len(), 1);
    let (id, len, flags, chains) = used[0];
    assert_eq!((id, len, chains), (7, 0, 5));
    assert_eq!(
        flags & (DESC_F_AVAIL | DESC_F_USED),
        DESC_F_AVAIL | DESC_F_USED
    );
    assert_eq!(ring.last_avail(), 9 | BASE_WRAP);
    // Across the end of the ring: positions 9..=15 and 0..=2 in two bursts of at most 3
    // packets, each returned by its own used descriptor.
    let mut ids = Vec::new();
    for (k, cuts) in [&[][..], &[12, 30], &[], &[12], &[], &[12, 30]]
        .iter()
        .enumerate()
    {
        ids.push(post(&mut d, &mut sent, 5 + k, cuts));
    }
    assert_eq!(ids, [9, 10, 13, 14, 0, 1]);
    let rx = c.rx(true);
    let mut batch = PktBatch::new();
    assert_eq!(ring.dequeue(&mut batch, 3, &pool, &rx), 3);
    assert_eq!(ring.dequeue(&mut batch, 3, &pool, &rx), 3);
    let got: Vec<_> = batch.iter().map(|m| m.to_vec()).collect();
    assert_eq!(got, sent[5..]);
    let used = d.used_in_order();
    let summary: Vec<_> = used.iter().map(|u| (u.0, u.1, u.3)).collect();
    assert_eq!(summary, [(13, 0, 3), (1, 0, 3)]);
    assert_eq!(ring.last_avail(), 4, "position 4 of the second lap");
    // The descriptors left with the driver's flags are not taken again in the next lap.
    batch.clear();
    assert_eq!(ring.dequeue(&mut batch, 32, &pool, &rx), 0);
    assert_eq!(c.errs(), [0; 4]);
    assert_eq!(c.stats.snapshot().packets, sent.len() as u64);
    drop(batch);
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn host_to_guest_frames_byte_exact_one_chain_each() {
    let mut d = Driver::new(64);
    let mut ring = d.ring(VERSION_1);
    // Small mbufs: the packets are mbuf chains, copied segment by segment.
    let pool = pool("vhp-tx-exact", 512, 512 + HEADROOM);
    let c = Counters::new();
    let frames: Vec<_> = [60usize, 64, 1514, 2049, 9000]
        .iter()
        .map(|&l| frame(l, l as u8))
        .collect();
    let mut layouts = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if i % 2 == 0 {
            layouts.push(d.post_writable(&[12, f.len() as u32 + 100]));
        } else {
            layouts.push(d.post_writable(&[f.len() as u32 + 12]));
        }
    }
    assert_eq!(send(&mut ring, &frames, &pool, &c), frames.len());
    let used = d.used();
    assert_eq!(used.len(), frames.len());
    for ((f, bufs), &(_, len, flags)) in frames.iter().zip(&layouts).zip(&used) {
        assert_eq!(len as usize, f.len() + 12);
        assert_ne!(flags & DESC_F_WRITE, 0, "written");
        let (hdr, data) = if bufs.len() == 2 {
            (d.read(bufs[0], 12), d.read(bufs[1], f.len()))
        } else {
            let all = d.read(bufs[0], f.len() + 12);
            (all[..12].to_vec(), all[12..].to_vec())
        };
        assert_eq!(hdr, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(&data, f);
    }
    assert_eq!(c.stats.snapshot().packets, frames.len() as u64);
    // Nothing posted: nothing consumed.
    assert_eq!(send(&mut ring, &frames, &pool, &c), 0);
    assert_eq!(c.errs(), [0; 4]);
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn host_to_guest_merges_buffers_and_offloads() {
    let mut d = Driver::new(16);
    let mut ring = d.ring(VERSION_1 | F_MRG_RXBUF);
    let pool = pool("vhp-tx-mrg", 256, 1000 + HEADROOM);
    let c = Counters::new();
    let mut bufs = Vec::new();
    for _ in 0..10 {
        bufs.push(d.post_writable(&[1500])[0]);
    }
    let f = frame(9000, 5);
    let small = frame(64, 6);
    assert_eq!(send(&mut ring, &[f.clone(), small.clone()], &pool, &c), 2);
    let used = d.used();
    let lens: Vec<u32> = used.iter().map(|u| u.1).collect();
    assert_eq!(lens, [1500, 1500, 1500, 1500, 1500, 1500, 12, 76]);
    let mut stream = Vec::new();
    for (a, u) in bufs.iter().zip(&used[..7]) {
        stream.extend(d.read(*a, u.1 as usize));
    }
    assert_eq!(&stream[10..12], &7u16.to_le_bytes());
    assert_eq!(&stream[12..], &f[..]);
    let s = d.read(bufs[7], 76);
    assert_eq!(&s[10..12], &1u16.to_le_bytes());
    assert_eq!(&s[12..], &small[..]);
    // Two buffers left: 9000 bytes do not fit, the burst stops and nothing is used;
    // once more buffers come it goes.
    assert_eq!(send(&mut ring, std::slice::from_ref(&f), &pool, &c), 0);
    assert_eq!(d.used().len(), 0);
    for _ in 0..6 {
        bufs.push(d.post_writable(&[1500])[0]);
    }
    assert_eq!(send(&mut ring, std::slice::from_ref(&f), &pool, &c), 1);
    assert_eq!(d.used().len(), 7);
    // A TSO request becomes the header.
    let mut d = Driver::new(16);
    let features = VERSION_1 | crate::burst::F_GUEST_CSUM | crate::burst::F_GUEST_TSO4;
    let mut ring = d.ring(features);
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
    let b = d.post_writable(&[9000])[0];
    assert_eq!(ring.enqueue(std::slice::from_ref(&tso), &c.tx()), 1);
    let h = VnetHdr::from_bytes(&d.read(b, 10).try_into().unwrap());
    assert_eq!((h.gso_type, h.gso_size, h.hdr_len), (GSO_TCPV4, 1448, 54));
    assert_eq!(d.read(b + 12, big.len()), big);
    drop(tso);
    assert_eq!(c.errs(), [0; 4]);
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn host_to_guest_too_long_is_dropped() {
    // Without MRG_RXBUF: longer than the chain, dropped; the chain takes the next one.
    let mut d = Driver::new(4);
    let mut ring = d.ring(VERSION_1);
    let pool = pool("vhp-tx-long", 64, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    let a = d.post_writable(&[200])[0];
    let small = frame(100, 1);
    assert_eq!(
        send(&mut ring, &[frame(1000, 0), small.clone()], &pool, &c),
        2
    );
    assert_eq!(c.errs(), [0, 0, 0, 1]);
    assert_eq!(d.used().iter().map(|u| u.1).collect::<Vec<_>>(), [112]);
    assert_eq!(d.read(a + 12, 100), small);
    // With MRG_RXBUF: the whole ring offered and still too small.
    let mut d = Driver::new(4);
    let mut ring = d.ring(VERSION_1 | F_MRG_RXBUF);
    let c = Counters::new();
    for _ in 0..4 {
        d.post_writable(&[100]);
    }
    assert_eq!(
        send(&mut ring, &[frame(1000, 0), frame(50, 1)], &pool, &c),
        2
    );
    assert_eq!(c.errs(), [0, 0, 0, 1]);
    assert_eq!(d.used().len(), 1);
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn the_ring_wraps_many_times_both_ways() {
    // An 8-entry ring, chains of 1..=3 descriptors: chains cross the end of the ring
    // and both wrap counters flip dozens of times.
    for (pos, wrap) in [(0u16, true), (5, false)] {
        let mut d = Driver::at(8, pos, wrap);
        let mut ring = d.ring(VERSION_1 | F_MRG_RXBUF);
        assert_eq!(ring.last_avail(), pos | if wrap { BASE_WRAP } else { 0 });
        let pool = pool("vhp-wrap", 64, DEFAULT_BUF_SIZE);
        let c = Counters::new();
        let mut batch = PktBatch::new();
        for k in 0..100usize {
            let f = frame(60 + k * 37 % 3000, k as u8);
            let b = with_hdr(&f);
            let cuts: &[usize] = match k % 3 {
                0 => &[],
                1 => &[12],
                _ => &[12, 30],
            };
            d.post_readable(&b, cuts);
            assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(true)), 1);
            assert_eq!(batch.pop().unwrap().to_vec(), f);
            let lens: &[u32] = match k % 3 {
                0 => &[4000],
                1 => &[12, 4000],
                _ => &[100, 100, 4000],
            };
            let bufs = d.post_writable(lens);
            assert_eq!(send(&mut ring, std::slice::from_ref(&f), &pool, &c), 1);
            let mut stream = Vec::new();
            for (a, l) in bufs.iter().zip(lens) {
                stream.extend(d.read(*a, *l as usize));
            }
            assert_eq!(&stream[12..12 + f.len()], &f[..]);
            let used = d.used();
            assert_eq!(used.len(), 2);
            assert_eq!(used[1].1 as usize, f.len() + 12);
        }
        assert_eq!(
            ring.last_avail(),
            d.next | if d.wrap { BASE_WRAP } else { 0 }
        );
        assert_eq!(c.errs(), [0; 4]);
        assert_eq!(c.stats.snapshot().packets, 200);
        assert_eq!(pool.stats().in_use, 0);
    }
}

#[test]
fn guest_to_host_stops_without_mbufs_and_leaves_the_chain() {
    let mut d = Driver::new(16);
    let mut ring = d.ring(VERSION_1);
    let pool = pool("vhp-rx-nombuf", 3, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    for k in 0..3u8 {
        d.post_readable(&with_hdr(&frame(if k == 1 { 3000 } else { 100 }, k)), &[]);
    }
    let hold = pool.alloc().unwrap();
    let mut batch = PktBatch::new();
    assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(true)), 1);
    assert_eq!(c.stats.snapshot().no_mbuf, 1);
    assert_eq!(d.used().len(), 1);
    drop(hold);
    batch.clear();
    assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(true)), 2);
    assert_eq!(batch.as_slice()[0].len(), 3000);
    assert_eq!(d.used().len(), 2);
    drop(batch);
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn notifications_follow_the_drivers_wishes() {
    let pool = pool("vhp-notify", 64, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    let one = vec![frame(64, 1)];
    let call = Arc::new(pmd_core::unix::eventfd().unwrap());
    // ENABLE: every burst that used chains; DISABLE: none; nothing used: none.
    let mut d = Driver::new(16);
    let mut ring = PackedRing::new(&d.cfg(VERSION_1, Some(call.clone()))).unwrap();
    assert_eq!(d.device_event_flags(), EVENT_F_DISABLE);
    d.post_writable(&[2048]);
    assert_eq!(send(&mut ring, &one, &pool, &c), 1);
    assert_eq!(take_signals(&call), 1);
    d.set_driver_event(0, EVENT_F_DISABLE);
    d.post_writable(&[2048]);
    assert_eq!(send(&mut ring, &one, &pool, &c), 1);
    assert_eq!(take_signals(&call), 0);
    d.set_driver_event(0, EVENT_F_ENABLE);
    assert_eq!(send(&mut ring, &one, &pool, &c), 0);
    assert_eq!(take_signals(&call), 0);
    // DESC without EVENT_IDX is not valid: signalled anyway.
    d.set_driver_event(0, EVENT_F_DESC);
    d.post_writable(&[2048]);
    assert_eq!(send(&mut ring, &one, &pool, &c), 1);
    assert_eq!(take_signals(&call), 1);

    // EVENT_IDX: a signal only when the position in off_wrap is used. An 8-entry ring;
    // chains of one descriptor.
    let mut d = Driver::new(8);
    let mut ring = PackedRing::new(&d.cfg(VERSION_1 | EVENT_IDX, Some(call.clone()))).unwrap();
    d.set_driver_event(2 | BASE_WRAP, EVENT_F_DESC);
    for _ in 0..8 {
        d.post_writable(&[2048]);
    }
    let mut signals = Vec::new();
    for _ in 0..3 {
        assert_eq!(send(&mut ring, &one, &pool, &c), 1);
        signals.push(take_signals(&call));
    }
    assert_eq!(signals, [0, 0, 1]);
    // Position 4 passed by a burst of two: one signal. Position 1 of the next lap is not
    // reached by positions 5..=7.
    d.set_driver_event(4 | BASE_WRAP, EVENT_F_DESC);
    assert_eq!(
        send(&mut ring, &[one[0].clone(), one[0].clone()], &pool, &c),
        2
    );
    assert_eq!(take_signals(&call), 1);
    d.set_driver_event(1, EVENT_F_DESC);
    assert_eq!(
        send(
            &mut ring,
            &[one[0].clone(), one[0].clone(), one[0].clone()],
            &pool,
            &c
        ),
        3
    );
    assert_eq!(take_signals(&call), 0);
    assert_eq!(d.used().len(), 8);
    // Across the end: positions 0 and 1 of the lap with wrap counter 0.
    d.post_writable(&[2048]);
    d.post_writable(&[2048]);
    assert_eq!(
        send(&mut ring, &[one[0].clone(), one[0].clone()], &pool, &c),
        2
    );
    assert_eq!(take_signals(&call), 1);
    assert_eq!(pool.stats().in_use, 0);
}

/// Runs one hostile guest-to-host set-up on a fresh 16-entry ring; returns the
/// counters, checking that nothing was delivered, every chain taken came back (length
/// 0) and every mbuf is back in the pool.
fn hostile_rx(setup: impl FnOnce(&mut Driver)) -> [u64; 4] {
    hostile_rx_with(VERSION_1, setup)
}

/// [`hostile_rx`] with these features negotiated.
fn hostile_rx_with(features: u64, setup: impl FnOnce(&mut Driver)) -> [u64; 4] {
    let mut d = Driver::new(16);
    let mut ring = d.ring(features);
    let pool = pool("vhp-hostile-rx", 64, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    setup(&mut d);
    let mut batch = PktBatch::new();
    for _ in 0..3 {
        assert_eq!(ring.dequeue(&mut batch, 32, &pool, &c.rx(true)), 0);
    }
    let used = d.used();
    assert!(used.iter().all(|&(_, len, _)| len == 0));
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
    let ok = GPA + BUF_OFF;
    // A chain that never ends (NEXT on every descriptor of the ring): broken.
    assert_eq!(
        hostile_rx(|d| {
            d.post_raw(&[(ok, 100, DESC_F_NEXT); 16], 0);
        }),
        [1, 0, 0, 0]
    );
    // An address outside every region; past the region's end; wrapping.
    for (addr, len) in [
        (0u64, 100u32),
        (GPA + REGION - 50, 100),
        (u64::MAX - 10, 100),
    ] {
        assert_eq!(
            hostile_rx(|d| {
                d.post_raw(&[(addr, len, 0)], 0);
            }),
            [0, 1, 0, 0]
        );
    }
    // A device-writable buffer, an indirect descriptor, a buffer id beyond the ring,
    // too short for the header, exactly the header.
    for (len, flags, id) in [
        (100u32, DESC_F_WRITE, 0u16),
        (100, DESC_F_INDIRECT, 0),
        (100, 0, 16),
        (8, 0, 0),
        (12, 0, 0),
    ] {
        assert_eq!(
            hostile_rx(|d| {
                d.post_raw(&[(ok, len, flags)], id);
            }),
            [0, 0, 1, 0],
            "{len} {flags:#x} {id}"
        );
    }
    // A bad buffer in the middle of a chain: the whole chain goes back.
    assert_eq!(
        hostile_rx(|d| {
            d.post_raw(
                &[(ok, 12, DESC_F_NEXT), (0, 100, DESC_F_NEXT), (ok, 100, 0)],
                3,
            );
        }),
        [0, 1, 0, 0]
    );
    // Lengths adding up past the largest frame; lengths that would wrap a u32 sum.
    for len in [40_000u32, u32::MAX] {
        assert_eq!(
            hostile_rx(|d| {
                d.post_raw(&[(ok, len, DESC_F_NEXT), (ok, len, 0)], 0);
            }),
            [0, 0, 0, 1]
        );
    }
}

/// An indirect table of packed-layout entries `(addr, len, flags)` (ids 0), written to a
/// fresh buffer; returns its address and length.
fn packed_table(d: &mut Driver, entries: &[RawDesc]) -> (u64, u32) {
    let mut t = Vec::new();
    for &(addr, len, flags) in entries {
        t.extend_from_slice(&addr.to_le_bytes());
        t.extend_from_slice(&len.to_le_bytes());
        t.extend_from_slice(&0u16.to_le_bytes());
        t.extend_from_slice(&flags.to_le_bytes());
    }
    let at = d.buf(t.len() as u64);
    d.write(at, &t);
    (at, t.len() as u32)
}

#[test]
fn indirect_tables_both_ways() {
    let f = frame(300, 8);
    let pool = pool("vhp-indirect", 64, DEFAULT_BUF_SIZE);
    let c = Counters::new();
    // Guest to host: header and the frame in two pieces, in table order; the table
    // descriptor's WRITE flag is ignored, and so are the entries' flags (DPDK's driver
    // marks its header entry WRITE).
    let mut d = Driver::new(16);
    let mut ring = d.ring(VERSION_1 | F_INDIRECT_DESC);
    let (hdr, p1, p2) = (d.buf(12), d.buf(100), d.buf(200));
    d.write(hdr, &[0; 12]);
    d.write(p1, &f[..100]);
    d.write(p2, &f[100..]);
    let (t, len) = packed_table(
        &mut d,
        &[
            (hdr, 12, DESC_F_WRITE),
            (p1, 100, DESC_F_INDIRECT),
            (p2, 200, 0),
        ],
    );
    d.post_raw(&[(t, len, DESC_F_INDIRECT | DESC_F_WRITE)], 5);
    assert_eq!(
        receive(&mut ring, &pool, &c.rx(false)),
        std::slice::from_ref(&f)
    );
    let used: Vec<_> = d.used().iter().map(|u| (u.0, u.1)).collect();
    assert_eq!(used, [(5, 0)]);

    // Host to guest: a table of two device-writable buffers.
    let mut d = Driver::new(16);
    let mut ring = d.ring(VERSION_1 | F_INDIRECT_DESC);
    let (b0, b1) = (d.buf(12), d.buf(400));
    let (t, len) = packed_table(&mut d, &[(b0, 12, DESC_F_WRITE), (b1, 400, DESC_F_WRITE)]);
    d.post_raw(&[(t, len, DESC_F_INDIRECT)], 9);
    assert_eq!(send(&mut ring, std::slice::from_ref(&f), &pool, &c), 1);
    let used = d.used();
    assert_eq!((used.len(), used[0].0, used[0].1), (1, 9, 312));
    assert_ne!(used[0].2 & DESC_F_WRITE, 0, "written");
    assert_eq!(d.read(b0, 12), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(d.read(b1, 300), f);
    assert_eq!(c.errs(), [0; 4]);
    assert_eq!(pool.stats().in_use, 0);
}

#[test]
fn hostile_indirect_tables_are_counted_and_returned() {
    let ok = GPA + BUF_OFF;
    let f = VERSION_1 | F_INDIRECT_DESC;
    let chain = [0, 0, 1, 0];
    // A table followed by NEXT (the chain still ends where the ring says).
    assert_eq!(
        hostile_rx_with(f, |d| {
            let (t, len) = packed_table(d, &[(ok, 100, 0)]);
            d.post_raw(&[(t, len, DESC_F_INDIRECT | DESC_F_NEXT), (ok, 100, 0)], 0);
        }),
        chain
    );
    // Not whole entries; empty; more entries than the ring (17 > 16).
    for (entries, len) in [
        (vec![(ok, 100, 0); 2], Some(24)),
        (vec![(ok, 100, 0)], Some(0)),
        (vec![(ok, 1, 0); 17], None),
    ] {
        assert_eq!(
            hostile_rx_with(f, |d| {
                let (t, l) = packed_table(d, &entries);
                d.post_raw(&[(t, len.unwrap_or(l), DESC_F_INDIRECT)], 0);
            }),
            chain,
            "{entries:?} {len:?}"
        );
    }
    // The table outside guest memory; a buffer in it outside guest memory.
    assert_eq!(
        hostile_rx_with(f, |d| {
            d.post_raw(&[(GPA + REGION, 32, DESC_F_INDIRECT)], 0);
        }),
        [0, 1, 0, 0]
    );
    assert_eq!(
        hostile_rx_with(f, |d| {
            let (t, len) = packed_table(d, &[(GPA + REGION - 8, 100, 0)]);
            d.post_raw(&[(t, len, DESC_F_INDIRECT)], 0);
        }),
        [0, 1, 0, 0]
    );
    // Lengths adding up past the largest frame.
    assert_eq!(
        hostile_rx_with(f, |d| {
            let (t, len) = packed_table(d, &[(ok, 40_000, 0), (ok, 40_000, 0)]);
            d.post_raw(&[(t, len, DESC_F_INDIRECT)], 0);
        }),
        [0, 0, 0, 1]
    );
}

/// A raw descriptor: address, length, flags without AVAIL/USED.
type RawDesc = (u64, u32, u16);

#[test]
fn hostile_host_to_guest_chains_are_counted_and_returned() {
    let pool = pool("vhp-hostile-tx", 64, DEFAULT_BUF_SIZE);
    let ok = GPA + BUF_OFF;
    let cases: [(&[RawDesc], u16, [u64; 4]); 5] = [
        // A device-readable buffer in a device-to-driver chain.
        (&[(ok, 2048, 0)], 0, [0, 0, 1, 0]),
        // Outside every region.
        (&[(8, 2048, DESC_F_WRITE)], 0, [0, 1, 0, 0]),
        // An indirect descriptor.
        (&[(ok, 64, DESC_F_WRITE | DESC_F_INDIRECT)], 0, [0, 0, 1, 0]),
        // A buffer id beyond the ring.
        (&[(ok, 2048, DESC_F_WRITE)], 99, [0, 0, 1, 0]),
        // A good buffer then a bad one in the same chain.
        (
            &[
                (ok, 12, DESC_F_WRITE | DESC_F_NEXT),
                (0, 2048, DESC_F_WRITE),
            ],
            0,
            [0, 1, 0, 0],
        ),
    ];
    for mrg in [false, true] {
        for (descs, id, want) in cases {
            let mut d = Driver::new(16);
            let features = VERSION_1 | if mrg { F_MRG_RXBUF } else { 0 };
            let mut ring = d.ring(features);
            let c = Counters::new();
            d.post_raw(descs, id);
            assert_eq!(send(&mut ring, &[frame(100, 0)], &pool, &c), 1, "dropped");
            assert_eq!(c.errs(), want);
            let used = d.used();
            assert_eq!(used.len(), 1);
            assert_eq!((used[0].0, used[0].1), (id, 0));
            assert!(!ring.is_broken());
        }
    }
    // With MRG_RXBUF, a bad chain after a good one: both go back empty.
    let mut d = Driver::new(16);
    let mut ring = d.ring(VERSION_1 | F_MRG_RXBUF);
    let c = Counters::new();
    d.post_writable(&[100]);
    d.post_raw(&[(8, 100, DESC_F_WRITE)], 1);
    assert_eq!(send(&mut ring, &[frame(150, 0)], &pool, &c), 1);
    assert_eq!(
        d.used().iter().map(|u| (u.0, u.1)).collect::<Vec<_>>(),
        [(0, 0), (1, 0)]
    );
    assert_eq!(c.errs(), [0, 1, 0, 0]);
    // A chain without end breaks the ring.
    let mut d = Driver::new(16);
    let mut ring = d.ring(VERSION_1);
    d.post_raw(&[(ok, 4, DESC_F_WRITE | DESC_F_NEXT); 16], 0);
    assert_eq!(send(&mut ring, &[frame(100, 0)], &pool, &c), 0);
    assert!(ring.is_broken());
    assert_eq!(c.errs()[0], 1);
    assert_eq!(d.used().len(), 0);
    assert_eq!(pool.stats().in_use, 0);
}

/// A migration: with a dirty log in the configuration, every page a burst changes is
/// logged (buffers, used descriptors in the descriptor ring, the device event area,
/// MRG_RXBUF's `num_buffers`) and nothing else is; a receive logs the descriptor ring
/// only (with IN_ORDER, one used descriptor for the burst).
#[test]
fn a_migration_logs_every_page_the_device_writes() {
    use crate::dirty::tests::{check_log, log, pages};
    use std::collections::BTreeSet;
    let ring_pages = |d: &Driver| {
        pages(GPA + DESC_OFF, 16 * u64::from(d.size)).chain(pages(GPA + DEVICE_OFF, 4))
    };
    for features in [
        VERSION_1 | F_MRG_RXBUF | EVENT_IDX,
        VERSION_1 | pmd_core::vnet::features::VIRTIO_F_IN_ORDER,
    ] {
        let mut d = Driver::new(64);
        let dirty = log(4096);
        let mut cfg = d.cfg(features, None);
        cfg.log = Some(dirty.clone());
        let mut ring = PackedRing::new(&cfg).unwrap();
        let pool = pool("vhp-tx-log", 256, 1000 + HEADROOM);
        let c = Counters::new();
        let mut allowed: BTreeSet<u64> = ring_pages(&d).collect();
        d.buf(3000);
        let mrg = features & F_MRG_RXBUF != 0;
        let len = if mrg { 1500 } else { 9100 };
        for _ in 0..12 {
            let a = d.post_writable(&[len])[0];
            allowed.extend(pages(a, u64::from(len)));
        }
        let before = d.read(GPA, REGION as usize);
        // The front end's sync: only the burst's marks are left.
        dirty.clear();
        let frames: Vec<_> = [64usize, 1514, 9000].iter().map(|&l| frame(l, 9)).collect();
        assert_eq!(send(&mut ring, &frames, &pool, &c), 3);
        let after = d.read(GPA, REGION as usize);
        let changed = check_log(&dirty, GPA, &before, &after, &allowed);
        assert!(changed >= 4, "{changed} pages changed");
        assert_eq!(d.used().len(), if mrg { 10 } else { 3 });
        // Guest to host: the descriptor ring only (the buffers are read).
        let mut d = Driver::new(64);
        let dirty = log(4096);
        let mut cfg = d.cfg(features, None);
        cfg.log = Some(dirty.clone());
        let mut ring = PackedRing::new(&cfg).unwrap();
        for k in 0..5 {
            d.post_readable(&with_hdr(&frame(1514, k)), &[12]);
        }
        let before = d.read(GPA, REGION as usize);
        dirty.clear();
        assert_eq!(receive(&mut ring, &pool, &c.rx(true)).len(), 5);
        let after = d.read(GPA, REGION as usize);
        let allowed: BTreeSet<u64> = ring_pages(&d).collect();
        assert_eq!(check_log(&dirty, GPA, &before, &after, &allowed), 1);
        assert_eq!(pool.stats().in_use, 0);
    }
}
