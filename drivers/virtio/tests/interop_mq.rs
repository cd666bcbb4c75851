//! Interop with DPDK's vhost-user back end with two queue pairs (see `interop_common`):
//! `net_vhost0,queues=2`, CTRL_VQ + MQ negotiated, frames on both tx queues, all back.

mod interop_common;

#[test]
fn mq_round_trip_through_dpdk_vhost() {
    interop_common::mq_round_trip("mq_round_trip_through_dpdk_vhost");
}
