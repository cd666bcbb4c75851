//! The socket: DPDK's path, one listening thread, one thread per client (at most
//! [`MAX_CLIENTS`]), each reading one command per datagram and writing one reply.

use super::commands::{self, Answer};
use super::{Shared, MAX_CLIENTS, MAX_INPUT_LEN, MAX_OUTPUT_LEN, SOCKET_NAME};
use crate::rundir::runtime_dir;
use crate::unix::seqpacket::{Listener, SeqPacket, SockAddr};
use serde_json::Value;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The listening thread and what to remove at the end.
#[derive(Debug)]
pub(super) struct Server {
    path: PathBuf,
    /// Directories to remove at the end if empty (innermost first).
    made_dirs: Vec<PathBuf>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// The capture socket beside this one.
    pdump: Option<crate::pdump::PdumpServer>,
}

impl Server {
    /// Binds `dpdk_telemetry.v2` in the runtime directory (`dpdk_telemetry.v2:N` if
    /// another live process of the same prefix has it, as DPDK does) and starts the
    /// listening thread.
    /// The capture socket ([`crate::pdump`]) for `ports` is bound beside it, with the
    /// same `:N` suffix; not opening it is logged, not an error.
    pub(super) fn start(
        file_prefix: &str,
        shared: Arc<Shared>,
        ports: Vec<Arc<crate::pdump::PortTap>>,
    ) -> io::Result<Server> {
        let dir = runtime_dir(file_prefix);
        // The prefix's directory is removed at the end if empty, whoever made it (apps of
        // one prefix come and go in any order); its parent only if this process made it.
        // Another app of the prefix may remove the directory between our mkdir and bind:
        // then the bind is tried again.
        let mut made_dirs = vec![dir.clone()];
        let mut bound = None;
        for _ in 0..3 {
            if let Some(parent) = dir.parent().filter(|p| !p.exists()) {
                std::fs::create_dir_all(parent)?;
                std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))?;
                made_dirs.push(parent.to_path_buf());
            }
            if !dir.exists() {
                std::fs::create_dir_all(&dir)?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
            }
            match bind_free(&dir) {
                Ok(b) => {
                    bound = Some(b);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    remove_dirs(&made_dirs);
                    return Err(e);
                }
            }
        }
        let Some((listener, path)) = bound else {
            remove_dirs(&made_dirs);
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} kept disappearing", dir.display()),
            ));
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let suffix = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(SOCKET_NAME))
            .unwrap_or("");
        let pdump_path = dir.join(format!("{}{suffix}", crate::pdump::SOCKET_NAME));
        let pdump = match crate::pdump::PdumpServer::start(&pdump_path, ports) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!("capture socket {} not opened: {e}", pdump_path.display());
                None
            }
        };
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("telemetry".into())
            .spawn(move || listen(listener, sh))?;
        tracing::debug!(path = %path.display(), "telemetry socket listening");
        Ok(Server {
            path,
            made_dirs,
            thread: Some(thread),
            shared,
            pdump,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn pdump_path(&self) -> Option<&Path> {
        self.pdump.as_ref().map(|p| p.path())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Captures end and their socket goes before the directory is removed.
        self.pdump = None;
        self.shared.stop();
        if let Some(t) = self.thread.take() {
            // Dropping the listener (in the thread) removes the socket file.
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
        remove_dirs(&self.made_dirs);
    }
}

/// Binds `dpdk_telemetry.v2` in `dir`, or `dpdk_telemetry.v2:N` for the first N another
/// live process does not hold.
fn bind_free(dir: &Path) -> io::Result<(Listener, PathBuf)> {
    for i in 0..32 {
        let name = if i == 0 {
            SOCKET_NAME.to_string()
        } else {
            format!("{SOCKET_NAME}:{i}")
        };
        let path = dir.join(name);
        match Listener::bind(&SockAddr::Path(path.clone())) {
            Ok(l) => return Ok((l, path)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("32 telemetry sockets in {} are in use", dir.display()),
    ))
}

/// Removes each directory of `dirs` (innermost first) if it is empty.
fn remove_dirs(dirs: &[PathBuf]) {
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
}

/// The listening thread: accepts clients until the stop flag is set.
fn listen(l: Listener, sh: Arc<Shared>) {
    let clients = Arc::new(AtomicUsize::new(0));
    while sh.wait(l.raw()) {
        let Ok(Some(c)) = l.accept() else {
            continue;
        };
        if clients.load(Ordering::Acquire) >= MAX_CLIENTS {
            tracing::debug!("telemetry: {MAX_CLIENTS} clients already; one more closed");
            continue;
        }
        clients.fetch_add(1, Ordering::AcqRel);
        let (sh, n) = (sh.clone(), clients.clone());
        let spawned = std::thread::Builder::new()
            .name("telemetry-client".into())
            .spawn(move || {
                serve_client(&c, &sh);
                n.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            clients.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One client: the info object, then a reply per command, until it hangs up or the
/// server stops.
fn serve_client(c: &SeqPacket, sh: &Shared) {
    if send(c, &sh.info).is_err() {
        return;
    }
    // One byte more than a command may have, so a longer one shows as truncated.
    let mut buf = [0u8; MAX_INPUT_LEN + 1];
    while sh.wait(c.raw()) {
        let Ok(got) = c.recv_into(&mut buf) else {
            return;
        };
        if got.len == 0 {
            return;
        }
        let reply = if got.truncated || got.len > MAX_INPUT_LEN {
            reply_to("", None)
        } else {
            let text = String::from_utf8_lossy(&buf[..got.len]);
            let text = text.trim_end_matches(['\0', '\n']);
            let (cmd, param) = match text.split_once(',') {
                Some((c, p)) => (c, Some(p)),
                None => (text, None),
            };
            if commands::valid_cmd(cmd) {
                let v = match commands::answer(sh, cmd, param) {
                    Answer::Now(v) => v,
                    Answer::Main => sh.ask_main(cmd, param),
                };
                reply_to(cmd, v)
            } else {
                reply_to(cmd, None)
            }
        };
        if send(c, &reply).is_err() {
            return;
        }
    }
}

/// `{cmd: v}`, or `{cmd: null}` when the reply would not fit [`MAX_OUTPUT_LEN`].
fn reply_to(cmd: &str, v: Option<Value>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(cmd.to_string(), v.unwrap_or(Value::Null));
    let out = Value::Object(m);
    if out.to_string().len() > MAX_OUTPUT_LEN {
        tracing::warn!(
            cmd,
            "telemetry: the reply exceeds {MAX_OUTPUT_LEN} bytes; null sent"
        );
        let mut m = serde_json::Map::new();
        m.insert(cmd.to_string(), Value::Null);
        return Value::Object(m);
    }
    out
}

/// Sends `v` as one datagram without waiting: a client that does not read its replies
/// is dropped once its socket buffer is full.
fn send(c: &SeqPacket, v: &Value) -> io::Result<()> {
    c.send_nowait(v.to_string().as_bytes())
}
