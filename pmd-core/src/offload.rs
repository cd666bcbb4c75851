//! Transmit offloads done in software, and the preparation step hardware offloads need.
//!
//! Every function works from the lengths in the mbuf's [`TxOffload`] (`l2_len`, `l3_len`,
//! `l4_len`, `tso_segsz`) and its `TX_*` flags, as DPDK's do, so no header is parsed on
//! this path beyond reading fixed fields; the lengths are checked against the packet
//! before any byte is touched. Headers must sit in the first segment; payload may span
//! any number of segments.
//!
//! - [`prepare`]: what a NIC or a virtio device expects before it completes a checksum or
//!   segments a packet (the pseudo-header sum in the L4 checksum field, a zeroed IPv4
//!   checksum).
//! - [`checksum`]: IPv4 header and TCP/UDP checksums computed here.
//! - [`tso_segment`]: one TCP super-frame cut into MSS-sized packets, each with correct
//!   headers and checksums.
//! - [`vlan_insert`] / [`vlan_strip`]: 802.1Q/802.1ad tags between the packet and metadata.

use crate::csum;
use crate::mbuf::{
    ChainError, Mbuf, PktBatch, TxOffload, RX_QINQ, RX_QINQ_STRIPPED, RX_VLAN, RX_VLAN_STRIPPED,
    TX_IPV4, TX_IPV6, TX_IP_CKSUM, TX_L4_MASK, TX_QINQ, TX_TCP_CKSUM, TX_TCP_SEG, TX_UDP_CKSUM,
    TX_UDP_SEG, TX_VLAN,
};
use crate::mempool::Mempool;

/// TPID of an 802.1Q (customer) VLAN tag.
pub const TPID_8021Q: u16 = 0x8100;
/// TPID of an 802.1ad (service, outer QinQ) tag.
pub const TPID_8021AD: u16 = 0x88a8;
/// Largest header block (L2 + L3 + L4) the offloads handle.
pub const MAX_HDR_LEN: usize = 512;

/// Why an offload could not be applied; the packet is unchanged unless noted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// `l2_len`/`l3_len`/`l4_len` do not fit the packet or the first segment.
    #[error("the l2/l3/l4 lengths run past the packet or its first segment; set them from the real headers")]
    HeaderLengths,
    /// Neither `TX_IPV4` nor `TX_IPV6` is set, or the version field disagrees.
    #[error("a checksum or TSO request needs TX_IPV4 or TX_IPV6 matching the packet")]
    L3Type,
    /// `tso_segsz` is 0.
    #[error("TSO needs tso_segsz > 0")]
    SegmentSize,
    /// UDP segmentation and SCTP checksums are not done in software.
    #[error("this offload (UDP segmentation or SCTP checksum) has no software fallback")]
    Unsupported,
    /// The VLAN tag does not fit the headroom.
    #[error("no headroom left for a VLAN tag")]
    NoHeadroom,
    /// Building segments failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// Header offsets taken from a packet's [`TxOffload`], checked against it.
#[derive(Clone, Copy, Debug)]
struct Hdrs {
    l3: usize,
    l4: usize,
    end: usize,
    v4: bool,
}

fn hdrs(m: &Mbuf, need_l4: bool) -> Result<Hdrs, OffloadError> {
    let t: TxOffload = m.tx_offload();
    let l3 = usize::from(t.l2_len);
    let l4 = l3 + usize::from(t.l3_len);
    let end = l4 + usize::from(t.l4_len);
    let first = m.data();
    let min_l3 = if m.ol_flags() & TX_IPV6 != 0 { 40 } else { 20 };
    if usize::from(t.l3_len) < min_l3 || end > first.len().min(MAX_HDR_LEN) || end > m.len() {
        return Err(OffloadError::HeaderLengths);
    }
    let v4 = match m.ol_flags() & (TX_IPV4 | TX_IPV6) {
        TX_IPV4 if first[l3] >> 4 == 4 => true,
        TX_IPV6 if first[l3] >> 4 == 6 => false,
        _ => return Err(OffloadError::L3Type),
    };
    if need_l4 {
        let min_l4 = if m.ol_flags() & TX_L4_MASK == TX_UDP_CKSUM {
            8
        } else {
            20
        };
        if usize::from(t.l4_len) < min_l4 {
            return Err(OffloadError::HeaderLengths);
        }
    }
    Ok(Hdrs { l3, l4, end, v4 })
}

/// The unfolded pseudo-header sum for an L4 segment of `l4_len` bytes (0 leaves the
/// length out, as TSO hardware wants).
fn pseudo_sum(first: &[u8], h: &Hdrs, l4_len: usize) -> u64 {
    if h.v4 {
        let ip = &first[h.l3..];
        let acc = csum::add(0, &ip[12..20]);
        acc + u64::from(ip[9]) + l4_len as u64
    } else {
        let ip = &first[h.l3..];
        let acc = csum::add(0, &ip[8..40]);
        acc + u64::from(ip[6]) + l4_len as u64
    }
}

/// Offset of the L4 checksum field inside the L4 header.
fn l4_csum_off(flags: u64) -> Result<usize, OffloadError> {
    if flags & TX_TCP_SEG != 0 {
        return Ok(16);
    }
    match flags & TX_L4_MASK {
        TX_TCP_CKSUM => Ok(16),
        TX_UDP_CKSUM => Ok(6),
        0 => Err(OffloadError::Unsupported),
        _ => Err(OffloadError::Unsupported),
    }
}

/// Writes what a device completing checksums or segmenting expects: a zero IPv4 header
/// checksum (with `TX_IP_CKSUM`) and the pseudo-header sum in the L4 checksum field (with
/// a TCP/UDP checksum or TSO request; TSO's leaves the length out). Packets without
/// transmit requests are untouched.
pub fn prepare(m: &mut Mbuf) -> Result<(), OffloadError> {
    let flags = m.ol_flags();
    let l4 = flags & (TX_L4_MASK | TX_TCP_SEG);
    if flags & TX_UDP_SEG != 0 {
        return Err(OffloadError::Unsupported);
    }
    if flags & TX_IP_CKSUM == 0 && l4 == 0 {
        return Ok(());
    }
    let h = hdrs(m, l4 != 0)?;
    if flags & TX_TCP_SEG != 0 && m.tx_offload().tso_segsz == 0 {
        return Err(OffloadError::SegmentSize);
    }
    let total = m.len();
    let first = m.data_mut();
    if flags & TX_IP_CKSUM != 0 && h.v4 {
        first[h.l3 + 10..h.l3 + 12].fill(0);
    }
    if l4 != 0 {
        let off = h.l4 + l4_csum_off(flags)?;
        let len = if flags & TX_TCP_SEG != 0 {
            0
        } else {
            total - h.l4
        };
        let sum = csum::fold(pseudo_sum(first, &h, len));
        first[off..off + 2].copy_from_slice(&sum.to_be_bytes());
    }
    Ok(())
}

/// [`prepare`] over a burst: how many packets from the front are ready.
pub fn prepare_batch(batch: &mut PktBatch) -> usize {
    for (i, m) in batch.iter_mut().enumerate() {
        if prepare(m).is_err() {
            return i;
        }
    }
    batch.len()
}

/// The unfolded sum of packet bytes `[off, off + len)` across segments.
fn sum_span(m: &Mbuf, off: usize, len: usize) -> u64 {
    let mut acc = 0u64;
    let mut skip = off;
    let mut left = len;
    let mut odd = false;
    for seg in m.segments() {
        if left == 0 {
            break;
        }
        if skip >= seg.len() {
            skip -= seg.len();
            continue;
        }
        let n = (seg.len() - skip).min(left);
        let s = csum::fold(csum::add(0, &seg[skip..skip + n]));
        // A piece that starts at an odd position sums with its bytes swapped.
        acc += u64::from(if odd { s.swap_bytes() } else { s });
        odd ^= n % 2 == 1;
        left -= n;
        skip = 0;
    }
    acc
}

/// Completes a partial checksum, as a virtio or tap peer hands it over (`NEEDS_CSUM`):
/// the 16-bit field at `start + offset` holds the pseudo-header sum; the folded, inverted
/// sum of every byte from `start` to the end (across segments) goes in its place. Both
/// offsets come from a peer: false (packet unchanged) when they do not fit the packet.
pub fn complete_partial_checksum(m: &mut Mbuf, start: usize, offset: usize) -> bool {
    let len = m.len();
    let Some(field) = start.checked_add(offset) else {
        return false;
    };
    if start >= len || field.checked_add(2).is_none_or(|e| e > len) {
        return false;
    }
    let c = !csum::fold(sum_span(m, start, len - start));
    let c = if c == 0 { 0xffff } else { c };
    m.write(field, &c.to_be_bytes()).is_ok()
}

/// Computes in software what `TX_IP_CKSUM` and `TX_TCP_CKSUM`/`TX_UDP_CKSUM` ask for, over
/// every segment, and clears those flags. A UDP checksum of 0 is sent as 0xffff.
pub fn checksum(m: &mut Mbuf) -> Result<(), OffloadError> {
    let flags = m.ol_flags();
    let l4 = flags & TX_L4_MASK;
    if flags & TX_IP_CKSUM == 0 && l4 == 0 {
        return Ok(());
    }
    if l4 != 0 && l4 != TX_TCP_CKSUM && l4 != TX_UDP_CKSUM {
        return Err(OffloadError::Unsupported);
    }
    let h = hdrs(m, l4 != 0)?;
    let total = m.len();
    if flags & TX_IP_CKSUM != 0 && h.v4 {
        let first = m.data_mut();
        let ihl = usize::from(first[h.l3] & 0x0f) * 4;
        if ihl < 20 || h.l3 + ihl > h.l4 {
            return Err(OffloadError::HeaderLengths);
        }
        first[h.l3 + 10..h.l3 + 12].fill(0);
        let c = csum::checksum(&first[h.l3..h.l3 + ihl]);
        first[h.l3 + 10..h.l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    if l4 != 0 {
        let off = h.l4 + l4_csum_off(flags)?;
        let len = total - h.l4;
        m.data_mut()[off..off + 2].fill(0);
        let acc = pseudo_sum(m.data(), &h, len) + sum_span(m, h.l4, len);
        let mut c = !csum::fold(acc);
        if l4 == TX_UDP_CKSUM && c == 0 {
            c = 0xffff;
        }
        m.data_mut()[off..off + 2].copy_from_slice(&c.to_be_bytes());
    }
    m.set_ol_flags(flags & !(TX_IP_CKSUM | TX_L4_MASK));
    Ok(())
}

/// Cuts a TCP packet flagged `TX_TCP_SEG` into packets of at most `tso_segsz` payload
/// bytes from `pool`, each with its own IP length and id, TCP sequence number, flags
/// (FIN/PSH only on the last, CWR only on the first) and correct checksums, and hands
/// them to `out` in order. Returns how many it made. The original is consumed; a packet
/// whose payload already fits one segment comes out as it is, checksummed.
pub fn tso_segment(
    mut m: Mbuf,
    pool: &Mempool,
    mut out: impl FnMut(Mbuf),
) -> Result<usize, OffloadError> {
    let flags = m.ol_flags();
    if flags & TX_TCP_SEG == 0 {
        return Err(OffloadError::Unsupported);
    }
    let t = m.tx_offload();
    let seg = usize::from(t.tso_segsz);
    if seg == 0 {
        return Err(OffloadError::SegmentSize);
    }
    m.set_ol_flags((flags & !TX_TCP_SEG & !TX_L4_MASK) | TX_TCP_CKSUM);
    let h = hdrs(&m, true)?;
    let payload = m.len() - h.end;
    let keep = flags & !(TX_TCP_SEG | TX_L4_MASK | TX_IP_CKSUM);
    if payload <= seg {
        m.set_ol_flags(keep | TX_TCP_CKSUM | if h.v4 { TX_IP_CKSUM } else { 0 });
        checksum(&mut m)?;
        out(m);
        return Ok(1);
    }
    let hdr: Vec<u8> = m.data()[..h.end].to_vec();
    let base_seq = u32::from_be_bytes([hdr[h.l4 + 4], hdr[h.l4 + 5], hdr[h.l4 + 6], hdr[h.l4 + 7]]);
    let base_id = u16::from_be_bytes([hdr[h.l3 + 4], hdr[h.l3 + 5]]);
    let tcp_flags = hdr[h.l4 + 13];
    let n = payload.div_ceil(seg);
    let mut chunk = vec![0u8; seg];
    // Build every segment before handing any out, so a pool shortage sends nothing.
    let mut built = Vec::with_capacity(n);
    for i in 0..n {
        let off = i * seg;
        let len = seg.min(payload - off);
        m.read(h.end + off, &mut chunk[..len])?;
        let mut s = Mbuf::from_slice(&hdr, pool)?;
        s.extend_from_slice(&chunk[..len], pool)?;
        {
            let d = s.data_mut();
            if h.v4 {
                let tot = (h.end - h.l3 + len) as u16;
                d[h.l3 + 2..h.l3 + 4].copy_from_slice(&tot.to_be_bytes());
                let id = base_id.wrapping_add(i as u16);
                d[h.l3 + 4..h.l3 + 6].copy_from_slice(&id.to_be_bytes());
            } else {
                let pl = (h.end - h.l4 + len + (h.l4 - h.l3 - 40)) as u16;
                d[h.l3 + 4..h.l3 + 6].copy_from_slice(&pl.to_be_bytes());
            }
            let sq = base_seq.wrapping_add(off as u32);
            d[h.l4 + 4..h.l4 + 8].copy_from_slice(&sq.to_be_bytes());
            let mut f = tcp_flags;
            if i + 1 != n {
                f &= !(0x01 | 0x08); // FIN, PSH only on the last
            }
            if i != 0 {
                f &= !0x80; // CWR only on the first
            }
            d[h.l4 + 13] = f;
        }
        s.set_port(m.port());
        s.set_tx_offload(t);
        s.set_ol_flags(keep | TX_TCP_CKSUM | if h.v4 { TX_IP_CKSUM } else { 0 });
        checksum(&mut s)?;
        built.push(s);
    }
    for s in built {
        out(s);
    }
    Ok(n)
}

/// Inserts the tag(s) asked for: `TX_VLAN` puts `vlan_tci` in an 802.1Q tag after the MAC
/// addresses; `TX_QINQ` puts `vlan_tci_outer` in an 802.1ad tag outside it. Clears the
/// flags and grows `l2_len` accordingly.
pub fn vlan_insert(m: &mut Mbuf) -> Result<(), OffloadError> {
    let flags = m.ol_flags();
    let tags: &[(u16, u16)] = match (flags & TX_VLAN != 0, flags & TX_QINQ != 0) {
        (false, false) => return Ok(()),
        (_, true) => &[
            (TPID_8021AD, m.vlan_tci_outer()),
            (TPID_8021Q, m.vlan_tci()),
        ],
        (true, false) => &[(TPID_8021Q, m.vlan_tci())],
    };
    let add = 4 * tags.len();
    if m.data_len() < 12 {
        return Err(OffloadError::HeaderLengths);
    }
    if m.headroom() < add {
        return Err(OffloadError::NoHeadroom);
    }
    let tags = tags.to_vec();
    let d = m.prepend(add).ok_or(OffloadError::NoHeadroom)?;
    let _ = d;
    let d = m.data_mut();
    d.copy_within(add..add + 12, 0);
    for (i, (tpid, tci)) in tags.iter().enumerate() {
        let at = 12 + 4 * i;
        d[at..at + 2].copy_from_slice(&tpid.to_be_bytes());
        d[at + 2..at + 4].copy_from_slice(&tci.to_be_bytes());
    }
    let mut t = m.tx_offload();
    t.l2_len = t.l2_len.saturating_add(add as u8);
    m.set_tx_offload(t);
    m.set_ol_flags(flags & !(TX_VLAN | TX_QINQ));
    Ok(())
}

/// Strips the outermost VLAN tag (802.1Q or 802.1ad) into `vlan_tci` and sets
/// `RX_VLAN | RX_VLAN_STRIPPED`; with `qinq`, a second tag goes to `vlan_tci` and the
/// outer to `vlan_tci_outer` (`RX_QINQ_STRIPPED`). Returns whether a tag was stripped.
pub fn vlan_strip(m: &mut Mbuf, qinq: bool) -> bool {
    let d = m.data();
    if d.len() < 18 {
        return false;
    }
    let tpid = u16::from_be_bytes([d[12], d[13]]);
    if tpid != TPID_8021Q && tpid != TPID_8021AD {
        return false;
    }
    let tci = u16::from_be_bytes([d[14], d[15]]);
    let inner = u16::from_be_bytes([d[16], d[17]]);
    let two = qinq && d.len() >= 22 && inner == TPID_8021Q;
    let mut flags = m.ol_flags() | RX_VLAN | RX_VLAN_STRIPPED;
    let cut = if two {
        let itci = u16::from_be_bytes([d[18], d[19]]);
        m.set_vlan_tci_outer(tci);
        m.set_vlan_tci(itci);
        flags |= RX_QINQ | RX_QINQ_STRIPPED;
        8
    } else {
        m.set_vlan_tci(tci);
        4
    };
    let dm = m.data_mut();
    dm.copy_within(0..12, cut);
    m.adj(cut);
    m.set_ol_flags(flags);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbuf::{HEADROOM, TX_OUTER_IPV4};
    use crate::mempool::MempoolConfig;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    fn pool(name: &str, data: u16) -> Mempool {
        Mempool::create_with(
            name,
            &MempoolConfig {
                size: 256,
                cache_size: 0,
                buf_size: HEADROOM + data,
            },
        )
        .unwrap()
    }

    fn tcp_frame(payload: usize, v6: bool) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let b = if v6 {
            b.ipv6([0xfd; 16], [0xfe; 16], 64)
        } else {
            b.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        };
        let b = b.tcp(1234, 80, 1000, 65535).psh().ack(77);
        let data: Vec<u8> = (0..payload).map(|i| (i * 13) as u8).collect();
        let mut v = Vec::new();
        b.write(&mut v, &data).unwrap();
        v
    }

    fn udp_frame(payload: usize) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5000, 6000);
        let data: Vec<u8> = (0..payload).map(|i| (i * 5 + 1) as u8).collect();
        let mut v = Vec::new();
        b.write(&mut v, &data).unwrap();
        v
    }

    /// Checks IPv4 and TCP/UDP checksums of a whole frame with etherparse.
    fn checksums_ok(f: &[u8]) -> bool {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let (ip_ok, src, dst, v4) = match p.net.as_ref().unwrap() {
            etherparse::NetSlice::Ipv4(ip) => {
                let h = ip.header().to_header();
                (
                    h.calc_header_checksum() == h.header_checksum,
                    ip.header().source().to_vec(),
                    ip.header().destination().to_vec(),
                    true,
                )
            }
            etherparse::NetSlice::Ipv6(ip) => (
                true,
                ip.header().source().to_vec(),
                ip.header().destination().to_vec(),
                false,
            ),
        };
        let l4_ok = match p.transport.as_ref().unwrap() {
            TransportSlice::Tcp(t) => {
                let h = t.to_header();
                let c = if v4 {
                    h.calc_checksum_ipv4_raw(
                        src[..].try_into().unwrap(),
                        dst[..].try_into().unwrap(),
                        t.payload(),
                    )
                } else {
                    h.calc_checksum_ipv6_raw(
                        src[..].try_into().unwrap(),
                        dst[..].try_into().unwrap(),
                        t.payload(),
                    )
                };
                c.unwrap() == h.checksum
            }
            TransportSlice::Udp(u) => {
                let h = u.to_header();
                h.calc_checksum_ipv4_raw(
                    src[..].try_into().unwrap(),
                    dst[..].try_into().unwrap(),
                    u.payload(),
                )
                .unwrap()
                    == h.checksum
            }
            _ => false,
        };
        ip_ok && l4_ok
    }

    fn offl(l3: u16, l4: u8, seg: u16) -> TxOffload {
        TxOffload {
            l2_len: 14,
            l3_len: l3,
            l4_len: l4,
            tso_segsz: seg,
            ..Default::default()
        }
    }

    #[test]
    fn software_checksum_over_a_chain_with_odd_segments() {
        // A 75-byte first segment, then 16 and 91: odd boundaries exercise the byte swap.
        let p = pool("ofl-ck", 91);
        for (frame, l4flag, l4len) in [
            (tcp_frame(1000, false), TX_TCP_CKSUM, 20),
            (udp_frame(777), TX_UDP_CKSUM, 8),
            (tcp_frame(333, true), TX_TCP_CKSUM, 20),
        ] {
            let mut f = frame.clone();
            let v6 = f[12..14] == [0x86, 0xdd];
            // Spoil the checksums.
            let l4 = if v6 { 54 } else { 34 };
            let ck = if l4len == 8 { l4 + 6 } else { l4 + 16 };
            f[ck] ^= 0x55;
            if !v6 {
                f[24] ^= 0x11;
            }
            let mut m = Mbuf::from_slice(&f[..75], &p).unwrap();
            m.extend_from_slice(&f[75..], &p).unwrap();
            assert!(m.nb_segs() > 3);
            m.set_tx_offload(offl(if v6 { 40 } else { 20 }, l4len, 0));
            m.set_ol_flags(l4flag | if v6 { TX_IPV6 } else { TX_IPV4 | TX_IP_CKSUM });
            checksum(&mut m).unwrap();
            assert_eq!(m.ol_flags() & (TX_L4_MASK | TX_IP_CKSUM), 0);
            assert_eq!(m.to_vec(), frame, "checksums restored exactly");
            assert!(checksums_ok(&m.to_vec()));
        }
    }

    #[test]
    fn bad_lengths_are_refused_before_any_write() {
        let p = pool("ofl-bad", 2048);
        let f = tcp_frame(100, false);
        let mut m = Mbuf::from_slice(&f, &p).unwrap();
        for (t, flags) in [
            (offl(20, 20, 0), TX_TCP_CKSUM),            // no TX_IPV4
            (offl(20, 20, 0), TX_TCP_CKSUM | TX_IPV6),  // wrong version
            (offl(200, 20, 0), TX_TCP_CKSUM | TX_IPV4), // beyond the packet
            (offl(10, 20, 0), TX_TCP_CKSUM | TX_IPV4),  // IPv4 shorter than 20
            (offl(20, 4, 0), TX_TCP_CKSUM | TX_IPV4),   // TCP shorter than 20
            (offl(20, 20, 0), TX_TCP_SEG | TX_IPV4),    // tso_segsz 0
            (offl(20, 20, 0), TX_UDP_SEG | TX_IPV4),    // no UFO
        ] {
            m.set_tx_offload(t);
            m.set_ol_flags(flags);
            assert!(prepare(&mut m).is_err(), "{t:?} {flags:#x}");
            assert_eq!(m.to_vec(), f);
        }
        m.set_ol_flags(TX_OUTER_IPV4);
        assert_eq!(prepare(&mut m), Ok(()), "no request: nothing to do");
    }

    #[test]
    fn prepare_writes_the_pseudo_header_sum() {
        let p = pool("ofl-prep", 2048);
        let f = tcp_frame(100, false);
        let mut m = Mbuf::from_slice(&f, &p).unwrap();
        m.set_tx_offload(offl(20, 20, 0));
        m.set_ol_flags(TX_TCP_CKSUM | TX_IPV4 | TX_IP_CKSUM);
        prepare(&mut m).unwrap();
        let d = m.data();
        assert_eq!(&d[24..26], &[0, 0], "IPv4 checksum zeroed for the device");
        // Completing the sum over the L4 bytes (field holding the pseudo sum) gives the
        // real checksum: that is what a device does.
        let c = !csum::ones_complement_sum(&d[34..]);
        assert_eq!(c.to_be_bytes(), [f[50], f[51]]);
    }

    #[test]
    fn tso_cuts_a_super_frame_into_valid_segments() {
        for (v6, data_room) in [(false, 2048), (true, 2048), (false, 700)] {
            let p = pool(&format!("ofl-tso-{v6}-{data_room}"), data_room);
            let f = tcp_frame(10_000, v6);
            let mut m = Mbuf::from_slice(&f, &p).unwrap();
            let l3 = if v6 { 40 } else { 20 };
            m.set_tx_offload(offl(l3, 20, 1448));
            m.set_ol_flags(TX_TCP_SEG | if v6 { TX_IPV6 } else { TX_IPV4 | TX_IP_CKSUM });
            let mut segs = Vec::new();
            let n = tso_segment(m, &p, |s| segs.push(s.to_vec())).unwrap();
            assert_eq!(n, 7);
            let mut payload = Vec::new();
            let mut seq = 1000u32;
            for (i, s) in segs.iter().enumerate() {
                assert!(checksums_ok(s), "segment {i}");
                let pk = SlicedPacket::from_ethernet(s).unwrap();
                let Some(TransportSlice::Tcp(t)) = pk.transport else {
                    panic!()
                };
                assert_eq!(t.sequence_number(), seq);
                assert_eq!(t.psh(), i == n - 1, "PSH only on the last");
                seq += t.payload().len() as u32;
                payload.extend_from_slice(t.payload());
                assert!(t.payload().len() <= 1448);
            }
            let want: Vec<u8> = (0..10_000).map(|i| (i * 13) as u8).collect();
            assert_eq!(payload, want);
            assert_eq!(p.stats().in_use, 0);
        }
    }

    #[test]
    fn partial_checksum_completed_across_segments_and_bad_offsets_refused() {
        let p = pool("ofl-partial", 91);
        let want = udp_frame(500);
        let mut f = want.clone();
        // What a sender leaves: the pseudo-header sum in the UDP checksum field.
        let ph = {
            let mut acc = csum::add(0, &f[26..34]);
            acc += 17 + (f.len() - 34) as u64;
            csum::fold(acc)
        };
        f[40..42].copy_from_slice(&ph.to_be_bytes());
        let mut m = Mbuf::from_slice(&f[..75], &p).unwrap();
        m.extend_from_slice(&f[75..], &p).unwrap();
        for (start, off) in [(600, 6), (34, 600), (usize::MAX, 6), (34, usize::MAX)] {
            assert!(!complete_partial_checksum(&mut m, start, off));
        }
        assert_eq!(m.to_vec(), f, "refused offsets leave the packet as it was");
        assert!(complete_partial_checksum(&mut m, 34, 6));
        assert_eq!(m.to_vec(), want);
    }

    #[test]
    fn vlan_insert_and_strip_round_trip() {
        let p = pool("ofl-vlan", 2048);
        let f = udp_frame(50);
        let mut m = Mbuf::from_slice(&f, &p).unwrap();
        m.set_vlan_tci(0x2064);
        m.set_vlan_tci_outer(0x0123);
        m.set_ol_flags(TX_VLAN | TX_QINQ);
        vlan_insert(&mut m).unwrap();
        let d = m.to_vec();
        assert_eq!(
            &d[12..20],
            &[0x88, 0xa8, 0x01, 0x23, 0x81, 0x00, 0x20, 0x64]
        );
        assert_eq!(&d[20..], &f[12..]);
        assert_eq!(&d[..12], &f[..12]);
        assert_eq!(m.ol_flags(), 0);
        // Strip the outer only, then the inner.
        let mut a = Mbuf::from_slice(&d, &p).unwrap();
        assert!(vlan_strip(&mut a, false));
        assert_eq!(a.vlan_tci(), 0x0123);
        assert!(vlan_strip(&mut a, false));
        assert_eq!(a.vlan_tci(), 0x2064);
        assert_eq!(a.to_vec(), f);
        assert!(!vlan_strip(&mut a, false), "untagged: nothing to strip");
        // Both at once.
        let mut b = Mbuf::from_slice(&d, &p).unwrap();
        assert!(vlan_strip(&mut b, true));
        assert_eq!((b.vlan_tci_outer(), b.vlan_tci()), (0x0123, 0x2064));
        assert_ne!(b.ol_flags() & RX_QINQ_STRIPPED, 0);
        assert_eq!(b.to_vec(), f);
    }
}
