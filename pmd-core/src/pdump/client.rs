//! The capture tool's side: find a running app by its file prefix, list its ports, start
//! a capture and read its rings. `pmd-dumpcap` is built on this.

use super::bpf::MAX_INSNS;
use super::ring::{Consumer, Record, RingCounters, RingSet};
use super::tap::Dir;
use super::{socket_path, MAX_REQUEST};
use crate::unix::seqpacket::{SeqPacket, SockAddr};
use serde_json::{json, Value};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long an app has to answer a request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a capture could not start or ended.
#[derive(Debug, thiserror::Error)]
pub enum PdumpError {
    /// Nothing listens at the prefix's capture socket.
    #[error(
        "no app with file prefix {prefix:?} serves captures ({path}: {why}); start the app, \
         give its --file-prefix, and leave its telemetry on (--no-telemetry turns captures off)"
    )]
    NotRunning {
        /// The file prefix.
        prefix: String,
        /// Where the socket was looked for.
        path: PathBuf,
        /// What connecting said.
        why: io::Error,
    },
    /// The app refused the request.
    #[error("the app refused: {0}")]
    Refused(String),
    /// The app broke the protocol or did not answer.
    #[error("capture protocol: {0}")]
    Protocol(String),
    /// A system call failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A port of the app, as `list` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortEntry {
    /// Port id.
    pub id: u16,
    /// Device name.
    pub name: String,
    /// Configured rx queues.
    pub rx_queues: u16,
    /// Configured tx queues.
    pub tx_queues: u16,
    /// Whether a capture of it runs.
    pub capturing: bool,
}

/// What to capture.
#[derive(Clone, Debug)]
pub struct CaptureRequest {
    /// Port id or device name.
    pub port: String,
    /// Capture received packets.
    pub rx: bool,
    /// Capture sent packets.
    pub tx: bool,
    /// Bytes kept of each packet (1..=65535).
    pub snaplen: u32,
    /// Data bytes of each queue's ring (a power of two, 256 KiB to 256 MiB).
    pub ring_size: usize,
    /// A classic BPF program; packets it rejects are not copied.
    pub filter: Option<Vec<libc::sock_filter>>,
}

fn connect(file_prefix: &str) -> Result<SeqPacket, PdumpError> {
    let path = socket_path(file_prefix);
    SeqPacket::connect(&SockAddr::Path(path.clone())).map_err(|why| PdumpError::NotRunning {
        prefix: file_prefix.to_string(),
        path,
        why,
    })
}

/// Sends `req` and reads the one reply (and the descriptor that may come with it).
fn ask(sock: &SeqPacket, req: &Value) -> Result<(Value, Option<std::os::fd::OwnedFd>), PdumpError> {
    let text = req.to_string();
    if text.len() > MAX_REQUEST {
        return Err(PdumpError::Refused(format!(
            "the request is {} bytes, at most {MAX_REQUEST} (a shorter filter?)",
            text.len()
        )));
    }
    sock.send(text.as_bytes(), None)?;
    if !crate::unix::readable(std::os::fd::AsFd::as_fd(sock), ANSWER_TIMEOUT)? {
        return Err(PdumpError::Protocol(format!(
            "no answer in {} s",
            ANSWER_TIMEOUT.as_secs()
        )));
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = sock.recv_into(&mut buf)?;
    if got.len == 0 {
        return Err(PdumpError::Protocol("the app closed the connection".into()));
    }
    let v: Value = serde_json::from_slice(&buf[..got.len])
        .map_err(|e| PdumpError::Protocol(format!("the reply is not JSON: {e}")))?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(PdumpError::Refused(e.to_string()));
    }
    let fd = if got.fds.is_empty() {
        None
    } else {
        Some(got.fds.remove(0))
    };
    Ok((v, fd))
}

/// The ports of the app running with `file_prefix`.
pub fn list_ports(file_prefix: &str) -> Result<Vec<PortEntry>, PdumpError> {
    let sock = connect(file_prefix)?;
    let (v, _) = ask(&sock, &json!({"cmd": "list"}))?;
    let bad = || PdumpError::Protocol(format!("a port list without ports: {v}"));
    let ports = v.get("ports").and_then(Value::as_array).ok_or_else(bad)?;
    ports
        .iter()
        .map(|p| {
            let num = |k: &str| p.get(k).and_then(Value::as_u64).ok_or_else(bad);
            Ok(PortEntry {
                id: num("id")? as u16,
                name: p
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(bad)?
                    .into(),
                rx_queues: num("rx_queues")? as u16,
                tx_queues: num("tx_queues")? as u16,
                capturing: p.get("capturing").and_then(Value::as_bool).unwrap_or(false),
            })
        })
        .collect()
}

/// Starts a capture in the app running with `file_prefix`; it runs until the returned
/// [`Capture`] is dropped (or this process ends).
pub fn start_capture(file_prefix: &str, req: &CaptureRequest) -> Result<Capture, PdumpError> {
    if req.filter.as_ref().is_some_and(|f| f.len() > MAX_INSNS) {
        return Err(PdumpError::Refused(format!(
            "the filter has more than {MAX_INSNS} instructions"
        )));
    }
    let sock = connect(file_prefix)?;
    let filter = req.filter.as_ref().map(|f| {
        f.iter()
            .map(|i| json!([i.code, i.jt, i.jf, i.k]))
            .collect::<Vec<_>>()
    });
    let (v, fd) = ask(
        &sock,
        &json!({"cmd": "capture", "port": req.port, "rx": req.rx, "tx": req.tx,
                "snaplen": req.snaplen, "ring_size": req.ring_size, "filter": filter}),
    )?;
    let c = v
        .get("capture")
        .ok_or_else(|| PdumpError::Protocol(format!("not a capture reply: {v}")))?;
    let num = |k: &str| {
        c.get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| PdumpError::Protocol(format!("capture reply without {k}: {v}")))
    };
    let (rx, tx) = (num("rx_queues")? as u16, num("tx_queues")? as u16);
    let size = num("ring_size")? as usize;
    let fd = fd.ok_or_else(|| PdumpError::Protocol("no memory came with the reply".into()))?;
    let set = Arc::new(
        RingSet::open(fd, usize::from(rx) + usize::from(tx), size).map_err(PdumpError::Protocol)?,
    );
    let rings = (0..rx)
        .map(|q| (Dir::Rx, q))
        .chain((0..tx).map(|q| (Dir::Tx, q)))
        .enumerate()
        .map(|(i, (d, q))| (d, q, Consumer::new(set.clone(), i)))
        .collect();
    Ok(Capture {
        sock,
        port: num("port")? as u16,
        name: c
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        rings,
    })
}

/// A running capture of one port: its rings, read with [`Capture::drain`].
#[derive(Debug)]
pub struct Capture {
    sock: SeqPacket,
    port: u16,
    name: String,
    rings: Vec<(Dir, u16, Consumer)>,
}

impl Capture {
    /// The captured port's id.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hands at most `max` records of each ring to `f` with the ring's direction and
    /// queue; how many there were in all.
    pub fn drain(
        &mut self,
        max: usize,
        mut f: impl FnMut(Dir, u16, Record<'_>),
    ) -> Result<usize, PdumpError> {
        let mut n = 0;
        for (d, q, c) in &mut self.rings {
            n += c
                .drain(max, |r| f(*d, *q, r))
                .map_err(PdumpError::Protocol)?;
        }
        Ok(n)
    }

    /// The counters of every ring, summed.
    pub fn counters(&self) -> RingCounters {
        let mut t = RingCounters::default();
        for (_, _, c) in &self.rings {
            t += c.counters();
        }
        t
    }

    /// Whether the app closed the connection (it stopped, or ended the capture).
    pub fn app_gone(&self) -> bool {
        crate::unix::seqpacket::wait_readable(self.sock.raw(), 0).unwrap_or(true)
    }
}
