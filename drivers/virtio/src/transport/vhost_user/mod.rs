//! virtio-user: the virtio device is a vhost-user back end (e.g. DPDK's `net_vhost`, or a
//! software switch) reached over a unix socket; this process is the front end.
//!
//! Address spaces: the memory table maps every live memory segment with
//! guest-physical address = user address = our virtual address (mmap offset 0), so
//! descriptors carry our virtual addresses and SET_VRING_ADDR (which takes front-end
//! user addresses) carries the ring addresses as they are in this process.
//!
//! Handshake at probe: SET_OWNER, GET_FEATURES, then (if the back end offers
//! `VHOST_USER_F_PROTOCOL_FEATURES`) GET/SET_PROTOCOL_FEATURES with at most MQ and
//! REPLY_ACK, GET_QUEUE_NUM (with MQ), and SET_FEATURES. At start: SET_MEM_TABLE (all live
//! segments, fds by SCM_RIGHTS, at most 8), then per ring SET_VRING_NUM, SET_VRING_BASE,
//! SET_VRING_ADDR, SET_VRING_CALL, SET_VRING_KICK, and finally SET_VRING_ENABLE for every
//! ring when protocol features were negotiated. At stop: SET_VRING_ENABLE 0 and
//! GET_VRING_BASE per ring.
//!
//! Control queue: emulated here ([`CtrlMode::Emulated`]). vhost-user back ends (DPDK's
//! `net_vhost` included) offer `VIRTIO_NET_F_CTRL_VQ` because in a VM the VMM serves the
//! control queue and only passes the data rings on; a control ring handed to the back end
//! would never be answered. As the VMM-side of the connection, this front end offers the
//! net layer `CTRL_VQ` (and `MQ` when the back end has more than one queue pair) and runs
//! the commands itself: `MQ VQ_PAIRS_SET n` enables rings `0..2n` and disables the others
//! with SET_VRING_ENABLE (needs protocol features; without them only `n` = all started
//! pairs is accepted). There is no vhost-user message for receive filtering, so
//! `VIRTIO_NET_F_CTRL_RX` is withheld from the net layer (the port stays promiscuous) and
//! RX commands other than "promiscuous on" are refused. The back end's SET_FEATURES gets
//! the negotiated bits it offered itself, as a VMM would send them.
//!
//! Call eventfds: one per ring, created at the handshake and sent with every
//! SET_VRING_CALL (also to a back end that reconnects), so an rx queue sleeping on its
//! ring's ([`Transport::call_source`]) keeps a valid descriptor for the port's life.
//!
//! Everything the back end sends is checked (request code, flags, size) before use; a
//! malformed reply is an error naming the request, and the connection is not used again.
//!
//! A back end that goes away (its socket hangs up: killed, crashed, or stopped) takes
//! the link down. [`Transport::reconnect`] then looks for a new one: in server mode
//! ([`server`], `server=1`) a back end that connects to our socket, in client mode a
//! back end listening on the path again (tried at most every [`CLIENT_RETRY`]). The new
//! connection gets the same handshake, with the features, protocol features and queue
//! count negotiated before (a back end offering less is refused), then the memory table,
//! every started ring at the index the net layer resumes it at, and the ring enables
//! the control queue last asked for.

pub mod proto;
pub mod server;

use crate::net::ctrl::CtrlCommand;
use crate::net::features::{VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_MQ};
use crate::transport::{CallSource, CtrlMode, EventFdCall, Notifier, RingSetup, Transport};
use crate::virtqueue::AddrMode;
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::MacAddr;
use pmd_core::unix;
use proto::{Conn, MemRegion, Request};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a reply may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Client mode: least time between two attempts to reach a back end that went away.
pub const CLIENT_RETRY: Duration = Duration::from_secs(1);

/// What the first handshake settled; a back end that reconnects must offer at least this.
#[derive(Clone, Copy, Debug)]
struct Hello {
    device_features: u64,
    protocol_features: u64,
    queue_num: u16,
}

/// An eventfd used as a kick notifier.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// A non-blocking eventfd.
    pub fn new() -> Result<EventFd> {
        unix::eventfd()
            .map(EventFd)
            .map_err(|e| Error::io("eventfd", e))
    }

    /// The descriptor.
    pub fn fd(&self) -> i32 {
        self.0.as_raw_fd()
    }
}

impl Notifier for EventFd {
    #[inline]
    fn notify(&self) {
        // A full counter means a kick is already pending, which is all a kick needs.
        let _ = unix::eventfd_signal(self.0.as_fd());
    }
}

/// The vhost-user front end: a [`Transport`] for the net layer's `VirtioNet`.
#[derive(Debug)]
pub struct VirtioUser {
    name: String,
    path: PathBuf,
    /// The connection; replaced when a back end comes back ([`Transport::reconnect`],
    /// which runs with `&self`).
    conn: Mutex<Conn>,
    /// Server mode: the socket the back end connects to.
    listener: Option<pmd_core::unix::Listener>,
    /// Client mode: when the last attempt to reach a vanished back end was made.
    last_try: Mutex<Option<Instant>>,
    /// Back ends that came back after one went away.
    reconnects: AtomicU64,
    /// Rings enabled by the last start or VQ_PAIRS_SET (the rest are disabled).
    enabled_rings: usize,
    device_features: u64,
    protocol_features: u64,
    features: u64,
    queue_num: u16,
    mac: MacAddr,
    kick: Vec<Arc<EventFd>>,
    /// The eventfds SET_VRING_CALL hands the back end, one per ring, created at the
    /// handshake and given again to a back end that reconnects; rx queues share them
    /// ([`Transport::call_fd`]) to sleep on.
    call: Vec<Arc<OwnedFd>>,
    running: usize,
}

impl VirtioUser {
    /// Connects to the back end at `path` (the back end is the server) and runs the
    /// first part of the handshake. `mac` is the address the device reports (vhost-user
    /// has no device configuration space for net devices).
    pub fn connect(name: &str, path: &Path, pairs: u16, mac: MacAddr) -> Result<VirtioUser> {
        let sock = UnixStream::connect(path).map_err(|e| {
            Error::io(
                format!(
                    "{name}: cannot connect to the vhost-user socket {} (is the back end, e.g. \
                     dpdk-testpmd --vdev net_vhost0,iface={}, running?)",
                    path.display(),
                    path.display()
                ),
                e,
            )
        })?;
        Self::handshake(name, path, sock, pairs, mac)
    }

    /// Server mode: listens on `path`, waits up to [`server::FIRST_CONNECT_TIMEOUT`] for
    /// the back end to connect (DPDK: `net_vhost0,iface=<path>,client=1`) and runs the
    /// first part of the handshake with it. Later back ends connect to the same socket.
    pub fn listen(name: &str, path: &Path, pairs: u16, mac: MacAddr) -> Result<VirtioUser> {
        let l = server::bind(name, path)?;
        tracing::info!(
            "{name}: waiting for a vhost-user back end to connect to {}",
            path.display()
        );
        let sock = l
            .accept_within(server::FIRST_CONNECT_TIMEOUT)
            .map_err(|e| Error::io(format!("{name}: vhost-user socket {}", path.display()), e))?
            .ok_or_else(|| {
                Error::driver(
                    name,
                    format!(
                        "server=1: no vhost-user back end connected to {} within {} s (start \
                         it as a client, e.g. dpdk-testpmd --vdev net_vhost0,iface={},client=1)",
                        path.display(),
                        server::FIRST_CONNECT_TIMEOUT.as_secs(),
                        path.display()
                    ),
                )
            })?;
        let mut t = Self::handshake(name, path, sock, pairs, mac)?;
        t.listener = Some(l);
        Ok(t)
    }

    /// Runs the handshake over an already connected socket.
    pub fn handshake(
        name: &str,
        path: &Path,
        sock: UnixStream,
        pairs: u16,
        mac: MacAddr,
    ) -> Result<VirtioUser> {
        let mut conn = Conn::new(sock, name, REPLY_TIMEOUT)?;
        let h = hello(&mut conn, None)?;
        if pairs > 1 && h.queue_num < pairs {
            return Err(Error::driver(
                name,
                format!(
                    "queues={pairs} but the vhost-user back end supports {} queue pair(s) \
                     (needs the MQ protocol feature)",
                    h.queue_num
                ),
            ));
        }
        let n = 2 * pairs as usize;
        let mut kick = Vec::with_capacity(n);
        let mut call = Vec::with_capacity(n);
        for _ in 0..n {
            kick.push(Arc::new(EventFd::new()?));
            call.push(Arc::new(
                unix::eventfd().map_err(|e| Error::io("eventfd", e))?,
            ));
        }
        tracing::debug!(
            device = name,
            features = format_args!("{:#x}", h.device_features),
            protocol = format_args!("{:#x}", h.protocol_features),
            queue_num = h.queue_num,
            "vhost-user back end connected"
        );
        Ok(VirtioUser {
            name: name.to_string(),
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            listener: None,
            last_try: Mutex::new(None),
            reconnects: AtomicU64::new(0),
            enabled_rings: 0,
            device_features: h.device_features,
            protocol_features: h.protocol_features,
            features: 0,
            queue_num: h.queue_num,
            mac,
            kick,
            call,
            running: 0,
        })
    }

    /// Whether this front end listens (`server=1`) rather than connects.
    pub fn is_server(&self) -> bool {
        self.listener.is_some()
    }

    /// The connection, without locking (we are the only user through `&mut self`).
    fn conn(&mut self) -> &mut Conn {
        self.conn.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_conn(&self) -> MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The feature bits SET_FEATURES told the back end.
    fn backend_features(&self) -> u64 {
        self.features & self.device_features
    }

    /// A new back end's socket, if one is there: accepted (server mode) or connected
    /// (client mode, at most every [`CLIENT_RETRY`]).
    fn new_backend(&self) -> Result<Option<UnixStream>> {
        if let Some(l) = &self.listener {
            return l
                .accept()
                .map_err(|e| Error::io(format!("{}: vhost-user socket", self.name), e));
        }
        let mut last = self.last_try.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < CLIENT_RETRY) {
            return Ok(None);
        }
        *last = Some(Instant::now());
        Ok(UnixStream::connect(&self.path).ok())
    }

    /// The handshake with a back end that replaced a vanished one, and the restart of
    /// the `rings` that were running.
    fn resume(&self, sock: UnixStream, rings: &[RingSetup]) -> Result<Conn> {
        let mut conn = Conn::new(sock, self.name.as_str(), REPLY_TIMEOUT)?;
        let want = Hello {
            device_features: self.backend_features(),
            protocol_features: self.protocol_features,
            queue_num: (self.kick.len() / 2) as u16,
        };
        hello(&mut conn, Some(want))?;
        conn.set_u64(Request::SetFeatures, self.backend_features())?;
        if !rings.is_empty() {
            send_mem_table(&mut conn, &self.err_prefix())?;
            start_rings(&mut conn, rings, &self.call, &self.kick, &mut 0)?;
            if self.features & proto::VHOST_USER_F_PROTOCOL_FEATURES != 0 {
                for r in rings {
                    let on = u32::from((r.addrs.index as usize) < self.enabled_rings);
                    conn.set(
                        Request::SetVringEnable,
                        &proto::vring_state(r.addrs.index as u32, on),
                        &[],
                    )?;
                }
            }
        }
        Ok(conn)
    }

    fn err_prefix(&self) -> String {
        format!("vhost-user:{}", self.path.display())
    }

    /// Negotiated protocol feature bits.
    pub fn protocol_features(&self) -> u64 {
        self.protocol_features
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::driver(format!("vhost-user:{}", self.path.display()), msg)
    }
}

/// SET_OWNER, GET_FEATURES and (when offered) the protocol features and queue count.
/// With `want` (a back end that reconnects) it must offer at least what was negotiated
/// with the first one; the protocol features set are then the same.
fn hello(conn: &mut Conn, want: Option<Hello>) -> Result<Hello> {
    conn.set(Request::SetOwner, &[], &[])?;
    let device_features = conn.get_u64(Request::GetFeatures)?;
    let mut protocol_features = 0;
    let mut queue_num = 1;
    if let Some(w) = want {
        if device_features & w.device_features != w.device_features {
            return Err(conn.refuse(format!(
                "the back end that reconnected offers features {device_features:#x}, \
                 without {:#x} that were negotiated",
                w.device_features & !device_features
            )));
        }
    }
    if device_features & proto::VHOST_USER_F_PROTOCOL_FEATURES != 0 {
        let offered = conn.get_u64(Request::GetProtocolFeatures)?;
        protocol_features = offered & proto::SUPPORTED_PROTOCOL_FEATURES;
        if let Some(w) = want {
            if protocol_features & w.protocol_features != w.protocol_features {
                return Err(conn.refuse(format!(
                    "the back end that reconnected offers protocol features {offered:#x}, \
                     without {:#x} that were negotiated",
                    w.protocol_features & !protocol_features
                )));
            }
            protocol_features = w.protocol_features;
        }
        conn.set_u64(Request::SetProtocolFeatures, protocol_features)?;
        conn.set_reply_ack(protocol_features & proto::PROTOCOL_F_REPLY_ACK != 0);
        if protocol_features & proto::PROTOCOL_F_MQ != 0 {
            let n = conn.get_u64(Request::GetQueueNum)?;
            queue_num = n.clamp(1, u16::MAX as u64) as u16;
        }
    }
    if let Some(w) = want {
        if w.queue_num > 1 && queue_num < w.queue_num {
            return Err(conn.refuse(format!(
                "the back end that reconnected supports {queue_num} queue pair(s), {} are used",
                w.queue_num
            )));
        }
    }
    Ok(Hello {
        device_features,
        protocol_features,
        queue_num,
    })
}

/// SET_MEM_TABLE with every live memory segment.
fn send_mem_table(conn: &mut Conn, who: &str) -> Result<()> {
    let segs = pmd_core::memory::segments();
    if segs.len() > proto::MAX_REGIONS {
        return Err(Error::driver(
            who,
            format!(
                "{} memory segments are live but vhost-user allows at most {} regions; \
                 use fewer mempools (each mempool and each virtio-user port's ring area is \
                 one segment)",
                segs.len(),
                proto::MAX_REGIONS
            ),
        ));
    }
    let regions: Vec<MemRegion> = segs
        .iter()
        .map(|s| MemRegion {
            guest_phys_addr: s.va as u64,
            memory_size: s.len as u64,
            userspace_addr: s.va as u64,
            mmap_offset: 0,
            fd: s.fd,
        })
        .collect();
    let fds: Vec<i32> = regions.iter().map(|r| r.fd).collect();
    tracing::debug!(regions = regions.len(), "vhost-user SET_MEM_TABLE");
    conn.set(Request::SetMemTable, &proto::mem_table(&regions), &fds)
}

/// Per ring: SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ADDR, SET_VRING_CALL and
/// SET_VRING_KICK with the ring's eventfds; `started` counts the rings done.
fn start_rings(
    conn: &mut Conn,
    rings: &[RingSetup],
    call: &[Arc<OwnedFd>],
    kick: &[Arc<EventFd>],
    started: &mut usize,
) -> Result<()> {
    for r in rings {
        let i = r.addrs.index as u32;
        let (Some(call), Some(kick)) = (call.get(i as usize), kick.get(i as usize)) else {
            return Err(conn.refuse(format!("virtqueue {i} was not prepared")));
        };
        conn.set(
            Request::SetVringNum,
            &proto::vring_state(i, r.addrs.size as u32),
            &[],
        )?;
        conn.set(
            Request::SetVringBase,
            &proto::vring_state(i, r.base as u32),
            &[],
        )?;
        conn.set(
            Request::SetVringAddr,
            &proto::vring_addr(i, r.addrs.desc, r.addrs.used, r.addrs.avail),
            &[],
        )?;
        conn.set(
            Request::SetVringCall,
            &(i as u64).to_le_bytes(),
            &[call.as_raw_fd()],
        )?;
        conn.set(
            Request::SetVringKick,
            &(i as u64).to_le_bytes(),
            &[kick.fd()],
        )?;
        *started += 1;
    }
    Ok(())
}

impl Transport for VirtioUser {
    fn describe(&self) -> String {
        format!("vhost-user:{}", self.path.display())
    }

    fn addr_mode(&self) -> AddrMode {
        AddrMode::Va
    }

    fn device_features(&self) -> u64 {
        // The device the net layer sees: the back end's data path plus the control queue
        // this front end emulates (see the module documentation).
        let mut f = (self.device_features & !VIRTIO_NET_F_CTRL_RX) | VIRTIO_NET_F_CTRL_VQ;
        if self.queue_num > 1 {
            f |= VIRTIO_NET_F_MQ;
        } else {
            f &= !VIRTIO_NET_F_MQ;
        }
        f
    }

    fn negotiate(&mut self, wanted: u64) -> Result<u64> {
        let mut f = wanted & self.device_features();
        f |= self.device_features & proto::VHOST_USER_F_PROTOCOL_FEATURES;
        // The back end only hears of bits it offered.
        let dev = self.device_features;
        self.conn().set_u64(Request::SetFeatures, f & dev)?;
        self.features = f;
        Ok(f)
    }

    fn mac(&self) -> Option<MacAddr> {
        Some(self.mac)
    }

    fn max_queue_pairs(&self) -> u16 {
        (self.kick.len() / 2) as u16
    }

    fn notifier(&mut self, index: u16) -> Result<Arc<dyn Notifier>> {
        let k = self
            .kick
            .get(index as usize)
            .ok_or_else(|| Error::driver("virtio-user", format!("no virtqueue {index}")))?;
        Ok(k.clone())
    }

    fn call_source(&self, index: u16) -> Option<Arc<dyn CallSource>> {
        let fd = self.call.get(index as usize)?.clone();
        Some(Arc::new(EventFdCall(fd)))
    }

    fn start(&mut self, rings: &[RingSetup]) -> Result<()> {
        if rings.len() > self.kick.len() {
            return Err(self.err(format!(
                "{} virtqueues requested, {} prepared",
                rings.len(),
                self.kick.len()
            )));
        }
        // Segments created since the last start (e.g. a mempool) must be known to the
        // back end before it sees descriptors pointing into them.
        let who = self.err_prefix();
        let conn = self.conn.get_mut().unwrap_or_else(|e| e.into_inner());
        send_mem_table(conn, &who)?;
        for (k, r) in rings.iter().enumerate() {
            debug_assert_eq!(r.addrs.index as usize, self.running + k);
        }
        start_rings(conn, rings, &self.call, &self.kick, &mut self.running)?;
        if self.features & proto::VHOST_USER_F_PROTOCOL_FEATURES != 0 {
            for r in rings {
                conn.set(
                    Request::SetVringEnable,
                    &proto::vring_state(r.addrs.index as u32, 1),
                    &[],
                )?;
            }
        }
        self.enabled_rings = self.running;
        Ok(())
    }

    fn stop(&mut self) -> Result<Vec<u16>> {
        let n = self.running;
        self.running = 0;
        let mut bases = Vec::with_capacity(n);
        let pf = self.features & proto::VHOST_USER_F_PROTOCOL_FEATURES != 0;
        let conn = self.conn();
        if pf {
            for i in 0..n {
                conn.set(
                    Request::SetVringEnable,
                    &proto::vring_state(i as u32, 0),
                    &[],
                )?;
            }
        }
        for i in 0..n {
            let b = conn.get_vring_base(i as u32)?;
            bases.push(b as u16);
        }
        Ok(bases)
    }

    fn link_up(&self) -> bool {
        let mut p = [libc::pollfd {
            fd: self.lock_conn().socket().as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        }];
        match unix::poll(&mut p, 0) {
            Ok(0) => true,
            Ok(_) => p[0].revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR) == 0,
            Err(_) => false,
        }
    }

    fn can_reconnect(&self) -> bool {
        true
    }

    /// Looks once for a new back end (see the module documentation) and, if one is
    /// there, hands it the `rings` and makes its connection the current one.
    fn reconnect(&self, rings: &[RingSetup]) -> Result<bool> {
        let Some(sock) = self.new_backend()? else {
            return Ok(false);
        };
        let conn = self.resume(sock, rings)?;
        *self.lock_conn() = conn;
        let n = self.reconnects.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(
            device = self.name,
            reconnects = n,
            rings = rings.len(),
            "vhost-user back end reconnected"
        );
        Ok(true)
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        vec![
            ("protocol_features".to_string(), self.protocol_features),
            ("backend_queue_pairs".to_string(), self.queue_num as u64),
            ("server_mode".to_string(), u64::from(self.is_server())),
            (
                "backend_reconnects".to_string(),
                self.reconnects.load(Ordering::Relaxed),
            ),
        ]
    }

    fn close(&mut self) {
        let _ = self.conn().socket().shutdown(std::net::Shutdown::Both);
        self.listener = None;
    }

    fn ctrl_mode(&self) -> CtrlMode {
        CtrlMode::Emulated
    }

    fn ctrl_command(&mut self, cmd: CtrlCommand) -> Result<()> {
        match cmd {
            CtrlCommand::VqPairsSet(n) => {
                let started = (self.running / 2) as u16;
                if n == 0 || n > started {
                    return Err(self.err(format!(
                        "{cmd}: expected 1..={started} (the started queue pairs)"
                    )));
                }
                if self.features & proto::VHOST_USER_F_PROTOCOL_FEATURES == 0 {
                    // Every started ring runs; nothing can be switched off.
                    if n == started {
                        return Ok(());
                    }
                    return Err(self.err(format!(
                        "{cmd}: the back end has no protocol features (SET_VRING_ENABLE), \
                         all {started} started pairs stay enabled"
                    )));
                }
                let running = self.running as u32;
                for i in 0..running {
                    let on = u32::from(i < 2 * n as u32);
                    self.conn()
                        .set(Request::SetVringEnable, &proto::vring_state(i, on), &[])?;
                }
                self.enabled_rings = 2 * n as usize;
                tracing::debug!(pairs = n, "vhost-user: emulated VQ_PAIRS_SET");
                Ok(())
            }
            // The back end delivers everything it gets: promiscuous is the only mode.
            CtrlCommand::Promisc(true) => Ok(()),
            _ => Err(self.err(format!(
                "{cmd}: vhost-user has no receive filtering (the port stays promiscuous)"
            ))),
        }
    }
}
