//! What the NAT44 and the load balancer do alike to a frame: find the 5-tuple of UDP or
//! TCP over IPv4, and rewrite the address and port of one end with both checksums
//! updated incrementally (`pmd-net`'s views: `Ipv4::set_src`/`set_dst`, then
//! `Udp`/`Tcp::replace_addr` and the port setters); and the flow tables they keep.

use pmd_flow::{FiveTuple4, FlowConfig, FlowTable4};
use pmd_net::{proto, Headers, Ipv4, Tcp, Udp, L3};
use std::net::SocketAddrV4;
use std::time::Duration;

/// A flow table for `max_flows` flows, written and read by one thread only; an error
/// (one sentence) if it cannot be made. Its insertions never wait for readers to pass a
/// quiescent point: the only reader is on the writer's thread, and says it holds nothing
/// (`FlowReader::quiescent`) before each insertion and after each expiry.
pub fn flow_table(max_flows: u32) -> Result<FlowTable4, String> {
    let cfg = FlowConfig {
        capacity: max_flows,
        reclaim_wait: Duration::ZERO,
    };
    FlowTable4::new(&cfg).map_err(|e| format!("flow table: {e}"))
}

/// What a frame is to an app that rewrites UDP and TCP over IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// UDP or TCP over IPv4, not fragmented: where its IPv4 header starts, its 5-tuple.
    Flow(usize, FiveTuple4),
    /// A fragment of a UDP or TCP packet: its 5-tuple with both ports 0 (only the first
    /// fragment carries them, and reassembly is not the examples' job).
    Fragment(FiveTuple4),
    /// Anything else: not IPv4 (ARP, IPv6, ...), or another protocol (ICMP, ...).
    Other,
    /// Headers cut short or lying.
    Malformed,
}

/// What `frame` (a whole Ethernet frame) is, its headers checked far enough that
/// [`rewrite`] can edit those of a [`Kind::Flow`].
pub fn classify(frame: &[u8]) -> Kind {
    let Ok(h) = Headers::parse(frame) else {
        return Kind::Malformed;
    };
    if h.l3 != L3::Ipv4 {
        return Kind::Other;
    }
    let Some(Ok(ip)) = frame.get(h.l3_offset..).map(Ipv4::new) else {
        return Kind::Malformed;
    };
    let p = ip.protocol();
    if p != proto::UDP && p != proto::TCP {
        return Kind::Other;
    }
    let mut t = FiveTuple4 {
        src: ip.src(),
        dst: ip.dst(),
        sport: 0,
        dport: 0,
        proto: p,
    };
    if ip.is_fragment() {
        return Kind::Fragment(t);
    }
    let ports = if p == proto::UDP {
        Udp::new(ip.payload()).map(|u| (u.src_port(), u.dst_port()))
    } else {
        Tcp::new(ip.payload()).map(|t| (t.src_port(), t.dst_port()))
    };
    let Ok((sport, dport)) = ports else {
        return Kind::Malformed;
    };
    (t.sport, t.dport) = (sport, dport);
    Kind::Flow(h.l3_offset, t)
}

/// What an app did with a frame; `R` says why it dropped one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<R> {
    /// Addresses and ports rewritten: send it on.
    Translated,
    /// Not the app's to change: send it on unchanged.
    Passed,
    /// Do not send it; already counted.
    Dropped(R),
}

impl<R> Verdict<R> {
    /// Whether the frame goes out of the other port.
    pub fn forwards(&self) -> bool {
        !matches!(self, Verdict::Dropped(_))
    }
}

/// Which end of a packet [`rewrite`] changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The source address and port.
    Src,
    /// The destination address and port.
    Dst,
}

/// Sets the `end` address and port of the UDP/TCP packet whose IPv4 header starts at
/// `frame[l3..]` to `to`, updating the IPv4 and L4 checksums (a zero UDP checksum, "none",
/// stays zero); false if a header cannot be read (after [`classify`] found a
/// [`Kind::Flow`] at `l3`, they can).
pub fn rewrite(frame: &mut [u8], l3: usize, end: End, to: SocketAddrV4) -> bool {
    let Some(Ok(mut ip)) = frame.get_mut(l3..).map(Ipv4::new) else {
        return false;
    };
    let old = match end {
        End::Src => ip.set_src(*to.ip()),
        End::Dst => ip.set_dst(*to.ip()),
    };
    let (old, new) = (old.octets(), to.ip().octets());
    let port = to.port();
    if ip.protocol() == proto::UDP {
        let Ok(mut u) = Udp::new(ip.payload_mut()) else {
            return false;
        };
        u.replace_addr(&old, &new);
        match end {
            End::Src => u.set_src_port(port),
            End::Dst => u.set_dst_port(port),
        }
    } else {
        let Ok(mut t) = Tcp::new(ip.payload_mut()) else {
            return false;
        };
        t.replace_addr(&old, &new);
        match end {
            End::Src => t.set_src_port(port),
            End::Dst => t.set_dst_port(port),
        }
    }
    true
}

/// The counts both apps keep alike: frames passed unchanged, and new flows or frames
/// dropped for the same reasons; each app's `Counters` adds its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounts {
    /// Frames passed unchanged, both ways.
    pub passed: u64,
    /// New flows dropped: the flow table refused them (full, or both buckets full).
    pub table_full: u64,
    /// Frames dropped: headers cut short or lying.
    pub malformed: u64,
    /// IPv4 fragments of UDP/TCP dropped.
    pub fragments: u64,
    /// Flows expired.
    pub expired: u64,
}

impl std::fmt::Display for FlowCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "passed through:  {}", self.passed)?;
        writeln!(f, "table full:      {}", self.table_full)?;
        writeln!(f, "malformed:       {}", self.malformed)?;
        writeln!(f, "fragments:       {}", self.fragments)?;
        write!(f, "expired flows:   {}", self.expired)
    }
}
