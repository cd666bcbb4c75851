//! How a device is reached, decided in one place for the VFIO and UIO backends and the
//! opener above them: the access mode asked for ([`AccessMode`]) and what it resolves to
//! from the bound driver ([`resolve_mode`]), and the IOVA rule of devices without an IOMMU
//! ([`check_pa_segment`], [`common_iova_mode`]).

use super::addr::PciAddr;
use super::error::PciError;
use super::sysfs::{bound_driver, class_code, SysfsRoot};
use crate::error::Result;
use crate::memory::IovaMode;
use crate::memory::{self, SegmentInfo};
use std::fmt;
use std::str::FromStr;

/// How to reach a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessMode {
    /// From the bound driver: vfio-pci → VFIO, uio_pci_generic (or any UIO driver) → UIO.
    #[default]
    Auto,
    /// VFIO (the device must be bound to vfio-pci).
    Vfio,
    /// UIO (the device must be bound to uio_pci_generic or another UIO driver).
    Uio,
}

impl FromStr for AccessMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(AccessMode::Auto),
            "vfio" => Ok(AccessMode::Vfio),
            "uio" => Ok(AccessMode::Uio),
            _ => Err(format!(
                "unknown access mode {s:?}: expected auto, vfio or uio"
            )),
        }
    }
}

impl fmt::Display for AccessMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessMode::Auto => "auto",
            AccessMode::Vfio => "vfio",
            AccessMode::Uio => "uio",
        })
    }
}

/// Turns `Auto` into `Vfio` or `Uio` from the bound driver (explicit modes pass through;
/// their backends check the binding themselves). A device whose class code says it is not
/// a network controller is refused first, in every mode, so its error is not advice to
/// bind it.
pub fn resolve_mode(
    addr: PciAddr,
    mode: AccessMode,
    root: &SysfsRoot,
) -> std::result::Result<AccessMode, PciError> {
    if let Some(class) = class_code(addr, root).filter(|c| !c.is_network()) {
        return Err(PciError::NotNetwork { addr, class });
    }
    if mode != AccessMode::Auto {
        return Ok(mode);
    }
    let dev = root.device_dir(addr);
    if !dev.exists() {
        return Err(PciError::NotFound { addr, path: dev });
    }
    let driver = bound_driver(&dev);
    match driver.as_deref() {
        Some("vfio-pci") => Ok(AccessMode::Vfio),
        Some("uio_pci_generic") => Ok(AccessMode::Uio),
        Some(_) if dev.join("uio").is_dir() => Ok(AccessMode::Uio),
        _ => Err(PciError::NotBound { addr, driver }),
    }
}

/// One IOVA mode that suits all devices: PA if any needs PA (VFIO with an IOMMU copes
/// with PA as long as each segment is IOVA-contiguous), else VA; `None` for no devices.
pub fn common_iova_mode(modes: impl IntoIterator<Item = IovaMode>) -> Option<IovaMode> {
    modes.into_iter().reduce(|a, b| {
        if a == IovaMode::Pa || b == IovaMode::Pa {
            IovaMode::Pa
        } else {
            IovaMode::Va
        }
    })
}

/// Checks that a segment's IOVA is its physical address, for backends without an IOMMU
/// (`who`: `uio`, `vfio no-IOMMU`): the EAL must run with `--iova-mode pa`.
pub fn check_pa_segment(seg: &SegmentInfo, who: &'static str) -> Result<()> {
    if seg.iova_mode == IovaMode::Va {
        return Err(PciError::NeedsPhysicalAddresses {
            who,
            segment: seg.name.clone(),
        }
        .into());
    }
    let pa = memory::virt_to_phys(seg.va)?;
    if pa != seg.iova || seg.iova == seg.va as u64 {
        return Err(PciError::IovaNotPhysical {
            who,
            segment: seg.name.clone(),
            iova: seg.iova,
            pa,
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_mode_parses() {
        assert_eq!("VFIO".parse::<AccessMode>().unwrap(), AccessMode::Vfio);
        assert_eq!("auto".parse::<AccessMode>().unwrap(), AccessMode::Auto);
        assert!("x".parse::<AccessMode>().is_err());
        assert_eq!(AccessMode::Uio.to_string(), "uio");
    }

    #[test]
    fn pa_check_requires_iova_mode_pa() {
        let seg = SegmentInfo {
            id: 1,
            name: "t".into(),
            va: 0x1000,
            len: 4096,
            page_size: 4096,
            iova: 0x1000,
            iova_contiguous: true,
            iova_mode: IovaMode::Va,
            fd: -1,
        };
        let e = check_pa_segment(&seg, "uio").unwrap_err().to_string();
        assert!(e.contains("--iova-mode pa"), "{e}");
    }
}
