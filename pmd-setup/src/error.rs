//! [`SetupError`]: what can go wrong reading PCI devices, moving them between drivers and
//! recording their original drivers. Each message says what to do.

use pmd_core::pci::ClassCode;
use pmd_core::PciAddr;
use std::io;
use std::path::PathBuf;

/// A device could not be found, bound, unbound or restored.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No sysfs directory for the address.
    #[error("no PCI device {addr} (list devices with `pmd-setup status`)")]
    NoDevice {
        /// The address asked for.
        addr: PciAddr,
    },
    /// A driver name that cannot be one sysfs directory entry.
    #[error("no PCI driver named {name:?}")]
    BadDriverName {
        /// The name given.
        name: String,
    },
    /// The target driver is not registered with the PCI bus.
    #[error("{}", driver_not_loaded(driver))]
    DriverNotLoaded {
        /// The driver asked for.
        driver: String,
    },
    /// The device looks in use and `--force` was not given.
    #[error("refusing to bind {addr} to {driver}: {why}")]
    InUse {
        /// The device.
        addr: PciAddr,
        /// The driver asked for.
        driver: String,
        /// Why it looks in use.
        why: String,
    },
    /// The device is not a network controller and `--force` was not given.
    #[error(
        "refusing to bind {addr} to {driver}: it is not a network device (class {:06x}) but a {}{}; \
         pass --force to bind it anyway",
        class.0,
        class.describe(),
        held_by.as_ref().map(|d| format!(", held by the kernel driver {d}")).unwrap_or_default()
    )]
    NotNetwork {
        /// The device.
        addr: PciAddr,
        /// The driver asked for.
        driver: String,
        /// Its class code.
        class: ClassCode,
        /// The kernel driver it is bound to now, if any.
        held_by: Option<String>,
    },
    /// vfio-pci asked for a device outside any IOMMU group, without no-IOMMU mode.
    #[error(
        "{addr} is in no IOMMU group, so vfio-pci cannot take it: enable the IOMMU \
         (boot with intel_iommu=on or amd_iommu=on), or, in a VM without a vIOMMU, \
         enable no-IOMMU mode first (`pmd-setup noiommu on`)"
    )]
    NoIommuGroup {
        /// The device.
        addr: PciAddr,
    },
    /// A sysfs write failed.
    #[error(
        "writing {:?} to {}: {source}{}",
        contents.trim(),
        path.display(),
        root_hint(source)
    )]
    Write {
        /// What was written.
        contents: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Detaching the device from its driver failed (then it was rolled back).
    #[error("unbinding {addr} from {from}: {error}; {rollback}")]
    Unbind {
        /// The device.
        addr: PciAddr,
        /// Its driver.
        from: String,
        /// The failed write.
        error: Box<SetupError>,
        /// How the rollback went.
        rollback: String,
    },
    /// Asking the bus to probe the device failed (then it was rolled back).
    #[error("probing {addr}: {error}; {rollback}")]
    Probe {
        /// The device.
        addr: PciAddr,
        /// The failed write.
        error: Box<SetupError>,
        /// How the rollback went.
        rollback: String,
    },
    /// The target driver did not claim the device (then it was rolled back).
    #[error("{driver} did not take {addr}: {why}; {rollback}")]
    NotTaken {
        /// The driver asked for.
        driver: String,
        /// The device.
        addr: PciAddr,
        /// The likely reason.
        why: String,
        /// How the rollback went.
        rollback: String,
    },
    /// The original driver of a device is not loaded.
    #[error(
        "cannot give {addr} back to {driver}: driver {driver} is not loaded \
         (load its module, e.g. `modprobe {}`, and try again)",
        driver.replace('-', "_")
    )]
    OriginalNotLoaded {
        /// The device.
        addr: PciAddr,
        /// Its original driver.
        driver: String,
    },
    /// The original driver did not claim the device back.
    #[error("{driver} did not take {addr} back (see dmesg); it is bound to {}", now.as_deref().unwrap_or("no driver"))]
    NotTakenBack {
        /// The original driver.
        driver: String,
        /// The device.
        addr: PciAddr,
        /// What it is bound to now.
        now: Option<String>,
    },
    /// `sriov` on a device without SR-IOV (no `sriov_totalvfs`).
    #[error("{}", no_sriov(*addr, *physfn))]
    NoSriov {
        /// The device.
        addr: PciAddr,
        /// Its physical function, when it is itself a virtual function.
        physfn: Option<PciAddr>,
    },
    /// `sriov` asked for more VFs than the physical function supports.
    #[error(
        "{addr} supports at most {total} VFs (its sriov_totalvfs), not {asked}: \
         ask for 0 to {total}"
    )]
    TooManyVfs {
        /// The physical function.
        addr: PciAddr,
        /// The number asked for.
        asked: u32,
        /// Its `sriov_totalvfs`.
        total: u32,
    },
    /// Changing the VFs would reset a physical function whose interface is active, and
    /// `--force` was not given.
    #[error(
        "refusing to {}: {why}, and enabling, changing or removing VFs resets the PF \
         (igb, ixgbe), dropping its link. Move its addresses and routes elsewhere first \
         (it may stay up) or pass --force",
        vf_change(*addr, *current, *asked)
    )]
    PfActive {
        /// The physical function.
        addr: PciAddr,
        /// Its VFs now.
        current: u32,
        /// The number asked for.
        asked: u32,
        /// Which interface is active (`its interface eth0 (up, with addresses) is active`).
        why: String,
    },
    /// Changing the VFs would remove VFs bound to a user-space driver, and `--force` was
    /// not given.
    #[error("refusing to {}: {}", vf_change(*addr, *current, *asked), vfs_in_use(vfs))]
    VfsInUse {
        /// The physical function.
        addr: PciAddr,
        /// Its VFs now.
        current: u32,
        /// The number asked for.
        asked: u32,
        /// The VFs in use and their drivers.
        vfs: Vec<(PciAddr, String)>,
    },
    /// Writing `sriov_numvfs` failed (the PF's driver refused, or has no SR-IOV support).
    #[error(
        "setting {asked} VFs on {addr}: {write}{}{}",
        sriov_write_hint(write, driver.as_deref()),
        removed.map(|n| format!(" (its {n} VFs were removed on the way: it has none now)")).unwrap_or_default()
    )]
    SriovWrite {
        /// The physical function.
        addr: PciAddr,
        /// The number asked for.
        asked: u32,
        /// The failed write ([`SetupError::Write`]).
        write: Box<SetupError>,
        /// The PF's driver.
        driver: Option<String>,
        /// The VFs it had, when writing 0 before the new count succeeded and the
        /// new count failed.
        removed: Option<u32>,
    },
    /// A bind record that cannot be read back.
    #[error("corrupt bind record {} (delete it to forget the original driver)", path.display())]
    CorruptRecord {
        /// The record file.
        path: PathBuf,
    },
    /// Reading or writing a file (other than a sysfs control file) failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        source: io::Error,
    },
}

impl SetupError {
    /// The exit status of a command that failed with this error: 2 for input the tool
    /// refuses by itself before changing anything (no such device or driver, a driver not
    /// loaded, a device that is not a network controller or whose interface is in use, a
    /// device without SR-IOV, too many VFs, VFs in use), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            SetupError::NotNetwork { .. }
            | SetupError::NoDevice { .. }
            | SetupError::BadDriverName { .. }
            | SetupError::DriverNotLoaded { .. }
            | SetupError::InUse { .. }
            | SetupError::NoSriov { .. }
            | SetupError::TooManyVfs { .. }
            | SetupError::PfActive { .. }
            | SetupError::VfsInUse { .. } => 2,
            _ => 1,
        }
    }

    /// A [`SetupError::Io`] for `source` while doing `context`.
    pub fn io(context: impl Into<String>, source: io::Error) -> SetupError {
        SetupError::Io {
            context: context.into(),
            source,
        }
    }
}

/// What to do about a driver that is not loaded.
fn driver_not_loaded(driver: &str) -> String {
    match driver {
        "vfio-pci" => "driver vfio-pci is not loaded: run `modprobe vfio-pci`".to_string(),
        "uio_pci_generic" => {
            "driver uio_pci_generic is not loaded: run `modprobe uio_pci_generic`".to_string()
        }
        _ => format!("no PCI driver named {driver} (is its module loaded?)"),
    }
}

/// Why `addr` cannot have VFs, and what to give instead.
fn no_sriov(addr: PciAddr, physfn: Option<PciAddr>) -> String {
    match physfn {
        Some(pf) => format!(
            "{addr} is a virtual function of {pf}: give the physical function \
             (`pmd-setup sriov {pf} N`)"
        ),
        None => format!(
            "{addr} has no SR-IOV capability (no sriov_totalvfs), so it cannot have virtual \
             functions: give the physical function of an SR-IOV NIC"
        ),
    }
}

/// `enable 4 VFs on ADDR`, `remove the 2 VFs of ADDR`, `change ADDR from 2 to 4 VFs`.
fn vf_change(addr: PciAddr, current: u32, asked: u32) -> String {
    match (current, asked) {
        (0, n) => format!("enable {n} VFs on {addr}"),
        (c, 0) => format!("remove the {c} VFs of {addr}"),
        (c, n) => format!("change {addr} from {c} to {n} VFs"),
    }
}

/// `VF ADDR is bound to vfio-pci (...); unbind it first (...)`, for one or more VFs.
fn vfs_in_use(vfs: &[(PciAddr, String)]) -> String {
    let what = match vfs {
        [(vf, d)] => format!("its VF {vf} is bound to {d}"),
        _ => {
            let l: Vec<String> = vfs.iter().map(|(vf, d)| format!("{vf} ({d})")).collect();
            format!("its VFs {} are bound to user-space drivers", l.join(", "))
        }
    };
    let cmds: Vec<String> = vfs
        .iter()
        .map(|(vf, _)| format!("`pmd-setup unbind {vf}`"))
        .collect();
    format!(
        "{what} (in use by a user-space driver, which would lose the device); unbind {} first \
         ({}) or pass --force",
        if vfs.len() > 1 { "them" } else { "it" },
        cmds.join(", ")
    )
}

/// What to check after a failed `sriov_numvfs` write, from the error and the PF's driver.
fn sriov_write_hint(write: &SetupError, driver: Option<&str>) -> String {
    let SetupError::Write { source, .. } = write else {
        return String::new();
    };
    if source.kind() == io::ErrorKind::PermissionDenied {
        return String::new();
    }
    let bound = match driver {
        Some(d) => format!("it is bound to {d}"),
        None => "it has no driver".to_string(),
    };
    let mem = if source.raw_os_error() == Some(libc::ENOMEM) {
        "; ENOMEM also means too little MMIO space or too few bus numbers for the VFs: \
         enable SR-IOV in the firmware setup or boot with pci=realloc"
    } else {
        ""
    };
    format!("; the PF's driver must be loaded and support SR-IOV ({bound}; see dmesg){mem}")
}

/// ` (run as root)` for a permission error.
fn root_hint(e: &io::Error) -> &'static str {
    if e.kind() == io::ErrorKind::PermissionDenied {
        " (run as root)"
    } else {
        ""
    }
}

/// A failed command: the message to print and the exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong and what to do.
    pub message: String,
    /// The exit status (2: input the tool refuses, 1: anything else).
    pub code: u8,
}

impl Failure {
    /// A failure of exit status 2: input the tool refuses before changing anything.
    pub fn refused(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 2,
        }
    }
}

impl From<String> for Failure {
    /// A failure of exit status 1.
    fn from(message: String) -> Failure {
        Failure { message, code: 1 }
    }
}

impl From<SetupError> for Failure {
    fn from(e: SetupError) -> Failure {
        Failure {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}
