//! pktgen: sends UDP frames at a given rate (or as fast as possible) with configurable
//! sizes, MACs, addresses, ports and flows, receives them on another port (or the same),
//! and measures the receive rate, loss, reordering and latency (a TSC timestamp in each
//! payload) with a histogram. Live table every `-T` seconds; final summary, or JSON with
//! `--json`.
//!
//! ```text
//! pktgen [EAL options] -- [--tx-port P] [--rx-port P] [--rate MPPS] [--size 60,124,1514]
//!        [--flows N] [--count N] [--duration SECS] [--json] ...
//! ```

mod frame;
mod gen;
mod hist;
mod opts;
mod report;

use clap::Parser;
use frame::{FrameSpec, Template};
use gen::{Receiver, Sender, Shared};
use opts::Opts;
use pmd_core::ethdev::PortConf;
use pmd_core::{lcore, tsc, Eal, Error, Mempool};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
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
            eprintln!("pktgen: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// The largest frame pktgen sends, bytes without FCS.
const MAX_FRAME: u16 = 9216;

fn run(mut eal: Eal, opts: &Opts) -> Result<(), Error> {
    let nb = eal.ports().len() as u16;
    if nb == 0 {
        return Err(Error::Config(
            "no Ethernet ports; add some with --vdev or -a (e.g. --vdev net_ring0 for a loopback)"
                .into(),
        ));
    }
    let txp = opts.tx_port;
    let rxp = opts
        .rx_port
        .unwrap_or(if txp ^ 1 < nb { txp ^ 1 } else { txp });
    for (what, p) in [("--tx-port", txp), ("--rx-port", rxp)] {
        if p >= nb {
            return Err(Error::Config(format!(
                "{what} {p}: only {nb} port(s) probed"
            )));
        }
    }
    // Buffers that hold the largest frame in one piece: jumbo sizes, and any replayed
    // frame up to 9216 bytes.
    let largest = if opts.pcap.is_some() {
        MAX_FRAME
    } else {
        opts.size.iter().copied().max().unwrap_or(60)
    };
    let pool = Mempool::create_with(
        "pktgen_pool",
        &pmd_core::mempool::MempoolConfig {
            size: 16384,
            cache_size: 256,
            buf_size: pmd_core::mbuf::DEFAULT_BUF_SIZE.max(largest + pmd_core::mbuf::HEADROOM),
        },
    )?;
    let mut ports = vec![txp];
    if rxp != txp {
        ports.push(rxp);
    }
    let mut txq = None;
    let mut rxq = None;
    for &p in &ports {
        let port = eal.port_mut(p)?;
        port.configure(&PortConf::default())?;
        let info = port.info();
        let r = port.setup_rx_queue(0, info.clamp_desc(1024), &pool)?;
        let t = port.setup_tx_queue(0, info.clamp_desc(1024))?;
        port.set_promiscuous(true)?;
        if p == rxp {
            rxq = Some(r);
        }
        if p == txp {
            txq = Some(t);
        }
        port.start()?;
    }
    for &p in &ports {
        let l = eal.ports()[p as usize].wait_link_up(Duration::from_secs(2));
        eprintln!("Port {p} ({}): link {l}", eal.ports()[p as usize].name());
    }
    let spec = FrameSpec {
        dst_mac: opts
            .dst_mac
            .unwrap_or(eal.ports()[rxp as usize].mac_addr())
            .0,
        src_mac: opts
            .src_mac
            .unwrap_or(eal.ports()[txp as usize].mac_addr())
            .0,
        src_ip: opts.src_ip,
        dst_ip: opts.dst_ip,
        sport: opts.sport,
        dport: opts.dport,
    };
    let templates = opts
        .size
        .iter()
        .map(|&s| Template::new(&spec, s.into()))
        .collect();
    let shared = Arc::new(Shared::default());
    let (Some(txq), Some(rxq)) = (txq, rxq) else {
        return Err(Error::Config("internal: queues not set up".into()));
    };
    let mut sender = Sender::new(txq, pool.clone(), templates, shared.clone());
    sender.flows = opts.flows;
    sender.per_tick = opts.rate * 1e6 / tsc::hz() as f64;
    sender.count = opts.count;
    sender.burst = opts.burst.into();
    let mut receiver = Receiver::new(rxq, shared.clone());
    if let Some(path) = &opts.pcap {
        let trace =
            pmd_pcap::Trace::load(path).map_err(|e| Error::Config(format!("--pcap: {e}")))?;
        if trace.is_empty() {
            return Err(Error::Config(format!(
                "--pcap {}: no frames to replay",
                path.display()
            )));
        }
        eprintln!("Replaying {} frames from {}", trace.len(), path.display());
        if let Some(i) = (0..trace.len()).find(|&i| trace.frame(i).len() > usize::from(MAX_FRAME)) {
            return Err(Error::Config(format!(
                "--pcap: frame {i} has {} bytes; pktgen sends frames of at most {MAX_FRAME}",
                trace.frame(i).len()
            )));
        }
        sender.replay = Some(Arc::new(trace));
        receiver.count_all = true;
    }

    // Lcores: the ones after the main lcore send and receive; with one, it does both; with
    // none, the main lcore does both and reports in between.
    let main = eal.main_lcore();
    let workers: Vec<_> = eal
        .lcores()
        .iter()
        .copied()
        .filter(|l| l.id != main.id)
        .collect();
    let mut handles = Vec::new();
    let mut on_main = (None, None);
    match workers.len() {
        0 => on_main = (Some(sender), Some(receiver)),
        1 => handles.push(eal.spawn(workers[0], move || {
            gen::run(Some(sender), Some(receiver), None)
        })?),
        _ => {
            handles.push(eal.spawn(workers[0], move || gen::run(Some(sender), None, None))?);
            handles.push(eal.spawn(workers[1], move || gen::run(None, Some(receiver), None))?);
        }
    }

    let start = tsc::rdtsc();
    let mut rep = report::Reporter::new(shared.clone(), start, !opts.json);
    let period = (opts.period > 0).then(|| tsc::hz() * opts.period);
    let deadline = opts.duration.map(|s| start + (s * tsc::hz() as f64) as u64);
    let mut drain_until: Option<u64> = None;
    {
        let eal_ref = &eal;
        let mut tick = |now: u64| -> bool {
            if period.is_some_and(|p| rep.due(now, p)) {
                rep.print_row(now);
            }
            // Telemetry's ethdev commands (pktgen registers none of its own).
            eal_ref.serve_telemetry(&mut |_, _| None);
            if deadline.is_some_and(|d| now >= d) {
                return true;
            }
            // --count without --duration: stop once everything came back or a second
            // after the last frame went out.
            if opts.count > 0 && opts.duration.is_none() && shared.tx_done.load(Ordering::Acquire) {
                let d = *drain_until.get_or_insert(now + tsc::hz());
                let all =
                    shared.received.load(Ordering::Relaxed) >= shared.sent.load(Ordering::Relaxed);
                return all || now >= d;
            }
            false
        };
        if let (Some(_), _) | (_, Some(_)) = on_main {
            let (s, r) = on_main;
            gen::run(s, r, Some(&mut tick));
        } else {
            lcore::idle_until_stop(&mut tick);
        }
    }
    lcore::request_stop();
    let mut done = Vec::new();
    for h in handles {
        match h.join() {
            Ok(v) => done.push(v),
            Err(_) => eprintln!("pktgen: an lcore panicked"),
        }
    }
    let end = tsc::rdtsc();
    for &p in &ports {
        eal.port_mut(p)?.stop()?;
    }
    // Queues (and buffers devices still hold) go only after their ports stopped; the
    // summary's pool line is read after that.
    drop(done);
    let summary = rep.summary(end, &pool);
    if opts.json {
        println!("{}", summary.to_json());
    } else {
        print!("{summary}");
    }
    if let Some(w) = pool.leak_warning() {
        eprintln!("pktgen: warning: {w}");
    }
    Ok(())
}
