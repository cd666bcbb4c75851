//! `net_tap`: a poll-mode driver for a Linux tap interface, the kernel's virtual Ethernet
//! device backed by a file descriptor (`/dev/net/tun`). What the port transmits, the kernel
//! receives on the interface; what the kernel sends out of the interface, the port
//! receives. DPDK net_tap's arguments:
//!
//! ```text
//! --vdev net_tap0[,iface=dtap0][,mac=xx:xx:xx:xx:xx:xx|mac=fixed][,persist=1][,gso=1]
//! ```
//!
//! | argument  | default      | meaning                                                       |
//! |-----------|--------------|---------------------------------------------------------------|
//! | `iface`   | `dtap<N>`    | interface name (`N` = the device number); `%d` lets the kernel pick |
//! | `mac`     | kernel's     | MAC address given to the interface; `fixed` = `00:64:74:61:70:<'0'+N>` |
//! | `persist` | 0            | 1: keep an interface this device created after it closes      |
//! | `gso`     | 0            | 1: vnet headers and kernel TSO as if TCP_LRO and TCP_TSO were configured |
//!
//! If no interface of that name exists, one is created (`IFF_TAP | IFF_NO_PI`,
//! multi-queue) and deleted when the device and its queues are closed, unless `persist=1`.
//! An existing tap is attached to and never deleted; it keeps its mode (a tap created
//! without `multi_queue` allows one rx queue).
//!
//! Frames larger than one mbuf: with the `SCATTER` rx offload they arrive as chains (one
//! `readv` into the head buffer and spare segments kept ready, so small frames cost no more
//! than before); without it they are dropped and counted as rx errors (one overflow byte
//! after the buffers tells them apart: the tap returns the bytes copied, not the frame's
//! length, so they are never delivered cut short). Chains are sent
//! whole with one `writev` (`MULTI_SEGS`, at most [`TX_MAX_SEGS`] segments). The port's MTU
//! is the kernel interface's (`SIOCGIFMTU`/`SIOCSIFMTU`, [`MIN_MTU`]..=[`MAX_MTU`]).
//!
//! Offloads (`IFF_VNET_HDR` + `TUNSETOFFLOAD`, only while an offload that needs them is
//! configured, so the default path is unchanged): every frame carries a virtio-net header
//! ([`pmd_core::vnet`], checked as untrusted input, each refusal an `rx_vnet_err_*` xstat).
//! With `TCP_LRO` the kernel's TSO super-frames (up to 64 KiB) arrive whole as `RX_LRO`
//! chains; without it they are segmented in software; partial checksums are completed.
//! `TX_TCP_SEG` (or a forwarded `RX_LRO` packet on a queue with `TCP_TSO`) goes out as a
//! GSO frame the kernel segments; `TX_TCP_CKSUM`/`TX_UDP_CKSUM` as `NEEDS_CSUM`.
//!
//! Each rx queue has its own fd (`IFF_MULTI_QUEUE`: the kernel spreads flows over them);
//! tx queue `i` writes on fd `i % rx queues`. All fds are non-blocking. Receive is one
//! `readv` per frame until `EAGAIN` or the burst is full; transmit is one `write` per frame:
//! a tap has no batch interface, so each packet costs one system call each way. Nothing is
//! allocated per packet (mbufs come from the pool in bulk).
//!
//! Start brings the interface up (stop takes it down again if start raised it); the link
//! is up while the interface is up and running. The port's MAC address is the interface's;
//! promiscuous mode is the interface's `IFF_PROMISC` flag. Creating or attaching needs
//! `CAP_NET_ADMIN`.

mod config;
mod device;
mod rxtx;
mod sys;

pub use device::TapDevice;
pub use rxtx::{TapRxQueue, TapTxQueue};

use pmd_core::devargs::VdevSpec;
use pmd_core::error::Result;
use pmd_core::ethdev::{Device, Driver, ExclusiveResource};

/// The driver name, and the vdev prefix it claims.
pub const DRIVER_NAME: &str = "net_tap";

/// Most queues per direction (DPDK's `RTE_PMD_TAP_MAX_QUEUES`).
pub const MAX_QUEUES: u16 = 16;

/// Largest MTU a tap takes (the kernel's 65535-byte frame limit less the Ethernet header).
pub const MAX_MTU: u16 = 65_521;

/// Smallest MTU a tap takes (IPv4's minimum, as the kernel's tun driver).
pub const MIN_MTU: u16 = 68;

/// Most segments of one transmitted chain: one `writev` takes at most the kernel's
/// `UIO_MAXIOV` buffers. Longer chains are dropped and counted as tx errors.
pub const TX_MAX_SEGS: u16 = 1024;

/// The tap driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct TapDriver;

/// The driver instance to register.
pub static DRIVER: TapDriver = TapDriver;

impl Driver for TapDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    fn description(&self) -> &'static str {
        "Linux tap interface (/dev/net/tun), created or attached: [iface=dtapN]\
         [,mac=xx:xx:xx:xx:xx:xx|fixed][,persist=0|1][,gso=0|1]"
    }

    fn probe(&self, vdev: &VdevSpec) -> Result<Box<dyn Device>> {
        Ok(Box::new(TapDevice::open(vdev)?))
    }

    /// The interface created or attached to (given or `dtapN`); a name template with
    /// `%d` is none, the kernel picks a new interface for each port.
    fn exclusive_resource(&self, vdev: &VdevSpec) -> Option<ExclusiveResource> {
        let cfg = config::Config::from_vdev(vdev).ok()?;
        (!cfg.iface.contains("%d")).then(|| ExclusiveResource::interface(&cfg.iface))
    }
}
