//! Programming of rx and tx queue registers, shared by chips whose per-queue register
//! blocks have the same shape: base, base+4 (high address), +8 (length), +0x10 (head),
//! +0x18 (tail), +0x28 (descriptor control, enable bit 25), a 0x40-byte stride, and a
//! chip-specific offset for the rx buffer-size register (SRRCTL).

use crate::bar::{Bar, QueuePos};
use crate::{RxRing, TxRing};
use pmd_core::pci::Reg32;
use pmd_core::Result;
use std::time::Duration;

/// Queue enable bit of RXDCTL and TXDCTL (82599 8.2.3.8.6 / 8.2.3.9.10; 82576 8.10.x).
pub const DCTL_ENABLE: u32 = 1 << 25;
/// Queue enable/disable completes within microseconds on hardware; allow for models.
const QUEUE_TIMEOUT: Duration = Duration::from_millis(50);

/// Where a chip keeps its queue registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLayout {
    /// RDBAL of queue 0.
    pub rx_base: usize,
    /// TDBAL of queue 0.
    pub tx_base: usize,
    /// Offset of SRRCTL within an rx queue block.
    pub srrctl: usize,
}

impl QueueLayout {
    fn rx(&self, q: usize, off: usize) -> usize {
        self.rx_base + 0x40 * q + off
    }

    fn tx(&self, q: usize, off: usize) -> usize {
        self.tx_base + 0x40 * q + off
    }

    /// RDT of queue `q`.
    pub fn rdt(&self, q: usize) -> usize {
        self.rx(q, 0x18)
    }

    /// RXDCTL of queue `q`.
    pub fn rxdctl(&self, q: usize) -> usize {
        self.rx(q, 0x28)
    }

    /// TDT of queue `q`.
    pub fn tdt(&self, q: usize) -> usize {
        self.tx(q, 0x18)
    }

    /// TXDCTL of queue `q`.
    pub fn txdctl(&self, q: usize) -> usize {
        self.tx(q, 0x28)
    }

    /// Tail and enable handles for an rx ring on queue `q`.
    pub fn rx_handles(&self, bar: &Bar, q: usize) -> Result<(Reg32, (Reg32, u32))> {
        Ok((
            bar.reg32(self.rdt(q))?,
            (bar.reg32(self.rxdctl(q))?, DCTL_ENABLE),
        ))
    }

    /// Tail and enable handles for a tx ring on queue `q`.
    pub fn tx_handles(&self, bar: &Bar, q: usize) -> Result<(Reg32, (Reg32, u32))> {
        Ok((
            bar.reg32(self.tdt(q))?,
            (bar.reg32(self.txdctl(q))?, DCTL_ENABLE),
        ))
    }

    /// Disables a queue (by its control register) and waits until the device reports it.
    pub fn disable(&self, bar: &Bar, ctl: usize) {
        bar.clear_bits(ctl, DCTL_ENABLE);
        if bar
            .wait("queue disable", QUEUE_TIMEOUT, |b| {
                b.rd(ctl) & DCTL_ENABLE == 0
            })
            .is_err()
        {
            tracing::warn!(
                device = bar.name(),
                reg = ctl,
                "queue did not report disabled"
            );
        }
    }

    /// Programs rx queue `q` (disabled) with `ring` and `srrctl`; returns its start position.
    pub fn program_rx(&self, bar: &Bar, q: usize, ring: &RxRing, srrctl: u32) -> QueuePos {
        let iova = ring.desc_iova();
        bar.wr(self.rx(q, 0), iova as u32);
        bar.wr(self.rx(q, 4), (iova >> 32) as u32);
        bar.wr(self.rx(q, 8), ring.desc_bytes());
        bar.wr(self.rx(q, self.srrctl), srrctl);
        bar.wr(self.rx(q, 0x10), 0);
        bar.wr(self.rdt(q), 0);
        QueuePos {
            head: 0,
            tail: ring.tail_value(),
        }
    }

    /// Programs tx queue `q` (disabled) with `ring`; returns its start position.
    pub fn program_tx(&self, bar: &Bar, q: usize, ring: &TxRing) -> QueuePos {
        let iova = ring.desc_iova();
        bar.wr(self.tx(q, 0), iova as u32);
        bar.wr(self.tx(q, 4), (iova >> 32) as u32);
        bar.wr(self.tx(q, 8), ring.desc_bytes());
        bar.wr(self.tx(q, 0x10), 0);
        bar.wr(self.tdt(q), 0);
        QueuePos {
            head: 0,
            tail: ring.tail_value(),
        }
    }

    /// Enables rx queue `q` at `pos`: head, enable, wait, then the tail (which hands the
    /// posted buffers to the device).
    pub fn enable_rx(&self, bar: &Bar, q: usize, pos: QueuePos) -> Result<()> {
        bar.wr(self.rx(q, 0x10), pos.head);
        bar.set_bits(self.rxdctl(q), DCTL_ENABLE);
        let ctl = self.rxdctl(q);
        bar.wait(&format!("rx queue {q} enable"), QUEUE_TIMEOUT, |b| {
            b.rd(ctl) & DCTL_ENABLE != 0
        })?;
        bar.wr(self.rdt(q), pos.tail);
        Ok(())
    }

    /// Enables tx queue `q` at `pos` with the chip's TXDCTL thresholds `txdctl`.
    pub fn enable_tx(&self, bar: &Bar, q: usize, pos: QueuePos, txdctl: u32) -> Result<()> {
        bar.wr(self.tx(q, 0x10), pos.head);
        bar.wr(self.tdt(q), pos.tail);
        let ctl = self.txdctl(q);
        bar.wr(ctl, txdctl | DCTL_ENABLE);
        bar.wait(&format!("tx queue {q} enable"), QUEUE_TIMEOUT, |b| {
            b.rd(ctl) & DCTL_ENABLE != 0
        })
    }

    /// Disables rx queue `q` and returns where it stopped (to resume there).
    pub fn stop_rx(&self, bar: &Bar, q: usize) -> QueuePos {
        self.disable(bar, self.rxdctl(q));
        QueuePos {
            head: bar.rd(self.rx(q, 0x10)),
            tail: bar.rd(self.rdt(q)),
        }
    }

    /// Disables tx queue `q` and returns where it stopped.
    pub fn stop_tx(&self, bar: &Bar, q: usize) -> QueuePos {
        self.disable(bar, self.txdctl(q));
        QueuePos {
            head: bar.rd(self.tx(q, 0x10)),
            tail: bar.rd(self.tdt(q)),
        }
    }
}

/// Fills a 128-entry redirection table (32 registers of four 8-bit entries, at `reta(i)`)
/// spreading hash buckets round-robin over `queues`, and loads the 40-byte `key` into the
/// ten key registers at `rssrk(i)`.
pub fn program_rss(
    bar: &Bar,
    queues: usize,
    key: &[u8; 40],
    rssrk: fn(usize) -> usize,
    reta: fn(usize) -> usize,
) {
    for (i, k) in key.chunks_exact(4).enumerate() {
        bar.wr(rssrk(i), u32::from_le_bytes([k[0], k[1], k[2], k[3]]));
    }
    for i in 0..32 {
        let e = |j: usize| ((i * 4 + j) % queues) as u32;
        bar.wr(reta(i), e(0) | e(1) << 8 | e(2) << 16 | e(3) << 24);
    }
}

/// The RSS key of the Microsoft RSS verification suite (any 40 bytes work; this one makes
/// hashes easy to check against the published examples).
pub const RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];
