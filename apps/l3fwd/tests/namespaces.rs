//! l3fwd routing real frames between two veth pairs in a private network namespace
//! (af_packet ports):
//!
//! ```text
//!  inject                 l3fwd (af_packet)                 capture
//!  a_out <==veth==> a_in [port 0] --routes--> [port 1] b_in <==veth==> b_out
//! ```
//!
//! Routed IPv4 and IPv6 packets of many sizes arrive once each with the TTL or hop
//! limit one lower, a correct IPv4 header checksum, the MACs of `--eth-dest` and port
//! 1, and every other byte as sent; packets without a route, with a TTL of 1, with
//! lying headers and of other ethertypes do not arrive and are counted by reason. Both
//! lookup methods.

use pmd_core::csum;
use pmd_testkit::{fmt_mac, NetNs, RawSock, TempDir};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const L3FWD: &str = env!("CARGO_BIN_EXE_l3fwd");
const INJECT_SRC: [u8; 6] = [0x02, 0, 0, 0, 0xaa, 0x01];
/// Where --eth-dest sends port 1's packets.
const NEXT_HOP: [u8; 6] = [0x02, 0, 0, 0, 0xbb, 0x02];
const ETH_P_ALL: u16 = 0x0003;

/// The frames a test sends, by what should happen to them.
struct Traffic {
    routed: Vec<Vec<u8>>,
    no_route: Vec<Vec<u8>>,
    ttl_expired: Vec<Vec<u8>>,
    malformed: Vec<Vec<u8>>,
    not_ip: Vec<Vec<u8>>,
}

/// A payload whose first four bytes number the frame (to match what arrives).
fn payload(seq: u32, len: usize) -> Vec<u8> {
    let mut p = seq.to_be_bytes().to_vec();
    p.extend((4..len.max(4)).map(|i| (i as u32 ^ seq) as u8));
    p
}

fn v4(dst_mac: [u8; 6], dst: [u8; 4], seq: u32, len: usize) -> Vec<u8> {
    let src = [10, 0, (seq >> 8) as u8, seq as u8];
    pmd_net::build::udp4(
        dst_mac,
        INJECT_SRC,
        src,
        dst,
        1000 + seq as u16,
        9,
        &payload(seq, len),
    )
}

fn v6(dst_mac: [u8; 6], dst: [u8; 16], seq: u32, len: usize) -> Vec<u8> {
    let mut src = [0u8; 16];
    src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    src[12..].copy_from_slice(&seq.to_be_bytes());
    pmd_net::build::udp6(
        dst_mac,
        INJECT_SRC,
        src,
        dst,
        1000 + seq as u16,
        9,
        &payload(seq, len),
    )
}

/// 2001:200:0:1::N
fn net6(n: u16) -> [u8; 16] {
    std::net::Ipv6Addr::new(0x2001, 0x200, 0, 1, 0, 0, 0, n).octets()
}

fn traffic(dst_mac: [u8; 6]) -> Traffic {
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    let mut t = Traffic {
        routed: Vec::new(),
        no_route: Vec::new(),
        ttl_expired: Vec::new(),
        malformed: Vec::new(),
        not_ip: Vec::new(),
    };
    for i in 0..150u32 {
        let len = 18 + (i as usize * 53) % 1400;
        let s = next();
        t.routed
            .push(v4(dst_mac, [198, 18, 1, (i % 250) as u8 + 1], s, len));
        let s = next();
        t.routed.push(v6(dst_mac, net6(i as u16 + 1), s, len));
    }
    // An IPv4 header with options (IHL 6) is routed like any other.
    let s = next();
    let mut opt = v4(dst_mac, [198, 18, 1, 9], s, 40);
    opt[14] = 0x46;
    let c = csum::checksum(&{
        let mut h = opt[14..38].to_vec();
        h[10..12].fill(0);
        h
    });
    opt[24..26].copy_from_slice(&c.to_be_bytes());
    t.routed.push(opt);
    for i in 0..20u32 {
        let s = next();
        t.no_route.push(v4(dst_mac, [203, 0, 113, i as u8], s, 30));
        let s = next();
        let mut far = net6(1);
        far[7] = 0x77; // 2001:200:0:77::1: no route
        t.no_route.push(v6(dst_mac, far, s, 30));
    }
    for i in 0..10u32 {
        let s = next();
        let mut f = v4(dst_mac, [198, 18, 1, 1], s, 30 + i as usize);
        f[22] = 1; // TTL 1 (checksum left stale: it is dropped before anyone reads it)
        t.ttl_expired.push(f);
        let s = next();
        let mut f = v6(dst_mac, net6(1), s, 30);
        f[21] = 1;
        t.ttl_expired.push(f);
    }
    for i in 0..10u32 {
        let s = next();
        let mut f = v4(dst_mac, [198, 18, 1, 1], s, 30);
        match i % 3 {
            0 => f[16..18].copy_from_slice(&4000u16.to_be_bytes()), // total length past the frame
            1 => f[14] = 0x43,                                      // IHL 3
            _ => f[14] = 0x55,                                      // version 5
        }
        t.malformed.push(f);
        let s = next();
        let mut f = v6(dst_mac, net6(1), s, 30);
        f[18..20].copy_from_slice(&3000u16.to_be_bytes()); // payload length past the frame
        t.malformed.push(f);
    }
    for i in 0..10u32 {
        let mut f = dst_mac.to_vec();
        f.extend_from_slice(&INJECT_SRC);
        f.extend_from_slice(&0x88b5u16.to_be_bytes());
        f.extend_from_slice(&payload(next(), 46 + i as usize));
        t.not_ip.push(f);
    }
    t
}

/// The frame number in the payload of a routed frame (IPv4 IHL 5 or 6, or IPv6).
fn seq_of(f: &[u8]) -> Option<u32> {
    let l4 = match u16::from_be_bytes([f[12], f[13]]) {
        0x0800 => 14 + usize::from(f[14] & 0xf) * 4,
        0x86dd => 54,
        _ => return None,
    };
    Some(u32::from_be_bytes(f.get(l4 + 8..l4 + 12)?.try_into().ok()?))
}

/// What a router must have made of `sent`.
fn expected(sent: &[u8], src_mac: [u8; 6]) -> Vec<u8> {
    let mut e = sent.to_vec();
    e[..6].copy_from_slice(&NEXT_HOP);
    e[6..12].copy_from_slice(&src_mac);
    if e[12..14] == [0x08, 0x00] {
        e[22] -= 1;
        let hl = usize::from(e[14] & 0xf) * 4;
        e[24..26].fill(0);
        let c = csum::checksum(&e[14..14 + hl]);
        e[24..26].copy_from_slice(&c.to_be_bytes());
    } else {
        e[21] -= 1;
    }
    e
}

/// The count after `label` in l3fwd's final statistics.
fn count(out: &str, label: &str) -> u64 {
    pmd_testkit::number_after(out, label).unwrap_or_else(|| panic!("no {label:?} in\n{out}"))
}

fn routes_and_forwards(test: &str, lookup: &str) {
    let Some(ns) = NetNs::new("l3fwdt", test) else {
        return;
    };
    ns.veth("a_in", "a_out");
    ns.veth("b_in", "b_out");
    let mac_a = ns.mac("a_in");
    let mac_b = ns.mac("b_in");
    let t = traffic(mac_a);

    let dir = TempDir::new("l3fwd-ns");
    let (r4, r6) = (dir.path().join("v4.cfg"), dir.path().join("v6.cfg"));
    if lookup == "lpm" {
        std::fs::write(&r4, "# to port 1\nR198.18.1.0/24 1\nR198.18.0.0/24 0\n").unwrap();
        std::fs::write(&r6, "R2001:200:0:1::/64 1\n").unwrap();
    } else {
        // One route per routed flow, read back from the frames themselves.
        let (mut s4, mut s6) = (String::new(), String::new());
        for f in &t.routed {
            let h = pmd_net::Headers::parse(f).unwrap();
            let l4 = &f[h.l4_offset..];
            let (sp, dp) = (
                u16::from_be_bytes([l4[0], l4[1]]),
                u16::from_be_bytes([l4[2], l4[3]]),
            );
            if h.l3 == pmd_net::L3::Ipv4 {
                let ip = pmd_net::Ipv4::new(&f[h.l3_offset..]).unwrap();
                s4.push_str(&format!("R{} {} {dp} {sp} 17 1\n", ip.dst(), ip.src()));
            } else {
                let ip = pmd_net::Ipv6::new(&f[h.l3_offset..]).unwrap();
                s6.push_str(&format!("R{} {} {dp} {sp} 0x11 1\n", ip.dst(), ip.src()));
            }
        }
        std::fs::write(&r4, s4).unwrap();
        std::fs::write(&r6, s6).unwrap();
    }

    let eal = [
        "--vdev",
        "net_af_packet0,iface=a_in",
        "--vdev",
        "net_af_packet1,iface=b_in",
    ];
    let app_args = [
        "-p".to_string(),
        "0x3".into(),
        "-P".into(),
        "--config=(0,0,0),(1,0,0)".into(),
        format!("--lookup={lookup}"),
        format!("--eth-dest=1,{}", fmt_mac(&NEXT_HOP)),
        format!("--rule_ipv4={}", r4.display()),
        format!("--rule_ipv6={}", r6.display()),
    ];
    let app_args: Vec<&str> = app_args.iter().map(String::as_str).collect();
    let mut app = ns.start_app(L3FWD, &eal, &app_args, "Lcore 0: RX port 1");
    // Let the ports' sockets settle before the first frame.
    std::thread::sleep(Duration::from_millis(300));

    let all: Vec<Vec<u8>> = [
        &t.routed,
        &t.no_route,
        &t.ttl_expired,
        &t.malformed,
        &t.not_ip,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    let want = t.routed.len();
    let got = ns.run(move || {
        let cap = RawSock::open("b_out", ETH_P_ALL, Duration::from_millis(20));
        let inj = RawSock::open("a_out", ETH_P_ALL, Duration::from_millis(20));
        std::thread::scope(|s| {
            let rx = s.spawn(|| {
                let mut got: Vec<Vec<u8>> = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(6);
                let mut quiet_until = None;
                while Instant::now() < deadline && quiet_until.is_none_or(|q| Instant::now() < q) {
                    if let Some(f) = cap.recv_incoming() {
                        got.push(f);
                        if got.len() >= want {
                            // Then a short wait for anything beyond what is expected.
                            quiet_until.get_or_insert(Instant::now() + Duration::from_millis(300));
                        }
                    }
                }
                got
            });
            for (i, f) in all.iter().enumerate() {
                inj.send_retrying(f, Duration::from_secs(2));
                if i % 32 == 31 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            rx.join().expect("capture thread")
        })
    });
    let status = app
        .interrupt(Duration::from_secs(10))
        .expect("l3fwd did not stop on SIGINT");
    let out = app.stdout();
    assert!(status.success(), "{}", app.transcript());

    let by_seq: HashMap<u32, &Vec<u8>> = t.routed.iter().map(|f| (seq_of(f).unwrap(), f)).collect();
    let mut seen = HashMap::new();
    for f in &got {
        let seq =
            seq_of(f).unwrap_or_else(|| panic!("a frame that was not routed arrived: {f:02x?}"));
        let sent = by_seq
            .get(&seq)
            .unwrap_or_else(|| panic!("frame {seq} arrived but should have been dropped"));
        assert!(seen.insert(seq, ()).is_none(), "frame {seq} arrived twice");
        assert_eq!(*f, expected(sent, mac_b), "frame {seq} as routed\n{out}");
        if f[12..14] == [0x08, 0x00] {
            let hl = usize::from(f[14] & 0xf) * 4;
            assert_eq!(
                csum::ones_complement_sum(&f[14..14 + hl]),
                0xffff,
                "frame {seq} checksum"
            );
        }
    }
    assert_eq!(
        got.len(),
        want,
        "routed frames that arrived\n{}",
        app.transcript()
    );
    assert_eq!(count(&out, "forwarded"), want as u64, "{out}");
    assert_eq!(count(&out, "no route"), t.no_route.len() as u64, "{out}");
    assert_eq!(
        count(&out, "TTL expired"),
        t.ttl_expired.len() as u64,
        "{out}"
    );
    assert_eq!(count(&out, "malformed"), t.malformed.len() as u64, "{out}");
    assert_eq!(count(&out, "not IP"), t.not_ip.len() as u64, "{out}");
    assert_eq!(count(&out, "l3fwd: received"), all_len(&t) as u64, "{out}");
}

fn all_len(t: &Traffic) -> usize {
    t.routed.len() + t.no_route.len() + t.ttl_expired.len() + t.malformed.len() + t.not_ip.len()
}

#[test]
fn lpm_routes_ipv4_and_ipv6_and_counts_what_it_drops() {
    routes_and_forwards("lpm_routes_ipv4_and_ipv6_and_counts_what_it_drops", "lpm");
}

#[test]
fn em_routes_ipv4_and_ipv6_and_counts_what_it_drops() {
    routes_and_forwards("em_routes_ipv4_and_ipv6_and_counts_what_it_drops", "em");
}
