//! [`VhostDevice`]: the ethdev face of one vhost-user back end.

use crate::backend::ControlStats;
use crate::config::{Config, MAX_QUEUE_PAIRS};
use crate::control::{Control, Mode, Offer};
use crate::rxtx::{VhostRxQueue, VhostTxQueue};
use crate::shared::Shared;
use crate::vring::RingErrors;
use crate::DRIVER_NAME;
use pmd_core::devargs::VdevSpec;
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::{
    DevInfo, Device, Link, MacAddr, PortConf, RxOffloads, RxQueue, RxQueueConf, TxOffloads,
    TxQueue, TxQueueConf, L2_OVERHEAD,
};
use pmd_core::unix::{ListenError, Listener};
use pmd_core::vnet::VnetStats;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Largest frame either way (what a chain of guest buffers and an mbuf chain carry).
const MAX_FRAME: u32 = 65_535;

/// Receive offloads with `tso=1`: the front end's partial checksums are completed (and
/// flagged good), its super-frames kept whole (`TCP_LRO`) or cut into segments.
const RX_TSO_CAPA: RxOffloads =
    RxOffloads(RxOffloads::TCP_LRO.0 | RxOffloads::TCP_CKSUM.0 | RxOffloads::UDP_CKSUM.0);
/// Transmit offloads with `tso=1`: checksum and segmentation requests go to the front end
/// in the virtio-net header (GUEST_CSUM, GUEST_TSO4/6). The header cannot ask for the
/// IPv4 header checksum, so `IPV4_CKSUM` is not offered.
const TX_TSO_CAPA: TxOffloads =
    TxOffloads(TxOffloads::TCP_TSO.0 | TxOffloads::TCP_CKSUM.0 | TxOffloads::UDP_CKSUM.0);

/// One vhost-user port: its configuration, the listening socket (server mode), the
/// control thread (from probe to close), and the state it shares with the queues.
#[derive(Debug)]
pub struct VhostDevice {
    name: String,
    cfg: Config,
    shared: Arc<Shared>,
    listener: Option<Arc<Listener>>,
    control: Option<Control>,
    conf: PortConf,
    /// Per queue pair: errors of the guest's tx ring (our rx) and rx ring (our tx).
    rx_errs: Vec<Arc<RingErrors>>,
    tx_errs: Vec<Arc<RingErrors>>,
    /// Offload counters of the headers both ways (one set per port).
    vnet: Arc<VnetStats>,
    /// Protocol counters (messages, refusals by kind, descriptors closed).
    ctrl_stats: Arc<ControlStats>,
    /// Per tx queue: packets given back because no front end ran the ring.
    tx_link_down: Vec<Arc<AtomicU64>>,
    closed: bool,
}

impl VhostDevice {
    /// Validates the arguments, binds the socket (server mode) and starts the control
    /// thread: a front end can connect as soon as the port exists.
    pub fn open(vdev: &VdevSpec) -> Result<VhostDevice> {
        let cfg = Config::from_vdev(vdev)?;
        let name = vdev.name.clone();
        let listener = if cfg.client {
            None
        } else {
            Some(Arc::new(Listener::bind(&cfg.iface).map_err(
                |e| match e {
                    ListenError::Io(e) => Error::io(
                        format!(
                            "{name}: cannot listen on the vhost-user socket {}",
                            cfg.iface.display()
                        ),
                        e,
                    ),
                    e => Error::driver(&name, format!("{e}; pick another iface=")),
                },
            )?))
        };
        tracing::info!(
            "{name}: vhost-user back end on {} ({}, {} queue pairs)",
            cfg.iface.display(),
            if cfg.client { "client" } else { "server" },
            cfg.queues
        );
        let shared = Arc::new(Shared::new(cfg.queues));
        let mode = match &listener {
            Some(l) => Mode::Server(l.clone()),
            None => Mode::Client(cfg.iface.clone()),
        };
        let ctrl_stats = Arc::new(ControlStats::default());
        let offer = Offer {
            queue_pairs: cfg.queues,
            tso: cfg.tso,
            stats: ctrl_stats.clone(),
        };
        let control = Control::spawn(&name, mode, offer, shared.clone())
            .map_err(|e| Error::io(format!("{name}: starting the control thread"), e))?;
        Ok(VhostDevice {
            shared,
            name,
            cfg,
            listener,
            control: Some(control),
            ctrl_stats,
            conf: PortConf::default(),
            rx_errs: vec![Arc::default()],
            tx_errs: vec![Arc::default()],
            vnet: Arc::default(),
            tx_link_down: vec![Arc::default()],
            closed: false,
        })
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::driver(self.name.clone(), msg)
    }

    /// Why the last connection ended ("" if none ended yet).
    pub fn last_disconnect_reason(&self) -> String {
        self.shared.last_reason()
    }

    /// Receive offloads: chains always; checksums and LRO with `tso=1` (what the back end
    /// offers the front end; one that does not negotiate them sends plain frames).
    fn rx_offload_capa(&self) -> RxOffloads {
        if self.cfg.tso {
            RxOffloads::SCATTER | RX_TSO_CAPA
        } else {
            RxOffloads::SCATTER
        }
    }

    /// Transmit offloads: chains always; checksums and TSO with `tso=1`. A front end
    /// without GUEST_CSUM gets checksums computed here; a super-frame for one without
    /// GUEST_TSO (or GUEST_ECN for one with CWR) is cut into segments here
    /// (`tx_sw_segmented`).
    fn tx_offload_capa(&self) -> TxOffloads {
        if self.cfg.tso {
            TxOffloads::MULTI_SEGS | TX_TSO_CAPA
        } else {
            TxOffloads::MULTI_SEGS
        }
    }
}

impl Device for VhostDevice {
    fn info(&self) -> DevInfo {
        DevInfo {
            driver: DRIVER_NAME,
            max_rx_queues: self.cfg.queues,
            max_tx_queues: self.cfg.queues,
            // The front end sizes the rings; descriptor counts asked at queue setup are
            // accepted and not used.
            min_desc: 1,
            max_desc: u16::MAX,
            default_desc: 1024,
            desc_pow2: false,
            rx_offload_capa: self.rx_offload_capa(),
            tx_offload_capa: self.tx_offload_capa(),
            max_rx_pktlen: MAX_FRAME,
            max_mtu: (MAX_FRAME - L2_OVERHEAD) as u16,
            nb_seg_max: pmd_core::mbuf::MAX_SEGS,
            nb_mtu_seg_max: pmd_core::mbuf::MAX_SEGS,
            ..Default::default()
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<()> {
        if self.closed {
            return Err(self.err("the device is closed"));
        }
        if conf.rx_queues > MAX_QUEUE_PAIRS || conf.tx_queues > MAX_QUEUE_PAIRS {
            return Err(self.err(format!("at most {MAX_QUEUE_PAIRS} queues each way")));
        }
        self.conf = conf.clone();
        self.rx_errs = (0..conf.rx_queues).map(|_| Arc::default()).collect();
        self.tx_errs = (0..conf.tx_queues).map(|_| Arc::default()).collect();
        self.tx_link_down = (0..conf.tx_queues).map(|_| Arc::default()).collect();
        Ok(())
    }

    fn setup_rx_queue(&mut self, qid: u16, conf: RxQueueConf) -> Result<Box<dyn RxQueue>> {
        let errs = self
            .rx_errs
            .get(usize::from(qid))
            .cloned()
            .ok_or_else(|| self.err(format!("rx queue {qid} does not exist")))?;
        Ok(Box::new(VhostRxQueue::new(
            self.shared.clone(),
            qid,
            conf,
            errs,
            self.vnet.clone(),
        )))
    }

    fn setup_tx_queue(&mut self, qid: u16, conf: TxQueueConf) -> Result<Box<dyn TxQueue>> {
        let i = usize::from(qid);
        let (Some(errs), Some(down)) = (self.tx_errs.get(i), self.tx_link_down.get(i)) else {
            return Err(self.err(format!("tx queue {qid} does not exist")));
        };
        Ok(Box::new(VhostTxQueue::new(
            self.shared.clone(),
            qid,
            conf,
            errs.clone(),
            self.vnet.clone(),
            down.clone(),
        )))
    }

    /// Nothing to do: the control thread serves front ends from probe on (a front end in
    /// the same process probes right after this port and talks to it at once), and the
    /// queues run the rings whenever the application polls them.
    fn start(&mut self) -> Result<()> {
        if self.closed {
            return Err(self.err("the device is closed"));
        }
        Ok(())
    }

    /// The connection stays (like DPDK's `net_vhost`, whose front end keeps its link
    /// while the port is stopped); the queues are not polled while stopped.
    fn stop(&mut self) -> Result<()> {
        Ok(())
    }

    /// Closes the connection (every ring stopped) and the socket; logs the counters that
    /// are not zero.
    fn close(&mut self) {
        let counted: Vec<String> = self
            .xstats()
            .into_iter()
            .filter(|(_, v)| *v != 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        tracing::info!("{}: closing; counters: {}", self.name, counted.join(" "));
        if let Some(c) = self.control.take() {
            c.stop();
        }
        self.listener = None;
        self.closed = true;
    }

    fn link(&self) -> Link {
        if self.shared.link_up() {
            Link {
                up: true,
                speed_mbps: 10_000,
                full_duplex: true,
            }
        } else {
            Link::default()
        }
    }

    fn mac_addr(&self) -> MacAddr {
        self.cfg.mac
    }

    /// The back end delivers every frame; the flag is recorded only.
    fn set_promiscuous(&mut self, _on: bool) -> Result<()> {
        Ok(())
    }

    fn promiscuous(&self) -> bool {
        true
    }

    /// Connection counters, and per queue the ring errors and (tx) the packets given
    /// back while no front end ran the ring.
    fn xstats(&self) -> Vec<(String, u64)> {
        let c = &self.shared.counters;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut v = vec![
            ("link_up".to_string(), u64::from(self.shared.link_up())),
            ("features".to_string(), self.shared.features()),
            ("ctrl_connects".to_string(), ld(&c.connects)),
            ("ctrl_disconnects".to_string(), ld(&c.disconnects)),
            ("ctrl_refused".to_string(), ld(&c.refused)),
            ("ctrl_connect_failures".to_string(), ld(&c.connect_failures)),
        ];
        for (kind, errs) in [("rx", &self.rx_errs), ("tx", &self.tx_errs)] {
            for (i, e) in errs.iter().enumerate() {
                v.push((format!("{kind}_q{i}_bad_ring"), ld(&e.bad_ring)));
                v.push((format!("{kind}_q{i}_bad_addr"), ld(&e.bad_addr)));
                v.push((format!("{kind}_q{i}_bad_chain"), ld(&e.bad_chain)));
                v.push((format!("{kind}_q{i}_too_long"), ld(&e.too_long)));
                v.push((format!("{kind}_q{i}_resumed"), ld(&e.resumed)));
            }
        }
        for (i, d) in self.tx_link_down.iter().enumerate() {
            v.push((format!("tx_q{i}_link_down"), ld(d)));
        }
        v.extend(self.ctrl_stats.xstats());
        v.extend(self.vnet.xstats());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmd_core::ethdev::Port;

    fn port(dir: &pmd_testkit::TempDir, tso: u8) -> Port {
        let spec: VdevSpec = format!(
            "net_vhost0,iface={},tso={tso}",
            dir.file("vh.sock").display()
        )
        .parse()
        .unwrap();
        Port::new(0, "net_vhost0", Box::new(VhostDevice::open(&spec).unwrap()))
    }

    fn conf(rx: RxOffloads, tx: TxOffloads) -> PortConf {
        PortConf {
            rx_queues: 1,
            tx_queues: 1,
            rx_offloads: rx,
            tx_offloads: tx,
            mtu: None,
        }
    }

    #[test]
    fn offloads_are_offered_only_with_tso() {
        let dir = pmd_testkit::TempDir::new("pmd-vhost-capa");
        let mut p = port(&dir, 0);
        let info = p.info();
        assert_eq!(info.rx_offload_capa, RxOffloads::SCATTER);
        assert_eq!(info.tx_offload_capa, TxOffloads::MULTI_SEGS);
        let e = p
            .configure(&conf(RxOffloads::SCATTER, TxOffloads::TCP_TSO))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not support tx offload"), "{e}");
        let e = p
            .configure(&conf(RxOffloads::TCP_LRO, TxOffloads::NONE))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not support rx offload"), "{e}");
        p.configure(&conf(RxOffloads::SCATTER, TxOffloads::MULTI_SEGS))
            .unwrap();
        p.close();

        let mut p = port(&dir, 1);
        let info = p.info();
        assert_eq!(
            info.rx_offload_capa,
            RxOffloads::SCATTER
                | RxOffloads::TCP_LRO
                | RxOffloads::TCP_CKSUM
                | RxOffloads::UDP_CKSUM
        );
        assert_eq!(
            info.tx_offload_capa,
            TxOffloads::MULTI_SEGS
                | TxOffloads::TCP_TSO
                | TxOffloads::TCP_CKSUM
                | TxOffloads::UDP_CKSUM
        );
        let e = p
            .configure(&conf(RxOffloads::NONE, TxOffloads::IPV4_CKSUM))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not support tx offload"), "{e}");
        p.configure(&conf(info.rx_offload_capa, info.tx_offload_capa))
            .unwrap();
        p.close();
        assert!(!dir.file("vh.sock").exists(), "socket removed at close");
    }
}
