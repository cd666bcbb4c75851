//! MSI-X interrupts (82599 datasheet 7.3; registers 8.2.3.5): causes set EICR bits, and
//! in MSI-X mode an unmasked cause sends a message on its vector, which the model
//! delivers by signalling that vector's eventfd (as VFIO's MSI-X triggers are eventfds).
//!
//! Which vector an EICR bit fires on:
//! - bits 15:0 (RTxQ): in MSI-X mode bit v *is* vector v (GPIE.Multiple_MSIX). A receive
//!   queue's cause goes to the vector its IVAR entry names (bits 5:0, valid bit 7). Only
//!   vectors 0..15 are delivered: vectors 16..63 would need EICR_EX/EIMS_EX (0x00A90..),
//!   which are not modelled, so an IVAR entry naming one is ignored (counted in
//!   `ModelStats::interrupts_unrouted`).
//! - bits 29:16 (the other causes; the model raises LSC, and EICS can set any): the
//!   vector of IVAR_MISC's other-causes entry (bits 14:8, valid bit 15), masked by the
//!   cause's own EIMS bit (EIMS.LSC for a link change).
//! - bit 30 (TCP timer) and 31: not modelled, they never fire.
//!
//! The delivery rule for an EICR bit b on vector v, with MSI-X mode on and vectors enabled
//! through `enable_irqs`: when b becomes set while EIMS.b is set (a cause, or an EICS
//! write), or EIMS.b becomes set while EICR.b is pending, the message is sent: vector v's
//! eventfd is signalled, then with GPIE.EIAME and EIAM.b the mask bit EIMS.b clears
//! (auto-mask) and with EIAC.b the cause bit EICR.b clears (auto-clear). The second case
//! is what makes "arm after the frame came" safe: the pending cause fires at the unmask.
//! Without MSI-X mode or without vectors, causes only accumulate in EICR.
//!
//! Not modelled: EITR throttling (0x00820 + 4n is stored; every cause fires at once), the
//! pending bit array (GPIE.PBA_support is stored only), EIAM's legacy-mode meaning (mask
//! bits following an EICR read or EICS write), the TCP timer, and transmit causes.
//!
//! Locking: every read-modify-write of EICR and EIMS (cause, EICS, EIMS, EIMC, EICR read
//! and write, the auto-mask and auto-clear) happens under the one `Interrupts` mutex, so
//! a cause raised by the model thread and an unmask written by the driver are ordered:
//! either the cause finds the mask set and fires, or the unmask finds the cause pending
//! and fires. The eventfds are signalled after that mutex is released (from clones of the
//! vectors' `Arc<OwnedFd>`), so a driver thread writing EIMS never waits for a write(2).
//! The mutex is a leaf: nothing else is locked under it.

use crate::device::Device;
use crate::hw::{EICR_VECTORS, MSIX_VECTORS};
use crate::regfile::RegFile;
use crate::regs::*;
use crate::stats::bump;
use pmd_core::pci::{IrqWait, PciAddr};
use pmd_core::unix::{eventfd, eventfd_drain, eventfd_signal, Epoll};
use pmd_core::{Error, Result};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// The vectors `enable_irqs` enabled (empty: none), and the lock the interrupt registers'
/// read-modify-write sequences take.
#[derive(Debug, Default)]
pub(crate) struct Interrupts {
    vectors: Mutex<Vec<Arc<OwnedFd>>>,
}

impl Interrupts {
    /// Locks the interrupt state: a reset clears the registers under it.
    pub fn hold(&self) -> MutexGuard<'_, Vec<Arc<OwnedFd>>> {
        crate::lock(&self.vectors)
    }
}

/// The MSI-X vector EICR bit `bit` (one bit set) is delivered on, if any.
fn vector_of(regs: &RegFile, bit: u32) -> Option<usize> {
    if bit & EICR_RTXQ != 0 {
        return Some(bit.trailing_zeros() as usize);
    }
    if bit & EICR_OTHER != 0 {
        let entry = regs.get(IVAR_MISC) >> IVAR_MISC_OTHER_SHIFT;
        return (entry & IVAR_ALLOC_VAL != 0).then_some((entry & IVAR_MISC_VECTOR_MASK) as usize);
    }
    None
}

/// Sends the messages of the EICR bits in `bits` (pending and unmasked), with the lock
/// held: applies auto-mask and auto-clear and returns the eventfds to signal (one per
/// vector). Nothing is sent outside MSI-X mode or without enabled vectors.
#[must_use]
fn emit(dev: &Device, vectors: &[Arc<OwnedFd>], bits: u32) -> Vec<Arc<OwnedFd>> {
    let mut out = Vec::new();
    let regs = &dev.regs;
    let gpie = regs.get(GPIE);
    if bits == 0 || vectors.is_empty() || gpie & GPIE_MSIX_MODE == 0 {
        return out;
    }
    let mut signalled = 0u64;
    let mut rest = bits;
    while rest != 0 {
        let bit = 1u32 << rest.trailing_zeros();
        rest &= !bit;
        let Some(v) = vector_of(regs, bit) else {
            continue;
        };
        // The message leaves the device: auto-mask and auto-clear apply whether or not
        // the host enabled that vector.
        if gpie & GPIE_EIAME != 0 && regs.get(EIAM) & bit != 0 {
            regs.clear_bits(EIMS, bit);
        }
        if regs.get(EIAC) & bit != 0 {
            regs.clear_bits(EICR, bit);
        }
        match vectors.get(v) {
            // v < vectors.len() <= 64: the shift is in range.
            Some(fd) if signalled & (1 << v) == 0 => {
                signalled |= 1 << v;
                out.push(fd.clone());
            }
            Some(_) => {}
            None => bump(&dev.counters.interrupts_unrouted, 1),
        }
    }
    out
}

/// Signals the vectors `emit` chose (no lock held).
fn signal(dev: &Device, fds: Vec<Arc<OwnedFd>>) {
    for fd in fds {
        match eventfd_signal(fd.as_fd()) {
            Ok(()) => bump(&dev.counters.interrupts, 1),
            Err(e) => tracing::warn!(model = dev.id, "signalling an MSI-X eventfd: {e}"),
        }
    }
}

/// Causes `bits` happen (a link change, or an EICS write): they are set in EICR and the
/// unmasked ones fire.
pub(crate) fn raise(dev: &Device, bits: u32) {
    if bits == 0 {
        return;
    }
    let fire = {
        let vectors = dev.irq.hold();
        dev.regs.or(EICR, bits);
        emit(dev, &vectors, bits & dev.regs.get(EIMS))
    };
    signal(dev, fire);
}

/// The receive queues in `queues` (bit q: queue q) wrote descriptors back: each is a
/// cause on the vector of its IVAR entry (bits 7:0 for even queues, 23:16 for odd ones),
/// if that entry is valid. The RTxQ bits are set whatever the mode (outside MSI-X mode
/// the entry names the EICR bit).
pub(crate) fn rx_written_back(dev: &Device, queues: u64) {
    let mut bits = 0u32;
    let mut rest = queues;
    while rest != 0 {
        let q = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        let entry = dev.regs.get(ivar(q / 2)) >> (16 * (q % 2));
        if entry & IVAR_ALLOC_VAL == 0 {
            continue;
        }
        let v = (entry & IVAR_VECTOR_MASK) as usize;
        if v < EICR_VECTORS {
            bits |= 1 << v;
        } else {
            // EICR_EX is not modelled: the cause has nowhere to go.
            bump(&dev.counters.interrupts_unrouted, 1);
        }
    }
    raise(dev, bits);
}

/// An EIMS write: sets mask bits; a newly unmasked bit whose cause is pending fires now.
pub(crate) fn write_eims(dev: &Device, v: u32) {
    let fire = {
        let vectors = dev.irq.hold();
        let old = dev.regs.get(EIMS);
        dev.regs.or(EIMS, v);
        emit(dev, &vectors, v & !old & dev.regs.get(EICR))
    };
    signal(dev, fire);
}

/// An EIMC write: clears mask bits.
pub(crate) fn write_eimc(dev: &Device, v: u32) {
    let _vectors = dev.irq.hold();
    dev.regs.clear_bits(EIMS, v);
}

/// An EICR write: write 1 to clear (8.2.3.5.1).
pub(crate) fn write_eicr(dev: &Device, v: u32) {
    let _vectors = dev.irq.hold();
    dev.regs.clear_bits(EICR, v);
}

/// An EICR read: returns the causes and clears them, all of them, or with GPIE.OCD
/// (Other Clear Disable) only the other causes (29:16), leaving the RTxQ bits (and bits
/// 31:30) for auto-clear or write-to-clear.
pub(crate) fn read_eicr(dev: &Device) -> u32 {
    let _vectors = dev.irq.hold();
    if dev.regs.get(GPIE) & GPIE_OCD != 0 {
        dev.regs.take_bits(EICR, EICR_OTHER)
    } else {
        dev.regs.take(EICR)
    }
}

/// `PciBackend::enable_irqs`: `count` vectors (1..=64, the 82599's MSI-X table size),
/// each a new eventfd the device keeps a reference to and signals; handle i is vector i.
/// They stay enabled until every returned handle is dropped; a second call before that
/// is refused, as VFIO refuses it.
pub(crate) fn enable(
    dev: &Arc<Device>,
    addr: PciAddr,
    count: u32,
) -> Result<Vec<Box<dyn IrqWait>>> {
    if count == 0 || count as usize > MSIX_VECTORS {
        return Err(Error::driver(
            "ixgbe-model",
            format!(
                "{addr}: enable_irqs({count}): the 82599's MSI-X table has {MSIX_VECTORS} \
                 entries, ask for 1..={MSIX_VECTORS} vectors"
            ),
        ));
    }
    let mut vectors = dev.irq.hold();
    if !vectors.is_empty() {
        return Err(Error::driver(
            "ixgbe-model",
            format!(
                "{addr}: interrupts already enabled ({} vectors); drop the previous \
                 IrqWait handles first",
                vectors.len()
            ),
        ));
    }
    let io = |what: &str, e| Error::io(format!("{addr}: {what} for an MSI-X vector"), e);
    let mut handles = Vec::with_capacity(count as usize);
    let mut fds = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let fd = Arc::new(eventfd().map_err(|e| io("eventfd", e))?);
        let ep = Epoll::new().map_err(|e| io("epoll", e))?;
        ep.watch(fd.as_fd(), 0).map_err(|e| io("epoll_ctl", e))?;
        fds.push(fd.clone());
        handles.push((fd, ep));
    }
    *vectors = fds;
    drop(vectors);
    let guard = Arc::new(IrqGuard {
        dev: Arc::downgrade(dev),
    });
    Ok(handles
        .into_iter()
        .map(|(fd, ep)| {
            Box::new(ModelIrq {
                fd,
                ep,
                _guard: guard.clone(),
            }) as Box<dyn IrqWait>
        })
        .collect())
}

/// Disables the vectors when the last handle of the set goes (the device stops
/// signalling; a function reset does not do this).
#[derive(Debug)]
struct IrqGuard {
    dev: Weak<Device>,
}

impl Drop for IrqGuard {
    fn drop(&mut self) {
        // A new set cannot have been enabled while this one was alive, so the vectors
        // in the device are this set's.
        if let Some(dev) = self.dev.upgrade() {
            dev.irq.hold().clear();
        }
    }
}

/// One enabled vector: the eventfd the model signals, and an epoll instance to wait on
/// it with a timeout.
#[derive(Debug)]
struct ModelIrq {
    fd: Arc<OwnedFd>,
    ep: Epoll,
    _guard: Arc<IrqGuard>,
}

impl IrqWait for ModelIrq {
    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn wait(&self, timeout_ms: i32) -> Result<u64> {
        let n = eventfd_drain(self.fd.as_fd());
        if n > 0 || timeout_ms == 0 {
            return Ok(n);
        }
        let timeout = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        self.ep
            .wait(&mut [0u64], timeout)
            .map_err(|e| Error::io("waiting for a model MSI-X vector", e))?;
        Ok(eventfd_drain(self.fd.as_fd()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_of_eicr_bits() {
        let r = RegFile::new();
        assert_eq!(vector_of(&r, 1 << 0), Some(0));
        assert_eq!(vector_of(&r, 1 << 15), Some(15));
        assert_eq!(vector_of(&r, EICR_LSC), None, "IVAR_MISC entry not valid");
        r.set(IVAR_MISC, (IVAR_ALLOC_VAL | 37) << 8 | IVAR_ALLOC_VAL | 5);
        assert_eq!(vector_of(&r, EICR_LSC), Some(37));
        assert_eq!(vector_of(&r, 1 << 16), Some(37));
        assert_eq!(vector_of(&r, 1 << 30), None, "TCP timer not modelled");
        assert_eq!(vector_of(&r, 1 << 31), None);
    }
}
