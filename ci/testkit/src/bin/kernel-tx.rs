//! The kernel's own transmit limit on an interface, for the kernel-bound rows of the
//! benchmarks: no DPDK, no ring, just the kernel's shortest raw path.
//!
//! ```text
//! kernel-tx IFACE SECS SIZE
//! ```
//!
//! Sends SIZE-byte frames (Ethernet/IPv4/UDP, the frame testpmd's txonly sends on port 0:
//! 198.18.0.1 -> 198.18.0.2, UDP 9 -> 9, destination 02:00:00:00:00:00, source the
//! interface's address) out of IFACE for SECS seconds from one `AF_PACKET` socket with
//! `PACKET_QDISC_BYPASS`, 256 per `sendmmsg` call, retrying while the device queue is full.
//! Prints one line: `kernel-tx IFACE: SENT frames in SECS s, X Mpps (Y ENOBUFS)`. What
//! the peer of a veth pair receives is the figure the rows compare (its `rx_packets`).

use pmd_net::build::Frame4;
use pmd_testkit::RawSock;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Frames per `sendmmsg` call.
const BATCH: usize = 256;
/// Ethernet + IPv4 + UDP headers.
const HDRS: usize = 14 + 20 + 8;

fn usage(msg: &str) -> ExitCode {
    eprintln!("kernel-tx: {msg}\nusage: kernel-tx IFACE SECS SIZE (SIZE 60..=9000 bytes, no FCS)");
    ExitCode::from(2)
}

/// The interface's MAC address, from sysfs.
fn mac_of(iface: &str) -> Option<[u8; 6]> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).ok()?;
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    Some(mac)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [iface, secs, size] = args.as_slice() else {
        return usage("expected three arguments");
    };
    let Ok(secs) = secs.parse::<u64>() else {
        return usage("SECS: expected whole seconds");
    };
    let size = match size.parse::<usize>() {
        Ok(n) if (60..=9000).contains(&n) => n,
        _ => return usage("SIZE: expected 60..=9000"),
    };
    let Some(src) = mac_of(iface) else {
        return usage(&format!("no interface {iface} here"));
    };
    let mut frame = vec![0u8; size];
    for (i, b) in frame[HDRS..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let spec = Frame4 {
        dont_fragment: false,
        ..Frame4::udp(
            [0x02, 0, 0, 0, 0, 0],
            src,
            [198, 18, 0, 1],
            [198, 18, 0, 2],
            9,
            9,
        )
    };
    if spec.write(&mut frame).is_err() {
        return usage("SIZE too small for the headers");
    }
    let sock = RawSock::open(iface, 0, Duration::from_millis(100));
    if let Err(e) = sock.bypass_qdisc() {
        eprintln!("kernel-tx: PACKET_QDISC_BYPASS on {iface}: {e}");
        return ExitCode::FAILURE;
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let (mut sent, mut full) = (0u64, 0u64);
    while Instant::now() < end {
        match sock.send_copies(&frame, BATCH) {
            Ok(n) => sent += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                full += 1;
                std::thread::yield_now();
            }
            Err(e) => {
                eprintln!("kernel-tx: sendmmsg on {iface}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "kernel-tx {iface}: {sent} frames in {took:.1} s, {:.3} Mpps ({full} ENOBUFS)",
        sent as f64 / took / 1e6
    );
    ExitCode::SUCCESS
}
