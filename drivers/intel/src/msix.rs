//! MSI-X programming for rx interrupts, shared by the chips: they agree on the scheme
//! (causes mapped to vectors by IVAR entries with a valid bit, other causes by IVAR_MISC
//! bits 15:8, auto-mask through GPIE.EIAME + EIAM, auto-clear through EIAC) and differ in
//! register offsets, a GPIE bit or two and where an rx queue's IVAR entry sits.

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
    /// General Purpose Interrupt Enable, and the value MSI-X mode with auto-mask writes.
    pub gpie: (usize, u32),
    /// Miscellaneous IVAR: the other causes' entry in bits 15:8.
    pub ivar_misc: usize,
    /// Rx queue `q`'s IVAR entry: its register and the entry's bit shift in it.
    pub rx_ivar: fn(usize) -> (usize, u32),
}

impl MsixRegs {
    /// MSI-X mode with rx queue `q` on vector `q` for `q < rx_queues` and the other causes
    /// (link) on vector `rx_queues`, every vector masked; the queue vectors auto-mask and
    /// auto-clear when they fire, so each arm gives one interrupt. EITR stays as reset: no
    /// moderation, a sleeper wakes on the first packet. `rx_queues < 16`.
    pub fn setup(&self, bar: &Bar, rx_queues: usize) {
        bar.wr(self.eimc, self.mask_all);
        bar.wr(self.gpie.0, self.gpie.1);
        for q in 0..rx_queues {
            let (reg, shift) = (self.rx_ivar)(q);
            let v = bar.rd(reg) & !(0xff << shift);
            bar.wr(reg, v | ((q as u32 | IVAR_VALID) << shift));
        }
        let misc = bar.rd(self.ivar_misc) & !0xff00;
        bar.wr(
            self.ivar_misc,
            misc | ((rx_queues as u32 | IVAR_VALID) << 8),
        );
        let queues = (1u32 << rx_queues) - 1;
        bar.wr(self.eiam, queues);
        bar.wr(self.eiac, queues);
        let _ = bar.rd(self.eicr);
    }
}
