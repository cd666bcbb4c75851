//! libFuzzer target: a packed virtqueue of 1–128 entries driven by the input, five bytes an
//! operation: the driver pushes, publishes and polls, the device writes used descriptors
//! (ids, lengths, wrap flags) and scribbles on the queue's memory
//! (`pmd_virtio::fuzzing::virtqueue::fuzz_packed_used_ring`). Must never panic; only
//! buffers in flight come back; ring positions are never lost.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pmd_virtio::fuzzing::virtqueue::fuzz_packed_used_ring(data);
});
