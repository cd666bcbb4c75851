//! Server mode (`server=1`, DPDK virtio_user's name): this front end listens on the
//! vhost-user socket and the back end connects to it (DPDK's `net_vhost` with
//! `client=1`, which re-connects by itself when it is restarted). A back end that
//! dies can so come back: the listening socket outlives every connection.

use pmd_core::error::{Error, Result};
use pmd_core::unix::{ListenError, Listener};
use std::path::Path;
use std::time::Duration;

/// How long the first back end may take to connect at probe.
pub const FIRST_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Listens on `path` for port `name` (see [`Listener::bind`]), with errors that say which
/// argument to change.
pub fn bind(name: &str, path: &Path) -> Result<Listener> {
    Listener::bind(path).map_err(|e| match e {
        ListenError::Io(e) => Error::io(
            format!(
                "{name}: cannot listen on the vhost-user socket {}",
                path.display()
            ),
            e,
        ),
        e => Error::driver(name, format!("server=1: {e}; pick another path=")),
    })
}
