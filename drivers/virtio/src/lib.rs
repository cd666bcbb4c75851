//! `net_virtio_user`: a virtio-net poll-mode driver whose device is a vhost-user back end
//! (DPDK's `net_vhost`, a software switch, ...) reached over a unix socket.
//!
//! Layers:
//! - [`virtqueue`]: the split and packed virtqueues, driver side, hardened against a
//!   hostile device;
//! - [`transport`]: the [`transport::Transport`] trait (features, queue setup,
//!   notifications) and its two implementations, [`transport::vhost_user`] (a vhost-user
//!   front end) and [`transport::pci`] (virtio-pci), on the same queue code;
//! - [`net`]: the virtio-net PMD (device, rx/tx queues, header handling, control queue).
//!
//! Vdev arguments (DPDK's names): `path=/tmp/vhost.sock` (required), `queues=N` (queue
//! pairs, default 1), `queue_size=256` (descriptors per queue, a power of two up to
//! 4096), `mac=xx:xx:xx:xx:xx:xx` (default: a random locally administered address),
//! `server=1` (we listen on `path` and the back end connects, e.g. DPDK's
//! `net_vhost0,iface=<path>,client=1`; probe waits up to 30 s for it).
//!
//! A back end that dies takes the link down; the port keeps running. With `server=1` the
//! restarted back end connects again and is handed the rings where the old one left
//! them (split rings), so traffic resumes and no buffer is lost; in client mode the
//! front end tries the path again, at most once a second. A thread per started port
//! watches for this (`net::watch`); asking for the link does the same check.
//! Stopping a port whose back end is gone succeeds, and its queues then give every
//! buffer back to the pool; its next start takes the new back end, if one is there.
//!
//! Memory constraint: the back end can only reach memory it was told about. The memory
//! table (every live segment: mempools and the rings) is sent at each port start, so
//! create every mempool whose buffers go through the port *before* starting it; a
//! mempool created later is unknown to the back end until the port is stopped and started
//! again (DPDK's virtio-user has the same rule). vhost-user allows at most 8 regions, so
//! at most 8 live segments.
//!
//! PCI: the same driver claims virtio-net PCI functions (1af4:1041 modern, 1af4:1000
//! transitional) that the EAL opened (`-a ADDR`), through the [`transport::pci`] transport (modern
//! capabilities when present, else the legacy I/O-port interface). Descriptors then carry
//! IOVAs, so every buffer must come from EAL memory (which VFIO maps for the device).
//!
//! Packed virtqueues (`VIRTIO_F_RING_PACKED`) are used with `packed_vq=1` on virtio-user,
//! and on PCI whenever the device offers them (QEMU: `packed=on`).
//!
//! Control queue and multiqueue ([`net::ctrl`]): `VIRTIO_NET_F_CTRL_VQ` and `VIRTIO_NET_F_MQ`
//! are negotiated when the transport can serve a control queue. virtio-user *emulates* it
//! (vhost-user back ends, DPDK's included, offer `CTRL_VQ` but leave the queue to the
//! VMM): `VQ_PAIRS_SET n` becomes `SET_VRING_ENABLE` on the rings, and since vhost-user
//! has no receive filtering, `CTRL_RX` is not offered: the port stays promiscuous and
//! refuses to leave it with an error. A device that serves the queue itself (virtio-pci,
//! once its transport opts in with [`transport::CtrlMode::Device`]) gets a real control
//! virtqueue at index `2 * max_pairs`.
//!
//! Rx interrupts ([`pmd_core::intr`]): virtio-user rx queues can wake a sleeping thread
//! through the ring's call eventfd (the one SET_VRING_CALL gave the back end, which
//! signals it after adding used buffers while the driver asks for notifications). PCI
//! queues have none yet (no MSI-X): they must be polled.
//!
//! Multi-segment packets and offloads: received frames larger than one buffer arrive as
//! chains (`MRG_RXBUF` + SCATTER); transmitted chains go out as descriptor chains
//! (`MULTI_SEGS`, up to [`net::TX_SEG_MAX`] segments; virtio-user only: with IOVAs they
//! are linearized). TCP/UDP checksum and TSO offloads map to the device's `CSUM` and
//! `HOST_TSO4/6`, LRO to `GUEST_TSO4/6` (see [`net`] for what the capabilities promise).

#[doc(hidden)]
pub mod fuzzing;
pub mod net;
pub mod transport;
pub mod virtqueue;

/// The vhost-user transport under its earlier path, `pmd_virtio::user`.
pub use transport::vhost_user as user;

use net::{NetConf, VirtioNet};
use pmd_core::devargs::VdevSpec;
use pmd_core::error::Result;
use pmd_core::ethdev::{Device, Driver, ExclusiveResource, MacAddr, PciId};
use pmd_core::pci::PciBackend;
use std::path::PathBuf;
use std::sync::Arc;
use transport::{pci, vhost_user};

/// The driver name (vdev prefix).
pub const DRIVER_NAME: &str = "net_virtio_user";

/// The driver name PCI virtio-net ports report.
pub const PCI_DRIVER_NAME: &str = "net_virtio";

/// The PCI functions the driver claims: transitional and modern virtio-net.
pub const PCI_IDS: &[PciId] = &[
    PciId {
        vendor: pci::VIRTIO_PCI_VENDOR,
        device: pci::VIRTIO_PCI_DEVICE_NET_TRANSITIONAL,
    },
    PciId {
        vendor: pci::VIRTIO_PCI_VENDOR,
        device: pci::VIRTIO_PCI_DEVICE_NET_MODERN,
    },
];

const KNOWN_ARGS: &[&str] = &["path", "queues", "queue_size", "mac", "packed_vq", "server"];

/// Most queue pairs `queues=` may ask for.
const MAX_QUEUE_PAIRS: u16 = 8;

/// Descriptors per queue without `queue_size=`.
const DEFAULT_QUEUE_SIZE: u16 = 256;

/// Fewest descriptors per queue `queue_size=` may ask for.
const MIN_QUEUE_SIZE: u16 = 64;

/// The virtio-user driver.
pub struct VirtioUserDriver;

/// The instance to register with the EAL.
pub static DRIVER: VirtioUserDriver = VirtioUserDriver;

/// Settings parsed from the vdev arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtioUserConf {
    /// Path of the back end's vhost-user socket.
    pub path: PathBuf,
    /// Queue pairs.
    pub queues: u16,
    /// Descriptors per queue.
    pub queue_size: u16,
    /// MAC address, if given.
    pub mac: Option<MacAddr>,
    /// Ask for packed virtqueues (`packed_vq=1`).
    pub packed_vq: bool,
    /// Listen on `path` for the back end (`server=1`) instead of connecting to it.
    pub server: bool,
}

impl VirtioUserConf {
    /// Parses and validates the vdev arguments.
    pub fn from_vdev(vdev: &VdevSpec) -> Result<VirtioUserConf> {
        vdev.check_known(KNOWN_ARGS)?;
        let path_arg = vdev.get("path");
        let path = path_arg.path()?.ok_or_else(|| {
            path_arg.missing("name the vhost-user socket, e.g. path=/tmp/vhost.sock")
        })?;
        let queues = vdev.get("queues").int_in(1..=MAX_QUEUE_PAIRS)?.unwrap_or(1);
        let size_arg = vdev.get("queue_size");
        let queue_size = size_arg.parse::<u16>()?.unwrap_or(DEFAULT_QUEUE_SIZE);
        if virtqueue::Layout::new(queue_size).is_none() || queue_size < MIN_QUEUE_SIZE {
            return Err(size_arg
                .reject(format!(
                    "use a power of two in {MIN_QUEUE_SIZE}..={}",
                    virtqueue::MAX_QUEUE_SIZE
                ))
                .into());
        }
        let mac = vdev.get("mac").parse::<MacAddr>()?;
        let packed_vq = vdev.get("packed_vq").flag()?.unwrap_or(false);
        let server = vdev.get("server").flag()?.unwrap_or(false);
        Ok(VirtioUserConf {
            path,
            queues,
            queue_size,
            mac,
            packed_vq,
            server,
        })
    }
}

/// A random locally administered unicast MAC (what virtio-user reports when none is given).
pub fn random_local_mac() -> MacAddr {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let v = h.finish().to_le_bytes();
    MacAddr([(v[0] & 0xfc) | 0x02, v[1], v[2], v[3], v[4], v[5]])
}

impl Driver for VirtioUserDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    fn description(&self) -> &'static str {
        "virtio-net over a vhost-user back end (and virtio-net PCI functions); path=<socket> queues=1 queue_size=256 mac=<addr> packed_vq=0|1 server=0|1"
    }

    fn probe(&self, vdev: &VdevSpec) -> Result<Box<dyn Device>> {
        let c = VirtioUserConf::from_vdev(vdev)?;
        let mac = c.mac.unwrap_or_else(random_local_mac);
        let t = if c.server {
            vhost_user::VirtioUser::listen(&vdev.name, &c.path, c.queues, mac)?
        } else {
            vhost_user::VirtioUser::connect(&vdev.name, &c.path, c.queues, mac)?
        };
        let dev = VirtioNet::with_options(
            NetConf {
                driver: DRIVER_NAME,
                name: vdev.name.clone(),
                queue_size: c.queue_size,
                queue_pairs: c.queues,
                mac,
            },
            net::NetOptions {
                packed_vq: c.packed_vq,
            },
            Box::new(t),
        )?;
        Ok(Box::new(dev))
    }

    /// The vhost-user socket: its back end serves one front end at a time.
    fn exclusive_resource(&self, vdev: &VdevSpec) -> Option<ExclusiveResource> {
        let c = VirtioUserConf::from_vdev(vdev).ok()?;
        Some(ExclusiveResource {
            what: format!(
                "vhost-user socket {}",
                ExclusiveResource::path_name(&c.path)
            ),
            fix: "give each port its own back end socket".into(),
        })
    }

    fn pci_ids(&self) -> &'static [PciId] {
        PCI_IDS
    }

    fn probe_pci(&self, dev: Arc<dyn PciBackend>) -> Result<Box<dyn Device>> {
        let name = dev.addr().to_string();
        let t = pci::VirtioPci::probe(dev)?;
        let queue_size = t.queue_size()?;
        tracing::info!(
            device = name,
            modern = t.is_modern(),
            queue_size,
            "virtio-net PCI function probed"
        );
        // A device configured with packed rings (QEMU `packed=on`) offers them: use them.
        let dev = VirtioNet::with_options(
            NetConf {
                driver: PCI_DRIVER_NAME,
                name,
                queue_size,
                queue_pairs: 1,
                mac: random_local_mac(),
            },
            net::NetOptions { packed_vq: true },
            Box::new(t),
        )?;
        Ok(Box::new(dev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arguments() {
        let c = VirtioUserConf::from_vdev(
            &"net_virtio_user0,path=/tmp/x.sock,queues=2,queue_size=512,mac=02:00:00:00:00:09"
                .parse()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(c.path, PathBuf::from("/tmp/x.sock"));
        assert_eq!((c.queues, c.queue_size), (2, 512));
        assert_eq!(c.mac, Some(MacAddr::local(9)));
        for bad in [
            "net_virtio_user0",
            "net_virtio_user0,path=/x,queues=0",
            "net_virtio_user0,path=/x,queue_size=100",
            "net_virtio_user0,path=/x,queue_size=8192",
            "net_virtio_user0,path=/x,mac=zz",
            "net_virtio_user0,path=/x,bogus=1",
        ] {
            assert!(
                VirtioUserConf::from_vdev(&bad.parse().unwrap()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn argument_errors_name_the_argument() {
        let err = |spec: &str| {
            VirtioUserConf::from_vdev(&spec.parse().unwrap())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("net_virtio_user0"),
            "net_virtio_user0: missing argument 'path': name the vhost-user socket, e.g. path=/tmp/vhost.sock"
        );
        assert!(err("net_virtio_user0,path=").contains("argument 'path' is empty"));
        assert_eq!(
            err("net_virtio_user0,path=/x,queues=9"),
            "net_virtio_user0: queues=9 is out of range: use 1..=8"
        );
        assert_eq!(
            err("net_virtio_user0,path=/x,queue_size=32"),
            "net_virtio_user0: queue_size=32: use a power of two in 64..=4096"
        );
        assert_eq!(
            err("net_virtio_user0,path=/x,packed_vq=2"),
            "net_virtio_user0: packed_vq=2: use 0 or 1"
        );
        let c = VirtioUserConf::from_vdev(&"net_virtio_user0,path=/x,packed_vq=1".parse().unwrap())
            .unwrap();
        assert!(c.packed_vq && !c.server);
        assert_eq!(
            err("net_virtio_user0,path=/x,server=2"),
            "net_virtio_user0: server=2: use 0 or 1"
        );
        let c = VirtioUserConf::from_vdev(&"net_virtio_user0,path=/x,server=1".parse().unwrap())
            .unwrap();
        assert!(c.server);
        assert_eq!((c.queues, c.queue_size, c.mac), (1, 256, None));
    }

    #[test]
    fn probe_without_back_end_says_what_to_do() {
        let e = DRIVER
            .probe(
                &"net_virtio_user0,path=/nonexistent/vhost.sock"
                    .parse()
                    .unwrap(),
            )
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("cannot connect") && e.contains("running?"),
            "{e}"
        );
    }

    #[test]
    fn random_mac_is_local_unicast() {
        let m = random_local_mac();
        assert_eq!(m.0[0] & 0x03, 0x02);
    }
}
