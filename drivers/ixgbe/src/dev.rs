//! The 82599-family specifics: reset and init (datasheet 4.6.3), link (4.6.4), receive
//! filters and RSS (4.6.7, 7.1.2.8), global enables, counters. Queues, start/stop and
//! statistics are `pmd_intel::IntelDevice`'s.

use crate::regs::*;
use crate::DRIVER_NAME;
use pmd_core::ethdev::{Link, MacAddr};
use pmd_core::Result;
use pmd_intel::queues::{program_rss, RSS_KEY};
use pmd_intel::{Bar, Chip, CounterSpec, IntelDevice, QueueLayout, RxCsumBits};
use std::time::Duration;

/// An initialised 82599-family device.
pub type Ixgbe = IntelDevice<X82599>;

/// How long a reset may take (datasheet 4.6.3.2: the device is ready about 1 ms after
/// CTRL.RST; allow for slow models and firmware).
const RESET_TIMEOUT: Duration = Duration::from_millis(100);
/// EEPROM auto-read and DMA init complete within 10 ms of reset on hardware.
const INIT_TIMEOUT: Duration = Duration::from_millis(100);

/// Write-back error bits (datasheet 7.1.6.2, extended error field).
pub const RXD_ERR_RXE: u32 = 1 << 29;
/// Write-back: TCP/UDP checksum error.
pub const RXD_ERR_L4E: u32 = 1 << 30;
/// Write-back: IPv4 checksum error.
pub const RXD_ERR_IPE: u32 = 1 << 31;

/// The 82599 family (X540 and X550 share what is used here).
pub struct X82599;

impl Chip for X82599 {
    const DRIVER: &'static str = DRIVER_NAME;
    const CHIP: &'static str = "82599";
    const BAR0_LEN: usize = BAR0_LEN;
    const LAYOUT: QueueLayout = QueueLayout {
        rx_base: rdbal(0),
        tx_base: tdbal(0),
        srrctl: srrctl(0) - rdbal(0),
    };
    const MAX_QUEUES: (u16, u16) = (MAX_RX_QUEUES, MAX_TX_QUEUES);
    const RX_ERR: u32 = RXD_ERR_RXE;
    const RX_CSUM: RxCsumBits = RxCsumBits {
        ip_err: RXD_ERR_IPE,
        l4_err: RXD_ERR_L4E,
    };
    /// Prefetch threshold 32, host threshold 1 (7.2.3.4.1); write-back only on RS.
    const TXDCTL: u32 = 32 | 1 << 8;
    const COUNTERS: &'static [CounterSpec] = &[
        CounterSpec::reg("rx_good_packets", GPRC),
        CounterSpec::split("rx_good_bytes", GORCL, GORCH),
        CounterSpec::reg("tx_good_packets", GPTC),
        CounterSpec::split("tx_good_bytes", GOTCL, GOTCH),
        CounterSpec::reg("rx_missed_errors", MPC0),
        CounterSpec::reg("rx_crc_errors", CRCERRS),
        CounterSpec::reg("rx_length_errors", RLEC),
        CounterSpec::reg("rx_undersize_errors", RUC),
    ];

    const MAX_FRAME: u32 = MAX_FRAME;

    fn set_max_frame(bar: &Bar, mfs: u32) {
        // 8.2.3.22.13: MFS counts the CRC; tagged frames may be 4 bytes longer.
        bar.wr(MAXFRS, mfs.min(MAX_FRAME) << MAXFRS_MFS_SHIFT);
        if mfs > STD_MAX_FRAME {
            bar.set_bits(HLREG0, HLREG0_JUMBOEN);
        } else {
            bar.clear_bits(HLREG0, HLREG0_JUMBOEN);
        }
    }

    fn set_vlan_strip(bar: &Bar, q: usize, on: bool) {
        if on {
            bar.set_bits(rxdctl(q), RXDCTL_VME);
        } else {
            bar.clear_bits(rxdctl(q), RXDCTL_VME);
        }
    }

    fn reset(bar: &Bar) -> Result<()> {
        bar.wr(EIMC, EIMC_ALL);
        // Master disable: let outstanding DMA finish first (5.2.5.3.2). A device that never
        // reports it is reset anyway, as the datasheet allows.
        bar.set_bits(CTRL, CTRL_MASTER_DISABLE);
        if bar
            .wait("PCIe master disable", INIT_TIMEOUT, |b| {
                b.rd(STATUS) & STATUS_GIO_MASTER_ENABLE == 0
            })
            .is_err()
        {
            tracing::warn!(
                device = bar.name(),
                "DMA still pending at reset; resetting anyway"
            );
        }
        bar.set_bits(CTRL, CTRL_RST | CTRL_LRST);
        bar.wait(
            "device reset (CTRL.RST did not clear; the device may need a PCI function reset or a power cycle)",
            RESET_TIMEOUT,
            |b| b.rd(CTRL) & CTRL_RST == 0,
        )?;
        std::thread::sleep(Duration::from_millis(1));
        bar.wr(EIMC, EIMC_ALL);
        let _ = bar.rd(EICR);
        bar.wait("EEPROM auto-read (EEC.ARD)", INIT_TIMEOUT, |b| {
            b.rd(EEC) & EEC_ARD != 0
        })?;
        bar.wait("receive DMA init (RDRXCTL.DMAIDONE)", INIT_TIMEOUT, |b| {
            b.rd(RDRXCTL) & RDRXCTL_DMAIDONE != 0
        })?;
        bar.set_bits(CTRL_EXT, CTRL_EXT_DRV_LOAD | CTRL_EXT_NS_DIS);
        Ok(())
    }

    fn mac(bar: &Bar) -> Result<MacAddr> {
        bar.read_mac(RAL0, RAH0)
    }

    fn start_link(bar: &Bar) {
        // Restart auto-negotiation now so the link is likely up by start (4.6.4).
        bar.set_bits(AUTOC, AUTOC_RESTART_AN);
    }

    fn link(bar: &Bar) -> Link {
        let links = bar.rd(LINKS);
        if links & LINKS_UP == 0 {
            return Link::default();
        }
        let speed = match (links >> LINKS_SPEED_SHIFT) & 3 {
            1 => 100,
            2 => 1000,
            3 => 10_000,
            _ => 0,
        };
        Link {
            up: true,
            speed_mbps: speed,
            full_duplex: true,
        }
    }

    fn configure(bar: &Bar, rx_queues: usize, promisc: bool) {
        // Receive setup with receive disabled (4.6.7): CRC strip, broadcast, filters, RSS.
        bar.clear_bits(RXCTRL, RXCTRL_RXEN);
        bar.set_bits(HLREG0, HLREG0_RXCRCSTRP | HLREG0_TXPADEN);
        bar.set_bits(RDRXCTL, RDRXCTL_CRCSTRIP);
        Self::set_promisc(bar, promisc);
        if rx_queues <= 1 {
            bar.wr(MRQC, 0);
            return;
        }
        program_rss(bar, rx_queues, &RSS_KEY, rssrk, reta);
        bar.wr(
            MRQC,
            MRQC_RSS_EN
                | MRQC_RSS_IPV4
                | MRQC_RSS_TCPIPV4
                | MRQC_RSS_UDPIPV4
                | MRQC_RSS_IPV6
                | MRQC_RSS_TCPIPV6,
        );
    }

    fn set_promisc(bar: &Bar, on: bool) {
        let mut f = bar.rd(FCTRL) | FCTRL_BAM;
        if on {
            f |= FCTRL_UPE | FCTRL_MPE;
        } else {
            f &= !(FCTRL_UPE | FCTRL_MPE);
        }
        bar.wr(FCTRL, f);
    }

    fn srrctl(kib: u32) -> u32 {
        kib | SRRCTL_DESCTYPE_ADV_ONEBUF | SRRCTL_DROP_EN
    }

    fn tx_setup_window(bar: &Bar, open: bool) {
        // Transmit queues are programmed with the DCB arbiter paused (4.6.8).
        if open {
            bar.set_bits(RTTDCS, RTTDCS_ARBDIS);
        } else {
            bar.clear_bits(RTTDCS, RTTDCS_ARBDIS);
        }
    }

    fn enable_tx(bar: &Bar) {
        bar.set_bits(DMATXCTL, DMATXCTL_TE);
    }

    fn enable_rx(bar: &Bar) {
        bar.set_bits(RXCTRL, RXCTRL_RXEN);
    }

    fn disable_rx(bar: &Bar) {
        bar.clear_bits(RXCTRL, RXCTRL_RXEN);
    }

    fn disable_tx(bar: &Bar) {
        bar.clear_bits(DMATXCTL, DMATXCTL_TE);
    }

    fn release(bar: &Bar) {
        bar.clear_bits(CTRL_EXT, CTRL_EXT_DRV_LOAD);
    }
}
