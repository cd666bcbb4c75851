//! The tx-only / rx-only loop behind each PMD's `*_perf` example (what the drivers'
//! `bench.sh` scripts run for our side): one port, one lcore, the public ethdev API,
//! `rx|tx X Mpps` once a second and a final `average X Mpps` line.
//!
//! ```text
//! NAME [EAL options] -- tx|rx [--duration SECS] [--size 64] [--burst 32]
//! ```

use pmd_core::ethdev::PortConf;
use pmd_core::ethdev::{Driver, MacAddr};
use pmd_core::mbuf::PktBatch;
use pmd_core::{lcore, Eal, Error, Mempool};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The frame a tx run sends (`size` bytes in all, the port's MAC as source).
#[derive(Clone, Copy, Debug)]
pub enum Frame {
    /// To 02:00:00:00:00:02, EtherType 0x88b5 (local experimental), zero payload.
    Experimental,
    /// testpmd txonly's frame: to `dst`, IPv4 198.18.0.1 -> 198.18.0.2, UDP 9 -> 9, zero
    /// payload (so a kernel peer spends the same on it whoever sends it).
    TxonlyUdp {
        /// Destination MAC.
        dst: [u8; 6],
    },
}

impl Frame {
    fn build(self, size: usize, src: MacAddr) -> Vec<u8> {
        let mut f = vec![0u8; size];
        f[6..12].copy_from_slice(&src.0);
        match self {
            Frame::Experimental => {
                f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
                f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
            }
            Frame::TxonlyUdp { dst } => {
                let spec = pmd_net::build::Frame4 {
                    dont_fragment: false,
                    l4_checksum: false,
                    ..pmd_net::build::Frame4::udp(
                        dst,
                        src.0,
                        [198, 18, 0, 1],
                        [198, 18, 0, 2],
                        9,
                        9,
                    )
                };
                // Cannot fail: callers ask for frames of 64 bytes and more.
                let _ = spec.write(&mut f);
            }
        }
        f
    }
}

/// What differs between the drivers' perf examples.
pub struct PerfConf<'a> {
    /// Program name, for messages.
    pub name: &'static str,
    /// The drivers the EAL may probe.
    pub drivers: &'a [&'a dyn Driver],
    /// How long to wait for the link (the peer) before running.
    pub link_wait: Duration,
    /// What tx sends.
    pub frame: Frame,
    /// Count tx from the port's `opackets` instead of what `tx_burst` took (for drivers
    /// whose tx queue also consumes the packets the kernel refused).
    pub tx_count_from_stats: bool,
    /// Loop iterations between clock checks.
    pub check_every: u32,
    /// Decimals of the Mpps figures.
    pub decimals: usize,
    /// xstats whose name starts with one of these are printed at the end.
    pub xstat_prefixes: &'static [&'static str],
}

struct Opts {
    tx: bool,
    duration: Option<f64>,
    size: usize,
    burst: usize,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut it = args.iter().skip(1);
    let mode = it.next().ok_or("expected mode tx or rx")?;
    let tx = match mode.as_str() {
        "tx" => true,
        "rx" => false,
        m => return Err(format!("unknown mode {m:?}: expected tx or rx")),
    };
    let mut o = Opts {
        tx,
        duration: None,
        size: 64,
        burst: 32,
    };
    while let Some(a) = it.next() {
        let v = it.next().ok_or(format!("{a} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{a} {v}: {e}");
        match a.as_str() {
            "--duration" => o.duration = Some(v.parse().map_err(|e| bad(&e))?),
            "--size" => o.size = v.parse().map_err(|e| bad(&e))?,
            "--burst" => o.burst = v.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown option {a}")),
        }
    }
    if !(60..=1514).contains(&o.size) || !(1..=64).contains(&o.burst) {
        return Err("--size must be 60..=1514 and --burst 1..=64".into());
    }
    Ok(o)
}

fn run(c: &PerfConf<'_>, args: &[String]) -> Result<(), Error> {
    let (mut eal, app) = Eal::from_args(args, c.drivers)?;
    let o = parse(&app).map_err(Error::Config)?;
    let pool = Mempool::create("perf", 8191, 256)?;
    let port = eal.port_mut(0)?;
    port.configure(&PortConf::default())?;
    let mut rx = port.setup_rx_queue(0, 0, &pool)?;
    let mut tx = port.setup_tx_queue(0, 0)?;
    port.start()?;
    let link = port.wait_link_up(c.link_wait);
    println!("port 0 link {link}, mac {}", port.mac_addr());
    rx.set_burst(o.burst);
    let frame = c.frame.build(o.size, port.mac_addr());
    let dec = c.decimals;
    let start = Instant::now();
    let end = o.duration.map(|d| start + Duration::from_secs_f64(d));
    let mut next_report = start + Duration::from_secs(1);
    let mut last = 0u64;
    let mut b = PktBatch::new();
    let mut count = 0u64;
    let mut iter = 0u32;
    loop {
        if o.tx {
            let want = o.burst - b.len().min(o.burst);
            if want > 0 {
                if let Some(ms) = pool.alloc_bulk(&mut b, want) {
                    for m in ms {
                        m.copy_from(&frame);
                    }
                }
            }
            count += tx.tx_burst(&mut b) as u64;
        } else {
            count += rx.rx_burst(&mut b) as u64;
            b.clear();
        }
        iter = iter.wrapping_add(1);
        if iter.is_multiple_of(c.check_every) {
            let now = Instant::now();
            if now >= next_report {
                if o.tx && c.tx_count_from_stats {
                    count = eal.ports()[0].stats().opackets;
                }
                let secs = (now - next_report + Duration::from_secs(1)).as_secs_f64();
                println!(
                    "{} {:.dec$} Mpps",
                    if o.tx { "tx" } else { "rx" },
                    (count - last) as f64 / secs / 1e6
                );
                last = count;
                next_report = now + Duration::from_secs(1);
            }
            if lcore::stop_requested() || end.is_some_and(|e| now >= e) {
                break;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let s = eal.ports()[0].stats();
    if o.tx && c.tx_count_from_stats {
        count = s.opackets;
    }
    println!(
        "average {:.dec$} Mpps ({count} packets in {secs:.1} s)",
        count as f64 / secs / 1e6
    );
    println!("port stats: {s:?}");
    if !c.xstat_prefixes.is_empty() {
        let xs: Vec<String> = eal.ports()[0]
            .xstats()
            .into_iter()
            .filter(|(k, _)| c.xstat_prefixes.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("xstats: {}", xs.join(" "));
    }
    drop(b);
    eal.port_mut(0)?.stop()?;
    drop(rx);
    drop(tx);
    Ok(())
}

/// Runs a perf example with the process's arguments.
pub fn main(c: &PerfConf<'_>) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match run(c, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Help(h)) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", c.name);
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txonly_frame_has_a_valid_ipv4_header() {
        let f = Frame::TxonlyUdp { dst: [0; 6] }.build(64, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(f.len(), 64);
        assert_eq!(pmd_core::csum::ones_complement_sum(&f[14..34]), 0xffff);
        assert_eq!(&f[38..40], &30u16.to_be_bytes());
        let e = Frame::Experimental.build(60, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(&e[12..14], &[0x88, 0xb5]);
    }
}
