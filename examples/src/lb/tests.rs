//! The balancer without ports: checksums recomputed in full after each rewrite, the
//! reverse rewrite giving back the original bytes, connections staying on their backend
//! and spreading over all, and every refusal counted.

use super::*;
use crate::app::endpoint;
use crate::test_frames::*;
use pmd_net::proto;

const CLIENT: [u8; 4] = [198, 51, 100, 7];
const VIP: [u8; 4] = [192, 0, 2, 10];
const VPORT: u16 = 80;

/// Backend `i`: 10.0.1.(i+1):8080.
fn backend(i: u8) -> SocketAddrV4 {
    SocketAddrV4::new([10, 0, 1, i + 1].into(), 8080)
}

fn config(backends: u8, max_flows: u32) -> LbConfig {
    LbConfig {
        vip: SocketAddrV4::new(VIP.into(), VPORT),
        backends: (0..backends).map(backend).collect(),
        timeout: 60,
        max_flows,
    }
}

fn lb(backends: u8, max_flows: u32) -> Lb {
    Lb::new(&config(backends, max_flows)).unwrap()
}

/// The destination of `f`, an untagged IPv4 UDP/TCP frame.
fn dst(f: &[u8]) -> SocketAddrV4 {
    SocketAddrV4::new(addr(f, 30).into(), port(f, 36))
}

/// Sends `frame` through `lb` from the clients; the backend it went to.
fn to_backend(lb: &mut Lb, mut frame: Vec<u8>, now: u64) -> SocketAddrV4 {
    assert_eq!(
        lb.handle(Side::Clients, &mut frame, now),
        Verdict::Translated
    );
    dst(&frame)
}

#[test]
fn udp_and_tcp_to_a_backend_and_back_with_checksums_recomputed() {
    for build in [udp, tcp] {
        let mut l = lb(4, 64);
        let sent = build(CLIENT, VIP, 5000, VPORT);
        let mut f = sent.clone();
        assert_eq!(l.handle(Side::Clients, &mut f, 0), Verdict::Translated);
        assert_checksums(&f);
        let b = dst(&f);
        assert!(l.backends().iter().any(|x| x.addr == b), "{b}");
        // Nothing else changed: the same frame built from scratch with the new destination.
        assert_eq!(f, build(CLIENT, b.ip().octets(), 5000, b.port()));

        // The reverse rewrite gives back the bytes that were sent, checksums included.
        let mut back = f.clone();
        assert!(rewrite(
            &mut back,
            14,
            End::Dst,
            SocketAddrV4::new(VIP.into(), VPORT)
        ));
        assert_eq!(back, sent);

        // The backend's reply reaches the client from the VIP.
        let mut reply = build(b.ip().octets(), CLIENT, b.port(), 5000);
        assert_eq!(l.handle(Side::Backends, &mut reply, 1), Verdict::Translated);
        assert_checksums(&reply);
        assert_eq!(reply, build(VIP, CLIENT, VPORT, 5000));
        let c = l.counters();
        assert_eq!((c.to_backends, c.to_clients, c.new_flows), (1, 1, 1));
        assert_eq!(l.flows(), 1);
        let line = format!("backend {b}: new flows 1, active 1");
        assert!(l.to_string().contains(&line), "{l}");
    }
}

#[test]
fn a_connection_stays_on_its_backend() {
    let mut l = lb(4, 64);
    let first = to_backend(&mut l, udp(CLIENT, VIP, 5000, VPORT), 0);
    for now in 1..20 {
        assert_eq!(
            to_backend(&mut l, udp(CLIENT, VIP, 5000, VPORT), now),
            first
        );
    }
    assert_eq!((l.counters().new_flows, l.flows()), (1, 1));
    // Another balancer with the same backends picks the same one: the hash is of the
    // 5-tuple alone.
    assert_eq!(
        to_backend(&mut lb(4, 64), udp(CLIENT, VIP, 5000, VPORT), 7),
        first
    );
    let t = FiveTuple4 {
        src: CLIENT.into(),
        dst: VIP.into(),
        sport: 5000,
        dport: VPORT,
        proto: proto::UDP,
    };
    assert_eq!(backend(pick(&t, 4) as u8), first);
    assert_eq!((pick(&t, 1), pick(&t, 0)), (0, 0));
}

#[test]
fn connections_spread_over_four_backends() {
    // Random clients and ports (xorshift64), then one client's consecutive ports.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let random = std::iter::from_fn(|| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Some(((x as u32).to_be_bytes(), (x >> 32) as u16))
    });
    let consecutive = (0..10_000u16).map(|i| (CLIENT, 20_000 + i));
    let flows: [Vec<_>; 2] = [random.take(10_000).collect(), consecutive.collect()];
    for flows in flows {
        let mut l = lb(4, 16_384);
        for (src, sport) in flows {
            to_backend(&mut l, udp(src, VIP, sport, VPORT), 0);
        }
        let got: Vec<u64> = l.backends().iter().map(|b| b.new_flows).collect();
        assert_eq!(got.iter().sum::<u64>(), 10_000, "{got:?}");
        // A quarter each, give or take: 15% to 35%.
        assert!(got.iter().all(|n| (1500..=3500).contains(n)), "{got:?}");
    }
}

#[test]
fn a_full_table_is_counted_and_expiry_makes_room() {
    let mut l = lb(2, 2);
    for sport in [1, 2] {
        to_backend(&mut l, udp(CLIENT, VIP, sport, VPORT), 0);
    }
    for sport in [3, 4, 5] {
        let mut f = udp(CLIENT, VIP, sport, VPORT);
        let v = l.handle(Side::Clients, &mut f, 0);
        assert_eq!(v, Verdict::Dropped(Reason::TableFull));
        assert!(!v.forwards());
        assert_eq!(f, udp(CLIENT, VIP, sport, VPORT));
    }
    assert_eq!(
        (l.counters().flows.table_full, l.counters().new_flows),
        (3, 2)
    );

    // Connection 1 stays busy through its replies; connection 2 goes idle.
    let mut f = udp(CLIENT, VIP, 1, VPORT);
    l.handle(Side::Clients, &mut f, 10);
    let b = dst(&f);
    let mut reply = udp(b.ip().octets(), CLIENT, b.port(), 1);
    assert_eq!(
        l.handle(Side::Backends, &mut reply, 30),
        Verdict::Translated
    );
    assert_eq!(l.expire(60), 0, "nothing idle for more than 60 s yet");
    assert_eq!(l.expire(61), 1, "connection 2 idle for 61 s");
    let c = l.counters();
    assert_eq!((l.flows(), c.flows.expired), (1, 1));
    let active: u64 = l.backends().iter().map(|b| b.active).sum();
    assert_eq!(active, 1);
    to_backend(&mut l, udp(CLIENT, VIP, 3, VPORT), 61);
    assert_eq!(l.expire(200), 2);
    assert!(l.backends().iter().all(|b| b.active == 0));
}

#[test]
fn unknown_replies_are_dropped_and_counted() {
    let mut l = lb(4, 64);
    let b = to_backend(&mut l, udp(CLIENT, VIP, 5000, VPORT), 0);
    let other = *l.backends().iter().find(|x| x.addr != b).unwrap();
    let (bip, oip) = (b.ip().octets(), other.addr.ip().octets());
    for mut reply in [
        udp(bip, CLIENT, b.port(), 5001),            // another client port
        udp(bip, [198, 51, 100, 8], b.port(), 5000), // another client
        tcp(bip, CLIENT, b.port(), 5000),            // another protocol
        udp(oip, CLIENT, other.addr.port(), 5000),   // another backend
    ] {
        let before = reply.clone();
        let v = l.handle(Side::Backends, &mut reply, 0);
        assert_eq!(v, Verdict::Dropped(Reason::UnknownReply));
        assert_eq!(reply, before);
    }
    assert_eq!(l.counters().unknown_replies, 4);
    // From the backend's address but another port: not a backend's reply; it passes.
    let mut f = udp(bip, CLIENT, 22, 5000);
    assert_eq!(l.handle(Side::Backends, &mut f, 0), Verdict::Passed);
}

#[test]
fn other_traffic_passes_unchanged_and_counted() {
    let mut l = lb(2, 64);
    let v6 = pmd_net::build::udp6(MAC_B, MAC_A, [0x20; 16], [0x30; 16], 1, 80, b"x");
    let mut icmp = udp(CLIENT, VIP, 1, VPORT);
    icmp[23] = proto::ICMP;
    let b = backend(0).ip().octets();
    let frames = [
        arp(),
        v6,
        icmp,
        udp(CLIENT, [192, 0, 2, 11], 5000, VPORT), // another address
        tcp(CLIENT, VIP, 5000, 81),                // another port
        udp([203, 0, 113, 1], CLIENT, 8080, 5000), // not from a backend
        udp(b, CLIENT, 8081, 5000),                // a backend's address, another port
    ];
    for f in &frames {
        for side in [Side::Clients, Side::Backends] {
            let mut g = f.clone();
            assert_eq!(l.handle(side, &mut g, 0), Verdict::Passed);
            assert_eq!(&g, f);
        }
    }
    // To the VIP, but from the backends' side: not a client's; it passes too.
    let mut f = udp(CLIENT, VIP, 5000, VPORT);
    assert_eq!(l.handle(Side::Backends, &mut f, 0), Verdict::Passed);
    assert_eq!(l.counters().flows.passed, 2 * frames.len() as u64 + 1);
    assert_eq!(l.flows(), 0);
}

#[test]
fn malformed_frames_and_fragments_are_dropped_and_counted() {
    let mut l = lb(2, 64);
    let request = udp(CLIENT, VIP, 5000, VPORT);
    for side in [Side::Clients, Side::Backends] {
        for mut f in malformed(&request) {
            let v = l.handle(side, &mut f, 0);
            assert_eq!(v, Verdict::Dropped(Reason::Malformed));
        }
    }
    let reply = udp(backend(1).ip().octets(), CLIENT, 8080, 5000);
    for (side, good) in [(Side::Clients, &request), (Side::Backends, &reply)] {
        for mut f in fragments(good) {
            let v = l.handle(side, &mut f, 0);
            assert_eq!(v, Verdict::Dropped(Reason::Fragment));
        }
    }
    // Fragments of others' traffic pass.
    for mut f in fragments(&udp(CLIENT, [192, 0, 2, 11], 5000, VPORT)) {
        let before = f.clone();
        assert_eq!(l.handle(Side::Clients, &mut f, 0), Verdict::Passed);
        assert_eq!(f, before);
    }
    let c = l.counters();
    assert_eq!(
        (c.flows.malformed, c.flows.fragments, c.flows.passed),
        (6, 4, 2)
    );
    assert_eq!((c.to_backends, l.flows()), (0, 0));
}

#[test]
fn configurations_are_checked() {
    assert_eq!(config(1, 8).check(), Ok(()));
    assert_eq!(config(64, 8).check(), Ok(()));
    let mut twice = config(3, 8);
    twice.backends.push(backend(1));
    let mut on_vip = config(2, 8);
    on_vip.backends[1] = SocketAddrV4::new(VIP.into(), 8080);
    for (cfg, why) in [
        (config(0, 8), "0 backends: give 1 to 64"),
        (config(65, 8), "65 backends: give 1 to 64"),
        (twice, "backend 10.0.1.2:8080 is listed twice"),
        (on_vip, "backend 192.0.2.10:8080 is on the VIP's address"),
        (config(2, 0), "flow table"),
    ] {
        let e = Lb::new(&cfg).unwrap_err();
        assert!(e.contains(why), "{e}");
    }
    assert_eq!(
        endpoint("192.0.2.10:80"),
        Ok(SocketAddrV4::new(VIP.into(), 80))
    );
    for bad in [
        "",
        "192.0.2.10",
        "192.0.2.10:",
        ":80",
        "192.0.2.10:0",
        "192.0.2.10:65536",
        "192.0.2.10:+80",
        "192.0.2.10:80:81",
        "0.0.0.0:80",
        "255.255.255.255:80",
        "224.0.0.1:80",
        "example.com:80",
    ] {
        assert!(endpoint(bad).is_err(), "{bad:?}");
    }
}
