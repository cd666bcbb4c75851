//! The translation without ports: checksums recomputed in full after each rewrite, the
//! reverse rewrite giving back the original bytes, and every refusal counted.

use super::*;
use crate::test_frames::*;
use pmd_core::csum;
use pmd_net::proto;

const HOST: [u8; 4] = [10, 0, 0, 2];
const REMOTE: [u8; 4] = [203, 0, 113, 9];
const PUBLIC: [u8; 4] = [198, 51, 100, 1];

fn nat(lo: u16, hi: u16, max_flows: u32) -> Nat {
    Nat::new(&NatConfig {
        public: PUBLIC.into(),
        ports: PortRange { lo, hi },
        timeout: 30,
        max_flows,
    })
    .unwrap()
}

#[test]
fn udp_and_tcp_out_and_back_with_checksums_recomputed() {
    for build in [udp, tcp] {
        let mut n = nat(40000, 40009, 64);
        let sent = build(HOST, REMOTE, 5000, 53);
        let mut f = sent.clone();
        assert_eq!(
            n.translate(Direction::Outbound, &mut f, 0),
            Verdict::Translated
        );
        assert_checksums(&f);
        assert_eq!((addr(&f, 26), addr(&f, 30)), (PUBLIC, REMOTE));
        let public_port = port(&f, 34);
        assert!((40000..=40009).contains(&public_port), "{public_port}");
        assert_eq!(port(&f, 36), 53);
        // Nothing else changed: the same frame built from scratch with the new source.
        assert_eq!(f, build(PUBLIC, REMOTE, public_port, 53));

        // The reverse rewrite gives back the bytes that were sent, checksums included.
        let mut back = f.clone();
        assert!(rewrite(
            &mut back,
            14,
            End::Src,
            SocketAddrV4::new(HOST.into(), 5000)
        ));
        assert_eq!(back, sent);

        // A second packet of the flow keeps its port.
        let mut again = sent.clone();
        assert_eq!(
            n.translate(Direction::Outbound, &mut again, 1),
            Verdict::Translated
        );
        assert_eq!(again, f);

        // The reply comes back to the host's own address and port.
        let mut reply = build(REMOTE, PUBLIC, 53, public_port);
        assert_eq!(
            n.translate(Direction::Inbound, &mut reply, 1),
            Verdict::Translated
        );
        assert_checksums(&reply);
        assert_eq!(reply, build(REMOTE, HOST, 53, 5000));
        let c = n.counters();
        assert_eq!((c.translated_out, c.translated_in), (2, 1));
        assert_eq!(n.flows(), 1);
    }
}

#[test]
fn a_zero_udp_checksum_stays_zero() {
    let mut n = nat(40000, 40000, 4);
    let mut f = udp(HOST, REMOTE, 5000, 53);
    f[40..42].fill(0);
    assert_eq!(
        n.translate(Direction::Outbound, &mut f, 0),
        Verdict::Translated
    );
    assert_eq!(port(&f, 40), 0);
    assert_eq!(csum::ones_complement_sum(&f[14..34]), 0xffff);
}

#[test]
fn unmapped_replies_are_dropped_and_counted() {
    let mut n = nat(40000, 40009, 64);
    let mut f = udp(HOST, REMOTE, 5000, 53);
    n.translate(Direction::Outbound, &mut f, 0);
    let mapped = port(&f, 34);
    for mut reply in [
        udp(REMOTE, PUBLIC, 53, mapped ^ 1),        // another port
        udp([203, 0, 113, 10], PUBLIC, 53, mapped), // another remote host
        udp(REMOTE, PUBLIC, 54, mapped),            // another remote port
        tcp(REMOTE, PUBLIC, 53, mapped),            // another protocol
        udp(REMOTE, [198, 51, 100, 2], 53, mapped), // another address
    ] {
        let before = reply.clone();
        let v = n.translate(Direction::Inbound, &mut reply, 0);
        assert_eq!(v, Verdict::Dropped(Reason::NoMapping));
        assert!(!v.forwards());
        assert_eq!(reply, before);
    }
    assert_eq!(n.counters().no_mapping, 5);
}

#[test]
fn port_exhaustion_is_counted_and_expiry_gives_ports_back() {
    let mut n = nat(40000, 40001, 64);
    for sport in [1, 2] {
        let mut f = udp(HOST, REMOTE, sport, 53);
        assert_eq!(
            n.translate(Direction::Outbound, &mut f, 0),
            Verdict::Translated
        );
    }
    let mut third = udp(HOST, REMOTE, 3, 53);
    let before = third.clone();
    assert_eq!(
        n.translate(Direction::Outbound, &mut third, 0),
        Verdict::Dropped(Reason::PortsExhausted)
    );
    assert_eq!(third, before);
    assert_eq!(n.counters().ports_exhausted, 1);

    // Flow 1 stays busy through its replies only; flow 2 goes idle.
    let mut reply = udp(REMOTE, PUBLIC, 53, 40000);
    assert_eq!(
        n.translate(Direction::Inbound, &mut reply, 20),
        Verdict::Translated
    );
    assert_eq!(n.expire(30), 0, "nothing idle for more than 30 s yet");
    assert_eq!(n.expire(31), 1, "flow 2 idle for 31 s");
    assert_eq!((n.flows(), n.counters().flows.expired), (1, 1));
    // Its port serves the third flow now; flow 1 keeps its own.
    let mut third = udp(HOST, REMOTE, 3, 53);
    assert_eq!(
        n.translate(Direction::Outbound, &mut third, 32),
        Verdict::Translated
    );
    assert_eq!(port(&third, 34), 40001);
    let mut one = udp(HOST, REMOTE, 1, 53);
    n.translate(Direction::Outbound, &mut one, 32);
    assert_eq!(port(&one, 34), 40000);
    // A late reply to flow 2 reaches flow 3, which holds its port now (hence ports
    // are reused as late as possible).
    let mut late = udp(REMOTE, PUBLIC, 53, 40001);
    assert_eq!(
        n.translate(Direction::Inbound, &mut late, 32),
        Verdict::Translated
    );
    assert_eq!(port(&late, 36), 3);
    assert_eq!(n.expire(100), 2);
    assert_eq!(n.flows(), 0);
}

#[test]
fn a_full_table_is_counted_and_keeps_no_port() {
    let mut n = nat(40000, 40009, 2);
    for sport in [1, 2] {
        let mut f = udp(HOST, REMOTE, sport, 53);
        assert_eq!(
            n.translate(Direction::Outbound, &mut f, 0),
            Verdict::Translated
        );
    }
    for sport in [3, 4, 5] {
        let mut f = udp(HOST, REMOTE, sport, 53);
        let v = n.translate(Direction::Outbound, &mut f, 0);
        assert_eq!(v, Verdict::Dropped(Reason::TableFull));
    }
    assert_eq!(n.counters().flows.table_full, 3);
    assert_eq!(n.expire(31), 2);
    // The refused flows used up no port: ten flows fit the ten ports, two at a time.
    for round in 0..5u16 {
        let now = 40 + u64::from(round) * 40;
        for sport in [10 + round * 2, 11 + round * 2] {
            let mut f = udp(HOST, REMOTE, sport, 53);
            assert_eq!(
                n.translate(Direction::Outbound, &mut f, now),
                Verdict::Translated
            );
        }
        assert_eq!(n.expire(now + 31), 2);
    }
    assert_eq!(n.counters().ports_exhausted, 0);
}

#[test]
fn other_traffic_passes_unchanged_and_counted() {
    let mut n = nat(40000, 40009, 64);
    let v6 = pmd_net::build::udp6(MAC_B, MAC_A, [0x20; 16], [0x30; 16], 1, 2, b"x");
    let mut icmp = udp(HOST, REMOTE, 1, 2);
    icmp[23] = proto::ICMP;
    for f in [arp(), v6, icmp] {
        for dir in [Direction::Outbound, Direction::Inbound] {
            let mut g = f.clone();
            assert_eq!(n.translate(dir, &mut g, 0), Verdict::Passed);
            assert_eq!(g, f);
        }
    }
    assert_eq!(n.counters().flows.passed, 6);
    assert_eq!(n.flows(), 0);
}

#[test]
fn malformed_frames_and_fragments_are_dropped_and_counted() {
    let mut n = nat(40000, 40009, 64);
    let good = udp(HOST, REMOTE, 5000, 53);
    for mut f in malformed(&good) {
        let v = n.translate(Direction::Outbound, &mut f, 0);
        assert_eq!(v, Verdict::Dropped(Reason::Malformed));
    }
    for mut f in fragments(&good) {
        let v = n.translate(Direction::Outbound, &mut f, 0);
        assert_eq!(v, Verdict::Dropped(Reason::Fragment));
    }
    let c = n.counters();
    assert_eq!(
        (c.flows.malformed, c.flows.fragments, c.translated_out),
        (3, 2, 0)
    );
    assert_eq!(n.flows(), 0);
}

#[test]
fn port_ranges_parse_or_say_why_not() {
    assert_eq!(
        "1024-65535".parse(),
        Ok(PortRange {
            lo: 1024,
            hi: 65535
        })
    );
    assert_eq!("7-7".parse::<PortRange>().map(|r| r.count()), Ok(1));
    for bad in [
        "", "1024", "0-10", "10-5", "1-65536", "a-b", "-5", "5-", "1 - 2", "+1-2",
    ] {
        assert!(bad.parse::<PortRange>().is_err(), "{bad:?}");
    }
    assert!(Nat::new(&NatConfig {
        public: PUBLIC.into(),
        ports: PortRange { lo: 1, hi: 2 },
        timeout: 1,
        max_flows: 0,
    })
    .is_err());
}
