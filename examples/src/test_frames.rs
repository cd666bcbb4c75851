//! Frames for the unit tests of the NAT44 and the load balancer, and the checks they
//! share: checksums recomputed in full over the whole header and segment.

use pmd_core::csum;
use pmd_net::proto;

/// The MAC addresses of the test frames (the apps do not look at them).
pub const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// See [`MAC_A`].
pub const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// An Ethernet/IPv4/UDP frame with an odd-length payload, both checksums computed.
pub fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    pmd_net::build::udp4(
        MAC_B,
        MAC_A,
        src,
        dst,
        sport,
        dport,
        b"some payload, odd len",
    )
}

/// An Ethernet/IPv4/TCP frame (an ACK with 11 bytes of data), both checksums computed
/// in full.
pub fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let data = b"hello world";
    let tcp_len = 20 + data.len();
    let mut f = MAC_B.to_vec();
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
    f.extend_from_slice(&((20 + tcp_len) as u16).to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto::TCP, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    let c = csum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(data);
    let c = l4_checksum(&f);
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}

/// An ARP request, padded to 60 bytes.
pub fn arp() -> Vec<u8> {
    let mut f = MAC_B.to_vec();
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[0; 20]);
    f.resize(60, 0);
    f
}

/// The L4 checksum of an untagged IPv4 frame with a 20-byte header, computed in full
/// over the pseudo-header and the segment with its checksum field taken as zero.
pub fn l4_checksum(f: &[u8]) -> u16 {
    let p = f[23];
    let at = if p == proto::UDP { 34 + 6 } else { 34 + 16 };
    let mut seg = f[34..].to_vec();
    seg[at - 34..at - 32].fill(0);
    let mut pseudo = f[26..34].to_vec();
    pseudo.extend_from_slice(&[0, p]);
    pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&seg);
    match csum::checksum(&pseudo) {
        0 if p == proto::UDP => 0xffff,
        c => c,
    }
}

/// Both checksums of `f` agree with a full recomputation.
#[track_caller]
pub fn assert_checksums(f: &[u8]) {
    let mut hdr = f[14..34].to_vec();
    hdr[10..12].fill(0);
    assert_eq!(
        csum::checksum(&hdr),
        u16::from_be_bytes([f[24], f[25]]),
        "IPv4"
    );
    assert_eq!(csum::ones_complement_sum(&f[14..34]), 0xffff, "IPv4 sum");
    let at = if f[23] == proto::UDP { 40 } else { 50 };
    assert_eq!(l4_checksum(f), u16::from_be_bytes([f[at], f[at + 1]]), "L4");
}

/// The IPv4 address at `f[at..]`.
pub fn addr(f: &[u8], at: usize) -> [u8; 4] {
    f[at..at + 4].try_into().unwrap()
}

/// The port at `f[at..]`.
pub fn port(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

/// `good` with lengths that lie or cut a header short, and cut inside Ethernet: frames
/// an app must drop as malformed.
pub fn malformed(good: &[u8]) -> [Vec<u8>; 3] {
    let mut lying = good.to_vec();
    lying[16..18].copy_from_slice(&2000u16.to_be_bytes());
    let mut no_l4 = good.to_vec();
    no_l4.truncate(14 + 20 + 4);
    no_l4[16..18].copy_from_slice(&24u16.to_be_bytes());
    [lying, no_l4, good[..10].to_vec()]
}

/// `good` as a first fragment (more fragments follow) and as a later one (offset 128).
pub fn fragments(good: &[u8]) -> [Vec<u8>; 2] {
    let mut first = good.to_vec();
    first[20] |= 0x20;
    let mut later = good.to_vec();
    later[21] = 0x10;
    [first, later]
}
