//! `pmd-dumpcap` against running apps: l2fwd on null ports (exact counts, bad input,
//! a killed tool, hostile requests on the socket), l2fwd between network namespaces
//! (the file holds exactly what crossed the port, rx, tx and filtered; the forwarder's
//! counters do not change; tcpdump and capinfos read the file), and testpmd sending
//! multi-segment packets (captured whole).

use pcap_file::pcapng::{Block, PcapNgReader};
use pmd_core::unix::seqpacket::{SeqPacket, SockAddr};
use pmd_testkit::frames::{frame, one_way, ETH_P_ALL};
use pmd_testkit::{have_root, on_path, require, unique, NetNs, Proc, RawSock, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DUMPCAP: &str = env!("CARGO_BIN_EXE_pmd-dumpcap");

/// An app binary of the workspace, built beside pmd-dumpcap by `cargo test --workspace`.
fn app(name: &str) -> PathBuf {
    let p = Path::new(DUMPCAP).with_file_name(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build -p {name}` (cargo test --workspace builds it)",
        p.display()
    );
    p
}

/// One packet of a pcapng file.
#[derive(Debug)]
struct Pkt {
    iface: u32,
    inbound: bool,
    orig_len: u32,
    data: Vec<u8>,
}

/// The packets of a pcapng file, and each interface statistics block's (ifrecv, ifdrop).
fn read_pcapng(path: &Path) -> (Vec<Pkt>, Vec<(u64, u64)>) {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
    use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption;
    let mut r = PcapNgReader::new(std::fs::File::open(path).expect("capture file")).unwrap();
    let (mut pkts, mut stats) = (Vec::new(), Vec::new());
    while let Some(b) = r.next_block() {
        match b.expect("a valid pcapng block") {
            Block::EnhancedPacket(e) => pkts.push(Pkt {
                iface: e.interface_id,
                inbound: e
                    .options
                    .iter()
                    .any(|o| matches!(o, EnhancedPacketOption::Flags(f) if f & 3 == 1)),
                orig_len: e.original_len,
                data: e.data.into_owned(),
            }),
            Block::InterfaceStatistics(s) => {
                let get = |want: fn(&InterfaceStatisticsOption) -> Option<u64>| {
                    s.options.iter().find_map(want).unwrap_or(u64::MAX)
                };
                stats.push((
                    get(|o| match o {
                        InterfaceStatisticsOption::IsbIfRecv(v) => Some(*v),
                        _ => None,
                    }),
                    get(|o| match o {
                        InterfaceStatisticsOption::IsbIfDrop(v) => Some(*v),
                        _ => None,
                    }),
                ));
            }
            _ => {}
        }
    }
    (pkts, stats)
}

/// Runs pmd-dumpcap to completion (at most `timeout`): exit code and both streams.
fn dumpcap(args: &[&str], timeout: Duration) -> (i32, String) {
    let mut cmd = Command::new(DUMPCAP);
    cmd.args(args);
    let mut p = Proc::spawn(cmd);
    let st = p
        .wait(timeout)
        .unwrap_or_else(|| panic!("pmd-dumpcap {args:?} still running\n{}", p.transcript()));
    (st.code().unwrap_or(-1), p.transcript())
}

/// Starts pmd-dumpcap and waits until it says it captures.
fn start_dumpcap(args: &[&str]) -> Proc {
    let mut cmd = Command::new(DUMPCAP);
    cmd.args(args);
    let p = Proc::spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.stderr().contains("Capturing on") {
        assert!(
            Instant::now() < deadline,
            "pmd-dumpcap {args:?} did not start\n{}",
            p.transcript()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p
}

/// Waits until `p`'s stderr (the log) contains `needle`.
fn wait_log(p: &Proc, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !p.stderr().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?}\n{}",
            p.transcript()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last value printed after `label` in l2fwd's statistics for `port`.
fn port_stat(out: &str, port: u32, label: &str) -> u64 {
    let sect = out
        .rsplit(&format!("Statistics for port {port} "))
        .next()
        .unwrap_or("");
    sect.lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} for port {port} in\n{out}"))
}

fn l2fwd_on_null_ports(prefix: &str) -> Proc {
    let mut cmd = Command::new(app("l2fwd"));
    cmd.args(["-l", "0", "--no-huge", "--file-prefix", prefix])
        .args(["--vdev", "net_null0", "--vdev", "net_null1"])
        .args(["--", "-p", "0x3", "-q", "2", "-T", "0"]);
    let mut p = Proc::spawn(cmd);
    p.wait_for("Lcore ", 2, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    p
}

#[test]
fn captures_null_ports_and_refuses_what_it_cannot_do() {
    let dir = TempDir::new("dumpcapt-null");
    let prefix = unique("dumpcapt-null");
    let mut l2fwd = l2fwd_on_null_ports(&prefix);
    let file = dir.file("rx.pcapng");
    let f = file.to_str().unwrap();

    // -D lists the ports.
    let (code, out) = dumpcap(&["--file-prefix", &prefix, "-D"], Duration::from_secs(10));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("0. net_null0 (rx queues 1, tx queues 1)"),
        "{out}"
    );
    assert!(out.contains("1. net_null1"), "{out}");

    // An exact count of received packets, by name.
    let (code, out) = dumpcap(
        &[
            "--file-prefix",
            &prefix,
            "-i",
            "net_null0",
            "-Q",
            "in",
            "-c",
            "5000",
            "-w",
            f,
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Packets captured: 5000"), "{out}");
    let (pkts, stats) = read_pcapng(&file);
    assert_eq!(pkts.len(), 5000);
    assert!(pkts
        .iter()
        .all(|p| p.iface == 0 && p.inbound && p.orig_len == 64 && p.data.len() == 64));
    assert_eq!(stats.len(), 1);
    assert!(stats[0].0 >= 5000, "ifrecv {stats:?}");

    // The snapshot length cuts records but keeps the wire length.
    let (code, out) = dumpcap(
        &[
            "--file-prefix",
            &prefix,
            "-i",
            "1",
            "-Q",
            "out",
            "-s",
            "20",
            "-c",
            "100",
            "-w",
            f,
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}");
    let (pkts, _) = read_pcapng(&file);
    assert_eq!(pkts.len(), 100);
    assert!(pkts
        .iter()
        .all(|p| !p.inbound && p.orig_len == 64 && p.data.len() == 20));

    // Wrong input: each one line, exit code 2, no file written.
    let none = dir.file("never.pcapng");
    let n = none.to_str().unwrap();
    for (args, says) in [
        (
            vec!["-i", "9"],
            "no port \"9\" in this app; its ports: 0 (net_null0), 1 (net_null1)",
        ),
        (vec!["-s", "0"], "-s 0: the snapshot length is 1..=65535"),
        (vec!["-B", "100"], "-B 100: the ring size is a power of two"),
        (vec!["-f", "udp port ((("], "filter \"udp port (((\""),
        (
            vec!["-a", "minutes:3"],
            "give duration:SECS, filesize:KB or packets:N",
        ),
        (vec!["-Q", "sideways"], "invalid value 'sideways'"),
    ] {
        let mut all = vec!["--file-prefix", prefix.as_str(), "-w", n, "-c", "1"];
        all.extend(args.iter().copied());
        let (code, out) = dumpcap(&all, Duration::from_secs(10));
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out.contains(says), "{args:?}: want {says:?} in\n{out}");
        assert!(!none.exists(), "{args:?} wrote a file");
    }
    // No app with that prefix.
    let (code, out) = dumpcap(
        &["--file-prefix", "dumpcapt-nobody", "-w", n],
        Duration::from_secs(10),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no app with file prefix \"dumpcapt-nobody\" serves captures"),
        "{out}"
    );
    // One running with its telemetry (and so captures) off.
    let quiet_prefix = unique("dumpcapt-notel");
    let mut cmd = Command::new(app("l2fwd"));
    cmd.args([
        "-l",
        "0",
        "--no-huge",
        "--no-telemetry",
        "--file-prefix",
        &quiet_prefix,
    ])
    .args(["--vdev", "net_null0", "--vdev", "net_null1"])
    .args(["--", "-p", "0x3", "-q", "2", "-T", "0"]);
    let mut quiet = Proc::spawn(cmd);
    quiet
        .wait_for("Lcore ", 2, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    let (code, out) = dumpcap(
        &["--file-prefix", &quiet_prefix, "-w", n],
        Duration::from_secs(10),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("leave its telemetry on (--no-telemetry turns captures off)"),
        "{out}"
    );
    assert!(quiet
        .interrupt(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    // Owner-only, as the telemetry socket.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(pmd_core::pdump::socket_path(&prefix))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A port captures once at a time; a tool killed mid-capture ends its capture, and
    // the port can be captured again.
    let mut first = start_dumpcap(&["--file-prefix", &prefix, "-i", "0", "-w", f]);
    let (code, out) = dumpcap(
        &["--file-prefix", &prefix, "-i", "0", "-w", n],
        Duration::from_secs(10),
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is being captured already"), "{out}");
    first.signal(libc::SIGKILL);
    first.wait(Duration::from_secs(5)).expect("killed");
    wait_log(&l2fwd, "capture of port 0 (net_null0) ended");
    let (code, out) = dumpcap(
        &["--file-prefix", &prefix, "-i", "0", "-c", "100", "-w", f],
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}");

    // Hostile requests straight on the socket: each gets an error and a closed
    // connection; more clients than allowed are turned away; the app keeps running.
    let path = pmd_core::pdump::socket_path(&prefix);
    let ask = |msg: &[u8], fd: Option<i32>| -> String {
        let s = SeqPacket::connect(&SockAddr::Path(path.clone())).expect("connect");
        s.send(msg, fd).expect("send");
        let mut buf = vec![0u8; 4096];
        assert!(pmd_core::unix::seqpacket::wait_readable(s.raw(), 5000).unwrap());
        let got = s.recv_into(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..got.len]).into_owned()
    };
    let cap = |extra: &str| {
        format!(
            r#"{{"cmd":"capture","port":"0","rx":true,"tx":false,"snaplen":64,"ring_size":4194304{extra}}}"#
        )
    };
    let devnull = std::fs::File::open("/dev/null").unwrap();
    let cases: Vec<(Vec<u8>, Option<i32>, &str)> = vec![
        (b"not json".to_vec(), None, "not JSON"),
        (vec![b' '; 40_000], None, "at most 32768 bytes"),
        (br#"{"cmd":"format c:"}"#.to_vec(), None, "unknown request"),
        (
            cap(",\"filter\":[[65535,0,0,0]]").into_bytes(),
            None,
            "the filter is refused",
        ),
        (
            cap(",\"filter\":[[6,0,0]]").into_bytes(),
            None,
            "is not [code, jt, jf, k]",
        ),
        (
            cap("").replace("4194304", "1000").into_bytes(),
            None,
            "a power of two",
        ),
        (
            cap("")
                .replace("\"snaplen\":64", "\"snaplen\":70000")
                .into_bytes(),
            None,
            "is 1..=65535",
        ),
        (
            br#"{"cmd":"list"}"#.to_vec(),
            Some(std::os::fd::AsRawFd::as_raw_fd(&devnull)),
            "\"ports\"",
        ),
    ];
    for (msg, fd, says) in &cases {
        let reply = ask(msg, *fd);
        assert!(reply.contains(says), "want {says:?}, got {reply}");
    }
    let many: Vec<SeqPacket> = (0..pmd_core::pdump::MAX_CONNECTIONS + 2)
        .map(|_| SeqPacket::connect(&SockAddr::Path(path.clone())).expect("connect"))
        .collect();
    let mut turned_away = 0;
    for s in &many {
        if pmd_core::unix::seqpacket::wait_readable(s.raw(), 200).unwrap() {
            let mut buf = [0u8; 512];
            let got = s.recv_into(&mut buf).unwrap();
            if String::from_utf8_lossy(&buf[..got.len]).contains("connected already") {
                turned_away += 1;
            }
        }
    }
    assert_eq!(turned_away, 2);
    drop(many);
    // Still forwarding, and still capturing.
    let (code, out) = dumpcap(
        &["--file-prefix", &prefix, "-i", "1", "-c", "10", "-w", f],
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}");
    let st = l2fwd
        .interrupt(Duration::from_secs(10))
        .expect("l2fwd stops");
    assert!(st.success(), "{}", l2fwd.transcript());
    assert!(!path.exists(), "the capture socket is removed at exit");
}

#[test]
fn captures_exactly_what_crosses_a_port_between_namespaces() {
    const TEST: &str = "captures_exactly_what_crosses_a_port_between_namespaces";
    if !have_root(TEST) {
        return;
    }
    let tools = ["tcpdump", "capinfos"]
        .into_iter()
        .filter(|t| !on_path(t))
        .collect::<Vec<_>>();
    if !require(
        TEST,
        (!tools.is_empty()).then(|| {
            format!(
                "{} not installed (ci/setup.sh installs them)",
                tools.join(", ")
            )
        }),
    ) {
        return;
    }
    let Some(ns) = NetNs::new("dumpcapt", TEST) else {
        return;
    };
    ns.veth("pa_in", "pa_out");
    ns.veth("pb_in", "pb_out");
    let (mac_a, mac_b) = (ns.mac("pa_in"), ns.mac("pb_in"));
    let dir = TempDir::new("dumpcapt-ns");
    let prefix = unique("dumpcapt-ns");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name()])
        .arg(app("l2fwd"))
        .args(["-l", "0", "--no-huge", "--file-prefix", &prefix])
        .args(["--vdev", "net_af_packet0,iface=pa_in"])
        .args(["--vdev", "net_af_packet1,iface=pb_in"])
        .args(["--", "-p", "0x3", "-q", "2", "-T", "0"]);
    let mut l2fwd = Proc::spawn(cmd);
    l2fwd
        .wait_for("Lcore ", 2, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));

    // Port 0 received, everything; port 1 sent, only frames with an even sequence
    // number (its low byte is at 17: 14 bytes of Ethernet header, then the number).
    let (rx_file, tx_file) = (dir.file("rx.pcapng"), dir.file("tx.pcapng"));
    let mut rx_tool = start_dumpcap(&[
        "--file-prefix",
        &prefix,
        "-i",
        "0",
        "-Q",
        "in",
        "-w",
        rx_file.to_str().unwrap(),
    ]);
    let mut tx_tool = start_dumpcap(&[
        "--file-prefix",
        &prefix,
        "-i",
        "net_af_packet1",
        "-Q",
        "out",
        "-w",
        tx_file.to_str().unwrap(),
        "ether[17] & 1 = 0",
    ]);
    const N: u32 = 1000;
    let sent: Vec<Vec<u8>> = (0..N)
        .map(|s| frame(mac_a, &[], 60 + (s as usize * 37) % 1455, s))
        .collect();
    let to_send = sent.clone();
    let forwarded = ns.run(move || {
        let inject = RawSock::open("pa_out", ETH_P_ALL, Duration::from_millis(20));
        let capture = RawSock::open("pb_out", ETH_P_ALL, Duration::from_millis(20));
        one_way(
            &inject,
            &capture,
            &to_send,
            Some(([2, 0, 0, 0, 0, 1], mac_b)),
        )
    });
    if let Err(e) = forwarded {
        panic!("{e}\n{}", l2fwd.transcript());
    }
    std::thread::sleep(Duration::from_millis(200));
    for t in [&mut rx_tool, &mut tx_tool] {
        let st = t
            .interrupt(Duration::from_secs(10))
            .expect("pmd-dumpcap stops on SIGINT");
        assert!(st.success(), "{}", t.transcript());
    }
    let st = l2fwd
        .interrupt(Duration::from_secs(10))
        .expect("l2fwd stops");
    assert!(st.success(), "{}", l2fwd.transcript());
    let out = l2fwd.stdout();
    // The forwarder's own counters are those of the traffic alone.
    assert_eq!(
        port_stat(&out, 0, "Packets received:"),
        u64::from(N),
        "{out}"
    );
    assert_eq!(port_stat(&out, 1, "Packets sent:"), u64::from(N), "{out}");

    let (rx, rx_stats) = read_pcapng(&rx_file);
    assert_eq!(rx.len(), N as usize, "{}", rx_tool.transcript());
    for (p, want) in rx.iter().zip(&sent) {
        assert!(p.inbound);
        assert_eq!(p.orig_len as usize, want.len());
        assert_eq!(&p.data, want);
    }
    assert_eq!(rx_stats, vec![(u64::from(N), 0)]);
    let (tx, _) = read_pcapng(&tx_file);
    let even: Vec<Vec<u8>> = sent
        .iter()
        .step_by(2)
        .map(|f| {
            let mut g = f.clone();
            g[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
            g[6..12].copy_from_slice(&mac_b);
            g
        })
        .collect();
    assert_eq!(tx.len(), even.len(), "{}", tx_tool.transcript());
    for (p, want) in tx.iter().zip(&even) {
        assert!(!p.inbound);
        assert_eq!(&p.data, want);
    }
    assert!(tx_tool
        .stderr()
        .contains(&format!("Packets captured: {}", N / 2)));

    // Other readers agree.
    let tcpdump = Command::new("tcpdump")
        .args(["-nn", "--count", "-r"])
        .arg(&rx_file)
        .output()
        .unwrap();
    let counted = String::from_utf8_lossy(&tcpdump.stdout);
    assert!(tcpdump.status.success(), "{counted}");
    assert_eq!(counted.trim(), format!("{N} packets"));
    let capinfos = Command::new("capinfos")
        .args(["-c", "-d", "-M"])
        .arg(&rx_file)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&capinfos.stdout);
    let bytes: usize = sent.iter().map(Vec::len).sum();
    assert!(capinfos.status.success(), "{info}");
    assert!(
        info.contains(&format!("Number of packets:   {N}")),
        "{info}"
    );
    assert!(
        info.contains(&format!("Data size:           {bytes} bytes")),
        "{info}"
    );
}

#[test]
fn multi_segment_packets_are_captured_whole() {
    let dir = TempDir::new("dumpcapt-seg");
    let prefix = unique("dumpcapt-seg");
    let mut cmd = Command::new(app("testpmd"));
    cmd.args([
        "-l",
        "0",
        "--no-huge",
        "--file-prefix",
        &prefix,
        "--vdev",
        "net_null0",
    ])
    .args([
        "--",
        "--forward-mode=txonly",
        "--txpkts=60,40,28",
        "--stats-period=1",
    ]);
    let mut testpmd = Proc::spawn(cmd);
    testpmd
        .wait_for("Txonly packet forwarding", 1, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    let file = dir.file("seg.pcapng");
    let (code, out) = dumpcap(
        &[
            "--file-prefix",
            &prefix,
            "-Q",
            "out",
            "-c",
            "500",
            "-w",
            file.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{out}");
    let (pkts, _) = read_pcapng(&file);
    assert_eq!(pkts.len(), 500);
    for p in &pkts {
        assert_eq!((p.orig_len, p.data.len()), (128, 128), "{:02x?}", p.data);
        // One frame: an IPv4 header after the Ethernet header, its total length
        // covering the other two segments.
        assert_eq!(p.data[12..14], [0x08, 0x00]);
        assert_eq!(u16::from_be_bytes([p.data[16], p.data[17]]), 128 - 14);
    }
    let st = testpmd
        .interrupt(Duration::from_secs(10))
        .expect("testpmd stops");
    assert!(st.success(), "{}", testpmd.transcript());
}
