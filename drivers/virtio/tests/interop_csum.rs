//! Interop with DPDK's vhost-user back end: UDP frames sent with TX_UDP_CKSUM (the device
//! completes them, `NEEDS_CSUM`) come back through testpmd's macswap with valid
//! checksums. Own binary: one EAL per process.

mod interop_common;

#[test]
fn udp_checksum_offload_through_dpdk_vhost() {
    interop_common::offloads::csum("udp_checksum_offload_through_dpdk_vhost");
}
