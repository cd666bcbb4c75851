//! `hugepage-setup`: reserve hugepages, mount and unmount hugetlbfs, and show the state of
//! both, for the framework's EAL.
//!
//! ```text
//! hugepage-setup status [--json]
//! hugepage-setup reserve 1024            # 1024 pages of the default size
//! hugepage-setup reserve 2G --page-size 1G --node 0
//! hugepage-setup mount /mnt/huge [--page-size 2M]
//! hugepage-setup unmount /mnt/huge
//! ```

mod hugepages;

use clap::{Parser, Subcommand};
use hugepages::{Amount, SysPaths};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "hugepage-setup",
    about = "Reserve hugepages and mount hugetlbfs for pmd-core applications"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show hugepage pools (per size and NUMA node), hugetlbfs mounts and the memlock limit.
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
        #[arg(long)]
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let sys = SysPaths::system();
    let result = match cli.cmd {
        Cmd::Status { json } => hugepages::status(&sys).map(|s| {
            if json {
                println!("{}", s.to_json());
            } else {
                print!("{}", s.to_text());
            }
        }),
        Cmd::Reserve {
            amount,
            page_size,
            node,
        } => Amount::parse(&amount)
            .and_then(|a| hugepages::reserve(&sys, a, page_size.as_deref(), node))
            .map(|msg| println!("{msg}")),
        Cmd::Mount { dir, page_size } => {
            hugepages::mount(&dir, page_size.as_deref()).map(|msg| println!("{msg}"))
        }
        Cmd::Unmount { dir } => hugepages::unmount(&dir).map(|msg| println!("{msg}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hugepage-setup: {e}");
            ExitCode::FAILURE
        }
    }
}
