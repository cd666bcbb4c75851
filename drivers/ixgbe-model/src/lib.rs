//! A behavioural model of the Intel 82599 10 GbE controller, so the ixgbe poll-mode
//! driver runs unmodified in-process, with no hardware.
//!
//! [`Model82599::new`] builds a device and its thread; [`Model82599::backend`] is the
//! [`pmd_core::pci::PciBackend`] the driver probes. The model follows the Intel 82599
//! 10 GbE Controller Datasheet for what the driver relies on: reset and EEPROM
//! auto-read (4.6.3), link bring-up through auto-negotiation (LINKS, AUTOC), interrupts
//! (7.3: cause, mask, auto-mask and auto-clear registers, IVAR, and MSI-X delivery to
//! eventfds through `PciBackend::enable_irqs`), L2 filtering (7.1.1.1), RSS with the Toeplitz hash and the
//! redirection table (7.1.2.8), advanced receive descriptors with write-back (7.1.6),
//! advanced transmit data and context descriptors with DD write-back (7.2.3) and their
//! offloads (checksums, TSO, VLAN insertion), jumbo frames up to 9728 bytes over several
//! receive descriptors, VLAN stripping (RXDCTL.VME), and the clear-on-read
//! statistics (8.2.3.23).
//!
//! The register map ([`regs`]) and the descriptor formats ([`desc`]) are the model's own,
//! written from the datasheet: the model does not depend on the driver it checks, so a
//! wrong offset or bit in the driver shows up as a device that does not do what the
//! driver meant. The `net_ixgbe_model` vdev that joins the two is `pmd-ixgbe-model-vdev`.
//!
//! All device memory access goes through the model's IOMMU ([`iommu`]): descriptor rings
//! and buffers must lie inside live memory segments, otherwise the access is refused,
//! counted as a DMA fault and the queue stops. Traffic comes from a [`Generator`] or
//! from [`Model82599::inject`]; transmitted frames are counted, captured and handed to
//! an optional sink. [`Faults`] make the device misbehave the way real ones do.
//!
//! SR-IOV: with `ModelConf::vfs` = N (at most [`hw::MAX_VFS`]), the model has N virtual
//! functions, each a PCI function of its own from [`Model82599::vf_backend`] (82599 VF,
//! device 0x10ED, a 16 KiB BAR 0 laid out as the datasheet's VF register window,
//! [`vfregs`]), so a VF driver runs against it unchanged. VF n's two queue pairs are the
//! model queues [`hw::vf_queue`]`(n, 0..2)` (48 + 2n and 49 + 2n), served by the same
//! receive and transmit engines through the same IOMMU; its statistics are free-running.
//! The model also plays the PF's driver: it answers each VF's mailbox as Linux's ixgbe
//! PF does (RESET with the administrator's MAC address from `ModelConf::vf_macs`, API
//! negotiation up to 1.3, queue counts, frame size, multicast hashes, VLANs, broadcast
//! and multicast modes), keeps the link up for the VFs, and routes frames: unicast to a
//! VF's address goes to that VF's queue 0 (once it is clear to send), broadcast and the
//! multicast a VF takes go to it as well as to the PF, and VF transmit goes to the wire.
//! [`MbxFault`] (a silent, refusing or garbling PF) and [`Model82599::pf_reset`] make
//! that PF misbehave; [`VfStats`] counts each VF's traffic and mailbox.

mod backend;
pub mod conf;
mod config;
pub mod desc;
mod device;
mod engine;
pub mod frame;
mod gen;
pub mod hw;
pub mod iommu;
mod irq;
mod model;
mod offload;
mod packet;
mod pfmbx;
mod regfile;
pub mod regs;
pub mod rss;
mod rx;
pub mod stats;
mod timers;
mod tx;
mod vf;
pub mod vfregs;
mod vfrx;
mod wire;

pub use conf::{
    conf_for_instance, conf_from_args, default_vf_mac, instance_mac, Faults, Generator, MacAddr,
    MbxFault, ModelConf,
};
pub use iommu::DmaFault;
pub use model::Model82599;
pub use pfmbx::VfInfo;
pub use rx::RxOutcome;
pub use stats::{ModelStats, VfStats};
pub use wire::Sink;

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, carrying on after a panic elsewhere poisoned it (the model's state stays
/// consistent at every unlock).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read-locks `l` (ignoring poison, as [`lock`]).
pub(crate) fn lock_read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Write-locks `l` (ignoring poison, as [`lock`]).
pub(crate) fn lock_write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
