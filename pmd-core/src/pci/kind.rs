//! Which mechanism reaches a device ([`BackendKind`]). A leaf module: the error types name
//! the backend too, so it must not depend on anything that returns errors.

/// How a backend reaches its device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// vfio-pci behind an IOMMU (IOVA = VA).
    Vfio,
    /// vfio-pci in no-IOMMU mode (IOVA = physical address, no isolation).
    VfioNoIommu,
    /// uio_pci_generic (IOVA = physical address).
    Uio,
    /// An in-process model (tests).
    Model,
}
