//! libFuzzer target: the input is an argv vector (items split at NUL bytes, a one-byte
//! item below 0x20 standing for an option word) through `EalOptions::parse`
//! (`pmd_core::fuzzing::fuzz_eal_options`). Must never panic; accepted options must
//! re-parse to the same value when written out again.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pmd_core::fuzzing::fuzz_eal_options(data));
