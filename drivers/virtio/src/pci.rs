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
//! on the next 4096-byte boundary ([`crate::queue::Layout`] already lays queues out so).
//! The PFN register is 32 bits, so rings must lie below 16 TiB. Without `VERSION_1` the net
//! header is 10 bytes (12 with `MRG_RXBUF`).
//!
//! **DMA and the IOMMU**: a device that does not negotiate `VIRTIO_F_ACCESS_PLATFORM`
//! (every legacy device, and QEMU's modern ones unless `iommu_platform=on`) bypasses the
//! IOMMU and takes guest-physical addresses. Behind VFIO with an IOMMU the EAL's default
//! is IOVA-as-VA, which such a device would read as physical addresses: the transport
//! refuses that combination at probe and asks for `--iova-mode pa` (or ACCESS_PLATFORM).
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

use crate::ctrl::CTRL_QUEUE_SIZE;
use crate::queue::{AddrMode, Layout, RingAddrs, MAX_QUEUE_SIZE, RING_ALIGN};
use crate::transport::{CtrlMode, Notifier, RingSetup, Transport};
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::MacAddr;
use pmd_core::memory;
use pmd_core::options::IovaMode;
use pmd_core::pci::{BackendKind, MmioRegion, PciBackend};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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

/// Vendor-specific capability id in the PCI capability list.
pub const PCI_CAP_ID_VNDR: u8 = 0x09;
/// `cfg_type` of the common configuration.
pub const CAP_COMMON_CFG: u8 = 1;
/// `cfg_type` of the notification area.
pub const CAP_NOTIFY_CFG: u8 = 2;
/// `cfg_type` of the ISR status byte.
pub const CAP_ISR_CFG: u8 = 3;
/// `cfg_type` of the device-specific configuration.
pub const CAP_DEVICE_CFG: u8 = 4;
/// `cfg_type` of the PCI configuration access window.
pub const CAP_PCI_CFG: u8 = 5;

/// Common configuration register offsets.
mod common {
    pub const DFSELECT: usize = 0x00;
    pub const DF: usize = 0x04;
    pub const GFSELECT: usize = 0x08;
    pub const GF: usize = 0x0c;
    pub const MSIX: usize = 0x10;
    pub const NUM_QUEUES: usize = 0x12;
    pub const STATUS: usize = 0x14;
    pub const CFG_GENERATION: usize = 0x15;
    pub const Q_SELECT: usize = 0x16;
    pub const Q_SIZE: usize = 0x18;
    pub const Q_MSIX: usize = 0x1a;
    pub const Q_ENABLE: usize = 0x1c;
    pub const Q_NOTIFY_OFF: usize = 0x1e;
    pub const Q_DESC: usize = 0x20;
    pub const Q_DRIVER: usize = 0x28;
    pub const Q_DEVICE: usize = 0x30;
    /// Bytes of the common configuration this driver uses.
    pub const LEN: usize = 0x38;
}

/// Legacy I/O-port register offsets.
mod legacy {
    pub const HOST_FEATURES: usize = 0;
    pub const GUEST_FEATURES: usize = 4;
    pub const QUEUE_PFN: usize = 8;
    pub const QUEUE_SIZE: usize = 12;
    pub const QUEUE_SELECT: usize = 14;
    pub const QUEUE_NOTIFY: usize = 16;
    pub const STATUS: usize = 18;
    /// Device configuration without MSI-X.
    pub const DEVICE_CFG: usize = 20;
    /// Registers plus the net configuration (mac, status).
    pub const LEN: usize = DEVICE_CFG + 8;
    /// Shift of the queue PFN register.
    pub const PFN_SHIFT: u32 = 12;
}

/// "No MSI-X vector" for the vector registers.
const NO_VECTOR: u16 = 0xffff;
/// How long a reset may take before the device is declared dead.
const RESET_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many capabilities are walked (a loop is an error, not a hang).
const MAX_CAPS: usize = 48;

/// One virtio vendor capability (`struct virtio_pci_cap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioCap {
    /// Where in config space the capability is.
    pub at: u8,
    /// Structure type (`CAP_*_CFG`).
    pub cfg_type: u8,
    /// BAR holding the structure.
    pub bar: u8,
    /// Offset of the structure in the BAR.
    pub offset: u32,
    /// Length of the structure.
    pub length: u32,
}

/// The virtio structures found in a config space (the first usable of each type).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioCaps {
    /// Common configuration.
    pub common: Option<VirtioCap>,
    /// Notification area and its `notify_off_multiplier`.
    pub notify: Option<(VirtioCap, u32)>,
    /// ISR status.
    pub isr: Option<VirtioCap>,
    /// Device-specific configuration.
    pub device: Option<VirtioCap>,
}

impl VirtioCaps {
    /// Whether the modern interface can be used (common configuration and notifications).
    pub fn is_modern(&self) -> bool {
        self.common.is_some() && self.notify.is_some()
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Walks the capability list of a config space (at least 64 bytes, at most 256 are
/// looked at) for the virtio vendor capabilities. A list that loops, runs outside the
/// 256 bytes, points into the header, or has a truncated virtio capability is an error;
/// capabilities naming a reserved BAR are skipped.
pub fn parse_caps(cfg: &[u8]) -> std::result::Result<VirtioCaps, String> {
    if cfg.len() < 64 {
        return Err(format!("config space of {} bytes is too short", cfg.len()));
    }
    let cfg = &cfg[..cfg.len().min(256)];
    let mut caps = VirtioCaps::default();
    // Status register bit 4: the capability list exists.
    if le16(cfg, 0x06) & 0x10 == 0 {
        return Ok(caps);
    }
    let mut seen = [false; 256];
    let mut ptr = cfg[0x34] & 0xfc;
    let mut walked = 0;
    while ptr != 0 {
        walked += 1;
        if walked > MAX_CAPS {
            return Err(format!("more than {MAX_CAPS} capabilities"));
        }
        let p = ptr as usize;
        if p < 0x40 {
            return Err(format!(
                "capability pointer {ptr:#x} points into the standard header"
            ));
        }
        if seen[p] {
            return Err(format!("the capability list loops (back to {ptr:#x})"));
        }
        seen[p] = true;
        if p + 2 > cfg.len() {
            return Err(format!("capability at {ptr:#x} runs past config space"));
        }
        let (id, next) = (cfg[p], cfg[p + 1]);
        if id == PCI_CAP_ID_VNDR {
            if p + 16 > cfg.len() {
                return Err(format!(
                    "virtio capability at {ptr:#x} runs past config space"
                ));
            }
            let cap_len = cfg[p + 2] as usize;
            if cap_len < 16 || p + cap_len > cfg.len() {
                return Err(format!(
                    "virtio capability at {ptr:#x} has a bad length {cap_len}"
                ));
            }
            let cap = VirtioCap {
                at: ptr,
                cfg_type: cfg[p + 3],
                bar: cfg[p + 4],
                offset: le32(cfg, p + 8),
                length: le32(cfg, p + 12),
            };
            if cap.bar <= 5 {
                match cap.cfg_type {
                    CAP_COMMON_CFG if caps.common.is_none() => caps.common = Some(cap),
                    CAP_NOTIFY_CFG if caps.notify.is_none() => {
                        if cap_len < 20 {
                            return Err(format!(
                                "notify capability at {ptr:#x} is {cap_len} bytes, needs 20"
                            ));
                        }
                        caps.notify = Some((cap, le32(cfg, p + 16)));
                    }
                    CAP_ISR_CFG if caps.isr.is_none() => caps.isr = Some(cap),
                    CAP_DEVICE_CFG if caps.device.is_none() => caps.device = Some(cap),
                    _ => {}
                }
            }
        }
        ptr = next & 0xfc;
    }
    Ok(caps)
}

/// A window of device registers (part of a memory BAR, or an I/O-port BAR), with bounds
/// checked on every access. Accesses are 1, 2 or 4 bytes wide, little endian.
pub trait Regs: Send + Sync {
    /// Reads `buf.len()` (1, 2 or 4) bytes at `off`.
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<()>;
    /// Writes `buf` (1, 2 or 4 bytes) at `off`.
    fn write(&self, off: usize, buf: &[u8]) -> Result<()>;
}

/// Typed accessors over [`Regs`].
trait RegsExt: Regs {
    fn r8(&self, off: usize) -> Result<u8> {
        let mut b = [0u8; 1];
        self.read(off, &mut b)?;
        Ok(b[0])
    }
    fn r16(&self, off: usize) -> Result<u16> {
        let mut b = [0u8; 2];
        self.read(off, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    fn r32(&self, off: usize) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(off, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn w8(&self, off: usize, v: u8) -> Result<()> {
        self.write(off, &[v])
    }
    fn w16(&self, off: usize, v: u16) -> Result<()> {
        self.write(off, &v.to_le_bytes())
    }
    fn w32(&self, off: usize, v: u32) -> Result<()> {
        self.write(off, &v.to_le_bytes())
    }
    /// A 64-bit register as two 32-bit writes, low half first.
    fn w64(&self, off: usize, v: u64) -> Result<()> {
        self.w32(off, v as u32)?;
        self.w32(off + 4, (v >> 32) as u32)
    }
}

impl<T: Regs + ?Sized> RegsExt for T {}

fn out_of_window(off: usize, width: usize, len: usize) -> Error {
    Error::driver(
        "virtio-pci",
        format!("register access {off:#x}+{width} outside the {len:#x}-byte window"),
    )
}

/// `len` bytes of a memory BAR from `base`.
pub struct MmioWindow {
    region: MmioRegion,
    base: usize,
    len: usize,
}

impl MmioWindow {
    /// The window `base..base+len` of `region`; an error unless it lies inside.
    pub fn new(region: MmioRegion, base: usize, len: usize) -> Result<MmioWindow> {
        if base.checked_add(len).is_none_or(|end| end > region.len()) {
            return Err(Error::driver(
                "virtio-pci",
                format!(
                    "structure at {base:#x}+{len:#x} lies outside its {:#x}-byte BAR",
                    region.len()
                ),
            ));
        }
        Ok(MmioWindow { region, base, len })
    }
}

impl Regs for MmioWindow {
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<()> {
        if off.checked_add(buf.len()).is_none_or(|e| e > self.len) {
            return Err(out_of_window(off, buf.len(), self.len));
        }
        let at = self.base + off;
        match buf.len() {
            1 => buf[0] = self.region.read8_at(at)?,
            2 => buf.copy_from_slice(&self.region.read16_at(at)?.to_le_bytes()),
            4 => buf.copy_from_slice(&self.region.read32_at(at)?.to_le_bytes()),
            n => return Err(out_of_window(off, n, self.len)),
        }
        Ok(())
    }

    fn write(&self, off: usize, buf: &[u8]) -> Result<()> {
        if off.checked_add(buf.len()).is_none_or(|e| e > self.len) {
            return Err(out_of_window(off, buf.len(), self.len));
        }
        let at = self.base + off;
        match *buf {
            [a] => self.region.write8_at(at, a),
            [a, b] => self.region.write16_at(at, u16::from_le_bytes([a, b])),
            [a, b, c, d] => self.region.write32_at(at, u32::from_le_bytes([a, b, c, d])),
            _ => Err(out_of_window(off, buf.len(), self.len)),
        }
    }
}

/// The first `len` bytes of an I/O-port BAR, through the backend.
pub struct IoWindow {
    backend: Arc<dyn PciBackend>,
    bar: u8,
    len: usize,
}

impl IoWindow {
    /// The first `len` bytes of I/O BAR `bar` of `backend`.
    pub fn new(backend: Arc<dyn PciBackend>, bar: u8, len: usize) -> IoWindow {
        IoWindow { backend, bar, len }
    }
}

impl Regs for IoWindow {
    fn read(&self, off: usize, buf: &mut [u8]) -> Result<()> {
        if off.checked_add(buf.len()).is_none_or(|e| e > self.len) {
            return Err(out_of_window(off, buf.len(), self.len));
        }
        self.backend.read_io(self.bar, off as u64, buf)
    }

    fn write(&self, off: usize, buf: &[u8]) -> Result<()> {
        if off.checked_add(buf.len()).is_none_or(|e| e > self.len) {
            return Err(out_of_window(off, buf.len(), self.len));
        }
        self.backend.write_io(self.bar, off as u64, buf)
    }
}

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
        Ok(ModernRegs {
            common: Arc::new(common),
            notify_len: ncap.length as usize,
            notify: Arc::new(notify),
            notify_mult,
            device,
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
        };
        t.backend.set_bus_master(true)?;
        t.reset()?;
        t.set_status(STATUS_ACKNOWLEDGE)?;
        t.set_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER)?;
        t.device_features = t.read_device_features()?;
        if t.is_modern() && t.device_features & crate::net::VIRTIO_F_VERSION_1 == 0 {
            let _ = t.set_status(STATUS_FAILED);
            return Err(t.err("modern device does not offer VIRTIO_F_VERSION_1"));
        }
        if t.device_features & crate::net::VIRTIO_NET_F_CTRL_VQ != 0 {
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
        let packed = self.features & crate::net::VIRTIO_F_RING_PACKED != 0;
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
        use crate::queue::packed::VRING_PACKED_DESC_F_USED;
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
                c.w16(common::Q_MSIX, NO_VECTOR)?;
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
        use crate::net::{VIRTIO_F_VERSION_1, VIRTIO_NET_F_STATUS};
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
            && memory::config().iova_mode == IovaMode::Va
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
        if self.features & crate::net::VIRTIO_NET_F_MAC == 0 {
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
            if let Iface::Modern(m) = &self.iface {
                m.common.w16(common::MSIX, NO_VECTOR)?;
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
        if self.features & crate::net::VIRTIO_NET_F_STATUS == 0 {
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
mod tests {
    use super::*;
    use crate::net::{
        net_hdr_len, NetConf, VirtioNet, VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1,
        VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS,
        WANTED_FEATURES,
    };
    use pmd_core::memory::SegmentInfo;
    use pmd_core::pci::mmio::region_over_memory;
    use pmd_core::pci::{IrqWait, PciAddr};
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// Legacy device model behind `read_io`/`write_io` of BAR 0.
    #[derive(Default)]
    struct LegacyModel {
        host_features: u32,
        guest_features: u32,
        status: u8,
        select: u16,
        sizes: Vec<u16>,
        pfn: [u32; 3],
        notified: Vec<u16>,
        status_writes: Vec<u8>,
        mac: [u8; 6],
    }

    /// A PCI function over byte arrays: config space, memory BARs, an I/O BAR model.
    struct FakeBackend {
        cfg: Mutex<[u8; 256]>,
        bars: HashMap<u8, MmioRegion>,
        legacy: Mutex<LegacyModel>,
        kind: BackendKind,
        dma: Mutex<Vec<(bool, u64, usize)>>,
    }

    impl FakeBackend {
        fn new(cfg: [u8; 256], bars: HashMap<u8, MmioRegion>) -> FakeBackend {
            FakeBackend {
                cfg: Mutex::new(cfg),
                bars,
                legacy: Mutex::new(LegacyModel::default()),
                kind: BackendKind::Model,
                dma: Mutex::new(Vec::new()),
            }
        }
    }

    fn in_range(off: u64, len: usize, size: usize) -> Result<usize> {
        let o = off as usize;
        if o + len > size {
            return Err(Error::driver("fake", "outside"));
        }
        Ok(o)
    }

    impl PciBackend for FakeBackend {
        fn addr(&self) -> PciAddr {
            "0000:00:04.0".parse().unwrap()
        }
        fn kind(&self) -> BackendKind {
            self.kind
        }
        fn iova_mode(&self) -> IovaMode {
            IovaMode::Va
        }
        fn read_config(&self, offset: u16, buf: &mut [u8]) -> Result<()> {
            let o = in_range(offset.into(), buf.len(), 256)?;
            buf.copy_from_slice(
                &self.cfg.lock().unwrap_or_else(|e| e.into_inner())[o..o + buf.len()],
            );
            Ok(())
        }
        fn write_config(&self, offset: u16, buf: &[u8]) -> Result<()> {
            let o = in_range(offset.into(), buf.len(), 256)?;
            self.cfg.lock().unwrap_or_else(|e| e.into_inner())[o..o + buf.len()]
                .copy_from_slice(buf);
            Ok(())
        }
        fn map_bar(&self, bar: u8) -> Result<MmioRegion> {
            self.bars
                .get(&bar)
                .cloned()
                .ok_or_else(|| Error::driver("fake", format!("BAR {bar} not implemented")))
        }
        fn dma_map(&self, seg: &SegmentInfo) -> Result<()> {
            self.dma
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((true, seg.iova, seg.len));
            Ok(())
        }
        fn dma_unmap(&self, seg: &SegmentInfo) -> Result<()> {
            self.dma
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((false, seg.iova, seg.len));
            Ok(())
        }
        fn enable_irqs(&self, _count: u32) -> Result<Vec<Box<dyn IrqWait>>> {
            Err(Error::driver("fake", "no interrupts"))
        }
        fn reset(&self) -> Result<()> {
            Ok(())
        }
        fn read_io(&self, bar: u8, offset: u64, buf: &mut [u8]) -> Result<()> {
            assert_eq!(bar, 0);
            let o = in_range(offset, buf.len(), legacy::LEN)?;
            let m = self.legacy.lock().unwrap_or_else(|e| e.into_inner());
            let v: u32 = match (o, buf.len()) {
                (legacy::HOST_FEATURES, 4) => m.host_features,
                (legacy::GUEST_FEATURES, 4) => m.guest_features,
                (legacy::QUEUE_PFN, 4) => m.pfn.get(m.select as usize).copied().unwrap_or(0),
                (legacy::QUEUE_SIZE, 2) => {
                    m.sizes.get(m.select as usize).copied().unwrap_or(0).into()
                }
                (legacy::QUEUE_SELECT, 2) => m.select.into(),
                (legacy::STATUS, 1) => m.status.into(),
                (o, 1) if (legacy::DEVICE_CFG..legacy::DEVICE_CFG + 6).contains(&o) => {
                    m.mac[o - legacy::DEVICE_CFG].into()
                }
                (o, 1) if o == legacy::DEVICE_CFG + 6 => 1, // link up
                (o, 1) if o == legacy::DEVICE_CFG + 7 => 0,
                _ => panic!("unexpected legacy read at {o}+{}", buf.len()),
            };
            buf.copy_from_slice(&v.to_le_bytes()[..buf.len()]);
            Ok(())
        }
        fn write_io(&self, bar: u8, offset: u64, buf: &[u8]) -> Result<()> {
            assert_eq!(bar, 0);
            let o = in_range(offset, buf.len(), legacy::LEN)?;
            let mut v = [0u8; 4];
            v[..buf.len()].copy_from_slice(buf);
            let v = u32::from_le_bytes(v);
            let mut m = self.legacy.lock().unwrap_or_else(|e| e.into_inner());
            match (o, buf.len()) {
                (legacy::GUEST_FEATURES, 4) => m.guest_features = v,
                (legacy::QUEUE_PFN, 4) => {
                    let q = m.select as usize;
                    if q < 3 {
                        m.pfn[q] = v;
                    }
                }
                (legacy::QUEUE_SELECT, 2) => m.select = v as u16,
                (legacy::QUEUE_NOTIFY, 2) => m.notified.push(v as u16),
                (legacy::STATUS, 1) => {
                    m.status = v as u8;
                    m.status_writes.push(v as u8);
                    if v == 0 {
                        m.pfn = [0; 3];
                        m.guest_features = 0;
                    }
                }
                _ => panic!("unexpected legacy write at {o}+{}", buf.len()),
            }
            Ok(())
        }
    }

    // ---- config space crafting ----------------------------------------------------------

    /// A config space with device id `device` and the capabilities `caps` (offset, then
    /// the capability's bytes without the `next` byte), linked in order.
    fn config(device: u16, caps: &[(u8, Vec<u8>)]) -> [u8; 256] {
        let mut c = [0u8; 256];
        c[0..2].copy_from_slice(&VIRTIO_PCI_VENDOR.to_le_bytes());
        c[2..4].copy_from_slice(&device.to_le_bytes());
        if !caps.is_empty() {
            c[6] = 0x10;
            c[0x34] = caps[0].0;
        }
        for (i, (off, body)) in caps.iter().enumerate() {
            let o = *off as usize;
            c[o] = body[0];
            c[o + 1] = caps.get(i + 1).map_or(0, |n| n.0);
            c[o + 2..o + 1 + body.len()].copy_from_slice(&body[1..]);
        }
        c
    }

    /// A virtio vendor capability without its `next` byte: id, cap_len, cfg_type, bar, id,
    /// padding, offset, length (and notify_off_multiplier).
    fn vcap(cfg_type: u8, bar: u8, offset: u32, length: u32, mult: Option<u32>) -> Vec<u8> {
        let len = if mult.is_some() { 20 } else { 16 };
        let mut v = vec![PCI_CAP_ID_VNDR, len, cfg_type, bar, 0, 0, 0];
        v.extend_from_slice(&offset.to_le_bytes());
        v.extend_from_slice(&length.to_le_bytes());
        if let Some(m) = mult {
            v.extend_from_slice(&m.to_le_bytes());
        }
        v
    }

    fn modern_caps(bar: u8, common_off: u32) -> Vec<(u8, Vec<u8>)> {
        vec![
            (0x98, vec![0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), // MSI-X, not ours
            (0x84, vcap(CAP_NOTIFY_CFG, bar, 0x3000, 0x1000, Some(4))),
            (0x70, vcap(CAP_DEVICE_CFG, bar, 0x2000, 0x1000, None)),
            (0x60, vcap(CAP_ISR_CFG, bar, 0x1000, 0x1000, None)),
            (0x50, vcap(CAP_COMMON_CFG, bar, common_off, 0x1000, None)),
            (0x40, vcap(CAP_PCI_CFG, 0, 0, 0, None)),
        ]
    }

    #[test]
    fn parses_the_capabilities() {
        let c = config(0x1041, &modern_caps(4, 0));
        let caps = parse_caps(&c).unwrap();
        assert!(caps.is_modern());
        assert_eq!(
            caps.common,
            Some(VirtioCap {
                at: 0x50,
                cfg_type: 1,
                bar: 4,
                offset: 0,
                length: 0x1000
            })
        );
        let (n, mult) = caps.notify.unwrap();
        assert_eq!((n.offset, n.length, mult), (0x3000, 0x1000, 4));
        assert_eq!(caps.isr.unwrap().offset, 0x1000);
        assert_eq!(caps.device.unwrap().offset, 0x2000);
        // No capability list at all (status bit clear): nothing, no error.
        let legacy = config(0x1000, &[]);
        assert_eq!(parse_caps(&legacy).unwrap(), VirtioCaps::default());
    }

    #[test]
    fn hostile_capability_lists_are_errors() {
        // A loop: the last capability points back at the first.
        let mut c = config(0x1041, &modern_caps(4, 0));
        c[0x41] = 0x98;
        assert!(parse_caps(&c).unwrap_err().contains("loops"));
        // Self loop.
        let mut c = config(0x1041, &[(0x40, vec![0x11, 0])]);
        c[0x41] = 0x40;
        assert!(parse_caps(&c).is_err());
        // Into the header.
        let mut c = config(0x1041, &[(0x40, vec![0x11, 0])]);
        c[0x41] = 0x10;
        assert!(parse_caps(&c).unwrap_err().contains("header"));
        // A virtio capability running past config space.
        let c = config(0x1041, &[(0xf8, vec![PCI_CAP_ID_VNDR, 16, 1])]);
        assert!(parse_caps(&c).unwrap_err().contains("past"));
        // A too-short virtio capability, a too-short notify capability.
        let mut short = vcap(CAP_COMMON_CFG, 4, 0, 0x1000, None);
        short[1] = 8;
        assert!(parse_caps(&config(0x1041, &[(0x40, short)])).is_err());
        let mut n = vcap(CAP_NOTIFY_CFG, 4, 0, 0x1000, Some(4));
        n[1] = 16;
        assert!(parse_caps(&config(0x1041, &[(0x40, n)]))
            .unwrap_err()
            .contains("notify"));
        // A reserved BAR: skipped, so the device is not usable as modern.
        let caps = parse_caps(&config(0x1041, &modern_caps(7, 0))).unwrap();
        assert!(!caps.is_modern() && caps.common.is_none());
        // Whatever config space a fuzzer makes: never a panic.
        let mut x = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut c = [0u8; 256];
            for b in c.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            c[6] |= 0x10;
            let _ = parse_caps(&c);
        }
        assert!(parse_caps(&[0u8; 10]).is_err());
    }

    /// BAR 4 of 0x4000 bytes laid out as `modern_caps` says, preset like a device: features
    /// `f` in both halves (plain memory ignores the select register), 2 queues of 256,
    /// MAC 52:54:00:12:34:56, link up.
    fn modern_backend(f: u32, caps: Vec<(u8, Vec<u8>)>) -> (Arc<FakeBackend>, MmioRegion) {
        let bar = region_over_memory(0x4000);
        bar.write32_at(common::DF, f).unwrap();
        bar.write16_at(common::NUM_QUEUES, 2).unwrap();
        bar.write16_at(common::Q_SIZE, 256).unwrap();
        for (i, b) in [0x52u8, 0x54, 0, 0x12, 0x34, 0x56, 1, 0].iter().enumerate() {
            bar.write8_at(0x2000 + i, *b).unwrap();
        }
        let b = FakeBackend::new(config(0x1041, &caps), HashMap::from([(4, bar.clone())]));
        (Arc::new(b), bar)
    }

    const F_LOW: u32 = 1 | (1 << 5) | (1 << 15) | (1 << 16) | (1 << 29);

    #[test]
    fn probes_a_modern_device_from_its_config_space() {
        let (b, bar) = modern_backend(F_LOW, modern_caps(4, 0));
        let mut t = VirtioPci::probe(b.clone()).unwrap();
        assert!(t.is_modern());
        assert_eq!(
            bar.read8_at(common::STATUS).unwrap(),
            STATUS_ACKNOWLEDGE | STATUS_DRIVER
        );
        // Both halves read F_LOW: bit 32 is VERSION_1.
        assert_eq!(
            t.device_features(),
            u64::from(F_LOW) | (u64::from(F_LOW) << 32)
        );
        assert_eq!(t.queue_size().unwrap(), 256);
        let f = t.negotiate(WANTED_FEATURES).unwrap();
        assert_ne!(f & VIRTIO_F_VERSION_1, 0);
        assert_eq!(t.mac(), Some(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56])));
        // Doorbell: queue_notify_off 3 * multiplier 4 = 12 bytes into the notify area; silent
        // before DRIVER_OK, rung once at start, then on every notify.
        bar.write16_at(common::Q_NOTIFY_OFF, 3).unwrap();
        let n = t.notifier(1).unwrap();
        bar.write16_at(0x3000 + 12, 0xeeee).unwrap();
        n.notify();
        assert_eq!(
            bar.read16_at(0x3000 + 12).unwrap(),
            0xeeee,
            "not before DRIVER_OK"
        );
        t.start(&rings(256)).unwrap();
        assert_eq!(bar.read16_at(0x3000 + 12).unwrap(), 1, "kicked at start");
        assert_ne!(bar.read8_at(common::STATUS).unwrap() & STATUS_DRIVER_OK, 0);
        assert!(t.link_up());
        bar.write16_at(0x3000 + 12, 0xeeee).unwrap();
        n.notify();
        assert_eq!(bar.read16_at(0x3000 + 12).unwrap(), 1);
        t.stop().unwrap();
        bar.write16_at(0x3000 + 12, 0xeeee).unwrap();
        n.notify();
        assert_eq!(
            bar.read16_at(0x3000 + 12).unwrap(),
            0xeeee,
            "not after stop"
        );
        // A doorbell outside the notify area is an error.
        bar.write16_at(common::Q_NOTIFY_OFF, 0x400).unwrap();
        assert!(t.notifier(1).is_err());
        assert!(t.notifier(2).is_err(), "only 2 queues");
        // Through the net layer: 12-byte header, the device's MAC.
        let (b2, _) = modern_backend(F_LOW, modern_caps(4, 0));
        let net = VirtioNet::new(
            NetConf {
                driver: crate::PCI_DRIVER_NAME,
                name: "pci".into(),
                queue_size: 256,
                queue_pairs: 1,
                mac: MacAddr::local(1),
            },
            Box::new(VirtioPci::probe(b2).unwrap()),
        )
        .unwrap();
        assert_eq!(net.hdr_len(), 12);
        assert_eq!(
            pmd_core::ethdev::Device::mac_addr(&net),
            MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        drop(net);
        t.close();
        assert_eq!(bar.read8_at(common::STATUS).unwrap(), 0, "reset at close");
    }

    #[test]
    fn hostile_modern_layouts_are_errors() {
        // A structure beyond its BAR.
        let (b, _) = modern_backend(F_LOW, modern_caps(4, 0x3f00));
        let e = VirtioPci::probe(b).unwrap_err().to_string();
        assert!(e.contains("outside"), "{e}");
        // A BAR that is not there.
        let (b, _) = modern_backend(F_LOW, modern_caps(2, 0));
        assert!(VirtioPci::probe(b).is_err());
        // A reserved BAR index: the device is not usable.
        let (b, _) = modern_backend(F_LOW, modern_caps(7, 0));
        assert!(VirtioPci::probe(b).is_err());
        // A common configuration too short.
        let mut caps = modern_caps(4, 0);
        caps[4].1 = vcap(CAP_COMMON_CFG, 4, 0, 0x10, None);
        let (b, _) = modern_backend(F_LOW, caps);
        let e = VirtioPci::probe(b).unwrap_err().to_string();
        assert!(e.contains("needs"), "{e}");
        // Huge offsets: no overflow.
        let mut caps = modern_caps(4, 0);
        caps[4].1 = vcap(CAP_COMMON_CFG, 4, u32::MAX, u32::MAX, None);
        let (b, _) = modern_backend(F_LOW, caps);
        assert!(VirtioPci::probe(b).is_err());
        // Not VERSION_1.
        let (b, bar) = modern_backend(F_LOW & !1, modern_caps(4, 0));
        let e = VirtioPci::probe(b).unwrap_err().to_string();
        assert!(e.contains("VERSION_1"), "{e}");
        assert_eq!(
            bar.read8_at(common::STATUS).unwrap(),
            0,
            "FAILED, then reset on drop"
        );
        // Not virtio-net.
        let mut c = config(0x1041, &modern_caps(4, 0));
        c[2] = 0x42;
        let b = Arc::new(FakeBackend::new(c, HashMap::new()));
        assert!(VirtioPci::probe(b).is_err());
        // A modern-only id without capabilities.
        let b = Arc::new(FakeBackend::new(config(0x1041, &[]), HashMap::new()));
        assert!(VirtioPci::probe(b).is_err());
    }

    /// The common configuration as a device would behave, recording every write.
    #[derive(Default)]
    struct SimCommon {
        st: Mutex<SimState>,
    }

    #[derive(Default)]
    struct SimState {
        features: u64,
        dfselect: u32,
        gfselect: u32,
        driver_features: u64,
        status: u8,
        refuse_features_ok: bool,
        select: u16,
        num_queues: u16,
        queues: [SimQueue; 3],
        writes: Vec<(usize, u32)>,
    }

    #[derive(Default, Clone, Copy, Debug, PartialEq)]
    struct SimQueue {
        size: u16,
        enable: u16,
        desc: u64,
        driver: u64,
        device: u64,
    }

    fn set_half(v: &mut u64, off: usize, base: usize, x: u32) {
        let sh = if off == base { 0 } else { 32 };
        *v = (*v & !(0xffff_ffffu64 << sh)) | (u64::from(x) << sh);
    }

    impl Regs for SimCommon {
        fn read(&self, off: usize, buf: &mut [u8]) -> Result<()> {
            let s = self.st.lock().unwrap_or_else(|e| e.into_inner());
            let q = s.queues.get(s.select as usize).copied();
            let v: u32 = match off {
                common::DF => (s.features >> (32 * s.dfselect)) as u32,
                common::NUM_QUEUES => s.num_queues.into(),
                common::STATUS => s.status.into(),
                common::CFG_GENERATION => 0,
                common::Q_SIZE => q.map_or(0, |q| q.size.into()),
                common::Q_NOTIFY_OFF => s.select.into(),
                common::Q_ENABLE => q.map_or(0, |q| q.enable.into()),
                _ => panic!("unexpected read at {off:#x}"),
            };
            buf.copy_from_slice(&v.to_le_bytes()[..buf.len()]);
            Ok(())
        }

        fn write(&self, off: usize, buf: &[u8]) -> Result<()> {
            let mut b = [0u8; 4];
            b[..buf.len()].copy_from_slice(buf);
            let v = u32::from_le_bytes(b);
            let mut s = self.st.lock().unwrap_or_else(|e| e.into_inner());
            s.writes.push((off, v));
            let sel = s.select as usize;
            match off {
                common::DFSELECT => s.dfselect = v,
                common::GFSELECT => s.gfselect = v,
                common::GF => {
                    let sh = 32 * s.gfselect;
                    s.driver_features =
                        (s.driver_features & !(0xffff_ffffu64 << sh)) | (u64::from(v) << sh);
                }
                common::STATUS => {
                    let mut v = v as u8;
                    if v == 0 {
                        let w = std::mem::take(&mut s.writes);
                        *s = SimState {
                            features: s.features,
                            refuse_features_ok: s.refuse_features_ok,
                            num_queues: s.num_queues,
                            writes: w,
                            queues: [SimQueue {
                                size: 256,
                                ..Default::default()
                            }; 3],
                            ..Default::default()
                        };
                    }
                    if s.refuse_features_ok {
                        v &= !STATUS_FEATURES_OK;
                    }
                    s.status = v;
                }
                common::MSIX | common::Q_MSIX => {}
                common::Q_SELECT => s.select = v as u16,
                common::Q_SIZE => s.queues[sel].size = v as u16,
                common::Q_ENABLE => s.queues[sel].enable = v as u16,
                o @ (0x20 | 0x24) => set_half(&mut s.queues[sel].desc, o, 0x20, v),
                o @ (0x28 | 0x2c) => set_half(&mut s.queues[sel].driver, o, 0x28, v),
                o @ (0x30 | 0x34) => set_half(&mut s.queues[sel].device, o, 0x30, v),
                _ => panic!("unexpected write at {off:#x}"),
            }
            Ok(())
        }
    }

    fn sim_transport(features: u64, refuse: bool) -> (VirtioPci, Arc<SimCommon>) {
        let (t, sim, _) = sim_transport_queues(features, refuse, 2);
        (t, sim)
    }

    /// [`sim_transport`] with `queues` queues (of 256 entries at most); also returns the
    /// notify area.
    fn sim_transport_queues(
        features: u64,
        refuse: bool,
        queues: u16,
    ) -> (VirtioPci, Arc<SimCommon>, MmioRegion) {
        let sim = Arc::new(SimCommon::default());
        {
            let mut s = sim.st.lock().unwrap_or_else(|e| e.into_inner());
            s.num_queues = queues;
            s.features = features;
            s.refuse_features_ok = refuse;
            s.status = 0x0f; // left running by a previous driver
        }
        let notify = region_over_memory(0x100);
        let device = region_over_memory(0x100);
        let regs = ModernRegs {
            common: sim.clone(),
            notify: Arc::new(MmioWindow::new(notify.clone(), 0, 0x100).unwrap()),
            notify_mult: 4,
            notify_len: 0x100,
            device: Some(Arc::new(MmioWindow::new(device, 0, 0x100).unwrap())),
        };
        let (b, _) = modern_backend(F_LOW, modern_caps(4, 0));
        let t = VirtioPci::modern_from_regs(b, regs).unwrap();
        (t, sim, notify)
    }

    fn status_writes(sim: &SimCommon) -> Vec<u8> {
        sim.st
            .lock()
            .unwrap()
            .writes
            .iter()
            .filter(|(o, _)| *o == common::STATUS)
            .map(|(_, v)| *v as u8)
            .collect()
    }

    fn rings(size: u16) -> Vec<RingSetup> {
        (0..2u16)
            .map(|i| RingSetup {
                addrs: RingAddrs {
                    index: i,
                    size,
                    desc: 0x10_0000 + 0x10000 * u64::from(i),
                    avail: 0x10_1000 + 0x10000 * u64::from(i),
                    used: 0x10_2000 + 0x10000 * u64::from(i),
                },
                base: 0,
            })
            .collect()
    }

    const OFFERED: u64 = VIRTIO_F_VERSION_1
        | VIRTIO_NET_F_MAC
        | VIRTIO_NET_F_MRG_RXBUF
        | VIRTIO_NET_F_STATUS
        | VIRTIO_NET_F_CTRL_VQ
        | VIRTIO_F_EVENT_IDX
        | VIRTIO_F_ACCESS_PLATFORM
        | 1 << 3; // not a bit the driver wants

    #[test]
    fn modern_status_handshake_and_features() {
        const A: u8 = STATUS_ACKNOWLEDGE;
        const D: u8 = STATUS_DRIVER;
        const F: u8 = STATUS_FEATURES_OK;
        const K: u8 = STATUS_DRIVER_OK;
        let (mut t, sim) = sim_transport(OFFERED, false);
        assert_eq!(status_writes(&sim), vec![0, A, A | D]);
        let f = t.negotiate(WANTED_FEATURES).unwrap();
        assert_eq!(
            f,
            VIRTIO_F_VERSION_1
                | VIRTIO_NET_F_MAC
                | VIRTIO_NET_F_MRG_RXBUF
                | VIRTIO_F_EVENT_IDX
                | VIRTIO_NET_F_STATUS
                | VIRTIO_F_ACCESS_PLATFORM
        );
        assert_eq!(
            sim.st
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .driver_features,
            f,
            "both halves written"
        );
        assert_eq!(status_writes(&sim), vec![0, A, A | D, A | D | F]);
        assert!(!t.link_up());
        t.start(&rings(128)).unwrap();
        assert_eq!(
            status_writes(&sim),
            vec![0, A, A | D, A | D | F, A | D | F | K]
        );
        {
            let s = sim.st.lock().unwrap_or_else(|e| e.into_inner());
            for (i, q) in s.queues.iter().take(2).enumerate() {
                let r = rings(128)[i].addrs;
                assert_eq!(
                    *q,
                    SimQueue {
                        size: 128,
                        enable: 1,
                        desc: r.desc,
                        driver: r.avail,
                        device: r.used
                    }
                );
            }
            // Every queue enabled before DRIVER_OK.
            let w = &s.writes;
            let en = w.iter().rposition(|(o, _)| *o == common::Q_ENABLE).unwrap();
            let ok = w
                .iter()
                .rposition(|(o, v)| *o == common::STATUS && *v as u8 & K != 0)
                .unwrap();
            assert!(en < ok);
        }
        assert!(t.start(&rings(128)).is_err(), "already started");
        // Stop resets; a restart repeats the whole handshake.
        assert_eq!(t.stop().unwrap(), vec![0, 0]);
        sim.st
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .writes
            .clear();
        t.start(&rings(128)).unwrap();
        assert_eq!(
            status_writes(&sim),
            vec![0, A, A | D, A | D | F, A | D | F | K]
        );
        // A ring bigger than the device allows, a resumed ring: errors, device left reset.
        t.stop().unwrap();
        assert!(t.start(&rings(512)).is_err());
        let mut r = rings(128);
        r[1].base = 7;
        assert!(t.start(&r).is_err());
        assert_eq!(sim.st.lock().unwrap_or_else(|e| e.into_inner()).status, 0);
        t.close();
        assert_eq!(*status_writes(&sim).last().unwrap(), 0);
        assert!(t.start(&rings(128)).is_err(), "closed");
    }

    /// Packed rings (QEMU `packed=on`): a fresh ring starts at position 0 with wrap counter
    /// 1 (base 0x8000), which must be accepted; one the device handed buffers back on (or
    /// base 0, what a stop reports) must be refused. The three addresses go to queue_desc,
    /// queue_driver (driver event suppression) and queue_device (device event suppression).
    #[test]
    fn packed_rings_start_at_wrap_counter_one() {
        use crate::net::VIRTIO_F_RING_PACKED;
        use crate::queue::packed::{tests::SimPackedDevice, PackedLayout};
        use crate::queue::PackedQueue;
        let (mut t, sim) = sim_transport(OFFERED | VIRTIO_F_RING_PACKED, false);
        let f = t.negotiate(WANTED_FEATURES | VIRTIO_F_RING_PACKED).unwrap();
        assert_ne!(f & VIRTIO_F_RING_PACKED, 0);
        let l = PackedLayout::new(64).unwrap();
        let mem = Arc::new(memory::Segment::alloc("pci-packed-test", 2 * l.total).unwrap());
        let mut qs = [0u16, 1]
            .map(|i| PackedQueue::new(mem.clone(), usize::from(i) * l.total, i, 64, true).unwrap());
        // What the net layer hands over: the addresses and the base taken at queue setup.
        let r: Vec<RingSetup> = qs
            .iter()
            .map(|q| RingSetup {
                addrs: q.addrs(AddrMode::Iova),
                base: q.avail_idx(),
            })
            .collect();
        assert_eq!(r[0].base, PACKED_FRESH_BASE);
        // A receive buffer posted before DRIVER_OK, as the rx queue setup does.
        qs[0].push(0x1000, 2048, true).unwrap();
        qs[0].publish();
        t.start(&r).unwrap();
        {
            let s = sim.st.lock().unwrap_or_else(|e| e.into_inner());
            for (q, r) in s.queues.iter().zip(&r) {
                let a = r.addrs;
                assert_eq!((q.size, q.enable), (64, 1));
                assert_eq!((q.desc, q.driver, q.device), (a.desc, a.avail, a.used));
                assert_eq!(a.avail, a.desc + l.driver_event_off as u64);
                assert_eq!(a.used, a.desc + l.device_event_off as u64);
            }
        }
        assert_eq!(t.stop().unwrap(), vec![0, 0]);
        // Base 0 (what stop reports for a queue not set up again) is no packed start.
        let mut r0 = r.clone();
        r0[1].base = 0;
        let e = t.start(&r0).unwrap_err().to_string();
        assert!(e.contains("cannot resume"), "{e}");
        // The device handed the buffer back: the ring ran, even though the base is fresh.
        let mut dev = SimPackedDevice::at(qs[0].addrs(AddrMode::Va));
        let (id, _) = dev.take_avail()[0];
        dev.complete(id, 64);
        let e = t.start(&r).unwrap_err().to_string();
        assert!(e.contains("already ran"), "{e}");
        assert_eq!(sim.st.lock().unwrap_or_else(|e| e.into_inner()).status, 0);
    }

    #[test]
    fn refused_features_ok_fails_the_device() {
        let (mut t, sim) = sim_transport(OFFERED, true);
        let e = t.negotiate(WANTED_FEATURES).unwrap_err().to_string();
        assert!(e.contains("FEATURES_OK"), "{e}");
        assert_eq!(*status_writes(&sim).last().unwrap(), STATUS_FAILED);
    }

    fn legacy_backend(sizes: &[u16], kind: BackendKind) -> Arc<FakeBackend> {
        let mut c = config(0x1000, &[]);
        c[0x10] = 0xc1; // BAR 0: I/O space
        let mut b = FakeBackend::new(c, HashMap::new());
        b.kind = kind;
        {
            let mut m = b.legacy.lock().unwrap_or_else(|e| e.into_inner());
            m.host_features = (VIRTIO_NET_F_MAC
                | VIRTIO_NET_F_MRG_RXBUF
                | VIRTIO_NET_F_STATUS
                | VIRTIO_F_EVENT_IDX
                | VIRTIO_NET_F_CTRL_VQ) as u32;
            m.sizes = sizes.to_vec();
            m.mac = [0x52, 0x54, 0, 0, 1, 2];
            m.status = 7;
        }
        Arc::new(b)
    }

    fn contiguous(mut r: Vec<RingSetup>) -> Vec<RingSetup> {
        for x in r.iter_mut() {
            let l = Layout::new(x.addrs.size).unwrap();
            x.addrs.avail = x.addrs.desc + l.avail_off as u64;
            x.addrs.used = x.addrs.desc + l.used_off as u64;
        }
        r
    }

    #[test]
    fn legacy_device_over_io_bar() {
        let b = legacy_backend(&[256, 256], BackendKind::Model);
        let mut t = VirtioPci::probe(b.clone()).unwrap();
        assert!(!t.is_modern());
        assert_eq!(t.queue_size().unwrap(), 256);
        let f = t.negotiate(WANTED_FEATURES).unwrap();
        assert_eq!(f & VIRTIO_F_VERSION_1, 0);
        assert_eq!(
            f,
            VIRTIO_NET_F_MAC | VIRTIO_NET_F_MRG_RXBUF | VIRTIO_F_EVENT_IDX | VIRTIO_NET_F_STATUS
        );
        assert_eq!(net_hdr_len(f), 12);
        assert_eq!(net_hdr_len(f & !VIRTIO_NET_F_MRG_RXBUF), 10);
        assert_eq!(
            b.legacy
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .guest_features as u64,
            f
        );
        assert_eq!(t.mac(), Some(MacAddr([0x52, 0x54, 0, 0, 1, 2])));
        // Wrong ring size (legacy sizes are fixed), non-contiguous ring: errors.
        let e = t.start(&contiguous(rings(128))).unwrap_err().to_string();
        assert!(e.contains("exactly"), "{e}");
        let mut r = contiguous(rings(256));
        r[1].addrs.used += 0x1000;
        let e = t.start(&r).unwrap_err().to_string();
        assert!(e.contains("contiguous"), "{e}");
        let n = t.notifier(1).unwrap();
        n.notify();
        assert!(
            b.legacy
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .notified
                .is_empty(),
            "not before DRIVER_OK"
        );
        let r = contiguous(rings(256));
        t.start(&r).unwrap();
        assert_eq!(
            b.legacy.lock().unwrap_or_else(|e| e.into_inner()).notified,
            vec![1],
            "kicked at start"
        );
        assert!(t.link_up());
        {
            let m = b.legacy.lock().unwrap_or_else(|e| e.into_inner());
            assert_eq!(m.pfn, [0x100, 0x110, 0]);
            // No FEATURES_OK in legacy; resets after the failed starts.
            assert_eq!(&m.status_writes[..4], &[0, 1, 3, 0]);
            assert_eq!(
                &m.status_writes[m.status_writes.len() - 4..],
                &[0, 1, 3, 7][..]
            );
        }
        n.notify();
        assert_eq!(
            b.legacy.lock().unwrap_or_else(|e| e.into_inner()).notified,
            vec![1, 1]
        );
        // A ring beyond 16 TiB, and this backend cannot add an IOMMU alias: error.
        t.stop().unwrap();
        let mut hi = r.clone();
        for x in hi.iter_mut() {
            for a in [&mut x.addrs.desc, &mut x.addrs.avail, &mut x.addrs.used] {
                *a += 0x7f00_0000_0000;
            }
        }
        let e = t.start(&hi).unwrap_err().to_string();
        assert!(e.contains("32-bit"), "{e}");
        t.close();
        assert_eq!(b.legacy.lock().unwrap_or_else(|e| e.into_inner()).status, 0);
        // Legacy queues of different sizes, a missing queue, a size not a power of two.
        for sizes in [[256, 128], [256, 0], [256, 100]] {
            let t = VirtioPci::probe(legacy_backend(&sizes, BackendKind::Model)).unwrap();
            assert!(t.queue_size().is_err(), "{sizes:?}");
        }
        // BAR 0 not an I/O BAR.
        let b = legacy_backend(&[256, 256], BackendKind::Model);
        b.cfg.lock().unwrap_or_else(|e| e.into_inner())[0x10] = 0;
        assert!(VirtioPci::probe(b).is_err());
    }

    #[test]
    fn bypassing_devices_refuse_iova_as_va_behind_vfio() {
        // The unit tests' memory configuration is IOVA-as-VA.
        assert_eq!(memory::config().iova_mode, IovaMode::Va);
        let b = legacy_backend(&[256, 256], BackendKind::Vfio);
        let mut t = VirtioPci::probe(b.clone()).unwrap();
        let e = t.negotiate(WANTED_FEATURES).unwrap_err().to_string();
        assert!(e.contains("--iova-mode pa"), "{e}");
        assert_eq!(
            b.legacy.lock().unwrap_or_else(|e| e.into_inner()).status,
            STATUS_FAILED
        );
        // A modern device offering ACCESS_PLATFORM is fine behind VFIO.
        let (b, bar) = modern_backend(F_LOW | (1 << 1), modern_caps(4, 0));
        let mut t = VirtioPci::probe(Arc::new(FakeBackend {
            kind: BackendKind::Vfio,
            ..Arc::into_inner(b).unwrap()
        }))
        .unwrap();
        let f = t.negotiate(WANTED_FEATURES).unwrap();
        assert_ne!(f & VIRTIO_F_ACCESS_PLATFORM, 0);
        assert_ne!(
            bar.read8_at(common::STATUS).unwrap() & STATUS_FEATURES_OK,
            0
        );
    }

    /// The control ring as the net layer passes it: index 2, after the data rings.
    fn ctrl_ring(size: u16) -> RingSetup {
        RingSetup {
            addrs: RingAddrs {
                index: CTRL_QUEUE_INDEX,
                size,
                desc: 0x12_0000,
                avail: 0x12_1000,
                used: 0x12_2000,
            },
            base: 0,
        }
    }

    const CTRL_WANTED: u64 =
        WANTED_FEATURES | VIRTIO_NET_F_CTRL_VQ | crate::net::VIRTIO_NET_F_CTRL_RX;

    /// A modern device with a third queue serves the control queue: the transport says
    /// so, the net layer asks for CTRL_VQ + CTRL_RX (not MQ), and the control ring is
    /// programmed at index 2 with its own size (any power of two up to the maximum).
    #[test]
    fn modern_control_queue_at_index_2() {
        use crate::net::{VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_MQ};
        let offered = OFFERED | VIRTIO_NET_F_CTRL_RX | VIRTIO_NET_F_MQ;
        // Two queues only: no control queue, whatever the features say.
        let (t, _) = sim_transport(offered, false);
        assert_eq!(t.ctrl_mode(), CtrlMode::None);
        let (mut t, sim, notify) = sim_transport_queues(offered, false, 3);
        assert_eq!(t.ctrl_mode(), CtrlMode::Device);
        assert_eq!(t.max_queue_pairs(), 1);
        let f = t.negotiate(CTRL_WANTED).unwrap();
        assert_eq!(
            f & (VIRTIO_NET_F_CTRL_VQ | VIRTIO_NET_F_CTRL_RX | VIRTIO_NET_F_MQ),
            VIRTIO_NET_F_CTRL_VQ | VIRTIO_NET_F_CTRL_RX
        );
        let n = t.notifier(CTRL_QUEUE_INDEX).unwrap();
        let mut r = rings(256);
        r.push(ctrl_ring(CTRL_QUEUE_SIZE));
        t.start(&r).unwrap();
        {
            let s = sim.st.lock().unwrap_or_else(|e| e.into_inner());
            let c = ctrl_ring(CTRL_QUEUE_SIZE).addrs;
            assert_eq!(
                s.queues[2],
                SimQueue {
                    size: CTRL_QUEUE_SIZE,
                    enable: 1,
                    desc: c.desc,
                    driver: c.avail,
                    device: c.used
                }
            );
            assert_eq!((s.queues[0].size, s.queues[1].size), (256, 256));
        }
        // Queue 2's doorbell (notify_off 2 * multiplier 4) rung at start, then on notify.
        assert_eq!(notify.read16_at(8).unwrap(), CTRL_QUEUE_INDEX);
        notify.write16_at(8, 0xeeee).unwrap();
        n.notify();
        assert_eq!(notify.read16_at(8).unwrap(), CTRL_QUEUE_INDEX);
        assert_eq!(t.stop().unwrap(), vec![0, 0, 0]);
        // Any power of two up to the maximum; not beyond it, not other sizes.
        for (size, ok) in [(16, true), (256, true), (512, false), (48, false)] {
            let mut r = rings(256);
            r.push(ctrl_ring(size));
            assert_eq!(t.start(&r).is_ok(), ok, "{size}");
            if ok {
                assert_eq!(
                    sim.st.lock().unwrap_or_else(|e| e.into_inner()).queues[2].size,
                    size
                );
                t.stop().unwrap();
            }
        }
        // The control ring must follow the data rings at its own index.
        let mut r = rings(256);
        let mut c = ctrl_ring(64);
        c.addrs.index = 3;
        r.push(c);
        assert!(t.start(&r).unwrap_err().to_string().contains("order"));
        let e = t.start(&[rings(256)[0], ctrl_ring(64)]).unwrap_err();
        assert!(e.to_string().contains("control ring"), "{e}");
        // Through the net layer: the control queue is the device's, at index 2, one pair.
        let (t, _, _) = sim_transport_queues(offered, false, 3);
        let net = VirtioNet::new(
            NetConf {
                driver: crate::PCI_DRIVER_NAME,
                name: "pci-ctrl".into(),
                queue_size: 256,
                queue_pairs: 1,
                mac: MacAddr::local(1),
            },
            Box::new(t),
        )
        .unwrap();
        assert_eq!(net.ctrl_mode(), CtrlMode::Device);
    }

    /// Legacy queue sizes are fixed: the control queue is used only when the device's is
    /// exactly the control ring's size (QEMU: 64), and the ring must have that size.
    #[test]
    fn legacy_control_queue_uses_the_fixed_size() {
        for sizes in [&[256, 256][..], &[256, 256, 128], &[256, 256, 0]] {
            let t = VirtioPci::probe(legacy_backend(sizes, BackendKind::Model)).unwrap();
            assert_eq!(t.ctrl_mode(), CtrlMode::None, "{sizes:?}");
        }
        let b = legacy_backend(&[256, 256, CTRL_QUEUE_SIZE], BackendKind::Model);
        let mut t = VirtioPci::probe(b.clone()).unwrap();
        assert_eq!(t.ctrl_mode(), CtrlMode::Device);
        assert_eq!(t.queue_size().unwrap(), 256, "data rings keep their size");
        let f = t.negotiate(CTRL_WANTED).unwrap();
        assert_ne!(f & VIRTIO_NET_F_CTRL_VQ, 0);
        t.notifier(CTRL_QUEUE_INDEX).unwrap();
        // A control ring of another size than the device's: refused.
        let mut r = contiguous(rings(256));
        r.extend(contiguous(vec![ctrl_ring(128)]));
        let e = t.start(&r).unwrap_err().to_string();
        assert!(e.contains("exactly"), "{e}");
        let mut r = contiguous(rings(256));
        r.extend(contiguous(vec![ctrl_ring(CTRL_QUEUE_SIZE)]));
        t.start(&r).unwrap();
        let m = b.legacy.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(m.pfn, [0x100, 0x110, 0x120]);
        assert_eq!(m.notified, vec![CTRL_QUEUE_INDEX], "kicked at start");
    }
}
