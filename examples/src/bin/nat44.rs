//! nat44: a stateful source NAT for IPv4 between two ports, on `pmd-flow` (the mapping
//! tables) and `pmd-net` (the header rewrites): port 0 is the inside, port 1 the
//! outside. Inside hosts' UDP and TCP leave from `--public-ip` and a port of
//! `--port-range`; replies are translated back. Other traffic (ARP included) passes
//! unchanged both ways, so the NAT sits in a link like a bridge. The translation is
//! `pmd_examples::nat`; this file is the port loop around it.
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
use pmd_core::ethdev::{PortConf, PortId, RxQueueHandle, TxQueueHandle};
use pmd_core::{lcore, numarg, tsc, Eal, Error, Mempool, PktBatch};
use pmd_examples::nat::{Direction, Nat, NatConfig, PortRange};
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::time::Duration;

/// Application options (after `--`).
#[derive(Parser, Debug)]
#[command(
    name = "nat44",
    about = "Source NAT44: port 0 inside, port 1 outside (EAL options go before --)"
)]
struct Opts {
    /// The outside address inside hosts are translated to.
    #[arg(long = "public-ip", value_name = "A.B.C.D", value_parser = parse_public)]
    public_ip: Ipv4Addr,
    /// Public ports handed to flows, both included.
    #[arg(
        long = "port-range",
        value_name = "LO-HI",
        default_value = "1024-65535"
    )]
    port_range: PortRange,
    /// Seconds a flow may stay idle before it expires.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = |s: &str| numarg::whole::<u64>(s, 1..=numarg::MAX_SECONDS))]
    timeout: u64,
    /// Most flows at once (each also holds a port of the range).
    #[arg(long = "max-flows", value_name = "N", default_value_t = 65536,
          value_parser = |s: &str| numarg::whole::<u32>(s, 1..=1 << 20))]
    max_flows: u32,
}

/// A unicast address hosts can be translated to.
fn parse_public(s: &str) -> Result<Ipv4Addr, String> {
    let a: Ipv4Addr = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address (A.B.C.D)"))?;
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
        return Err(format!("{a} is not a unicast address"));
    }
    Ok(a)
}

/// Descriptors per ring, and buffers and cache of the pool (as the skeleton).
const RING_SIZE: u16 = 1024;
const MBUFS: u32 = 2 * 8191;
const CACHE_SIZE: u32 = 250;
/// The ports, by role.
const INSIDE: PortId = 0;
const OUTSIDE: PortId = 1;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let help = || Opts::command().render_help().to_string();
    // Options are checked before the EAL initialises: a wrong one changes nothing.
    let parse = |app: &[String]| {
        Opts::try_parse_from(app).map_err(|e| {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { 2 } else { 0 })
        })
    };
    let (eal, opts) = match Eal::from_args_for_app_checked(&args, pmd_drivers::ALL, help, parse) {
        Ok(v) => v,
        Err(code) => return code,
    };
    match run(eal, &opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nat44: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Sets port `p` up with one rx and one tx queue, promiscuous, and starts it.
fn setup_port(
    eal: &mut Eal,
    p: PortId,
    pool: &Mempool,
) -> Result<(RxQueueHandle, TxQueueHandle), Error> {
    let port = eal.port_mut(p)?;
    port.configure(&PortConf::default())?;
    let desc = port.info().clamp_desc(RING_SIZE);
    let rx = port.setup_rx_queue(0, desc, pool)?;
    let tx = port.setup_tx_queue(0, desc)?;
    port.set_promiscuous(true)?;
    port.start()?;
    let link = port.wait_link_up(Duration::from_secs(2));
    let role = if p == INSIDE { "inside" } else { "outside" };
    println!(
        "Port {p} ({role}, {}): MAC {}, link {link}",
        port.name(),
        port.mac_addr()
    );
    Ok((rx, tx))
}

fn run(mut eal: Eal, opts: &Opts) -> Result<(), Error> {
    if eal.ports().len() != 2 {
        return Err(Error::Config(format!(
            "needs two ports, 0 inside and 1 outside, got {} (--vdev \
             net_af_packet0,iface=IN --vdev net_af_packet1,iface=OUT)",
            eal.ports().len()
        )));
    }
    let mut nat = Nat::new(&NatConfig {
        public: opts.public_ip,
        ports: opts.port_range,
        timeout: opts.timeout,
        max_flows: opts.max_flows,
    })
    .map_err(Error::Config)?;
    let pool = Mempool::create("mbuf_pool", MBUFS, CACHE_SIZE)?;
    let (rx_in, tx_in) = setup_port(&mut eal, INSIDE, &pool)?;
    let (rx_out, tx_out) = setup_port(&mut eal, OUTSIDE, &pool)?;
    let r = opts.port_range;
    println!(
        "nat44: translating to {} ports {}-{}, flows expire after {} s idle, at most {}",
        opts.public_ip, r.lo, r.hi, opts.timeout, opts.max_flows
    );
    println!("Forwarding (Ctrl-C to stop)");

    // Inside to outside: port 0's rx, port 1's tx; and the other way.
    let mut dirs = [
        (Direction::Outbound, rx_in, tx_out),
        (Direction::Inbound, rx_out, tx_in),
    ];
    // The flows' clock: whole seconds since the start, from the TSC.
    let (start, hz) = (tsc::rdtsc(), tsc::hz().max(1));
    let mut next_expiry = start + hz;
    let mut tx_full = [0u64; 2];
    let mut batch = PktBatch::new();
    while !lcore::stop_requested() {
        let tsc_now = tsc::rdtsc();
        let now = tsc_now.saturating_sub(start) / hz;
        for (i, (dir, rx, tx)) in dirs.iter_mut().enumerate() {
            if rx.rx_burst(&mut batch) == 0 {
                tx.tx_flush();
                continue;
            }
            // Translate each packet in place (ports without scatter receive each into
            // one buffer: `data_mut` is all of it); those dropped are counted by `nat`
            // and freed by `retain`.
            batch.retain(|m| nat.translate(*dir, m.data_mut(), now).forwards());
            tx.tx_burst(&mut batch);
            tx_full[i] += batch.len() as u64;
            batch.clear();
        }
        nat.quiescent();
        if tsc_now >= next_expiry {
            nat.expire(now);
            next_expiry = tsc_now + hz;
        }
    }

    for p in [INSIDE, OUTSIDE] {
        eal.port_mut(p)?.stop()?;
    }
    drop(dirs); // the queues go once their ports have stopped
    for (p, port) in eal.ports().iter().enumerate() {
        let s = port.stats();
        println!(
            "Port {p}: received {}, sent {}, rx missed {}, tx errors {}",
            s.ipackets, s.opackets, s.imissed, s.oerrors
        );
    }
    println!("{}", nat.counters());
    let [out, inb] = tx_full;
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
