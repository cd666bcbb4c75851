//! The 82599 / X540 / X550 virtual function (`net_ixgbe_vf`, PCI 8086:10ed and the
//! later chips' VF ids): an SR-IOV function whose PF belongs to another driver (Linux's
//! ixgbe, or the 82599 model's PF). Its queue registers are its own; its MAC address,
//! frame size, filters and promiscuous mode are the PF's to grant, asked for over the
//! mailbox ([`pmd_intel::vf::PfPeer`]). After the reset the VF negotiates the mailbox
//! API (1.3 down to 1.0; 1.5 and later change the mailbox's locking and are not offered)
//! and, from 1.1, asks how many queues its pool has.
//!
//! Register offsets: 82599 datasheet 8.3.5 (VF registers).

use crate::dev::{RXD_ERR_IPE, RXD_ERR_L4E, RXD_ERR_RXE};
use crate::regs::{RXDCTL_VME, SRRCTL_DROP_EN};
use pmd_core::ethdev::{Link, MacAddr, PciId};
use pmd_core::Result;
use pmd_intel::mailbox::MbxLayout;
use pmd_intel::vf::{PfPeer, VfRegs};
use pmd_intel::{intel_id, Bar, Chip, CounterSpec, IntelDevice, IntelDriver, QueueLayout};
use pmd_intel::{RegBits, RssRegs, RxCsumBits};
use std::cell::Cell;

/// Driver name (as DPDK's).
pub const VF_DRIVER_NAME: &str = "net_ixgbe_vf";

/// The VFs of the 82599, X540, X550, X550EM_X and X550EM_A, and their variants under a
/// hypervisor.
pub const VF_PCI_IDS: &[PciId] = &[
    intel_id(0x10ED), // 82599 VF
    intel_id(0x152E), // 82599 VF (Hyper-V)
    intel_id(0x1515), // X540 VF
    intel_id(0x1530), // X540 VF (Hyper-V)
    intel_id(0x1565), // X550 VF
    intel_id(0x1564), // X550 VF (Hyper-V)
    intel_id(0x15A8), // X550EM_X VF
    intel_id(0x15A9), // X550EM_X VF (Hyper-V)
    intel_id(0x15C5), // X550EM_A VF
    intel_id(0x15B4), // X550EM_A VF (Hyper-V)
];

/// The driver instance to list in an application's driver table.
pub static VF_DRIVER: IntelDriver<X82599Vf> = IntelDriver::new();

/// An initialised 82599-family VF.
pub type IxgbeVf = IntelDevice<X82599Vf>;

/// VF register map (82599 8.3.5).
pub mod vfregs {
    use pmd_intel::QueueLayout;

    /// The VF's BAR 0: 16 KiB.
    pub const BAR0_LEN: usize = 0x4000;
    /// VF Control (VFCTRL).
    pub const CTRL: usize = 0x0000;
    /// VFCTRL: reset this VF (self-clearing).
    pub const CTRL_RST: u32 = 1 << 26;
    /// VF Link Status (VFLINKS): the PF's link.
    pub const LINKS: usize = 0x0010;
    /// VFLINKS: link up.
    pub const LINKS_UP: u32 = 1 << 30;
    /// VFLINKS: speed field shift (bits 29:28: 11b 10 Gb/s, 10b 1 Gb/s, 01b 100 Mb/s).
    pub const LINKS_SPEED_SHIFT: u32 = 28;
    /// Extended interrupt mask clear (VTEIMC).
    pub const EIMC: usize = 0x010C;
    /// VF mailbox memory (VFMBMEM), 16 words.
    pub const MBX_MEM: usize = 0x0200;
    /// VF mailbox control (VFMAILBOX).
    pub const MBX_CTL: usize = 0x02FC;
    /// Queue 0's registers: VFRDBAL at 0x1000, VFTDBAL at 0x2000, VFSRRCTL 0x14 into
    /// the rx block, 0x40 between queues.
    pub const QUEUES: QueueLayout = QueueLayout::new(0x1000, 0x2000, 0x14);
    /// Good packets received (free-running, 32 bits).
    pub const VFGPRC: usize = 0x101C;
    /// Good octets received, low 32 of 36 bits (read first).
    pub const VFGORC_LSB: usize = 0x1020;
    /// Good octets received, high 4 bits.
    pub const VFGORC_MSB: usize = 0x1024;
    /// Multicast packets received.
    pub const VFMPRC: usize = 0x1034;
    /// Good packets transmitted.
    pub const VFGPTC: usize = 0x201C;
    /// Good octets transmitted, low 32 of 36 bits.
    pub const VFGOTC_LSB: usize = 0x2020;
    /// Good octets transmitted, high 4 bits.
    pub const VFGOTC_MSB: usize = 0x2024;
}

/// Messages of Linux's ixgbe PF beyond the shared ones ([`pmd_intel::vf::vfmsg`]).
pub mod vfmsg {
    /// Mailbox API negotiation: word 1 the API's number.
    pub const API_NEGOTIATE: u32 = 0x08;
    /// Queue counts of the VF's pool (API 1.1 on): tx in word 1, rx in word 2.
    pub const GET_QUEUES: u32 = 0x09;
    /// Multicast / promiscuous mode (API 1.2 on): word 1 the mode.
    pub const UPDATE_XCAST_MODE: u32 = 0x0C;
    /// API numbers as the PF counts them (not their version numbers).
    pub const API_10: u32 = 0;
    /// API 1.1.
    pub const API_11: u32 = 2;
    /// API 1.2.
    pub const API_12: u32 = 3;
    /// API 1.3.
    pub const API_13: u32 = 4;
    /// XCAST mode: its own addresses, broadcast and the multicast list.
    pub const XCAST_MULTI: u32 = 1;
    /// XCAST mode: all multicast.
    pub const XCAST_ALLMULTI: u32 = 2;
    /// XCAST mode: promiscuous (API 1.3).
    pub const XCAST_PROMISC: u32 = 3;
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

/// The 82599-family VF: its PF peer and the mailbox API agreed on.
#[derive(Debug)]
pub struct X82599Vf {
    pf: PfPeer,
    /// The negotiated API (a [`vfmsg`] `API_*` number).
    api: Cell<u32>,
}

impl Default for X82599Vf {
    fn default() -> X82599Vf {
        X82599Vf {
            pf: PfPeer::new(REGS),
            api: Cell::new(vfmsg::API_10),
        }
    }
}

impl X82599Vf {
    /// Reset, then the newest mailbox API the PF takes and the pool's queue counts.
    fn reset_vf(&self, bar: &Bar) -> Result<MacAddr> {
        let (mac, _) = self.pf.reset(bar)?;
        self.api.set(vfmsg::API_10);
        for api in [vfmsg::API_13, vfmsg::API_12, vfmsg::API_11] {
            if self
                .pf
                .ask(bar, "mailbox API", &[vfmsg::API_NEGOTIATE, api, 0])
                .is_ok()
            {
                self.api.set(api);
                break;
            }
        }
        if self.api.get() >= vfmsg::API_11 {
            let q = self
                .pf
                .ask(bar, "queue count", &[vfmsg::GET_QUEUES, 0, 0, 0, 0])?;
            tracing::debug!(device = bar.name(), tx = q[1], rx = q[2], "VF pool queues");
            if q[1] == 0 || q[2] == 0 {
                return Err(bar.err(format!(
                    "the PF gives this VF {} tx and {} rx queues; it needs one of each",
                    q[1], q[2]
                )));
            }
        }
        Ok(mac)
    }
}

impl Chip for X82599Vf {
    const DRIVER: &'static str = VF_DRIVER_NAME;
    const CHIP: &'static str = "82599 VF";
    const DESCRIPTION: &'static str =
        "Intel 82599/X540/X550 SR-IOV virtual function (create with `pmd-setup sriov PF N`, bind with `pmd-setup bind ADDR`, then -a ADDR)";
    const PCI_IDS: &'static [PciId] = VF_PCI_IDS;
    const BAR0_LEN: usize = vfregs::BAR0_LEN;
    const LAYOUT: QueueLayout = vfregs::QUEUES;
    /// The PF configures the pool's RSS.
    const RSS: Option<RssRegs> = None;
    /// One receive queue (spreading is the PF's); two transmit queues.
    const MAX_QUEUES: (u16, u16) = (1, 2);
    const RX_ERR: u32 = RXD_ERR_RXE;
    const RX_CSUM: RxCsumBits = RxCsumBits {
        ip_err: RXD_ERR_IPE,
        l4_err: RXD_ERR_L4E,
    };
    const TXDCTL: u32 = 32 | 1 << 8;
    const SRRCTL_DROP_EN: u32 = SRRCTL_DROP_EN;
    const RX_ENABLE: Option<RegBits> = None;
    const TX_ENABLE: Option<RegBits> = None;
    const RAL0: usize = 0;
    const GOOD_COUNTERS: &'static [CounterSpec] = &[
        CounterSpec::running("rx_good_packets", vfregs::VFGPRC),
        CounterSpec::running_split("rx_good_bytes", vfregs::VFGORC_LSB, vfregs::VFGORC_MSB, 36),
        CounterSpec::running("tx_good_packets", vfregs::VFGPTC),
        CounterSpec::running_split("tx_good_bytes", vfregs::VFGOTC_LSB, vfregs::VFGOTC_MSB, 36),
    ];
    const COUNTERS: &'static [CounterSpec] =
        &[CounterSpec::running("rx_multicast_packets", vfregs::VFMPRC)];
    const PROMISC_AT_START: bool = false;

    fn bring_up(&self, bar: &Bar) -> Result<MacAddr> {
        self.reset_vf(bar)
    }

    fn release(&self, bar: &Bar) {
        self.pf.release(bar);
    }

    fn reset(&self, bar: &Bar) -> Result<()> {
        self.reset_vf(bar).map(|_| ())
    }

    fn start_link(&self, _bar: &Bar) {}

    fn link(&self, bar: &Bar) -> Link {
        let l = bar.rd(vfregs::LINKS);
        if self.pf.pf_gone(bar) || l & vfregs::LINKS_UP == 0 {
            return Link::default();
        }
        Link {
            up: true,
            speed_mbps: match (l >> vfregs::LINKS_SPEED_SHIFT) & 3 {
                3 => 10_000,
                2 => 1000,
                1 => 100,
                _ => 10,
            },
            full_duplex: true,
        }
    }

    fn configure(&self, bar: &Bar) -> Result<()> {
        // After a PF reset, start again from a reset (the PF forgot this VF), then agree
        // on the API again.
        if self.pf.pf_gone(bar) {
            self.reset_vf(bar)?;
        }
        Ok(())
    }

    fn set_promisc(&self, bar: &Bar, on: bool) -> Result<()> {
        if self.api.get() < vfmsg::API_12 {
            return if on {
                Err(bar.err("the PF's mailbox API (below 1.2) has no promiscuous mode for a VF"))
            } else {
                Ok(())
            };
        }
        let mode = if on {
            vfmsg::XCAST_PROMISC
        } else {
            vfmsg::XCAST_MULTI
        };
        match self.pf.request(bar, &[vfmsg::UPDATE_XCAST_MODE, mode]) {
            Ok(a) if on && a[1] != mode => Err(bar.err(format!(
                "promiscuous mode: the PF applied mode {} instead (it does not trust this VF)",
                a[1]
            ))),
            Ok(_) => Ok(()),
            Err(e) if on => {
                // Keep what the PF may grant: every multicast frame.
                let fallback = self
                    .pf
                    .request(bar, &[vfmsg::UPDATE_XCAST_MODE, vfmsg::XCAST_ALLMULTI]);
                Err(self.pf.promisc_refused(bar, e, fallback.map(|_| ())))
            }
            Err(e) => Err(bar.err(format!("multicast mode: {e}"))),
        }
    }

    fn set_max_frame(&self, bar: &Bar, mfs: u32) -> Result<()> {
        // The PF's limit counts the CRC, like MAXFRS; tagged frames are 4 bytes longer.
        self.pf.max_frame(bar, mfs)
    }

    fn set_vlan_strip(&self, bar: &Bar, q: usize, on: bool) {
        // The VF's own RXDCTL has the strip bit (82599 8.3.5.x VFRXDCTL.VME).
        bar.set_bits_to(vfregs::QUEUES.rxdctl(q), RXDCTL_VME, on);
    }

    fn set_multicast(&self, bar: &Bar, list: &[MacAddr]) -> Result<()> {
        self.pf.multicast(bar, list)
    }

    fn set_vlan_filter(&self, bar: &Bar, vlan: u16, on: bool) -> Result<()> {
        self.pf.vlan(bar, vlan, on)
    }

    fn xstats(&self, out: &mut Vec<(String, u64)>) {
        self.pf.xstats(out);
        out.push(("mbx_api".into(), u64::from(self.api.get())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_the_datasheet() {
        let q = vfregs::QUEUES;
        assert_eq!(
            (q.rdbal(0), q.srrctl(0), q.rdt(0), q.rxdctl(1)),
            (0x1000, 0x1014, 0x1018, 0x1068)
        );
        assert_eq!(
            (q.tdbal(1), q.tdt(0), q.txdctl(0)),
            (0x2040, 0x2018, 0x2028)
        );
        assert_eq!(
            (vfregs::MBX_CTL, vfregs::MBX_MEM, vfregs::LINKS),
            (0x2FC, 0x200, 0x10)
        );
        assert_eq!(
            (
                vfmsg::API_NEGOTIATE,
                vfmsg::GET_QUEUES,
                vfmsg::UPDATE_XCAST_MODE
            ),
            (8, 9, 0x0C)
        );
        assert_eq!(
            (vfmsg::API_10, vfmsg::API_11, vfmsg::API_12, vfmsg::API_13),
            (0, 2, 3, 4)
        );
    }

    #[test]
    fn the_driver_claims_the_vfs() {
        use pmd_core::ethdev::Driver;
        assert_eq!(VF_DRIVER.name(), "net_ixgbe_vf");
        assert!(VF_DRIVER.pci_ids().contains(&intel_id(0x10ED)));
        assert!(VF_DRIVER.pci_ids().contains(&intel_id(0x1565)));
    }
}
