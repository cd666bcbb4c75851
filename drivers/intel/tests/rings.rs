//! The rings driven by a test playing the device: it reads posted descriptors, writes
//! packets and write-backs, and checks what the rings do with good and hostile input.

use pmd_core::ethdev::{QueueStats, RxQueue, TxQueue};
use pmd_core::mbuf::{PktBatch, RX_RSS_HASH};
use pmd_core::pci::mmio::region_over_memory;
use pmd_core::Mempool;
use pmd_intel::desc::*;
use pmd_intel::{RxRing, RxRingConf, TxRing, TxRingConf};
use std::sync::Arc;

const ERR_MASK: u32 = 1 << 29;

fn rx_ring(pool: &Mempool, size: u16) -> (RxRing, pmd_core::pci::MmioRegion, Arc<QueueStats>) {
    let bar = region_over_memory(64);
    let stats = Arc::new(QueueStats::default());
    let ring = RxRing::new(RxRingConf {
        driver: "test",
        name: format!("rx-test-{}", pool.name()),
        size,
        pool: pool.clone(),
        tail: bar.reg32(0).unwrap(),
        error_mask: ERR_MASK,
        port: 3,
        stats: stats.clone(),
        vlan_strip: true,
        scatter: false,
        max_frame: 9732,
        csum: Some(pmd_intel::RxCsumBits {
            ip_err: 1 << 31,
            l4_err: 1 << 30,
        }),
        enable: Some((bar.reg32(4).unwrap(), 1 << 25)),
        intr: None,
    })
    .unwrap();
    (ring, bar, stats)
}

/// Device view of descriptor `i` of a ring at `base`.
fn rx_desc(base: u64, i: usize) -> *mut RxDesc {
    (base as *mut RxDesc).wrapping_add(i)
}

#[test]
fn rx_receives_validates_and_refills() {
    let pool = Mempool::create("intel-rx-test", 512, 0).unwrap();
    let (mut ring, bar, stats) = rx_ring(&pool, 64);
    assert_eq!(ring.posted(), 63, "one slot stays empty");
    assert_eq!(ring.tail_value(), 63);
    assert_eq!(pool.stats().in_use, 63);
    let base = ring.desc_iova(); // VA mode in tests
    let mut batch = PktBatch::new();
    assert_eq!(ring.rx_burst(&mut batch, 32), 0, "nothing done yet");

    // The device completes 5 descriptors: 3 good (one with RSS, one VLAN), one with the
    // error bit, one longer than the buffer.
    for i in 0..5 {
        // SAFETY: test: the descriptor ring is ours, in VA mode.
        let d = unsafe { rx_desc(base, i).read() };
        let buf = d.w0 as *mut u8;
        // SAFETY: test: the posted buffer holds buf_len bytes.
        unsafe { std::ptr::write_bytes(buf, i as u8 + 1, 60) };
        let (st, len) = match i {
            3 => (RXD_STAT_DD | RXD_STAT_EOP | ERR_MASK, 60),
            4 => (RXD_STAT_DD | RXD_STAT_EOP, ring.buf_len() as u16 + 1),
            2 => (RXD_STAT_DD | RXD_STAT_EOP | RXD_STAT_VP, 60),
            0 => (
                RXD_STAT_DD | RXD_STAT_EOP | RXD_STAT_IPCS | RXD_STAT_L4CS | 1 << 30,
                60,
            ),
            _ => (RXD_STAT_DD | RXD_STAT_EOP, 60),
        };
        let mut wb = RxDesc::write_back(st, len, 0x42, (i == 1) as u8, 0xabcd);
        if i == 1 {
            wb.w0 |= 0x21 << 4; // packet type: IPv4, UDP
        }
        // SAFETY: test: as above.
        unsafe { rx_desc(base, i).write(wb) };
    }
    assert_eq!(ring.rx_burst(&mut batch, 32), 3);
    for (k, m) in batch.iter().enumerate() {
        assert_eq!(m.len(), 60);
        assert!(m.data().iter().all(|&b| b == k as u8 + 1));
        assert_eq!(m.port(), 3);
    }
    assert_eq!(batch.as_slice()[1].ol_flags() & RX_RSS_HASH, RX_RSS_HASH);
    assert_eq!(batch.as_slice()[1].rss_hash(), 0xabcd);
    {
        use pmd_core::mbuf::ptype::{L2_ETHER, L3_IPV4, L4_UDP};
        assert_eq!(
            batch.as_slice()[1].packet_type(),
            L2_ETHER | L3_IPV4 | L4_UDP
        );
        assert_eq!(
            batch.as_slice()[0].packet_type(),
            0,
            "no type reported: unknown"
        );
    }
    assert_eq!(batch.as_slice()[2].vlan_tci(), 0x42);
    use pmd_core::mbuf::{RX_IP_CKSUM_GOOD, RX_L4_CKSUM_BAD};
    assert_eq!(
        batch.as_slice()[0].ol_flags(),
        RX_IP_CKSUM_GOOD | RX_L4_CKSUM_BAD
    );
    assert_eq!(batch.as_slice()[1].ol_flags(), RX_RSS_HASH);
    let s = stats.snapshot();
    assert_eq!((s.packets, s.errors), (3, 2));
    assert_eq!(ring.posted(), 58);
    batch.clear();

    // A packet over three descriptors (no EOP on the first two) is dropped whole.
    for i in 5..8 {
        let st = RXD_STAT_DD | if i == 7 { RXD_STAT_EOP } else { 0 };
        // SAFETY: test: as above.
        unsafe { rx_desc(base, i).write(RxDesc::write_back(st, 100, 0, 0, 0)) };
    }
    assert_eq!(ring.rx_burst(&mut batch, 32), 0);
    assert_eq!(stats.snapshot().errors, 3);

    // Complete enough to trigger a refill: the tail moves once and the ring is full again.
    for i in 8..40 {
        // SAFETY: test: as above.
        unsafe {
            rx_desc(base, i).write(RxDesc::write_back(RXD_STAT_DD | RXD_STAT_EOP, 64, 0, 0, 0))
        };
    }
    assert_eq!(ring.rx_burst(&mut batch, 64), 32);
    assert_eq!(ring.posted(), 63);
    assert_eq!(
        bar.read32_at(0).unwrap(),
        39,
        "tail after refill (63 + 40 - 64)"
    );
    drop(batch);
    bar.write32_at(4, 1 << 25 | 1).unwrap();
    drop(ring);
    assert_eq!(
        bar.read32_at(4).unwrap(),
        1,
        "dropping the ring disables the queue"
    );
    assert_eq!(pool.stats().in_use, 0, "every buffer back in the pool");
}

#[test]
fn rx_ignores_dd_beyond_what_was_posted_and_rejects_bad_sizes() {
    let pool = Mempool::create("intel-rx-test2", 64, 0).unwrap();
    assert!(RxRing::new(RxRingConf {
        driver: "test",
        name: "bad".into(),
        size: 100,
        pool: pool.clone(),
        tail: region_over_memory(4).reg32(0).unwrap(),
        error_mask: 0,
        port: 0,
        stats: Arc::default(),
        vlan_strip: false,
        scatter: false,
        max_frame: 9732,
        csum: None,
        enable: None,
        intr: None,
    })
    .is_err());
    // A pool smaller than the ring: the ring posts what it can.
    let (mut ring, _bar, stats) = rx_ring(&pool, 128);
    assert_eq!(ring.posted(), 64);
    let base = ring.desc_iova();
    // The device marks every descriptor done, including ones never posted.
    for i in 0..128 {
        // SAFETY: test: as above.
        unsafe {
            rx_desc(base, i).write(RxDesc::write_back(RXD_STAT_DD | RXD_STAT_EOP, 60, 0, 0, 0))
        };
    }
    let mut got = 0;
    let mut b = PktBatch::new();
    for _ in 0..4 {
        got += ring.rx_burst(&mut b, 64);
        b.clear();
    }
    assert_eq!(got, 64, "only posted descriptors are read");
    assert!(stats.snapshot().no_mbuf > 0);
}

#[test]
fn tx_sends_reclaims_in_groups_and_reports_a_full_ring() {
    let pool = Mempool::create("intel-tx-test", 512, 0).unwrap();
    let bar = region_over_memory(64);
    let stats = Arc::new(QueueStats::default());
    let mut ring = TxRing::new(TxRingConf {
        driver: "test",
        name: "tx-test".into(),
        size: 64,
        tail: bar.reg32(0).unwrap(),
        stats: stats.clone(),
        enable: None,
        ctx_lost: Default::default(),
    })
    .unwrap();
    let base = ring.desc_iova() as *mut TxDesc;
    let mut sent = 0;
    let mut b = PktBatch::new();
    for _ in 0..2 {
        for _ in 0..32 {
            let mut m = pool.alloc().unwrap();
            m.append(60).unwrap().fill(7);
            b.push(m).unwrap();
        }
        sent += ring.tx_burst(&mut b);
    }
    // 63 usable slots: the second burst sends 31 and leaves 1 in the batch.
    assert_eq!(sent, 63);
    assert_eq!(b.len(), 1);
    assert_eq!(bar.read32_at(0).unwrap(), 63);
    // SAFETY: test: descriptor 31 is ours.
    let d = unsafe { base.add(31).read() };
    assert_ne!(
        d.cmd_type_len() & TXD_CMD_RS,
        0,
        "RS on each group's last descriptor"
    );
    assert_eq!(d.cmd_type_len() & 0xffff, 60);
    // SAFETY: test: descriptor 30 is ours.
    let d = unsafe { base.add(30).read() };
    assert_eq!(d.cmd_type_len() & TXD_CMD_RS, 0);
    // A stalled device: nothing completes, the ring stays full.
    assert_eq!(ring.tx_burst(&mut b), 0);
    assert_eq!(ring.full_events(), 1);
    // The device completes the first group.
    // SAFETY: test.
    unsafe {
        let mut d = base.add(31).read();
        d.w1 |= u64::from(TXD_STAT_DD) << 32;
        base.add(31).write(d);
    }
    assert_eq!(ring.tx_burst(&mut b), 1);
    assert_eq!(ring.in_flight(), 32);
    assert_eq!(pool.stats().in_use, 32);
    assert_eq!(stats.snapshot().packets, 64);
    drop(ring);
    assert_eq!(pool.stats().in_use, 0);
}
