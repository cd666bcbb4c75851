//! The namespace guard and the raw socket, for real: needs root (without it the tests
//! print why and pass, or fail under `PMD_REQUIRE_ALL=1`).

use pmd_testkit::{fmt_mac, ip, NetNs, RawSock};
use std::time::Duration;

const ETHERTYPE_TEST: u16 = 0x88b5;
const TIMEOUT: Duration = Duration::from_millis(20);

fn frame(dst: [u8; 6], seq: u8) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0xaa, 0x01]);
    f.extend_from_slice(&ETHERTYPE_TEST.to_be_bytes());
    f.resize(60, seq);
    f
}

fn netns_names() -> Vec<String> {
    ip(&["netns", "list"])
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn namespace_is_named_uniquely_and_deleted_on_drop() {
    const TEST: &str = "namespace_is_named_uniquely_and_deleted_on_drop";
    let Some(a) = NetNs::new("pmdtk", TEST) else {
        return;
    };
    let b = NetNs::new("pmdtk", TEST).expect("a second namespace");
    assert_ne!(a.name(), b.name());
    let pid = std::process::id();
    assert!(
        a.name().starts_with(&format!("pmdtk-{pid}-")),
        "{}",
        a.name()
    );
    let names = netns_names();
    assert!(names.iter().any(|n| n == a.name()), "{names:?}");
    // IPv6 is off inside.
    let v6 = a.run(|| std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6"));
    assert_eq!(v6.unwrap().trim(), "1");
    let (na, nb) = (a.name().to_string(), b.name().to_string());
    drop(a);
    drop(b);
    let names = netns_names();
    assert!(!names.contains(&na) && !names.contains(&nb), "{names:?}");
}

#[test]
fn veth_mac_and_raw_sockets() {
    let Some(ns) = NetNs::new("pmdtk", "veth_mac_and_raw_sockets") else {
        return;
    };
    ns.veth("tka", "tkb");
    let mac_b = ns.mac("tkb");
    let shown = ns.ip(&["-br", "link", "show", "tkb"]);
    assert!(shown.contains(&fmt_mac(&mac_b)), "{shown}");
    assert!(shown.contains("UP"), "{shown}");

    ns.run(move || {
        let tx = RawSock::open("tka", ETHERTYPE_TEST, TIMEOUT);
        let rx = RawSock::open("tkb", ETHERTYPE_TEST, TIMEOUT);
        // Sees both directions on tka (but not what it sends itself).
        let all = RawSock::open("tka", libc::ETH_P_ALL as u16, TIMEOUT);

        // Arrives on the other end, byte for byte. A socket bound to one ethertype never
        // sees outgoing frames; an ETH_P_ALL one does.
        tx.send(&frame(mac_b, 1));
        assert_eq!(rx.recv_incoming(), Some(frame(mac_b, 1)));
        assert_eq!(all.recv(), Some(frame(mac_b, 1)));
        assert_eq!(tx.recv(), None);
        assert_eq!(rx.recv(), None);

        // recv_incoming skips outgoing frames.
        tx.send_retrying(&frame(mac_b, 2), Duration::from_secs(2));
        assert_eq!(all.recv_incoming(), None);
        assert_eq!(rx.recv(), Some(frame(mac_b, 2)));

        // The other way round: incoming on tka.
        rx.send(&frame([0xff; 6], 3));
        assert_eq!(all.recv_incoming(), Some(frame([0xff; 6], 3)));
        assert_eq!(tx.recv(), Some(frame([0xff; 6], 3)));

        // A socket does not see its own transmissions.
        all.send(&frame(mac_b, 4));
        assert_eq!(rx.recv(), Some(frame(mac_b, 4)));
        assert_eq!(all.recv(), None);
        assert_eq!(tx.recv(), None);
    });

    // The interfaces live in the namespace only.
    assert!(
        ip(&["link", "show", "tka"]).is_err(),
        "tka visible outside the namespace"
    );
}
