//! skeleton: the smallest complete app, DPDK's "basic forwarding" sample on this
//! framework. Ports are paired, 0 <-> 1, 2 <-> 3, ...: what one receives the other
//! sends, unchanged, in bursts of 32, all on one lcore. Ctrl-C stops it and prints what
//! each port counted.
//!
//! ```text
//! skeleton [EAL options]
//! skeleton --no-huge -m 256 --vdev net_null0 --vdev net_null1
//! ```
//!
//! Read it top to bottom: EAL, mempool, ports, the loop, a clean stop.

use clap::{CommandFactory, Parser};
use pmd_core::ethdev::{PortConf, PortId};
use pmd_core::{lcore, Eal, Error, Mempool, PktBatch};
use std::process::ExitCode;
use std::time::Duration;

/// Descriptors per rx and tx ring (brought within each PMD's limits).
const RING_SIZE: u16 = 1024;
/// Buffers per port: enough for its rx ring, its tx ring and the bursts in flight.
const MBUFS_PER_PORT: u32 = 8191;
/// Buffers each lcore keeps at hand, away from the pool's shared ring.
const CACHE_SIZE: u32 = 250;
/// Packets per receive.
const BURST: usize = 32;

/// No options of its own: clap answers `-h` and refuses anything else.
#[derive(Parser)]
#[command(
    name = "skeleton",
    about = "Forwards port 0 <-> 1, 2 <-> 3, ... unchanged"
)]
struct Opts {}

fn main() -> ExitCode {
    // 1. The EAL. Its options come before `--`, ours after; both are checked before
    // anything is set up, and a wrong one is refused in one line with exit code 2. Then
    // it probes the `--vdev` devices into ports 0, 1, ... and takes Ctrl-C.
    let args: Vec<String> = std::env::args().collect();
    let help = || Opts::command().render_help().to_string();
    let parse = |app: &[String]| {
        Opts::try_parse_from(app).map_err(|e| {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { 2 } else { 0 })
        })
    };
    let (eal, _opts) = match Eal::from_args_for_app_checked(&args, pmd_drivers::ALL, help, parse) {
        Ok(v) => v,
        Err(code) => return code,
    };
    match run(eal) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skeleton: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

fn run(mut eal: Eal) -> Result<(), Error> {
    let n = eal.ports().len();
    if n == 0 || n % 2 == 1 {
        let why =
            format!("needs an even number of ports, got {n} (--vdev net_null0 --vdev net_null1)");
        return Err(Error::Config(why));
    }
    // 2. The mempool: every packet buffer the ports receive into comes from it, and goes
    // back to it when the `Mbuf` holding it is dropped (sent, or freed).
    let pool = Mempool::create("mbuf_pool", MBUFS_PER_PORT * n as u32, CACHE_SIZE)?;

    // 3. The ports: configure (one rx and one tx queue), set the queues up, start. The
    // queue handles are owned values: whoever holds one polls it.
    let (mut rx, mut tx) = (Vec::new(), Vec::new());
    for p in 0..n as PortId {
        let port = eal.port_mut(p)?;
        port.configure(&PortConf::default())?;
        let desc = port.info().clamp_desc(RING_SIZE);
        let mut q = port.setup_rx_queue(0, desc, &pool)?;
        q.set_burst(BURST);
        rx.push(q);
        tx.push(port.setup_tx_queue(0, desc)?);
        port.set_promiscuous(true)?; // forward frames for any MAC, not just ours
        port.start()?;
        let link = port.wait_link_up(Duration::from_secs(2));
        println!(
            "Port {p} ({}): MAC {}, link {link}",
            port.name(),
            port.mac_addr()
        );
    }
    // Port p's packets leave by port p ^ 1: pair each rx queue with that tx queue.
    tx.chunks_exact_mut(2).for_each(|pair| pair.swap(0, 1));
    let mut dropped = vec![0u64; n];
    println!(
        "Forwarding on lcore {} (Ctrl-C to stop)",
        eal.main_lcore().id
    );

    // 4. The loop: receive a burst, send it, free (and count) what the tx ring had no
    // room for. Nothing in a frame changes. `stop_requested` turns true on Ctrl-C.
    let mut batch = PktBatch::new();
    while !lcore::stop_requested() {
        for (p, (rx, tx)) in rx.iter_mut().zip(tx.iter_mut()).enumerate() {
            if rx.rx_burst(&mut batch) == 0 {
                tx.tx_flush(); // idle: send what the queue holds back
                continue;
            }
            tx.tx_burst(&mut batch);
            dropped[p ^ 1] += batch.len() as u64;
            batch.clear();
        }
    }

    // 5. A clean stop: ports first, then the queues (a device may still hold their
    // buffers until it stops), then the counts.
    for p in 0..n as PortId {
        eal.port_mut(p)?.stop()?;
    }
    drop((rx, tx));
    for (p, port) in eal.ports().iter().enumerate() {
        let s = port.stats();
        println!(
            "Port {p}: received {}, sent {}, dropped {} (tx full) + {} (rx missed) + {} (tx errors)",
            s.ipackets, s.opackets, dropped[p], s.imissed, s.oerrors
        );
    }
    println!("Bye");
    Ok(())
}
