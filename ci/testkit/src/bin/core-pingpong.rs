//! Core-to-core cache-line ping-pong: how long one 64-byte line takes to travel from one
//! CPU to another and back, in TSC cycles and nanoseconds. The benchmarks run it before
//! each two-process case, to tell which placement of the two vCPUs on the host (and so
//! which mode of a bimodal row) that run had.
//!
//! ```text
//! core-pingpong [CPU-A=0] [CPU-B=1] [ROUND-TRIPS=200000]
//! ```
//!
//! Prints one line: `pingpong cpu A<->B: X cycles, Y ns per round trip (median of 9
//! batches)`. Two threads, pinned, take turns writing a counter in one cache line: A
//! writes an odd value and waits for B's even answer. Exit 2 on a bad argument or a CPU
//! that cannot be pinned.

use pmd_core::{lcore, tsc};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The counter, alone on its line.
#[repr(align(64))]
struct Line(AtomicU64);

const BATCHES: usize = 9;
/// Written by either side to end the exchange (odd, so B never answers it).
const STOP: u64 = u64::MAX;

/// A: writes `2k + 1`, waits for `2k + 2`, `n` times; returns the TSC cycles taken, or
/// `None` if B gave up (it wrote `STOP`).
fn serve(line: &Line, n: u64, start: u64) -> Option<u64> {
    let t0 = tsc::rdtsc();
    for k in 0..n {
        let v = start + 2 * k;
        line.0.store(v + 1, Ordering::Release);
        loop {
            match line.0.load(Ordering::Acquire) {
                x if x == v + 2 => break,
                STOP => return None,
                _ => std::hint::spin_loop(),
            }
        }
    }
    Some(tsc::rdtsc() - t0)
}

/// B: answers every odd value with the next even one, until `STOP` is seen.
fn answer(line: &Line) {
    loop {
        let v = line.0.load(Ordering::Acquire);
        if v == STOP {
            return;
        }
        if v % 2 == 1 {
            line.0.store(v + 1, Ordering::Release);
        } else {
            std::hint::spin_loop();
        }
    }
}

fn arg(args: &[String], i: usize, default: u64, what: &str) -> Result<u64, String> {
    match args.get(i) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| format!("core-pingpong: {what} '{s}' is not a number")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = (|| {
        Ok::<_, String>((
            arg(&args, 0, 0, "CPU-A")? as u32,
            arg(&args, 1, 1, "CPU-B")? as u32,
            arg(&args, 2, 200_000, "ROUND-TRIPS")?.max(1),
        ))
    })();
    let (a, b, n) = match parsed {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}; usage: core-pingpong [CPU-A] [CPU-B] [ROUND-TRIPS]");
            return ExitCode::from(2);
        }
    };
    if a == b {
        eprintln!("core-pingpong: CPU-A and CPU-B must differ");
        return ExitCode::from(2);
    }
    let line = Arc::new(Line(AtomicU64::new(0)));
    let batch = n.div_ceil(BATCHES as u64);
    let peer = {
        let line = line.clone();
        std::thread::spawn(move || {
            if !lcore::pin_current_thread(b) {
                line.0.store(STOP, Ordering::Release);
                return false;
            }
            answer(&line);
            true
        })
    };
    if !lcore::pin_current_thread(a) {
        line.0.store(STOP, Ordering::Release);
        let _ = peer.join();
        eprintln!("core-pingpong: cannot run on CPU {a}; name online CPUs");
        return ExitCode::from(2);
    }
    // A short warm-up, then the batches.
    let mut next = 0u64;
    let mut per_batch = Vec::with_capacity(BATCHES);
    for i in 0..=BATCHES {
        let k = if i == 0 { batch / 10 + 1 } else { batch };
        let Some(c) = serve(&line, k, next) else {
            break;
        };
        next += 2 * k;
        if i > 0 {
            per_batch.push(c as f64 / k as f64);
        }
    }
    line.0.store(STOP, Ordering::Release);
    if !peer.join().unwrap_or(false) || per_batch.len() < BATCHES {
        eprintln!("core-pingpong: cannot run on CPU {b}; name online CPUs");
        return ExitCode::from(2);
    }
    per_batch.sort_by(f64::total_cmp);
    let cycles = per_batch[BATCHES / 2];
    let ns = cycles * 1e9 / tsc::hz() as f64;
    println!("pingpong cpu {a}<->{b}: {cycles:.0} cycles, {ns:.1} ns per round trip (median of {BATCHES} batches)");
    ExitCode::SUCCESS
}
