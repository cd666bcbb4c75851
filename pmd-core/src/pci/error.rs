//! [`PciError`]: everything that can go wrong finding, opening and driving a PCI function,
//! outside the VFIO ioctl layer (whose [`VfioError`] it carries). Each message says what to
//! do; the texts are the ones users and scripts already know.
//!
//! This module imports only leaf modules (addresses, class codes, backend kinds, the VFIO
//! error), so the crate's top-level error can carry it without an import loop.

use super::addr::PciAddr;
use super::class::ClassCode;
use super::kind::BackendKind;
use super::vfio::error::{driver_now, VfioError};
use std::fmt;
use std::path::PathBuf;

/// Which backend an error comes from, and for which device: the prefix of its message
/// (`uio 0000:00:04.0: ...`, `vfio: ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The UIO backend, for one device or in general.
    Uio(Option<PciAddr>),
    /// The VFIO backend, for one device or in general.
    Vfio(Option<PciAddr>),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, addr) = match self {
            Origin::Uio(a) => ("uio", a),
            Origin::Vfio(a) => ("vfio", a),
        };
        match addr {
            Some(a) => write!(f, "{name} {a}"),
            None => f.write_str(name),
        }
    }
}

/// What is wrong with one line of a sysfs `resource` file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceProblem {
    /// A number without its `0x` prefix.
    #[error("{what} {text:?} lacks 0x")]
    NoHexPrefix {
        /// Which column (`start`, `end`, `flags`).
        what: &'static str,
        /// The text found.
        text: String,
    },
    /// A number that is not hexadecimal.
    #[error("bad {what} {text:?}")]
    BadNumber {
        /// Which column (`start`, `end`, `flags`).
        what: &'static str,
        /// The text found.
        text: String,
    },
    /// Not three columns.
    #[error("expected 3 fields, got {line:?}")]
    FieldCount {
        /// The whole line.
        line: String,
    },
    /// An end address before the start (or a half-empty resource).
    #[error("end before start in {line:?}")]
    EndBeforeStart {
        /// The whole line.
        line: String,
    },
}

/// A PCI device could not be found, opened or driven.
#[derive(Debug, thiserror::Error)]
pub enum PciError {
    /// No sysfs directory for the address.
    #[error("pci {addr}: no such PCI device ({} does not exist); list devices with `lspci -D`", path.display())]
    NotFound {
        /// The address asked for.
        addr: PciAddr,
        /// The sysfs directory that is missing.
        path: PathBuf,
    },
    /// The device is not a network controller (its class code says so): no poll-mode
    /// driver can use it, whatever it is bound to.
    #[error(
        "pci {addr}: class {class} is not a network controller (class 02xxxx), so no poll-mode \
         driver can use it; give the address of a network device (`pmd-setup status` lists them)"
    )]
    NotNetwork {
        /// The device.
        addr: PciAddr,
        /// Its class code.
        class: ClassCode,
    },
    /// The device is bound to no driver, or to one a poll-mode driver cannot use.
    #[error(
        "pci {addr}: device {}, which a poll-mode driver cannot use: bind it first: `pmd-setup bind {addr} vfio-pci` \
         (or `pmd-setup bind {addr} uio_pci_generic`)",
        bound_now(driver.as_deref())
    )]
    NotBound {
        /// The device.
        addr: PciAddr,
        /// The driver it is bound to, if any.
        driver: Option<String>,
    },
    /// A sysfs `vendor` or `device` file that does not hold a 16-bit hex number.
    #[error("pci {addr}: unexpected {file} id {text:?}")]
    BadId {
        /// The device.
        addr: PciAddr,
        /// `vendor` or `device`.
        file: &'static str,
        /// What the file holds.
        text: String,
    },
    /// The backend has no way to reach I/O-port BARs.
    #[error("pci: {addr}: this backend ({kind:?}) cannot access I/O-port BAR {bar}")]
    NoIoPorts {
        /// The device.
        addr: PciAddr,
        /// The backend in use.
        kind: BackendKind,
        /// The BAR asked for.
        bar: u8,
    },
    /// A backend's sysfs device directory is missing.
    #[error("{at}: no such PCI device ({} does not exist)", path.display())]
    NoSuchDevice {
        /// Backend and device.
        at: Origin,
        /// The sysfs directory that is missing.
        path: PathBuf,
    },
    /// A device without a UIO node: not bound to a UIO driver.
    #[error(
        "uio {addr}: device has no UIO node ({}): bind it first: `pmd-setup bind {addr} uio_pci_generic`",
        driver_now(driver.as_deref())
    )]
    NoUioNode {
        /// The device.
        addr: PciAddr,
        /// The driver it is bound to, if any.
        driver: Option<String>,
    },
    /// A malformed line in a sysfs `resource` file.
    #[error("uio: resource line {line}: {problem}")]
    ResourceLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: ResourceProblem,
    },
    /// A BAR number above 5.
    #[error("{at}: BAR {bar} does not exist (0..=5)")]
    NoSuchBar {
        /// Backend and device.
        at: Origin,
        /// The BAR asked for.
        bar: u8,
    },
    /// A BAR the device does not implement (size 0).
    #[error("{at}: BAR {bar} is not implemented")]
    BarNotImplemented {
        /// Backend and device.
        at: Origin,
        /// The BAR asked for.
        bar: u8,
    },
    /// A BAR larger than the address space.
    #[error("{at}: BAR too large")]
    BarTooLarge {
        /// Backend and device.
        at: Origin,
    },
    /// An I/O-port BAR asked to be memory-mapped through UIO.
    #[error("uio {addr}: BAR {bar} is an I/O-port BAR (flags {flags:#x}): UIO cannot mmap it; bind the device to vfio-pci to reach it")]
    UioIoBar {
        /// The device.
        addr: PciAddr,
        /// The BAR asked for.
        bar: u8,
        /// Its `IORESOURCE_*` flags.
        flags: u64,
    },
    /// More than one interrupt vector asked of UIO.
    #[error("uio {addr}: {count} interrupt vectors requested, but UIO offers one INTx line; use vfio-pci for MSI/MSI-X")]
    UioOneVector {
        /// The device.
        addr: PciAddr,
        /// Vectors asked for.
        count: u32,
    },
    /// The UIO interrupt is already handed out.
    #[error("uio {addr}: the interrupt is already enabled; drop the previous IrqWait first")]
    UioIrqBusy {
        /// The device.
        addr: PciAddr,
    },
    /// A device without an IOMMU given memory while the EAL runs with IOVA as VA.
    #[error("{who}: segment {segment}: this device has no IOMMU and must be given physical addresses, but the EAL runs with IOVA as VA: run with `--iova-mode pa`")]
    NeedsPhysicalAddresses {
        /// The backend (`uio`, `vfio no-IOMMU`).
        who: &'static str,
        /// The memory segment.
        segment: String,
    },
    /// A segment whose IOVA is not its physical address, for a device without an IOMMU.
    #[error("{who}: segment {segment}: its IOVA {iova:#x} is not its physical address {pa:#x}; run with `--iova-mode pa`")]
    IovaNotPhysical {
        /// The backend (`uio`, `vfio no-IOMMU`).
        who: &'static str,
        /// The memory segment.
        segment: String,
        /// Its IOVA.
        iova: u64,
        /// Its physical address.
        pa: u64,
    },
    /// `poll` flagged the interrupt descriptor as broken.
    #[error("irq: poll reported an error on the interrupt fd")]
    PollError,
    /// A register access outside a mapped BAR, or unaligned.
    #[error("mmio: register offset {offset:#x} (width {width}) is outside the {len:#x}-byte BAR or unaligned")]
    RegisterOffset {
        /// Offset asked for.
        offset: usize,
        /// Access width in bytes.
        width: usize,
        /// Size of the region.
        len: usize,
    },
    /// A VFIO ioctl or VFIO setup step failed.
    #[error(transparent)]
    Vfio(#[from] VfioError),
    /// A system call on a sysfs file, device node or mapping failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl PciError {
    /// A [`PciError::Io`] for `source` while doing `context`.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> PciError {
        PciError::Io {
            context: context.into(),
            source,
        }
    }
}

/// `is bound to X` / `is not bound to any driver`.
fn bound_now(driver: Option<&str>) -> String {
    driver.map_or("is not bound to any driver".to_string(), |d| {
        format!("is bound to {d}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> PciAddr {
        s.parse().unwrap()
    }

    #[test]
    fn origins_prefix_messages_like_before() {
        let e = PciError::NoSuchBar {
            at: Origin::Uio(None),
            bar: 6,
        };
        assert_eq!(e.to_string(), "uio: BAR 6 does not exist (0..=5)");
        let e = PciError::BarNotImplemented {
            at: Origin::Vfio(Some(a("0000:00:03.0"))),
            bar: 2,
        };
        assert_eq!(e.to_string(), "vfio 0000:00:03.0: BAR 2 is not implemented");
    }

    #[test]
    fn not_bound_names_the_driver_and_the_fix() {
        let e = PciError::NotBound {
            addr: a("0000:00:03.0"),
            driver: None,
        };
        assert_eq!(
            e.to_string(),
            "pci 0000:00:03.0: device is not bound to any driver, which a poll-mode driver cannot use: \
             bind it first: `pmd-setup bind 0000:00:03.0 vfio-pci` \
             (or `pmd-setup bind 0000:00:03.0 uio_pci_generic`)"
        );
        let e = PciError::NoUioNode {
            addr: a("0000:00:05.0"),
            driver: Some("e1000e".into()),
        };
        assert!(e.to_string().contains("(driver e1000e)"), "{e}");
    }
}
