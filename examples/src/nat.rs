//! A stateful source NAT for IPv4 (NAT44, "masquerading"): hosts behind an inside port
//! share one public address on an outside port. The translation works on a frame's
//! bytes (`Mbuf::data_mut()`), so it is tested here without ports.
//!
//! - Outbound (inside to outside) UDP and TCP: each 5-tuple gets a public port of its
//!   own from the range (an endpoint-dependent mapping), held in two flow tables: the
//!   outbound one (inside 5-tuple to public port) and the reverse one (the replies'
//!   5-tuple to inside address and port). The source address and port are rewritten,
//!   the IPv4 and L4 checksums updated incrementally.
//! - Inbound: a reply's 5-tuple is looked up in the reverse table and its destination
//!   restored. Without a mapping it is dropped and counted.
//! - Anything else (ARP, IPv6, ICMP, other protocols) passes unchanged, counted. A
//!   real NAT also translates ICMP query ids and errors; this one does not.
//! - Frames whose headers cannot be read (cut short, lying lengths) and IPv4 fragments
//!   of UDP or TCP (only the first carries ports) are dropped and counted.
//! - A packet either way refreshes both entries of its flow, so they age together;
//!   [`Nat::expire`] removes flows idle for longer than the timeout and gives their
//!   public ports back. TCP connections are not followed: a flow ends by idling, as a
//!   UDP one does.
//!
//! One thread owns a [`Nat`]: it is the tables' writer and their only reader.

use crate::app::Middlebox;
use crate::packet::{classify, flow_table, rewrite, End, FlowCounts, Kind};
use pmd_core::ethdev::PortId;
use pmd_flow::{FiveTuple4, FlowReader, FlowTable4};
use std::collections::VecDeque;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

/// A range of public ports, `LO-HI` on a command line (both included, 1 to 65535).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port.
    pub hi: u16,
}

impl PortRange {
    /// How many ports the range holds (at least one).
    pub fn count(&self) -> usize {
        usize::from(self.hi) - usize::from(self.lo) + 1
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<PortRange, String> {
        let (lo, hi) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not a port range: expected LO-HI, e.g. 1024-65535"))?;
        let port = |p: &str| pmd_core::numarg::whole::<u16>(p, 1..=65535);
        let (lo, hi) = (port(lo)?, port(hi)?);
        if lo > hi {
            return Err(format!(
                "port range {lo}-{hi} is empty: LO must not exceed HI"
            ));
        }
        Ok(PortRange { lo, hi })
    }
}

/// How a [`Nat`] translates.
#[derive(Clone, Debug)]
pub struct NatConfig {
    /// The outside address inside hosts are translated to.
    pub public: Ipv4Addr,
    /// Public ports handed to flows.
    pub ports: PortRange,
    /// Seconds a flow may stay idle before [`Nat::expire`] removes it.
    pub timeout: u64,
    /// Most flows at once (each of the two tables holds this many).
    pub max_flows: u32,
}

/// Which way a frame crosses the NAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the inside port to the outside one.
    Outbound,
    /// From the outside port to the inside one.
    Inbound,
}

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Inbound UDP/TCP that matches no flow.
    NoMapping,
    /// Every public port of the range is in use.
    PortsExhausted,
    /// A flow table refused the new flow (full, or both buckets of its key full).
    TableFull,
    /// Headers cut short or lying.
    Malformed,
    /// An IPv4 fragment of UDP or TCP.
    Fragment,
}

/// What happened to a frame crossing the NAT.
pub type Verdict = crate::packet::Verdict<Reason>;

/// What a [`Nat`] did, frame by frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Outbound frames translated.
    pub translated_out: u64,
    /// Inbound frames translated.
    pub translated_in: u64,
    /// Inbound UDP/TCP dropped: no mapping.
    pub no_mapping: u64,
    /// Outbound new flows dropped: no free public port.
    pub ports_exhausted: u64,
    /// Passed (not UDP/TCP over IPv4), refused by a table, malformed, fragments, expired
    /// (their public ports given back).
    pub flows: FlowCounts,
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "translated out:  {}", self.translated_out)?;
        writeln!(f, "translated in:   {}", self.translated_in)?;
        writeln!(f, "no mapping:      {}", self.no_mapping)?;
        writeln!(f, "port exhaustion: {}", self.ports_exhausted)?;
        write!(f, "{}", self.flows)
    }
}

/// Public ports not in use. Ports never used go first; then those given back, oldest
/// first, so a port is reused as late as possible (late packets of an old flow do not
/// reach a new one).
#[derive(Debug)]
struct PortPool {
    next: u32,
    hi: u16,
    free: VecDeque<u16>,
}

impl PortPool {
    fn alloc(&mut self) -> Option<u16> {
        if self.next <= u32::from(self.hi) {
            self.next += 1;
            return u16::try_from(self.next - 1).ok();
        }
        self.free.pop_front()
    }

    fn release(&mut self, p: u16) {
        self.free.push_back(p);
    }
}

/// The NAT's state: the two flow tables, the public ports, the counters.
#[derive(Debug)]
pub struct Nat {
    public: Ipv4Addr,
    range: PortRange,
    timeout: u64,
    /// Inside 5-tuple -> public port.
    out: FlowTable4,
    out_r: FlowReader<2>,
    /// Reply 5-tuple (remote -> public ip:port) -> inside address << 16 | inside port.
    back: FlowTable4,
    back_r: FlowReader<2>,
    ports: PortPool,
    /// The inside 5-tuple holding each public port (index: port - lo).
    owner: Vec<Option<FiveTuple4>>,
    counters: Counters,
}

/// The 5-tuple of the replies to `t` once its source is `public:port`.
fn reply_of(t: &FiveTuple4, public: Ipv4Addr, port: u16) -> FiveTuple4 {
    FiveTuple4 {
        src: t.dst,
        dst: public,
        sport: t.dport,
        dport: port,
        proto: t.proto,
    }
}

impl Nat {
    /// An empty NAT; an error (one sentence) if the tables cannot be made.
    pub fn new(cfg: &NatConfig) -> Result<Nat, String> {
        let (out, back) = (flow_table(cfg.max_flows)?, flow_table(cfg.max_flows)?);
        Ok(Nat {
            public: cfg.public,
            range: cfg.ports,
            timeout: cfg.timeout,
            out_r: out.reader(),
            back_r: back.reader(),
            out,
            back,
            ports: PortPool {
                next: u32::from(cfg.ports.lo),
                hi: cfg.ports.hi,
                free: VecDeque::new(),
            },
            owner: vec![None; cfg.ports.count()],
            counters: Counters::default(),
        })
    }

    /// What it did so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Flows in the tables.
    pub fn flows(&self) -> u32 {
        self.out.stats().flows
    }

    /// Translates `frame` (a whole Ethernet frame) crossing the NAT in direction `dir`
    /// at `now` (seconds, the clock of [`NatConfig::timeout`]); counts what it did.
    pub fn translate(&mut self, dir: Direction, frame: &mut [u8], now: u64) -> Verdict {
        let (l3, t) = match classify(frame) {
            Kind::Flow(l3, t) => (l3, t),
            Kind::Other => {
                self.counters.flows.passed += 1;
                return Verdict::Passed;
            }
            Kind::Malformed => return self.drop(Reason::Malformed),
            Kind::Fragment(_) => return self.drop(Reason::Fragment),
        };
        let done = match dir {
            Direction::Outbound => {
                let port = match self.out_r.lookup_touch(&t.key(), now) {
                    Some(p) => {
                        // The reply's entry ages with this one.
                        let back = reply_of(&t, self.public, p as u16);
                        self.back_r.lookup_touch(&back.key(), now);
                        p as u16
                    }
                    None => match self.map(&t, now) {
                        Ok(p) => p,
                        Err(r) => return self.drop(r),
                    },
                };
                rewrite(frame, l3, End::Src, SocketAddrV4::new(self.public, port))
            }
            Direction::Inbound => {
                let Some(v) = self.back_r.lookup_touch(&t.key(), now) else {
                    return self.drop(Reason::NoMapping);
                };
                let (addr, port) = (Ipv4Addr::from((v >> 16) as u32), v as u16);
                let inside = FiveTuple4 {
                    src: addr,
                    dst: t.src,
                    sport: port,
                    dport: t.sport,
                    proto: t.proto,
                };
                self.out_r.lookup_touch(&inside.key(), now);
                rewrite(frame, l3, End::Dst, SocketAddrV4::new(addr, port))
            }
        };
        if !done {
            return self.drop(Reason::Malformed);
        }
        match dir {
            Direction::Outbound => self.counters.translated_out += 1,
            Direction::Inbound => self.counters.translated_in += 1,
        }
        Verdict::Translated
    }

    fn drop(&mut self, r: Reason) -> Verdict {
        let c = &mut self.counters;
        *match r {
            Reason::NoMapping => &mut c.no_mapping,
            Reason::PortsExhausted => &mut c.ports_exhausted,
            Reason::TableFull => &mut c.flows.table_full,
            Reason::Malformed => &mut c.flows.malformed,
            Reason::Fragment => &mut c.flows.fragments,
        } += 1;
        Verdict::Dropped(r)
    }

    /// A new flow `t`: a public port, and both table entries.
    fn map(&mut self, t: &FiveTuple4, now: u64) -> Result<u16, Reason> {
        // The tables' only readers are ours, on this thread, holding nothing between
        // lookups: saying so lets the writer reuse the slots expiry freed.
        self.quiescent();
        let port = self.ports.alloc().ok_or(Reason::PortsExhausted)?;
        let inside = u64::from(u32::from(t.src)) << 16 | u64::from(t.sport);
        let back = reply_of(t, self.public, port);
        if self.out.insert(&t.key(), port.into(), now).is_err() {
            self.ports.release(port);
            return Err(Reason::TableFull);
        }
        if self.back.insert(&back.key(), inside, now).is_err() {
            let _ = self.out.remove(&t.key());
            self.ports.release(port);
            return Err(Reason::TableFull);
        }
        self.owner[usize::from(port - self.range.lo)] = Some(*t);
        Ok(port)
    }

    /// Marks the readers quiescent: call it between bursts.
    pub fn quiescent(&self) {
        self.out_r.quiescent();
        self.back_r.quiescent();
    }

    /// Removes the flows idle for longer than the timeout at `now` (seconds) and gives
    /// their public ports back; returns how many flows went. A packet in either
    /// direction refreshes both entries of its flow, so they expire together: the
    /// outbound table says which ports to free, and their reply entries go with them.
    pub fn expire(&mut self, now: u64) -> usize {
        let mut ports = Vec::new();
        self.out
            .expire_with(now, self.timeout, |_, port| ports.push(port as u16));
        for &port in &ports {
            let slot = usize::from(port - self.range.lo);
            if let Some(t) = self.owner[slot].take() {
                let _ = self.back.remove(&reply_of(&t, self.public, port).key());
            }
            self.ports.release(port);
        }
        // Reply entries whose outbound entry is still there stay: the flow is alive.
        self.quiescent();
        self.counters.flows.expired += ports.len() as u64;
        ports.len()
    }
}

/// The NAT between two ports: port 0 inside, port 1 outside.
impl Middlebox for Nat {
    fn handle(&mut self, from: PortId, frame: &mut [u8], now: u64) -> bool {
        let dir = if from == 0 {
            Direction::Outbound
        } else {
            Direction::Inbound
        };
        self.translate(dir, frame, now).forwards()
    }

    fn quiescent(&self) {
        Nat::quiescent(self)
    }

    fn tick(&mut self, now: u64) {
        self.expire(now);
    }
}

#[cfg(test)]
mod tests;
