//! memif_perf: blasts 64-byte frames through a memif port (`tx`) or receives
//! and frees (`rx`), printing packets per second every second, like testpmd's
//! txonly/rxonly forwarding modes.
//!
//! ```text
//! memif_perf [EAL options] -- tx|rx [--duration SECS] [--size 64] [--burst 32]
//! e.g. memif_perf -l 0 --no-pci --vdev net_memif0,role=client,socket=/tmp/memif.sock -- rx --duration 10
//!      memif_perf -l 1 --no-pci --vdev net_memif0,role=server,socket=/tmp/memif.sock -- tx
//! ```
//! Waits up to 30 s for the peer (the link), then runs on the main lcore through the public
//! ethdev API. Stops on SIGINT/SIGTERM or after `--duration`; prints a final `average Mpps`
//! line.

use pmd_core::ethdev::PortConf;
use pmd_core::mbuf::PktBatch;
use pmd_core::{lcore, Eal, Error, Mempool};
use std::process::ExitCode;
use std::time::{Duration, Instant};

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

fn run(args: &[String]) -> Result<(), Error> {
    let (mut eal, app) = Eal::from_args(args, &[&pmd_memif::DRIVER])?;
    let o = parse(&app).map_err(Error::Config)?;
    let pool = Mempool::create("perf", 8191, 256)?;
    let port = eal.port_mut(0)?;
    port.configure(&PortConf::default())?;
    let mut rx = port.setup_rx_queue(0, 0, &pool)?;
    let mut tx = port.setup_tx_queue(0, 0)?;
    port.start()?;
    let link = port.wait_link_up(Duration::from_secs(30));
    println!("port 0 link {link}, mac {}", port.mac_addr());
    rx.set_burst(o.burst);
    let mut template = vec![0u8; o.size];
    template[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    template[6..12].copy_from_slice(&port.mac_addr().0);
    template[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
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
                        m.append(o.size).expect("room").copy_from_slice(&template);
                    }
                }
            }
            count += tx.tx_burst(&mut b) as u64;
        } else {
            count += rx.rx_burst(&mut b) as u64;
            b.clear();
        }
        iter = iter.wrapping_add(1);
        if iter.is_multiple_of(1024) {
            let now = Instant::now();
            if now >= next_report {
                let secs = (now - next_report + Duration::from_secs(1)).as_secs_f64();
                println!(
                    "{} {:.2} Mpps",
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
    println!(
        "average {:.2} Mpps ({count} packets in {secs:.1} s)",
        count as f64 / secs / 1e6
    );
    let s = eal.ports()[0].stats();
    println!("port stats: {s:?}");
    drop(b);
    eal.port_mut(0)?.stop()?;
    drop(rx);
    drop(tx);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Help(h)) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("memif_perf: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
