//! EAL initialisation and teardown: parse options, set up logging and memory, make the
//! calling thread the main lcore, install Ctrl-C handling, and probe devices into ports.

use crate::devargs::VdevSpec;
use crate::error::{Error, LcoreError, MemoryError, Result};
use crate::ethdev::{Driver, ExclusiveResource, Port, PortId};
use crate::lcore::{self, Lcore, LcoreGuard};
use crate::memory::{self, IovaMode, MemoryConfig};
use crate::options::{self, EalOptions, LogLevel, ParsedArgs};
use crate::pci::access::{common_iova_mode, AccessMode};
use crate::pci::open::{self as pci_open, Opened};
use crate::pci::sysfs::{self, SysfsRoot};
use crate::pci::PciAddr;
use crate::telemetry::{Telemetry, TelemetryConf};
use std::thread::JoinHandle;

/// An initialised environment: the ports it probed and the lcores it may run on.
/// Dropping it closes the ports and releases the main lcore.
pub struct Eal {
    opts: EalOptions,
    /// The IOVA mode decided at init (see `choose_iova_mode`).
    iova_mode: IovaMode,
    ports: Vec<Port>,
    /// PCI functions opened at init (through VFIO or UIO), in address order.
    pci: Vec<(PciAddr, Opened)>,
    /// The telemetry socket, unless `--no-telemetry` (or it could not be opened).
    telemetry: Option<Telemetry>,
    _main: LcoreGuard,
}

impl std::fmt::Debug for Eal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eal")
            .field("lcores", &self.opts.lcores)
            .field("ports", &self.ports)
            .finish()
    }
}

/// The command line as telemetry reports it (`/eal/params`, `/eal/app_params`); empty
/// when the options were built rather than parsed.
#[derive(Debug, Default)]
struct TelemetryArgs {
    eal: Vec<String>,
    app: Vec<String>,
}

impl TelemetryArgs {
    fn of(p: &ParsedArgs) -> TelemetryArgs {
        TelemetryArgs {
            eal: p.eal_args.clone(),
            app: p.app_args.iter().skip(1).cloned().collect(),
        }
    }
}

/// Help text for `prog`: the EAL options and the drivers that `--vdev` can name.
pub fn help_text(prog: &str, drivers: &[&dyn Driver]) -> String {
    let mut s = options::usage(prog);
    s.push_str("\nDrivers (--vdev NAME<n>,key=value,...):\n");
    for d in drivers {
        s.push_str(&format!("  {:<16} {}\n", d.name(), d.description()));
    }
    s
}

impl Eal {
    /// Parses `args` (program name first; EAL options, then `--`, then application
    /// options) and initialises. Returns the EAL and the application's arguments
    /// (program name first). With `-h`, returns [`Error::Help`] carrying the help text.
    pub fn from_args<S: AsRef<str>>(
        args: &[S],
        drivers: &[&dyn Driver],
    ) -> Result<(Eal, Vec<String>)> {
        let parsed = Eal::parse_args(args, drivers)?;
        let telemetry = TelemetryArgs::of(&parsed);
        Ok((
            Eal::init_with(parsed.eal, drivers, telemetry)?,
            parsed.app_args,
        ))
    }

    /// Parses `args` without initialising; with `-h`, [`Error::Help`] carrying the help.
    fn parse_args<S: AsRef<str>>(args: &[S], drivers: &[&dyn Driver]) -> Result<ParsedArgs> {
        let parsed = EalOptions::parse(args)?;
        if parsed.eal.help {
            let prog = args
                .first()
                .map(|s| s.as_ref().to_string())
                .unwrap_or_else(|| "app".into());
            return Err(Error::Help(help_text(&prog, drivers)));
        }
        Ok(parsed)
    }

    /// [`Eal::from_args`] for an application's `main`: on `-h` prints the EAL help followed
    /// by `app_help()` and returns exit code 0; on an error prints it (prefixed with the
    /// program name) and returns the error's exit code (2 for bad options).
    pub fn from_args_for_app<S: AsRef<str>>(
        args: &[S],
        drivers: &[&dyn Driver],
        app_help: impl FnOnce() -> String,
    ) -> std::result::Result<(Eal, Vec<String>), std::process::ExitCode> {
        Eal::from_args_for_app_checked(args, drivers, app_help, |a| Ok(a.to_vec()))
    }

    /// [`Eal::from_args_for_app`] that also parses the application's options, with
    /// `parse_app`, after the EAL's and *before* initialising: a wrong option of either
    /// is refused before any device is probed, interface opened or memory reserved, so
    /// nothing on the machine changes. `parse_app` gets the application's arguments
    /// (program name first) and returns its options, or, having printed why, the exit code.
    pub fn from_args_for_app_checked<S: AsRef<str>, T>(
        args: &[S],
        drivers: &[&dyn Driver],
        app_help: impl FnOnce() -> String,
        parse_app: impl FnOnce(&[String]) -> std::result::Result<T, std::process::ExitCode>,
    ) -> std::result::Result<(Eal, T), std::process::ExitCode> {
        let report = |e: Error| {
            let prog = args
                .first()
                .map(|a| a.as_ref().rsplit('/').next().unwrap_or("app").to_string());
            eprintln!("{}: {e}", prog.unwrap_or_else(|| "app".into()));
            std::process::ExitCode::from(e.exit_code() as u8)
        };
        let parsed = match Eal::parse_args(args, drivers) {
            Ok(p) => p,
            Err(Error::Help(text)) => {
                println!("{text}\n{}", app_help());
                return Err(std::process::ExitCode::SUCCESS);
            }
            Err(e) => return Err(report(e)),
        };
        let app = parse_app(&parsed.app_args)?;
        let telemetry = TelemetryArgs::of(&parsed);
        let eal = Eal::init_with(parsed.eal, drivers, telemetry).map_err(report)?;
        Ok((eal, app))
    }

    /// Initialises from parsed (or built) options; `drivers` are the PMDs `--vdev` may name.
    pub fn init(opts: EalOptions, drivers: &[&dyn Driver]) -> Result<Eal> {
        Eal::init_with(opts, drivers, TelemetryArgs::default())
    }

    fn init_with(opts: EalOptions, drivers: &[&dyn Driver], args: TelemetryArgs) -> Result<Eal> {
        init_logging(opts.log_level);
        check_exclusive_resources(&opts.vdevs, drivers)?;
        lcore::check_online(&opts.lcores)?;
        if !opts.no_huge && opts.huge_dir.is_none() {
            check_hugepages()?;
        }
        let pci_addrs = pci_candidates(&opts, drivers);
        let iova_mode = choose_iova_mode(&opts, &pci_addrs)?;
        memory::configure(MemoryConfig {
            no_huge: opts.no_huge,
            huge_dir: opts.huge_dir.clone(),
            file_prefix: opts.file_prefix.clone(),
            iova_mode,
            limit_bytes: opts.memory_mb.map(|mb| mb << 20),
        });
        let main = opts
            .lcores
            .iter()
            .find(|l| l.id == opts.main_lcore)
            .copied()
            .ok_or_else(|| Error::lcore(opts.main_lcore, LcoreError::MainNotInList))?;
        let guard = lcore::register_current_thread(main.id)?;
        if !lcore::pin_current_thread(main.cpu) {
            tracing::warn!(
                lcore = main.id,
                cpu = main.cpu,
                "could not pin the main lcore"
            );
        }
        lcore::install_signal_handlers()?;
        let mut ports = Vec::with_capacity(opts.vdevs.len());
        for vdev in &opts.vdevs {
            let prefix = vdev.driver_prefix();
            let driver = drivers.iter().find(|d| d.name() == prefix).ok_or_else(|| {
                let known: Vec<&str> = drivers.iter().map(|d| d.name()).collect();
                Error::driver(
                    &vdev.name,
                    format!(
                        "no driver named {prefix:?}; available: {}",
                        known.join(", ")
                    ),
                )
            })?;
            let dev = driver.probe(vdev)?;
            let id = ports.len() as PortId;
            tracing::info!(port = id, device = vdev.name, mac = %dev.mac_addr(), "probed");
            ports.push(Port::new(id, vdev.name.clone(), dev));
        }
        let pci = probe_pci(&pci_addrs, iova_mode, drivers, &mut ports)?;
        let telemetry = if opts.no_telemetry && opts.metrics.is_none() {
            None
        } else {
            let conf = TelemetryConf {
                file_prefix: opts.file_prefix.clone(),
                eal_params: args.eal,
                app_params: args.app,
                lcores: opts.lcores.iter().map(|l| l.id).collect(),
                socket: !opts.no_telemetry,
                metrics: opts.metrics,
                ports: ports.iter().map(Port::pdump_tap).collect(),
            };
            match Telemetry::start(conf) {
                Ok(t) => {
                    if let Some(a) = t.metrics_addr() {
                        tracing::info!("metrics: http://{a}/metrics");
                    }
                    Some(t)
                }
                // Metrics were asked for by name: not serving them is an error.
                Err(e) if opts.metrics.is_some() => {
                    return Err(Error::Config(format!(
                        "--metrics {}: {e} (choose a free IP:PORT)",
                        opts.metrics.map(|a| a.to_string()).unwrap_or_default()
                    )))
                }
                Err(e) => {
                    tracing::warn!(
                        "telemetry socket not opened ({e}); the app runs without it \
                         (--no-telemetry silences this)"
                    );
                    None
                }
            }
        };
        Ok(Eal {
            opts,
            iova_mode,
            ports,
            pci,
            telemetry,
            _main: guard,
        })
    }

    /// The telemetry socket, if it is open.
    pub fn telemetry(&self) -> Option<&Telemetry> {
        self.telemetry.as_ref()
    }

    /// Answers the telemetry commands waiting for the main lcore: the ethdev ones from the
    /// ports, the application's (registered with [`Telemetry::register`]) with `app`
    /// (`None`: `null`). Call it from the main lcore's periodic work; when nothing waits
    /// it is one relaxed atomic load.
    #[inline]
    pub fn serve_telemetry(
        &self,
        app: &mut dyn FnMut(&str, Option<&str>) -> Option<serde_json::Value>,
    ) {
        if let Some(t) = &self.telemetry {
            if t.pending() {
                self.serve_telemetry_now(t, app);
            }
        }
    }

    #[cold]
    fn serve_telemetry_now(
        &self,
        t: &Telemetry,
        app: &mut dyn FnMut(&str, Option<&str>) -> Option<serde_json::Value>,
    ) {
        for r in t.take_requests() {
            let v = match crate::telemetry::ethdev_reply(&self.ports, &r.cmd, r.param.as_deref()) {
                Some(v) => v,
                None if t.is_app_command(&r.cmd) => app(&r.cmd, r.param.as_deref()),
                None => None,
            };
            r.answer(v);
        }
    }

    /// PCI functions the EAL opened (those given with `-a`, and bound devices a
    /// registered driver claims), with their backends.
    pub fn pci_devices(&self) -> impl Iterator<Item = (PciAddr, &Opened)> {
        self.pci.iter().map(|(a, o)| (*a, o))
    }

    /// The opened PCI function at `addr`, if the EAL opened it.
    pub fn pci_device(&self, addr: PciAddr) -> Option<&Opened> {
        self.pci.iter().find(|(a, _)| *a == addr).map(|(_, o)| o)
    }

    /// The options in force.
    pub fn options(&self) -> &EalOptions {
        &self.opts
    }

    /// The IOVA mode chosen at init: what the IOVAs of memory segments, and so of
    /// buffers and rings, are.
    pub fn iova_mode(&self) -> IovaMode {
        self.iova_mode
    }

    /// All ports, indexed by port id.
    pub fn ports(&self) -> &[Port] {
        &self.ports
    }

    /// The ports of a `-p PORTMASK` (bit N: port N), checked to exist; an error that
    /// says how to add ports when there are none.
    pub fn ports_in_mask(&self, mask: u64) -> Result<Vec<PortId>> {
        let n = self.ports.len();
        if n == 0 {
            return Err(Error::Config(
                "no Ethernet ports; add some with --vdev (e.g. --vdev net_null0 --vdev net_null1)"
                    .into(),
            ));
        }
        let ports = crate::numarg::ports_of(mask);
        match ports.iter().find(|&&p| usize::from(p) >= n) {
            Some(p) => Err(Error::Config(format!(
                "port {p} in portmask 0x{mask:x} does not exist ({n} ports probed)"
            ))),
            None => Ok(ports),
        }
    }

    /// All ports, writable.
    pub fn ports_mut(&mut self) -> &mut [Port] {
        &mut self.ports
    }

    /// Port `id`, or an error naming the ports that exist.
    pub fn port_mut(&mut self, id: PortId) -> Result<&mut Port> {
        let n = self.ports.len();
        self.ports.get_mut(id as usize).ok_or_else(|| Error::Port {
            port: id,
            msg: format!("no such port; {n} ports were probed"),
        })
    }

    /// All lcores, sorted by id.
    pub fn lcores(&self) -> &[Lcore] {
        &self.opts.lcores
    }

    /// The main lcore (the thread that called `init`).
    pub fn main_lcore(&self) -> Lcore {
        self.opts
            .lcores
            .iter()
            .copied()
            .find(|l| l.id == self.opts.main_lcore)
            .unwrap_or(Lcore {
                id: self.opts.main_lcore,
                cpu: 0,
            })
    }

    /// The lcores other than the main one.
    pub fn worker_lcores(&self) -> impl Iterator<Item = Lcore> + '_ {
        let main = self.opts.main_lcore;
        self.opts
            .lcores
            .iter()
            .copied()
            .filter(move |l| l.id != main)
    }

    /// Runs `f` on a new thread that is lcore `lc`, pinned to its CPU.
    pub fn spawn<F, R>(&self, lc: Lcore, f: F) -> Result<JoinHandle<R>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        lcore::spawn(lc.id, lc.cpu, f)
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        for p in &mut self.ports {
            p.close();
        }
    }
}

/// Fails, before anything is probed, if two vdevs claim the same exclusive resource (see
/// [`Driver::exclusive_resource`]), naming the second vdev, the resource and the first.
fn check_exclusive_resources(vdevs: &[VdevSpec], drivers: &[&dyn Driver]) -> Result<()> {
    let mut claimed: Vec<(&str, ExclusiveResource)> = Vec::new();
    for vdev in vdevs {
        let prefix = vdev.driver_prefix();
        let Some(driver) = drivers.iter().find(|d| d.name() == prefix) else {
            continue;
        };
        let Some(res) = driver.exclusive_resource(vdev) else {
            continue;
        };
        if let Some((first, _)) = claimed.iter().find(|(_, r)| r.what == res.what) {
            return Err(Error::Config(format!(
                "{}: {} is already used by {first}: {}",
                vdev.name, res.what, res.fix
            )));
        }
        claimed.push((&vdev.name, res));
    }
    Ok(())
}

/// The devices the EAL should open: every `-a` device; without `-a`, every device bound
/// to vfio-pci or UIO that a registered driver claims and `-b` does not block.
fn pci_candidates(opts: &EalOptions, drivers: &[&dyn Driver]) -> Vec<PciAddr> {
    if opts.no_pci {
        return Vec::new();
    }
    if !opts.allow.is_empty() {
        return opts.allow.clone();
    }
    let claimed = |v: u16, d: u16| {
        drivers.iter().any(|dr| {
            dr.pci_ids()
                .iter()
                .any(|id| id.vendor == v && id.device == d)
        })
    };
    sysfs::list_bound(&SysfsRoot::system())
        .into_iter()
        .filter(|b| !opts.block.contains(&b.addr) && claimed(b.vendor, b.device))
        .map(|b| b.addr)
        .collect()
}

/// `--iova-mode` if given (checked against what the devices need), else what the
/// devices need (PA for no-IOMMU and UIO, VA for VFIO with an IOMMU), else VA.
fn choose_iova_mode(opts: &EalOptions, addrs: &[PciAddr]) -> Result<IovaMode> {
    let mut needs = Vec::new();
    for a in addrs {
        needs.push((*a, pci_open::required_iova_mode(*a, AccessMode::Auto)?));
    }
    let needed = common_iova_mode(needs.iter().map(|(_, m)| *m));
    match (opts.iova_mode, needed) {
        (Some(IovaMode::Va), Some(IovaMode::Pa)) => {
            let who: Vec<String> = needs
                .iter()
                .filter(|(_, m)| *m == IovaMode::Pa)
                .map(|(a, _)| a.to_string())
                .collect();
            Err(Error::Config(format!(
                "{} can only use physical addresses (no IOMMU or UIO): run with --iova-mode pa, or bind to vfio-pci with an IOMMU",
                who.join(", ")
            )))
        }
        (Some(m), _) => Ok(m),
        (None, Some(m)) => {
            tracing::info!("IOVA mode {m} chosen for the PCI devices");
            Ok(m)
        }
        (None, None) => Ok(IovaMode::Va),
    }
}

/// Opens the PCI candidates for `iova_mode` and creates ports for those a driver claims.
fn probe_pci(
    addrs: &[PciAddr],
    iova_mode: IovaMode,
    drivers: &[&dyn Driver],
    ports: &mut Vec<Port>,
) -> Result<Vec<(PciAddr, Opened)>> {
    let mut opened = Vec::new();
    for &addr in addrs {
        let dev = pci_open::open_device(addr, AccessMode::Auto, iova_mode)?;
        let (vendor, device) = sysfs::sysfs_ids(addr, &SysfsRoot::system())?;
        let driver = drivers.iter().find(|d| {
            d.pci_ids()
                .iter()
                .any(|id| id.vendor == vendor && id.device == device)
        });
        match driver {
            // Like DPDK, a device its driver cannot use is reported and skipped (it stays
            // open for the application), rather than failing the whole initialisation.
            Some(d) => match d.probe_pci(dev.backend()) {
                Ok(port_dev) => {
                    let id = ports.len() as PortId;
                    tracing::info!(port = id, pci = %addr, driver = d.name(), mac = %port_dev.mac_addr(), "probed");
                    ports.push(Port::new(id, addr.to_string(), port_dev));
                }
                Err(e) => {
                    tracing::error!(pci = %addr, driver = d.name(), "device cannot be used: {e}")
                }
            },
            None => tracing::info!(
                pci = %addr,
                "opened {vendor:04x}:{device:04x}; no driver in this build claims it (the application can use it through Eal::pci_device)"
            ),
        }
        opened.push((addr, dev));
    }
    Ok(opened)
}

fn init_logging(level: LogLevel) {
    let filter = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    let env = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn check_hugepages() -> Result<()> {
    let pools = memory::hugepage_pools();
    if pools.iter().any(|p| p.free > 0) {
        return Ok(());
    }
    let size_kb = memory::default_hugepage_size()
        .map(|b| b / 1024)
        .unwrap_or(2048);
    Err(MemoryError::NoFreeHugepages { size_kb }.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iova_mode_defaults_to_va_and_honours_the_option() {
        let o = EalOptions::builder().no_pci(true).build().unwrap();
        assert_eq!(choose_iova_mode(&o, &[]).unwrap(), IovaMode::Va);
        let o = EalOptions::builder()
            .iova_mode(IovaMode::Pa)
            .build()
            .unwrap();
        assert_eq!(choose_iova_mode(&o, &[]).unwrap(), IovaMode::Pa);
        assert!(
            pci_candidates(&EalOptions::builder().no_pci(true).build().unwrap(), &[]).is_empty()
        );
    }

    #[test]
    fn a_missing_allowed_device_is_a_clear_error() {
        let addr: PciAddr = "0000:7f:1f.7".parse().unwrap();
        let o = EalOptions::builder().allow("0000:7f:1f.7").build().unwrap();
        let err = choose_iova_mode(&o, &[addr]).unwrap_err().to_string();
        assert!(err.contains("no such PCI device"), "{err}");
    }

    /// A driver whose vdevs claim `what=` of their arguments.
    struct Claiming;

    impl Driver for Claiming {
        fn name(&self) -> &'static str {
            "net_claim"
        }
        fn description(&self) -> &'static str {
            "test driver"
        }
        fn exclusive_resource(&self, vdev: &VdevSpec) -> Option<ExclusiveResource> {
            vdev.arg("iface").map(ExclusiveResource::interface)
        }
    }

    fn vdevs(specs: &[&str]) -> Vec<VdevSpec> {
        specs.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn two_vdevs_claiming_one_resource_are_refused() {
        let d: &[&dyn Driver] = &[&Claiming];
        let err = check_exclusive_resources(
            &vdevs(&[
                "net_claim0,iface=a",
                "net_claim1,iface=b",
                "net_claim2,iface=a",
            ]),
            d,
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.to_string(),
            "net_claim2: interface a is already used by net_claim0: give each port its own interface"
        );
    }

    #[test]
    fn distinct_or_unclaimed_resources_pass() {
        let d: &[&dyn Driver] = &[&Claiming];
        check_exclusive_resources(
            &vdevs(&[
                "net_claim0,iface=a",
                "net_claim1,iface=b",
                "net_claim2",
                "net_claim3",
                "net_other0,iface=a",
            ]),
            d,
        )
        .unwrap();
    }

    #[test]
    fn help_lists_drivers() {
        let h = help_text("app", &[]);
        assert!(h.contains("--vdev"));
        assert!(h.contains("Drivers"));
    }
}
