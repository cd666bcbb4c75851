//! l2fwd between two `net_pcap` ports (port 0 replays a file written here with the
//! `pcap-file` crate, port 1 records what it is sent) with `--pcap-capture` on both ports:
//! the captures must hold exactly what port 0 received and what was forwarded out of port 1.
//! No root and no network needed.

mod common;

use common::run_l2fwd;
use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use pmd_testkit::{parse_mac, unique, TempDir};
use std::path::Path;
use std::time::Duration;

fn frame(seq: u32) -> Vec<u8> {
    let len = 60 + (seq as usize * 53) % 1455;
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0xcc, 0x01]);
    f.extend_from_slice(&0x88b5u16.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u32 ^ seq) as u8);
    }
    f
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let ts = Duration::from_millis(i as u64);
        w.write_packet(&PcapPacket::new(ts, f.len() as u32, f))
            .unwrap();
    }
}

fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let mut r = PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        v.push(p.unwrap().data.into_owned());
    }
    v
}

#[test]
fn captures_hold_what_was_received_and_forwarded() {
    let dir = TempDir::new("l2fwdt-pcap");
    let f = |n: &str| dir.file(n).display().to_string();
    const N: u32 = 3000;
    let frames: Vec<Vec<u8>> = (0..N).map(frame).collect();
    write_pcap(Path::new(&f("in.pcap")), &frames);

    let prefix = unique("l2fwdt-pcap");
    let (rx0, tx1) = (
        format!("net_pcap0,rx_pcap={}", f("in.pcap")),
        format!("net_pcap1,tx_pcap={}", f("out.pcap")),
    );
    let (cap0, cap1) = (
        format!("0:{}", f("cap0.pcap")),
        format!("1:{}", f("cap1.pcap")),
    );
    let r = run_l2fwd(
        &[
            "-l",
            "0",
            "--no-huge",
            "--file-prefix",
            &prefix,
            "--vdev",
            &rx0,
            "--vdev",
            &tx1,
            "--",
            "-p",
            "0x3",
            "-q",
            "2",
            "-T",
            "0",
            "--duration",
            "1.5",
            "--pcap-capture",
            &cap0,
            "--pcap-capture",
            &cap1,
        ],
        Duration::from_secs(30),
    );
    let all = r.transcript();
    assert_eq!(r.code(), Some(0), "{all}");
    assert!(
        r.stdout
            .contains(&format!("Port 0: captured {N} packets to")),
        "{all}"
    );
    assert!(
        r.stdout
            .contains(&format!("Port 1: captured {N} packets to")),
        "{all}"
    );
    assert!(r.stdout.contains("(0 not recorded"), "{all}");

    // Port 1's MAC, as l2fwd printed it: the source of every forwarded frame.
    let mac1 = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Port 1 (net_pcap1): MAC "))
        .and_then(|m| parse_mac(m.trim()))
        .unwrap_or_else(|| panic!("no MAC for port 1\n{all}"));
    let forwarded: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut g = f.clone();
            g[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
            g[6..12].copy_from_slice(&mac1);
            g
        })
        .collect();

    let out = read_pcap(Path::new(&f("out.pcap")));
    assert_eq!(out.len(), N as usize, "{all}");
    assert_eq!(out, forwarded);
    // Port 0's capture: what it received (port 0 sent nothing: port 1 has no rx file).
    assert_eq!(read_pcap(Path::new(&f("cap0.pcap"))), frames);
    // Port 1's capture: what was forwarded out of it, the same as its tx file.
    assert_eq!(read_pcap(Path::new(&f("cap1.pcap"))), forwarded);
}

#[test]
fn bad_capture_options_are_refused() {
    let prefix = unique("l2fwdt-pcapbad");
    let r = run_l2fwd(
        &[
            "-l",
            "0",
            "--no-huge",
            "--file-prefix",
            &prefix,
            "--vdev",
            "net_null0",
            "--vdev",
            "net_null1",
            "--vdev",
            "net_null2",
            "--",
            "-p",
            "0x3",
            "-q",
            "2",
            "--pcap-capture",
            "2:/tmp/never.pcap",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(r.code(), Some(2), "{}", r.transcript());
    assert!(
        r.stderr.contains("port 2 is not in the portmask"),
        "{}",
        r.transcript()
    );
    assert!(!Path::new("/tmp/never.pcap").exists());
    let r = run_l2fwd(
        &[
            "-l",
            "0",
            "--no-huge",
            "--file-prefix",
            &prefix,
            "--vdev",
            "net_null0",
            "--vdev",
            "net_null1",
            "--",
            "-p",
            "0x3",
            "--pcap-capture",
            "zero.pcap",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(r.code(), Some(2), "{}", r.transcript());
    assert!(
        r.stderr.contains("expected PORT:FILE"),
        "{}",
        r.transcript()
    );
}
