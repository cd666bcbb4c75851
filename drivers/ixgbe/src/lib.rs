//! Intel 82599 / X540 / X550 (ixgbe) poll-mode driver.
//!
//! [`DRIVER`] claims the chips' PCI functions; [`probe`] takes an opened one (VFIO, UIO,
//! or an in-process model), resets and initialises it following the 82599 datasheet
//! (section 4.6.3), and returns an ethdev device ([`Ixgbe`]). Receive and transmit use the advanced descriptor rings of `pmd-intel`; with
//! more than one rx queue, RSS spreads flows over them.

mod dev;
pub mod regs;
pub mod vf;

pub use dev::{Ixgbe, X82599};
pub use pmd_intel::LINK_WAIT;
pub use vf::{IxgbeVf, X82599Vf, VF_DRIVER};

use pmd_core::ethdev::PciId;
use pmd_core::pci::PciBackend;
use pmd_core::Result;
use pmd_intel::{intel_id as intel, IntelDriver};
use std::sync::Arc;

/// Driver name (as DPDK's: `net_ixgbe`).
pub const DRIVER_NAME: &str = "net_ixgbe";

/// Devices the driver claims: 82599 (KX4, KX4 mezzanine, KR, CX4, SFP variants, T3 LOM,
/// backplane FCoE, 82599EN SFP), X540 (T, T1) and X550 (T, T1).
pub const PCI_IDS: &[PciId] = &[
    intel(0x10F7), // 82599 KX4
    intel(0x1514), // 82599 KX4 mezzanine
    intel(0x1517), // 82599 KR
    intel(0x10F9), // 82599 CX4
    intel(0x10FB), // 82599 SFP
    intel(0x1507), // 82599 SFP EM
    intel(0x154D), // 82599 SFP SF2
    intel(0x1557), // 82599EN SFP
    intel(0x10FC), // 82599 XAUI LOM
    intel(0x151C), // 82599 T3 LOM
    intel(0x152A), // 82599 backplane FCoE
    intel(0x1529), // 82599 SFP FCoE
    intel(0x1528), // X540-T
    intel(0x1560), // X540-T1
    intel(0x1563), // X550-T
    intel(0x15D1), // X550-T1
];

/// The driver instance to list in an application's driver table.
pub static DRIVER: IntelDriver<X82599> = IntelDriver::new();

/// Resets and initialises the device behind `backend` (any backend: VFIO, UIO or a model).
pub fn probe(backend: Arc<dyn PciBackend>, name: &str) -> Result<Ixgbe> {
    Ixgbe::init(backend, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmd_core::devargs::VdevSpec;
    use pmd_core::ethdev::Driver;

    #[test]
    fn the_driver_claims_intel_10_gbe_functions_and_refuses_a_vdev() {
        assert_eq!(DRIVER.name(), "net_ixgbe");
        assert!(DRIVER.pci_ids().contains(&PciId {
            vendor: 0x8086,
            device: 0x10FB
        }));
        let vdev = VdevSpec {
            name: "net_ixgbe0".into(),
            args: Vec::new(),
        };
        let Err(e) = DRIVER.probe(&vdev) else {
            panic!("a vdev was accepted");
        };
        let e = e.to_string();
        assert!(
            e.contains("net_ixgbe0 is a PCI driver: pass the device with -a <PCI address>"),
            "{e}"
        );
    }
}
