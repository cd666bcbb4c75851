//! Interop with DPDK's vhost-user back end (`tso=1`): TCP/IPv4 super-frames sent with
//! TX_TCP_SEG as mbuf chains come back through testpmd's macswap (see
//! `interop_common::offloads::tso` for what DPDK does with them). Own binary: one EAL.

mod interop_common;

#[test]
fn tso_super_frames_through_dpdk_vhost() {
    interop_common::offloads::tso("tso_super_frames_through_dpdk_vhost");
}
