//! Route files in DPDK l3fwd's format, and its default routes.
//!
//! Each line is a route starting with `R`, a comment starting with `#`, or blank. The
//! fields are separated by spaces or tabs:
//!
//! ```text
//! R198.18.0.0/24 0                          lpm: prefix/length, output port
//! R2001:200::/64 0
//! R198.18.0.0 198.18.0.1 9 9 0x11 0         em: dst, src, dst port, src port, protocol, output port
//! ```
//!
//! Numbers are decimal or `0x` hexadecimal. A line that is none of these is refused
//! with its number and what is wrong.

use crate::opts::Lookup;
use pmd_flow::{FiveTuple4, FiveTuple6};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

/// A longest-prefix route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix<A> {
    /// The prefix.
    pub addr: A,
    /// Its length in bits.
    pub len: u8,
    /// The output port.
    pub port: u8,
}

/// An exact-match route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exact<K> {
    /// The flow.
    pub flow: K,
    /// The output port.
    pub port: u8,
}

/// The routes of one address family, in the form of the lookup method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Table<A, K> {
    /// Longest-prefix routes.
    Lpm(Vec<Prefix<A>>),
    /// Exact-match routes.
    Em(Vec<Exact<K>>),
}

/// What the app prints and filters a route by.
pub trait Route {
    /// The output port.
    fn port(&self) -> u8;
    /// The route as DPDK l3fwd prints it when adding it.
    fn show(&self) -> String;
}

impl<A: std::fmt::Display> Route for Prefix<A> {
    fn port(&self) -> u8 {
        self.port
    }
    fn show(&self) -> String {
        format!("{} / {}", self.addr, self.len)
    }
}

/// A 5-tuple as DPDK l3fwd prints it: destination, source, ports, protocol.
fn show_flow<A: std::fmt::Display>(dst: A, src: A, dport: u16, sport: u16, proto: u8) -> String {
    format!("{dst} {src} {dport} {sport} {proto}")
}

impl Route for Exact<FiveTuple4> {
    fn port(&self) -> u8 {
        self.port
    }
    fn show(&self) -> String {
        let f = &self.flow;
        show_flow(f.dst, f.src, f.dport, f.sport, f.proto)
    }
}

impl Route for Exact<FiveTuple6> {
    fn port(&self) -> u8 {
        self.port
    }
    fn show(&self) -> String {
        let f = &self.flow;
        show_flow(f.dst, f.src, f.dport, f.sport, f.proto)
    }
}

/// IPv4 routes.
pub type Table4 = Table<Ipv4Addr, FiveTuple4>;
/// IPv6 routes.
pub type Table6 = Table<Ipv6Addr, FiveTuple6>;

/// A route file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// It cannot be read.
    #[error("{path}: {err}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        err: std::io::Error,
    },
    /// A line is wrong.
    #[error("{path} line {line}: {why}")]
    Line {
        /// The file.
        path: PathBuf,
        /// Its number, from 1.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// No line is a route.
    #[error("{0}: no route in it (routes are lines starting with R)")]
    Empty(PathBuf),
}

/// Reads the routes of `path` for `lookup`, or DPDK l3fwd's defaults without a file.
pub fn load4(path: Option<&Path>, lookup: Lookup) -> Result<Table4, RouteError> {
    match path {
        None => Ok(default4(lookup)),
        Some(p) => parse_file(p, |f| parse::<Ipv4Addr>(f, lookup)),
    }
}

/// As [`load4`], for IPv6.
pub fn load6(path: Option<&Path>, lookup: Lookup) -> Result<Table6, RouteError> {
    match path {
        None => Ok(default6(lookup)),
        Some(p) => parse_file(p, |f| parse::<Ipv6Addr>(f, lookup)),
    }
}

/// DPDK l3fwd's default IPv4 routes: 198.18.N.0/24 to port N (lpm); the flow
/// 198.18.N.1 -> 198.18.N.0, UDP port 9 to 9, to port N (em).
pub fn default4(lookup: Lookup) -> Table4 {
    defaults(lookup, 24, |n, host| Ipv4Addr::new(198, 18, n, host))
}

/// DPDK l3fwd's default IPv6 routes: 2001:200:0:N::/64 to port N (lpm); the flow
/// 2001:200:0:N::1 -> 2001:200:0:N::, UDP port 9 to 9, to port N (em).
pub fn default6(lookup: Lookup) -> Table6 {
    defaults(lookup, 64, |n, host| {
        Ipv6Addr::new(0x2001, 0x200, 0, n.into(), 0, 0, 0, host.into())
    })
}

/// Sixteen routes, network N (`addr(N, 0)`, `len` bits) to port N, or its flow from host
/// `addr(N, 1)` to `addr(N, 0)`, UDP 9 to 9.
fn defaults<A: Family>(lookup: Lookup, len: u8, addr: impl Fn(u8, u8) -> A) -> Table<A, A::Flow> {
    let udp = pmd_net::proto::UDP;
    match lookup {
        Lookup::Lpm => Table::Lpm(
            (0..16)
                .map(|port| Prefix {
                    addr: addr(port, 0),
                    len,
                    port,
                })
                .collect(),
        ),
        Lookup::Em => Table::Em(
            (0..16)
                .map(|port| Exact {
                    flow: A::flow(addr(port, 1), addr(port, 0), 9, 9, udp),
                    port,
                })
                .collect(),
        ),
    }
}

/// The fields of a route line (after its `R`), one parser per family and method.
type Fields<'a> = std::str::SplitWhitespace<'a>;

fn parse_file<A, K>(
    path: &Path,
    parse: impl Fn(&mut Fields<'_>) -> Result<Line<A, K>, String>,
) -> Result<Table<A, K>, RouteError> {
    let text = std::fs::read_to_string(path).map_err(|err| RouteError::Read {
        path: path.to_owned(),
        err,
    })?;
    let (mut lpm, mut em) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let bad = |why: String| RouteError::Line {
            path: path.to_owned(),
            line: i + 1,
            why,
        };
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some(body) = line.strip_prefix('R') else {
            return Err(bad(
                "not a route: a route starts with R, a comment with #".into()
            ));
        };
        let mut fields = body.split_whitespace();
        let route = parse(&mut fields).map_err(&bad)?;
        if let Some(extra) = fields.next() {
            return Err(bad(format!("unexpected {extra:?} after the output port")));
        }
        match route {
            Line::Lpm(p) => lpm.push(p),
            Line::Em(e) => em.push(e),
        }
    }
    match (lpm.is_empty(), em.is_empty()) {
        (false, _) => Ok(Table::Lpm(lpm)),
        (true, false) => Ok(Table::Em(em)),
        (true, true) => Err(RouteError::Empty(path.to_owned())),
    }
}

/// One parsed line.
enum Line<A, K> {
    Lpm(Prefix<A>),
    Em(Exact<K>),
}

fn field<'a>(f: &mut Fields<'a>, what: &str) -> Result<&'a str, String> {
    f.next().ok_or_else(|| format!("the {what} is missing"))
}

/// A number in decimal or `0x` hexadecimal, at most `max`.
fn number(s: &str, what: &str, max: u32) -> Result<u32, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    match v {
        Ok(v) if v <= max => Ok(v),
        Ok(v) => Err(format!("{what} {v} is above {max}")),
        Err(_) => Err(format!("{what} {s:?} is not a number")),
    }
}

fn out_port(f: &mut Fields<'_>) -> Result<u8, String> {
    Ok(number(field(f, "output port")?, "output port", 255)? as u8)
}

fn addr<A: std::str::FromStr>(s: &str, what: &str, family: &str) -> Result<A, String> {
    s.parse()
        .map_err(|_| format!("{what} {s:?} is not an {family} address"))
}

fn prefix<A: std::str::FromStr>(
    f: &mut Fields<'_>,
    family: &str,
    bits: u32,
) -> Result<(A, u8), String> {
    let p = field(f, "prefix")?;
    let (a, len) = p
        .split_once('/')
        .ok_or_else(|| format!("prefix {p:?} has no /length"))?;
    Ok((
        addr(a, "prefix", family)?,
        number(len, "prefix length", bits)? as u8,
    ))
}

fn ports_and_proto(f: &mut Fields<'_>) -> Result<(u16, u16, u8), String> {
    let dport = number(field(f, "destination port")?, "destination port", 65535)? as u16;
    let sport = number(field(f, "source port")?, "source port", 65535)? as u16;
    let proto = number(field(f, "protocol")?, "protocol", 255)? as u8;
    Ok((dport, sport, proto))
}

/// What differs between the two families' route lines.
trait Family: Sized + std::str::FromStr {
    /// Its name in messages.
    const NAME: &'static str;
    /// Bits of an address.
    const BITS: u32;
    /// Its 5-tuple.
    type Flow;
    /// The 5-tuple of these fields.
    fn flow(src: Self, dst: Self, sport: u16, dport: u16, proto: u8) -> Self::Flow;
}

impl Family for Ipv4Addr {
    const NAME: &'static str = "IPv4";
    const BITS: u32 = 32;
    type Flow = FiveTuple4;
    fn flow(src: Self, dst: Self, sport: u16, dport: u16, proto: u8) -> FiveTuple4 {
        FiveTuple4 {
            src,
            dst,
            sport,
            dport,
            proto,
        }
    }
}

impl Family for Ipv6Addr {
    const NAME: &'static str = "IPv6";
    const BITS: u32 = 128;
    type Flow = FiveTuple6;
    fn flow(src: Self, dst: Self, sport: u16, dport: u16, proto: u8) -> FiveTuple6 {
        FiveTuple6 {
            src,
            dst,
            sport,
            dport,
            proto,
        }
    }
}

/// One route line (after its `R`) of family `A`.
fn parse<A: Family>(f: &mut Fields<'_>, lookup: Lookup) -> Result<Line<A, A::Flow>, String> {
    Ok(match lookup {
        Lookup::Lpm => {
            let (addr, len) = prefix(f, A::NAME, A::BITS)?;
            let port = out_port(f)?;
            Line::Lpm(Prefix { addr, len, port })
        }
        Lookup::Em => {
            let dst = addr(field(f, "destination address")?, "destination", A::NAME)?;
            let src = addr(field(f, "source address")?, "source", A::NAME)?;
            let (dport, sport, proto) = ports_and_proto(f)?;
            let flow = A::flow(src, dst, sport, dport, proto);
            Line::Em(Exact {
                flow,
                port: out_port(f)?,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (pmd_testkit::TempDir, PathBuf) {
        let d = pmd_testkit::TempDir::new("l3fwd-routes");
        let p = d.path().join("r.cfg");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn dpdks_own_route_files_read_as_its_defaults() {
        const TEST: &str = "dpdks_own_route_files_read_as_its_defaults";
        let dir = Path::new("/usr/share/dpdk/examples/l3fwd");
        let missing = (!dir.exists()).then(|| "needs dpdk-doc (ci/setup.sh --dpdk)".to_string());
        if !pmd_testkit::require(TEST, missing) {
            return;
        }
        for l in [Lookup::Lpm, Lookup::Em] {
            let name = if l == Lookup::Lpm { "lpm" } else { "em" };
            let v4 = load4(Some(&dir.join(format!("{name}_default_v4.cfg"))), l).unwrap();
            assert_eq!(v4, default4(l), "{name} v4");
            let v6 = load6(Some(&dir.join(format!("{name}_default_v6.cfg"))), l).unwrap();
            assert_eq!(v6, default6(l), "{name} v6");
        }
    }

    #[test]
    fn routes_comments_and_blank_lines() {
        let (_d, p) = file("# routes\n\nR10.0.0.0/8 1\nR10.1.0.0/16\t2\n  \n");
        let t = load4(Some(&p), Lookup::Lpm).unwrap();
        assert_eq!(
            t,
            Table::Lpm(vec![
                Prefix {
                    addr: Ipv4Addr::new(10, 0, 0, 0),
                    len: 8,
                    port: 1
                },
                Prefix {
                    addr: Ipv4Addr::new(10, 1, 0, 0),
                    len: 16,
                    port: 2
                },
            ])
        );
    }

    #[test]
    fn a_wrong_line_is_refused_with_its_number_and_reason() {
        let cases: &[(&str, Lookup, &str)] = &[
            (
                "R10.0.0.0/8 1\nX10.0.0.0/8 1\n",
                Lookup::Lpm,
                "line 2: not a route",
            ),
            (
                "R10.0.0.0/33 1\n",
                Lookup::Lpm,
                "line 1: prefix length 33 is above 32",
            ),
            (
                "R10.0.0/8 1\n",
                Lookup::Lpm,
                "line 1: prefix \"10.0.0\" is not an IPv4",
            ),
            (
                "R10.0.0.0 1\n",
                Lookup::Lpm,
                "line 1: prefix \"10.0.0.0\" has no /length",
            ),
            (
                "R10.0.0.0/8\n",
                Lookup::Lpm,
                "line 1: the output port is missing",
            ),
            (
                "R10.0.0.0/8 256\n",
                Lookup::Lpm,
                "line 1: output port 256 is above 255",
            ),
            ("R10.0.0.0/8 1 2\n", Lookup::Lpm, "line 1: unexpected \"2\""),
            (
                "R1.2.3.4 5.6.7.8 9 9 0x11\n",
                Lookup::Em,
                "line 1: the output port is missing",
            ),
            (
                "R1.2.3.4 5.6.7.8 9 70000 17 0\n",
                Lookup::Em,
                "line 1: source port 70000",
            ),
            (
                "R1.2.3.4 5.6.7.8 9 9 0xzz 0\n",
                Lookup::Em,
                "line 1: protocol \"0xzz\"",
            ),
            ("# nothing\n", Lookup::Lpm, "no route in it"),
        ];
        for (text, l, want) in cases {
            let (_d, p) = file(text);
            let e = load4(Some(&p), *l).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let (_d, p) = file("R2001:200::/129 1\n");
        let e = load6(Some(&p), Lookup::Lpm).unwrap_err().to_string();
        assert!(e.contains("line 1: prefix length 129 is above 128"), "{e}");
        let e = load4(Some(Path::new("/nonexistent/r.cfg")), Lookup::Lpm).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/r.cfg: "), "{e}");
    }
}
