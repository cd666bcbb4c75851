//! [`PcapDevice`]: the files of one `net_pcap` port.

use crate::config::Config;
use crate::file::{Sink, Trace};
use crate::rxtx::{PcapRxQueue, PcapTxQueue};
use crate::DRIVER_NAME;
use pmd_capture::SNAPLEN;
use pmd_core::devargs::VdevSpec;
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::{
    DevInfo, Device, Link, MacAddr, PortConf, RxOffloads, RxQueue, RxQueueConf, TxOffloads,
    TxQueue, TxQueueConf, L2_OVERHEAD,
};
use pmd_core::mbuf::MAX_SEGS;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

/// Largest frame the port takes: what a record of the files it writes holds
/// ([`SNAPLEN`]). Longer frames in an rx file are still replayed whole.
const MAX_FRAME: u32 = SNAPLEN;

/// Devices probed so far, for their MAC addresses.
static INSTANCES: AtomicU16 = AtomicU16::new(0);

/// One pcap device: rx files loaded in memory, tx files open for writing.
pub struct PcapDevice {
    name: String,
    rx: Vec<Arc<Trace>>,
    tx: Vec<Arc<Sink>>,
    infinite_rx: bool,
    /// Incremented by each start: rx queues rewind when it changes.
    starts: Arc<AtomicU64>,
    conf: PortConf,
    mac: MacAddr,
    promisc: bool,
    closed: bool,
    started: bool,
}

impl std::fmt::Debug for PcapDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapDevice")
            .field("name", &self.name)
            .field("rx_files", &self.rx.len())
            .field("tx_files", &self.tx.len())
            .field("infinite_rx", &self.infinite_rx)
            .finish()
    }
}

impl PcapDevice {
    /// Validates the arguments, loads every rx file into memory (so the data path does no
    /// file I/O on rx) and creates every tx file (writing its pcap header).
    pub fn open(vdev: &VdevSpec) -> Result<PcapDevice> {
        let cfg = Config::from_vdev(vdev)?;
        let name = vdev.name.clone();
        let mut rx = Vec::with_capacity(cfg.rx.len());
        for p in &cfg.rx {
            let t = Trace::load(p).map_err(|e| Error::driver(&name, format!("rx_pcap {e}")))?;
            if t.is_empty() && cfg.infinite_rx {
                return Err(Error::driver(
                    &name,
                    format!(
                        "rx_pcap {}: no packets, so infinite_rx=1 has nothing to replay",
                        p.display()
                    ),
                ));
            }
            tracing::info!("{name}: {} packets from {}", t.len(), p.display());
            rx.push(Arc::new(t));
        }
        let mut tx = Vec::with_capacity(cfg.tx.len());
        for p in &cfg.tx {
            let s = Sink::create(p).map_err(|e| Error::driver(&name, format!("tx_pcap {e}")))?;
            tx.push(Arc::new(s));
        }
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        Ok(PcapDevice {
            name,
            rx,
            tx,
            infinite_rx: cfg.infinite_rx,
            starts: Arc::default(),
            conf: PortConf::default(),
            // DPDK's net_pcap addresses: 02 then "pcap" in ASCII, then the device's
            // number (a byte), so outputs compare byte for byte with DPDK apps'.
            mac: MacAddr([0x02, 0x70, 0x63, 0x61, 0x70, n as u8]),
            promisc: true,
            closed: false,
            started: false,
        })
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::driver(self.name.clone(), msg)
    }

    fn check_open(&self) -> Result<()> {
        if self.closed {
            Err(self.err("the device is closed"))
        } else {
            Ok(())
        }
    }

    fn flush_all(&self) -> Result<()> {
        for s in &self.tx {
            s.flush().map_err(|e| {
                Error::io(format!("{}: writing {}", self.name, s.path().display()), e)
            })?;
        }
        Ok(())
    }
}

impl Device for PcapDevice {
    fn info(&self) -> DevInfo {
        DevInfo {
            driver: DRIVER_NAME,
            max_rx_queues: self.rx.len().max(1) as u16,
            max_tx_queues: self.tx.len().max(1) as u16,
            min_desc: 1,
            max_desc: u16::MAX,
            default_desc: 512,
            desc_pow2: false,
            rx_offload_capa: RxOffloads::SCATTER,
            tx_offload_capa: TxOffloads::MULTI_SEGS,
            max_rx_pktlen: MAX_FRAME,
            min_mtu: 68,
            max_mtu: (MAX_FRAME - L2_OVERHEAD) as u16,
            nb_seg_max: MAX_SEGS,
            nb_mtu_seg_max: MAX_SEGS,
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<()> {
        self.check_open()?;
        if usize::from(conf.rx_queues) < self.rx.len() {
            tracing::warn!(
                "{}: {} rx queue(s) configured for {} rx_pcap files: the others are not replayed",
                self.name,
                conf.rx_queues,
                self.rx.len()
            );
        }
        self.conf = conf.clone();
        Ok(())
    }

    fn setup_rx_queue(&mut self, qid: u16, conf: RxQueueConf) -> Result<Box<dyn RxQueue>> {
        self.check_open()?;
        if qid >= self.conf.rx_queues {
            return Err(self.err(format!(
                "rx queue {qid} does not exist ({} configured)",
                self.conf.rx_queues
            )));
        }
        // Without an rx file the queue replays an empty trace: it receives nothing.
        let trace = self.rx.get(usize::from(qid)).cloned().unwrap_or_default();
        Ok(Box::new(PcapRxQueue::new(
            trace,
            self.infinite_rx,
            self.starts.clone(),
            conf,
        )))
    }

    fn setup_tx_queue(&mut self, qid: u16, conf: TxQueueConf) -> Result<Box<dyn TxQueue>> {
        self.check_open()?;
        if qid >= self.conf.tx_queues {
            return Err(self.err(format!(
                "tx queue {qid} does not exist ({} configured)",
                self.conf.tx_queues
            )));
        }
        let sink = self.tx.get(usize::from(qid)).cloned();
        Ok(Box::new(PcapTxQueue::new(sink, conf.stats)))
    }

    /// Rewinds the rx files.
    fn start(&mut self) -> Result<()> {
        self.check_open()?;
        self.starts.fetch_add(1, Ordering::Relaxed);
        self.started = true;
        Ok(())
    }

    /// Writes what the tx files buffered, so they are complete while the port is stopped.
    fn stop(&mut self) -> Result<()> {
        self.started = false;
        self.flush_all()
    }

    /// Flushes and closes the tx files; queues still alive count later packets as errors.
    fn close(&mut self) {
        for s in &self.tx {
            if let Err(e) = s.close() {
                tracing::error!("{}: writing {}: {e}", self.name, s.path().display());
            }
        }
        self.closed = true;
        self.started = false;
    }

    /// Up while started (the files are always there).
    fn link(&self) -> Link {
        Link {
            up: self.started,
            speed_mbps: 10_000,
            full_duplex: true,
        }
    }

    fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    /// Accepted and remembered; a file has no address filter.
    fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        self.check_open()?;
        self.promisc = on;
        Ok(())
    }

    fn promiscuous(&self) -> bool {
        self.promisc
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        self.rx
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("rx_q{i}_file_packets"), t.len() as u64))
            .collect()
    }
}

impl Drop for PcapDevice {
    fn drop(&mut self) {
        if !self.closed {
            self.close();
        }
    }
}
