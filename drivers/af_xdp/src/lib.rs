//! `net_af_xdp`: a poll-mode driver for any Linux network interface through `AF_XDP`
//! sockets, with DPDK's argument names.
//!
//! ```text
//! --vdev net_af_xdp0,iface=eth0[,start_queue=0][,queue_count=1][,mode=auto|copy|zerocopy]
//!                   [,xdp_mode=auto|native|generic][,frame_size=2048|4096][,force_copy=0|1]
//!                   [,busy_budget=N]
//! ```
//!
//! | argument      | default | meaning                                                          |
//! |---------------|---------|------------------------------------------------------------------|
//! | `iface`       | —       | interface to attach to (required; see `ip link`)                 |
//! | `start_queue` | 0       | first interface queue (channel) used                             |
//! | `queue_count` | 1       | queues used, 1..=64: queue `i` of the port is `start_queue + i` |
//! | `mode`        | auto    | socket bind mode: `zerocopy` (`XDP_ZEROCOPY`), `copy` (`XDP_COPY`), `auto` (zero-copy where the driver supports it, else copy) |
//! | `force_copy`  | 0       | DPDK's spelling of `mode=copy`                                   |
//! | `xdp_mode`    | auto    | where the XDP program runs: `native` (driver), `generic` (skb), `auto` (native, else generic) |
//! | `frame_size`  | 2048    | UMEM frame size; rx packets up to `frame_size - 256` bytes        |
//! | `busy_budget` | 64      | preferred busy polling (Linux 5.11+): each rx burst runs the queue's NAPI poll with this budget (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL` 20 µs, `SO_BUSY_POLL_BUDGET`); 0 turns it off. As in DPDK, set the interface's `napi_defer_hard_irqs` (2) and `gro_flush_timeout` (200000) for it to take over from interrupts |
//!
//! **Per queue**, one XDP socket with its own UMEM: a pmd-core memory segment (hugepages
//! after EAL initialisation) of `2 x ring size` frames, registered with `XDP_UMEM_REG`;
//! the first half circulates through the fill and rx rings, the second half through the
//! tx and completion rings. The four rings are sized at the first queue setup of that
//! index (`nb_desc`, rounded up to a power of two, 64..=8192, default 2048) and mapped at
//! the offsets `XDP_MMAP_OFFSETS` reports. Sockets bind with `XDP_USE_NEED_WAKEUP`, so the
//! data path makes a `sendto`/`recvfrom` only when the kernel flags a ring for it, except
//! that with preferred busy polling (`busy_budget`, on by default as in DPDK) each rx burst
//! makes one `recvfrom` that runs the queue's NAPI poll.
//! Received frames are copied into mbufs from the queue's mempool and their UMEM frames go
//! back to the fill ring in bulk; transmitted mbufs are copied into free UMEM frames, and
//! completed frames are reclaimed in bulk. Copying keeps mbufs independent of the UMEM
//! (no mbuf ever aliases memory the kernel may write).
//!
//! **The XDP program** (below) redirects each queue's
//! packets to its socket through an `XSKMAP`: `bpf_redirect_map(&xsks,
//! ctx->rx_queue_index, XDP_PASS)`, assembled by hand (no clang), loaded with `bpf(2)` at
//! probe and attached with a bpf link (`BPF_LINK_CREATE`, attach type `BPF_XDP`) at start,
//! in native mode when the driver supports it and generic mode otherwise. Stop, close
//! and drop detach it, and since the link lives only as long as its fd, so does a crash.
//! Queues of the interface that no rx queue serves keep going to the kernel stack.
//!
//! Needs Linux 5.9+ (bpf links for XDP), `CONFIG_XDP_SOCKETS`, and root (CAP_NET_RAW,
//! CAP_BPF, CAP_NET_ADMIN). The zero-copy flag, attach mode, wake-up counts and the
//! kernel's per-socket drop counters are in the device's xstats.
//!
//! # The XDP program
//!
//! Five instructions (six slots), documented one by one in `prog.rs`:
//!
//! ```text
//! r2 = *(u32 *)(r1 + 16)      ; ctx->rx_queue_index
//! r1 = <xskmap fd> ll         ; BPF_PSEUDO_MAP_FD
//! r3 = 2                      ; XDP_PASS: the action if no socket sits at that index
//! call 51                     ; bpf_redirect_map
//! exit
//! ```

mod config;
mod device;
#[doc(hidden)]
pub mod fuzzing;
mod prog;
mod ring;
mod rxtx;
mod sys;
mod uapi;
mod umem;
mod xsk;

pub use device::AfXdpDevice;
pub use rxtx::{AfXdpRxQueue, AfXdpTxQueue};

use pmd_core::devargs::VdevSpec;
use pmd_core::error::Result;
use pmd_core::ethdev::{Device, Driver, ExclusiveResource};

/// The driver name, and the vdev prefix it claims.
pub const DRIVER_NAME: &str = "net_af_xdp";

/// The `AF_XDP` driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct AfXdpDriver;

/// The driver instance to register.
pub static DRIVER: AfXdpDriver = AfXdpDriver;

impl Driver for AfXdpDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    fn description(&self) -> &'static str {
        "AF_XDP sockets on a Linux interface: iface=NAME[,start_queue=0][,queue_count=1]\
         [,mode=auto|copy|zerocopy][,xdp_mode=auto|native|generic][,frame_size=2048|4096]"
    }

    fn probe(&self, vdev: &VdevSpec) -> Result<Box<dyn Device>> {
        Ok(Box::new(AfXdpDevice::open(vdev)?))
    }

    /// The interface: each port attaches its own XDP program, and an interface takes one.
    fn exclusive_resource(&self, vdev: &VdevSpec) -> Option<ExclusiveResource> {
        let cfg = config::Config::from_vdev(vdev).ok()?;
        Some(ExclusiveResource::interface(&cfg.iface))
    }
}
