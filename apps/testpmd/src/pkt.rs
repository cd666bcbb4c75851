//! Generated packets (Ethernet + IPv4 + UDP, like DPDK testpmd's txonly defaults) and
//! checksum verification for the `csum` mode.

use pmd_core::csum;
use pmd_net::build::Frame4;

/// Bytes of Ethernet + IPv4 + UDP headers.
pub const HDRS: usize = 14 + 20 + 8;
/// Source and destination IPv4 addresses of generated packets (testpmd's 198.18.0.1 → .2).
pub const SRC_IP: [u8; 4] = [198, 18, 0, 1];
/// Destination address of generated packets.
pub const DST_IP: [u8; 4] = [198, 18, 0, 2];
/// UDP ports of generated packets (testpmd's 9 → 9).
pub const UDP_PORT: u16 = 9;

/// Builds one IPv4/UDP frame of `len` bytes (without FCS) with valid checksums, like
/// DPDK testpmd's txonly frames: TTL 64, no don't-fragment flag, payload bytes counting up.
pub fn udp_frame(
    len: usize,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    sport: u16,
) -> Vec<u8> {
    let mut f = vec![0u8; len.max(HDRS)];
    for (i, b) in f[HDRS..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let spec = Frame4 {
        dont_fragment: false,
        ..Frame4::udp(dst_mac, src_mac, src_ip, dst_ip, sport, UDP_PORT)
    };
    // Cannot fail: the frame holds the headers, and callers ask for at most jumbo sizes.
    let _ = spec.write(&mut f);
    f
}

/// Sets the transmit checksum requests of an IPv4 TCP or UDP packet (untagged or with one
/// 802.1Q tag) from its headers: `TX_IPV4 | TX_IP_CKSUM | TX_TCP_CKSUM/TX_UDP_CKSUM` and the
/// l2/l3/l4 lengths. Returns false (nothing changed) for anything else. The headers must
/// be in the first segment. (Three fixed fields are read: a full parser is not needed.)
pub fn request_checksums(m: &mut pmd_core::Mbuf) -> bool {
    use pmd_core::mbuf::{TxOffload, TX_IPV4, TX_IP_CKSUM, TX_TCP_CKSUM, TX_UDP_CKSUM};
    let d = m.data();
    let l2 = match d.get(12..14) {
        Some([0x08, 0x00]) => 14,
        Some([0x81, 0x00]) if d.get(16..18) == Some(&[0x08, 0x00]) => 18,
        _ => return false,
    };
    let Some(&vihl) = d.get(l2) else {
        return false;
    };
    let l3 = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || l3 < 20 {
        return false;
    }
    let (flag, l4) = match d.get(l2 + 9) {
        Some(6) => match d.get(l2 + l3 + 12) {
            Some(off) => (TX_TCP_CKSUM, usize::from(off >> 4) * 4),
            None => return false,
        },
        Some(17) => (TX_UDP_CKSUM, 8),
        _ => return false,
    };
    if l4 < 8 || l2 + l3 + l4 > d.len() {
        return false;
    }
    m.set_tx_offload(TxOffload {
        l2_len: l2 as u8,
        l3_len: l3 as u16,
        l4_len: l4 as u8,
        ..Default::default()
    });
    m.set_ol_flags(m.ol_flags() | TX_IPV4 | TX_IP_CKSUM | flag);
    true
}

/// What the `csum` mode found in one packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CsumResult {
    /// An IPv4 header was checked and its checksum is wrong.
    pub bad_ip: bool,
    /// A TCP or UDP checksum was checked and is wrong.
    pub bad_l4: bool,
}

/// Verifies the IPv4 header checksum and the UDP/TCP checksum of an Ethernet frame
/// (other packets pass unchecked). Lengths come from the packet and are bounded by it.
pub fn verify(frame: &[u8]) -> CsumResult {
    let mut r = CsumResult::default();
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return r;
    }
    let ihl = usize::from(frame[14] & 0xf) * 4;
    let Some(ip) = frame.get(14..14 + ihl.max(20)) else {
        return r;
    };
    r.bad_ip = csum::ones_complement_sum(ip) != 0xffff;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let Some(seg) = frame.get(14 + ip.len()..(14 + total).min(frame.len())) else {
        return r;
    };
    let proto = ip[9];
    let field = match proto {
        17 if seg.len() >= 8 => 6,
        6 if seg.len() >= 20 => 16,
        _ => return r,
    };
    if proto == 17 && seg[field..field + 2] == [0, 0] {
        return r; // UDP without checksum
    }
    let mut acc = csum::add(0, &ip[12..20]);
    acc += u64::from(proto) + seg.len() as u64;
    acc = csum::add(acc, seg);
    r.bad_l4 = csum::fold(acc) != 0xffff;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csum_requests_then_software_fallback_fix_corrupt_checksums() {
        let pool = pmd_core::Mempool::create("tpmd-csum", 16, 0).unwrap();
        let good = udp_frame(
            300,
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            SRC_IP,
            DST_IP,
            UDP_PORT,
        );
        let mut bad = good.clone();
        bad[24] ^= 0xff; // IPv4 checksum
        bad[40] ^= 0x0f; // UDP checksum
        assert_eq!(
            verify(&bad),
            CsumResult {
                bad_ip: true,
                bad_l4: true
            }
        );
        let mut m = pmd_core::Mbuf::from_slice(&bad, &pool).unwrap();
        assert!(request_checksums(&mut m));
        assert_eq!(
            (
                m.tx_offload().l2_len,
                m.tx_offload().l3_len,
                m.tx_offload().l4_len
            ),
            (14, 20, 8)
        );
        pmd_core::offload::checksum(&mut m).unwrap();
        assert_eq!(m.to_vec(), good);
        // Not IPv4 TCP/UDP: untouched.
        let mut arp = pmd_core::Mbuf::from_slice(&[0u8; 60], &pool).unwrap();
        assert!(!request_checksums(&mut arp));
        assert_eq!(arp.ol_flags(), 0);
    }

    #[test]
    fn generated_frames_have_valid_checksums_and_verify_catches_corruption() {
        let mut f = udp_frame(
            60,
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            SRC_IP,
            DST_IP,
            9,
        );
        assert_eq!(f.len(), 60);
        assert_eq!(verify(&f), CsumResult::default());
        f[50] ^= 1;
        assert_eq!(
            verify(&f),
            CsumResult {
                bad_ip: false,
                bad_l4: true
            }
        );
        f[22] ^= 1; // TTL
        assert!(verify(&f).bad_ip);
        // Garbage and truncated input: no panic, nothing claimed.
        assert_eq!(verify(&[0u8; 10]), CsumResult::default());
        let mut t = udp_frame(1514, [0; 6], [0; 6], SRC_IP, DST_IP, 1);
        t.truncate(40);
        let _ = verify(&t);
    }
}
