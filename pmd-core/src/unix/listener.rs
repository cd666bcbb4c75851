//! A listening unix socket at a path, for the drivers whose peer connects to us (a
//! vhost-user back end or front end in server mode): a stale socket file nobody listens
//! on is replaced, a live one or a path that is not a socket is refused (never removed),
//! and the file is removed when the listener is dropped.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a path could not be listened on.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The path exists and is something else than a socket (left untouched).
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    /// Another process accepts connections on the socket.
    #[error("another process listens on {0}")]
    InUse(PathBuf),
    /// bind(2) or setting the socket non-blocking failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The listening socket; its file is removed when dropped.
#[derive(Debug)]
pub struct Listener {
    sock: UnixListener,
    path: PathBuf,
}

impl Listener {
    /// Binds `path`, replacing a leftover socket file nobody listens on.
    pub fn bind(path: &Path) -> Result<Listener, ListenError> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(ListenError::NotASocket(path.to_path_buf()));
            }
            if UnixStream::connect(path).is_ok() {
                return Err(ListenError::InUse(path.to_path_buf()));
            }
            let _ = std::fs::remove_file(path);
        }
        let sock = UnixListener::bind(path)?;
        sock.set_nonblocking(true)?;
        Ok(Listener {
            sock,
            path: path.to_path_buf(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A peer that connected, if one did (does not block). The socket is returned in
    /// blocking mode.
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

    /// Waits up to `timeout` for a peer to connect.
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
            match super::poll(&mut p, left.as_millis().min(1000) as i32) {
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
        let path = std::env::temp_dir().join(format!("pmd-listener-{}.sock", std::process::id()));
        let l = Listener::bind(&path).unwrap();
        assert!(l.accept().unwrap().is_none(), "nobody connected yet");
        assert!(l
            .accept_within(Duration::from_millis(20))
            .unwrap()
            .is_none());
        let e = Listener::bind(&path).unwrap_err().to_string();
        assert!(e.contains("another process listens"), "{e}");
        let _c = UnixStream::connect(&path).unwrap();
        assert!(l.accept_within(Duration::from_secs(5)).unwrap().is_some());
        drop(l);
        assert!(!path.exists(), "socket file removed on drop");
        // A stale socket (nobody listening) is replaced; a file that is not a socket is
        // left alone.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "std leaves the socket file");
        let l = Listener::bind(&path).unwrap();
        drop(l);
        std::fs::write(&path, b"keep").unwrap();
        let e = Listener::bind(&path).unwrap_err().to_string();
        assert!(e.contains("exists and is not a socket"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"keep");
        std::fs::remove_file(&path).unwrap();
    }
}
