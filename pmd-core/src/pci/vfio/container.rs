//! The container (`/dev/vfio/vfio`, one IOMMU domain) and the groups attached to it.
//!
//! The IOMMU type is set once, when the first group is attached (type1 v2 with an IOMMU,
//! or the no-IOMMU type). With an IOMMU the container registers a memory listener
//! ([`crate::memory::add_listener`]) so every segment, existing and future, is DMA-mapped
//! at its IOVA and unmapped when it goes away. When the last group leaves, the listener is
//! removed first and all mappings undone. A group must be viable (all its devices bound to
//! vfio-pci or unbound) and is shared by every device of the group this process opens.
//! Groups live here, not in a module of their own, because a group's drop updates its
//! container's state.

use super::dma::DmaState;
use super::error::VfioError;
use super::group::{group_not_viable, GroupLocation};
use super::ioctl::{self, IommuType};
use crate::error::Result;
use crate::memory::{self, SegmentEvent};
use crate::pci::addr::PciAddr;
use crate::pci::sysfs::SysfsRoot;
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, Weak};
use vfio_bindings::bindings::vfio as sys;

#[derive(Debug, Default)]
struct ContainerState {
    iommu: Option<IommuType>,
    groups: HashMap<u32, Weak<VfioGroup>>,
    listener: Option<u64>,
}

/// A VFIO container (`/dev/vfio/vfio`): one IOMMU domain shared by the groups attached to
/// it. See the module documentation.
#[derive(Debug)]
pub struct VfioContainer {
    dev_vfio: PathBuf,
    dma: Arc<DmaState>,
    state: Mutex<ContainerState>,
}

static NOIOMMU_WARNING: Once = Once::new();

/// Opens a VFIO node read/write, close-on-exec.
fn open_node(path: &Path) -> std::io::Result<OwnedFd> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map(OwnedFd::from)
}

impl VfioContainer {
    /// Opens `<dev_vfio>/vfio` (normally `/dev/vfio/vfio`) and checks the API version.
    pub fn open_at(dev_vfio: &Path) -> Result<Arc<VfioContainer>> {
        let path = dev_vfio.join("vfio");
        let fd = open_node(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => VfioError::ContainerMissing { path: path.clone() },
            std::io::ErrorKind::PermissionDenied => {
                VfioError::ContainerDenied { path: path.clone() }
            }
            _ => VfioError::OpenContainer {
                path: path.clone(),
                source: e,
            },
        })?;
        let version =
            ioctl::get_api_version(fd.as_fd()).map_err(|source| VfioError::GetApiVersion {
                path: path.clone(),
                source,
            })?;
        if version as u32 != sys::VFIO_API_VERSION {
            return Err(VfioError::ApiVersion { found: version }.into());
        }
        let container = VfioContainer {
            dev_vfio: dev_vfio.to_path_buf(),
            dma: Arc::new(DmaState::new(fd)),
            state: Mutex::new(ContainerState::default()),
        };
        if !container.supports(IommuType::Type1v2) && !container.supports(IommuType::NoIommu) {
            return Err(VfioError::NoIommuModel.into());
        }
        Ok(Arc::new(container))
    }

    /// The `/dev/vfio` directory this container was opened from.
    pub fn dev_vfio(&self) -> &Path {
        &self.dev_vfio
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.dma.fd()
    }

    /// The DMA mapping table, for devices of this container.
    pub(super) fn dma(&self) -> &DmaState {
        &self.dma
    }

    /// Whether the kernel supports IOMMU type `t` (`VFIO_CHECK_EXTENSION`).
    pub fn supports(&self, t: IommuType) -> bool {
        ioctl::check_extension(self.fd(), t).unwrap_or(false)
    }

    /// The IOMMU type, once a group has been attached.
    pub fn iommu_type(&self) -> Option<IommuType> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).iommu
    }

    /// Number of live DMA mappings.
    pub fn dma_mapping_count(&self) -> usize {
        self.dma.count()
    }

    /// Whether `iova..iova+len` lies inside one DMA mapping of this container.
    pub fn is_dma_mapped(&self, iova: u64, len: u64) -> bool {
        self.dma.covers(iova, len)
    }

    /// Opens group `loc.number` (its device node `loc.dev_path`), checks it is viable,
    /// attaches it to this container and, for the first group, sets the IOMMU type (and
    /// with an IOMMU, starts DMA-mapping every memory segment). Returns the already-open
    /// group if this process has it.
    pub fn attach_group(
        self: &Arc<Self>,
        loc: &GroupLocation,
        root: &SysfsRoot,
        addr: PciAddr,
    ) -> Result<Arc<VfioGroup>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = st.groups.get(&loc.number).and_then(Weak::upgrade) {
            return Ok(g);
        }
        let want = if loc.noiommu {
            IommuType::NoIommu
        } else {
            IommuType::Type1v2
        };
        if let Some(have) = st.iommu {
            if have != want {
                return Err(VfioError::MixedIommu {
                    addr,
                    have,
                    want,
                    group: loc.number,
                }
                .into());
            }
        }
        let path = loc.dev_path.clone();
        let gfd = open_node(&loc.dev_path).map_err(|e| match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => VfioError::GroupDenied { addr, path },
            Some(libc::EBUSY) => VfioError::GroupBusy { addr, path },
            Some(libc::ENOENT) => VfioError::GroupGone { addr, path },
            _ => VfioError::OpenGroup { path, source: e },
        })?;
        let flags =
            ioctl::group_get_status(gfd.as_fd()).map_err(|source| VfioError::GroupGetStatus {
                path: loc.dev_path.clone(),
                source,
            })?;
        if flags & sys::VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(VfioError::GroupNotViable {
                addr,
                group: group_not_viable(root, loc.number, addr),
            }
            .into());
        }
        ioctl::group_set_container(gfd.as_fd(), self.fd()).map_err(|source| {
            VfioError::GroupSetContainer {
                group: loc.number,
                source,
            }
        })?;
        let group = Arc::new(VfioGroup {
            number: loc.number,
            noiommu: loc.noiommu,
            fd: Some(gfd),
            container: self.clone(),
        });
        if st.iommu.is_none() {
            if let Err(e) = self.set_iommu(&mut st, want) {
                // Dropping the group detaches it again; its Drop takes the state lock.
                drop(st);
                drop(group);
                return Err(e);
            }
        }
        st.groups.insert(loc.number, Arc::downgrade(&group));
        Ok(group)
    }

    fn set_iommu(&self, st: &mut ContainerState, t: IommuType) -> Result<()> {
        if !self.supports(t) {
            return Err(VfioError::IommuUnsupported { iommu: t }.into());
        }
        ioctl::set_iommu(self.fd(), t)
            .map_err(|source| VfioError::SetIommu { iommu: t, source })?;
        match t {
            IommuType::NoIommu => NOIOMMU_WARNING.call_once(|| {
                tracing::warn!(
                    "VFIO no-IOMMU mode: the device has unrestricted DMA access to all memory (no isolation); use only on trusted devices and test systems"
                );
            }),
            IommuType::Type1v2 => {
                let dma = self.dma.clone();
                let id = memory::add_listener(Box::new(move |ev, seg| match ev {
                    SegmentEvent::Added => dma.map_segment(seg),
                    SegmentEvent::Removed => dma.unmap_segment(seg),
                }));
                match id {
                    Ok(id) => st.listener = Some(id),
                    Err(e) => {
                        self.dma.unmap_all();
                        return Err(e);
                    }
                }
            }
        }
        st.iommu = Some(t);
        Ok(())
    }

    /// Called by a group about to close: if it is the last one, stop mapping (listener
    /// first) and undo every mapping while the IOMMU is still set.
    fn group_closing(&self, st: &mut ContainerState, number: u32) {
        st.groups.remove(&number);
        st.groups.retain(|_, g| g.strong_count() > 0);
        if st.groups.is_empty() {
            if let Some(id) = st.listener.take() {
                memory::remove_listener(id);
            }
            self.dma.unmap_all();
            st.iommu = None;
        }
    }
}

impl Drop for VfioContainer {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = st.listener.take() {
            memory::remove_listener(id);
        }
        self.dma.unmap_all();
    }
}

/// An open IOMMU group attached to a container.
#[derive(Debug)]
pub struct VfioGroup {
    number: u32,
    noiommu: bool,
    /// Some until drop (taken there so it closes under the container lock).
    fd: Option<OwnedFd>,
    container: Arc<VfioContainer>,
}

impl VfioGroup {
    /// The group number.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Whether this is a no-IOMMU group.
    pub fn is_noiommu(&self) -> bool {
        self.noiommu
    }

    /// The container the group is attached to.
    pub fn container(&self) -> &Arc<VfioContainer> {
        &self.container
    }

    /// The group descriptor (None only while the group is being dropped).
    pub(super) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd)
    }
}

impl Drop for VfioGroup {
    fn drop(&mut self) {
        let mut st = self
            .container
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.container.group_closing(&mut st, self.number);
        if let Some(fd) = self.fd.take() {
            if let Err(e) = ioctl::group_unset_container(fd.as_fd()) {
                tracing::debug!(group = self.number, "VFIO_GROUP_UNSET_CONTAINER: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_dev_vfio_says_modprobe() {
        let dir = std::env::temp_dir().join(format!("pmd-vfio-none-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = VfioContainer::open_at(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.contains("`modprobe vfio-pci`"), "{e}");
    }
}
