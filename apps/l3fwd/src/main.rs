//! l3fwd: forwards IPv4 and IPv6 packets between ports by longest-prefix match on the
//! destination address (`--lookup=lpm`) or exact match on the 5-tuple (`--lookup=em`),
//! with DPDK l3fwd's command line, route files and packet handling (see `fwd` for
//! where it differs: what cannot be routed is dropped and counted).
//!
//! ```text
//! l3fwd [EAL options] -- -p PORTMASK [-P] [--config "(port,queue,lcore),..."]
//!       [--lookup=lpm|em] [--rule_ipv4=FILE] [--rule_ipv6=FILE]
//!       [--eth-dest=X,MM:MM:MM:MM:MM:MM] [--max-pkt-len N] [--parse-ptype] [--duration S]
//! ```

mod fwd;
mod opts;
mod routes;
mod stats;

use clap::Parser;
use fwd::{EmRouter, Lcore, LpmRouter, MacTable, Router};
use opts::{AppOpts, QueueConf};
use pmd_core::ethdev::{
    MacAddr, PortConf, PortId, RxOffloads, RxQueueHandle, TxOffloads, TxQueueHandle,
};
use pmd_core::{lcore, tsc, Eal, Error, Mempool};
use pmd_flow::{FlowConfig, FlowTable4, FlowTable6};
use pmd_lpm::{Lpm4, Lpm6, LpmConfig};
use routes::{Table, Table4, Table6};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let help = || {
        <AppOpts as clap::CommandFactory>::command()
            .render_help()
            .to_string()
    };
    // Options and route files are checked before the EAL initialises: a wrong one
    // changes nothing on the machine.
    let parse_app = |app_args: &[String]| {
        let opts = AppOpts::try_parse_from(app_args).map_err(|e| {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { 2 } else { 0 })
        })?;
        let lookup = opts.lookup();
        let tables = routes::load4(opts.rule_ipv4.as_deref(), lookup)
            .and_then(|v4| Ok((v4, routes::load6(opts.rule_ipv6.as_deref(), lookup)?)))
            .map_err(|e| {
                eprintln!("l3fwd: {e}");
                ExitCode::from(2)
            })?;
        Ok((opts, tables))
    };
    let (eal, (opts, tables)) =
        match Eal::from_args_for_app_checked(&args, pmd_drivers::ALL, help, parse_app) {
            Ok(v) => v,
            Err(code) => return code,
        };
    match run(eal, &opts, tables) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("l3fwd: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn app_err(msg: String) -> Error {
    Error::Config(msg)
}

/// Mbufs for the run: every ring, plus each lcore's cache and bursts (DPDK l3fwd's
/// sizing, at least 8192).
fn pool_size(ports: u32, rxq: u32, rxd: u32, txq: u32, txd: u32, lcores: u32) -> u32 {
    (ports * (rxq * rxd + txq * txd) + lcores * (256 + 2 * 64 * ports)).max(8192)
}

/// The route tables the lcores read; they live until the end of the run.
enum Tables {
    Lpm(Lpm4, Lpm6),
    Em(FlowTable4, FlowTable6),
}

/// Adds each route of `routes` whose port `keep` accepts with `add`, printing it as
/// DPDK l3fwd does (`what`: "LPM" or "EM").
fn fill<R: routes::Route>(
    what: &str,
    routes: &[R],
    keep: &mut impl FnMut(u8) -> bool,
    names: &[String],
    mut add: impl FnMut(&R) -> Result<(), String>,
) -> Result<(), Error> {
    for r in routes.iter().filter(|r| keep(r.port())) {
        add(r).map_err(|e| app_err(format!("{what} table: {e}")))?;
        let name = &names[usize::from(r.port())];
        println!("{what}: Adding route {} ({}) [{name}]", r.show(), r.port());
    }
    Ok(())
}

/// Fills the lookup tables with the routes whose port is enabled (as DPDK l3fwd, which
/// skips the others: their packets find no route), printing each.
fn build_tables(
    (v4, v6): (Table4, Table6),
    enabled: &[PortId],
    names: &[String],
) -> Result<Tables, Error> {
    let mut skipped = 0;
    let mut keep = |p: u8| {
        let ok = enabled.contains(&PortId::from(p));
        skipped += usize::from(!ok);
        ok
    };
    let t = match (v4, v6) {
        (Table::Lpm(r4), Table::Lpm(r6)) => {
            let cfg = LpmConfig {
                max_rules: 1 << 16,
                tbl8_groups: 1 << 14,
                ..LpmConfig::default()
            };
            let bad = |e: pmd_lpm::LpmError| app_err(format!("route table: {e}"));
            let (mut l4, mut l6) = (Lpm4::new(&cfg).map_err(bad)?, Lpm6::new(&cfg).map_err(bad)?);
            let e = |e: pmd_lpm::LpmError| e.to_string();
            fill("LPM", &r4, &mut keep, names, |r| {
                l4.add(r.addr, r.len, r.port.into()).map_err(e)
            })?;
            fill("LPM", &r6, &mut keep, names, |r| {
                l6.add(r.addr, r.len, r.port.into()).map_err(e)
            })?;
            Tables::Lpm(l4, l6)
        }
        (Table::Em(r4), Table::Em(r6)) => {
            let cfg = |n: usize| FlowConfig {
                capacity: (n.max(1024) * 2).next_power_of_two() as u32,
                ..FlowConfig::default()
            };
            let bad = |e: pmd_flow::FlowError| app_err(format!("flow table: {e}"));
            let mut t4 = FlowTable4::new(&cfg(r4.len())).map_err(bad)?;
            let mut t6 = FlowTable6::new(&cfg(r6.len())).map_err(bad)?;
            let e = |e: pmd_flow::FlowError| e.to_string();
            fill("EM", &r4, &mut keep, names, |r| {
                t4.insert(&r.flow.key(), r.port.into(), 0).map_err(e)
            })?;
            fill("EM", &r6, &mut keep, names, |r| {
                t6.insert(&r.flow.key(), r.port.into(), 0).map_err(e)
            })?;
            Tables::Em(t4, t6)
        }
        _ => unreachable!("both files are read for the same lookup method"),
    };
    if skipped > 0 {
        println!("{skipped} routes name ports outside the portmask: left out");
    }
    Ok(t)
}

/// `--config`, or queue 0 of each enabled port with the ports dealt to the EAL's lcores
/// in turn.
fn queue_conf(opts: &AppOpts, enabled: &[PortId], eal: &Eal) -> Result<Vec<QueueConf>, Error> {
    let lcores: Vec<u32> = eal.lcores().iter().map(|l| l.id).collect();
    let conf = match &opts.config {
        Some(c) => c.0.clone(),
        None => enabled
            .iter()
            .enumerate()
            .map(|(i, &port)| QueueConf {
                port,
                queue: 0,
                lcore: lcores[i % lcores.len()],
            })
            .collect(),
    };
    for q in &conf {
        if !enabled.contains(&q.port) {
            return Err(app_err(format!(
                "port {} in --config is not in the portmask 0x{:x}",
                q.port, opts.portmask
            )));
        }
        if !lcores.contains(&q.lcore) {
            return Err(app_err(format!(
                "lcore {} in --config is not one of the EAL's lcores {lcores:?}: add it to -l",
                q.lcore
            )));
        }
    }
    for &p in enabled {
        let mut qs: Vec<u16> = conf
            .iter()
            .filter(|q| q.port == p)
            .map(|q| q.queue)
            .collect();
        qs.sort_unstable();
        if qs.iter().enumerate().any(|(i, &q)| usize::from(q) != i) {
            return Err(app_err(format!(
                "--config gives port {p} the rx queues {qs:?}: they must be 0, 1, ... without gaps"
            )));
        }
    }
    Ok(conf)
}

fn run(mut eal: Eal, opts: &AppOpts, routes: (Table4, Table6)) -> Result<(), Error> {
    let nb_ports = eal.ports().len();
    let enabled = eal.ports_in_mask(opts.portmask)?;
    let conf = queue_conf(opts, &enabled, &eal)?;
    // The lcores that poll, in id order; each has tx queue `index` on every port.
    let lcores: Vec<u32> = {
        let mut l: Vec<u32> = conf.iter().map(|q| q.lcore).collect();
        l.sort_unstable();
        l.dedup();
        l
    };
    let names: Vec<String> = eal.ports().iter().map(|p| p.name().to_string()).collect();
    let tables = build_tables(routes, &enabled, &names)?;

    let rx_of = |p: PortId| conf.iter().filter(|q| q.port == p).count() as u16;
    let (rxd, txd) = (opts.rx_queue_size, opts.tx_queue_size);
    let total_rxq: u32 = enabled.iter().map(|&p| u32::from(rx_of(p).max(1))).sum();
    let pool = Mempool::create(
        "mbuf_pool",
        pool_size(
            enabled.len() as u32,
            total_rxq.div_ceil(enabled.len() as u32),
            rxd.into(),
            lcores.len() as u32,
            txd.into(),
            lcores.len() as u32,
        ),
        256,
    )?;
    println!("{}", pool.usage_line());

    let mut rx: BTreeMap<(PortId, u16), RxQueueHandle> = BTreeMap::new();
    let mut tx: BTreeMap<(PortId, usize), TxQueueHandle> = BTreeMap::new();
    let mut macs: Box<MacTable> = Box::new([[0u8; 12]; 256]);
    for &p in &enabled {
        let port = eal.port_mut(p)?;
        let info = port.info();
        let nb_rx = rx_of(p);
        let nb_tx = lcores.len() as u16;
        let jumbo = opts.max_pkt_len.is_some();
        let (rx_off, tx_off) = if jumbo {
            (RxOffloads::SCATTER, TxOffloads::MULTI_SEGS)
        } else {
            (RxOffloads::NONE, TxOffloads::NONE)
        };
        port.configure(&PortConf {
            rx_queues: nb_rx.max(1),
            tx_queues: nb_tx,
            rx_offloads: info.rx_offload_capa & rx_off,
            tx_offloads: info.tx_offload_capa & tx_off,
            mtu: opts.max_pkt_len.map(|l| l.saturating_sub(18)),
        })?;
        if nb_rx == 0 {
            println!(
                "Port {p}: no rx queue in --config: it only sends (what it receives is not read)"
            );
        }
        for q in 0..nb_rx.max(1) {
            rx.insert((p, q), port.setup_rx_queue(q, info.clamp_desc(rxd), &pool)?);
        }
        for i in 0..nb_tx {
            tx.insert(
                (p, usize::from(i)),
                port.setup_tx_queue(i, info.clamp_desc(txd))?,
            );
        }
        if opts.promiscuous {
            port.set_promiscuous(true)?;
        }
        let dst = opts
            .eth_dest
            .iter()
            .rev()
            .find(|(q, _)| *q == p)
            .map_or(MacAddr([0x02, 0, 0, 0, 0, p as u8]), |(_, m)| *m);
        macs[usize::from(p)][..6].copy_from_slice(&dst.0);
        macs[usize::from(p)][6..].copy_from_slice(&port.mac_addr().0);
        println!(
            "Port {p} ({}): MAC {}, destination {dst}",
            port.name(),
            port.mac_addr()
        );
    }
    for &p in &enabled {
        eal.port_mut(p)?.start()?;
    }
    for &p in &enabled {
        let link = eal.ports()[p as usize].wait_link_up(Duration::from_secs(2));
        println!("Port {p} link {link}");
    }

    // Each lcore: its rx queues, and its tx queue on every enabled port.
    let mut per_lcore = Vec::new();
    for (i, &id) in lcores.iter().enumerate() {
        let mut my_rx = Vec::new();
        for q in conf.iter().filter(|q| q.lcore == id) {
            println!("Lcore {id}: RX port {} queue {}", q.port, q.queue);
            my_rx.push(rx.remove(&(q.port, q.queue)).ok_or_else(|| {
                app_err(format!("queue {} of port {} given twice", q.queue, q.port))
            })?);
        }
        let my_tx: Vec<Option<TxQueueHandle>> = (0..nb_ports as PortId)
            .map(|p| tx.remove(&(p, i)))
            .collect();
        per_lcore.push((id, my_rx, my_tx));
    }
    // Rx queues nobody polls (ports that only send) stay here until the ports stop.
    let unpolled = rx;

    let started = tsc::rdtsc();
    let counts = match &tables {
        Tables::Lpm(l4, l6) => forward(&eal, opts, per_lcore, macs, || LpmRouter {
            v4: l4.reader(),
            v6: l6.reader(),
        })?,
        Tables::Em(t4, t6) => forward(&eal, opts, per_lcore, macs, || EmRouter {
            v4: t4.reader(),
            v6: t6.reader(),
        })?,
    };
    let elapsed = tsc::rdtsc() - started;
    for &p in &enabled {
        let port = eal.port_mut(p)?;
        print!("Closing port {p}...");
        port.stop()?;
        println!(" Done");
    }
    // Queues (and the buffers devices still hold) go only after their ports stopped.
    drop(counts.1);
    drop(unpolled);
    stats::print(eal.ports(), &enabled, &counts.0, elapsed, lcores.len());
    println!("{}", pool.usage_line());
    if let Some(w) = pool.leak_warning() {
        eprintln!("l3fwd: warning: {w}");
    }
    drop(tables);
    println!("Bye...");
    Ok(())
}

/// The lcores of the run: (id, rx queues, tx queue per port).
type LcorePlan = Vec<(u32, Vec<RxQueueHandle>, Vec<Option<TxQueueHandle>>)>;

/// Runs the forwarding lcores until Ctrl-C or `--duration`; returns what they counted
/// (summed) and the lcores, holding their queues (to drop after the ports stop).
fn forward<R: Router>(
    eal: &Eal,
    opts: &AppOpts,
    plan: LcorePlan,
    macs: Box<MacTable>,
    router: impl Fn() -> R,
) -> Result<(fwd::Counts, Box<dyn std::any::Any>), Error> {
    let main_id = eal.main_lcore().id;
    let mut workers = Vec::new();
    let mut main = None;
    for (id, rx, tx) in plan {
        let lc = Lcore::new(rx, tx, macs.clone(), router());
        if id == main_id {
            main = Some(lc);
        } else {
            let core = *eal
                .lcores()
                .iter()
                .find(|l| l.id == id)
                .ok_or_else(|| app_err(format!("lcore {id} is not one of the EAL's")))?;
            workers.push(eal.spawn(core, move || fwd::run(lc, None))?);
        }
    }
    let deadline = opts
        .duration
        .map(|s| tsc::rdtsc() + (s * tsc::hz() as f64) as u64);
    // Once per pass of the main lcore: telemetry requests (ports' counters), the deadline.
    let mut tick = |now: u64| {
        eal.serve_telemetry(&mut |_, _| None);
        deadline.is_some_and(|d| now >= d)
    };
    let mut done = Vec::new();
    match main {
        Some(lc) => done.push(fwd::run(lc, Some(&mut tick))),
        None => lcore::idle_until_stop_or(&[], |now, _| tick(now)),
    }
    lcore::request_stop();
    for w in workers {
        match w.join() {
            Ok(lc) => done.push(lc),
            Err(_) => eprintln!("l3fwd: a forwarding lcore panicked"),
        }
    }
    let mut total = fwd::Counts::default();
    for lc in &done {
        total.add(&lc.counts());
    }
    Ok((total, Box::new(done)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_sizing_has_a_floor_and_grows_with_the_rings() {
        assert_eq!(pool_size(2, 1, 1024, 1, 1024, 1), 8192);
        assert_eq!(
            pool_size(2, 2, 1024, 2, 1024, 2),
            2 * 4096 + 2 * (256 + 256)
        );
    }
}
