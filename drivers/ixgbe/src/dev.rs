//! The 82599-family specifics: reset and init (datasheet 4.6.3), link (4.6.4), receive
//! setup (4.6.7), the DCB arbiter around tx queue setup (4.6.8), frame size and VLAN
//! stripping. Everything else is `pmd_intel::IntelDevice`'s.

use crate::regs::*;
use crate::{DRIVER_NAME, PCI_IDS};
use pmd_core::ethdev::{Link, PciId};
use pmd_core::Result;
use pmd_intel::reset::{master_disable, reset_device};
use pmd_intel::{
    Bar, Chip, CounterSpec, IntelDevice, LinkCause, MsixRegs, QueueLayout, RegBits, RssRegs,
    RxCsumBits,
};
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

/// The MRQC hash types the driver turns on.
const RSS_HASHES: u32 =
    MRQC_RSS_IPV4 | MRQC_RSS_TCPIPV4 | MRQC_RSS_UDPIPV4 | MRQC_RSS_IPV6 | MRQC_RSS_TCPIPV6;

/// The 82599 family (X540 and X550 share what is used here).
#[derive(Debug, Default)]
pub struct X82599;

impl Chip for X82599 {
    const DRIVER: &'static str = DRIVER_NAME;
    const CHIP: &'static str = "82599";
    const DESCRIPTION: &'static str =
        "Intel 82599/X540/X550 10 GbE (PCI: bind with `pmd-setup bind ADDR`, then -a ADDR)";
    const PCI_IDS: &'static [PciId] = PCI_IDS;
    const LAYOUT: QueueLayout = QUEUES;
    /// RSS over IPv4 and IPv6 addresses, TCP ports (both) and UDP ports (IPv4).
    const RSS: Option<RssRegs> = Some(RssRegs::new(MRQC, RSSRK0, RETA0, MRQC_RSS_EN | RSS_HASHES));
    const MAX_QUEUES: (u16, u16) = (MAX_RX_QUEUES, MAX_TX_QUEUES);
    const RX_ERR: u32 = RXD_ERR_RXE;
    const RX_CSUM: RxCsumBits = RxCsumBits {
        ip_err: RXD_ERR_IPE,
        l4_err: RXD_ERR_L4E,
    };
    /// Prefetch threshold 32, host threshold 1 (7.2.3.4.1); write-back only on RS.
    const TXDCTL: u32 = 32 | 1 << 8;
    const SRRCTL_DROP_EN: u32 = SRRCTL_DROP_EN;
    const RX_ENABLE: Option<RegBits> = Some(RegBits::new(RXCTRL, RXCTRL_RXEN));
    const TX_ENABLE: Option<RegBits> = Some(RegBits::new(DMATXCTL, DMATXCTL_TE));
    const RAL0: usize = RAL0;
    const COUNTERS: &'static [CounterSpec] = &[
        CounterSpec::reg("rx_missed_errors", MPC0),
        CounterSpec::reg("rx_crc_errors", CRCERRS),
        CounterSpec::reg("rx_length_errors", RLEC),
        CounterSpec::reg("rx_undersize_errors", RUC),
    ];

    fn reset(&self, bar: &Bar) -> Result<()> {
        bar.wr(EIMC, EIMC_ALL);
        // Master disable: let outstanding DMA finish first (5.2.5.3.2). A device that never
        // reports it is reset anyway, as the datasheet allows.
        if !master_disable(bar, INIT_TIMEOUT) {
            tracing::warn!(
                device = bar.name(),
                "DMA still pending at reset; resetting anyway"
            );
        }
        reset_device(
            bar,
            CTRL_LRST,
            "the device may need a PCI function reset or a power cycle",
            RESET_TIMEOUT,
        )?;
        bar.wr(EIMC, EIMC_ALL);
        let _ = bar.rd(EICR);
        bar.wait("EEPROM auto-read (EEC.ARD)", INIT_TIMEOUT, |b| {
            b.rd(EEC) & EEC_ARD != 0
        })?;
        bar.wait("receive DMA init (RDRXCTL.DMAIDONE)", INIT_TIMEOUT, |b| {
            b.rd(RDRXCTL) & RDRXCTL_DMAIDONE != 0
        })?;
        bar.set_bits(CTRL_EXT, CTRL_EXT_NS_DIS);
        Ok(())
    }

    fn start_link(&self, bar: &Bar) {
        // Restart auto-negotiation now so the link is likely up by start (4.6.4).
        bar.set_bits(AUTOC, AUTOC_RESTART_AN);
    }

    fn link(&self, bar: &Bar) -> Link {
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

    fn configure(&self, bar: &Bar) -> Result<()> {
        // CRC strip in the MAC and the DMA (they must agree), pad short frames (4.6.7).
        bar.set_bits(HLREG0, HLREG0_RXCRCSTRP | HLREG0_TXPADEN);
        bar.set_bits(RDRXCTL, RDRXCTL_CRCSTRIP);
        Ok(())
    }

    fn set_promisc(&self, bar: &Bar, on: bool) -> Result<()> {
        bar.set_bits(FCTRL, FCTRL_BAM);
        bar.set_bits_to(FCTRL, FCTRL_UPE | FCTRL_MPE, on);
        Ok(())
    }

    fn set_max_frame(&self, bar: &Bar, mfs: u32) -> Result<()> {
        // 8.2.3.22.13: MFS counts the CRC; tagged frames may be 4 bytes longer.
        bar.wr(MAXFRS, mfs.min(Self::MAX_FRAME) << MAXFRS_MFS_SHIFT);
        bar.set_bits_to(HLREG0, HLREG0_JUMBOEN, mfs > STD_MAX_FRAME);
        Ok(())
    }

    fn set_vlan_strip(&self, bar: &Bar, q: usize, on: bool) {
        bar.set_bits_to(QUEUES.rxdctl(q), RXDCTL_VME, on);
    }

    fn tx_setup_window(&self, bar: &Bar, open: bool) {
        // Transmit queues are programmed with the DCB arbiter paused (4.6.8).
        bar.set_bits_to(RTTDCS, RTTDCS_ARBDIS, open);
    }

    /// MSI-X (82599 7.3.1.3): two rx queues per IVAR register, in its low and third
    /// entries.
    const MSIX: Option<MsixRegs> = Some(MsixRegs {
        eims: EIMS,
        eimc: EIMC,
        mask_all: EIMC_ALL,
        eiac: EIAC,
        eiam: EIAM,
        eicr: EICR,
        gpie: Some((GPIE, GPIE_MSIX_MODE | GPIE_EIAME | GPIE_PBA_SUPPORT)),
        ivar_misc: (IVAR_MISC, 8),
        rx_ivar: |q| (ivar(q / 2), 16 * (q as u32 % 2)),
        link: LinkCause::Eicr(EICR_LSC),
    });
}
