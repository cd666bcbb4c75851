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
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod mem;
pub mod proto;
pub mod split;
pub mod vring;

#[doc(hidden)]
pub mod fuzzing_ring;

pub use config::Config;

/// The driver name, and the vdev prefix it claims.
pub const DRIVER_NAME: &str = "net_vhost";
