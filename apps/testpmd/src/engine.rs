//! Forwarding streams and the per-lcore loop, one monomorphized loop per mode (no dynamic
//! dispatch per packet).

use crate::opts::Mode;
use crate::pkt;
use pmd_core::ethdev::{PortId, RxQueueHandle, TxQueueHandle};
use pmd_core::intr::{IdleSleeper, Slept};
use pmd_core::mbuf::PktBatch;
use pmd_core::{lcore, tsc, Mempool};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters of one stream (single writer: its lcore), on cache lines of their own: the
/// streams of two lcores would otherwise share a line and slow each other on every burst.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct StreamStats {
    /// Packets received.
    pub rx: AtomicU64,
    /// Packets sent.
    pub tx: AtomicU64,
    /// Packets the tx queue did not take (freed).
    pub tx_dropped: AtomicU64,
    /// Packets with a bad IPv4 header checksum (csum mode).
    pub bad_ip: AtomicU64,
    /// Packets with a bad L4 checksum (csum mode).
    pub bad_l4: AtomicU64,
}

impl StreamStats {
    fn add(c: &AtomicU64, n: u64) {
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

/// How a stream builds and rewrites frames.
#[derive(Clone, Debug)]
pub struct StreamParams {
    /// Destination MAC (`mac` mode, generated frames).
    pub dst_mac: [u8; 6],
    /// Source MAC (the tx port's).
    pub src_mac: [u8; 6],
    /// Segment lengths of generated frames (their sum is the frame length, no FCS).
    pub segs: Vec<usize>,
    /// Flows for flowgen.
    pub flows: u32,
    /// Most packets per rx burst.
    pub burst: usize,
    /// The tx port computes IPv4/TCP/UDP checksums (csum mode asks it to; otherwise the
    /// mode computes them in software).
    pub tx_csum_hw: bool,
}

/// One rx queue forwarded to one tx queue.
pub struct Stream {
    /// Port received on.
    pub rx_port: PortId,
    /// Port transmitted on.
    pub tx_port: PortId,
    rx: RxQueueHandle,
    tx: TxQueueHandle,
    /// Counters.
    pub stats: Arc<StreamStats>,
    /// `mac` mode: destination then source MAC written over each frame.
    macs: [u8; 12],
    /// Template of generated frames.
    template: Vec<u8>,
    /// Segment lengths of generated frames (one entry: a single buffer).
    segs: Vec<usize>,
    /// See [`StreamParams::tx_csum_hw`].
    tx_csum_hw: bool,
    /// Flows for flowgen, and the next one.
    flows: u32,
    next_flow: u32,
}

impl Stream {
    /// A stream from `rx` to `tx`, with `p` for generated frames and `mac` mode.
    pub fn new(
        rx_port: PortId,
        mut rx: RxQueueHandle,
        tx_port: PortId,
        tx: TxQueueHandle,
        p: &StreamParams,
    ) -> Stream {
        let (macs, flows) = ((p.dst_mac, p.src_mac), p.flows);
        let len: usize = p.segs.iter().sum();
        rx.set_burst(p.burst);
        let mut m = [0u8; 12];
        m[..6].copy_from_slice(&macs.0);
        m[6..].copy_from_slice(&macs.1);
        Stream {
            rx_port,
            tx_port,
            rx,
            tx,
            stats: Arc::default(),
            macs: m,
            template: {
                let mut t =
                    pkt::udp_frame(len, macs.1, macs.0, pkt::SRC_IP, pkt::DST_IP, pkt::UDP_PORT);
                // The payload is not rewritten per packet, so no UDP checksum (0 is valid
                // for IPv4), as DPDK's txonly sends.
                t[40..42].fill(0);
                t
            },
            segs: p.segs.clone(),
            tx_csum_hw: p.tx_csum_hw,
            flows,
            next_flow: 0,
        }
    }

    /// Generated frames of several segments: each segment from its own buffer, the
    /// template's bytes spread over them; a packet the pool cannot complete is not sent.
    #[cold]
    fn generate_chains(&mut self, pool: &Mempool, batch: &mut PktBatch, n: usize) {
        for _ in 0..n.min(batch.spare()) {
            let mut at = 0;
            let mut head: Option<pmd_core::Mbuf> = None;
            for &len in &self.segs {
                let Some(mut seg) = pool.alloc() else {
                    return;
                };
                if !seg.copy_from(&self.template[at..at + len]) {
                    return;
                }
                at += len;
                match head.as_mut() {
                    None => head = Some(seg),
                    Some(h) => {
                        if h.chain(seg).is_err() {
                            return;
                        }
                    }
                }
            }
            if let Some(h) = head {
                let _ = batch.push(h);
            }
        }
    }

    /// Fills `batch` with up to `n` generated frames from `pool`; flowgen varies the
    /// source address and UDP port per packet over `flows` flows.
    #[inline]
    fn generate(&mut self, pool: &Mempool, batch: &mut PktBatch, n: usize, flowgen: bool) {
        if self.segs.len() > 1 {
            return self.generate_chains(pool, batch, n);
        }
        // Buffers come already frame-long (the frame fits one: checked at start-up).
        let Some(bufs) = pool.alloc_bulk_len(batch, n, self.template.len() as u16) else {
            return;
        };
        for m in bufs.iter_mut() {
            let d = m.data_mut();
            // Like DPDK's txonly, only the headers are written per packet (a constant-size
            // copy, inlined); the payload is whatever the buffer holds.
            d[..pkt::HDRS].copy_from_slice(&self.template[..pkt::HDRS]);
            if flowgen {
                let f = self.next_flow;
                self.next_flow = if f + 1 >= self.flows { 0 } else { f + 1 };
                // Source 198.18.x.y and UDP source port vary; patch the IPv4 checksum
                // incrementally (RFC 1624) and leave UDP's at 0 (allowed for IPv4).
                let hi = (f >> 8) as u8;
                let lo = f as u8;
                d[28] = hi;
                d[29] = lo;
                let old = u16::from_be_bytes([self.template[24], self.template[25]]);
                let sum = u32::from(!old)
                    + u32::from(!u16::from_be_bytes([self.template[28], self.template[29]]))
                    + u32::from(u16::from_be_bytes([hi, lo]));
                let sum = (sum & 0xffff) + (sum >> 16);
                let sum = (sum & 0xffff) + (sum >> 16);
                d[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
                d[34..36].copy_from_slice(&(1024 + (f & 0x3fff) as u16).to_be_bytes());
                d[40] = 0;
                d[41] = 0;
            }
        }
    }

    /// Sends what is in `batch`, counting what went and freeing what did not.
    #[inline]
    fn send(&mut self, batch: &mut PktBatch) {
        let n = batch.len() as u64;
        let sent = self.tx.tx_burst(batch) as u64;
        StreamStats::add(&self.stats.tx, sent);
        if sent < n {
            StreamStats::add(&self.stats.tx_dropped, n - sent);
            batch.clear();
        }
    }

    /// Sends one burst of generated frames (--tx-first).
    pub fn tx_first(&mut self, pool: &Mempool, burst: usize) {
        let mut b = PktBatch::new();
        self.generate(pool, &mut b, burst, false);
        self.send(&mut b);
    }
}

/// A forwarding mode's per-burst work.
trait Engine {
    /// One burst on stream `s`; returns how many packets it received.
    fn burst(&mut self, s: &mut Stream, batch: &mut PktBatch, burst: usize) -> usize;
}

struct Io;
impl Engine for Io {
    #[inline(always)]
    fn burst(&mut self, s: &mut Stream, batch: &mut PktBatch, _burst: usize) -> usize {
        let n = s.rx.rx_burst(batch);
        if n == 0 {
            s.tx.tx_flush(); // idle: let the queue flush
            return 0;
        }
        StreamStats::add(&s.stats.rx, n as u64);
        s.send(batch);
        n
    }
}

struct Mac;
impl Engine for Mac {
    #[inline(always)]
    fn burst(&mut self, s: &mut Stream, batch: &mut PktBatch, _burst: usize) -> usize {
        let n = s.rx.rx_burst(batch);
        if n == 0 {
            return 0;
        }
        StreamStats::add(&s.stats.rx, n as u64);
        for m in batch.iter_mut() {
            if let Some(h) = m.data_mut().get_mut(..12) {
                h.copy_from_slice(&s.macs);
            }
        }
        s.send(batch);
        n
    }
}

struct Macswap;
impl Engine for Macswap {
    #[inline(always)]
    fn burst(&mut self, s: &mut Stream, batch: &mut PktBatch, _burst: usize) -> usize {
        let n = s.rx.rx_burst(batch);
        if n == 0 {
            return 0;
        }
        StreamStats::add(&s.stats.rx, n as u64);
        for m in batch.iter_mut() {
            if let Some(h) = m.data_mut().get_mut(..12) {
                let (d, src) = h.split_at_mut(6);
                d.swap_with_slice(src);
            }
        }
        s.send(batch);
        n
    }
}

struct Rxonly;
impl Engine for Rxonly {
    #[inline(always)]
    fn burst(&mut self, s: &mut Stream, batch: &mut PktBatch, _burst: usize) -> usize {
        let n = s.rx.rx_burst(batch);
        if n > 0 {
            StreamStats::add(&s.stats.rx, n as u64);
            batch.clear();
        }
        n
    }
}

struct Txonly {
    pool: Mempool,
    flowgen: bool,
}
impl Engine for Txonly {
    #[inline(always)]
    fn burst(&mut self, s: &mut Stream, batch: &mut PktBatch, burst: usize) -> usize {
        if self.flowgen {
            // flowgen also drains what comes back.
            let n = s.rx.rx_burst(batch);
            if n > 0 {
                StreamStats::add(&s.stats.rx, n as u64);
                batch.clear();
            }
        }
        s.generate(&self.pool, batch, burst, self.flowgen);
        s.send(batch);
        // Never idle: it sends every burst.
        burst
    }
}

struct Csum;
impl Engine for Csum {
    #[inline(always)]
    fn burst(&mut self, s: &mut Stream, batch: &mut PktBatch, _burst: usize) -> usize {
        let n = s.rx.rx_burst(batch);
        if n == 0 {
            return 0;
        }
        StreamStats::add(&s.stats.rx, n as u64);
        let (mut ip, mut l4) = (0, 0);
        for m in batch.iter() {
            // A chain is verified whole (copied out: a cold path for jumbo frames).
            let r = if m.is_contiguous() {
                pkt::verify(m.data())
            } else {
                pkt::verify(&m.to_vec())
            };
            ip += u64::from(r.bad_ip);
            l4 += u64::from(r.bad_l4);
        }
        StreamStats::add(&s.stats.bad_ip, ip);
        StreamStats::add(&s.stats.bad_l4, l4);
        // Then, as DPDK's csum engine, recompute the checksums of IPv4 TCP/UDP packets:
        // by the tx port when it has the offloads, in software otherwise.
        for m in batch.iter_mut() {
            if pkt::request_checksums(m) && !s.tx_csum_hw {
                // Lengths were checked against the packet: cannot fail; if it did, the
                // packet would go out with its checksums as received.
                let _ = pmd_core::offload::checksum(m);
            }
        }
        if s.tx_csum_hw {
            let ready = s.tx.tx_prepare(batch);
            if ready < batch.len() {
                // A packet the port cannot prepare is counted as dropped, with the rest.
                let dropped = (batch.len() - ready) as u64;
                batch.truncate(ready);
                StreamStats::add(&s.stats.tx_dropped, dropped);
            }
        }
        s.send(batch);
        n
    }
}

fn run_with<E: Engine>(
    mut e: E,
    streams: &mut [Stream],
    burst: usize,
    tick: &mut Option<&mut dyn FnMut(u64, bool) -> bool>,
    mut sleeper: Option<&mut IdleSleeper>,
) {
    let mut batch = PktBatch::new();
    // A port's link interrupt ended the last sleep: the tick looks at the links now.
    let mut link_event = false;
    while !lcore::stop_requested() {
        let mut got = 0;
        for s in streams.iter_mut() {
            got += e.burst(s, &mut batch, burst);
        }
        if let Some(sl) = sleeper.as_mut() {
            if sl.after_pass(got) {
                match sl.sleep(streams) {
                    Ok(Slept::Link) => link_event = true,
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!(
                            "testpmd: sleeping on rx interrupts failed ({e}): this lcore polls"
                        );
                        sleeper = None;
                    }
                }
            }
        }
        if let Some(t) = tick.as_mut() {
            if t(tsc::rdtsc(), std::mem::take(&mut link_event)) {
                lcore::request_stop();
            }
        }
    }
}

/// Forwards `streams` in `mode` until a stop is requested; `tick` (on the main lcore) is
/// called once per loop with the TSC and whether a link interrupt ended the last sleep,
/// and may stop the run. Gives the streams back so their
/// queues outlive the ports' stop. With a `sleeper` (`--idle-sleep`), the lcore sleeps on
/// its rx queues' interrupts after that many passes without a packet (never in txonly and
/// flowgen, which send every pass).
pub fn run(
    mode: Mode,
    pool: &Mempool,
    mut streams: Vec<Stream>,
    burst: usize,
    mut tick: Option<&mut dyn FnMut(u64, bool) -> bool>,
    sleeper: Option<&mut IdleSleeper>,
) -> Vec<Stream> {
    let s = &mut streams[..];
    match mode {
        Mode::Io => run_with(Io, s, burst, &mut tick, sleeper),
        Mode::Mac => run_with(Mac, s, burst, &mut tick, sleeper),
        Mode::Macswap => run_with(Macswap, s, burst, &mut tick, sleeper),
        Mode::Rxonly => run_with(Rxonly, s, burst, &mut tick, sleeper),
        Mode::Csum => run_with(Csum, s, burst, &mut tick, sleeper),
        Mode::Txonly | Mode::Flowgen => run_with(
            Txonly {
                pool: pool.clone(),
                flowgen: mode == Mode::Flowgen,
            },
            s,
            burst,
            &mut tick,
            sleeper,
        ),
    }
    streams
}

impl AsMut<RxQueueHandle> for Stream {
    fn as_mut(&mut self) -> &mut RxQueueHandle {
        &mut self.rx
    }
}
