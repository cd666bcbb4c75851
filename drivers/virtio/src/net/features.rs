//! The virtio feature bits the net layer knows (virtio 1.x sections 5.1.3 "Feature bits"
//! and 6 "Reserved Feature Bits"), what it asks a device for, and their names for logs.

/// Feature bit: the device completes partial checksums of transmitted packets
/// (`NEEDS_CSUM` headers): `TX_TCP_CKSUM` / `TX_UDP_CKSUM` offload.
pub const VIRTIO_NET_F_CSUM: u64 = 1 << 0;
/// Feature bit: the driver takes TCPv4 GSO super-frames on receive (`RX_LRO`).
pub const VIRTIO_NET_F_GUEST_TSO4: u64 = 1 << 7;
/// Feature bit: the driver takes TCPv6 GSO super-frames on receive (`RX_LRO`).
pub const VIRTIO_NET_F_GUEST_TSO6: u64 = 1 << 8;
/// Feature bit: the device segments TCPv4 super-frames (`TX_TCP_SEG`).
pub const VIRTIO_NET_F_HOST_TSO4: u64 = 1 << 11;
/// Feature bit: the device segments TCPv6 super-frames (`TX_TCP_SEG`).
pub const VIRTIO_NET_F_HOST_TSO6: u64 = 1 << 12;
/// Feature bit: the device has a MAC address in its configuration.
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// Feature bit: the driver can merge receive buffers (header carries `num_buffers`).
pub const VIRTIO_NET_F_MRG_RXBUF: u64 = 1 << 15;
/// Feature bit: the driver accepts packets with a partial checksum (`NEEDS_CSUM`) and
/// checksum-validated packets (`DATA_VALID`).
pub const VIRTIO_NET_F_GUEST_CSUM: u64 = 1 << 1;
/// Feature bit: the configuration has a link status field.
pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
/// Feature bit: control virtqueue (asked for when the transport can serve one).
pub const VIRTIO_NET_F_CTRL_VQ: u64 = 1 << 17;
/// Feature bit: receive filtering commands (promiscuous, all-multicast) on the control queue.
pub const VIRTIO_NET_F_CTRL_RX: u64 = 1 << 18;
/// Feature bit: multiqueue with automatic receive steering (needs the control queue).
pub const VIRTIO_NET_F_MQ: u64 = 1 << 22;
/// Feature bit: indirect descriptors (not used).
pub const VIRTIO_F_INDIRECT_DESC: u64 = 1 << 28;
/// Feature bit: `used_event` / `avail_event` notification suppression.
pub const VIRTIO_F_EVENT_IDX: u64 = 1 << 29;
/// Feature bit: virtio 1.x (modern) device; the net header is always 12 bytes.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Feature bit: packed virtqueues (asked for with
/// [`NetOptions::packed_vq`](super::NetOptions::packed_vq)).
pub const VIRTIO_F_RING_PACKED: u64 = 1 << 34;

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
