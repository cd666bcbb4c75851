//! Ring enqueue+dequeue cost on one thread, the shape of DPDK's `ring_perf_autotest`
//! single-lcore bulk rows: one iteration = enqueue `n` then dequeue `n`.
//! Throughput is reported per element.

// criterion_group! defines `pub fn benches` with no doc comment to give it.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pmd_core::ring::{spsc, Ring};

fn ring_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    for n in [1usize, 8, 32] {
        g.throughput(Throughput::Elements(n as u64));
        let src: Vec<usize> = (0..n).collect();
        let mut dst = vec![0usize; n];

        let (mut p, mut cons) = spsc::<usize>(1024).unwrap();
        g.bench_with_input(BenchmarkId::new("sp_sc_bulk", n), &n, |b, _| {
            b.iter(|| {
                assert!(p.enqueue_bulk(black_box(&src)));
                assert!(cons.dequeue_bulk(black_box(&mut dst)));
            })
        });

        let r = Ring::<usize>::new(1024).unwrap();
        g.bench_with_input(BenchmarkId::new("mp_mc_bulk", n), &n, |b, _| {
            b.iter(|| {
                assert!(r.enqueue_bulk(black_box(&src)));
                assert!(r.dequeue_bulk(black_box(&mut dst)));
            })
        });

        g.bench_with_input(BenchmarkId::new("mp_mc_burst", n), &n, |b, _| {
            b.iter(|| {
                assert_eq!(r.enqueue_burst(black_box(&src)), n);
                assert_eq!(r.dequeue_burst(black_box(&mut dst)), n);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, ring_bench);
criterion_main!(benches);
