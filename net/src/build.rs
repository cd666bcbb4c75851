//! Building frames: an Ethernet + IPv4 + UDP frame with correct lengths and checksums.

use pmd_core::csum;

/// An Ethernet/IPv4/UDP frame from `src_mac` to `dst_mac`, `src:sport` to `dst:dport`,
/// carrying `payload`, TTL 64, with the IPv4 and UDP checksums filled in.
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
    let mut f = Vec::with_capacity(14 + ip_len);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&crate::ethertype::IPV4.to_be_bytes());
    let ip_at = f.len();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&(ip_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, crate::proto::UDP, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let c = csum::checksum(&f[ip_at..ip_at + 20]);
    f[ip_at + 10..ip_at + 12].copy_from_slice(&c.to_be_bytes());
    let udp_at = f.len();
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    // The pseudo-header: addresses, protocol, UDP length.
    let mut acc = csum::add(0, &src);
    acc = csum::add(acc, &dst);
    acc = csum::add(acc, &[0, crate::proto::UDP]);
    acc = csum::add(acc, &(udp_len as u16).to_be_bytes());
    acc = csum::add(acc, &f[udp_at..]);
    let mut c = !csum::fold(acc);
    if c == 0 {
        c = 0xffff;
    }
    f[udp_at + 6..udp_at + 8].copy_from_slice(&c.to_be_bytes());
    f
}
