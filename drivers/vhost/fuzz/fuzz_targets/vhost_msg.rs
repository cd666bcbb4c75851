//! libFuzzer target: the input is a hostile front end's message stream (raw headers or
//! messages built from a few bytes, with real descriptors for the fake counts), fed
//! through the vhost-user parser into a back end whose data path checks every ring it is
//! handed (`pmd_vhost::fuzzing::fuzz_vhost_msg`). Must never panic, leak a descriptor or
//! start a ring whose areas do not translate.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pmd_vhost::fuzzing::fuzz_vhost_msg(data);
});
