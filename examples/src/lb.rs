//! A layer-4 load balancer for IPv4 (in "NAT mode"): clients send UDP or TCP to a
//! virtual address and port, the VIP, on port 0; each connection (5-tuple) goes to one
//! backend of a list on port 1, its destination rewritten to the backend's; the
//! backend's replies get the VIP back as their source. Both rewrites update the
//! checksums incrementally ([`crate::packet::rewrite`]). They work on a frame's bytes
//! (`Mbuf::data_mut()`), so they are tested here without ports.
//!
//! - A new connection's backend is [`pick`]ed by a hash of its 5-tuple and kept in a
//!   flow table (`pmd-flow`): later packets follow the table, not the hash, so a
//!   connection stays on its backend. One the table cannot hold is dropped and counted.
//! - A reply (UDP/TCP from a backend's address and port) names its connection itself:
//!   the client is its destination and the VIP is known, so one table serves both ways.
//!   A reply without a connection to that backend is dropped and counted.
//! - Everything else passes unchanged, counted: ARP, IPv6, ICMP, UDP/TCP to other
//!   addresses or ports. Fragments of UDP/TCP to the VIP's address or from a backend's
//!   (only the first carries the ports) and frames whose headers cannot be read are
//!   dropped and counted.
//! - A packet either way refreshes its connection; [`Lb::expire`] removes connections
//!   idle for longer than the timeout. TCP is not followed: a connection ends by idling.
//!
//! The backends see the clients' own addresses, so their replies must come back through
//! the balancer (it is on their way out). One thread owns an [`Lb`]: it is the table's
//! writer and its only reader.

use crate::app::Middlebox;
use crate::packet::{classify, flow_table, rewrite, End, FlowCounts, Kind};
use pmd_core::ethdev::PortId;
use pmd_flow::{FiveTuple4, FlowReader, FlowTable4};
use std::fmt;
use std::net::SocketAddrV4;

/// Most backends of an [`Lb`].
pub const MAX_BACKENDS: usize = 64;

/// How an [`Lb`] balances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbConfig {
    /// The service's address and port: what clients send to.
    pub vip: SocketAddrV4,
    /// Where connections go: 1 to [`MAX_BACKENDS`], each once.
    pub backends: Vec<SocketAddrV4>,
    /// Seconds a connection may stay idle before [`Lb::expire`] removes it.
    pub timeout: u64,
    /// Most connections at once.
    pub max_flows: u32,
}

impl LbConfig {
    /// Whether the backends make sense: 1 to [`MAX_BACKENDS`], none listed twice, none on
    /// the VIP's address (the balancer's own); if not, one sentence that says why.
    pub fn check(&self) -> Result<(), String> {
        let n = self.backends.len();
        if !(1..=MAX_BACKENDS).contains(&n) {
            return Err(format!(
                "{n} backends: give 1 to {MAX_BACKENDS} (--backend A.B.C.D:PORT, repeated)"
            ));
        }
        for (i, b) in self.backends.iter().enumerate() {
            if b.ip() == self.vip.ip() {
                return Err(format!("backend {b} is on the VIP's address"));
            }
            if self.backends[..i].contains(b) {
                return Err(format!("backend {b} is listed twice"));
            }
        }
        Ok(())
    }
}

/// Which port a frame came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Port 0: from the clients, to the VIP.
    Clients,
    /// Port 1: from the backends, to the clients.
    Backends,
}

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// From a backend, but no connection of that client is on that backend.
    UnknownReply,
    /// A new connection the flow table refused (full, or both buckets of its key full).
    TableFull,
    /// Headers cut short or lying.
    Malformed,
    /// An IPv4 fragment of UDP or TCP to the VIP's address or from a backend's.
    Fragment,
}

/// What happened to a frame crossing the balancer: `Translated` is a request sent on to
/// its backend or a reply sent on to its client.
pub type Verdict = crate::packet::Verdict<Reason>;

/// What an [`Lb`] did, frame by frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames to the VIP sent on to a backend.
    pub to_backends: u64,
    /// Replies sent on to a client.
    pub to_clients: u64,
    /// Connections given a backend.
    pub new_flows: u64,
    /// Replies dropped: no such connection on that backend.
    pub unknown_replies: u64,
    /// Passed, new connections refused by the table, malformed, fragments, expired.
    pub flows: FlowCounts,
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "to backends:     {}", self.to_backends)?;
        writeln!(f, "to clients:      {}", self.to_clients)?;
        writeln!(f, "new flows:       {}", self.new_flows)?;
        writeln!(f, "unknown replies: {}", self.unknown_replies)?;
        write!(f, "{}", self.flows)
    }
}

/// A backend, and the connections it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Its address and port.
    pub addr: SocketAddrV4,
    /// Connections given to it so far.
    pub new_flows: u64,
    /// Those of them not expired.
    pub active: u64,
}

/// The backend (an index below `n`; 0 if `n` is 0) of a new connection `t`: a hash of
/// its 5-tuple.
///
/// pmd-flow's hash is private to it, so this is a small one of its own, a
/// multiply-xorshift: each word of the key is mixed in and multiplied by an odd constant
/// (2^64 over the golden ratio), which carries every bit up into the high half; a shift
/// folds the high half back down for the next round; the result is the high half, over
/// `n`. It has no secret seed: a client that chooses its ports can choose its backend,
/// which a balancer facing the open Internet would prevent with a random key.
pub fn pick(t: &FiveTuple4, n: usize) -> usize {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = 0u64;
    for w in t.key() {
        h = (h ^ w).wrapping_mul(K);
        h ^= h >> 32;
    }
    (h.wrapping_mul(K) >> 32) as usize % n.max(1)
}

/// The load balancer's state: its connections, the backends, the counters.
#[derive(Debug)]
pub struct Lb {
    vip: SocketAddrV4,
    timeout: u64,
    backends: Vec<Backend>,
    /// The client's 5-tuple (client to VIP) -> the index of its backend.
    flows: FlowTable4,
    reader: FlowReader<2>,
    counters: Counters,
}

impl Lb {
    /// A balancer without connections; an error (one sentence) if `cfg` does not pass
    /// [`LbConfig::check`] or the table cannot be made.
    pub fn new(cfg: &LbConfig) -> Result<Lb, String> {
        cfg.check()?;
        let flows = flow_table(cfg.max_flows)?;
        let backend = |&addr| Backend {
            addr,
            new_flows: 0,
            active: 0,
        };
        Ok(Lb {
            vip: cfg.vip,
            timeout: cfg.timeout,
            backends: cfg.backends.iter().map(backend).collect(),
            reader: flows.reader(),
            flows,
            counters: Counters::default(),
        })
    }

    /// What it did so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The backends, in the order given, with the connections each got.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// Connections in the table.
    pub fn flows(&self) -> u32 {
        self.flows.stats().flows
    }

    /// Balances `frame` (a whole Ethernet frame) that came in from `side` at `now`
    /// (seconds, the clock of [`LbConfig::timeout`]); counts what it did.
    pub fn handle(&mut self, side: Side, frame: &mut [u8], now: u64) -> Verdict {
        let (l3, t) = match classify(frame) {
            Kind::Flow(l3, t) => (l3, t),
            Kind::Malformed => return self.drop(Reason::Malformed),
            // No ports: whether it is ours, the addresses say.
            Kind::Fragment(t) if self.ours(side, &t) => return self.drop(Reason::Fragment),
            Kind::Fragment(_) | Kind::Other => return self.pass(),
        };
        let from = SocketAddrV4::new(t.src, t.sport);
        match side {
            Side::Clients if SocketAddrV4::new(t.dst, t.dport) == self.vip => {
                self.request(frame, l3, &t, now)
            }
            // A linear search, over 64 backends at most.
            Side::Backends if self.backends.iter().any(|b| b.addr == from) => {
                self.reply(frame, l3, &t, now)
            }
            _ => self.pass(),
        }
    }

    /// Whether a fragment from `side` with the addresses of `t` is the balancer's.
    fn ours(&self, side: Side, t: &FiveTuple4) -> bool {
        match side {
            Side::Clients => t.dst == *self.vip.ip(),
            Side::Backends => self.backends.iter().any(|b| *b.addr.ip() == t.src),
        }
    }

    fn request(&mut self, frame: &mut [u8], l3: usize, t: &FiveTuple4, now: u64) -> Verdict {
        let b = match self.reader.lookup_touch(&t.key(), now) {
            Some(b) => b as usize,
            None => match self.connect(t, now) {
                Some(b) => b,
                None => return self.drop(Reason::TableFull),
            },
        };
        // (The table holds only indices `connect` gave.)
        if !rewrite(frame, l3, End::Dst, self.backends[b].addr) {
            return self.drop(Reason::Malformed);
        }
        self.counters.to_backends += 1;
        Verdict::Translated
    }

    /// A new connection `t`: its backend, remembered; `None` if the table refuses it.
    fn connect(&mut self, t: &FiveTuple4, now: u64) -> Option<usize> {
        // The table's only reader is ours, on this thread, holding nothing between
        // lookups: saying so lets the table reuse the slots expiry freed.
        self.reader.quiescent();
        let b = pick(t, self.backends.len());
        self.flows.insert(&t.key(), b as u64, now).ok()?;
        self.backends[b].new_flows += 1;
        self.backends[b].active += 1;
        self.counters.new_flows += 1;
        Some(b)
    }

    fn reply(&mut self, frame: &mut [u8], l3: usize, t: &FiveTuple4, now: u64) -> Verdict {
        // The connection the reply answers, as its client sent it.
        let conn = FiveTuple4 {
            src: t.dst,
            dst: *self.vip.ip(),
            sport: t.dport,
            dport: self.vip.port(),
            proto: t.proto,
        };
        let from = SocketAddrV4::new(t.src, t.sport);
        // Only the connection's own backend answers it, and refreshes it.
        match self.reader.lookup(&conn.key()) {
            Some(b) if self.backends[b as usize].addr == from => {
                self.reader.lookup_touch(&conn.key(), now);
            }
            _ => return self.drop(Reason::UnknownReply),
        }
        if !rewrite(frame, l3, End::Src, self.vip) {
            return self.drop(Reason::Malformed);
        }
        self.counters.to_clients += 1;
        Verdict::Translated
    }

    fn pass(&mut self) -> Verdict {
        self.counters.flows.passed += 1;
        Verdict::Passed
    }

    fn drop(&mut self, r: Reason) -> Verdict {
        let c = &mut self.counters;
        *match r {
            Reason::UnknownReply => &mut c.unknown_replies,
            Reason::TableFull => &mut c.flows.table_full,
            Reason::Malformed => &mut c.flows.malformed,
            Reason::Fragment => &mut c.flows.fragments,
        } += 1;
        Verdict::Dropped(r)
    }

    /// Marks the table's reader quiescent: call it between bursts.
    pub fn quiescent(&self) {
        self.reader.quiescent();
    }

    /// Removes the connections idle for longer than the timeout at `now` (seconds);
    /// returns how many went.
    pub fn expire(&mut self, now: u64) -> usize {
        let backends = &mut self.backends;
        let n = self
            .flows
            .expire_with(now, self.timeout, |_, b| backends[b as usize].active -= 1);
        self.reader.quiescent();
        self.counters.flows.expired += n as u64;
        n
    }
}

/// The counters, then a line a backend: `backend A.B.C.D:PORT: new flows N, active M`.
impl fmt::Display for Lb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.counters)?;
        for b in &self.backends {
            let (addr, new, active) = (b.addr, b.new_flows, b.active);
            write!(f, "\nbackend {addr}: new flows {new}, active {active}")?;
        }
        Ok(())
    }
}

/// The balancer between two ports: port 0 the clients, port 1 the backends.
impl Middlebox for Lb {
    fn handle(&mut self, from: PortId, frame: &mut [u8], now: u64) -> bool {
        let side = if from == 0 {
            Side::Clients
        } else {
            Side::Backends
        };
        Lb::handle(self, side, frame, now).forwards()
    }

    fn quiescent(&self) {
        Lb::quiescent(self)
    }

    fn tick(&mut self, now: u64) {
        self.expire(now);
    }
}

#[cfg(test)]
mod tests;
