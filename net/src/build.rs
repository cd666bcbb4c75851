//! Building frames: Ethernet + IPv4 + UDP or TCP, Ethernet + IPv6 + UDP, with correct
//! lengths and checksums.

use crate::NetError;
use pmd_core::csum;

/// The transport header of a [`Frame4`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP (8 bytes).
    Udp,
    /// TCP (20 bytes): a bare ACK, sequence and acknowledgement numbers 0, window 65535.
    Tcp,
}

/// The fields of an Ethernet/IPv4 frame with a UDP or TCP header: what every frame
/// generator of the workspace fills in (testpmd's txonly, pktgen, the perf loop, the
/// 82599 model's test frames).
#[derive(Clone, Copy, Debug)]
pub struct Frame4 {
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// UDP or TCP.
    pub transport: Transport,
    /// Time to live.
    pub ttl: u8,
    /// The don't-fragment flag.
    pub dont_fragment: bool,
    /// Whether to compute the UDP or TCP checksum (else 0: "none" for UDP).
    pub l4_checksum: bool,
}

impl Frame4 {
    /// A UDP frame: TTL 64, don't-fragment set, UDP checksum computed.
    pub fn udp(
        dst_mac: [u8; 6],
        src_mac: [u8; 6],
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
    ) -> Frame4 {
        Frame4 {
            dst_mac,
            src_mac,
            src,
            dst,
            sport,
            dport,
            transport: Transport::Udp,
            ttl: 64,
            dont_fragment: true,
            l4_checksum: true,
        }
    }

    /// Bytes of the Ethernet, IPv4 and transport headers.
    pub fn header_len(&self) -> usize {
        14 + 20
            + match self.transport {
                Transport::Udp => 8,
                Transport::Tcp => 20,
            }
    }

    /// Writes the headers at the start of `frame`, whose length is the frame's: the IPv4
    /// datagram takes the rest of it, its payload (after [`Frame4::header_len`] bytes)
    /// already in place; then the checksums. Refused if `frame` is shorter than the
    /// headers or its datagram longer than 65535 bytes.
    pub fn write(&self, frame: &mut [u8]) -> Result<(), NetError> {
        let hl = self.header_len();
        crate::need(frame, hl)?;
        let ip_len = u16::try_from(frame.len() - 14)
            .map_err(|_| NetError::Malformed("an IPv4 datagram is at most 65535 bytes"))?;
        let l4_len = ip_len - 20;
        frame[..6].copy_from_slice(&self.dst_mac);
        frame[6..12].copy_from_slice(&self.src_mac);
        frame[12..14].copy_from_slice(&crate::ethertype::IPV4.to_be_bytes());
        let proto = match self.transport {
            Transport::Udp => crate::proto::UDP,
            Transport::Tcp => crate::proto::TCP,
        };
        let ip = &mut frame[14..34];
        ip[..2].copy_from_slice(&[0x45, 0]);
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[4..8].copy_from_slice(&[0, 0, if self.dont_fragment { 0x40 } else { 0 }, 0]);
        ip[8..12].copy_from_slice(&[self.ttl, proto, 0, 0]);
        ip[12..16].copy_from_slice(&self.src);
        ip[16..20].copy_from_slice(&self.dst);
        let c = csum::checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let l4 = &mut frame[34..];
        l4[..2].copy_from_slice(&self.sport.to_be_bytes());
        l4[2..4].copy_from_slice(&self.dport.to_be_bytes());
        let at = match self.transport {
            Transport::Udp => {
                l4[4..8].copy_from_slice(&[(l4_len >> 8) as u8, l4_len as u8, 0, 0]);
                6
            }
            Transport::Tcp => {
                l4[4..12].fill(0);
                l4[12..20].copy_from_slice(&[0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
                16
            }
        };
        if self.l4_checksum {
            let mut acc = csum::add(csum::add(0, &self.src), &self.dst);
            acc = csum::add(acc, &[0, proto]);
            acc = csum::add(acc, &l4_len.to_be_bytes());
            acc = csum::add(acc, l4);
            let c = match (!csum::fold(acc), self.transport) {
                // UDP sends a computed zero as all ones (zero means "no checksum").
                (0, Transport::Udp) => 0xffff,
                (c, _) => c,
            };
            l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        Ok(())
    }

    /// The frame carrying `payload` (cut to what a 65535-byte datagram holds), padded
    /// with zeros to the 60-byte Ethernet minimum (the padding is outside the datagram).
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let hl = self.header_len();
        let payload = &payload[..payload.len().min(65535 + 14 - hl)];
        let mut f = vec![0u8; hl + payload.len()];
        f[hl..].copy_from_slice(payload);
        // Cannot fail: the buffer holds the headers and at most a 65535-byte datagram.
        let _ = self.write(&mut f);
        if f.len() < 60 {
            f.resize(60, 0);
        }
        f
    }
}

/// An Ethernet/IPv4/UDP frame from `src_mac` to `dst_mac`, `src:sport` to `dst:dport`,
/// carrying `payload`, TTL 64, don't-fragment set, with the IPv4 and UDP checksums filled
/// in ([`Frame4::udp`]; padded to 60 bytes).
pub fn udp4(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    Frame4::udp(dst_mac, src_mac, src, dst, sport, dport).build(payload)
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
    fn ipv4_frames_udp_and_tcp_with_and_without_checksums() {
        let mut spec = Frame4::udp([2; 6], [4; 6], [10, 0, 0, 1], [10, 0, 0, 2], 7, 9);
        let f = spec.build(&[1, 2, 3]);
        assert_eq!(f.len(), 60, "padded");
        assert_eq!(
            u16::from_be_bytes([f[16], f[17]]),
            31,
            "the datagram without the pad"
        );
        assert_eq!(f[20], 0x40, "don't fragment");
        assert_eq!(csum::ones_complement_sum(&f[14..34]), 0xffff);
        let udp_sum = |f: &[u8], proto: u8| {
            let l4 = &f[34..14 + usize::from(u16::from_be_bytes([f[16], f[17]]))];
            let mut acc = csum::add(csum::add(0, &f[26..30]), &f[30..34]);
            acc = csum::add(acc, &[0, proto]);
            acc = csum::add(acc, &(l4.len() as u16).to_be_bytes());
            csum::fold(csum::add(acc, l4))
        };
        assert_eq!(udp_sum(&f, 17), 0xffff);
        spec.transport = Transport::Tcp;
        spec.dont_fragment = false;
        let f = spec.build(&[9; 100]);
        assert_eq!((f.len(), f[23], f[20], f[47]), (154, 6, 0, 0x10));
        assert_eq!(udp_sum(&f, 6), 0xffff);
        spec.transport = Transport::Udp;
        spec.l4_checksum = false;
        let mut f = vec![0u8; 64];
        spec.write(&mut f).unwrap();
        assert_eq!(&f[40..42], &[0, 0], "no UDP checksum");
        assert!(spec.write(&mut [0u8; 41]).is_err());
        assert!(spec.write(&mut vec![0u8; 65536 + 14]).is_err());
    }

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
