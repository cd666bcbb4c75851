//! Interop with DPDK's vhost-user back end with jumbo frames (see `interop_common`):
//! frames up to 9014 bytes each way, received as merged buffers (MRG_RXBUF) chained into
//! mbufs (SCATTER). Its own test binary: one EAL per process.

mod interop_common;

#[test]
fn jumbo_frames_through_dpdk_vhost_as_merged_buffers() {
    interop_common::jumbo_round_trip("jumbo_frames_through_dpdk_vhost_as_merged_buffers", false);
}
