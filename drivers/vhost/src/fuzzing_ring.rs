//! The `desc_chain` fuzz body: a split ring in a small memfd-backed memory table, a
//! hostile driver writing what the input says (descriptors with addresses inside,
//! across the end of or outside the region, any length, flags and `next`; available
//! entries in and out of range; available-index jumps; headers with any offload fields;
//! notification fields) between the device's receive and transmit bursts.
//!
//! Invariants checked after every burst: no panic; the published used index is the
//! ring's own position; every used element names the head the driver had put in the
//! available slot it consumed; receive chains come back with length 0; a transmit burst
//! consumes at most what it was given. After the input: every mbuf is back in its pool.
//!
//! Input: one byte of set-up (ring size 1..=8, features, scatter, LRO), then four bytes
//! an operation. Inputs with an odd number of operations run with a dirty log (a
//! migration, [`crate::dirty`]): the logging copies of the bursts see the same hostile
//! chains, and no page they mark may lie beyond the log, which covers the region. A descriptor with the INDIRECT flag names whatever its address holds
//! as a table (the buffers, the ring areas themselves, or nothing mapped).
//!
//! [`fuzz_desc_chain_packed`] does the same for a packed ring: a driver that posts chains
//! in ring order (wrap counters and all) mixed with raw descriptors written anywhere
//! with any flags, ids and AVAIL/USED bits, and any driver event suppression. Checked
//! after every burst: the ring's position stays inside the ring; every descriptor the
//! device changed was available in the lap its used flags name, now carries used flags
//! (AVAIL = USED, no NEXT/INDIRECT), and receive chains come back with length 0;
//! transmit chains have WRITE exactly when bytes were written. After the input: every
//! mbuf is back in its pool.

use crate::burst::{RxCtx, TxCtx};
use crate::dirty::{DirtyLog, LogDesc};
use crate::mem::{GuestMemory, RegionDesc};
use crate::packed::{PackedRing, BASE_WRAP};
use crate::split::SplitRing;
use crate::vring::{RingErrors, VringAddrs, VringConfig};
use pmd_core::ethdev::QueueStats;
use pmd_core::mbuf::{Mbuf, PktBatch, HEADROOM};
use pmd_core::mempool::MempoolConfig;
use pmd_core::vnet::{RxProcessor, VnetStats};
use pmd_core::Mempool;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Guest physical and front-end virtual address of the region, and its size.
const GPA: u64 = 0x1000;
const UVA: u64 = 0x10_0000;
const REGION: u64 = 16 << 10;
/// Offsets of the ring areas and the buffers in the region.
const AVAIL_OFF: u64 = 0x100;
const USED_OFF: u64 = 0x200;
const BUF_OFF: u64 = 0x400;
/// Largest ring built.
const MAX_SIZE: u16 = 8;

/// What one input did (the fixed-seed test checks the paths were reached).
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// Packets received from the guest.
    pub received: u64,
    /// Packets written to the guest.
    pub sent: u64,
    /// Chains refused (bad address, bad chain, too long).
    pub refused: u64,
    /// The ring was stopped (bad index).
    pub broken: bool,
    /// The ring ran with a dirty log.
    pub logged: bool,
}

/// The memory and pool of one thread, made once.
struct Env {
    mem: Arc<GuestMemory>,
    pool: Mempool,
    vstats: Arc<VnetStats>,
    /// The call eventfd (never read: a full count is not an error).
    call: Arc<OwnedFd>,
    base: *mut u8,
    /// The dirty log of the inputs that run with one: one byte, pages 0..8, the whole
    /// region.
    log: Arc<DirtyLog>,
    /// Pages marked beyond the log (must stay 0).
    outside: Arc<AtomicU64>,
}

thread_local! {
    static ENV: Env = Env::new();
}

impl Env {
    fn new() -> Env {
        // SAFETY: a valid NUL-terminated name and flags; the result is checked below.
        let fd = unsafe { libc::memfd_create(c"vhost-ring-fuzz".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create for the fuzzed ring");
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let file = std::fs::File::from(fd);
        file.set_len(REGION).expect("size the memfd");
        let d = RegionDesc {
            guest_phys_addr: GPA,
            memory_size: REGION,
            userspace_addr: UVA,
            mmap_offset: 0,
        };
        let mem = GuestMemory::build(&[d], vec![file.into()]).expect("the fuzz memory table");
        const { assert!((GPA + REGION).div_ceil(4096) <= 8) };
        // SAFETY: as above.
        let fd = unsafe { libc::memfd_create(c"vhost-ring-fuzz-log".as_ptr(), 0) };
        assert!(fd >= 0, "memfd_create for the fuzz log");
        // SAFETY: a fresh descriptor we own.
        let log_file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        log_file.set_len(1).expect("size the log memfd");
        let outside = Arc::new(AtomicU64::new(0));
        let log = LogDesc {
            mmap_size: 1,
            mmap_offset: 0,
        };
        let log = DirtyLog::map(log, log_file.into(), outside.clone()).expect("the fuzz log");
        let base = mem.gpa(GPA, REGION).expect("the whole region");
        let pool = Mempool::create_with(
            "vhost-fuzz",
            &MempoolConfig {
                size: 512,
                cache_size: 0,
                buf_size: 128 + HEADROOM,
            },
        )
        .expect("the fuzz mempool");
        Env {
            mem: Arc::new(mem),
            pool,
            vstats: Arc::new(VnetStats::default()),
            call: Arc::new(pmd_core::unix::eventfd().expect("the fuzz call eventfd")),
            base,
            log: Arc::new(log),
            outside,
        }
    }

    /// Stores `v` at byte `off` of the region (`off + 2 <= REGION`, even).
    fn w16(&self, off: u64, v: u16) {
        debug_assert!(off + 2 <= REGION && off.is_multiple_of(2));
        // SAFETY: inside the mapped region (checked by the callers' constants), 2-aligned
        // (the mapping is page-aligned); the device side reads it volatile or atomically.
        unsafe {
            self.base
                .add(off as usize)
                .cast::<u16>()
                .write_volatile(v.to_le())
        }
    }

    fn r16(&self, off: u64) -> u16 {
        // SAFETY: as for `w16`.
        u16::from_le(unsafe { self.base.add(off as usize).cast::<u16>().read_volatile() })
    }

    fn r32(&self, off: u64) -> u32 {
        // SAFETY: as for `w16`, 4-aligned offsets.
        u32::from_le(unsafe { self.base.add(off as usize).cast::<u32>().read_volatile() })
    }

    /// Writes `bytes` at byte `off` (clipped to the region).
    fn write(&self, off: u64, bytes: &[u8]) {
        let n = bytes.len().min((REGION - off.min(REGION)) as usize);
        // SAFETY: `off..off + n` lies inside the region.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(off as usize), n) };
    }
}

/// Whether the input runs with a dirty log: an odd number of operations.
fn logged(data: &[u8]) -> bool {
    (data.len().saturating_sub(1) / 4) % 2 == 1
}

/// A guest physical address chosen by an input byte: inside the buffer area mostly,
/// outside the region or near the top of the address space for two values.
fn addr(b: u8) -> u64 {
    match b {
        0xff => 0,
        0xfe => u64::MAX - 3,
        _ => GPA + BUF_OFF + u64::from(b) * 56,
    }
}

/// The driver's books: what it put in each available slot.
struct Driver {
    size: u16,
    avail: u16,
    shadow: [u16; MAX_SIZE as usize],
    used_seen: u16,
}

/// Runs one input (see the module docs).
pub fn fuzz_desc_chain(data: &[u8]) -> Outcome {
    ENV.with(|env| run(env, data))
}

fn run(env: &Env, data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let Some((&setup, ops)) = data.split_first() else {
        return out;
    };
    assert_eq!(env.pool.stats().in_use, 0, "a clean pool");
    // SAFETY: the ring areas are the first BUF_OFF bytes of the region.
    unsafe { std::ptr::write_bytes(env.base, 0, BUF_OFF as usize) };
    let size = 1u16 << (setup & 3);
    let f = setup >> 2;
    let mut features = 0u64;
    for (bit, feat) in [
        (0, 1u64 << 15),
        (1, 1 << 29),
        // VERSION_1 with INDIRECT_DESC; a legacy ring without (a table is a bad chain).
        (2, (1 << 32) | (1 << 28)),
        (4, (1 << 1) | (1 << 7)),
    ] {
        if f & (1 << bit) != 0 {
            features |= feat;
        }
    }
    let scatter = f & 8 != 0;
    let cfg = VringConfig {
        index: 0,
        size,
        base: 0,
        addrs: VringAddrs {
            desc: UVA,
            avail: UVA + AVAIL_OFF,
            used: UVA + USED_OFF,
            ..Default::default()
        },
        features,
        mem: env.mem.clone(),
        call: Some(env.call.clone()),
        kick: None,
        log: logged(data).then(|| env.log.clone()),
    };
    let mut ring = SplitRing::new(&cfg).expect("a valid ring");
    let stats = QueueStats::default();
    let errors = RingErrors::default();
    let proc = RxProcessor {
        lro: f & 32 != 0,
        stats: env.vstats.clone(),
    };
    let rx = RxCtx {
        stats: &stats,
        errors: &errors,
        vnet: &proc,
        scatter,
        port: 0,
    };
    let tx = TxCtx {
        stats: &stats,
        errors: &errors,
        vnet: &env.vstats,
    };
    let mut d = Driver {
        size,
        avail: 0,
        shadow: [0; MAX_SIZE as usize],
        used_seen: 0,
    };
    let mut batch = PktBatch::new();
    for op in ops.chunks_exact(4) {
        let (code, a, b, c) = (op[0], op[1], op[2], op[3]);
        match code & 7 {
            0 | 1 => {
                // A descriptor: flags from the op byte, `next` possibly beyond the table.
                let i = u64::from(u16::from(a) % size);
                let flags = u16::from((code >> 3) & 7);
                let len = u32::from(b) * 16 + u32::from(c & 15);
                let mut raw = [0u8; 16];
                raw[..8].copy_from_slice(&addr(c).to_le_bytes());
                raw[8..12].copy_from_slice(&len.to_le_bytes());
                raw[12..14].copy_from_slice(&flags.to_le_bytes());
                raw[14..].copy_from_slice(&u16::from(a >> 4).to_le_bytes());
                env.write(16 * i, &raw);
            }
            2 => {
                // An available entry (out of range for 0xff), published.
                let head = if b == 0xff {
                    size + u16::from(c)
                } else {
                    u16::from(b) % size
                };
                let slot = d.avail & (size - 1);
                d.shadow[usize::from(slot)] = head;
                env.w16(AVAIL_OFF + 4 + 2 * u64::from(slot), head);
                d.avail = d.avail.wrapping_add(1);
                env.w16(AVAIL_OFF + 2, d.avail);
            }
            3 => {
                // The available index moved by anything.
                d.avail = d
                    .avail
                    .wrapping_add(u16::from(a) | ((u16::from(b) << 8) * u16::from(c & 1)));
                env.w16(AVAIL_OFF + 2, d.avail);
            }
            4 => {
                let max = usize::from(a % 8) + 1;
                let n = ring.dequeue(&mut batch, max, &env.pool, &rx);
                assert!(n <= max && batch.len() == n);
                out.received += n as u64;
                batch.clear();
                check_used(env, &mut d, &ring, |_, len| {
                    assert_eq!(len, 0, "rx chains come back empty")
                });
            }
            5 => {
                let n = usize::from(a % 3) + 1;
                let mut bytes = [0u8; 512];
                for (i, x) in bytes.iter_mut().enumerate() {
                    *x = i as u8 ^ c;
                }
                for k in 0..n {
                    let len = (usize::from(b) * 2 + k) % bytes.len();
                    let Ok(m) = Mbuf::from_slice(&bytes[..len], &env.pool) else {
                        break;
                    };
                    let _ = batch.push(m);
                }
                let have = batch.len();
                let used = ring.enqueue(batch.as_slice(), &tx);
                assert!(used <= have);
                out.sent += used as u64;
                batch.clear();
                check_used(env, &mut d, &ring, |_, _| {});
            }
            6 => {
                env.w16(
                    AVAIL_OFF + 4 + 2 * u64::from(size),
                    d.avail.wrapping_add(u16::from(a)),
                );
                env.w16(AVAIL_OFF, u16::from(b & 1));
            }
            _ => {
                // A virtio-net header in a buffer: any flags, GSO type and offsets.
                let h = pmd_core::vnet::VnetHdr {
                    flags: b & 3,
                    gso_type: c & 0x85,
                    hdr_len: u16::from(c),
                    gso_size: u16::from(b) * 4,
                    csum_start: u16::from(a),
                    csum_offset: u16::from(c & 31),
                };
                env.write(addr(a).wrapping_sub(GPA), &h.to_bytes());
            }
        }
    }
    let e = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    out.refused = e(&errors.bad_addr) + e(&errors.bad_chain) + e(&errors.too_long);
    out.broken = ring.is_broken();
    assert_eq!(out.broken, e(&errors.bad_ring) > 0);
    out.logged = cfg.log.is_some();
    assert_eq!(
        env.outside.load(Ordering::Relaxed),
        0,
        "marked beyond the log"
    );
    drop(batch);
    drop(ring);
    assert_eq!(env.pool.stats().in_use, 0, "every mbuf back in the pool");
    out
}

/// Packed descriptor flags: NEXT, WRITE, INDIRECT, AVAIL, USED.
const P_NEXT: u16 = 1;
const P_WRITE: u16 = 2;
const P_INDIRECT: u16 = 4;
const P_AVAIL: u16 = 1 << 7;
const P_USED: u16 = 1 << 15;

/// The AVAIL/USED bits of a descriptor available in the lap of wrap counter `w`.
fn p_avail(w: bool) -> u16 {
    if w {
        P_AVAIL
    } else {
        P_USED
    }
}

/// Runs one packed-ring input (see the module docs).
pub fn fuzz_desc_chain_packed(data: &[u8]) -> Outcome {
    ENV.with(|env| run_packed(env, data))
}

/// The features chosen by bits of the set-up byte (as for the split ring), plus
/// RING_PACKED.
fn features_of(f: u8) -> u64 {
    let mut features = 1u64 << 34;
    for (bit, feat) in [
        (0, 1u64 << 15),
        (1, 1 << 29),
        // VERSION_1 with INDIRECT_DESC; a legacy ring without (a table is a bad chain).
        (2, (1 << 32) | (1 << 28)),
        (4, (1 << 1) | (1 << 7)),
    ] {
        if f & (1 << bit) != 0 {
            features |= feat;
        }
    }
    features
}

fn run_packed(env: &Env, data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let Some((&setup, ops)) = data.split_first() else {
        return out;
    };
    assert_eq!(env.pool.stats().in_use, 0, "a clean pool");
    // SAFETY: the ring areas are the first BUF_OFF bytes of the region.
    unsafe { std::ptr::write_bytes(env.base, 0, BUF_OFF as usize) };
    let size = 1u16 << (setup & 3);
    let f = setup >> 2;
    let cfg = VringConfig {
        index: 0,
        size,
        base: BASE_WRAP,
        addrs: VringAddrs {
            desc: UVA,
            avail: UVA + AVAIL_OFF,
            used: UVA + USED_OFF,
            ..Default::default()
        },
        features: features_of(f),
        mem: env.mem.clone(),
        call: Some(env.call.clone()),
        kick: None,
        log: logged(data).then(|| env.log.clone()),
    };
    let mut ring = PackedRing::new(&cfg).expect("a valid ring");
    let stats = QueueStats::default();
    let errors = RingErrors::default();
    let proc = RxProcessor {
        lro: f & 32 != 0,
        stats: env.vstats.clone(),
    };
    let rx = RxCtx {
        stats: &stats,
        errors: &errors,
        vnet: &proc,
        scatter: f & 8 != 0,
        port: 0,
    };
    let tx = TxCtx {
        stats: &stats,
        errors: &errors,
        vnet: &env.vstats,
    };
    // The driver's next position and wrap counter.
    let (mut dpos, mut dwrap) = (0u16, true);
    let desc_flags = |i: u16| env.r16(16 * u64::from(i) + 14);
    let mut batch = PktBatch::new();
    for op in ops.chunks_exact(4) {
        let (code, a, b, c) = (op[0], op[1], op[2], op[3]);
        let write_desc = |i: u16, addr: u64, len: u32, id: u16, flags: u16| {
            let mut raw = [0u8; 16];
            raw[..8].copy_from_slice(&addr.to_le_bytes());
            raw[8..12].copy_from_slice(&len.to_le_bytes());
            raw[12..14].copy_from_slice(&id.to_le_bytes());
            raw[14..].copy_from_slice(&flags.to_le_bytes());
            env.write(16 * u64::from(i), &raw);
        };
        match code & 7 {
            0 | 1 => {
                // A raw descriptor anywhere: any flags, id, AVAIL/USED bits.
                let i = u16::from(a) % size;
                let lap = match code >> 6 {
                    0 => p_avail(dwrap),
                    1 => p_avail(!dwrap),
                    2 => 0,
                    _ => P_AVAIL | P_USED,
                };
                let flags = u16::from((code >> 3) & 7) | lap;
                let len = u32::from(b) * 16 + u32::from(c & 15);
                write_desc(i, addr(c), len, u16::from(a >> 4), flags);
            }
            2 => {
                // A chain of 1..=3 descriptors posted in order, its first flags last.
                let k = u16::from(b % 3) + 1;
                let w = if code & 8 != 0 { P_WRITE } else { 0 };
                let (first, first_wrap) = (dpos, dwrap);
                for j in 0..k {
                    let next = if j + 1 < k { P_NEXT } else { 0 };
                    let len = u32::from(c) * 8 + 16;
                    let at = addr(a.wrapping_add(j as u8 * 40));
                    let flags = if j == 0 {
                        desc_flags(dpos)
                    } else {
                        next | w | p_avail(dwrap)
                    };
                    // The first keeps its old flags until the chain is complete.
                    write_desc(dpos, at, len, first, flags);
                    dpos += 1;
                    if dpos == size {
                        dpos = 0;
                        dwrap = !dwrap;
                    }
                }
                let next = if k > 1 { P_NEXT } else { 0 };
                env.w16(16 * u64::from(first) + 14, next | w | p_avail(first_wrap));
            }
            3 => {
                // Flags flipped to the other lap.
                let i = u16::from(a) % size;
                env.w16(16 * u64::from(i) + 14, desc_flags(i) ^ (P_AVAIL | P_USED));
            }
            4 | 5 => {
                let before: Vec<(u16, u32)> = (0..size)
                    .map(|i| (desc_flags(i), env.r32(16 * u64::from(i) + 8)))
                    .collect();
                let receive = code & 7 == 4;
                if receive {
                    let max = usize::from(a % 8) + 1;
                    let n = ring.dequeue(&mut batch, max, &env.pool, &rx);
                    assert!(n <= max && batch.len() == n);
                    out.received += n as u64;
                } else {
                    for k in 0..usize::from(a % 3) + 1 {
                        let mut bytes = [0u8; 512];
                        for (i, x) in bytes.iter_mut().enumerate() {
                            *x = i as u8 ^ c;
                        }
                        let len = (usize::from(b) * 2 + k) % bytes.len();
                        let Ok(m) = Mbuf::from_slice(&bytes[..len], &env.pool) else {
                            break;
                        };
                        let _ = batch.push(m);
                    }
                    let have = batch.len();
                    let used = ring.enqueue(batch.as_slice(), &tx);
                    assert!(used <= have);
                    out.sent += used as u64;
                }
                batch.clear();
                assert!(
                    ring.last_avail() & !BASE_WRAP < size,
                    "position inside the ring"
                );
                for (i, &(old, _)) in before.iter().enumerate() {
                    let new = desc_flags(i as u16);
                    if new == old {
                        continue;
                    }
                    let e = 16 * i as u64;
                    let w = new & P_AVAIL != 0;
                    assert_eq!(w, new & P_USED != 0, "used flags: AVAIL = USED");
                    assert_eq!(new & (P_NEXT | P_INDIRECT), 0);
                    assert!(
                        (old & P_AVAIL != 0) == w && (old & P_USED != 0) != w,
                        "only descriptors available in the lap become used"
                    );
                    let len = env.r32(e + 8);
                    if receive {
                        assert_eq!(len, 0, "rx chains come back empty");
                    }
                    assert_eq!(new & P_WRITE != 0, len > 0);
                }
            }
            6 => {
                env.w16(AVAIL_OFF, u16::from(a) | (u16::from(b) << 8));
                env.w16(AVAIL_OFF + 2, u16::from(c & 3));
            }
            _ => {
                let h = pmd_core::vnet::VnetHdr {
                    flags: b & 3,
                    gso_type: c & 0x85,
                    hdr_len: u16::from(c),
                    gso_size: u16::from(b) * 4,
                    csum_start: u16::from(a),
                    csum_offset: u16::from(c & 31),
                };
                env.write(addr(a).wrapping_sub(GPA), &h.to_bytes());
            }
        }
    }
    let e = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    out.refused = e(&errors.bad_addr) + e(&errors.bad_chain) + e(&errors.too_long);
    out.broken = ring.is_broken();
    assert_eq!(out.broken, e(&errors.bad_ring) > 0);
    out.logged = cfg.log.is_some();
    assert_eq!(
        env.outside.load(Ordering::Relaxed),
        0,
        "marked beyond the log"
    );
    drop(batch);
    drop(ring);
    assert_eq!(env.pool.stats().in_use, 0, "every mbuf back in the pool");
    out
}

/// Checks the used elements published since the last check: the used index is the
/// ring's position, and each element names the head of the slot it consumed.
fn check_used(env: &Env, d: &mut Driver, ring: &SplitRing, mut each: impl FnMut(u16, u32)) {
    let idx = env.r16(USED_OFF + 2);
    assert_eq!(idx, ring.last_avail(), "used index is the ring's position");
    assert!(idx.wrapping_sub(d.used_seen) <= d.size || ring.is_broken() && idx == d.used_seen);
    while d.used_seen != idx {
        let slot = d.used_seen & (d.size - 1);
        let e = USED_OFF + 4 + 8 * u64::from(slot);
        let id = env.r32(e);
        assert_eq!(
            id,
            u32::from(d.shadow[usize::from(slot)]),
            "only available heads come back"
        );
        assert!(id < u32::from(d.size));
        each(id as u16, env.r32(e + 4));
        d.used_seen = d.used_seen.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixed-seed run: small inputs, biased towards well-formed chains so that
    /// packets flow as well as fail.
    #[test]
    fn fixed_seed_fuzz_of_the_descriptor_walker() {
        const INPUTS: u64 = 1_000_000;
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let (mut total, mut received, mut sent, mut refused, mut broken) = (0u64, 0, 0, 0, 0);
        let mut logged_sent = 0u64;
        let mut data = Vec::with_capacity(32);
        for _ in 0..INPUTS {
            data.clear();
            let r = rnd();
            data.push(r as u8);
            let ops = 2 + (r >> 8) % 5;
            for k in 0..ops {
                let r = rnd();
                let hostile = (r >> 40) % 8 == 0;
                // Mostly: a descriptor, post it, then a burst.
                let code = match (k, (r >> 32) % 4) {
                    (0, _) => (r as u8 & !7) | if (r >> 44) % 4 == 0 { 1 } else { 0 },
                    (1, _) => 2,
                    (_, 0) => r as u8,
                    (_, 2) => 5,
                    (_, _) => 4,
                };
                let mut b = [code, (r >> 8) as u8, (r >> 16) as u8, (r >> 24) as u8];
                if !hostile {
                    // Keep flags to NEXT/WRITE, `next` in the table, addresses inside.
                    if code & 7 <= 1 {
                        b[0] &= if (r >> 48) % 4 == 0 { 0x1f } else { 0x17 };
                        b[1] &= 0x7;
                        b[3] %= 200;
                        b[2] %= 64;
                    }
                    if code & 7 == 2 {
                        b[2] %= 8;
                    }
                    if code & 7 == 3 {
                        b[1] %= 2;
                        b[3] &= !1;
                    }
                }
                data.extend_from_slice(&b);
            }
            let o = fuzz_desc_chain(&data);
            total += 1;
            received += o.received;
            sent += o.sent;
            refused += o.refused;
            broken += u64::from(o.broken);
            logged_sent += if o.logged { o.sent } else { 0 };
        }
        eprintln!(
            "desc_chain: {total} inputs, {received} received, {sent} sent ({logged_sent} with a dirty log), {refused} chains refused, {broken} rings stopped"
        );
        assert_eq!(total, INPUTS);
        assert!(
            received > 10_000 && sent > 10_000,
            "{received} received, {sent} sent"
        );
        assert!(
            refused > 10_000 && broken > 1_000,
            "{refused} refused, {broken} broken"
        );
        assert!(logged_sent > 1_000, "{logged_sent} sent with a dirty log");
    }

    /// The packed ring's fixed-seed run: chains posted in order with their wrap
    /// counters, mostly well-formed, mixed with raw hostile descriptors, flipped flags
    /// and any event suppression.
    #[test]
    fn fixed_seed_fuzz_of_the_packed_descriptor_walker() {
        const INPUTS: u64 = 1_000_000;
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let (mut total, mut received, mut sent, mut refused, mut broken) = (0u64, 0, 0, 0, 0);
        let mut logged_sent = 0u64;
        let mut data = Vec::with_capacity(40);
        for _ in 0..INPUTS {
            data.clear();
            let r = rnd();
            data.push(r as u8);
            let ops = 2 + (r >> 8) % 7;
            for k in 0..ops {
                let r = rnd();
                let hostile = (r >> 40) % 8 == 0;
                // Mostly: post a chain (readable or writable), then bursts.
                let code = match (k % 3, (r >> 32) % 4) {
                    (0, _) if !hostile => 2 | (r as u8 & 8),
                    (_, 0) => r as u8,
                    (_, 1) => 2 | (r as u8 & 8),
                    (_, 2) => 5,
                    (_, _) => 4,
                };
                let mut b = [code, (r >> 8) as u8, (r >> 16) as u8, (r >> 24) as u8];
                if !hostile && code & 7 == 2 {
                    // Buffers inside the region, most chains of one descriptor.
                    b[1] %= 200;
                    b[2] = if (r >> 48) % 4 == 0 { b[2] } else { 0 };
                    b[3] %= 200;
                }
                data.extend_from_slice(&b);
            }
            let o = fuzz_desc_chain_packed(&data);
            total += 1;
            received += o.received;
            sent += o.sent;
            refused += o.refused;
            broken += u64::from(o.broken);
            logged_sent += if o.logged { o.sent } else { 0 };
        }
        eprintln!(
            "desc_chain_packed: {total} inputs, {received} received, {sent} sent ({logged_sent} with a dirty log), {refused} chains refused, {broken} rings stopped"
        );
        assert_eq!(total, INPUTS);
        assert!(
            received > 10_000 && sent > 10_000,
            "{received} received, {sent} sent"
        );
        assert!(
            refused > 10_000 && broken > 1_000,
            "{refused} refused, {broken} broken"
        );
        assert!(logged_sent > 1_000, "{logged_sent} sent with a dirty log");
    }
}
