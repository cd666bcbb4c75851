//! `pmd-dumpcap`: captures the packets of a running app's ports into a pcapng file, as
//! DPDK's `dpdk-dumpcap` does for DPDK apps.
//!
//! ```text
//! pmd-dumpcap [-i PORT|NAME]... [-w FILE] [-c COUNT] [-a duration:SECS|filesize:KB|packets:N]
//!             [-s SNAPLEN] [-f FILTER] [-Q in|out|inout] [-B KIB] [--file-prefix PREFIX]
//!             [-D] [-d] [-q] [FILTER WORDS...]
//! ```
//!
//! The app (l2fwd, testpmd, pktgen or any app built on pmd-core with its telemetry on)
//! copies the packets its lcores receive and send on the port into shared rings that
//! this tool drains (`pmd_core::pdump`); a filter is compiled here by libpcap and run
//! by the app, so only matching packets are copied. Ctrl-C, `-c` or `-a` end the
//! capture, which also ends the app's copying; so does killing this tool.

mod filter;
mod pcapng;

use clap::Parser;
use pmd_core::pdump::{self, now_ns, Capture, CaptureRequest, Dir, PdumpError, RingCounters};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Captures packets of a running app's ports into a pcapng file.
#[derive(Parser, Debug)]
#[command(name = "pmd-dumpcap", version)]
struct Opts {
    /// Port to capture: its id or device name (repeat for several; default: the first port).
    #[arg(short = 'i', value_name = "PORT|NAME")]
    interfaces: Vec<String>,
    /// Output file (`-` for standard output); default /tmp/pmd-dumpcap_PORT_SECONDS.pcapng.
    #[arg(short = 'w', value_name = "FILE")]
    file: Option<String>,
    /// Stop after this many packets.
    #[arg(short = 'c', value_name = "COUNT")]
    count: Option<u64>,
    /// Stop condition: duration:SECS, filesize:KB or packets:N (repeatable).
    #[arg(short = 'a', value_name = "COND", value_parser = parse_autostop)]
    autostop: Vec<AutoStop>,
    /// Bytes kept of each packet (1..=65535).
    #[arg(short = 's', value_name = "SNAPLEN", default_value_t = 65535)]
    snaplen: u32,
    /// Capture filter, pcap-filter(7) syntax (or give it as the last words).
    #[arg(short = 'f', value_name = "FILTER")]
    filter: Option<String>,
    /// Direction: in (received), out (sent) or inout.
    #[arg(short = 'Q', value_name = "DIR", default_value = "inout", value_parser = ["in", "out", "inout"])]
    direction: String,
    /// Ring size per queue, KiB (a power of two, 256..=262144).
    #[arg(short = 'B', value_name = "KIB", default_value_t = (pdump::DEFAULT_RING_SIZE >> 10) as u64)]
    buffer_kib: u64,
    /// The app's --file-prefix.
    #[arg(long = "file-prefix", value_name = "PREFIX", default_value = pmd_core::options::DEFAULT_FILE_PREFIX)]
    file_prefix: String,
    /// List the app's ports and exit.
    #[arg(short = 'D')]
    list: bool,
    /// Print the compiled filter (as tcpdump -ddd) and exit.
    #[arg(short = 'd')]
    dump_filter: bool,
    /// Print nothing but errors.
    #[arg(short = 'q')]
    quiet: bool,
    /// Filter words, joined with spaces (tcpdump style).
    #[arg(value_name = "FILTER WORDS", trailing_var_arg = true)]
    words: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum AutoStop {
    Duration(Duration),
    FileSize(u64),
    Packets(u64),
}

fn parse_autostop(s: &str) -> Result<AutoStop, String> {
    let bad = || format!("{s:?}: give duration:SECS, filesize:KB or packets:N");
    let (k, v) = s.split_once(':').ok_or_else(bad)?;
    match k {
        "duration" => v
            .parse::<f64>()
            .ok()
            .filter(|d| d.is_finite() && *d > 0.0 && *d < 1e9)
            .map(|d| AutoStop::Duration(Duration::from_secs_f64(d)))
            .ok_or_else(bad),
        "filesize" => v
            .parse()
            .map(|kb: u64| AutoStop::FileSize(kb * 1000))
            .map_err(|_| bad()),
        "packets" => v.parse().map(AutoStop::Packets).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// A failure, with the exit code it gives (2: wrong input, nothing was captured).
struct Fail(u8, String);

impl From<PdumpError> for Fail {
    fn from(e: PdumpError) -> Fail {
        let code = if matches!(e, PdumpError::Refused(_)) {
            2
        } else {
            1
        };
        Fail(code, e.to_string())
    }
}

fn main() -> ExitCode {
    let opts = match Opts::try_parse() {
        Ok(o) => o,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("pmd-dumpcap: {msg}");
            ExitCode::from(code)
        }
    }
}

/// What the options ask for, checked before anything is opened.
struct Plan {
    filter: Option<Vec<libc::sock_filter>>,
    ring_size: usize,
    max_packets: Option<u64>,
    max_bytes: Option<u64>,
    duration: Option<Duration>,
}

fn plan(o: &Opts) -> Result<Plan, Fail> {
    let wrong = |m: String| Fail(2, m);
    if !(1..=pdump::ring::MAX_SNAPLEN).contains(&o.snaplen) {
        return Err(wrong(format!(
            "-s {}: the snapshot length is 1..={}",
            o.snaplen,
            pdump::ring::MAX_SNAPLEN
        )));
    }
    let (lo, hi) = (pdump::ring::MIN_SIZE >> 10, pdump::ring::MAX_SIZE >> 10);
    if !(lo as u64..=hi as u64).contains(&o.buffer_kib) || !o.buffer_kib.is_power_of_two() {
        return Err(wrong(format!(
            "-B {}: the ring size is a power of two from {lo} to {hi} KiB",
            o.buffer_kib
        )));
    }
    let expr = match (&o.filter, o.words.is_empty()) {
        (Some(_), false) => {
            return Err(wrong(
                "give the filter either with -f or as the last words, not both".into(),
            ))
        }
        (Some(f), true) => Some(f.clone()),
        (None, false) => Some(o.words.join(" ")),
        (None, true) => None,
    };
    let filter = expr
        .filter(|e| !e.trim().is_empty())
        .map(|e| filter::compile(&e))
        .transpose()
        .map_err(wrong)?;
    let mut p = Plan {
        filter,
        ring_size: (o.buffer_kib as usize) << 10,
        max_packets: o.count,
        max_bytes: None,
        duration: None,
    };
    for a in &o.autostop {
        match *a {
            AutoStop::Duration(d) => p.duration = Some(d),
            AutoStop::FileSize(b) => p.max_bytes = Some(b),
            AutoStop::Packets(n) => p.max_packets = Some(p.max_packets.map_or(n, |c| c.min(n))),
        }
    }
    Ok(p)
}

fn run(o: &Opts) -> Result<(), Fail> {
    let plan = plan(o)?;
    if o.dump_filter {
        print!(
            "{}",
            filter::dump(plan.filter.as_deref().unwrap_or_default())
        );
        return Ok(());
    }
    if o.list {
        for p in pdump::list_ports(&o.file_prefix)? {
            println!(
                "{}. {} (rx queues {}, tx queues {}{})",
                p.id,
                p.name,
                p.rx_queues,
                p.tx_queues,
                if p.capturing { ", being captured" } else { "" }
            );
        }
        return Ok(());
    }
    let interfaces = if o.interfaces.is_empty() {
        let ports = pdump::list_ports(&o.file_prefix)?;
        let first = ports
            .first()
            .ok_or_else(|| Fail(2, "the app has no ports to capture".into()))?;
        vec![first.id.to_string()]
    } else {
        o.interfaces.clone()
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| Fail(1, format!("installing the signal handler: {e}")))?;
    }
    let (rx, tx) = (o.direction != "out", o.direction != "in");
    let mut caps = Vec::new();
    for i in &interfaces {
        caps.push(pdump::start_capture(
            &o.file_prefix,
            &CaptureRequest {
                port: i.clone(),
                rx,
                tx,
                snaplen: o.snaplen,
                ring_size: plan.ring_size,
                filter: plan.filter.clone(),
            },
        )?);
    }
    let path = o.file.clone().unwrap_or_else(|| default_path(&caps));
    let sink: Box<dyn Write> = if path == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        let f = std::fs::File::create(&path)
            .map_err(|e| Fail(2, format!("-w {path}: {e}; choose a writable file")))?;
        Box::new(f)
    };
    if !o.quiet {
        eprintln!("File: {path}");
        for c in &caps {
            eprintln!("Capturing on '{}' (port {})", c.name(), c.port());
        }
    }
    let ifaces: Vec<(String, String)> = caps
        .iter()
        .map(|c| {
            (
                c.name().to_string(),
                format!("port {} of the app", c.port()),
            )
        })
        .collect();
    let out = pcapng::Output::new(
        std::io::BufWriter::with_capacity(1 << 20, sink),
        &ifaces,
        o.snaplen,
    )
    .map_err(|e| Fail(1, e))?;
    let report = capture_loop(&mut caps, out, &plan, &stop).map_err(|e| Fail(1, e))?;
    if !o.quiet {
        eprintln!("Packets captured: {}", report.written.iter().sum::<u64>());
        for (c, k) in caps.iter().zip(&report.counters) {
            let seen = k.packets + k.drops;
            eprintln!(
                "Packets received/dropped on interface '{}': {}/{} ({:.1}%)",
                c.name(),
                seen,
                k.drops,
                if seen == 0 {
                    0.0
                } else {
                    100.0 * k.drops as f64 / seen as f64
                }
            );
        }
        if report.app_gone {
            eprintln!("pmd-dumpcap: the app ended the capture (it stopped)");
        }
    }
    Ok(())
}

fn default_path(caps: &[Capture]) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = caps.first().map_or("none", |c| c.name()).replace('/', "_");
    format!("/tmp/pmd-dumpcap_{name}_{secs}.pcapng")
}

/// What a capture did.
struct Report {
    written: Vec<u64>,
    counters: Vec<RingCounters>,
    app_gone: bool,
}

/// Drains the captures into `out` until a stop condition; then writes the statistics.
fn capture_loop<W: Write>(
    caps: &mut [Capture],
    mut out: pcapng::Output<W>,
    plan: &Plan,
    stop: &AtomicBool,
) -> Result<Report, String> {
    let (start, start_ns) = (Instant::now(), now_ns());
    let mut written = vec![0u64; caps.len()];
    let mut total = 0u64;
    let mut idle = 0u32;
    let mut app_gone = false;
    let limit = plan.max_packets.unwrap_or(u64::MAX);
    loop {
        let ending =
            stop.load(Ordering::Relaxed) || plan.duration.is_some_and(|d| start.elapsed() >= d);
        let mut got = 0;
        for (i, cap) in caps.iter_mut().enumerate() {
            let mut failed = Ok(());
            got += cap
                .drain(1024, |dir: Dir, _q, r| {
                    if total >= limit || failed.is_err() {
                        return;
                    }
                    failed = out.packet(i as u32, dir, r.ts_ns, r.orig_len, r.data);
                    written[i] += 1;
                    total += 1;
                })
                .map_err(|e| e.to_string())?;
            failed?;
        }
        if ending || total >= limit || plan.max_bytes.is_some_and(|b| out.bytes >= b) {
            break;
        }
        if got == 0 {
            if caps.iter().any(Capture::app_gone) {
                app_gone = true;
                break;
            }
            idle = (idle + 1).min(5);
            std::thread::sleep(Duration::from_micros(30 << idle));
        } else {
            idle = 0;
        }
    }
    let end_ns = now_ns();
    let counters: Vec<RingCounters> = caps.iter().map(Capture::counters).collect();
    for (i, c) in counters.iter().enumerate() {
        out.statistics(i as u32, start_ns, end_ns, *c, written[i])?;
    }
    out.finish()?;
    Ok(Report {
        written,
        counters,
        app_gone,
    })
}
