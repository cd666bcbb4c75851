//! nat44 translating real frames between two veth pairs in a private network namespace
//! (af_packet ports):
//!
//! ```text
//!  inside host                      nat44                       outside host
//!  in_host <==veth==> in_nat [port 0] ---> [port 1] out_nat <==veth==> out_host
//! ```
//!
//! UDP from an inside address leaves from the public address and a port of the range,
//! with both checksums right and every other byte as sent; replies come back to the
//! inside address and port. A flow beyond the range's four ports, and replies nothing
//! maps, do not cross and are counted; ARP crosses unchanged both ways. Needs root;
//! without it the test says why and passes (and fails under `PMD_REQUIRE_ALL=1`).

mod common;

use common::{arp_crosses, check_udp4_checksums, cross, payload, PASS, REFUSED};
use pmd_net::build::udp4;
use pmd_testkit::{have_root, NetNs};

const NAT44: &str = env!("CARGO_BIN_EXE_nat44");
const HOST: [u8; 4] = [10, 0, 0, 2];
const REMOTE: [u8; 4] = [203, 0, 113, 9];
const PUBLIC: [u8; 4] = [198, 51, 100, 1];
const LO: u16 = 40000;
const HI: u16 = 40003;
const HOST_MAC: [u8; 6] = [2, 0, 0, 0, 0x0a, 2];
const REMOTE_MAC: [u8; 6] = [2, 0, 0, 0, 0xcb, 9];

/// The exchange, run in the namespace; an error says what went wrong.
fn exchange() -> Result<(), String> {
    let (in_ip, in_arp) = common::ip_and_arp("in_host");
    let (out_ip, out_arp) = common::ip_and_arp("out_host");

    // Four flows from the inside host take the range's four ports.
    let mut ports = Vec::new();
    for i in 0..4u16 {
        let data = payload(i, 18 + usize::from(i) * 400);
        let sent = udp4(REMOTE_MAC, HOST_MAC, HOST, REMOTE, 5000 + i, 53, &data);
        let got = cross(&in_ip, &out_ip, &sent, PASS)
            .ok_or(format!("flow {i}: nothing left the outside port"))?;
        check_udp4_checksums(&got).map_err(|e| format!("flow {i} outbound: {e}"))?;
        let sport = u16::from_be_bytes([got[34], got[35]]);
        if !(LO..=HI).contains(&sport) || ports.contains(&sport) {
            return Err(format!("flow {i}: public port {sport} (have {ports:?})"));
        }
        let want = udp4(REMOTE_MAC, HOST_MAC, PUBLIC, REMOTE, sport, 53, &data);
        if got != want {
            return Err(format!(
                "flow {i}: sent {sent:02x?}\ngot  {got:02x?}\nwant {want:02x?}"
            ));
        }
        ports.push(sport);
    }
    // A second packet of flow 0 keeps its port.
    let again = udp4(
        REMOTE_MAC,
        HOST_MAC,
        HOST,
        REMOTE,
        5000,
        53,
        &payload(0, 18),
    );
    let got = cross(&in_ip, &out_ip, &again, PASS).ok_or("flow 0 again: nothing left")?;
    if got[34..36] != ports[0].to_be_bytes() {
        return Err(format!(
            "flow 0 again: port {:02x?}, was {}",
            &got[34..36],
            ports[0]
        ));
    }
    // A fifth flow finds no free port.
    let fifth = udp4(
        REMOTE_MAC,
        HOST_MAC,
        HOST,
        REMOTE,
        5004,
        53,
        &payload(4, 18),
    );
    if let Some(f) = cross(&in_ip, &out_ip, &fifth, REFUSED) {
        return Err(format!("a fifth flow crossed with four ports: {f:02x?}"));
    }

    // Replies come back to the host's own address and port.
    for (i, &port) in ports.iter().enumerate() {
        let data = payload(100 + i as u16, 30 + i * 250);
        let reply = udp4(HOST_MAC, REMOTE_MAC, REMOTE, PUBLIC, 53, port, &data);
        let got =
            cross(&out_ip, &in_ip, &reply, PASS).ok_or(format!("reply {i}: nothing came in"))?;
        check_udp4_checksums(&got).map_err(|e| format!("reply {i} inbound: {e}"))?;
        let want = udp4(
            HOST_MAC,
            REMOTE_MAC,
            REMOTE,
            HOST,
            53,
            5000 + i as u16,
            &data,
        );
        if got != want {
            return Err(format!("reply {i}: got {got:02x?}\nwant {want:02x?}"));
        }
    }
    // Replies nothing maps: a port outside the range, another remote port.
    for (sport, dport) in [(53, LO - 1), (54, ports[0])] {
        let stray = udp4(
            HOST_MAC,
            REMOTE_MAC,
            REMOTE,
            PUBLIC,
            sport,
            dport,
            &payload(7, 18),
        );
        if let Some(f) = cross(&out_ip, &in_ip, &stray, REFUSED) {
            return Err(format!(
                "an unmapped reply to {dport} from {sport} came in: {f:02x?}"
            ));
        }
    }

    // ARP passes unchanged both ways.
    arp_crosses(&in_arp, &out_arp, HOST_MAC)?;
    arp_crosses(&out_arp, &in_arp, REMOTE_MAC)?;
    Ok(())
}

#[test]
fn translates_udp_both_ways_over_veth_and_counts_what_it_refuses() {
    const TEST: &str = "translates_udp_both_ways_over_veth_and_counts_what_it_refuses";
    if !have_root(TEST) {
        return;
    }
    // Declared before the process, so it is deleted after the process is gone.
    let Some(ns) = NetNs::new("pmdex", TEST) else {
        return;
    };
    ns.veth("in_nat", "in_host");
    ns.veth("out_nat", "out_host");
    let vdevs = [
        "--vdev",
        "net_af_packet0,iface=in_nat",
        "--vdev",
        "net_af_packet1,iface=out_nat",
    ];
    let range = format!("{LO}-{HI}");
    let app_args = ["--public-ip", "198.51.100.1", "--port-range", &range];
    let mut app = common::start(&ns, NAT44, &vdevs, &app_args, "Forwarding (Ctrl-C to stop)");

    if let Err(e) = ns.run(exchange) {
        panic!("{TEST}: {e}\n{}", app.transcript());
    }

    let out = common::stop(&mut app);
    let count = |label| common::count(&out, label);
    assert_eq!(count("translated out:"), 5, "{out}");
    assert_eq!(count("translated in:"), 4, "{out}");
    assert_eq!(count("no mapping:"), 2, "{out}");
    assert_eq!(count("port exhaustion:"), 1, "{out}");
    assert!(count("passed through:") >= 2, "{out}");
    for label in ["table full:", "malformed:", "fragments:", "tx full:"] {
        assert_eq!(count(label), 0, "{label}\n{out}");
    }
    assert_eq!(count("flows at exit:"), 4, "{out}");
}
