//! Programming of rx and tx queue registers, shared by chips whose per-queue register
//! blocks have the same shape: base, base+4 (high address), +8 (length), +0x10 (head),
//! +0x18 (tail), +0x28 (descriptor control, enable bit 25), a stride between queues
//! (0x40 bytes on physical functions, 0x100 on the 82576's VF), and a chip-specific offset
//! for the rx buffer-size register (SRRCTL).

use crate::bar::{Bar, QueuePos};
use crate::{RxRing, TxRing};
use pmd_core::pci::Reg32;
use pmd_core::Result;
use std::time::Duration;

/// Queue enable bit of RXDCTL and TXDCTL (82599 8.2.3.8.6 / 8.2.3.9.10; 82576 8.10.x).
pub const DCTL_ENABLE: u32 = 1 << 25;
/// Queue enable/disable completes within microseconds on hardware; allow for models.
const QUEUE_TIMEOUT: Duration = Duration::from_millis(50);

/// Where a chip keeps its queue registers: the block of queue 0 for each direction,
/// where SRRCTL sits in an rx block, and the stride (queue `q`'s block is `stride * q`
/// further on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLayout {
    /// RDBAL of queue 0.
    pub rx_base: usize,
    /// TDBAL of queue 0.
    pub tx_base: usize,
    /// Offset of SRRCTL within an rx queue block.
    pub srrctl: usize,
    /// Bytes between the register blocks of two consecutive queues.
    pub stride: usize,
}

/// Bytes between two queues' register blocks on the physical functions.
const STRIDE: usize = 0x40;

impl QueueLayout {
    /// Queue 0's RDBAL at `rx_base`, its TDBAL at `tx_base`, SRRCTL `srrctl` bytes into
    /// each rx block, blocks 0x40 bytes apart.
    pub const fn new(rx_base: usize, tx_base: usize, srrctl: usize) -> QueueLayout {
        QueueLayout {
            rx_base,
            tx_base,
            srrctl,
            stride: STRIDE,
        }
    }

    /// The same layout with queue blocks `stride` bytes apart.
    pub const fn with_stride(self, stride: usize) -> QueueLayout {
        QueueLayout { stride, ..self }
    }

    const fn rx(&self, q: usize, off: usize) -> usize {
        self.rx_base + self.stride * q + off
    }

    const fn tx(&self, q: usize, off: usize) -> usize {
        self.tx_base + self.stride * q + off
    }

    /// Receive Descriptor Base Address Low of queue `q`.
    pub const fn rdbal(&self, q: usize) -> usize {
        self.rx(q, 0)
    }

    /// Receive Descriptor Base Address High.
    pub const fn rdbah(&self, q: usize) -> usize {
        self.rx(q, 0x04)
    }

    /// Receive Descriptor Length.
    pub const fn rdlen(&self, q: usize) -> usize {
        self.rx(q, 0x08)
    }

    /// Receive Descriptor Head.
    pub const fn rdh(&self, q: usize) -> usize {
        self.rx(q, 0x10)
    }

    /// Split (and Replication) Receive Control.
    pub const fn srrctl(&self, q: usize) -> usize {
        self.rx(q, self.srrctl)
    }

    /// Receive Descriptor Tail.
    pub const fn rdt(&self, q: usize) -> usize {
        self.rx(q, 0x18)
    }

    /// Receive Descriptor Control.
    pub const fn rxdctl(&self, q: usize) -> usize {
        self.rx(q, 0x28)
    }

    /// Transmit Descriptor Base Address Low of queue `q`.
    pub const fn tdbal(&self, q: usize) -> usize {
        self.tx(q, 0)
    }

    /// Transmit Descriptor Base Address High.
    pub const fn tdbah(&self, q: usize) -> usize {
        self.tx(q, 0x04)
    }

    /// Transmit Descriptor Length.
    pub const fn tdlen(&self, q: usize) -> usize {
        self.tx(q, 0x08)
    }

    /// Transmit Descriptor Head.
    pub const fn tdh(&self, q: usize) -> usize {
        self.tx(q, 0x10)
    }

    /// Transmit Descriptor Tail.
    pub const fn tdt(&self, q: usize) -> usize {
        self.tx(q, 0x18)
    }

    /// Transmit Descriptor Control.
    pub const fn txdctl(&self, q: usize) -> usize {
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
        bar.wr(self.rdbal(q), iova as u32);
        bar.wr(self.rdbah(q), (iova >> 32) as u32);
        bar.wr(self.rdlen(q), ring.desc_bytes());
        bar.wr(self.srrctl(q), srrctl);
        bar.wr(self.rdh(q), 0);
        bar.wr(self.rdt(q), 0);
        QueuePos {
            head: 0,
            tail: ring.tail_value(),
        }
    }

    /// Programs tx queue `q` (disabled) with `ring`; returns its start position.
    pub fn program_tx(&self, bar: &Bar, q: usize, ring: &TxRing) -> QueuePos {
        let iova = ring.desc_iova();
        bar.wr(self.tdbal(q), iova as u32);
        bar.wr(self.tdbah(q), (iova >> 32) as u32);
        bar.wr(self.tdlen(q), ring.desc_bytes());
        bar.wr(self.tdh(q), 0);
        bar.wr(self.tdt(q), 0);
        QueuePos {
            head: 0,
            tail: ring.tail_value(),
        }
    }

    /// Enables rx queue `q` at `pos`: head, enable, wait, then the tail (which hands the
    /// posted buffers to the device).
    pub fn enable_rx(&self, bar: &Bar, q: usize, pos: QueuePos) -> Result<()> {
        bar.wr(self.rdh(q), pos.head);
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
        bar.wr(self.tdh(q), pos.head);
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
            head: bar.rd(self.rdh(q)),
            tail: bar.rd(self.rdt(q)),
        }
    }

    /// Disables tx queue `q` and returns where it stopped.
    pub fn stop_tx(&self, bar: &Bar, q: usize) -> QueuePos {
        self.disable(bar, self.txdctl(q));
        QueuePos {
            head: bar.rd(self.tdh(q)),
            tail: bar.rd(self.tdt(q)),
        }
    }
}

/// Where a chip keeps its RSS registers (82576 8.10.9-8.10.12, 82599 8.2.3.7.12-15):
/// MRQC, and the first of ten key registers and of 32 redirection-table registers (each
/// 4 bytes after the one before).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RssRegs {
    /// Multiple Receive Queues Command register.
    pub mrqc: usize,
    /// The MRQC value that turns RSS on with the chip's hash types.
    pub mrqc_rss: u32,
    /// RSSRK(0): key bytes 0-3, byte 0 in bits 7:0.
    pub key: usize,
    /// RETA(0): redirection-table entries 0-3, entry 0 in bits 7:0.
    pub reta: usize,
}

impl RssRegs {
    /// MRQC at `mrqc`, RSSRK(0) at `key`, RETA(0) at `reta`; `mrqc_rss` turns RSS on.
    pub const fn new(mrqc: usize, key: usize, reta: usize, mrqc_rss: u32) -> RssRegs {
        RssRegs {
            mrqc,
            mrqc_rss,
            key,
            reta,
        }
    }

    /// Spreads flows over `queues` rx queues: with more than one, loads [`RSS_KEY`], fills
    /// the 128-entry redirection table round-robin and turns RSS on; otherwise turns it off
    /// (every frame to queue 0).
    pub fn program(&self, bar: &Bar, queues: usize) {
        if queues <= 1 {
            bar.wr(self.mrqc, 0);
            return;
        }
        for (i, k) in RSS_KEY.chunks_exact(4).enumerate() {
            bar.wr(
                self.key + 4 * i,
                u32::from_le_bytes([k[0], k[1], k[2], k[3]]),
            );
        }
        for i in 0..32 {
            let e = |j: usize| ((i * 4 + j) % queues) as u32;
            bar.wr(
                self.reta + 4 * i,
                e(0) | e(1) << 8 | e(2) << 16 | e(3) << 24,
            );
        }
        bar.wr(self.mrqc, self.mrqc_rss);
    }
}

/// The RSS key of the Microsoft RSS verification suite (any 40 bytes work; this one makes
/// hashes easy to check against the published examples).
pub const RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

#[cfg(test)]
mod tests {
    use super::*;
    use pmd_core::pci::mmio::region_over_memory;

    #[test]
    fn the_queue_blocks_follow_the_layout() {
        // RXDCTL/TXDCTL.ENABLE is bit 25 on both chips (82599 8.2.3.8.6, 82576 8.10.x).
        assert_eq!(DCTL_ENABLE, 0x0200_0000);
        let l = QueueLayout::new(0x1000, 0x6000, 0x14);
        assert_eq!(
            (
                l.rdbal(0),
                l.rdbah(0),
                l.rdlen(0),
                l.rdh(0),
                l.srrctl(0),
                l.rdt(0),
                l.rxdctl(0)
            ),
            (0x1000, 0x1004, 0x1008, 0x1010, 0x1014, 0x1018, 0x1028)
        );
        assert_eq!(
            (
                l.tdbal(1),
                l.tdbah(1),
                l.tdlen(1),
                l.tdh(1),
                l.tdt(1),
                l.txdctl(1)
            ),
            (0x6040, 0x6044, 0x6048, 0x6050, 0x6058, 0x6068)
        );
        let vf = QueueLayout::new(0x2800, 0x3800, 0x0c).with_stride(0x100);
        assert_eq!(
            (vf.rdt(1), vf.srrctl(1), vf.txdctl(1)),
            (0x2918, 0x290c, 0x3928)
        );
    }

    #[test]
    fn rss_loads_the_key_and_spreads_the_table_or_turns_off() {
        let bar = Bar::new(region_over_memory(0x200), "t", "rss0");
        let rss = RssRegs::new(0x0, 0x10, 0x80, 0x1_0001);
        rss.program(&bar, 3);
        assert_eq!(bar.rd(0x0), 0x1_0001);
        assert_eq!(bar.rd(0x10), u32::from_le_bytes([0x6d, 0x5a, 0x56, 0xda]));
        assert_eq!(
            bar.rd(0x10 + 4 * 9),
            u32::from_le_bytes([0xbe, 0xac, 0x01, 0xfa])
        );
        // Entries 0..3 -> queues 0 1 2 0; entries 124..127 -> 1 2 0 1.
        assert_eq!(bar.rd(0x80), 0x00_02_01_00);
        assert_eq!(bar.rd(0x80 + 4 * 31), 0x01_00_02_01);
        rss.program(&bar, 1);
        assert_eq!(bar.rd(0x0), 0, "one queue: RSS off");
    }
}
