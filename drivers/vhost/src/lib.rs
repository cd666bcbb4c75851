//! `net_vhost`: the vhost-user back end. A VM (QEMU `-netdev vhost-user`) or a
//! virtio-user front end (ours, or DPDK's `net_virtio_user`) connects over a Unix socket,
//! shares its memory and its virtqueues, and this port moves packets in and out of them.
//!
//! ```text
//! --vdev net_vhost0,iface=/path/sock[,queues=N][,client=0|1][,tso=0|1][,mac=xx:..]
//! ```
//!
//! | argument | default | meaning |
//! |----------|---------|---------|
//! | `iface`  | —       | the vhost-user socket |
//! | `queues` | 1       | queue pairs offered (1..=128; the front end may use fewer) |
//! | `client` | 0       | 0: listen on `iface` (the front end connects); 1: connect to a front end listening there, and reconnect when it comes back |
//! | `tso`    | 0       | offer checksum and TCP segmentation offload both ways |
//! | `mac`    | `02:76:..` | the port's MAC address |
//!
//! Safety model: the front end is untrusted. Every message is size-checked before its
//! payload is read and every descriptor it passes is counted and closed on every path;
//! the memory table is checked ([`mem`]) and every guest address is translated with its
//! length; descriptor chains are bounded; every index read from shared memory is checked
//! against the ring. A bad message gets a refusal and a disconnect; a bad descriptor is a
//! counted error (xstats) and the packet is dropped; a ring whose indexes make no sense is
//! stopped and counted.

pub mod backend;
pub mod burst;
pub mod config;
pub mod control;
pub mod device;
pub mod dirty;
#[doc(hidden)]
pub mod fuzzing;
mod indirect;
pub mod mem;
pub mod packed;
pub mod proto;
pub mod rxtx;
pub mod shared;
pub mod split;
pub mod vring;

#[doc(hidden)]
pub mod fuzzing_ring;

pub use config::Config;
pub use device::VhostDevice;

use pmd_core::devargs::VdevSpec;
use pmd_core::error::Result;
use pmd_core::ethdev::{Device, Driver, ExclusiveResource};

/// The driver name, and the vdev prefix it claims.
pub const DRIVER_NAME: &str = "net_vhost";

/// The vhost-user back-end driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct VhostDriver;

/// The driver instance to register.
pub static DRIVER: VhostDriver = VhostDriver;

impl Driver for VhostDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    fn description(&self) -> &'static str {
        "vhost-user back end (serves VMs and virtio-user front ends): iface=PATH[,queues=1]\
         [,client=0|1][,tso=0|1][,mac=..]"
    }

    fn probe(&self, vdev: &VdevSpec) -> Result<Box<dyn Device>> {
        Ok(Box::new(VhostDevice::open(vdev)?))
    }

    /// One back-end port per socket (a front end connects to one back end). A front end
    /// (`net_virtio_user`) on the same socket in the same process is a loopback, allowed.
    fn exclusive_resource(&self, vdev: &VdevSpec) -> Option<ExclusiveResource> {
        let cfg = Config::from_vdev(vdev).ok()?;
        Some(ExclusiveResource {
            what: format!(
                "vhost-user back-end socket {}",
                ExclusiveResource::path_name(&cfg.iface)
            ),
            fix: "give each net_vhost port its own iface=".into(),
        })
    }
}
