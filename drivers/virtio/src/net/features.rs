//! The virtio feature bits the net layer knows (virtio 1.x sections 5.1.3 "Feature bits"
//! and 6 "Reserved Feature Bits"), what it asks a device for, and their names for logs.
//! The bits themselves are [`pmd_core::vnet::features`], shared with the vhost-user back
//! end; they are re-exported here under the same names.

pub use pmd_core::vnet::features::{
    VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1,
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_GUEST_CSUM,
    VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_HOST_TSO4,
    VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MQ, VIRTIO_NET_F_MRG_RXBUF,
    VIRTIO_NET_F_STATUS,
};

/// Features the net layer asks for (the transport may add its own).
///
/// `GUEST_TSO4/6` are not among them: they are negotiated again at configure when the
/// port asks for [`RxOffloads::TCP_LRO`](pmd_core::ethdev::RxOffloads::TCP_LRO) (DPDK's
/// rule: no super-frames unless asked).
pub const WANTED_FEATURES: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_NET_F_MAC
    | VIRTIO_NET_F_MRG_RXBUF
    | VIRTIO_F_EVENT_IDX
    | VIRTIO_NET_F_GUEST_CSUM
    | VIRTIO_NET_F_CSUM
    | VIRTIO_NET_F_HOST_TSO4
    | VIRTIO_NET_F_HOST_TSO6;

/// `GUEST_TSO4 | GUEST_TSO6`: asked for only with
/// [`RxOffloads::TCP_LRO`](pmd_core::ethdev::RxOffloads::TCP_LRO).
pub const GUEST_TSO: u64 = VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6;

/// Names of the feature bits this driver knows, for logs.
pub fn feature_names(features: u64) -> String {
    const NAMES: &[(u64, &str)] = &[
        (VIRTIO_NET_F_CSUM, "CSUM"),
        (VIRTIO_NET_F_GUEST_CSUM, "GUEST_CSUM"),
        (VIRTIO_NET_F_GUEST_TSO4, "GUEST_TSO4"),
        (VIRTIO_NET_F_GUEST_TSO6, "GUEST_TSO6"),
        (VIRTIO_NET_F_HOST_TSO4, "HOST_TSO4"),
        (VIRTIO_NET_F_HOST_TSO6, "HOST_TSO6"),
        (VIRTIO_NET_F_MAC, "MAC"),
        (VIRTIO_NET_F_MRG_RXBUF, "MRG_RXBUF"),
        (VIRTIO_NET_F_STATUS, "STATUS"),
        (VIRTIO_NET_F_CTRL_VQ, "CTRL_VQ"),
        (VIRTIO_NET_F_CTRL_RX, "CTRL_RX"),
        (VIRTIO_NET_F_MQ, "MQ"),
        (VIRTIO_F_INDIRECT_DESC, "INDIRECT_DESC"),
        (VIRTIO_F_EVENT_IDX, "EVENT_IDX"),
        (1 << 30, "PROTOCOL_FEATURES"),
        (VIRTIO_F_VERSION_1, "VERSION_1"),
        (VIRTIO_F_RING_PACKED, "RING_PACKED"),
    ];
    let v: Vec<&str> = NAMES
        .iter()
        .filter(|(b, _)| features & b != 0)
        .map(|(_, n)| *n)
        .collect();
    v.join("|")
}
