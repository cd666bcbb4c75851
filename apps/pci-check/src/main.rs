//! pci-check: opens one PCI device through VFIO or UIO and checks that the backend works,
//! printing one line per check and exiting 0 only if all passed.
//!
//! ```text
//! pci-check [EAL options] -- ADDR [--mode auto|vfio|uio] [--expect igb|e1000e|virtio-modern|virtio-legacy]
//! pci-check [EAL options] -- --list
//! ```
//!
//! Output lines: `CHECK <addr> <name> PASS <detail>` or `CHECK <addr> <name> FAIL <detail>`
//! for the checks `open`, `ids`, `register`, `dma`, `busmaster`, `irq` and `reset`.
//! Devices without an IOMMU (VFIO no-IOMMU, UIO) need `--iova-mode pa` among the EAL
//! options.

use clap::{Parser, ValueEnum};
use pmd_core::memory::{self, IovaMode};
use pmd_core::pci::backend::{PCI_COMMAND, PCI_COMMAND_MASTER};
use pmd_core::pci::open::{self, Opened};
use pmd_core::pci::sysfs::{self, SysfsRoot};
use pmd_core::pci::AccessMode;
use pmd_core::pci::{BackendKind, PciAddr, PciBackend};
use pmd_core::{Eal, Error, Mempool};
use std::process::ExitCode;
use std::sync::Arc;

/// How to reach the device (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// From the bound driver.
    Auto,
    /// vfio-pci.
    Vfio,
    /// uio_pci_generic.
    Uio,
}

impl From<Mode> for AccessMode {
    fn from(m: Mode) -> AccessMode {
        match m {
            Mode::Auto => AccessMode::Auto,
            Mode::Vfio => AccessMode::Vfio,
            Mode::Uio => AccessMode::Uio,
        }
    }
}

/// The device model whose registers the `register` check reads (`--expect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Expect {
    /// Intel 82576 (8086:10c9), QEMU `igb`.
    Igb,
    /// Intel 82574L (8086:10d3), QEMU `e1000e`.
    #[value(name = "e1000e")]
    E1000e,
    /// Modern virtio-net (1af4:1041).
    VirtioModern,
    /// Legacy/transitional virtio-net (1af4:1000), BAR0 an I/O BAR.
    VirtioLegacy,
}

impl Expect {
    fn ids(self) -> (u16, u16) {
        match self {
            Expect::Igb => (0x8086, 0x10c9),
            Expect::E1000e => (0x8086, 0x10d3),
            Expect::VirtioModern => (0x1af4, 0x1041),
            Expect::VirtioLegacy => (0x1af4, 0x1000),
        }
    }

    fn from_ids(ids: (u16, u16)) -> Option<Expect> {
        [
            Expect::Igb,
            Expect::E1000e,
            Expect::VirtioModern,
            Expect::VirtioLegacy,
        ]
        .into_iter()
        .find(|e| e.ids() == ids)
    }
}

/// Application options (after `--`).
#[derive(Parser, Debug)]
#[command(
    name = "pci-check",
    about = "Checks a PCI device through the VFIO/UIO backends (EAL options go before --)"
)]
struct AppOpts {
    /// PCI address of the device (DDDD:BB:DD.F).
    #[arg(required_unless_present = "list")]
    addr: Option<PciAddr>,
    /// How to reach the device.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    mode: Mode,
    /// The device model, for the register check (default: from the vendor/device ids).
    #[arg(long, value_enum)]
    expect: Option<Expect>,
    /// List the devices bound to vfio-pci or uio_pci_generic and exit.
    #[arg(long, conflicts_with_all = ["addr", "expect"])]
    list: bool,
}

/// The application arguments (program name first): what follows the first `--`.
fn app_args(args: &[String]) -> Vec<String> {
    let prog = args.first().cloned().unwrap_or_else(|| "pci-check".into());
    let rest = args
        .iter()
        .position(|a| a == "--")
        .map_or(&[][..], |i| &args[i + 1..]);
    std::iter::once(prog).chain(rest.iter().cloned()).collect()
}

/// Whether the EAL part of `args` (before `--`) already names devices with `-a`.
fn has_allow(args: &[String]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "-a" || a.starts_with("--allow") || (a.starts_with("-a") && a.len() > 2))
}

/// Prints the check lines and remembers whether all passed.
struct Report {
    addr: PciAddr,
    failed: usize,
}

impl Report {
    fn check(&mut self, name: &str, r: Result<String, String>) {
        match r {
            Ok(detail) => println!("CHECK {} {name} PASS {detail}", self.addr),
            Err(detail) => {
                self.failed += 1;
                println!("CHECK {} {name} FAIL {detail}", self.addr);
            }
        }
    }
}

/// A virtio PCI capability (`struct virtio_pci_cap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VirtioCap {
    cfg_type: u8,
    bar: u8,
    offset: u32,
    length: u32,
}

/// Walks the capability list of a 256-byte config space for the virtio vendor
/// capability of `cfg_type` (bounded: at most 48 capabilities, offsets inside 256 bytes).
fn find_virtio_cap(cfg: &[u8; 256], cfg_type: u8) -> Result<Option<VirtioCap>, String> {
    const PCI_STATUS_CAP_LIST: u16 = 1 << 4;
    const PCI_CAP_ID_VNDR: u8 = 0x09;
    let status = u16::from_le_bytes([cfg[6], cfg[7]]);
    if status & PCI_STATUS_CAP_LIST == 0 {
        return Ok(None);
    }
    let mut ptr = cfg[0x34] & 0xfc;
    for _ in 0..48 {
        if ptr == 0 {
            return Ok(None);
        }
        let p = ptr as usize;
        if p < 0x40 || p + 2 > 256 {
            return Err(format!(
                "capability pointer {ptr:#x} outside the device-specific config space"
            ));
        }
        if cfg[p] == PCI_CAP_ID_VNDR {
            if p + 16 > 256 {
                return Err(format!(
                    "virtio capability at {ptr:#x} runs past config space"
                ));
            }
            let u32_at =
                |o: usize| u32::from_le_bytes([cfg[o], cfg[o + 1], cfg[o + 2], cfg[o + 3]]);
            let cap = VirtioCap {
                cfg_type: cfg[p + 3],
                bar: cfg[p + 4],
                offset: u32_at(p + 8),
                length: u32_at(p + 12),
            };
            if cap.cfg_type == cfg_type {
                return Ok(Some(cap));
            }
        }
        ptr = cfg[p + 1] & 0xfc;
    }
    Err("more than 48 capabilities (loop in the capability list?)".into())
}

fn read_config_space(dev: &dyn PciBackend) -> Result<[u8; 256], String> {
    let mut cfg = [0u8; 256];
    dev.read_config(0, &mut cfg).map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn check_register(
    o: &Opened,
    dev: &dyn PciBackend,
    ids: (u16, u16),
    expect: Option<Expect>,
) -> Result<String, String> {
    let Some(model) = expect.or_else(|| Expect::from_ids(ids)) else {
        return Ok(format!(
            "skipped: no known register for {:04x}:{:04x} (pass --expect)",
            ids.0, ids.1
        ));
    };
    if model.ids() != ids {
        return Err(format!(
            "expected {model:?} ({:04x}:{:04x}), found {:04x}:{:04x}",
            model.ids().0,
            model.ids().1,
            ids.0,
            ids.1
        ));
    }
    let e = |e: Error| e.to_string();
    match model {
        Expect::Igb | Expect::E1000e => {
            let bar = dev.map_bar(0).map_err(e)?;
            let ctrl = bar.read32_at(0).map_err(e)?;
            let status = bar.read32_at(8).map_err(e)?;
            if status == u32::MAX || (model == Expect::Igb && ctrl == u32::MAX) {
                return Err(format!("BAR0 reads all-ones (CTRL={ctrl:#010x} STATUS={status:#010x}): device not decoding"));
            }
            Ok(format!(
                "BAR0 ({:#x} bytes) CTRL={ctrl:#010x} STATUS={status:#010x}",
                bar.len()
            ))
        }
        Expect::VirtioModern => {
            let cfg = read_config_space(dev)?;
            let cap = find_virtio_cap(&cfg, 1)?.ok_or("no virtio common-config capability")?;
            if cap.bar > 5 {
                return Err(format!("common config in BAR {}", cap.bar));
            }
            let bar = dev.map_bar(cap.bar).map_err(e)?;
            let off = cap.offset as usize;
            // device_feature_select at +0, device_feature at +4.
            bar.write32_at(off, 1).map_err(e)?;
            let hi = bar.read32_at(off + 4).map_err(e)?;
            bar.write32_at(off, 0).map_err(e)?;
            if hi & 1 == 0 {
                return Err(format!(
                    "device_feature[63:32]={hi:#010x}: VIRTIO_F_VERSION_1 (bit 32) not offered"
                ));
            }
            Ok(format!(
                "common cfg in BAR{} at {:#x}; device_feature[63:32]={hi:#010x} has VERSION_1",
                cap.bar, cap.offset
            ))
        }
        Expect::VirtioLegacy => match o {
            Opened::Vfio(v) => {
                let mut b = [0u8; 4];
                v.read_region(0, 0, &mut b).map_err(e)?;
                let features = u32::from_le_bytes(b);
                if features == 0 {
                    return Err("legacy host features read as 0".into());
                }
                Ok(format!(
                    "I/O BAR0 host features={features:#010x} (via VFIO region read)"
                ))
            }
            Opened::Uio(_) => Ok("skipped: I/O BARs are not reachable through UIO".into()),
        },
    }
}

fn check_dma(o: &Opened, dev: &dyn PciBackend) -> Result<String, String> {
    let e = |e: Error| e.to_string();
    let pool = Mempool::create("pci-check", 256, 0).map_err(e)?;
    let va = pool.segment().as_ptr() as usize;
    let seg = memory::segments()
        .into_iter()
        .find(|s| s.va == va)
        .ok_or("the pool's segment is not in the registry")?;
    dev.dma_map(&seg).map_err(e)?;
    let mut m = pool.alloc().ok_or("could not allocate an mbuf")?;
    let buf_va = m.buf_ptr() as usize;
    let buf_iova = m.buf_iova();
    match (o, dev.kind()) {
        (Opened::Vfio(v), BackendKind::Vfio) => {
            if !v.is_dma_mapped(seg.iova, seg.len as u64) {
                return Err(format!(
                    "segment iova {:#x}+{:#x} is not mapped in the IOMMU",
                    seg.iova, seg.len
                ));
            }
            if !v.is_dma_mapped(buf_iova, m.buf_len() as u64) {
                return Err(format!(
                    "mbuf iova {buf_iova:#x} is outside the IOMMU mappings"
                ));
            }
            Ok(format!(
                "segment {} iova {:#x} ({} bytes) mapped by the listener; {} mapping(s) in the container",
                seg.name,
                seg.iova,
                seg.len,
                v.group().container().dma_mapping_count()
            ))
        }
        _ => {
            let pa = memory::virt_to_phys(buf_va).map_err(e)?;
            if buf_iova != pa {
                return Err(format!(
                    "mbuf iova {buf_iova:#x} != physical address {pa:#x} of va {buf_va:#x}"
                ));
            }
            if pa == buf_va as u64 {
                return Err(format!(
                    "mbuf iova {buf_iova:#x} equals its virtual address"
                ));
            }
            Ok(format!(
                "mbuf iova {buf_iova:#x} is the physical address of va {buf_va:#x}"
            ))
        }
    }
}

fn check_busmaster(dev: &dyn PciBackend) -> Result<String, String> {
    let e = |e: Error| e.to_string();
    dev.set_bus_master(true).map_err(e)?;
    let on = dev.read_config16(PCI_COMMAND).map_err(e)?;
    dev.set_bus_master(false).map_err(e)?;
    let off = dev.read_config16(PCI_COMMAND).map_err(e)?;
    if on & PCI_COMMAND_MASTER == 0 {
        return Err(format!(
            "command {on:#06x} after enabling: bus master bit not set"
        ));
    }
    if off & PCI_COMMAND_MASTER != 0 {
        return Err(format!(
            "command {off:#06x} after disabling: bus master bit still set"
        ));
    }
    Ok(format!(
        "command {on:#06x} with bus master, {off:#06x} without"
    ))
}

fn check_irq(o: &Opened, dev: &dyn PciBackend) -> Result<String, String> {
    let irqs = dev.enable_irqs(1).map_err(|e| e.to_string())?;
    let how = match o {
        Opened::Vfio(v) => format!("{:?} (device offers {:?})", v.irq_type(), v.irq_counts()),
        Opened::Uio(u) => format!("INTx via {}", u.uio_name()),
    };
    let seen = irqs[0].wait(0).map_err(|e| e.to_string())?;
    drop(irqs);
    if let Opened::Vfio(v) = o {
        if v.irq_type().is_some() {
            return Err("interrupts still enabled after dropping the handles".into());
        }
    }
    Ok(format!(
        "1 vector enabled: {how}; {seen} pending; disabled on drop"
    ))
}

fn check_reset(o: &Opened, dev: &dyn PciBackend, vendor: u16) -> Result<String, String> {
    if !o.supports_reset() {
        return Ok(format!("not supported by {:?}", dev.kind()));
    }
    dev.reset().map_err(|e| e.to_string())?;
    let v = dev.read_config16(0).map_err(|e| e.to_string())?;
    if v != vendor {
        return Err(format!(
            "vendor id reads {v:#06x} after reset (expected {vendor:#06x})"
        ));
    }
    Ok("VFIO_DEVICE_RESET done; config space readable afterwards".into())
}

/// Runs every check on `addr` (opened by the EAL, or here); `iova_mode` is the EAL's.
fn run_checks(
    opts: &AppOpts,
    addr: PciAddr,
    from_eal: Option<Opened>,
    iova_mode: IovaMode,
) -> ExitCode {
    let mut report = Report { addr, failed: 0 };
    let by_eal = from_eal.is_some();
    let opened =
        match from_eal.map_or_else(|| open::open_device(addr, opts.mode.into(), iova_mode), Ok) {
            Ok(o) => o,
            Err(e) => {
                report.check("open", Err(e.to_string()));
                return ExitCode::FAILURE;
            }
        };
    let dev: Arc<dyn PciBackend> = opened.backend();
    let mut detail = format!("{:?}", dev.kind());
    match &opened {
        Opened::Vfio(v) => detail.push_str(&format!(" (IOMMU group {})", v.group().number())),
        Opened::Uio(u) => detail.push_str(&format!(" ({})", u.uio_name())),
    }
    if dev.iova_mode() == IovaMode::Pa && iova_mode == IovaMode::Va {
        detail.push_str("; warning: this device needs --iova-mode pa");
    }
    if by_eal {
        detail.push_str(", opened by the EAL (-a)");
    }
    report.check("open", Ok(detail));

    let ids = (|| -> Result<(u16, u16), String> {
        let cfg = (
            dev.read_config16(0).map_err(|e| e.to_string())?,
            dev.read_config16(2).map_err(|e| e.to_string())?,
        );
        let sys = sysfs::sysfs_ids(addr, &SysfsRoot::system()).map_err(|e| e.to_string())?;
        if cfg != sys {
            return Err(format!(
                "config space says {:04x}:{:04x}, sysfs says {:04x}:{:04x}",
                cfg.0, cfg.1, sys.0, sys.1
            ));
        }
        Ok(cfg)
    })();
    report.check("ids", ids.clone().map(|(v, d)| format!("{v:04x}:{d:04x}")));
    let ids = ids.unwrap_or((0xffff, 0xffff));
    report.check(
        "register",
        check_register(&opened, dev.as_ref(), ids, opts.expect),
    );
    report.check("dma", check_dma(&opened, dev.as_ref()));
    report.check("busmaster", check_busmaster(dev.as_ref()));
    report.check("irq", check_irq(&opened, dev.as_ref()));
    report.check("reset", check_reset(&opened, dev.as_ref(), ids.0));
    if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn list() -> ExitCode {
    let devs = sysfs::list_bound(&SysfsRoot::system());
    if devs.is_empty() {
        println!("no devices bound to vfio-pci or uio_pci_generic");
    }
    for d in devs {
        println!(
            "{} {:04x}:{:04x} {} {}",
            d.addr, d.vendor, d.device, d.driver, d.detail
        );
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let early = app_args(&args);
    if early.iter().any(|a| a == "--list") {
        return match AppOpts::try_parse_from(&early) {
            Ok(_) => list(),
            Err(e) => {
                let _ = e.print();
                ExitCode::from(2)
            }
        };
    }
    // With --mode auto, let the EAL open the device (as `-a ADDR`), choosing the IOVA mode
    // it needs; an explicit --mode opens it here instead.
    let mut eal_args = args.clone();
    if let Ok(AppOpts {
        addr: Some(addr),
        mode: Mode::Auto,
        ..
    }) = AppOpts::try_parse_from(&early)
    {
        if !has_allow(&args) {
            eal_args.insert(1.min(eal_args.len()), format!("--allow={addr}"));
        }
    }
    let help = || {
        <AppOpts as clap::CommandFactory>::command()
            .render_help()
            .to_string()
    };
    // Application options are checked before the EAL initialises: a wrong one changes
    // nothing on the machine.
    let parse_app = |app_args: &[String]| {
        AppOpts::try_parse_from(app_args).map_err(|e| {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { 2 } else { 0 })
        })
    };
    let (eal, opts) =
        match Eal::from_args_for_app_checked(&eal_args, pmd_drivers::ALL, help, parse_app) {
            Ok(v) => v,
            Err(code) => return code,
        };
    let code = match opts.addr {
        Some(addr) => run_checks(&opts, addr, eal.pci_device(addr).cloned(), eal.iova_mode()),
        None => list(),
    };
    drop(eal);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(a: &[&str]) -> Result<AppOpts, clap::Error> {
        AppOpts::try_parse_from(std::iter::once("pci-check").chain(a.iter().copied()))
    }

    #[test]
    fn parses_address_mode_and_expect() {
        let o = parse(&[
            "0000:00:03.0",
            "--mode",
            "vfio",
            "--expect",
            "virtio-modern",
        ])
        .unwrap();
        assert_eq!(o.addr, Some("0000:00:03.0".parse().unwrap()));
        assert_eq!(o.mode, Mode::Vfio);
        assert_eq!(o.expect, Some(Expect::VirtioModern));
        let o = parse(&["00:04.0"]).unwrap();
        assert_eq!(o.mode, Mode::Auto);
        assert_eq!(o.expect, None);
        for (name, want) in [
            ("igb", Expect::Igb),
            ("e1000e", Expect::E1000e),
            ("virtio-legacy", Expect::VirtioLegacy),
        ] {
            assert_eq!(
                parse(&["00:04.0", "--expect", name]).unwrap().expect,
                Some(want)
            );
        }
        assert_eq!(
            AccessMode::from(parse(&["00:04.0", "--mode", "uio"]).unwrap().mode),
            AccessMode::Uio
        );
        assert!(parse(&["--list"]).unwrap().list);
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(parse(&[]).is_err(), "address required");
        assert!(parse(&["0000:00:03"]).is_err(), "bad address");
        assert!(parse(&["00:03.0", "--mode", "pio"]).is_err());
        assert!(parse(&["00:03.0", "--expect", "ixgbe"]).is_err());
        assert!(
            parse(&["00:03.0", "--list"]).is_err(),
            "--list takes no address"
        );
    }

    #[test]
    fn app_args_are_what_follows_the_separator() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            app_args(&a(&["pci-check", "--no-huge", "--", "00:03.0", "--", "x"])),
            a(&["pci-check", "00:03.0", "--", "x"])
        );
        assert_eq!(app_args(&a(&["pci-check", "--no-huge"])), a(&["pci-check"]));
    }

    #[test]
    fn allow_detection_stops_at_the_separator() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(has_allow(&a(&["p", "-a", "00:03.0", "--", "x"])));
        assert!(has_allow(&a(&["p", "--allow=00:03.0"])));
        assert!(has_allow(&a(&["p", "-a00:03.0"])));
        assert!(!has_allow(&a(&["p", "-l", "0", "--", "-a"])));
    }

    #[test]
    fn model_from_ids() {
        assert_eq!(Expect::from_ids((0x8086, 0x10c9)), Some(Expect::Igb));
        assert_eq!(
            Expect::from_ids((0x1af4, 0x1000)),
            Some(Expect::VirtioLegacy)
        );
        assert_eq!(Expect::from_ids((0x1234, 0x1111)), None);
    }

    fn cfg_with_caps(caps: &[(u8, &[u8])]) -> [u8; 256] {
        // caps: (offset, bytes from the id on); linked in order.
        let mut cfg = [0u8; 256];
        cfg[6] = 0x10;
        cfg[0x34] = caps.first().map_or(0, |c| c.0);
        for (i, (off, bytes)) in caps.iter().enumerate() {
            let o = *off as usize;
            cfg[o..o + bytes.len()].copy_from_slice(bytes);
            cfg[o + 1] = caps.get(i + 1).map_or(0, |c| c.0);
        }
        cfg
    }

    fn virtio_cap(cfg_type: u8, bar: u8, offset: u32, length: u32) -> Vec<u8> {
        let mut v = vec![0x09, 0, 16, cfg_type, bar, 0, 0, 0];
        v.extend(offset.to_le_bytes());
        v.extend(length.to_le_bytes());
        v
    }

    #[test]
    fn finds_the_virtio_common_cfg() {
        let msix = [0x11u8, 0, 0, 0];
        let notify = virtio_cap(2, 4, 0x3000, 0x1000);
        let common = virtio_cap(1, 4, 0x0, 0x38);
        let cfg = cfg_with_caps(&[(0x98, &msix), (0x84, &notify), (0x70, &common)]);
        assert_eq!(
            find_virtio_cap(&cfg, 1).unwrap(),
            Some(VirtioCap {
                cfg_type: 1,
                bar: 4,
                offset: 0,
                length: 0x38
            })
        );
        assert_eq!(find_virtio_cap(&cfg, 2).unwrap().unwrap().offset, 0x3000);
        assert_eq!(find_virtio_cap(&cfg, 5).unwrap(), None);
        // No capability list.
        let mut none = cfg;
        none[6] = 0;
        assert_eq!(find_virtio_cap(&none, 1).unwrap(), None);
    }

    #[test]
    fn malformed_capability_lists_are_errors() {
        // A loop.
        let mut cfg = cfg_with_caps(&[(0x40, &[0x11, 0, 0, 0])]);
        cfg[0x41] = 0x40;
        assert!(find_virtio_cap(&cfg, 1).unwrap_err().contains("48"));
        // Pointer into the header.
        let mut cfg = [0u8; 256];
        cfg[6] = 0x10;
        cfg[0x34] = 0x10;
        assert!(find_virtio_cap(&cfg, 1).is_err());
        // A vendor cap too close to the end.
        let mut cfg = [0u8; 256];
        cfg[6] = 0x10;
        cfg[0x34] = 0xf8;
        cfg[0xf8] = 0x09;
        assert!(find_virtio_cap(&cfg, 1).is_err());
    }
}
