//! Interop with DPDK's vhost-user back end over packed virtqueues (`packed_vq=1`, see
//! `interop_common`): the same 1000-frame macswap round trip as `interop.rs`.

mod interop_common;

#[test]
fn macswap_round_trip_through_dpdk_vhost_packed() {
    interop_common::macswap_round_trip("macswap_round_trip_through_dpdk_vhost_packed", true);
}

/// One throughput figure (release build recommended):
/// `cargo test --release -p pmd-virtio --test interop_packed -- --ignored --nocapture`.
#[test]
#[ignore]
fn packed_tx_rate_into_dpdk_vhost() {
    interop_common::packed_tx_rate(6);
}
