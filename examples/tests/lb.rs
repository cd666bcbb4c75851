//! lb balancing real frames between two veth pairs in a private network namespace
//! (af_packet ports):
//!
//! ```text
//!  client                            lb                            backends
//!  cl_host <==veth==> cl_lb [port 0] ---> [port 1] be_lb <==veth==> be_host
//! ```
//!
//! UDP to the VIP leaves toward one of the three backends, its destination rewritten,
//! both checksums right and every other byte as sent; a connection's packets all go to
//! its backend, and eight connections reach more than one; the backends' replies come
//! back from the VIP. Replies no connection expects do not cross and are counted; ARP
//! crosses unchanged both ways. Needs root; without it the test says why and passes (and
//! fails under `PMD_REQUIRE_ALL=1`).

mod common;

use common::{arp_crosses, check_udp4_checksums, cross, payload, PASS, REFUSED};
use pmd_net::build::udp4;
use pmd_testkit::{have_root, NetNs};
use std::net::SocketAddrV4;

const LB: &str = env!("CARGO_BIN_EXE_lb");
const CLIENT: [u8; 4] = [198, 51, 100, 7];
const VIP: [u8; 4] = [192, 0, 2, 10];
const VPORT: u16 = 80;
const BACKENDS: [&str; 3] = ["10.0.1.1:8080", "10.0.1.2:8080", "10.0.1.3:8081"];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0xc6, 7];
const BACKEND_MAC: [u8; 6] = [2, 0, 0, 0, 0x0a, 1];
/// Connections the client opens.
const CONNS: u16 = 8;

fn backends() -> Vec<SocketAddrV4> {
    BACKENDS.iter().map(|b| b.parse().unwrap()).collect()
}

/// A UDP frame from the client's `port` to the VIP.
fn request(port: u16, data: &[u8]) -> Vec<u8> {
    udp4(BACKEND_MAC, CLIENT_MAC, CLIENT, VIP, port, VPORT, data)
}

/// A UDP frame from `from` to the client's `port`.
fn reply(from: SocketAddrV4, port: u16, data: &[u8]) -> Vec<u8> {
    let ip = from.ip().octets();
    udp4(CLIENT_MAC, BACKEND_MAC, ip, CLIENT, from.port(), port, data)
}

/// The exchange, run in the namespace; the backend of each connection, or an error that
/// says what went wrong.
fn exchange() -> Result<Vec<SocketAddrV4>, String> {
    let (cl_ip, cl_arp) = common::ip_and_arp("cl_host");
    let (be_ip, be_arp) = common::ip_and_arp("be_host");

    // Each connection goes to a backend of the list, twice to the same one.
    let mut chosen = Vec::new();
    for i in 0..CONNS {
        let port = 5000 + i;
        let data = payload(i, 18 + usize::from(i) * 150);
        let got = cross(&cl_ip, &be_ip, &request(port, &data), PASS)
            .ok_or(format!("connection {i}: nothing reached the backends"))?;
        check_udp4_checksums(&got).map_err(|e| format!("connection {i}: {e}"))?;
        let ip: [u8; 4] = got[30..34].try_into().unwrap();
        let to = SocketAddrV4::new(ip.into(), u16::from_be_bytes([got[36], got[37]]));
        if !backends().contains(&to) {
            return Err(format!("connection {i} went to {to}, not a backend"));
        }
        let want = udp4(BACKEND_MAC, CLIENT_MAC, CLIENT, ip, port, to.port(), &data);
        if got != want {
            return Err(format!("connection {i}: got {got:02x?}\nwant {want:02x?}"));
        }
        let again = cross(&cl_ip, &be_ip, &request(port, &payload(99, 30)), PASS).ok_or(
            format!("connection {i} again: nothing reached the backends"),
        )?;
        if again[30..38] != got[30..38] {
            return Err(format!("connection {i} again: {again:02x?}, was to {to}"));
        }
        chosen.push(to);
    }
    if chosen.iter().all(|&b| b == chosen[0]) {
        return Err(format!("all {CONNS} connections went to {}", chosen[0]));
    }

    // The replies come back from the VIP.
    for (i, &from) in chosen.iter().enumerate() {
        let (port, data) = (5000 + i as u16, payload(100 + i as u16, 30 + i * 200));
        let got = cross(&be_ip, &cl_ip, &reply(from, port, &data), PASS)
            .ok_or(format!("reply {i}: nothing reached the client"))?;
        check_udp4_checksums(&got).map_err(|e| format!("reply {i}: {e}"))?;
        let want = udp4(CLIENT_MAC, BACKEND_MAC, VIP, CLIENT, VPORT, port, &data);
        if got != want {
            return Err(format!("reply {i}: got {got:02x?}\nwant {want:02x?}"));
        }
    }
    // Replies no connection expects: to a port without one, from another backend.
    let other = *backends().iter().find(|&&b| b != chosen[0]).unwrap();
    for (from, port) in [(chosen[0], 6000), (other, 5000)] {
        if let Some(f) = cross(&be_ip, &cl_ip, &reply(from, port, &payload(7, 18)), REFUSED) {
            return Err(format!("a reply from {from} to {port} crossed: {f:02x?}"));
        }
    }

    arp_crosses(&cl_arp, &be_arp, CLIENT_MAC)?;
    arp_crosses(&be_arp, &cl_arp, BACKEND_MAC)?;
    Ok(chosen)
}

#[test]
fn balances_udp_over_veth_and_counts_unknown_replies() {
    const TEST: &str = "balances_udp_over_veth_and_counts_unknown_replies";
    if !have_root(TEST) {
        return;
    }
    // Declared before the process, so it is deleted after the process is gone.
    let Some(ns) = NetNs::new("pmdex", TEST) else {
        return;
    };
    ns.veth("cl_lb", "cl_host");
    ns.veth("be_lb", "be_host");
    let vdevs = [
        "--vdev",
        "net_af_packet0,iface=cl_lb",
        "--vdev",
        "net_af_packet1,iface=be_lb",
    ];
    let mut app_args = vec!["--vip", "192.0.2.10:80"];
    for b in BACKENDS {
        app_args.extend(["--backend", b]);
    }
    let mut app = common::start(&ns, LB, &vdevs, &app_args, "Forwarding (Ctrl-C to stop)");

    let chosen = match ns.run(exchange) {
        Ok(c) => c,
        Err(e) => panic!("{TEST}: {e}\n{}", app.transcript()),
    };

    let out = common::stop(&mut app);
    let count = |label: &str| common::count(&out, label);
    let conns = u64::from(CONNS);
    assert_eq!(count("to backends:"), 2 * conns, "{out}");
    assert_eq!(count("to clients:"), conns, "{out}");
    assert_eq!(count("new flows:"), conns, "{out}");
    assert_eq!(count("unknown replies:"), 2, "{out}");
    assert!(count("passed through:") >= 2, "{out}");
    for label in ["table full:", "malformed:", "fragments:", "tx full:"] {
        assert_eq!(count(label), 0, "{label}\n{out}");
    }
    assert_eq!(count("flows at exit:"), conns, "{out}");
    // The spread it printed is the one the backends saw.
    for b in backends() {
        let seen = chosen.iter().filter(|&&c| c == b).count() as u64;
        assert_eq!(count(&format!("backend {b}: new flows")), seen, "{out}");
    }
}
