//! `pmd-core`: the environment abstraction layer (EAL) of a poll-mode driver framework.
//!
//! Layering follows the classic userspace-networking split, top down:
//! - [`eal`]: initialisation and teardown; it alone reads [`options`], the `argv` layer,
//!   and hands each layer below the values it needs (the IOVA mode to [`memory`], lcore
//!   lists to [`lcore`], [`devargs::VdevSpec`]s to drivers);
//! - [`devargs`]: virtual device specifications and the typed parser drivers read their
//!   arguments with;
//! - [`memory`]: hugepage (or ordinary) memory segments that know their IOVA;
//! - [`mempool`] and [`mbuf`]: fixed-size packet buffers with per-lcore caches, owned
//!   buffers that return to their pool on drop, and bursts of them ([`mbuf::PktBatch`]);
//! - [`ring`]: bounded lock-free rings (SP/SC and MP/MC, bulk and burst), on atomics from
//!   `sync`, which are loom's under `--cfg loom` so the model checker runs the real code;
//! - [`lcore`]: pinned worker threads, the current lcore id and a cooperative stop flag;
//! - [`ethdev`]: the driver traits, ports, owned rx/tx queue handles and statistics;
//! - [`intr`]: rx interrupts and the adaptive loop that sleeps while no traffic comes;
//! - [`numarg`]: the one check of numbers typed on command lines, for apps and tools.
//!
//! Drivers (PMDs) live in their own crates and depend on this one, never the reverse.

pub mod copy;
pub mod csum;
pub mod devargs;
pub mod eal;
pub mod error;
pub mod ethdev;
#[doc(hidden)]
pub mod fuzzing;
pub mod intr;
pub mod lcore;
pub mod mbuf;
pub mod memory;
pub mod mempool;
pub mod netif;
pub mod numarg;
pub mod offload;
pub mod options;
pub mod pci;
pub mod pdump;
pub mod prefetch;
pub mod qsbr;
pub mod ring;
pub mod rundir;
mod sync;
pub mod telemetry;
pub mod tsc;
pub mod unix;
pub mod vnet;

pub use devargs::VdevSpec;
pub use eal::Eal;
pub use error::{Error, Result};
pub use mbuf::{Mbuf, PktBatch};
pub use mempool::Mempool;
pub use pci::PciAddr;
