//! The 82576 specifics: reset and init (datasheet 4.5), link (CTRL.SLU, STATUS), receive
//! control and RSS, global enables, counters. Queues, start/stop and statistics are
//! `pmd_intel::IntelDevice`'s.

use crate::regs::*;
use crate::DRIVER_NAME;
use pmd_core::ethdev::{Link, MacAddr};
use pmd_core::Result;
use pmd_intel::queues::{program_rss, RSS_KEY};
use pmd_intel::{Bar, Chip, CounterSpec, IntelDevice, QueueLayout, RxCsumBits};
use std::time::Duration;

/// An initialised 82576 device.
pub type Igb = IntelDevice<I82576>;

/// Reset completes within about 1 ms on hardware; allow for emulation.
const RESET_TIMEOUT: Duration = Duration::from_millis(100);
/// EEPROM auto-read completes within 10 ms of reset.
const INIT_TIMEOUT: Duration = Duration::from_millis(20);

/// Write-back: receive data error (82576 datasheet 7.1.5.2, extended error field).
pub const RXD_ERR_RXE: u32 = 1 << 31;
/// Write-back: IPv4 checksum error.
pub const RXD_ERR_IPE: u32 = 1 << 30;
/// Write-back: TCP/UDP checksum error.
pub const RXD_ERR_L4E: u32 = 1 << 29;

/// The 82576.
pub struct I82576;

impl Chip for I82576 {
    const DRIVER: &'static str = DRIVER_NAME;
    const CHIP: &'static str = "82576";
    const BAR0_LEN: usize = BAR0_LEN;
    const LAYOUT: QueueLayout = QueueLayout {
        rx_base: rdbal(0),
        tx_base: tdbal(0),
        srrctl: srrctl(0) - rdbal(0),
    };
    const MAX_QUEUES: (u16, u16) = (MAX_QUEUES, MAX_QUEUES);
    const RX_ERR: u32 = RXD_ERR_RXE;
    const RX_CSUM: RxCsumBits = RxCsumBits {
        ip_err: RXD_ERR_IPE,
        l4_err: RXD_ERR_L4E,
    };
    /// Prefetch threshold 8, host threshold 1, write-back threshold 0 (8.12.x TXDCTL).
    const TXDCTL: u32 = 8 | 1 << 8;
    const COUNTERS: &'static [CounterSpec] = &[
        CounterSpec::reg("rx_good_packets", GPRC),
        CounterSpec::split("rx_good_bytes", GORCL, GORCH),
        CounterSpec::reg("tx_good_packets", GPTC),
        CounterSpec::split("tx_good_bytes", GOTCL, GOTCH),
        CounterSpec::reg("rx_missed_errors", MPC),
        CounterSpec::reg("rx_no_buffer_count", RNBC),
        CounterSpec::reg("rx_crc_errors", CRCERRS),
        CounterSpec::reg("rx_length_errors", RLEC),
    ];

    const MAX_FRAME: u32 = MAX_FRAME;

    fn set_max_frame(bar: &Bar, mfs: u32) {
        // RLPML counts the CRC and applies to tagged frames too: room for two tags.
        bar.wr(RLPML, mfs.min(MAX_FRAME) + 8);
        if mfs > STD_MAX_FRAME {
            bar.set_bits(RCTL, RCTL_LPE);
        } else {
            bar.clear_bits(RCTL, RCTL_LPE);
        }
    }

    fn set_vlan_strip(bar: &Bar, _q: usize, on: bool) {
        // The 82576 strips device-wide (CTRL.VME): a queue asking for it turns it on for
        // all (DPDK's igb treats VLAN_STRIP as a port offload too).
        if on {
            bar.set_bits(CTRL, CTRL_VME);
        }
    }

    fn reset(bar: &Bar) -> Result<()> {
        bar.wr(IMC, u32::MAX);
        bar.wr(EIMC, u32::MAX);
        bar.set_bits(CTRL, CTRL_GIO_MASTER_DISABLE);
        if bar
            .wait("PCIe master disable", INIT_TIMEOUT, |b| {
                b.rd(STATUS) & STATUS_GIO_MASTER_ENABLE == 0
            })
            .is_err()
        {
            tracing::debug!(device = bar.name(), "master enable still set at reset");
        }
        bar.set_bits(CTRL, CTRL_RST);
        bar.wait(
            "device reset (CTRL.RST did not clear; try a PCI function reset)",
            RESET_TIMEOUT,
            |b| b.rd(CTRL) & CTRL_RST == 0,
        )?;
        std::thread::sleep(Duration::from_millis(1));
        bar.wr(IMC, u32::MAX);
        bar.wr(EIMC, u32::MAX);
        let _ = bar.rd(ICR);
        // Auto-read done (4.5.x). Some emulations never set it; the MAC read below catches
        // an NVM that really was not loaded.
        if bar
            .wait("EEPROM auto-read (EECD.AUTO_RD)", INIT_TIMEOUT, |b| {
                b.rd(EECD) & EECD_AUTO_RD != 0
            })
            .is_err()
        {
            tracing::debug!(device = bar.name(), "EECD.AUTO_RD not set after reset");
        }
        bar.set_bits(CTRL_EXT, CTRL_EXT_DRV_LOAD);
        Ok(())
    }

    fn mac(bar: &Bar) -> Result<MacAddr> {
        bar.read_mac(RAL0, RAH0)
    }

    fn start_link(bar: &Bar) {
        // Set link up, then (re)start auto-negotiation in the PHY (4.5.7.2): the link comes
        // up when it completes.
        bar.set_bits(CTRL, CTRL_SLU);
        let restart = phy_read(bar, PHY_CTRL)
            .and_then(|c| phy_write(bar, PHY_CTRL, c | PHY_CTRL_AN_ENABLE | PHY_CTRL_RESTART_AN));
        if let Err(e) = restart {
            tracing::warn!(
                device = bar.name(),
                "could not restart auto-negotiation: {e}"
            );
        }
    }

    fn link(bar: &Bar) -> Link {
        let st = bar.rd(STATUS);
        if st & STATUS_LU == 0 {
            return Link::default();
        }
        let speed = match (st >> STATUS_SPEED_SHIFT) & 3 {
            0 => 10,
            1 => 100,
            _ => 1000,
        };
        Link {
            up: true,
            speed_mbps: speed,
            full_duplex: st & STATUS_FD != 0,
        }
    }

    fn configure(bar: &Bar, rx_queues: usize, promisc: bool) {
        bar.clear_bits(RCTL, RCTL_EN);
        bar.set_bits(RCTL, RCTL_BAM | RCTL_SECRC);
        // VLAN stripping is turned on again by the rx queues that ask for it.
        bar.clear_bits(CTRL, CTRL_VME);
        Self::set_promisc(bar, promisc);
        if rx_queues <= 1 {
            bar.wr(MRQC, 0);
            return;
        }
        program_rss(bar, rx_queues, &RSS_KEY, rssrk, reta);
        bar.wr(
            MRQC,
            MRQC_RSS_EN | MRQC_RSS_IPV4 | MRQC_RSS_TCPIPV4 | MRQC_RSS_UDPIPV4,
        );
    }

    fn set_promisc(bar: &Bar, on: bool) {
        if on {
            bar.set_bits(RCTL, RCTL_UPE | RCTL_MPE);
        } else {
            bar.clear_bits(RCTL, RCTL_UPE | RCTL_MPE);
        }
    }

    fn srrctl(kib: u32) -> u32 {
        (kib & SRRCTL_BSIZEPKT_MASK) | SRRCTL_DESCTYPE_ADV_ONEBUF | SRRCTL_DROP_EN
    }

    fn enable_tx(bar: &Bar) {
        // Pad short packets; collision threshold 15 and distance 63 (full duplex).
        bar.wr(
            TCTL,
            TCTL_EN | TCTL_PSP | 0x0f << TCTL_CT_SHIFT | 0x3f << TCTL_COLD_SHIFT,
        );
    }

    fn enable_rx(bar: &Bar) {
        bar.set_bits(RCTL, RCTL_EN);
    }

    fn disable_rx(bar: &Bar) {
        bar.clear_bits(RCTL, RCTL_EN);
    }

    fn disable_tx(bar: &Bar) {
        bar.clear_bits(TCTL, TCTL_EN);
    }

    fn release(bar: &Bar) {
        bar.clear_bits(CTRL_EXT, CTRL_EXT_DRV_LOAD);
    }
}

/// MDIO accesses complete within about 64 us on hardware.
const MDIC_TIMEOUT: Duration = Duration::from_millis(10);

/// Runs one MDIC access and returns the final MDIC value.
fn mdic(bar: &Bar, cmd: u32) -> Result<u32> {
    bar.wr(MDIC, cmd);
    bar.wait("PHY access (MDIC.R)", MDIC_TIMEOUT, |b| {
        b.rd(MDIC) & MDIC_READY != 0
    })?;
    let v = bar.rd(MDIC);
    if v & MDIC_ERROR != 0 {
        return Err(bar.err(format!("PHY register access {cmd:#x} failed (MDIC.E)")));
    }
    Ok(v)
}

/// Reads PHY register `reg` of the internal PHY.
fn phy_read(bar: &Bar, reg: u32) -> Result<u16> {
    let v = mdic(
        bar,
        reg << MDIC_REG_SHIFT | PHY_ADDR << MDIC_PHY_SHIFT | MDIC_OP_READ,
    )?;
    Ok((v & MDIC_DATA_MASK) as u16)
}

/// Writes PHY register `reg` of the internal PHY.
fn phy_write(bar: &Bar, reg: u32, value: u16) -> Result<()> {
    mdic(
        bar,
        u32::from(value) | reg << MDIC_REG_SHIFT | PHY_ADDR << MDIC_PHY_SHIFT | MDIC_OP_WRITE,
    )
    .map(|_| ())
}
