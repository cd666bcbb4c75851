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
use pmd_intel::mailbox::{self, msg, BarMbx, Mailbox, MbxError, MbxLayout, PfEvent};
use pmd_intel::{intel_id, Bar, Chip, CounterSpec, IntelDevice, QueueLayout, RegBits, RssRegs};
use pmd_intel::{IntelDriver, RxCsumBits};
use std::cell::Cell;

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
    /// Extended interrupt mask clear (VTEIMC).
    pub const EIMC: usize = 0x1528;
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

/// Messages of Linux's igb PF (first word's type field).
pub mod vfmsg {
    /// Reset: answered with the VF's MAC address (ACK) or none set (NACK).
    pub const RESET: u32 = 0x01;
    /// Set the VF's MAC address (words 1-2).
    pub const SET_MAC_ADDR: u32 = 0x02;
    /// Multicast hash list: count in the info field, 16-bit hashes from word 1.
    pub const SET_MULTICAST: u32 = 0x03;
    /// Add (info bit 0) or remove a VLAN filter, VLAN id in word 1.
    pub const SET_VLAN: u32 = 0x04;
    /// Largest receive frame (word 1, with CRC).
    pub const SET_LPE: u32 = 0x05;
    /// Promiscuous flags in the info field.
    pub const SET_PROMISC: u32 = 0x06;
    /// SET_VLAN: add (else remove).
    pub const VLAN_ADD: u32 = 1 << 16;
    /// SET_PROMISC: unicast promiscuous.
    pub const PROMISC_UNICAST: u32 = 1 << 16;
    /// SET_PROMISC: multicast promiscuous.
    pub const PROMISC_MULTICAST: u32 = 2 << 16;
    /// Most multicast hashes per SET_MULTICAST.
    pub const MAX_MULTICAST: usize = 30;
    /// PF to VF, unasked: control notice (e.g. link changed).
    pub const PF_CONTROL: u32 = 0x0100;
}

const MBX: MbxLayout = MbxLayout {
    ctl: vfregs::MBX_CTL,
    mem: vfregs::MBX_MEM,
};

/// The 82576 VF: its mailbox to the PF and what the PF was last told.
#[derive(Debug, Default)]
pub struct I82576Vf {
    mbx: Mailbox,
    /// The frame size the PF last accepted (0: none sent).
    max_frame: Cell<u32>,
    /// A PF reset was seen and the VF has not been reset since: link down.
    pf_reset: Cell<bool>,
    /// The address in use, kept across resets (the PF forgets one it did not set).
    mac: Cell<Option<MacAddr>>,
}

impl I82576Vf {
    fn regs<'a>(bar: &'a Bar) -> BarMbx<'a> {
        BarMbx::new(bar, MBX)
    }

    /// One request, the PF's refusal or silence turned into a driver error.
    fn ask(&self, bar: &Bar, what: &str, words: &[u32]) -> Result<[u32; mailbox::WORDS]> {
        self.mbx.request(&Self::regs(bar), words).map_err(|e| {
            if e == MbxError::PfReset {
                self.pf_reset.set(true);
            }
            bar.err(format!("{what}: {e}"))
        })
    }

    /// Resets the VF and tells the PF, which answers with the MAC address it holds for
    /// this VF (none: a random locally administered one is set through the PF).
    fn reset_vf(&self, bar: &Bar) -> Result<MacAddr> {
        bar.wr(vfregs::EIMC, u32::MAX);
        bar.wr(vfregs::CTRL, vfregs::CTRL_RST);
        // The reset takes effect within microseconds; RSTI then shows until the PF is done.
        std::thread::sleep(std::time::Duration::from_millis(1));
        let r = Self::regs(bar);
        self.mbx
            .wait_reset_done(&r)
            .map_err(|e| bar.err(format!("VF reset: {e}")))?;
        let a = self
            .mbx
            .request_nack_ok(&r, &[vfmsg::RESET])
            .map_err(|e| bar.err(format!("VF reset message: {e}")))?;
        self.pf_reset.set(false);
        self.max_frame.set(0);
        let mac = mailbox::mac_from_words([a[1], a[2]]);
        if a[0] & msg::ACK != 0 && mac != [0; 6] && mac[0] & 1 == 0 {
            self.mac.set(Some(MacAddr(mac)));
            return Ok(MacAddr(mac));
        }
        let fresh = self.mac.get().is_none();
        let mac = self.mac.get().unwrap_or_else(random_local_mac);
        let w = mailbox::mac_to_words(mac.0);
        self.ask(bar, "setting a MAC address (the PF has none for this VF; give it one with `ip link set PF vf N mac ADDR`)", &[vfmsg::SET_MAC_ADDR, w[0], w[1]])?;
        if fresh {
            tracing::info!(device = bar.name(), %mac, "the PF had no MAC address for this VF: using a random one");
        }
        self.mac.set(Some(mac));
        Ok(mac)
    }

    /// Asks the PF to deliver the multicast addresses `list` (at most 30) to this VF.
    fn multicast(&self, bar: &Bar, list: &[MacAddr]) -> Result<()> {
        if list.len() > vfmsg::MAX_MULTICAST {
            return Err(bar.err(format!(
                "{} multicast addresses: a VF takes at most {}",
                list.len(),
                vfmsg::MAX_MULTICAST
            )));
        }
        let mut words = [0u32; mailbox::WORDS];
        words[0] = vfmsg::SET_MULTICAST | (list.len() as u32) << msg::INFO_SHIFT;
        for (i, m) in list.iter().enumerate() {
            let h = u32::from(mc_hash(m.0));
            words[1 + i / 2] |= h << (16 * (i % 2));
        }
        let n = 1 + list.len().div_ceil(2);
        self.ask(bar, "multicast list", &words[..n]).map(|_| ())
    }

    /// Asks the PF to add (or remove) a VLAN filter for this VF.
    fn vlan(&self, bar: &Bar, vlan: u16, on: bool) -> Result<()> {
        if vlan > 4095 {
            return Err(bar.err(format!("VLAN {vlan}: ids are 0..=4095")));
        }
        let add = if on { vfmsg::VLAN_ADD } else { 0 };
        self.ask(
            bar,
            "VLAN filter",
            &[vfmsg::SET_VLAN | add, u32::from(vlan)],
        )
        .map(|_| ())
    }

    /// The mailbox's counts.
    pub fn mailbox(&self) -> &Mailbox {
        &self.mbx
    }
}

/// The 12-bit multicast table index the 82576 computes (filter type 0: destination
/// address bits 47:36), which is what the PF wants in SET_MULTICAST.
pub fn mc_hash(mac: [u8; 6]) -> u16 {
    (u16::from(mac[4]) >> 4 | u16::from(mac[5]) << 4) & 0xfff
}

/// A random locally administered unicast address.
fn random_local_mac() -> MacAddr {
    let mut b = [0u8; 8];
    // getrandom(2) fills at most 256 bytes at once and never fails for 8 unless the
    // kernel lacks it; the time is the fallback.
    // SAFETY: b is a valid 8-byte buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        b = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x5eed, |d| d.as_nanos() as u64)
            .to_le_bytes();
    }
    MacAddr([b[0] & 0xfe | 0x02, b[1], b[2], b[3], b[4], b[5]])
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
        self.reset_vf(bar)
    }

    fn release(&self, bar: &Bar) {
        // A reset stops the VF's queues; the PF learns of it and keeps the VF's settings.
        bar.wr(vfregs::EIMC, u32::MAX);
        bar.wr(vfregs::CTRL, vfregs::CTRL_RST);
    }

    fn reset(&self, bar: &Bar) -> Result<()> {
        self.reset_vf(bar).map(|_| ())
    }

    fn start_link(&self, _bar: &Bar) {}

    fn link(&self, bar: &Bar) -> Link {
        match self.mbx.poll(&Self::regs(bar)) {
            PfEvent::Reset => {
                tracing::warn!(
                    device = bar.name(),
                    "the PF reset: link down until the port is restarted"
                );
                self.pf_reset.set(true);
            }
            PfEvent::Message(m) => {
                tracing::debug!(device = bar.name(), "PF message {m:#x}")
            }
            PfEvent::None => {}
        }
        let st = bar.rd(vfregs::STATUS);
        if self.pf_reset.get() || st & STATUS_LU == 0 {
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

    fn configure(&self, bar: &Bar) {
        if self.pf_reset.get() {
            // Start again from a reset (the PF forgot this VF's settings).
            if let Err(e) = self.reset_vf(bar) {
                tracing::warn!(device = bar.name(), "VF reset after a PF reset: {e}");
            }
        }
    }

    fn set_promisc(&self, bar: &Bar, on: bool) -> Result<()> {
        let flags = if on {
            vfmsg::PROMISC_UNICAST | vfmsg::PROMISC_MULTICAST
        } else {
            0
        };
        match self.ask(bar, "promiscuous mode", &[vfmsg::SET_PROMISC | flags]) {
            Ok(_) => Ok(()),
            Err(e) if on => {
                // Linux's igb PF grants multicast promiscuous mode only: keep that much.
                let _ = self.ask(
                    bar,
                    "multicast promiscuous mode",
                    &[vfmsg::SET_PROMISC | vfmsg::PROMISC_MULTICAST],
                );
                Err(bar.err(format!(
                    "{e}: the PF does not let this VF receive other unicast addresses \
                     (it gets its own MAC, broadcast and all multicast)"
                )))
            }
            Err(e) => Err(e),
        }
    }

    fn set_max_frame(&self, bar: &Bar, mfs: u32) -> Result<()> {
        if self.max_frame.get() == mfs {
            return Ok(());
        }
        self.ask(
            bar,
            &format!("a {mfs}-byte frame size"),
            &[vfmsg::SET_LPE, mfs],
        )?;
        self.max_frame.set(mfs);
        Ok(())
    }

    fn set_vlan_strip(&self, _bar: &Bar, _q: usize, _on: bool) {}

    fn set_multicast(&self, bar: &Bar, list: &[MacAddr]) -> Result<()> {
        self.multicast(bar, list)
    }

    fn set_vlan_filter(&self, bar: &Bar, vlan: u16, on: bool) -> Result<()> {
        self.vlan(bar, vlan, on)
    }

    fn xstats(&self, out: &mut Vec<(String, u64)>) {
        self.mbx.xstats(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_messages_match_the_datasheet_and_the_pf() {
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
        assert_eq!(
            (
                vfmsg::RESET,
                vfmsg::SET_MAC_ADDR,
                vfmsg::SET_MULTICAST,
                vfmsg::SET_VLAN,
                vfmsg::SET_LPE,
                vfmsg::SET_PROMISC
            ),
            (1, 2, 3, 4, 5, 6)
        );
    }

    #[test]
    fn multicast_hashes_are_bits_47_to_36() {
        assert_eq!(mc_hash([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]), 0x010);
        assert_eq!(mc_hash([0x33, 0x33, 0x00, 0x00, 0xf1, 0xab]), 0xabf);
    }

    #[test]
    fn random_macs_are_local_unicast() {
        let m = random_local_mac();
        assert_eq!(m.0[0] & 3, 2, "{m}");
    }

    #[test]
    fn the_driver_claims_the_vf() {
        use pmd_core::ethdev::Driver;
        assert_eq!(VF_DRIVER.name(), "net_e1000_igb_vf");
        assert!(VF_DRIVER.pci_ids().contains(&intel_id(0x10CA)));
    }
}
