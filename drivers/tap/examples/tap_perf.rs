//! tap_perf: blasts 64-byte IPv4/UDP frames (like testpmd's txonly) through a tap port
//! (`tx`), or receives and frees (`rx`), on one lcore through the public ethdev API,
//! printing packets per second every second.
//!
//! ```text
//! tap_perf [EAL options] -- tx|rx [--duration SECS] [--size 64] [--burst 32]
//! e.g. tap_perf -l 1 --no-pci --vdev net_tap0,iface=dtap0 -- tx --duration 10
//! ```
//! Stops on SIGINT/SIGTERM or after `--duration`; prints a final `average Mpps` line.

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

/// testpmd txonly's default frame: to 02:00:00:00:00:00, IPv4 198.18.0.1 -> 198.18.0.2,
/// UDP 9 -> 9, `size` bytes in all.
fn template(size: usize, src_mac: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; size];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0]);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (size - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
    ip[16..20].copy_from_slice(&[198, 18, 0, 2]);
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&9u16.to_be_bytes());
    udp[2..4].copy_from_slice(&9u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
}

fn run(args: &[String]) -> Result<(), Error> {
    let (mut eal, app) = Eal::from_args(args, &[&pmd_tap::DRIVER])?;
    let o = parse(&app).map_err(Error::Config)?;
    let pool = Mempool::create("perf", 8191, 256)?;
    let port = eal.port_mut(0)?;
    port.configure(&PortConf::default())?;
    let mut rx = port.setup_rx_queue(0, 0, &pool)?;
    let mut tx = port.setup_tx_queue(0, 0)?;
    port.start()?;
    let link = port.wait_link_up(Duration::from_secs(10));
    println!("port 0 link {link}, mac {}", port.mac_addr());
    rx.set_burst(o.burst);
    let frame = template(o.size, port.mac_addr().0);
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
            tx.tx_burst(&mut b);
        } else {
            count += rx.rx_burst(&mut b) as u64;
            b.clear();
        }
        iter = iter.wrapping_add(1);
        if iter.is_multiple_of(64) {
            let now = Instant::now();
            if now >= next_report {
                if o.tx {
                    // Packets the kernel took (tx_burst also consumes refused ones).
                    count = eal.ports()[0].stats().opackets;
                }
                let secs = (now - next_report + Duration::from_secs(1)).as_secs_f64();
                println!(
                    "{} {:.3} Mpps",
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
    if o.tx {
        count = s.opackets;
    }
    println!(
        "average {:.3} Mpps ({count} packets in {secs:.1} s)",
        count as f64 / secs / 1e6
    );
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
            eprintln!("tap_perf: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
