//! Checksum and TSO offloads against DPDK's vhost (see `interop_tso.rs`, `interop_csum.rs`).

use super::*;
use pmd_core::ethdev::TxOffloads;
use pmd_core::mbuf::{
    TxOffload, RX_L4_CKSUM_GOOD, RX_LRO, TX_IPV4, TX_IP_CKSUM, TX_TCP_SEG, TX_UDP_CKSUM,
};
use pmd_core::Mbuf;

/// An Ethernet + IPv4 + TCP (proto 6) or UDP (17) frame with `payload` bytes; `seq`
/// marks it (TCP sequence number / UDP source port and the payload pattern).
pub fn l4_frame(tcp: bool, seq: u32, payload: usize) -> Vec<u8> {
    let l4 = if tcp { 20 } else { 8 };
    let mut f = vec![0u8; 14 + 20 + l4 + payload];
    f[..6].copy_from_slice(&MACS.1);
    f[6..12].copy_from_slice(&MACS.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + l4 + payload) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = if tcp { 6 } else { 17 };
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let c = pmd_core::csum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let l = &mut f[34..34 + l4];
    l[0..2].copy_from_slice(&1234u16.to_be_bytes());
    l[2..4].copy_from_slice(&80u16.to_be_bytes());
    if tcp {
        l[4..8].copy_from_slice(&seq.wrapping_mul(100_000).to_be_bytes());
        l[12] = 5 << 4;
        l[13] = 0x18;
        l[14..16].copy_from_slice(&65535u16.to_be_bytes());
    } else {
        l[0..2].copy_from_slice(&(seq as u16).to_be_bytes());
        l[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    }
    for (i, b) in f[34 + l4..].iter_mut().enumerate() {
        *b = (seq as usize * 13 + i * 7) as u8;
    }
    f
}

/// Whether the frame's TCP/UDP checksum verifies (pseudo-header + segment sum to 0xffff).
pub fn l4_csum_ok(f: &[u8]) -> bool {
    let proto = f[23];
    let seg = &f[34..];
    let mut p = Vec::new();
    p.extend_from_slice(&f[26..34]);
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    p.extend_from_slice(seg);
    pmd_core::csum::ones_complement_sum(&p) == 0xffff
}

fn setup(
    test: &str,
    tag: &str,
    conf: &PortConf,
    vdev_extra: &str,
) -> Option<(
    Testpmd,
    Eal,
    Mempool,
    pmd_core::ethdev::RxQueueHandle,
    pmd_core::ethdev::TxQueueHandle,
)> {
    if !pmd_testkit::require(test, skip_reason()) {
        return None;
    }
    let pid = std::process::id();
    let sock = PathBuf::from(format!("/tmp/pmd-virtio-{tag}-{pid}.sock"));
    let log = PathBuf::from(format!("/tmp/pmd-virtio-{tag}-{pid}.log"));
    let tp = Testpmd::start_args(
        &sock,
        &format!("pmdv{tag}{pid}"),
        &log,
        "macswap",
        1,
        vdev_extra,
        &[],
    );
    wait_socket(&tp, &sock);
    let (eal, (pool, ()), rx, tx) =
        open_port(&sock, &format!("pmdvu{tag}{pid}"), false, conf, || {
            (
                Mempool::create(&format!("virtio-{tag}"), 4096, 0).unwrap(),
                (),
            )
        });
    let f = xstat(&eal, "features");
    eprintln!(
        "{test}: offered {:#x}, negotiated {f:#x} ({})",
        xstat(&eal, "device_features"),
        pmd_virtio::net::feature_names(f)
    );
    Some((tp, eal, pool, rx, tx))
}

/// Receives for `secs` seconds (or until `want` frames came).
fn collect(rx: &mut pmd_core::ethdev::RxQueueHandle, want: usize, secs: u64) -> Vec<Mbuf> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut rb = PktBatch::new();
    while Instant::now() < deadline && out.len() < want {
        rx.rx_burst(&mut rb);
        while let Some(m) = rb.pop() {
            out.push(m);
        }
    }
    out
}

/// (b) TSO: 20000-byte TCP/IPv4 frames sent with TX_TCP_SEG (tso_segsz 1448) as chains.
pub fn tso(test: &str) {
    let conf = PortConf {
        rx_offloads: RxOffloads::SCATTER | RxOffloads::TCP_LRO,
        tx_offloads: TxOffloads::MULTI_SEGS | TxOffloads::TCP_TSO | TxOffloads::TCP_CKSUM,
        mtu: Some(9000),
        ..Default::default()
    };
    let Some((tp, mut eal, pool, mut rx, mut tx)) = setup(test, "tso", &conf, ",tso=1") else {
        return;
    };
    const N: u32 = 8;
    const PAYLOAD: usize = 20000 - 54;
    let mut sent = Vec::new();
    for seq in 0..N {
        let f = l4_frame(true, seq, PAYLOAD);
        let mut m = Mbuf::from_slice(&f, &pool).unwrap();
        m.set_ol_flags(TX_TCP_SEG | TX_IPV4 | TX_IP_CKSUM);
        m.set_tx_offload(TxOffload {
            l2_len: 14,
            l3_len: 20,
            l4_len: 20,
            tso_segsz: 1448,
            ..Default::default()
        });
        assert!(m.nb_segs() > 1);
        let mut b = PktBatch::new();
        b.push(m).unwrap();
        while !b.is_empty() {
            tx.tx_burst(&mut b);
        }
        sent.push(f);
    }
    let got = collect(&mut rx, N as usize, 5);
    let s = stats(&eal);
    eprintln!("{test}: got {} frames, stats {s:?}", got.len());
    for m in &got {
        eprintln!(
            "  len {} segs {} flags {:?} tso_segsz {}",
            m.len(),
            m.nb_segs(),
            pmd_core::mbuf::flag_names(m.ol_flags()),
            m.tx_offload().tso_segsz
        );
    }
    assert_eq!((s.oerrors, s.ierrors), (0, 0), "log:\n{}", tp.log());
    assert_eq!(xstat(&eal, "tx_offload_errors"), 0);
    // What DPDK 22.11 does (observed): vhost dequeues the GSO frame as one 20000-byte
    // mbuf chain (RX_LRO on its side); testpmd's macswap resets ol_flags, so vhost
    // enqueues it back as a plain, unsegmented 20000-byte frame (no GSO header): one frame
    // per super-frame, spanning 10 of our merged buffers, not RX_LRO.
    assert_eq!(got.len(), N as usize, "one frame back per super-frame");
    assert!(got.iter().all(|m| m.len() == 20000 && m.nb_segs() > 1));
    assert!(
        got.iter().all(|m| m.ol_flags() & RX_LRO == 0),
        "no GSO header on the way back"
    );
    for m in &got {
        let d = m.to_vec();
        let seq = u32::from_be_bytes(d[38..42].try_into().unwrap()) / 100_000;
        let want = swapped(sent[seq as usize].clone());
        assert_eq!(d.len(), want.len());
        // Equal except the checksum fields the offload path rewrote (IPv4 zeroed by
        // prepare, TCP holding the pseudo-header sum or completed by us).
        assert_eq!(&d[..24], &want[..24]);
        assert_eq!(&d[26..50], &want[26..50]);
        assert_eq!(&d[52..], &want[52..], "payload of {seq}");
        if m.ol_flags() & RX_LRO != 0 {
            assert_eq!(m.tx_offload().tso_segsz, 1448);
        }
        eprintln!("  frame {seq}: TCP checksum verifies: {}", l4_csum_ok(&d));
        if m.ol_flags() & RX_L4_CKSUM_GOOD != 0 {
            assert!(l4_csum_ok(&d), "completed checksum of {seq} verifies");
        }
    }
    drop(got);
    eal.port_mut(0).unwrap().stop().unwrap();
    drop(rx);
    drop(tx);
    assert_eq!(pool.stats().in_use, 0);
    drop(tp);
}

/// (c) UDP checksum offload: frames with TX_UDP_CKSUM come back with valid checksums.
pub fn csum(test: &str) {
    let conf = PortConf {
        rx_offloads: RxOffloads::UDP_CKSUM,
        tx_offloads: TxOffloads::UDP_CKSUM,
        ..Default::default()
    };
    let Some((tp, mut eal, pool, mut rx, mut tx)) = setup(test, "csum", &conf, "") else {
        return;
    };
    const N: u32 = 200;
    for seq in 0..N {
        let mut f = l4_frame(false, seq, 18 + (seq as usize * 31) % 1400);
        f[40..42].fill(0xab); // garbage: the offload must replace it
        let mut m = pool.alloc().unwrap();
        assert!(m.copy_from(&f));
        m.set_ol_flags(TX_UDP_CKSUM | TX_IPV4);
        m.set_tx_offload(TxOffload {
            l2_len: 14,
            l3_len: 20,
            l4_len: 8,
            ..Default::default()
        });
        let mut b = PktBatch::new();
        b.push(m).unwrap();
        while !b.is_empty() {
            tx.tx_burst(&mut b);
        }
    }
    let got = collect(&mut rx, N as usize, 5);
    let s = stats(&eal);
    eprintln!("{test}: got {} frames, stats {s:?}", got.len());
    if let Some(m) = got.first() {
        eprintln!(
            "  first: flags {:?}",
            pmd_core::mbuf::flag_names(m.ol_flags())
        );
    }
    assert_eq!(got.len(), N as usize, "log:\n{}", tp.log());
    // Observed: DPDK's vhost completes the partial checksum itself when it dequeues, so
    // frames come back plain (no NEEDS_CSUM/DATA_VALID) with a valid checksum.
    let mut good_flag = 0;
    for m in &got {
        let d = m.to_vec();
        assert!(
            l4_csum_ok(&d),
            "UDP checksum of a returned frame verifies: {:?}",
            &d[..48]
        );
        good_flag += u32::from(m.ol_flags() & RX_L4_CKSUM_GOOD != 0);
    }
    eprintln!("{test}: {good_flag} of {N} flagged RX_L4_CKSUM_GOOD");
    drop(got);
    eal.port_mut(0).unwrap().stop().unwrap();
    drop(rx);
    drop(tx);
    assert_eq!(pool.stats().in_use, 0);
    drop(tp);
}
