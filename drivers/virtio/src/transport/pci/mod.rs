//! The virtio-pci transport (virtio 1.x section 4.1 "Virtio Over PCI Bus"), modern and
//! legacy, for a virtio-net function opened by the EAL (VFIO or UIO).
//!
//! **Modern** (1af4:1041, and a transitional 1af4:1000 that has the vendor capabilities):
//! the capability list holds vendor capabilities (`cap_vndr` 0x09) naming, for each
//! structure type (`cfg_type` 1 common, 2 notify, 3 ISR, 4 device, 5 PCI access), a BAR,
//! an offset and a length; the first of each type is used and ones naming a reserved BAR
//! (> 5) are ignored, as the spec asks. Common configuration layout (little endian):
//!
//! | off | field | off | field |
//! |---|---|---|---|
//! | 0x00 | device_feature_select u32 | 0x16 | queue_select u16 |
//! | 0x04 | device_feature u32 | 0x18 | queue_size u16 |
//! | 0x08 | driver_feature_select u32 | 0x1a | queue_msix_vector u16 |
//! | 0x0c | driver_feature u32 | 0x1c | queue_enable u16 |
//! | 0x10 | config_msix_vector u16 | 0x1e | queue_notify_off u16 |
//! | 0x12 | num_queues u16 | 0x20/0x28/0x30 | queue_desc/driver/device u64 |
//! | 0x14 | device_status u8 | 0x15 | config_generation u8 |
//!
//! A queue's doorbell is at `notify.offset + queue_notify_off * notify_off_multiplier` in the
//! notify capability's BAR (a 16-bit write of the queue index). `VIRTIO_F_VERSION_1` is
//! required; `VIRTIO_F_ACCESS_PLATFORM` is accepted when offered (descriptors carry IOVAs
//! anyway).
//!
//! **Legacy** (1af4:1000 without the modern capabilities): registers in I/O-port BAR 0,
//! reached through [`PciBackend::read_io`] / [`PciBackend::write_io`] (VFIO only): host
//! features u32 @0, guest features u32 @4, queue PFN u32 @8 (ring address >> 12), queue
//! size u16 @12 (read only: the ring must have exactly this size), queue select u16 @14,
//! queue notify u16 @16, status u8 @18, ISR u8 @19, device configuration @20 (MSI-X is never
//! enabled, so it does not move to 24). The ring is one contiguous area with the used ring
//! on the next 4096-byte boundary ([`crate::virtqueue::Layout`] already lays queues out so).
//! The PFN register is 32 bits, so rings must lie below 16 TiB. Without `VERSION_1` the net
//! header is 10 bytes (12 with `MRG_RXBUF`).
//!
//! **DMA and the IOMMU**: a device that does not negotiate `VIRTIO_F_ACCESS_PLATFORM`
//! (every legacy device, and QEMU's modern ones unless `iommu_platform=on`) bypasses the
//! IOMMU and takes guest-physical addresses. Behind VFIO with an IOMMU the EAL's default
//! is IOVA-as-VA, which such a device would read as physical addresses: the transport
//! asks the backend which IOVAs the device is given ([`PciBackend::iova_mode`]), refuses
//! IOVA-as-VA when negotiating features, and asks for `--iova-mode pa` (or ACCESS_PLATFORM).
//!
//! Status handshake: reset (write 0, wait for 0), `ACKNOWLEDGE`, `DRIVER`, read features,
//! write the accepted ones, `FEATURES_OK` (modern; read back), queue setup, `DRIVER_OK`.
//! `stop` and `close` reset the device; a restart repeats the handshake, and needs queues
//! that were set up again (a reset device restarts its rings at index 0).
//!
//! Interrupts are never used (the PMD polls): queues get no MSI-X vector.
//!
//! **Control queue**: when the device offers `VIRTIO_NET_F_CTRL_VQ` and has a usable queue
//! at index 2 ([`CTRL_QUEUE_INDEX`]; `MQ` stays off, so one data pair), the transport
//! reports [`CtrlMode::Device`] and the net layer drives a real control virtqueue of
//! [`CTRL_QUEUE_SIZE`] entries there (`RX PROMISC` with `CTRL_RX`). Modern devices take
//! any power of two up to the queue's maximum; legacy devices fix every queue's size, so
//! the control queue is only used when the device's is exactly [`CTRL_QUEUE_SIZE`] (QEMU:
//! 64). Otherwise the transport reports [`CtrlMode::None`] and the port stays promiscuous.

pub mod caps;
pub mod regs;

pub use caps::{parse_caps, VirtioCap, VirtioCaps};
pub use regs::{IoWindow, MmioWindow, Regs};

use crate::net::ctrl::CTRL_QUEUE_SIZE;
use crate::transport::{CallSource, CtrlMode, EventFdCall, Notifier, RingSetup, Transport};
use crate::virtqueue::{AddrMode, Layout, RingAddrs, MAX_QUEUE_SIZE, RING_ALIGN};
use caps::{le16, le32};
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::MacAddr;
use pmd_core::memory::{self, IovaMode};
use pmd_core::pci::{BackendKind, IrqWait, MmioRegion, PciBackend};
use regs::{common, legacy, RegsExt};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The base (position | wrap counter << 15) a fresh packed ring starts at.
const PACKED_FRESH_BASE: u16 = 1 << 15;

/// Device queue index of the control queue: `2 * N` with `N` = 1 (`MQ` is not used on PCI).
pub const CTRL_QUEUE_INDEX: u16 = 2;

/// Red Hat / virtio vendor id.
pub const VIRTIO_PCI_VENDOR: u16 = 0x1af4;
/// Transitional virtio-net device id (legacy interface, maybe also modern).
pub const VIRTIO_PCI_DEVICE_NET_TRANSITIONAL: u16 = 0x1000;
/// Modern-only virtio-net device id (0x1040 + device type 1).
pub const VIRTIO_PCI_DEVICE_NET_MODERN: u16 = 0x1041;

/// Device status: the guest noticed the device.
pub const STATUS_ACKNOWLEDGE: u8 = 1;
/// Device status: the guest knows how to drive it.
pub const STATUS_DRIVER: u8 = 2;
/// Device status: the driver is ready.
pub const STATUS_DRIVER_OK: u8 = 4;
/// Device status: feature negotiation is complete (modern).
pub const STATUS_FEATURES_OK: u8 = 8;
/// Device status: the device hit an error and needs a reset.
pub const STATUS_DEVICE_NEEDS_RESET: u8 = 0x40;
/// Device status: the driver gave up on the device.
pub const STATUS_FAILED: u8 = 0x80;

/// Feature bit: the device sits behind an IOMMU / platform DMA translation.
pub const VIRTIO_F_ACCESS_PLATFORM: u64 = 1 << 33;
/// Net configuration `status` bit: the link is up.
pub const VIRTIO_NET_S_LINK_UP: u16 = 1;

/// "No MSI-X vector" for the vector registers.
const NO_VECTOR: u16 = 0xffff;
/// How long a reset may take before the device is declared dead.
const RESET_TIMEOUT: Duration = Duration::from_secs(2);

/// A queue's doorbell: writes the queue index to a register, only while the device is
/// live (`DRIVER_OK` set): the spec forbids notifications before `DRIVER_OK`, and the net
/// layer posts receive buffers (and kicks) at queue setup, before the port starts. The
/// transport kicks every queue once right after `DRIVER_OK` instead.
struct PciNotifier {
    regs: Arc<dyn Regs>,
    off: usize,
    queue: u16,
    live: Arc<AtomicBool>,
}

impl PciNotifier {
    fn kick(&self) {
        // The offset was checked when the notifier was made; a failing write (an unplugged
        // device) shows up as a stalled queue and a down link.
        let _ = self.regs.w16(self.off, self.queue);
    }
}

impl Notifier for PciNotifier {
    #[inline]
    fn notify(&self) {
        if self.live.load(Ordering::Acquire) {
            self.kick();
        }
    }
}

/// The modern interface's register windows.
pub struct ModernRegs {
    /// Common configuration.
    pub common: Arc<dyn Regs>,
    /// Notification area.
    pub notify: Arc<dyn Regs>,
    /// `notify_off_multiplier` of the notify capability.
    pub notify_mult: u32,
    /// Length of the notification area.
    pub notify_len: usize,
    /// Device-specific configuration, if the device has one.
    pub device: Option<Arc<dyn Regs>>,
    /// The ISR status byte, if the device has the capability (read to acknowledge its
    /// INTx line under UIO).
    pub isr: Option<Arc<dyn Regs>>,
}

/// Which interface the transport drives.
enum Iface {
    Modern(ModernRegs),
    Legacy(Arc<dyn Regs>),
}

/// Legacy queue PFNs are 32 bits of 4096-byte pages: rings must end below 16 TiB.
const PFN_LIMIT: u64 = 1 << (32 + legacy::PFN_SHIFT);

/// The virtio-pci transport (modern or legacy) of one virtio-net function.
pub struct VirtioPci {
    name: String,
    backend: Arc<dyn PciBackend>,
    iface: Iface,
    device_features: u64,
    features: u64,
    /// Features written and (modern) `FEATURES_OK` accepted since the last reset.
    negotiated: bool,
    started: bool,
    queues_started: usize,
    closed: bool,
    /// Set while `DRIVER_OK` is: notifiers only ring then.
    live: Arc<AtomicBool>,
    /// The notifier of each queue handed out, to kick them all at start.
    notifiers: Vec<Arc<PciNotifier>>,
    /// Who serves the control queue (decided at probe, see [`VirtioPci::ctrl_mode`]).
    ctrl_mode: CtrlMode,
    /// MSI-X vectors for the receive rings (modern devices; vector `q` for rx queue `q`)
    /// and, after them, the configuration vector (link status changes), enabled when the
    /// first queue asks for its eventfd; under UIO a legacy device's one INTx line; empty
    /// if the device access has none.
    irqs: OnceLock<Vec<Arc<dyn IrqWait>>>,
    /// The device took the configuration vector at the last start (`config_msix_vector`
    /// read back as written).
    config_vector: bool,
}

impl std::fmt::Debug for VirtioPci {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioPci")
            .field("name", &self.name)
            .field("modern", &self.is_modern())
            .field("features", &format_args!("{:#x}", self.features))
            .finish()
    }
}

impl VirtioPci {
    /// Opens the virtio interface of an opened PCI function: the modern one if the
    /// capabilities are there, else the legacy one (transitional device id only). Resets
    /// the device and brings it to `ACKNOWLEDGE | DRIVER` with its features read.
    pub fn probe(backend: Arc<dyn PciBackend>) -> Result<VirtioPci> {
        let name = backend.addr().to_string();
        let err = |m: String| Error::driver(&name, m);
        let mut cfg = [0u8; 256];
        backend.read_config(0, &mut cfg)?;
        let (vendor, device) = (le16(&cfg, 0), le16(&cfg, 2));
        if vendor != VIRTIO_PCI_VENDOR
            || !(device == VIRTIO_PCI_DEVICE_NET_TRANSITIONAL
                || device == VIRTIO_PCI_DEVICE_NET_MODERN)
        {
            return Err(err(format!(
                "{vendor:04x}:{device:04x} is not a virtio-net device"
            )));
        }
        let caps = parse_caps(&cfg).map_err(|m| err(format!("capability list: {m}")))?;
        let iface = if caps.is_modern() {
            Iface::Modern(Self::modern_regs(&backend, &caps).map_err(|e| err(e.to_string()))?)
        } else if device == VIRTIO_PCI_DEVICE_NET_TRANSITIONAL {
            if le32(&cfg, 0x10) & 1 == 0 {
                return Err(err(
                    "legacy virtio device whose BAR 0 is not an I/O-port BAR".into(),
                ));
            }
            Iface::Legacy(Arc::new(IoWindow::new(backend.clone(), 0, legacy::LEN)))
        } else {
            return Err(err(
                "modern virtio device without usable common-configuration and notify capabilities"
                    .into(),
            ));
        };
        Self::with_iface(name, backend, iface)
    }

    /// Maps the BARs the capabilities name and checks every structure lies inside.
    fn modern_regs(backend: &Arc<dyn PciBackend>, caps: &VirtioCaps) -> Result<ModernRegs> {
        let mut bars: [Option<MmioRegion>; 6] = Default::default();
        let mut window = |cap: &VirtioCap, min: usize, what: &str| -> Result<MmioWindow> {
            if (cap.length as usize) < min {
                return Err(Error::driver(
                    "virtio-pci",
                    format!("{what} structure is {} bytes, needs {min}", cap.length),
                ));
            }
            let slot = &mut bars[cap.bar as usize];
            if slot.is_none() {
                *slot = Some(backend.map_bar(cap.bar)?);
            }
            let region = slot.clone().expect("just mapped");
            MmioWindow::new(region, cap.offset as usize, cap.length as usize)
                .map_err(|e| Error::driver("virtio-pci", format!("{what} (BAR {}): {e}", cap.bar)))
        };
        let common = window(
            &caps.common.expect("is_modern"),
            common::LEN,
            "common config",
        )?;
        let (ncap, notify_mult) = caps.notify.expect("is_modern");
        let notify = window(&ncap, 2, "notify area")?;
        let device = match &caps.device {
            Some(c) => Some(Arc::new(window(c, 6, "device config")?) as Arc<dyn Regs>),
            None => None,
        };
        let isr = match &caps.isr {
            Some(c) => Some(Arc::new(window(c, 1, "ISR status")?) as Arc<dyn Regs>),
            None => None,
        };
        Ok(ModernRegs {
            common: Arc::new(common),
            notify_len: ncap.length as usize,
            notify: Arc::new(notify),
            notify_mult,
            device,
            isr,
        })
    }

    /// The modern transport over given register windows (device models and tests).
    pub fn modern_from_regs(backend: Arc<dyn PciBackend>, regs: ModernRegs) -> Result<VirtioPci> {
        let name = backend.addr().to_string();
        Self::with_iface(name, backend, Iface::Modern(regs))
    }

    /// The legacy transport over a given register window (device models and tests).
    pub fn legacy_from_regs(
        backend: Arc<dyn PciBackend>,
        regs: Arc<dyn Regs>,
    ) -> Result<VirtioPci> {
        let name = backend.addr().to_string();
        Self::with_iface(name, backend, Iface::Legacy(regs))
    }

    fn with_iface(name: String, backend: Arc<dyn PciBackend>, iface: Iface) -> Result<VirtioPci> {
        let mut t = VirtioPci {
            name,
            backend,
            iface,
            device_features: 0,
            features: 0,
            negotiated: false,
            started: false,
            queues_started: 0,
            closed: false,
            live: Arc::new(AtomicBool::new(false)),
            notifiers: Vec::new(),
            ctrl_mode: CtrlMode::None,
            irqs: OnceLock::new(),
            config_vector: false,
        };
        t.backend.set_bus_master(true)?;
        t.reset()?;
        t.set_status(STATUS_ACKNOWLEDGE)?;
        t.set_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER)?;
        t.device_features = t.read_device_features()?;
        if t.is_modern() && t.device_features & crate::net::features::VIRTIO_F_VERSION_1 == 0 {
            let _ = t.set_status(STATUS_FAILED);
            return Err(t.err("modern device does not offer VIRTIO_F_VERSION_1"));
        }
        if t.device_features & crate::net::features::VIRTIO_NET_F_CTRL_VQ != 0 {
            t.ctrl_mode = match t.ctrl_queue_unusable()? {
                None => CtrlMode::Device,
                Some(why) => {
                    tracing::warn!(
                        device = t.name,
                        "CTRL_VQ offered but not used ({why}): the port stays promiscuous"
                    );
                    CtrlMode::None
                }
            };
        }
        Ok(t)
    }

    /// Whether the modern interface is used.
    pub fn is_modern(&self) -> bool {
        matches!(self.iface, Iface::Modern(_))
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::driver(&self.name, msg)
    }

    fn status(&self) -> Result<u8> {
        match &self.iface {
            Iface::Modern(m) => m.common.r8(common::STATUS),
            Iface::Legacy(io) => io.r8(legacy::STATUS),
        }
    }

    fn set_status(&self, s: u8) -> Result<()> {
        match &self.iface {
            Iface::Modern(m) => m.common.w8(common::STATUS, s),
            Iface::Legacy(io) => io.w8(legacy::STATUS, s),
        }
    }

    /// Writes 0 to the status and waits until the device reads back 0.
    fn reset(&mut self) -> Result<()> {
        self.live.store(false, Ordering::Release);
        self.set_status(0)?;
        let t0 = Instant::now();
        loop {
            if self.status()? == 0 {
                break;
            }
            if t0.elapsed() > RESET_TIMEOUT {
                return Err(self.err("device did not complete its reset"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.negotiated = false;
        self.started = false;
        Ok(())
    }

    fn read_device_features(&self) -> Result<u64> {
        match &self.iface {
            Iface::Modern(m) => {
                let mut f = 0u64;
                for sel in 0..2u32 {
                    m.common.w32(common::DFSELECT, sel)?;
                    f |= u64::from(m.common.r32(common::DF)?) << (32 * sel);
                }
                Ok(f)
            }
            Iface::Legacy(io) => Ok(u64::from(io.r32(legacy::HOST_FEATURES)?)),
        }
    }

    /// Writes `features` and (modern) sets `FEATURES_OK`, checking the device kept it.
    fn write_features(&mut self, features: u64) -> Result<()> {
        match &self.iface {
            Iface::Modern(m) => {
                for sel in 0..2u32 {
                    m.common.w32(common::GFSELECT, sel)?;
                    m.common.w32(common::GF, (features >> (32 * sel)) as u32)?;
                }
                let s = self.status()?;
                self.set_status(s | STATUS_FEATURES_OK)?;
                if self.status()? & STATUS_FEATURES_OK == 0 {
                    let _ = self.set_status(STATUS_FAILED);
                    return Err(self.err(format!(
                        "device refused features {features:#x} (FEATURES_OK did not stick)"
                    )));
                }
            }
            Iface::Legacy(io) => io.w32(legacy::GUEST_FEATURES, features as u32)?,
        }
        self.negotiated = true;
        Ok(())
    }

    /// Resets the device and repeats the handshake up to the features (after a stop).
    fn rehandshake(&mut self) -> Result<()> {
        self.reset()?;
        self.set_status(STATUS_ACKNOWLEDGE)?;
        self.set_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER)?;
        self.write_features(self.features)
    }

    /// The largest ring size usable for the first queue pair (a power of two up to
    /// [`MAX_QUEUE_SIZE`]); for legacy devices, the exact size the rings must have.
    pub fn queue_size(&self) -> Result<u16> {
        let mut size = u16::MAX;
        for q in 0..2u16 {
            let s = match &self.iface {
                Iface::Modern(m) => {
                    if m.common.r16(common::NUM_QUEUES)? <= q {
                        return Err(self.err(format!("device has no queue {q}")));
                    }
                    m.common.w16(common::Q_SELECT, q)?;
                    let s = m.common.r16(common::Q_SIZE)?;
                    // Modern devices accept any power of two up to their maximum.
                    if s == 0 {
                        0
                    } else {
                        (1u16 << (15 - s.leading_zeros())).min(MAX_QUEUE_SIZE)
                    }
                }
                Iface::Legacy(io) => {
                    io.w16(legacy::QUEUE_SELECT, q)?;
                    let s = io.r16(legacy::QUEUE_SIZE)?;
                    if s != 0 && Layout::new(s).is_none() {
                        return Err(self.err(format!(
                            "legacy queue {q} has size {s}: not a power of two up to {MAX_QUEUE_SIZE}"
                        )));
                    }
                    s
                }
            };
            if s == 0 {
                return Err(self.err(format!("queue {q} is not available")));
            }
            size = size.min(s);
        }
        if !self.is_modern() {
            // Both legacy rings must have the size the device fixed; the net layer uses one.
            for q in 0..2u16 {
                if let Iface::Legacy(io) = &self.iface {
                    io.w16(legacy::QUEUE_SELECT, q)?;
                    if io.r16(legacy::QUEUE_SIZE)? != size {
                        return Err(self.err("legacy queues 0 and 1 differ in size"));
                    }
                }
            }
        }
        Ok(size)
    }

    /// Why the device's control queue ([`CTRL_QUEUE_INDEX`]) cannot hold a ring of
    /// [`CTRL_QUEUE_SIZE`] entries, if it cannot.
    fn ctrl_queue_unusable(&self) -> Result<Option<String>> {
        let q = CTRL_QUEUE_INDEX;
        Ok(match &self.iface {
            Iface::Modern(m) => {
                let n = m.common.r16(common::NUM_QUEUES)?;
                if n <= q {
                    Some(format!("the device has {n} queues, no control queue {q}"))
                } else {
                    m.common.w16(common::Q_SELECT, q)?;
                    let max = m.common.r16(common::Q_SIZE)?;
                    (max < CTRL_QUEUE_SIZE).then(|| {
                        format!("control queue {q} allows {max} entries, {CTRL_QUEUE_SIZE} needed")
                    })
                }
            }
            Iface::Legacy(io) => {
                io.w16(legacy::QUEUE_SELECT, q)?;
                let size = io.r16(legacy::QUEUE_SIZE)?;
                (size != CTRL_QUEUE_SIZE).then(|| {
                    format!(
                        "legacy control queue {q} has {size} entries; the control ring has \
                         {CTRL_QUEUE_SIZE} and legacy sizes are fixed"
                    )
                })
            }
        })
    }

    fn read_config(&self, off: usize, buf: &mut [u8]) -> Result<()> {
        match &self.iface {
            Iface::Modern(m) => {
                let dev = m
                    .device
                    .as_ref()
                    .ok_or_else(|| self.err("device has no device-specific configuration"))?;
                // Retry while the configuration changes under us (config_generation).
                for _ in 0..16 {
                    let g0 = m.common.r8(common::CFG_GENERATION)?;
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = dev.r8(off + i)?;
                    }
                    if m.common.r8(common::CFG_GENERATION)? == g0 {
                        return Ok(());
                    }
                }
                Err(self.err("device configuration keeps changing"))
            }
            Iface::Legacy(io) => {
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = io.r8(legacy::DEVICE_CFG + off + i)?;
                }
                Ok(())
            }
        }
    }

    /// Queue PFN for a legacy ring at `iova` spanning `len` bytes.
    fn legacy_pfn(&self, iova: u64, len: usize) -> Result<u32> {
        if iova.saturating_add(len as u64) > PFN_LIMIT {
            return Err(self.err(format!(
                "legacy ring at IOVA {iova:#x} is beyond what the 32-bit queue PFN register \
                 reaches (16 TiB)"
            )));
        }
        Ok((iova >> legacy::PFN_SHIFT) as u32)
    }

    /// A restarted device begins every ring at index 0: refuse rings that already ran
    /// (their used index is not 0), which only rings set up again after a stop avoid.
    /// Packed rings start at position 0 with wrap counter 1 (base `0x8000`); one that ran
    /// has a descriptor with `USED` set (handed back in lap 1, or posted in lap 0).
    fn check_fresh(&self, r: &RingSetup) -> Result<()> {
        let packed = self.features & crate::net::features::VIRTIO_F_RING_PACKED != 0;
        let fresh_base = if packed { PACKED_FRESH_BASE } else { 0 };
        if r.base != fresh_base {
            return Err(self.err(format!(
                "queue {}: virtio-pci cannot resume a ring at index {:#x} (set the queue up again)",
                r.addrs.index, r.base
            )));
        }
        if packed {
            return self.check_fresh_packed(r);
        }
        let used_idx_iova = r.addrs.used + 2;
        let Some(seg) = memory::segments().into_iter().find(|s| {
            s.iova_contiguous
                && used_idx_iova >= s.iova
                && used_idx_iova + 2 <= s.iova + s.len as u64
        }) else {
            return Ok(()); // cannot look: trust the caller
        };
        let va = seg.va + (used_idx_iova - seg.iova) as usize;
        // SAFETY: `va` lies inside a live, IOVA-contiguous segment (the registry lists it
        // and the queue holding the ring keeps it alive); the used index is 2-aligned.
        let idx = unsafe { (*(va as *const std::sync::atomic::AtomicU16)).load(Ordering::Acquire) };
        if idx != 0 {
            return Err(self.err(format!(
                "queue {}: the ring already ran (used index {idx}); virtio-pci resets the \
                 device on stop, so set the queues up again before restarting",
                r.addrs.index
            )));
        }
        Ok(())
    }

    /// [`VirtioPci::check_fresh`] for a packed ring: no descriptor may have `USED` set.
    fn check_fresh_packed(&self, r: &RingSetup) -> Result<()> {
        use crate::virtqueue::packed::VRING_PACKED_DESC_F_USED;
        let a = r.addrs;
        let len = 16 * u64::from(a.size);
        let Some(seg) = memory::segments().into_iter().find(|s| {
            s.iova_contiguous && a.desc >= s.iova && a.desc + len <= s.iova + s.len as u64
        }) else {
            return Ok(()); // cannot look: trust the caller
        };
        let va = seg.va + (a.desc - seg.iova) as usize;
        for i in 0..usize::from(a.size) {
            // SAFETY: the descriptor ring lies inside a live, IOVA-contiguous segment (checked
            // above; the queue holding it keeps it alive); flags (offset 14) are 2-aligned.
            let flags = unsafe {
                (*((va + 16 * i + 14) as *const std::sync::atomic::AtomicU16))
                    .load(Ordering::Acquire)
            };
            if flags & VRING_PACKED_DESC_F_USED != 0 {
                return Err(self.err(format!(
                    "queue {}: the packed ring already ran (descriptor {i} flags {flags:#x}); \
                     virtio-pci resets the device on stop, so set the queues up again before \
                     restarting",
                    a.index
                )));
            }
        }
        Ok(())
    }

    fn setup_queue(&mut self, r: &RingSetup) -> Result<()> {
        let a: RingAddrs = r.addrs;
        let q = a.index;
        match &self.iface {
            Iface::Modern(m) => {
                let c = &m.common;
                if c.r16(common::NUM_QUEUES)? <= q {
                    return Err(self.err(format!("device has no queue {q}")));
                }
                c.w16(common::Q_SELECT, q)?;
                let max = c.r16(common::Q_SIZE)?;
                if max == 0 || a.size > max || !a.size.is_power_of_two() {
                    return Err(self.err(format!(
                        "queue {q}: {} entries asked, the device allows {max}",
                        a.size
                    )));
                }
                c.w16(common::Q_SIZE, a.size)?;
                let vector = self.rx_vector(q);
                c.w16(common::Q_MSIX, vector)?;
                if vector != NO_VECTOR && c.r16(common::Q_MSIX)? != vector {
                    // The device could not map it (4.1.4.3.2): the queue works, polled.
                    tracing::warn!(
                        device = %self.name,
                        queue = q,
                        "the device refused MSI-X vector {vector}: rx interrupts of this queue \
                         will not fire (the sleeper's timeout still polls it)"
                    );
                }
                c.w64(common::Q_DESC, a.desc)?;
                c.w64(common::Q_DRIVER, a.avail)?;
                c.w64(common::Q_DEVICE, a.used)?;
                c.w16(common::Q_ENABLE, 1)?;
                Ok(())
            }
            Iface::Legacy(io) => {
                let io = io.clone();
                io.w16(legacy::QUEUE_SELECT, q)?;
                let size = io.r16(legacy::QUEUE_SIZE)?;
                if size == 0 || size != a.size {
                    return Err(self.err(format!(
                        "legacy queue {q} has {size} entries; the ring has {} (legacy rings \
                         must have exactly the device's size)",
                        a.size
                    )));
                }
                let l = Layout::new(a.size).ok_or_else(|| self.err("bad ring size"))?;
                if !a.desc.is_multiple_of(RING_ALIGN as u64)
                    || a.avail != a.desc + l.avail_off as u64
                    || a.used != a.desc + l.used_off as u64
                {
                    return Err(self.err(format!(
                        "legacy queue {q}: the ring is not one contiguous, 4096-aligned area"
                    )));
                }
                let pfn = self.legacy_pfn(a.desc, l.total)?;
                io.w32(legacy::QUEUE_PFN, pfn)?;
                Ok(())
            }
        }
    }
    /// The MSI-X vector of ring `q`: `q / 2` for a receive ring whose vector was enabled,
    /// else none.
    fn rx_vector(&self, q: u16) -> u16 {
        let pairs = usize::from(self.max_queue_pairs());
        match self.irqs.get() {
            Some(v)
                if self.is_modern()
                    && !self.uio()
                    && q.is_multiple_of(2)
                    && usize::from(q / 2) < v.len().min(pairs) =>
            {
                q / 2
            }
            _ => NO_VECTOR,
        }
    }

    /// Whether the device is reached through UIO (one INTx line, no MSI-X).
    fn uio(&self) -> bool {
        self.backend.kind() == BackendKind::Uio
    }

    /// The interrupts of this device access, enabled on the first call: behind VFIO, a
    /// modern device's MSI-X vectors, one per queue pair and the configuration vector;
    /// behind UIO, the device's INTx line (a modern device's only with its ISR
    /// capability); none otherwise (the queues are polled).
    fn vectors(&self) -> &[Arc<dyn IrqWait>] {
        let uio = self.uio();
        match (&self.iface, uio) {
            (Iface::Modern(_), false) | (Iface::Legacy(_), true) => {}
            (Iface::Modern(m), true) if m.isr.is_some() => {}
            _ => return &[],
        }
        let count = if uio {
            1
        } else {
            u32::from(self.max_queue_pairs()) + 1
        };
        self.irqs
            .get_or_init(|| match self.backend.enable_irqs(count) {
                Ok(v) => v.into_iter().map(Arc::from).collect(),
                Err(e) => {
                    tracing::debug!(device = %self.name, "no interrupts (polled only): {e}");
                    Vec::new()
                }
            })
    }

    /// The doorbell of queue `index` (checked against the notify area).
    fn make_notifier(&self, index: u16) -> Result<PciNotifier> {
        match &self.iface {
            Iface::Modern(m) => {
                if m.common.r16(common::NUM_QUEUES)? <= index {
                    return Err(self.err(format!("device has no queue {index}")));
                }
                m.common.w16(common::Q_SELECT, index)?;
                let off = u64::from(m.common.r16(common::Q_NOTIFY_OFF)?) * u64::from(m.notify_mult);
                if off + 2 > m.notify_len as u64 {
                    return Err(self.err(format!(
                        "queue {index}: doorbell at {off:#x} is outside the {:#x}-byte notify area",
                        m.notify_len
                    )));
                }
                Ok(PciNotifier {
                    regs: m.notify.clone(),
                    off: off as usize,
                    queue: index,
                    live: self.live.clone(),
                })
            }
            Iface::Legacy(io) => Ok(PciNotifier {
                regs: io.clone(),
                off: legacy::QUEUE_NOTIFY,
                queue: index,
                live: self.live.clone(),
            }),
        }
    }
}

/// A device's INTx line under UIO as a [`CallSource`]: the UIO descriptor, readable once
/// the line fired (the kernel masked it); acknowledging reads the ISR byte (which
/// deasserts the line) and lets UIO unmask it. One line serves every queue of the device.
struct IntxCall {
    irq: Arc<dyn IrqWait>,
    /// The ISR byte: in the legacy I/O window at [`legacy::ISR`], or the modern ISR
    /// capability's window at 0.
    regs: Arc<dyn Regs>,
    isr: usize,
}

impl CallSource for IntxCall {
    fn fd(&self) -> BorrowedFd<'_> {
        self.irq.fd()
    }

    fn ack(&self) {
        // Only a line that fired needs it (UIO masked it and made the descriptor
        // readable): then the ISR read deasserts it, and only after that may UIO unmask
        // it (`wait`), or it would fire again at once. An idle line costs one poll(2).
        if !pmd_core::unix::readable(self.irq.fd(), Duration::ZERO).unwrap_or(false) {
            return;
        }
        let _ = self.regs.r8(self.isr);
        let _ = self.irq.wait(0);
    }
}

impl Transport for VirtioPci {
    fn describe(&self) -> String {
        format!(
            "virtio-pci-{}:{}",
            if self.is_modern() { "modern" } else { "legacy" },
            self.name
        )
    }

    fn addr_mode(&self) -> AddrMode {
        AddrMode::Iova
    }

    fn device_features(&self) -> u64 {
        self.device_features
    }

    fn negotiate(&mut self, wanted: u64) -> Result<u64> {
        use crate::net::features::{VIRTIO_F_VERSION_1, VIRTIO_NET_F_STATUS};
        let offered = self.device_features;
        let mut f = wanted & offered;
        // Transport-level features: link status from the config, IOMMU-translated DMA.
        f |= offered & (VIRTIO_NET_F_STATUS | VIRTIO_F_ACCESS_PLATFORM);
        if self.is_modern() {
            f |= VIRTIO_F_VERSION_1; // offered: checked at probe
        } else {
            f &= u64::from(u32::MAX) & !VIRTIO_F_VERSION_1;
        }
        if self.started {
            return Err(self.err("cannot renegotiate features while started"));
        }
        if self.negotiated {
            self.reset()?;
            self.set_status(STATUS_ACKNOWLEDGE)?;
            self.set_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER)?;
        }
        if f & VIRTIO_F_ACCESS_PLATFORM == 0
            && self.backend.kind() == BackendKind::Vfio
            && self.backend.iova_mode() == IovaMode::Va
        {
            let _ = self.set_status(STATUS_FAILED);
            return Err(self.err(format!(
                "the {} device does not offer VIRTIO_F_ACCESS_PLATFORM: its DMA bypasses the \
                 IOMMU and needs physical addresses, but the EAL uses IOVA-as-VA; run with \
                 --iova-mode pa{}",
                if self.is_modern() { "modern" } else { "legacy" },
                if self.is_modern() {
                    " (or give the device ACCESS_PLATFORM, e.g. QEMU's iommu_platform=on)"
                } else {
                    " (legacy devices can never offer it)"
                }
            )));
        }
        self.features = f;
        self.write_features(f)?;
        Ok(f)
    }

    fn mac(&self) -> Option<MacAddr> {
        if self.features & crate::net::features::VIRTIO_NET_F_MAC == 0 {
            return None;
        }
        let mut m = [0u8; 6];
        self.read_config(0, &mut m).ok()?;
        Some(MacAddr(m))
    }

    fn max_queue_pairs(&self) -> u16 {
        // One pair: MQ is not asked for, which keeps the control queue at index 2.
        1
    }

    fn ctrl_mode(&self) -> CtrlMode {
        self.ctrl_mode
    }

    /// Receive rings: behind VFIO, a modern device's MSI-X vector for the ring (enabled on
    /// the first call, one per queue pair); behind UIO, the device's INTx line, one for the
    /// whole device (UIO's limit), acknowledged by reading the ISR byte (the legacy I/O
    /// window's, or a modern device's ISR capability). Transmit rings and legacy devices
    /// behind VFIO (whose MSI-X vectors would move the device configuration): none, the
    /// queue is polled.
    fn call_source(&self, index: u16) -> Option<Arc<dyn CallSource>> {
        if !index.is_multiple_of(2) || index / 2 >= self.max_queue_pairs() {
            return None;
        }
        let irqs = self.vectors();
        match &self.iface {
            Iface::Legacy(io) => {
                let irq = irqs.first()?.clone();
                Some(Arc::new(IntxCall {
                    irq,
                    regs: io.clone(),
                    isr: legacy::ISR,
                }))
            }
            Iface::Modern(m) if self.uio() => {
                let irq = irqs.first()?.clone();
                Some(Arc::new(IntxCall {
                    irq,
                    regs: m.isr.clone()?,
                    isr: 0,
                }))
            }
            Iface::Modern(_) => {
                let irq = irqs.get(usize::from(index / 2))?;
                let fd = irq.fd().try_clone_to_owned().ok()?;
                Some(Arc::new(EventFdCall(Arc::new(fd))))
            }
        }
    }

    /// A modern device's configuration vector, if it took it at start.
    fn link_source(&self) -> Option<Arc<dyn CallSource>> {
        if !self.config_vector {
            return None;
        }
        let irq = self.irqs.get()?.get(usize::from(self.max_queue_pairs()))?;
        let fd = irq.fd().try_clone_to_owned().ok()?;
        Some(Arc::new(EventFdCall(Arc::new(fd))))
    }

    fn notifier(&mut self, index: u16) -> Result<Arc<dyn Notifier>> {
        let n = Arc::new(self.make_notifier(index)?);
        self.notifiers.retain(|o| o.queue != index);
        self.notifiers.push(n.clone());
        Ok(n)
    }

    fn start(&mut self, rings: &[RingSetup]) -> Result<()> {
        if self.closed {
            return Err(self.err("device closed"));
        }
        if self.started {
            return Err(self.err("already started"));
        }
        for r in rings {
            self.check_fresh(r)?;
        }
        if !self.negotiated {
            self.rehandshake()?;
        }
        let res = (|| {
            // Data rings 0..2n in order; with a control queue, its ring last, at its index.
            let ctrl = self.ctrl_mode == CtrlMode::Device
                && rings
                    .last()
                    .is_some_and(|r| r.addrs.index == CTRL_QUEUE_INDEX);
            let data = rings.len() - usize::from(ctrl);
            for (i, r) in rings.iter().enumerate() {
                if i < data && r.addrs.index as usize != i {
                    return Err(self.err("rings out of order"));
                }
                if i >= data && (!data.is_multiple_of(2) || data > usize::from(CTRL_QUEUE_INDEX)) {
                    return Err(self.err(format!(
                        "control ring {} after {data} data rings",
                        r.addrs.index
                    )));
                }
                self.setup_queue(r)?;
            }
            // Link status changes on the vector after the rings', where the device has
            // STATUS and takes it (read back: NO_VECTOR means it could not).
            self.config_vector = false;
            if let Iface::Modern(m) = &self.iface {
                let pairs = usize::from(self.max_queue_pairs());
                let v = if self.features & crate::net::features::VIRTIO_NET_F_STATUS != 0
                    && !self.uio()
                    && self.vectors().len() > pairs
                {
                    pairs as u16
                } else {
                    NO_VECTOR
                };
                m.common.w16(common::MSIX, v)?;
                self.config_vector = v != NO_VECTOR && m.common.r16(common::MSIX)? == v;
            }
            let s = self.status()?;
            self.set_status(s | STATUS_DRIVER_OK)?;
            let s = self.status()?;
            if s & (STATUS_DEVICE_NEEDS_RESET | STATUS_FAILED) != 0 || s & STATUS_DRIVER_OK == 0 {
                return Err(self.err(format!("device did not accept DRIVER_OK (status {s:#x})")));
            }
            // Buffers may have been posted before DRIVER_OK (receive rings are filled at
            // setup): one notification per queue now tells the device about them.
            self.live.store(true, Ordering::Release);
            for n in &self.notifiers {
                if rings.iter().any(|r| r.addrs.index == n.queue) {
                    n.kick();
                }
            }
            Ok(())
        })();
        if let Err(e) = res {
            let _ = self.reset();
            return Err(e);
        }
        self.started = true;
        self.queues_started = rings.len();
        Ok(())
    }

    fn stop(&mut self) -> Result<Vec<u16>> {
        self.reset()?;
        Ok(vec![0; std::mem::take(&mut self.queues_started)])
    }

    fn link_up(&self) -> bool {
        if !self.started {
            return false;
        }
        if self.features & crate::net::features::VIRTIO_NET_F_STATUS == 0 {
            return true;
        }
        let mut b = [0u8; 2];
        self.read_config(6, &mut b).is_ok() && u16::from_le_bytes(b) & VIRTIO_NET_S_LINK_UP != 0
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        vec![
            ("pci_modern".into(), u64::from(self.is_modern())),
            ("pci_status".into(), self.status().map_or(0, u64::from)),
        ]
    }

    fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if let Err(e) = self.reset() {
            tracing::warn!(device = self.name, "reset at close: {e}");
        }
        let _ = self.backend.set_bus_master(false);
    }
}

impl Drop for VirtioPci {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests;
