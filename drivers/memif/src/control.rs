//! The control thread of a device: accepts (server) or makes (client) the control
//! connection, runs the handshake, publishes the session to the queues, watches for the
//! peer going away, and reconnects: a server keeps listening, a client retries every
//! [`RETRY`]. One thread per started device; `stop` ends it (sending DISCONNECT).
//!
//! Queues never lock on the data path: they compare a generation counter once per burst
//! and take the `Arc<Session>` under the mutex only when it changed.

use crate::handshake::{self, ClientParams, Fail, ServerHandshake, ServerParams, ServerStep};
use crate::proto::{self, Disconnect, FixedStr, Msg};
use crate::session::Session;
use crate::sock::{wait_readable, Listener, SeqPacket, SockAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Client reconnect interval.
pub const RETRY: Duration = Duration::from_millis(200);
/// How long one handshake step may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole server-side handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Poll period of the control loop (also how quickly stop and ring faults are seen).
const TICK_MS: i32 = 50;

/// A data-path fault reported by a queue; the control thread disconnects with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// No fault.
    None = 0,
    /// A peer-owned ring counter was out of range.
    RingIndex = 1,
    /// A descriptor the peer offered for us to fill was out of bounds.
    TxDesc = 2,
}

impl Fault {
    fn reason(code: u8) -> &'static str {
        match code {
            1 => "Ring index out of range",
            2 => "Descriptor out of bounds",
            _ => "Ring fault",
        }
    }
}

/// Control-plane counters (xstats).
#[derive(Debug, Default)]
pub struct CtrlCounters {
    /// Connections established.
    pub connects: AtomicU64,
    /// Connections that ended (any reason).
    pub disconnects: AtomicU64,
    /// DISCONNECTs received from the peer.
    pub peer_disconnects: AtomicU64,
    /// Malformed control messages (size, type, descriptors) received.
    pub malformed: AtomicU64,
    /// Handshakes or connections we ended because the peer broke the protocol.
    pub rejected: AtomicU64,
    /// Connections ended because a queue found the rings corrupted.
    pub ring_faults: AtomicU64,
    /// Client: failed connection attempts.
    pub connect_failures: AtomicU64,
}

/// State shared by the device, its control thread and its queues.
#[derive(Debug, Default)]
pub struct Shared {
    gen: AtomicU64,
    session: Mutex<Option<Arc<Session>>>,
    link_up: AtomicBool,
    fault: AtomicU8,
    /// Counters.
    pub counters: CtrlCounters,
    last_reason: Mutex<String>,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Shared {
    /// The current generation (changes on every connect and disconnect).
    #[inline(always)]
    pub fn generation(&self) -> u64 {
        self.gen.load(Ordering::Acquire)
    }

    /// The generation and session, read consistently.
    pub fn current(&self) -> (u64, Option<Arc<Session>>) {
        let g = self.session.lock().unwrap_or_else(|e| e.into_inner());
        (self.gen.load(Ordering::Acquire), g.clone())
    }

    /// Whether a session is published.
    pub fn link_up(&self) -> bool {
        self.link_up.load(Ordering::Acquire)
    }

    /// Reports a data-path fault (the control thread disconnects).
    #[cold]
    pub fn report_fault(&self, f: Fault) {
        self.fault.store(f as u8, Ordering::Relaxed);
    }

    /// The reason the last connection ended (ours or the peer's).
    pub fn last_reason(&self) -> String {
        self.last_reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_reason(&self, r: &str) {
        *self.last_reason.lock().unwrap_or_else(|e| e.into_inner()) = r.to_string();
    }

    fn publish(&self, s: Session) {
        self.fault.store(0, Ordering::Relaxed);
        let mut g = self.session.lock().unwrap_or_else(|e| e.into_inner());
        *g = Some(Arc::new(s));
        self.gen.fetch_add(1, Ordering::Release);
        drop(g);
        self.link_up.store(true, Ordering::Release);
        bump(&self.counters.connects);
    }

    fn unpublish(&self) {
        self.link_up.store(false, Ordering::Release);
        let mut g = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if g.take().is_some() {
            bump(&self.counters.disconnects);
        }
        self.gen.fetch_add(1, Ordering::Release);
    }

    fn take_fault(&self) -> u8 {
        self.fault.swap(0, Ordering::Relaxed)
    }
}

/// What the control thread serves.
#[derive(Debug)]
pub enum Mode {
    /// Listen for one client at a time.
    Server {
        /// The listening socket (owned by the device; kept while it lives).
        listener: Arc<Listener>,
        /// Handshake settings.
        params: ServerParams,
    },
    /// Connect, and reconnect after the server goes away.
    Client {
        /// Where the server listens.
        addr: SockAddr,
        /// Handshake settings.
        params: ClientParams,
        /// Put the region on hugepages when possible.
        huge: bool,
    },
}

/// A running control thread.
#[derive(Debug)]
pub struct Control {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Control {
    /// Starts the thread.
    pub fn spawn(name: &str, mode: Mode, shared: Arc<Shared>) -> std::io::Result<Control> {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("{name}-ctl"))
            .spawn(move || match mode {
                Mode::Server { listener, params } => server_loop(&listener, &params, &shared, &st),
                Mode::Client { addr, params, huge } => {
                    client_loop(&addr, &params, huge, &shared, &st)
                }
            })?;
        Ok(Control {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops the thread (it disconnects first) and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A DISCONNECT carrying `reason`.
pub fn disconnect_msg(reason: &str) -> Msg {
    Msg::Disconnect(Disconnect {
        code: 0,
        reason: FixedStr::new(reason),
    })
}

enum Recv {
    Msg(Msg, Option<OwnedFd>),
    Eof,
}

/// Receives and decodes one message; anything malformed is a counted [`Fail`].
fn recv_msg(sock: &SeqPacket, sh: &Shared) -> Result<Recv, Fail> {
    let r =
        crate::sock::recv(sock).map_err(|e| Fail::ours(format!("Control socket error: {e}")))?;
    if r.len == 0 && r.fds.is_empty() {
        return Ok(Recv::Eof);
    }
    let bad = |reason: String| {
        bump(&sh.counters.malformed);
        Fail::ours(reason)
    };
    if r.truncated || r.len != proto::MSG_SIZE {
        return Err(bad(format!(
            "Invalid message size {}{}",
            r.len,
            if r.truncated { "+" } else { "" }
        )));
    }
    if r.fds_truncated || r.fds.len() > 1 {
        return Err(bad("Too many file descriptors".into()));
    }
    let msg = proto::parse(r.bytes()).map_err(|e| bad(e.to_string()))?;
    Ok(Recv::Msg(msg, r.fds.into_iter().next()))
}

/// Waits (in ticks, watching `stop`) for one message, up to [`STEP_TIMEOUT`].
fn recv_step(sock: &SeqPacket, sh: &Shared, stop: &AtomicBool, what: &str) -> Result<Recv, Fail> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        if stop.load(Ordering::Acquire) {
            return Err(Fail::ours("Interface stopped"));
        }
        if Instant::now() >= deadline {
            return Err(Fail::ours(format!("Timed out waiting for {what}")));
        }
        match wait_readable(sock.raw(), TICK_MS) {
            Ok(true) => return recv_msg(sock, sh),
            Ok(false) => {}
            Err(e) => return Err(Fail::ours(format!("Control socket error: {e}"))),
        }
    }
}

/// Ends a connection: sends DISCONNECT for our own reasons, records why.
fn end(sock: &SeqPacket, sh: &Shared, f: &Fail, who: &str) {
    if f.by_peer {
        bump(&sh.counters.peer_disconnects);
        tracing::info!("{who}: peer disconnected: {}", f.reason);
    } else {
        let _ = sock.send(&disconnect_msg(&f.reason).encode(), None);
        tracing::warn!("{who}: disconnecting: {}", f.reason);
    }
    sh.set_reason(&f.reason);
    sock.shutdown();
}

struct ServerConn {
    sock: SeqPacket,
    hs: ServerHandshake,
    deadline: Instant,
    established: bool,
}

fn server_loop(l: &Listener, p: &ServerParams, sh: &Shared, stop: &AtomicBool) {
    let who = p.if_name.as_str();
    let mut conn: Option<ServerConn> = None;
    let finish = |c: ServerConn, f: Fail| {
        end(&c.sock, sh, &f, who);
        if c.established {
            sh.unpublish();
        }
    };
    while !stop.load(Ordering::Acquire) {
        let mut fds = [
            libc::pollfd {
                fd: l.raw(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: conn.as_ref().map_or(-1, |c| c.sock.raw()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Woken early by a connection or a message, or not: both are looked at below.
        let _ = pmd_core::unix::poll(&mut fds, TICK_MS);
        while let Ok(Some(s)) = l.accept() {
            if conn.is_some() {
                let _ = s.send(&disconnect_msg("Already connected").encode(), None);
                continue;
            }
            let hs = ServerHandshake::new(p.clone());
            if s.send(&hs.hello().encode(), None).is_ok() {
                conn = Some(ServerConn {
                    sock: s,
                    hs,
                    deadline: Instant::now() + HANDSHAKE_TIMEOUT,
                    established: false,
                });
            }
        }
        let Some(mut c) = conn.take() else { continue };
        let fault = sh.take_fault();
        if fault != 0 && c.established {
            bump(&sh.counters.ring_faults);
            finish(c, Fail::ours(Fault::reason(fault)));
            continue;
        }
        if fds[1].revents != 0 {
            let step = match recv_msg(&c.sock, sh) {
                Ok(Recv::Eof) => Err(Fail {
                    reason: "Peer closed the connection".into(),
                    by_peer: true,
                }),
                Ok(Recv::Msg(m, fd)) => c.hs.on_message(m, fd),
                Err(f) => Err(f),
            };
            match step {
                Ok(ServerStep::Reply(m)) => {
                    if let Err(e) = c.sock.send(&m.encode(), None) {
                        finish(c, Fail::ours(format!("Send failed: {e}")));
                        continue;
                    }
                }
                Ok(ServerStep::Established(s, m)) => {
                    tracing::info!(
                        "{who}: connected to {} ({}), {} c2s / {} s2c rings",
                        s.peer_if,
                        s.peer_name,
                        s.c2s.len(),
                        s.s2c.len()
                    );
                    sh.publish(*s);
                    c.established = true;
                    if let Err(e) = c.sock.send(&m.encode(), None) {
                        finish(c, Fail::ours(format!("Send failed: {e}")));
                        continue;
                    }
                }
                Err(f) => {
                    if !f.by_peer {
                        bump(&sh.counters.rejected);
                    }
                    finish(c, f);
                    continue;
                }
            }
        }
        if !c.established && Instant::now() >= c.deadline {
            bump(&sh.counters.rejected);
            finish(c, Fail::ours("Handshake timed out"));
            continue;
        }
        conn = Some(c);
    }
    if let Some(c) = conn {
        finish(c, Fail::ours("Interface stopped"));
    }
}

/// Sleeps up to `d`, returning early (true) when stopped.
fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Acquire) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10).min(d));
    }
    stop.load(Ordering::Acquire)
}

fn client_handshake(
    sock: &SeqPacket,
    p: &ClientParams,
    huge: bool,
    sh: &Shared,
    stop: &AtomicBool,
) -> Result<Session, Fail> {
    let expect = |what: &str| -> Result<Msg, Fail> {
        match recv_step(sock, sh, stop, what)? {
            Recv::Eof => Err(Fail {
                reason: format!("Server closed the connection (waiting for {what})"),
                by_peer: true,
            }),
            Recv::Msg(m, None) => Ok(m),
            Recv::Msg(m, Some(_)) => Err(Fail::ours(format!(
                "Unexpected file descriptor with {}",
                m.name()
            ))),
        }
    };
    let (layout, peer_name) = handshake::client_layout(expect("HELLO")?, p)?;
    let mut s = layout
        .build(&format!("memif-{}", p.if_name), huge)
        .map_err(|e| Fail::ours(format!("Cannot allocate shared memory: {e}")))?;
    s.peer_name = peer_name;
    for (m, fd) in handshake::client_messages(&s, p) {
        sock.send(&m.encode(), fd)
            .map_err(|e| Fail::ours(format!("Send failed: {e}")))?;
        let what = if matches!(m, Msg::Connect(_)) {
            "CONNECTED"
        } else {
            "ACK"
        };
        if let Some(name) = handshake::client_reply(&m, expect(what)?)? {
            s.peer_if = name;
        }
    }
    s.reset_rings();
    Ok(s)
}

fn client_loop(addr: &SockAddr, p: &ClientParams, huge: bool, sh: &Shared, stop: &AtomicBool) {
    let who = p.if_name.as_str();
    let mut logged_wait = false;
    while !stop.load(Ordering::Acquire) {
        let sock = match SeqPacket::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                bump(&sh.counters.connect_failures);
                if !logged_wait {
                    tracing::info!("{who}: waiting for a memif server on {addr} ({e})");
                    logged_wait = true;
                }
                nap(RETRY, stop);
                continue;
            }
        };
        logged_wait = false;
        let s = match client_handshake(&sock, p, huge, sh, stop) {
            Ok(s) => s,
            Err(f) => {
                if !f.by_peer {
                    bump(&sh.counters.rejected);
                }
                end(&sock, sh, &f, who);
                nap(RETRY, stop);
                continue;
            }
        };
        tracing::info!(
            "{who}: connected to {} ({}), {} c2s / {} s2c rings of {}",
            s.peer_if,
            s.peer_name,
            s.c2s.len(),
            s.s2c.len(),
            1u32 << s.c2s.first().map_or(0, |r| r.log2)
        );
        sh.publish(s);
        let f = loop {
            if stop.load(Ordering::Acquire) {
                break Fail::ours("Interface stopped");
            }
            let fault = sh.take_fault();
            if fault != 0 {
                bump(&sh.counters.ring_faults);
                break Fail::ours(Fault::reason(fault));
            }
            match wait_readable(sock.raw(), TICK_MS) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => break Fail::ours(format!("Control socket error: {e}")),
            }
            match recv_msg(&sock, sh) {
                Ok(Recv::Eof) => {
                    break Fail {
                        reason: "Server closed the connection".into(),
                        by_peer: true,
                    }
                }
                Ok(Recv::Msg(Msg::Disconnect(d), _)) => break Fail::peer(d.reason.lossy()),
                Ok(Recv::Msg(m, _)) => {
                    bump(&sh.counters.rejected);
                    break Fail::ours(format!("Unexpected message {} while connected", m.name()));
                }
                Err(f) => {
                    bump(&sh.counters.rejected);
                    break f;
                }
            }
        };
        end(&sock, sh, &f, who);
        sh.unpublish();
        nap(RETRY, stop);
    }
}
