//! Server mode (`server=1`, DPDK virtio_user's name): this front end listens on the
//! vhost-user socket and the back end connects to it (DPDK's `net_vhost` with
//! `client=1`, which re-connects by itself when it is restarted). A back end that
//! dies can so come back: the listening socket outlives every connection.

use pmd_core::error::{Error, Result};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the first back end may take to connect at probe.
pub const FIRST_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The listening socket; its file is removed when dropped.
#[derive(Debug)]
pub struct Listener {
    sock: UnixListener,
    path: PathBuf,
}

impl Listener {
    /// Binds `path`. A leftover socket file nobody listens on is replaced; one in use, or
    /// a path that is not a socket (never removed), is an error that says so.
    pub fn bind(name: &str, path: &Path) -> Result<Listener> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(Error::driver(
                    name,
                    format!(
                        "server=1: {} exists and is not a socket; pick another path=",
                        path.display()
                    ),
                ));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(Error::driver(
                    name,
                    format!(
                        "server=1: another process listens on {}; pick another path=",
                        path.display()
                    ),
                ));
            }
            let _ = std::fs::remove_file(path);
        }
        let sock = UnixListener::bind(path).map_err(|e| {
            Error::io(
                format!(
                    "{name}: cannot listen on the vhost-user socket {}",
                    path.display()
                ),
                e,
            )
        })?;
        sock.set_nonblocking(true)
            .map_err(|e| Error::io(format!("{name}: vhost-user socket"), e))?;
        Ok(Listener {
            sock,
            path: path.to_path_buf(),
        })
    }

    /// A back end that connected, if one did (does not block). The socket is returned
    /// in blocking mode.
    pub fn accept(&self) -> io::Result<Option<UnixStream>> {
        match self.sock.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                Ok(Some(s))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits up to `timeout` for a back end to connect.
    pub fn accept_within(&self, timeout: Duration) -> io::Result<Option<UnixStream>> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.accept()? {
                return Ok(Some(s));
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut p = [libc::pollfd {
                fd: self.sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            match pmd_core::unix::poll(&mut p, left.as_millis().min(1000) as i32) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_accepts_and_cleans_up() {
        let path = std::env::temp_dir().join(format!("pmd-vu-server-{}.sock", std::process::id()));
        let l = Listener::bind("t", &path).unwrap();
        assert!(l.accept().unwrap().is_none(), "nobody connected yet");
        assert!(l
            .accept_within(Duration::from_millis(20))
            .unwrap()
            .is_none());
        let e = Listener::bind("t", &path).unwrap_err().to_string();
        assert!(e.contains("another process listens"), "{e}");
        let _c = UnixStream::connect(&path).unwrap();
        assert!(l.accept_within(Duration::from_secs(5)).unwrap().is_some());
        drop(l);
        assert!(!path.exists(), "socket file removed on drop");
        // A stale socket (nobody listening) is replaced; a file that is not a socket is
        // left alone.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "std leaves the socket file");
        let l = Listener::bind("t", &path).unwrap();
        drop(l);
        std::fs::write(&path, b"keep").unwrap();
        let e = Listener::bind("t", &path).unwrap_err().to_string();
        assert!(e.contains("exists and is not a socket"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"keep");
        std::fs::remove_file(&path).unwrap();
    }
}
