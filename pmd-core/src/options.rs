//! The EAL command line: DPDK-compatible options parsed from `argv` or set
//! through [`EalBuilder`], validated in one place ([`EalBuilder::build`]).
//!
//! This is the top layer of `pmd-core`: it turns text into the values the layers below
//! take ([`Lcore`] lists, [`VdevSpec`]s, an [`IovaMode`], PCI addresses), and only the
//! EAL reads it.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;

use crate::devargs::VdevSpec;
use crate::error::OptionsError;
use crate::lcore::{default_lcores, parse_lcore_list, Lcore};
use crate::memory::IovaMode;
use crate::numarg;
use crate::pci::addr::PciAddr;

/// Largest `-m` value: keeps the size in bytes representable as a `u64`.
pub const MAX_MEMORY_MB: u64 = u64::MAX >> 20;
/// Default `--file-prefix`.
pub const DEFAULT_FILE_PREFIX: &str = "pmd";

/// Builds an [`OptionsError::InvalidValue`].
fn invalid(option: &str, value: &str, reason: impl Into<String>) -> OptionsError {
    OptionsError::InvalidValue {
        option: option.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Log verbosity, from least to most verbose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Informational messages (default).
    #[default]
    Info,
    /// Debug messages.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// Maps a level name (ours or DPDK's) to a level.
    fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "error" | "err" | "crit" | "critical" | "alert" | "emerg" => Self::Error,
            "warn" | "warning" => Self::Warn,
            "info" | "notice" => Self::Info,
            "debug" => Self::Debug,
            "trace" => Self::Trace,
            _ => return None,
        })
    }

    /// Maps a DPDK numeric level (1..=8) to a level.
    fn from_dpdk_number(n: &str) -> Option<Self> {
        Some(match n {
            "1" | "2" | "3" | "4" => Self::Error,
            "5" => Self::Warn,
            "6" | "7" => Self::Info,
            "8" => Self::Debug,
            _ => return None,
        })
    }
}

impl FromStr for LogLevel {
    type Err = String;

    /// Accepts `error|warn|info|debug|trace` (and DPDK's names), DPDK numbers
    /// 1..=8, and DPDK's `type:level` form, of which only the level is used.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let level = match s.rsplit_once(':') {
            Some(("", _)) => return Err("empty log type before ':'".to_string()),
            Some((_, level)) => level,
            None => s,
        };
        Self::from_name(level)
            .or_else(|| Self::from_dpdk_number(level))
            .ok_or_else(|| {
                "expected error, warn, info, debug, trace, a number 1-8, or TYPE:LEVEL".to_string()
            })
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        })
    }
}

/// Validated EAL options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalOptions {
    /// Lcores, sorted by id, ids unique. Default: one per online CPU (id == cpu).
    pub lcores: Vec<Lcore>,
    /// The main lcore; always one of `lcores`. Default: the lowest lcore id.
    pub main_lcore: u32,
    /// PCI devices to use exclusively (`-a`).
    pub allow: Vec<PciAddr>,
    /// PCI devices to skip (`-b`).
    pub block: Vec<PciAddr>,
    /// Virtual devices (`--vdev`), names unique.
    pub vdevs: Vec<VdevSpec>,
    /// Use anonymous memory instead of hugepages (`--no-huge`).
    pub no_huge: bool,
    /// Memory to preallocate in MB (`-m`).
    pub memory_mb: Option<u64>,
    /// Hugetlbfs mount to use (`--huge-dir`).
    pub huge_dir: Option<PathBuf>,
    /// Prefix for runtime files (`--file-prefix`), `[A-Za-z0-9_.-]+`.
    pub file_prefix: String,
    /// Forced IOVA mode (`--iova-mode`); `None` lets the EAL choose.
    pub iova_mode: Option<IovaMode>,
    /// Disable the PCI bus (`--no-pci`).
    pub no_pci: bool,
    /// Log verbosity (`--log-level`), default info.
    pub log_level: LogLevel,
    /// Memory channels (`-n`); accepted for DPDK compatibility, unused.
    pub mem_channels: Option<u32>,
    /// Help was requested (`-h`, `--help`).
    pub help: bool,
    /// No telemetry socket (`--no-telemetry`; on by default, as in DPDK).
    pub no_telemetry: bool,
    /// Serve Prometheus metrics over HTTP at this address (`--metrics ADDR:PORT`).
    pub metrics: Option<std::net::SocketAddr>,
}

/// Result of [`EalOptions::parse`]: the EAL options and the remaining
/// application arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedArgs {
    /// The EAL options.
    pub eal: EalOptions,
    /// Program name followed by everything after `--`, ready for an app's own parser.
    pub app_args: Vec<String>,
    /// Program name followed by the EAL's arguments as given (telemetry's `/eal/params`).
    pub eal_args: Vec<String>,
}

impl Default for EalOptions {
    /// The options used when nothing is given on the command line.
    fn default() -> Self {
        Self {
            lcores: default_lcores(),
            main_lcore: 0,
            allow: Vec::new(),
            block: Vec::new(),
            vdevs: Vec::new(),
            no_huge: false,
            memory_mb: None,
            huge_dir: None,
            file_prefix: DEFAULT_FILE_PREFIX.to_string(),
            iova_mode: None,
            no_pci: false,
            log_level: LogLevel::default(),
            mem_channels: None,
            help: false,
            no_telemetry: false,
            metrics: None,
        }
    }
}

impl EalOptions {
    /// Starts building options programmatically.
    pub fn builder() -> EalBuilder {
        EalBuilder::default()
    }

    /// Parses a DPDK-style command line; `args[0]` is the program name.
    ///
    /// Parsing stops at the first `--`, which is consumed; everything after it
    /// is returned in [`ParsedArgs::app_args`] behind the program name.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<ParsedArgs, OptionsError> {
        let argv: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string())
            .take_while(|a| a != "--")
            .collect();
        let mut args = args.iter().map(AsRef::as_ref);
        let prog = args.next();
        let mut parser = Parser::default();
        let mut app_args: Vec<String> = prog.map(str::to_string).into_iter().collect();
        while let Some(arg) = args.next() {
            if arg == "--" {
                app_args.extend(args.map(str::to_string));
                break;
            }
            parser.argument(arg, &mut args)?;
        }
        let eal = parser.builder.build()?;
        Ok(ParsedArgs {
            eal,
            app_args,
            eal_args: argv,
        })
    }
}

/// Chainable builder for [`EalOptions`]; [`EalBuilder::build`] validates
/// exactly as the command-line parser does.
///
/// Setters never fail; the first malformed value is reported by `build`.
#[derive(Debug, Default)]
pub struct EalBuilder {
    lcores: Option<Vec<Lcore>>,
    main_lcore: Option<u32>,
    allow: Vec<PciAddr>,
    block: Vec<PciAddr>,
    vdevs: Vec<VdevSpec>,
    no_huge: bool,
    memory_mb: Option<u64>,
    huge_dir: Option<PathBuf>,
    file_prefix: Option<String>,
    iova_mode: Option<IovaMode>,
    no_pci: bool,
    log_level: Option<LogLevel>,
    mem_channels: Option<u32>,
    help: bool,
    no_telemetry: bool,
    metrics: Option<std::net::SocketAddr>,
    /// First error from a setter, reported by `build`.
    error: Option<OptionsError>,
}

impl EalBuilder {
    /// Keeps the value of `r`, or remembers its error if it is the first one.
    fn record<T>(&mut self, r: Result<T, OptionsError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }

    /// Sets the lcore list from `-l`/`--lcores` syntax as typed for `option`.
    fn lcores_as(mut self, option: &str, list: &str) -> Self {
        let r = parse_lcore_list(list, option == "--lcores")
            .map_err(|reason| invalid(option, list, reason));
        if let Some(l) = self.record(r) {
            self.lcores = Some(l);
        }
        self
    }

    /// Adds a PCI address to the allow (`block == false`) or block list.
    fn pci_as(mut self, option: &str, value: &str, block: bool) -> Self {
        let r = parse_pci_arg(option, value);
        if let Some(addr) = self.record(r) {
            if block {
                self.block.push(addr);
            } else {
                self.allow.push(addr);
            }
        }
        self
    }

    /// Sets the lcores: comma-separated `N`, `N-M` and `N@C` (lcore N on CPU C).
    pub fn lcores(self, list: &str) -> Self {
        self.lcores_as("--lcores", list)
    }

    /// Sets the main lcore; it must be in the lcore list.
    pub fn main_lcore(mut self, id: u32) -> Self {
        self.main_lcore = Some(id);
        self
    }

    /// Adds a virtual device such as `net_null0,size=64`.
    pub fn vdev(mut self, spec: &str) -> Self {
        let r = spec.parse::<VdevSpec>().map_err(OptionsError::from);
        if let Some(v) = self.record(r) {
            self.vdevs.push(v);
        }
        self
    }

    /// Adds a PCI device to the allow list.
    pub fn allow(self, pci: &str) -> Self {
        self.pci_as("--allow", pci, false)
    }

    /// Adds a PCI device to the block list.
    pub fn block(self, pci: &str) -> Self {
        self.pci_as("--block", pci, true)
    }

    /// Serves Prometheus metrics over HTTP at `addr`.
    pub fn metrics(mut self, addr: std::net::SocketAddr) -> Self {
        self.metrics = Some(addr);
        self
    }

    /// Turns the telemetry socket off (or back on).
    pub fn no_telemetry(mut self, on: bool) -> Self {
        self.no_telemetry = on;
        self
    }

    /// Use anonymous memory instead of hugepages.
    pub fn no_huge(mut self, on: bool) -> Self {
        self.no_huge = on;
        self
    }

    /// Sets the memory to preallocate, in MB (must be positive).
    pub fn memory_mb(mut self, mb: u64) -> Self {
        self.memory_mb = Some(mb);
        self
    }

    /// Sets the hugetlbfs directory.
    pub fn huge_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.huge_dir = Some(dir.into());
        self
    }

    /// Sets the runtime file prefix (`[A-Za-z0-9_.-]+`).
    pub fn file_prefix(mut self, prefix: &str) -> Self {
        self.file_prefix = Some(prefix.to_string());
        self
    }

    /// Forces an IOVA mode.
    pub fn iova_mode(mut self, mode: IovaMode) -> Self {
        self.iova_mode = Some(mode);
        self
    }

    /// Disables the PCI bus.
    pub fn no_pci(mut self, on: bool) -> Self {
        self.no_pci = on;
        self
    }

    /// Sets the log level.
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.log_level = Some(level);
        self
    }

    /// Sets the number of memory channels (must be positive; unused).
    pub fn mem_channels(mut self, n: u32) -> Self {
        self.mem_channels = Some(n);
        self
    }

    /// Records that help was requested.
    pub fn help(mut self, on: bool) -> Self {
        self.help = on;
        self
    }

    /// Validates everything and produces the options.
    pub fn build(self) -> Result<EalOptions, OptionsError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        check_conflicts(&self)?;
        let lcores = self.lcores.unwrap_or_else(default_lcores);
        let main_lcore = pick_main_lcore(&lcores, self.main_lcore)?;
        check_unique_pci(&self.allow, "--allow")?;
        check_unique_pci(&self.block, "--block")?;
        check_unique_vdevs(&self.vdevs)?;
        let memory_mb = self.memory_mb.map(check_memory_mb).transpose()?;
        if self.mem_channels == Some(0) {
            return Err(invalid("-n", "0", "must be a positive integer"));
        }
        let file_prefix = self
            .file_prefix
            .unwrap_or_else(|| DEFAULT_FILE_PREFIX.to_string());
        check_file_prefix(&file_prefix)?;
        if let Some(dir) = &self.huge_dir {
            if dir.as_os_str().is_empty() {
                return Err(invalid("--huge-dir", "", "directory must not be empty"));
            }
        }
        Ok(EalOptions {
            lcores,
            main_lcore,
            allow: self.allow,
            block: self.block,
            vdevs: self.vdevs,
            no_huge: self.no_huge,
            memory_mb,
            huge_dir: self.huge_dir,
            file_prefix,
            iova_mode: self.iova_mode,
            no_pci: self.no_pci,
            log_level: self.log_level.unwrap_or_default(),
            mem_channels: self.mem_channels,
            help: self.help,
            no_telemetry: self.no_telemetry,
            metrics: self.metrics,
        })
    }
}

/// Rejects combinations of options that contradict each other.
fn check_conflicts(b: &EalBuilder) -> Result<(), OptionsError> {
    let conflict = |msg: &str| Err(OptionsError::Conflict(msg.to_string()));
    if !b.allow.is_empty() && !b.block.is_empty() {
        return conflict(
            "-a/--allow and -b/--block cannot be used together: use either an allow list or a block list",
        );
    }
    if b.no_pci && !(b.allow.is_empty() && b.block.is_empty()) {
        return conflict("--no-pci cannot be used with -a/--allow or -b/--block: drop one of them");
    }
    if b.no_huge && b.huge_dir.is_some() {
        return conflict("--no-huge and --huge-dir cannot be used together: drop one of them");
    }
    if b.no_huge && b.iova_mode == Some(IovaMode::Pa) {
        return conflict(
            "--no-huge cannot be used with --iova-mode pa: physical addresses need pinned hugepages; use --iova-mode va or drop --no-huge",
        );
    }
    Ok(())
}

/// Returns the requested main lcore if it is in `lcores`, else the lowest id.
fn pick_main_lcore(lcores: &[Lcore], requested: Option<u32>) -> Result<u32, OptionsError> {
    let ids = || lcores.iter().map(|l| l.id);
    match requested {
        Some(id) if ids().any(|x| x == id) => Ok(id),
        Some(id) => Err(invalid(
            "--main-lcore",
            &id.to_string(),
            format!(
                "lcore {id} is not in the lcore list ({}); add it with -l/--lcores",
                ids().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
            ),
        )),
        None => ids()
            .min()
            .ok_or_else(|| invalid("--lcores", "", "the lcore list is empty")),
    }
}

/// Fails if a PCI address appears twice in one list.
fn check_unique_pci(list: &[PciAddr], option: &str) -> Result<(), OptionsError> {
    for (i, a) in list.iter().enumerate() {
        if list.iter().skip(i + 1).any(|b| b == a) {
            return Err(OptionsError::Conflict(format!(
                "PCI device {a} given more than once with {option}"
            )));
        }
    }
    Ok(())
}

/// Fails if two vdevs share a name.
fn check_unique_vdevs(vdevs: &[VdevSpec]) -> Result<(), OptionsError> {
    for (i, v) in vdevs.iter().enumerate() {
        if vdevs.iter().skip(i + 1).any(|w| w.name == v.name) {
            return Err(OptionsError::DuplicateVdev {
                spec: v.to_string(),
                name: v.name.clone(),
                prefix: v.driver_prefix().to_string(),
            });
        }
    }
    Ok(())
}

/// Checks `-m` is positive and small enough to express in bytes.
fn check_memory_mb(mb: u64) -> Result<u64, OptionsError> {
    match mb {
        0 => Err(invalid("-m", "0", "must be a positive number of megabytes")),
        m if m > MAX_MEMORY_MB => Err(invalid(
            "-m",
            &m.to_string(),
            format!("too large (maximum {MAX_MEMORY_MB} MB)"),
        )),
        m => Ok(m),
    }
}

/// Checks the file prefix is a safe, non-empty file-name fragment.
fn check_file_prefix(prefix: &str) -> Result<(), OptionsError> {
    let ok_chars = prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if prefix.is_empty() || !ok_chars || prefix == "." || prefix == ".." {
        return Err(invalid(
            "--file-prefix",
            prefix,
            "must be non-empty and contain only A-Z, a-z, 0-9, '_', '.' and '-' (and not be '.' or '..')",
        ));
    }
    Ok(())
}

/// Parses a PCI address for `-a`/`-b`, rejecting device arguments.
fn parse_pci_arg(option: &str, value: &str) -> Result<PciAddr, OptionsError> {
    if value.contains(',') {
        return Err(invalid(
            option,
            value,
            "device arguments after ',' are not supported yet; pass only the PCI address",
        ));
    }
    Ok(value.parse()?)
}

/// Identifies each EAL option independently of its spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Lcores,
    MainLcore,
    Allow,
    Block,
    Vdev,
    NoHuge,
    Memory,
    HugeDir,
    FilePrefix,
    IovaMode,
    NoPci,
    LogLevel,
    MemChannels,
    Help,
    NoTelemetry,
    Telemetry,
    Metrics,
}

/// Description of one option for parsing and for [`usage`].
struct OptSpec {
    opt: Opt,
    short: Option<char>,
    long: Option<&'static str>,
    value: Option<&'static str>,
    help: &'static str,
}

/// Every EAL option, in the order shown by [`usage`].
const OPTIONS: &[OptSpec] = &[
    OptSpec {
        opt: Opt::Lcores,
        short: Some('l'),
        long: Some("lcores"),
        value: Some("LIST"),
        help:
            "Lcores to run on: N, N-M, comma-separated; --lcores also takes N@C (lcore N on CPU C)",
    },
    OptSpec {
        opt: Opt::MainLcore,
        short: None,
        long: Some("main-lcore"),
        value: Some("ID"),
        help: "Lcore id used as the main lcore (default: lowest lcore id)",
    },
    OptSpec {
        opt: Opt::Allow,
        short: Some('a'),
        long: Some("allow"),
        value: Some("PCI"),
        help: "Add a PCI device (DDDD:BB:DD.F) to the allow list; repeatable",
    },
    OptSpec {
        opt: Opt::Block,
        short: Some('b'),
        long: Some("block"),
        value: Some("PCI"),
        help: "Add a PCI device (DDDD:BB:DD.F) to the block list; repeatable",
    },
    OptSpec {
        opt: Opt::Vdev,
        short: None,
        long: Some("vdev"),
        value: Some("SPEC"),
        help: "Add a virtual device, e.g. net_null0,size=64; repeatable",
    },
    OptSpec {
        opt: Opt::NoTelemetry,
        short: None,
        long: Some("no-telemetry"),
        value: None,
        help: "No telemetry socket (<runtime dir>/dpdk/<file-prefix>/dpdk_telemetry.v2)",
    },
    OptSpec {
        opt: Opt::Telemetry,
        short: None,
        long: Some("telemetry"),
        value: None,
        help: "Open the telemetry socket (the default)",
    },
    OptSpec {
        opt: Opt::Metrics,
        short: None,
        long: Some("metrics"),
        value: Some("IP:PORT"),
        help: "Serve port, queue and mempool counters to Prometheus at http://IP:PORT/metrics",
    },
    OptSpec {
        opt: Opt::NoHuge,
        short: None,
        long: Some("no-huge"),
        value: None,
        help: "Use anonymous memory instead of hugepages",
    },
    OptSpec {
        opt: Opt::Memory,
        short: Some('m'),
        long: None,
        value: Some("MB"),
        help: "Memory to allocate at startup, in megabytes",
    },
    OptSpec {
        opt: Opt::HugeDir,
        short: None,
        long: Some("huge-dir"),
        value: Some("DIR"),
        help: "Directory where hugetlbfs is mounted",
    },
    OptSpec {
        opt: Opt::FilePrefix,
        short: None,
        long: Some("file-prefix"),
        value: Some("NAME"),
        help: "Prefix for runtime and hugepage file names (default: pmd)",
    },
    OptSpec {
        opt: Opt::IovaMode,
        short: None,
        long: Some("iova-mode"),
        value: Some("va|pa"),
        help: "Force IOVA mode: va (virtual addresses) or pa (physical addresses)",
    },
    OptSpec {
        opt: Opt::NoPci,
        short: None,
        long: Some("no-pci"),
        value: None,
        help: "Disable the PCI bus",
    },
    OptSpec {
        opt: Opt::LogLevel,
        short: None,
        long: Some("log-level"),
        value: Some("LEVEL"),
        help: "Log level: error|warn|info|debug|trace, 1-8, or TYPE:LEVEL (default: info)",
    },
    OptSpec {
        opt: Opt::MemChannels,
        short: Some('n'),
        long: None,
        value: Some("N"),
        help: "Number of memory channels (accepted for compatibility, unused)",
    },
    OptSpec {
        opt: Opt::Help,
        short: Some('h'),
        long: Some("help"),
        value: None,
        help: "Show this help",
    },
];

/// How an option was spelled, for error messages: `-l` or `--lcores`.
fn spelled(spec: &OptSpec, short: bool) -> String {
    match (short, spec.short, spec.long) {
        (true, Some(c), _) => format!("-{c}"),
        (_, _, Some(l)) => format!("--{l}"),
        (_, Some(c), None) => format!("-{c}"),
        (_, None, None) => String::new(),
    }
}

/// Help text listing every EAL option, in DPDK's style.
pub fn usage(prog: &str) -> String {
    let mut out = format!("Usage: {prog} [EAL options] -- [application options]\n\nEAL options:\n");
    for spec in OPTIONS {
        let names = match (spec.short, spec.long) {
            (Some(s), Some(l)) => format!("-{s}, --{l}"),
            (Some(s), None) => format!("-{s}"),
            (None, Some(l)) => format!("    --{l}"),
            (None, None) => continue,
        };
        let left = match spec.value {
            Some(v) => format!("{names} {v}"),
            None => names,
        };
        out.push_str(&format!("  {left:<28} {}\n", spec.help));
    }
    out.push_str("\nEverything after '--' is passed to the application unchanged.\n");
    out
}

/// Turns argv items into builder calls.
#[derive(Default)]
struct Parser {
    builder: EalBuilder,
    /// Single-valued options already seen, to reject repeats.
    seen: Vec<Opt>,
}

impl Parser {
    /// Handles one argument before `--`, taking a separate value from `rest` if needed.
    fn argument<'a>(
        &mut self,
        arg: &'a str,
        rest: &mut impl Iterator<Item = &'a str>,
    ) -> Result<(), OptionsError> {
        let (spec, short, attached) = lookup(arg)?;
        let name = spelled(spec, short);
        let value = match (spec.value, attached) {
            (None, None) => None,
            (None, Some(v)) => {
                return Err(invalid(&name, v, "this option takes no value"));
            }
            (Some(_), Some(v)) => Some(v),
            (Some(_), None) => Some(take_value(&name, rest)?),
        };
        self.check_repeat(spec, &name)?;
        self.apply(spec.opt, &name, value.unwrap_or_default())
    }

    /// Rejects a single-valued option given twice.
    fn check_repeat(&mut self, spec: &OptSpec, name: &str) -> Result<(), OptionsError> {
        let repeatable =
            spec.value.is_none() || matches!(spec.opt, Opt::Allow | Opt::Block | Opt::Vdev);
        if repeatable {
            return Ok(());
        }
        if self.seen.contains(&spec.opt) {
            return Err(OptionsError::Conflict(format!(
                "option '{name}' given more than once: give it once"
            )));
        }
        self.seen.push(spec.opt);
        Ok(())
    }

    /// Applies one option to the builder.
    fn apply(&mut self, opt: Opt, name: &str, v: &str) -> Result<(), OptionsError> {
        let b = std::mem::take(&mut self.builder);
        self.builder = match opt {
            Opt::Lcores => b.lcores_as(name, v),
            Opt::MainLcore => b.main_lcore(number(name, v, 0..=u32::MAX)?),
            Opt::Allow => b.pci_as(name, v, false),
            Opt::Block => b.pci_as(name, v, true),
            Opt::Vdev => b.vdev(v),
            Opt::NoHuge => b.no_huge(true),
            Opt::Memory => b.memory_mb(number(name, v, 1..=MAX_MEMORY_MB)?),
            Opt::HugeDir => b.huge_dir(v),
            Opt::FilePrefix => b.file_prefix(v),
            Opt::IovaMode => b.iova_mode(v.parse().map_err(|r: String| invalid(name, v, r))?),
            Opt::NoPci => b.no_pci(true),
            Opt::NoTelemetry => b.no_telemetry(true),
            Opt::Telemetry => b.no_telemetry(false),
            Opt::Metrics => b.metrics(v.parse().map_err(|_| {
                invalid(
                    name,
                    v,
                    "expected IP:PORT, e.g. 127.0.0.1:9100 or [::1]:9100",
                )
            })?),
            Opt::LogLevel => b.log_level(v.parse().map_err(|r: String| invalid(name, v, r))?),
            Opt::MemChannels => b.mem_channels(number(name, v, 1..=u32::MAX)?),
            Opt::Help => b.help(true),
        };
        // Surface setter errors immediately so they are reported in argv order.
        match self.builder.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Parses the numeric value `v` of option `name` through [`numarg::whole`], the check
/// every app and tool shares.
fn number<T>(name: &str, v: &str, range: RangeInclusive<T>) -> Result<T, OptionsError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    numarg::whole(v, range).map_err(|r| invalid(name, v, r))
}

/// Takes the separate value of option `name`, refusing to swallow another option.
fn take_value<'a>(
    name: &str,
    rest: &mut impl Iterator<Item = &'a str>,
) -> Result<&'a str, OptionsError> {
    match rest.next() {
        Some(v) if !(v.starts_with('-') && v.len() > 1) => Ok(v),
        _ => Err(OptionsError::MissingValue(name.to_string())),
    }
}

/// Finds the option spec for `arg`; returns it, whether it was the short
/// spelling, and any attached value (`-l0-3`, `--lcores=0-3`).
fn lookup(arg: &str) -> Result<(&'static OptSpec, bool, Option<&str>), OptionsError> {
    let unknown = || OptionsError::UnknownOption(arg.to_string());
    if let Some(long) = arg.strip_prefix("--") {
        let (name, attached) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (long, None),
        };
        let spec = OPTIONS
            .iter()
            .find(|s| s.long == Some(name))
            .ok_or_else(unknown)?;
        return Ok((spec, false, attached));
    }
    let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) else {
        return Err(OptionsError::UnexpectedArgument(arg.to_string()));
    };
    let mut chars = short.chars();
    let c = chars.next().ok_or_else(unknown)?;
    let spec = OPTIONS
        .iter()
        .find(|s| s.short == Some(c))
        .ok_or_else(unknown)?;
    let rest = chars.as_str();
    Ok((spec, true, (!rest.is_empty()).then_some(rest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ParsedArgs, OptionsError> {
        let mut v = vec!["prog"];
        v.extend_from_slice(args);
        EalOptions::parse(&v)
    }

    fn eal(args: &[&str]) -> EalOptions {
        match parse(args) {
            Ok(p) => p.eal,
            Err(e) => panic!("{args:?} failed: {e}"),
        }
    }

    fn err(args: &[&str]) -> OptionsError {
        match parse(args) {
            Ok(p) => panic!("{args:?} unexpectedly parsed: {p:?}"),
            Err(e) => e,
        }
    }

    fn ids(o: &EalOptions) -> Vec<u32> {
        o.lcores.iter().map(|l| l.id).collect()
    }

    fn lc(id: u32, cpu: u32) -> Lcore {
        Lcore { id, cpu }
    }

    // ---- defaults -------------------------------------------------------

    #[test]
    fn defaults() {
        let p = parse(&[]).unwrap();
        assert_eq!(p.app_args, ["prog"]);
        let o = p.eal;
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(o.lcores.len(), n.min(128));
        assert!(o.lcores.iter().all(|l| l.id == l.cpu));
        assert_eq!(o.main_lcore, 0);
        assert!(o.allow.is_empty() && o.block.is_empty() && o.vdevs.is_empty());
        assert!(!o.no_huge && !o.no_pci && !o.help);
        assert_eq!(o.memory_mb, None);
        assert_eq!(o.huge_dir, None);
        assert_eq!(o.file_prefix, "pmd");
        assert_eq!(o.iova_mode, None);
        assert_eq!(o.log_level, LogLevel::Info);
        assert_eq!(o.mem_channels, None);
        assert_eq!(o, EalOptions::default());
    }

    #[test]
    fn empty_argv_is_fine() {
        let p = EalOptions::parse::<&str>(&[]).unwrap();
        assert!(p.app_args.is_empty());
    }

    // ---- lcores ---------------------------------------------------------

    #[test]
    fn lcores_attached_and_separate() {
        for args in [
            &["-l0-3"][..],
            &["-l", "0-3"],
            &["--lcores=0-3"],
            &["--lcores", "0-3"],
        ] {
            assert_eq!(ids(&eal(args)), [0, 1, 2, 3], "{args:?}");
        }
    }

    #[test]
    fn lcores_list_and_ranges_sorted() {
        let o = eal(&["-l", "7,2-3,0,10-12"]);
        assert_eq!(ids(&o), [0, 2, 3, 7, 10, 11, 12]);
        assert_eq!(o.main_lcore, 0);
        assert_eq!(ids(&eal(&["-l", "5-5"])), [5]);
        assert_eq!(ids(&eal(&["-l", "127"])), [127]);
        assert_eq!(eal(&["-l", "0-127"]).lcores.len(), 128);
    }

    #[test]
    fn lcores_at_mapping() {
        let o = eal(&["--lcores", "1@4,0@2,3"]);
        assert_eq!(o.lcores, [lc(0, 2), lc(1, 4), lc(3, 3)]);
        assert_eq!(o.main_lcore, 0);
        // Several lcores may share a CPU.
        let o = eal(&["--lcores=0@1,1@1"]);
        assert_eq!(o.lcores, [lc(0, 1), lc(1, 1)]);
    }

    #[test]
    fn main_lcore() {
        let o = eal(&["-l", "2-4", "--main-lcore", "3"]);
        assert_eq!(o.main_lcore, 3);
        let o = eal(&["-l", "2-4", "--main-lcore=4"]);
        assert_eq!(o.main_lcore, 4);
        assert_eq!(eal(&["-l", "5,9"]).main_lcore, 5);
    }

    #[test]
    fn main_lcore_not_in_list() {
        let e = err(&["-l", "0-1", "--main-lcore", "5"]);
        let msg = e.to_string();
        assert!(
            matches!(e, OptionsError::InvalidValue { ref option, .. } if option == "--main-lcore")
        );
        assert!(msg.contains("not in the lcore list (0,1)"), "{msg}");
        assert!(matches!(
            err(&["--main-lcore", "x"]),
            OptionsError::InvalidValue { .. }
        ));
        assert!(matches!(
            err(&["--main-lcore", "99999999999"]),
            OptionsError::InvalidValue { .. }
        ));
    }

    #[test]
    fn lcores_errors() {
        let cases: &[&[&str]] = &[
            &["-l", ""],
            &["-l="],
            &["--lcores="],
            &["-l", "0,,1"],
            &["-l", "0,"],
            &["-l", ",0"],
            &["-l", "3-1"],
            &["-l", "128"],
            &["-l", "0-128"],
            &["-l", "0-99999999999"],
            &["-l", "99999999999999999999999"],
            &["-l", "0,0"],
            &["-l", "0-3,2"],
            &["-l", "a"],
            &["-l", "-1"],
            &["-l", "1-"],
            &["-l", "+1"],
            &["-l", " 1"],
            &["-l", "1-2-3"],
            &["-l", "١"],
            &["-l", "0@1"],
            &["--lcores", "0@"],
            &["--lcores", "@1"],
            &["--lcores", "0-1@1"],
            &["--lcores", "0@1@2"],
            &["--lcores", "0@1024"],
            &["--lcores", "0@99999999999"],
            &["--lcores", "200@1"],
            &["--lcores", "0@1,0@2"],
            &["--lcores", "(0-1)@1"],
        ];
        for args in cases {
            assert!(
                matches!(
                    err(args),
                    OptionsError::InvalidValue { .. } | OptionsError::MissingValue(_)
                ),
                "{args:?}"
            );
        }
    }

    #[test]
    fn lcores_error_messages() {
        let m = err(&["-l", "0@1"]).to_string();
        assert!(m.contains("--lcores"), "{m}");
        let m = err(&["-l", "3-1"]).to_string();
        assert!(m.contains("reversed") && m.contains("1-3"), "{m}");
        let m = err(&["-l", "0-99999999999"]).to_string();
        assert!(m.contains("maximum lcore id 127"), "{m}");
        let m = err(&["-l", "1,1"]).to_string();
        assert!(m.contains("more than once"), "{m}");
        let m = err(&["-l", ""]).to_string();
        assert!(m.contains("empty"), "{m}");
        let e = err(&["--lcores", "x"]);
        assert!(
            matches!(e, OptionsError::InvalidValue { ref option, ref value, .. }
            if option == "--lcores" && value == "x")
        );
    }

    #[test]
    fn repeated_single_option_is_error() {
        assert!(matches!(
            err(&["-l", "0", "--lcores", "1"]),
            OptionsError::Conflict(_)
        ));
        assert!(matches!(
            err(&["-m", "1", "-m", "2"]),
            OptionsError::Conflict(_)
        ));
        // Flags may repeat harmlessly.
        assert!(eal(&["--no-pci", "--no-pci"]).no_pci);
    }

    // ---- PCI ------------------------------------------------------------

    #[test]
    fn allow_and_block() {
        let o = eal(&[
            "-a",
            "0000:03:00.0",
            "-a0000:04:00.1",
            "--allow=05:00.0",
            "--allow",
            "06:00.0",
        ]);
        let s: Vec<String> = o.allow.iter().map(ToString::to_string).collect();
        assert_eq!(
            s,
            [
                "0000:03:00.0",
                "0000:04:00.1",
                "0000:05:00.0",
                "0000:06:00.0"
            ]
        );
        let o = eal(&["-b", "0000:03:00.0", "--block=0000:03:00.1"]);
        assert_eq!(o.block.len(), 2);
        assert!(o.allow.is_empty());
    }

    #[test]
    fn pci_errors() {
        assert!(matches!(err(&["-a", "0000:00:1f"]), OptionsError::Pci(_)));
        assert!(matches!(err(&["-b", "zz"]), OptionsError::Pci(_)));
        let m = err(&["-a", "0000:00:1f"]).to_string();
        assert!(m.contains("expected DDDD:BB:DD.F like 0000:03:00.0"), "{m}");
        let e = err(&["-a", "0000:03:00.0,foo=1"]);
        assert!(e.to_string().contains("not supported yet"), "{e}");
        assert!(matches!(
            err(&["-a", "0000:03:00.0", "-b", "0000:04:00.0"]),
            OptionsError::Conflict(_)
        ));
        assert!(matches!(
            err(&["-a", "0000:03:00.0", "-a", "03:00.0"]),
            OptionsError::Conflict(_)
        ));
        assert!(matches!(
            err(&["--no-pci", "-a", "0000:03:00.0"]),
            OptionsError::Conflict(_)
        ));
    }

    // ---- vdevs ----------------------------------------------------------

    #[test]
    fn vdevs_with_args() {
        let o = eal(&[
            "--vdev",
            "net_null0,size=64,copy=1",
            "--vdev=net_ring0",
            "--vdev",
            "net_tap1,iface=",
        ]);
        assert_eq!(o.vdevs.len(), 3);
        let v = &o.vdevs[0];
        assert_eq!(v.name, "net_null0");
        assert_eq!(v.driver_prefix(), "net_null");
        assert_eq!(v.arg("size"), Some("64"));
        assert_eq!(v.arg("copy"), Some("1"));
        assert_eq!(v.arg("nope"), None);
        assert_eq!(v.parse_arg::<u32>("size").unwrap(), Some(64));
        assert_eq!(v.parse_arg::<u32>("nope").unwrap(), None);
        assert!(v.check_known(&["size", "copy"]).is_ok());
        assert_eq!(v.to_string(), "net_null0,size=64,copy=1");
        assert!(o.vdevs[1].args.is_empty());
        assert_eq!(o.vdevs[2].arg("iface"), Some(""));
        assert_eq!(o.vdevs[2].driver_prefix(), "net_tap");
    }

    #[test]
    fn vdev_errors() {
        for spec in crate::devargs::tests::MALFORMED {
            assert!(
                matches!(
                    err(&["--vdev", spec]),
                    OptionsError::Vdev { .. } | OptionsError::MissingValue(_)
                ),
                "{spec:?}"
            );
        }
        let m = err(&["--vdev", "net_null0,size"]).to_string();
        assert!(m.contains("key=value"), "{m}");
        let e = err(&["--vdev", "net_null0", "--vdev", "net_null0,size=1"]);
        assert!(
            e.to_string().contains("duplicate vdev name 'net_null0'"),
            "{e}"
        );
    }

    // ---- memory / misc --------------------------------------------------

    #[test]
    fn memory_and_hugepages() {
        let o = eal(&[
            "-m",
            "512",
            "--huge-dir",
            "/mnt/huge",
            "-n4",
            "--file-prefix=test.1-a_b",
        ]);
        assert_eq!(o.memory_mb, Some(512));
        assert_eq!(o.huge_dir, Some(PathBuf::from("/mnt/huge")));
        assert_eq!(o.mem_channels, Some(4));
        assert_eq!(o.file_prefix, "test.1-a_b");
        let o = eal(&["--no-huge", "-m1024"]);
        assert!(o.no_huge);
        assert_eq!(o.memory_mb, Some(1024));
    }

    #[test]
    fn memory_errors() {
        for args in [
            &["-m", "0"][..],
            &["-m", "-5"],
            &["-m", "abc"],
            &["-m", "1.5"],
            &["-m", "99999999999999999999999"],
            &["-m", "18446744073709551615"],
            &["-m="],
            &["-n", "0"],
            &["-n", "x"],
            &["-n", "4294967296"],
        ] {
            assert!(
                matches!(
                    err(args),
                    OptionsError::InvalidValue { .. } | OptionsError::MissingValue(_)
                ),
                "{args:?}"
            );
        }
    }

    #[test]
    fn file_prefix_errors() {
        for p in [
            "--file-prefix=",
            "--file-prefix=a/b",
            "--file-prefix=..",
            "--file-prefix=a b",
            "--file-prefix=ü",
        ] {
            assert!(
                matches!(err(&[p]), OptionsError::InvalidValue { .. }),
                "{p}"
            );
        }
        assert!(matches!(
            err(&["--huge-dir="]),
            OptionsError::InvalidValue { .. }
        ));
    }

    #[test]
    fn iova_mode() {
        assert_eq!(eal(&["--iova-mode", "va"]).iova_mode, Some(IovaMode::Va));
        assert_eq!(eal(&["--iova-mode=pa"]).iova_mode, Some(IovaMode::Pa));
        assert_eq!(eal(&["--iova-mode=PA"]).iova_mode, Some(IovaMode::Pa));
        assert!(matches!(
            err(&["--iova-mode", "xx"]),
            OptionsError::InvalidValue { .. }
        ));
        assert!(matches!(
            err(&["--iova-mode="]),
            OptionsError::InvalidValue { .. }
        ));
    }

    #[test]
    fn conflicts() {
        let e = err(&["--no-huge", "--huge-dir", "/mnt/huge"]);
        assert!(matches!(e, OptionsError::Conflict(_)), "{e}");
        let e = err(&["--iova-mode", "pa", "--no-huge"]);
        assert!(matches!(e, OptionsError::Conflict(_)));
        assert!(e.to_string().contains("hugepages"));
        assert!(eal(&["--iova-mode", "va", "--no-huge"]).no_huge);
        assert!(eal(&["--no-telemetry"]).no_telemetry);
        assert_eq!(
            eal(&["--metrics", "127.0.0.1:9100"]).metrics,
            Some("127.0.0.1:9100".parse().unwrap())
        );
        let e = parse(&["--metrics", "localhost"]).unwrap_err().to_string();
        assert!(e.contains("--metrics") && e.contains("IP:PORT"), "{e}");
        assert!(!eal(&["--no-telemetry", "--telemetry"]).no_telemetry);
        assert!(!eal(&[]).no_telemetry, "on by default, as in DPDK");
    }

    #[test]
    fn log_levels() {
        let cases = [
            ("error", LogLevel::Error),
            ("WARN", LogLevel::Warn),
            ("warning", LogLevel::Warn),
            ("Info", LogLevel::Info),
            ("debug", LogLevel::Debug),
            ("trace", LogLevel::Trace),
            ("1", LogLevel::Error),
            ("4", LogLevel::Error),
            ("5", LogLevel::Warn),
            ("6", LogLevel::Info),
            ("7", LogLevel::Info),
            ("8", LogLevel::Debug),
            ("pmd.net.*:debug", LogLevel::Debug),
            ("lib.eal:8", LogLevel::Debug),
            ("notice", LogLevel::Info),
        ];
        for (s, want) in cases {
            assert_eq!(eal(&["--log-level", s]).log_level, want, "{s}");
            assert_eq!(s.parse::<LogLevel>(), Ok(want));
        }
        assert_eq!(eal(&["--log-level=trace"]).log_level, LogLevel::Trace);
        for bad in ["", "0", "9", "loud", ":debug", "pmd:", "pmd:9", "-1", "１"] {
            assert!(bad.parse::<LogLevel>().is_err(), "{bad}");
        }
        assert!(matches!(
            err(&["--log-level", "loud"]),
            OptionsError::InvalidValue { .. }
        ));
    }

    #[test]
    fn help_flag() {
        assert!(eal(&["-h"]).help);
        assert!(eal(&["--help"]).help);
        assert!(matches!(
            err(&["--help=yes"]),
            OptionsError::InvalidValue { .. }
        ));
        assert!(matches!(err(&["-hx"]), OptionsError::InvalidValue { .. }));
        assert!(matches!(
            err(&["--no-huge=1"]),
            OptionsError::InvalidValue { .. }
        ));
    }

    // ---- `--` and stray arguments --------------------------------------

    #[test]
    fn double_dash_splits_app_args() {
        let p = parse(&[
            "-l", "0-1", "--", "-l", "5", "--vdev", "x", "--", "--help", "file",
        ])
        .unwrap();
        assert_eq!(ids(&p.eal), [0, 1]);
        assert!(p.eal.vdevs.is_empty() && !p.eal.help);
        assert_eq!(
            p.app_args,
            ["prog", "-l", "5", "--vdev", "x", "--", "--help", "file"]
        );
        let p = parse(&["--"]).unwrap();
        assert_eq!(p.app_args, ["prog"]);
    }

    #[test]
    fn unexpected_and_unknown() {
        let e = err(&["foo", "--", "bar"]);
        assert!(matches!(e, OptionsError::UnexpectedArgument(ref a) if a == "foo"));
        assert!(e.to_string().contains("before '--'"));
        assert!(matches!(err(&["-"]), OptionsError::UnexpectedArgument(_)));
        assert!(matches!(err(&[""]), OptionsError::UnexpectedArgument(_)));
        let e = err(&["--foo"]);
        assert_eq!(
            e.to_string(),
            "unknown EAL option '--foo' (see --help; application options go after '--')"
        );
        assert!(matches!(err(&["-x"]), OptionsError::UnknownOption(_)));
        assert!(matches!(err(&["-é"]), OptionsError::UnknownOption(_)));
        assert!(matches!(err(&["---l"]), OptionsError::UnknownOption(_)));
        assert!(matches!(err(&["--=x"]), OptionsError::UnknownOption(_)));
        assert!(matches!(
            err(&["--LCORES=1"]),
            OptionsError::UnknownOption(_)
        ));
        assert_eq!(err(&["--foo"]).exit_code(), 2);
    }

    #[test]
    fn missing_values() {
        for args in [
            &["-l"][..],
            &["--lcores"],
            &["-a"],
            &["--vdev"],
            &["-m"],
            &["--huge-dir"],
            &["--log-level"],
            &["--main-lcore"],
            &["-n"],
            &["--file-prefix"],
            &["--iova-mode"],
            &["-l", "--no-huge"],
            &["-l", "--"],
        ] {
            let e = err(args);
            assert!(matches!(e, OptionsError::MissingValue(_)), "{args:?}: {e}");
        }
        assert_eq!(
            err(&["--lcores"]).to_string(),
            "option '--lcores' requires a value (see --help)"
        );
        assert_eq!(
            err(&["-l"]).to_string(),
            "option '-l' requires a value (see --help)"
        );
    }

    #[test]
    fn unicode_junk() {
        for a in [
            "ß",
            "-ß",
            "--ß",
            "--vdev=日本",
            "-l٣",
            "--log-level=💥",
            "-a💥",
            "\u{0}",
            "-\u{0}",
        ] {
            assert!(parse(&[a]).is_err(), "{a:?}");
        }
    }

    // ---- builder --------------------------------------------------------

    #[test]
    fn builder_happy_path() {
        let o = EalOptions::builder()
            .lcores("0@2,1-2")
            .main_lcore(1)
            .vdev("net_null0,size=64")
            .allow("0000:03:00.0")
            .no_huge(true)
            .memory_mb(256)
            .file_prefix("t")
            .iova_mode(IovaMode::Va)
            .no_pci(false)
            .log_level(LogLevel::Debug)
            .build()
            .unwrap();
        assert_eq!(o.lcores, [lc(0, 2), lc(1, 1), lc(2, 2)]);
        assert_eq!(o.main_lcore, 1);
        assert_eq!(o.vdevs[0].name, "net_null0");
        assert_eq!(o.allow[0].to_string(), "0000:03:00.0");
        assert_eq!(o.memory_mb, Some(256));
        assert_eq!(o.log_level, LogLevel::Debug);
        assert_eq!(o.file_prefix, "t");
    }

    #[test]
    fn builder_matches_parser() {
        let b = EalOptions::builder()
            .lcores("0-1")
            .vdev("net_ring0")
            .huge_dir("/mnt/h")
            .log_level(LogLevel::Warn)
            .build()
            .unwrap();
        let p = eal(&[
            "-l",
            "0-1",
            "--vdev",
            "net_ring0",
            "--huge-dir",
            "/mnt/h",
            "--log-level",
            "warn",
        ]);
        assert_eq!(b, p);
    }

    #[test]
    fn builder_validates() {
        assert!(EalOptions::builder().lcores("3-1").build().is_err());
        assert!(EalOptions::builder()
            .lcores("0-1")
            .main_lcore(9)
            .build()
            .is_err());
        assert!(EalOptions::builder().memory_mb(0).build().is_err());
        assert!(EalOptions::builder().memory_mb(u64::MAX).build().is_err());
        assert!(EalOptions::builder().mem_channels(0).build().is_err());
        assert!(EalOptions::builder().file_prefix("").build().is_err());
        assert!(EalOptions::builder().huge_dir("").build().is_err());
        assert!(EalOptions::builder().vdev("a,b").build().is_err());
        assert!(EalOptions::builder().vdev("a").vdev("a").build().is_err());
        assert!(EalOptions::builder().allow("nope").build().is_err());
        assert!(EalOptions::builder()
            .allow("00:00.0")
            .block("00:01.0")
            .build()
            .is_err());
        assert!(EalOptions::builder()
            .no_huge(true)
            .huge_dir("/x")
            .build()
            .is_err());
        assert!(EalOptions::builder()
            .no_huge(true)
            .iova_mode(IovaMode::Pa)
            .build()
            .is_err());
        // The first setter error wins.
        let e = EalOptions::builder()
            .lcores("x")
            .vdev(",")
            .build()
            .unwrap_err();
        assert!(matches!(e, OptionsError::InvalidValue { .. }));
    }

    // ---- usage ----------------------------------------------------------

    #[test]
    fn usage_lists_every_option() {
        let u = usage("myapp");
        assert!(u.starts_with("Usage: myapp [EAL options] -- [application options]"));
        for opt in [
            "-l, --lcores",
            "--main-lcore",
            "-a, --allow",
            "-b, --block",
            "--vdev",
            "--no-huge",
            "-m MB",
            "--huge-dir",
            "--file-prefix",
            "--iova-mode",
            "--no-pci",
            "--log-level",
            "-n N",
            "-h, --help",
        ] {
            assert!(u.contains(opt), "usage lacks {opt}:\n{u}");
        }
    }

    // ---- never panic ----------------------------------------------------

    /// Minimal deterministic linear congruential generator.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const TOKENS: &[&str] = &[
        "-l",
        "--lcores",
        "--main-lcore",
        "-a",
        "-b",
        "--allow",
        "--block",
        "--vdev",
        "--no-huge",
        "-m",
        "--huge-dir",
        "--file-prefix",
        "--iova-mode",
        "--no-pci",
        "--log-level",
        "-n",
        "-h",
        "--help",
        "--",
        "-",
        "",
        "0",
        "0-3",
        "3-0",
        "1@2",
        "0-99999999999",
        "127",
        "128",
        "va",
        "pa",
        "debug",
        "pmd:8",
        "0000:03:00.0",
        "03:00.0",
        "0000:00:1f",
        "net_null0,size=64",
        "a,b",
        "=",
        ",",
        "@",
        "-1",
        "/mnt",
        "é",
        "💥",
        "\u{0}",
        "--x=",
        "-l0",
        "-a,",
        "--vdev=",
    ];
    const CHARS: &[char] = &[
        '-', '=', ',', '@', ':', '.', '0', '9', 'a', 'l', 'm', 'x', ' ', 'é', '💥',
    ];

    fn random_arg(rng: &mut Lcg) -> String {
        match rng.below(3) {
            0 => TOKENS[rng.below(TOKENS.len())].to_string(),
            1 => (0..rng.below(8))
                .map(|_| CHARS[rng.below(CHARS.len())])
                .collect(),
            _ => {
                let a = TOKENS[rng.below(TOKENS.len())];
                let b = TOKENS[rng.below(TOKENS.len())];
                format!("{a}{b}")
            }
        }
    }

    #[test]
    fn random_argv_never_panics() {
        let mut rng = Lcg(0x5eed);
        let mut ok = 0;
        for _ in 0..20_000 {
            let len = rng.below(7);
            let mut argv = vec!["prog".to_string()];
            argv.extend((0..len).map(|_| random_arg(&mut rng)));
            match EalOptions::parse(&argv) {
                Ok(p) => {
                    ok += 1;
                    assert_eq!(p.app_args.first().map(String::as_str), Some("prog"));
                    assert!(p.eal.lcores.iter().any(|l| l.id == p.eal.main_lcore));
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    assert_eq!(e.exit_code(), 2);
                }
            }
        }
        assert!(ok > 0, "some random argv should parse");
    }
}
