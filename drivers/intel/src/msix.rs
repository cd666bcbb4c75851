//! MSI-X programming for rx and link interrupts, shared by the chips: they agree on the
//! scheme (causes mapped to vectors by IVAR entries with a valid bit, other causes by
//! IVAR_MISC (bits 15:8 on the PFs, 7:0 on the 82576 VF), auto-mask through EIAM (with
//! GPIE.EIAME on the PFs), auto-clear through EIAC) and
//! differ in register offsets, a GPIE bit or two, where an rx queue's IVAR entry sits and
//! where the link-state-change cause lives ([`LinkCause`]).

use crate::bar::Bar;

/// An IVAR entry's valid bit (both chips).
pub const IVAR_VALID: u32 = 0x80;

/// Where a chip's MSI-X registers are and how its rx queues map onto IVAR entries.
#[derive(Clone, Copy, Debug)]
pub struct MsixRegs {
    /// Extended Interrupt Mask Set (bit `v` arms vector `v`, vectors 0..=15).
    pub eims: usize,
    /// Extended Interrupt Mask Clear.
    pub eimc: usize,
    /// The EIMC value that masks every cause.
    pub mask_all: u32,
    /// Extended Interrupt Auto Clear.
    pub eiac: usize,
    /// Extended Interrupt Auto Mask.
    pub eiam: usize,
    /// Extended Interrupt Cause Read (read to clear what reset left).
    pub eicr: usize,
    /// General Purpose Interrupt Enable, and the value MSI-X mode with auto-mask writes
    /// (`None`: a VF, always in MSI-X mode, auto-masking through EIAM alone).
    pub gpie: Option<(usize, u32)>,
    /// Miscellaneous IVAR, and the shift of the other causes' entry in it (bits 15:8 on
    /// the PFs, 7:0 on the 82576 VF, where the other cause is the mailbox).
    pub ivar_misc: (usize, u32),
    /// Rx queue `q`'s IVAR entry: its register and the entry's bit shift in it.
    pub rx_ivar: fn(usize) -> (usize, u32),
    /// The link-state-change cause, which fires on the other-causes vector.
    pub link: LinkCause,
}

/// Where a chip's link-state-change (LSC) cause lives. Either way it is neither
/// auto-masked nor auto-cleared: the vector fires once per change, and
/// [`MsixRegs::ack_link`] clears it before the link is read, so a change after that
/// fires again.
#[derive(Clone, Copy, Debug)]
pub enum LinkCause {
    /// An EICR bit of its own, enabled by the same bit in EIMS and cleared by writing it
    /// to EICR (82599: EICR.LSC, bit 20).
    Eicr(u32),
    /// A bit of the legacy ICR, enabled in IMS, which raises the other-causes vector's
    /// EICR bit in MSI-X mode; both are cleared, EICR's by writing the vector's bit and
    /// ICR's by reading it (82576: ICR.LSC, bit 2, with GPIE.NSICR).
    Icr {
        /// Interrupt Mask Set.
        ims: usize,
        /// Interrupt Cause Read.
        icr: usize,
        /// The LSC bit in both.
        bit: u32,
    },
}

impl MsixRegs {
    /// MSI-X mode with rx queue `q` on vector `q` for `q < rx_queues` and the other causes
    /// (link) on vector `rx_queues`, every vector masked; the queue vectors auto-mask and
    /// auto-clear when they fire, so each arm gives one interrupt. EITR stays as reset: no
    /// moderation, a sleeper wakes on the first packet. `rx_queues < 16`.
    pub fn setup(&self, bar: &Bar, rx_queues: usize) {
        bar.wr(self.eimc, self.mask_all);
        if let Some((gpie, v)) = self.gpie {
            bar.wr(gpie, v);
        }
        for q in 0..rx_queues {
            let (reg, shift) = (self.rx_ivar)(q);
            let v = bar.rd(reg) & !(0xff << shift);
            bar.wr(reg, v | ((q as u32 | IVAR_VALID) << shift));
        }
        let (misc_reg, shift) = self.ivar_misc;
        let misc = bar.rd(misc_reg) & !(0xff << shift);
        bar.wr(misc_reg, misc | ((rx_queues as u32 | IVAR_VALID) << shift));
        let queues = (1u32 << rx_queues) - 1;
        bar.wr(self.eiam, queues);
        bar.wr(self.eiac, queues);
        let _ = bar.rd(self.eicr);
        if let LinkCause::Icr { icr, .. } = self.link {
            let _ = bar.rd(icr);
        }
    }

    /// Enables the link-state-change cause on the other-causes vector `misc` (the one
    /// [`MsixRegs::setup`] gave them: `rx_queues`).
    pub fn arm_link(&self, bar: &Bar, misc: usize) {
        match self.link {
            LinkCause::Eicr(bit) => bar.wr(self.eims, bit),
            LinkCause::Icr { ims, bit, .. } => {
                bar.wr(ims, bit);
                bar.wr(self.eims, 1 << misc);
            }
        }
    }

    /// Clears a link-state-change cause that fired, so the next change fires again:
    /// EICR first, then ICR, so a change in between raises the vector once more rather
    /// than being absorbed by a cause still set.
    pub fn ack_link(&self, bar: &Bar, misc: usize) {
        match self.link {
            LinkCause::Eicr(bit) => bar.wr(self.eicr, bit),
            LinkCause::Icr { icr, .. } => {
                bar.wr(self.eicr, 1 << misc);
                let _ = bar.rd(icr);
            }
        }
    }
}

/// A chip's legacy interrupt registers, for its INTx line (MSI-X mode off): causes in
/// ICR (read to clear), enabled by IMS, masked by IMC.
#[derive(Clone, Copy, Debug)]
pub struct LineRegs {
    /// Interrupt Mask Set.
    pub ims: usize,
    /// Interrupt Mask Clear.
    pub imc: usize,
    /// Interrupt Cause Read.
    pub icr: usize,
    /// The receive cause (82576: ICR.RXDW, a descriptor written back).
    pub rx_cause: u32,
}
