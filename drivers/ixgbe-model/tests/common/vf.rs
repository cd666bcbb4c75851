//! A VF driven through its own BAR, as a VF driver would: the mailbox exchange of Linux's
//! ixgbevf (lock with VFU, write, REQ, PFACK, PFSTS, lock, read, ACK), and its rings at
//! the VF queue offsets.

use super::{wait_for, Ring, SRRCTL_DROP_EN};
use pmd_core::pci::{MmioRegion, PciBackend};
use pmd_ixgbe_model::regs::{DCTL_ENABLE, SRRCTL_DESCTYPE_ADV_ONEBUF};
use pmd_ixgbe_model::vfregs::*;
use pmd_ixgbe_model::Model82599;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One VF's backend and mapped BAR 0.
pub struct VfPort {
    pub backend: Arc<dyn PciBackend>,
    pub bar: MmioRegion,
}

/// What a mailbox exchange came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The PF never acknowledged (no PFACK).
    NoAck,
    /// PFACK but no answer (no PFSTS).
    Unanswered,
    /// The answer's sixteen words.
    Words([u32; MBX_WORDS]),
}

impl Answer {
    /// The answer's words (panics on no answer).
    pub fn words(&self) -> [u32; MBX_WORDS] {
        match self {
            Answer::Words(w) => *w,
            other => panic!("no answer: {other:?}"),
        }
    }

    /// The answer's first word.
    pub fn head(&self) -> u32 {
        self.words()[0]
    }
}

impl VfPort {
    /// VF `vf` of `model`, bus mastering on.
    pub fn new(model: &Model82599, vf: u8) -> VfPort {
        let backend = model.vf_backend(vf).unwrap();
        backend.set_bus_master(true).unwrap();
        let bar = backend.map_bar(0).unwrap();
        VfPort { backend, bar }
    }

    pub fn rd(&self, off: usize) -> u32 {
        self.bar.read32_at(off).unwrap()
    }

    pub fn wr(&self, off: usize, v: u32) {
        self.bar.write32_at(off, v).unwrap()
    }

    /// Polls VFMAILBOX for up to `limit` until `bits` shows; returns every bit seen
    /// meanwhile (the read-clear ones are gone from the register then).
    pub fn wait_ctl(&self, bits: u32, limit: Duration) -> u32 {
        let end = Instant::now() + limit;
        let mut seen = 0;
        loop {
            seen |= self.rd(VFMAILBOX);
            if seen & bits != 0 || Instant::now() >= end {
                return seen;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Takes the buffer (VFU must read back set).
    fn lock(&self) {
        self.wr(VFMAILBOX, mbx::VFU);
        assert_ne!(self.rd(VFMAILBOX) & mbx::VFU, 0, "VFU granted");
    }

    /// Sends `words` and waits (100 ms at most per step) for PFACK and the answer.
    pub fn request(&self, words: &[u32]) -> Answer {
        self.lock();
        for (i, w) in words.iter().enumerate() {
            self.wr(VFMBMEM + 4 * i, *w);
        }
        self.wr(VFMAILBOX, mbx::REQ);
        let seen = self.wait_ctl(mbx::PFACK, Duration::from_millis(100));
        if seen & mbx::PFACK == 0 {
            return Answer::NoAck;
        }
        if seen & mbx::PFSTS == 0
            && self.wait_ctl(mbx::PFSTS, Duration::from_millis(100)) & mbx::PFSTS == 0
        {
            return Answer::Unanswered;
        }
        Answer::Words(self.read_message())
    }

    /// Reads the PF's message and acknowledges it.
    pub fn read_message(&self) -> [u32; MBX_WORDS] {
        self.lock();
        let mut w = [0; MBX_WORDS];
        for (i, v) in w.iter_mut().enumerate() {
            *v = self.rd(VFMBMEM + 4 * i);
        }
        self.wr(VFMAILBOX, mbx::ACK);
        w
    }

    /// VFCTRL.RST (RSTD must show), then the RESET exchange; returns the answer.
    pub fn reset(&self) -> [u32; MBX_WORDS] {
        self.wr(VFCTRL, VFCTRL_RST);
        let ctl = self.rd(VFMAILBOX);
        assert_ne!(ctl & mbx::RSTD, 0, "RSTD after a VF reset: {ctl:#x}");
        assert_eq!(ctl & mbx::RSTI, 0, "no PF reset in progress");
        self.request(&[msg::RESET]).words()
    }

    /// Programs VF rx queue `q` over `ring` (2 KiB buffers), enables it and posts
    /// `posted` descriptors.
    pub fn rx_queue(&self, q: usize, ring: &Ring, posted: u32) {
        self.wr(vfrdbal(q), ring.iova() as u32);
        self.wr(vfrdbah(q), (ring.iova() >> 32) as u32);
        self.wr(vfrdlen(q), ring.count * 16);
        self.wr(vfsrrctl(q), 2 | SRRCTL_DESCTYPE_ADV_ONEBUF | SRRCTL_DROP_EN);
        self.wr(vfrdh(q), 0);
        self.wr(vfrdt(q), 0);
        self.wr(vfrxdctl(q), DCTL_ENABLE);
        wait_for("VF rx enable", || self.rd(vfrxdctl(q)) & DCTL_ENABLE != 0);
        self.wr(vfrdt(q), posted);
    }

    /// Programs VF tx queue `q` over `ring` and enables it.
    pub fn tx_queue(&self, q: usize, ring: &Ring) {
        self.wr(vftdbal(q), ring.iova() as u32);
        self.wr(vftdbah(q), (ring.iova() >> 32) as u32);
        self.wr(vftdlen(q), ring.count * 16);
        self.wr(vftdh(q), 0);
        self.wr(vftdt(q), 0);
        self.wr(vftxdctl(q), DCTL_ENABLE);
        wait_for("VF tx enable", || self.rd(vftxdctl(q)) & DCTL_ENABLE != 0);
    }

    /// Waits for VFLINKS to report the link up.
    pub fn link_up(&self) {
        wait_for("VF link up", || self.rd(VFLINKS) & VFLINKS_UP != 0);
    }
}
