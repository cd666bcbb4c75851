//! The body of the `xdp_rings` fuzz target (`fuzz/fuzz_targets/xdp_rings.rs`), shared with
//! a fixed-seed unit test: the four rings of an XDP socket over plain shared memory, with
//! the input playing the kernel between the data path's bursts (`take_rx`, the tx
//! completion reclaim and `post_tx`, the code the rx and tx queues run). The kernel writes
//! rx descriptors with addresses and lengths anywhere (inside an rx frame, across its end,
//! in the tx frames, outside the UMEM), completions of any address, and producer and
//! consumer indexes that move backwards or jump by more than a ring. The data path must
//! never panic or copy outside a frame; it must deliver exactly the good descriptors with
//! the frame's bytes, count every other one, never hold more frames than exist, and give
//! every mbuf back to its pool.

use crate::ring::fake::{FakeKernel, OFF};
use crate::ring::{ConsRing, ProdRing};
use crate::rxtx::{post_tx, take_rx, RxDesc, RxLimits, TxFrames};
use crate::uapi::XdpDesc;
use crate::umem::Umem;
use crate::xsk::{RxRings, TxRings};
use pmd_core::mbuf::{PktBatch, HEADROOM};
use pmd_core::mempool::{Mempool, MempoolConfig};
use pmd_core::Mbuf;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

/// UMEM frame size.
const FRAME: u32 = 2048;
/// Frames of each side (rx: 0..8, tx: 8..16).
const FRAMES: u32 = 8;
/// Entries of every ring (what [`FakeKernel`] holds).
const RING: u32 = 8;
/// Mbufs in the pool (few, so that the no-mbuf path is reached).
const POOL: u32 = 16;

/// The per-thread fixtures: UMEM (rx frames filled with a known pattern), pool, and the
/// memory of the four rings.
struct Fixture {
    umem: Umem,
    /// The bytes of the rx frames (UMEM addresses 0 until the first tx frame).
    rx_bytes: Vec<u8>,
    pool: Mempool,
    rings: [FakeKernel; 4],
}

thread_local! {
    static FIXTURE: Fixture = {
        let umem = Umem::new("afxdp-fuzz", FRAME, FRAMES, FRAMES).expect("umem");
        let rx_bytes: Vec<u8> = (0..umem.frame_addr(FRAMES)).map(pattern).collect();
        for (f, bytes) in rx_bytes.chunks(FRAME as usize).enumerate() {
            assert!(umem.copy_in(umem.frame_addr(f as u32), bytes));
        }
        let pool = Mempool::create_with(
            "afxdp-fuzz",
            &MempoolConfig {
                size: POOL,
                cache_size: 0,
                buf_size: HEADROOM + FRAME as u16,
            },
        )
        .expect("mempool");
        Fixture {
            umem,
            rx_bytes,
            pool,
            rings: [FakeKernel::new(), FakeKernel::new(), FakeKernel::new(), FakeKernel::new()],
        }
    };
}

/// Bytes counting up from 0 (wrapping), longer than any tx packet the target builds plus
/// its index in the burst: packet `i` of a burst is `COUNTING[i..i + len]`.
static COUNTING: [u8; 2400] = {
    let mut b = [0u8; 2400];
    let mut i = 0;
    while i < b.len() {
        b[i] = i as u8;
        i += 1;
    }
    b
};

/// The byte at UMEM address `a` of an rx frame.
fn pattern(a: u64) -> u8 {
    (a % 251) as u8
}

/// What one input did (for the fixed-seed test to see the paths were reached).
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Packets delivered on rx.
    pub received: u64,
    /// Rx descriptors and completions refused, packets dropped.
    pub errors: u64,
    /// Packets dropped for want of mbufs.
    pub no_mbuf: u64,
    /// Packets posted on tx.
    pub sent: u64,
}

/// The kernel's side: its indexes as it last wrote them.
#[derive(Default)]
struct Kernel {
    rx_prod: u32,
    comp_prod: u32,
    fill_cons: u32,
    tx_cons: u32,
}

/// Runs one input: five bytes an operation (the operation, four arguments).
pub fn fuzz_xdp_rings(data: &[u8]) -> Outcome {
    FIXTURE.with(|fx| run(fx, data))
}

fn run(fx: &Fixture, data: &[u8]) -> Outcome {
    let [krx, kfill, ktx, kcomp] = &fx.rings;
    for k in &fx.rings {
        k.clear();
    }
    let ring = |k: &FakeKernel| k.fd.as_raw_fd();
    let rx_frames: Vec<u64> = (0..FRAMES).map(|f| fx.umem.frame_addr(f)).collect();
    let mut rx = RxRings {
        rx: ConsRing::new(ring(krx), 0, &OFF, RING).expect("rx ring"),
        fill: ProdRing::new(ring(kfill), 0, &OFF, RING).expect("fill ring"),
        stash: Vec::with_capacity(FRAMES as usize),
        rx_frames: FRAMES as usize,
    };
    assert_eq!(rx.refill(&rx_frames), 0);
    let frames = TxFrames {
        start: fx.umem.frame_addr(FRAMES),
        end: fx.umem.len(),
        size: u64::from(FRAME),
        count: FRAMES as usize,
    };
    let mut tx = TxRings {
        tx: ProdRing::new(ring(ktx), 0, &OFF, RING).expect("tx ring"),
        comp: ConsRing::new(ring(kcomp), 0, &OFF, RING).expect("completion ring"),
        free: (FRAMES..2 * FRAMES)
            .map(|f| fx.umem.frame_addr(f))
            .collect(),
        sent: vec![false; FRAMES as usize],
    };
    let limits = RxLimits {
        rx_end: fx.umem.frame_addr(FRAMES),
        frame_size: u64::from(FRAME),
        room: usize::from(fx.pool.buf_size() - HEADROOM),
    };
    let mut k = Kernel::default();
    let mut seen = Outcome::default();
    let mut hog: Vec<Mbuf> = Vec::new();
    for op in data.chunks(5) {
        let a = |i: usize| op.get(i).copied().unwrap_or(0);
        let v = u16::from_le_bytes([a(3), a(4)]);
        let word = u32::from_le_bytes([a(1), a(2), a(3), a(4)]);
        match a(0) % 8 {
            0 => {
                // An rx descriptor: in an rx frame, a tx frame, anywhere, or a frame start.
                let frame = u64::from(a(2) % (2 * FRAMES as u8)) * u64::from(FRAME);
                let addr = match a(1) % 4 {
                    0 => frame + u64::from(a(2)) * 8 % u64::from(FRAME),
                    1 => frame + 256,
                    2 => u64::from(word) << (a(1) >> 2),
                    _ => frame,
                };
                let len = if a(0) & 8 != 0 {
                    u32::from(v)
                } else {
                    u32::from(v) % 2100
                };
                krx.set_desc(
                    (k.rx_prod % RING) as usize,
                    XdpDesc {
                        addr,
                        len,
                        options: 0,
                    },
                );
                k.rx_prod = k.rx_prod.wrapping_add(1);
                krx.word(OFF.producer).store(k.rx_prod, Ordering::Release);
            }
            1 => {
                // The rx producer index moves anywhere (backwards, past a ring).
                k.rx_prod = if a(0) & 8 != 0 {
                    word
                } else {
                    k.rx_prod.wrapping_add(i32::from(a(1) as i8) as u32)
                };
                krx.word(OFF.producer).store(k.rx_prod, Ordering::Release);
            }
            2 => {
                k.fill_cons = if a(0) & 8 != 0 {
                    word
                } else {
                    k.fill_cons.wrapping_add(u32::from(a(1) % 9))
                };
                kfill
                    .word(OFF.consumer)
                    .store(k.fill_cons, Ordering::Release);
            }
            3 => {
                let max = 1 + usize::from(a(1) % 64);
                let got = rx_burst(fx, &mut rx, limits, max);
                seen.received += got.0;
                seen.errors += got.1;
                seen.no_mbuf += got.2;
            }
            4 => {
                k.tx_cons = if a(0) & 8 != 0 {
                    word
                } else {
                    k.tx_cons.wrapping_add(u32::from(a(1) % 9))
                };
                ktx.word(OFF.consumer).store(k.tx_cons, Ordering::Release);
            }
            5 => {
                // A completion: a tx frame (mostly one of ours), an rx frame or anything.
                let addr = match a(1) % 4 {
                    0 | 1 => frames.start + u64::from(a(2) % FRAMES as u8) * frames.size,
                    2 => u64::from(a(2) % FRAMES as u8) * frames.size,
                    _ => u64::from(word),
                };
                kcomp.set_slot((k.comp_prod % RING) as usize, addr);
                k.comp_prod = if a(0) & 8 != 0 {
                    word
                } else {
                    k.comp_prod.wrapping_add(1)
                };
                kcomp
                    .word(OFF.producer)
                    .store(k.comp_prod, Ordering::Release);
            }
            6 => {
                let (sent, errors) = tx_burst(fx, &mut tx, frames, ktx, op);
                seen.sent += sent;
                seen.errors += errors;
            }
            _ => {
                // Hold mbufs (so that rx runs short) or give them back.
                if a(1) & 1 != 0 {
                    while hog.len() < usize::from(a(2) % (POOL as u8 + 1)) {
                        match fx.pool.alloc() {
                            Some(m) => hog.push(m),
                            None => break,
                        }
                    }
                } else {
                    hog.clear();
                }
            }
        }
        assert!(rx.stash.len() <= FRAMES as usize);
        // Only rx frame starts ever go on the fill ring.
        assert!((0..RING as usize)
            .map(|i| kfill.slot(i))
            .all(|f| f < limits.rx_end && f % u64::from(FRAME) == 0));
        assert!(tx.free.len() <= frames.count);
        assert!(tx.free.iter().all(|&f| frames.owns(f)));
        assert_eq!(fx.pool.stats().in_use, hog.len() as i64, "mbufs leaked");
    }
    drop(hog);
    assert_eq!(fx.pool.stats().in_use, 0, "mbufs leaked");
    seen
}

/// One rx burst of at most `max`: (delivered, errors, no_mbuf). Checks that exactly the
/// good descriptors were delivered, with their frame's bytes, and the rest counted.
fn rx_burst(fx: &Fixture, rx: &mut RxRings, limits: RxLimits, max: usize) -> (u64, u64, u64) {
    let n = rx.rx.ready(max as u32) as usize;
    assert!(n <= max && n <= RING as usize);
    // The good descriptors, as the data path must deliver them (fixed arrays: the
    // harness allocates nothing per burst, so the fuzzer's time goes to the rings).
    let mut good = [XdpDesc {
        addr: 0,
        len: 0,
        options: 0,
    }; RING as usize];
    let mut n_good = 0;
    for i in 0..n as u32 {
        let d = rx.rx.get(i);
        if matches!(limits.check(&d), RxDesc::Good(_)) {
            good[n_good] = d;
            n_good += 1;
        }
    }
    let good = &good[..n_good];
    let mut batch = PktBatch::new();
    let got = take_rx(rx, limits, &fx.umem, &fx.pool, &mut batch, n, 7);
    let refused = (n - good.len()) as u64;
    assert!(got.errors >= refused);
    if got.no_mbuf > 0 || (n > 0 && batch.is_empty() && !good.is_empty()) {
        assert_eq!(got.no_mbuf, good.len() as u64);
        assert_eq!(got.used, 0);
    } else {
        assert_eq!(got.used, good.len());
        assert_eq!(batch.len(), good.len());
        let mut bytes = 0;
        for (m, d) in batch.iter().zip(good) {
            assert_eq!(m.len(), d.len as usize);
            assert!((d.addr % u64::from(FRAME)) + u64::from(d.len) <= u64::from(FRAME));
            let at = d.addr as usize;
            assert!(m.data() == &fx.rx_bytes[at..at + m.len()]);
            bytes += u64::from(d.len);
        }
        assert_eq!(got.bytes, bytes);
    }
    (got.used as u64, got.errors, got.no_mbuf)
}

/// One tx burst of packets sized from `op`: (posted, errors). Checks that what was posted
/// sits in our tx frames with the packets' bytes.
fn tx_burst(
    fx: &Fixture,
    tx: &mut TxRings,
    frames: TxFrames,
    ktx: &FakeKernel,
    op: &[u8],
) -> (u64, u64) {
    let mut batch = PktBatch::new();
    let count = 1 + usize::from(op.get(1).copied().unwrap_or(0) % 8);
    for i in 0..count {
        let b = op.get(2 + i % 3).copied().unwrap_or(0);
        let len = match b % 8 {
            0 => usize::from(b) % 14,
            1 => 2049 + usize::from(b),
            _ => 14 + usize::from(b) * 8,
        };
        let Ok(m) = Mbuf::from_slice(&COUNTING[i..i + len], &fx.pool) else {
            break;
        };
        if batch.push(m).is_err() {
            break;
        }
    }
    let prod_before = ktx.word(OFF.producer).load(Ordering::Acquire);
    let mut errors = frames.reclaim(tx);
    let put = post_tx(tx, frames, &fx.umem, &batch);
    errors += put.errors;
    assert!(put.consumed <= batch.len() && put.posted as usize <= put.consumed);
    let prod = ktx.word(OFF.producer).load(Ordering::Acquire);
    assert_eq!(prod.wrapping_sub(prod_before), put.posted);
    // The posted packets, in batch order (skipping those dropped as invalid).
    let mut sent = batch
        .iter()
        .take(put.consumed)
        .filter(|m| m.len() >= 14 && m.len() as u64 <= frames.size);
    for i in 0..put.posted {
        let d = ktx.desc((prod_before.wrapping_add(i) % RING) as usize);
        assert!(frames.owns(d.addr), "{d:?}");
        let m = sent.next().expect("a packet for each descriptor");
        assert_eq!(d.len as usize, m.len());
        let mut back = [0u8; FRAME as usize];
        let back = &mut back[..m.len()];
        assert!(fx.umem.copy_out(d.addr, back));
        assert_eq!(m.data(), back, "one segment, the bytes posted");
    }
    batch.free_front(put.consumed);
    (u64::from(put.posted), errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_seed_fuzz_of_the_xdp_rings() {
        let mut x = 0x94d0_49bb_1331_11ebu64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut total = Outcome::default();
        for _ in 0..3000 {
            let hostile = rnd().is_multiple_of(4);
            let mut d = Vec::new();
            for _ in 0..rnd() % 60 {
                let mut op = [0u8; 5];
                op.iter_mut().for_each(|b| *b = rnd() as u8);
                if !hostile {
                    // Kernel indexes move by small steps; descriptors mostly in rx frames.
                    op[0] &= !8;
                    if op[0] % 8 == 1 {
                        op[1] %= 3;
                    }
                    op[1] &= 0x7d;
                }
                d.extend_from_slice(&op);
            }
            let o = fuzz_xdp_rings(&d);
            total.received += o.received;
            total.errors += o.errors;
            total.no_mbuf += o.no_mbuf;
            total.sent += o.sent;
        }
        assert!(total.received > 1000, "{total:?}");
        assert!(total.errors > 1000, "{total:?}");
        assert!(total.no_mbuf > 50, "{total:?}");
        assert!(total.sent > 1000, "{total:?}");
    }

    /// Found by this target: a completion of a tx frame that was not in flight went on
    /// the free list a second time, and the next burst copied two packets into that one
    /// frame. Now it is refused and counted.
    #[test]
    fn a_frame_completed_while_free_is_refused() {
        let ops = [
            [6, 0, 20, 20, 20], // one packet posted (the last tx frame)
            [5, 0, 0, 0, 0],    // the kernel completes the first tx frame, still free
            [4, 1, 0, 0, 0],    // and consumes the posted descriptor
            [6, 7, 20, 20, 20], // eight packets: the seven free frames, each once
        ];
        let o = fuzz_xdp_rings(ops.as_flattened());
        assert_eq!((o.sent, o.errors), (8, 1), "{o:?}");
    }
}
