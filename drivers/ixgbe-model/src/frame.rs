//! Building test frames: IPv4 with a UDP or TCP header and correct checksums (RFC 791,
//! 768, 793 via `pmd_core::csum`), and the generator's numbered frames.

use crate::conf::{Generator, MacAddr};
use pmd_core::csum;
use pmd_net::build::{Frame4, Transport};

/// Source IPv4 address of generated frames (198.18.0.0/15 is reserved for benchmarks,
/// RFC 2544).
pub const GEN_SRC_IP: [u8; 4] = [198, 18, 0, 1];
/// Destination IPv4 address of generated frames.
pub const GEN_DST_IP: [u8; 4] = [198, 19, 0, 1];
/// UDP source port of generated flow 0; flow `i` uses `GEN_SRC_PORT_BASE + i`.
pub const GEN_SRC_PORT_BASE: u16 = 1024;
/// UDP destination port of generated frames.
pub const GEN_DST_PORT: u16 = 5001;
/// Offset of the generator's 64-bit sequence number (big-endian) in its frames: right
/// after the Ethernet, IPv4 and UDP headers.
pub const GEN_SEQ_OFFSET: usize = ETH_HLEN + IPV4_HLEN + UDP_HLEN;

const ETH_HLEN: usize = 14;
const IPV4_HLEN: usize = 20;
const UDP_HLEN: usize = 8;

/// Transport protocols the builder writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Proto {
    /// UDP (IP protocol 17).
    Udp,
    /// TCP (IP protocol 6), a bare ACK segment.
    Tcp,
}

/// The addresses and ports of an IPv4 frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Flow {
    /// Source address.
    pub src_ip: [u8; 4],
    /// Destination address.
    pub dst_ip: [u8; 4],
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Transport protocol.
    pub proto: L4Proto,
}

/// An Ethernet/IPv4/UDP-or-TCP frame carrying `payload`, checksums filled in, padded with
/// zeros to the 60-byte Ethernet minimum (the IP length covers only the real datagram).
/// Payloads that do not fit a 16-bit IP length are cut to fit. DF set, TTL 64.
pub fn ipv4_frame(dst: MacAddr, src: MacAddr, flow: &Ipv4Flow, payload: &[u8]) -> Vec<u8> {
    let mut spec = Frame4::udp(
        dst,
        src,
        flow.src_ip,
        flow.dst_ip,
        flow.src_port,
        flow.dst_port,
    );
    spec.transport = match flow.proto {
        L4Proto::Udp => Transport::Udp,
        L4Proto::Tcp => Transport::Tcp,
    };
    spec.build(payload)
}

/// The TCP/UDP checksum of `segment` (its checksum field zero) with the pseudo-header of
/// `src`, `dst` (4 or 16 bytes each) and protocol `proto`.
#[cfg(test)]
pub(crate) fn l4_checksum(src: &[u8], dst: &[u8], proto: u8, segment: &[u8]) -> u16 {
    !csum::fold(pseudo_sum(src, dst, proto, segment))
}

/// The unfolded sum of the pseudo-header and `segment` (a received segment, checksum
/// included, folds to 0xffff when intact).
pub(crate) fn pseudo_sum(src: &[u8], dst: &[u8], proto: u8, segment: &[u8]) -> u64 {
    let mut acc = csum::add(0, src);
    acc = csum::add(acc, dst);
    acc += u64::from(proto) + segment.len() as u64;
    csum::add(acc, segment)
}

impl Generator {
    /// The flow of frame `seq` (frames take the flows in turn).
    pub fn flow(&self, seq: u64) -> u32 {
        (seq % u64::from(self.flows.max(1))) as u32
    }

    /// Frame number `seq`: [`GEN_SRC_IP`] → [`GEN_DST_IP`], UDP from port
    /// `GEN_SRC_PORT_BASE + flow` to [`GEN_DST_PORT`]; the payload holds `seq` (u64,
    /// big-endian, at [`GEN_SEQ_OFFSET`]), the flow (u32) and then bytes counting up from
    /// `seq as u8`. The frame is `size` bytes long (clamped to the valid range).
    pub fn frame(&self, seq: u64) -> Vec<u8> {
        let size = self.size.clamp(Self::MIN_SIZE, Self::MAX_SIZE);
        let flow = self.flow(seq);
        let mut payload = vec![0u8; size - GEN_SEQ_OFFSET];
        payload[..8].copy_from_slice(&seq.to_be_bytes());
        payload[8..12].copy_from_slice(&flow.to_be_bytes());
        for (i, b) in payload.iter_mut().enumerate().skip(12) {
            *b = (seq as u8).wrapping_add(i as u8);
        }
        let port = GEN_SRC_PORT_BASE.wrapping_add((flow % Self::MAX_FLOWS) as u16);
        let spec = Ipv4Flow {
            src_ip: GEN_SRC_IP,
            dst_ip: GEN_DST_IP,
            src_port: port,
            dst_port: GEN_DST_PORT,
            proto: L4Proto::Udp,
        };
        ipv4_frame(self.dst_mac, self.src_mac, &spec, &payload)
    }
}

/// The sequence number of a generated frame (None if the frame is too short).
pub fn frame_seq(frame: &[u8]) -> Option<u64> {
    let b = frame.get(GEN_SEQ_OFFSET..GEN_SEQ_OFFSET + 8)?;
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::DEFAULT_MAC;

    #[test]
    fn generated_frames_are_valid_udp() {
        let mut g = Generator::new(10, DEFAULT_MAC);
        g.flows = 4;
        g.size = 200;
        let f = g.frame(6);
        assert_eq!(f.len(), 200);
        assert_eq!(&f[..6], &DEFAULT_MAC);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(
            csum::ones_complement_sum(&f[14..34]),
            0xffff,
            "IP header checksum"
        );
        let udp = &f[34..];
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), GEN_SRC_PORT_BASE + 2);
        assert_eq!(usize::from(u16::from_be_bytes([udp[4], udp[5]])), udp.len());
        assert_eq!(
            csum::fold(pseudo_sum(&GEN_SRC_IP, &GEN_DST_IP, 17, udp)),
            0xffff
        );
        assert_eq!(frame_seq(&f), Some(6));
        assert_eq!(g.flow(6), 2);
        assert_eq!(f[GEN_SEQ_OFFSET + 12], 6 + 12);
        assert_eq!(frame_seq(&f[..40]), None);
    }

    #[test]
    fn short_frames_are_padded_and_tcp_checksums_verify() {
        let flow = Ipv4Flow {
            src_ip: [10, 0, 0, 1],
            dst_ip: [10, 0, 0, 2],
            src_port: 1,
            dst_port: 2,
            proto: L4Proto::Tcp,
        };
        let f = ipv4_frame(DEFAULT_MAC, DEFAULT_MAC, &flow, b"hi");
        assert_eq!(f.len(), 60);
        assert_eq!(
            u16::from_be_bytes([f[16], f[17]]),
            42,
            "IP length excludes padding"
        );
        let seg = &f[34..56];
        assert_eq!(
            csum::fold(pseudo_sum(&flow.src_ip, &flow.dst_ip, 6, seg)),
            0xffff
        );
    }
}
