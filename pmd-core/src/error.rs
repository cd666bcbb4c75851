//! The error type shared by the EAL, the mempool and the ethdev layer.

use crate::options::OptionsError;

/// Result alias used throughout `pmd-core` and the drivers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong outside the hot path. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed or conflicting EAL option.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// Memory could not be reserved or mapped.
    #[error("memory: {0}")]
    Memory(String),
    /// A mempool could not be created, or is exhausted.
    #[error("mempool {pool}: {msg}")]
    Mempool {
        /// Pool name.
        pool: String,
        /// What happened.
        msg: String,
    },
    /// An lcore could not be claimed or started.
    #[error("lcore {lcore}: {msg}")]
    Lcore {
        /// Lcore id.
        lcore: u32,
        /// What happened.
        msg: String,
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
    /// An application-level configuration that cannot work (e.g. an odd port count).
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

    /// The process exit code an application should use for this error
    /// (2 for command-line mistakes, 1 otherwise).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Options(_) | Error::Config(_) => 2,
            Error::Help(_) => 0,
            _ => 1,
        }
    }
}
