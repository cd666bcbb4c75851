//! `pmd-core`: the environment abstraction layer (EAL) of a poll-mode driver framework.
//!
//! Layering follows the classic userspace-networking split:
//! - [`eal`]: options, initialisation, lcore launch and teardown;
//! - [`memory`]: hugepage (or ordinary) memory segments that know their IOVA;
//! - [`mempool`] and [`mbuf`]: fixed-size packet buffers with per-lcore caches, owned
//!   buffers that return to their pool on drop, and bursts of them ([`mbuf::PktBatch`]);
//! - [`ring`]: bounded lock-free rings (SP/SC and MP/MC, bulk and burst);
//! - [`lcore`]: pinned worker threads, the current lcore id and a cooperative stop flag;
//! - [`ethdev`]: the driver traits, ports, owned rx/tx queue handles and statistics.
//!
//! Drivers (PMDs) live in their own crates and depend on this one, never the reverse.

mod copy;
pub mod csum;
pub mod eal;
pub mod error;
pub mod ethdev;
pub mod lcore;
pub mod mbuf;
pub mod memory;
pub mod mempool;
pub mod netif;
pub mod offload;
pub mod options;
pub mod pci;
pub mod ring;
pub mod tsc;
pub mod vnet;

pub use eal::Eal;
pub use error::{Error, Result};
pub use mbuf::{Mbuf, PktBatch};
pub use mempool::Mempool;
pub use pci::PciAddr;
