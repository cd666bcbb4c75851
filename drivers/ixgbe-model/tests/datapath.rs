//! The data path: receive (filters, descriptors, lengths, RSS), the generator, transmit,
//! statistics, and the pmd-intel rings running against the model.

mod common;

use common::{rx_len, rx_status, wait_for, Nic, Ring};
use pmd_core::ethdev::{QueueStats, RxQueue, TxQueue};
use pmd_core::mbuf::{PktBatch, RX_IP_CKSUM_GOOD, RX_L4_CKSUM_GOOD, RX_RSS_HASH};
use pmd_core::Mempool;
use pmd_intel::desc::*;
use pmd_intel::{RxCsumBits, RxRing, RxRingConf, TxRing, TxRingConf};
use pmd_ixgbe_model::desc::{
    PTYPE_IPV4, PTYPE_UDP, RSS_TYPE_IPV4, RSS_TYPE_NONE, RSS_TYPE_TCP_IPV4, RSS_TYPE_UDP_IPV4,
    RXD_ERR_IPE, RXD_ERR_L4E, RXD_ERR_RXE, TXD_DTYP_CTXT,
};
use pmd_ixgbe_model::frame::{frame_seq, ipv4_frame, Ipv4Flow, L4Proto};
use pmd_ixgbe_model::regs::*;
use pmd_ixgbe_model::rss::toeplitz;
use pmd_ixgbe_model::{Generator, ModelConf, RxOutcome};
use std::sync::Arc;

const MAC: [u8; 6] = [0x02, 0x1b, 0x21, 0xaa, 0xbb, 0xcc];
const DONE: u32 = RXD_STAT_DD | RXD_STAT_EOP;

fn conf() -> ModelConf {
    ModelConf {
        mac: MAC,
        capture: 64,
        ..ModelConf::default()
    }
}

fn delivered(queue: usize) -> RxOutcome {
    RxOutcome::Delivered {
        queue,
        descriptors: 1,
    }
}

fn gen(size: usize) -> Generator {
    Generator {
        size,
        flows: 3,
        ..Generator::new(u64::MAX, MAC)
    }
}

#[test]
fn rx_writes_frames_and_write_backs_and_counts_them() {
    let nic = Nic::new(conf());
    let ring = Ring::new("dp-rx", 64);
    ring.post_rx_buffers();
    nic.rx_ready();
    nic.rx_queue(0, &ring, 63);
    let g = gen(100);
    for seq in 0..10 {
        assert_eq!(nic.model.try_inject(&g.frame(seq)), delivered(0));
    }
    assert_eq!(nic.rd(rdh(0)), 10);
    for i in 0..10 {
        let d = ring.get(i);
        let st = rx_status(d);
        assert_eq!(st & DONE, DONE);
        assert_eq!(
            st & (RXD_STAT_IPCS | RXD_STAT_L4CS | RXD_STAT_UDPCS),
            RXD_STAT_IPCS | RXD_STAT_L4CS | RXD_STAT_UDPCS,
            "checksums checked"
        );
        assert_eq!(st & 0xfff0_0000, 0, "no error bits");
        assert_eq!(rx_len(d), 100);
        assert_eq!(d[0] & 0xf, 0, "no RSS without MRQC");
        assert_eq!(d[0] as u32 & 0x1fff0, PTYPE_IPV4 | PTYPE_UDP);
        assert_eq!(ring.buf(i, 100), g.frame(u64::from(i)));
    }
    assert_eq!(rx_status(ring.get(10)), 0, "descriptor 10 untouched");
    let s = nic.model.stats();
    assert_eq!(
        (s.rx_delivered, s.rx_delivered_per_queue[0], s.rx_bytes),
        (10, 10, 1000)
    );
    assert_eq!((s.injected, s.rx_dropped()), (10, 0));
    // Clear-on-read statistics; octets include the 4-byte CRC.
    assert_eq!(nic.rd(GPRC), 10);
    assert_eq!(nic.rd(GPRC), 0);
    assert_eq!(nic.rd(GORCL), 10 * 104);
    assert_eq!(nic.rd(GORCH), 0);
    assert_eq!(nic.rd(GORCL), 0);
    // A corrupted UDP checksum is reported, the frame still delivered.
    let mut bad = g.frame(10);
    bad[60] ^= 0xff;
    assert_eq!(nic.model.try_inject(&bad), delivered(0));
    assert_ne!(rx_status(ring.get(10)) & RXD_ERR_L4E, 0);
}

#[test]
fn rx_filters_by_destination_address() {
    let nic = Nic::new(conf());
    let ring = Ring::new("dp-filter", 64);
    ring.post_rx_buffers();
    nic.rx_ready();
    nic.rx_queue(0, &ring, 63);
    let to = |dst: [u8; 6]| Generator::new(1, dst).frame(0);
    let other = [0x02, 9, 9, 9, 9, 9];
    let bcast = [0xff; 6];
    let mcast = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
    nic.wr(FCTRL, 0);
    assert_eq!(nic.model.try_inject(&to(MAC)), delivered(0));
    for dst in [other, bcast, mcast] {
        assert_eq!(
            nic.model.try_inject(&to(dst)),
            RxOutcome::Filtered,
            "{dst:x?}"
        );
    }
    nic.wr(FCTRL, FCTRL_BAM);
    assert_eq!(nic.model.try_inject(&to(bcast)), delivered(0));
    nic.wr(FCTRL, FCTRL_MPE);
    assert_eq!(nic.model.try_inject(&to(mcast)), delivered(0));
    nic.wr(FCTRL, FCTRL_UPE);
    assert_eq!(nic.model.try_inject(&to(other)), delivered(0));
    // A second receive address (RAL1/RAH1) is an exact match without UPE.
    nic.wr(FCTRL, 0);
    nic.wr(ral(1), u32::from_le_bytes([2, 9, 9, 9]));
    nic.wr(rah(1), 0x0909);
    assert_eq!(
        nic.model.try_inject(&to(other)),
        RxOutcome::Filtered,
        "AV clear"
    );
    nic.wr(rah(1), 0x0909 | RAH_AV);
    assert_eq!(nic.model.try_inject(&to(other)), delivered(0));
    let s = nic.model.stats();
    assert_eq!((s.dropped_filter, s.rx_delivered), (4, 5));
}

#[test]
fn rx_without_free_descriptors_drops_counts_missed_and_wraps() {
    let nic = Nic::new(conf());
    let ring = Ring::new("dp-full", 64);
    ring.post_rx_buffers();
    nic.rx_ready();
    nic.rx_queue(0, &ring, 4);
    let g = gen(60);
    for seq in 0..4 {
        assert_eq!(nic.model.try_inject(&g.frame(seq)), delivered(0));
    }
    assert_eq!(
        nic.model.try_inject(&g.frame(4)),
        RxOutcome::NoDescriptor { queue: 0 }
    );
    assert_eq!(nic.rd(mpc(0)), 1);
    assert_eq!(nic.rd(mpc(0)), 0);
    assert_eq!(nic.model.stats().dropped_no_desc, 1);
    // Post everything but one slot from RDH = 4: 63 descriptors, wrapping at 64.
    ring.post_rx_buffers();
    nic.wr(rdt(0), 3);
    for seq in 0..63 {
        assert_eq!(
            nic.model.try_inject(&g.frame(seq)),
            delivered(0),
            "frame {seq}"
        );
    }
    assert_eq!(nic.rd(rdh(0)), 3);
    assert_eq!(
        rx_status(ring.get(0)) & DONE,
        DONE,
        "wrapped to descriptor 0"
    );
    assert_eq!(frame_seq(&ring.buf(0, 60)), Some(60));
    assert_eq!(rx_status(ring.get(3)), 0);
    assert!(matches!(
        nic.model.try_inject(&g.frame(0)),
        RxOutcome::NoDescriptor { .. }
    ));
}

#[test]
fn rx_splits_frames_over_buffers_and_drops_bad_lengths() {
    let nic = Nic::new(conf());
    let ring = Ring::new("dp-len", 64);
    ring.post_rx_buffers();
    nic.rx_ready();
    nic.rx_queue_kib(0, &ring, 63, 1);
    let big = gen(1514).frame(7);
    assert_eq!(
        nic.model.try_inject(&big),
        RxOutcome::Delivered {
            queue: 0,
            descriptors: 2
        }
    );
    let (d0, d1) = (ring.get(0), ring.get(1));
    assert_eq!(rx_status(d0) & DONE, RXD_STAT_DD, "first part: no EOP");
    assert_eq!((rx_len(d0), rx_len(d1)), (1024, 490));
    assert_eq!(rx_status(d1) & DONE, DONE);
    let mut got = ring.buf(0, 1024);
    got.extend(ring.buf(1, 490));
    assert_eq!(got, big);
    assert_eq!(nic.rd(rdh(0)), 2);
    // Undersize (under 64 bytes with CRC) and oversize (over 1518).
    assert_eq!(nic.model.try_inject(&big[..59]), RxOutcome::Undersize);
    let mut huge = big.clone();
    huge.resize(1515, 0);
    assert_eq!(nic.model.try_inject(&huge), RxOutcome::Oversize);
    assert_eq!((nic.rd(RUC), nic.rd(ROC), nic.rd(RLEC)), (1, 1, 1));
    assert_eq!((nic.rd(RUC), nic.rd(ROC), nic.rd(RLEC)), (0, 0, 0));
    // A VLAN tag allows four more bytes.
    let mut tagged = big[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    tagged.extend_from_slice(&big[12..]);
    assert_eq!(tagged.len(), 1518);
    assert!(matches!(
        nic.model.try_inject(&tagged),
        RxOutcome::Delivered { .. }
    ));
    // Jumbo frames up to MAXFRS.MFS.
    huge.resize(3000, 0);
    nic.wr(HLREG0, HLREG0_JUMBOEN);
    nic.wr(MAXFRS, 9018 << MAXFRS_MFS_SHIFT);
    assert_eq!(
        nic.model.try_inject(&huge),
        RxOutcome::Delivered {
            queue: 0,
            descriptors: 3
        }
    );
    assert_eq!(nic.model.stats().dropped_length, 2);
}

const KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

fn program_rss(nic: &Nic, queues: u32, mrqc: u32) {
    for (i, k) in KEY.chunks_exact(4).enumerate() {
        nic.wr(rssrk(i), u32::from_le_bytes([k[0], k[1], k[2], k[3]]));
    }
    for n in 0..32u32 {
        let e = |j: u32| (n * 4 + j) % queues;
        nic.wr(reta(n as usize), e(0) | e(1) << 8 | e(2) << 16 | e(3) << 24);
    }
    nic.wr(MRQC, mrqc);
}

fn tuple(flow: &Ipv4Flow, ports: bool) -> Vec<u8> {
    let mut v = flow.src_ip.to_vec();
    v.extend_from_slice(&flow.dst_ip);
    if ports {
        v.extend_from_slice(&flow.src_port.to_be_bytes());
        v.extend_from_slice(&flow.dst_port.to_be_bytes());
    }
    v
}

#[test]
fn rss_picks_queues_by_toeplitz_hash_and_redirection_table() {
    let nic = Nic::new(conf());
    let rings: Vec<Ring> = (0..4)
        .map(|q| Ring::new(&format!("dp-rss{q}"), 128))
        .collect();
    nic.rx_ready();
    for (q, r) in rings.iter().enumerate() {
        r.post_rx_buffers();
        nic.rx_queue(q, r, 127);
    }
    program_rss(
        &nic,
        4,
        MRQC_MRQE_RSS | MRQC_RSS_IPV4 | MRQC_RSS_TCPIPV4 | MRQC_RSS_UDPIPV4,
    );
    let mut next = [0u32; 4];
    let mut check = |frame: &[u8], want_q: usize, want_type: u8, want_hash: u32| {
        assert_eq!(nic.model.try_inject(frame), delivered(want_q));
        let d = rings[want_q].get(next[want_q]);
        next[want_q] += 1;
        assert_eq!((d[0] & 0xf) as u8, want_type);
        assert_eq!((d[0] >> 32) as u32, want_hash);
    };
    for i in 0..64u16 {
        let flow = Ipv4Flow {
            src_ip: [10, 0, 0, i as u8],
            dst_ip: [192, 168, 1, 1],
            src_port: 1000 + i * 7,
            dst_port: 53,
            proto: L4Proto::Udp,
        };
        let hash = toeplitz(&KEY, &tuple(&flow, true));
        let frame = ipv4_frame(MAC, [2; 6], &flow, &[0; 20]);
        check(&frame, (hash & 0x7f) as usize % 4, RSS_TYPE_UDP_IPV4, hash);
    }
    // The verification suite's first example over TCP: the published hash.
    let tcp = Ipv4Flow {
        src_ip: [66, 9, 149, 187],
        dst_ip: [161, 142, 100, 80],
        src_port: 2794,
        dst_port: 1766,
        proto: L4Proto::Tcp,
    };
    let frame = ipv4_frame(MAC, [2; 6], &tcp, &[]);
    check(
        &frame,
        (0x51ccc178 & 0x7f) % 4,
        RSS_TYPE_TCP_IPV4,
        0x51ccc178,
    );
    // With only the IPv4 field enabled, addresses alone.
    nic.wr(MRQC, MRQC_MRQE_RSS | MRQC_RSS_IPV4);
    check(&frame, (0x323e8fc2 & 0x7f) % 4, RSS_TYPE_IPV4, 0x323e8fc2);
    // Frames no enabled hash type covers: no hash, queue 0.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2; 6]);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.resize(60, 0);
    check(&arp, 0, RSS_TYPE_NONE, 0);
    nic.wr(MRQC, 0);
    check(&frame, 0, RSS_TYPE_NONE, 0);
    let per_queue = &nic.model.stats().rx_delivered_per_queue;
    assert!(
        per_queue[..4].iter().all(|&n| n > 1),
        "every queue got flows: {per_queue:?}"
    );
    assert_eq!(per_queue.iter().sum::<u64>(), 68);
}

/// Consumes completed descriptors from `next` (checking sequence numbers), re-posts them
/// and moves RDT; returns how many were consumed.
fn consume(nic: &Nic, ring: &Ring, next: &mut u32, expect_seq: &mut u64) -> u32 {
    let mut n = 0;
    while rx_status(ring.get(*next)) & RXD_STAT_DD != 0 {
        assert_eq!(frame_seq(&ring.buf(*next, 64)), Some(*expect_seq));
        *expect_seq += 1;
        ring.set(*next, [ring.buf_iova(*next), 0]);
        *next = (*next + 1) % ring.count;
        n += 1;
    }
    if n > 0 {
        nic.wr(rdt(0), (*next + ring.count - 1) % ring.count);
    }
    n
}

#[test]
fn the_generator_waits_for_descriptors_and_loses_nothing() {
    let frames = 1000;
    let nic = Nic::new(ModelConf {
        generator: Some(Generator {
            size: 64,
            flows: 4,
            ..Generator::new(frames, MAC)
        }),
        ..conf()
    });
    let ring = Ring::new("dp-gen", 128);
    ring.post_rx_buffers();
    // Nothing moves while the link is down.
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(nic.model.stats().generated, 0);
    nic.rx_ready();
    nic.rx_queue(0, &ring, 127);
    let (mut next, mut seq) = (0, 0);
    wait_for("all generated frames", || {
        consume(&nic, &ring, &mut next, &mut seq);
        seq == frames
    });
    let s = nic.model.stats();
    assert_eq!(
        (s.generated, s.gen_pending, s.rx_delivered),
        (frames, 0, frames)
    );
    assert_eq!(s.rx_dropped(), 0);
    assert_eq!(nic.rd(mpc(0)), 0);
    assert_eq!(nic.rd(GPRC), frames as u32);

    // drop_when_full: 10 descriptors posted, 90 frames missed.
    let more = consume(&nic, &ring, &mut next, &mut seq);
    assert_eq!(more, 0);
    ring.post_rx_buffers();
    nic.wr(rdt(0), (next + 10) % 128);
    nic.model.start_generator(Generator {
        size: 64,
        drop_when_full: true,
        ..Generator::new(100, MAC)
    });
    wait_for("the second generator", || {
        nic.model.stats().gen_pending == 0
    });
    let s = nic.model.stats();
    assert_eq!(
        (s.generated, s.rx_delivered, s.dropped_no_desc),
        (frames + 100, frames + 10, 90)
    );
    assert_eq!(nic.rd(mpc(0)), 90);
    // An invalid generator is refused and counted.
    nic.model.start_generator(Generator {
        size: 10,
        ..Generator::new(1, MAC)
    });
    assert_eq!(nic.model.stats().errors, 1);
}

fn data_desc(addr: u64, len: usize, eop: bool, rs: bool) -> [u64; 2] {
    let cmd = TXD_DTYP_DATA
        | TXD_CMD_DEXT
        | TXD_CMD_IFCS
        | if eop { TXD_CMD_EOP } else { 0 }
        | if rs { TXD_CMD_RS } else { 0 }
        | len as u32;
    [addr, u64::from(cmd)]
}

fn dd(d: [u64; 2]) -> bool {
    (d[1] >> 32) as u32 & TXD_STAT_DD != 0
}

#[test]
fn tx_gathers_frames_writes_dd_on_rs_and_captures() {
    let nic = Nic::new(conf());
    nic.link_up();
    nic.wr(HLREG0, HLREG0_TXPADEN);
    let ring = Ring::new("dp-tx", 64);
    nic.tx_queue(0, &ring);
    let g = gen(1000);
    let a = gen(100).frame(0);
    let b = g.frame(1);
    let c = gen(60).frame(2)[..42].to_vec();
    ring.fill(0, &a);
    ring.set(0, data_desc(ring.buf_iova(0), a.len(), true, true));
    for (k, part) in [&b[..300], &b[300..600], &b[600..]].iter().enumerate() {
        let i = k as u32 + 1;
        ring.fill(i, part);
        ring.set(i, data_desc(ring.buf_iova(i), part.len(), i == 3, i == 2));
    }
    ring.set(4, [0, u64::from(TXD_CMD_DEXT | TXD_DTYP_CTXT)]);
    ring.fill(5, &c);
    ring.set(5, data_desc(ring.buf_iova(5), c.len(), true, true));
    nic.wr(tdt(0), 6);
    wait_for("TDH to reach TDT", || nic.rd(tdh(0)) == 6);
    let dds: Vec<bool> = (0..6).map(|i| dd(ring.get(i))).collect();
    assert_eq!(
        dds,
        [true, false, true, false, false, true],
        "DD exactly where RS was"
    );
    let mut c_padded = c.clone();
    c_padded.resize(60, 0);
    assert_eq!(nic.model.captured(), vec![a.clone(), b.clone(), c_padded]);
    let s = nic.model.stats();
    assert_eq!((s.tx_frames, s.tx_bytes), (3, 1160));
    assert_eq!(nic.rd(GPTC), 3);
    assert_eq!(nic.rd(GPTC), 0);
    assert_eq!(nic.rd(GOTCL), 1160 + 3 * 4);
    assert_eq!(nic.rd(GOTCH), 0);
    // Transmit disabled: descriptors wait.
    nic.wr(DMATXCTL, 0);
    ring.set(6, data_desc(ring.buf_iova(0), a.len(), true, true));
    nic.wr(tdt(0), 7);
    std::thread::sleep(std::time::Duration::from_millis(10));
    assert_eq!(nic.rd(tdh(0)), 6);
    nic.wr(DMATXCTL, DMATXCTL_TE);
    wait_for("TE", || nic.rd(tdh(0)) == 7);
    // A descriptor that is neither advanced data nor context stops the queue.
    ring.set(7, [ring.buf_iova(0), 60 | u64::from(TXD_CMD_EOP)]);
    nic.wr(tdt(0), 8);
    wait_for("the error", || nic.model.stats().errors == 1);
    assert_eq!(nic.rd(tdh(0)), 7);
}

#[test]
fn the_pmd_intel_rings_run_against_the_model_in_loopback() {
    let nic = Nic::new(conf());
    nic.rx_ready();
    let pool = Mempool::create("model-loop", 1024, 0).unwrap();
    let bar = &nic.bar;
    let mut rx = RxRing::new(RxRingConf {
        driver: "test",
        name: "model-loop-rx".into(),
        size: 256,
        pool: pool.clone(),
        tail: bar.reg32(rdt(0)).unwrap(),
        error_mask: RXD_ERR_RXE,
        port: 1,
        stats: Arc::new(QueueStats::default()),
        vlan_strip: false,
        scatter: false,
        max_frame: 9732,
        csum: Some(RxCsumBits {
            ip_err: RXD_ERR_IPE,
            l4_err: RXD_ERR_L4E,
        }),
        enable: Some((bar.reg32(rxdctl(0)).unwrap(), DCTL_ENABLE)),
        intr: None,
    })
    .unwrap();
    nic.wr(rdbal(0), rx.desc_iova() as u32);
    nic.wr(rdbah(0), (rx.desc_iova() >> 32) as u32);
    nic.wr(rdlen(0), rx.desc_bytes());
    nic.wr(
        srrctl(0),
        (rx.buf_len() / 1024) as u32 | SRRCTL_DESCTYPE_ADV_ONEBUF,
    );
    nic.wr(rxdctl(0), DCTL_ENABLE);
    nic.wr(rdt(0), rx.tail_value());
    let mut tx = TxRing::new(TxRingConf {
        driver: "test",
        name: "model-loop-tx".into(),
        size: 256,
        tail: bar.reg32(tdt(0)).unwrap(),
        stats: Arc::new(QueueStats::default()),
        enable: Some((bar.reg32(txdctl(0)).unwrap(), DCTL_ENABLE)),
        ctx_lost: Default::default(),
    })
    .unwrap();
    nic.wr(DMATXCTL, DMATXCTL_TE);
    nic.wr(tdbal(0), tx.desc_iova() as u32);
    nic.wr(tdbah(0), (tx.desc_iova() >> 32) as u32);
    nic.wr(tdlen(0), tx.desc_bytes());
    nic.wr(txdctl(0), DCTL_ENABLE);
    // The wire loops back into the receive side.
    let m = nic.model.clone();
    nic.model
        .set_sink(Some(Arc::new(move |f: &[u8]| m.inject(f))));
    program_rss(&nic, 1, MRQC_MRQE_RSS | MRQC_RSS_UDPIPV4);
    let g = gen(128);
    let total = 500u64;
    let (mut sent, mut got) = (0u64, Vec::new());
    let mut out = PktBatch::new();
    let mut inb = PktBatch::new();
    wait_for("loopback", || {
        // At most 32 in flight per round: the receive ring must not overflow (a full
        // ring drops, as on hardware).
        while sent < total && out.len() < 32 {
            let mut mb = pool.alloc().unwrap();
            mb.append(128).unwrap().copy_from_slice(&g.frame(sent));
            let _ = out.push(mb);
            sent += 1;
        }
        tx.tx_burst(&mut out);
        while rx.rx_burst(&mut inb, 32) > 0 {}
        for m in inb.iter() {
            assert_eq!(
                m.ol_flags() & (RX_IP_CKSUM_GOOD | RX_L4_CKSUM_GOOD | RX_RSS_HASH),
                RX_IP_CKSUM_GOOD | RX_L4_CKSUM_GOOD | RX_RSS_HASH
            );
            got.push(frame_seq(m.data()).unwrap());
        }
        inb.clear();
        got.len() as u64 == total
    });
    assert_eq!(got, (0..total).collect::<Vec<_>>(), "in order, none lost");
    nic.model.set_sink(None);
    assert_eq!(nic.model.stats().tx_frames, total);
    drop(out);
    drop(rx);
    drop(tx);
    assert_eq!(
        nic.rd(rxdctl(0)) & DCTL_ENABLE,
        0,
        "the ring disabled its queue"
    );
}
