//! IPv4 route lookups on a table shaped like the one DPDK's `lpm_perf_autotest` builds:
//! about a million routes with its count of routes per prefix length (the Internet's
//! shape: over half /24s), random prefixes, random addresses looked up.
//!
//! First it prints TSC cycles per operation in `lpm_perf_autotest`'s words (add, single
//! lookup, bulk lookup, delete), measured with the TSC as DPDK's test measures them, so
//! `ci/bench-lpm.sh` can put the two side by side; then criterion measures the single and
//! the 64-address burst lookups.

#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pmd_core::tsc::rdtsc;
use pmd_lpm::{Lpm4, LpmConfig};
use std::net::Ipv4Addr;

/// Routes per prefix length 1..=32, as DPDK 22.11's `lpm_perf_autotest` reports its table.
const PER_DEPTH: [u32; 32] = [
    0, 0, 1, 0, 3, 2, 4, 201, 37, 55, 97, 381, 775, 2104, 3712, 69319, 12983, 23667, 69068, 62354,
    48531, 72355, 85427, 583900, 2654, 5650, 6467, 7127, 12936, 5999, 13, 984,
];
const LOOKUPS: usize = 1 << 20;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 16) as u32
    }
}

fn routes() -> Vec<(u32, u8, u32)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut v = Vec::new();
    for (i, &n) in PER_DEPTH.iter().enumerate() {
        let depth = i as u8 + 1;
        for _ in 0..n {
            let p = rng.next() & (u32::MAX << (32 - u32::from(depth)));
            v.push((p, depth, rng.next() & 0xffff));
        }
    }
    v
}

fn table(routes: &[(u32, u8, u32)]) -> (Lpm4, u64) {
    let mut t = Lpm4::new(&LpmConfig {
        max_rules: 1 << 21,
        tbl8_groups: 1 << 16,
        ..LpmConfig::default()
    })
    .expect("table");
    let start = rdtsc();
    for &(p, d, nh) in routes {
        t.add(Ipv4Addr::from(p), d, nh).expect("add");
    }
    (t, rdtsc() - start)
}

fn addresses() -> Vec<u32> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    (0..LOOKUPS).map(|_| rng.next()).collect()
}

/// The `lpm_perf_autotest`-style lines.
fn tsc_figures() {
    let routes = routes();
    let (t, add_cycles) = table(&routes);
    let r = t.reader();
    let ips = addresses();
    println!(
        "routes: {} generated, {} unique; {} tbl8 groups in use",
        routes.len(),
        t.len(),
        t.groups_in_use()
    );
    println!(
        "Average LPM Add: {:.0} cycles",
        add_cycles as f64 / routes.len() as f64
    );
    let rounds = 8;
    let (mut fails, mut cycles) = (0usize, 0u64);
    for _ in 0..rounds {
        let start = rdtsc();
        for &ip in &ips {
            fails += usize::from(black_box(r.lookup(black_box(ip))).is_none());
        }
        cycles += rdtsc() - start;
    }
    let n = (rounds * ips.len()) as f64;
    println!(
        "Average LPM Lookup: {:.1} cycles (fails = {:.1}%)",
        cycles as f64 / n,
        100.0 * fails as f64 / n
    );
    let mut hops = vec![0u32; 64];
    let (mut fails, mut cycles) = (0usize, 0u64);
    for _ in 0..rounds {
        let start = rdtsc();
        for chunk in ips.chunks(64) {
            r.lookup_bulk(chunk, &mut hops, u32::MAX);
            fails += black_box(&hops).iter().filter(|&&h| h == u32::MAX).count();
        }
        cycles += rdtsc() - start;
    }
    println!(
        "BULK LPM Lookup: {:.1} cycles (fails = {:.1}%)",
        cycles as f64 / n,
        100.0 * fails as f64 / n
    );
    let mut t = t;
    drop(r);
    let start = rdtsc();
    for &(p, d, _) in &routes {
        let _ = t.delete(Ipv4Addr::from(p), d);
    }
    println!(
        "Average LPM Delete: {:.1} cycles",
        (rdtsc() - start) as f64 / routes.len() as f64
    );
}

fn bench(c: &mut Criterion) {
    tsc_figures();
    let (t, _) = table(&routes());
    let r = t.reader();
    let ips = addresses();
    let mut g = c.benchmark_group("lpm4");
    g.throughput(Throughput::Elements(ips.len() as u64));
    g.bench_function("lookup, 2^20 random addresses, one by one", |b| {
        b.iter(|| {
            let mut hit = 0u32;
            for &ip in &ips {
                hit = hit.wrapping_add(r.lookup(ip).unwrap_or(0));
            }
            hit
        })
    });
    let mut hops = vec![0u32; 64];
    g.bench_function("lookup_bulk, 2^20 random addresses, bursts of 64", |b| {
        b.iter(|| {
            for chunk in ips.chunks(64) {
                r.lookup_bulk(chunk, &mut hops, u32::MAX);
            }
            black_box(&hops);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
