//! The two reset steps the 82576 (datasheet 4.5.x) and the 82599 (4.6.3) take the same
//! way: let outstanding DMA finish, then a device reset that clears itself. What comes
//! around them (interrupt masks, EEPROM and DMA-init waits) is the chip's.

use crate::bar::Bar;
use crate::regs::{CTRL, CTRL_MASTER_DISABLE, CTRL_RST, STATUS, STATUS_GIO_MASTER_ENABLE};
use pmd_core::Result;
use std::time::Duration;

/// Sets CTRL's master disable and waits until STATUS reports no DMA outstanding. Returns
/// false if that did not happen within `timeout`; the datasheets allow resetting anyway.
pub fn master_disable(bar: &Bar, timeout: Duration) -> bool {
    bar.set_bits(CTRL, CTRL_MASTER_DISABLE);
    bar.wait("PCIe master disable", timeout, |b| {
        b.rd(STATUS) & STATUS_GIO_MASTER_ENABLE == 0
    })
    .is_ok()
}

/// Sets CTRL.RST (with the chip's `also` bits), waits up to `timeout` for it to clear,
/// then 1 ms more before registers are touched. The error says
/// "device reset (CTRL.RST did not clear; `hint`)".
pub fn reset_device(bar: &Bar, also: u32, hint: &str, timeout: Duration) -> Result<()> {
    bar.set_bits(CTRL, CTRL_RST | also);
    bar.wait(
        &format!("device reset (CTRL.RST did not clear; {hint})"),
        timeout,
        |b| b.rd(CTRL) & CTRL_RST == 0,
    )?;
    std::thread::sleep(Duration::from_millis(1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmd_core::pci::mmio::region_over_memory;

    #[test]
    fn a_reset_that_never_clears_says_what_to_try() {
        // Plain memory: RST stays set, the master enable status stays as written.
        let bar = Bar::new(region_over_memory(0x20), "t", "nic0");
        bar.wr(STATUS, STATUS_GIO_MASTER_ENABLE);
        assert!(!master_disable(&bar, Duration::from_millis(2)));
        assert_ne!(bar.rd(CTRL) & CTRL_MASTER_DISABLE, 0);
        bar.wr(STATUS, 0);
        assert!(master_disable(&bar, Duration::from_millis(2)));
        let e = reset_device(
            &bar,
            1 << 3,
            "try a PCI function reset",
            Duration::from_millis(2),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("nic0: device reset (CTRL.RST did not clear; try a PCI function reset)"),
            "{e}"
        );
        assert_eq!(bar.rd(CTRL), CTRL_MASTER_DISABLE | CTRL_RST | 1 << 3);
    }
}
