//! Flow table operations in the shape of DPDK's `hash_perf_autotest` ("elements in
//! primary or secondary location, operations with 8-byte data, without pre-computed
//! hash values"): a table for 2^19 flows filled to 75% with random keys, each key
//! looked up 5 times in random order, one by one and in bursts of 64, then every key
//! deleted. Prints TSC cycles per operation for the IPv4 5-tuple (DPDK's 13-byte row,
//! 16 bytes here) and the IPv6 5-tuple (DPDK's 37-byte row, 40 bytes here); then
//! criterion measures the burst lookup of IPv4 flows.

#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pmd_core::tsc::rdtsc;
use pmd_flow::{FlowConfig, FlowTable};

const CAPACITY: u32 = 1 << 19;
const KEYS: usize = CAPACITY as usize * 3 / 4;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn keys<const W: usize>(seed: u64) -> Vec<[u64; W]> {
    let mut rng = Rng(seed);
    (0..KEYS)
        .map(|_| std::array::from_fn(|_| rng.next()))
        .collect()
}

fn table<const W: usize>() -> FlowTable<W> {
    FlowTable::new(&FlowConfig {
        capacity: CAPACITY,
        ..FlowConfig::default()
    })
    .expect("table")
}

/// One row: add, lookup, bulk lookup, delete (cycles per operation).
fn row<const W: usize>(label: &str) {
    let keys: Vec<[u64; W]> = keys(0x9e37_79b9_7f4a_7c15 ^ W as u64);
    let mut t = table::<W>();
    let r = t.reader();
    let start = rdtsc();
    for (i, k) in keys.iter().enumerate() {
        t.insert(k, i as u64, 0).expect("insert");
    }
    let add = (rdtsc() - start) as f64 / KEYS as f64;
    let mut rng = Rng(42);
    let order: Vec<usize> = (0..KEYS * 5).map(|_| rng.next() as usize % KEYS).collect();
    let start = rdtsc();
    for &i in &order {
        black_box(r.lookup(black_box(&keys[i])));
    }
    let lookup = (rdtsc() - start) as f64 / order.len() as f64;
    let burst: Vec<[u64; W]> = order.iter().map(|&i| keys[i]).collect();
    let mut values = vec![None; 64];
    let start = rdtsc();
    for chunk in burst.chunks(64) {
        r.lookup_bulk(chunk, &mut values);
        black_box(&values);
    }
    let bulk = (rdtsc() - start) as f64 / burst.len() as f64;
    drop(r);
    let start = rdtsc();
    for k in &keys {
        t.remove(k).expect("remove");
    }
    let delete = (rdtsc() - start) as f64 / KEYS as f64;
    println!("{label:<18}{add:<18.0}{lookup:<18.0}{bulk:<18.0}{delete:<18.0}");
}

fn bench(c: &mut Criterion) {
    println!("Keysize           Add               Lookup            Lookup_bulk       Delete");
    row::<2>("13 (ipv4 5-tuple)");
    row::<5>("37 (ipv6 5-tuple)");
    let keys: Vec<[u64; 2]> = keys(7);
    let mut t = table::<2>();
    for (i, k) in keys.iter().enumerate() {
        t.insert(k, i as u64, 0).expect("insert");
    }
    let r = t.reader();
    let mut values = vec![None; 64];
    let mut g = c.benchmark_group("flow4");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("lookup_bulk, 393216 flows, bursts of 64", |b| {
        b.iter(|| {
            for chunk in keys.chunks(64) {
                r.lookup_bulk(chunk, &mut values);
            }
            black_box(&values);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
