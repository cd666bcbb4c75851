//! The unchanged ixgbe driver against the model through the ethdev API: jumbo frames as
//! mbuf chains (SCATTER), the maximum frame size, chains transmitted byte-exact, TSO,
//! checksum offload, VLAN insertion and stripping. Every frame the model puts on its wire
//! is checked with etherparse, independently of the driver and the model.

mod common;

use common::wait_for;
use etherparse::{Ipv4Header, PacketBuilder, TcpHeader, UdpHeader};
use pmd_core::ethdev::{
    Device, Port, PortConf, RxOffloads, RxQueueHandle, TxOffloads, TxQueueHandle,
};
use pmd_core::mbuf::{
    Mbuf, PktBatch, TxOffload, RX_VLAN, RX_VLAN_STRIPPED, TX_IPV4, TX_IP_CKSUM, TX_TCP_CKSUM,
    TX_TCP_SEG, TX_UDP_CKSUM, TX_VLAN,
};
use pmd_core::mempool::MempoolConfig;
use pmd_core::Mempool;
use pmd_ixgbe_model::frame::frame_seq;
use pmd_ixgbe_model::regs::{HLREG0, HLREG0_JUMBOEN, MAXFRS};
use pmd_ixgbe_model::{Generator, Model82599, ModelConf, RxOutcome};

const MAC: [u8; 6] = [0x02, 0x1b, 0x21, 0x55, 0x44, 0x33];
const PEER: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x09];

fn model() -> Model82599 {
    Model82599::new(ModelConf {
        mac: MAC,
        capture: 256,
        ..ModelConf::default()
    })
    .unwrap()
}

/// A started port on `m` with one queue each way.
fn port(
    m: &Model82599,
    mtu: u16,
    rx: RxOffloads,
    tx: TxOffloads,
    pool: &Mempool,
) -> (Port, RxQueueHandle, TxQueueHandle) {
    let dev = pmd_ixgbe::probe(m.backend(), "jumbo0").unwrap();
    let mut port = Port::new(0, "jumbo0", Box::new(dev));
    port.configure(&PortConf {
        rx_offloads: rx,
        tx_offloads: tx,
        mtu: Some(mtu),
        ..Default::default()
    })
    .unwrap();
    let rxq = port.setup_rx_queue(0, 256, pool).unwrap();
    let txq = port.setup_tx_queue(0, 256).unwrap();
    port.start().unwrap();
    (port, rxq, txq)
}

fn reg(m: &Model82599, off: usize) -> u32 {
    m.backend().map_bar(0).unwrap().read32_at(off).unwrap()
}

/// Sends every packet of `out` (after tx_prepare) and waits for `frames` on the wire.
fn send(m: &Model82599, txq: &mut TxQueueHandle, mut out: PktBatch, frames: usize) -> Vec<Vec<u8>> {
    let before = m.captured().len();
    assert_eq!(
        txq.tx_prepare(&mut out),
        out.len(),
        "tx_prepare takes every packet"
    );
    wait_for("the transmit ring", || {
        txq.tx_burst(&mut out);
        out.is_empty()
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while m.captured().len() < before + frames {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {frames} frames on the wire; model: {:?}",
            m.captured().len() - before,
            m.stats()
        );
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    let cap = m.captured();
    cap[before..].to_vec()
}

fn tcp_frame(payload: &[u8], seq: u32) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC, PEER)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(4321, 80, seq, 65535)
        .psh()
        .ack(7);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).unwrap();
    v
}

fn udp_frame(payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC, PEER)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 3], 64)
        .udp(5000, 6000);
    let mut v = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut v, payload).unwrap();
    v
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

/// Checks the IPv4 header checksum and the TCP or UDP checksum of `f` (untagged, or
/// with one VLAN tag); returns the IPv4 header, the TCP header if any, and the payload.
fn verify(f: &[u8]) -> (Ipv4Header, Option<TcpHeader>, Vec<u8>) {
    let l3 = if f[12..14] == [0x81, 0x00] { 18 } else { 14 };
    let (ip, rest) = Ipv4Header::from_slice(&f[l3..]).unwrap();
    let l4 = &rest[..usize::from(ip.total_len) - ip.header_len()];
    assert_eq!(
        ip.header_checksum,
        ip.calc_header_checksum(),
        "IPv4 checksum"
    );
    if ip.protocol == etherparse::IpNumber::TCP {
        let (tcp, payload) = TcpHeader::from_slice(l4).unwrap();
        assert_eq!(
            tcp.checksum,
            tcp.calc_checksum_ipv4(&ip, payload).unwrap(),
            "TCP checksum"
        );
        (ip, Some(tcp), payload.to_vec())
    } else {
        let (udp, payload) = UdpHeader::from_slice(l4).unwrap();
        assert_eq!(
            udp.checksum,
            udp.calc_checksum_ipv4(&ip, payload).unwrap(),
            "UDP checksum"
        );
        (ip, None, payload.to_vec())
    }
}

#[test]
fn jumbo_frames_arrive_as_chains_with_scatter() {
    let m = model();
    let pool = Mempool::create("jumbo-rx", 2048, 0).unwrap();
    let (port, mut rxq, _txq) = port(&m, 9000, RxOffloads::SCATTER, TxOffloads::NONE, &pool);
    // MAXFRS.MFS = MTU + header + CRC, jumbo frames on.
    assert_eq!(reg(&m, MAXFRS) >> 16, 9018);
    assert_ne!(reg(&m, HLREG0) & HLREG0_JUMBOEN, 0);
    // Small bursts: chains are left half-done between bursts.
    rxq.set_burst(3);
    let frames = 100u64;
    let g = Generator {
        size: 9014,
        ..Generator::new(frames, MAC)
    };
    m.start_generator(g.clone());
    let mut batch = PktBatch::new();
    let mut seen = 0u64;
    wait_for("100 jumbo frames", || {
        rxq.rx_burst(&mut batch);
        for p in batch.iter() {
            assert_eq!((p.len(), p.nb_segs()), (9014, 5), "2048-byte buffers");
            let v = p.to_vec();
            let seq = frame_seq(&v).unwrap();
            assert_eq!(seq, seen, "in order");
            assert_eq!(v, g.frame(seq), "frame {seq} intact");
            seen += 1;
        }
        batch.clear();
        seen == frames
    });
    let s = port.stats();
    assert_eq!((s.ipackets, s.ierrors), (frames, 0));
    assert_eq!(s.ibytes, frames * 9014);
    // A short frame still takes one buffer.
    m.inject(&g.frame(0)[..60]);
    wait_for("a short frame", || rxq.rx_burst(&mut batch) == 1);
    assert_eq!(
        (batch.as_slice()[0].len(), batch.as_slice()[0].nb_segs()),
        (60, 1)
    );
    batch.clear();
    drop(rxq);
    assert_eq!(pool.stats().in_use, 0, "no buffer leaked (chains included)");
}

#[test]
fn without_scatter_a_jumbo_mtu_is_refused_and_spanning_frames_are_counted() {
    let m = model();
    let pool = Mempool::create("jumbo-noscatter", 1024, 0).unwrap();
    let dev = pmd_ixgbe::probe(m.backend(), "jumbo1").unwrap();
    let mut port = Port::new(1, "jumbo1", Box::new(dev));
    port.configure(&PortConf {
        mtu: Some(9000),
        ..Default::default()
    })
    .unwrap();
    let e = port.setup_rx_queue(0, 256, &pool).unwrap_err().to_string();
    assert!(e.contains("SCATTER"), "{e}");
    // With the MTU at 1500 the queue sets up; a frame spanning buffers (the MAC accepts
    // it when MAXFRS says so) is dropped whole and counted once.
    port.set_mtu(1500).unwrap();
    let mut rxq = port.setup_rx_queue(0, 256, &pool).unwrap();
    let _txq = port.setup_tx_queue(0, 256).unwrap();
    port.start().unwrap();
    let bar = m.backend().map_bar(0).unwrap();
    bar.write32_at(MAXFRS, 9728 << 16).unwrap();
    bar.write32_at(HLREG0, reg(&m, HLREG0) | HLREG0_JUMBOEN)
        .unwrap();
    let g = Generator {
        size: 5000,
        ..Generator::new(10, MAC)
    };
    for seq in 0..10 {
        assert_eq!(
            m.try_inject(&g.frame(seq)),
            RxOutcome::Delivered {
                queue: 0,
                descriptors: 3
            }
        );
    }
    m.inject(&g.frame(10)[..200]);
    let mut batch = PktBatch::new();
    wait_for("the short frame after the dropped ones", || {
        rxq.rx_burst(&mut batch);
        !batch.is_empty()
    });
    assert_eq!(batch.len(), 1);
    assert_eq!(batch.as_slice()[0].len(), 200);
    let s = port.stats();
    assert_eq!((s.ipackets, s.ierrors), (1, 10));
}

#[test]
fn frames_above_9728_bytes_are_refused() {
    let m = model();
    let pool = Mempool::create("jumbo-max", 2048, 0).unwrap();
    let dev = pmd_ixgbe::probe(m.backend(), "jumbo2").unwrap();
    let info = dev.info();
    assert_eq!((info.max_mtu, info.max_rx_pktlen), (9710, 9728));
    let mut port = Port::new(2, "jumbo2", Box::new(dev));
    let e = port
        .configure(&PortConf {
            mtu: Some(9711),
            rx_offloads: RxOffloads::SCATTER,
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("9710"), "{e}");
    port.configure(&PortConf {
        mtu: Some(9710),
        rx_offloads: RxOffloads::SCATTER,
        ..Default::default()
    })
    .unwrap();
    let mut rxq = port.setup_rx_queue(0, 256, &pool).unwrap();
    let _txq = port.setup_tx_queue(0, 256).unwrap();
    port.start().unwrap();
    assert_eq!(reg(&m, MAXFRS) >> 16, 9728);
    let g = Generator {
        size: 9724,
        ..Generator::new(2, MAC)
    };
    // 9724 bytes + CRC = 9728: accepted; one more byte is not (counted in ROC/RLEC).
    assert!(matches!(
        m.try_inject(&g.frame(0)),
        RxOutcome::Delivered { .. }
    ));
    let mut big = g.frame(1);
    big.push(0);
    assert_eq!(m.try_inject(&big), RxOutcome::Oversize);
    // A tagged frame may be four bytes longer.
    let mut tagged = g.frame(1);
    tagged.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    assert!(matches!(m.try_inject(&tagged), RxOutcome::Delivered { .. }));
    tagged.push(0);
    assert_eq!(m.try_inject(&tagged), RxOutcome::Oversize);
    let mut batch = PktBatch::new();
    wait_for("the two accepted frames", || {
        rxq.rx_burst(&mut batch);
        batch.len() == 2
    });
    assert_eq!(batch.as_slice()[0].to_vec(), g.frame(0));
    assert_eq!(batch.as_slice()[1].len(), 9728);
    let x = port.xstats();
    let get = |n: &str| x.iter().find(|(k, _)| k == n).map_or(0, |(_, v)| *v);
    assert_eq!(get("rx_length_errors"), 2);
    assert_eq!(m.stats().rx_dropped(), 2);
}

#[test]
fn chains_are_transmitted_byte_exact() {
    let m = model();
    let pool = Mempool::create("chain-tx", 2048, 0).unwrap();
    let small = Mempool::create_with(
        "chain-tx-small",
        &MempoolConfig {
            size: 1024,
            cache_size: 0,
            buf_size: 128 + 200,
        },
    )
    .unwrap();
    let (_port, _rxq, mut txq) = port(&m, 9000, RxOffloads::SCATTER, TxOffloads::MULTI_SEGS, &pool);
    let mut out = PktBatch::new();
    let mut want = Vec::new();
    for i in 0..24u8 {
        let len = match i % 4 {
            0 => 60,
            1 => 1514,
            2 => 9014,
            _ => 3000 + usize::from(i) * 11,
        };
        let f = {
            let mut f = pattern(len, i);
            f[..6].copy_from_slice(&PEER);
            f
        };
        let p = match i % 3 {
            // Single segment where it fits one buffer.
            0 if len <= 2048 => Mbuf::from_slice(&f, &pool).unwrap(),
            // 200-byte segments (up to the 30-segment limit: else 2 KiB ones).
            1 if len <= 200 * 30 => Mbuf::from_slice(&f, &small).unwrap(),
            // A head from one pool, the rest from another.
            _ => {
                let mut h = Mbuf::from_slice(&f[..100.min(len)], &small).unwrap();
                if len > 100 {
                    h.chain(Mbuf::from_slice(&f[100..], &pool).unwrap())
                        .unwrap();
                }
                h
            }
        };
        want.push(f);
        out.push(p).unwrap();
    }
    assert!(out.iter().any(|p| p.nb_segs() > 10));
    let got = send(&m, &mut txq, out, want.len());
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "frame {i} ({} bytes) byte-exact", w.len());
    }
    // Completed chains go back to their pools, every segment, as the ring wraps.
    let mut more = PktBatch::new();
    for _ in 0..300 {
        more.push(Mbuf::from_slice(&want[0], &pool).unwrap())
            .unwrap();
        if more.len() == 32 {
            wait_for("room", || {
                txq.tx_burst(&mut more);
                more.is_empty()
            });
        }
    }
    wait_for("the rest", || {
        txq.tx_burst(&mut more);
        more.is_empty()
    });
    assert_eq!(small.stats().in_use, 0, "every chain segment went home");
}

#[test]
fn tso_of_a_20000_byte_tcp_packet_gives_valid_mss_segments() {
    let m = model();
    let pool = Mempool::create("tso", 2048, 0).unwrap();
    let (port, _rxq, mut txq) = port(
        &m,
        1500,
        RxOffloads::NONE,
        TxOffloads::TCP_TSO | TxOffloads::MULTI_SEGS | TxOffloads::CHECKSUM,
        &pool,
    );
    let payload = pattern(20000 - 54, 3);
    let seq0 = 0xfffff000; // wraps during the packet
    let f = tcp_frame(&payload, seq0);
    assert_eq!(f.len(), 20000);
    let mut p = Mbuf::from_slice(&f, &pool).unwrap();
    assert_eq!(p.nb_segs(), 10);
    p.set_ol_flags(TX_TCP_SEG | TX_IPV4 | TX_IP_CKSUM | TX_TCP_CKSUM);
    p.set_tx_offload(TxOffload {
        l2_len: 14,
        l3_len: 20,
        l4_len: 20,
        tso_segsz: 1460,
        ..Default::default()
    });
    let mut out = PktBatch::new();
    out.push(p).unwrap();
    let n = payload.len().div_ceil(1460);
    assert_eq!(n, 14);
    let got = send(&m, &mut txq, out, n);
    assert_eq!(got.len(), n);
    let mut joined = Vec::new();
    let (ip0, _) = Ipv4Header::from_slice(&f[14..]).unwrap();
    for (i, g) in got.iter().enumerate() {
        let (ip, tcp, data) = verify(g);
        let tcp = tcp.unwrap();
        let want_len = if i + 1 < n {
            1460
        } else {
            payload.len() - 13 * 1460
        };
        assert_eq!(data.len(), want_len, "segment {i}");
        assert!(g.len() <= 1514);
        assert_eq!(ip.identification, ip0.identification.wrapping_add(i as u16));
        assert_eq!(tcp.sequence_number, seq0.wrapping_add(i as u32 * 1460));
        assert_eq!(tcp.psh, i + 1 == n, "PSH only on the last");
        assert!(tcp.ack && tcp.acknowledgment_number == 7);
        joined.extend_from_slice(&data);
    }
    assert_eq!(joined, payload, "the payload concatenates to the original");
    assert_eq!(port.stats().opackets, 1, "one packet for the port");
}

#[test]
fn checksum_offload_produces_valid_checksums() {
    let m = model();
    let pool = Mempool::create("csum", 2048, 0).unwrap();
    let (_port, _rxq, mut txq) = port(
        &m,
        1500,
        RxOffloads::NONE,
        TxOffloads::CHECKSUM | TxOffloads::MULTI_SEGS,
        &pool,
    );
    let mut out = PktBatch::new();
    let mut want = Vec::new();
    for i in 0..20u8 {
        let payload = pattern(40 + usize::from(i) * 73, i);
        // Every other pair changes the offload request: cached and new contexts mix.
        let tcp = (i / 2) % 2 == 0;
        let mut f = if tcp {
            tcp_frame(&payload, u32::from(i) * 1000)
        } else {
            udp_frame(&payload)
        };
        // Wrong checksums in: the device must write the right ones.
        f[24..26].copy_from_slice(&[0xde, 0xad]);
        let at = 34 + if tcp { 16 } else { 6 };
        f[at..at + 2].copy_from_slice(&[0xbe, 0xef]);
        let mut p = if i % 5 == 4 {
            // A chain: headers in the first segment, the rest after.
            let mut h = Mbuf::from_slice(&f[..60], &pool).unwrap();
            h.chain(Mbuf::from_slice(&f[60..], &pool).unwrap()).unwrap();
            h
        } else {
            Mbuf::from_slice(&f, &pool).unwrap()
        };
        p.set_ol_flags(TX_IPV4 | TX_IP_CKSUM | if tcp { TX_TCP_CKSUM } else { TX_UDP_CKSUM });
        p.set_tx_offload(TxOffload {
            l2_len: 14,
            l3_len: 20,
            l4_len: if tcp { 20 } else { 8 },
            ..Default::default()
        });
        out.push(p).unwrap();
        want.push(payload);
    }
    let got = send(&m, &mut txq, out, want.len());
    for (g, w) in got.iter().zip(&want) {
        let (_, _, data) = verify(g);
        assert_eq!(&data, w);
    }
}

#[test]
fn vlan_tags_are_inserted_and_stripped() {
    let m = model();
    let pool = Mempool::create("vlan", 2048, 0).unwrap();
    let (_port, mut rxq, mut txq) = port(
        &m,
        1500,
        RxOffloads::VLAN_STRIP,
        TxOffloads::VLAN_INSERT | TxOffloads::CHECKSUM,
        &pool,
    );
    // Insert: alone, and with checksum offload on the same packet.
    let plain = udp_frame(&pattern(100, 1));
    let mut a = Mbuf::from_slice(&plain, &pool).unwrap();
    a.set_ol_flags(TX_VLAN);
    a.set_vlan_tci(0x2123);
    let mut b = Mbuf::from_slice(&tcp_frame(&pattern(300, 2), 9), &pool).unwrap();
    b.set_ol_flags(TX_VLAN | TX_IPV4 | TX_IP_CKSUM | TX_TCP_CKSUM);
    b.set_vlan_tci(0x0007);
    b.set_tx_offload(TxOffload {
        l2_len: 14,
        l3_len: 20,
        l4_len: 20,
        ..Default::default()
    });
    let mut out = PktBatch::new();
    out.push(a).unwrap();
    out.push(b).unwrap();
    let got = send(&m, &mut txq, out, 2);
    let mut want = plain.clone();
    want.splice(12..12, [0x81, 0x00, 0x21, 0x23]);
    assert_eq!(got[0], want);
    assert_eq!(&got[1][12..16], &[0x81, 0x00, 0x00, 0x07]);
    let (_, tcp, data) = verify(&got[1]);
    assert!(tcp.is_some());
    assert_eq!(data, pattern(300, 2));

    // Strip: the tag leaves the data for vlan_tci.
    let mut tagged = udp_frame(&pattern(200, 5));
    tagged[..6].copy_from_slice(&MAC);
    let untagged = tagged.clone();
    tagged.splice(12..12, [0x81, 0x00, 0x30, 0x64]);
    m.inject(&tagged);
    let mut batch = PktBatch::new();
    wait_for("the tagged frame", || rxq.rx_burst(&mut batch) == 1);
    let p = &batch.as_slice()[0];
    assert_eq!(p.to_vec(), untagged);
    assert_eq!(p.vlan_tci(), 0x3064);
    assert_eq!(
        p.ol_flags() & (RX_VLAN | RX_VLAN_STRIPPED),
        RX_VLAN | RX_VLAN_STRIPPED
    );
}

#[test]
fn without_vlan_strip_the_tag_stays_in_the_data() {
    let m = model();
    let pool = Mempool::create("vlan-keep", 2048, 0).unwrap();
    let (_port, mut rxq, _txq) = port(&m, 1500, RxOffloads::NONE, TxOffloads::NONE, &pool);
    let mut tagged = udp_frame(&pattern(200, 5));
    tagged[..6].copy_from_slice(&MAC);
    tagged.splice(12..12, [0x81, 0x00, 0x30, 0x64]);
    m.inject(&tagged);
    let mut batch = PktBatch::new();
    wait_for("the tagged frame", || rxq.rx_burst(&mut batch) == 1);
    let p = &batch.as_slice()[0];
    assert_eq!(p.to_vec(), tagged);
    assert_eq!(p.ol_flags() & (RX_VLAN | RX_VLAN_STRIPPED), 0);
}
