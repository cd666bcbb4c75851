//! libFuzzer target: the input is a received virtio-net header (12 bytes), a feature
//! selector, a ring size, a chain split point and a frame
//! (`pmd_virtio::net::hdr::fuzz_rx_hdr`). Parsing, validating and applying the header to the
//! chained frame must never panic; an accepted header must stay inside the frame and
//! change nothing but the checksum field; a refused one must leave the frame unchanged
//! and be counted once.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pmd_core::mempool::MempoolConfig;
use pmd_core::Mempool;
use std::sync::OnceLock;

static POOL: OnceLock<Mempool> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let pool = POOL.get_or_init(|| {
        // Small buffers: frames become chains of many segments.
        Mempool::create_with(
            "virtio-fuzz",
            &MempoolConfig {
                size: 2048,
                cache_size: 0,
                buf_size: 64 + pmd_core::mbuf::HEADROOM,
            },
        )
        .expect("mempool")
    });
    pmd_virtio::net::hdr::fuzz_rx_hdr(data, pool);
});
