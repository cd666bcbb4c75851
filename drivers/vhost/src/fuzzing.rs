//! Body of the `vhost_msg` fuzz target (`fuzz/fuzz_targets/vhost_msg.rs`), shared with a
//! fixed-seed unit test: a hostile front end's byte stream through the message checks
//! ([`proto::parse_header`], [`proto::decode`]) into a [`Backend`] with two queue pairs,
//! whose data path is a checking double.
//!
//! The input is a sequence of messages, each either raw (a whole header from the input,
//! any size field) or built from a few bytes: a request (mostly the ones the back end
//! serves), flags, a payload shaped for that request from the next bytes (ring indexes
//! near the limit, sizes near powers of two, ring addresses in and around a 1 MiB table),
//! and a descriptor count, turned into real descriptors (duplicates of one memfd or one
//! eventfd, so they cost a `dup` each). After a refusal the back end is reset, like a
//! reconnect, and the stream goes on.
//!
//! Checked after every message: the double runs exactly the rings the back end says run,
//! never gets a start for a running ring or a ring whose areas do not translate; at the
//! end, after a reset, nothing runs and every descriptor handed over was closed and
//! counted (`fds_closed`).

use crate::backend::{self, Backend, ControlStats, Refusal};
use crate::mem::MAX_REGIONS;
use crate::proto::{self, Rejected, Request, FLAG_NEED_REPLY, HDR_LEN, VRING_NOFD};
use crate::vring::{RingControl, VringConfig};
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

/// Queue pairs of the back end under test (4 rings).
const QUEUES: u16 = 2;
/// Size of the memfd behind every memory table.
const TABLE_FILE: u64 = 1 << 20;
/// Front-end virtual address the generated tables start at.
const UVA: u64 = 0x7f00_0000_0000;
/// Requests the built messages are mostly made of: the ones the back end serves.
const SERVED: [Request; 20] = [
    Request::GetFeatures,
    Request::SetFeatures,
    Request::SetOwner,
    Request::ResetOwner,
    Request::SetMemTable,
    Request::SetVringNum,
    Request::SetVringAddr,
    Request::SetVringBase,
    Request::GetVringBase,
    Request::SetVringKick,
    Request::SetVringCall,
    Request::SetVringErr,
    Request::GetProtocolFeatures,
    Request::SetProtocolFeatures,
    Request::GetQueueNum,
    Request::SetVringEnable,
    Request::SendRarp,
    Request::NetSetMtu,
    Request::SetLogBase,
    Request::SetLogFd,
];

/// What one input did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Messages the back end accepted.
    pub accepted: u64,
    /// Messages refused (while parsing or by the back end).
    pub refused: u64,
    /// Ring starts the data path saw.
    pub starts: u64,
    /// Descriptors handed to the parser.
    pub fds: u64,
    /// Dirty logs the back end took (SET_LOG_BASE accepted).
    pub logs: u64,
}

/// The data-path double: the rings it runs, checked against what it is told.
#[derive(Debug, Default)]
struct Rings {
    running: Mutex<BTreeMap<u16, VringConfig>>,
    starts: Mutex<u64>,
}

impl RingControl for Rings {
    fn start(&self, cfg: VringConfig) {
        backend::check_layout_addrs(cfg.index, cfg.size, &cfg.addrs, &cfg.mem, cfg.features)
            .expect("a ring started with areas outside the table");
        assert!(cfg.size.is_power_of_two());
        let old = self.lock().insert(cfg.index, cfg);
        assert!(old.is_none(), "a running ring started again");
        *self.starts.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }

    fn stop(&self, index: u16) -> Option<u16> {
        let cfg = self.lock().remove(&index)?;
        Some(cfg.base.wrapping_add(3))
    }

    fn set_link(&self, _up: bool) {}
}

impl Rings {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u16, VringConfig>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The input, read a byte at a time (zeros once it is used up).
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

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        b.iter_mut().for_each(|x| *x = self.byte());
        u64::from_le_bytes(b)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
}

/// The descriptors fake counts turn into: one memfd (memory tables), one eventfd.
fn sources() -> &'static (OwnedFd, OwnedFd) {
    static SOURCES: OnceLock<(OwnedFd, OwnedFd)> = OnceLock::new();
    SOURCES.get_or_init(|| {
        // SAFETY: a NUL-terminated name and valid flags; the result is checked and owned.
        let fd = unsafe {
            pmd_core::unix::owned_fd(libc::memfd_create(
                c"vhost-fuzz".as_ptr(),
                libc::MFD_CLOEXEC,
            ))
        }
        .expect("memfd_create");
        let file = std::fs::File::from(fd);
        file.set_len(TABLE_FILE).expect("sizing the fuzz memfd");
        let ev = pmd_core::unix::eventfd().expect("eventfd");
        (file.into(), ev)
    })
}

/// `n` descriptors: duplicates of the memfd if `file`, else of the eventfd.
fn fds(n: usize, file: bool) -> Vec<OwnedFd> {
    let (mem, ev) = sources();
    let src = if file { mem } else { ev };
    (0..n).map(|_| src.try_clone().expect("dup")).collect()
}

/// One message built from the input: its bytes (header and payload), the descriptor
/// count and whether they are memory files.
fn build(input: &mut Input<'_>) -> (Vec<u8>, usize, bool) {
    let c = input.byte();
    if c >= 0xf8 {
        // Raw: any header, a payload of what the input has (up to the size field).
        let hdr: Vec<u8> = input.take(HDR_LEN).to_vec();
        let size = hdr.get(8..12).map_or(0, |s| {
            u32::from_le_bytes(s.try_into().unwrap_or([0; 4])) as usize
        });
        let mut m = hdr;
        m.extend_from_slice(input.take(size.min(proto::MAX_PAYLOAD + 8)));
        let n = usize::from(input.byte() % 4);
        return (m, n, c & 1 == 0);
    }
    let req = if c < 0xe0 {
        SERVED[usize::from(c) % SERVED.len()]
    } else {
        Request::ALL[usize::from(c) % Request::ALL.len()]
    };
    let f = input.byte();
    let flags = if f >= 0xf8 {
        u32::from(f & 0xf)
    } else {
        proto::VERSION | if f & 1 != 0 { FLAG_NEED_REPLY } else { 0 }
    };
    let mut n_fds = 0;
    let mut file = false;
    let ring = |input: &mut Input<'_>| u32::from(input.byte() % 5);
    let mut p = Vec::new();
    let offered = backend::offered_features(QUEUES, true);
    match req {
        Request::SetFeatures => {
            let v = input.u64();
            let v = if f & 2 != 0 { v } else { v & offered };
            p.extend_from_slice(&v.to_ne_bytes());
        }
        Request::SetProtocolFeatures => {
            let v = input.u64();
            let v = if f & 2 != 0 { v } else { v & 0xf };
            p.extend_from_slice(&v.to_ne_bytes());
        }
        Request::SetMemTable => {
            let n = usize::from(input.byte() % (MAX_REGIONS as u8 + 2));
            p.extend_from_slice(&(n as u32).to_ne_bytes());
            p.extend_from_slice(&0u32.to_ne_bytes());
            for _ in 0..n {
                let (a, b, d) = (input.byte(), input.byte(), input.byte());
                let size = (u64::from(b % 17) << 16).max(4096);
                for v in [
                    u64::from(a) << 16,
                    size,
                    UVA + (u64::from(a) << 16) + if d & 0x80 != 0 { 8 } else { 0 },
                    u64::from(d & 0x1f) << 14,
                ] {
                    p.extend_from_slice(&v.to_ne_bytes());
                }
            }
            n_fds = n;
            file = f & 4 == 0;
        }
        Request::SetVringNum => {
            let i = ring(input);
            let e = input.byte();
            let num = if e < 0xf0 {
                1u32 << (e % 17)
            } else {
                u32::from(input.u16())
            };
            p.extend_from_slice(&i.to_ne_bytes());
            p.extend_from_slice(&num.to_ne_bytes());
        }
        Request::SetVringBase | Request::GetVringBase | Request::SetVringEnable => {
            let i = ring(input);
            let num = match input.byte() {
                e if e < 0x80 => u32::from(e % 3),
                e if e < 0xf0 => u32::from(input.u16()),
                _ => 0x1_0000,
            };
            p.extend_from_slice(&i.to_ne_bytes());
            p.extend_from_slice(&num.to_ne_bytes());
        }
        Request::SetVringAddr => {
            p.extend_from_slice(&ring(input).to_ne_bytes());
            p.extend_from_slice(&0u32.to_ne_bytes());
            for _ in 0..3 {
                let a = UVA + u64::from(input.u16()) * 16;
                p.extend_from_slice(&a.to_ne_bytes());
            }
            p.extend_from_slice(&0u64.to_ne_bytes());
        }
        Request::SetVringKick | Request::SetVringCall | Request::SetVringErr => {
            let e = input.byte();
            let nofd = e & 0x80 != 0;
            let v = u64::from((e & 0x7f) % 5) | if nofd { VRING_NOFD } else { 0 };
            p.extend_from_slice(&v.to_ne_bytes());
            n_fds = usize::from(!nofd);
        }
        Request::SendRarp | Request::NetSetMtu => {
            p.extend_from_slice(&u64::from(input.u16()).to_ne_bytes());
        }
        Request::SetLogBase => {
            let e = input.byte();
            // Sizes and offsets around the file's end, 0, and ones that wrap.
            let size = match e & 3 {
                0 => u64::from(input.u16()),
                1 => TABLE_FILE - u64::from(input.byte()),
                2 => 0,
                _ => u64::MAX - u64::from(input.byte()),
            };
            let offset = match (e >> 2) & 3 {
                0 => 0,
                1 => u64::from(input.u16()) << 4,
                2 => TABLE_FILE,
                _ => u64::MAX - u64::from(input.byte()),
            };
            p.extend_from_slice(&size.to_ne_bytes());
            if e & 0x80 == 0 {
                p.extend_from_slice(&offset.to_ne_bytes());
            }
            // A memory file mostly; none, or an eventfd.
            n_fds = usize::from(f & 4 == 0);
            file = f & 8 == 0;
        }
        Request::SetLogFd => n_fds = 1,
        _ => {}
    }
    // Damage: a wrong descriptor count, a wrong size field.
    if f & 0x60 == 0x60 {
        n_fds = usize::from((f >> 2) & 3);
    }
    let mut size = p.len() as u32;
    if f & 0x70 == 0x50 {
        size = u32::from(input.byte());
        p.resize(size as usize, 0);
        if f & 0x80 != 0 {
            size = u32::MAX - size;
        }
    }
    let mut m = Vec::with_capacity(HDR_LEN + p.len());
    for w in [req as u32, flags, size] {
        m.extend_from_slice(&w.to_ne_bytes());
    }
    m.extend_from_slice(&p);
    (m, n_fds, file)
}

/// Runs one input through the parser and a fresh back end; panics if an invariant
/// breaks (see the module documentation).
pub fn fuzz_vhost_msg(data: &[u8]) -> Tally {
    let stats = Arc::new(ControlStats::default());
    let mut b = Backend::new(QUEUES, true, stats.clone());
    let rings = Rings::default();
    let mut input = Input(data);
    let mut t = Tally::default();
    while !input.0.is_empty() {
        let (bytes, n_fds, file) = build(&mut input);
        let Some(hdr) = bytes.get(..HDR_LEN) else {
            break;
        };
        let fds = fds(n_fds, file);
        t.fds += n_fds as u64;
        let hdr: &[u8; HDR_LEN] = hdr.try_into().expect("header length");
        let refusal = match proto::parse_header(hdr) {
            Err(error) => {
                b.note_rejected(&Rejected {
                    error: error.clone(),
                    fds_closed: fds.len(),
                });
                Some(Refusal::Message(error))
            }
            Ok(h) => {
                assert!(h.size <= proto::MAX_PAYLOAD);
                // A stream that ends inside the payload: the connection is gone.
                let Some(payload) = bytes.get(HDR_LEN..HDR_LEN + h.size) else {
                    stats
                        .fds_closed
                        .fetch_add(fds.len() as u64, Ordering::Relaxed);
                    break;
                };
                match proto::decode(h, payload, fds) {
                    Err(r) => {
                        b.note_rejected(&r);
                        Some(Refusal::Message(r.error))
                    }
                    Ok(m) => {
                        let resp = b.handle(m, &rings);
                        if let Some(reply) = &resp.reply {
                            // SET_LOG_BASE's is empty.
                            let empty = bytes[..4] == (Request::SetLogBase as u32).to_ne_bytes();
                            assert_eq!(reply.len(), HDR_LEN + if empty { 0 } else { 8 });
                        }
                        resp.refusal
                    }
                }
            }
        };
        match refusal {
            Some(_) => {
                t.refused += 1;
                b.reset(&rings);
            }
            None => t.accepted += 1,
        }
        let running: Vec<u16> = rings.lock().keys().copied().collect();
        let says: Vec<u16> = (0..2 * QUEUES).filter(|&i| b.running(i.into())).collect();
        assert_eq!(running, says, "the back end and the data path disagree");
    }
    b.reset(&rings);
    assert!(rings.lock().is_empty(), "a ring still runs after the reset");
    assert_eq!(
        stats.fds_closed.load(Ordering::Relaxed),
        t.fds,
        "every descriptor handed over was closed and counted"
    );
    t.starts = *rings.starts.lock().unwrap_or_else(|e| e.into_inner());
    t.logs = stats.log_bases.load(Ordering::Relaxed);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// A negotiation that gets rings running: every later input builds on a prefix of
    /// it, so that mutations hit running rings.
    fn good_prefix() -> Vec<u8> {
        let mut d = Vec::new();
        // SET_FEATURES (offered bits, no PROTOCOL_FEATURES: the kick enables).
        d.extend([1, 0]);
        d.extend(backend::offered_features(QUEUES, true).to_le_bytes());
        d[2 + 3] &= !0x40;
        // SET_MEM_TABLE: one region of 1 MiB at guest 0.
        d.extend([4, 0, 1, 0, 16, 0]);
        for ring in 0..2u8 {
            // SET_VRING_NUM 256, ADDR, KICK (NOFD).
            d.extend([5, 0, ring, 8]);
            let at = u16::from(ring) * 1024;
            d.extend([6, 0, ring]);
            for off in [at, at + 256, at + 512] {
                d.extend(off.to_le_bytes());
            }
            d.extend([9, 0, 0x80 | ring]);
        }
        // SET_PROTOCOL_FEATURES: LOG_SHMFD only, so that a later SET_LOG_BASE may map.
        d.extend([13, 0]);
        d.extend(crate::proto::protocol::LOG_SHMFD.to_le_bytes());
        d
    }

    #[test]
    fn the_good_prefix_runs_both_rings() {
        let t = fuzz_vhost_msg(&good_prefix());
        assert_eq!(t.refused, 0, "{t:?}");
        assert_eq!(t.starts, 2, "{t:?}");
    }

    /// 10^6 inputs from a fixed seed: a third are the good prefix (one memory-table
    /// descriptor) with one byte flipped, then one to three random messages; memory
    /// tables, logging messages, descriptor-count damage and kick/call/err without NOFD
    /// only in a sixteenth to a thirty-second of the inputs, to keep descriptors rare.
    #[test]
    fn fixed_seed_fuzz_of_vhost_messages() {
        let mut rnd = xorshift(0x9e37_79b9_7f4a_7c15);
        let prefix = good_prefix();
        let mut total = Tally::default();
        let mut d = Vec::with_capacity(256);
        for _ in 0..1_000_000 {
            d.clear();
            let r = rnd();
            if r.is_multiple_of(3) {
                d.extend_from_slice(&prefix);
                let at = (rnd() as usize) % d.len();
                d[at] ^= rnd() as u8;
            }
            for _ in 0..1 + rnd() % 3 {
                let c = rnd() as u8;
                // Keep descriptors rare: tables, descriptor-count damage and kick/call/err
                // without NOFD in a few inputs only.
                let kind = usize::from(c) % SERVED.len();
                let c = if matches!(kind, 4 | 18 | 19) && !r.is_multiple_of(16) {
                    1
                } else {
                    c
                };
                d.push(c);
                for k in 0..2 + rnd() % 10 {
                    let mut b = rnd() as u8;
                    if k == 0 && !r.is_multiple_of(8) {
                        b &= !0x40;
                    }
                    if k == 1 && matches!(kind, 9..=11) && !r.is_multiple_of(32) {
                        b |= 0x80;
                    }
                    d.push(b);
                }
            }
            let t = fuzz_vhost_msg(&d);
            total.accepted += t.accepted;
            total.refused += t.refused;
            total.starts += t.starts;
            total.fds += t.fds;
            total.logs += t.logs;
        }
        eprintln!("vhost_msg fixed seed: {total:?}");
        // Nothing leaked: only the source memfd is open, and no table is still mapped.
        assert_eq!(crate::proto::tests::open_named("vhost-fuzz"), 1);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        assert!(
            !maps.contains("/memfd:vhost-fuzz"),
            "a memory table is still mapped"
        );
        assert!(total.accepted > 500_000, "{total:?}");
        assert!(total.refused > 200_000, "{total:?}");
        assert!(total.starts > 100_000, "{total:?}");
        assert!(total.fds > 10_000, "{total:?}");
        assert!(total.logs > 100, "{total:?}");
    }
}
