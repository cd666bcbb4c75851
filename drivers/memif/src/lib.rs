//! `net_memif`: the shared memory packet interface (memif protocol 2.0, as libmemif, VPP
//! and DPDK's `net_memif` speak it), in both roles.
//!
//! ```text
//! --vdev net_memif0[,role=server|client][,id=N][,socket=/path][,socket-abstract=yes|no]
//!                  [,rsize=LOG2][,bsize=N][,mac=xx:xx:xx:xx:xx:xx][,secret=S][,zero-copy=no|yes]
//! ```
//!
//! | argument          | default           | meaning                                               |
//! |-------------------|-------------------|-------------------------------------------------------|
//! | `role`            | `client`          | `server` listens; `client` connects and owns the memory (`master`/`slave` accepted) |
//! | `id`              | 0                 | interface id; the server accepts only a client asking for its id |
//! | `socket`          | `/run/memif.sock` | control socket                                        |
//! | `socket-abstract` | `yes`             | the socket name is in the abstract namespace (DPDK's default) |
//! | `rsize`           | 10                | ring size, log2 (1..=14); the client asks, the server caps at 14 |
//! | `bsize`           | 2048              | packet buffer size (client); longer packets span several descriptors |
//! | `mac`             | `02:fe:..`        | the port's MAC address                                |
//! | `secret`          | none              | shared secret checked in INIT (1..=23 bytes)          |
//! | `zero-copy`       | `no`              | client: `yes` shares the pools' packet buffers with the server (see below) |
//!
//! Queues: the port's rx and tx queue counts (`configure`) are the rings this side
//! offers; the client ends up with `min(its count, the server's)` rings each way (HELLO
//! carries the server's limits, the client's ADD_RINGs the result). Extra queues stay
//! idle.
//!
//! Life cycle: a server binds its socket at probe; `start` launches a control thread
//! that accepts one client at a time (a server) or connects and re-connects every 200 ms
//! (a client). The link is up from CONNECTED/CONNECT until DISCONNECT or end-of-file;
//! then the server listens again and the client retries. `stop` sends DISCONNECT.
//!
//! Safety model: the peer is untrusted. Control messages must be exactly 128 bytes with
//! a known type and at most one descriptor; every field is checked against the state and
//! our limits (wrong version, id, secret, region or ring index, ring outside its region,
//! ring too large, region fd that is not a sealed memfd, ring fd that is not an eventfd,
//! ...), and a failure sends DISCONNECT with the reason and counts `ctrl_rejected` /
//! `ctrl_malformed_msgs`. On the data path every peer counter and descriptor is checked
//! (see `rxtx.rs`); shared memory is only touched through atomics, volatile accesses and
//! raw copies within checked bounds.
//!
//! Copy mode (the default): the client's buffers live in its own region, the server
//! copies into/out of the client's buffers; mbufs never enter shared memory, so a
//! reconnect cannot leak or double-free them.
//!
//! Zero-copy (`zero-copy=yes`, a client; DPDK's devarg): the probe makes the pools created
//! afterwards keep their data rooms in a segment of their own
//! ([`pmd_core::mempool::keep_data_apart`]), and at connect region 0 (rings, and one copy
//! buffer per descriptor) is followed by one region per such pool, that data segment
//! shared in place. The server (any memif server: it cannot tell) then reads the packets
//! we send from our mbufs and writes the packets we receive into them:
//! - transmit: each segment of a packet becomes a descriptor naming its region and
//!   offset; the mbuf is held until the server's `tail` passes it. A segment in no
//!   shared pool (a pool made before the probe) is copied into the slot's buffer of
//!   region 0 instead (`tx_qN_zc_copied`).
//! - receive: the ring is offered empty mbufs of the rx queue's pool, and a received
//!   packet is that mbuf, with the length the server wrote (bounded by what was
//!   offered; the descriptor's region and offset are never read back). The ring's own
//!   buffers are offered at connect, as in copy mode, so that the server can send before
//!   our first poll: what arrives in those is copied out, and each slot is offered an
//!   mbuf in its place. A queue whose pool is not shared receives by copying, as in copy
//!   mode.
//! - the pool must hold what the rings keep: ring-size mbufs per receive ring, and up
//!   to ring-size per transmit ring until the server passes them (given back at the
//!   next send or `flush`).
//!
//! What the server is trusted with: the bytes of every buffer of the shared pools (every
//! pool made after the probe, whichever port uses it), at any time, as a NIC is with the
//! buffers it DMAs into (DPDK shares all of its hugepage memory). Packet bytes the
//! application holds as `&[u8]` may be written by a misbehaving server meanwhile, and an
//! mbuf offered for receive goes back to its pool when the connection ends, whether or
//! not the server keeps writing into it. The buffer headers, with the lengths and
//! pointers this process relies on, stay in memory the server never maps. Copy mode
//! trusts the server with nothing.

pub mod config;
pub mod control;
pub mod device;
pub mod handshake;
pub mod proto;
pub mod ring;
pub mod rxtx;
pub mod session;
pub mod shm;
pub mod sock;
mod sys;

pub use config::{Config, Role};
pub use device::MemifDevice;

use pmd_core::devargs::VdevSpec;
use pmd_core::error::Result;
use pmd_core::ethdev::{Device, Driver, ExclusiveResource};
use sock::SockAddr;

/// The driver name, and the vdev prefix it claims.
pub const DRIVER_NAME: &str = "net_memif";

/// The memif driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemifDriver;

/// The driver instance to register.
pub static DRIVER: MemifDriver = MemifDriver;

impl Driver for MemifDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    fn description(&self) -> &'static str {
        "memif 2.0 shared memory interface (libmemif/VPP/DPDK compatible): role=server|client\
         [,id=0][,socket=/run/memif.sock][,socket-abstract=yes|no][,rsize=10][,bsize=2048]\
         [,mac=..][,secret=..][,zero-copy=no|yes]"
    }

    fn probe(&self, vdev: &VdevSpec) -> Result<Box<dyn Device>> {
        Ok(Box::new(MemifDevice::open(vdev)?))
    }

    /// A server port binds its socket (one listener, so one server port, per socket); a
    /// client port takes its id on its socket (a server accepts one client per id).
    /// Different ids on one socket, and a server and a client on one socket and id (a
    /// loopback), are fine.
    fn exclusive_resource(&self, vdev: &VdevSpec) -> Option<ExclusiveResource> {
        let cfg = Config::from_vdev(vdev).ok()?;
        let socket = match &cfg.socket {
            SockAddr::Path(p) => ExclusiveResource::path_name(p),
            abstract_name => abstract_name.to_string(),
        };
        Some(match cfg.role {
            Role::Server => ExclusiveResource {
                what: format!("memif server socket {socket}"),
                fix: "give each server port its own socket".into(),
            },
            Role::Client => ExclusiveResource {
                what: format!("memif socket {socket} id {}", cfg.id),
                fix: "give each client port on one socket its own id".into(),
            },
        })
    }
}
