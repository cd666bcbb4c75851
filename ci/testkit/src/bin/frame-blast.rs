//! Frame generator and counter for forwarding tests (the ci/vm guest's l2fwd checks).
//!
//! ```text
//! frame-blast send IFACE N [RUN [GAP_US [MAX_LEN]]]   N numbered frames out of IFACE
//! frame-blast count IFACE N TIMEOUT_S [RUN [MAX_LEN]] wait for frames 0..N of RUN on IFACE
//! ```
//!
//! Frames: broadcast destination, source 02:00:00:00:00:fe, ethertype 0x88b5 (local
//! experimental), payload `PMDBLAST`, run id (u32 BE), sequence number (u32 BE), then a
//! pattern of the sequence number: 60 bytes, or with MAX_LEN (up to 9216) lengths that
//! vary from 60 to MAX_LEN by sequence number (the last frame is MAX_LEN long). `count`
//! accepts only frames of its run (frames left over from another run are counted as
//! `foreign`), wants each sequence number 0..N exactly once with destination
//! 02:00:00:00:00:01 (what l2fwd writes for port 1), with its length and every payload
//! byte as sent, keeps listening one second after the last one for duplicates, prints one
//! `FRAME-COUNT` line and exits 0 only if all of that held. It prints `FRAME-COUNT
//! listening` once its socket is open.

use pmd_testkit::RawSock;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const ETHERTYPE: u16 = 0x88b5;
const MAGIC: &[u8; 8] = b"PMDBLAST";
const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const WANT_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const FRAME_LEN: usize = 60;
/// Largest MAX_LEN taken.
const MAX_FRAME: usize = 9216;

/// Length of frame `seq` of `n`: 60, or with `max` > 60 a length from 60 to `max` (the
/// last frame is `max` long).
fn frame_len(seq: u32, n: u32, max: usize) -> usize {
    if max <= FRAME_LEN || seq + 1 == n {
        return max.max(FRAME_LEN);
    }
    FRAME_LEN + (seq as usize * 997) % (max - FRAME_LEN + 1)
}

fn frame(run: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&SRC);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(MAGIC);
    f.extend_from_slice(&run.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u32).wrapping_mul(seq | 1) as u8);
    }
    f
}

/// `(run, seq)` of one of our frames.
fn parse(f: &[u8]) -> Option<(u32, u32)> {
    if f.len() < 30 || f[12..14] != ETHERTYPE.to_be_bytes() || &f[14..22] != MAGIC {
        return None;
    }
    let run = u32::from_be_bytes(f[22..26].try_into().ok()?);
    let seq = u32::from_be_bytes(f[26..30].try_into().ok()?);
    Some((run, seq))
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: frame-blast send IFACE N [RUN [GAP_US [MAX_LEN]]] | frame-blast count IFACE N TIMEOUT_S [RUN [MAX_LEN]] (MAX_LEN 60..={MAX_FRAME})"
    );
    ExitCode::from(2)
}

fn send(iface: &str, n: u32, run: u32, gap: Duration, max: usize) -> ExitCode {
    let s = RawSock::open(iface, ETHERTYPE, Duration::from_millis(100));
    let t0 = Instant::now();
    for seq in 0..n {
        s.send_retrying(
            &frame(run, seq, frame_len(seq, n, max)),
            Duration::from_secs(5),
        );
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
    }
    println!(
        "FRAME-BLAST sent={n} run={run} iface={iface} ms={}",
        t0.elapsed().as_millis()
    );
    ExitCode::SUCCESS
}

fn count(iface: &str, n: u32, timeout: Duration, run: u32, max: usize) -> ExitCode {
    let s = RawSock::open(iface, ETHERTYPE, Duration::from_millis(100));
    println!("FRAME-COUNT listening iface={iface} n={n} run={run}");
    let t0 = Instant::now();
    let mut seen = vec![false; n as usize];
    let (mut distinct, mut dup, mut bad_dst, mut bad_seq, mut foreign, mut bad_data) =
        (0u32, 0u32, 0u32, 0u32, 0u32, 0u32);
    let mut first_ms = None;
    let mut last = None::<Instant>;
    loop {
        let now = Instant::now();
        if now.duration_since(t0) > timeout {
            break;
        }
        if distinct == n && last.is_some_and(|l| now.duration_since(l) > Duration::from_secs(1)) {
            break;
        }
        let Some(f) = s.recv() else { continue };
        let Some((r, seq)) = parse(&f) else {
            foreign += 1;
            continue;
        };
        if r != run {
            foreign += 1;
            continue;
        }
        first_ms.get_or_insert(t0.elapsed().as_millis());
        if f[..6] != WANT_DST {
            bad_dst += 1;
        }
        if seq < n && f[12..] != frame(run, seq, frame_len(seq, n, max))[12..] {
            bad_data += 1;
        }
        match seen.get_mut(seq as usize) {
            None => bad_seq += 1,
            Some(true) => dup += 1,
            Some(s) => {
                *s = true;
                distinct += 1;
                if distinct == n {
                    last = Some(Instant::now());
                }
            }
        }
    }
    let ok = distinct == n && dup == 0 && bad_dst == 0 && bad_seq == 0 && bad_data == 0;
    let missing: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| !**s)
        .take(8)
        .map(|(i, _)| i.to_string())
        .collect();
    println!(
        "FRAME-COUNT {} distinct={distinct}/{n} dup={dup} bad_dst={bad_dst} bad_seq={bad_seq} bad_data={bad_data} foreign={foreign} max_len={max} first_ms={} all_ms={} missing=[{}]",
        if ok { "ok" } else { "bad" },
        first_ms.map_or(-1, |v| v as i64),
        last.map_or(-1, |l| l.duration_since(t0).as_millis() as i64),
        missing.join(",")
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let a: Vec<String> = std::env::args().collect();
    let num = |i: usize| a.get(i).and_then(|s| s.parse::<u32>().ok());
    let opt = |i: usize, d: u32| a.get(i).map_or(Some(d), |_| num(i));
    let len_opt = |i: usize| {
        opt(i, FRAME_LEN as u32)
            .map(|l| l as usize)
            .filter(|l| (FRAME_LEN..=MAX_FRAME).contains(l))
    };
    match a.get(1).map(String::as_str) {
        Some("send") if a.len() >= 4 => match (num(3), opt(4, 1), opt(5, 0), len_opt(6)) {
            (Some(n), Some(run), Some(gap), Some(max)) if n > 0 => {
                send(&a[2], n, run, Duration::from_micros(gap.into()), max)
            }
            _ => usage(),
        },
        Some("count") if a.len() >= 5 => match (num(3), num(4), opt(5, 1), len_opt(6)) {
            (Some(n), Some(t), Some(run), Some(max)) => {
                count(&a[2], n, Duration::from_secs(t.into()), run, max)
            }
            _ => usage(),
        },
        _ => usage(),
    }
}
