//! Live packet capture of a running app (DPDK's pdump, for `pmd-dumpcap`).
//!
//! The app serves a unix socket beside its telemetry socket,
//! `<runtime dir>/dpdk/<file-prefix>/pmd_pdump` (owner-only, on whenever telemetry is).
//! A capture tool connects and sends one JSON request:
//!
//! - `{"cmd": "list"}`: the app answers `{"ports": [{"id", "name", "rx_queues",
//!   "tx_queues", "capturing"}, ...]}` and closes;
//! - `{"cmd": "capture", "port": "0" | "net_null0", "rx": bool, "tx": bool, "snaplen": N,
//!   "ring_size": BYTES, "filter": [[code, jt, jf, k], ...] | null}`: the app creates a
//!   sealed memfd with one [`ring`] per captured queue (rx queues first, then tx),
//!   answers `{"capture": {"port", "name", "rx_queues", "tx_queues", "ring_size",
//!   "snaplen"}}` with the memfd attached, and from the next burst on each queue's lcore
//!   copies what passes the filter into its ring. The capture ends when the tool closes
//!   the connection (or sends anything more), whether it stopped or was killed.
//!
//! An error is `{"error": "what to do"}`, then the app closes the connection.
//!
//! On the data path, a port that nobody captures costs a queue one relaxed load per
//! non-empty burst. A capture costs the copy, one clock read per burst and the filter;
//! a full ring drops the copy (counted in the ring), never the packet, and the port's
//! own counters do not change. Received packets are copied as `rx_burst` returns them;
//! sent ones before the PMD takes them, and only those it took are published.

mod bpf;
mod client;
pub mod ring;
mod server;
mod tap;

pub use bpf::{Filter, FilterError, MAX_INSNS};
pub use client::{list_ports, start_capture, Capture, CaptureRequest, PdumpError, PortEntry};
pub use ring::{Record, RingCounters};
pub(crate) use server::PdumpServer;
pub(crate) use tap::QueueTap;
pub use tap::{now_ns, Dir, PortTap};

use std::path::PathBuf;

/// The socket's file name in the runtime directory.
pub const SOCKET_NAME: &str = "pmd_pdump";
/// Longest request, in bytes (a filter of a few hundred instructions fits).
pub const MAX_REQUEST: usize = 32 * 1024;
/// Capture tools connected at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Default data bytes of each queue's ring.
pub const DEFAULT_RING_SIZE: usize = 4 << 20;

/// Where the app running with `file_prefix` serves captures.
pub fn socket_path(file_prefix: &str) -> PathBuf {
    crate::rundir::runtime_dir(file_prefix).join(SOCKET_NAME)
}
