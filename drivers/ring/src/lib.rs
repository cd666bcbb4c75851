//! `net_ring`: ports whose queues are in-memory rings of packet buffers. Packets move by
//! pointer, never copied.
//!
//! - `--vdev net_ring0`: loopback; what tx queue *i* sends, rx queue *i* receives.
//! - `--vdev net_ring0,rx=a,tx=b --vdev net_ring1,rx=b,tx=a`: two ports wired back to back
//!   through the named rings `a` and `b` (per queue: `a_q0`, `a_q1`, ...). Named rings live
//!   in a process-wide registry, so two applications in one process (or two ports of one
//!   application) can be connected.
//! - `size=N`: ring capacity (default 1024); `queues=N`: most queues (default 16).
//!
//! Each ring has exactly one producer (a tx queue) and one consumer (an rx queue), so the
//! single-producer/single-consumer ring is used. Buffers still in a ring when both of its
//! ends are gone are freed.

use pmd_core::devargs::VdevSpec;
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::{
    DevInfo, Device, Driver, Link, MacAddr, PortConf, QueueStats, RxQueue, RxQueueConf, TxQueue,
    TxQueueConf,
};
use pmd_core::mbuf::{PktBatch, RawMbuf};
use pmd_core::ring::{spsc, Consumer, Producer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

/// The ring driver.
pub struct RingDriver;

/// The instance to register with the EAL.
pub static DRIVER: RingDriver = RingDriver;

const KNOWN_ARGS: &[&str] = &["rx", "tx", "size", "queues"];
static INSTANCES: AtomicU16 = AtomicU16::new(0);

/// The two ends of one ring while no queue holds them.
struct Ends {
    prod: Option<Producer<RawMbuf>>,
    cons: Option<Consumer<RawMbuf>>,
}

/// Named rings shared by all ring ports of the process.
static REGISTRY: Mutex<Option<HashMap<String, Ends>>> = Mutex::new(None);

fn with_registry<R>(f: impl FnOnce(&mut HashMap<String, Ends>) -> R) -> R {
    let mut g = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(HashMap::new))
}

fn create_ends(size: usize) -> Result<Ends> {
    let (p, c) = spsc(size)
        .ok_or_else(|| Error::driver("net_ring", format!("size={size}: expected 1..=2^30")))?;
    Ok(Ends {
        prod: Some(p),
        cons: Some(c),
    })
}

/// Where a queue's ring comes from.
#[derive(Debug, Clone)]
enum Wiring {
    /// rx queue i reads what tx queue i writes.
    Loopback,
    /// Named rings: rx from `<rx>_q<i>`, tx to `<tx>_q<i>`.
    Named { rx: String, tx: String },
}

/// Takes one end of a named ring (creating the ring on first use).
fn take_named<T>(name: &str, size: usize, pick: impl FnOnce(&mut Ends) -> Option<T>) -> Result<T> {
    with_registry(|reg| {
        if !reg.contains_key(name) {
            reg.insert(name.to_string(), create_ends(size)?);
        }
        let ends = reg.get_mut(name).expect("inserted above");
        pick(ends).ok_or_else(|| {
            Error::driver(
                "net_ring",
                format!("ring {name:?} already has a queue on that end; each ring has one producer and one consumer"),
            )
        })
    })
}

/// Gives an end back; when both ends are back, the ring is drained and forgotten.
fn return_end(name: &str, prod: Option<Producer<RawMbuf>>, cons: Option<Consumer<RawMbuf>>) {
    with_registry(|reg| {
        let Some(ends) = reg.get_mut(name) else {
            return;
        };
        if prod.is_some() {
            ends.prod = prod;
        }
        if cons.is_some() {
            ends.cons = cons;
        }
        if ends.prod.is_some() && ends.cons.is_some() {
            if let Some(mut e) = reg.remove(name) {
                if let Some(c) = e.cons.as_mut() {
                    drain(c);
                }
            }
        }
    });
}

/// Frees every buffer left in a ring.
fn drain(c: &mut Consumer<RawMbuf>) {
    let mut b = PktBatch::new();
    loop {
        let n = c.dequeue_burst(b.spare_raw());
        if n == 0 {
            break;
        }
        // SAFETY: buffers in the ring were given up by the tx queue that enqueued them.
        unsafe { b.commit_raw(n) };
        b.clear();
    }
}

impl Driver for RingDriver {
    fn name(&self) -> &'static str {
        "net_ring"
    }

    fn description(&self) -> &'static str {
        "in-memory rings: loopback, or rx=NAME,tx=NAME to wire ports; size=1024 queues=16"
    }

    fn probe(&self, vdev: &VdevSpec) -> Result<Box<dyn Device>> {
        vdev.check_known(KNOWN_ARGS)?;
        let size = vdev
            .get("size")
            .int_in(1..=pmd_core::ring::MAX_CAPACITY)?
            .unwrap_or(1024);
        let queues = vdev.get("queues").int_in(1..=1024)?.unwrap_or(16);
        let wiring = match (vdev.arg("rx"), vdev.arg("tx")) {
            (None, None) => Wiring::Loopback,
            (Some(rx), Some(tx)) if !rx.is_empty() && !tx.is_empty() => Wiring::Named {
                rx: rx.to_string(),
                tx: tx.to_string(),
            },
            _ => {
                return Err(Error::driver(
                    &vdev.name,
                    "give both rx=NAME and tx=NAME (non-empty), or neither for loopback",
                ))
            }
        };
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(RingDevice {
            wiring,
            size,
            queues,
            loopback: Vec::new(),
            mac: MacAddr([0x02, 0x72, 0x69, 0x6e, 0x67, n as u8]),
            promisc: false,
            started: false,
        }))
    }
}

/// A ring-backed device.
pub struct RingDevice {
    wiring: Wiring,
    size: usize,
    queues: u16,
    /// Loopback ends per queue, taken by queue setup.
    loopback: Vec<Ends>,
    mac: MacAddr,
    promisc: bool,
    started: bool,
}

impl RingDevice {
    fn queue_ring_name(base: &str, qid: u16) -> String {
        format!("{base}_q{qid}")
    }
}

impl Device for RingDevice {
    fn info(&self) -> DevInfo {
        DevInfo {
            driver: "net_ring",
            max_rx_queues: self.queues,
            max_tx_queues: self.queues,
            min_desc: 1,
            max_desc: u16::MAX,
            default_desc: 1024,
            desc_pow2: false,
            // Packets move as pointers: chains pass through whole.
            rx_offload_capa: pmd_core::ethdev::RxOffloads::SCATTER,
            tx_offload_capa: pmd_core::ethdev::TxOffloads::MULTI_SEGS,
            max_rx_pktlen: u32::from(u16::MAX),
            max_mtu: u16::MAX - pmd_core::ethdev::L2_OVERHEAD as u16,
            nb_seg_max: pmd_core::mbuf::MAX_SEGS,
            nb_mtu_seg_max: pmd_core::mbuf::MAX_SEGS,
            ..Default::default()
        }
    }

    fn configure(&mut self, conf: &PortConf) -> Result<()> {
        if let Wiring::Loopback = self.wiring {
            let n = conf.rx_queues.max(conf.tx_queues) as usize;
            self.loopback = (0..n)
                .map(|_| create_ends(self.size))
                .collect::<Result<_>>()?;
        }
        Ok(())
    }

    fn setup_rx_queue(&mut self, qid: u16, conf: RxQueueConf) -> Result<Box<dyn RxQueue>> {
        let (cons, name) = match &self.wiring {
            Wiring::Loopback => {
                let c = self
                    .loopback
                    .get_mut(qid as usize)
                    .and_then(|e| e.cons.take());
                (
                    c.ok_or_else(|| {
                        Error::driver(
                            "net_ring",
                            format!("rx queue {qid}: ring end already taken"),
                        )
                    })?,
                    None,
                )
            }
            Wiring::Named { rx, .. } => {
                let name = Self::queue_ring_name(rx, qid);
                (take_named(&name, self.size, |e| e.cons.take())?, Some(name))
            }
        };
        Ok(Box::new(RingRx {
            cons: Some(cons),
            name,
            stats: conf.stats,
            port: conf.port,
        }))
    }

    fn setup_tx_queue(&mut self, qid: u16, conf: TxQueueConf) -> Result<Box<dyn TxQueue>> {
        let (prod, name) = match &self.wiring {
            Wiring::Loopback => {
                let p = self
                    .loopback
                    .get_mut(qid as usize)
                    .and_then(|e| e.prod.take());
                (
                    p.ok_or_else(|| {
                        Error::driver(
                            "net_ring",
                            format!("tx queue {qid}: ring end already taken"),
                        )
                    })?,
                    None,
                )
            }
            Wiring::Named { tx, .. } => {
                let name = Self::queue_ring_name(tx, qid);
                (take_named(&name, self.size, |e| e.prod.take())?, Some(name))
            }
        };
        Ok(Box::new(RingTx {
            prod: Some(prod),
            name,
            stats: conf.stats,
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

struct RingRx {
    cons: Option<Consumer<RawMbuf>>,
    name: Option<String>,
    stats: Arc<QueueStats>,
    port: u16,
}

impl RxQueue for RingRx {
    #[inline]
    fn rx_burst(&mut self, batch: &mut PktBatch, max: usize) -> usize {
        let Some(cons) = self.cons.as_mut() else {
            return 0;
        };
        let n = cons.dequeue_burst(&mut batch.spare_raw()[..max]);
        if n == 0 {
            return 0;
        }
        let start = batch.len();
        // SAFETY: the tx queue that enqueued these buffers gave up ownership of them.
        unsafe { batch.commit_raw(n) };
        let mut bytes = 0u64;
        for m in &mut batch.as_mut_slice()[start..] {
            m.set_port(self.port);
            bytes += m.len() as u64;
        }
        self.stats.add(n as u64, bytes);
        n
    }
}

impl Drop for RingRx {
    fn drop(&mut self) {
        let mut cons = self.cons.take();
        match &self.name {
            Some(name) => return_end(name, None, cons),
            None => {
                if let Some(c) = cons.as_mut() {
                    drain(c);
                }
            }
        }
    }
}

struct RingTx {
    prod: Option<Producer<RawMbuf>>,
    name: Option<String>,
    stats: Arc<QueueStats>,
}

impl TxQueue for RingTx {
    #[inline]
    fn tx_burst(&mut self, batch: &mut PktBatch) -> usize {
        let Some(prod) = self.prod.as_mut() else {
            return 0;
        };
        let bytes: u64 = batch.iter().map(|m| m.len() as u64).sum();
        let n = prod.enqueue_burst(batch.raw());
        let bytes = if n == batch.len() {
            bytes
        } else {
            batch.iter().take(n).map(|m| m.len() as u64).sum()
        };
        // The ring now owns the first n buffers.
        batch.disown_front(n);
        self.stats.add(n as u64, bytes);
        n
    }
}

impl Drop for RingTx {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            return_end(name, self.prod.take(), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmd_core::ethdev::Port;
    use pmd_core::Mempool;

    fn started_port(id: u16, args: &str, queues: u16) -> Port {
        let vdev: VdevSpec = args.parse().unwrap();
        let mut p = Port::new(id, vdev.name.clone(), DRIVER.probe(&vdev).unwrap());
        p.configure(&PortConf {
            rx_queues: queues,
            tx_queues: queues,
            ..Default::default()
        })
        .unwrap();
        p
    }

    #[test]
    fn loopback_returns_what_was_sent() {
        let pool = Mempool::create("ring-loop", 128, 0).unwrap();
        let mut p = started_port(0, "net_ring0", 1);
        let mut rx = p.setup_rx_queue(0, 0, &pool).unwrap();
        let mut tx = p.setup_tx_queue(0, 0).unwrap();
        p.start().unwrap();
        let mut b = PktBatch::new();
        for (i, m) in pool.alloc_bulk(&mut b, 10).unwrap().iter_mut().enumerate() {
            m.copy_from(&[i as u8; 60]);
        }
        assert_eq!(tx.tx_burst(&mut b), 10);
        assert!(b.is_empty());
        assert_eq!(rx.rx_burst(&mut b), 10);
        assert!(b
            .iter()
            .enumerate()
            .all(|(i, m)| m.data() == [i as u8; 60] && m.port() == 0));
        let s = p.stats();
        assert_eq!((s.ipackets, s.opackets, s.ibytes), (10, 10, 600));
    }

    #[test]
    fn chains_pass_through_whole() {
        let pool = Mempool::create("ring-chain", 128, 0).unwrap();
        let mut p = started_port(0, "net_ring0", 1);
        let mut rx = p.setup_rx_queue(0, 0, &pool).unwrap();
        let mut tx = p.setup_tx_queue(0, 0).unwrap();
        p.start().unwrap();
        let frame: Vec<u8> = (0..9014).map(|i| (i % 251) as u8).collect();
        let mut b = PktBatch::new();
        for _ in 0..3 {
            b.push(pmd_core::Mbuf::from_slice(&frame, &pool).unwrap())
                .unwrap();
        }
        assert_eq!(tx.tx_burst(&mut b), 3);
        assert_eq!(rx.rx_burst(&mut b), 3);
        assert!(b.iter().all(|m| m.nb_segs() == 5 && m.to_vec() == frame));
        assert_eq!(p.stats().ibytes, 3 * 9014);
        drop(b);
        assert_eq!(pool.stats().in_use, 0);
    }

    #[test]
    fn full_ring_leaves_unsent_packets_with_the_caller() {
        let pool = Mempool::create("ring-full", 128, 0).unwrap();
        let mut p = started_port(0, "net_ring0,size=8", 1);
        let _rx = p.setup_rx_queue(0, 0, &pool).unwrap();
        let mut tx = p.setup_tx_queue(0, 0).unwrap();
        p.start().unwrap();
        let mut b = PktBatch::new();
        for (i, m) in pool.alloc_bulk(&mut b, 12).unwrap().iter_mut().enumerate() {
            m.copy_from(&[i as u8]);
        }
        assert_eq!(tx.tx_burst(&mut b), 8);
        assert_eq!(b.len(), 4);
        assert_eq!(b.as_slice()[0].data(), &[8]);
        drop(b);
        drop(_rx);
        drop(tx);
        drop(p);
        assert_eq!(
            pool.stats().in_use,
            0,
            "ring drained when its queues went away"
        );
    }

    #[test]
    fn named_rings_wire_two_ports() {
        let pool = Mempool::create("ring-pair", 256, 0).unwrap();
        let mut a = started_port(0, "net_ring0,rx=t_ab,tx=t_ba,size=64", 2);
        let mut b = started_port(1, "net_ring1,rx=t_ba,tx=t_ab,size=64", 2);
        let mut rxa: Vec<_> = (0..2)
            .map(|q| a.setup_rx_queue(q, 0, &pool).unwrap())
            .collect();
        let mut txa: Vec<_> = (0..2).map(|q| a.setup_tx_queue(q, 0).unwrap()).collect();
        let mut rxb: Vec<_> = (0..2)
            .map(|q| b.setup_rx_queue(q, 0, &pool).unwrap())
            .collect();
        let mut txb: Vec<_> = (0..2).map(|q| b.setup_tx_queue(q, 0).unwrap()).collect();
        a.start().unwrap();
        b.start().unwrap();
        let mut batch = PktBatch::new();
        pool.alloc_bulk(&mut batch, 5).unwrap();
        assert_eq!(txa[1].tx_burst(&mut batch), 5);
        assert_eq!(rxb[0].rx_burst(&mut batch), 0, "queue 1 goes to queue 1");
        assert_eq!(rxb[1].rx_burst(&mut batch), 5);
        assert!(batch.iter().all(|m| m.port() == 1));
        assert_eq!(txb[0].tx_burst(&mut batch), 5);
        assert_eq!(rxa[0].rx_burst(&mut batch), 5);
        // A third port cannot take an end that is in use.
        let vdev: VdevSpec = "net_ring2,rx=t_ab,tx=t_zz".parse().unwrap();
        let mut c = Port::new(2, "c", DRIVER.probe(&vdev).unwrap());
        c.configure(&PortConf::default()).unwrap();
        let err = c.setup_rx_queue(0, 0, &pool).unwrap_err().to_string();
        assert!(err.contains("already has a queue"), "{err}");
    }

    #[test]
    fn bad_arguments_are_rejected() {
        for bad in [
            "net_ring0,rx=a",
            "net_ring0,rx=,tx=b",
            "net_ring0,size=0",
            "net_ring0,foo=1",
            "net_ring0,queues=0",
        ] {
            assert!(DRIVER.probe(&bad.parse().unwrap()).is_err(), "{bad}");
        }
    }
}
