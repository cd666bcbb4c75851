//! Receive-side scaling (82599 datasheet 7.1.2.8): the Toeplitz hash over the fields the
//! MRQC register selects, and the 128-entry redirection table that maps the hash to a
//! queue.

use crate::desc::*;
use crate::packet::{Parsed, Transport, L3};
use crate::regfile::RegFile;
use crate::regs::{
    reta, rssrk, MRQC, MRQC_MRQE_MASK, MRQC_MRQE_RSS, MRQC_RSS_IPV4, MRQC_RSS_IPV6,
    MRQC_RSS_TCPIPV4, MRQC_RSS_TCPIPV6, MRQC_RSS_UDPIPV4, MRQC_RSS_UDPIPV6,
};

/// Bytes of the RSS key (ten RSSRK registers; 8.2.3.7.15).
pub const KEY_LEN: usize = 40;

/// The Toeplitz hash of `input` under `key` (7.1.2.8.1): for every input bit that is set,
/// counting from the most significant bit of the first byte, the 32 key bits starting at
/// that bit position are XORed into the result. Key bits past the end of `key` are zero.
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let key_byte = |i: usize| key.get(i).copied().unwrap_or(0);
    let mut window = u32::from_be_bytes([key_byte(0), key_byte(1), key_byte(2), key_byte(3)]);
    let mut hash = 0;
    for (i, &byte) in input.iter().enumerate() {
        let next = key_byte(i + 4);
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = window << 1 | u32::from(next >> (7 - bit) & 1);
        }
    }
    hash
}

/// The RSS key held in the RSSRK registers: RSSRK(i) bits 7:0 hold key byte 4i (the
/// first byte the hash uses), bits 15:8 byte 4i+1, and so on (8.2.3.7.15).
pub(crate) fn key(regs: &RegFile) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    for (i, chunk) in key.chunks_exact_mut(4).enumerate() {
        chunk.copy_from_slice(&regs.get(rssrk(i)).to_le_bytes());
    }
    key
}

/// The outcome of RSS for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RssResult {
    /// The hash (0 when none was computed).
    pub hash: u32,
    /// The RSS type reported in the write-back ([`RSS_TYPE_NONE`] when none).
    pub rss_type: u8,
    /// The receive queue.
    pub queue: usize,
}

/// No hash computed, queue 0.
pub(crate) const NO_RSS: RssResult = RssResult {
    hash: 0,
    rss_type: RSS_TYPE_NONE,
    queue: 0,
};

/// Picks the queue for a parsed frame. Without RSS (MRQC.MRQE != 0001b; other MRQE modes,
/// VMDq and DCB, are not modelled) every frame goes to queue 0; with RSS, frames that
/// match no enabled hash type get no hash and also go to queue 0.
pub(crate) fn classify(regs: &RegFile, p: &Parsed) -> RssResult {
    let mrqc = regs.get(MRQC);
    if mrqc & MRQC_MRQE_MASK != MRQC_MRQE_RSS {
        return NO_RSS;
    }
    let mut input = [0u8; 36];
    let (len, rss_type) = match p.l3 {
        L3::V4 { src, dst, l4, .. } => {
            input[..4].copy_from_slice(&src);
            input[4..8].copy_from_slice(&dst);
            let ports = |input: &mut [u8; 36], sp: u16, dp: u16| {
                input[8..10].copy_from_slice(&sp.to_be_bytes());
                input[10..12].copy_from_slice(&dp.to_be_bytes());
            };
            match l4 {
                Some(l4) if l4.proto == Transport::Tcp && mrqc & MRQC_RSS_TCPIPV4 != 0 => {
                    ports(&mut input, l4.src_port, l4.dst_port);
                    (12, RSS_TYPE_TCP_IPV4)
                }
                Some(l4) if l4.proto == Transport::Udp && mrqc & MRQC_RSS_UDPIPV4 != 0 => {
                    ports(&mut input, l4.src_port, l4.dst_port);
                    (12, RSS_TYPE_UDP_IPV4)
                }
                _ if mrqc & MRQC_RSS_IPV4 != 0 => (8, RSS_TYPE_IPV4),
                _ => return NO_RSS,
            }
        }
        L3::V6 { src, dst, l4 } => {
            input[..16].copy_from_slice(&src);
            input[16..32].copy_from_slice(&dst);
            let l4_type = l4.and_then(|l4| match l4.proto {
                Transport::Tcp if mrqc & MRQC_RSS_TCPIPV6 != 0 => Some((l4, RSS_TYPE_TCP_IPV6)),
                Transport::Udp if mrqc & MRQC_RSS_UDPIPV6 != 0 => Some((l4, RSS_TYPE_UDP_IPV6)),
                _ => None,
            });
            match l4_type {
                Some((l4, t)) => {
                    input[32..34].copy_from_slice(&l4.src_port.to_be_bytes());
                    input[34..36].copy_from_slice(&l4.dst_port.to_be_bytes());
                    (36, t)
                }
                None if mrqc & MRQC_RSS_IPV6 != 0 => (32, RSS_TYPE_IPV6),
                None => return NO_RSS,
            }
        }
        L3::Other => return NO_RSS,
    };
    let hash = toeplitz(&key(regs), &input[..len]);
    RssResult {
        hash,
        rss_type,
        queue: queue_of(regs, hash),
    }
}

/// The queue the redirection table gives `hash` (7.1.2.8.2): entry `hash & 0x7f`; RETA(n)
/// holds entries 4n..4n+3, one per byte, and the queue is the entry's low 4 bits.
pub(crate) fn queue_of(regs: &RegFile, hash: u32) -> usize {
    let entry = (hash & 0x7f) as usize;
    let byte = regs.get(reta(entry / 4)) >> (8 * (entry % 4));
    (byte & 0xf) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key of the RSS verification suite (datasheet 7.1.2.8.3; Microsoft's RSS
    /// specification, "Verifying the RSS hash calculation").
    const KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    /// One example of the suite: destination address and port, source address and
    /// port, the published hash over the addresses, and over addresses and TCP ports.
    type Example = ([u8; 4], u16, [u8; 4], u16, u32, u32);

    #[rustfmt::skip]
    const IPV4_SUITE: &[Example] = &[
        ([161, 142, 100, 80], 1766, [66, 9, 149, 187], 2794, 0x323e8fc2, 0x51ccc178),
        ([65, 69, 140, 83], 4739, [199, 92, 111, 2], 14230, 0xd718262a, 0xc626b0ea),
        ([12, 22, 207, 184], 38024, [24, 19, 198, 95], 12898, 0xd2d0a5de, 0x5c2b394a),
        ([209, 142, 163, 6], 2217, [38, 27, 205, 30], 48228, 0x82989176, 0xafc7327f),
        ([202, 188, 127, 2], 1303, [153, 39, 163, 191], 44251, 0x5d1809c5, 0x10e828a2),
    ];

    #[test]
    fn toeplitz_matches_the_verification_suite() {
        for &(dst, dport, src, sport, ip_hash, tcp_hash) in IPV4_SUITE {
            // Input order: source address, destination address, source port, dest port.
            let mut input = Vec::new();
            input.extend_from_slice(&src);
            input.extend_from_slice(&dst);
            assert_eq!(toeplitz(&KEY, &input), ip_hash, "{src:?} -> {dst:?}");
            input.extend_from_slice(&sport.to_be_bytes());
            input.extend_from_slice(&dport.to_be_bytes());
            assert_eq!(
                toeplitz(&KEY, &input),
                tcp_hash,
                "{src:?}:{sport} -> {dst:?}:{dport}"
            );
        }
    }

    #[test]
    fn toeplitz_tolerates_short_keys_and_empty_input() {
        assert_eq!(toeplitz(&KEY, &[]), 0);
        assert_eq!(toeplitz(&[], &[0xff; 8]), 0);
        assert_eq!(toeplitz(&[0x80], &[0x80]), 0x8000_0000);
    }

    #[test]
    fn key_and_redirection_table_come_from_the_registers() {
        let regs = RegFile::new();
        for (i, k) in KEY.chunks_exact(4).enumerate() {
            regs.set(rssrk(i), u32::from_le_bytes([k[0], k[1], k[2], k[3]]));
        }
        assert_eq!(key(&regs), KEY);
        // Entry 4n+j of the table in byte j of RETA(n); only the low 4 bits count.
        regs.set(reta(5), 0x0f_23_01_f7);
        assert_eq!(queue_of(&regs, 20), 7);
        assert_eq!(queue_of(&regs, 21 | 0x80), 1);
        assert_eq!(queue_of(&regs, 22 | 0xffff_ff00), 3);
        assert_eq!(queue_of(&regs, 23), 15);
    }
}
