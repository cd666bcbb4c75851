//! Test frames of every kind a forwarder must carry unchanged — minimum, odd and jumbo
//! sizes, 802.1Q and QinQ tags, broadcast and multicast — and a one-way check that
//! each arrives once, with its length and bytes intact.

use crate::{fmt_mac, RawSock};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Ethertype of the test payload (after any tags).
pub const ETHERTYPE_TEST: u16 = 0x88b5;
/// `ETH_P_ALL`: a raw socket bound to it sees tagged and untagged frames alike.
pub const ETH_P_ALL: u16 = libc::ETH_P_ALL as u16;
/// Source MAC of injected frames.
pub const INJECT_SRC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];

/// The transmit offload lengths of an untagged IPv4/TCP frame without options (14 + 20 +
/// 20 bytes of headers), asking for TSO at `mss` payload bytes per segment.
pub fn tcp4_tso(mss: u16) -> pmd_core::mbuf::TxOffload {
    pmd_core::mbuf::TxOffload {
        l2_len: 14,
        l3_len: 20,
        l4_len: 20,
        tso_segsz: mss,
        ..Default::default()
    }
}

/// A frame of `len` bytes to `dst`: MACs, then `tags` (TPID, TCI) in order, the test
/// ethertype, `seq` and a pattern derived from it.
pub fn frame(dst: [u8; 6], tags: &[(u16, u16)], len: usize, seq: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&INJECT_SRC);
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ETHERTYPE_TEST.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u32 ^ seq.wrapping_mul(0x9e37)) as u8);
    }
    f
}

/// The sequence number of a test frame (after up to two tags), if it is one.
pub fn seq_of(f: &[u8]) -> Option<u32> {
    let mut at = 12;
    for _ in 0..3 {
        let t = u16::from_be_bytes(f.get(at..at + 2)?.try_into().ok()?);
        match t {
            0x8100 | 0x88a8 => at += 4,
            ETHERTYPE_TEST => {
                return Some(u32::from_be_bytes(f.get(at + 2..at + 6)?.try_into().ok()?));
            }
            _ => return None,
        }
    }
    None
}

/// The set of frames a port at MTU `mtu` must carry: sizes from 60 to the largest
/// untagged frame (`mtu + 14`), odd ones, 802.1Q-tagged up to `mtu + 18`, QinQ
/// (802.1ad outer, 802.1Q inner) up to `mtu + 14`, to `dst`, to broadcast and to a
/// multicast group; `repeat` copies of the set, each frame with its own sequence number.
pub fn frame_set(dst: [u8; 6], mtu: usize, repeat: usize) -> Vec<Vec<u8>> {
    const BCAST: [u8; 6] = [0xff; 6];
    const MCAST: [u8; 6] = [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03];
    let top = mtu + 14;
    let mut sizes = vec![60, 61, 64, 127, 1001, 1514];
    for s in [2049, 4097, top - 1, top] {
        if s > 1514 && s <= top {
            sizes.push(s);
        }
    }
    let q = [(0x8100u16, 0x0064u16)];
    let qinq = [(0x88a8u16, 0x0123u16), (0x8100, 0x2064)];
    let mut v = Vec::new();
    for _ in 0..repeat {
        for &s in &sizes {
            for d in [dst, BCAST, MCAST] {
                let n = v.len() as u32;
                v.push(frame(d, &[], s, n));
            }
            let n = v.len() as u32;
            v.push(frame(dst, &q, s + 4, n));
            let n = v.len() as u32;
            v.push(frame(dst, &qinq, s.max(68), n));
        }
    }
    v
}

/// Sends `frames` on `inject` (a raw socket on the sending side) and collects what
/// `capture` (a raw `ETH_P_ALL` socket on the receiving side) receives. Every frame must
/// arrive exactly once, with its length and its bytes from offset 12 (tags, ethertype,
/// payload) intact; its MACs must be `macs` (destination, source) when given, else as
/// sent. Runs in the namespace of the sockets.
pub fn one_way(
    inject: &RawSock,
    capture: &RawSock,
    frames: &[Vec<u8>],
    macs: Option<([u8; 6], [u8; 6])>,
) -> Result<(), String> {
    let n = frames.len();
    let (got, extra) = std::thread::scope(|s| {
        let receiver = s.spawn(|| {
            let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
            let mut extra = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(10);
            while got.len() < n && Instant::now() < deadline {
                let Some(f) = capture.recv_incoming() else {
                    continue;
                };
                let Some(seq) = seq_of(&f) else {
                    continue; // not a test frame (e.g. IPv6 router solicitations)
                };
                if seq as usize >= n || got.contains_key(&seq) {
                    extra.push(f);
                } else {
                    got.insert(seq, f);
                }
            }
            let tail = Instant::now() + Duration::from_millis(150);
            while Instant::now() < tail {
                if let Some(f) = capture.recv_incoming() {
                    if seq_of(&f).is_some() {
                        extra.push(f);
                    }
                }
            }
            (got, extra)
        });
        for (i, f) in frames.iter().enumerate() {
            inject.send_retrying(f, Duration::from_secs(2));
            if i % 16 == 15 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        receiver.join().expect("receiver thread panicked")
    });
    if got.len() != n {
        let missing: Vec<String> = (0..n as u32)
            .filter(|s| !got.contains_key(s))
            .take(12)
            .map(|s| format!("#{s} ({} bytes)", frames[s as usize].len()))
            .collect();
        return Err(format!(
            "received {} of {n} frames; missing e.g. {missing:?}; {} extra",
            got.len(),
            extra.len()
        ));
    }
    if !extra.is_empty() {
        return Err(format!("{} frames arrived more than once", extra.len()));
    }
    for (seq, sent) in frames.iter().enumerate() {
        let f = &got[&(seq as u32)];
        if f.len() != sent.len() {
            return Err(format!(
                "frame {seq}: {} bytes arrived, {} sent",
                f.len(),
                sent.len()
            ));
        }
        let (dst, src) = macs.unwrap_or((
            sent[..6].try_into().unwrap(),
            sent[6..12].try_into().unwrap(),
        ));
        if f[..6] != dst || f[6..12] != src {
            return Err(format!(
                "frame {seq}: dst {} src {}, want dst {} src {}",
                fmt_mac(&f[..6]),
                fmt_mac(&f[6..12]),
                fmt_mac(&dst),
                fmt_mac(&src)
            ));
        }
        if f[12..] != sent[12..] {
            let at = (12..f.len()).find(|&i| f[i] != sent[i]).unwrap_or(0);
            return Err(format!(
                "frame {seq} ({} bytes): differs from what was sent at byte {at}",
                f.len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_sequence_after_any_tags() {
        let set = frame_set([2, 0, 0, 0, 0, 9], 9000, 2);
        assert_eq!(set.len(), 2 * 10 * 5);
        for (i, f) in set.iter().enumerate() {
            assert_eq!(seq_of(f), Some(i as u32));
            assert!(f.len() >= 60 && f.len() <= 9018, "{}", f.len());
        }
        assert!(set
            .iter()
            .any(|f| f.len() == 9014 && f[12..14] == [0x88, 0xb5]));
        assert!(set
            .iter()
            .any(|f| f.len() == 9018 && f[12..14] == [0x81, 0x00]));
        assert!(set
            .iter()
            .any(|f| f[12..14] == [0x88, 0xa8] && f[16..18] == [0x81, 0x00]));
        let small = frame_set([2, 0, 0, 0, 0, 9], 1500, 1);
        assert!(small.iter().all(|f| f.len() <= 1518));
        assert_eq!(seq_of(&[0u8; 10]), None);
    }
}
