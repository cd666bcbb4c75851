//! The body of the `pcap_trace` fuzz target (`fuzz/fuzz_targets/pcap_trace.rs`), shared
//! with a fixed-seed unit test: the capture file reader ([`Trace::parse`]) over raw bytes
//! and over files assembled from the input (each of the four pcap magic numbers, record
//! headers whose captured length comes from the input, a cut anywhere).

use crate::file::{Trace, MAX_RECORD};
use std::path::Path;

/// The four pcap magic numbers as the first four bytes of a file: big-endian and
/// little-endian, micro- and nanosecond timestamps.
const MAGICS: [(u32, bool); 4] = [
    (0xa1b2_c3d4, true),
    (0xa1b2_3c4d, true),
    (0xd4c3_b2a1, false),
    (0x4d3c_b2a1, false),
];

/// Length of a pcap record header.
const RECORD_HDR: usize = 16;

/// Runs one input. Byte 0 picks the mode: with bit 7 clear the rest is a whole file;
/// with it set a file is assembled (magic from bits 0–1, link type Ethernet unless bit 2,
/// records cut from the rest: two length bytes, a flag byte, then data) and the trace
/// must hold exactly the records written, or the error must name the first bad one.
/// Never panics on a parser error; panics (a found bug) only when an invariant breaks.
pub fn fuzz_trace(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 0x80 == 0 {
        if let Ok(t) = Trace::parse(Path::new("fuzz"), rest) {
            check_frames_inside(&t, rest);
        }
        return;
    }
    let (magic, big) = MAGICS[usize::from(mode & 3)];
    let u32_bytes = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u16_bytes = |v: u16| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut file = magic.to_be_bytes().to_vec();
    file.extend_from_slice(&u16_bytes(2));
    file.extend_from_slice(&u16_bytes(4));
    file.extend_from_slice(&[0; 8]);
    file.extend_from_slice(&u32_bytes(65_535));
    file.extend_from_slice(&u32_bytes(if mode & 4 == 0 { 1 } else { 101 }));
    // What the trace must hold, or the first record it must refuse.
    let mut frames: Vec<&[u8]> = Vec::new();
    let mut refused: Option<(usize, &str)> = None;
    let mut input = rest;
    while input.len() >= 3 && refused.is_none() {
        let (hdr, tail) = input.split_at(3);
        let flags = hdr[2];
        let mut caplen = u32::from(u16::from_le_bytes([hdr[0], hdr[1]]));
        if flags & 1 != 0 {
            // A damaged length: far past the limit, or just past it.
            caplen = if flags & 2 != 0 {
                caplen << 16 | 0xffff
            } else {
                MAX_RECORD + caplen
            };
        }
        let orig = caplen.saturating_add(u32::from(flags >> 2));
        file.extend_from_slice(&u32_bytes(u32::from(hdr[0])));
        file.extend_from_slice(&u32_bytes(u32::from(hdr[1]) * 1000));
        file.extend_from_slice(&u32_bytes(caplen));
        file.extend_from_slice(&u32_bytes(orig));
        let take = (caplen as usize).min(tail.len());
        file.extend_from_slice(&tail[..take]);
        input = &tail[take..];
        if caplen > MAX_RECORD {
            refused = Some((frames.len(), "claims"));
        } else if take < caplen as usize {
            refused = Some((frames.len(), "truncated"));
        } else {
            frames.push(&tail[..take]);
        }
    }
    // A cut inside the last record header (the flag byte's top bit says where).
    let mut cut = file.len();
    if refused.is_none() && !frames.is_empty() && mode & 0x40 != 0 {
        cut -= frames.last().map_or(0, |f| f.len()) + RECORD_HDR / 2;
        frames.pop();
        refused = Some((frames.len(), "truncated"));
    }
    let got = Trace::parse(Path::new("fuzz"), &file[..cut]);
    match (got, refused) {
        (Err(e), _) if mode & 4 != 0 => assert!(e.contains("is not Ethernet"), "{e}"),
        (Ok(_), _) if mode & 4 != 0 => panic!("a non-Ethernet file was accepted"),
        (Ok(t), None) => {
            assert_eq!(t.len(), frames.len());
            for (i, f) in frames.iter().enumerate() {
                assert_eq!(t.frame(i), *f, "record {}", i + 1);
            }
        }
        (Err(e), Some((n, what))) => {
            assert!(e.contains(what), "record {}: {e}", n + 1);
            assert!(e.contains(&format!("record {} ", n + 1)), "{e}");
        }
        (Ok(t), Some((n, what))) => {
            panic!("record {} ({what}) accepted: {} frames", n + 1, t.len())
        }
        (Err(e), None) => panic!("a well-formed file was refused: {e}"),
    }
}

/// An accepted file's frames are no larger than a record may be and fit in the file.
fn check_frames_inside(t: &Trace, file: &[u8]) {
    let mut total = 0usize;
    for i in 0..t.len() {
        let f = t.frame(i);
        total += f.len();
        assert!(total <= file.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz body on deterministic inputs: half whole random files, half assembled ones
    /// (small lengths made common so that files hold several records).
    #[test]
    fn fixed_seed_fuzz_of_the_pcap_reader() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..5000 {
            let len = (rnd() % 600) as usize;
            let mut d: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
            if let Some(m) = d.first_mut() {
                *m = if i % 2 == 0 { *m & 0x7f } else { *m | 0x80 };
                // Mostly Ethernet, so that records are reached.
                if !rnd().is_multiple_of(4) {
                    *m &= !4;
                }
            }
            if i % 2 == 1 {
                // Record lengths mostly small and undamaged.
                let mut at = 1;
                while at + 3 <= d.len() {
                    d[at + 1] = 0;
                    d[at] %= 64;
                    if !rnd().is_multiple_of(8) {
                        d[at + 2] &= !1;
                    }
                    at += 3 + usize::from(d[at]);
                }
            }
            fuzz_trace(&d);
        }
    }

    /// A damaged record length just past the limit and a nanosecond big-endian file.
    #[test]
    fn assembled_files_of_every_magic() {
        for magic in 0..4u8 {
            fuzz_trace(&[0x80 | magic, 3, 0, 0, 1, 2, 3, 2, 0, 0, 9, 9]);
            fuzz_trace(&[0xc0 | magic, 3, 0, 0, 1, 2, 3, 2, 0, 0, 9, 9]);
            fuzz_trace(&[0x80 | magic, 5, 0, 1]);
            fuzz_trace(&[0x80 | magic, 5, 0, 3]);
            fuzz_trace(&[0x84 | magic, 1, 0, 0, 7]);
        }
    }
}
