//! [`TapDevice`]: creating or attaching to the interface, its queue fds, and its state.

use crate::config::{Config, MacChoice};
use crate::rxtx::{TapFd, TapRxQueue, TapTxQueue, VnetTx};
use crate::{sys, DRIVER_NAME, MAX_MTU, MAX_QUEUES, MIN_MTU, TX_MAX_SEGS};
use pmd_core::devargs::VdevSpec;
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::{
    DevInfo, Device, Link, MacAddr, PortConf, RxOffloads, RxQueue, RxQueueConf, TxOffloads,
    TxQueue, TxQueueConf, L2_OVERHEAD,
};
use pmd_core::netif::{DriverInfo, Flags, Interface, NetifError};
use pmd_core::vnet::{RxProcessor, VnetStats, VNET_HDR_LEN};
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Speed reported while the link is up (a tap has none; DPDK's net_tap says 10G too).
const TAP_SPEED_MBPS: u32 = 10_000;

/// One tap device: a kernel tap interface and one fd per rx queue.
pub struct TapDevice {
    name: String,
    /// The interface's actual name.
    iface: String,
    /// The interface existed before we attached (it is never deleted by us).
    existed: bool,
    multi_queue: bool,
    /// The interface, for its requests; `None` once closed.
    netif: Option<Interface>,
    /// Queue fds: one per rx queue (tx queue `i` writes on fd `i % len`); empty once closed.
    fds: Vec<Arc<TapFd>>,
    conf: PortConf,
    mac: MacAddr,
    /// We brought the interface up at start (and take it down again at stop).
    raised: bool,
    /// The largest frame rx queues must take (MTU + [`L2_OVERHEAD`]), shared with the
    /// scattering rx queues so that they grow their spare segments when the MTU grows.
    max_frame: Arc<AtomicU32>,
    /// `persist=1` was given.
    persist: bool,
    /// `gso=1` was given: vnet headers, LRO and TSO whatever the configuration.
    gso_arg: bool,
    /// The interface has `IFF_VNET_HDR` (every frame has a virtio-net header).
    vnet: bool,
    /// The kernel may hand over super-frames (`TUN_F_TSO4/6`), delivered as `RX_LRO`.
    lro: bool,
    /// Received super-frames go out as GSO frames (`TCP_TSO` configured, or `gso=1`).
    tso: bool,
    /// Counters of the vnet path, shared with the queues.
    vstats: Arc<VnetStats>,
}

/// Receive offloads that need vnet headers (the kernel's checksum and GSO metadata).
const RX_VNET: RxOffloads =
    RxOffloads(RxOffloads::TCP_LRO.0 | RxOffloads::TCP_CKSUM.0 | RxOffloads::UDP_CKSUM.0);
/// Transmit offloads that need vnet headers (the kernel completes checksums, segments).
const TX_VNET: TxOffloads =
    TxOffloads(TxOffloads::TCP_TSO.0 | TxOffloads::TCP_CKSUM.0 | TxOffloads::UDP_CKSUM.0);

impl std::fmt::Debug for TapDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapDevice")
            .field("name", &self.name)
            .field("iface", &self.iface)
            .field("existed", &self.existed)
            .field("multi_queue", &self.multi_queue)
            .field("queues", &self.fds.len())
            .finish()
    }
}

fn needs_cap(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

/// Opens `/dev/net/tun`, with the errors a user can act on.
fn open_tun(name: &str) -> Result<OwnedFd> {
    sys::open_tun().map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO) => Error::driver(
            name,
            format!(
                "{} is missing: load the tun module (`modprobe tun`) or create the node \
                 (`mkdir -p /dev/net && mknod /dev/net/tun c 10 200`) ({e})",
                sys::TUN_PATH
            ),
        ),
        _ if needs_cap(&e) => Error::driver(
            name,
            format!(
                "cannot open {}: a tap interface needs CAP_NET_ADMIN, run as root ({e})",
                sys::TUN_PATH
            ),
        ),
        _ => Error::io(format!("{name}: opening {}", sys::TUN_PATH), e),
    })
}

/// Attaches a new fd to `iface` with `flags`; returns it and the interface's name.
fn attach(name: &str, iface: &str, flags: libc::c_short) -> Result<(OwnedFd, String)> {
    let fd = open_tun(name)?;
    let actual = sys::tun_set_iff(&fd, iface, flags).map_err(|e| attach_error(name, iface, e))?;
    Ok((fd, actual))
}

fn attach_error(name: &str, iface: &str, e: io::Error) -> Error {
    let msg = match e.raw_os_error() {
        _ if needs_cap(&e) => format!(
            "creating or attaching to tap interface '{iface}' needs CAP_NET_ADMIN: run as root ({e})"
        ),
        Some(libc::EBUSY) => format!(
            "tap interface '{iface}' is in use by another process (without multi_queue a tap \
             takes one user) ({e})"
        ),
        Some(libc::EINVAL) => format!(
            "the kernel refused tap interface '{iface}': an invalid name, or a tun/other \
             device of that name with other flags ({e})"
        ),
        Some(libc::E2BIG) => format!("tap interface '{iface}' has no room for more queues ({e})"),
        _ => return Error::io(format!("{name}: TUNSETIFF on '{iface}'"), e),
    };
    Error::driver(name, msg)
}

/// Checks that an existing interface is a tap (not a tun or another kind of device).
fn check_existing(name: &str, netif: &Interface) -> Result<()> {
    let iface = netif.name();
    match netif.driver_info() {
        Ok(DriverInfo { driver, bus_info }) if driver == "tun" && bus_info == "tap" => Ok(()),
        Ok(DriverInfo { driver, .. }) if driver == "tun" => Err(Error::driver(
            name,
            format!("interface '{iface}' is a tun (layer 3) device; net_tap needs a tap"),
        )),
        Ok(DriverInfo { driver, .. }) => Err(Error::driver(
            name,
            format!(
                "interface '{iface}' exists and is not a tap device (driver '{driver}'); \
                 choose another name with iface=NAME"
            ),
        )),
        Err(e) => Err(Error::driver(
            name,
            format!(
                "interface '{iface}' exists and is not a tap device ({})",
                io::Error::from(e)
            ),
        )),
    }
}

/// Finds the interface `iface` that attaching created or found.
fn find(name: &str, iface: &str) -> Result<Interface> {
    Interface::by_name(iface).map_err(|e| match e {
        NetifError::Socket { source } => {
            Error::io(format!("{name}: socket for interface ioctls"), source)
        }
        e => Error::io(format!("{name}: looking up '{iface}'"), e.into()),
    })
}

impl TapDevice {
    /// Validates the arguments, then creates the tap interface (or attaches to the
    /// existing tap of that name) and sets its MAC address if asked to.
    pub fn open(vdev: &VdevSpec) -> Result<TapDevice> {
        let cfg = Config::from_vdev(vdev)?;
        let name = vdev.name.clone();
        // A name with `%d` is a pattern the kernel fills in: always a new interface.
        let existing = if cfg.iface.contains('%') {
            None
        } else {
            Interface::by_name(&cfg.iface).ok()
        };
        let existed = existing.is_some();
        if let Some(netif) = &existing {
            check_existing(&name, netif)?;
        }
        let base = sys::IFF_TAP | sys::IFF_NO_PI;
        let mq = base | sys::IFF_MULTI_QUEUE;
        // A new interface is always multi-queue (so any queue count can be configured
        // later); an existing one keeps the mode it was created with.
        let (fd, iface, multi_queue) = match attach(&name, &cfg.iface, mq) {
            Ok((fd, iface)) => (fd, iface, true),
            Err(_) if existed => {
                let (fd, iface) = attach(&name, &cfg.iface, base)?;
                (fd, iface, false)
            }
            Err(e) => return Err(e),
        };
        let netif = match existing {
            Some(netif) => netif,
            None => find(&name, &iface)?,
        };
        if let MacChoice::Set(mac) = cfg.mac {
            netif.set_mac(mac.0).map_err(|e| {
                Error::io(
                    format!("{name}: setting the MAC address of '{iface}'"),
                    e.into(),
                )
            })?;
        }
        let mac = netif
            .mac()
            .map(MacAddr)
            .map_err(|e| Error::io(format!("{name}: MAC address of '{iface}'"), e.into()))?;
        if cfg.persist && !existed {
            sys::tun_set_persist(&fd, true)
                .map_err(|e| Error::io(format!("{name}: TUNSETPERSIST on '{iface}'"), e))?;
        }
        let vnet = sys::tun_get_flags(&fd).is_ok_and(|f| f & sys::IFF_VNET_HDR != 0);
        tracing::info!(
            "{name}: tap interface {iface} ({}, {mac}, {})",
            if existed { "existing" } else { "created" },
            if multi_queue {
                "multi-queue"
            } else {
                "single queue"
            }
        );
        Ok(TapDevice {
            name,
            iface,
            existed,
            multi_queue,
            netif: Some(netif),
            fds: vec![Arc::new(TapFd::new(fd))],
            conf: PortConf::default(),
            mac,
            raised: false,
            max_frame: Arc::new(AtomicU32::new(0)),
            persist: cfg.persist,
            gso_arg: cfg.gso,
            vnet,
            lro: false,
            tso: false,
            vstats: Arc::new(VnetStats::default()),
        })
    }

    /// `TUNSETIFF` flags of this device's fds.
    fn attach_flags(&self, vnet: bool) -> libc::c_short {
        let mut f = sys::IFF_TAP | sys::IFF_NO_PI;
        if self.multi_queue {
            f |= sys::IFF_MULTI_QUEUE;
        }
        if vnet {
            f |= sys::IFF_VNET_HDR;
        }
        f
    }

    /// Turns vnet headers on or off. `IFF_VNET_HDR` belongs to the interface and the
    /// kernel only takes it from the attach that finds no other queue, so every fd is
    /// closed and one attached again (a tap we created is made persistent meanwhile, so
    /// that it survives having no fd).
    fn set_vnet(&mut self, on: bool) -> Result<()> {
        let hold = !self.existed && !self.persist;
        if hold {
            let fd0 = self
                .fds
                .first()
                .ok_or_else(|| self.err("the device is closed"))?;
            sys::tun_set_persist(fd0.fd(), true).map_err(|e| {
                Error::io(
                    format!("{}: TUNSETPERSIST on '{}'", self.name, self.iface),
                    e,
                )
            })?;
        }
        self.fds.clear();
        let res = attach(&self.name, &self.iface, self.attach_flags(on));
        let res = match res {
            Ok((fd, _)) => Ok(fd),
            // Keep the interface attached (and deletable) with the old mode.
            Err(e) => match attach(&self.name, &self.iface, self.attach_flags(!on)) {
                Ok((fd, _)) => {
                    self.fds.push(Arc::new(TapFd::new(fd)));
                    Err(e)
                }
                Err(_) => Err(e),
            },
        };
        if hold {
            if let Some(fd) = res.as_ref().ok().or(self.fds.first().map(|f| f.fd())) {
                let _ = sys::tun_set_persist(fd, false);
            }
        }
        let fd = res?;
        let now = sys::tun_get_flags(&fd).is_ok_and(|f| f & sys::IFF_VNET_HDR != 0);
        self.fds.push(Arc::new(TapFd::new(fd)));
        self.vnet = now;
        if now != on {
            return Err(self.err(format!(
                "cannot turn vnet headers (needed by the checksum/LRO/TSO offloads) {} on                  '{}': other fds still hold the interface (queues of an earlier                  configuration, or another process); release them, or configure no such                  offload",
                if on { "on" } else { "off" },
                self.iface
            )));
        }
        Ok(())
    }

    /// Header size and the kernel's offloads (`TUN_F_*`) for the vnet mode just set.
    fn apply_vnet_offloads(&self) -> Result<()> {
        let fd = self
            .fds
            .first()
            .ok_or_else(|| self.err("the device is closed"))?;
        let io = |what: &str, e| Error::io(format!("{}: {what} on '{}'", self.name, self.iface), e);
        sys::tun_set_vnet_hdr_sz(fd.fd(), VNET_HDR_LEN as libc::c_int)
            .map_err(|e| io("TUNSETVNETHDRSZ", e))?;
        let flags = if self.lro {
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN
        } else {
            0
        };
        sys::tun_set_offload(fd.fd(), flags).map_err(|e| io("TUNSETOFFLOAD", e))
    }

    /// The kernel interface's name.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Whether the interface existed before this device attached to it.
    pub fn existed(&self) -> bool {
        self.existed
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::driver(self.name.clone(), msg)
    }

    fn netif(&self) -> Result<&Interface> {
        self.netif
            .as_ref()
            .ok_or_else(|| self.err("the device is closed"))
    }

    /// The interface's flags now (none once closed or unreadable).
    fn flags(&self) -> Flags {
        self.netif
            .as_ref()
            .and_then(|n| n.flags().ok())
            .unwrap_or_default()
    }

    /// Turns a flag on or off with `set` ([`Interface::set_up`] or
    /// [`Interface::set_promisc`]); `what` names it in the error.
    fn set_flag(
        &self,
        set: fn(&Interface, bool) -> std::result::Result<(), NetifError>,
        on: bool,
        what: &str,
    ) -> Result<()> {
        set(self.netif()?, on).map_err(|e| {
            Error::io(
                format!(
                    "{}: turning {what} {} on '{}'",
                    self.name,
                    if on { "on" } else { "off" },
                    self.iface
                ),
                e.into(),
            )
        })
    }
}

impl Device for TapDevice {
    fn info(&self) -> DevInfo {
        DevInfo {
            driver: DRIVER_NAME,
            max_rx_queues: if self.multi_queue { MAX_QUEUES } else { 1 },
            max_tx_queues: MAX_QUEUES,
            // No descriptor ring: the kernel queues frames (txqueuelen); any count is accepted.
            min_desc: 1,
            max_desc: u16::MAX,
            default_desc: 1024,
            desc_pow2: false,
            rx_offload_capa: RxOffloads::SCATTER | RX_VNET,
            tx_offload_capa: TxOffloads::MULTI_SEGS | TX_VNET | TxOffloads::IPV4_CKSUM,
            max_rx_pktlen: u32::from(MAX_MTU) + L2_OVERHEAD,
            min_mtu: MIN_MTU,
            max_mtu: MAX_MTU,
            nb_seg_max: TX_MAX_SEGS,
            nb_mtu_seg_max: TX_MAX_SEGS,
        }
    }

    /// One fd per rx queue (the kernel spreads flows over them); tx queues share them.
    fn configure(&mut self, conf: &PortConf) -> Result<()> {
        self.netif()?;
        let want = usize::from(conf.rx_queues);
        if want > 1 && !self.multi_queue {
            return Err(self.err(format!(
                "{want} rx queues need a multi-queue tap, and '{}' was created without \
                 multi_queue (recreate it: ip tuntap add {} mode tap multi_queue)",
                self.iface, self.iface
            )));
        }
        let need_vnet = self.gso_arg
            || !(conf.rx_offloads & RX_VNET).is_empty()
            || !(conf.tx_offloads & TX_VNET).is_empty();
        if need_vnet != self.vnet {
            self.set_vnet(need_vnet)?;
        }
        self.lro = self.vnet && (self.gso_arg || conf.rx_offloads.contains(RxOffloads::TCP_LRO));
        self.tso = self.gso_arg || conf.tx_offloads.contains(TxOffloads::TCP_TSO);
        if self.vnet {
            self.apply_vnet_offloads()?;
        }
        let flags = self.attach_flags(self.vnet) | sys::IFF_MULTI_QUEUE;
        while self.fds.len() < want {
            let (fd, _) = attach(&self.name, &self.iface, flags)?;
            self.fds.push(Arc::new(TapFd::new(fd)));
        }
        self.fds.truncate(want.max(1));
        self.conf = conf.clone();
        Ok(())
    }

    fn setup_rx_queue(&mut self, qid: u16, conf: RxQueueConf) -> Result<Box<dyn RxQueue>> {
        self.netif()?;
        let fd = self
            .fds
            .get(usize::from(qid))
            .filter(|_| qid < self.conf.rx_queues)
            .ok_or_else(|| {
                self.err(format!(
                    "rx queue {qid} does not exist ({} configured)",
                    self.conf.rx_queues
                ))
            })?;
        let fd = fd.clone();
        self.max_frame
            .fetch_max(conf.max_rx_pktlen, Ordering::Relaxed);
        let vnet = self.vnet.then(|| RxProcessor {
            lro: self.lro || conf.offloads.contains(RxOffloads::TCP_LRO),
            stats: self.vstats.clone(),
        });
        Ok(Box::new(TapRxQueue::new(
            fd,
            conf,
            self.max_frame.clone(),
            vnet,
            self.lro,
        )))
    }

    fn setup_tx_queue(&mut self, qid: u16, conf: TxQueueConf) -> Result<Box<dyn TxQueue>> {
        self.netif()?;
        if qid >= self.conf.tx_queues || self.fds.is_empty() {
            return Err(self.err(format!(
                "tx queue {qid} does not exist ({} configured)",
                self.conf.tx_queues
            )));
        }
        let fd = self.fds[usize::from(qid) % self.fds.len()].clone();
        let vnet = self.vnet.then(|| VnetTx {
            tso: self.tso || conf.offloads.contains(TxOffloads::TCP_TSO),
            stats: self.vstats.clone(),
        });
        Ok(Box::new(TapTxQueue::new(
            fd,
            conf.stats,
            vnet,
            self.vstats.clone(),
        )))
    }

    /// Brings the interface up (it stays up at stop if it was up before).
    fn start(&mut self) -> Result<()> {
        if !self.flags().is_up() {
            self.set_flag(Interface::set_up, true, "the interface")?;
            self.raised = true;
        }
        Ok(())
    }

    /// Takes the interface down again if start brought it up. An interface no longer in
    /// this namespace (moved with `ip link set ... netns`, the fds still work) is left as
    /// it is.
    fn stop(&mut self) -> Result<()> {
        if self.raised {
            self.raised = false;
            let gone = self.netif.as_ref().is_some_and(|n| !n.exists());
            if gone {
                tracing::info!(
                    "{}: '{}' is no longer in this network namespace; left as it is",
                    self.name,
                    self.iface
                );
                return Ok(());
            }
            self.set_flag(Interface::set_up, false, "the interface")?;
        }
        Ok(())
    }

    /// Closes the device's fds: a tap it created (without `persist`) disappears once the
    /// queue handles are gone too.
    fn close(&mut self) {
        if self.raised {
            if let Err(e) = self.stop() {
                tracing::warn!("{}: {e}", self.name);
            }
        }
        self.fds.clear();
        self.netif = None;
    }

    fn link(&self) -> Link {
        let flags = self.flags();
        if !(flags.is_up() && flags.is_running()) {
            return Link::default();
        }
        Link {
            up: true,
            speed_mbps: TAP_SPEED_MBPS,
            full_duplex: true,
        }
    }

    fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        self.set_flag(Interface::set_promisc, on, "promiscuous mode")
    }

    fn promiscuous(&self) -> bool {
        self.flags().is_promisc()
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            ("tap_queue_fds".to_string(), self.fds.len() as u64),
            ("tap_vnet_hdr".to_string(), u64::from(self.vnet)),
            ("tap_kernel_tso".to_string(), u64::from(self.lro)),
        ];
        v.extend(self.vstats.xstats());
        v
    }

    /// The kernel interface's MTU (`SIOCGIFMTU`; someone may change it under us).
    fn mtu(&self) -> Option<u16> {
        let mtu = self.netif.as_ref()?.mtu().ok()?;
        Some(mtu.min(u32::from(u16::MAX)) as u16)
    }

    /// Sets the kernel interface's MTU (`SIOCSIFMTU`); scattering rx queues grow their
    /// spare segments to match on their next burst.
    fn set_mtu(&mut self, mtu: u16) -> Result<()> {
        self.netif()?.set_mtu(u32::from(mtu)).map_err(|e| {
            let e = io::Error::from(e);
            let hint = if needs_cap(&e) {
                ": changing an interface's MTU needs CAP_NET_ADMIN, run as root"
            } else {
                &format!(" (a tap takes {MIN_MTU}..={MAX_MTU})")[..]
            };
            Error::io(
                format!(
                    "{}: setting the MTU of '{}' to {mtu}{hint}",
                    self.name, self.iface
                ),
                e,
            )
        })?;
        self.max_frame
            .store(u32::from(mtu) + L2_OVERHEAD, Ordering::Relaxed);
        Ok(())
    }
}
