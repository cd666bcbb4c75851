//! libFuzzer target: the input is a virtio-net header (10 bytes), a mode byte (bit 0:
//! keep super-frames whole as LRO; the rest: where the first segment ends), then the
//! frame, laid out as a chain of segments of 1 + (mode >> 1) bytes first and then as the
//! pool's buffers give. It goes through `RxProcessor::process`, the code the tap's and
//! af_packet's rx queues run. Must never panic; a refused header is counted exactly once; no mbuf leaks.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pmd_core::mbuf::HEADROOM;
use pmd_core::mempool::{Mempool, MempoolConfig};
use pmd_core::vnet::{RxProcessor, VnetHdr, VnetStats, VNET_HDR_LEN};
use std::sync::{Arc, OnceLock};

fn pool() -> &'static Mempool {
    static POOL: OnceLock<Mempool> = OnceLock::new();
    POOL.get_or_init(|| {
        Mempool::create_with(
            "tapfuzz",
            &MempoolConfig {
                size: 4096,
                cache_size: 0,
                buf_size: HEADROOM + 2048,
            },
        )
        .expect("pool")
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < VNET_HDR_LEN + 2 {
        return;
    }
    let h = VnetHdr::from_bytes(data[..VNET_HDR_LEN].try_into().unwrap());
    let mode = data[VNET_HDR_LEN];
    let frame = &data[VNET_HDR_LEN + 1..];
    let p = pool();
    let first = (1 + usize::from(mode >> 1)).min(frame.len());
    let Some(mut m) = p.alloc() else { return };
    let Some(d) = m.append(first) else { return };
    d.copy_from_slice(&frame[..first]);
    if first < frame.len() && m.extend_from_slice(&frame[first..], p).is_err() {
        return;
    }
    let stats = Arc::new(VnetStats::default());
    let rx = RxProcessor {
        lro: mode & 1 != 0,
        stats: stats.clone(),
    };
    let mut out = Vec::new();
    let res = rx.process(&h, m, p, |s| out.push(s));
    assert_eq!(stats.total_errors(), u64::from(res.is_err()));
    assert_eq!(res.is_ok(), !out.is_empty());
    drop(out);
    assert_eq!(p.stats().in_use, 0);
});
