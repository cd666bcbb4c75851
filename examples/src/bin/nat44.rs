//! nat44: a stateful source NAT for IPv4 between two ports, on `pmd-flow` (the mapping
//! tables) and `pmd-net` (the header rewrites): port 0 is the inside, port 1 the
//! outside. Inside hosts' UDP and TCP leave from `--public-ip` and a port of
//! `--port-range`; replies are translated back. Other traffic (ARP included) passes
//! unchanged both ways, so the NAT sits in a link like a bridge. The translation is
//! `pmd_examples::nat`, the port loop `pmd_examples::app` (shared with `lb`); this file
//! holds the options.
//!
//! ```text
//! nat44 [EAL options] -- --public-ip A.B.C.D [--port-range LO-HI] [--timeout SECS]
//!       [--max-flows N]
//! nat44 --no-huge -m 256 --vdev net_af_packet0,iface=veth0 --vdev net_af_packet1,iface=veth1 \
//!       -- --public-ip 198.51.100.1
//! ```
//!
//! One lcore does everything: both directions, and once a second the expiry of idle
//! flows. Ctrl-C stops it and prints what it counted.

use clap::{CommandFactory, Parser};
use pmd_core::{Eal, Error};
use pmd_examples::app;
use pmd_examples::nat::{Nat, NatConfig, PortRange};
use std::net::Ipv4Addr;
use std::process::ExitCode;

/// Application options (after `--`).
#[derive(Parser, Debug)]
#[command(
    name = "nat44",
    about = "Source NAT44: port 0 inside, port 1 outside (EAL options go before --)"
)]
struct Opts {
    /// The outside address inside hosts are translated to.
    #[arg(long = "public-ip", value_name = "A.B.C.D", value_parser = app::unicast)]
    public_ip: Ipv4Addr,
    /// Public ports handed to flows, both included.
    #[arg(
        long = "port-range",
        value_name = "LO-HI",
        default_value = "1024-65535"
    )]
    port_range: PortRange,
    /// Seconds a flow may stay idle before it expires.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = app::timeout)]
    timeout: u64,
    /// Most flows at once (each also holds a port of the range).
    #[arg(long = "max-flows", value_name = "N", default_value_t = 65536,
          value_parser = app::max_flows)]
    max_flows: u32,
}

fn main() -> ExitCode {
    app::main("nat44", Opts::command, |a| Opts::try_parse_from(a), run)
}

fn run(eal: Eal, opts: Opts) -> Result<(), Error> {
    let mut nat = Nat::new(&NatConfig {
        public: opts.public_ip,
        ports: opts.port_range,
        timeout: opts.timeout,
        max_flows: opts.max_flows,
    })
    .map_err(Error::Config)?;
    let r = opts.port_range;
    println!(
        "nat44: translating to {} ports {}-{}, flows expire after {} s idle, at most {}",
        opts.public_ip, r.lo, r.hi, opts.timeout, opts.max_flows
    );
    let [out, inb] = app::run(eal, ["inside", "outside"], &mut nat)?;
    println!("{}", nat.counters());
    println!("tx full:         {} (out {out}, in {inb})", out + inb);
    println!("flows at exit:   {}", nat.flows());
    println!("Bye");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_with_defaults_and_refuse_bad_values() {
        let o = Opts::try_parse_from(["nat44", "--public-ip", "198.51.100.1"]).unwrap();
        assert_eq!(o.public_ip, Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(
            o.port_range,
            PortRange {
                lo: 1024,
                hi: 65535
            }
        );
        assert_eq!((o.timeout, o.max_flows), (30, 65536));
        let o = Opts::try_parse_from([
            "nat44",
            "--public-ip=192.0.2.7",
            "--port-range",
            "2000-2999",
            "--timeout",
            "5",
            "--max-flows",
            "100",
        ])
        .unwrap();
        assert_eq!(o.port_range, PortRange { lo: 2000, hi: 2999 });
        assert_eq!((o.timeout, o.max_flows), (5, 100));
        for bad in [
            &["nat44"][..],
            &["nat44", "--public-ip", "1.2.3"],
            &["nat44", "--public-ip", "0.0.0.0"],
            &["nat44", "--public-ip", "224.0.0.1"],
            &["nat44", "--public-ip", "1.2.3.4", "--port-range", "9-8"],
            &["nat44", "--public-ip", "1.2.3.4", "--timeout", "0"],
            &["nat44", "--public-ip", "1.2.3.4", "--timeout", "-1"],
            &["nat44", "--public-ip", "1.2.3.4", "--max-flows", "0"],
            &["nat44", "--public-ip", "1.2.3.4", "--bogus"],
        ] {
            let e = Opts::try_parse_from(bad).expect_err(&format!("{bad:?}"));
            assert!(e.use_stderr(), "{bad:?}: exit code 2");
        }
    }
}
