//! The 82576 specifics: reset and init (datasheet 4.5), link (CTRL.SLU, the PHY's
//! auto-negotiation through MDIC, STATUS), receive and transmit control, long packets and
//! device-wide VLAN stripping. Everything else is `pmd_intel::IntelDevice`'s.

use crate::regs::*;
use crate::{DRIVER_NAME, PCI_IDS};
use pmd_core::ethdev::{Link, PciId};
use pmd_core::Result;
use pmd_intel::reset::{master_disable, reset_device};
use pmd_intel::{
    Bar, Chip, CounterSpec, IntelDevice, LineRegs, LinkCause, MsixRegs, QueueLayout, RegBits,
    RssRegs, RxCsumBits,
};
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
#[derive(Debug, Default)]
pub struct I82576;

impl I82576 {
    /// Masks every interrupt cause, legacy and extended.
    fn mask_interrupts(bar: &Bar) {
        bar.wr(IMC, u32::MAX);
        bar.wr(EIMC, u32::MAX);
    }
}

impl Chip for I82576 {
    const DRIVER: &'static str = DRIVER_NAME;
    const CHIP: &'static str = "82576";
    const DESCRIPTION: &'static str =
        "Intel 82576 1 GbE, QEMU `-device igb` (PCI: bind with `pmd-setup bind ADDR`, then -a ADDR)";
    const PCI_IDS: &'static [PciId] = PCI_IDS;
    const LAYOUT: QueueLayout = QUEUES;
    /// RSS over IPv4 addresses and TCP/UDP ports.
    const RSS: Option<RssRegs> = Some(RssRegs::new(
        MRQC,
        RSSRK0,
        RETA0,
        MRQC_RSS_EN | MRQC_RSS_IPV4 | MRQC_RSS_TCPIPV4 | MRQC_RSS_UDPIPV4,
    ));
    const MAX_QUEUES: (u16, u16) = (MAX_QUEUES, MAX_QUEUES);
    const RX_ERR: u32 = RXD_ERR_RXE;
    const RX_CSUM: RxCsumBits = RxCsumBits {
        ip_err: RXD_ERR_IPE,
        l4_err: RXD_ERR_L4E,
    };
    /// Prefetch threshold 8, host threshold 1, write-back threshold 0 (8.12.x TXDCTL).
    const TXDCTL: u32 = 8 | 1 << 8;
    const SRRCTL_DROP_EN: u32 = SRRCTL_DROP_EN;
    const RX_ENABLE: Option<RegBits> = Some(RegBits::new(RCTL, RCTL_EN));
    const TX_ENABLE: Option<RegBits> = Some(RegBits::new(TCTL, TCTL_EN));
    const RAL0: usize = RAL0;
    const COUNTERS: &'static [CounterSpec] = &[
        CounterSpec::reg("rx_missed_errors", MPC),
        CounterSpec::reg("rx_no_buffer_count", RNBC),
        CounterSpec::reg("rx_crc_errors", CRCERRS),
        CounterSpec::reg("rx_length_errors", RLEC),
    ];

    fn reset(&self, bar: &Bar) -> Result<()> {
        Self::mask_interrupts(bar);
        if !master_disable(bar, INIT_TIMEOUT) {
            tracing::debug!(device = bar.name(), "master enable still set at reset");
        }
        reset_device(bar, 0, "try a PCI function reset", RESET_TIMEOUT)?;
        Self::mask_interrupts(bar);
        let _ = bar.rd(ICR);
        // Auto-read done (4.5.x). Some emulations never set it; the MAC read that follows
        // catches an NVM that really was not loaded.
        if bar
            .wait("EEPROM auto-read (EECD.AUTO_RD)", INIT_TIMEOUT, |b| {
                b.rd(EECD) & EECD_AUTO_RD != 0
            })
            .is_err()
        {
            tracing::debug!(device = bar.name(), "EECD.AUTO_RD not set after reset");
        }
        Ok(())
    }

    fn start_link(&self, bar: &Bar) {
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

    fn link(&self, bar: &Bar) -> Link {
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

    fn configure(&self, bar: &Bar) -> Result<()> {
        bar.set_bits(RCTL, RCTL_BAM | RCTL_SECRC);
        // VLAN stripping is turned on again by the rx queues that ask for it.
        bar.clear_bits(CTRL, CTRL_VME);
        // Pad short packets; collision threshold 15 and distance 63 (full duplex). The
        // enable bit is set at start.
        bar.wr(
            TCTL,
            TCTL_PSP | 0x0f << TCTL_CT_SHIFT | 0x3f << TCTL_COLD_SHIFT,
        );
        Ok(())
    }

    fn set_promisc(&self, bar: &Bar, on: bool) -> Result<()> {
        bar.set_bits_to(RCTL, RCTL_UPE | RCTL_MPE, on);
        Ok(())
    }

    fn set_max_frame(&self, bar: &Bar, mfs: u32) -> Result<()> {
        // RLPML counts the CRC and applies to tagged frames too: room for two tags.
        bar.wr(RLPML, mfs.min(Self::MAX_FRAME) + 8);
        bar.set_bits_to(RCTL, RCTL_LPE, mfs > STD_MAX_FRAME);
        Ok(())
    }

    fn set_vlan_strip(&self, bar: &Bar, _q: usize, on: bool) {
        // The 82576 strips device-wide (CTRL.VME): a queue asking for it turns it on for
        // all (DPDK's igb treats VLAN_STRIP as a port offload too).
        if on {
            bar.set_bits(CTRL, CTRL_VME);
        }
    }

    /// MSI-X (82576 7.3.1.3): rx queues 0..7 in the low entry of IVAR q, 8..15 in the
    /// third; the 82576 adds NSICR to GPIE.
    const MSIX: Option<MsixRegs> = Some(MsixRegs {
        eims: EIMS,
        eimc: EIMC,
        mask_all: u32::MAX,
        eiac: EIAC,
        eiam: EIAM,
        eicr: EICR,
        gpie: Some((GPIE, GPIE_MSIX_MODE | GPIE_EIAME | GPIE_PBA | GPIE_NSICR)),
        ivar_misc: (IVAR_MISC, 8),
        rx_ivar: |q| (ivar(q & 7), if q & 8 != 0 { 16 } else { 0 }),
        link: LinkCause::Icr {
            ims: IMS,
            icr: ICR,
            bit: ICR_LSC,
        },
    });

    /// The INTx line under UIO (the 82576's legacy interrupt mode): rx queue 0 sleeps on
    /// ICR.RXDW.
    const LINE: Option<LineRegs> = Some(LineRegs {
        ims: IMS,
        imc: IMC,
        icr: ICR,
        rx_cause: ICR_RXDW,
    });
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
