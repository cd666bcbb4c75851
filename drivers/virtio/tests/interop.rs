//! Interop with DPDK's vhost-user back end over split virtqueues (see
//! `interop_common`): a 1000-frame macswap round trip through `dpdk-testpmd`'s `net_vhost`.

mod interop_common;

#[test]
fn macswap_round_trip_through_dpdk_vhost() {
    interop_common::macswap_round_trip("macswap_round_trip_through_dpdk_vhost", false);
}
