//! DPDK's telemetry socket: a unix `SOCK_SEQPACKET` socket at DPDK's path,
//! `<runtime dir>/dpdk/<file-prefix>/dpdk_telemetry.v2`, speaking DPDK's v2 protocol, so
//! `dpdk-telemetry.py`, Telegraf's dpdk input and other DPDK tooling read a running app.
//!
//! The protocol (DPDK's telemetry guide): on connect the server sends one JSON object,
//! `{"version": ..., "pid": ..., "max_output_len": 16384}`; then each datagram the client
//! sends is a command, `/path` or `/path,parameter`, and each reply one JSON object whose
//! only key is the command path: `{"/ethdev/stats": {...}}`, or `{"/x": null}` for an
//! unknown command or a bad parameter.
//!
//! Who answers (the data path pays one relaxed atomic load a poll for it, nothing more):
//! - the socket's thread answers what needs no port: `/`, `/help`, `/info`, `/eal/params`,
//!   `/eal/app_params`, `/eal/lcore/list`, `/mempool/list`, `/mempool/info` (pools are
//!   shared and their counters atomic);
//! - the ethdev commands and the commands an application registers are queued for the
//!   main lcore, which owns the ports: the app calls [`crate::Eal::serve_telemetry`] from
//!   its periodic work (l2fwd and testpmd every poll, and at least every 50 ms when idle),
//!   so they are answered within that period. An app that never serves them gets `null`
//!   after [`SERVE_TIMEOUT`].
//!
//! The socket file and the directory are owner-only (0600 and 0700), removed when the
//! [`Telemetry`] is dropped (a directory only if this process made it and it is empty).

mod commands;
mod metrics;
mod server;

pub use crate::rundir::runtime_dir;
pub use commands::ethdev_reply;
pub use metrics::page as metrics_page;
pub use serde_json::{json, Value};

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// The socket's file name (DPDK's v2 protocol).
pub const SOCKET_NAME: &str = "dpdk_telemetry.v2";
/// The longest reply, in bytes, announced to clients (DPDK's value).
pub const MAX_OUTPUT_LEN: usize = 16384;
/// The longest command (path and parameter) read; longer datagrams are refused.
pub const MAX_INPUT_LEN: usize = 1024;
/// The longest command path (DPDK's `MAX_CMD_LEN`, its terminating NUL left out).
pub const MAX_CMD_LEN: usize = 55;
/// Clients served at once; more are closed at once (DPDK's limit).
pub const MAX_CLIENTS: usize = 10;
/// How long a command for the main lcore waits for its answer before `null` is sent.
pub const SERVE_TIMEOUT: Duration = Duration::from_secs(1);
/// Most commands waiting for the main lcore (each client has at most one).
const MAX_QUEUED: usize = 4 * MAX_CLIENTS;

/// Locks `m`, taking over a lock whose holder panicked (the data stays consistent: every
/// critical section here is a push, a pop or an insert).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A command the main lcore answers ([`crate::Eal::serve_telemetry`]).
#[derive(Debug)]
pub struct Request {
    /// The command path (`/ethdev/stats`).
    pub cmd: String,
    /// The parameter after the comma, if any.
    pub param: Option<String>,
    reply: mpsc::SyncSender<Option<Value>>,
}

impl Request {
    /// Sends the answer (`None`: `null`, an unknown command or a bad parameter). A client
    /// that gave up waiting is not an error.
    pub fn answer(self, v: Option<Value>) {
        let _ = self.reply.try_send(v);
    }
}

/// What the socket's threads and the main lcore share.
#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    /// Signalled with `stop`: the threads sleep on it beside their socket, so an idle
    /// app's telemetry threads never wake.
    stop_fd: std::os::fd::OwnedFd,
    /// Requests are queued for the main lcore (checked once per poll).
    pending: AtomicBool,
    queue: Mutex<VecDeque<Request>>,
    /// Command path -> help text, built-in and registered.
    commands: Mutex<BTreeMap<String, String>>,
    /// Registered by the application: answered by the main lcore.
    app_commands: Mutex<Vec<String>>,
    /// `/info`.
    info: Value,
    eal_params: Vec<String>,
    app_params: Vec<String>,
    lcores: Vec<u32>,
}

impl Shared {
    /// Sets the stop flag and wakes every thread.
    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = crate::unix::eventfd_signal(std::os::fd::AsFd::as_fd(&self.stop_fd));
    }

    /// Waits until `fd` is readable (true) or the stop is signalled (false).
    fn wait(&self, fd: std::os::fd::RawFd) -> bool {
        use std::os::fd::AsRawFd;
        loop {
            if self.stop.load(Ordering::Acquire) {
                return false;
            }
            let mut p = [
                libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.stop_fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            match crate::unix::poll(&mut p, -1) {
                Ok(_) if p[1].revents != 0 => return false,
                Ok(_) if p[0].revents != 0 => return true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Queues `cmd` for the main lcore and waits for the answer.
    fn ask_main(&self, cmd: &str, param: Option<&str>) -> Option<Value> {
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut q = lock(&self.queue);
            // An app that never serves: the oldest requests (whose clients gave up
            // waiting) make room, so the queue stays bounded.
            while q.len() >= MAX_QUEUED {
                if let Some(old) = q.pop_front() {
                    old.answer(None);
                }
            }
            q.push_back(Request {
                cmd: cmd.to_string(),
                param: param.map(str::to_string),
                reply: tx,
            });
        }
        self.pending.store(true, Ordering::Release);
        match rx.recv_timeout(SERVE_TIMEOUT) {
            Ok(v) => v,
            Err(_) => {
                tracing::debug!(cmd, "telemetry: the main lcore did not answer in time");
                None
            }
        }
    }
}

/// What the EAL gives the telemetry socket at start.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConf {
    /// The file prefix (names the directory).
    pub file_prefix: String,
    /// The EAL's arguments, program name first (`/eal/params`).
    pub eal_params: Vec<String>,
    /// The application's arguments (`/eal/app_params`).
    pub app_params: Vec<String>,
    /// The lcore ids (`/eal/lcore/list`).
    pub lcores: Vec<u32>,
    /// Open the socket (`--no-telemetry` turns it off).
    pub socket: bool,
    /// Serve Prometheus metrics at this address (`--metrics`).
    pub metrics: Option<std::net::SocketAddr>,
    /// The ports a capture tool may capture: the capture socket ([`crate::pdump`]) is
    /// served beside the telemetry socket.
    pub ports: Vec<std::sync::Arc<crate::pdump::PortTap>>,
}

/// The running telemetry socket and metrics endpoint (either may be off); stopped and
/// the socket's files removed when dropped.
#[derive(Debug)]
pub struct Telemetry {
    shared: Arc<Shared>,
    server: Option<server::Server>,
    metrics: Option<metrics::MetricsServer>,
}

impl Telemetry {
    /// Creates the socket (the directory too, if needed) and the metrics listener, as
    /// `conf` asks, and starts their threads.
    pub fn start(conf: TelemetryConf) -> io::Result<Telemetry> {
        let mut commands = BTreeMap::new();
        for (c, h) in commands::BUILTIN {
            commands.insert(c.to_string(), h.to_string());
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            stop_fd: crate::unix::eventfd()?,
            pending: AtomicBool::new(false),
            queue: Mutex::new(VecDeque::new()),
            commands: Mutex::new(commands),
            app_commands: Mutex::new(Vec::new()),
            info: serde_json::json!({
                "version": concat!("pmd ", env!("CARGO_PKG_VERSION")),
                "pid": std::process::id(),
                "max_output_len": MAX_OUTPUT_LEN,
            }),
            eal_params: conf.eal_params,
            app_params: conf.app_params,
            lcores: conf.lcores,
        });
        let metrics = conf
            .metrics
            .map(|a| metrics::MetricsServer::start(a, shared.clone()))
            .transpose()?;
        let server = conf
            .socket
            .then(|| server::Server::start(&conf.file_prefix, shared.clone(), conf.ports))
            .transpose()?;
        Ok(Telemetry {
            shared,
            server,
            metrics,
        })
    }

    /// The socket's path, if it is open.
    pub fn path(&self) -> Option<&Path> {
        self.server.as_ref().map(|s| s.path())
    }

    /// The capture socket's path ([`crate::pdump`]), if it is open.
    pub fn pdump_path(&self) -> Option<&Path> {
        self.server.as_ref().and_then(|s| s.pdump_path())
    }

    /// Where the metrics are served, if they are.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(|m| m.addr())
    }

    /// Registers an application command (a path starting with `/`, at most
    /// [`MAX_CMD_LEN`] bytes of letters, digits, `_` and `/`), answered by the main lcore
    /// through [`crate::Eal::serve_telemetry`]'s callback; listed by `/` and `/help`.
    pub fn register(&self, cmd: &str, help: &str) -> Result<(), String> {
        if !commands::valid_cmd(cmd) {
            return Err(format!(
                "telemetry command {cmd:?}: a path starting with '/', at most {MAX_CMD_LEN} \
                 letters, digits, '_' and '/'"
            ));
        }
        lock(&self.shared.commands).insert(cmd.to_string(), help.to_string());
        lock(&self.shared.app_commands).push(cmd.to_string());
        Ok(())
    }

    /// Whether commands wait for the main lcore (a relaxed load: cheap enough per poll).
    #[inline(always)]
    pub fn pending(&self) -> bool {
        self.shared.pending.load(Ordering::Relaxed)
    }

    /// The commands waiting for the main lcore, taken off the queue.
    pub fn take_requests(&self) -> Vec<Request> {
        let mut q = lock(&self.shared.queue);
        self.shared.pending.store(false, Ordering::Relaxed);
        q.drain(..).collect()
    }

    /// Whether `cmd` is one the application registered.
    pub fn is_app_command(&self, cmd: &str) -> bool {
        lock(&self.shared.app_commands).iter().any(|c| c == cmd)
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.shared.stop();
        // Whoever waits for the main lcore gets null now.
        for r in self.take_requests() {
            r.answer(None);
        }
    }
}
