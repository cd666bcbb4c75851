//! testpmd end to end: modes on null and ring ports, final statistics, CLI errors.

use std::process::Command;

fn testpmd(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_testpmd"))
        .args(args)
        .output()
        .expect("run testpmd");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// The accumulated (RX-packets, TX-packets, TX-dropped) of the final statistics.
fn accumulated(out: &str) -> (u64, u64, u64) {
    let acc = out
        .split("Accumulated forward statistics")
        .nth(1)
        .expect("final statistics printed");
    let num = |key: &str| -> u64 {
        let rest = acc.split(key).nth(1).expect(key);
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    (num("RX-packets:"), num("TX-packets:"), num("TX-dropped:"))
}

#[test]
fn every_mode_forwards_on_null_ports_and_reports_consistent_totals() {
    for mode in [
        "io", "mac", "macswap", "rxonly", "txonly", "csum", "flowgen",
    ] {
        let (code, out) = testpmd(&[
            "--no-huge",
            "-l",
            "0",
            "--vdev",
            "net_null0",
            "--vdev",
            "net_null1",
            "--",
            &format!("--forward-mode={mode}"),
            "--duration=0.3",
            "--stats-period=1",
        ]);
        assert_eq!(code, 0, "{mode}: {out}");
        let (rx, tx, dropped) = accumulated(&out);
        match mode {
            "rxonly" => assert!(rx > 0 && tx == 0, "{mode}: {out}"),
            "txonly" => assert!(rx == 0 && tx > 0, "{mode}: {out}"),
            "flowgen" => assert!(tx > 0, "{mode}: {out}"),
            _ => assert_eq!(
                rx,
                tx + dropped,
                "{mode}: every received packet sent or dropped"
            ),
        }
        assert!(out.contains("Forward statistics for port 1"), "{mode}");
    }
}

#[test]
fn tx_first_on_a_loopback_ring_circulates_the_burst() {
    // net_ring with no arguments loops its tx back to its rx: the one port is its own peer.
    let (code, out) = testpmd(&[
        "--no-huge",
        "-l",
        "0",
        "--vdev",
        "net_ring0",
        "--",
        "--forward-mode=io",
        "--tx-first",
        "--burst=16",
        "--duration=0.3",
    ]);
    assert_eq!(code, 0, "{out}");
    let (rx, tx, dropped) = accumulated(&out);
    assert_eq!(dropped, 0);
    // The 16 first packets are sent once more than they are received (they may be in the
    // ring when the run stops).
    assert!(tx >= rx && tx - rx <= 16, "rx {rx} tx {tx}");
    assert!(rx > 1000, "the burst went round: {rx}");
}

#[test]
fn multi_segment_packets_circulate_whole() {
    // --txpkts=1000,1000,1018: 3018-byte frames of three mbufs each (1024-byte data
    // room), looped through net_ring with scatter and MULTI_SEGS.
    let (code, out) = testpmd(&[
        "--no-huge",
        "-l",
        "0",
        "--vdev",
        "net_ring0",
        "--",
        "--forward-mode=io",
        "--tx-first",
        "--burst=16",
        "--txpkts=1000,1000,1018",
        "--mbuf-size=1152",
        "--enable-scatter",
        "--max-pkt-len=3018",
        "--stats-period=1",
        "--duration=1.3",
    ]);
    assert_eq!(code, 0, "{out}");
    let (rx, tx, dropped) = accumulated(&out);
    assert_eq!(dropped, 0, "{out}");
    assert!(rx > 1000 && tx >= rx, "rx {rx} tx {tx}");
    // The periodic NIC statistics: every packet is 3018 bytes.
    let nic = out
        .split("NIC statistics for port 0")
        .nth(1)
        .expect("NIC stats");
    let num = |key: &str| -> u64 {
        let rest = nic.split(key).nth(1).expect(key);
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    let (pk, by) = (num("RX-packets:"), num("RX-bytes:"));
    assert!(pk > 0 && by == pk * 3018, "{pk} packets, {by} bytes");
    // A segment larger than the mbuf is refused before anything runs.
    let (code, out) = testpmd(&[
        "--no-huge",
        "-l",
        "0",
        "--vdev",
        "net_ring0",
        "--",
        "--txpkts=3000",
        "--mbuf-size=1152",
        "--duration=0.1",
    ]);
    assert_ne!(code, 0);
    assert!(out.contains("raise --mbuf-size"), "{out}");
}

#[test]
fn bad_options_are_clear_errors() {
    let base = ["--no-huge", "-l", "0", "--vdev", "net_null0", "--"];
    for (extra, want) in [
        (&["--rxq=2", "--txq=1"][..], "give both the same count"),
        (&["--nb-cores=2"][..], "forwarding lcore"),
        (&["-i"][..], "interactive mode"),
        (&["--forward-mode=bogus"][..], "invalid value"),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (code, out) = testpmd(&args);
        assert_ne!(code, 0, "{extra:?}");
        assert!(out.contains(want), "{extra:?}: {out}");
    }
    let (code, out) = testpmd(&["--no-huge", "-l", "0", "--", "--duration=0.1"]);
    assert_ne!(code, 0);
    assert!(out.contains("no Ethernet ports"), "{out}");
}

#[test]
fn numbers_that_make_no_sense_are_refused_before_any_port_starts() {
    let base = ["--no-huge", "-l", "0", "--vdev", "net_null0", "--"];
    for (arg, want) in [
        ("--duration=-1", "is not a decimal number"),
        ("--duration=nan", "is not a decimal number"),
        ("--duration=inf", "is not a decimal number"),
        ("--duration=0", "is out of range"),
        ("--stats-period=-1", "is not a whole number"),
        ("--stats-period=18446744073709551615", "is out of range"),
        ("--rxd=65536", "expected a whole number in 0..=65535"),
        ("--txd=-5", "--txd"),
        (
            "--total-num-mbufs=4294967296",
            "expected a whole number in 0..=4294967295",
        ),
        ("--mbcache=513", "expected a whole number in 0..=512"),
        ("--burst=0", "expected a whole number in 1..=64"),
        (
            "--flowgen-flows=65537",
            "expected a whole number in 1..=65536",
        ),
        ("--eth-peer=65536,02:00:00:00:00:01", "bad port number"),
        ("--txpkts=64,-1", "is not a segment length"),
    ] {
        let args: Vec<&str> = base.iter().copied().chain([arg]).collect();
        let (code, out) = testpmd(&args);
        assert_eq!(code, 2, "{arg}: {out}");
        assert!(out.contains(want), "{arg}: {out}");
        // Refused before the EAL initialised: no device was even probed.
        assert!(!out.contains("probed"), "{arg}: {out}");
    }
}

#[test]
fn descriptor_counts_outside_the_pmd_limits_are_refused() {
    let limits =
        "net_ixgbe takes 64..=4096 descriptors per queue, a power of two (0: its default, 512)";
    for (arg, opt) in [
        ("--rxd=100", "--rxd=100"),
        ("--txd=8192", "--txd=8192"),
        ("--rxd=32", "--rxd=32"),
    ] {
        let (code, out) = testpmd(&[
            "--no-huge",
            "-l",
            "0",
            "--vdev",
            "net_ixgbe_model0",
            "--",
            arg,
            "--duration=0.1",
        ]);
        assert_eq!(code, 2, "{out}");
        assert!(
            out.contains(&format!("testpmd: {opt} does not fit port 0: {limits}\n")),
            "{out}"
        );
        assert!(!out.contains("Configuring Port"), "{out}");
    }
    // Counts within the limits pass.
    let (code, out) = testpmd(&[
        "--no-huge",
        "-l",
        "0",
        "--vdev",
        "net_ixgbe_model0",
        "--",
        "--rxd=128",
        "--txd=4096",
        "--duration=0.1",
    ]);
    assert_eq!(code, 0, "{out}");
}

/// Writes a classic pcap file (microsecond timestamps, Ethernet link type) of `count`
/// minimum-size frames.
fn write_pcap(path: &std::path::Path, count: u32) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic: native order, µs
    f.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&0i32.to_le_bytes()); // GMT offset
    f.extend_from_slice(&0u32.to_le_bytes()); // timestamp accuracy
    f.extend_from_slice(&65_535u32.to_le_bytes()); // snapshot length
    f.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    for i in 0..count {
        let mut frame = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x88, 0xb5];
        frame.resize(60, i as u8);
        for v in [0, i, frame.len() as u32, frame.len() as u32] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&frame);
    }
    std::fs::write(path, f).unwrap();
}

/// A pool too small for one burst: the 32 frames of the first burst are lost and counted
/// once in RX-nombufs, the last 8 arrive; testpmd prints the count per port and in the
/// totals, and received + nombuf is the whole file.
#[test]
fn a_starved_pool_shows_rx_nombufs_in_the_final_statistics() {
    let file = std::env::temp_dir().join(format!("testpmd-starved-{}.pcap", std::process::id()));
    write_pcap(&file, 40);
    let (code, out) = testpmd(&[
        "--no-huge",
        "-l",
        "0",
        "--vdev",
        &format!("net_pcap0,rx_pcap={}", file.display()),
        "--",
        "--forward-mode=rxonly",
        "--total-num-mbufs=16",
        "--mbcache=0",
        "--duration=0.3",
    ]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, 0, "{out}");
    let port = out
        .split("Forward statistics for port 0")
        .nth(1)
        .expect("port block");
    assert!(
        port.contains("  RX-packets: 8 ")
            && port.contains("\n  RX-error: 0\n  RX-nombufs: 32            \n  TX-packets: 0 "),
        "{out}"
    );
    let acc = out
        .split("Accumulated forward statistics")
        .nth(1)
        .expect("totals");
    assert!(
        acc.contains("TX-total: 0\n  RX-nombufs: 32            \n  ++++"),
        "{out}"
    );
    assert_eq!(accumulated(&out).0 + 32, 40);
}
