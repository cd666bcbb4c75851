//! libFuzzer target: a split ring of 1–8 entries in a memfd-backed memory table, the
//! input a hostile driver writing descriptors, available entries and indexes, headers
//! and notification fields between the device's receive and transmit bursts
//! (`pmd_vhost::fuzzing_ring::fuzz_desc_chain`). Must never panic; only available heads
//! come back in the used ring; every mbuf returns to its pool.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pmd_vhost::fuzzing_ring::fuzz_desc_chain(data);
});
