//! lb: a layer-4 load balancer for IPv4 between two ports, on `pmd-flow` (a connection
//! stays on its backend) and `pmd-net` (the address rewrites): port 0 faces the clients,
//! port 1 the backends. Each UDP or TCP connection to `--vip` goes to one of the
//! `--backend`s, its destination rewritten; the backends' replies get the VIP back as
//! their source. Other traffic (ARP included) passes unchanged both ways. The balancing
//! is `pmd_examples::lb`, the port loop `pmd_examples::app` (shared with `nat44`); this
//! file holds the options.
//!
//! ```text
//! lb [EAL options] -- --vip A.B.C.D:PORT --backend A.B.C.D:PORT [--backend ...]
//!    [--timeout SECS] [--max-flows N]
//! lb --no-huge -m 256 --vdev net_af_packet0,iface=veth0 --vdev net_af_packet1,iface=veth1 \
//!    -- --vip 192.0.2.10:80 --backend 10.0.1.1:8080 --backend 10.0.1.2:8080
//! ```
//!
//! One lcore does everything: both directions, and once a second the expiry of idle
//! connections. Ctrl-C stops it and prints what it counted, and how many connections
//! each backend got.

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use pmd_core::{Eal, Error};
use pmd_examples::app;
use pmd_examples::lb::{Lb, LbConfig};
use std::net::SocketAddrV4;
use std::process::ExitCode;

/// Application options (after `--`).
#[derive(Parser, Debug)]
#[command(
    name = "lb",
    about = "Layer-4 load balancer: port 0 clients, port 1 backends (EAL options go before --)"
)]
struct Opts {
    /// The service's address and port, which clients send to.
    #[arg(long, value_name = "A.B.C.D:PORT", value_parser = app::endpoint)]
    vip: SocketAddrV4,
    /// A backend's address and port; once for each backend (1 to 64).
    #[arg(long = "backend", value_name = "A.B.C.D:PORT", required = true,
          value_parser = app::endpoint)]
    backends: Vec<SocketAddrV4>,
    /// Seconds a connection may stay idle before it expires.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = app::timeout)]
    timeout: u64,
    /// Most connections at once.
    #[arg(long = "max-flows", value_name = "N", default_value_t = 65536,
          value_parser = app::max_flows)]
    max_flows: u32,
}

/// The options, each checked, then the backends together (`LbConfig::check`).
fn config(app: &[String]) -> Result<LbConfig, clap::Error> {
    let o = Opts::try_parse_from(app)?;
    let cfg = LbConfig {
        vip: o.vip,
        backends: o.backends,
        timeout: o.timeout,
        max_flows: o.max_flows,
    };
    cfg.check()
        .map_err(|e| Opts::command().error(ErrorKind::ValueValidation, e))?;
    Ok(cfg)
}

fn main() -> ExitCode {
    app::main("lb", Opts::command, config, run)
}

fn run(eal: Eal, cfg: LbConfig) -> Result<(), Error> {
    let mut lb = Lb::new(&cfg).map_err(Error::Config)?;
    let backends: Vec<String> = cfg.backends.iter().map(|b| b.to_string()).collect();
    println!(
        "lb: {} to backends {}; flows expire after {} s idle, at most {}",
        cfg.vip,
        backends.join(", "),
        cfg.timeout,
        cfg.max_flows
    );
    let [to_b, to_c] = app::run(eal, ["clients", "backends"], &mut lb)?;
    println!("{lb}");
    println!(
        "tx full:         {} (to backends {to_b}, to clients {to_c})",
        to_b + to_c
    );
    println!("flows at exit:   {}", lb.flows());
    println!("Bye");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        std::iter::once("lb")
            .chain(a.iter().copied())
            .map(String::from)
            .collect()
    }

    #[test]
    fn options_parse_with_defaults_and_refuse_bad_values() {
        let c = config(&args(&[
            "--vip",
            "192.0.2.10:80",
            "--backend",
            "10.0.1.1:8080",
        ]))
        .unwrap();
        assert_eq!(c.vip, "192.0.2.10:80".parse().unwrap());
        assert_eq!(c.backends, ["10.0.1.1:8080".parse().unwrap()]);
        assert_eq!((c.timeout, c.max_flows), (60, 65536));
        let c = config(&args(&[
            "--vip=192.0.2.10:53",
            "--backend",
            "10.0.1.1:53",
            "--backend=10.0.1.2:53",
            "--backend",
            "10.0.1.3:5353",
            "--timeout",
            "5",
            "--max-flows",
            "100",
        ]))
        .unwrap();
        assert_eq!(c.backends.len(), 3);
        assert_eq!((c.timeout, c.max_flows), (5, 100));

        let many: Vec<String> = (0..65)
            .flat_map(|i| ["--backend".into(), format!("10.0.1.{}:80", i + 1)])
            .collect();
        let one = ["--vip", "192.0.2.10:80", "--backend", "10.0.1.1:80"];
        let with = |extra: &[&'static str]| [&one[..], extra].concat();
        let mut too_many = vec!["--vip", "192.0.2.10:80"];
        too_many.extend(many.iter().map(String::as_str));
        for bad in [
            vec![],
            vec!["--vip", "192.0.2.10:80"],
            vec!["--backend", "10.0.1.1:80"],
            vec!["--vip", "192.0.2.10", "--backend", "10.0.1.1:80"],
            vec!["--vip", "192.0.2.10:80", "--backend", "10.0.1.1:0"],
            vec!["--vip", "192.0.2.10:80", "--backend", "224.0.0.1:80"],
            vec!["--vip", "192.0.2.10:80", "--backend", "192.0.2.10:8080"],
            too_many,
            with(&["--backend", "10.0.1.1:80"]),
            with(&["--timeout", "0"]),
            with(&["--timeout", "-1"]),
            with(&["--max-flows", "0"]),
            with(&["--bogus"]),
        ] {
            let e = config(&args(&bad)).expect_err(&format!("{bad:?}"));
            assert!(e.use_stderr(), "{bad:?}: exit code 2");
        }
    }
}
