//! What an lcore runs: receive a burst, check and classify each packet, look the routed
//! ones up, rewrite them, and send them per output port.
//!
//! Per packet, as DPDK l3fwd does: an IPv4 header is checked (version 4, header length
//! 20-60 bytes, total length at least the header), its TTL decremented and its checksum
//! updated incrementally; the Ethernet destination becomes the output port's
//! `--eth-dest`, the source the port's own MAC. Where DPDK l3fwd sends a packet it
//! cannot route back out of the port it came in on, or forwards a TTL that has run
//! out, this l3fwd drops it and counts why:
//! - no route: no route covers the destination (lpm) or the flow (em);
//! - TTL expired: an IPv4 TTL or IPv6 hop limit of 0 or 1 (RFC 1812 5.3.1, RFC 8200 3);
//! - malformed: a header that is cut short or whose lengths lie;
//! - not IP: another ethertype (VLAN-tagged frames included, as in DPDK l3fwd).
//!
//! IPv6 hop limits are decremented too (DPDK's l3fwd leaves them).

use pmd_core::ethdev::{RxQueueHandle, TxQueueHandle};
use pmd_core::mbuf::{Mbuf, PktBatch, BATCH_CAPACITY};
use pmd_core::{lcore, tsc};
use pmd_flow::{FiveTuple4, FiveTuple6, FlowReader};
use pmd_lpm::{Reader4, Reader6};
use pmd_net::{ethertype, proto, Ipv4, Ipv6};
use std::net::{Ipv4Addr, Ipv6Addr};

/// What each packet of a burst became: an output port, or why it is dropped.
type Verdict = u16;
const NO_ROUTE: Verdict = 0xffff;
const TTL_EXPIRED: Verdict = 0xfffe;
const MALFORMED: Verdict = 0xfffd;
const NOT_IP: Verdict = 0xfffc;
/// Verdicts from here on are drops.
const FIRST_DROP: Verdict = NOT_IP;
/// Checked, TTL decremented, not looked up yet.
const IPV4: Verdict = 0xfffa;
const IPV6: Verdict = 0xfff9;

/// Why packets were not forwarded, and how many were.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    /// Received.
    pub received: u64,
    /// Handed to a tx queue and taken.
    pub forwarded: u64,
    /// No route.
    pub no_route: u64,
    /// TTL or hop limit run out.
    pub ttl_expired: u64,
    /// Cut short or lying headers.
    pub malformed: u64,
    /// Not IPv4 or IPv6.
    pub not_ip: u64,
    /// The output port's tx queue was full.
    pub tx_full: u64,
    /// TSC ticks in polls that received packets.
    pub busy_ticks: u64,
}

impl Counts {
    /// Adds `o`'s counts to these.
    pub fn add(&mut self, o: &Counts) {
        self.received += o.received;
        self.forwarded += o.forwarded;
        self.no_route += o.no_route;
        self.ttl_expired += o.ttl_expired;
        self.malformed += o.malformed;
        self.not_ip += o.not_ip;
        self.tx_full += o.tx_full;
        self.busy_ticks += o.busy_ticks;
    }
}

/// A route lookup. IPv4 packets of a burst are looked up together (their keys first,
/// then one bulk lookup, so the table's memory accesses overlap), IPv6 ones one by one.
pub trait Router: Send + 'static {
    /// What an IPv4 packet is looked up by.
    type Key4: Copy + Default + Send;
    /// The key of a checked IPv4 packet, from its first segment.
    fn key4(d: &[u8]) -> Self::Key4;
    /// The output port of each key of `keys` into `ports`, `NO_ROUTE` where none.
    fn lookup4(&self, keys: &[Self::Key4], ports: &mut [Verdict]);
    /// The output port of a checked IPv6 packet (its first segment), or `NO_ROUTE`.
    fn lookup6(&self, d: &[u8]) -> Verdict;
    /// Between bursts: the lcore holds nothing it looked up.
    fn quiescent(&self);
}

/// Longest prefix match on the destination address.
pub struct LpmRouter {
    /// IPv4 routes.
    pub v4: Reader4,
    /// IPv6 routes.
    pub v6: Reader6,
}

/// The destination address of a checked IPv4 packet.
#[inline(always)]
fn dst4(d: &[u8]) -> u32 {
    u32::from_be_bytes([d[30], d[31], d[32], d[33]])
}

#[inline(always)]
fn dst6(d: &[u8]) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&d[38..54]).unwrap_or_default())
}

fn src6(d: &[u8]) -> Ipv6Addr {
    Ipv6Addr::from(<[u8; 16]>::try_from(&d[22..38]).unwrap_or_default())
}

/// A next hop as a verdict: route files name ports 0-255.
#[inline(always)]
fn port_of(hop: Option<u64>) -> Verdict {
    hop.map_or(NO_ROUTE, |p| p as Verdict)
}

impl Router for LpmRouter {
    type Key4 = u32;

    #[inline(always)]
    fn key4(d: &[u8]) -> u32 {
        dst4(d)
    }

    #[inline(always)]
    fn lookup4(&self, keys: &[u32], ports: &mut [Verdict]) {
        // Eight at a time: their first-level loads overlap.
        for (keys, ports) in keys.chunks(8).zip(ports.chunks_mut(8)) {
            let mut hops = [0u32; 8];
            let hops = &mut hops[..keys.len()];
            self.v4.lookup_bulk(keys, hops, u32::from(NO_ROUTE));
            for (p, &h) in ports.iter_mut().zip(hops.iter()) {
                *p = h as Verdict;
            }
        }
    }

    #[inline(always)]
    fn lookup6(&self, d: &[u8]) -> Verdict {
        port_of(self.v6.lookup(dst6(d)).map(u64::from))
    }

    fn quiescent(&self) {
        self.v4.quiescent();
        self.v6.quiescent();
    }
}

/// Exact match on the 5-tuple.
pub struct EmRouter {
    /// IPv4 flows.
    pub v4: FlowReader<2>,
    /// IPv6 flows.
    pub v6: FlowReader<5>,
}

/// The ports of a TCP or UDP header at `l4` of a first segment, or zeros (other
/// protocols, later fragments, a header outside the segment).
#[inline(always)]
fn ports(d: &[u8], l4: usize, proto_: u8, later_fragment: bool) -> (u16, u16) {
    match d.get(l4..l4 + 4) {
        Some(p) if !later_fragment && (proto_ == proto::TCP || proto_ == proto::UDP) => (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        ),
        _ => (0, 0),
    }
}

/// The 5-tuple of a checked IPv4 packet's first segment.
#[inline(always)]
pub fn flow4(d: &[u8]) -> FiveTuple4 {
    let ihl = usize::from(d[14] & 0xf) * 4;
    let later = u16::from_be_bytes([d[20], d[21]]) & 0x1fff != 0;
    let (sport, dport) = ports(d, 14 + ihl, d[23], later);
    FiveTuple4 {
        src: Ipv4Addr::new(d[26], d[27], d[28], d[29]),
        dst: Ipv4Addr::from(dst4(d)),
        sport,
        dport,
        proto: d[23],
    }
}

/// The 5-tuple of a checked IPv6 packet's first segment (extension headers are not
/// followed: their ports read as zeros).
#[inline(always)]
pub fn flow6(d: &[u8]) -> FiveTuple6 {
    let (sport, dport) = ports(d, 54, d[20], false);
    FiveTuple6 {
        src: src6(d),
        dst: dst6(d),
        sport,
        dport,
        proto: d[20],
    }
}

impl Router for EmRouter {
    type Key4 = [u64; 2];

    #[inline(always)]
    fn key4(d: &[u8]) -> [u64; 2] {
        flow4(d).key()
    }

    #[inline(always)]
    fn lookup4(&self, keys: &[[u64; 2]], ports: &mut [Verdict]) {
        for (keys, ports) in keys.chunks(8).zip(ports.chunks_mut(8)) {
            let mut found = [None; 8];
            let found = &mut found[..keys.len()];
            self.v4.lookup_bulk(keys, found);
            for (p, &f) in ports.iter_mut().zip(found.iter()) {
                *p = port_of(f);
            }
        }
    }

    #[inline(always)]
    fn lookup6(&self, d: &[u8]) -> Verdict {
        port_of(self.v6.lookup(&flow6(d).key()))
    }

    fn quiescent(&self) {
        self.v4.quiescent();
        self.v6.quiescent();
    }
}

/// Checks a received packet and, if it is IPv4 or IPv6 to forward, decrements its TTL
/// or hop limit (the packet is dropped anyway if no route is found).
#[inline(always)]
fn check(m: &mut Mbuf) -> Verdict {
    let l3_len = m.len().saturating_sub(14);
    let d = m.data_mut();
    let Some(et) = d.get(12..14) else {
        return MALFORMED;
    };
    match u16::from_be_bytes([et[0], et[1]]) {
        ethertype::IPV4 => match Ipv4::new_chained(&mut d[14..], l3_len) {
            Ok(mut ip) => {
                if ip.decrement_ttl() {
                    IPV4
                } else {
                    TTL_EXPIRED
                }
            }
            Err(_) => MALFORMED,
        },
        ethertype::IPV6 => match Ipv6::new_chained(&mut d[14..], l3_len) {
            Ok(mut ip) => {
                if ip.decrement_hop_limit() {
                    IPV6
                } else {
                    TTL_EXPIRED
                }
            }
            Err(_) => MALFORMED,
        },
        _ => NOT_IP,
    }
}

/// Counts the drops of a burst by reason.
#[cold]
fn count_drops(c: &mut Counts, v: &[Verdict]) {
    for &p in v {
        match p {
            NO_ROUTE => c.no_route += 1,
            TTL_EXPIRED => c.ttl_expired += 1,
            MALFORMED => c.malformed += 1,
            NOT_IP => c.not_ip += 1,
            _ => {}
        }
    }
}

/// Per-burst working arrays, kept from burst to burst (not cleared: each burst writes
/// what it reads).
struct Scratch<K> {
    verdicts: [Verdict; BATCH_CAPACITY],
    keys: [K; BATCH_CAPACITY],
    at: [u8; BATCH_CAPACITY],
    ports: [Verdict; BATCH_CAPACITY],
}

/// Per port id (as a byte: route files name ports 0-255): the destination MAC
/// (`--eth-dest`) then the port's own, the 12 bytes written over a routed frame's
/// addresses.
pub type MacTable = [[u8; 12]; 256];

/// An lcore's queues, tables and counts.
pub struct Lcore<R: Router> {
    rx: Vec<RxQueueHandle>,
    /// This lcore's tx queue on each port (by port id).
    tx: Vec<Option<TxQueueHandle>>,
    /// The MAC pair of each port.
    macs: Box<MacTable>,
    router: R,
    counts: Counts,
    /// Packets of the burst being sent, per output port.
    out: Vec<PktBatch>,
    scratch: Box<Scratch<R::Key4>>,
}

impl<R: Router> Lcore<R> {
    /// An lcore polling `rx`, sending on `tx` (indexed by port id), with each port's MAC
    /// pair `macs`.
    pub fn new(
        rx: Vec<RxQueueHandle>,
        tx: Vec<Option<TxQueueHandle>>,
        macs: Box<MacTable>,
        router: R,
    ) -> Lcore<R> {
        let out = (0..tx.len()).map(|_| PktBatch::new()).collect();
        Lcore {
            rx,
            tx,
            macs,
            router,
            counts: Counts::default(),
            out,
            scratch: Box::new(Scratch {
                verdicts: [NO_ROUTE; BATCH_CAPACITY],
                keys: [R::Key4::default(); BATCH_CAPACITY],
                at: [0; BATCH_CAPACITY],
                ports: [NO_ROUTE; BATCH_CAPACITY],
            }),
        }
    }

    /// What this lcore counted.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// One burst from rx queue `q`; returns how many packets were received.
    #[inline(always)]
    fn poll(&mut self, q: usize, batch: &mut PktBatch) -> usize {
        let n = self.rx[q].rx_burst(batch);
        if n == 0 {
            return 0;
        }
        self.counts.received += n as u64;
        // Check each packet; the IPv4 ones to route give their keys, looked up together.
        let s = &mut *self.scratch;
        let v = &mut s.verdicts[..n];
        let mut n4 = 0;
        for (i, (m, v)) in batch.iter_mut().zip(v.iter_mut()).enumerate() {
            *v = match check(m) {
                IPV4 => {
                    s.keys[n4] = R::key4(m.data());
                    s.at[n4] = i as u8;
                    n4 += 1;
                    NO_ROUTE
                }
                IPV6 => self.router.lookup6(m.data()),
                drop => drop,
            };
        }
        if n4 > 0 {
            let ports = &mut s.ports[..n4];
            self.router.lookup4(&s.keys[..n4], ports);
            for (&i, &p) in s.at[..n4].iter().zip(ports.iter()) {
                v[usize::from(i)] = p;
            }
        }
        let v = &s.verdicts[..n];
        // Routed packets get their MACs; a burst going to one port (the usual case) is
        // sent as it is.
        let first = v[0];
        let mut one_port = true;
        let mut drops = 0;
        for (m, &p) in batch.iter_mut().zip(v.iter()) {
            if p < FIRST_DROP {
                if let Some(hdr) = m.data_mut().get_mut(..12) {
                    hdr.copy_from_slice(&self.macs[usize::from(p as u8)]);
                }
            } else {
                drops += 1;
            }
            one_port &= p == first;
        }
        if drops > 0 {
            count_drops(&mut self.counts, v);
        }
        if one_port && first < FIRST_DROP {
            self.send(usize::from(first), batch);
            return n;
        }
        let mut used = 0u64; // bit per port below 64: which out batches to flush
        for (m, &p) in batch.drain().zip(v.iter()) {
            if p < FIRST_DROP {
                let p = usize::from(p);
                if let Some(out) = self.out.get_mut(p) {
                    // Cannot fail: a burst holds at most BATCH_CAPACITY packets.
                    let _ = out.push(m);
                    used |= 1 << (p % 64);
                }
            }
        }
        for p in 0..self.out.len() {
            if used >> (p % 64) & 1 == 1 && !self.out[p].is_empty() {
                let mut out = std::mem::take(&mut self.out[p]);
                self.send(p, &mut out);
                self.out[p] = out;
            }
        }
        n
    }

    /// Sends `batch` on port `p` (routes only name enabled ports, which all have a tx
    /// queue); what the queue does not take is dropped and counted.
    #[inline(always)]
    fn send(&mut self, p: usize, batch: &mut PktBatch) {
        let before = batch.len();
        if let Some(Some(tx)) = self.tx.get_mut(p) {
            tx.tx_burst(batch);
        }
        self.counts.forwarded += (before - batch.len()) as u64;
        if !batch.is_empty() {
            self.counts.tx_full += batch.len() as u64;
            batch.clear();
        }
    }

    /// Lets every tx queue send what it holds back.
    fn flush(&mut self) {
        for tx in self.tx.iter_mut().flatten() {
            tx.tx_flush();
        }
    }
}

/// Polls the lcore's queues until a stop is requested; `tick`, if given, is called with
/// the TSC once per pass and stops the loop by returning true. Gives the lcore back (its
/// queues must outlive the ports' stop).
pub fn run<R: Router>(mut lc: Lcore<R>, mut tick: Option<&mut dyn FnMut(u64) -> bool>) -> Lcore<R> {
    let mut batch = PktBatch::new();
    let mut last = tsc::rdtsc();
    while !lcore::stop_requested() {
        let mut got = 0;
        for q in 0..lc.rx.len() {
            got += lc.poll(q, &mut batch);
        }
        lc.router.quiescent();
        let now = tsc::rdtsc();
        if got > 0 {
            lc.counts.busy_ticks += now - last;
        } else {
            lc.flush();
        }
        last = now;
        if let Some(tick) = tick.as_mut() {
            if tick(now) {
                lcore::request_stop();
            }
        }
    }
    lc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbuf(pool: &pmd_core::Mempool, f: &[u8]) -> Mbuf {
        let mut m = pool.alloc().unwrap();
        assert!(m.copy_from(f));
        m
    }

    #[test]
    fn checks_classify_and_decrement() {
        let pool = pmd_core::Mempool::create("l3fwd-check", 64, 0).unwrap();
        let v4 = pmd_net::build::udp4(
            [2; 6],
            [4; 6],
            [10, 0, 0, 1],
            [198, 18, 1, 7],
            9,
            9,
            &[0; 18],
        );
        let mut m = mbuf(&pool, &v4);
        assert_eq!(check(&mut m), IPV4);
        let ip = Ipv4::new(&m.data()[14..]).unwrap();
        assert_eq!(ip.ttl(), 63);
        assert!(ip.checksum_ok());
        assert_eq!(dst4(m.data()), u32::from(Ipv4Addr::new(198, 18, 1, 7)));
        let f = flow4(m.data());
        assert_eq!((f.sport, f.dport, f.proto), (9, 9, proto::UDP));

        let src = Ipv6Addr::new(0x2001, 0x200, 0, 3, 0, 0, 0, 1).octets();
        let dst = Ipv6Addr::new(0x2001, 0x200, 0, 3, 0, 0, 0, 0).octets();
        let v6 = pmd_net::build::udp6([2; 6], [4; 6], src, dst, 1, 2, &[0; 6]);
        let mut m = mbuf(&pool, &v6);
        assert_eq!(check(&mut m), IPV6);
        assert_eq!(m.data()[21], 63);
        let f = flow6(m.data());
        assert_eq!(
            (f.src.octets(), f.dst.octets(), f.sport, f.dport),
            (src, dst, 1, 2)
        );

        let mut ttl1 = v4.clone();
        ttl1[22] = 1;
        assert_eq!(check(&mut mbuf(&pool, &ttl1)), TTL_EXPIRED);
        let mut lying = v4.clone();
        lying[16..18].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(check(&mut mbuf(&pool, &lying)), MALFORMED);
        let mut short_hdr = v4.clone();
        short_hdr[14] = 0x44;
        assert_eq!(check(&mut mbuf(&pool, &short_hdr)), MALFORMED);
        assert_eq!(check(&mut mbuf(&pool, &v4[..30])), MALFORMED);
        assert_eq!(check(&mut mbuf(&pool, &v6[..50])), MALFORMED);
        assert_eq!(check(&mut mbuf(&pool, &v4[..10])), MALFORMED);
        let mut arp = v4.clone();
        arp[12..14].copy_from_slice(&ethertype::ARP.to_be_bytes());
        assert_eq!(check(&mut mbuf(&pool, &arp)), NOT_IP);
    }
}
