//! What the Intel PMDs share: the advanced receive and transmit descriptors
//! ([`desc`]), descriptor rings with burst receive and transmit ([`rx`], [`tx`]), folding
//! of clear-on-read statistics registers into 64-bit totals ([`counters`]), bounded
//! register polling for init sequences ([`wait`], [`reset`]), the registers the chips
//! share ([`regs`]), and one ethdev device ([`IntelDevice`]) and driver ([`IntelDriver`])
//! over a [`Chip`].
//!
//! The 82599 (ixgbe) and the 82576 (igb) use the same advanced descriptor layouts; they
//! differ in register offsets, in a few status and error bits and in their init steps,
//! which each driver's `Chip` gives.

pub mod bar;
pub mod counters;
pub mod desc;
pub mod device;
pub mod driver;
pub mod mailbox;
pub mod msix;
pub mod queues;
pub mod regs;
pub mod reset;
pub mod rx;
pub mod tx;
pub mod vf;
pub mod wait;

pub use bar::{Bar, QueuePos, RegBits};
pub use counters::{CounterSet, CounterSpec};
pub use device::{Chip, IntelDevice, LINK_WAIT};
pub use driver::{intel_id, IntelDriver};
pub use mailbox::{Mailbox, MbxError, MbxLayout, PfEvent};
pub use msix::{LineRegs, LinkCause, MsixRegs};
pub use queues::{QueueLayout, RssRegs};
pub use rx::{RxCsumBits, RxIntr, RxRing, RxRingConf};
pub use tx::{TxRing, TxRingConf};

use pmd_core::memory::Segment;
use pmd_core::{Error, Result};

/// Allocates DMA memory for a ring of `bytes` (hugepage-backed, registered so that the
/// device's IOMMU mapping covers it) and checks that its IOVAs are contiguous, as the
/// device reads it as one block.
pub(crate) fn ring_memory(driver: &'static str, name: &str, bytes: usize) -> Result<Segment> {
    let seg = Segment::alloc(name, bytes)?;
    let first = seg.iova_at(0);
    if seg.iova_at(bytes - 1) != first + bytes as u64 - 1 {
        return Err(Error::driver(
            driver,
            format!(
                "{name}: the {bytes}-byte descriptor ring is not contiguous in IOVA space \
                 (page size {}); use hugepages or fewer descriptors",
                seg.page_size()
            ),
        ));
    }
    Ok(seg)
}
