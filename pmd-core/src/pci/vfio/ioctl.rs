//! Every VFIO ioctl, one small function each, with the request numbers and argument types.
//!
//! Written from `linux/vfio.h` and Documentation/driver-api/vfio.rst; the structures and
//! constants come from `vfio-bindings`. Each request number is the kernel's `_IO(VFIO_TYPE,
//! VFIO_BASE + n)` (no direction or size bits: VFIO passes `argsz` inside the structures
//! instead). This is the only module of the VFIO backend that calls `ioctl(2)`; every call is
//! wrapped in a safe function that builds the argument itself, so the rest of the backend
//! never handles raw pointers for the kernel.

use std::ffi::CStr;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use vfio_bindings::bindings::vfio as sys;

/// The VFIO ioctl type, `';'` (`VFIO_TYPE` of `linux/vfio.h`).
pub const VFIO_TYPE: u32 = sys::VFIO_TYPE as u32;
/// The first VFIO ioctl number (`VFIO_BASE`).
pub const VFIO_BASE: u32 = sys::VFIO_BASE;

/// `_IO(ty, nr)`: no data direction, no size.
pub const fn io(ty: u32, nr: u32) -> u64 {
    ((ty as u64) << 8) | nr as u64
}

/// Returns the API version (`VFIO_API_VERSION`), on the container.
pub const VFIO_GET_API_VERSION: u64 = io(VFIO_TYPE, VFIO_BASE);
/// Whether an extension (IOMMU type) is supported (> 0), on the container.
pub const VFIO_CHECK_EXTENSION: u64 = io(VFIO_TYPE, VFIO_BASE + 1);
/// Sets the IOMMU type, on the container, once a group is attached.
pub const VFIO_SET_IOMMU: u64 = io(VFIO_TYPE, VFIO_BASE + 2);
/// Reads `struct vfio_group_status`, on a group.
pub const VFIO_GROUP_GET_STATUS: u64 = io(VFIO_TYPE, VFIO_BASE + 3);
/// Attaches a group to a container (argument: pointer to the container fd).
pub const VFIO_GROUP_SET_CONTAINER: u64 = io(VFIO_TYPE, VFIO_BASE + 4);
/// Detaches a group from its container.
pub const VFIO_GROUP_UNSET_CONTAINER: u64 = io(VFIO_TYPE, VFIO_BASE + 5);
/// Returns a device fd for the device named by the string argument, on a group.
pub const VFIO_GROUP_GET_DEVICE_FD: u64 = io(VFIO_TYPE, VFIO_BASE + 6);
/// Reads `struct vfio_device_info`, on a device.
pub const VFIO_DEVICE_GET_INFO: u64 = io(VFIO_TYPE, VFIO_BASE + 7);
/// Reads `struct vfio_region_info` (plus capabilities), on a device.
pub const VFIO_DEVICE_GET_REGION_INFO: u64 = io(VFIO_TYPE, VFIO_BASE + 8);
/// Reads `struct vfio_irq_info`, on a device.
pub const VFIO_DEVICE_GET_IRQ_INFO: u64 = io(VFIO_TYPE, VFIO_BASE + 9);
/// Configures interrupts with `struct vfio_irq_set`, on a device.
pub const VFIO_DEVICE_SET_IRQS: u64 = io(VFIO_TYPE, VFIO_BASE + 10);
/// Resets the device (when `VFIO_DEVICE_FLAGS_RESET` is reported).
pub const VFIO_DEVICE_RESET: u64 = io(VFIO_TYPE, VFIO_BASE + 11);
/// Type1 IOMMU information, on the container (shares its number with the device
/// ioctl `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`; the fd type tells them apart).
pub const VFIO_IOMMU_GET_INFO: u64 = io(VFIO_TYPE, VFIO_BASE + 12);
/// Maps memory for DMA with `struct vfio_iommu_type1_dma_map`, on the container.
pub const VFIO_IOMMU_MAP_DMA: u64 = io(VFIO_TYPE, VFIO_BASE + 13);
/// Unmaps DMA memory with `struct vfio_iommu_type1_dma_unmap`, on the container.
pub const VFIO_IOMMU_UNMAP_DMA: u64 = io(VFIO_TYPE, VFIO_BASE + 14);

/// The IOMMU model of a container (the argument of `VFIO_CHECK_EXTENSION` and
/// `VFIO_SET_IOMMU`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IommuType {
    /// `VFIO_TYPE1v2_IOMMU`: a real IOMMU; memory is mapped per segment.
    Type1v2,
    /// `VFIO_NOIOMMU_IOMMU`: no translation or isolation; IOVA = physical address.
    NoIommu,
}

impl IommuType {
    /// The `linux/vfio.h` extension number.
    pub fn raw(self) -> u32 {
        match self {
            IommuType::Type1v2 => sys::VFIO_TYPE1v2_IOMMU,
            IommuType::NoIommu => sys::VFIO_NOIOMMU_IOMMU,
        }
    }
}

/// An interrupt type (the `index` of `VFIO_DEVICE_GET_IRQ_INFO` and `VFIO_DEVICE_SET_IRQS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqType {
    /// Legacy INTx (level-triggered, masked by VFIO until unmasked).
    Intx,
    /// MSI.
    Msi,
    /// MSI-X.
    Msix,
}

impl IrqType {
    /// The VFIO IRQ index (`VFIO_PCI_*_IRQ_INDEX`).
    pub fn index(self) -> u32 {
        match self {
            IrqType::Intx => sys::VFIO_PCI_INTX_IRQ_INDEX,
            IrqType::Msi => sys::VFIO_PCI_MSI_IRQ_INDEX,
            IrqType::Msix => sys::VFIO_PCI_MSIX_IRQ_INDEX,
        }
    }
}

/// `argsz` of a fixed-size VFIO structure.
fn argsz_of<T>() -> u32 {
    // Every VFIO structure is a few dozen bytes.
    size_of::<T>() as u32
}

/// Turns an ioctl's return value into a result.
fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `VFIO_GET_API_VERSION` on a container: the API version it speaks.
pub fn get_api_version(container: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: VFIO_GET_API_VERSION takes no argument and touches no memory of ours.
    check(unsafe { libc::ioctl(container.as_raw_fd(), VFIO_GET_API_VERSION as libc::Ioctl) })
}

/// `VFIO_CHECK_EXTENSION` on a container: whether IOMMU type `t` is supported.
pub fn check_extension(container: BorrowedFd<'_>, t: IommuType) -> io::Result<bool> {
    // SAFETY: VFIO_CHECK_EXTENSION takes the extension number by value.
    let r = check(unsafe {
        libc::ioctl(
            container.as_raw_fd(),
            VFIO_CHECK_EXTENSION as libc::Ioctl,
            libc::c_ulong::from(t.raw()),
        )
    })?;
    Ok(r > 0)
}

/// `VFIO_SET_IOMMU` on a container (with at least one group attached).
pub fn set_iommu(container: BorrowedFd<'_>, t: IommuType) -> io::Result<()> {
    // SAFETY: VFIO_SET_IOMMU takes the IOMMU type by value.
    check(unsafe {
        libc::ioctl(
            container.as_raw_fd(),
            VFIO_SET_IOMMU as libc::Ioctl,
            libc::c_ulong::from(t.raw()),
        )
    })?;
    Ok(())
}

/// `VFIO_GROUP_GET_STATUS`: the group's `VFIO_GROUP_FLAGS_*`.
pub fn group_get_status(group: BorrowedFd<'_>) -> io::Result<u32> {
    let mut status = sys::vfio_group_status {
        argsz: argsz_of::<sys::vfio_group_status>(),
        flags: 0,
    };
    // SAFETY: VFIO_GROUP_GET_STATUS writes at most `argsz` bytes to the vfio_group_status
    // it is given; `status` is one, alive for the call.
    check(unsafe {
        libc::ioctl(
            group.as_raw_fd(),
            VFIO_GROUP_GET_STATUS as libc::Ioctl,
            &mut status as *mut sys::vfio_group_status,
        )
    })?;
    Ok(status.flags)
}

/// `VFIO_GROUP_SET_CONTAINER`: attaches the group to `container`.
pub fn group_set_container(group: BorrowedFd<'_>, container: BorrowedFd<'_>) -> io::Result<()> {
    let cfd: libc::c_int = container.as_raw_fd();
    // SAFETY: VFIO_GROUP_SET_CONTAINER reads one int (the container fd) through the pointer;
    // `cfd` is alive for the call.
    check(unsafe {
        libc::ioctl(
            group.as_raw_fd(),
            VFIO_GROUP_SET_CONTAINER as libc::Ioctl,
            &cfd as *const libc::c_int,
        )
    })?;
    Ok(())
}

/// `VFIO_GROUP_UNSET_CONTAINER`: detaches the group from its container.
pub fn group_unset_container(group: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: VFIO_GROUP_UNSET_CONTAINER takes no argument.
    check(unsafe { libc::ioctl(group.as_raw_fd(), VFIO_GROUP_UNSET_CONTAINER as libc::Ioctl) })?;
    Ok(())
}

/// `VFIO_GROUP_GET_DEVICE_FD`: a new descriptor for the device called `name` (its PCI
/// address) in the group.
pub fn group_get_device_fd(group: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: VFIO_GROUP_GET_DEVICE_FD reads a NUL-terminated string, which `name` is, alive
    // for the call.
    let fd = check(unsafe {
        libc::ioctl(
            group.as_raw_fd(),
            VFIO_GROUP_GET_DEVICE_FD as libc::Ioctl,
            name.as_ptr(),
        )
    })?;
    // SAFETY: on success the ioctl returns a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `VFIO_DEVICE_GET_INFO`: flags, number of regions and of IRQ indexes.
pub fn device_get_info(device: BorrowedFd<'_>) -> io::Result<sys::vfio_device_info> {
    let mut info = sys::vfio_device_info {
        argsz: argsz_of::<sys::vfio_device_info>(),
        ..Default::default()
    };
    // SAFETY: VFIO_DEVICE_GET_INFO writes at most `argsz` bytes to the vfio_device_info it is
    // given; `info` is one, alive for the call.
    check(unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            VFIO_DEVICE_GET_INFO as libc::Ioctl,
            &mut info as *mut sys::vfio_device_info,
        )
    })?;
    Ok(info)
}

/// `VFIO_DEVICE_GET_REGION_INFO` into `buf`, which holds a `struct vfio_region_info` with
/// `argsz` and `index` set (see `region::region_info_request`); the kernel fills in the rest
/// and, when `argsz` leaves room, the capability chain after it. `u64` storage gives the
/// structure and its capabilities their 8-byte alignment. `argsz` larger than `buf`, or
/// smaller than the fixed structure, is refused before the call.
pub fn device_get_region_info(device: BorrowedFd<'_>, buf: &mut [u64]) -> io::Result<()> {
    let argsz = buf.first().map_or(0, |w| {
        let b = w.to_ne_bytes();
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
    }) as usize;
    if argsz < size_of::<sys::vfio_region_info>() || argsz > std::mem::size_of_val(buf) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "region-info argsz {argsz} does not fit its {}-byte buffer",
                std::mem::size_of_val(buf)
            ),
        ));
    }
    // SAFETY: VFIO_DEVICE_GET_REGION_INFO writes at most `argsz` bytes at the pointer, and
    // `buf` (checked above) is at least that long, 8-byte aligned and alive for the call.
    check(unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            VFIO_DEVICE_GET_REGION_INFO as libc::Ioctl,
            buf.as_mut_ptr(),
        )
    })?;
    Ok(())
}

/// `VFIO_DEVICE_GET_IRQ_INFO` for interrupt index `index`.
pub fn device_get_irq_info(device: BorrowedFd<'_>, index: u32) -> io::Result<sys::vfio_irq_info> {
    let mut irq = sys::vfio_irq_info {
        argsz: argsz_of::<sys::vfio_irq_info>(),
        index,
        ..Default::default()
    };
    // SAFETY: VFIO_DEVICE_GET_IRQ_INFO writes at most `argsz` bytes to the vfio_irq_info it
    // is given; `irq` is one, alive for the call.
    check(unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            VFIO_DEVICE_GET_IRQ_INFO as libc::Ioctl,
            &mut irq as *mut sys::vfio_irq_info,
        )
    })?;
    Ok(irq)
}

/// `VFIO_DEVICE_SET_IRQS`: `flags` (`VFIO_IRQ_SET_DATA_*` | `VFIO_IRQ_SET_ACTION_*`) for
/// vectors `start..start+count` of interrupt index `index`, with one eventfd per vector as
/// data when `eventfds` is not empty.
pub fn device_set_irqs(
    device: BorrowedFd<'_>,
    flags: u32,
    index: u32,
    start: u32,
    count: u32,
    eventfds: &[RawFd],
) -> io::Result<()> {
    const HDR: usize = size_of::<sys::vfio_irq_set>();
    let argsz = HDR + std::mem::size_of_val(eventfds);
    let argsz32 = u32::try_from(argsz)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many eventfds"))?;
    // u32 storage: the structure's alignment is 4 and every field (and fd) is 4 bytes.
    let mut buf = vec![0u32; argsz / 4];
    let word = |off: usize| off / 4;
    buf[word(offset_of!(sys::vfio_irq_set, argsz))] = argsz32;
    buf[word(offset_of!(sys::vfio_irq_set, flags))] = flags;
    buf[word(offset_of!(sys::vfio_irq_set, index))] = index;
    buf[word(offset_of!(sys::vfio_irq_set, start))] = start;
    buf[word(offset_of!(sys::vfio_irq_set, count))] = count;
    for (slot, fd) in buf[word(offset_of!(sys::vfio_irq_set, data))..]
        .iter_mut()
        .zip(eventfds)
    {
        *slot = *fd as u32;
    }
    // SAFETY: VFIO_DEVICE_SET_IRQS reads a vfio_irq_set followed by its data, `argsz` bytes
    // in all; `buf` is exactly that, laid out by the structure's field offsets, 4-byte
    // aligned and alive for the call.
    check(unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            VFIO_DEVICE_SET_IRQS as libc::Ioctl,
            buf.as_mut_ptr(),
        )
    })?;
    Ok(())
}

/// `VFIO_DEVICE_RESET`: resets the function.
pub fn device_reset(device: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: VFIO_DEVICE_RESET takes no argument.
    check(unsafe { libc::ioctl(device.as_raw_fd(), VFIO_DEVICE_RESET as libc::Ioctl) })?;
    Ok(())
}

/// `VFIO_IOMMU_MAP_DMA`: makes `size` bytes of this process's memory at `vaddr` readable
/// and writable by the container's devices at `iova`. The kernel checks and pins the range;
/// the caller must unmap it before that memory goes away (the container's mapping table
/// does, on segment removal and on close).
pub fn iommu_map_dma(
    container: BorrowedFd<'_>,
    vaddr: u64,
    iova: u64,
    size: u64,
) -> io::Result<()> {
    let mut arg = sys::vfio_iommu_type1_dma_map {
        argsz: argsz_of::<sys::vfio_iommu_type1_dma_map>(),
        flags: sys::VFIO_DMA_MAP_FLAG_READ | sys::VFIO_DMA_MAP_FLAG_WRITE,
        vaddr,
        iova,
        size,
    };
    // SAFETY: VFIO_IOMMU_MAP_DMA reads the vfio_iommu_type1_dma_map it is given; `arg` is
    // one, with argsz its size, alive for the call. The range it names is validated by the
    // kernel, not dereferenced by us.
    check(unsafe {
        libc::ioctl(
            container.as_raw_fd(),
            VFIO_IOMMU_MAP_DMA as libc::Ioctl,
            &mut arg as *mut sys::vfio_iommu_type1_dma_map,
        )
    })?;
    Ok(())
}

/// `VFIO_IOMMU_UNMAP_DMA`: removes the mapping of `size` bytes at `iova`.
pub fn iommu_unmap_dma(container: BorrowedFd<'_>, iova: u64, size: u64) -> io::Result<()> {
    let mut arg = sys::vfio_iommu_type1_dma_unmap {
        argsz: argsz_of::<sys::vfio_iommu_type1_dma_unmap>(),
        flags: 0,
        iova,
        size,
        data: Default::default(),
    };
    // SAFETY: VFIO_IOMMU_UNMAP_DMA reads (and may write back the unmapped size to) the
    // vfio_iommu_type1_dma_unmap it is given; `arg` is one with argsz its fixed size (no
    // dirty bitmap requested), alive for the call.
    check(unsafe {
        libc::ioctl(
            container.as_raw_fd(),
            VFIO_IOMMU_UNMAP_DMA as libc::Ioctl,
            &mut arg as *mut sys::vfio_iommu_type1_dma_unmap,
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_vfio_h() {
        assert_eq!(VFIO_GET_API_VERSION, 0x3B64);
        assert_eq!(VFIO_CHECK_EXTENSION, 0x3B65);
        assert_eq!(VFIO_SET_IOMMU, 0x3B66);
        assert_eq!(VFIO_GROUP_GET_STATUS, 0x3B67);
        assert_eq!(VFIO_GROUP_SET_CONTAINER, 0x3B68);
        assert_eq!(VFIO_GROUP_UNSET_CONTAINER, 0x3B69);
        assert_eq!(VFIO_GROUP_GET_DEVICE_FD, 0x3B6A);
        assert_eq!(VFIO_DEVICE_GET_INFO, 0x3B6B);
        assert_eq!(VFIO_DEVICE_GET_REGION_INFO, 0x3B6C);
        assert_eq!(VFIO_DEVICE_GET_IRQ_INFO, 0x3B6D);
        assert_eq!(VFIO_DEVICE_SET_IRQS, 0x3B6E);
        assert_eq!(VFIO_DEVICE_RESET, 0x3B6F);
        assert_eq!(VFIO_IOMMU_GET_INFO, 0x3B70);
        assert_eq!(VFIO_IOMMU_MAP_DMA, 0x3B71);
        assert_eq!(VFIO_IOMMU_UNMAP_DMA, 0x3B72);
        assert_eq!(sys::VFIO_TYPE1v2_IOMMU, 3);
        assert_eq!(sys::VFIO_NOIOMMU_IOMMU, 8);
    }

    #[test]
    fn region_info_buffer_smaller_than_argsz_is_refused_before_the_call() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&32u32.to_ne_bytes()); // argsz 32 in a 16-byte buffer
        let mut buf = vec![u64::from_ne_bytes(head), 0];
        let e = device_get_region_info(std::os::fd::AsFd::as_fd(&f), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let mut empty: Vec<u64> = Vec::new();
        assert!(device_get_region_info(std::os::fd::AsFd::as_fd(&f), &mut empty).is_err());
    }
}
