//! What the two-port examples (`nat44`, `lb`) share around their logic: the parsers of
//! their common options, the start (options checked, then the EAL), and the port loop.
//! `skeleton` spells the same steps out in its `main`; read it first.
//!
//! The loop runs on one lcore: frames from port 0 go out of port 1 and the other way,
//! each handed to a [`Middlebox`] on the way, which may rewrite it or drop it (and
//! counts what it drops); once a second the middlebox gets a [`Middlebox::tick`] (to
//! expire idle flows).

use pmd_core::ethdev::{PortConf, PortId, RxQueueHandle, TxQueueHandle};
use pmd_core::{lcore, numarg, tsc, Eal, Error, Mempool, PktBatch};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Duration;

/// A unicast IPv4 address, `A.B.C.D` (not 0.0.0.0, broadcast or multicast): an address
/// an app can translate to or serve on.
pub fn unicast(s: &str) -> Result<Ipv4Addr, String> {
    let a: Ipv4Addr = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 address (A.B.C.D)"))?;
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
        return Err(format!("{a} is not a unicast address"));
    }
    Ok(a)
}

/// A unicast IPv4 address and a port other than 0, `A.B.C.D:PORT`.
pub fn endpoint(s: &str) -> Result<SocketAddrV4, String> {
    let (a, p) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not an address and port: expected A.B.C.D:PORT"))?;
    Ok(SocketAddrV4::new(
        unicast(a)?,
        numarg::whole::<u16>(p, 1..=65535)?,
    ))
}

/// Seconds a flow may stay idle (`--timeout`): 1 to [`numarg::MAX_SECONDS`].
pub fn timeout(s: &str) -> Result<u64, String> {
    numarg::whole::<u64>(s, 1..=numarg::MAX_SECONDS)
}

/// Most flows at once (`--max-flows`): 1 to 2^20.
pub fn max_flows(s: &str) -> Result<u32, String> {
    numarg::whole::<u32>(s, 1..=1 << 20)
}

/// An app between two ports, called by [`run`] for every frame and once a second.
pub trait Middlebox {
    /// Handles `frame` (a whole Ethernet frame, writable in place) received on port
    /// `from` (0 or 1) at `now` (whole seconds since the loop started); true: send it
    /// out of the other port, false: free it (the middlebox has counted why).
    fn handle(&mut self, from: PortId, frame: &mut [u8], now: u64) -> bool;
    /// Called after each round of bursts, when the middlebox's flow readers hold
    /// nothing they read (`FlowReader::quiescent`).
    fn quiescent(&self);
    /// Called about once a second, at `now` (to expire idle flows).
    fn tick(&mut self, now: u64);
}

/// The `main` of an example named `name`: checks the EAL's options (before `--`) and
/// the app's (after, with `parse`; `help` renders their help) before anything is set
/// up, refusing a wrong one in one line with exit code 2; then initialises the EAL and
/// hands it to `body` with what `parse` made. An error of `body` is printed in one line,
/// with its exit code.
pub fn main<T>(
    name: &str,
    help: impl FnOnce() -> clap::Command,
    parse: impl FnOnce(&[String]) -> Result<T, clap::Error>,
    body: impl FnOnce(Eal, T) -> Result<(), Error>,
) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let help = || help().render_help().to_string();
    let parse = |app: &[String]| {
        parse(app).map_err(|e| {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { 2 } else { 0 })
        })
    };
    let (eal, opts) = match Eal::from_args_for_app_checked(&args, pmd_drivers::ALL, help, parse) {
        Ok(v) => v,
        Err(code) => return code,
    };
    match body(eal, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Descriptors per ring, and buffers and cache of the pool (as the skeleton's).
const RING_SIZE: u16 = 1024;
const MBUFS: u32 = 2 * 8191;
const CACHE_SIZE: u32 = 250;

/// Sets port `p` up with one rx and one tx queue, promiscuous, and starts it.
fn setup_port(
    eal: &mut Eal,
    p: PortId,
    role: &str,
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
    println!(
        "Port {p} ({role}, {}): MAC {}, link {link}",
        port.name(),
        port.mac_addr()
    );
    Ok((rx, tx))
}

/// Runs `mb` between ports 0 and 1 (`roles` names them in messages): sets both up,
/// prints `Forwarding (Ctrl-C to stop)`, loops until Ctrl-C, stops the ports and prints
/// what each counted. Returns the frames each way (0 to 1, 1 to 0) freed because the tx
/// ring was full.
pub fn run(mut eal: Eal, roles: [&str; 2], mb: &mut impl Middlebox) -> Result<[u64; 2], Error> {
    if eal.ports().len() != 2 {
        return Err(Error::Config(format!(
            "needs two ports, 0 {} and 1 {}, got {} (--vdev net_af_packet0,iface=IF0 \
             --vdev net_af_packet1,iface=IF1)",
            roles[0],
            roles[1],
            eal.ports().len()
        )));
    }
    let pool = Mempool::create("mbuf_pool", MBUFS, CACHE_SIZE)?;
    let (rx0, tx0) = setup_port(&mut eal, 0, roles[0], &pool)?;
    let (rx1, tx1) = setup_port(&mut eal, 1, roles[1], &pool)?;
    println!("Forwarding (Ctrl-C to stop)");

    // Port 0's rx with port 1's tx, and the other way.
    let mut dirs = [(0, rx0, tx1), (1, rx1, tx0)];
    // The flows' clock: whole seconds since the start, from the TSC.
    let (start, hz) = (tsc::rdtsc(), tsc::hz().max(1));
    let mut next_tick = start + hz;
    let mut tx_full = [0u64; 2];
    let mut batch = PktBatch::new();
    while !lcore::stop_requested() {
        let tsc_now = tsc::rdtsc();
        let now = tsc_now.saturating_sub(start) / hz;
        for (from, rx, tx) in dirs.iter_mut() {
            if rx.rx_burst(&mut batch) == 0 {
                tx.tx_flush();
                continue;
            }
            // Each packet in place (ports without scatter receive each into one buffer:
            // `data_mut` is all of it); those dropped are counted by `mb` and freed by
            // `retain`.
            batch.retain(|m| mb.handle(*from, m.data_mut(), now));
            tx.tx_burst(&mut batch);
            tx_full[usize::from(*from)] += batch.len() as u64;
            batch.clear();
        }
        mb.quiescent();
        if tsc_now >= next_tick {
            mb.tick(now);
            next_tick = tsc_now + hz;
        }
    }

    for p in [0, 1] {
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
    Ok(tx_full)
}
