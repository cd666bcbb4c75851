//! The command line: `pmd-setup status|reserve|mount|unmount|bind|unbind|sriov|noiommu`.

use crate::devices::{self, Host};
use crate::error::Failure;
use crate::hugepages::{self, Amount, SysPaths};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use pmd_core::numarg;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "pmd-setup",
    about = "Reserve hugepages, mount hugetlbfs and bind PCI devices for pmd-core applications"
)]
struct Cli {
    /// Test support: read and write sys/, dev/, proc/ and run/ under DIR instead of `/`.
    /// With anything but `/`, interface state comes from DIR/test-net/IFACE files and the
    /// kernel's driver binding is emulated.
    #[arg(
        long,
        global = true,
        hide = true,
        value_name = "DIR",
        default_value = "/"
    )]
    sysfs_root: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

/// `on` / `off`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum OnOff {
    On,
    Off,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show hugepage pools (per size and NUMA node), hugetlbfs mounts, the memlock limit,
    /// PCI network devices and the kernel's support for user-space device access.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Reserve hugepages: a page count (`1024`) or a total size (`2G`, `512M`).
    Reserve {
        /// Pages, or a size with a K/M/G suffix.
        amount: String,
        /// Page size (default: the kernel's default hugepage size).
        #[arg(long)]
        page_size: Option<String>,
        /// Reserve on this NUMA node only.
        #[arg(long, value_parser = |s: &str| numarg::whole(s, 0..=u32::MAX))]
        node: Option<u32>,
    },
    /// Mount hugetlbfs at DIR (created if missing).
    Mount {
        /// Mount point.
        dir: PathBuf,
        /// Page size of the mount (default: the kernel's default).
        #[arg(long)]
        page_size: Option<String>,
    },
    /// Unmount the hugetlbfs at DIR.
    Unmount {
        /// Mount point.
        dir: PathBuf,
    },
    /// Bind a PCI device to DRIVER (vfio-pci, uio_pci_generic, ...), remembering its
    /// current driver for `unbind`. Devices that are not network controllers, and devices
    /// with an active interface, are refused.
    Bind {
        /// PCI address, e.g. 0000:03:00.0.
        addr: String,
        /// Target driver.
        driver: String,
        /// Bind even if the device is not a network controller or looks in use (active
        /// interface).
        #[arg(long)]
        force: bool,
    },
    /// Give a device back to the driver it had before `bind` (or, with no record, just
    /// detach it from its driver).
    Unbind {
        /// PCI address, e.g. 0000:03:00.0.
        addr: String,
        /// Detach even if the device looks in use (only matters without a record).
        #[arg(long)]
        force: bool,
    },
    /// Set the number of SR-IOV virtual functions of the physical function PF (0 removes
    /// them) and list them. Refused while PF's interface is active (the change resets the
    /// PF) or while a VF to be removed is bound to vfio-pci or uio_pci_generic.
    Sriov {
        /// PCI address of the physical function, e.g. 0000:01:00.0.
        pf: String,
        /// Number of VFs: 0 removes them; at most the PF's sriov_totalvfs.
        #[arg(value_parser = |s: &str| numarg::whole(s, 0..=u32::from(u16::MAX)))]
        n: u32,
        /// Change the VFs even if PF's interface is active (its link drops for a moment)
        /// or a VF is bound to a user-space driver.
        #[arg(long)]
        force: bool,
    },
    /// Show, or turn on/off, vfio's unsafe no-IOMMU mode (no DMA isolation!).
    Noiommu {
        /// New state; omit to show the current one.
        state: Option<OnOff>,
    },
}

fn status(cli: &Cli, json: bool) -> Result<(), String> {
    let sys = SysPaths::under(&cli.sysfs_root);
    let host = Host::new(&cli.sysfs_root);
    let huge = hugepages::status(&sys)?;
    let pci = devices::pci_status(&host.root, host.net.as_ref())?;
    if json {
        println!("{}", huge.to_json_with(&pci.json_fields()));
    } else {
        print!("{}{}", huge.to_text(), pci.to_text());
        if pci.kernel.noiommu_enabled {
            eprintln!("{}", devices::NOIOMMU_WARNING);
        }
    }
    Ok(())
}

/// Runs the parsed command; the error carries its message and exit status.
fn execute(cli: &Cli) -> Result<(), Failure> {
    match &cli.cmd {
        Cmd::Status { json } => status(cli, *json)?,
        Cmd::Reserve {
            amount,
            page_size,
            node,
        } => {
            let a = Amount::parse(amount).map_err(Failure::refused)?;
            println!(
                "{}",
                hugepages::reserve(
                    &SysPaths::under(&cli.sysfs_root),
                    a,
                    page_size.as_deref(),
                    *node,
                )?
            )
        }
        Cmd::Mount { dir, page_size } => {
            println!("{}", hugepages::mount(dir, page_size.as_deref())?)
        }
        Cmd::Unmount { dir } => println!("{}", hugepages::unmount(dir)?),
        Cmd::Bind {
            addr,
            driver,
            force,
        } => println!(
            "{}",
            devices::bind_cmd(&mut Host::new(&cli.sysfs_root), addr, driver, *force)?
        ),
        Cmd::Unbind { addr, force } => println!(
            "{}",
            devices::unbind_cmd(&mut Host::new(&cli.sysfs_root), addr, *force)?
        ),
        Cmd::Sriov { pf, n, force } => println!(
            "{}",
            devices::sriov_cmd(&mut Host::new(&cli.sysfs_root), pf, *n, *force)?
        ),
        Cmd::Noiommu { state } => {
            let (msg, warn) = devices::noiommu_cmd(
                &mut Host::new(&cli.sysfs_root),
                state.map(|s| s == OnOff::On),
            )?;
            println!("{msg}");
            if warn {
                eprintln!("{}", devices::NOIOMMU_WARNING);
            }
        }
    }
    Ok(())
}

/// Parses the command line and runs the command, as the program `name` (the name that
/// prefixes messages and shows in the usage: `pmd-setup`, or the old `hugepage-setup`).
pub fn run(name: &'static str) -> ExitCode {
    let matches = Cli::command().name(name).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = execute(&cli);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{name}: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
