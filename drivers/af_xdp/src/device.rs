//! [`AfXdpDevice`]: the interface, the loaded program, one XDP socket per queue, and the
//! attachment while started.

use crate::config::Config;
use crate::prog::{AttachError, AttachMode, LoadError, XdpLink, XdpProgram, XskMap};
use crate::rxtx::{AfXdpRxQueue, AfXdpTxQueue};
use crate::sys;
use crate::umem::Umem;
use crate::xsk::{BindMode, Xsk, XskConfig, XskError};
use crate::DRIVER_NAME;
use pmd_core::devargs::VdevSpec;
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::{
    DevInfo, Device, Link, MacAddr, PortConf, RxQueue, RxQueueConf, TxOffloads, TxQueue,
    TxQueueConf, L2_OVERHEAD,
};
use pmd_core::netif::{self, Interface, NetifError};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Fewest ring entries per queue.
pub(crate) const MIN_DESC: u16 = 64;
/// Most ring entries per queue.
pub(crate) const MAX_DESC: u16 = 8192;
/// Ring entries when the application asks for 0 (DPDK's af_xdp default).
pub(crate) const DEFAULT_DESC: u16 = 2048;

const ROOT_HINT: &str = "run as root (AF_XDP needs CAP_NET_RAW; loading and attaching the \
                         XDP program needs CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN)";

fn denied(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

/// One AF_XDP device: an interface and up to `queue_count` XDP sockets.
pub struct AfXdpDevice {
    // Field order = drop order: detach the program before anything else goes.
    /// The attachment, while started.
    link: Option<XdpLink>,
    /// The loaded program and its socket map; `None` once closed.
    prog: Option<XdpProgram>,
    /// The socket of each queue index, created at its first queue setup.
    socks: Vec<Option<Arc<Xsk>>>,
    /// The interface, its requests going through an `AF_PACKET` socket that also holds
    /// the promiscuous membership; `None` once closed.
    netif: Option<Interface>,
    name: String,
    cfg: Config,
    ifindex: u32,
    mac: MacAddr,
    conf: PortConf,
    promisc: bool,
}

impl std::fmt::Debug for AfXdpDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfXdpDevice")
            .field("name", &self.name)
            .field("iface", &self.cfg.iface)
            .field("ifindex", &self.ifindex)
            .field("queues", &self.cfg.queue_count)
            .finish()
    }
}

impl AfXdpDevice {
    /// Validates the arguments, finds the interface, checks its queues and that this
    /// kernel and process can do AF_XDP, and loads the XDP program (not attached yet).
    pub fn open(vdev: &VdevSpec) -> Result<AfXdpDevice> {
        let cfg = Config::from_vdev(vdev)?;
        let name = vdev.name.clone();
        let err = |msg: String| Error::driver(name.clone(), msg);
        let ctrl = netif::packet_socket().map_err(|e| {
            if denied(&e) {
                err(format!("{ROOT_HINT} ({e})"))
            } else {
                Error::io(format!("{name}: socket(AF_PACKET)"), e)
            }
        })?;
        let netif = Interface::by_name_on(ctrl, &cfg.iface).map_err(|e| match e {
            NetifError::NotFound { .. } => err(format!(
                "interface '{}' not found (see `ip link`)",
                cfg.iface
            )),
            e => Error::io(
                format!("{name}: looking up interface '{}'", cfg.iface),
                e.into(),
            ),
        })?;
        let ifindex = netif.index();
        let mac = netif
            .mac()
            .map(MacAddr)
            .map_err(|e| Error::io(format!("{name}: MAC address of '{}'", cfg.iface), e.into()))?;
        check_channels(&name, &cfg, &netif)?;
        check_af_xdp(&name)?;
        let entries = cfg.start_queue + u32::from(cfg.queue_count);
        let map =
            XskMap::create(entries).map_err(|e| bpf_error(&name, "creating the XSKMAP", &e))?;
        let prog = XdpProgram::load(map).map_err(|e| load_error(&name, e))?;
        tracing::info!(
            "{name}: AF_XDP on {} (ifindex {ifindex}, {mac}), queues {}..{}, {}-byte frames",
            cfg.iface,
            cfg.start_queue,
            entries,
            cfg.frame_size
        );
        Ok(AfXdpDevice {
            link: None,
            prog: Some(prog),
            socks: (0..cfg.queue_count).map(|_| None).collect(),
            netif: Some(netif),
            name,
            ifindex,
            mac,
            conf: PortConf {
                rx_queues: cfg.queue_count,
                tx_queues: cfg.queue_count,
                ..Default::default()
            },
            cfg,
            promisc: false,
        })
    }

    fn closed(&self) -> Error {
        Error::driver(self.name.clone(), "the device is closed")
    }

    fn err(&self, msg: String) -> Error {
        Error::driver(self.name.clone(), msg)
    }

    /// A frame of the interface's MTU must fit one UMEM frame: this PMD has no XDP
    /// multi-buffer, and the kernel would drop larger frames where no counter of ours sees
    /// them. Refusing at start is what keeps them from vanishing.
    fn check_mtu_fits_frame(&self) -> Result<()> {
        let Some(mtu) = self.mtu() else {
            return Ok(());
        };
        let frame = u32::from(mtu) + L2_OVERHEAD;
        let room = self.cfg.max_rx_len();
        if frame <= room {
            return Ok(());
        }
        let best = 4096 - crate::uapi::XDP_PACKET_HEADROOM - L2_OVERHEAD;
        Err(self.err(format!(
            "{} has MTU {mtu}: its {frame}-byte frames do not fit a {}-byte UMEM frame \
             ({room} bytes after the XDP headroom) and XDP multi-buffer is not supported; \
             lower the MTU (ip link set {} mtu {}){}",
            self.cfg.iface,
            self.cfg.frame_size,
            self.cfg.iface,
            room - L2_OVERHEAD,
            if u32::from(mtu) <= best && self.cfg.frame_size < 4096 {
                format!(" or use frame_size=4096 (MTU up to {best})")
            } else {
                String::new()
            }
        )))
    }

    /// The socket of queue `qid`, created with rings of (at least) `nb_desc` entries if
    /// it does not exist yet. Its rx and tx rings get the size of whichever queue
    /// direction is set up first.
    fn socket(&mut self, qid: u16, nb_desc: u16) -> Result<Arc<Xsk>> {
        if self.prog.is_none() {
            return Err(self.closed());
        }
        let slot = usize::from(qid);
        if let Some(x) = &self.socks[slot] {
            return Ok(x.clone());
        }
        let ring_size = u32::from(nb_desc.clamp(MIN_DESC, MAX_DESC)).next_power_of_two();
        let queue = self.cfg.start_queue + u32::from(qid);
        let umem = Umem::new(
            &format!("{}-q{qid}-umem", self.name),
            self.cfg.frame_size,
            ring_size,
            ring_size,
        )?;
        let huge = umem.is_huge();
        let xc = XskConfig {
            ifindex: self.ifindex,
            queue,
            ring_size,
            frame_size: self.cfg.frame_size,
            bind: self.cfg.bind,
            busy_budget: self.cfg.busy_budget,
        };
        let x = Xsk::open(&xc, umem).map_err(|e| self.xsk_error(queue, ring_size, e))?;
        tracing::info!(
            "{}: queue {queue} of {}: XDP socket bound in {} mode, {ring_size}-entry rings, UMEM in {}, {}",
            self.name,
            self.cfg.iface,
            if x.zero_copy() { "zero-copy" } else { "copy" },
            if huge { "hugepages" } else { "ordinary pages (--no-huge)" },
            match x.busy_budget() {
                0 => "no busy polling".to_string(),
                b => format!("preferred busy polling (budget {b})"),
            }
        );
        let x = Arc::new(x);
        self.socks[slot] = Some(x.clone());
        Ok(x)
    }

    fn xsk_error(&self, queue: u32, ring_size: u32, e: XskError) -> Error {
        let iface = &self.cfg.iface;
        let errno = e.err.raw_os_error();
        let msg = match (e.step, errno) {
            (_, Some(libc::EPERM | libc::EACCES)) if e.step.starts_with("socket") => {
                format!("{ROOT_HINT} ({})", e.err)
            }
            ("XDP_UMEM_REG", Some(libc::ENOBUFS | libc::ENOMEM | libc::EPERM)) => format!(
                "registering the {} MiB UMEM of queue {queue} failed ({}): the locked-memory \
                 limit is too low; raise it (`ulimit -l unlimited`, or LimitMEMLOCK=infinity \
                 for a service) or run as root",
                (u64::from(2 * ring_size) * u64::from(self.cfg.frame_size)).div_ceil(1 << 20),
                e.err
            ),
            (s, Some(libc::EBUSY)) if s.starts_with("bind") => format!(
                "queue {queue} of '{iface}' is already used by another AF_XDP socket \
                 (another port or process); pick other queues with start_queue"
            ),
            (s, Some(libc::EOPNOTSUPP))
                if s.starts_with("bind") && self.cfg.bind == BindMode::ZeroCopy =>
            {
                format!(
                    "the driver of '{iface}' has no AF_XDP zero-copy support; use mode=copy or \
                     mode=auto ({})",
                    e.err
                )
            }
            (s, Some(libc::EINVAL)) if s.starts_with("bind") => format!(
                "cannot bind to queue {queue} of '{iface}' ({}): is it beyond the interface's \
                 channels? See `ethtool -l {iface}`",
                e.err
            ),
            (_, Some(libc::ENODEV | libc::ENXIO)) => {
                format!("interface '{iface}' went away ({}: {})", e.step, e.err)
            }
            _ => {
                return Error::io(
                    format!("{}: {} on '{iface}' queue {queue}", self.name, e.step),
                    e.err,
                )
            }
        };
        self.err(msg)
    }

    fn attach_error(&self, e: &AttachError) -> Error {
        let iface = &self.cfg.iface;
        let msg = match e.errno() {
            Some(libc::EBUSY | libc::EEXIST) => format!(
                "another XDP program is attached to '{iface}' ({e}); see `ip link show dev \
                 {iface}` and detach it with `ip link set dev {iface} xdp off` (or stop its owner)"
            ),
            Some(libc::EPERM | libc::EACCES) => format!("{ROOT_HINT} ({e})"),
            Some(libc::EINVAL) => format!(
                "attaching the XDP program to '{iface}' failed ({e}); XDP bpf links need \
                 Linux 5.9 or newer"
            ),
            _ => format!("attaching the XDP program to '{iface}' failed: {e}"),
        };
        self.err(msg)
    }
}

/// Fails if the queues asked for are beyond the interface's channel count (when the
/// driver reports one).
fn check_channels(name: &str, cfg: &Config, netif: &Interface) -> Result<()> {
    let Ok(ch) = netif.channels() else {
        return Ok(()); // not reported (EOPNOTSUPP): bind will tell
    };
    let (rx, tx) = (ch.rx_queues(), ch.tx_queues());
    let have = rx.min(tx);
    let want = cfg.start_queue + u32::from(cfg.queue_count);
    if have > 0 && want > have {
        return Err(Error::driver(
            name,
            format!(
                "queues {}..{want} asked for, but '{iface}' has {have} channel(s) (`ethtool -l \
                 {iface}`: rx {rx}, tx {tx}); lower start_queue/queue_count, or raise the \
                 channels with `ethtool -L {iface} combined {want}` (veth: `ethtool -L {iface} \
                 rx {want} tx {want}`, within numrxqueues/numtxqueues given at creation)",
                cfg.start_queue,
                iface = cfg.iface
            ),
        ));
    }
    Ok(())
}

/// Fails with what to do if this kernel or process cannot open AF_XDP sockets.
fn check_af_xdp(name: &str) -> Result<()> {
    match sys::xdp_socket() {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => Err(Error::driver(
            name,
            "this kernel has no AF_XDP sockets (built without CONFIG_XDP_SOCKETS); use \
             net_af_packet instead, or a kernel with CONFIG_XDP_SOCKETS=y",
        )),
        Err(e) if denied(&e) => Err(Error::driver(name, format!("{ROOT_HINT} ({e})"))),
        Err(e) => Err(Error::io(format!("{name}: socket(AF_XDP)"), e)),
    }
}

fn bpf_error(name: &str, what: &str, e: &io::Error) -> Error {
    let msg = match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => format!(
            "{what} was refused ({e}): {ROOT_HINT}; on kernels before 5.11 also raise the \
             locked-memory limit (`ulimit -l unlimited`)"
        ),
        Some(libc::ENOSYS) => format!(
            "{what} failed: this kernel has no bpf(2) system call (CONFIG_BPF_SYSCALL); use \
             net_af_packet instead"
        ),
        Some(libc::EINVAL) => {
            format!("{what} failed ({e}): this kernel lacks XSKMAP or XDP support (needs 4.18+)")
        }
        _ => format!("{what} failed: {e}"),
    };
    Error::driver(name, msg)
}

fn load_error(name: &str, e: LoadError) -> Error {
    let base = bpf_error(name, "loading the XDP program", &e.err);
    if e.log.is_empty() {
        base
    } else {
        Error::driver(name, format!("{base}; verifier log:\n{}", e.log))
    }
}

impl Device for AfXdpDevice {
    fn info(&self) -> DevInfo {
        DevInfo {
            driver: DRIVER_NAME,
            max_rx_queues: self.cfg.queue_count,
            max_tx_queues: self.cfg.queue_count,
            min_desc: MIN_DESC,
            max_desc: MAX_DESC,
            default_desc: DEFAULT_DESC,
            // UMEM fill/completion and rx/tx rings are powers of two (the kernel refuses others).
            desc_pow2: true,
            // One UMEM frame per packet (no XDP multi-buffer): frames up to the frame's
            // room; chains are sent by copying their segments into one frame.
            tx_offload_capa: TxOffloads::MULTI_SEGS,
            max_rx_pktlen: self.cfg.max_rx_len(),
            max_mtu: (self.cfg.max_rx_len() - L2_OVERHEAD) as u16,
            nb_seg_max: pmd_core::mbuf::MAX_SEGS,
            nb_mtu_seg_max: pmd_core::mbuf::MAX_SEGS,
            ..Default::default()
        }
    }

    /// Accepts up to `queue_count` queues each way. Sockets of queue indices no longer
    /// used are closed; rx queue `i` receives what arrives on interface queue
    /// `start_queue + i`.
    fn configure(&mut self, conf: &PortConf) -> Result<()> {
        let max = self.cfg.queue_count;
        for (kind, n) in [("rx", conf.rx_queues), ("tx", conf.tx_queues)] {
            if n == 0 || n > max {
                return Err(self.err(format!(
                    "{n} {kind} queues requested; queue_count={max} allows 1..={max}"
                )));
            }
        }
        if self.prog.is_none() {
            return Err(self.closed());
        }
        let used = usize::from(conf.rx_queues.max(conf.tx_queues));
        for s in self.socks.iter_mut().skip(used) {
            *s = None;
        }
        self.conf = conf.clone();
        Ok(())
    }

    fn setup_rx_queue(&mut self, qid: u16, conf: RxQueueConf) -> Result<Box<dyn RxQueue>> {
        if qid >= self.conf.rx_queues {
            return Err(self.err(format!(
                "rx queue {qid} does not exist ({} configured)",
                self.conf.rx_queues
            )));
        }
        let xsk = self.socket(qid, conf.nb_desc)?;
        let room =
            usize::from(conf.pool.buf_size()).saturating_sub(usize::from(pmd_core::mbuf::HEADROOM));
        if room < self.cfg.max_rx_len() as usize {
            tracing::debug!(
                "{}: rx queue {qid}: mbufs hold {room} bytes; longer frames (up to {}) are dropped as errors",
                self.name,
                self.cfg.max_rx_len()
            );
        }
        let q = AfXdpRxQueue::new(xsk, conf.port, conf.pool, conf.stats)
            .ok_or_else(|| self.err(format!("rx queue {qid} is already in use; drop it first")))?;
        Ok(Box::new(q))
    }

    fn setup_tx_queue(&mut self, qid: u16, conf: TxQueueConf) -> Result<Box<dyn TxQueue>> {
        if qid >= self.conf.tx_queues {
            return Err(self.err(format!(
                "tx queue {qid} does not exist ({} configured)",
                self.conf.tx_queues
            )));
        }
        let xsk = self.socket(qid, conf.nb_desc)?;
        let q = AfXdpTxQueue::new(xsk, conf.stats)
            .ok_or_else(|| self.err(format!("tx queue {qid} is already in use; drop it first")))?;
        Ok(Box::new(q))
    }

    /// Points the socket map at the rx queues' sockets and attaches the program.
    fn start(&mut self) -> Result<()> {
        let Some(prog) = &self.prog else {
            return Err(self.closed());
        };
        if self.link.is_some() {
            return Ok(());
        }
        self.check_mtu_fits_frame()?;
        let map = prog.map();
        for q in 0..map.entries() {
            let Some(i) = q.checked_sub(self.cfg.start_queue).map(|i| i as usize) else {
                continue;
            };
            let sock = self.socks.get(i).and_then(Option::as_ref);
            let r = match sock {
                Some(x) if i < usize::from(self.conf.rx_queues) => map.set(q, x.fd()),
                _ => map.clear(q),
            };
            r.map_err(|e| bpf_error(&self.name, "updating the XSKMAP", &e))?;
        }
        let link = XdpLink::attach(prog, self.ifindex, self.cfg.attach)
            .map_err(|e| self.attach_error(&e))?;
        tracing::info!(
            "{}: XDP program attached to {} in {} mode",
            self.name,
            self.cfg.iface,
            if link.native() {
                "native (driver)"
            } else {
                "generic (skb)"
            }
        );
        if self.cfg.attach == AttachMode::Auto && !link.native() {
            tracing::info!(
                "{}: '{}' has no native XDP; generic mode is slower",
                self.name,
                self.cfg.iface
            );
        }
        self.link = Some(link);
        if !self.link().up {
            tracing::warn!(
                "{}: interface '{}' is down or has no carrier; no packets will flow until it is up",
                self.name,
                self.cfg.iface
            );
        }
        Ok(())
    }

    /// Detaches the program: traffic goes to the kernel stack again.
    fn stop(&mut self) -> Result<()> {
        self.link = None;
        Ok(())
    }

    fn close(&mut self) {
        // Queues keep their own references to their sockets, rings and UMEM.
        self.link = None;
        self.prog = None;
        self.socks.clear();
        self.netif = None;
        self.promisc = false;
    }

    fn set_mtu(&mut self, mtu: u16) -> Result<()> {
        Err(self.err(format!(
            "the MTU is the interface's: set it with `ip link set {} mtu {mtu}` before \
             starting the port",
            self.cfg.iface
        )))
    }

    fn mtu(&self) -> Option<u16> {
        let mtu = self.netif.as_ref()?.mtu().ok()?;
        u16::try_from(mtu).ok()
    }

    fn link(&self) -> Link {
        self.netif.as_ref().map(Interface::link).unwrap_or_default()
    }

    fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        let Some(netif) = &self.netif else {
            return Err(self.closed());
        };
        if on == self.promisc {
            return Ok(());
        }
        netif.set_packet_promisc(netif.socket(), on).map_err(|e| {
            Error::io(
                format!(
                    "{}: turning promiscuous mode {}",
                    self.name,
                    if on { "on" } else { "off" }
                ),
                e.into(),
            )
        })?;
        self.promisc = on;
        Ok(())
    }

    fn promiscuous(&self) -> bool {
        self.promisc
    }

    /// `xdp_attached`, `xdp_native`, then per queue socket: `zero_copy`, `umem_hugepages`,
    /// `ring_size`, the wake-up calls made, the busy-polling budget in force and the
    /// busy-poll calls made, and the kernel's `XDP_STATISTICS`.
    fn xstats(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            ("xdp_attached".to_string(), u64::from(self.link.is_some())),
            (
                "xdp_native".to_string(),
                u64::from(self.link.as_ref().is_some_and(XdpLink::native)),
            ),
        ];
        for (i, x) in self.socks.iter().enumerate() {
            let Some(x) = x else { continue };
            let q = |k: &str| format!("q{i}_{k}");
            v.push((q("zero_copy"), u64::from(x.zero_copy())));
            v.push((q("umem_hugepages"), u64::from(x.umem().is_huge())));
            v.push((q("ring_size"), u64::from(x.ring_size())));
            v.push((q("rx_wakeups"), x.kicks.rx.load(Ordering::Relaxed)));
            v.push((q("tx_wakeups"), x.kicks.tx.load(Ordering::Relaxed)));
            v.push((q("busy_budget"), u64::from(x.busy_budget())));
            v.push((q("busy_polls"), x.kicks.busy_polls.load(Ordering::Relaxed)));
            if let Ok(s) = x.statistics() {
                v.push((q("kernel_rx_dropped"), s.rx_dropped));
                v.push((q("kernel_rx_ring_full"), s.rx_ring_full));
                v.push((q("kernel_fill_ring_empty"), s.rx_fill_ring_empty_descs));
                v.push((q("kernel_rx_invalid_descs"), s.rx_invalid_descs));
                v.push((q("kernel_tx_invalid_descs"), s.tx_invalid_descs));
                v.push((q("kernel_tx_ring_empty"), s.tx_ring_empty_descs));
            }
        }
        v
    }
}
