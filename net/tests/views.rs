//! The views against etherparse: frames of every kind it builds are parsed to the same
//! layers and offsets; TTL decrements and NAT rewrites leave checksums that a full
//! recomputation agrees with; truncated and lying frames are errors, never panics.

use etherparse::{NetHeaders, PacketBuilder, PacketHeaders, TransportHeader};
use pmd_net::{Headers, Ipv4, Ipv6, NetError, Tcp, Udp, L3, L4};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Spec {
    v6: bool,
    tcp: bool,
    tags: u8,
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    ttl: u8,
    payload: Vec<u8>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<bool>(),
        any::<bool>(),
        0u8..3,
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(
            |(v6, tcp, tags, src, dst, sport, dport, ttl, payload)| Spec {
                v6,
                tcp,
                tags,
                src,
                dst,
                sport,
                dport,
                ttl,
                payload,
            },
        )
}

fn build(s: &Spec) -> Vec<u8> {
    use etherparse::VlanId;
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let vid = |v| VlanId::try_new(v).unwrap();
    let mut out = Vec::new();
    macro_rules! finish {
        ($ip:expr) => {{
            let ip = $ip;
            if s.tcp {
                ip.tcp(s.sport, s.dport, 7, 1000)
                    .write(&mut out, &s.payload)
                    .unwrap()
            } else {
                ip.udp(s.sport, s.dport)
                    .write(&mut out, &s.payload)
                    .unwrap()
            }
        }};
    }
    macro_rules! net {
        ($l2:expr) => {{
            let l2 = $l2;
            if s.v6 {
                finish!(l2.ipv6(s.src, s.dst, s.ttl))
            } else {
                let (a, b) = (
                    [s.src[0], s.src[1], s.src[2], s.src[3]],
                    [s.dst[0], s.dst[1], s.dst[2], s.dst[3]],
                );
                finish!(l2.ipv4(a, b, s.ttl))
            }
        }};
    }
    match s.tags {
        0 => net!(eth),
        1 => net!(eth.single_vlan(vid(5))),
        _ => net!(eth.double_vlan(vid(5), vid(6))),
    }
    out
}

/// The IP and L4 checksums as etherparse computes them from the whole frame.
fn checksums_ok(f: &[u8]) -> bool {
    let h = PacketHeaders::from_ethernet_slice(f).unwrap();
    let payload = h.payload.slice();
    match (&h.net, &h.transport) {
        (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Udp(u))) => {
            ip.header_checksum == ip.calc_header_checksum()
                && u.checksum == u.calc_checksum_ipv4(ip, payload).unwrap()
        }
        (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Tcp(t))) => {
            ip.header_checksum == ip.calc_header_checksum()
                && t.checksum == t.calc_checksum_ipv4(ip, payload).unwrap()
        }
        _ => true,
    }
}

proptest! {
    #[test]
    fn layers_and_offsets_match_etherparse(s in spec()) {
        let f = build(&s);
        let h = Headers::parse(&f).unwrap();
        prop_assert_eq!(h.vlan_tags, s.tags);
        prop_assert_eq!(h.l3, if s.v6 { L3::Ipv6 } else { L3::Ipv4 });
        prop_assert_eq!(h.l3_offset, 14 + 4 * usize::from(s.tags));
        prop_assert_eq!(h.l4, if s.tcp { L4::Tcp } else { L4::Udp });
        prop_assert_eq!(h.l4_offset, h.l3_offset + if s.v6 { 40 } else { 20 });
        if s.v6 {
            let ip = Ipv6::new(&f[h.l3_offset..]).unwrap();
            prop_assert_eq!(ip.src().octets(), s.src);
            prop_assert_eq!(ip.hop_limit(), s.ttl);
        } else {
            let ip = Ipv4::new(&f[h.l3_offset..]).unwrap();
            prop_assert!(ip.checksum_ok());
            prop_assert_eq!(ip.ttl(), s.ttl);
            prop_assert_eq!(ip.payload().len(), f.len() - h.l4_offset);
        }
        let (sp, dp) = if s.tcp {
            let t = Tcp::new(&f[h.l4_offset..]).unwrap();
            (t.src_port(), t.dst_port())
        } else {
            let u = Udp::new(&f[h.l4_offset..]).unwrap();
            (u.src_port(), u.dst_port())
        };
        prop_assert_eq!((sp, dp), (s.sport, s.dport));
    }

    #[test]
    fn ttl_and_nat_edits_keep_every_checksum_right(
        s in spec(), new_src in any::<[u8; 4]>(), new_dst in any::<[u8; 4]>(), port in any::<u16>()
    ) {
        let s = Spec { v6: false, ..s };
        let mut f = build(&s);
        let h = Headers::parse(&f).unwrap();
        let mut ip = Ipv4::new(&mut f[h.l3_offset..]).unwrap();
        let decremented = ip.decrement_ttl();
        prop_assert_eq!(decremented, s.ttl > 1);
        let old_src = ip.set_src(new_src.into()).octets();
        let old_dst = ip.set_dst(new_dst.into()).octets();
        let l4 = ip.payload_mut();
        if s.tcp {
            let mut t = Tcp::new(l4).unwrap();
            t.replace_addr(&old_src, &new_src);
            t.replace_addr(&old_dst, &new_dst);
            t.set_src_port(port);
        } else {
            let mut u = Udp::new(l4).unwrap();
            u.replace_addr(&old_src, &new_src);
            u.replace_addr(&old_dst, &new_dst);
            u.set_dst_port(port);
        }
        prop_assert!(checksums_ok(&f));
        let ip = Ipv4::new(&f[h.l3_offset..]).unwrap();
        prop_assert_eq!(ip.ttl(), if decremented { s.ttl - 1 } else { s.ttl });
        prop_assert_eq!(ip.src().octets(), new_src);
        prop_assert_eq!(ip.dst().octets(), new_dst);
        prop_assert_eq!(ip.protocol(), if s.tcp { 6 } else { 17 });
        prop_assert_eq!(&f[..h.l3_offset + 8], &build(&s)[..h.l3_offset + 8]);
    }

    #[test]
    fn truncated_and_lying_frames_are_errors(s in spec(), cut in any::<prop::sample::Index>(), lie in any::<u16>()) {
        let f = build(&s);
        let cut = cut.index(f.len());
        // Any prefix: an error or a parse whose offsets lie inside it, never a panic.
        if let Ok(h) = Headers::parse(&f[..cut]) {
            prop_assert!(h.l3_offset <= cut && h.l4_offset <= cut);
        }
        // A total length beyond the frame.
        if !s.v6 {
            let mut g = f.clone();
            let at = 14 + 4 * usize::from(s.tags);
            let claimed = (g.len() - at + 1 + usize::from(lie % 100)) as u16;
            g[at + 2..at + 4].copy_from_slice(&claimed.to_be_bytes());
            let truncated = matches!(Headers::parse(&g), Err(NetError::Truncated { .. }));
            prop_assert!(truncated, "a total length past the frame");
            g[at] = 0x43; // header length 12
            let malformed = matches!(Headers::parse(&g), Err(NetError::Malformed(_)));
            prop_assert!(malformed, "a header length of 12");
        }
    }
}

#[test]
fn the_builder_makes_a_frame_etherparse_accepts() {
    let f = pmd_net::build::udp4(
        [2, 0, 0, 0, 0, 2],
        [2, 0, 0, 0, 0, 1],
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        1234,
        53,
        b"hello",
    );
    assert!(checksums_ok(&f));
    let h = PacketHeaders::from_ethernet_slice(&f).unwrap();
    assert_eq!(h.payload.slice(), b"hello");
    let mut g = f.clone();
    pmd_net::Ether::new(&mut g[..]).unwrap().swap_macs();
    assert_eq!(g[..6], f[6..12]);
}

#[test]
fn software_packet_types_match_what_a_nic_reports() {
    use pmd_core::mbuf::ptype::*;
    let v4 = pmd_net::build::udp4([2; 6], [4; 6], [10, 0, 0, 1], [10, 0, 0, 2], 1, 2, b"x");
    assert_eq!(
        pmd_net::Headers::parse(&v4).unwrap().ptype(),
        L2_ETHER | L3_IPV4 | L4_UDP
    );
    let mut spec = pmd_net::build::Frame4::udp([2; 6], [4; 6], [10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
    spec.transport = pmd_net::build::Transport::Tcp;
    let tcp = spec.build(b"y");
    assert_eq!(
        pmd_net::Headers::parse(&tcp).unwrap().ptype(),
        L2_ETHER | L3_IPV4 | L4_TCP
    );
    let v6 = pmd_net::build::udp6([2; 6], [4; 6], [1; 16], [2; 16], 1, 2, b"z");
    assert_eq!(
        pmd_net::Headers::parse(&v6).unwrap().ptype(),
        L2_ETHER | L3_IPV6 | L4_UDP
    );
    let mut arp = v4.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(pmd_net::Headers::parse(&arp).unwrap().ptype(), L2_ETHER);
}
