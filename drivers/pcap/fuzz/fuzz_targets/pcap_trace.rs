//! libFuzzer target: a mode byte, then a capture file or the parts of one
//! (`pmd_pcap::fuzzing::fuzz_trace`). The reader must never panic; an assembled file must
//! give back exactly its records, or an error naming the first bad one.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pmd_pcap::fuzzing::fuzz_trace(data));
