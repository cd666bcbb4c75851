//! The virtio-net header (`struct virtio_net_hdr`, `linux/virtio_net.h`) that the kernel
//! puts in front of every frame of a tap (`IFF_VNET_HDR`) or a packet socket
//! (`PACKET_VNET_HDR`), and a virtio device in front of every buffer: checksum and
//! segmentation metadata between the kernel (or the device) and the port. No system calls
//! here: this is the parser, the checks and the header builder the PMDs share, and the
//! software fallbacks they apply, every field checked against the frame before any byte is
//! trusted.
//!
//! What arrives from the kernel is untrusted input. [`check_rx`] accepts a header only if
//! every offset it names lies inside the frame and a GSO header describes a real
//! Ethernet/IPv4-or-IPv6/TCP header block in the first segment; anything else is a
//! [`VnetError`], counted by name in the port's xstats and never a panic.

use crate::mbuf::{Mbuf, TxOffload, TX_IPV4, TX_IPV6, TX_L4_MASK, TX_TCP_SEG, TX_UDP_CKSUM};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Size of the header (`struct virtio_net_hdr`, without `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;
/// `flags`: the L4 checksum is partial; complete it from `csum_start` to the end and
/// store it at `csum_start + csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was checked and is good.
pub const F_DATA_VALID: u8 = 2;
/// `gso_type`: not a super-frame.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4 super-frame.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation offload (not taken).
pub const GSO_UDP: u8 = 3;
/// `gso_type`: TCP over IPv6 super-frame.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type` bit: the super-frame has ECN (CWR) set.
pub const GSO_ECN: u8 = 0x80;
/// Largest Ethernet + IP + TCP header block taken (as [`crate::offload::MAX_HDR_LEN`]).
pub const MAX_HDR_LEN: usize = crate::offload::MAX_HDR_LEN;
/// Largest frame the kernel hands over with TSO on (64 KiB of IP packet plus the
/// Ethernet header and two tags); rx queues keep room for it.
pub const GSO_MAX_FRAME: usize = 65_536 + 14 + 8;
/// Most packets one received super-frame is cut into in software; a `gso_size` that
/// would give more is refused ([`VnetError::TooManySegments`]).
pub const MAX_SW_SEGS: usize = 256;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const TCP_CSUM_OFF: u16 = 16;
const UDP_CSUM_OFF: u16 = 6;

/// `struct virtio_net_hdr`, fields in host order (the tap uses the host's, little-endian
/// on every target this builds for).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// [`F_NEEDS_CSUM`], [`F_DATA_VALID`].
    pub flags: u8,
    /// [`GSO_NONE`], [`GSO_TCPV4`], [`GSO_TCPV6`], ... with [`GSO_ECN`].
    pub gso_type: u8,
    /// Header bytes (the kernel puts its linear length here: a hint, at most the frame).
    pub hdr_len: u16,
    /// Payload bytes per segment of a super-frame.
    pub gso_size: u16,
    /// Where the checksummed span starts.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Decodes the 10 bytes in front of a frame.
    pub fn from_bytes(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }

    /// Encodes the header.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }
}

/// Why a received header (or a packet to send) was refused. Each has an xstat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VnetError {
    /// Fewer bytes arrived than the header itself.
    Short,
    /// `csum_start`/`csum_offset` point past the frame.
    CsumOffsets,
    /// A GSO type with `gso_size` 0.
    GsoSizeZero,
    /// `hdr_len` is larger than the frame.
    HdrLen,
    /// A `gso_type` other than none, TCPv4 or TCPv6 (UDP too: no software fallback).
    GsoType,
    /// A GSO header without `NEEDS_CSUM` (the virtio spec requires it).
    GsoWithoutCsum,
    /// The frame's headers do not match its GSO type (not Ethernet/IP/TCP, a checksum
    /// position that is not TCP's, or headers beyond the first segment).
    GsoHeaders,
    /// `gso_size` so small that the super-frame would make more than [`MAX_SW_SEGS`].
    TooManySegments,
    /// Software segmentation failed (the pool ran dry).
    Segmentation,
}

impl VnetError {
    /// Every error, in xstat order.
    pub const ALL: [VnetError; 9] = [
        VnetError::Short,
        VnetError::CsumOffsets,
        VnetError::GsoSizeZero,
        VnetError::HdrLen,
        VnetError::GsoType,
        VnetError::GsoWithoutCsum,
        VnetError::GsoHeaders,
        VnetError::TooManySegments,
        VnetError::Segmentation,
    ];

    /// The xstat counting it.
    pub fn xstat(self) -> &'static str {
        match self {
            VnetError::Short => "rx_vnet_err_short",
            VnetError::CsumOffsets => "rx_vnet_err_csum_offsets",
            VnetError::GsoSizeZero => "rx_vnet_err_gso_size_zero",
            VnetError::HdrLen => "rx_vnet_err_hdr_len",
            VnetError::GsoType => "rx_vnet_err_gso_type",
            VnetError::GsoWithoutCsum => "rx_vnet_err_gso_without_csum",
            VnetError::GsoHeaders => "rx_vnet_err_gso_headers",
            VnetError::TooManySegments => "rx_vnet_err_too_many_segments",
            VnetError::Segmentation => "rx_vnet_err_segmentation",
        }
    }
}

impl fmt::Display for VnetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VnetError::Short => "a frame shorter than the virtio-net header",
            VnetError::CsumOffsets => "csum_start/csum_offset point past the frame",
            VnetError::GsoSizeZero => "a GSO frame with gso_size 0",
            VnetError::HdrLen => "hdr_len is larger than the frame",
            VnetError::GsoType => "a gso_type other than TCPv4/TCPv6",
            VnetError::GsoWithoutCsum => "a GSO frame without NEEDS_CSUM",
            VnetError::GsoHeaders => "the frame's headers do not match its GSO type",
            VnetError::TooManySegments => "gso_size too small to segment in software",
            VnetError::Segmentation => "software segmentation failed (pool empty?)",
        })
    }
}

impl std::error::Error for VnetError {}

/// Offsets of an Ethernet / IPv4-or-IPv6 / TCP header block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpHdrs {
    /// Ethernet header length, tags included.
    pub l2: usize,
    /// IP header length (options or extension headers included).
    pub l3: usize,
    /// TCP header length (options included).
    pub l4: usize,
    /// IPv6 (else IPv4).
    pub v6: bool,
}

impl TcpHdrs {
    /// The lengths as an mbuf's [`TxOffload`], with `tso_segsz`.
    pub fn tx_offload(&self, tso_segsz: u16) -> TxOffload {
        TxOffload {
            l2_len: self.l2 as u8,
            l3_len: self.l3 as u16,
            l4_len: self.l4 as u8,
            tso_segsz,
            ..Default::default()
        }
    }

    /// Total header bytes.
    pub fn end(&self) -> usize {
        self.l2 + self.l3 + self.l4
    }
}

/// Finds the TCP header block at the start of `first` (a packet's first segment),
/// through at most two VLAN tags. With `l4_at` (a peer's `csum_start`), the TCP header
/// must start there (IPv6 extension headers are taken as its gap). `None` if the bytes
/// are not such a block or it runs past `first` or [`MAX_HDR_LEN`].
pub fn parse_tcp(first: &[u8], l4_at: Option<usize>) -> Option<TcpHdrs> {
    let be = |i: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*first.get(i)?, *first.get(i + 1)?]))
    };
    let mut l2 = 14usize;
    let mut et = be(12)?;
    let mut tags = 0;
    while (et == TPID_8021Q || et == TPID_8021AD) && tags < 2 {
        et = be(l2 + 2)?;
        l2 += 4;
        tags += 1;
    }
    let ip = first.get(l2..)?;
    let (l3, v6) = match et {
        ETH_P_IPV4 => {
            if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != IPPROTO_TCP {
                return None;
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ihl < 20 || l4_at.is_some_and(|s| s != l2 + ihl) {
                return None;
            }
            (ihl, false)
        }
        ETH_P_IPV6 => {
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return None;
            }
            match l4_at {
                Some(s) if s >= l2 + 40 => (s - l2, true),
                Some(_) => return None,
                None if ip[6] == IPPROTO_TCP => (40, true),
                None => return None,
            }
        }
        _ => return None,
    };
    let l4_off = l2 + l3;
    let doff = usize::from(*first.get(l4_off + 12)? >> 4) * 4;
    let end = l4_off + doff;
    if doff < 20 || end > first.len() || end > MAX_HDR_LEN || l3 > usize::from(u16::MAX) {
        return None;
    }
    Some(TcpHdrs {
        l2,
        l3,
        l4: doff,
        v6,
    })
}

/// What the rx path does with a frame whose header passed [`check_rx`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxAction {
    /// Nothing to do; `valid`: the kernel vouches for the checksum (`DATA_VALID`).
    Plain {
        /// `DATA_VALID` was set.
        valid: bool,
    },
    /// Complete the partial checksum (`NEEDS_CSUM`) at `start` + `offset`.
    Csum {
        /// Where the checksummed span starts.
        start: usize,
        /// Where the checksum goes, from `start`.
        offset: usize,
    },
    /// A TCP super-frame of `gso_size`-byte segments with these headers (its checksum
    /// field holds the pseudo-header sum).
    Gso {
        /// The header block.
        hdrs: TcpHdrs,
        /// Payload bytes per segment.
        gso_size: u16,
    },
}

/// Checks a received header against its frame `m` (the whole packet, any chain layout).
pub fn check_rx(h: &VnetHdr, m: &Mbuf) -> Result<RxAction, VnetError> {
    let len = m.len();
    if usize::from(h.hdr_len) > len {
        return Err(VnetError::HdrLen);
    }
    let csum = h.flags & F_NEEDS_CSUM != 0;
    let start = usize::from(h.csum_start);
    let offset = usize::from(h.csum_offset);
    if csum && (start >= len || start + offset + 2 > len) {
        return Err(VnetError::CsumOffsets);
    }
    let v6 = match h.gso_type & !GSO_ECN {
        GSO_NONE => {
            return Ok(if csum {
                RxAction::Csum { start, offset }
            } else {
                RxAction::Plain {
                    valid: h.flags & F_DATA_VALID != 0,
                }
            })
        }
        GSO_TCPV4 => false,
        GSO_TCPV6 => true,
        _ => return Err(VnetError::GsoType),
    };
    if h.gso_size == 0 {
        return Err(VnetError::GsoSizeZero);
    }
    if !csum {
        return Err(VnetError::GsoWithoutCsum);
    }
    let hdrs = parse_tcp(m.data(), Some(start)).ok_or(VnetError::GsoHeaders)?;
    if hdrs.v6 != v6 || offset != usize::from(TCP_CSUM_OFF) || hdrs.end() > len {
        return Err(VnetError::GsoHeaders);
    }
    let payload = len - hdrs.end();
    if payload.div_ceil(usize::from(h.gso_size)) > MAX_SW_SEGS {
        return Err(VnetError::TooManySegments);
    }
    Ok(RxAction::Gso {
        hdrs,
        gso_size: h.gso_size,
    })
}

/// The header to send `m` with: a GSO header when it asks for TSO (`TX_TCP_SEG`) or is
/// a received super-frame (`RX_LRO` with `tso_segsz`) and `tso` is on; a `NEEDS_CSUM`
/// header for `TX_TCP_CKSUM`/`TX_UDP_CKSUM`; else an empty one. `None` when the
/// packet's headers or lengths do not allow what it asks for.
pub fn tx_header(m: &Mbuf, tso: bool) -> Option<VnetHdr> {
    let flags = m.ol_flags();
    let t = m.tx_offload();
    let lro = flags & crate::mbuf::RX_LRO != 0 && t.tso_segsz > 0;
    if flags & TX_TCP_SEG != 0 || (lro && tso) {
        // The header block is read from the packet itself (the lengths of a packet
        // received elsewhere may be unset); the L4 start must match what was given.
        let hd = parse_tcp(m.data(), None)?;
        if t.tso_segsz == 0 || (flags & (TX_IPV4 | TX_IPV6) != 0 && (flags & TX_IPV6 != 0) != hd.v6)
        {
            return None;
        }
        let mut gso_type = if hd.v6 { GSO_TCPV6 } else { GSO_TCPV4 };
        // CWR in the super-frame: the kernel's segmentation must know.
        if m.data()[hd.l2 + hd.l3 + 13] & 0x80 != 0 {
            gso_type |= GSO_ECN;
        }
        return Some(VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: hd.end() as u16,
            gso_size: t.tso_segsz,
            csum_start: (hd.l2 + hd.l3) as u16,
            csum_offset: TCP_CSUM_OFF,
        });
    }
    let l4 = flags & TX_L4_MASK;
    if l4 == 0 {
        return Some(VnetHdr::default());
    }
    let off = match l4 {
        crate::mbuf::TX_TCP_CKSUM => TCP_CSUM_OFF,
        TX_UDP_CKSUM => UDP_CSUM_OFF,
        _ => return None,
    };
    let start = usize::from(t.l2_len) + usize::from(t.l3_len);
    if start + usize::from(off) + 2 > m.data_len() || start > usize::from(u16::MAX) {
        return None;
    }
    Some(VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: start as u16,
        csum_offset: off,
    })
}

/// Counters of the vnet path, shared by a device and its queues (each by name in the
/// port's xstats).
#[derive(Debug, Default)]
pub struct VnetStats {
    errors: [AtomicU64; VnetError::ALL.len()],
    /// Super-frames delivered whole as `RX_LRO` packets.
    pub rx_lro_packets: AtomicU64,
    /// Bytes of those.
    pub rx_lro_bytes: AtomicU64,
    /// Super-frames cut into packets in software (no `TCP_LRO`).
    pub rx_gso_segmented: AtomicU64,
    /// Packets made by that.
    pub rx_gso_segments: AtomicU64,
    /// Partial checksums completed in software.
    pub rx_csum_completed: AtomicU64,
    /// Super-frames handed to the kernel with a GSO header.
    pub tx_gso_packets: AtomicU64,
    /// Packets sent with a `NEEDS_CSUM` header.
    pub tx_csum_packets: AtomicU64,
    /// Packets refused for offload requests their headers do not allow.
    pub tx_offload_errors: AtomicU64,
    /// Super-frames cut into frames in software, for a peer that cannot take them whole.
    pub tx_sw_segmented: AtomicU64,
}

impl VnetStats {
    /// Counts one refused header.
    pub fn count(&self, e: VnetError) {
        let i = VnetError::ALL.iter().position(|&x| x == e).unwrap_or(0);
        self.errors[i].fetch_add(1, Ordering::Relaxed);
    }

    /// How many of `e` were counted.
    pub fn errors(&self, e: VnetError) -> u64 {
        let i = VnetError::ALL.iter().position(|&x| x == e).unwrap_or(0);
        self.errors[i].load(Ordering::Relaxed)
    }

    /// Every refused header, all kinds.
    pub fn total_errors(&self) -> u64 {
        self.errors.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }

    /// Every counter, by xstat name.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut v = vec![
            ("rx_lro_packets".to_string(), r(&self.rx_lro_packets)),
            ("rx_lro_bytes".to_string(), r(&self.rx_lro_bytes)),
            ("rx_gso_segmented".to_string(), r(&self.rx_gso_segmented)),
            ("rx_gso_segments".to_string(), r(&self.rx_gso_segments)),
            ("rx_csum_completed".to_string(), r(&self.rx_csum_completed)),
            ("tx_gso_packets".to_string(), r(&self.tx_gso_packets)),
            ("tx_csum_packets".to_string(), r(&self.tx_csum_packets)),
            ("tx_offload_errors".to_string(), r(&self.tx_offload_errors)),
            ("tx_sw_segmented".to_string(), r(&self.tx_sw_segmented)),
        ];
        v.extend(
            VnetError::ALL
                .iter()
                .map(|&e| (e.xstat().to_string(), self.errors(e))),
        );
        v
    }
}

/// What the rx path does with each received frame's header: the checks of [`check_rx`]
/// and their effect on the packet. Public so that fuzzing can drive exactly the code the
/// queue runs.
#[derive(Debug)]
pub struct RxProcessor {
    /// Keep super-frames whole (`RX_LRO`) rather than segmenting them.
    pub lro: bool,
    /// The counters.
    pub stats: std::sync::Arc<VnetStats>,
}

impl RxProcessor {
    /// Applies header `h` to the received packet `m`: hands the packet(s) to be delivered
    /// to `out` (one, or the segments of a super-frame when not keeping it whole); on a
    /// refused header the packet is dropped, the error counted and returned. Segments
    /// come from `pool`.
    pub fn process(
        &self,
        h: &VnetHdr,
        mut m: Mbuf,
        pool: &crate::Mempool,
        mut out: impl FnMut(Mbuf),
    ) -> Result<(), VnetError> {
        use crate::mbuf::{RX_L4_CKSUM_GOOD, RX_L4_CKSUM_NONE, RX_LRO, TX_IP_CKSUM};
        let action = check_rx(h, &m).inspect_err(|&e| self.stats.count(e))?;
        match action {
            RxAction::Plain { valid } => {
                if valid {
                    m.set_ol_flags(m.ol_flags() | RX_L4_CKSUM_GOOD);
                }
                out(m);
            }
            RxAction::Csum { start, offset } => {
                if !crate::offload::complete_partial_checksum(&mut m, start, offset) {
                    // check_rx vouched for the offsets; kept as a guard.
                    self.stats.count(VnetError::CsumOffsets);
                    return Err(VnetError::CsumOffsets);
                }
                self.stats.rx_csum_completed.fetch_add(1, Ordering::Relaxed);
                m.set_ol_flags(m.ol_flags() | RX_L4_CKSUM_GOOD);
                out(m);
            }
            RxAction::Gso { hdrs, gso_size } => {
                m.set_tx_offload(hdrs.tx_offload(gso_size));
                if self.lro {
                    self.stats.rx_lro_packets.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .rx_lro_bytes
                        .fetch_add(m.len() as u64, Ordering::Relaxed);
                    m.set_ol_flags(m.ol_flags() | RX_LRO | RX_L4_CKSUM_NONE);
                    out(m);
                } else {
                    let ip = if hdrs.v6 {
                        TX_IPV6
                    } else {
                        TX_IPV4 | TX_IP_CKSUM
                    };
                    m.set_ol_flags(TX_TCP_SEG | ip);
                    let n = crate::offload::tso_segment(m, pool, |mut s| {
                        s.set_ol_flags(RX_L4_CKSUM_GOOD);
                        out(s)
                    })
                    .map_err(|_| {
                        self.stats.count(VnetError::Segmentation);
                        VnetError::Segmentation
                    })?;
                    self.stats.rx_gso_segmented.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .rx_gso_segments
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }
}

/// Computes the IPv4 header checksum a packet asks for (`TX_IP_CKSUM`) in software,
/// leaving its L4 request (checksum or segmentation) for the kernel, which completes L4
/// checksums and segments but never fills in the IPv4 checksum of a packet it does not
/// segment. False if the packet's lengths do not allow it.
pub fn ip_checksum_for_kernel(m: &mut Mbuf) -> bool {
    let f = m.ol_flags();
    m.set_ol_flags(f & !(TX_L4_MASK | TX_TCP_SEG));
    let ok = crate::offload::checksum(m).is_ok();
    m.set_ol_flags(f & !crate::mbuf::TX_IP_CKSUM);
    ok
}

/// `tx_prepare` for a port whose kernel completes checksums and segments from a vnet
/// header: like [`crate::offload::prepare`], except that a TSO packet's TCP checksum field
/// gets the pseudo-header sum with its length (what the kernel wants, unlike a NIC).
/// Returns how many packets from the front are ready.
pub fn prepare_batch_for_kernel(batch: &mut crate::PktBatch) -> usize {
    for (i, m) in batch.iter_mut().enumerate() {
        let f = m.ol_flags();
        let ok = if f & TX_TCP_SEG != 0 {
            m.set_ol_flags((f & !(TX_TCP_SEG | TX_L4_MASK)) | crate::mbuf::TX_TCP_CKSUM);
            let r = crate::offload::prepare(m);
            m.set_ol_flags(f);
            r.is_ok() && m.tx_offload().tso_segsz > 0
        } else {
            crate::offload::prepare(m).is_ok()
        };
        if !ok {
            return i;
        }
    }
    batch.len()
}

/// The virtio feature bits both ends of a virtio-net device use (virtio 1.2 sections
/// 5.1.3 "Feature bits" and 6 "Reserved Feature Bits"): the driver side (`pmd-virtio`)
/// asks for them, the device side (`pmd-vhost`) offers them.
pub mod features {
    /// The device completes partial checksums of packets the driver sends (`NEEDS_CSUM`).
    pub const VIRTIO_NET_F_CSUM: u64 = 1 << 0;
    /// The driver accepts packets with a partial checksum (`NEEDS_CSUM`) and
    /// checksum-validated packets (`DATA_VALID`).
    pub const VIRTIO_NET_F_GUEST_CSUM: u64 = 1 << 1;
    /// The device reports a maximum MTU in its configuration.
    pub const VIRTIO_NET_F_MTU: u64 = 1 << 3;
    /// The device has a MAC address in its configuration.
    pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
    /// The driver takes TCPv4 GSO super-frames on receive.
    pub const VIRTIO_NET_F_GUEST_TSO4: u64 = 1 << 7;
    /// The driver takes TCPv6 GSO super-frames on receive.
    pub const VIRTIO_NET_F_GUEST_TSO6: u64 = 1 << 8;
    /// The device segments TCPv4 super-frames the driver sends.
    pub const VIRTIO_NET_F_HOST_TSO4: u64 = 1 << 11;
    /// The device segments TCPv6 super-frames the driver sends.
    pub const VIRTIO_NET_F_HOST_TSO6: u64 = 1 << 12;
    /// The driver can merge receive buffers (the header carries `num_buffers`).
    pub const VIRTIO_NET_F_MRG_RXBUF: u64 = 1 << 15;
    /// The configuration has a link status field.
    pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
    /// Control virtqueue.
    pub const VIRTIO_NET_F_CTRL_VQ: u64 = 1 << 17;
    /// Receive filtering commands (promiscuous, all-multicast) on the control queue.
    pub const VIRTIO_NET_F_CTRL_RX: u64 = 1 << 18;
    /// Multiqueue with automatic receive steering.
    pub const VIRTIO_NET_F_MQ: u64 = 1 << 22;
    /// Legacy: the device accepts any framing of header and packet in descriptors
    /// (always so with `VERSION_1`).
    pub const VIRTIO_F_ANY_LAYOUT: u64 = 1 << 27;
    /// Indirect descriptor tables.
    pub const VIRTIO_F_INDIRECT_DESC: u64 = 1 << 28;
    /// `used_event` / `avail_event` notification suppression.
    pub const VIRTIO_F_EVENT_IDX: u64 = 1 << 29;
    /// Virtio 1.x (modern) device; the net header is always 12 bytes.
    pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
    /// Packed virtqueues.
    pub const VIRTIO_F_RING_PACKED: u64 = 1 << 34;
    /// Buffers are used in the order they were made available.
    pub const VIRTIO_F_IN_ORDER: u64 = 1 << 35;
}
