//! The UIO backend: a device bound to `uio_pci_generic` (or another UIO PCI driver),
//! written from the kernel's UIO documentation (Documentation/driver-api/uio-howto.rst).
//!
//! - Config space: `pread`/`pwrite` on `/sys/bus/pci/devices/<addr>/config`.
//! - Memory BARs: a shared read-write mapping (`memmap2`) of
//!   `/sys/bus/pci/devices/<addr>/resource<N>`, sized from the `resource` file. I/O-port
//!   BARs cannot be mapped and are refused.
//! - DMA: there is no IOMMU programming; the device is given physical addresses, so the
//!   EAL must run with `--iova-mode pa`. [`PciBackend::dma_map`] only verifies that.
//! - Interrupts: INTx only, one vector, through `/dev/uioN`. `uio_pci_generic` masks the
//!   line in its handler by setting `PCI_COMMAND_INTX_DISABLE`; it is re-armed by
//!   clearing that bit again in config space. We also write `1u32` to the UIO fd, which
//!   is the UIO interface for drivers with an `irqcontrol` hook; `uio_pci_generic` has
//!   none and answers `ENOSYS`, which is therefore ignored.
//! - Reset: UIO offers no function reset; [`PciBackend::reset`] returns `Ok(())` after a
//!   debug log, and the PMD's own device reset (e.g. a control-register reset bit) is
//!   what brings the device to a known state.

use super::access::check_pa_segment;
use super::addr::PciAddr;
use super::backend::{IrqWait, PciBackend, PCI_COMMAND, PCI_COMMAND_INTX_DISABLE};
use super::error::{Origin, PciError, ResourceProblem};
use super::kind::BackendKind;
use super::mmio::MmioRegion;
use super::sys::poll_readable;
use super::sysfs::{bound_driver, SysfsRoot};
use crate::error::Result;
use crate::memory::IovaMode;
use crate::memory::{self, SegmentInfo};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// `IORESOURCE_IO`: an I/O-port resource.
pub const IORESOURCE_IO: u64 = 0x100;
/// `IORESOURCE_MEM`: a memory resource.
pub const IORESOURCE_MEM: u64 = 0x200;

/// One line of a sysfs `resource` file: start, end (inclusive) and flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resource {
    /// First address (bus/physical address for memory, port for I/O).
    pub start: u64,
    /// Last address (inclusive); 0 with `start` 0 when the resource is absent.
    pub end: u64,
    /// `IORESOURCE_*` flags.
    pub flags: u64,
}

impl Resource {
    /// Size in bytes (0 when absent).
    pub fn size(&self) -> u64 {
        if self.start == 0 && self.end == 0 {
            0
        } else {
            self.end - self.start + 1
        }
    }

    /// Whether this is an I/O-port BAR.
    pub fn is_io(&self) -> bool {
        self.flags & IORESOURCE_IO != 0
    }

    /// Whether this is a memory BAR.
    pub fn is_mem(&self) -> bool {
        self.flags & IORESOURCE_MEM != 0
    }
}

/// Parses a sysfs `resource` file: one `0xSTART 0xEND 0xFLAGS` line per resource (BARs
/// 0-5, then the ROM and, for bridges, windows).
pub fn parse_resource_file(text: &str) -> std::result::Result<Vec<Resource>, PciError> {
    let bad = |line, problem| PciError::ResourceLine { line, problem };
    let hex = |s: &str, what: &'static str, line: usize| -> std::result::Result<u64, PciError> {
        let text = s.to_string();
        let digits = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .ok_or_else(|| {
                bad(
                    line,
                    ResourceProblem::NoHexPrefix {
                        what,
                        text: text.clone(),
                    },
                )
            })?;
        u64::from_str_radix(digits, 16)
            .map_err(|_| bad(line, ResourceProblem::BadNumber { what, text }))
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let line = i + 1;
            let f: Vec<&str> = l.split_whitespace().collect();
            let [start, end, flags] = f.as_slice() else {
                return Err(bad(
                    line,
                    ResourceProblem::FieldCount {
                        line: l.to_string(),
                    },
                ));
            };
            let r = Resource {
                start: hex(start, "start", line)?,
                end: hex(end, "end", line)?,
                flags: hex(flags, "flags", line)?,
            };
            if r.end < r.start
                || (r.start != 0 && r.end == 0)
                || (r.start == 0 && r.end == u64::MAX)
            {
                return Err(bad(
                    line,
                    ResourceProblem::EndBeforeStart {
                        line: l.to_string(),
                    },
                ));
            }
            Ok(r)
        })
        .collect()
}

fn at(addr: PciAddr) -> Origin {
    Origin::Uio(Some(addr))
}

/// A PCI function reached through UIO. Implements [`PciBackend`].
#[derive(Debug)]
pub struct UioDevice {
    addr: PciAddr,
    dev_dir: PathBuf,
    uio_name: String,
    uio_dev: PathBuf,
    config: Arc<File>,
    resources: Vec<Resource>,
    bars: Mutex<[Option<MmioRegion>; 6]>,
    irq_on: Arc<AtomicBool>,
}

impl UioDevice {
    /// Opens `addr`, which must be bound to a UIO driver (normally `uio_pci_generic`),
    /// reading sysfs and /dev under `root`.
    pub fn open_at(addr: PciAddr, root: &SysfsRoot) -> Result<UioDevice> {
        let dev_dir = root.device_dir(addr);
        if !dev_dir.exists() {
            return Err(PciError::NoSuchDevice {
                at: at(addr),
                path: dev_dir,
            }
            .into());
        }
        let uio_name = std::fs::read_dir(dev_dir.join("uio"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .find(|n| {
                n.strip_prefix("uio")
                    .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            })
            .ok_or_else(|| PciError::NoUioNode {
                addr,
                driver: bound_driver(&dev_dir),
            })?;
        let uio_dev = root.dev_node(&uio_name);
        let config = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(dev_dir.join("config"))
            .map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    " (run as root)"
                } else {
                    ""
                };
                PciError::io(format!("{addr}: opening config space{hint}"), e)
            })?;
        let text = std::fs::read_to_string(dev_dir.join("resource"))
            .map_err(|e| PciError::io(format!("{addr}: reading the resource file"), e))?;
        let resources = parse_resource_file(&text)?;
        tracing::debug!(%addr, uio = uio_name, "UIO device open");
        Ok(UioDevice {
            addr,
            dev_dir,
            uio_name,
            uio_dev,
            config: Arc::new(config),
            resources,
            bars: Mutex::new(Default::default()),
            irq_on: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The UIO node name (`uioN`).
    pub fn uio_name(&self) -> &str {
        &self.uio_name
    }

    /// Resource (BAR) `bar` as the `resource` file describes it.
    pub fn resource(&self, bar: u8) -> Option<Resource> {
        self.resources.get(bar as usize).copied()
    }

    fn event_count(&self) -> Option<u32> {
        std::fs::read_to_string(self.dev_dir.join("uio").join(&self.uio_name).join("event"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

fn update_command(config: &File, f: impl FnOnce(u16) -> u16) -> std::io::Result<()> {
    let mut b = [0u8; 2];
    config.read_exact_at(&mut b, PCI_COMMAND.into())?;
    let cmd = f(u16::from_le_bytes(b));
    config.write_all_at(&cmd.to_le_bytes(), PCI_COMMAND.into())
}

/// Writes `1u32` (enable) to the UIO fd; `ENOSYS` (driver without `irqcontrol`, such as
/// uio_pci_generic) is fine: the config-space bit is the control there.
fn uio_irq_on(uio: &File) -> std::io::Result<()> {
    match (&*uio).write(&1u32.to_ne_bytes()) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EIO) => Err(std::io::Error::new(
            e.kind(),
            "the device has no interrupt line assigned (UIO answered EIO)",
        )),
        r => r.map(|_| ()),
    }
}

fn enable_intx(config: &File, uio: &File) -> std::io::Result<()> {
    update_command(config, |c| c & !PCI_COMMAND_INTX_DISABLE)?;
    uio_irq_on(uio)
}

/// The single INTx "vector" of a UIO device: the UIO fd. Disables INTx on drop.
#[derive(Debug)]
pub struct UioIrq {
    uio: File,
    config: Arc<File>,
    last: AtomicU32,
    known_base: AtomicBool,
    on: Arc<AtomicBool>,
}

impl IrqWait for UioIrq {
    fn fd(&self) -> BorrowedFd<'_> {
        self.uio.as_fd()
    }

    fn wait(&self, timeout_ms: i32) -> Result<u64> {
        if !poll_readable(self.uio.as_fd(), timeout_ms)? {
            return Ok(0);
        }
        let mut b = [0u8; 4];
        let total = match (&self.uio).read(&mut b) {
            Ok(4) => u32::from_ne_bytes(b),
            Ok(_) => return Ok(0),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(PciError::io("reading the UIO event count", e).into()),
        };
        let prev = self.last.swap(total, Ordering::Relaxed);
        let seen = if self.known_base.swap(true, Ordering::Relaxed) {
            u64::from(total.wrapping_sub(prev)).max(1)
        } else {
            1
        };
        enable_intx(&self.config, &self.uio)
            .map_err(|e| PciError::io("re-enabling INTx after an interrupt", e))?;
        Ok(seen)
    }
}

impl Drop for UioIrq {
    fn drop(&mut self) {
        if let Err(e) = update_command(&self.config, |c| c | PCI_COMMAND_INTX_DISABLE) {
            tracing::warn!("disabling INTx failed: {e}");
        }
        self.on.store(false, Ordering::Release);
    }
}

impl PciBackend for UioDevice {
    fn addr(&self) -> PciAddr {
        self.addr
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Uio
    }

    fn iova_mode(&self) -> IovaMode {
        IovaMode::Pa
    }

    fn read_config(&self, offset: u16, buf: &mut [u8]) -> Result<()> {
        self.config.read_exact_at(buf, offset.into()).map_err(|e| {
            PciError::io(
                format!("{}: reading config space at {offset:#x}", self.addr),
                e,
            )
            .into()
        })
    }

    fn write_config(&self, offset: u16, buf: &[u8]) -> Result<()> {
        self.config.write_all_at(buf, offset.into()).map_err(|e| {
            PciError::io(
                format!("{}: writing config space at {offset:#x}", self.addr),
                e,
            )
            .into()
        })
    }

    fn map_bar(&self, bar: u8) -> Result<MmioRegion> {
        if bar > 5 {
            return Err(PciError::NoSuchBar {
                at: at(self.addr),
                bar,
            }
            .into());
        }
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = &bars[bar as usize] {
            return Ok(r.clone());
        }
        let res =
            self.resource(bar)
                .filter(|r| r.size() > 0)
                .ok_or(PciError::BarNotImplemented {
                    at: at(self.addr),
                    bar,
                })?;
        if res.is_io() || !res.is_mem() {
            return Err(PciError::UioIoBar {
                addr: self.addr,
                bar,
                flags: res.flags,
            }
            .into());
        }
        let size =
            usize::try_from(res.size()).map_err(|_| PciError::BarTooLarge { at: at(self.addr) })?;
        let page = memory::page_size_4k();
        let len = size.div_ceil(page) * page;
        let path = self.dev_dir.join(format!("resource{bar}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| PciError::io(format!("{}: opening {}", self.addr, path.display()), e))?;
        let mmap_err = |e| PciError::io(format!("{}: mmap of {}", self.addr, path.display()), e);
        // A raw (pointer-only) shared read-write mapping: device memory is only ever
        // reached through MmioRegion's volatile accesses, never through Rust references.
        let mapping = memmap2::MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(mmap_err)?;
        let base = NonNull::new(mapping.as_mut_ptr())
            .ok_or_else(|| mmap_err(std::io::Error::other("mmap returned NULL")))?;
        // SAFETY: base..base+size (size <= len) stays mapped for as long as `mapping`, which
        // the region owns, lives; it is device memory.
        let region = unsafe { MmioRegion::new(base, size, Arc::new(mapping)) };
        bars[bar as usize] = Some(region.clone());
        Ok(region)
    }

    /// Through sysfs: `resource<bar>` of an I/O-port BAR takes 1-, 2- and 4-byte reads.
    fn read_io(&self, bar: u8, offset: u64, buf: &mut [u8]) -> Result<()> {
        if bar > 5 {
            return Err(PciError::NoSuchBar {
                at: Origin::Uio(None),
                bar,
            }
            .into());
        }
        let path = self.dev_dir.join(format!("resource{bar}"));
        File::open(&path)
            .and_then(|f| f.read_exact_at(buf, offset))
            .map_err(|e| {
                PciError::io(
                    format!("{}: reading {} at {offset:#x}", self.addr, path.display()),
                    e,
                )
                .into()
            })
    }

    /// Through sysfs: `resource<bar>` of an I/O-port BAR takes 1-, 2- and 4-byte writes.
    fn write_io(&self, bar: u8, offset: u64, buf: &[u8]) -> Result<()> {
        if bar > 5 {
            return Err(PciError::NoSuchBar {
                at: Origin::Uio(None),
                bar,
            }
            .into());
        }
        let path = self.dev_dir.join(format!("resource{bar}"));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.write_all_at(buf, offset))
            .map_err(|e| {
                PciError::io(
                    format!("{}: writing {} at {offset:#x}", self.addr, path.display()),
                    e,
                )
                .into()
            })
    }

    fn dma_map(&self, seg: &SegmentInfo) -> Result<()> {
        check_pa_segment(seg, "uio")
    }

    fn dma_unmap(&self, _seg: &SegmentInfo) -> Result<()> {
        Ok(())
    }

    fn enable_irqs(&self, count: u32) -> Result<Vec<Box<dyn IrqWait>>> {
        if count != 1 {
            return Err(PciError::UioOneVector {
                addr: self.addr,
                count,
            }
            .into());
        }
        if self.irq_on.swap(true, Ordering::AcqRel) {
            return Err(PciError::UioIrqBusy { addr: self.addr }.into());
        }
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&self.uio_dev)
            .map_err(|e| {
                PciError::io(
                    format!("{}: opening {}", self.addr, self.uio_dev.display()),
                    e,
                )
            });
        let uio = match opened {
            Ok(f) => f,
            Err(e) => {
                self.irq_on.store(false, Ordering::Release);
                return Err(e.into());
            }
        };
        let base = self.event_count();
        let irq = UioIrq {
            uio,
            config: self.config.clone(),
            last: AtomicU32::new(base.unwrap_or(0)),
            known_base: AtomicBool::new(base.is_some()),
            on: self.irq_on.clone(),
        };
        // On failure `irq` drops, which sets INTX_DISABLE again and clears `irq_on`.
        enable_intx(&irq.config, &irq.uio)
            .map_err(|e| PciError::io(format!("{}: enabling INTx", self.addr), e))?;
        Ok(vec![Box::new(irq)])
    }

    /// UIO has no function reset: logs at debug level and returns `Ok(())`.
    fn reset(&self) -> Result<()> {
        tracing::debug!(addr = %self.addr, "reset is not supported through UIO; skipped");
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn parses_resource_files() {
        let text = "0x00000000fe000000 0x00000000fe01ffff 0x0000000000040200\n\
                    0x000000000000c000 0x000000000000c01f 0x0000000000040101\n\
                    0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
                    0x00000000fe020000 0x00000000fe023fff 0x0000000000140204\n\
                    0x0000000000000000 0x0000000000000000 0x0000000000000000\n";
        let r = parse_resource_file(text).unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(r[0].size(), 0x20000);
        assert!(r[0].is_mem() && !r[0].is_io());
        assert_eq!(r[1].size(), 0x20);
        assert!(r[1].is_io());
        assert_eq!(r[2].size(), 0);
        assert_eq!(r[3].size(), 0x4000);
        assert!(parse_resource_file("").unwrap().is_empty());
        for bad in [
            "0x1 0x2",
            "1000 0x2000 0x200",
            "0x2000 0x1000 0x200",
            "0xzz 0x1000 0x200",
            "0x0 0xffffffffffffffff 0x200",
            "0x1000 0x0 0x200",
            "0x1 0x2 0x3 0x4",
        ] {
            assert!(parse_resource_file(bad).is_err(), "{bad:?}");
        }
    }

    /// A fake sysfs device: config space, a resource file, one memory BAR and one I/O BAR.
    pub(crate) fn fake_uio_device(root: &Path, addr: &str, driver: &str) {
        let dev = root.join("sys/bus/pci/devices").join(addr);
        std::fs::create_dir_all(dev.join("uio/uio3")).unwrap();
        std::fs::create_dir_all(root.join("sys/bus/pci/drivers").join(driver)).unwrap();
        std::os::unix::fs::symlink(
            format!("../../../bus/pci/drivers/{driver}"),
            dev.join("driver"),
        )
        .unwrap();
        let mut cfg = vec![0u8; 256];
        cfg[0..2].copy_from_slice(&0x8086u16.to_le_bytes());
        cfg[2..4].copy_from_slice(&0x10d3u16.to_le_bytes());
        cfg[4..6].copy_from_slice(&PCI_COMMAND_INTX_DISABLE.to_le_bytes());
        std::fs::write(dev.join("config"), cfg).unwrap();
        std::fs::write(dev.join("vendor"), "0x8086\n").unwrap();
        std::fs::write(dev.join("device"), "0x10d3\n").unwrap();
        std::fs::write(
            dev.join("resource"),
            "0x00000000fe000000 0x00000000fe000fff 0x0000000000040200\n\
             0x000000000000c000 0x000000000000c01f 0x0000000000040101\n",
        )
        .unwrap();
        std::fs::write(dev.join("resource0"), vec![0u8; 4096]).unwrap();
        std::fs::write(dev.join("uio/uio3/event"), "7\n").unwrap();
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::fs::write(root.join("dev/uio3"), b"").unwrap();
    }

    #[test]
    fn fake_uio_device_config_bars_and_irq() {
        let root = std::env::temp_dir().join(format!("pmd-uio-fake-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let addr: PciAddr = "0000:00:04.0".parse().unwrap();
        fake_uio_device(&root, "0000:00:04.0", "uio_pci_generic");
        let paths = SysfsRoot::at(&root);
        let d = UioDevice::open_at(addr, &paths).unwrap();
        assert_eq!(d.uio_name(), "uio3");
        assert_eq!(d.kind(), BackendKind::Uio);
        assert_eq!(d.iova_mode(), IovaMode::Pa);
        assert_eq!(d.read_config16(0).unwrap(), 0x8086);
        assert_eq!(d.read_config16(2).unwrap(), 0x10d3);
        d.set_bus_master(true).unwrap();
        assert_ne!(
            d.read_config16(PCI_COMMAND).unwrap() & super::super::backend::PCI_COMMAND_MASTER,
            0
        );
        // Memory BAR: writes land in the resource file.
        let bar = d.map_bar(0).unwrap();
        assert_eq!(bar.len(), 0x1000);
        bar.write32_at(8, 0x1234_5678).unwrap();
        let again = d.map_bar(0).unwrap();
        assert_eq!(again.read32_at(8).unwrap(), 0x1234_5678);
        drop((bar, again));
        let file = std::fs::read(paths.device_dir(addr).join("resource0")).unwrap();
        assert_eq!(&file[8..12], &0x1234_5678u32.to_ne_bytes());
        // I/O BAR, missing BAR, BAR 6.
        assert!(d
            .map_bar(1)
            .unwrap_err()
            .to_string()
            .contains("I/O-port BAR"));
        assert!(d
            .map_bar(2)
            .unwrap_err()
            .to_string()
            .contains("not implemented"));
        assert!(d.map_bar(6).is_err());
        // IRQ: one vector only; enabling clears INTX_DISABLE, dropping sets it again.
        assert!(d.enable_irqs(2).is_err());
        let irqs = d.enable_irqs(1).unwrap();
        assert_eq!(
            d.read_config16(PCI_COMMAND).unwrap() & PCI_COMMAND_INTX_DISABLE,
            0
        );
        assert!(d.enable_irqs(1).is_err(), "already enabled");
        drop(irqs);
        assert_ne!(
            d.read_config16(PCI_COMMAND).unwrap() & PCI_COMMAND_INTX_DISABLE,
            0
        );
        assert_eq!(
            d.enable_irqs(1).unwrap().len(),
            1,
            "can enable again after drop"
        );
        d.reset().unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn device_without_uio_node_says_how_to_bind() {
        let root = std::env::temp_dir().join(format!("pmd-uio-nobind-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dev = root.join("sys/bus/pci/devices/0000:00:05.0");
        std::fs::create_dir_all(&dev).unwrap();
        let paths = SysfsRoot::at(&root);
        let e = UioDevice::open_at("0000:00:05.0".parse().unwrap(), &paths)
            .unwrap_err()
            .to_string();
        std::fs::remove_dir_all(&root).unwrap();
        assert!(
            e.contains("pmd-setup bind 0000:00:05.0 uio_pci_generic"),
            "{e}"
        );
        assert!(e.contains("no driver"), "{e}");
    }
}
