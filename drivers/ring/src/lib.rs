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
//!
//! Receive touches no buffer (DPDK's ring PMD neither stamps the port nor counts bytes;
//! this one does both, exactly, at no cost to rx): the tx queue, which reads every length
//! anyway, makes each buffer carry the receiving port and leaves a `BurstLog` entry at
//! its burst's last slot (the running byte total); an rx burst that ends on such an entry
//! counts its bytes from it, any other reads the lengths itself.

use pmd_core::devargs::VdevSpec;
use pmd_core::error::{Error, Result};
use pmd_core::ethdev::{
    DevInfo, Device, Driver, Link, MacAddr, PortConf, QueueStats, RxQueue, RxQueueConf, TxQueue,
    TxQueueConf,
};
use pmd_core::mbuf::{PktBatch, RawMbuf};
use pmd_core::ring::{spsc, Consumer, Producer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The ring driver.
pub struct RingDriver;

/// The instance to register with the EAL.
pub static DRIVER: RingDriver = RingDriver;

const KNOWN_ARGS: &[&str] = &["rx", "tx", "size", "queues"];
static INSTANCES: AtomicU16 = AtomicU16::new(0);

/// What the producer leaves at the last slot of each burst it enqueues, indexed by ring
/// position: `seq` is the number of buffers ever enqueued after that burst (0: never
/// written), `val` the port every buffer of the burst carries (bits 48..64) and the bytes
/// ever enqueued (bits 0..48, wrapping). Written before the ring's release of its producer
/// tail and read before the consumer hands the slot back, so relaxed accesses suffice;
/// `seq` tells an entry of this lap from an older one.
struct BurstLog {
    entries: Box<[LogEntry]>,
    mask: u64,
    /// The port of the rx queue that holds the consuming end (what tx stamps).
    rx_port: AtomicU16,
}

#[derive(Default)]
struct LogEntry {
    seq: AtomicU64,
    val: AtomicU64,
}

const BYTES_MASK: u64 = (1 << 48) - 1;

impl BurstLog {
    fn new(capacity: usize) -> Arc<Self> {
        // Positions equal modulo a power of two >= the capacity are never in the ring
        // together, so an entry is not overwritten while its slot is in use.
        let size = capacity.next_power_of_two();
        Arc::new(BurstLog {
            entries: (0..size).map(|_| LogEntry::default()).collect(),
            mask: size as u64 - 1,
            rx_port: AtomicU16::new(pmd_core::mbuf::NO_PORT),
        })
    }

    #[inline(always)]
    fn entry(&self, seq: u64) -> &LogEntry {
        // Masked: in bounds whatever the value.
        &self.entries[((seq - 1) & self.mask) as usize]
    }

    /// Records a burst that brought the count of enqueued buffers to `seq`.
    #[inline(always)]
    fn write(&self, seq: u64, port: u16, bytes: u64) {
        let e = self.entry(seq);
        e.val.store(
            u64::from(port) << 48 | (bytes & BYTES_MASK),
            Ordering::Relaxed,
        );
        e.seq.store(seq, Ordering::Relaxed);
    }

    /// The port and byte total of the burst that brought the count to `seq`, if one did.
    #[inline(always)]
    fn read(&self, seq: u64) -> Option<(u16, u64)> {
        let e = self.entry(seq);
        (e.seq.load(Ordering::Relaxed) == seq).then(|| {
            let v = e.val.load(Ordering::Relaxed);
            ((v >> 48) as u16, v & BYTES_MASK)
        })
    }
}

/// A ring's producing end, with what it has enqueued.
struct TxEnd {
    prod: Producer<RawMbuf>,
    log: Arc<BurstLog>,
    count: u64,
    bytes: u64,
}

/// A ring's consuming end, with what it has dequeued.
struct RxEnd {
    cons: Consumer<RawMbuf>,
    log: Arc<BurstLog>,
    count: u64,
    bytes: u64,
}

/// The two ends of one ring while no queue holds them.
struct Ends {
    prod: Option<TxEnd>,
    cons: Option<RxEnd>,
}

/// Named rings shared by all ring ports of the process.
static REGISTRY: Mutex<Option<HashMap<String, Ends>>> = Mutex::new(None);

fn with_registry<R>(f: impl FnOnce(&mut HashMap<String, Ends>) -> R) -> R {
    let mut g = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(HashMap::new))
}

fn create_ends(size: usize) -> Result<Ends> {
    let (prod, cons) = spsc(size)
        .ok_or_else(|| Error::driver("net_ring", format!("size={size}: expected 1..=2^30")))?;
    let log = BurstLog::new(size);
    Ok(Ends {
        prod: Some(TxEnd {
            prod,
            log: log.clone(),
            count: 0,
            bytes: 0,
        }),
        cons: Some(RxEnd {
            cons,
            log,
            count: 0,
            bytes: 0,
        }),
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
fn return_end(name: &str, prod: Option<TxEnd>, cons: Option<RxEnd>) {
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
                    drain(&mut c.cons);
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
        // From now on the producer stamps this port; buffers enqueued before it saw it are
        // restamped on receive.
        cons.log.rx_port.store(conf.port, Ordering::Relaxed);
        Ok(Box::new(RingRx {
            end: Some(cons),
            name,
            stats: conf.stats,
            port: conf.port,
            stamped: false,
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
            end: Some(prod),
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

/// Aligned to a line pair of its own: it is written every burst, and another lcore's
/// queue must not share its lines.
#[repr(align(128))]
struct RingRx {
    end: Option<RxEnd>,
    name: Option<String>,
    stats: Arc<QueueStats>,
    port: u16,
    /// Every buffer after the ones already received carries `port`: a burst that ended
    /// where this queue's last one did was stamped with it. (The producer reads the port
    /// afresh per burst and only this queue sets it while it holds the consuming end, so
    /// once a burst has it, every later one does.)
    stamped: bool,
}

impl RxQueue for RingRx {
    #[inline]
    fn rx_burst(&mut self, batch: &mut PktBatch, max: usize) -> usize {
        let Some(end) = self.end.as_mut() else {
            return 0;
        };
        let n = end.cons.len().min(max.min(batch.spare()));
        if n == 0 {
            return 0;
        }
        // The entries of these n slots are published (len() acquired the producer's tail)
        // and stay put until the dequeue below hands the slots back.
        let seq = end.count + n as u64;
        let logged = end.log.read(seq);
        let got = end.cons.dequeue_burst(&mut batch.spare_raw()[..n]);
        debug_assert_eq!(got, n, "the only consumer gets what len() saw");
        let start = batch.len();
        // SAFETY: the tx queue that enqueued these buffers gave up ownership of them.
        unsafe { batch.commit_raw(got) };
        end.count += got as u64;
        let total = match logged {
            Some((port, total)) if self.stamped && got == n => {
                debug_assert_eq!(port, self.port);
                #[cfg(test)]
                tests::LOGGED_BURSTS.with(|c| c.set(c.get() + 1));
                total
            }
            _ => {
                // Not on a burst's end, or buffers enqueued before the producer saw this
                // queue's port: read each one.
                let mut bytes = 0u64;
                for m in &mut batch.as_mut_slice()[start..] {
                    m.set_port(self.port);
                    bytes += m.len() as u64;
                }
                self.stamped |= got == n && matches!(logged, Some((p, _)) if p == self.port);
                end.bytes.wrapping_add(bytes) & BYTES_MASK
            }
        };
        let bytes = total.wrapping_sub(end.bytes) & BYTES_MASK;
        end.bytes = total;
        self.stats.add(got as u64, bytes);
        got
    }
}

impl Drop for RingRx {
    fn drop(&mut self) {
        let mut end = self.end.take();
        match &self.name {
            Some(name) => return_end(name, None, end),
            None => {
                if let Some(e) = end.as_mut() {
                    drain(&mut e.cons);
                }
            }
        }
    }
}

/// Aligned like [`RingRx`], for the same reason.
#[repr(align(128))]
struct RingTx {
    end: Option<TxEnd>,
    name: Option<String>,
    stats: Arc<QueueStats>,
}

impl TxQueue for RingTx {
    #[inline]
    fn tx_burst(&mut self, batch: &mut PktBatch) -> usize {
        let Some(end) = self.end.as_mut() else {
            return 0;
        };
        let n = end.prod.free_count().min(batch.len());
        if n == 0 {
            return 0;
        }
        let port = end.log.rx_port.load(Ordering::Relaxed);
        let mut bytes = 0u64;
        for m in &mut batch.as_mut_slice()[..n] {
            bytes += m.len() as u64;
            // Unconditionally: a store to the line just read costs less than comparing.
            m.set_port(port);
        }
        end.count += n as u64;
        end.bytes += bytes;
        end.log.write(end.count, port, end.bytes);
        let sent = end.prod.enqueue_burst(&batch.raw()[..n]);
        debug_assert_eq!(sent, n, "the only producer fits what free_count() saw");
        // The ring now owns the first n buffers.
        batch.disown_front(sent);
        self.stats.add(sent as u64, bytes);
        sent
    }
}

impl Drop for RingTx {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            return_end(name, self.end.take(), None);
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

    thread_local! {
        /// Receive bursts whose bytes came from the producer's log (this test's thread).
        pub(super) static LOGGED_BURSTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Sends one packet per length (filled with the length's low byte); returns how many
    /// the queue took. The rest are freed.
    fn send(tx: &mut pmd_core::ethdev::TxQueueHandle, pool: &Mempool, lens: &[usize]) -> usize {
        let mut b = PktBatch::new();
        for &len in lens {
            let m = pmd_core::Mbuf::from_slice(&vec![len as u8; len], pool).unwrap();
            b.push(m).unwrap();
        }
        tx.tx_burst(&mut b)
    }

    /// Receives up to `max` packets; returns their lengths and ports.
    fn recv(rx: &mut pmd_core::ethdev::RxQueueHandle, max: usize) -> Vec<(usize, u16)> {
        let mut b = PktBatch::new();
        rx.set_burst(max);
        rx.rx_burst(&mut b);
        assert!(b.iter().all(|m| m.data() == vec![m.len() as u8; m.len()]));
        b.iter().map(|m| (m.len(), m.port())).collect()
    }

    #[test]
    fn receive_counts_exact_bytes_and_stamps_its_port_across_partial_bursts_and_owners() {
        let pool = Mempool::create("ring-owner", 256, 0).unwrap();
        let mut a = started_port(0, "net_ring0,rx=o_back,tx=o_fwd,size=16", 1);
        let _rx_a = a.setup_rx_queue(0, 0, &pool).unwrap();
        let mut tx = a.setup_tx_queue(0, 0).unwrap();
        a.start().unwrap();
        // Sent before any rx queue holds the ring's consuming end.
        assert_eq!(send(&mut tx, &pool, &[60, 61, 62]), 3);
        let mut b = started_port(1, "net_ring1,rx=o_fwd,tx=o_back,size=16", 1);
        let mut rx = b.setup_rx_queue(0, 0, &pool).unwrap();
        let tx_b = b.setup_tx_queue(0, 0).unwrap();
        b.start().unwrap();
        assert_eq!(send(&mut tx, &pool, &[100, 101]), 2);
        // A burst smaller than what waits, then the rest: every packet carries port 1.
        assert_eq!(recv(&mut rx, 2), [(60, 1), (61, 1)]);
        assert_eq!(recv(&mut rx, 32), [(62, 1), (100, 1), (101, 1)]);
        assert_eq!(recv(&mut rx, 32), []);
        let s = b.stats();
        assert_eq!((s.ipackets, s.ibytes), (5, 60 + 61 + 62 + 100 + 101));
        // A full ring takes 16 of 20; the sender's counters hold exactly those.
        let lens: Vec<usize> = (0..20).map(|i| 64 + i * 100).collect();
        assert_eq!(send(&mut tx, &pool, &lens), 16);
        let s = a.stats();
        let sent: usize = 60 + 61 + 62 + 100 + 101 + lens[..16].iter().sum::<usize>();
        assert_eq!((s.opackets, s.obytes), (21, sent as u64));
        // The consuming end moves to port 2 with 16 packets waiting.
        drop(rx);
        let mut c = started_port(2, "net_ring2,rx=o_fwd,tx=o_other,size=16", 1);
        let mut rx = c.setup_rx_queue(0, 0, &pool).unwrap();
        let tx_c = c.setup_tx_queue(0, 0).unwrap();
        c.start().unwrap();
        let want: Vec<(usize, u16)> = lens[..5].iter().map(|&l| (l, 2)).collect();
        assert_eq!(recv(&mut rx, 5), want);
        assert_eq!(send(&mut tx, &pool, &[70, 71, 72, 73, 74]), 5);
        let mut got = Vec::new();
        while let more @ [_, ..] = &recv(&mut rx, 7)[..] {
            got.extend_from_slice(more);
        }
        let want: Vec<(usize, u16)> = lens[5..16]
            .iter()
            .chain(&[70, 71, 72, 73, 74])
            .map(|&l| (l, 2))
            .collect();
        assert_eq!(got, want);
        let s = c.stats();
        let bytes: usize = lens[..16].iter().sum::<usize>() + 70 + 71 + 72 + 73 + 74;
        assert_eq!((s.ipackets, s.ibytes), (21, bytes as u64));
        // Up to here no burst could be counted from the log (each was either not on a
        // burst's end or partly stamped for another port). Now bursts on burst ends are:
        // one whole burst, then two bursts in one receive.
        assert_eq!(LOGGED_BURSTS.with(|c| c.get()), 0);
        assert_eq!(send(&mut tx, &pool, &[80, 81]), 2);
        assert_eq!(recv(&mut rx, 32), [(80, 2), (81, 2)]);
        assert_eq!(send(&mut tx, &pool, &[90]), 1);
        assert_eq!(send(&mut tx, &pool, &[91, 92]), 2);
        assert_eq!(recv(&mut rx, 32), [(90, 2), (91, 2), (92, 2)]);
        assert_eq!(LOGGED_BURSTS.with(|c| c.get()), 2);
        // And one that ends inside a burst is counted from the lengths, exactly.
        assert_eq!(send(&mut tx, &pool, &[100, 101, 102]), 3);
        assert_eq!(recv(&mut rx, 2), [(100, 2), (101, 2)]);
        assert_eq!(recv(&mut rx, 2), [(102, 2)]);
        assert_eq!(LOGGED_BURSTS.with(|c| c.get()), 3);
        let s = c.stats();
        let more = 80 + 81 + 90 + 91 + 92 + 100 + 101 + 102;
        assert_eq!((s.ipackets, s.ibytes), (29, (bytes + more) as u64));
        drop((rx, tx, _rx_a, tx_b, tx_c, a, b, c));
        assert_eq!(pool.stats().in_use, 0);
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
