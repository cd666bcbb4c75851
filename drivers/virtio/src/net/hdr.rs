//! The virtio-net header (`struct virtio_net_hdr`, virtio 1.x section 5.1.6): parsing and
//! validating what a device wrote on receive, building it on transmit. Its first 10 bytes
//! are [`pmd_core::vnet::VnetHdr`] (the header the kernel's tap and packet sockets use,
//! with the same flag and GSO values); `num_buffers` follows in the 12-byte form.
//!
//! Everything in a received header comes from the device and is checked before use:
//! `num_buffers` against the ring, `csum_start`/`csum_offset` against the frame (a field
//! outside it would be an out-of-bounds write when the checksum is completed: the
//! CVE-2024-11614 class), the GSO type against what was negotiated, `gso_size` (0 is
//! meaningless for a GSO frame) and `hdr_len` (larger than the frame). Each failure is a
//! [`HdrError`]: the receive path drops the packet and counts it (per kind, in the port's
//! xstats, see [`NetCounters`]); nothing here panics on any input (fuzzed by
//! `fuzz/fuzz_targets/rx_hdr.rs` and a fixed-seed test).

use super::features::{
    GUEST_TSO, VIRTIO_F_VERSION_1, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_MRG_RXBUF,
};
use pmd_core::mbuf::{TxOffload, RX_L4_CKSUM_GOOD, RX_LRO};
use pmd_core::vnet::{self, VnetHdr, VNET_HDR_LEN};
use pmd_core::Mbuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Size of `struct virtio_net_hdr` without `num_buffers` ([`VnetHdr`]'s fields).
pub const NET_HDR_LEN_LEGACY: usize = VNET_HDR_LEN;
/// Size of `struct virtio_net_hdr` with `num_buffers` (virtio 1.x, or MRG_RXBUF).
pub const NET_HDR_LEN: usize = VNET_HDR_LEN + 2;

/// Header length for a negotiated feature set.
pub fn net_hdr_len(features: u64) -> usize {
    if features & (VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MRG_RXBUF) != 0 {
        NET_HDR_LEN
    } else {
        NET_HDR_LEN_LEGACY
    }
}

/// Reads a header from the first 10 (legacy) or 12 bytes of `b` (little-endian, as
/// virtio 1.x has it): the [`VnetHdr`] fields, and `num_buffers` (the buffers a merged
/// packet spans with `MRG_RXBUF`; 0 in a 10-byte header). `None` if `b` is shorter than 10.
/// Nothing is validated here.
#[inline(always)]
pub fn parse_hdr(b: &[u8]) -> Option<(VnetHdr, u16)> {
    let v = VnetHdr::from_bytes(b.get(..VNET_HDR_LEN)?.try_into().ok()?);
    let num_buffers = b
        .get(VNET_HDR_LEN..VNET_HDR_LEN + 2)
        .map_or(0, |n| u16::from_le_bytes([n[0], n[1]]));
    Some((v, num_buffers))
}

/// Writes a header into `out` (10 or 12 bytes; `num_buffers` only if it fits).
#[inline(always)]
pub fn write_hdr(h: &VnetHdr, num_buffers: u16, out: &mut [u8]) {
    let Some(base) = out.get_mut(..VNET_HDR_LEN) else {
        return;
    };
    base.copy_from_slice(&h.to_bytes());
    if let Some(n) = out.get_mut(VNET_HDR_LEN..VNET_HDR_LEN + 2) {
        n.copy_from_slice(&num_buffers.to_le_bytes());
    }
}

/// Why a received header was refused (the packet is dropped and counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HdrError {
    /// `NEEDS_CSUM` with `csum_start`/`csum_offset` outside the frame.
    #[error(
        "device header: csum_start {start} + csum_offset {offset} lies outside the \
         {len}-byte frame (a broken or hostile back end; packet dropped)"
    )]
    CsumOutOfFrame {
        /// csum_start.
        start: u16,
        /// csum_offset.
        offset: u16,
        /// Frame length.
        len: usize,
    },
    /// A GSO type that was not negotiated (or does not exist).
    #[error(
        "device header: GSO type {0:#x} was not negotiated (packet dropped; enable \
         TCP_LRO only if super-frames are wanted)"
    )]
    GsoType(u8),
    /// A GSO frame with `gso_size` 0.
    #[error("device header: GSO frame with gso_size 0 (packet dropped)")]
    GsoSizeZero,
    /// A GSO frame whose `hdr_len` is larger than the frame.
    #[error("device header: hdr_len {hdr_len} exceeds the {len}-byte frame (packet dropped)")]
    HdrLenTooLarge {
        /// hdr_len.
        hdr_len: u16,
        /// Frame length.
        len: usize,
    },
    /// `num_buffers` larger than the ring could hold.
    #[error("device header: num_buffers {n} exceeds the {ring}-entry ring (packet dropped)")]
    NumBuffers {
        /// num_buffers.
        n: u16,
        /// Ring size.
        ring: u16,
    },
}

impl HdrError {
    /// Index of the xstat counting this kind ([`NetCounters`]).
    fn slot(&self) -> usize {
        match self {
            HdrError::CsumOutOfFrame { .. } => 0,
            HdrError::GsoType(_) => 1,
            HdrError::GsoSizeZero => 2,
            HdrError::HdrLenTooLarge { .. } => 3,
            HdrError::NumBuffers { .. } => 4,
        }
    }
}

/// What a validated received header asks of its packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxMeta {
    /// `NEEDS_CSUM`: (csum_start, csum_offset), both inside the frame.
    pub partial_csum: Option<(u16, u16)>,
    /// `DATA_VALID`: the device checked the checksums.
    pub data_valid: bool,
    /// A GSO super-frame's segment size (0: not GSO).
    pub gso_size: u16,
}

/// `num_buffers` of a merged packet, checked against the ring (`size` entries): a device
/// cannot have filled more buffers than the ring holds.
#[inline(always)]
pub fn check_num_buffers(n: u16, ring: u16) -> Result<u16, HdrError> {
    if n > ring {
        Err(HdrError::NumBuffers { n, ring })
    } else {
        Ok(n.max(1))
    }
}

/// Validates a received header for a frame of `frame_len` bytes (all buffers merged)
/// given the negotiated `features`. Flags are ignored without `GUEST_CSUM` (the device
/// must not set them then); GSO types are accepted only as negotiated (`GUEST_TSO4/6`;
/// the ECN bit is tolerated).
#[inline]
pub fn check_rx_hdr(h: &VnetHdr, frame_len: usize, features: u64) -> Result<RxMeta, HdrError> {
    let mut meta = RxMeta::default();
    if features & VIRTIO_NET_F_GUEST_CSUM != 0 {
        if h.flags & vnet::F_NEEDS_CSUM != 0 {
            let (start, offset) = (usize::from(h.csum_start), usize::from(h.csum_offset));
            if start >= frame_len || start + offset + 2 > frame_len {
                return Err(HdrError::CsumOutOfFrame {
                    start: h.csum_start,
                    offset: h.csum_offset,
                    len: frame_len,
                });
            }
            meta.partial_csum = Some((h.csum_start, h.csum_offset));
        } else if h.flags & vnet::F_DATA_VALID != 0 {
            meta.data_valid = true;
        }
    }
    let gso = h.gso_type & !vnet::GSO_ECN;
    if gso != vnet::GSO_NONE {
        let ok = match gso {
            vnet::GSO_TCPV4 => features & VIRTIO_NET_F_GUEST_TSO4 != 0,
            vnet::GSO_TCPV6 => features & VIRTIO_NET_F_GUEST_TSO6 != 0,
            _ => false,
        };
        if !ok || features & GUEST_TSO == 0 {
            return Err(HdrError::GsoType(h.gso_type));
        }
        if h.gso_size == 0 {
            return Err(HdrError::GsoSizeZero);
        }
        if usize::from(h.hdr_len) > frame_len {
            return Err(HdrError::HdrLenTooLarge {
                hdr_len: h.hdr_len,
                len: frame_len,
            });
        }
        meta.gso_size = h.gso_size;
    } else if h.gso_type != vnet::GSO_NONE {
        // ECN without a GSO type means nothing.
        return Err(HdrError::GsoType(h.gso_type));
    }
    Ok(meta)
}

/// Applies a validated header to its packet: completes a partial checksum in software
/// (`NEEDS_CSUM`) or trusts the device (`DATA_VALID`), flagging `RX_L4_CKSUM_GOOD`
/// either way; marks a GSO frame `RX_LRO` with `tso_segsz` = `gso_size`. False (packet
/// unchanged) if the checksum offsets do not fit the packet after all.
#[inline]
pub fn apply_rx_meta(m: &mut Mbuf, meta: &RxMeta) -> bool {
    let mut flags = m.ol_flags();
    if let Some((start, offset)) = meta.partial_csum {
        // The field holds the pseudo-header sum; the one's-complement sum of everything
        // from csum_start (over every segment), folded and inverted, is the checksum.
        if !pmd_core::offload::complete_partial_checksum(m, start.into(), offset.into()) {
            return false;
        }
        flags |= RX_L4_CKSUM_GOOD;
    } else if meta.data_valid {
        flags |= RX_L4_CKSUM_GOOD;
    }
    if meta.gso_size != 0 {
        flags |= RX_LRO;
        m.set_tx_offload(TxOffload {
            tso_segsz: meta.gso_size,
            ..m.tx_offload()
        });
    }
    m.set_ol_flags(flags);
    true
}

/// Validates and applies in one go (what the receive path does per packet with a
/// non-trivial header); counts a refusal in `counters`.
#[inline]
pub fn rx_hdr_apply(
    m: &mut Mbuf,
    h: &VnetHdr,
    features: u64,
    counters: &NetCounters,
) -> Result<(), HdrError> {
    let meta = check_rx_hdr(h, m.len(), features).inspect_err(|e| counters.rx_hdr(e))?;
    if !apply_rx_meta(m, &meta) {
        let e = HdrError::CsumOutOfFrame {
            start: h.csum_start,
            offset: h.csum_offset,
            len: m.len(),
        };
        counters.rx_hdr(&e);
        return Err(e);
    }
    Ok(())
}

/// Per-port counters of refused headers and transmit fallbacks, shared by the port's
/// queues (updated only on those rare paths) and reported as xstats.
#[derive(Debug, Default)]
pub struct NetCounters {
    rx: [AtomicU64; 5],
    /// Transmitted chains with more segments than `nb_seg_max` (or any chain where the
    /// device needs IOVAs), linearized into their first buffer.
    pub tx_linearized: AtomicU64,
    /// Such chains that did not fit their first buffer: dropped.
    pub tx_too_many_segs: AtomicU64,
    /// Packets whose transmit offload request could not be met (bad lengths, TSO not
    /// negotiated, SCTP/UDP segmentation): dropped.
    pub tx_offload_errors: AtomicU64,
}

/// xstat names of the receive header errors, in [`HdrError`] slot order.
const RX_NAMES: [&str; 5] = [
    "rx_hdr_bad_csum_offsets",
    "rx_hdr_bad_gso_type",
    "rx_hdr_gso_size_zero",
    "rx_hdr_bad_hdr_len",
    "rx_hdr_bad_num_buffers",
];

impl NetCounters {
    /// Counts one refused header.
    #[inline]
    pub fn rx_hdr(&self, e: &HdrError) {
        self.rx[e.slot()].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds one to a transmit counter.
    #[inline]
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as xstats.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = RX_NAMES
            .iter()
            .zip(&self.rx)
            .map(|(n, c)| (n.to_string(), c.load(Ordering::Relaxed)))
            .collect();
        for (n, c) in [
            ("tx_linearized", &self.tx_linearized),
            ("tx_too_many_segs", &self.tx_too_many_segs),
            ("tx_offload_errors", &self.tx_offload_errors),
        ] {
            v.push((n.to_string(), c.load(Ordering::Relaxed)));
        }
        v
    }
}

/// Feeds arbitrary bytes through the receive header path: the bytes make a header, a
/// frame (split into a chain of segments from `pool` at positions the bytes choose) and a
/// feature set; parse, validate and apply must never panic, and whatever is accepted must
/// be in bounds. Shared by the fuzz target and the fixed-seed test.
pub fn fuzz_rx_hdr(data: &[u8], pool: &pmd_core::Mempool) {
    if data.len() < 16 {
        return;
    }
    let Some((h, num_buffers)) = parse_hdr(&data[..12]) else {
        return;
    };
    let mut features = 0;
    for (bit, f) in [
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6,
    ]
    .into_iter()
    .enumerate()
    {
        if data[12] & (1 << bit) != 0 {
            features |= f;
        }
    }
    let ring = u16::from(data[13]) * 4;
    if let Ok(n) = check_num_buffers(num_buffers, ring) {
        assert!(n >= 1 && n <= ring.max(1));
    }
    let frame = &data[16..];
    // A chain: the first part, then the rest (each split further by the pool's buffers).
    let split = (usize::from(data[14]) * 7) % (frame.len() + 1);
    let Ok(mut m) = Mbuf::from_slice(&frame[..split], pool) else {
        return;
    };
    if split < frame.len() {
        let Ok(tail) = Mbuf::from_slice(&frame[split..], pool) else {
            return;
        };
        if m.chain(tail).is_err() {
            return;
        }
    }
    assert_eq!(m.len(), frame.len());
    let before = m.to_vec();
    let counters = NetCounters::default();
    match rx_hdr_apply(&mut m, &h, features, &counters) {
        Ok(()) => {
            let meta = check_rx_hdr(&h, frame.len(), features).expect("accepted once");
            let after = m.to_vec();
            if let Some((s, o)) = meta.partial_csum {
                let field = usize::from(s) + usize::from(o);
                assert!(usize::from(s) < frame.len() && field + 2 <= frame.len());
                // Only the two checksum bytes may change.
                assert_eq!(&after[..field], &before[..field]);
                assert_eq!(&after[field + 2..], &before[field + 2..]);
                assert_ne!(m.ol_flags() & RX_L4_CKSUM_GOOD, 0);
            } else {
                assert_eq!(after, before);
            }
            if meta.gso_size != 0 {
                assert!(usize::from(h.hdr_len) <= frame.len());
                assert_ne!(m.ol_flags() & RX_LRO, 0);
                assert_eq!(m.tx_offload().tso_segsz, h.gso_size);
            }
        }
        Err(e) => {
            assert_eq!(m.to_vec(), before, "refused, so unchanged ({e})");
            let counted: u64 = counters.xstats().iter().map(|x| x.1).sum();
            assert_eq!(counted, 1, "counted once: {e}");
            assert!(!e.to_string().is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmd_core::mempool::MempoolConfig;
    use pmd_core::Mempool;

    fn small_pool(name: &str) -> Mempool {
        Mempool::create_with(
            name,
            &MempoolConfig {
                size: 1024,
                cache_size: 0,
                buf_size: 64 + pmd_core::mbuf::HEADROOM,
            },
        )
        .unwrap()
    }

    const ALL: u64 = VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6;

    #[test]
    fn header_round_trip() {
        let h = VnetHdr {
            flags: 1,
            gso_type: 4,
            hdr_len: 0x1234,
            gso_size: 1448,
            csum_start: 54,
            csum_offset: 16,
        };
        let mut b = [0u8; 12];
        write_hdr(&h, 7, &mut b);
        assert_eq!(parse_hdr(&b), Some((h, 7)));
        let (_, legacy_num_buffers) = parse_hdr(&b[..10]).unwrap();
        assert_eq!(legacy_num_buffers, 0);
        assert_eq!(parse_hdr(&b[..9]), None);
    }

    #[test]
    fn hostile_headers_are_refused_by_kind() {
        let c = NetCounters::default();
        let check = |h: VnetHdr, len: usize, f: u64| {
            let r = check_rx_hdr(&h, len, f);
            if let Err(e) = &r {
                c.rx_hdr(e);
            }
            r
        };
        let csum = |s, o| VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            csum_start: s,
            csum_offset: o,
            ..VnetHdr::default()
        };
        // CVE-2024-11614 class: the checksum field beyond the frame.
        for (s, o) in [
            (100u16, 0u16),
            (34, 65535),
            (u16::MAX, u16::MAX),
            (52, 1),
            (53, 0),
        ] {
            assert!(
                matches!(
                    check(csum(s, o), 54, ALL),
                    Err(HdrError::CsumOutOfFrame { .. })
                ),
                "{s} {o}"
            );
        }
        assert!(check(csum(34, 18), 54, ALL).is_ok(), "last two bytes");
        // Without GUEST_CSUM the flags are ignored.
        assert_eq!(check(csum(1000, 0), 54, 0), Ok(RxMeta::default()));
        let gso = |t, size, hl| VnetHdr {
            gso_type: t,
            gso_size: size,
            hdr_len: hl,
            ..VnetHdr::default()
        };
        assert_eq!(check(gso(1, 0, 54), 9000, ALL), Err(HdrError::GsoSizeZero));
        assert!(matches!(
            check(gso(1, 1448, 60000), 9000, ALL),
            Err(HdrError::HdrLenTooLarge { .. })
        ));
        assert_eq!(
            check(gso(3, 1448, 54), 9000, ALL),
            Err(HdrError::GsoType(3))
        );
        assert_eq!(
            check(gso(0x80, 0, 0), 9000, ALL),
            Err(HdrError::GsoType(0x80))
        );
        assert_eq!(
            check(gso(1, 1448, 54), 9000, VIRTIO_NET_F_GUEST_CSUM),
            Err(HdrError::GsoType(1)),
            "GUEST_TSO not negotiated"
        );
        assert_eq!(
            check(
                gso(4, 1448, 54),
                9000,
                VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_CSUM
            ),
            Err(HdrError::GsoType(4)),
            "TSO6 not negotiated"
        );
        assert_eq!(
            check(gso(0x81, 1448, 54), 9000, ALL).unwrap().gso_size,
            1448
        );
        assert_eq!(
            check_num_buffers(257, 256),
            Err(HdrError::NumBuffers { n: 257, ring: 256 })
        );
        assert_eq!(check_num_buffers(0, 256), Ok(1));
        assert_eq!(check_num_buffers(256, 256), Ok(256));
        c.rx_hdr(&check_num_buffers(u16::MAX, 256).unwrap_err());
        let xs = c.xstats();
        let get = |k: &str| xs.iter().find(|(n, _)| n == k).unwrap().1;
        assert_eq!(get("rx_hdr_bad_csum_offsets"), 5);
        assert_eq!(get("rx_hdr_gso_size_zero"), 1);
        assert_eq!(get("rx_hdr_bad_hdr_len"), 1);
        assert_eq!(get("rx_hdr_bad_gso_type"), 4);
        assert_eq!(get("rx_hdr_bad_num_buffers"), 1);
    }

    #[test]
    fn gso_frame_becomes_lro_with_segment_size() {
        let pool = small_pool("virtio-hdr-lro");
        let frame: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let mut m = Mbuf::from_slice(&frame, &pool).unwrap();
        assert!(m.nb_segs() > 1);
        let h = VnetHdr {
            flags: vnet::F_DATA_VALID,
            gso_type: vnet::GSO_TCPV4,
            gso_size: 1448,
            hdr_len: 54,
            ..VnetHdr::default()
        };
        rx_hdr_apply(&mut m, &h, ALL, &NetCounters::default()).unwrap();
        assert_ne!(m.ol_flags() & RX_LRO, 0);
        assert_ne!(m.ol_flags() & RX_L4_CKSUM_GOOD, 0);
        assert_eq!(m.tx_offload().tso_segsz, 1448);
        assert_eq!(m.to_vec(), frame);
    }

    /// The fuzz target's body with a fixed seed: random headers (biased towards the
    /// interesting values) over random chains.
    #[test]
    fn fixed_seed_fuzz_of_the_rx_header_path() {
        let pool = small_pool("virtio-hdr-fuzz");
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut accepted = 0;
        for _ in 0..20_000 {
            let flen = (rnd() % 400) as usize;
            let mut d = vec![0u8; 16 + flen];
            for b in d.iter_mut() {
                *b = rnd() as u8;
            }
            // Bias: small flags/types, offsets near the frame length.
            d[0] &= 3;
            if rnd() % 2 == 0 {
                d[1] = [0, 1, 4, 3, 0x81][(rnd() % 5) as usize];
            }
            let near = |r: u64| ((flen as u64 + r % 8).saturating_sub(4)) as u16;
            let v = near(rnd());
            d[6..8].copy_from_slice(&(v / 2).to_le_bytes());
            if rnd() % 3 == 0 {
                d[8..10].copy_from_slice(&[6, 0]);
            }
            d[2..4].copy_from_slice(&near(rnd()).to_le_bytes());
            fuzz_rx_hdr(&d, &pool);
            let (h, _) = parse_hdr(&d).unwrap();
            accepted += u32::from(check_rx_hdr(&h, flen, u64::MAX).is_ok());
        }
        assert!(
            accepted > 1000,
            "the inputs reach the accepting paths: {accepted}"
        );
        assert_eq!(pool.stats().in_use, 0);
    }

    /// Applies a received header's checksum fields (`(flags, csum_start, csum_offset)`) as
    /// the receive path does; false when the device's offsets lie outside the packet.
    fn apply_rx_csum(m: &mut Mbuf, (flags, start, offset): (u8, u16, u16)) -> bool {
        let h = VnetHdr {
            flags,
            csum_start: start,
            csum_offset: offset,
            ..VnetHdr::default()
        };
        rx_hdr_apply(m, &h, VIRTIO_NET_F_GUEST_CSUM, &NetCounters::default()).is_ok()
    }

    #[test]
    fn guest_csum_completes_partial_checksums_and_rejects_bad_offsets() {
        let pool = Mempool::create("virtio-csum-test", 64, 0).unwrap();
        // Ethernet (14) + IPv4 (20) + UDP (8) + 11 bytes of payload.
        let (src, dst) = ([10u8, 0, 0, 1], [10u8, 0, 0, 2]);
        let udp_len = 8 + 11u16;
        let mut pkt = vec![0u8; 14 + 20 + udp_len as usize];
        pkt[12..14].copy_from_slice(&[0x08, 0x00]);
        pkt[14] = 0x45;
        pkt[23] = 17;
        pkt[26..30].copy_from_slice(&src);
        pkt[30..34].copy_from_slice(&dst);
        pkt[34..36].copy_from_slice(&1234u16.to_be_bytes());
        pkt[36..38].copy_from_slice(&5678u16.to_be_bytes());
        pkt[38..40].copy_from_slice(&udp_len.to_be_bytes());
        for (i, b) in pkt[42..].iter_mut().enumerate() {
            *b = i as u8 * 7 + 1;
        }
        // The device leaves the pseudo-header sum in the checksum field (CHECKSUM_PARTIAL).
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src);
        pseudo.extend_from_slice(&dst);
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&udp_len.to_be_bytes());
        let partial = pmd_core::csum::ones_complement_sum(&pseudo);
        pkt[40..42].copy_from_slice(&partial.to_be_bytes());

        let mut m = pool.alloc().unwrap();
        assert!(m.copy_from(&pkt));
        assert!(apply_rx_csum(&mut m, (vnet::F_NEEDS_CSUM, 34, 6)));
        assert_ne!(m.ol_flags() & pmd_core::mbuf::RX_L4_CKSUM_GOOD, 0);
        // Verify: pseudo-header + UDP segment now sums to all ones.
        let mut all = pseudo.clone();
        all.extend_from_slice(&m.data()[34..]);
        assert_eq!(pmd_core::csum::ones_complement_sum(&all), 0xffff);
        assert_eq!(&m.data()[..40], &pkt[..40], "only the checksum changed");

        // DATA_VALID: trusted, untouched.
        let mut v = pool.alloc().unwrap();
        assert!(v.copy_from(&pkt));
        assert!(apply_rx_csum(&mut v, (vnet::F_DATA_VALID, 0, 0)));
        assert_ne!(v.ol_flags() & pmd_core::mbuf::RX_L4_CKSUM_GOOD, 0);
        assert_eq!(v.data(), &pkt[..]);
        // No flags: nothing claimed.
        let mut n = pool.alloc().unwrap();
        assert!(n.copy_from(&pkt));
        assert!(apply_rx_csum(&mut n, (0, 0, 0)));
        assert_eq!(n.ol_flags(), 0);
        // Hostile offsets: start or field beyond the packet.
        for (start, off) in [(34u16, 65535u16), (60, 0), (u16::MAX, u16::MAX), (52, 1)] {
            let mut h = pool.alloc().unwrap();
            assert!(h.copy_from(&pkt));
            assert!(
                !apply_rx_csum(&mut h, (vnet::F_NEEDS_CSUM, start, off)),
                "{start} {off}"
            );
            assert_eq!(h.data(), &pkt[..]);
        }
    }
}
