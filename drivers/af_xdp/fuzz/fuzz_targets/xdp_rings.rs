//! libFuzzer target: five bytes an operation, the input plays the kernel side of an XDP
//! socket's four rings (rx descriptors anywhere, completions of any address, indexes that
//! move backwards or jump) between the data path's rx and tx bursts
//! (`pmd_af_xdp::fuzzing::fuzz_xdp_rings`). Must never panic or copy outside a frame;
//! good descriptors deliver their frame's bytes, bad ones are counted, no mbuf leaks.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pmd_af_xdp::fuzzing::fuzz_xdp_rings(data);
});
