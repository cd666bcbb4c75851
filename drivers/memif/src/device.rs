//! [`MemifDevice`]: the ethdev face of one memif interface.

use crate::config::{Config, Role};
use crate::control::{Control, Mode, Shared};
use crate::handshake::{ClientParams, ServerParams};
use crate::rxtx::{MemifRxQueue, MemifTxQueue, QueueErrors};
use crate::sock::Listener;
use crate::DRIVER_NAME;
use pmd_core::devargs::VdevSpec;
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::{
    DevInfo, Device, Link, MacAddr, PortConf, RxOffloads, RxQueue, RxQueueConf, TxOffloads,
    TxQueue, TxQueueConf, L2_OVERHEAD,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Most queues each way (DPDK's limit).
pub const MAX_QUEUES: u16 = 255;
/// Application name sent in HELLO/INIT.
const APP_NAME: &str = "pmd-rs memif";

/// One memif interface: its configuration, the server's listening socket, the control
/// thread while started, and the state it shares with the queues.
#[derive(Debug)]
pub struct MemifDevice {
    name: String,
    cfg: Config,
    shared: Arc<Shared>,
    listener: Option<Arc<Listener>>,
    control: Option<Control>,
    conf: PortConf,
    rx_errs: Vec<Arc<QueueErrors>>,
    tx_errs: Vec<Arc<QueueErrors>>,
    closed: bool,
}

impl MemifDevice {
    /// Validates the arguments; a server binds its socket now (so a client can find it
    /// and a conflict shows at once), a client connects when started.
    pub fn open(vdev: &VdevSpec) -> Result<MemifDevice> {
        let cfg = Config::from_vdev(vdev)?;
        let name = vdev.name.clone();
        let listener = match cfg.role {
            Role::Server => Some(Arc::new(Listener::bind(&cfg.socket).map_err(|e| {
                Error::io(
                    format!(
                        "{name}: cannot listen on memif socket {} (another server on it? \
                         remove a stale socket file or pick another socket=)",
                        cfg.socket
                    ),
                    e,
                )
            })?)),
            Role::Client => None,
        };
        if cfg.zero_copy {
            // Pools made from now on (the application's, after probing) keep their data
            // rooms apart, so that only those are shared with the server.
            pmd_core::mempool::keep_data_apart();
        }
        tracing::info!(
            "{name}: memif {} on {} (id {}, rsize {}, bsize {}{})",
            cfg.role.name(),
            cfg.socket,
            cfg.id,
            cfg.rsize,
            cfg.bsize,
            if cfg.zero_copy { ", zero-copy" } else { "" }
        );
        let conf = PortConf::default();
        Ok(MemifDevice {
            name,
            cfg,
            shared: Arc::default(),
            listener,
            control: None,
            rx_errs: vec![Arc::default()],
            tx_errs: vec![Arc::default()],
            conf,
            closed: false,
        })
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::driver(self.name.clone(), msg)
    }

    /// Why the last connection ended ("" if none ended yet): our reason or the peer's.
    pub fn last_disconnect_reason(&self) -> String {
        self.shared.last_reason()
    }

    fn mode(&self) -> Result<Mode> {
        Ok(match self.cfg.role {
            Role::Server => Mode::Server {
                listener: self
                    .listener
                    .clone()
                    .ok_or_else(|| self.err("the device is closed"))?,
                params: ServerParams {
                    id: self.cfg.id,
                    secret: self.cfg.secret.clone(),
                    rx_queues: self.conf.rx_queues,
                    tx_queues: self.conf.tx_queues,
                    if_name: self.name.clone(),
                    app_name: APP_NAME.into(),
                },
            },
            Role::Client => Mode::Client {
                addr: self.cfg.socket.clone(),
                params: ClientParams {
                    id: self.cfg.id,
                    secret: self.cfg.secret.clone(),
                    rx_queues: self.conf.rx_queues,
                    tx_queues: self.conf.tx_queues,
                    log2: self.cfg.rsize,
                    bsize: self.cfg.bsize,
                    zero_copy: self.cfg.zero_copy,
                    if_name: self.name.clone(),
                    app_name: APP_NAME.into(),
                },
                huge: !pmd_core::memory::config().no_huge,
            },
        })
    }
}

impl Device for MemifDevice {
    fn info(&self) -> DevInfo {
        DevInfo {
            driver: DRIVER_NAME,
            max_rx_queues: MAX_QUEUES,
            max_tx_queues: MAX_QUEUES,
            // The ring size is rsize (negotiated at connect); descriptor counts asked at
            // queue setup are accepted and not used.
            min_desc: 1,
            max_desc: u16::MAX,
            default_desc: 1 << self.cfg.rsize,
            desc_pow2: false,
            // Descriptor chains both ways: any frame size, as mbuf chains with SCATTER.
            rx_offload_capa: RxOffloads::SCATTER,
            tx_offload_capa: TxOffloads::MULTI_SEGS,
            max_rx_pktlen: u32::from(u16::MAX),
            max_mtu: u16::MAX - L2_OVERHEAD as u16,
            nb_seg_max: pmd_core::mbuf::MAX_SEGS,
            nb_mtu_seg_max: pmd_core::mbuf::MAX_SEGS,
            ..Default::default()
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<()> {
        if self.closed {
            return Err(self.err("the device is closed"));
        }
        self.conf = conf.clone();
        self.rx_errs = (0..conf.rx_queues).map(|_| Arc::default()).collect();
        self.tx_errs = (0..conf.tx_queues).map(|_| Arc::default()).collect();
        Ok(())
    }

    fn setup_rx_queue(&mut self, qid: u16, conf: RxQueueConf) -> Result<Box<dyn RxQueue>> {
        let errs = self
            .rx_errs
            .get(qid as usize)
            .cloned()
            .ok_or_else(|| self.err(format!("rx queue {qid} does not exist")))?;
        Ok(Box::new(MemifRxQueue::new(
            self.shared.clone(),
            qid,
            conf.port,
            conf.pool,
            conf.stats,
            errs,
            conf.offloads.contains(RxOffloads::SCATTER),
        )))
    }

    fn setup_tx_queue(&mut self, qid: u16, conf: TxQueueConf) -> Result<Box<dyn TxQueue>> {
        let errs = self
            .tx_errs
            .get(qid as usize)
            .cloned()
            .ok_or_else(|| self.err(format!("tx queue {qid} does not exist")))?;
        Ok(Box::new(MemifTxQueue::new(
            self.shared.clone(),
            qid,
            conf.stats,
            errs,
        )))
    }

    /// Starts the control thread: a server accepts clients, a client connects (and keeps
    /// retrying). The link comes up when the handshake completes.
    fn start(&mut self) -> Result<()> {
        if self.closed {
            return Err(self.err("the device is closed"));
        }
        if self.control.is_none() {
            let mode = self.mode()?;
            let c = Control::spawn(&self.name, mode, self.shared.clone())
                .map_err(|e| Error::io(format!("{}: starting the control thread", self.name), e))?;
            self.control = Some(c);
        }
        Ok(())
    }

    /// Disconnects (DISCONNECT "Interface stopped") and stops the control thread; queues
    /// see the link go down at their next burst.
    fn stop(&mut self) -> Result<()> {
        if let Some(c) = self.control.take() {
            c.stop();
        }
        Ok(())
    }

    fn close(&mut self) {
        let _ = self.stop();
        self.listener = None;
        self.closed = true;
    }

    fn link(&self) -> Link {
        if self.shared.link_up() {
            Link {
                up: true,
                speed_mbps: 100_000,
                full_duplex: true,
            }
        } else {
            Link::default()
        }
    }

    fn mac_addr(&self) -> MacAddr {
        self.cfg.mac
    }

    /// memif delivers every frame; the flag is recorded only.
    fn set_promiscuous(&mut self, _on: bool) -> Result<()> {
        Ok(())
    }

    fn promiscuous(&self) -> bool {
        true
    }

    /// Control-plane counters, the negotiated layout, per-queue ring/descriptor errors,
    /// and per tx queue the packets given back while the link was down.
    fn xstats(&self) -> Vec<(String, u64)> {
        let c = &self.shared.counters;
        let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let mut v = vec![
            ("link_up".to_string(), u64::from(self.shared.link_up())),
            ("ctrl_connects".to_string(), ld(&c.connects)),
            ("ctrl_disconnects".to_string(), ld(&c.disconnects)),
            ("ctrl_peer_disconnects".to_string(), ld(&c.peer_disconnects)),
            ("ctrl_malformed_msgs".to_string(), ld(&c.malformed)),
            ("ctrl_rejected".to_string(), ld(&c.rejected)),
            ("ctrl_ring_faults".to_string(), ld(&c.ring_faults)),
            ("ctrl_connect_failures".to_string(), ld(&c.connect_failures)),
        ];
        if let (_, Some(s)) = self.shared.current() {
            v.push(("rings_c2s".into(), s.c2s.len() as u64));
            v.push(("rings_s2c".into(), s.s2c.len() as u64));
            v.push((
                "log2_ring_size".into(),
                s.c2s.first().map_or(0, |r| u64::from(r.log2)),
            ));
            v.push(("regions".into(), s.regions.len() as u64));
        }
        for (kind, errs) in [("rx", &self.rx_errs), ("tx", &self.tx_errs)] {
            for (i, e) in errs.iter().enumerate() {
                v.push((format!("{kind}_q{i}_bad_ring_index"), ld(&e.bad_ring)));
                v.push((format!("{kind}_q{i}_bad_desc"), ld(&e.bad_desc)));
                v.push((format!("{kind}_q{i}_too_long"), ld(&e.too_long)));
                v.push((format!("{kind}_q{i}_zc_copied"), ld(&e.zc_copied)));
            }
        }
        for (i, e) in self.tx_errs.iter().enumerate() {
            v.push((format!("tx_q{i}_link_down"), ld(&e.link_down)));
        }
        v
    }
}
