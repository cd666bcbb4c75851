//! [`NetifError`]: what an interface request can fail with.

use std::io;

/// A failed interface request. Converting it into an [`io::Error`] keeps the OS error of
/// the failed call (so `errno`-based messages and checks read as before).
#[derive(Debug, thiserror::Error)]
pub enum NetifError {
    /// The name cannot name an interface: empty, longer than
    /// [`IFNAME_MAX`](super::IFNAME_MAX) bytes, or with a NUL byte.
    #[error("invalid interface name '{name}': 1 to 15 bytes, without NUL")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// No interface of that name in the network namespace of the request's socket
    /// (`ENODEV`).
    #[error("no interface '{name}' ({request})")]
    NotFound {
        /// The interface name.
        name: String,
        /// The request that found no interface (`SIOCGIFINDEX`, ...).
        request: &'static str,
    },
    /// The socket that carries interface requests could not be opened.
    #[error("socket for interface ioctls: {source}")]
    Socket {
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused or failed a request (`EPERM` without `CAP_NET_ADMIN`,
    /// `EOPNOTSUPP` for an ethtool command the driver lacks, ...).
    #[error("{request} on '{name}': {source}")]
    Request {
        /// The interface name.
        name: String,
        /// The request (`SIOCSIFMTU`, `ETHTOOL_GSET`, ...).
        request: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The list of interface addresses could not be read (`getifaddrs`).
    #[error("getifaddrs: {source}")]
    Addresses {
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A value the request cannot carry (an MTU beyond `int`).
    #[error("{what} {value} is out of range for '{name}'")]
    OutOfRange {
        /// The interface name.
        name: String,
        /// What the value is.
        what: &'static str,
        /// The value given.
        value: u64,
    },
}

impl NetifError {
    /// The OS error number behind the failure, if there is one (`ENODEV` for
    /// [`NetifError::NotFound`], `EINVAL` for invalid names and values).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            NetifError::InvalidName { .. } | NetifError::OutOfRange { .. } => Some(libc::EINVAL),
            NetifError::NotFound { .. } => Some(libc::ENODEV),
            NetifError::Socket { source }
            | NetifError::Request { source, .. }
            | NetifError::Addresses { source } => source.raw_os_error(),
        }
    }

    /// Whether the kernel refused for lack of privilege (`EPERM` or `EACCES`).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self.raw_os_error(), Some(libc::EPERM | libc::EACCES))
    }

    /// Builds the error of `request` on `name` from the OS error of the failed call.
    pub(super) fn from_os(name: &str, request: &'static str, source: io::Error) -> NetifError {
        if source.raw_os_error() == Some(libc::ENODEV) {
            NetifError::NotFound {
                name: name.to_owned(),
                request,
            }
        } else {
            NetifError::Request {
                name: name.to_owned(),
                request,
                source,
            }
        }
    }
}

impl From<NetifError> for io::Error {
    /// The OS error of the failed call (or the `errno` the kernel gives for the same
    /// mistake), so that its message is the system's.
    fn from(e: NetifError) -> io::Error {
        match e {
            NetifError::Socket { source }
            | NetifError::Request { source, .. }
            | NetifError::Addresses { source } => source,
            other => match other.raw_os_error() {
                Some(errno) => io::Error::from_raw_os_error(errno),
                None => io::Error::other(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_conversion_keeps_the_os_error() {
        let e = NetifError::from_os("eth9", "SIOCGIFINDEX", io::Error::from_raw_os_error(19));
        assert!(matches!(e, NetifError::NotFound { .. }), "{e:?}");
        assert_eq!(e.to_string(), "no interface 'eth9' (SIOCGIFINDEX)");
        assert_eq!(io::Error::from(e).raw_os_error(), Some(libc::ENODEV));

        let e = NetifError::from_os("eth0", "SIOCSIFMTU", io::Error::from_raw_os_error(1));
        assert!(e.is_permission_denied());
        assert_eq!(
            io::Error::from(e).to_string(),
            io::Error::from_raw_os_error(libc::EPERM).to_string()
        );

        let e = NetifError::InvalidName {
            name: String::new(),
        };
        assert!(!e.is_permission_denied());
        assert_eq!(io::Error::from(e).raw_os_error(), Some(libc::EINVAL));
    }
}
