//! `net_null`: a device with no wire. Receive hands out freshly allocated packets of a
//! fixed size; transmit frees what it is given. It measures the framework's own cost
//! (mempool, bursts, the app loop), like DPDK's null PMD.
//!
//! Arguments: `size=N` (packet length, default 64), `copy=0|1` (rx writes a template frame
//! into each packet and tx reads every packet: default 0, like DPDK where rx leaves the
//! data untouched), `no-rx=0|1` (rx returns nothing), `queues=N` (most queues, default 16).

use pmd_core::devargs::VdevSpec;
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::{
    DevInfo, Device, Driver, Link, MacAddr, PortConf, QueueStats, RxOffloads, RxQueue, RxQueueConf,
    TxOffloads, TxQueue, TxQueueConf, L2_OVERHEAD,
};
use pmd_core::mbuf::PktBatch;
use pmd_core::Mempool;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

/// The null driver.
pub struct NullDriver;

/// The instance to register with the EAL.
pub static DRIVER: NullDriver = NullDriver;

const KNOWN_ARGS: &[&str] = &["size", "copy", "no-rx", "queues"];
static INSTANCES: AtomicU16 = AtomicU16::new(0);

/// Settings parsed from the vdev arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NullConf {
    /// Packet length produced on rx.
    pub size: u16,
    /// Whether rx writes and tx reads packet data.
    pub copy: bool,
    /// Whether rx produces nothing.
    pub no_rx: bool,
    /// Most queues per direction.
    pub queues: u16,
}

impl NullConf {
    /// Parses and validates the vdev arguments.
    pub fn from_vdev(vdev: &VdevSpec) -> Result<NullConf> {
        vdev.check_known(KNOWN_ARGS)?;
        Ok(NullConf {
            size: vdev.get("size").int_in(14..=9000)?.unwrap_or(64),
            copy: vdev.get("copy").flag()?.unwrap_or(false),
            no_rx: vdev.get("no-rx").flag()?.unwrap_or(false),
            queues: vdev.get("queues").int_in(1..=1024)?.unwrap_or(16),
        })
    }
}

impl Driver for NullDriver {
    fn name(&self) -> &'static str {
        "net_null"
    }

    fn description(&self) -> &'static str {
        "no wire: rx makes packets, tx frees them; size=64 copy=0|1 no-rx=0|1 queues=16"
    }

    fn probe(&self, vdev: &VdevSpec) -> Result<Box<dyn Device>> {
        let conf = NullConf::from_vdev(vdev)?;
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(NullDevice {
            conf,
            mac: MacAddr([0x02, 0x6e, 0x75, 0x6c, 0x6c, n as u8]),
            promisc: false,
            started: false,
        }))
    }
}

/// A null device.
pub struct NullDevice {
    conf: NullConf,
    mac: MacAddr,
    promisc: bool,
    started: bool,
}

impl Device for NullDevice {
    fn info(&self) -> DevInfo {
        DevInfo {
            driver: "net_null",
            max_rx_queues: self.conf.queues,
            max_tx_queues: self.conf.queues,
            min_desc: 1,
            max_desc: u16::MAX,
            default_desc: 1024,
            desc_pow2: false,
            rx_offload_capa: RxOffloads::SCATTER,
            tx_offload_capa: TxOffloads::MULTI_SEGS,
            max_rx_pktlen: u32::from(u16::MAX),
            max_mtu: u16::MAX - L2_OVERHEAD as u16,
            nb_seg_max: pmd_core::mbuf::MAX_SEGS,
            nb_mtu_seg_max: pmd_core::mbuf::MAX_SEGS,
            ..Default::default()
        }
    }

    fn configure(&mut self, _conf: &PortConf) -> Result<()> {
        Ok(())
    }

    fn setup_rx_queue(&mut self, _qid: u16, conf: RxQueueConf) -> Result<Box<dyn RxQueue>> {
        let mut template = vec![0u8; self.conf.size as usize];
        // A valid-looking frame: broadcast destination, our source, an experimental ethertype.
        template[..6].fill(0xff);
        template[6..12].copy_from_slice(&self.mac.0);
        template[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        let room = usize::from(conf.pool.buf_size()) - usize::from(pmd_core::mbuf::HEADROOM);
        let size = usize::from(self.conf.size);
        let tail = if size <= room {
            None
        } else if conf.offloads.contains(RxOffloads::SCATTER) {
            Some(template[room..].to_vec())
        } else {
            return Err(Error::driver(
                "net_null",
                format!(
                    "size={size} does not fit the pool's {room}-byte buffers: enable the \
                     SCATTER rx offload or use larger buffers"
                ),
            ));
        };
        Ok(Box::new(NullRx {
            tail,
            pool: conf.pool,
            stats: conf.stats,
            port: conf.port,
            size: self.conf.size,
            template: if self.conf.copy { Some(template) } else { None },
            no_rx: self.conf.no_rx,
        }))
    }

    fn setup_tx_queue(&mut self, _qid: u16, conf: TxQueueConf) -> Result<Box<dyn TxQueue>> {
        Ok(Box::new(NullTx {
            stats: conf.stats,
            copy: self.conf.copy,
            sink: [0; 64],
        }))
    }

    fn start(&mut self) -> Result<()> {
        self.started = true;
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        self.started = false;
        Ok(())
    }

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

    fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        self.promisc = on;
        Ok(())
    }

    fn promiscuous(&self) -> bool {
        self.promisc
    }
}

struct NullRx {
    pool: Mempool,
    stats: Arc<QueueStats>,
    port: u16,
    size: u16,
    template: Option<Vec<u8>>,
    /// Bytes past the first buffer, for packets larger than one (rx with SCATTER).
    tail: Option<Vec<u8>>,
    no_rx: bool,
}

impl RxQueue for NullRx {
    #[inline]
    fn rx_burst(&mut self, batch: &mut PktBatch, max: usize) -> usize {
        if self.no_rx {
            return 0;
        }
        let size = self.size as usize;
        if let Some(tail) = &self.tail {
            if self.pool.alloc_bulk(batch, max).is_none() {
                self.stats.add_no_mbuf(max as u64);
                return 0;
            }
            return self.rx_chains(batch, max, tail.len());
        }
        let Some(bufs) = self.pool.alloc_bulk_len(batch, max, self.size) else {
            self.stats.add_no_mbuf(max as u64);
            return 0;
        };
        for m in bufs.iter_mut() {
            m.set_port(self.port);
        }
        if let Some(t) = &self.template {
            for m in bufs.iter_mut() {
                m.data_mut().copy_from_slice(t);
            }
        }
        self.stats.add(max as u64, (max * size) as u64);
        max
    }
}

impl NullRx {
    /// Packets larger than one buffer: the head filled to its end, the rest chained from
    /// the pool. Packets whose chain cannot be completed are dropped and counted.
    #[cold]
    fn rx_chains(&mut self, batch: &mut PktBatch, max: usize, tail_len: usize) -> usize {
        let start = batch.len() - max;
        let size = self.size as usize;
        let head_len = size - tail_len;
        let tail = self.tail.as_deref().unwrap_or_default();
        let mut failed = 0;
        // Take the new packets out (reversed), then put back, in order, those completed.
        let mut fresh = PktBatch::new();
        while batch.len() > start {
            if let Some(m) = batch.pop() {
                let _ = fresh.push(m);
            }
        }
        while let Some(mut m) = fresh.pop() {
            m.set_len(head_len);
            m.set_port(self.port);
            if let Some(t) = &self.template {
                m.data_mut().copy_from_slice(&t[..head_len]);
            }
            if m.extend_from_slice(tail, &self.pool).is_err() {
                failed += 1;
                continue;
            }
            let _ = batch.push(m);
        }
        let got = max - failed;
        if failed > 0 {
            self.stats.add_no_mbuf(failed as u64);
        }
        self.stats.add(got as u64, (got * size) as u64);
        got
    }
}

struct NullTx {
    stats: Arc<QueueStats>,
    copy: bool,
    sink: [u8; 64],
}

impl TxQueue for NullTx {
    #[inline]
    fn tx_burst(&mut self, batch: &mut PktBatch) -> usize {
        let n = batch.len();
        let mut bytes = 0u64;
        for m in batch.iter() {
            bytes += m.len() as u64;
            if self.copy {
                let d = m.data();
                let k = d.len().min(self.sink.len());
                self.sink[..k].copy_from_slice(&d[..k]);
            }
        }
        self.stats.add(n as u64, bytes);
        batch.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumbo_packets_need_scatter_and_arrive_as_chains() {
        let pool = Mempool::create("null-jumbo", 512, 0).unwrap();
        let dev = || {
            NullDriver
                .probe(&"net_null0,size=9000,copy=1".parse().unwrap())
                .unwrap()
        };
        let mut p = Port::new(0, "net_null0", dev());
        p.configure(&PortConf::default()).unwrap();
        let e = p.setup_rx_queue(0, 0, &pool).unwrap_err().to_string();
        assert!(e.contains("size=9000") && e.contains("SCATTER"), "{e}");
        let mut p = Port::new(0, "net_null0", dev());
        p.configure(&PortConf {
            rx_offloads: RxOffloads::SCATTER,
            tx_offloads: TxOffloads::MULTI_SEGS,
            mtu: Some(8978),
            ..Default::default()
        })
        .unwrap();
        let mut rx = p.setup_rx_queue(0, 0, &pool).unwrap();
        let mut tx = p.setup_tx_queue(0, 0).unwrap();
        p.start().unwrap();
        let mut b = PktBatch::new();
        assert_eq!(rx.rx_burst(&mut b), 32);
        for m in b.iter() {
            assert_eq!((m.len(), m.nb_segs()), (9000, 5));
            let v = m.to_vec();
            assert_eq!(&v[..6], &[0xff; 6]);
            assert!(v[14..].iter().all(|&x| x == 0));
        }
        assert_eq!(tx.tx_burst(&mut b), 32);
        let s = p.stats();
        assert_eq!((s.ipackets, s.ibytes, s.obytes), (32, 32 * 9000, 32 * 9000));
        assert_eq!(pool.stats().in_use, 0, "every segment went back");
    }
    use pmd_core::ethdev::{Port, PortState};
    use pmd_core::Error;

    fn port(args: &str) -> Port {
        let vdev: VdevSpec = args.parse().unwrap();
        Port::new(0, vdev.name.clone(), DRIVER.probe(&vdev).unwrap())
    }

    #[test]
    fn parses_arguments() {
        let c = NullConf::from_vdev(&"net_null0,size=128,copy=1".parse().unwrap()).unwrap();
        assert_eq!(
            c,
            NullConf {
                size: 128,
                copy: true,
                no_rx: false,
                queues: 16
            }
        );
        for bad in [
            "net_null0,size=5",
            "net_null0,copy=2",
            "net_null0,bogus=1",
            "net_null0,queues=0",
            "net_null0,size=x",
        ] {
            assert!(DRIVER.probe(&bad.parse().unwrap()).is_err(), "{bad}");
        }
    }

    #[test]
    fn rx_makes_packets_and_tx_frees_them() {
        let pool = Mempool::create("null-test", 256, 0).unwrap();
        let mut p = port("net_null0,size=100,copy=1");
        p.configure(&PortConf::default()).unwrap();
        let mut rx = p.setup_rx_queue(0, 0, &pool).unwrap();
        let mut tx = p.setup_tx_queue(0, 0).unwrap();
        let mut b = PktBatch::new();
        assert_eq!(rx.rx_burst(&mut b), 0, "not started yet");
        p.start().unwrap();
        assert!(p.link().up);
        assert_eq!(rx.rx_burst(&mut b), 32);
        assert!(b
            .iter()
            .all(|m| m.len() == 100 && m.port() == 0 && m.data()[..6] == [0xff; 6]));
        assert_eq!(pool.stats().in_use, 32);
        assert_eq!(tx.tx_burst(&mut b), 32);
        assert!(b.is_empty());
        assert_eq!(pool.stats().in_use, 0);
        let s = p.stats();
        assert_eq!(
            (s.ipackets, s.ibytes, s.opackets, s.obytes),
            (32, 3200, 32, 3200)
        );
        p.stop().unwrap();
        assert_eq!(rx.rx_burst(&mut b), 0, "stopped");
    }

    #[test]
    fn pool_exhaustion_counts_no_mbuf() {
        let pool = Mempool::create("null-small", 40, 0).unwrap();
        let mut p = port("net_null0");
        p.configure(&PortConf::default()).unwrap();
        let mut rx = p.setup_rx_queue(0, 0, &pool).unwrap();
        let _tx = p.setup_tx_queue(0, 0).unwrap();
        p.start().unwrap();
        let mut b1 = PktBatch::new();
        let mut b2 = PktBatch::new();
        assert_eq!(rx.rx_burst(&mut b1), 32);
        assert_eq!(rx.rx_burst(&mut b2), 0);
        assert_eq!(p.stats().rx_nombuf, 32);
    }

    #[test]
    fn state_machine_rejects_wrong_order() {
        let pool = Mempool::create("null-sm", 64, 0).unwrap();
        let mut p = port("net_null0,queues=2");
        assert!(matches!(p.start(), Err(Error::PortState { .. })));
        assert!(matches!(
            p.setup_tx_queue(0, 0),
            Err(Error::PortState { .. })
        ));
        assert!(matches!(p.stop(), Err(Error::PortState { .. })));
        assert!(
            p.configure(&PortConf {
                rx_queues: 3,
                tx_queues: 1,
                ..Default::default()
            })
            .is_err(),
            "too many queues"
        );
        p.configure(&PortConf {
            rx_queues: 2,
            tx_queues: 1,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.state(), PortState::Configured);
        assert!(p.setup_rx_queue(2, 0, &pool).is_err(), "no queue 2");
        let rx0 = p.setup_rx_queue(0, 0, &pool).unwrap();
        assert!(
            p.setup_rx_queue(0, 0, &pool).is_err(),
            "queue 0 still owned"
        );
        let _tx = p.setup_tx_queue(0, 0).unwrap();
        let err = p.start().unwrap_err().to_string();
        assert!(err.contains("rx queue 1 is not set up"), "{err}");
        let _rx1 = p.setup_rx_queue(1, 0, &pool).unwrap();
        p.start().unwrap();
        assert!(
            p.configure(&PortConf::default()).is_err(),
            "configure while started"
        );
        assert!(
            p.setup_rx_queue(1, 0, &pool).is_err(),
            "setup while started"
        );
        p.stop().unwrap();
        assert!(p.configure(&PortConf::default()).is_err(), "handles alive");
        drop(rx0);
        let _rx0 = p.setup_rx_queue(0, 0, &pool).unwrap();
        p.close();
        assert_eq!(p.state(), PortState::Closed);
        assert!(p.start().is_err());
        assert!(p.set_promiscuous(true).is_err());
    }
}
