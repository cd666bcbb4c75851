//! Cached mempool get/put, the shape of DPDK's `mempool_perf_autotest` (cache 512, one
//! lcore): get `n_keep` buffers in bulks of `bulk`, then put them back in bulks of `bulk`.
//! Throughput is in objects (one get plus one put each), DPDK's "objects got+put".
//!
//! - `raw_*`: pointer-level get/put, exactly what DPDK's benchmark measures;
//! - `mbuf_*`: the packet API (`alloc_bulk` resets each header, dropping the batch frees
//!   in bulk), which also touches every buffer header.

// criterion_group! defines `pub fn benches` with no doc comment to give it.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pmd_core::lcore;
use pmd_core::mbuf::{PktBatch, RawMbuf};
use pmd_core::Mempool;

fn mempool_bench(c: &mut Criterion) {
    let _lcore = lcore::register_current_thread(0).expect("bench thread as lcore 0");
    let pool = Mempool::create("bench", 16383, 512).unwrap();
    let mut g = c.benchmark_group("mempool_cache512");
    for n_keep in [32usize, 128] {
        for bulk in [1usize, 4, 8, 32] {
            g.throughput(Throughput::Elements(n_keep as u64));
            let mut table = vec![RawMbuf::NULL; n_keep];
            g.bench_with_input(
                BenchmarkId::new(format!("raw_keep{n_keep}"), bulk),
                &bulk,
                |b, &bulk| {
                    b.iter(|| {
                        for chunk in table.chunks_mut(bulk) {
                            assert!(pool.get_raw_bulk(chunk));
                        }
                        for chunk in table.chunks(bulk) {
                            // SAFETY: these buffers were just taken from this pool and are unused.
                            unsafe { pool.put_raw_bulk(chunk) };
                        }
                    })
                },
            );
            let mut batches: Vec<PktBatch> = (0..n_keep / bulk).map(|_| PktBatch::new()).collect();
            g.bench_with_input(
                BenchmarkId::new(format!("mbuf_keep{n_keep}"), bulk),
                &bulk,
                |b, &bulk| {
                    b.iter(|| {
                        for batch in batches.iter_mut() {
                            assert!(pool.alloc_bulk(batch, bulk).is_some());
                        }
                        for batch in batches.iter_mut() {
                            batch.clear();
                        }
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, mempool_bench);
criterion_main!(benches);
