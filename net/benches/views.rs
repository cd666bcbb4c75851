//! Packet views against etherparse, on what a router does to each packet of a burst:
//!
//! - `parse`: find the layers and read the destination address and ports
//!   (`Headers::parse` and the views, vs `etherparse::SlicedPacket::from_ethernet`);
//! - `ttl`: decrement the IPv4 TTL with a correct header checksum (`Ipv4::decrement_ttl`,
//!   an incremental update, vs etherparse's way: read the header, change it, write it
//!   back with a checksum computed over it).
//!
//! First it prints TSC cycles per packet for each (bursts of 32 frames: IPv4 and IPv6,
//! UDP and TCP, 64 to 1500 bytes), then criterion measures the same loops.

#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use etherparse::{Ipv4HeaderSlice, NetSlice, SlicedPacket, TransportSlice};
use pmd_core::tsc::{hz, rdtsc};
use pmd_net::build::{Frame4, Transport};
use pmd_net::{Headers, Ipv4, Ipv6, L3};

const BURST: usize = 32;

fn frames() -> Vec<Vec<u8>> {
    (0..BURST)
        .map(|i| {
            let payload = vec![0x5a; 18 + (i * 97) % 1400];
            let (s, d) = ([10, 0, 0, i as u8], [198, 18, (i % 16) as u8, 1]);
            match i % 4 {
                0 => pmd_net::build::udp4([2; 6], [4; 6], s, d, 1000 + i as u16, 9, &payload),
                1 => {
                    let mut f = Frame4::udp([2; 6], [4; 6], s, d, 1000 + i as u16, 80);
                    f.transport = Transport::Tcp;
                    f.build(&payload)
                }
                _ => {
                    let mut src = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                    src[15] = i as u8;
                    let mut dst = [0x20, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
                    dst[7] = (i % 16) as u8;
                    pmd_net::build::udp6([2; 6], [4; 6], src, dst, 1000 + i as u16, 9, &payload)
                }
            }
        })
        .collect()
}

/// Ours: the destination address's last byte and the ports, summed (so nothing is
/// optimised away).
fn parse_ours(frames: &[Vec<u8>]) -> u64 {
    let mut acc = 0u64;
    for f in frames {
        let Ok(h) = Headers::parse(f) else { continue };
        let l3 = &f[h.l3_offset..];
        acc += match h.l3 {
            L3::Ipv4 => Ipv4::new(l3).map_or(0, |ip| u64::from(ip.dst().octets()[3])),
            L3::Ipv6 => Ipv6::new(l3).map_or(0, |ip| u64::from(ip.dst().octets()[15])),
            _ => 0,
        };
        if h.l4_offset != 0 {
            let p = &f[h.l4_offset..];
            acc += u64::from(u16::from_be_bytes([p[0], p[1]]))
                + u64::from(u16::from_be_bytes([p[2], p[3]]));
        }
    }
    acc
}

fn parse_etherparse(frames: &[Vec<u8>]) -> u64 {
    let mut acc = 0u64;
    for f in frames {
        let Ok(p) = SlicedPacket::from_ethernet(f) else {
            continue;
        };
        acc += match &p.net {
            Some(NetSlice::Ipv4(ip)) => u64::from(ip.header().destination()[3]),
            Some(NetSlice::Ipv6(ip)) => u64::from(ip.header().destination()[15]),
            _ => 0,
        };
        acc += match &p.transport {
            Some(TransportSlice::Udp(u)) => {
                u64::from(u.source_port()) + u64::from(u.destination_port())
            }
            Some(TransportSlice::Tcp(t)) => {
                u64::from(t.source_port()) + u64::from(t.destination_port())
            }
            _ => 0,
        };
    }
    acc
}

/// Decrements every IPv4 TTL (frames keep TTL > 1: they are reset when it reaches 2).
fn ttl_ours(frames: &mut [Vec<u8>]) {
    for f in frames.iter_mut() {
        if f[12..14] != [0x08, 0x00] {
            continue;
        }
        if let Ok(mut ip) = Ipv4::new(&mut f[14..]) {
            if !ip.decrement_ttl() {
                f[22] = 64;
            }
        }
    }
}

fn ttl_etherparse(frames: &mut [Vec<u8>]) {
    for f in frames.iter_mut() {
        if f[12..14] != [0x08, 0x00] {
            continue;
        }
        let Ok(slice) = Ipv4HeaderSlice::from_slice(&f[14..]) else {
            continue;
        };
        let mut h = slice.to_header();
        h.time_to_live = if h.time_to_live <= 1 {
            64
        } else {
            h.time_to_live - 1
        };
        h.header_checksum = h.calc_header_checksum();
        let hl = h.header_len();
        f[14..14 + hl].copy_from_slice(&h.to_bytes()[..hl]);
    }
}

/// TSC cycles per packet of `f` over many bursts.
fn cycles(mut f: impl FnMut()) -> f64 {
    const ROUNDS: u64 = 20_000;
    for _ in 0..1000 {
        f();
    }
    let t0 = rdtsc();
    for _ in 0..ROUNDS {
        f();
    }
    (rdtsc() - t0) as f64 / (ROUNDS * BURST as u64) as f64
}

fn bench(c: &mut Criterion) {
    let fr = frames();
    assert_eq!(
        parse_ours(&fr),
        parse_etherparse(&fr),
        "both read the same fields"
    );
    let mut a = fr.clone();
    let mut b = fr.clone();
    ttl_ours(&mut a);
    ttl_etherparse(&mut b);
    assert_eq!(a, b, "both decrement the same way");
    println!(
        "TSC {} MHz; cycles per packet (burst of {BURST}):",
        hz() / 1_000_000
    );
    println!(
        "  parse: views {:.1}, etherparse {:.1}",
        cycles(|| {
            black_box(parse_ours(black_box(&fr)));
        }),
        cycles(|| {
            black_box(parse_etherparse(black_box(&fr)));
        })
    );
    println!(
        "  ttl:   views {:.1}, etherparse {:.1}",
        cycles(|| ttl_ours(black_box(&mut a))),
        cycles(|| ttl_etherparse(black_box(&mut b)))
    );

    let mut g = c.benchmark_group("views");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("parse/views", |x| x.iter(|| parse_ours(black_box(&fr))));
    g.bench_function("parse/etherparse", |x| {
        x.iter(|| parse_etherparse(black_box(&fr)))
    });
    g.bench_function("ttl/views", |x| x.iter(|| ttl_ours(black_box(&mut a))));
    g.bench_function("ttl/etherparse", |x| {
        x.iter(|| ttl_etherparse(black_box(&mut b)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
