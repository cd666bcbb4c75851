//! The command line after `--`: DPDK l3fwd's options (those of its poll mode), parsed
//! and checked before the EAL starts.

use clap::Parser;
use pmd_core::ethdev::{MacAddr, PortId};
use pmd_core::numarg;

/// How packets find their port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Longest prefix match on the destination address.
    Lpm,
    /// Exact match on the 5-tuple.
    Em,
}

/// One `--config` entry: rx queue `queue` of `port` is polled by lcore `lcore`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueConf {
    /// The port.
    pub port: PortId,
    /// Its rx queue.
    pub queue: u16,
    /// The lcore polling it.
    pub lcore: u32,
}

/// The entries of `--config`, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigList(pub Vec<QueueConf>);

/// Application options (after `--`).
#[derive(Parser, Debug)]
#[command(
    name = "l3fwd",
    about = "Layer-3 forwarding by longest-prefix (lpm) or exact (em) match (EAL options go before --)"
)]
pub struct AppOpts {
    /// Hexadecimal bitmask of the ports to use (e.g. 0x3 for ports 0 and 1).
    #[arg(short = 'p', value_parser = numarg::portmask)]
    pub portmask: u64,
    /// Put every port in promiscuous mode.
    #[arg(short = 'P')]
    pub promiscuous: bool,
    /// Rx queues and the lcores that poll them, "(port,queue,lcore),..." (default: queue 0
    /// of each port, the ports spread over the EAL's lcores in turn).
    #[arg(long, value_parser = parse_config)]
    pub config: Option<ConfigList>,
    /// Lookup method: lpm (longest prefix match) or em (exact match).
    #[arg(long, value_parser = parse_lookup)]
    pub lookup: Option<Lookup>,
    /// Exact match (DPDK's legacy flag for --lookup=em).
    #[arg(short = 'E', conflicts_with_all = ["lookup", "lpm_flag"])]
    pub em_flag: bool,
    /// Longest prefix match (DPDK's legacy flag for --lookup=lpm).
    #[arg(short = 'L', conflicts_with = "lookup")]
    pub lpm_flag: bool,
    /// IPv4 routes, in DPDK l3fwd's format: "R198.18.0.0/24 0" (lpm: prefix, port) or
    /// "R198.18.0.0 198.18.0.1 9 9 0x11 0" (em: destination, source, destination port,
    /// source port, protocol, port); '#' starts a comment.
    /// Without it, DPDK l3fwd's 16 default routes (198.18.N.0/24 to port N).
    #[arg(long = "rule_ipv4", value_name = "FILE")]
    pub rule_ipv4: Option<std::path::PathBuf>,
    /// IPv6 routes, as --rule_ipv4 ("R2001:200::/64 0"). Without it, DPDK l3fwd's 16
    /// defaults (2001:200:0:N::/64 to port N).
    #[arg(long = "rule_ipv6", value_name = "FILE")]
    pub rule_ipv6: Option<std::path::PathBuf>,
    /// Destination MAC of what port X sends ("X,MM:MM:MM:MM:MM:MM"; repeatable; default
    /// 02:00:00:00:00:X).
    #[arg(long = "eth-dest", value_parser = parse_eth_dest)]
    pub eth_dest: Vec<(PortId, MacAddr)>,
    /// Largest frame to receive, bytes with the 4-byte FCS (64-9600): sets every port's
    /// MTU to this minus 18; larger frames arrive as chains where the port can.
    #[arg(long = "max-pkt-len", value_parser = |s: &str| numarg::whole::<u16>(s, 64..=9600))]
    pub max_pkt_len: Option<u16>,
    /// Receive descriptors per queue.
    #[arg(long = "rx-queue-size", default_value_t = 1024,
          value_parser = |s: &str| numarg::whole::<u16>(s, 1..=u16::MAX))]
    pub rx_queue_size: u16,
    /// Transmit descriptors per queue.
    #[arg(long = "tx-queue-size", default_value_t = 1024,
          value_parser = |s: &str| numarg::whole::<u16>(s, 1..=u16::MAX))]
    pub tx_queue_size: u16,
    /// Classify packets in software (DPDK's option; l3fwd always does when the port did
    /// not set a packet type, so this changes nothing).
    #[arg(long = "parse-ptype")]
    pub parse_ptype: bool,
    /// Accepted for DPDK's command lines (one memory pool serves every port here).
    #[arg(long = "no-numa")]
    pub no_numa: bool,
    /// Accepted for DPDK's command lines: the em tables hold both the IPv4 and the IPv6
    /// routes, so this changes nothing.
    #[arg(long = "ipv6")]
    pub ipv6: bool,
    /// Packet transfer mode: poll (eventdev is not built).
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<String>,
    /// Stop by itself after this many seconds (fractions allowed).
    #[arg(long, value_parser = numarg::seconds)]
    pub duration: Option<f64>,
}

impl AppOpts {
    /// The lookup method chosen (lpm by default).
    pub fn lookup(&self) -> Lookup {
        match (self.lookup, self.em_flag) {
            (Some(l), _) => l,
            (None, true) => Lookup::Em,
            (None, false) => Lookup::Lpm,
        }
    }
}

fn parse_lookup(s: &str) -> Result<Lookup, String> {
    match s {
        "lpm" => Ok(Lookup::Lpm),
        "em" => Ok(Lookup::Em),
        "fib" | "acl" => Err(format!("lookup method {s} is not built: use lpm or em")),
        _ => Err(format!("unknown lookup method {s:?}: use lpm or em")),
    }
}

fn parse_mode(s: &str) -> Result<String, String> {
    match s {
        "poll" => Ok(s.into()),
        "eventdev" => Err("eventdev mode is not built: use poll".into()),
        _ => Err(format!("unknown mode {s:?}: use poll")),
    }
}

/// `(port,queue,lcore),(port,queue,lcore),...`
pub fn parse_config(s: &str) -> Result<ConfigList, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(body) = rest.strip_prefix('(') else {
            return Err(format!(
                "--config {s:?}: expected \"(port,queue,lcore)\" at {rest:?}"
            ));
        };
        let Some(end) = body.find(')') else {
            return Err(format!("--config {s:?}: a '(' without its ')'"));
        };
        let fields: Vec<&str> = body[..end].split(',').map(str::trim).collect();
        let [port, queue, lcore] = fields[..] else {
            return Err(format!(
                "--config {s:?}: ({}) has {} fields, expected port,queue,lcore",
                &body[..end],
                fields.len()
            ));
        };
        let num = |what: &str, v: &str, max: u32| {
            numarg::whole::<u32>(v, 0..=max).map_err(|e| format!("--config {s:?}: {what}: {e}"))
        };
        let q = QueueConf {
            port: num("port", port, u32::from(PortId::MAX))? as PortId,
            queue: num("queue", queue, 1023)? as u16,
            lcore: num("lcore", lcore, 1023)?,
        };
        if out
            .iter()
            .any(|o: &QueueConf| (o.port, o.queue) == (q.port, q.queue))
        {
            return Err(format!(
                "--config {s:?}: queue {} of port {} is given twice",
                q.queue, q.port
            ));
        }
        out.push(q);
        rest = body[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    if out.is_empty() {
        return Err("--config is empty: give (port,queue,lcore),...".into());
    }
    Ok(ConfigList(out))
}

/// `X,MM:MM:MM:MM:MM:MM`
fn parse_eth_dest(s: &str) -> Result<(PortId, MacAddr), String> {
    let (port, mac) = s
        .split_once(',')
        .ok_or_else(|| format!("--eth-dest {s:?}: expected PORT,MM:MM:MM:MM:MM:MM"))?;
    let port = numarg::whole::<PortId>(port.trim(), 0..=PortId::MAX)
        .map_err(|e| format!("--eth-dest {s:?}: port: {e}"))?;
    let mac = mac
        .trim()
        .parse::<MacAddr>()
        .map_err(|e| format!("--eth-dest {s:?}: {e}"))?;
    Ok((port, mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lists_parse_like_dpdks() {
        let c = parse_config("(0,0,1),(1,0,1), (0,1,2)").unwrap().0;
        assert_eq!(
            c,
            [
                QueueConf {
                    port: 0,
                    queue: 0,
                    lcore: 1
                },
                QueueConf {
                    port: 1,
                    queue: 0,
                    lcore: 1
                },
                QueueConf {
                    port: 0,
                    queue: 1,
                    lcore: 2
                },
            ]
        );
        for bad in [
            "",
            "(0,0)",
            "(0,0,1",
            "0,0,1",
            "(0,0,x)",
            "(0,0,1),(0,0,2)",
            "(0,0,1)x",
        ] {
            assert!(parse_config(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn options_parse_like_dpdks() {
        let o = AppOpts::try_parse_from([
            "l3fwd",
            "-p",
            "0x3",
            "-P",
            "--config=(0,0,0),(1,0,0)",
            "--lookup=em",
            "--eth-dest=1,02:aa:bb:cc:dd:ee",
            "--parse-ptype",
            "--rule_ipv4",
            "v4.cfg",
        ])
        .unwrap();
        assert_eq!(
            (o.portmask, o.promiscuous, o.lookup()),
            (3, true, Lookup::Em)
        );
        assert_eq!(
            o.eth_dest,
            [(1, MacAddr([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]))]
        );
        assert_eq!(o.rule_ipv4.as_deref(), Some(std::path::Path::new("v4.cfg")));
        assert_eq!(
            AppOpts::try_parse_from(["l3fwd", "-p", "1", "-E"])
                .unwrap()
                .lookup(),
            Lookup::Em
        );
        for bad in [
            &["l3fwd", "-p", "1", "--lookup=fib"][..],
            &["l3fwd", "-p", "1", "--lookup=lpm", "-E"],
            &["l3fwd", "-p", "1", "--mode=eventdev"],
            &["l3fwd", "-p", "1", "--eth-dest=1"],
            &["l3fwd", "-p", "1", "--max-pkt-len=20000"],
            &["l3fwd", "-p", "0"],
        ] {
            assert!(AppOpts::try_parse_from(bad).is_err(), "{bad:?} accepted");
        }
    }
}
