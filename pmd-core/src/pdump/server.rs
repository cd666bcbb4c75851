//! The capture socket, `pmd_pdump` beside the telemetry socket: one thread that accepts
//! capture tools, answers their request and, for a capture, keeps the connection until
//! the tool hangs up (or sends anything more), which ends the capture.

use super::bpf::Filter;
use super::ring::{RingCounters, RingSet, MAX_SNAPLEN};
use super::tap::{PortTap, Session};
use super::{MAX_CONNECTIONS, MAX_REQUEST};
use crate::unix::seqpacket::{Listener, SeqPacket, SockAddr};
use serde_json::{json, Value};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The listening thread; stopped, its captures ended and its socket removed when dropped.
#[derive(Debug)]
pub(crate) struct PdumpServer {
    path: PathBuf,
    stop: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl PdumpServer {
    /// Binds `path` (owner-only) and serves captures of `ports`.
    pub(crate) fn start(path: &Path, ports: Vec<Arc<PortTap>>) -> io::Result<PdumpServer> {
        let listener = Listener::bind(&SockAddr::Path(path.to_path_buf()))?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let stop = Arc::new(crate::unix::eventfd()?);
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("pdump".into())
            .spawn(move || serve(listener, &st, &ports))?;
        Ok(PdumpServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    /// The socket's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PdumpServer {
    fn drop(&mut self) {
        let _ = crate::unix::eventfd_signal(self.stop.as_fd());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A connected tool and the capture it runs, if any.
struct Conn {
    sock: SeqPacket,
    capture: Option<Running>,
}

struct Running {
    tap: Arc<PortTap>,
    set: Arc<RingSet>,
}

impl Running {
    fn end(self) {
        self.tap.stop();
        let mut c = RingCounters::default();
        for r in 0..self.set.rings() {
            c += self.set.counters(r);
        }
        tracing::info!(
            "pdump: capture of port {} ({}) ended: {} packets copied, {} dropped (ring full), \
             {} filtered out",
            self.tap.id(),
            self.tap.name(),
            c.packets,
            c.drops,
            c.filtered
        );
    }
}

fn serve(l: Listener, stop: &OwnedFd, ports: &[Arc<PortTap>]) {
    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = vec![0u8; MAX_REQUEST + 1];
    loop {
        let mut fds = vec![
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: l.raw(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        fds.extend(conns.iter().map(|c| libc::pollfd {
            fd: c.sock.raw(),
            events: libc::POLLIN,
            revents: 0,
        }));
        match crate::unix::poll(&mut fds, -1) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!("pdump: poll: {e}; captures end");
                break;
            }
        }
        if fds[0].revents != 0 {
            break;
        }
        // Connections first (their indices are those of the poll set), newest last.
        let mut closed = Vec::new();
        for (i, p) in fds[2..].iter().enumerate() {
            if p.revents != 0 && !on_readable(&mut conns[i], &mut buf, ports) {
                closed.push(i);
            }
        }
        for i in closed.into_iter().rev() {
            let c = conns.swap_remove(i);
            if let Some(r) = c.capture {
                r.end();
            }
        }
        if fds[1].revents != 0 {
            if let Ok(Some(sock)) = l.accept() {
                if conns.len() >= MAX_CONNECTIONS {
                    let _ = sock.send_nowait(
                        error(&format!(
                            "{MAX_CONNECTIONS} capture tools are connected already; stop one"
                        ))
                        .as_bytes(),
                    );
                } else {
                    conns.push(Conn {
                        sock,
                        capture: None,
                    });
                }
            }
        }
    }
    for c in conns {
        if let Some(r) = c.capture {
            r.end();
        }
    }
}

fn error(msg: &str) -> String {
    json!({ "error": msg }).to_string()
}

/// Handles what came on `c`: false when the connection is over.
fn on_readable(c: &mut Conn, buf: &mut [u8], ports: &[Arc<PortTap>]) -> bool {
    // Descriptors sent with a request are closed here (none is taken).
    let got = match c.sock.recv_into(buf) {
        Ok(g) => g,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return true,
        Err(_) => return false,
    };
    if got.len == 0 || c.capture.is_some() {
        // Hung up, or said anything during a capture: the capture ends.
        return false;
    }
    let reply = if got.truncated || got.len > MAX_REQUEST {
        Err(format!("a request is at most {MAX_REQUEST} bytes"))
    } else {
        match serde_json::from_slice::<Value>(&buf[..got.len]) {
            Ok(v) => answer(&v, ports),
            Err(e) => Err(format!("the request is not JSON: {e}")),
        }
    };
    match reply {
        Ok(Reply::List(v)) => c.sock.send_nowait(v.to_string().as_bytes()).is_ok(),
        Ok(Reply::Capture(v, run)) => {
            if c.sock
                .send(v.to_string().as_bytes(), Some(run.set.fd().as_raw_fd()))
                .is_ok()
            {
                tracing::info!(
                    "pdump: capturing port {} ({})",
                    run.tap.id(),
                    run.tap.name()
                );
                c.capture = Some(run);
                true
            } else {
                run.end();
                false
            }
        }
        Err(msg) => {
            let _ = c.sock.send_nowait(error(&msg).as_bytes());
            false
        }
    }
}

enum Reply {
    List(Value),
    Capture(Value, Running),
}

fn answer(req: &Value, ports: &[Arc<PortTap>]) -> Result<Reply, String> {
    match req.get("cmd").and_then(Value::as_str) {
        Some("list") => Ok(Reply::List(json!({
            "ports": ports.iter().map(|p| {
                let (rx, tx) = p.queues();
                json!({"id": p.id(), "name": p.name(), "rx_queues": rx, "tx_queues": tx,
                       "capturing": p.capturing()})
            }).collect::<Vec<_>>()
        }))),
        Some("capture") => capture(req, ports),
        _ => Err("unknown request: \"cmd\" is \"list\" or \"capture\"".into()),
    }
}

fn capture(req: &Value, ports: &[Arc<PortTap>]) -> Result<Reply, String> {
    let which = req
        .get("port")
        .and_then(Value::as_str)
        .ok_or("a capture request names a \"port\"")?;
    let tap = ports
        .iter()
        .find(|p| p.name() == which || which.parse::<u64>().ok() == Some(u64::from(p.id())))
        .ok_or_else(|| {
            let known: Vec<String> = ports
                .iter()
                .map(|p| format!("{} ({})", p.id(), p.name()))
                .collect();
            format!(
                "no port {which:?} in this app; its ports: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })?;
    let flag = |k: &str| req.get(k).and_then(Value::as_bool).unwrap_or(false);
    let (want_rx, want_tx) = (flag("rx"), flag("tx"));
    if !want_rx && !want_tx {
        return Err("capture rx, tx or both".into());
    }
    let snaplen = req
        .get("snaplen")
        .and_then(Value::as_u64)
        .filter(|s| (1..=u64::from(MAX_SNAPLEN)).contains(s))
        .ok_or(format!("\"snaplen\" is 1..={MAX_SNAPLEN}"))? as u32;
    let size = req
        .get("ring_size")
        .and_then(Value::as_u64)
        .ok_or("\"ring_size\" is a number of bytes")? as usize;
    let filter = match req.get("filter") {
        None | Some(Value::Null) => None,
        Some(f) => Some(parse_filter(f)?),
    };
    let (rxq, txq) = tap.queues();
    if rxq == 0 && txq == 0 {
        return Err(format!(
            "port {} ({}) is not configured yet; capture it once the app runs",
            tap.id(),
            tap.name()
        ));
    }
    let rx = if want_rx { rxq } else { 0 };
    let tx = if want_tx { txq } else { 0 };
    let set = Arc::new(
        RingSet::create(usize::from(rx) + usize::from(tx), size).map_err(|e| e.to_string())?,
    );
    let session = Arc::new(Session {
        set: set.clone(),
        rx,
        tx,
        snaplen,
        filter,
    });
    if !tap.start(session) {
        return Err(format!(
            "port {} ({}) is being captured already; stop that capture first",
            tap.id(),
            tap.name()
        ));
    }
    let v = json!({"capture": {
        "port": tap.id(), "name": tap.name(), "rx_queues": rx, "tx_queues": tx,
        "ring_size": size, "snaplen": snaplen,
    }});
    Ok(Reply::Capture(
        v,
        Running {
            tap: tap.clone(),
            set,
        },
    ))
}

/// `[[code, jt, jf, k], ...]` checked as a classic BPF program.
fn parse_filter(v: &Value) -> Result<Filter, String> {
    let insns = v
        .as_array()
        .ok_or("\"filter\" is a list of [code, jt, jf, k]")?;
    if insns.len() > super::bpf::MAX_INSNS {
        return Err(format!(
            "the filter has {} instructions, at most {}",
            insns.len(),
            super::bpf::MAX_INSNS
        ));
    }
    let mut prog = Vec::with_capacity(insns.len());
    for (i, ins) in insns.iter().enumerate() {
        let f: Vec<u64> = ins
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        match f[..] {
            [code, jt, jf, k]
                if code <= 0xffff && jt <= 0xff && jf <= 0xff && k <= u64::from(u32::MAX) =>
            {
                prog.push(libc::sock_filter {
                    code: code as u16,
                    jt: jt as u8,
                    jf: jf as u8,
                    k: k as u32,
                })
            }
            _ => return Err(format!("filter instruction {i} is not [code, jt, jf, k]")),
        }
    }
    Filter::new(&prog).map_err(|e| format!("the filter is refused: {e}"))
}
