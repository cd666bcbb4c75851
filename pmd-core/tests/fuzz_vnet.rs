//! A fuzz-style test of the rx vnet-header path (`pmd_core::vnet`), from a fixed seed:
//! random headers (biased to edges: offsets at and past the frame's end, gso_size 0,
//! unknown gso types, hdr_len around the frame length) on frames that are random bytes
//! or real Ethernet/IPv4-or-IPv6/TCP super-frames (up to 64 KiB, VLAN-tagged or not),
//! laid out as random mbuf chains (first segment from 1 byte to a whole buffer). Every
//! input goes through `RxProcessor::process`, the code the rx queue runs, in LRO and in
//! software-segmenting mode. Properties: nothing panics; every refused header is counted
//! exactly once, under its own xstat; what is delivered has valid checksums when the
//! header asked for them to be completed (or the frame was segmented), and segments
//! carry the super-frame's payload in order; no mbuf leaks.

use pmd_core::mbuf::{Mbuf, HEADROOM, RX_LRO};
use pmd_core::mempool::{Mempool, MempoolConfig};
use pmd_core::vnet::{
    check_rx, RxAction, RxProcessor, VnetError, VnetHdr, VnetStats, F_DATA_VALID, F_NEEDS_CSUM,
    GSO_ECN, GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP,
};
use std::sync::Arc;

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Around `v`: v, v±1, v±2, 0, max, or random.
    fn near(&mut self, v: usize) -> u16 {
        match self.below(8) {
            0 => v as u16,
            1 => v.wrapping_add(1) as u16,
            2 => v.wrapping_sub(1) as u16,
            3 => v.wrapping_add(2) as u16,
            4 => 0,
            5 => u16::MAX,
            _ => self.next() as u16,
        }
    }
}

/// The one's complement checksum of a TCP frame's L4 span with its pseudo-header, 0 when
/// the checksum field is right.
fn tcp_sum_ok(f: &[u8], l2: usize, v6: bool) -> bool {
    let mut acc: u64 = 0;
    let add = |acc: &mut u64, d: &[u8]| {
        for c in d.chunks(2) {
            *acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    let (l4, len) = if v6 {
        add(&mut acc, &f[l2 + 8..l2 + 40]);
        (l2 + 40, f.len() - l2 - 40)
    } else {
        add(&mut acc, &f[l2 + 12..l2 + 20]);
        let ihl = usize::from(f[l2] & 15) * 4;
        (l2 + ihl, f.len() - l2 - ihl)
    };
    acc += 6 + len as u64;
    add(&mut acc, &f[l4..]);
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc == 0xffff
}

/// A TCP frame whose checksum field holds the pseudo-header sum (what the kernel hands
/// over with NEEDS_CSUM): returns it, the L2 length and the L4 start.
fn tcp_frame(r: &mut Rng, v6: bool, payload: usize) -> (Vec<u8>, usize, usize) {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    let tags = r.below(3) as usize;
    for _ in 0..tags {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    }
    let l2 = 14 + 4 * tags;
    let opts = 4 * r.below(3) as usize; // TCP options
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&((20 + opts + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[6, 64]);
        f.extend_from_slice(&[0xfd; 16]);
        f.extend_from_slice(&[0xfe; 16]);
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((40 + opts + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    }
    let l4 = f.len();
    f.extend_from_slice(&[0x30, 0x39, 0, 80, 0, 0, 0x10, 0, 0, 0, 0, 1]);
    f.push((((20 + opts) / 4) << 4) as u8);
    f.extend_from_slice(&[0x18, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend(std::iter::repeat_n(1u8, opts));
    f.extend((0..payload).map(|i| (i * 7 + 3) as u8));
    // Pseudo-header sum (with the L4 length) in the checksum field.
    let mut acc: u64 = 6 + (f.len() - l4) as u64;
    let addr = if v6 {
        l2 + 8..l2 + 40
    } else {
        l2 + 12..l2 + 20
    };
    for c in f[addr].chunks(2) {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    f[l4 + 16..l4 + 18].copy_from_slice(&(acc as u16).to_be_bytes());
    (f, l2, l4)
}

/// `bytes` as a chain: a first segment of `first` bytes, then random-sized segments.
fn chain(r: &mut Rng, bytes: &[u8], first: usize, pool: &Mempool) -> Option<Mbuf> {
    let room = usize::from(pool.buf_size() - HEADROOM);
    let mut m = pool.alloc()?;
    let n = first.min(bytes.len()).min(room);
    m.append(n)?.copy_from_slice(&bytes[..n]);
    let mut at = n;
    while at < bytes.len() {
        let k = (1 + r.below(room as u64) as usize).min(bytes.len() - at);
        let mut s = pool.alloc()?;
        s.append(k)?.copy_from_slice(&bytes[at..at + k]);
        at += k;
        m.chain(s).ok()?;
    }
    Some(m)
}

#[test]
fn random_headers_frames_and_chains_never_panic_and_are_counted() {
    let pool = Mempool::create_with(
        "tapfz",
        &MempoolConfig {
            size: 8192,
            cache_size: 0,
            buf_size: HEADROOM + 2048,
        },
    )
    .unwrap();
    let mut r = Rng(0x0007_a95e_ed0f_f00d);
    let stats = Arc::new(VnetStats::default());
    let lro = RxProcessor {
        lro: true,
        stats: stats.clone(),
    };
    let sw = RxProcessor {
        lro: false,
        stats: stats.clone(),
    };
    const N: usize = 60_000;
    let (mut ok, mut refused, mut segmented, mut lro_kept, mut csum_done) = (0, 0, 0, 0, 0);
    let mut by_err = [0u64; VnetError::ALL.len()];
    for i in 0..N {
        // A real TCP frame most of the time, else random bytes of random length.
        let big = r.below(8) == 0;
        let v6 = r.below(2) == 0;
        let (frame, l2, l4) = if r.below(4) != 0 {
            let payload = if big {
                r.below(65_000) as usize
            } else {
                r.below(3000) as usize
            };
            tcp_frame(&mut r, v6, payload)
        } else {
            let len = 1 + r.below(if big { 66_000 } else { 200 }) as usize;
            ((0..len).map(|_| r.next() as u8).collect(), 14, 34)
        };
        let len = frame.len();
        let gso_type = match r.below(10) {
            0..=3 => GSO_NONE,
            4..=5 => {
                if v6 {
                    GSO_TCPV6
                } else {
                    GSO_TCPV4
                }
            }
            6 => GSO_TCPV4 | GSO_ECN,
            7 => GSO_TCPV6,
            8 => GSO_UDP,
            _ => r.next() as u8,
        };
        let h = VnetHdr {
            flags: match r.below(5) {
                0 => 0,
                1 => F_DATA_VALID,
                2 => r.next() as u8,
                _ => F_NEEDS_CSUM,
            },
            gso_type,
            hdr_len: if r.below(2) == 0 {
                r.near(l4 + 20)
            } else {
                r.near(len)
            },
            gso_size: match r.below(4) {
                0 => 0,
                1 => 1 + r.below(8) as u16,
                _ => r.near(1448),
            },
            csum_start: if r.below(3) != 0 {
                l4 as u16
            } else {
                r.near(len)
            },
            csum_offset: match r.below(4) {
                0 | 1 => 16,
                2 => 6,
                _ => r.near(len - l4.min(len)),
            },
        };
        let first = match r.below(4) {
            0 => 1 + r.below(len as u64) as usize,
            1 => 1 + r.below(80) as usize,
            _ => len,
        };
        let Some(m) = chain(&mut r, &frame, first, &pool) else {
            panic!("pool dry at input {i}: a leak");
        };
        let expect = check_rx(&h, &m);
        let before = stats.total_errors();
        let p = if i % 2 == 0 { &lro } else { &sw };
        let mut out = Vec::new();
        let res = p.process(&h, m, &pool, |s| out.push(s));
        match res {
            Err(e) => {
                refused += 1;
                by_err[VnetError::ALL.iter().position(|&x| x == e).unwrap()] += 1;
                assert_eq!(
                    stats.total_errors(),
                    before + 1,
                    "input {i}: {e} counted once"
                );
                assert!(out.is_empty());
                if e != VnetError::Segmentation {
                    assert_eq!(expect, Err(e));
                }
            }
            Ok(()) => {
                ok += 1;
                assert_eq!(stats.total_errors(), before, "input {i}");
                assert!(!out.is_empty());
                match expect.unwrap() {
                    RxAction::Plain { .. } => assert_eq!(out[0].to_vec(), frame),
                    RxAction::Csum { start, offset } => {
                        csum_done += 1;
                        let got = out[0].to_vec();
                        // Only the checksum field changed.
                        assert_eq!(got[..start + offset], frame[..start + offset]);
                        assert_eq!(got[start + offset + 2..], frame[start + offset + 2..]);
                        if start == l4 && offset == 16 && len > l4 + 20 && frame[12] != 0 {
                            // A real TCP frame: now wire-valid.
                            let real = h.csum_start as usize == l4;
                            if real
                                && (frame[l2 - 2..l2] == [0x08, 0]
                                    || frame[l2 - 2..l2] == [0x86, 0xdd])
                            {
                                assert!(tcp_sum_ok(&got, l2, frame[l2 - 2] == 0x86), "input {i}");
                            }
                        }
                    }
                    RxAction::Gso { hdrs, gso_size } => {
                        if p.lro {
                            lro_kept += 1;
                            assert_eq!(out.len(), 1);
                            assert_ne!(out[0].ol_flags() & RX_LRO, 0);
                            assert_eq!(out[0].tx_offload().tso_segsz, gso_size);
                            assert_eq!(out[0].to_vec(), frame);
                        } else {
                            segmented += 1;
                            let end = hdrs.end();
                            let mut payload = Vec::new();
                            for s in &out {
                                let v = s.to_vec();
                                assert!(v.len() - end <= usize::from(gso_size));
                                assert!(tcp_sum_ok(&v, hdrs.l2, hdrs.v6), "input {i}");
                                payload.extend_from_slice(&v[end..]);
                            }
                            assert_eq!(payload, frame[end..], "input {i}: payload in order");
                        }
                    }
                }
            }
        }
        drop(out);
        assert_eq!(pool.stats().in_use, 0, "input {i}: mbufs leaked");
    }
    for (e, n) in VnetError::ALL.iter().zip(by_err) {
        assert_eq!(stats.errors(*e), n, "{}", e.xstat());
        println!("{:32} {n}", e.xstat());
    }
    println!(
        "{N} inputs: {ok} delivered ({lro_kept} kept as LRO, {segmented} segmented, \
         {csum_done} checksums completed), {refused} refused"
    );
    assert!(
        lro_kept > 100 && segmented > 100 && csum_done > 100,
        "coverage"
    );
    for e in [
        VnetError::CsumOffsets,
        VnetError::GsoSizeZero,
        VnetError::HdrLen,
        VnetError::GsoType,
        VnetError::GsoHeaders,
        VnetError::TooManySegments,
        VnetError::GsoWithoutCsum,
    ] {
        assert!(stats.errors(e) > 0, "{} never hit", e.xstat());
    }
}
