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
//! Everything the back end sends is checked (request code, flags, size) before use; a
//! malformed reply is an error naming the request, and the connection is not used again.

pub mod proto;

use crate::net::ctrl::CtrlCommand;
use crate::net::features::{VIRTIO_NET_F_CTRL_RX, VIRTIO_NET_F_CTRL_VQ, VIRTIO_NET_F_MQ};
use crate::transport::{CtrlMode, Notifier, RingSetup, Transport};
use crate::virtqueue::AddrMode;
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::MacAddr;
use pmd_core::unix;
use proto::{Conn, MemRegion, Request};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a reply may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

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
    path: PathBuf,
    conn: Conn,
    device_features: u64,
    protocol_features: u64,
    features: u64,
    queue_num: u16,
    mac: MacAddr,
    kick: Vec<Arc<EventFd>>,
    call: Vec<EventFd>,
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

    /// Runs the handshake over an already connected socket.
    pub fn handshake(
        name: &str,
        path: &Path,
        sock: UnixStream,
        pairs: u16,
        mac: MacAddr,
    ) -> Result<VirtioUser> {
        let mut conn = Conn::new(sock, name, REPLY_TIMEOUT)?;
        conn.set(Request::SetOwner, &[], &[])?;
        let device_features = conn.get_u64(Request::GetFeatures)?;
        let mut protocol_features = 0;
        let mut queue_num = 1;
        if device_features & proto::VHOST_USER_F_PROTOCOL_FEATURES != 0 {
            let offered = conn.get_u64(Request::GetProtocolFeatures)?;
            protocol_features = offered & proto::SUPPORTED_PROTOCOL_FEATURES;
            conn.set_u64(Request::SetProtocolFeatures, protocol_features)?;
            conn.set_reply_ack(protocol_features & proto::PROTOCOL_F_REPLY_ACK != 0);
            if protocol_features & proto::PROTOCOL_F_MQ != 0 {
                let n = conn.get_u64(Request::GetQueueNum)?;
                queue_num = n.clamp(1, u16::MAX as u64) as u16;
            }
        }
        if pairs > 1 && queue_num < pairs {
            return Err(Error::driver(
                name,
                format!(
                    "queues={pairs} but the vhost-user back end supports {queue_num} queue pair(s) \
                     (needs the MQ protocol feature)"
                ),
            ));
        }
        let n = 2 * pairs as usize;
        let mut kick = Vec::with_capacity(n);
        let mut call = Vec::with_capacity(n);
        for _ in 0..n {
            kick.push(Arc::new(EventFd::new()?));
            call.push(EventFd::new()?);
        }
        tracing::debug!(
            device = name,
            features = format_args!("{device_features:#x}"),
            protocol = format_args!("{protocol_features:#x}"),
            queue_num,
            "vhost-user back end connected"
        );
        Ok(VirtioUser {
            path: path.to_path_buf(),
            conn,
            device_features,
            protocol_features,
            features: 0,
            queue_num,
            mac,
            kick,
            call,
            running: 0,
        })
    }

    /// Negotiated protocol feature bits.
    pub fn protocol_features(&self) -> u64 {
        self.protocol_features
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::driver(format!("vhost-user:{}", self.path.display()), msg)
    }

    fn send_mem_table(&mut self) -> Result<()> {
        let segs = pmd_core::memory::segments();
        if segs.len() > proto::MAX_REGIONS {
            return Err(self.err(format!(
                "{} memory segments are live but vhost-user allows at most {} regions; \
                 use fewer mempools (each mempool and each virtio-user port's ring area is \
                 one segment)",
                segs.len(),
                proto::MAX_REGIONS
            )));
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
        self.conn
            .set(Request::SetMemTable, &proto::mem_table(&regions), &fds)
    }
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
        self.conn
            .set_u64(Request::SetFeatures, f & self.device_features)?;
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
        self.send_mem_table()?;
        for r in rings {
            let i = r.addrs.index as u32;
            debug_assert_eq!(i as usize, self.running);
            self.conn.set(
                Request::SetVringNum,
                &proto::vring_state(i, r.addrs.size as u32),
                &[],
            )?;
            self.conn.set(
                Request::SetVringBase,
                &proto::vring_state(i, r.base as u32),
                &[],
            )?;
            self.conn.set(
                Request::SetVringAddr,
                &proto::vring_addr(i, r.addrs.desc, r.addrs.used, r.addrs.avail),
                &[],
            )?;
            let call = self.call[i as usize].fd();
            self.conn
                .set(Request::SetVringCall, &(i as u64).to_le_bytes(), &[call])?;
            let kick = self.kick[i as usize].fd();
            self.conn
                .set(Request::SetVringKick, &(i as u64).to_le_bytes(), &[kick])?;
            self.running += 1;
        }
        if self.features & proto::VHOST_USER_F_PROTOCOL_FEATURES != 0 {
            for r in rings {
                self.conn.set(
                    Request::SetVringEnable,
                    &proto::vring_state(r.addrs.index as u32, 1),
                    &[],
                )?;
            }
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<Vec<u16>> {
        let n = self.running;
        self.running = 0;
        let mut bases = Vec::with_capacity(n);
        if self.features & proto::VHOST_USER_F_PROTOCOL_FEATURES != 0 {
            for i in 0..n {
                self.conn.set(
                    Request::SetVringEnable,
                    &proto::vring_state(i as u32, 0),
                    &[],
                )?;
            }
        }
        for i in 0..n {
            let b = self.conn.get_vring_base(i as u32)?;
            bases.push(b as u16);
        }
        Ok(bases)
    }

    fn link_up(&self) -> bool {
        let mut p = [libc::pollfd {
            fd: self.conn.socket().as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        }];
        match unix::poll(&mut p, 0) {
            Ok(0) => true,
            Ok(_) => p[0].revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR) == 0,
            Err(_) => false,
        }
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        vec![
            ("protocol_features".to_string(), self.protocol_features),
            ("backend_queue_pairs".to_string(), self.queue_num as u64),
        ]
    }

    fn close(&mut self) {
        let _ = self.conn.socket().shutdown(std::net::Shutdown::Both);
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
                for i in 0..self.running as u32 {
                    let on = u32::from(i < 2 * n as u32);
                    self.conn
                        .set(Request::SetVringEnable, &proto::vring_state(i, on), &[])?;
                }
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
