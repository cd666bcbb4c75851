//! `net_pcap`: a port whose wire is pcap files, with DPDK net_pcap's arguments. (Recording
//! any port's traffic into a pcap file is `pmd_capture::Capture`, whose file writer this
//! driver shares.)
//!
//! ```text
//! --vdev net_pcap0[,rx_pcap=in.pcap][,tx_pcap=out.pcap][,infinite_rx=1]
//! ```
//!
//! | argument      | meaning                                                              |
//! |---------------|----------------------------------------------------------------------|
//! | `rx_pcap`     | a pcap or pcapng file (Ethernet link type) replayed on rx              |
//! | `tx_pcap`     | a pcap file created (truncated) and written with what is sent        |
//! | `infinite_rx` | 1: replay the rx files in a loop (default 0: the port goes idle at the end) |
//!
//! Rx files are loaded into memory when the device is probed, so a damaged file is
//! reported at once and rx does no file I/O: each burst copies the next frames into mbufs,
//! as fast as the application polls. Each port start replays from the beginning. A tx
//! queue appends one pcap record per packet (one timestamp per burst) into a 1 MiB write
//! buffer; stop, close and a tx flush (`TxQueueHandle::tx_flush`) write the buffer out, so
//! the file is complete once the port is stopped. Without a `tx_pcap`, transmitted packets
//! are dropped and counted as sent; without an `rx_pcap`, nothing is received.
//!
//! Frames larger than one mbuf's data room (2048 bytes by default) are replayed as mbuf
//! chains when the rx queue has the `SCATTER` offload, and otherwise skipped and counted as
//! rx errors. Transmitted chains are recorded whole (`MULTI_SEGS`); records hold at most
//! [`SNAPLEN`] bytes (longer packets are truncated, keeping their original length). Byte
//! counters count whole packets.

mod config;
mod device;
mod file;
#[doc(hidden)]
pub mod fuzzing;
mod rxtx;

pub use device::PcapDevice;
pub use file::{Trace, MAX_RECORD};
pub use pmd_capture::SNAPLEN;
pub use rxtx::{PcapRxQueue, PcapTxQueue};

use pmd_core::devargs::VdevSpec;
use pmd_core::error::Result;
use pmd_core::ethdev::{Device, Driver};

/// The driver name, and the vdev prefix it claims.
pub const DRIVER_NAME: &str = "net_pcap";

/// The pcap driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct PcapDriver;

/// The driver instance to register.
pub static DRIVER: PcapDriver = PcapDriver;

impl Driver for PcapDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    fn description(&self) -> &'static str {
        "pcap files as a port: [rx_pcap=FILE (replay)][,tx_pcap=FILE (record)]\
         [,infinite_rx=0|1]"
    }

    fn probe(&self, vdev: &VdevSpec) -> Result<Box<dyn Device>> {
        Ok(Box::new(PcapDevice::open(vdev)?))
    }
}
