//! The PF side of every VF's mailbox: the 82599's mailbox hardware (7.10.3.7) and what
//! Linux's ixgbe PF driver (`ixgbe_sriov.c`) answers, played by the model, since no PF
//! driver runs against it. A VF's request is taken synchronously in the register write
//! that raises REQ: PFACK, then the answer in the buffer and PFSTS, before the write
//! returns (a few microseconds of work, never a wait).
//!
//! What the PF holds for each VF ([`PfRecord`]): its MAC address (the administrator's,
//! or one the VF set when it has none), whether it is clear to send (it answered its
//! RESET since its last reset), the negotiated API, its frame size, multicast hashes,
//! VLANs and broadcast/multicast mode. The receive path reads it to pick frames for the
//! VF. Answers follow Linux: RESET gets four words and no CTS; a request from a VF that
//! is not clear to send gets NACK; every other answer carries CTS and ACK or NACK.
//!
//! A PF reset ([`pf_reset_begin`], from `Model82599::pf_reset` or the PF's own CTRL.RST
//! or function reset) raises RSTI in every VF's mailbox, stops the VFs' queues and makes
//! them not clear to send; requests meanwhile go unanswered. Its end ([`pf_reset_end`])
//! drops RSTI, raises RSTD and sends every VF a PF_CONTROL_MSG without CTS.
//!
//! Locking: each VF's [`VfCore`] mutex is a leaf, taken under the engine lock (receive
//! path, resets) or the timers lock (the end of a PF reset) or alone (register access).

use crate::conf::{is_unicast, MacAddr, MbxFault};
use crate::device::Device;
use crate::engine::Engine;
use crate::hw::STD_MAX_FRAME;
use crate::lock;
use crate::stats::bump;
use crate::vf::Vf;
use crate::vfregs::{api, mbx, msg, xcast, MBX_WORDS, VF_QUEUES};
use std::collections::BTreeSet;
use std::time::Instant;

/// The type of the garbage answer (`MbxFault::Garbage`): a message no PF sends.
const GARBAGE_TYPE: u32 = 0xFF;

/// One VF's mailbox registers as the hardware holds them.
#[derive(Debug, Default)]
pub(crate) struct MbxRegs {
    /// The shared buffer.
    pub words: [u32; MBX_WORDS],
    vfu: bool,
    pfsts: bool,
    pfack: bool,
    rsti: bool,
    rstd: bool,
    /// An unasked message waiting for the VF to let go of the buffer.
    pending: Option<u32>,
    /// The buffer holds a message (an answer or a notice) the VF has not acknowledged
    /// yet: nothing else may be written over it.
    unread: bool,
}

impl MbxRegs {
    /// The PF writes a one-word message unasked: into the buffer with PFSTS now, or once
    /// the VF has released the buffer and acknowledged what is in it.
    fn send(&mut self, word: u32) -> bool {
        if self.vfu || self.unread {
            self.pending = Some(word);
            return false;
        }
        self.words = [0; MBX_WORDS];
        self.words[0] = word;
        self.pfsts = true;
        self.unread = true;
        true
    }
}

/// What the PF's driver holds for one VF.
#[derive(Debug)]
pub(crate) struct PfRecord {
    /// The administrator's address (fixed for the VF).
    admin_mac: Option<MacAddr>,
    /// The address in use (frames to it go to the VF).
    pub mac: Option<MacAddr>,
    /// Clear to send: the PF answered the VF's RESET since the VF's last reset.
    pub cts: bool,
    /// Negotiated API ([`api`] values).
    api: u32,
    /// SET_LPE's frame size (bytes with CRC).
    max_frame: Option<u32>,
    /// SET_MULTICAST's hashes (at most 30).
    mc_hashes: Vec<u16>,
    /// SET_VLAN's VLANs.
    vlans: BTreeSet<u16>,
    /// UPDATE_XCAST_MODE's mode ([`xcast`] values).
    xcast: u32,
}

impl PfRecord {
    fn new(admin_mac: Option<MacAddr>) -> PfRecord {
        PfRecord {
            admin_mac,
            mac: admin_mac,
            cts: false,
            api: api::V1_0,
            max_frame: None,
            mc_hashes: Vec::new(),
            vlans: BTreeSet::new(),
            xcast: xcast::MULTI,
        }
    }

    /// The VF reset (Linux's `ixgbe_vf_reset_event`): not clear to send, API 1.0, no
    /// multicast hashes, VLANs or frame size, and no address unless the administrator
    /// set one.
    fn reset_event(&mut self) {
        *self = PfRecord::new(self.admin_mac);
    }

    /// Whether the VF takes group (broadcast or multicast) frame `dst`.
    pub fn takes_group(&self, dst: &MacAddr) -> bool {
        if !self.cts {
            return false;
        }
        if *dst == [0xff; 6] {
            return true;
        }
        match self.xcast {
            xcast::NONE => false,
            xcast::MULTI => self.mc_hashes.contains(&mc_hash(dst)),
            _ => true,
        }
    }

    /// The longest frame (with CRC) the VF takes: its SET_LPE size, else 1518; four more
    /// for a VLAN-tagged frame.
    pub fn max_frame(&self, vlan: bool) -> usize {
        let base = self.max_frame.map_or(STD_MAX_FRAME, |n| n as usize);
        base + if vlan { 4 } else { 0 }
    }
}

/// The multicast table index of `dst` with filter type 0: address bits 47:36.
pub(crate) fn mc_hash(dst: &MacAddr) -> u16 {
    (u16::from(dst[4]) >> 4 | u16::from(dst[5]) << 4) & 0xfff
}

/// A VF's mailbox and the PF's record of it, under one lock.
#[derive(Debug)]
pub(crate) struct VfCore {
    /// The mailbox registers.
    pub mbx: MbxRegs,
    /// What the PF holds.
    pub pf: PfRecord,
}

impl VfCore {
    /// Power-on state: no PF reset in progress, not clear to send.
    pub fn new(admin_mac: Option<MacAddr>) -> VfCore {
        VfCore {
            mbx: MbxRegs::default(),
            pf: PfRecord::new(admin_mac),
        }
    }
}

/// What the PF holds for a VF (`Model82599::vf_info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfInfo {
    /// The address in use: frames to it go to the VF.
    pub mac: Option<MacAddr>,
    /// The administrator's address (`ModelConf::vf_macs`, `Model82599::set_vf_mac`).
    pub admin_mac: Option<MacAddr>,
    /// The VF completed its RESET exchange and the PF takes its requests.
    pub clear_to_send: bool,
    /// A PF reset is in progress (RSTI).
    pub pf_resetting: bool,
    /// The negotiated mailbox API (`vfregs::api` values; 0 is 1.0).
    pub api: u32,
    /// The frame size SET_LPE set (bytes with CRC), if any.
    pub max_frame: Option<u32>,
    /// The multicast hashes SET_MULTICAST set.
    pub mc_hashes: Vec<u16>,
    /// The VLANs SET_VLAN added, ascending.
    pub vlans: Vec<u16>,
    /// The broadcast/multicast mode (`vfregs::xcast` values).
    pub xcast_mode: u32,
}

/// The PF's record of `vf`, for tests and the handle.
pub(crate) fn info(vf: &Vf) -> VfInfo {
    let core = lock(&vf.core);
    let p = &core.pf;
    VfInfo {
        mac: p.mac,
        admin_mac: p.admin_mac,
        clear_to_send: p.cts,
        pf_resetting: core.mbx.rsti,
        api: p.api,
        max_frame: p.max_frame,
        mc_hashes: p.mc_hashes.clone(),
        vlans: p.vlans.iter().copied().collect(),
        xcast_mode: p.xcast,
    }
}

/// The administrator sets (or, with None, removes) the VF's address, as `ip link set PF
/// vf N mac` does: it is the VF's address at once, and its RESET answer from then on.
pub(crate) fn set_admin_mac(vf: &Vf, mac: Option<MacAddr>) {
    let mut core = lock(&vf.core);
    core.pf.admin_mac = mac;
    core.pf.mac = mac;
}

/// A VFMAILBOX read: the status bits, clearing the read-clear ones. REQ and ACK read 0.
pub(crate) fn read_ctl(vf: &Vf) -> u32 {
    let mut core = lock(&vf.core);
    let m = &mut core.mbx;
    let mut v = 0;
    for (on, bit) in [
        (m.vfu, mbx::VFU),
        (m.pfsts, mbx::PFSTS),
        (m.pfack, mbx::PFACK),
        (m.rsti, mbx::RSTI),
        (m.rstd, mbx::RSTD),
    ] {
        if on {
            v |= bit;
        }
    }
    m.pfsts = false;
    m.pfack = false;
    m.rstd = false;
    v
}

/// A VFMAILBOX write: VFU takes (or, clear, releases) the buffer; REQ hands the PF the
/// message in it, which is answered at once; ACK says the PF's message was read. A
/// message the PF holds back goes out once the buffer is free. `taken` are the addresses
/// the PF and the other VFs use, which SET_MAC_ADDR may not take.
pub(crate) fn write_ctl(vf: &Vf, fault: MbxFault, v: u32, taken: &[MacAddr]) {
    let mut core = lock(&vf.core);
    // The PF never holds the buffer across a register access, so VFU is always granted.
    core.mbx.vfu = v & mbx::VFU != 0;
    if v & mbx::ACK != 0 {
        core.mbx.unread = false;
    }
    if v & mbx::REQ != 0 {
        request(vf, &mut core, fault, taken);
    }
    if !core.mbx.vfu {
        if let Some(w) = core.mbx.pending.take() {
            if core.mbx.send(w) {
                bump(&vf.counters.pf_messages, 1);
            }
        }
    }
}

/// The PF takes the request in the buffer and answers it (or not, per `fault`).
fn request(vf: &Vf, core: &mut VfCore, fault: MbxFault, taken: &[MacAddr]) {
    let c = &vf.counters;
    bump(&c.mbx_requests, 1);
    if core.mbx.rsti || fault == MbxFault::Silent {
        bump(&c.mbx_unanswered, 1);
        return;
    }
    core.mbx.pfack = true;
    let req = core.mbx.words;
    if req[0] & (msg::ACK | msg::NACK) != 0 {
        bump(&c.mbx_invalid, 1);
        return;
    }
    let mut reply = req;
    if fault == MbxFault::Garbage {
        reply = [0; MBX_WORDS];
        reply[0] = GARBAGE_TYPE | msg::ACK | if core.pf.cts { msg::CTS } else { 0 };
        bump(&c.mbx_garbage, 1);
    } else {
        let ok = answer(&mut core.pf, fault, &mut reply, taken);
        bump(if ok { &c.mbx_acked } else { &c.mbx_nacked }, 1);
        vf.set_ready(core.pf.cts);
    }
    core.mbx.words = reply;
    core.mbx.pfsts = true;
    core.mbx.unread = true;
}

/// Answers request `w` in place (as Linux's `ixgbe_rcv_msg_from_vf`); returns whether it
/// was an ACK.
fn answer(pf: &mut PfRecord, fault: MbxFault, w: &mut [u32; MBX_WORDS], taken: &[MacAddr]) -> bool {
    let ty = w[0] & msg::TYPE_MASK;
    if ty == msg::RESET {
        return reset_msg(pf, w);
    }
    if !pf.cts {
        w[0] |= msg::NACK;
        return false;
    }
    let ok = fault != MbxFault::NackAll
        && match ty {
            msg::SET_MAC_ADDR => set_mac(pf, w, taken),
            msg::SET_MULTICAST => {
                let n = ((w[0] & msg::INFO_MASK) >> msg::INFO_SHIFT) as usize;
                pf.mc_hashes = (0..n.min(msg::MAX_MC_HASHES))
                    .map(|i| (w[1 + i / 2] >> (16 * (i % 2))) as u16)
                    .collect();
                true
            }
            msg::SET_VLAN => {
                if w[1] > 4095 {
                    return nack(w);
                }
                let vid = w[1] as u16;
                if w[0] & msg::INFO_MASK != 0 {
                    pf.vlans.insert(vid);
                } else {
                    pf.vlans.remove(&vid);
                }
                true
            }
            msg::SET_LPE => {
                let ok = (msg::MIN_LPE..=msg::MAX_LPE).contains(&w[1]);
                if ok {
                    pf.max_frame = Some(w[1]);
                }
                ok
            }
            msg::API_NEGOTIATE => {
                let ok = [api::V1_0, api::V1_1, api::V1_2, api::V1_3].contains(&w[1]);
                if ok {
                    pf.api = w[1];
                }
                ok
            }
            msg::GET_QUEUES if pf.api >= api::V1_1 => {
                w[1] = VF_QUEUES as u32;
                w[2] = VF_QUEUES as u32;
                w[3] = 0;
                w[4] = 0;
                true
            }
            msg::UPDATE_XCAST_MODE if pf.api >= api::V1_2 => {
                // The 82599 refuses promiscuous mode (Linux: mac type <= 82599).
                let ok = w[1] <= xcast::ALLMULTI;
                if ok {
                    pf.xcast = w[1];
                }
                ok
            }
            _ => false,
        };
    w[0] |= msg::CTS | if ok { msg::ACK } else { msg::NACK };
    ok
}

/// Marks `w` refused (with CTS, the VF being clear to send); returns false.
fn nack(w: &mut [u32; MBX_WORDS]) -> bool {
    w[0] |= msg::CTS | msg::NACK;
    false
}

/// RESET (Linux's `ixgbe_vf_reset_msg`): the VF's settings go back to defaults, it is
/// clear to send, and the answer is four words: RESET with ACK and the MAC address if
/// the administrator set one (NACK and zeros otherwise), then the multicast filter type.
fn reset_msg(pf: &mut PfRecord, w: &mut [u32; MBX_WORDS]) -> bool {
    pf.reset_event();
    pf.cts = true;
    *w = [0; MBX_WORDS];
    let ok = pf.admin_mac.is_some();
    w[0] = msg::RESET | if ok { msg::ACK } else { msg::NACK };
    if let Some(m) = pf.admin_mac {
        w[1] = u32::from_le_bytes([m[0], m[1], m[2], m[3]]);
        w[2] = u32::from_le_bytes([m[4], m[5], 0, 0]);
    }
    w[3] = msg::MC_FILTER_TYPE;
    ok
}

/// SET_MAC_ADDR: a unicast address in words 1-2 becomes the VF's, unless the
/// administrator set another or another function uses it (`taken`).
fn set_mac(pf: &mut PfRecord, w: &[u32; MBX_WORDS], taken: &[MacAddr]) -> bool {
    let a = w[1].to_le_bytes();
    let b = w[2].to_le_bytes();
    let mac = [a[0], a[1], a[2], a[3], b[0], b[1]];
    if !is_unicast(&mac) || pf.admin_mac.is_some_and(|m| m != mac) || taken.contains(&mac) {
        return false;
    }
    pf.mac = Some(mac);
    true
}

/// A VF reset (VFCTRL.RST or a function-level reset), under the engine lock: the VF's
/// queues stop, it is no longer clear to send, the PF forgets its settings, a message
/// in flight is lost and RSTD shows in its mailbox.
pub(crate) fn vf_reset(dev: &Device, engine: &mut Engine, vf: &Vf) {
    vf.stop_queues(dev, engine);
    let mut core = lock(&vf.core);
    core.pf.reset_event();
    let m = &mut core.mbx;
    m.vfu = false;
    m.pfsts = false;
    m.pfack = false;
    m.pending = None;
    m.unread = false;
    m.rstd = true;
    vf.set_ready(false);
    bump(&vf.counters.resets, 1);
}

/// A PF reset starts (under the engine lock): every VF's mailbox shows RSTI, its queues
/// stop and it is no longer clear to send. It ends at `done_at`, or with
/// [`pf_reset_end`].
pub(crate) fn pf_reset_begin(dev: &Device, engine: &mut Engine, done_at: Option<Instant>) {
    if dev.vfs.list.is_empty() {
        return;
    }
    let mut st = lock(&dev.vfs.pf_reset);
    *st = Some(done_at);
    dev.vfs.set_armed(done_at.is_some());
    for vf in &dev.vfs.list {
        vf.stop_queues(dev, engine);
        let mut core = lock(&vf.core);
        core.pf.cts = false;
        core.mbx.rsti = true;
        core.mbx.pending = None;
        core.mbx.unread = false;
        vf.set_ready(false);
    }
}

/// The PF reset in progress (if any) completes: RSTI clears, RSTD shows and every VF
/// gets a PF_CONTROL_MSG without CTS.
pub(crate) fn pf_reset_end(dev: &Device) {
    let mut st = lock(&dev.vfs.pf_reset);
    if st.take().is_none() {
        return;
    }
    dev.vfs.set_armed(false);
    for vf in &dev.vfs.list {
        let mut core = lock(&vf.core);
        core.mbx.rsti = false;
        core.mbx.rstd = true;
        if core.mbx.send(msg::PF_CONTROL_MSG) {
            bump(&vf.counters.pf_messages, 1);
        }
    }
}

/// Ends a timed PF reset whose time has come (cheap when none is pending).
pub(crate) fn tick(dev: &Device) {
    if !dev.vfs.armed() {
        return;
    }
    let due = lock(&dev.vfs.pf_reset).is_some_and(|at| at.is_some_and(|at| Instant::now() >= at));
    if due {
        pf_reset_end(dev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(pf: &mut PfRecord, words: &[u32]) -> (bool, [u32; MBX_WORDS]) {
        let mut w = [0; MBX_WORDS];
        w[..words.len()].copy_from_slice(words);
        let ok = answer(pf, MbxFault::None, &mut w, &[]);
        (ok, w)
    }

    #[test]
    fn answers_follow_the_linux_pf() {
        let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
        let mut pf = PfRecord::new(Some(mac));
        let (ok, w) = ask(&mut pf, &[msg::SET_LPE, 1518]);
        assert!(!ok);
        assert_eq!(w[0], msg::SET_LPE | msg::NACK, "not clear to send: no CTS");
        let (ok, w) = ask(&mut pf, &[msg::RESET]);
        assert!(ok && pf.cts);
        assert_eq!(w[..4], [msg::RESET | msg::ACK, 0x3322_1102, 0x5544, 0]);
        let (ok, w) = ask(&mut pf, &[msg::GET_QUEUES]);
        assert!(!ok, "API 1.0");
        assert_eq!(w[0], msg::GET_QUEUES | msg::CTS | msg::NACK);
        assert!(ask(&mut pf, &[msg::API_NEGOTIATE, api::V1_2]).0);
        let (ok, w) = ask(&mut pf, &[msg::GET_QUEUES, 9, 9, 9, 9]);
        assert!(ok);
        assert_eq!(w[..5], [msg::GET_QUEUES | msg::CTS | msg::ACK, 2, 2, 0, 0]);
        let mc = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
        assert!(!pf.takes_group(&mc));
        let h = u32::from(mc_hash(&mc));
        assert!(ask(&mut pf, &[msg::SET_MULTICAST | 2 << 16, h << 16 | 0x123]).0);
        assert_eq!(pf.mc_hashes, [0x123, h as u16]);
        assert!(pf.takes_group(&mc) && pf.takes_group(&[0xff; 6]));
        assert!(ask(&mut pf, &[msg::UPDATE_XCAST_MODE, xcast::NONE]).0);
        assert!(!pf.takes_group(&mc));
        assert!(!ask(&mut pf, &[msg::UPDATE_XCAST_MODE, xcast::PROMISC]).0);
        assert!(ask(&mut pf, &[msg::SET_VLAN | 1 << 16, 100]).0);
        assert!(!ask(&mut pf, &[msg::SET_VLAN | 1 << 16, 4096]).0);
        assert!(
            !ask(&mut pf, &[msg::SET_MAC_ADDR, 0x0302_0102, 0x0504]).0,
            "admin MAC"
        );
        assert!(!ask(&mut pf, &[0x77]).0, "unknown type");
        assert_eq!(pf.max_frame(true), 1522);
        pf.reset_event();
        assert!(!pf.cts && pf.vlans.is_empty() && pf.mac == Some(mac));
    }

    #[test]
    fn without_an_admin_address_reset_is_refused_and_the_vf_sets_its_own() {
        let mut pf = PfRecord::new(None);
        let (ok, w) = ask(&mut pf, &[msg::RESET]);
        assert!(!ok && pf.cts);
        assert_eq!(w[..4], [msg::RESET | msg::NACK, 0, 0, 0]);
        assert!(
            !ask(&mut pf, &[msg::SET_MAC_ADDR, 0x0302_0101, 0x0504]).0,
            "multicast"
        );
        assert!(ask(&mut pf, &[msg::SET_MAC_ADDR, 0x0302_0102, 0x0504]).0);
        assert_eq!(pf.mac, Some([2, 1, 2, 3, 4, 5]));
        pf.reset_event();
        assert_eq!(pf.mac, None, "a VF's own address goes with its reset");
    }
}
