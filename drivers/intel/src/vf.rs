//! What the virtual-function drivers share: the VF's side of its physical function
//! ([`PfPeer`]): reset through the mailbox, the MAC address the PF holds (or one the VF
//! picks), frame size, multicast list and VLAN filter requests, and noticing a PF reset.
//! The message types below are the same for Linux's igb and ixgbe PFs; each VF driver
//! adds its own (igb's promiscuous flags, ixgbe's API negotiation and queue count).

use crate::bar::Bar;
use crate::mailbox::{self, msg, BarMbx, Mailbox, MbxError, MbxLayout, PfEvent};
use pmd_core::ethdev::MacAddr;
use pmd_core::Result;
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::time::Duration;

/// Message types both PFs take (first word, bits 15:0).
pub mod vfmsg {
    /// Reset: answered with the VF's MAC address in words 1-2 (ACK) or none (NACK).
    pub const RESET: u32 = 0x01;
    /// Set the VF's MAC address (words 1-2).
    pub const SET_MAC_ADDR: u32 = 0x02;
    /// Multicast hash list: count in the info field, 16-bit hashes from word 1.
    pub const SET_MULTICAST: u32 = 0x03;
    /// Add (info bit 0) or remove a VLAN filter, VLAN id in word 1.
    pub const SET_VLAN: u32 = 0x04;
    /// Largest receive frame (word 1, bytes with CRC).
    pub const SET_LPE: u32 = 0x05;
    /// SET_VLAN: add (else remove).
    pub const VLAN_ADD: u32 = 1 << 16;
    /// Most multicast hashes per SET_MULTICAST.
    pub const MAX_MULTICAST: usize = 30;
    /// PF to VF, unasked: a control notice (link change, PF reset done).
    pub const PF_CONTROL: u32 = 0x0100;
}

/// Where a VF's reset and mailbox registers are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VfRegs {
    /// The VF's control register.
    pub ctrl: usize,
    /// Its reset bit (self-clearing).
    pub ctrl_rst: u32,
    /// The extended interrupt mask clear register (every cause masked at reset).
    pub eimc: usize,
    /// The mailbox.
    pub mbx: MbxLayout,
}

/// The VF's side of its PF: the mailbox and what the PF was last told.
#[derive(Debug)]
pub struct PfPeer {
    regs: VfRegs,
    mbx: Mailbox,
    /// The frame size the PF last accepted (0: none sent since the reset).
    max_frame: Cell<u32>,
    /// A PF reset was seen and the VF has not been reset since.
    pf_reset: Cell<bool>,
    /// The address in use, kept across resets (a PF forgets one it did not set).
    mac: Cell<Option<MacAddr>>,
    /// The multicast list and VLAN filters asked for: a VF reset makes the PF forget
    /// them, so they are asked for again after one.
    filters: RefCell<Filters>,
}

/// What the VF asked the PF to filter for it.
#[derive(Debug, Default)]
struct Filters {
    multicast: Vec<MacAddr>,
    vlans: BTreeSet<u16>,
}

impl PfPeer {
    /// The peer of a VF whose registers are at `regs`.
    pub fn new(regs: VfRegs) -> PfPeer {
        PfPeer {
            regs,
            mbx: Mailbox::default(),
            max_frame: Cell::new(0),
            pf_reset: Cell::new(false),
            mac: Cell::new(None),
            filters: RefCell::default(),
        }
    }

    fn port<'a>(&self, bar: &'a Bar) -> BarMbx<'a> {
        BarMbx::new(bar, self.regs.mbx)
    }

    /// One request, the mailbox's own error kept (for a driver that words its own
    /// message). A PF reset seen on the way is remembered (link down until a VF reset).
    pub fn request(
        &self,
        bar: &Bar,
        words: &[u32],
    ) -> std::result::Result<[u32; mailbox::WORDS], MbxError> {
        self.mbx.request(&self.port(bar), words).inspect_err(|e| {
            if *e == MbxError::PfReset {
                self.pf_reset.set(true);
            }
        })
    }

    /// One request; the PF's refusal, silence or garbage becomes a driver error naming
    /// `what`.
    pub fn ask(&self, bar: &Bar, what: &str, words: &[u32]) -> Result<[u32; mailbox::WORDS]> {
        self.request(bar, words)
            .map_err(|e| bar.err(format!("{what}: {e}")))
    }

    /// Resets the VF and tells the PF. Returns the MAC address the PF holds for the VF
    /// (without one, the address used before, or a random locally administered one, is
    /// set through the PF) and the PF's whole answer (ixgbe's carries more words).
    pub fn reset(&self, bar: &Bar) -> Result<(MacAddr, [u32; mailbox::WORDS])> {
        self.release(bar);
        // The reset takes effect within microseconds; RSTI then shows until the PF is done.
        std::thread::sleep(Duration::from_millis(1));
        let r = self.port(bar);
        self.mbx
            .wait_reset_done(&r)
            .map_err(|e| bar.err(format!("VF reset: {e}")))?;
        let a = self
            .mbx
            .request_nack_ok(&r, &[vfmsg::RESET])
            .map_err(|e| bar.err(format!("VF reset message: {e}")))?;
        self.pf_reset.set(false);
        self.max_frame.set(0);
        let held = MacAddr(mailbox::mac_from_words([a[1], a[2]]));
        if a[0] & msg::ACK != 0 && held.0 != [0; 6] && held.0[0] & 1 == 0 {
            self.mac.set(Some(held));
            self.restore_filters(bar);
            return Ok((held, a));
        }
        let fresh = self.mac.get().is_none();
        let mac = self.mac.get().unwrap_or_else(random_local_mac);
        let w = mailbox::mac_to_words(mac.0);
        self.ask(
            bar,
            "setting a MAC address (the PF has none for this VF; give it one with \
             `ip link set PF vf N mac ADDR`)",
            &[vfmsg::SET_MAC_ADDR, w[0], w[1]],
        )?;
        if fresh {
            tracing::info!(device = bar.name(), %mac, "the PF had no MAC address for this VF: using a random one");
        }
        self.mac.set(Some(mac));
        self.restore_filters(bar);
        Ok((mac, a))
    }

    /// Asks again for the multicast list and VLAN filters the PF forgot at the reset; a
    /// refusal now is logged (the request was granted before: the PF's policy changed).
    fn restore_filters(&self, bar: &Bar) {
        let f = self.filters.borrow();
        if !f.multicast.is_empty() {
            if let Err(e) = self.send_multicast(bar, &f.multicast) {
                tracing::warn!(device = bar.name(), "multicast list after a reset: {e}");
            }
        }
        for &v in &f.vlans {
            if let Err(e) = self.send_vlan(bar, v, true) {
                tracing::warn!(device = bar.name(), "VLAN {v} filter after a reset: {e}");
            }
        }
    }

    /// Asks the PF to deliver the multicast addresses `list` (at most 30) to this VF; the
    /// list is asked for again after each reset.
    pub fn multicast(&self, bar: &Bar, list: &[MacAddr]) -> Result<()> {
        self.send_multicast(bar, list)?;
        self.filters.borrow_mut().multicast = list.to_vec();
        Ok(())
    }

    fn send_multicast(&self, bar: &Bar, list: &[MacAddr]) -> Result<()> {
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
            words[1 + i / 2] |= u32::from(mc_hash(m.0)) << (16 * (i % 2));
        }
        let n = 1 + list.len().div_ceil(2);
        self.ask(bar, "multicast list", &words[..n]).map(|_| ())
    }

    /// Asks the PF to add (or remove) a filter for VLAN `vlan`; the filters added are
    /// asked for again after each reset.
    pub fn vlan(&self, bar: &Bar, vlan: u16, on: bool) -> Result<()> {
        self.send_vlan(bar, vlan, on)?;
        let mut f = self.filters.borrow_mut();
        if on {
            f.vlans.insert(vlan);
        } else {
            f.vlans.remove(&vlan);
        }
        Ok(())
    }

    fn send_vlan(&self, bar: &Bar, vlan: u16, on: bool) -> Result<()> {
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

    /// Asks the PF to take frames of up to `size` bytes (with CRC) for this VF, once per
    /// size.
    pub fn max_frame(&self, bar: &Bar, size: u32) -> Result<()> {
        if self.max_frame.get() == size {
            return Ok(());
        }
        self.ask(
            bar,
            &format!("a {size}-byte frame size"),
            &[vfmsg::SET_LPE, size],
        )?;
        self.max_frame.set(size);
        Ok(())
    }

    /// Looks for news from the PF without waiting; returns whether the VF must reset
    /// before the PF serves it again (a PF reset seen now or before).
    pub fn pf_gone(&self, bar: &Bar) -> bool {
        match self.mbx.poll(&self.port(bar)) {
            PfEvent::Reset => {
                if !self.pf_reset.replace(true) {
                    tracing::warn!(
                        device = bar.name(),
                        "the PF reset: link down until the port is configured again"
                    );
                }
            }
            PfEvent::Message(m) => {
                // A notice without CTS: the PF no longer takes this VF's requests.
                if m & msg::TYPE_MASK == vfmsg::PF_CONTROL && m & msg::CTS == 0 {
                    self.pf_reset.set(true);
                }
                tracing::debug!(device = bar.name(), "PF message {m:#x}");
            }
            PfEvent::None => {}
        }
        self.pf_reset.get()
    }

    /// Resets the VF again if a PF reset was seen, now or before (called when the port
    /// is configured). Returns whether it did.
    pub fn recover(&self, bar: &Bar) -> Result<bool> {
        if self.pf_gone(bar) {
            self.reset(bar)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// The error for a refused promiscuous request, `fallback` the outcome of asking for
    /// what the PF may grant instead (all multicast), which the message reports.
    pub fn promisc_refused(
        &self,
        bar: &Bar,
        e: MbxError,
        fallback: std::result::Result<(), MbxError>,
    ) -> pmd_core::Error {
        let kept = match fallback {
            Ok(()) => "it gets its own MAC, broadcast and all multicast".to_string(),
            Err(f) => format!("all-multicast was refused too: {f}"),
        };
        bar.err(format!(
            "promiscuous mode: {e}: the PF does not let this VF receive other unicast addresses ({kept})"
        ))
    }

    /// Masks the VF's interrupts and resets it (at close, and as the first step of
    /// [`PfPeer::reset`]): its queues stop; the PF keeps its settings.
    pub fn release(&self, bar: &Bar) {
        bar.wr(self.regs.eimc, u32::MAX);
        bar.wr(self.regs.ctrl, self.regs.ctrl_rst);
    }

    /// The mailbox counts as xstats.
    pub fn xstats(&self, out: &mut Vec<(String, u64)>) {
        self.mbx.xstats(out);
    }
}

/// The 12-bit multicast table index both chips compute with filter type 0 (destination
/// address bits 47:36), which is what the PFs want in SET_MULTICAST.
pub fn mc_hash(mac: [u8; 6]) -> u16 {
    (u16::from(mac[4]) >> 4 | u16::from(mac[5]) << 4) & 0xfff
}

/// A random locally administered unicast address.
fn random_local_mac() -> MacAddr {
    let mut b = [0u8; 8];
    // SAFETY: b is a valid, writable 8-byte buffer for the length passed.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // No getrandom (very old kernels): the clock is random enough for an address.
        b = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x5eed, |d| d.as_nanos() as u64)
            .to_le_bytes();
    }
    MacAddr([b[0] & 0xfe | 0x02, b[1], b[2], b[3], b[4], b[5]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_types_are_the_pfs() {
        assert_eq!(
            (
                vfmsg::RESET,
                vfmsg::SET_MAC_ADDR,
                vfmsg::SET_MULTICAST,
                vfmsg::SET_VLAN,
                vfmsg::SET_LPE,
                vfmsg::PF_CONTROL
            ),
            (1, 2, 3, 4, 5, 0x100)
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
}
