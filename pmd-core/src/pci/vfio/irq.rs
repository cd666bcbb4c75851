//! Interrupts of a VFIO device: which type to use for a number of vectors, eventfds the
//! kernel signals, INTx unmasking after each wait, and disabling when the last handle goes.

use super::error::VfioError;
use super::ioctl::{self, IrqType};
use crate::error::Result;
use crate::pci::backend::IrqWait;
use crate::pci::error::PciError;
use crate::pci::sys::{self, poll_readable};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use vfio_bindings::bindings::vfio as vfio_sys;

/// Interrupt vectors a device offers per type (`VFIO_DEVICE_GET_IRQ_INFO`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IrqCounts {
    /// Legacy INTx lines (0 or 1).
    pub intx: u32,
    /// MSI vectors.
    pub msi: u32,
    /// MSI-X vectors.
    pub msix: u32,
}

impl IrqCounts {
    /// Reads the vector counts of `device` (`num_irqs` IRQ indexes); a type the device
    /// lacks, or without eventfd signalling, counts 0.
    pub(super) fn query(device: BorrowedFd<'_>, num_irqs: u32) -> IrqCounts {
        let count = |t: IrqType| -> u32 {
            if t.index() >= num_irqs {
                return 0;
            }
            match ioctl::device_get_irq_info(device, t.index()) {
                Ok(irq) if irq.flags & vfio_sys::VFIO_IRQ_INFO_EVENTFD != 0 => irq.count,
                _ => 0,
            }
        };
        IrqCounts {
            intx: count(IrqType::Intx),
            msi: count(IrqType::Msi),
            msix: count(IrqType::Msix),
        }
    }
}

/// Picks MSI-X if it has `count` vectors, else MSI, else INTx (only for `count == 1`).
pub fn choose_irq_type(counts: IrqCounts, count: u32) -> Result<IrqType> {
    if count == 0 {
        return Err(VfioError::NoVectors.into());
    }
    if counts.msix >= count {
        Ok(IrqType::Msix)
    } else if counts.msi >= count {
        Ok(IrqType::Msi)
    } else if count == 1 && counts.intx >= 1 {
        Ok(IrqType::Intx)
    } else {
        Err(VfioError::TooManyVectors {
            count,
            msix: counts.msix,
            msi: counts.msi,
            intx: counts.intx,
        }
        .into())
    }
}

/// Keeps interrupts enabled while any [`VfioIrq`] lives; disables them on drop.
#[derive(Debug)]
pub(super) struct IrqGuard {
    dev: Arc<File>,
    irq: IrqType,
}

impl Drop for IrqGuard {
    fn drop(&mut self) {
        let flags = vfio_sys::VFIO_IRQ_SET_DATA_NONE | vfio_sys::VFIO_IRQ_SET_ACTION_TRIGGER;
        if let Err(e) = ioctl::device_set_irqs(self.dev.as_fd(), flags, self.irq.index(), 0, 0, &[])
        {
            tracing::warn!(
                index = self.irq.index(),
                "disabling VFIO interrupts failed: {e}"
            );
        }
    }
}

/// One enabled VFIO interrupt vector: an eventfd the kernel signals.
#[derive(Debug)]
pub struct VfioIrq {
    efd: File,
    /// For INTx: the device, to unmask after each wait.
    intx_dev: Option<Arc<File>>,
    _guard: Arc<IrqGuard>,
}

impl IrqWait for VfioIrq {
    fn fd(&self) -> BorrowedFd<'_> {
        self.efd.as_fd()
    }

    fn wait(&self, timeout_ms: i32) -> Result<u64> {
        if !poll_readable(self.efd.as_fd(), timeout_ms)? {
            return Ok(0);
        }
        let mut b = [0u8; 8];
        let n = match (&self.efd).read(&mut b) {
            Ok(8) => u64::from_ne_bytes(b),
            Ok(_) => 0,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(PciError::io("reading interrupt eventfd", e).into()),
        };
        if let Some(dev) = &self.intx_dev {
            let flags = vfio_sys::VFIO_IRQ_SET_DATA_NONE | vfio_sys::VFIO_IRQ_SET_ACTION_UNMASK;
            ioctl::device_set_irqs(dev.as_fd(), flags, IrqType::Intx.index(), 0, 1, &[])
                .map_err(|source| VfioError::UnmaskIntx { source })?;
        }
        Ok(n)
    }
}

/// `count` new eventfds, not yet given to the kernel.
pub(super) fn new_eventfds(count: u32) -> Result<Vec<File>> {
    (0..count)
        .map(|_| sys::eventfd_nonblocking().map_err(|e| PciError::io("eventfd", e).into()))
        .collect()
}

/// Hands `efds` to the kernel as the triggers of `irq` on `dev` and returns one waitable
/// per vector; interrupts stay enabled until the last of them (and the returned guard) is
/// dropped.
pub(super) fn enable(
    dev: &Arc<File>,
    irq: IrqType,
    efds: Vec<File>,
) -> std::io::Result<(Arc<IrqGuard>, Vec<VfioIrq>)> {
    use std::os::fd::AsRawFd;
    let raw: Vec<i32> = efds.iter().map(|f| f.as_raw_fd()).collect();
    let count = u32::try_from(raw.len())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let flags = vfio_sys::VFIO_IRQ_SET_DATA_EVENTFD | vfio_sys::VFIO_IRQ_SET_ACTION_TRIGGER;
    ioctl::device_set_irqs(dev.as_fd(), flags, irq.index(), 0, count, &raw)?;
    let guard = Arc::new(IrqGuard {
        dev: dev.clone(),
        irq,
    });
    let handles = efds
        .into_iter()
        .map(|efd| VfioIrq {
            efd,
            intx_dev: (irq == IrqType::Intx).then(|| dev.clone()),
            _guard: guard.clone(),
        })
        .collect();
    Ok((guard, handles))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn irq_type_choice() {
        let c = |intx, msi, msix| IrqCounts { intx, msi, msix };
        assert_eq!(choose_irq_type(c(1, 1, 4), 4).unwrap(), IrqType::Msix);
        assert_eq!(choose_irq_type(c(1, 8, 4), 5).unwrap(), IrqType::Msi);
        assert_eq!(choose_irq_type(c(1, 0, 0), 1).unwrap(), IrqType::Intx);
        assert!(choose_irq_type(c(1, 0, 0), 2).is_err());
        assert!(choose_irq_type(c(1, 1, 1), 0).is_err());
        assert!(choose_irq_type(c(0, 0, 0), 1)
            .unwrap_err()
            .to_string()
            .contains("MSI-X 0"));
        assert_eq!(IrqType::Msix.index(), 2);
        assert_eq!(IrqType::Intx.index(), 0);
    }

    #[test]
    fn eventfds_are_nonblocking_and_quiet() {
        let efds = new_eventfds(2).unwrap();
        assert_eq!(efds.len(), 2);
        assert!(!poll_readable(efds[0].as_fd(), 0).unwrap());
    }
}
