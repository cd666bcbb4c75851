//! libFuzzer target: the packed-ring form of `desc_chain` — a hostile driver writing packed
//! descriptors (ids, lengths, addresses, AVAIL/USED flags of either wrap counter, chains
//! that never end), event suppression areas and headers between the device's bursts
//! (`pmd_vhost::fuzzing_ring::fuzz_desc_chain_packed`). Must never panic; every mbuf
//! returns to its pool.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pmd_vhost::fuzzing_ring::fuzz_desc_chain_packed(data);
});
