//! libFuzzer target: the input is a vdev specification (`NAME,key=value,...`) read with
//! every typed devarg reader (`pmd_core::fuzzing::fuzz_devargs`). Must never panic; an
//! accepted spec must print back to its own text.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pmd_core::fuzzing::fuzz_devargs(data));
