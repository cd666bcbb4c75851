//! `interop_chains.rs` over packed virtqueues (`packed_vq=1`): chained descriptors are
//! consecutive ring entries sharing one buffer id.

mod interop_common;

#[test]
fn chained_jumbo_frames_through_dpdk_vhost_packed() {
    interop_common::chains::run("chained_jumbo_frames_through_dpdk_vhost_packed", true);
}
