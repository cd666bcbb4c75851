//! testpmd: forwards packets between ports in one of DPDK testpmd's forwarding modes,
//! with its non-interactive command line, periodic statistics and final forward
//! statistics.
//!
//! ```text
//! testpmd [EAL options] -- [--forward-mode=io|mac|macswap|rxonly|txonly|csum|flowgen]
//!         [--nb-cores=N] [--rxq=N] [--txq=N] [--rxd=N] [--txd=N] [--burst=N]
//!         [--txpkts=LEN[,LEN...]] [--mbuf-size=N] [--max-pkt-len=N] [--enable-scatter]
//!         [--rx-offloads=MASK] [--tx-offloads=MASK] [--stats-period=SECS] [--tx-first] [--duration=SECS] ...
//! ```
//!
//! Ports pair up 0↔1, 2↔3, ... (an odd last port forwards to itself). Each rx queue `q`
//! of a port is one stream to tx queue `q` of its peer; streams are spread over the
//! forwarding lcores (the `-l` lcores after the main one, or the main lcore alone).

mod engine;
mod opts;
mod pkt;
mod stats;

use clap::Parser;
use engine::Stream;
use opts::{Mode, Opts};
use pmd_core::ethdev::{PortConf, PortId, RxOffloads, TxOffloads};
use pmd_core::intr::{AdaptiveConf, IdleSleeper};
use pmd_core::{lcore, tsc, Eal, Error, Mempool};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let help = || {
        <Opts as clap::CommandFactory>::command()
            .render_help()
            .to_string()
    };
    // Application options are checked before the EAL initialises: a wrong one changes
    // nothing on the machine.
    let parse_app = |app_args: &[String]| {
        Opts::try_parse_from(app_args).map_err(|e| {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { 2 } else { 0 })
        })
    };
    let (eal, opts) = match Eal::from_args_for_app_checked(&args, pmd_drivers::ALL, help, parse_app)
    {
        Ok(v) => v,
        Err(code) => return code,
    };
    match run(eal, &opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testpmd: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn cfg_err(msg: String) -> Error {
    Error::Config(msg)
}

/// The peer of each port: 0↔1, 2↔3, ...; an odd last port is its own peer.
fn peers(n: usize) -> Vec<PortId> {
    (0..n)
        .map(|p| {
            let q = p ^ 1;
            (if q < n { q } else { p }) as PortId
        })
        .collect()
}

/// Mbufs needed: every rx and tx ring full, plus bursts and caches (testpmd's sizing).
fn pool_size(opts: &Opts, ports: usize, rxd: u32, txd: u32, lcores: u32) -> u32 {
    if opts.total_num_mbufs > 0 {
        return opts.total_num_mbufs;
    }
    let per_port = u32::from(opts.rxq) * rxd + u32::from(opts.txq) * txd;
    (ports as u32 * per_port + lcores * (opts.mbcache + u32::from(opts.burst)) * 2).max(8192)
}

fn run(mut eal: Eal, opts: &Opts) -> Result<(), Error> {
    if opts.interactive {
        return Err(cfg_err(
            "interactive mode (-i) is not supported; options select the mode and Ctrl-C stops"
                .into(),
        ));
    }
    let nb_ports = eal.ports().len();
    if nb_ports == 0 {
        return Err(cfg_err(
            "no Ethernet ports; add some with --vdev (e.g. --vdev net_null0 --vdev net_null1) or -a PCI-ADDRESS".into(),
        ));
    }
    if opts.rxq != opts.txq {
        return Err(cfg_err(format!(
            "--rxq={} and --txq={} differ: each rx queue forwards to the tx queue with its index, so give both the same count",
            opts.rxq, opts.txq
        )));
    }
    let ports: Vec<PortId> = (0..nb_ports as PortId).collect();
    let peer = peers(nb_ports);

    // Forwarding lcores: those after the main lcore, else the main lcore itself.
    let main = eal.main_lcore();
    let mut fwd: Vec<_> = eal
        .lcores()
        .iter()
        .copied()
        .filter(|l| l.id != main.id)
        .collect();
    if fwd.is_empty() {
        fwd.push(main);
    }
    if usize::from(opts.nb_cores) > fwd.len() {
        return Err(cfg_err(format!(
            "--nb-cores={} but only {} forwarding lcore(s) available (the -l list minus the main lcore)",
            opts.nb_cores,
            fwd.len()
        )));
    }
    fwd.truncate(opts.nb_cores.into());

    // Descriptor counts against every port's PMD, before any port is configured.
    for (p, port) in eal.ports().iter().enumerate() {
        let info = port.info();
        for (opt, n) in [("--rxd", opts.rxd), ("--txd", opts.txd)] {
            info.check_desc(n)
                .map_err(|why| cfg_err(format!("{opt}={n} does not fit port {p}: {why}")))?;
        }
    }
    let info0 = eal.ports()[0].info();
    let rxd = info0.clamp_desc(opts.rxd);
    let txd = info0.clamp_desc(opts.txd);
    let pool = Mempool::create_with(
        "mbuf_pool",
        &pmd_core::mempool::MempoolConfig {
            size: pool_size(opts, nb_ports, rxd.into(), txd.into(), fwd.len() as u32 + 1),
            cache_size: opts.mbcache,
            buf_size: opts.mbuf_size,
        },
    )?;
    let room = usize::from(opts.mbuf_size) - usize::from(pmd_core::mbuf::HEADROOM);
    if let Some(&big) = opts.txpkts.segments().iter().find(|&&l| l > room) {
        return Err(cfg_err(format!(
            "--txpkts segment of {big} bytes does not fit a {room}-byte mbuf: split it \
             (--txpkts=A,B,...) or raise --mbuf-size"
        )));
    }
    println!("{}", pool.usage_line());

    let mut rxqs = Vec::new();
    let mut txqs: Vec<Vec<Option<_>>> = Vec::new();
    let mut port_tx_offloads = Vec::new();
    let mut macs = Vec::new();
    for &p in &ports {
        let port = eal.port_mut(p)?;
        let info = port.info();
        let mut rx_offloads = opts.rx_offloads.unwrap_or_default();
        if opts.enable_scatter {
            rx_offloads |= RxOffloads::SCATTER;
        }
        // Multi-segment generated packets need MULTI_SEGS; ask for it where the port has it
        // (as DPDK's testpmd does by default), so forwarded chains go out whole.
        let tx_offloads = opts
            .tx_offloads
            .unwrap_or(info.tx_offload_capa & TxOffloads::MULTI_SEGS);
        port.configure(&PortConf {
            rx_queues: opts.rxq,
            tx_queues: opts.txq,
            rx_offloads,
            tx_offloads,
            mtu: opts.max_pkt_len.map(|l| l.saturating_sub(18)),
        })?;
        let info = port.info();
        let mut rq = Vec::new();
        let mut tq = Vec::new();
        for q in 0..opts.rxq {
            rq.push(port.setup_rx_queue(q, info.clamp_desc(opts.rxd), &pool)?);
        }
        for q in 0..opts.txq {
            tq.push(Some(port.setup_tx_queue(q, info.clamp_desc(opts.txd))?));
        }
        if let Err(e) = port.set_promiscuous(true) {
            // As DPDK's testpmd: a port that refuses (a VF) is used as it is.
            eprintln!("Error during enabling promiscuous mode for port {p}: {e} - ignore");
        }
        macs.push(port.mac_addr());
        println!(
            "Configuring Port {p} ({}): {} rxq, {} txq, MAC {}",
            port.name(),
            opts.rxq,
            opts.txq,
            port.mac_addr()
        );
        rxqs.push(rq);
        txqs.push(tq);
        port_tx_offloads.push(tx_offloads);
    }
    for &p in &ports {
        eal.port_mut(p)?.start()?;
    }
    for &p in &ports {
        let link = eal.ports()[p as usize].wait_link_up(Duration::from_secs(2));
        println!("Port {p}: link {link}");
    }

    // Streams: (port, rxq q) -> (peer, txq q), spread round-robin over the lcores.
    let mut per_lcore: Vec<Vec<Stream>> = (0..fwd.len()).map(|_| Vec::new()).collect();
    let mut counters = Vec::new();
    let mut stream_ids = Vec::new();
    let mut i = 0;
    for (p, rq) in rxqs.into_iter().enumerate() {
        let dst = peer[p];
        for (q, rx) in rq.into_iter().enumerate() {
            let tx = txqs[dst as usize][q]
                .take()
                .ok_or_else(|| cfg_err(format!("tx queue {q} of port {dst} already used")))?;
            let dst_mac = opts.peer_mac(dst).0;
            let params = engine::StreamParams {
                dst_mac,
                src_mac: macs[dst as usize].0,
                segs: opts.txpkts.segments(),
                flows: opts.flowgen_flows,
                burst: opts.burst.into(),
                tx_csum_hw: port_tx_offloads[dst as usize].contains(TxOffloads::CHECKSUM),
            };
            let s = Stream::new(p as PortId, rx, dst, tx, &params);
            counters.push((s.rx_port, s.tx_port, s.stats.clone()));
            stream_ids.push((s.rx_port, q as u16, s.tx_port, q as u16, s.stats.clone()));
            per_lcore[i % fwd.len()].push(s);
            i += 1;
        }
    }
    println!(
        "{:?} packet forwarding - ports={} - cores={} - streams={} - burst={}",
        opts.mode,
        nb_ports,
        fwd.len(),
        counters.len(),
        opts.burst
    );
    for (lc, streams) in fwd.iter().zip(&per_lcore) {
        for s in streams {
            println!(
                "Logical Core {} (socket 0) forwards packets on {} streams: RX P={}/Q -> TX P={}",
                lc.id,
                streams.len(),
                s.rx_port,
                s.tx_port
            );
        }
    }
    if opts.tx_first {
        for s in per_lcore.iter_mut().flatten() {
            s.tx_first(&pool, opts.burst.into());
        }
    }

    let burst = usize::from(opts.burst);
    let mode = opts.mode;
    let mut workers = Vec::new();
    let mut main_streams = Vec::new();
    let mut main_sleeper = None;
    for (lc, mut streams) in fwd.iter().zip(per_lcore) {
        let sleeper = sleeper_for(opts, lc.id, &mut streams);
        if lc.id == main.id {
            main_streams = streams;
            main_sleeper = sleeper;
            // The main lcore prints link changes: a port's link interrupt wakes it.
            if let Some(s) = main_sleeper.as_mut() {
                for (p, e) in s.watch_links(eal.ports(), &ports) {
                    eprintln!("testpmd: port {p}: link interrupts not watched ({e}); links are looked at every 50 ms");
                }
            }
        } else {
            let pool = pool.clone();
            let id = lc.id;
            workers.push(eal.spawn(*lc, move || {
                let mut sleeper = sleeper;
                let r = engine::run(mode, &pool, streams, burst, None, sleeper.as_mut());
                if let Some(s) = &sleeper {
                    println!("Lcore {id} adaptive: {}", s.stats());
                }
                r
            })?);
        }
    }

    let mut periodic = stats::Periodic::new(eal.ports(), &ports);
    if let Some(t) = eal.telemetry() {
        if let Err(e) = t.register(
            "/testpmd/fwd_stats",
            "Returns testpmd's forward statistics of a port (its streams' counters). \
             Parameters: int port_id",
        ) {
            eprintln!("testpmd: {e}");
        }
    }
    let period = (opts.stats_period > 0).then(|| tsc::hz() * opts.stats_period);
    let deadline = opts
        .duration
        .map(|s| tsc::rdtsc() + (s * tsc::hz() as f64) as u64);
    {
        let all = eal.ports();
        // Link changes are printed as they are seen (DPDK's "link state change event"):
        // every 50 ms, and at once when a port's link interrupt fires.
        let link_every = tsc::hz() / 20;
        for &p in &ports {
            all[p as usize].link_changed();
        }
        let mut next_link = tsc::rdtsc() + link_every;
        let eal_ref = &eal;
        let mut tick = |now: u64, link_event: bool| -> bool {
            if period.is_some_and(|p| periodic.due(now, p)) {
                periodic.print(all, now);
            }
            eal_ref.serve_telemetry(&mut |cmd, param| {
                (cmd == "/testpmd/fwd_stats")
                    .then(|| stats::telemetry_fwd_stats(all, &ports, &counters, param))
                    .flatten()
            });
            if link_event || now >= next_link {
                next_link = now + link_every;
                for &p in &ports {
                    if let Some(link) = all[p as usize].link_changed() {
                        println!("\nPort {p}: link state change event: {link}");
                    }
                }
            }
            deadline.is_some_and(|d| now >= d)
        };
        if main_streams.is_empty() {
            let link_fds: Vec<_> = ports
                .iter()
                .filter_map(|&p| all[p as usize].link_fd())
                .collect();
            lcore::idle_until_stop_or(&link_fds, &mut tick);
        } else {
            main_streams = engine::run(
                mode,
                &pool,
                main_streams,
                burst,
                Some(&mut tick),
                main_sleeper.as_mut(),
            );
        }
    }
    if let Some(s) = &main_sleeper {
        println!("Lcore {} adaptive: {}", main.id, s.stats());
    }
    lcore::request_stop();
    println!("\nTelling cores to stop...\nWaiting for lcores to finish...");
    let mut finished = vec![main_streams];
    for w in workers {
        match w.join() {
            Ok(s) => finished.push(s),
            Err(_) => eprintln!("testpmd: a forwarding lcore panicked"),
        }
    }
    if stream_ids.len() > ports.len() {
        print!("{}", stats::format_streams(&stream_ids));
    }
    let per_port = stats::totals(eal.ports(), &ports, &counters);
    print!("{}", stats::format_final(&per_port, mode == Mode::Csum));
    println!("\nDone.");
    for &p in &ports {
        print!("\nStopping port {p}...");
        eal.port_mut(p)?.stop()?;
        println!("Done");
    }
    // Queues (and buffers devices still hold) go only after their ports stopped.
    drop(finished);
    stats::print_pool_end(&pool);
    println!("\nBye...");
    Ok(())
}

/// The adaptive-mode sleeper of an lcore with `streams`, if `--idle-sleep` was given, the
/// mode receives, and every rx queue of the lcore has interrupts (else the lcore polls,
/// and says why).
fn sleeper_for(opts: &Opts, lcore_id: u32, streams: &mut [Stream]) -> Option<IdleSleeper> {
    let idle_us = opts.idle_sleep?;
    if streams.is_empty() || matches!(opts.mode, Mode::Txonly | Mode::Flowgen) {
        return None;
    }
    let conf = AdaptiveConf {
        idle: Duration::from_micros(idle_us.into()),
        max_sleep: Duration::from_millis(opts.max_sleep_ms),
    };
    match IdleSleeper::for_queues(conf, streams) {
        Ok(s) => {
            println!("Lcore {lcore_id}: adaptive (sleeps after {idle_us} µs without a packet)");
            Some(s)
        }
        Err(e) => {
            println!("Lcore {lcore_id}: {e}: this lcore keeps polling");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_pair_up() {
        assert_eq!(peers(1), vec![0]);
        assert_eq!(peers(2), vec![1, 0]);
        assert_eq!(peers(3), vec![1, 0, 2]);
        assert_eq!(peers(4), vec![1, 0, 3, 2]);
    }
}
