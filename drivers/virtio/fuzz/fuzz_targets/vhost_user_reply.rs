//! libFuzzer target: a mode byte, then what a vhost-user back end sends: replies to the
//! handshake (GET_FEATURES, GET_PROTOCOL_FEATURES, GET_QUEUE_NUM, REPLY_ACK statuses) or to
//! a chosen request sequence (`pmd_virtio::fuzzing::vhost_user::fuzz_vhost_user_reply`).
//! Must never panic; each step must accept exactly the well-formed replies.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pmd_virtio::fuzzing::vhost_user::fuzz_vhost_user_reply(data);
});
