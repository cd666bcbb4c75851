//! The one explicit list of drivers that applications hand to the EAL.
//!
//! ```no_run
//! let args: Vec<String> = std::env::args().collect();
//! let (eal, app_args) = pmd_core::Eal::from_args(&args, pmd_drivers::ALL).unwrap();
//! ```

use pmd_core::ethdev::Driver;

/// Every driver in this build, in the order `--help` lists them.
pub static ALL: &[&dyn Driver] = &[
    &pmd_null::DRIVER,
    &pmd_ring::DRIVER,
    &pmd_af_packet::DRIVER,
    &pmd_af_xdp::DRIVER,
    &pmd_virtio::DRIVER,
    &pmd_memif::DRIVER,
    &pmd_ixgbe::DRIVER,
    &pmd_ixgbe::VF_DRIVER,
    &pmd_igb::DRIVER,
    &pmd_igb::VF_DRIVER,
    &pmd_ixgbe_model_vdev::DRIVER,
    &pmd_tap::DRIVER,
    &pmd_pcap::DRIVER,
    &pmd_vhost::DRIVER,
];

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = super::ALL.iter().map(|d| d.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), super::ALL.len());
    }
}
