//! Intel 82576 (igb) poll-mode driver (QEMU emulates this chip as `-device igb`).
//!
//! [`probe`] takes an opened PCI function (VFIO, UIO, or an in-process model), resets and
//! initialises it following the 82576 datasheet (section 4.5), and returns an ethdev
//! [`Device`]. Receive and transmit use the advanced descriptor rings of `pmd-intel`; with
//! more than one rx queue, RSS spreads flows over them.

mod dev;
pub mod regs;

pub use dev::{Igb, I82576};
pub use pmd_intel::LINK_WAIT;

use pmd_core::ethdev::{Device, Driver, PciId};
use pmd_core::options::VdevSpec;
use pmd_core::pci::PciBackend;
use pmd_core::{Error, Result};
use std::sync::Arc;

/// Driver name (as DPDK's: `net_e1000_igb`).
pub const DRIVER_NAME: &str = "net_e1000_igb";

const fn intel(device: u16) -> PciId {
    PciId {
        vendor: 0x8086,
        device,
    }
}

/// Devices the driver claims: the 82576 family (copper, fiber, SerDes, quad copper,
/// ET2, NS variants).
pub const PCI_IDS: &[PciId] = &[
    intel(0x10C9), // 82576 (QEMU's igb)
    intel(0x10E6), // 82576 fiber
    intel(0x10E7), // 82576 SerDes
    intel(0x10E8), // 82576 quad copper
    intel(0x1526), // 82576 quad copper ET2
    intel(0x150A), // 82576 NS
    intel(0x1518), // 82576 NS SerDes
    intel(0x150D), // 82576 SerDes quad
];

/// The igb driver.
pub struct IgbDriver;

/// The driver instance to list in an application's driver table.
pub static DRIVER: IgbDriver = IgbDriver;

impl Driver for IgbDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    fn description(&self) -> &'static str {
        "Intel 82576 1 GbE, QEMU `-device igb` (PCI: bind with `hugepage-setup bind ADDR`, then -a ADDR)"
    }

    fn probe(&self, vdev: &VdevSpec) -> Result<Box<dyn Device>> {
        Err(Error::driver(
            DRIVER_NAME,
            format!(
                "{} is a PCI driver: pass the device with -a <PCI address>",
                vdev.name
            ),
        ))
    }

    fn pci_ids(&self) -> &'static [PciId] {
        PCI_IDS
    }

    fn probe_pci(&self, dev: Arc<dyn PciBackend>) -> Result<Box<dyn Device>> {
        let name = dev.addr().to_string();
        Ok(Box::new(probe(dev, &name)?))
    }
}

/// Resets and initialises the device behind `backend` (any backend: VFIO, UIO or a model).
pub fn probe(backend: Arc<dyn PciBackend>, name: &str) -> Result<Igb> {
    Igb::init(backend, name)
}
