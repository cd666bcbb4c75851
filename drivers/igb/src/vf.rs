//! The 82576 virtual function (`net_e1000_igb_vf`, PCI 8086:10ca): an SR-IOV function
//! whose physical function belongs to another driver (normally the kernel's igb). It has
//! two queue pairs, no MAC, PHY or filter registers of its own: its MAC address, link,
//! frame size and receive filters come from the PF, asked for through the mailbox
//! ([`pmd_intel::mailbox`]). Message types and words are those of Linux's igb PF.
//!
//! Register offsets: 82576 datasheet section 8.28 (virtual function registers).

use crate::dev::{RXD_ERR_IPE, RXD_ERR_L4E, RXD_ERR_RXE};
use crate::regs::{SRRCTL_DROP_EN, STATUS_FD, STATUS_LU, STATUS_SPEED_SHIFT};
use pmd_core::ethdev::{Link, MacAddr, PciId, RxOffloads};
use pmd_core::Result;
use pmd_intel::mailbox::MbxLayout;
use pmd_intel::vf::{PfPeer, VfRegs};
use pmd_intel::{intel_id, Bar, Chip, CounterSpec, IntelDevice, QueueLayout, RegBits, RssRegs};
use pmd_intel::{IntelDriver, LinkCause, MsixRegs, RxCsumBits};

/// Driver name (as DPDK's).
pub const VF_DRIVER_NAME: &str = "net_e1000_igb_vf";

/// The 82576 VF (8086:10ca) and its variant under a hypervisor (8086:152d).
pub const VF_PCI_IDS: &[PciId] = &[intel_id(0x10CA), intel_id(0x152D)];

/// The driver instance to list in an application's driver table.
pub static VF_DRIVER: IntelDriver<I82576Vf> = IntelDriver::new();

/// An initialised 82576 VF.
pub type IgbVf = IntelDevice<I82576Vf>;

/// VF register map (82576 8.28).
pub mod vfregs {
    use pmd_intel::QueueLayout;

    /// The VF's BAR 0: 16 KiB.
    pub const BAR0_LEN: usize = 0x4000;
    /// VF Control (VTCTRL).
    pub const CTRL: usize = 0x0000;
    /// VTCTRL: reset this VF (self-clearing).
    pub const CTRL_RST: u32 = 1 << 26;
    /// VF Status (VTSTATUS): a copy of the PF's link bits.
    pub const STATUS: usize = 0x0008;
    /// VF to PF mailbox control (V2PMAILBOX).
    pub const MBX_CTL: usize = 0x0C40;
    /// VF mailbox memory (VMBMEM), 16 words.
    pub const MBX_MEM: usize = 0x0800;
    /// Extended interrupt mask set (VTEIMS).
    pub const EIMS: usize = 0x1524;
    /// Extended interrupt mask clear (VTEIMC).
    pub const EIMC: usize = 0x1528;
    /// Extended interrupt auto clear (VTEIAC).
    pub const EIAC: usize = 0x152C;
    /// Extended interrupt auto mask (VTEIAM).
    pub const EIAM: usize = 0x1530;
    /// Extended interrupt cause read (VTEICR).
    pub const EICR: usize = 0x1580;
    /// Interrupt vector allocation: rx queue 0 in bits 7:0, rx queue 1 in 23:16 (VTIVAR).
    pub const IVAR0: usize = 0x1700;
    /// Interrupt vector of the other cause, the mailbox, in bits 7:0 (VTIVAR_MISC).
    pub const IVAR_MISC: usize = 0x1740;
    /// Queue 0's registers: RDBAL at 0x2800, TDBAL at 0x3800, SRRCTL 0x0C into the rx
    /// block; queue 1's 0x100 further on.
    pub const QUEUES: QueueLayout = QueueLayout::new(0x2800, 0x3800, 0x0C).with_stride(0x100);
    /// Good packets received (free-running, 32 bits).
    pub const VFGPRC: usize = 0x0F10;
    /// Good packets transmitted.
    pub const VFGPTC: usize = 0x0F14;
    /// Good octets received.
    pub const VFGORC: usize = 0x0F18;
    /// Good octets transmitted.
    pub const VFGOTC: usize = 0x0F34;
    /// Multicast packets received.
    pub const VFMPRC: usize = 0x0F3C;
    /// Good packets received from another pool of the same port (loopback).
    pub const VFGPRLBC: usize = 0x0F40;
    /// Good packets transmitted to another pool of the same port (loopback).
    pub const VFGPTLBC: usize = 0x0F44;
}

/// Messages of Linux's igb PF beyond the shared ones ([`pmd_intel::vf::vfmsg`]).
pub mod vfmsg {
    /// Promiscuous flags in the info field.
    pub const SET_PROMISC: u32 = 0x06;
    /// SET_PROMISC: unicast promiscuous (Linux's igb refuses it).
    pub const PROMISC_UNICAST: u32 = 1 << 16;
    /// SET_PROMISC: multicast promiscuous.
    pub const PROMISC_MULTICAST: u32 = 2 << 16;
}

const REGS: VfRegs = VfRegs {
    ctrl: vfregs::CTRL,
    ctrl_rst: vfregs::CTRL_RST,
    eimc: vfregs::EIMC,
    mbx: MbxLayout {
        ctl: vfregs::MBX_CTL,
        mem: vfregs::MBX_MEM,
    },
};

/// The 82576 VF: its PF peer.
#[derive(Debug)]
pub struct I82576Vf {
    pf: PfPeer,
}

impl Default for I82576Vf {
    fn default() -> I82576Vf {
        I82576Vf {
            pf: PfPeer::new(REGS),
        }
    }
}

impl Chip for I82576Vf {
    const DRIVER: &'static str = VF_DRIVER_NAME;
    const CHIP: &'static str = "82576 VF";
    const DESCRIPTION: &'static str =
        "Intel 82576 SR-IOV virtual function (create with `pmd-setup sriov PF N`, bind with `pmd-setup bind ADDR`, then -a ADDR)";
    const PCI_IDS: &'static [PciId] = VF_PCI_IDS;
    const BAR0_LEN: usize = vfregs::BAR0_LEN;
    const LAYOUT: QueueLayout = vfregs::QUEUES;
    /// The PF spreads the pool's frames, if it does; queue 0 takes them all otherwise.
    const RSS: Option<RssRegs> = None;
    /// One receive queue (the PF decides whether a pool's second queue gets frames);
    /// both transmit queues.
    const MAX_QUEUES: (u16, u16) = (1, 2);
    const RX_ERR: u32 = RXD_ERR_RXE;
    const RX_CSUM: RxCsumBits = RxCsumBits {
        ip_err: RXD_ERR_IPE,
        l4_err: RXD_ERR_L4E,
    };
    const TXDCTL: u32 = 8 | 1 << 8;
    const SRRCTL_DROP_EN: u32 = SRRCTL_DROP_EN;
    const RX_ENABLE: Option<RegBits> = None;
    const TX_ENABLE: Option<RegBits> = None;
    const RAL0: usize = 0;
    const GOOD_COUNTERS: &'static [CounterSpec] = &[
        CounterSpec::running("rx_good_packets", vfregs::VFGPRC),
        CounterSpec::running("rx_good_bytes", vfregs::VFGORC),
        CounterSpec::running("tx_good_packets", vfregs::VFGPTC),
        CounterSpec::running("tx_good_bytes", vfregs::VFGOTC),
    ];
    const COUNTERS: &'static [CounterSpec] = &[
        CounterSpec::running("rx_multicast_packets", vfregs::VFMPRC),
        CounterSpec::running("rx_loopback_packets", vfregs::VFGPRLBC),
        CounterSpec::running("tx_loopback_packets", vfregs::VFGPTLBC),
    ];
    /// VLAN stripping is the PF's per-pool choice (VMOLR), not the VF's.
    const RX_OFFLOADS: RxOffloads = RxOffloads(RxOffloads::SCATTER.0 | RxOffloads::CHECKSUM.0);
    const PROMISC_AT_START: bool = false;

    fn bring_up(&self, bar: &Bar) -> Result<MacAddr> {
        self.pf.reset(bar).map(|(mac, _)| mac)
    }

    fn release(&self, bar: &Bar) {
        self.pf.release(bar);
    }

    fn reset(&self, bar: &Bar) -> Result<()> {
        self.pf.reset(bar).map(|_| ())
    }

    fn start_link(&self, _bar: &Bar) {}

    fn link(&self, bar: &Bar) -> Link {
        let st = bar.rd(vfregs::STATUS);
        if self.pf.pf_gone(bar) || st & STATUS_LU == 0 {
            return Link::default();
        }
        Link {
            up: true,
            speed_mbps: match (st >> STATUS_SPEED_SHIFT) & 3 {
                0 => 10,
                1 => 100,
                _ => 1000,
            },
            full_duplex: st & STATUS_FD != 0,
        }
    }

    fn configure(&self, bar: &Bar) -> Result<()> {
        // After a PF reset, start again from a reset (the PF forgot this VF's settings).
        self.pf.recover(bar).map(|_| ())
    }

    fn set_promisc(&self, bar: &Bar, on: bool) -> Result<()> {
        let flags = if on {
            vfmsg::PROMISC_UNICAST | vfmsg::PROMISC_MULTICAST
        } else {
            0
        };
        match self.pf.request(bar, &[vfmsg::SET_PROMISC | flags]) {
            Ok(_) => Ok(()),
            Err(e) if on => {
                // Linux's igb PF grants multicast promiscuous mode only: keep that much.
                let fallback = self
                    .pf
                    .request(bar, &[vfmsg::SET_PROMISC | vfmsg::PROMISC_MULTICAST]);
                Err(self.pf.promisc_refused(bar, e, fallback.map(|_| ())))
            }
            Err(e) => Err(bar.err(format!("promiscuous mode off: {e}"))),
        }
    }

    fn set_max_frame(&self, bar: &Bar, mfs: u32) -> Result<()> {
        // The PF's limit (VMOLR.RLPML) covers tagged frames too: room for two tags, as on
        // the PF.
        self.pf.max_frame(bar, mfs + 8)
    }

    fn set_vlan_strip(&self, _bar: &Bar, _q: usize, _on: bool) {}

    fn set_multicast(&self, bar: &Bar, list: &[MacAddr]) -> Result<()> {
        self.pf.multicast(bar, list)
    }

    fn set_vlan_filter(&self, bar: &Bar, vlan: u16, on: bool) -> Result<()> {
        self.pf.vlan(bar, vlan, on)
    }

    fn xstats(&self, out: &mut Vec<(String, u64)>) {
        self.pf.xstats(out);
    }

    /// MSI-X (82576 7.9.x, VF registers 8.28): three vectors; rx queue 0 on vector 0 and
    /// the mailbox (the PF's notices, link changes among them) on the next, with one rx
    /// queue vector 1.
    const MSIX: Option<MsixRegs> = Some(MsixRegs {
        eims: vfregs::EIMS,
        eimc: vfregs::EIMC,
        mask_all: 0x7,
        eiac: vfregs::EIAC,
        eiam: vfregs::EIAM,
        eicr: vfregs::EICR,
        gpie: None,
        ivar_misc: (vfregs::IVAR_MISC, 0),
        rx_ivar: |q| (vfregs::IVAR0, if q == 0 { 0 } else { 16 }),
        link: LinkCause::Eicr(1 << 1),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_the_datasheet() {
        let q = vfregs::QUEUES;
        assert_eq!(
            (q.rdbal(0), q.srrctl(0), q.rdt(0), q.rxdctl(0)),
            (0x2800, 0x280C, 0x2818, 0x2828)
        );
        assert_eq!(
            (q.rdbal(1), q.tdbal(1), q.txdctl(1)),
            (0x2900, 0x3900, 0x3928)
        );
        assert_eq!((vfregs::MBX_CTL, vfregs::MBX_MEM), (0xC40, 0x800));
        assert_eq!(vfmsg::SET_PROMISC, 6);
    }

    #[test]
    fn the_driver_claims_the_vf() {
        use pmd_core::ethdev::Driver;
        assert_eq!(VF_DRIVER.name(), "net_e1000_igb_vf");
        assert!(VF_DRIVER.pci_ids().contains(&intel_id(0x10CA)));
    }
}
