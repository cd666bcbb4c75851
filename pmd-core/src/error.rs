//! The errors of `pmd-core`: [`Error`], which every fallible call outside the hot path
//! returns, and one typed enum per subsystem that it carries (the EAL command line, vdev
//! arguments, memory, mempools and lcores). Each message says what to do.

use crate::pci::addr::PciAddrError;
use std::path::PathBuf;

/// Result alias used throughout `pmd-core` and the drivers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong outside the hot path. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed or conflicting EAL option.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// A vdev argument its driver does not know or cannot use.
    #[error(transparent)]
    Devargs(#[from] DevargsError),
    /// Memory could not be reserved, mapped or pinned.
    #[error("memory: {0}")]
    Memory(#[from] MemoryError),
    /// A mempool could not be created.
    #[error("mempool {pool}: {reason}")]
    Mempool {
        /// Pool name.
        pool: String,
        /// What happened.
        #[source]
        reason: MempoolError,
    },
    /// An lcore could not be claimed or started.
    #[error("lcore {lcore}: {reason}")]
    Lcore {
        /// Lcore id.
        lcore: u32,
        /// What happened.
        #[source]
        reason: LcoreError,
    },
    /// An ethdev call made in the wrong port state (e.g. start before configure).
    #[error("port {port}: cannot {op} while the port is {state}{hint}")]
    PortState {
        /// Port id.
        port: u16,
        /// The operation attempted.
        op: &'static str,
        /// The state the port was in.
        state: &'static str,
        /// What to do instead (starts with "; " when present).
        hint: &'static str,
    },
    /// An invalid argument to an ethdev call (queue id out of range, ...).
    #[error("port {port}: {msg}")]
    Port {
        /// Port id.
        port: u16,
        /// What happened.
        msg: String,
    },
    /// A driver failed to probe or operate a device.
    #[error("{driver}: {msg}")]
    Driver {
        /// Driver or device name.
        driver: String,
        /// What happened.
        msg: String,
    },
    /// A PCI device could not be found, opened or driven (the message says why and what
    /// to do).
    #[error(transparent)]
    Pci(#[from] crate::pci::error::PciError),
    /// An application-level configuration that cannot work (e.g. a portmask naming a port
    /// that does not exist).
    #[error("{0}")]
    Config(String),
    /// `-h`/`--help` was given: print this text and exit with code 0.
    #[error("{0}")]
    Help(String),
    /// A system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Builds a [`Error::Driver`] error.
    pub fn driver(driver: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Driver {
            driver: driver.into(),
            msg: msg.into(),
        }
    }

    /// Builds an [`Error::Io`] from the current `errno`.
    pub fn last_os(context: impl Into<String>) -> Self {
        Error::Io {
            context: context.into(),
            source: std::io::Error::last_os_error(),
        }
    }

    /// Builds an [`Error::Io`] from an `io::Error`.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Builds an [`Error::Mempool`] for pool `pool`.
    pub fn mempool(pool: impl Into<String>, reason: MempoolError) -> Self {
        Error::Mempool {
            pool: pool.into(),
            reason,
        }
    }

    /// Builds an [`Error::Lcore`] for lcore `lcore`.
    pub fn lcore(lcore: u32, reason: LcoreError) -> Self {
        Error::Lcore { lcore, reason }
    }

    /// The process exit code an application should use for this error
    /// (2 for command-line mistakes, 1 otherwise).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Options(_) | Error::Config(_) => 2,
            Error::Pci(crate::pci::PciError::NotNetwork { .. }) => 2,
            Error::Devargs(e) => e.exit_code(),
            Error::Help(_) => 0,
            _ => 1,
        }
    }
}

/// Errors from parsing or validating EAL options. Each message says what was
/// typed and how to fix it.
#[derive(thiserror::Error, Debug)]
pub enum OptionsError {
    /// An argument starting with `-` that is not an EAL option.
    #[error("unknown EAL option '{0}' (see --help; application options go after '--')")]
    UnknownOption(String),
    /// An option that needs a value was the last argument or was followed by another option.
    #[error("option '{0}' requires a value (see --help)")]
    MissingValue(String),
    /// An option value that could not be parsed or is out of range.
    #[error("invalid value '{value}' for option '{option}': {reason}")]
    InvalidValue {
        /// The option as typed, e.g. `-l` or `--lcores`.
        option: String,
        /// The value as typed.
        value: String,
        /// Why it was rejected and what is expected.
        reason: String,
    },
    /// Options that cannot be used together, or an option given twice.
    #[error("{0}")]
    Conflict(String),
    /// A non-option argument before `--`.
    #[error(
        "unexpected argument '{0}' before '--': EAL options come first, then '--', then application options"
    )]
    UnexpectedArgument(String),
    /// A malformed `--vdev` specification.
    #[error(transparent)]
    Vdev(#[from] VdevSpecError),
    /// Two `--vdev` options name the same device.
    #[error(
        "invalid --vdev '{spec}': duplicate vdev name '{name}': give each --vdev a unique name like {prefix}0, {prefix}1"
    )]
    DuplicateVdev {
        /// The first specification with that name, as given.
        spec: String,
        /// The device name given twice.
        name: String,
        /// Its driver prefix (the name without trailing digits).
        prefix: String,
    },
    /// A malformed PCI address in `-a` / `-b`.
    #[error(transparent)]
    Pci(#[from] PciAddrError),
}

impl OptionsError {
    /// Process exit code for a command-line usage error (always 2).
    pub fn exit_code(&self) -> i32 {
        2
    }
}

/// A virtual device specification that is not `NAME[,key=value...]`.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("invalid --vdev '{spec}': {reason}")]
pub struct VdevSpecError {
    /// The specification as typed.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A vdev argument that its driver does not know, or whose value it cannot use.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum DevargsError {
    /// Arguments the driver does not know.
    #[error(
        "vdev '{vdev}': unknown argument(s) {}; known arguments: {}",
        quoted_list(unknown),
        quoted_list(known)
    )]
    Unknown {
        /// Name of the vdev, e.g. `net_null0`.
        vdev: String,
        /// Keys that the driver does not recognise.
        unknown: Vec<String>,
        /// Keys the driver accepts.
        known: Vec<String>,
    },
    /// A value that is not of the argument's type (not a number, not a MAC address, ...).
    #[error("vdev '{vdev}': invalid value '{value}' for argument '{key}': {reason}")]
    Malformed {
        /// Name of the vdev.
        vdev: String,
        /// The argument key.
        key: String,
        /// The value as typed.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A number outside the range the driver accepts.
    #[error("{vdev}: {key}={value} is out of range: use {range}")]
    OutOfRange {
        /// Name of the vdev.
        vdev: String,
        /// The argument key.
        key: String,
        /// The value as typed.
        value: String,
        /// The accepted range, e.g. `1..=16`.
        range: String,
    },
    /// A value of the right type that the driver cannot use.
    #[error("{vdev}: {key}={value}: {expected}")]
    Rejected {
        /// Name of the vdev.
        vdev: String,
        /// The argument key.
        key: String,
        /// The value as typed.
        value: String,
        /// What to give instead.
        expected: String,
    },
    /// A required argument that was not given.
    #[error("{vdev}: missing argument '{key}': {hint}")]
    Missing {
        /// Name of the vdev.
        vdev: String,
        /// The argument key.
        key: String,
        /// What to give, with an example.
        hint: String,
    },
    /// An argument given with an empty value where one is needed.
    #[error("{vdev}: argument '{key}' is empty: {hint}")]
    Empty {
        /// Name of the vdev.
        vdev: String,
        /// The argument key.
        key: String,
        /// What to give.
        hint: String,
    },
}

impl DevargsError {
    /// Process exit code: 2 for an unknown key or a value of the wrong type (found while
    /// parsing), 1 for a value its driver refuses (found while probing).
    pub fn exit_code(&self) -> i32 {
        match self {
            DevargsError::Unknown { .. } | DevargsError::Malformed { .. } => 2,
            _ => 1,
        }
    }
}

/// The `pmd-setup reserve` command that reserves `pages` pages of `size_kb` kB. 2 MiB
/// pages, the size `pmd-setup reserve` takes by default on x86, need no option; any other
/// size is named with `--page-size` (e.g. `1G`), so the advice never shrinks the 2 MiB
/// pool to grow another.
fn reserve_advice(pages: u64, size_kb: usize) -> String {
    const DEFAULT_KB: usize = 2048;
    if size_kb == DEFAULT_KB {
        return format!("pmd-setup reserve {pages}");
    }
    let size = match size_kb {
        kb if kb % (1 << 20) == 0 => format!("{}G", kb >> 20),
        kb if kb % (1 << 10) == 0 => format!("{}M", kb >> 10),
        kb => format!("{kb}K"),
    };
    format!("pmd-setup reserve {pages} --page-size {size}")
}

/// Formats `["a", "b"]` as `'a', 'b'` (or `none`).
fn quoted_list<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    items
        .iter()
        .map(|s| format!("'{}'", s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why memory could not be reserved, mapped or pinned for DMA.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum MemoryError {
    /// A segment of no bytes was asked for.
    #[error("{segment}: zero-length segment requested")]
    ZeroLength {
        /// What the segment was for.
        segment: String,
    },
    /// `mmap` succeeded but returned address 0.
    #[error("mmap returned NULL")]
    NullMapping,
    /// The `-m` budget would be exceeded.
    #[error(
        "memory limit exceeded: {in_use_mib} MiB in use, {requested_mib} MiB more requested, -m allows {limit_mib} MiB; raise -m"
    )]
    LimitExceeded {
        /// MiB held by live segments.
        in_use_mib: u64,
        /// MiB asked for (rounded up).
        requested_mib: u64,
        /// The `-m` limit in MiB.
        limit_mib: u64,
    },
    /// Too few free hugepages of the size a segment needs.
    #[error(
        "not enough free hugepages for {segment}: need {need} x {size_kb} kB, {free} free. \
         Reserve them with `echo {total_needed} > /sys/kernel/mm/hugepages/hugepages-{size_kb}kB/nr_hugepages` \
         (or `{}`), or run with --no-huge",
        reserve_advice(*total_needed, *size_kb)
    )]
    HugepageShortage {
        /// What the segment was for.
        segment: String,
        /// Pages the segment needs.
        need: usize,
        /// Page size in KiB.
        size_kb: usize,
        /// Free pages of that size.
        free: u64,
        /// Pages to reserve in total (those in use plus `need`).
        total_needed: u64,
    },
    /// No hugepage is free at all (checked at EAL init).
    #[error(
        "no free hugepages. Reserve some with `echo 1024 > /sys/kernel/mm/hugepages/hugepages-{size_kb}kB/nr_hugepages` \
         (or `{}`), or run with --no-huge",
        reserve_advice(1024, *size_kb)
    )]
    NoFreeHugepages {
        /// The default hugepage size in KiB.
        size_kb: usize,
    },
    /// The kernel reports no hugepage size.
    #[error("this kernel has no hugepage support; run with --no-huge")]
    NoHugepageSupport,
    /// `--huge-dir` is not a hugetlbfs mount point.
    #[error(
        "--huge-dir {} is not a hugetlbfs mount; mount one with `mount -t hugetlbfs -o pagesize=2M nodev {}` or `pmd-setup mount {}`",
        dir.display(),
        dir.display(),
        dir.display()
    )]
    NotHugetlbfs {
        /// The directory given.
        dir: PathBuf,
    },
    /// `/proc/self/pagemap` hides physical addresses (not root).
    #[error("physical addresses are unavailable (needs root / CAP_SYS_ADMIN); use --iova-mode va")]
    NoPhysicalAddresses,
    /// Pinning memory for DMA would exceed `RLIMIT_MEMLOCK`.
    #[error(
        "memlock limit {limit_kib} KiB is below the {pin_kib} KiB to pin for DMA: raise it (`ulimit -l unlimited`)"
    )]
    MemlockLimit {
        /// The soft limit in KiB.
        limit_kib: u64,
        /// KiB that would be pinned.
        pin_kib: u64,
    },
    /// A segment whose IOVAs are not contiguous cannot be one IOMMU mapping.
    #[error(
        "segment {segment} is not IOVA-contiguous and cannot be mapped in one IOMMU mapping; run with --iova-mode va"
    )]
    NotIovaContiguous {
        /// The segment's name.
        segment: String,
    },
    /// A segment's IOVA range wraps around the address space.
    #[error("segment IOVA overflows")]
    IovaOverflow,
    /// A segment's IOVA range overlaps one already mapped for DMA.
    #[error(
        "segment {segment} (iova {iova:#x}+{len:#x}) overlaps an existing DMA mapping at {existing:#x}"
    )]
    DmaOverlap {
        /// The segment's name.
        segment: String,
        /// Its first IOVA.
        iova: u64,
        /// Its length in bytes.
        len: u64,
        /// The IOVA of the mapping it overlaps.
        existing: u64,
    },
}

/// Why a mempool could not be created.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum MempoolError {
    /// A pool of no buffers.
    #[error("a pool needs at least one buffer")]
    NoBuffers,
    /// More buffers than a pool counts.
    #[error("{size} buffers is too many (at most {max})")]
    TooManyBuffers {
        /// Buffers asked for.
        size: u32,
        /// The most a pool holds.
        max: u32,
    },
    /// A per-lcore cache above the largest cache size.
    #[error("cache size {cache_size} exceeds the maximum {max}")]
    CacheTooLarge {
        /// Cache size asked for.
        cache_size: u32,
        /// The largest cache size.
        max: u32,
    },
    /// A per-lcore cache larger than the pool.
    #[error("cache size {cache_size} exceeds the pool size {size}")]
    CacheExceedsPool {
        /// Cache size asked for.
        cache_size: u32,
        /// Pool size asked for.
        size: u32,
    },
    /// Buffers too small for the headroom in front of the data.
    #[error("buffer size {buf_size} is below the {headroom}-byte headroom")]
    BufferBelowHeadroom {
        /// Buffer size asked for.
        buf_size: u16,
        /// The headroom every buffer keeps.
        headroom: u16,
    },
    /// The pool's ring cannot have that many slots.
    #[error("pool too large")]
    TooLarge,
}

/// Why an lcore could not be claimed or started.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum LcoreError {
    /// The id is not below the number of lcores.
    #[error("lcore ids must be below {max}")]
    IdOutOfRange {
        /// The number of lcore ids.
        max: usize,
    },
    /// Another live thread holds the id.
    #[error("already in use by another thread")]
    InUse,
    /// The calling thread already holds an lcore id.
    #[error("this thread already is lcore {current}")]
    ThreadAlreadyLcore {
        /// The id it holds.
        current: u32,
    },
    /// The main lcore is not one of the lcores.
    #[error("main lcore is not in the lcore list")]
    MainNotInList,
    /// The lcore's CPU is not online.
    #[error(
        "CPU {cpu} is not online (online CPUs: {}); pick lcores with -l among them",
        online.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    )]
    CpuOffline {
        /// The CPU asked for.
        cpu: u32,
        /// The CPUs that are online.
        online: Vec<u32>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsystem_messages_read_as_before() {
        let e = Error::lcore(3, LcoreError::InUse);
        assert_eq!(e.to_string(), "lcore 3: already in use by another thread");
        let e = Error::mempool("p", MempoolError::NoBuffers);
        assert_eq!(e.to_string(), "mempool p: a pool needs at least one buffer");
        let e = Error::from(MemoryError::NoFreeHugepages { size_kb: 2048 });
        assert_eq!(
            e.to_string(),
            "memory: no free hugepages. Reserve some with `echo 1024 > \
             /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages` (or `pmd-setup \
             reserve 1024`), or run with --no-huge"
        );
        let e = Error::from(MemoryError::NoFreeHugepages { size_kb: 1 << 20 });
        assert_eq!(
            e.to_string(),
            "memory: no free hugepages. Reserve some with `echo 1024 > \
             /sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages` (or `pmd-setup \
             reserve 1024 --page-size 1G`), or run with --no-huge"
        );
        let shortage = |size_kb| MemoryError::HugepageShortage {
            segment: "mempool mbuf_pool".into(),
            need: 3,
            size_kb,
            free: 1,
            total_needed: 7,
        };
        assert_eq!(
            shortage(2048).to_string(),
            "not enough free hugepages for mempool mbuf_pool: need 3 x 2048 kB, 1 free. \
             Reserve them with `echo 7 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages` \
             (or `pmd-setup reserve 7`), or run with --no-huge"
        );
        assert_eq!(
            shortage(1048576).to_string(),
            "not enough free hugepages for mempool mbuf_pool: need 3 x 1048576 kB, 1 free. \
             Reserve them with `echo 7 > /sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages` \
             (or `pmd-setup reserve 7 --page-size 1G`), or run with --no-huge"
        );
        assert!(shortage(64)
            .to_string()
            .contains("`pmd-setup reserve 7 --page-size 64K`"));
        assert!(shortage(32768)
            .to_string()
            .contains("`pmd-setup reserve 7 --page-size 32M`"));
        let e = LcoreError::CpuOffline {
            cpu: 9,
            online: vec![0, 1],
        };
        assert_eq!(
            e.to_string(),
            "CPU 9 is not online (online CPUs: 0,1); pick lcores with -l among them"
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Error::Config("x".into()).exit_code(), 2);
        assert_eq!(Error::Help("x".into()).exit_code(), 0);
        assert_eq!(Error::driver("d", "x").exit_code(), 1);
        let unknown = DevargsError::Unknown {
            vdev: "v".into(),
            unknown: vec![],
            known: vec![],
        };
        assert_eq!(Error::from(unknown).exit_code(), 2);
        let range = DevargsError::OutOfRange {
            vdev: "v".into(),
            key: "k".into(),
            value: "0".into(),
            range: "1..=2".into(),
        };
        assert_eq!(Error::from(range).exit_code(), 1);
    }
}
