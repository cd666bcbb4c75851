//! l2fwd: forwards every packet received on a port to its paired port (0↔1, 2↔3, ...),
//! optionally rewriting the MAC addresses, like DPDK's l2fwd sample application.
//!
//! ```text
//! l2fwd [EAL options] -- -p PORTMASK [-q NQ] [-T PERIOD] [--[no-]mac-updating]
//!       [--duration SECS] [--rxd N] [--txd N] [--tx-first N] [--pcap-capture PORT:FILE]
//! ```

mod capture;
mod fwd;
mod report;

use clap::Parser;
use pmd_core::ethdev::{MacAddr, PortConf, PortId, RxOffloads, TxOffloads};
use pmd_core::intr::{AdaptiveConf, IdleSleeper};
use pmd_core::{lcore, numarg, tsc, Eal, Error, Mempool};
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Application options (after `--`).
#[derive(Parser, Debug)]
#[command(
    name = "l2fwd",
    about = "Layer-2 forwarding between paired ports (EAL options go before --)"
)]
struct AppOpts {
    /// Hexadecimal bitmask of the ports to use (e.g. 0x3 for ports 0 and 1).
    #[arg(short = 'p', value_parser = numarg::portmask)]
    portmask: u64,
    /// Number of rx ports each lcore polls.
    #[arg(short = 'q', default_value_t = 1, value_parser = |s: &str| numarg::whole::<u32>(s, 1..=16))]
    rx_per_lcore: u32,
    /// Statistics period in seconds (0 disables).
    #[arg(short = 'T', default_value_t = 10, value_parser = |s: &str| numarg::whole::<u64>(s, 0..=86400))]
    period: u64,
    /// Do not rewrite MAC addresses.
    #[arg(long = "no-mac-updating", conflicts_with = "mac_updating")]
    no_mac_updating: bool,
    /// Rewrite destination MAC to `02:00:00:00:00:<dst port>` and source MAC to the port's (default).
    #[arg(long = "mac-updating")]
    mac_updating: bool,
    /// Stop by itself after this many seconds (fractions allowed).
    #[arg(long, value_parser = numarg::seconds)]
    duration: Option<f64>,
    /// Receive descriptors per port (0 = driver default; must fit every port's PMD;
    /// without the option 1024, adjusted to each PMD's limits as DPDK's l2fwd does).
    #[arg(long, value_parser = |s: &str| numarg::whole(s, 0..=u16::MAX))]
    rxd: Option<u16>,
    /// Transmit descriptors per port (as --rxd).
    #[arg(long, value_parser = |s: &str| numarg::whole(s, 0..=u16::MAX))]
    txd: Option<u16>,
    /// Send this many 64-byte frames out of each port before forwarding starts (to
    /// measure forwarding on ports wired back to back, like testpmd's --tx-first).
    #[arg(long = "tx-first", value_name = "N", default_value_t = 0,
          value_parser = |s: &str| numarg::whole(s, 0..=u32::MAX))]
    tx_first: u32,
    /// Receive coalesced TCP super-frames (the TCP_LRO rx offload) and send them as TSO
    /// (TCP_TSO) on ports that have both (testpmd's name): a tap forwards 64 KiB
    /// segments of a kernel TCP flow whole instead of MTU-sized frames.
    #[arg(long = "enable-lro")]
    enable_lro: bool,
    /// Largest frame to receive, bytes with the 4-byte FCS (DPDK's `--max-pkt-len`): sets
    /// every port's MTU to this minus 18. Kernel-backed ports keep the interface's MTU
    /// unless this is given.
    #[arg(long = "max-pkt-len", value_parser = |s: &str| numarg::whole::<u16>(s, 64..=u16::MAX))]
    max_pkt_len: Option<u16>,
    /// Also measure TSC cycles spent forwarding (polls that received packets), per packet.
    #[arg(long = "busy-cycles")]
    busy_cycles: bool,
    /// Adaptive mode: once its queues received nothing for this many microseconds, an
    /// lcore arms their rx interrupts and sleeps until one fires (DPDK's l3fwd-power
    /// pattern; 300 is its threshold). Every queue of the lcore needs rx interrupts; one
    /// that has none keeps it polling.
    #[arg(long = "idle-sleep", value_name = "USECS",
          value_parser = |s: &str| numarg::whole::<u32>(s, 1..=100_000_000))]
    idle_sleep: Option<u32>,
    /// Longest sleep in adaptive mode, milliseconds (then one pass, and sleep again).
    #[arg(long = "max-sleep-ms", value_name = "MS", default_value_t = 100,
          value_parser = |s: &str| numarg::whole::<u64>(s, 1..=10_000))]
    max_sleep_ms: u64,
    /// Record what PORT receives and what is sent on it into a pcap FILE (repeatable).
    #[arg(long = "pcap-capture", value_name = "PORT:FILE", value_parser = capture::parse_spec)]
    pcap_capture: Vec<(PortId, std::path::PathBuf)>,
}

/// Descriptors per queue without --rxd/--txd (DPDK l2fwd's, before adjusting).
const DEFAULT_DESC: u16 = 1024;

/// Mbufs for `ports` ports: enough for every ring, burst and cache (DPDK l2fwd's sizing).
fn pool_size(ports: u32, rxd: u32, txd: u32, lcores: u32) -> u32 {
    (ports * (rxd + txd + 32 + lcores * 256)).max(8192)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let help = || {
        <AppOpts as clap::CommandFactory>::command()
            .render_help()
            .to_string()
    };
    // Application options are checked before the EAL initialises: a wrong one changes
    // nothing on the machine.
    let parse_app = |app_args: &[String]| {
        AppOpts::try_parse_from(app_args).map_err(|e| {
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
            eprintln!("l2fwd: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// The forwarding loop, with or without busy-cycle accounting and pcap capture, and
/// in adaptive mode with the lcore's sleeper.
fn fwd_run(
    (busy, capture): (bool, bool),
    tasks: Vec<fwd::Task>,
    tick: Option<&mut dyn FnMut(u64, bool) -> bool>,
    sleeper: Option<&mut IdleSleeper>,
) -> (Vec<fwd::Task>, u64) {
    match (busy, capture) {
        (false, false) => fwd::run::<false, false>(tasks, tick, sleeper),
        (true, false) => fwd::run::<true, false>(tasks, tick, sleeper),
        (false, true) => fwd::run::<false, true>(tasks, tick, sleeper),
        (true, true) => fwd::run::<true, true>(tasks, tick, sleeper),
    }
}

/// The adaptive-mode sleeper of an lcore with `tasks`, if `--idle-sleep` was given and
/// every rx queue of the lcore has interrupts (else the lcore polls, and says why).
fn sleeper_for(opts: &AppOpts, lcore_id: u32, tasks: &mut [fwd::Task]) -> Option<IdleSleeper> {
    let idle_us = opts.idle_sleep?;
    if tasks.is_empty() {
        return None;
    }
    let conf = AdaptiveConf {
        idle: Duration::from_micros(idle_us.into()),
        max_sleep: Duration::from_millis(opts.max_sleep_ms),
    };
    match IdleSleeper::for_queues(conf, tasks) {
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

/// Prints what an lcore's sleeper did.
fn print_sleeps(lcore_id: u32, s: &IdleSleeper) {
    println!("Lcore {lcore_id} adaptive: {}", s.stats());
}

fn app_err(msg: String) -> Error {
    Error::Config(msg)
}

fn run(mut eal: Eal, opts: &AppOpts) -> Result<(), Error> {
    let nb_ports = eal.ports().len();
    let enabled = eal.ports_in_mask(opts.portmask)?;
    // Ports forward in pairs; like DPDK's l2fwd, an odd one out forwards to itself.
    if !enabled.len().is_multiple_of(2) {
        println!("Notice: odd number of ports in portmask.");
    }
    let mut dst_of = vec![0 as PortId; nb_ports];
    for pair in enabled.chunks(2) {
        let (a, b) = (pair[0], *pair.last().unwrap_or(&pair[0]));
        dst_of[a as usize] = b;
        dst_of[b as usize] = a;
    }
    for &p in &enabled {
        let info = eal.ports()[p as usize].info();
        for (opt, n) in [("--rxd", opts.rxd), ("--txd", opts.txd)] {
            if let Some(n) = n {
                info.check_desc(n)
                    .map_err(|why| app_err(format!("{opt} {n} does not fit port {p}: {why}")))?;
            }
        }
    }
    let (rxd, txd) = (
        opts.rxd.unwrap_or(DEFAULT_DESC),
        opts.txd.unwrap_or(DEFAULT_DESC),
    );
    let lcores: Vec<_> = eal.lcores().to_vec();
    let needed = enabled.len().div_ceil(opts.rx_per_lcore as usize);
    if needed > lcores.len() {
        return Err(app_err(format!(
            "{} ports at -q {} need {needed} lcores, only {} given with -l",
            enabled.len(),
            opts.rx_per_lcore,
            lcores.len()
        )));
    }
    let pool = Mempool::create(
        "mbuf_pool",
        pool_size(
            enabled.len() as u32,
            rxd.into(),
            txd.into(),
            lcores.len() as u32,
        ),
        256,
    )?;
    println!("{}", pool.usage_line());

    // Configure and set up every enabled port: one rx and one tx queue each.
    let mut rxq = Vec::new();
    let mut txq = Vec::new();
    let mut macs = vec![MacAddr::default(); nb_ports];
    for &p in &enabled {
        let port = eal.port_mut(p)?;
        // Frames of any size the port takes: scatter into chains and send chains where the
        // driver can, so jumbo frames are forwarded rather than refused.
        let info = port.info();
        let (mut rx_off, mut tx_off) = (RxOffloads::SCATTER, TxOffloads::MULTI_SEGS);
        if opts.enable_lro {
            rx_off |= RxOffloads::TCP_LRO;
            tx_off |= TxOffloads::TCP_TSO;
        }
        port.configure(&PortConf {
            rx_offloads: info.rx_offload_capa & rx_off,
            tx_offloads: info.tx_offload_capa & tx_off,
            mtu: opts.max_pkt_len.map(|l| l.saturating_sub(18)),
            ..Default::default()
        })?;
        rxq.push((p, port.setup_rx_queue(0, info.clamp_desc(rxd), &pool)?));
        txq.push((p, Some(port.setup_tx_queue(0, info.clamp_desc(txd))?)));
        if let Err(e) = port.set_promiscuous(true) {
            // A VF whose PF refuses it, say: the port still forwards what reaches it.
            eprintln!(
                "Port {p}: promiscuous mode not enabled ({e}); forwarding what the port receives"
            );
        }
        macs[p as usize] = port.mac_addr();
        println!("Port {p} ({}): MAC {}", port.name(), port.mac_addr());
    }
    for &p in &enabled {
        eal.port_mut(p)?.start()?;
    }
    for &p in &enabled {
        let link = eal.ports()[p as usize].wait_link_up(Duration::from_secs(2));
        println!("Port {p} link {link}");
    }

    // Assign rx ports to lcores in id order, `-q` per lcore; each task transmits on the
    // paired port's only tx queue (so each tx queue has exactly one owner).
    let dropped: Arc<Vec<AtomicU64>> = Arc::new((0..nb_ports).map(|_| AtomicU64::new(0)).collect());
    let mac_updating = !opts.no_mac_updating;
    let mut per_lcore: Vec<Vec<fwd::Task>> = (0..lcores.len()).map(|_| Vec::new()).collect();
    for (i, (p, rx)) in rxq.into_iter().enumerate() {
        let dst = dst_of[p as usize];
        let tx = txq
            .iter_mut()
            .find(|(q, _)| *q == dst)
            .and_then(|(_, t)| t.take())
            .ok_or_else(|| app_err(format!("tx queue of port {dst} already assigned")))?;
        let lc = i / opts.rx_per_lcore as usize;
        println!("Lcore {}: RX port {p} -> TX port {dst}", lcores[lc].id);
        per_lcore[lc].push(fwd::Task::new(
            rx,
            tx,
            dst,
            macs[dst as usize],
            mac_updating,
            dropped.clone(),
        ));
    }

    let captures = capture::attach(&opts.pcap_capture, &enabled, &mut per_lcore)?;

    if opts.tx_first > 0 {
        for t in per_lcore.iter_mut().flatten() {
            let sent = t.send_first(&pool, opts.tx_first);
            println!("Port {}: sent {sent} first frames", t.dst_port());
        }
    }

    let busy = opts.busy_cycles;
    let mode = (busy, !captures.is_empty());
    let main_id = eal.main_lcore().id;
    let fwd_lcores = per_lcore.iter().filter(|t| !t.is_empty()).count().max(1);
    let started_tsc = tsc::rdtsc();
    let mut workers = Vec::new();
    let mut main_tasks = Vec::new();
    let mut main_sleeper = None;
    for (lc, mut tasks) in lcores.iter().zip(per_lcore) {
        let sleeper = sleeper_for(opts, lc.id, &mut tasks);
        if lc.id == main_id {
            main_tasks = tasks;
            main_sleeper = sleeper;
            // The main lcore prints link changes: a port's link interrupt wakes it.
            if let Some(s) = main_sleeper.as_mut() {
                for (p, e) in s.watch_links(eal.ports(), &enabled) {
                    eprintln!("l2fwd: port {p}: link interrupts not watched ({e}); links are looked at every 50 ms");
                }
            }
        } else if !tasks.is_empty() {
            let id = lc.id;
            workers.push(eal.spawn(*lc, move || {
                let mut sleeper = sleeper;
                let r = fwd_run(mode, tasks, None, sleeper.as_mut());
                if let Some(s) = &sleeper {
                    print_sleeps(id, s);
                }
                r
            })?);
        }
    }

    let mut reporter = report::Reporter::new(&enabled, dropped.clone());
    if let Some(t) = eal.telemetry() {
        if let Err(e) = t.register(
            "/l2fwd/stats",
            "Returns l2fwd's statistics of a port (sent, received, dropped). Parameters: int port_id",
        ) {
            eprintln!("l2fwd: {e}");
        }
    }
    let mut busy_ticks = 0u64;
    let period = (opts.period > 0).then(|| tsc::hz() * opts.period);
    let deadline = opts
        .duration
        .map(|s| tsc::rdtsc() + (s * tsc::hz() as f64) as u64);
    {
        let eal_ref = &eal;
        // Link changes are printed as they are seen: every 50 ms, and at once when a
        // port's link interrupt fires.
        let link_every = tsc::hz() / 20;
        for &p in &enabled {
            eal_ref.ports()[p as usize].link_changed();
        }
        let mut next_link = tsc::rdtsc() + link_every;
        let mut tick = |now: u64, link_event: bool| -> bool {
            if period.is_some_and(|p| reporter.due(now, p)) {
                reporter.print(eal_ref.ports(), now);
            }
            eal_ref.serve_telemetry(&mut |cmd, param| {
                (cmd == "/l2fwd/stats")
                    .then(|| report::telemetry_stats(eal_ref.ports(), &enabled, &dropped, param))
                    .flatten()
            });
            if link_event || now >= next_link {
                next_link = now + link_every;
                for &p in &enabled {
                    if let Some(link) = eal_ref.ports()[p as usize].link_changed() {
                        println!("Port {p} link changed: {link}");
                    }
                }
            }
            deadline.is_some_and(|d| now >= d)
        };
        if main_tasks.is_empty() {
            let link_fds: Vec<_> = enabled
                .iter()
                .filter_map(|&p| eal_ref.ports()[p as usize].link_fd())
                .collect();
            lcore::idle_until_stop_or(&link_fds, &mut tick);
        } else {
            let (t, b) = fwd_run(mode, main_tasks, Some(&mut tick), main_sleeper.as_mut());
            main_tasks = t;
            busy_ticks += b;
        }
    }
    if let Some(s) = &main_sleeper {
        print_sleeps(main_id, s);
    }
    lcore::request_stop();
    let mut finished = vec![main_tasks];
    for w in workers {
        match w.join() {
            Ok((tasks, b)) => {
                finished.push(tasks);
                busy_ticks += b;
            }
            Err(_) => eprintln!("l2fwd: a forwarding lcore panicked"),
        }
    }
    for &p in &enabled {
        let port = eal.port_mut(p)?;
        print!("Closing port {p}...");
        port.stop()?;
        println!(" Done");
    }
    // Queues (and the buffers devices still hold) go only after their ports stopped.
    drop(finished);
    let end_tsc = tsc::rdtsc();
    reporter.print(eal.ports(), end_tsc);
    report::print_port_errors(eal.ports(), &enabled);
    report::print_summary(eal.ports(), &enabled, end_tsc - started_tsc, fwd_lcores);
    if busy {
        report::print_busy(eal.ports(), &enabled, busy_ticks);
    }
    capture::finish(captures);
    report::print_pool_end(&pool);
    println!("Bye...");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_sizing_matches_dpdk_l2fwd() {
        assert_eq!(pool_size(2, 1024, 1024, 1), 8192);
        assert_eq!(pool_size(4, 1024, 1024, 2), 4 * (2048 + 32 + 512));
    }

    #[test]
    fn options_parse_like_dpdk() {
        let o = AppOpts::try_parse_from([
            "l2fwd",
            "-p",
            "0x3",
            "-q",
            "2",
            "-T",
            "1",
            "--no-mac-updating",
        ])
        .unwrap();
        assert_eq!(
            (o.portmask, o.rx_per_lcore, o.period, o.no_mac_updating),
            (3, 2, 1, true)
        );
        assert!(
            AppOpts::try_parse_from(["l2fwd"]).is_err(),
            "-p is required"
        );
        assert!(AppOpts::try_parse_from(["l2fwd", "-p", "3", "-q", "0"]).is_err());
        assert!(AppOpts::try_parse_from([
            "l2fwd",
            "-p",
            "3",
            "--mac-updating",
            "--no-mac-updating"
        ])
        .is_err());
    }
}
