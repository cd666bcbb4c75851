//! Interop with DPDK's vhost-user back end (split rings): frames up to 9014 bytes SENT as
//! mbuf chains (1000-byte segments, so up to 10 descriptors per packet) and received back
//! through testpmd's macswap byte for byte. Its own test binary: one EAL per process.

mod interop_common;

#[test]
fn chained_jumbo_frames_through_dpdk_vhost() {
    interop_common::chains::run("chained_jumbo_frames_through_dpdk_vhost", false);
}
