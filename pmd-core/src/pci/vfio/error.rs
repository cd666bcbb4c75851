//! [`VfioError`]: what can fail in the VFIO backend — each ioctl, and each step of setting up
//! a container, group or device. Messages say what to do and are the ones users know.
//!
//! Imports only leaf modules, so the PCI error type can carry it.

use super::ioctl::{IommuType, IrqType};
use crate::pci::addr::PciAddr;
use std::io;
use std::path::PathBuf;
use vfio_bindings::bindings::vfio as sys;

/// A VFIO operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    /// `/dev/vfio/vfio` does not exist.
    #[error("vfio: {} does not exist: vfio-pci is not loaded: `modprobe vfio-pci`", path.display())]
    ContainerMissing {
        /// The container node.
        path: PathBuf,
    },
    /// The container node cannot be opened for lack of permission.
    #[error("vfio: permission denied opening {}: run as root", path.display())]
    ContainerDenied {
        /// The container node.
        path: PathBuf,
    },
    /// Opening the container failed otherwise.
    #[error("opening {}: {source}", path.display())]
    OpenContainer {
        /// The container node.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `VFIO_GET_API_VERSION` failed.
    #[error("VFIO_GET_API_VERSION on {} (not a VFIO container?): {source}", path.display())]
    GetApiVersion {
        /// The container node.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel speaks another VFIO API version.
    #[error(
        "vfio: unsupported VFIO API version {found} (expected {})",
        sys::VFIO_API_VERSION
    )]
    ApiVersion {
        /// The version the kernel reported.
        found: i32,
    },
    /// Neither IOMMU model this backend uses is available.
    #[error(
        "vfio: VFIO supports neither the type1v2 IOMMU nor no-IOMMU mode: load vfio_iommu_type1 \
         (with the IOMMU enabled: intel_iommu=on iommu=pt) or enable no-IOMMU mode (`pmd-setup noiommu on`)"
    )]
    NoIommuModel,
    /// A group that needs the other IOMMU model than the container has.
    #[error("vfio {addr}: cannot mix no-IOMMU and IOMMU-backed VFIO devices in one process (the container is {have:?}, group {group} needs {want:?})")]
    MixedIommu {
        /// The device being opened.
        addr: PciAddr,
        /// The container's model.
        have: IommuType,
        /// The group's.
        want: IommuType,
        /// The group.
        group: u32,
    },
    /// The group node cannot be opened for lack of permission.
    #[error(
        "vfio {addr}: permission denied opening {p}: run as root, or give this user the group (`chown $USER {p}`) and raise its memlock limit",
        p = path.display()
    )]
    GroupDenied {
        /// The device being opened.
        addr: PciAddr,
        /// The group node.
        path: PathBuf,
    },
    /// Another process holds the group.
    #[error("vfio {addr}: {} is busy: another process (e.g. QEMU or another PMD app) has the group open", path.display())]
    GroupBusy {
        /// The device being opened.
        addr: PciAddr,
        /// The group node.
        path: PathBuf,
    },
    /// The group node went away.
    #[error("vfio {addr}: {} does not exist: is the device still bound to vfio-pci?", path.display())]
    GroupGone {
        /// The device being opened.
        addr: PciAddr,
        /// The group node.
        path: PathBuf,
    },
    /// Opening the group node failed otherwise.
    #[error("opening {}: {source}", path.display())]
    OpenGroup {
        /// The group node.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `VFIO_GROUP_GET_STATUS` failed.
    #[error("VFIO_GROUP_GET_STATUS on {}: {source}", path.display())]
    GroupGetStatus {
        /// The group node.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Some device of the group is held by a kernel driver.
    #[error("vfio {addr}: {group}")]
    GroupNotViable {
        /// The device being opened.
        addr: PciAddr,
        /// The group and its other devices.
        group: NotViable,
    },
    /// `VFIO_GROUP_SET_CONTAINER` failed.
    #[error("VFIO_GROUP_SET_CONTAINER for group {group}: {source}")]
    GroupSetContainer {
        /// The group.
        group: u32,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel cannot do the IOMMU model a group needs.
    #[error("vfio: {}", unsupported_iommu(*iommu))]
    IommuUnsupported {
        /// The model asked for.
        iommu: IommuType,
    },
    /// `VFIO_SET_IOMMU` failed.
    #[error("VFIO_SET_IOMMU({iommu:?}): {source}")]
    SetIommu {
        /// The model asked for.
        iommu: IommuType,
        /// The OS error.
        source: io::Error,
    },
    /// The device is not bound to vfio-pci.
    #[error(
        "vfio {addr}: device is not bound to vfio-pci ({}): bind it first: `pmd-setup bind {addr} vfio-pci`",
        driver_now(driver.as_deref())
    )]
    NotBoundToVfio {
        /// The device.
        addr: PciAddr,
        /// The driver it is bound to, if any.
        driver: Option<String>,
    },
    /// The device is in no IOMMU group.
    #[error("vfio {addr}: no IOMMU group: enable the IOMMU (intel_iommu=on iommu=pt) or use no-IOMMU mode (`pmd-setup noiommu on`) or uio_pci_generic")]
    NoIommuGroup {
        /// The device.
        addr: PciAddr,
    },
    /// An `iommu_group` link whose name is not a number.
    #[error("vfio {addr}: unexpected iommu_group link {}", link.display())]
    BadGroupLink {
        /// The device.
        addr: PciAddr,
        /// Where the link points.
        link: PathBuf,
    },
    /// `/dev/vfio/vfio` is missing while looking for a device's group.
    #[error("vfio {addr}: {} does not exist: vfio-pci is not loaded: `modprobe vfio-pci`", path.display())]
    NotLoaded {
        /// The device.
        addr: PciAddr,
        /// The container node.
        path: PathBuf,
    },
    /// Neither group node exists.
    #[error(
        "vfio {addr}: neither {} nor {} exists: rebind the device to vfio-pci (`pmd-setup bind {addr} vfio-pci`)",
        normal.display(),
        noiommu.display()
    )]
    NoGroupNode {
        /// The device.
        addr: PciAddr,
        /// `/dev/vfio/<N>`.
        normal: PathBuf,
        /// `/dev/vfio/noiommu-<N>`.
        noiommu: PathBuf,
    },
    /// The device is open already.
    #[error("vfio {addr}: device is already open (in this or another process)")]
    DeviceBusy {
        /// The device.
        addr: PciAddr,
    },
    /// `VFIO_GROUP_GET_DEVICE_FD` failed.
    #[error(
        "VFIO_GROUP_GET_DEVICE_FD for {addr} in group {group} (is it bound to vfio-pci?): {source}"
    )]
    GetDeviceFd {
        /// The device.
        addr: PciAddr,
        /// Its group.
        group: u32,
        /// The OS error.
        source: io::Error,
    },
    /// `VFIO_DEVICE_GET_INFO` failed.
    #[error("VFIO_DEVICE_GET_INFO for {addr}: {source}")]
    GetDeviceInfo {
        /// The device.
        addr: PciAddr,
        /// The OS error.
        source: io::Error,
    },
    /// VFIO says the device is not a PCI device.
    #[error("vfio {addr}: VFIO reports a non-PCI device")]
    NotPci {
        /// The device.
        addr: PciAddr,
    },
    /// The device reports no config-space region.
    #[error("vfio {addr}: device reports only {regions} regions (no config space)")]
    NoConfigRegion {
        /// The device.
        addr: PciAddr,
        /// Regions it reports.
        regions: u32,
    },
    /// `VFIO_DEVICE_GET_REGION_INFO` failed.
    #[error("VFIO_DEVICE_GET_REGION_INFO({index}): {source}")]
    GetRegionInfo {
        /// Region index.
        index: u32,
        /// The OS error.
        source: io::Error,
    },
    /// A region-info answer larger than this backend accepts.
    #[error("vfio: region {index} info claims {bytes} bytes")]
    RegionInfoTooLarge {
        /// Region index.
        index: u32,
        /// The size the kernel asked for.
        bytes: u32,
    },
    /// The region-info size kept changing between calls.
    #[error("vfio: region {index} info kept growing")]
    RegionInfoGrowing {
        /// Region index.
        index: u32,
    },
    /// A region-info answer shorter than its fixed part.
    #[error("vfio: region info shorter than struct vfio_region_info")]
    RegionInfoShort,
    /// A region's capability chain that cannot be walked safely.
    #[error("vfio: malformed region capability chain: {detail}")]
    MalformedCapChain {
        /// What is wrong, and where.
        detail: String,
    },
    /// A sparse-mmap area that does not fit its region.
    #[error("vfio: invalid sparse-mmap area: {detail}")]
    InvalidSparseArea {
        /// What is wrong with it.
        detail: String,
    },
    /// A region index the device does not have.
    #[error("vfio {addr}: region {index} does not exist")]
    NoRegion {
        /// The device.
        addr: PciAddr,
        /// Region index.
        index: u32,
    },
    /// A read of a write-only region, or the reverse.
    #[error("vfio {addr}: region {index} does not allow this access (flags {flags:#x})")]
    RegionAccess {
        /// The device.
        addr: PciAddr,
        /// Region index.
        index: u32,
        /// Its `VFIO_REGION_INFO_FLAG_*`.
        flags: u32,
    },
    /// An access past the end of a region.
    #[error("vfio {addr}: access {offset:#x}+{len} is outside region {index} ({size:#x} bytes)")]
    OutsideRegion {
        /// The device.
        addr: PciAddr,
        /// Region index.
        index: u32,
        /// Offset asked for.
        offset: u64,
        /// Length asked for.
        len: usize,
        /// The region's size.
        size: u64,
    },
    /// An I/O-port BAR asked to be memory-mapped.
    #[error("vfio {addr}: BAR {bar} is an I/O-port BAR and cannot be mmapped: use VfioDevice::read_region/write_region")]
    IoBarNotMappable {
        /// The device.
        addr: PciAddr,
        /// The BAR.
        bar: u8,
    },
    /// A memory BAR VFIO does not allow to map.
    #[error("vfio {addr}: BAR {bar} cannot be mmapped (VFIO does not allow it)")]
    BarNotMappable {
        /// The device.
        addr: PciAddr,
        /// The BAR.
        bar: u8,
    },
    /// A sparse BAR without any mappable area.
    #[error("vfio {addr}: BAR {bar} has no mmappable area")]
    NoMappableArea {
        /// The device.
        addr: PciAddr,
        /// The BAR.
        bar: u8,
    },
    /// Interrupts are handed out already.
    #[error(
        "vfio {addr}: interrupts are already enabled; drop the previous IrqWait handles first"
    )]
    IrqsBusy {
        /// The device.
        addr: PciAddr,
    },
    /// Zero interrupt vectors asked for.
    #[error("vfio: enable_irqs: at least one vector is needed")]
    NoVectors,
    /// More vectors asked for than any interrupt type offers.
    #[error("vfio: {count} interrupt vectors requested, but the device offers MSI-X {msix}, MSI {msi}, INTx {intx}")]
    TooManyVectors {
        /// Vectors asked for.
        count: u32,
        /// MSI-X vectors offered.
        msix: u32,
        /// MSI vectors offered.
        msi: u32,
        /// INTx lines offered.
        intx: u32,
    },
    /// `VFIO_DEVICE_SET_IRQS` failed to enable interrupts.
    #[error("{addr}: enabling {count} {irq:?} interrupt(s) (VFIO_DEVICE_SET_IRQS): {source}")]
    SetIrqs {
        /// The device.
        addr: PciAddr,
        /// Vectors asked for.
        count: u32,
        /// Interrupt type.
        irq: IrqType,
        /// The OS error.
        source: io::Error,
    },
    /// `VFIO_DEVICE_SET_IRQS` failed to unmask INTx.
    #[error("unmasking INTx (VFIO_DEVICE_SET_IRQS): {source}")]
    UnmaskIntx {
        /// The OS error.
        source: io::Error,
    },
    /// `VFIO_DEVICE_RESET` failed.
    #[error("{addr}: VFIO_DEVICE_RESET: {source}")]
    Reset {
        /// The device.
        addr: PciAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The memory to pin exceeds the memlock limit.
    #[error(
        "memory: memlock limit {} KiB is below the {} KiB to pin for DMA: raise it (`ulimit -l unlimited`)",
        limit / 1024,
        to_pin.div_ceil(1024)
    )]
    MemlockLimit {
        /// The soft limit, bytes.
        limit: u64,
        /// Bytes that would be pinned.
        to_pin: u64,
    },
    /// A segment that is not contiguous in IOVA space.
    #[error("memory: segment {segment} is not IOVA-contiguous and cannot be mapped in one IOMMU mapping; run with --iova-mode va")]
    NotIovaContiguous {
        /// The segment.
        segment: String,
    },
    /// A segment whose IOVA range wraps around.
    #[error("memory: segment IOVA overflows")]
    IovaOverflow,
    /// A segment overlapping an existing mapping.
    #[error("memory: segment {segment} (iova {iova:#x}+{len:#x}) overlaps an existing DMA mapping at {existing:#x}")]
    DmaOverlap {
        /// The segment.
        segment: String,
        /// Its IOVA.
        iova: u64,
        /// Its length.
        len: u64,
        /// The IOVA of the mapping it overlaps.
        existing: u64,
    },
    /// `VFIO_IOMMU_MAP_DMA` failed.
    #[error(
        "VFIO_IOMMU_MAP_DMA of segment {segment} (va {va:#x}, iova {iova:#x}, {len} bytes){}: {source}",
        map_dma_hint(source)
    )]
    MapDma {
        /// The segment.
        segment: String,
        /// Its virtual address.
        va: usize,
        /// Its IOVA.
        iova: u64,
        /// Its length.
        len: u64,
        /// The OS error.
        source: io::Error,
    },
    /// `VFIO_IOMMU_UNMAP_DMA` failed.
    #[error("VFIO_IOMMU_UNMAP_DMA of segment {segment} (iova {iova:#x}): {source}")]
    UnmapDma {
        /// The segment.
        segment: String,
        /// Its IOVA.
        iova: u64,
        /// The OS error.
        source: io::Error,
    },
}

/// A group that is not viable, and the other devices in it (what to unbind or rebind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotViable {
    /// The group number.
    pub group: u32,
    /// The other devices of the group, as `ADDR (driver)`.
    pub others: Vec<String>,
}

impl std::fmt::Display for NotViable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "IOMMU group {} is not viable: every device in it must be bound to vfio-pci or unbound. \
             Other devices in the group: {}. Bind them to vfio-pci (`pmd-setup bind ADDR vfio-pci`) or unbind them",
            self.group,
            list_or_none(&self.others)
        )
    }
}

/// `driver X` / `no driver`: what a device is bound to, in messages.
pub(crate) fn driver_now(driver: Option<&str>) -> String {
    driver.map_or("no driver".to_string(), |d| format!("driver {d}"))
}

/// `a, b` or `none found`.
fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none found".to_string()
    } else {
        items.join(", ")
    }
}

/// What to do when the kernel lacks an IOMMU model.
fn unsupported_iommu(t: IommuType) -> &'static str {
    match t {
        IommuType::Type1v2 => "the kernel's VFIO has no type1v2 IOMMU support (VFIO_TYPE1v2_IOMMU); load vfio_iommu_type1",
        IommuType::NoIommu => "no-IOMMU mode is not enabled: `pmd-setup noiommu on` (or echo Y > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode)",
    }
}

/// The likely cause of a failed `VFIO_IOMMU_MAP_DMA`, from its errno.
fn map_dma_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOMEM) => " (memlock limit? raise it with `ulimit -l unlimited`)",
        Some(libc::EINVAL) | Some(libc::ENOSPC) => {
            " (IOVA beyond the IOMMU's address width? try --iova-mode pa)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_dma_error_names_the_segment_and_the_likely_cause() {
        let e = VfioError::MapDma {
            segment: "seg0".into(),
            va: 0x1000,
            iova: 0x2000,
            len: 4096,
            source: io::Error::from_raw_os_error(libc::ENOMEM),
        }
        .to_string();
        assert!(
            e.starts_with("VFIO_IOMMU_MAP_DMA of segment seg0 (va 0x1000, iova 0x2000, 4096 bytes) (memlock limit?"),
            "{e}"
        );
        let e = VfioError::GroupNotViable {
            addr: "0000:00:03.0".parse().unwrap(),
            group: NotViable {
                group: 9,
                others: vec![],
            },
        }
        .to_string();
        assert!(
            e.starts_with("vfio 0000:00:03.0: IOMMU group 9 is not viable: every device in it must be bound to vfio-pci or unbound. Other devices in the group: none found."),
            "{e}"
        );
    }
}
