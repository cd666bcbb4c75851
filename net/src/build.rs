//! Building frames: Ethernet + IPv4 or IPv6 + UDP, with correct lengths and checksums.

use pmd_core::csum;

/// An Ethernet/IPv4/UDP frame from `src_mac` to `dst_mac`, `src:sport` to `dst:dport`,
/// carrying `payload`, TTL 64, don't-fragment set, with the IPv4 and UDP checksums filled
/// in.
pub fn udp4(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let ip_len = 20 + udp_len;
    let mut f = ether(dst_mac, src_mac, crate::ethertype::IPV4, 20 + udp_len);
    let ip_at = f.len();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&(ip_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, crate::proto::UDP, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let c = csum::checksum(&f[ip_at..ip_at + 20]);
    f[ip_at + 10..ip_at + 12].copy_from_slice(&c.to_be_bytes());
    udp(
        &mut f,
        csum::add(csum::add(0, &src), &dst),
        sport,
        dport,
        payload,
    );
    f
}

/// An Ethernet/IPv6/UDP frame from `src_mac` to `dst_mac`, `src:sport` to `dst:dport`,
/// carrying `payload`, hop limit 64, with the UDP checksum filled in.
pub fn udp6(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut f = ether(dst_mac, src_mac, crate::ethertype::IPV6, 40 + udp_len);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[crate::proto::UDP, 64]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    udp(
        &mut f,
        csum::add(csum::add(0, &src), &dst),
        sport,
        dport,
        payload,
    );
    f
}

/// The Ethernet header, in a buffer with room for `rest` more bytes.
fn ether(dst_mac: [u8; 6], src_mac: [u8; 6], ethertype: u16, rest: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + rest);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// Appends a UDP header and `payload` to `f`, its checksum over `addrs` (the unfolded sum
/// of the pseudo-header's addresses) and the rest of the pseudo-header.
fn udp(f: &mut Vec<u8>, addrs: u64, sport: u16, dport: u16, payload: &[u8]) {
    let udp_len = (8 + payload.len()) as u16;
    let at = f.len();
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    let mut acc = csum::add(addrs, &[0, crate::proto::UDP]);
    acc = csum::add(acc, &udp_len.to_be_bytes());
    acc = csum::add(acc, &f[at..]);
    // A computed zero is sent as all ones (zero means "no checksum").
    let c = match !csum::fold(acc) {
        0 => 0xffff,
        c => c,
    };
    f[at + 6..at + 8].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_frame_has_its_lengths_and_a_udp_checksum_that_verifies() {
        let src = [0x20, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0x20, 1, 2, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 9];
        let f = udp6([2; 6], [4; 6], src, dst, 7, 9, &[0xab; 11]);
        assert_eq!(f.len(), 14 + 40 + 8 + 11);
        assert_eq!(u16::from_be_bytes([f[18], f[19]]), 19);
        let mut acc = csum::add(csum::add(0, &src), &dst);
        acc = csum::add(acc, &[0, crate::proto::UDP, 0, 19]);
        acc = csum::add(acc, &f[54..]);
        assert_eq!(
            csum::fold(acc),
            0xffff,
            "the sum with the checksum is all ones"
        );
    }
}
