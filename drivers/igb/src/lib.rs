//! Intel 82576 (igb) poll-mode driver (QEMU emulates this chip as `-device igb`).
//!
//! [`DRIVER`] claims the 82576's PCI functions; [`probe`] takes an opened one (VFIO, UIO,
//! or an in-process model), resets and initialises it following the 82576 datasheet
//! (section 4.5), and returns an ethdev device ([`Igb`]). Receive and transmit use the
//! advanced descriptor rings of `pmd-intel`; with more than one rx queue, RSS spreads
//! flows over them.

mod dev;
pub mod regs;
pub mod vf;

pub use dev::{Igb, I82576};
pub use pmd_intel::LINK_WAIT;
pub use vf::{I82576Vf, IgbVf, VF_DRIVER};

use pmd_core::ethdev::PciId;
use pmd_core::pci::PciBackend;
use pmd_core::Result;
use pmd_intel::{intel_id as intel, IntelDriver};
use std::sync::Arc;

/// Driver name (as DPDK's: `net_e1000_igb`).
pub const DRIVER_NAME: &str = "net_e1000_igb";

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

/// The driver instance to list in an application's driver table.
pub static DRIVER: IntelDriver<I82576> = IntelDriver::new();

/// Resets and initialises the device behind `backend` (any backend: VFIO, UIO or a model).
pub fn probe(backend: Arc<dyn PciBackend>, name: &str) -> Result<Igb> {
    Igb::init(backend, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmd_core::ethdev::Driver;

    #[test]
    fn the_driver_claims_qemus_igb() {
        assert_eq!(DRIVER.name(), "net_e1000_igb");
        assert!(DRIVER.description().contains("-device igb"));
        assert!(DRIVER.pci_ids().contains(&PciId {
            vendor: 0x8086,
            device: 0x10C9
        }));
    }
}
